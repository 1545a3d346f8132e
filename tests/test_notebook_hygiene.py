"""The stored (executed) notebooks: no machine paths in outputs, final progress frames, references at the end."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ABSOLUTE = re.compile(r"(?<![\w.~])/(?:work|tmp|root|home|Users|var/folders)/")


def _output_texts(nb):
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")]
            texts += [v for k, v in out.get("data", {}).items() if k.startswith("text/") and isinstance(v, str)]
            texts += [e for e in out.get("traceback", [])]
            for text in texts:
                yield i, text if isinstance(text, str) else "".join(text)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_hold_no_machine_paths(path):
    nb = nbformat.read(path, as_version=4)
    repo = str(Path(__file__).parents[1].resolve())
    for i, text in _output_texts(nb):
        assert repo not in text, f"{path.name} cell {i}: output shows the repository path"
        m = ABSOLUTE.search(text)
        assert m is None, f"{path.name} cell {i}: output shows a machine path: ...{text[max(0, m.start() - 40):m.end() + 40]}..."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saved_progress_bars_show_their_final_state(path):
    nb = nbformat.read(path, as_version=4)
    for i, text in _output_texts(nb):
        for line in text.splitlines():
            assert not re.search(r"(?<!\d)0%\|", line), f"{path.name} cell {i}: a saved bar shows its first frame: {line[:80]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_ends_with_references(path):
    nb = nbformat.read(path, as_version=4)
    last_md = [c for c in nb.cells if c.cell_type == "markdown"][-1]
    assert last_md.source.lstrip().lower().startswith(("## references", "# references")), f"{path.name}: no references cell"
    assert "arxiv" in last_md.source.lower() or "ieee" in last_md.source.lower(), f"{path.name}: references cite no paper"
