"""``Summary``: the closing table of every notebook.

Each notebook ends with a table of what it measured. Displayed in a notebook, the table is
markdown, and the output's metadata carries a machine-readable copy under ``SUMMARY_KEY`` (the
dict of :meth:`Summary.to_dict`); :func:`read_notebook_summary` reads it back from a saved
notebook (and falls back to parsing the markdown table of notebooks saved before the copy
existed). ``python -m vtonlab report`` builds the README's results table from it. When
``$VTONLAB_RESULTS_DIR`` is set (as ``make reproduce`` does), the table is also written there as
JSON, and ``make reproduce`` gathers every notebook's table into ``results/summary.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from vtonlab.profiles import Profile, get_profile

SUMMARY_KEY = "vtonlab/summary"  # output metadata key of the machine-readable copy
SUMMARY_FORMAT = "vtonlab-summary-v1"


@dataclass
class Row:
    name: str
    value: float | int | str
    unit: str = ""
    note: str = ""

    def formatted(self) -> str:
        v = self.value
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
        return str(v)


class Summary:
    """A table of measured numbers: ``s.add("GMM test EPE", 1.93, unit="px", note="...")``."""

    def __init__(self, notebook: str, profile: Profile | None = None):
        self.notebook = notebook
        self.profile = profile or get_profile()
        self.rows: list[Row] = []

    def add(self, name: str, value, unit: str = "", note: str = "") -> Summary:
        if hasattr(value, "item"):
            value = value.item()
        if not isinstance(value, (int, float, str)):
            raise TypeError(f"Summary value for {name!r} must be a number or a string, got {type(value).__name__}")
        self.rows.append(Row(name, value, unit, note))
        self._write()
        return self

    def to_markdown(self) -> str:
        head = f"**{self.notebook}** (profile `{self.profile.name}`, {self.profile.height}x{self.profile.width})\n\n"
        lines = ["| measured | value | unit | note |", "|---|---|---|---|"]
        lines += [f"| {_cell(r.name)} | {_cell(r.formatted())} | {_cell(r.unit)} | {_cell(r.note)} |" for r in self.rows]
        return head + "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        """Markdown and plain text to show, and :meth:`to_dict` in the output's metadata (``SUMMARY_KEY``)."""
        data = {"text/markdown": self.to_markdown(), "text/plain": str(self)}
        return data, {SUMMARY_KEY: _json_safe(self.to_dict())}

    def __str__(self) -> str:
        w = max([len(r.name) for r in self.rows] + [8])
        out = [f"{self.notebook} (profile {self.profile.name})"]
        out += [f"  {r.name.ljust(w)}  {r.formatted()} {r.unit}  {r.note}".rstrip() for r in self.rows]
        return "\n".join(out)

    __repr__ = __str__

    def to_dict(self) -> dict:
        return {"format": SUMMARY_FORMAT, "notebook": self.notebook, "profile": self.profile.name,
                "image_size": list(self.profile.image_size), "rows": [asdict(r) for r in self.rows]}

    def _write(self) -> None:
        target = os.environ.get("VTONLAB_RESULTS_DIR")
        if not target:
            return
        out = Path(target) / "summaries"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{self.notebook}.json").write_text(json.dumps(self.to_dict(), indent=1))


def collect(results_dir: str | os.PathLike) -> str:
    """Gather every notebook's summary JSON under ``results_dir/summaries`` into one markdown page."""
    root = Path(results_dir) / "summaries"
    parts = ["# vtonlab results\n"]
    for f in sorted(root.glob("*.json")):
        d = json.loads(f.read_text())
        parts.append(f"## {d['notebook']} (profile `{d['profile']}`, {d['image_size'][0]}x{d['image_size'][1]})\n")
        parts.append("| measured | value | unit | note |\n|---|---|---|---|")
        for r in d["rows"]:
            parts.append(f"| {_cell(r['name'])} | {_cell(Row(**r).formatted())} | {_cell(r['unit'])} | {_cell(r['note'])} |")
        parts.append("")
    return "\n".join(parts)


def _cell(text: str) -> str:
    """A markdown table cell: ``|`` escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _json_safe(d: dict) -> dict:
    """``d`` with non-finite float values written as strings ("nan", "inf"): strict JSON for notebook metadata."""
    rows = [dict(r, value=Row(**r).formatted()) if isinstance(r["value"], float) and not math.isfinite(r["value"])
            else r for r in d["rows"]]
    return dict(d, rows=rows)


def _parse_value(text: str) -> float | int | str:
    """A table cell back to a number where it is one ("0.2719" -> 0.2719, "300" -> 300, "yes" -> "yes")."""
    t = text.strip()
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)  # "nan" and "inf" too: Row.formatted writes non-finite values that way
    except ValueError:
        return t


def _split_row(line: str) -> list[str]:
    """``| a | b \\| c | d |`` -> the cells, unstripped, honouring escaped ``\\|``."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    cells, cur, i = [], "", 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cur += "|"
            i += 2
            continue
        if body[i] == "|":
            cells.append(cur)
            cur = ""
        else:
            cur += body[i]
        i += 1
    cells.append(cur)
    return cells


_HEAD = re.compile(r"^\*\*(?P<notebook>[^*]+)\*\* \(profile `(?P<profile>[^`]+)`, (?P<h>\d+)x(?P<w>\d+)\)")


def parse_summary_markdown(markdown: str) -> dict:
    """The dict of :meth:`Summary.to_dict` from its markdown (values as shown, e.g. 4 significant digits).

    For notebooks saved before summaries carried a machine-readable copy. An unescaped ``|``
    inside a cell (older tables) is kept in the name: the value, unit and note are the last three cells.
    """
    head = _HEAD.match(markdown.strip())
    if not head:
        raise ValueError("not a vtonlab Summary table: expected a first line '**NOTEBOOK** (profile `P`, HxW)'")
    rows = []
    for line in markdown.splitlines():
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| measured |"):
            continue
        cells = _split_row(line)
        if len(cells) < 4:
            raise ValueError(f"Summary table row with fewer than 4 cells: {line!r}")
        # an unescaped '|' in the name ("max |diff|") splits it: rejoin it
        name = "|".join(cells[:-3]).strip()
        value, unit, note = (c.strip() for c in cells[-3:])
        rows.append({"name": name, "value": _parse_value(value), "unit": unit, "note": note})
    return {"format": "markdown", "notebook": head["notebook"], "profile": head["profile"],
            "image_size": [int(head["h"]), int(head["w"])], "rows": rows}


def read_notebook_summary(path: str | os.PathLike) -> dict | None:
    """The last :class:`Summary` displayed in the saved notebook ``path`` (a dict as :meth:`Summary.to_dict`).

    Reads the machine-readable copy in the output metadata; for outputs saved without one, parses
    the markdown table (``"format": "markdown"``). ``None`` when no output holds a Summary.
    """
    path = Path(path)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read the notebook ({err})") from err
    for cell in reversed(nb.get("cells", [])):
        for out in reversed(cell.get("outputs", [])):
            meta = out.get("metadata") or {}
            if SUMMARY_KEY in meta:
                return dict(meta[SUMMARY_KEY])
            md = (out.get("data") or {}).get("text/markdown")
            if md is not None:
                md = "".join(md) if isinstance(md, list) else md
                if _HEAD.match(md.strip()):
                    return parse_summary_markdown(md)
    return None
