"""Round trips through the VITON-HD / Dress Code / MPV layouts, the readers, and their errors.

JPEG tolerance (quality 95, SynthVTON at 64x48, measured by ``test_vitonhd_roundtrip``): person and
garment images come back within a mean absolute error of about 1 grey level (asserted < 3 of 255);
parsing, keypoints (< 1e-3 px) and flow (float16, < 1e-3) come back exactly or nearly so.
"""

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from vtonlab.data import DressCodeDataset, LayoutError, MultiPoseDataset, VitonHDDataset, synthvton
from vtonlab.data import datasets as D
from vtonlab.data import layouts as L
from vtonlab.data.labels import CIHP, cihp_roundtrip_through_atr
from vtonlab.data.synth import render_group
from vtonlab.profiles import get_profile

SIZE = (64, 48)
N_TRAIN, N_TEST = 4, 4


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """SynthVTON (4 train + 4 test, 64x48) written in both layouts."""
    base = tmp_path_factory.mktemp("synth")
    roots = {}
    for layout in ("vitonhd", "dresscode"):
        roots[layout] = base / layout
        D.write_synthvton(roots[layout], layout, N_TRAIN, N_TEST, seed=3, size=SIZE, workers=1, progress=False)
    return roots


def rendered(group, pose, seed=3):
    return render_group(D.group_seed(seed, group), n_poses=2, size=SIZE)[pose]


