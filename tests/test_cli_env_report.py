import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vtonlab
from vtonlab import env as envmod
from vtonlab.__main__ import main
from vtonlab.report import Summary, collect


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("profile", "train", "notebooks"):
        assert cmd in out


def test_profile_command(capsys, monkeypatch):
    monkeypatch.setenv("VTONLAB_PROFILE", "cpu")
    assert main(["profile"]) == 0
    assert "128 x 96" in capsys.readouterr().out
    assert main(["profile", "gpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == [256, 192]
    assert main(["profile", "huge"]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "vtonlab", "profile", "ci"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "64 x 48" in out.stdout


def test_train_command_trains_and_ships(tmp_cache, capsys, monkeypatch):
    argv = ["train", "demo", "--profile", "ci", "--ship"]
    # what `python -m vtonlab train demo ...` puts in sys.argv: the manifest must record that command
    monkeypatch.setattr(sys, "argv", [str(Path(vtonlab.__file__).parent / "__main__.py"), *argv])
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "shipped:" in out and "test_mse" in out
    shipped = tmp_cache / "data" / "checkpoints" / "demo-ci.json"
    manifest = json.loads(shipped.read_text())
    assert manifest["command"].startswith("python -m vtonlab train demo ") and "--profile ci" in manifest["command"]
    assert manifest["metrics"]["test_mse"] < manifest["metrics"]["zero_baseline_mse"]
    # shipping again without --overwrite refuses
    assert main(["train", "demo", "--profile", "ci", "--ship", "--reuse"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_setup_seeds_and_reports(capsys):
    e = vtonlab.setup(seed=7)
    a = torch.rand(3), np.random.rand()
    vtonlab.setup(seed=7, quiet=True)
    b = torch.rand(3), np.random.rand()
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    out = capsys.readouterr().out
    assert "vtonlab profile: ci" in out and "device: cpu" in out and "torch " in out
    profile, device, seed = e
    assert profile.name == "ci" and device.type == "cpu" and seed == 7
    with pytest.raises(ValueError, match="seed"):
        envmod.seed_everything(-1)


def test_pick_device_override(monkeypatch):
    monkeypatch.setenv("VTONLAB_DEVICE", "cpu")
    assert envmod.pick_device() == torch.device("cpu")


def test_summary_writes_and_collects(tmp_path, monkeypatch):
    monkeypatch.setenv("VTONLAB_RESULTS_DIR", str(tmp_path))
    s = Summary("99_test")
    s.add("EPE", torch.tensor(1.25), unit="px", note="test split").add("label", "ok")
    md = s.to_markdown()
    assert "| EPE | 1.25 | px | test split |" in md and "profile `ci`" in md
    assert json.loads((tmp_path / "summaries" / "99_test.json").read_text())["rows"][0]["value"] == 1.25
    assert "| EPE | 1.25 | px | test split |" in collect(tmp_path)
    with pytest.raises(TypeError, match="must be a number"):
        s.add("bad", [1, 2])


def test_notebooks_run_executes_and_collects_summary(tmp_path, monkeypatch):
    import nbformat

    import vtonlab.commands.notebooks as nbcmd

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 99 · test"),
                nbformat.v4.new_code_cell("from vtonlab.report import Summary\nSummary('99_test').add('answer', 42)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "99_test.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setattr(nbcmd, "notebook_paths", lambda root=None: [path])
    assert main(["notebooks", "run", "--out", str(tmp_path / "results")]) == 0
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "| answer | 42 |" in summary and "| 99_test.ipynb |" in summary
    assert (tmp_path / "results" / "notebooks" / "99_test.ipynb").exists()
