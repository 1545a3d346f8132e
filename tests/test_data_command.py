"""``python -m vtonlab data generate|check``: refusing non-empty folders, and catching each corruption."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from vtonlab.__main__ import main
from vtonlab.commands.data import ERROR_KINDS, WARNING_KINDS, check_dataset, parse_size
from vtonlab.data import LayoutError
from vtonlab.data import layouts as L

ARGS = ["--n-train", "4", "--n-test", "2", "--size", "64x48", "--seed", "1", "--workers", "1"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    base = tmp_path_factory.mktemp("gen")
    for layout in ("vitonhd", "dresscode"):
        assert main(["data", "generate", "--layout", layout, "--out", str(base / layout), *ARGS]) == 0
    return base


@pytest.fixture
def vcopy(generated, tmp_path):
    shutil.copytree(generated / "vitonhd", tmp_path / "v")
    return tmp_path / "v"


@pytest.fixture
def dcopy(generated, tmp_path):
    shutil.copytree(generated / "dresscode", tmp_path / "d")
    return tmp_path / "d"


def only_kind(report, kind):
    """The report has problems of ``kind`` and no other kind of error."""
    kinds = report.kinds()
    assert kinds[kind] >= 1, report.format()
    others = [k for k in kinds if k != kind and k in ERROR_KINDS]
    assert not others, report.format()
    return report.of_kind(kind)


def test_generate_writes_and_reports(generated, capsys):
    assert (generated / "vitonhd" / "train_pairs.txt").is_file()
    assert (generated / "dresscode" / "upper_body" / "test_pairs_unpaired.txt").is_file()
    top = (generated / "dresscode" / "test_pairs_paired.txt").read_text().split()
    assert top[2] == "upper_body"


def test_generate_refuses_non_empty_directory(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["data", "generate", "--out", str(out), *ARGS]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces only a folder written by `data generate` (one with a SynthVTON marker)
    assert main(["data", "generate", "--out", str(out), "--overwrite", *ARGS]) == 2
    assert "holds no SynthVTON marker" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine" and not (out / "train_pairs.txt").exists()
    (out / "keep.txt").unlink()
    assert main(["data", "generate", "--out", str(out), *ARGS]) == 0  # an empty folder is fine
    assert main(["data", "generate", "--out", str(out), "--overwrite", *ARGS]) == 0
    assert (out / "train_pairs.txt").is_file()
    assert "samples/s" in capsys.readouterr().out


def test_generate_rejects_bad_size():
    with pytest.raises(ValueError, match="--size"):
        parse_size("256by192")
    assert parse_size("256x192") == (256, 192)


@pytest.mark.parametrize("layout", ["vitonhd", "dresscode"])
def test_clean_dataset_passes(generated, layout, capsys):
    report = check_dataset(generated / layout)
    assert report.ok and not report.warnings, report.format()
    assert report.layout == layout
    assert main(["data", "check", str(generated / layout)]) == 0
    assert "OK: 0 errors, 0 warnings" in capsys.readouterr().out


def test_check_catches_missing_file(vcopy):
    (vcopy / "train" / "cloth-mask" / "00000_01.jpg").unlink()
    (probs,) = only_kind(check_dataset(vcopy), "missing_file")
    assert probs.path.endswith("cloth-mask/00000_01.jpg")


def test_check_catches_extra_file(vcopy):
    (vcopy / "train" / "image" / "99999_00.jpg").write_bytes((vcopy / "train" / "image" / "00000_00.jpg").read_bytes())
    (vcopy / "test" / "cloth" / "notes.txt").write_text("hello")
    report = check_dataset(vcopy)
    paths = [p.path for p in report.of_kind("extra_file")]
    assert any(p.endswith("99999_00.jpg") for p in paths) and any(p.endswith("notes.txt") for p in paths)
    assert report.kinds()["extra_file"] >= 2


def test_check_catches_corrupt_image(vcopy, dcopy):
    path = vcopy / "test" / "image" / "00002_00.jpg"
    path.write_bytes(path.read_bytes()[:200])
    (probs,) = only_kind(check_dataset(vcopy), "corrupt_image")
    assert probs.path.endswith("00002_00.jpg")
    (dcopy / "upper_body" / "images" / "000001_1.jpg").write_bytes(b"\xff\xd8garbage")
    assert only_kind(check_dataset(dcopy), "corrupt_image")[0].path.endswith("000001_1.jpg")


def test_check_catches_bad_labels(vcopy, dcopy):
    path = vcopy / "train" / "image-parse-v3" / "00001_01.png"
    arr = np.asarray(Image.open(path)).copy()
    arr[5, 5] = 42
    Image.fromarray(arr).save(path)
    (prob,) = only_kind(check_dataset(vcopy), "bad_labels")
    assert "[42]" in prob.message and prob.path.endswith("00001_01.png")
    path = dcopy / "upper_body" / "label_maps" / "000000_4.png"
    arr = np.asarray(Image.open(path)).copy()
    arr[0, 0] = 19  # a CIHP value, outside the ATR set
    Image.fromarray(arr).save(path)
    assert "0..17" in only_kind(check_dataset(dcopy), "bad_labels")[0].message


def test_check_catches_size_mismatch(vcopy, dcopy):
    Image.fromarray(np.full((32, 24, 3), 255, np.uint8)).save(vcopy / "train" / "cloth" / "00000_00.jpg")
    (prob,) = only_kind(check_dataset(vcopy), "size_mismatch")
    assert "24x32" in prob.message
    # Dress Code label maps may be stored downscaled, but not with another aspect ratio
    lm = dcopy / "upper_body" / "label_maps" / "000000_4.png"
    small = Image.open(lm).resize((24, 32), Image.NEAREST)
    small.save(lm)
    assert check_dataset(dcopy).ok
    Image.open(lm).resize((24, 24), Image.NEAREST).save(lm)
    assert only_kind(check_dataset(dcopy), "size_mismatch")[0].path.endswith("000000_4.png")


def test_check_catches_dangling_pairs(vcopy, dcopy):
    with open(vcopy / "test_pairs.txt", "a") as f:
        f.write("77777_00.jpg 00002_00.jpg\n")
    (prob,) = only_kind(check_dataset(vcopy), "dangling_pair")
    assert "77777_00.jpg" in prob.message and prob.path.endswith("test_pairs.txt:3")
    with open(dcopy / "upper_body" / "train_pairs.txt", "a") as f:
        f.write("000000_0.jpg 123456_1.jpg\n")
    assert "123456_1.jpg" in only_kind(check_dataset(dcopy), "dangling_pair")[0].message
    with open(vcopy / L.MPV_LIST, "a") as f:
        f.write("00000_00.jpg 55555_00.jpg 00000_00.jpg train\n")
    assert any("55555" in p.message for p in check_dataset(vcopy).of_kind("dangling_pair"))


def test_check_catches_malformed_keypoints(vcopy, dcopy):
    (vcopy / "train" / "openpose_json" / "00001_00_keypoints.json").write_text('{"people": [{"pose_keypoints_2d": [1]}]}')
    (prob,) = only_kind(check_dataset(vcopy), "bad_keypoints")
    assert "75 numbers" in prob.message
    path = dcopy / "upper_body" / "keypoints" / "000001_2.json"
    data = json.loads(path.read_text())
    data["keypoints"][0][:3] = [900.0, 10.0, 1.0]  # outside the 384x512 frame
    path.write_text(json.dumps(data))
    assert "outside" in only_kind(check_dataset(dcopy), "bad_keypoints")[0].message
    path.write_text("[")
    assert "not valid JSON" in only_kind(check_dataset(dcopy), "bad_keypoints")[0].message


def test_check_catches_bad_pair_file(vcopy):
    (vcopy / "train_pairs.txt").write_text("a.jpg\n")
    assert "expected 2 names" in only_kind(check_dataset(vcopy), "bad_pair_file")[0].message


def test_check_catches_bad_extra(vcopy):
    (vcopy / "train" / L.GT_FLOW_DIR / "00000_00.npz").write_bytes(b"PK\x03\x04broken")
    (vcopy / "test" / L.META_DIR / "00002_01.json").write_text('{"caption": 3}')
    report = check_dataset(vcopy)
    paths = [p.path for p in only_kind(report, "bad_extra")]
    assert any(p.endswith("00000_00.npz") for p in paths) and any(p.endswith("00002_01.json") for p in paths)


def test_check_command_exit_code_and_listing(vcopy, capsys):
    (vcopy / "train" / "image-parse-v3" / "00000_00.png").unlink()
    assert main(["data", "check", str(vcopy), "--max-problems", "1"]) == 1
    out = capsys.readouterr().out
    assert "missing_file (1)" in out and "FAILED: 1 errors" in out


def test_check_rejects_unknown_layout(tmp_path, capsys):
    with pytest.raises(LayoutError):
        check_dataset(tmp_path)
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "not a VITON-HD layout" in capsys.readouterr().err


def test_problem_kinds_are_documented():
    assert set(ERROR_KINDS).isdisjoint(WARNING_KINDS)
    assert {"missing_file", "corrupt_image", "bad_labels", "size_mismatch", "dangling_pair", "bad_keypoints"} <= set(
        ERROR_KINDS
    )


def test_prepare_renders_the_profile_cache(tmp_cache, capsys, monkeypatch):
    import vtonlab.profiles as profiles

    tiny = profiles.PROFILES["ci"].replace(n_train=2, n_test=2)
    monkeypatch.setitem(profiles.PROFILES, "ci", tiny)
    assert main(["data", "prepare", "--profile", "ci"]) == 0
    out = capsys.readouterr().out
    assert "2 train, 2 test samples" in out
    assert check_dataset(tmp_cache / "cache" / "synthvton-ci-vitonhd").ok