def mean_abs(a, b):
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def to_u8(x):
    return ((x.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def test_vitonhd_files_follow_the_layout(written):
    root = written["vitonhd"]
    assert (root / "train_pairs.txt").read_text().splitlines()[0] == "00000_00.jpg 00000_00.jpg"
    for kind, (folder, suffix) in L.VITONHD_FOLDERS.items():
        assert (root / "train" / folder / f"00000_00{suffix}").is_file(), kind
    parse = Image.open(root / "train" / "image-parse-v3" / "00000_00.png")
    assert parse.mode == "P"
    pose = json.loads((root / "train" / "openpose_json" / "00000_00_keypoints.json").read_text())
    kp = np.array(pose["people"][0]["pose_keypoints_2d"]).reshape(25, 3)
    assert kp.shape == (25, 3)
    if kp[9, 2] > 0 and kp[12, 2] > 0:  # MidHip = mean of the hips
        assert np.allclose(kp[8, :2], (kp[9, :2] + kp[12, :2]) / 2, atol=2e-3)
    assert (kp[19:] == 0).all()
    assert (root / "train" / L.GT_FLOW_DIR / "00000_00.npz").is_file()
    assert json.loads((root / L.SYNTH_MARKER).read_text())["params"]["size"] == list(SIZE)


def test_vitonhd_roundtrip(written):
    ds = VitonHDDataset(written["vitonhd"], "train", size=SIZE)
    assert len(ds) == N_TRAIN
    errs = []
    for i, (group, pose) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        ref, got = rendered(group, pose), ds[i]
        assert got["im_name"] == f"{group:05d}_{pose:02d}.jpg" == got["c_name"]
        errs += [mean_abs(to_u8(got["image"]), ref["image"]), mean_abs(to_u8(got["cloth"]), ref["cloth"])]
        assert torch.equal(got["parse"], torch.from_numpy(ref["parse"].astype(np.int64)))
        assert np.abs(got["pose_keypoints"].numpy() - ref["keypoints"]).max() < 1e-3
        assert (got["cloth_mask"][0].numpy() != ref["cloth_mask"]).mean() < 0.01
        assert torch.equal(got["gt_flow_mask"][0], torch.from_numpy(ref["gt_flow_mask"]).float())
        assert np.abs(got["gt_flow"].numpy() - ref["gt_flow"] * ref["gt_flow_mask"][..., None]).max() < 1e-3
        assert got["caption"] == ref["caption"] and got["attributes"] == {k: str(v) for k, v in ref["attributes"].items()}
    assert max(errs) < 3.0, errs


def test_dresscode_roundtrip(written, tmp_path):
    root = written["dresscode"]
    ds = DressCodeDataset(root, "upper_body", "train", size=SIZE)
    kp_file = json.loads((root / "upper_body" / "keypoints" / "000000_2.json").read_text())["keypoints"]
    ref = rendered(0, 0)
    present = ref["keypoints"][:, 2] > 0
    frame = np.array(kp_file)[:, :2]
    # 384x512 frame: x' = (x + 0.5) * 384 / 48 - 0.5
    assert np.allclose(frame[present, 0], (ref["keypoints"][present, 0] + 0.5) * 8 - 0.5, atol=2e-3)
    assert [k[3] for k in kp_file] == list(range(18))
    got = ds[0]
    assert got["im_name"] == "000000_0.jpg" and got["c_name"] == "000000_1.jpg"
    assert torch.equal(got["parse"], torch.from_numpy(cihp_roundtrip_through_atr(ref["parse"]).astype(np.int64)))
    assert np.abs(got["pose_keypoints"].numpy() - ref["keypoints"]).max() < 1e-3
    assert mean_abs(to_u8(got["image"]), ref["image"]) < 3.0
    assert "gt_flow" in got
    # without cloth_mask/ (real Dress Code has none) the mask is estimated from the white background
    copy = tmp_path / "dc"
    shutil.copytree(root, copy)
    shutil.rmtree(copy / "upper_body" / L.DRESSCODE_CLOTH_MASK_DIR)
    est = DressCodeDataset(copy, "upper_body", "train", size=SIZE)[0]["cloth_mask"][0].numpy()
    iou = (est * ref["cloth_mask"]).sum() / np.maximum(est, ref["cloth_mask"]).sum()
    assert iou > 0.9


def test_paired_and_unpaired_test_pairs(written):
    for layout, make in (
        ("vitonhd", lambda pairs: VitonHDDataset(written["vitonhd"], "test", pairs, SIZE)),
        ("dresscode", lambda pairs: DressCodeDataset(written["dresscode"], "upper_body", "test", pairs, SIZE)),
    ):
        paired, unpaired = make("paired"), make("unpaired")
        assert len(paired) == len(unpaired) == N_TEST
        for (pi, pc), (ui, uc) in zip(paired.pairs, unpaired.pairs, strict=True):
            assert pi == ui and L.stem_of(pc)[:5] == L.stem_of(pi)[:5]
            assert L.stem_of(uc)[:5] != L.stem_of(ui)[:5], layout  # another group's garment
        s = unpaired[0]
        assert "gt_flow" not in s  # the flow maps the person to their own garment only
        assert "gt_flow" in paired[0]


def test_vitonhd_paired_ignores_second_column(written, tmp_path):
    root = tmp_path / "v"
    shutil.copytree(written["vitonhd"], root)
    lines = (root / "test_pairs.txt").read_text().splitlines()
    assert lines[0].split()[0] != lines[0].split()[1]  # test_pairs.txt holds the unpaired garment
    assert VitonHDDataset(root, "test", "paired", SIZE).pairs[0] == (lines[0].split()[0],) * 2


def test_resized_reading_is_consistent(written):
    big = VitonHDDataset(written["vitonhd"], "train", size=(128, 96))[0]
    small = VitonHDDataset(written["vitonhd"], "train", size=SIZE)[0]
    assert big["image"].shape == (3, 128, 96) and big["parse"].shape == (128, 96)
    assert set(big["parse"].unique().tolist()) <= set(small["parse"].unique().tolist())
    k = small["pose_keypoints"][:, 2] > 0
    assert torch.allclose(big["pose_keypoints"][k, :2], (small["pose_keypoints"][k, :2] + 0.5) * 2 - 0.5, atol=1e-3)
    assert big["gt_flow"].shape == (128, 96, 2)
    assert abs(big["gt_flow_mask"].sum() / 4 - small["gt_flow_mask"].sum()) < 0.1 * small["gt_flow_mask"].sum()


def test_multipose_and_mpv_list(written):
    rows = L.read_mpv_list(written["vitonhd"] / L.MPV_LIST)
    assert ("00000_00.jpg", "00000_01.jpg", "00000_00.jpg", "train") in rows
    assert len(rows) == 2 * (N_TRAIN + N_TEST) // 2  # two ordered pairs per group of two
    ds = MultiPoseDataset(written["vitonhd"], "train", SIZE)
    item = ds[0]
    assert item["source"]["c_name"] == item["target"]["c_name"]
    assert not torch.equal(item["source"]["pose_keypoints"], item["target"]["pose_keypoints"])
    dc = MultiPoseDataset(written["dresscode"], "test", SIZE)
    assert len(dc) == N_TEST and dc[0]["source"]["im_name"].endswith("_0.jpg")


def test_samples_collate(written):
    ds = VitonHDDataset(written["vitonhd"], "train", size=SIZE, pose_style="ladi")
    batch = default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, *SIZE) and batch["pose_map"].shape == (2, 18, *SIZE)
    assert batch["im_name"] == ["00000_00.jpg", "00000_01.jpg"]
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1
    assert set(batch["inpaint_mask"].unique().tolist()) <= {0.0, 1.0}


def test_layout_detection(written, tmp_path):
    assert L.detect_layout(written["vitonhd"]) == "vitonhd"
    assert L.detect_layout(written["dresscode"]) == "dresscode"
    with pytest.raises(LayoutError, match="not a VITON-HD layout"):
        L.detect_layout(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        L.detect_layout(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# bad input: every error names the file (or argument) and what was expected
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def vroot(written, tmp_path):
    root = tmp_path / "v"
    shutil.copytree(written["vitonhd"], root)
    return root


def test_missing_files_are_named(vroot):
    ds = VitonHDDataset(vroot, "train", size=SIZE)
    os.remove(vroot / "train" / "cloth-mask" / "00000_00.jpg")
    with pytest.raises(FileNotFoundError, match=r"cloth-mask/00000_00\.jpg.*garment mask not found"):
        ds[0]
    os.remove(vroot / "test_pairs.txt")
    with pytest.raises(FileNotFoundError, match=r"test_pairs\.txt: pair file not found"):
        VitonHDDataset(vroot, "test", size=SIZE)
    with pytest.raises(FileNotFoundError, match="dataset root"):
        VitonHDDataset(vroot / "missing")


def test_corrupt_image_is_named(vroot):
    path = vroot / "train" / "image" / "00000_01.jpg"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])  # truncated JPEG
    with pytest.raises(LayoutError, match=r"image/00000_01\.jpg: cannot read person image"):
        VitonHDDataset(vroot, "train", size=SIZE)[1]
    (vroot / "train" / "cloth" / "00001_00.jpg").write_text("not a jpeg")
    with pytest.raises(LayoutError, match=r"cloth/00001_00\.jpg: cannot read in-shop garment"):
        VitonHDDataset(vroot, "train", size=SIZE)[2]


def test_wrong_label_map_is_named(vroot):
    path = vroot / "train" / "image-parse-v3" / "00000_00.png"
    bad = np.asarray(Image.open(path)).copy()
    bad[0, 0] = 23
    Image.fromarray(bad).save(path)
    with pytest.raises(LayoutError, match=r"image-parse-v3/00000_00\.png: label values \[23\] outside .* 0\.\.19"):
        VitonHDDataset(vroot, "train", size=SIZE)[0]
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(path)  # an RGB PNG is not a label map
    with pytest.raises(LayoutError, match=r"00000_00\.png: .*palette \(P\) or greyscale \(L\).*got image mode RGB"):
        VitonHDDataset(vroot, "train", size=SIZE)[0]


def test_dresscode_label_outside_atr_is_named(written, tmp_path):
    root = tmp_path / "d"
    shutil.copytree(written["dresscode"], root)
    path = root / "upper_body" / "label_maps" / "000000_4.png"
    bad = np.asarray(Image.open(path)).copy()
    bad[3, 3] = 18  # valid CIHP, invalid ATR
    Image.fromarray(bad).save(path)
    with pytest.raises(LayoutError, match=r"000000_4\.png: label values \[18\] outside .* 0\.\.17"):
        DressCodeDataset(root, size=SIZE)[0]


def test_malformed_keypoints_are_named(vroot, tmp_path):
    path = vroot / "train" / "openpose_json" / "00000_00_keypoints.json"
    path.write_text('{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}')
    with pytest.raises(LayoutError, match=r"00000_00_keypoints\.json: pose_keypoints_2d must hold 75 numbers"):
        VitonHDDataset(vroot, "train", size=SIZE)[0]
    path.write_text("{not json")
    with pytest.raises(LayoutError, match=r"00000_00_keypoints\.json: OpenPose keypoint file is not valid JSON"):
        L.read_openpose_json(path)
    dc = tmp_path / "kp.json"
    dc.write_text(json.dumps({"keypoints": [[1, 2, 1, i] for i in range(17)]}))
    with pytest.raises(LayoutError, match=r"kp\.json: 'keypoints' must be 18 lists"):
        L.read_dresscode_keypoints(dc)
    dc.write_text(json.dumps({"keypoints": [[1, 2, 1, 17 - i] for i in range(18)]}))
    with pytest.raises(LayoutError, match=r"kp\.json: keypoint ids"):
        L.read_dresscode_keypoints(dc)
    path.write_text(json.dumps({"people": []}))  # no person detected: all missing, not an error
    assert (L.read_openpose_json(path) == 0).all()


def test_malformed_pair_file_is_named(vroot):
    with open(vroot / "train_pairs.txt", "a") as f:
        f.write("a.jpg b.jpg c.jpg\n")
    with pytest.raises(LayoutError, match=r"train_pairs\.txt:5: expected 2 names per line, got 3"):
        VitonHDDataset(vroot, "train", size=SIZE)


def test_mismatched_arguments_are_named(written):
    with pytest.raises(ValueError, match="split"):
        VitonHDDataset(written["vitonhd"], "val")
    with pytest.raises(ValueError, match="pairs"):
        VitonHDDataset(written["vitonhd"], "test", "mixed")
    with pytest.raises(ValueError, match="size"):
        VitonHDDataset(written["vitonhd"], size=(4, 3))
    with pytest.raises(ValueError, match="category"):
        DressCodeDataset(written["dresscode"], "shoes")
    with pytest.raises(ValueError, match="pose_style"):
        VitonHDDataset(written["vitonhd"], pose_style="heat")
    with pytest.raises(FileNotFoundError, match=r"lower_body/train_pairs\.txt"):
        DressCodeDataset(written["dresscode"], "lower_body")


def test_garment_mask_size_mismatch_is_named(vroot):
    Image.fromarray(np.zeros((32, 24), np.uint8)).save(vroot / "train" / "cloth-mask" / "00000_00.jpg")
    with pytest.raises(ValueError, match=r"00000_00\.jpg: garment mask size \(32, 24\) differs"):
        VitonHDDataset(vroot, "train", size=SIZE)[0]


# ---------------------------------------------------------------------------------------------
# synthvton(): cache, marker, atomic render
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_profile(tmp_cache):
    return get_profile("ci").replace(n_train=4, n_test=2, image_size=SIZE)


def test_synthvton_renders_once_into_the_cache(tiny_profile, tmp_cache):
    ds = synthvton("train", tiny_profile, progress=False)
    assert isinstance(ds, VitonHDDataset) and len(ds) == 4
    assert ds.root == tmp_cache / "cache" / "synthvton-ci-vitonhd"
    marker = ds.root / L.SYNTH_MARKER
    stamp = marker.stat().st_mtime_ns
    test = synthvton("test", tiny_profile, pairs="unpaired", progress=False)
    assert len(test) == 2 and marker.stat().st_mtime_ns == stamp  # not re-rendered
    assert ds[0]["image"].shape == (3, *SIZE)
    dc = synthvton("train", tiny_profile, layout="dresscode", progress=False)
    assert isinstance(dc, DressCodeDataset) and len(dc) == 4


def test_synthvton_rerenders_when_parameters_change(tiny_profile):
    ds = synthvton("train", tiny_profile, progress=False)
    more = synthvton("train", tiny_profile.replace(n_train=6), progress=False)
    assert more.root == ds.root and len(more) == 6
    assert D.read_marker(more.root)["n_train"] == 6


def test_interrupted_render_is_not_taken_as_complete(tiny_profile, monkeypatch):
    root = D.synthvton_root(tiny_profile)
    calls = {"n": 0}
    real = D._render_and_write

    def flaky(job):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated interruption")
        return real(job)

    monkeypatch.setattr(D, "_render_and_write", flaky)
    with pytest.raises(KeyboardInterrupt):
        synthvton("train", tiny_profile, workers=1, progress=False)
    assert not root.exists()  # nothing half-written in place
    assert not any(p.name.startswith(f".{root.name}.tmp") for p in root.parent.iterdir())
    # a folder without a marker (e.g. copied by hand, or from an older version) is replaced
    root.mkdir(parents=True)
    (root / "junk.txt").write_text("x")
    monkeypatch.setattr(D, "_render_and_write", real)
    ds = synthvton("train", tiny_profile, workers=1, progress=False)
    assert len(ds) == 4 and not (root / "junk.txt").exists()


def test_write_synthvton_refuses_non_empty_and_bad_arguments(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("1")
    with pytest.raises(FileExistsError, match="not empty"):
        D.write_synthvton(tmp_path / "x", n_train=2, n_test=2, size=SIZE)
    with pytest.raises(ValueError, match="layout"):
        D.write_synthvton(tmp_path / "y", layout="mpv", size=SIZE)
    with pytest.raises(ValueError, match="n_poses"):
        D.write_synthvton(tmp_path / "y", n_poses=11, size=SIZE)


def test_two_workers_write_the_same_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    D.write_synthvton(a, "vitonhd", 4, 2, seed=5, size=SIZE, workers=1, progress=False)
    D.write_synthvton(b, "vitonhd", 4, 2, seed=5, size=SIZE, workers=2, progress=False)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        if rel.suffix in (".txt", ".jpg", ".png"):
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_sample_from_render_matches_reader(written):
    ref = rendered(0, 0)
    direct = D.sample_from_render(ref, im_name="00000_00.jpg", c_name="00000_00.jpg")
    read = VitonHDDataset(written["vitonhd"], "train", size=SIZE)[0]
    assert torch.equal(direct["parse"], read["parse"])
    assert torch.allclose(direct["pose_map"], read["pose_map"])
    assert (direct["worn_mask"] == read["worn_mask"]).all()
    assert direct["worn_mask"].sum() == (ref["parse"] == CIHP["upper_clothes"]).sum() + (
        np.isin(ref["parse"], [CIHP["dress"], CIHP["coat"]])
    ).sum()


@pytest.mark.parametrize("new_size", [(128, 96), (32, 24)])
def test_flow_resampling_is_exact_for_affine_warps(new_size):
    # person pixel (x, y) shows in-shop pixel (0.5 x + 10, 0.5 y + 12) of a 64x48 garment image
    h0, w0 = 64, 48
    ys, xs = np.mgrid[0:h0, 0:w0].astype(np.float64)
    xc, yc = 0.5 * xs + 10, 0.5 * ys + 12
    flow = np.stack([2 * xc / (w0 - 1) - 1, 2 * yc / (h0 - 1) - 1], -1).astype(np.float32)
    mask = np.ones((h0, w0), np.uint8)
    got, got_mask = D._flow_tensors(flow, mask, new_size, (h0, w0))
    h, w = new_size
    sy, sx = h / h0, w / w0
    yn, xn = np.mgrid[0:h, 0:w].astype(np.float64)
    # the same physical points after resizing both images (pixel centres: x' = (x + 0.5) s - 0.5)
    xc_new = (0.5 * ((xn + 0.5) / sx - 0.5) + 10 + 0.5) * sx - 0.5
    yc_new = (0.5 * ((yn + 0.5) / sy - 0.5) + 12 + 0.5) * sy - 0.5
    want = np.stack([2 * xc_new / (w - 1) - 1, 2 * yc_new / (h - 1) - 1], -1)
    inner = (slice(2, -2), slice(2, -2))  # the bilinear resize clamps at the border
    assert got_mask.shape == (1, h, w) and bool(got_mask.all())
    assert np.abs(got.numpy()[inner] - want[inner]).max() < 1e-4
