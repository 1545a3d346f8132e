"""Odd and careless inputs: each is an error (or a warning) that names the file, option or variable at fault.

Mixed-size results, COCO-18 keypoints in a BODY_25 dataset, empty and non-UTF-8 pair files, a result
folder that is the ground truth, bad numeric options, an empty profile name, Dress Code root pair
entries without their category, and gt-flow files that declare huge arrays.
"""

from __future__ import annotations

import json
import shutil
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
import torch
from numpy.lib import format as npy_format
from PIL import Image

from vtonlab.__main__ import main
from vtonlab.commands.data import check_dataset
from vtonlab.data import DressCodeDataset, LayoutError, VitonHDDataset
from vtonlab.data import datasets as D
from vtonlab.data import layouts as L
from vtonlab.data.labels import body25_to_coco18
from vtonlab.metrics import evaluate_tryon
from vtonlab.metrics.features import fid_features
from vtonlab.profiles import ENV_VAR, profile_name

SIZE = (64, 48)


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("VTONLAB_RESULTS_DIR", str(tmp_path / "results"))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """SynthVTON (2 train + 2 test, 64x48) in both layouts."""
    base = tmp_path_factory.mktemp("synth")
    for layout in ("vitonhd", "dresscode"):
        D.write_synthvton(base / layout, layout, 2, 2, seed=5, size=SIZE, workers=1, progress=False)
    return base


@pytest.fixture
def vroot(written, tmp_path):
    shutil.copytree(written / "vitonhd", tmp_path / "v")
    return tmp_path / "v"


@pytest.fixture
def droot(written, tmp_path):
    shutil.copytree(written / "dresscode", tmp_path / "d")
    return tmp_path / "d"


