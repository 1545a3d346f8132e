"""Tests of ``python -m vtonlab evaluate`` on small datasets written in the VITON-HD and Dress Code layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vtonlab.__main__ import main
from vtonlab.commands.evaluate import output_paths


@pytest.fixture(autouse=True)
def offline_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("VTONLAB_RESULTS_DIR", str(tmp_path / "results"))


def _picture(seed: int, h: int = 64, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.stack([np.sin(6 * xx + rng.uniform(0, 6)), np.cos(5 * yy + rng.uniform(0, 6)), xx * yy], -1)
    img = (img - img.min()) / (img.max() - img.min())
    img[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = rng.uniform(0, 1, 3)  # a "garment" block
    return (img * 255).astype(np.uint8)


def _vitonhd(root, n=6):
    (root / "test" / "image").mkdir(parents=True)
    names = [f"{i:05d}_00.jpg" for i in range(n)]
    for i, name in enumerate(names):
        Image.fromarray(_picture(i)).save(root / "test" / "image" / name, quality=95)
    (root / "test_pairs.txt").write_text("".join(f"{a} {b}\n" for a, b in zip(names, names[1:] + names[:1])))
    return names


def _copy_as_png(src_dir, names, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.open(src_dir / name).save(dst / name.replace(".jpg", ".png"))


def test_paired_perfect_results(tmp_path, capsys):
    data, pred = tmp_path / "viton", tmp_path / "pred"
    names = _vitonhd(data)
    _copy_as_png(data / "test" / "image", names, pred)  # lossless copies: the ideal result
    out = tmp_path / "eval" / "scores.md"
    assert main(["evaluate", "--pred", str(pred), "--data", str(data), "--pairs", "paired", "--out", str(out)]) == 0
    md = out.read_text()
    d = json.loads(out.with_suffix(".json").read_text())
    rows = {r["name"]: r for r in d["results"]}
    assert list(rows) == ["SSIM", "LPIPS-randalex", "FID-randconv", "KID-randconv"]
    assert rows["SSIM"]["value"] == pytest.approx(1.0, abs=1e-4)
    assert rows["LPIPS-randalex"]["value"] == 0.0
    assert abs(rows["FID-randconv"]["value"]) < 1e-3
    assert all(r["extractor"] and r["weights"] for r in d["results"])
    assert set(d["per_image"]) == set(names)
    assert "| extractor | weights |" in md and "viton-hd" in md
    assert "LPIPS-randalex" in capsys.readouterr().out


def test_unpaired_and_default_output(tmp_path):
    data, pred = tmp_path / "viton", tmp_path / "pred"
    names = _vitonhd(data)
    pred.mkdir()
    for i, name in enumerate(names):  # other images: a different distribution
        Image.fromarray(255 - _picture(100 + i)).save(pred / name)
    assert main(["evaluate", "--pred", str(pred), "--data", str(data), "--pairs", "unpaired"]) == 0
    md_path, json_path = output_paths(None, "test", "unpaired")
    assert md_path.name == "evaluate_test_unpaired.md" and md_path.is_file()
    d = json.loads(json_path.read_text())
    assert [r["name"] for r in d["results"]] == ["FID-randconv", "KID-randconv"]
    assert d["results"][0]["value"] > 0.01


def test_missing_and_extra_results_are_named(tmp_path, capsys):
    data, pred = tmp_path / "viton", tmp_path / "pred"
    names = _vitonhd(data)
    _copy_as_png(data / "test" / "image", names[1:], pred)
    Image.fromarray(_picture(50)).save(pred / "99999_00.png")
    rc = main(["evaluate", "--pred", str(pred), "--data", str(data), "--pairs", "paired"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "1 missing: 00000_00" in err and "1 not expected: 99999_00" in err


def test_corrupt_result_and_bad_data_dir_are_named(tmp_path, capsys):
    data, pred = tmp_path / "viton", tmp_path / "pred"
    names = _vitonhd(data)
    _copy_as_png(data / "test" / "image", names, pred)
    (pred / names[2].replace(".jpg", ".png")).write_bytes(b"\x89PNG broken")
    assert main(["evaluate", "--pred", str(pred), "--data", str(data), "--pairs", "paired"]) == 2
    assert f"{names[2].replace('.jpg', '.png')} cannot be read as an image" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(pred), "--data", str(tmp_path / "nowhere"), "--pairs", "paired"]) == 2
    assert "nowhere" in capsys.readouterr().err
    (data / "test" / "image" / names[0]).unlink()
    assert main(["evaluate", "--pred", str(pred), "--data", str(data), "--pairs", "paired"]) == 2
    assert names[0] in capsys.readouterr().err


def test_duplicate_stems_are_refused(tmp_path, capsys):
    data, pred = tmp_path / "viton", tmp_path / "pred"
    names = _vitonhd(data)
    _copy_as_png(data / "test" / "image", names, pred)
    Image.fromarray(_picture(0)).save(pred / names[0])  # 00000_00.jpg next to 00000_00.png
    assert main(["evaluate", "--pred", str(pred), "--data", str(data), "--pairs", "paired"]) == 2
    assert "two results for '00000_00'" in capsys.readouterr().err


def test_dresscode_layout_with_category_subfolders(tmp_path):
    data, pred = tmp_path / "dc", tmp_path / "pred"
    for k, cat in enumerate(("upper_body", "dresses")):
        (data / cat / "images").mkdir(parents=True)
        ids = [f"{k}{i:05d}" for i in range(3)]
        for i, sid in enumerate(ids):
            Image.fromarray(_picture(10 * k + i)).save(data / cat / "images" / f"{sid}_0.jpg")
            Image.fromarray(_picture(90 + i)).save(data / cat / "images" / f"{sid}_1.jpg")
        (data / cat / "test_pairs_paired.txt").write_text("".join(f"{s}_0.jpg {s}_1.jpg\n" for s in ids))
        _copy_as_png(data / cat / "images", [f"{s}_0.jpg" for s in ids], pred / cat)
    out = tmp_path / "dc_eval.json"
    assert main(["evaluate", "--pred", str(pred), "--data", str(data), "--pairs", "paired", "--out", str(out),
                 "--kid-subset-size", "4"]) == 0
    d = json.loads(out.read_text())
    assert len(d["per_image"]) == 6 and d["results"][0]["value"] == pytest.approx(1.0, abs=1e-4)
    assert "dresscode" in d["title"] and "4 subsets" not in d["results"][-1]["note"]
    assert "subsets of 4" in d["results"][-1]["note"]
    assert (tmp_path / "dc_eval.md").is_file()
