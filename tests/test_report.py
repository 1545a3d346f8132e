"""``python -m vtonlab report`` and ``bench``: the README's results table is generated and checked, never typed."""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import shutil
import statistics
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
import torch
from IPython.core.formatters import DisplayFormatter

from vtonlab import paths
from vtonlab.__main__ import main
from vtonlab.commands import report as rep
from vtonlab.report import SUMMARY_KEY, Summary, parse_summary_markdown, read_notebook_summary

REPO = paths.repo_root()
SOURCES = ["--checkpoints", str(REPO / "data" / "checkpoints"), "--notebooks", str(REPO / "notebooks"),
           "--bench", str(REPO / "data" / "bench")]


def _readme(tmp_path: Path) -> Path:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nprose before\n\n{rep.BEGIN}\nold table\n{rep.END}\n\nprose after\n")
    return readme


def _report(tmp_path: Path, readme: Path, *extra: str) -> int:
    return main(["report", "--readme", str(readme), "--results", str(tmp_path / "results"), *SOURCES, *extra])


def test_check_fails_when_a_number_is_edited_by_hand_and_regenerating_fixes_it(tmp_path, capsys):
    readme = _readme(tmp_path)
    assert _report(tmp_path, readme, "--check") == 1  # the placeholder block differs
    assert _report(tmp_path, readme) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\nprose before\n\n") and text.endswith(f"{rep.END}\n\nprose after\n")
    assert "| what | setting | value | measured with | source |" in text and "old table" not in text
    capsys.readouterr()
    assert _report(tmp_path, readme, "--check") == 0
    # edit one number of the generated block by hand
    block = text.split(rep.BEGIN)[1].split(rep.END)[0]
    number = re.search(r"\| [^|]*?(\d+\.\d+)", block)
    edited_value = str(round(float(number.group(1)) + 1, 6))
    edited = text.replace(number.group(0), number.group(0).replace(number.group(1), edited_value), 1)
    assert edited != text
    readme.write_text(edited)
    capsys.readouterr()
    assert _report(tmp_path, readme, "--check") == 1
    captured = capsys.readouterr()
    removed = [line for line in captured.out.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in captured.out.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert len(removed) == len(added) == 1  # the diff shows the one edited row
    assert edited_value in removed[0] and number.group(0) in added[0]
    assert "python -m vtonlab report" in captured.err
    assert readme.read_text() == edited  # --check never writes
    assert _report(tmp_path, readme) == 0
    assert readme.read_text() == text
    assert _report(tmp_path, readme, "--check") == 0


def test_every_row_names_its_source_file():
    src = rep.Sources(REPO / "data" / "checkpoints", REPO / "notebooks", REPO / "data" / "bench")
    rows = rep.build_rows(src)
    manifests = sorted(p.name for p in (REPO / "data" / "checkpoints").glob("*.json"))
    named = [m.group(1) for r in rows for m in re.finditer(r"`data/checkpoints/([\w*.-]+\.json)`", r.source)]
    for name in manifests:  # every shipped manifest has a row that names it (or a pattern of the ablation family)
        assert any(fnmatch.fnmatch(name, pattern) for pattern in named), name
    for r in rows:
        assert re.search(r"`(data/checkpoints/[\w*.-]+\.json|data/bench/[\w-]+\.json|notebooks/\d\d_\w+\.ipynb)`", r.source), r
        assert r.measured_with and r.value


def test_report_reads_the_numbers_of_the_bench_files(tmp_path):
    bench = tmp_path / "bench"
    shutil.copytree(REPO / "data" / "bench", bench)
    record = json.loads((bench / "render.json").read_text())
    record["result"].update(samples_per_s=12.345, samples_per_cpu_s=67.891, n=7)
    record["machine"].update(cpus_usable=3, torch_threads=5, load_average_1min=0.5)
    (bench / "render.json").write_text(json.dumps(record))
    rows = rep.build_rows(rep.Sources(REPO / "data" / "checkpoints", REPO / "notebooks", bench))
    row = next(r for r in rows if "render_sample" in r.what)
    assert row.value == "12.3 samples/s wall clock, 67.9 per CPU-second"
    assert "7 samples" in row.what and "3 CPUs, 5 torch threads, load 0.5" in row.setting
    assert record["command"] in row.source
    (bench / "flow.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"flow\.json.*python -m vtonlab bench flow"):
        rep.build_rows(rep.Sources(REPO / "data" / "checkpoints", REPO / "notebooks", bench))


def test_bench_writes_command_machine_date_and_numbers(tmp_path, capsys):
    out = tmp_path / "render.json"
    assert main(["bench", "render", "--n", "2", "--size", "32", "24", "--seed", "4", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["command"] == "python -m vtonlab bench render --n 2 --size 32 24 --seed 4"
    assert record["bench"] == "render" and record["format"] == "vtonlab-bench-v1"
    assert record["machine"]["cpu_count"] == os.cpu_count()
    assert record["machine"]["torch_threads"] == torch.get_num_threads()
    assert abs((datetime.now() - datetime.strptime(record["date"], "%Y-%m-%dT%H:%M:%SZ")).days) <= 1
    r = record["result"]
    assert (r["n"], r["size"], r["seeds"]) == (2, [32, 24], [4, 5])
    assert r["samples_per_s"] == pytest.approx(2 / r["seconds"]) and r["samples_per_cpu_s"] == pytest.approx(2 / r["cpu_seconds"])
    assert main(["bench", "render", "--n", "0", "--out", str(out)]) == 2
    assert "n must be a positive integer" in capsys.readouterr().err


def test_bench_ladi_sampling_times_the_profile_pipeline(tmp_path):
    out = tmp_path / "ladi.json"
    assert main(["bench", "ladi_sampling", "--profile", "ci", "--n", "2", "--repeats", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["command"] == "python -m vtonlab bench ladi_sampling --n 2 --profile ci --repeats 1"
    r = record["result"]
    assert (r["profile"], r["n"], r["repeats"], r["num_inference_steps"]) == ("ci", 2, 1, 10)
    assert r["seconds_per_image"] == pytest.approx(r["pass_seconds"][0] / 2) and r["images_per_second"] > 0
    assert r["device"] == "cpu" and r["precision"] == "float32" and r["channels_last"] is False
    bench = tmp_path / "bench"
    shutil.copytree(REPO / "data" / "bench", bench)
    (bench / "ladi_sampling-ci.json").write_text(out.read_text())
    rows = rep.build_rows(rep.Sources(REPO / "data" / "checkpoints", REPO / "notebooks", bench))
    row = next(r for r in rows if "sampling" in r.what and r.setting.startswith("ci"))
    assert f"{r['seconds_per_image']:.3f} s per image" in row.value and record["command"] in row.source


def test_bench_ladi_training_times_the_profile_models_without_training_them(tmp_path, capsys):
    out = tmp_path / "train.json"
    assert main(["bench", "ladi_training", "--profile", "ci", "--repeats", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["command"] == "python -m vtonlab bench ladi_training --profile ci --repeats 2"
    r = record["result"]
    assert (r["profile"], r["timed_steps"], r["device"], r["precision"]) == ("ci", 2, "cpu", "float32")
    from vtonlab.ladi import tryon, vae
    from vtonlab.profiles import get_profile

    ci = get_profile("ci")
    u, v = r["tryon_unet"], r["autoencoder"]
    assert u["input"] == [31, 8, 6] and u["batch_size"] == ci.batch_size and u["profile_steps"] == ci.steps_for("unet")
    assert v["input"] == [3, 64, 48] and v["profile_steps"] == vae.stack_config(ci).steps
    assert u["parameters"] == sum(p.numel() for p in tryon.get_trained("ci", verbose=False)[0].parameters())
    for e in (u, v):
        assert len(e["step_seconds"]) == 2 and e["seconds_per_step"] == pytest.approx(statistics.median(e["step_seconds"]))
        assert e["hours_for_profile_steps"] == pytest.approx(e["seconds_per_step"] * e["profile_steps"] / 3600)
    bench = tmp_path / "bench"
    shutil.copytree(REPO / "data" / "bench", bench)
    (bench / "ladi_training-ci.json").write_text(out.read_text())
    rows = rep.build_rows(rep.Sources(REPO / "data" / "checkpoints", REPO / "notebooks", bench))
    row = next(r for r in rows if "training step" in r.what and r.setting.startswith("ci"))
    assert f"{u['seconds_per_step']:.2f} s / {v['seconds_per_step']:.2f} s per step" in row.value
    assert record["command"] in row.source
    with pytest.raises(SystemExit, match="--n does not apply"):
        main(["bench", "ladi_training", "--profile", "ci", "--n", "4", "--out", str(out)])
    with pytest.raises(ValueError, match="positive number of timed steps"):
        tryon.training_benchmark("ci", steps=0)
    from vtonlab.commands.bench import read_record

    with pytest.raises(FileNotFoundError, match="ladi_training-gpu.json.*`python -m vtonlab bench ladi_training --profile gpu`"):
        read_record(tmp_path / "ladi_training-gpu.json")
    with pytest.raises(FileNotFoundError, match="`python -m vtonlab bench render`"):
        read_record(tmp_path / "render.json")
    (tmp_path / "bad.json").write_text(json.dumps({"command": "x", "date": "y", "machine": {}}))
    with pytest.raises(ValueError, match="bad.json: bench file has no 'result' field"):
        read_record(tmp_path / "bad.json")


def test_summary_output_carries_the_exact_values_and_is_read_back(tmp_path):
    s = Summary("99_test")
    s.add("EPE", 1.23456789, unit="px", note="a | b").add("max |diff|", 2.5e-13).add("label", "ok")
    s.add("missing", float("nan"))
    data, metadata = DisplayFormatter().format(s)  # what a kernel stores with the cell's output
    assert data["text/markdown"] == s.to_markdown() and "text/plain" in data
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("s")
    cell.outputs = [nbformat.v4.new_output("execute_result", data=data, metadata=metadata, execution_count=1)]
    nb.cells = [nbformat.v4.new_markdown_cell("# 99"), cell]
    path = tmp_path / "99_test.ipynb"
    nbformat.write(nb, path)  # validates the notebook format too
    got = read_notebook_summary(path)
    assert got["format"] == "vtonlab-summary-v1" and got["profile"] == "ci" and got["image_size"] == [64, 48]
    assert [r["value"] for r in got["rows"]] == [1.23456789, 2.5e-13, "ok", "nan"]  # full precision, not 1.235
    assert got["rows"][0]["note"] == "a | b" and got["rows"][1]["name"] == "max |diff|"
    # the markdown alone (outputs saved before the copy existed) gives the shown values, '|' escaped
    cell.outputs[0]["metadata"] = {}
    nbformat.write(nb, path)
    old = read_notebook_summary(path)
    assert old["format"] == "markdown"
    assert [(r["name"], r["value"], r["unit"], r["note"]) for r in old["rows"][:3]] == [
        ("EPE", 1.235, "px", "a | b"), ("max |diff|", 2.5e-13, "", ""), ("label", "ok", "", "")]
    assert old["rows"][3]["name"] == "missing" and math.isnan(old["rows"][3]["value"])
    assert SUMMARY_KEY == "vtonlab/summary"


def test_markdown_of_tables_saved_before_escaping_is_parsed():
    md = ("**03_tps** (profile `cpu`, 128x96)\n\n| measured | value | unit | note |\n|---|---|---|---|\n"
          "| kornia with our coefficients, max |diff| | 2.82e-13 |  | float64 images |\n"
          "| kornia warp time | 6513 | ms | median of 5 |\n| best variant | affine only, garment RGB |  |  |")
    d = parse_summary_markdown(md)
    assert (d["notebook"], d["profile"], d["image_size"]) == ("03_tps", "cpu", [128, 96])
    assert d["rows"] == [
        {"name": "kornia with our coefficients, max |diff|", "value": 2.82e-13, "unit": "", "note": "float64 images"},
        {"name": "kornia warp time", "value": 6513, "unit": "ms", "note": "median of 5"},
        {"name": "best variant", "value": "affine only, garment RGB", "unit": "", "note": ""}]
    with pytest.raises(ValueError, match="not a vtonlab Summary"):
        parse_summary_markdown("| a | b |")


def test_a_renamed_notebook_row_is_an_error_that_lists_the_rows(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    s = Summary("03_tps")
    s.add("something else", 1.0)
    data, metadata = DisplayFormatter().format(s)
    nb.cells = [nbformat.v4.new_code_cell("s", outputs=[nbformat.v4.new_output("execute_result", data=data,
                                                                                 metadata=metadata, execution_count=1)])]
    nbformat.write(nb, nbs / "03_tps.ipynb")
    src = rep.Sources(REPO / "data" / "checkpoints", nbs, REPO / "data" / "bench")
    with pytest.raises(KeyError, match=r"03_tps\.ipynb: 0 summary rows match .*'something else'"):
        rep.build_rows(src)
    with pytest.raises(FileNotFoundError, match=r"04_geometric_matching\.ipynb: notebook not found"):
        src.notebook("04_geometric_matching")


def test_missing_markers_are_named(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    assert _report(tmp_path, readme) == 2
    err = capsys.readouterr().err
    assert str(readme) in err and rep.BEGIN in err and rep.END in err
    assert readme.read_text() == "# no markers here\n"


def test_a_stale_notebook_is_reported(tmp_path, capsys):
    ckpts = tmp_path / "checkpoints"
    shutil.copytree(REPO / "data" / "checkpoints", ckpts, ignore=shutil.ignore_patterns("*.safetensors"))
    manifest = json.loads((ckpts / "gmm-cpu.json").read_text())
    assert rep.stale_notebooks(rep.Sources(ckpts, REPO / "notebooks", REPO / "data" / "bench")) == []
    manifest["metrics"]["test_epe_px"] += 0.5  # retrained, notebook 04 not re-executed
    (ckpts / "gmm-cpu.json").write_text(json.dumps(manifest))
    warnings = rep.stale_notebooks(rep.Sources(ckpts, REPO / "notebooks", REPO / "data" / "bench"))
    assert len(warnings) == 1 and "04_geometric_matching.ipynb" in warnings[0] and "gmm-cpu.json" in warnings[0]


def test_summary_page_of_executed_notebooks(tmp_path):
    results = tmp_path / "results"
    (results / "notebooks").mkdir(parents=True)
    for stem in ("03_tps", "04_geometric_matching", "05_metrics"):
        shutil.copy(REPO / "notebooks" / f"{stem}.ipynb", results / "notebooks")
    (results / "summary.json").write_text(json.dumps({"notebooks": {"03_tps.ipynb": {"seconds": 12.5, "status": "ok"}}}))
    readme = _readme(tmp_path)
    assert _report(tmp_path, readme) == 0
    page = (results / "summary.md").read_text()
    assert "## 03_tps (profile `cpu`, 128x96)" in page and "## 05_metrics" in page
    assert "| kornia with our coefficients, max \\|diff\\| | 2.82e-13 |  | float64 images |" in page
    assert "| 03_tps.ipynb | 12.5 | ok |" in page
    assert "| what | setting | value | measured with | source |" in page