def _picture(seed: int, h: int = 64, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 1, (h // 8, w // 8, 3)).repeat(8, 0).repeat(8, 1)
    return (img * 255).astype(np.uint8)


def _eval_data(root, n: int = 4) -> list[str]:
    """A VITON-HD test split of ``n`` person images (no other files: evaluate needs none)."""
    (root / "test" / "image").mkdir(parents=True)
    names = [f"{i:05d}_00.jpg" for i in range(n)]
    for i, name in enumerate(names):
        Image.fromarray(_picture(i)).save(root / "test" / "image" / name, quality=95)
    (root / "test_pairs.txt").write_text("".join(f"{a} {a}\n" for a in names))
    return names


def _results(names, pred, sizes=None) -> None:
    pred.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        h, w = (sizes or {}).get(name, SIZE)
        Image.fromarray(255 - _picture(50 + i, h, w)).save(pred / name.replace(".jpg", ".png"))


def _evaluate(pred, data, *extra) -> list[str]:
    return ["evaluate", "--pred", str(pred), "--data", str(data), "--pairs", "paired", *extra]


# ----------------------------------------------------------------------------------------------
# item 4: mixed-size results
# ----------------------------------------------------------------------------------------------


def test_mixed_size_results_are_an_error_naming_the_odd_file(tmp_path, capsys):
    data, pred = tmp_path / "viton", tmp_path / "pred"
    names = _eval_data(data)
    _results(names, pred, sizes={names[2]: (32, 24)})  # one 32x24 file among 64x48 results
    assert main(_evaluate(pred, data)) == 2
    err = capsys.readouterr().err
    assert "00002_00.png is 32x24" in err and "expected 64x48 (H x W" in err and "3 of the 4 results" in err
    assert not (tmp_path / "results").exists()  # nothing written


def test_protocol_refuses_mixed_size_predictions(tmp_path):
    gt = {f"p{i}": torch.rand(3, 64, 48) for i in range(3)}
    pred = {k: v.clone() for k, v in gt.items()}
    pred["p1"] = torch.rand(3, 32, 24)
    with pytest.raises(ValueError, match=r"prediction 'p1' is 32x24 \(H x W\), expected 64x48"):
        evaluate_tryon(pred, gt, "unpaired", features=fid_features("randconv"), kid_subset_size=2)


# ----------------------------------------------------------------------------------------------
# item 5: COCO-18 keypoints in a BODY_25 dataset
# ----------------------------------------------------------------------------------------------


def _to_coco18(path) -> np.ndarray:
    """Rewrite a BODY_25 OpenPose file with the 54 values of its COCO-18 keypoints; returns them (18, 3)."""
    data = json.loads(path.read_text())
    kp = body25_to_coco18(np.asarray(data["people"][0]["pose_keypoints_2d"], dtype=np.float32))
    data["people"][0]["pose_keypoints_2d"] = kp.reshape(-1).tolist()
    path.write_text(json.dumps(data))
    return kp


def test_coco18_keypoints_warn_unless_declared(vroot):
    path = vroot / "train" / "openpose_json" / "00000_00_keypoints.json"
    body25 = L.read_openpose_json(path)
    kp = _to_coco18(path)
    with pytest.warns(L.KeypointFormatWarning, match=r"00000_00_keypoints\.json: .*54 values.*BODY_25 with 75 values"):
        got = L.read_openpose_json(path)
    assert np.array_equal(got, kp) and np.allclose(got, body25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(L.read_openpose_json(path, keypoint_format="coco18"), kp)
        sample = VitonHDDataset(vroot, "train", size=SIZE, keypoint_format="coco18")[0]
    assert np.allclose(sample["pose_keypoints"].numpy(), kp, atol=1e-4)  # same size: no rescaling
    with pytest.warns(L.KeypointFormatWarning, match=r"00000_00_keypoints\.json"):
        VitonHDDataset(vroot, "train", size=SIZE)[0]
    other = vroot / "train" / "openpose_json" / "00000_01_keypoints.json"  # still BODY_25: 75 values
    with pytest.raises(LayoutError, match=r"00000_01_keypoints\.json: pose_keypoints_2d must hold 54 numbers"):
        L.read_openpose_json(other, keypoint_format="coco18")
    data = json.loads(other.read_text())
    data["people"][0]["pose_keypoints_2d"] = [1.0] * 60
    other.write_text(json.dumps(data))
    with pytest.raises(LayoutError, match=r"00000_01_keypoints\.json: .*75 numbers .*got shape \(60,\)"):
        L.read_openpose_json(other)
    with pytest.raises(ValueError, match="keypoint_format"):
        VitonHDDataset(vroot, "train", size=SIZE, keypoint_format="openpose")


def test_check_reports_coco18_keypoints_and_accepts_them_when_declared(vroot, capsys):
    one = vroot / "test" / "openpose_json" / "00001_00_keypoints.json"
    _to_coco18(one)
    report = check_dataset(vroot)
    (prob,) = report.of_kind("keypoint_format")
    assert prob.path == str(one) and "BODY_25 with 75 values" in prob.message and "--keypoints coco18" in prob.message
    assert not report.ok
    assert main(["data", "check", str(vroot)]) == 1
    assert "keypoint_format (1)" in capsys.readouterr().out
    for path in sorted(vroot.glob("*/openpose_json/*.json")):
        if path != one:
            _to_coco18(path)
    assert len(check_dataset(vroot).of_kind("keypoint_format")) == 4
    assert check_dataset(vroot, keypoints="coco18").ok
    assert main(["data", "check", str(vroot), "--keypoints", "coco18"]) == 0
    assert "OK: 0 errors" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# item 6: empty pair files, results that are the ground truth
# ----------------------------------------------------------------------------------------------


def test_empty_pair_file_is_an_error(vroot, droot, capsys):
    (vroot / "train_pairs.txt").write_text("\n  \n")
    with pytest.raises(LayoutError, match=r"train_pairs\.txt: pair file lists no pairs"):
        VitonHDDataset(vroot, "train", size=SIZE)
    probs = check_dataset(vroot).of_kind("bad_pair_file")
    assert [p.path for p in probs] == [str(vroot / "train_pairs.txt")] and "lists no pairs" in probs[0].message
    assert main(["data", "check", str(vroot)]) == 1
    (droot / "upper_body" / "test_pairs_paired.txt").write_text("")
    with pytest.raises(LayoutError, match=r"upper_body/test_pairs_paired\.txt: pair file lists no pairs"):
        DressCodeDataset(droot, split="test", size=SIZE)
    assert any(p.path.endswith("upper_body/test_pairs_paired.txt") for p in check_dataset(droot).of_kind("bad_pair_file"))


def test_test_only_synthvton_still_passes_the_check(tmp_path):
    root = tmp_path / "d"
    D.write_synthvton(root, "dresscode", 0, 2, seed=1, size=(32, 24), workers=1, progress=False)
    assert (root / "train_pairs.txt").read_text() == ""  # rendered empty on purpose (n_train 0)
    report = check_dataset(root)
    assert report.ok, report.format()


def test_prediction_folder_equal_to_ground_truth_is_refused(tmp_path, capsys):
    data = tmp_path / "viton"
    names = _eval_data(data)
    gt_dir = data / "test" / "image"
    assert main(_evaluate(gt_dir, data)) == 2
    err = capsys.readouterr().err
    assert "4 of the 4 results are the ground-truth files themselves" in err and "--allow-identical" in err
    copy = tmp_path / "copy"
    shutil.copytree(gt_dir, copy)  # byte-identical copies
    assert main(_evaluate(copy, data)) == 2
    assert "has the same bytes as" in capsys.readouterr().err
    out = tmp_path / "eval.json"
    assert main(_evaluate(gt_dir, data, "--allow-identical", "--out", str(out), "--kid-subset-size", "2")) == 0
    d = json.loads(out.read_text())
    assert d["results"][0]["name"] == "SSIM" and d["results"][0]["value"] == pytest.approx(1.0, abs=1e-6)
    assert any("byte-identical" in n for n in d["notes"]), d["notes"]
    assert "scored anyway" in capsys.readouterr().err
    assert len(names) == 4


# ----------------------------------------------------------------------------------------------
# item 7: errors that name the file, option or variable
# ----------------------------------------------------------------------------------------------


def test_non_utf8_pair_file_is_named(vroot, tmp_path, capsys):
    pair_file = vroot / "train_pairs.txt"
    pair_file.write_bytes(pair_file.read_bytes() + b"caf\xe9_00.jpg caf\xe9_00.jpg\n")
    with pytest.raises(LayoutError, match=r"train_pairs\.txt:3: pair file is not UTF-8 text \(byte 0xe9"):
        VitonHDDataset(vroot, "train", size=SIZE)
    (prob,) = check_dataset(vroot).of_kind("bad_pair_file")
    assert prob.path == f"{pair_file}:3" and prob.message.startswith("pair file is not UTF-8 text (byte 0xe9")
    data, pred = tmp_path / "viton", tmp_path / "pred"
    names = _eval_data(data)
    _results(names, pred)
    (data / "test_pairs.txt").write_bytes(b"\xff\xfe0\x000\x00")  # UTF-16
    assert main(_evaluate(pred, data)) == 2
    assert "test_pairs.txt:1: pair file is not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, expected", [
    ("--kid-subset-size", "0", "--kid-subset-size: expected an integer >= 2, got 0"),
    ("--kid-subset-size", "1", "--kid-subset-size: expected an integer >= 2, got 1"),
    ("--batch-size", "0", "--batch-size: expected an integer >= 1, got 0"),
    ("--seed", "-1", "--seed: expected an integer >= 0, got -1"),
])
def test_numeric_options_are_checked_before_anything_else(tmp_path, capsys, option, value, expected):
    # --data does not exist: the option must be named first, before any file is read
    # (no wall-clock limit: a loaded 2-core machine makes one flaky; the missing --data proves the order)
    assert main(_evaluate(tmp_path / "pred", tmp_path / "nowhere", option, value)) == 2
    assert expected in capsys.readouterr().err


def test_protocol_checks_kid_subset_size_before_reading_images():
    class Untouchable(dict):
        def __getitem__(self, key):
            raise AssertionError("an image was read before the options were checked")

    images = Untouchable({"a": None, "b": None})
    with pytest.raises(ValueError, match=r"kid_subset_size: expected an integer >= 2, got 0"):
        evaluate_tryon(images, images, "paired", kid_subset_size=0)


def test_out_that_is_a_directory_is_refused(tmp_path, capsys):
    assert main(_evaluate(tmp_path / "pred", tmp_path / "nowhere", "--out", str(tmp_path))) == 2
    assert "is a directory; expected a file name" in capsys.readouterr().err


def test_empty_profile_name_is_an_error(monkeypatch, capsys):
    with pytest.raises(ValueError, match=r"empty profile name from argument --profile.*expected one of ci, cpu, gpu, auto"):
        profile_name("")
    with pytest.raises(ValueError, match="empty profile name"):
        profile_name("  ")
    assert main(["profile", ""]) == 2
    assert "empty profile name" in capsys.readouterr().err
    monkeypatch.setenv(ENV_VAR, "")
    with pytest.raises(ValueError, match=rf"empty profile name from environment variable {ENV_VAR}.*unset {ENV_VAR}"):
        profile_name()
    monkeypatch.delenv(ENV_VAR)
    assert profile_name() in ("cpu", "gpu")  # unset: auto
    assert profile_name("CI") == "ci"


def test_dresscode_root_pair_entry_without_category_is_named(droot, tmp_path, capsys):
    top = droot / "test_pairs_paired.txt"
    lines = top.read_text().splitlines()
    top.write_text("\n".join(lines[:1] + [" ".join(lines[1].split()[:2])]) + "\n")  # line 2 loses its category
    probs = check_dataset(droot).of_kind("bad_pair_file")
    assert len(probs) == 1 and probs[0].path == f"{top}:2"
    assert probs[0].message.startswith("expected 3 names per line '<person> <cloth> <category>'")
    # evaluate reads the root file when no category folder has one
    data, pred = tmp_path / "dc", tmp_path / "pred"
    (data / "upper_body" / "images").mkdir(parents=True)
    ids = ["000000", "000001", "000002"]
    for i, sid in enumerate(ids):
        Image.fromarray(_picture(i)).save(data / "upper_body" / "images" / f"{sid}_0.jpg")
    (data / "test_pairs_paired.txt").write_text("000000_0.jpg 000000_1.jpg upper_body\n000001_0.jpg 000001_1.jpg\n")
    _results([f"{s}_0.jpg" for s in ids[:2]], pred)
    assert main(_evaluate(pred, data)) == 2
    err = capsys.readouterr().err
    assert "test_pairs_paired.txt:2: expected 3 names per line '<person> <cloth> <category>'" in err
    (data / "test_pairs_paired.txt").write_text("000000_0.jpg 000000_1.jpg 0\n000001_0.jpg 000001_1.jpg shoes\n")
    assert main(_evaluate(pred, data)) == 2
    assert "test_pairs_paired.txt:2: unknown category 'shoes'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# item 9: gt-flow headers are read before the data
# ----------------------------------------------------------------------------------------------


def _npz_with_headers(path, arrays) -> None:
    """An npz whose members declare ``arrays`` (name -> (shape, dtype)) but hold only 64 bytes of data."""
    path.unlink(missing_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (shape, dtype) in arrays.items():
            with z.open(f"{name}.npy", "w") as fp:
                header = {"descr": npy_format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
                npy_format.write_array_header_1_0(fp, header)
                fp.write(b"\0" * 64)


def test_check_reads_the_flow_header_before_the_data(vroot):
    flow = vroot / "train" / L.GT_FLOW_DIR / "00000_00.npz"
    huge = (20000, 15000)  # 1.2 GB of float16 flow (and 0.3 GB of mask) if it were read
    _npz_with_headers(flow, {"flow": ((*huge, 2), "float16"), "mask": (huge, "uint8")})
    assert flow.stat().st_size < 2000
    tracemalloc.start()
    try:
        start = time.perf_counter()
        report = check_dataset(vroot)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (prob,) = report.of_kind("size_mismatch")
    assert prob.path == str(flow) and "(20000, 15000)" in prob.message and "data not read" in prob.message
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert elapsed < 30
    with pytest.raises(LayoutError, match=r"00000_00\.npz: flow is 15000x20000 \(W x H\), person image 48x64"):
        L.read_gt_flow(flow, SIZE)
    # right size, wrong content: the header passes, the data read fails and is named
    _npz_with_headers(flow, {"flow": ((*SIZE, 2), "float16"), "mask": (SIZE, "uint8")})
    (prob,) = check_dataset(vroot).of_kind("bad_extra")
    assert prob.path == str(flow) and "cannot read ground-truth flow" in prob.message


def test_flow_header_refuses_object_arrays_and_wrong_shapes(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, flow=np.array([{"a": 1}] * 4, dtype=object).reshape(2, 1, 2), mask=np.zeros((2, 1), np.uint8))
    with pytest.raises(LayoutError, match=r"f\.npz: expected a float flow .* got object and uint8"):
        L.read_gt_flow(path)
    np.savez(path, flow=np.zeros((4, 3), np.float16), mask=np.zeros((4, 3), np.uint8))
    with pytest.raises(LayoutError, match=r"f\.npz: expected flow \(H, W, 2\) and mask \(H, W\), got \(4, 3\)"):
        L.read_gt_flow(path)
    np.savez(path, flow=np.zeros((4, 3, 2), np.float16))
    with pytest.raises(LayoutError, match=r"f\.npz: ground-truth flow file has no 'mask' array"):
        L.read_gt_flow(path)
    np.savez(path, flow=np.full((4, 3, 2), 0.5, np.float16), mask=np.ones((4, 3), np.uint8))
    flow, mask = L.read_gt_flow(path, (4, 3))
    assert flow.dtype == np.float32 and flow.shape == (4, 3, 2) and (flow == 0.5).all() and mask.sum() == 12
