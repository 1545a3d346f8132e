"""SynthVTON's unpaired ground truth (vtonlab.data.unpaired_gt): files, lists, checks, readers.

Measured at 64x48 (seed 3, the fixture below): outside the garment, arms and torso-skin regions of
either image (grown by 2 px), the ground truth and the person's own image differ by a mean of under
1 grey level in the JPEG files (at most 1 level in memory); inside the garment by about 90.
"""

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from vtonlab.__main__ import main
from vtonlab.commands.data import check_dataset
from vtonlab.data import (
    LayoutError,
    MultiPoseDataset,
    MultiPoseUnpairedGroundTruthDataset,
    UnpairedGroundTruthDataset,
    VitonHDDataset,
    ensure_unpaired_gt,
    synth,
    synthvton_unpaired,
    unpaired_tryon_set,
)
from vtonlab.data import datasets as D
from vtonlab.data import layouts as L
from vtonlab.data import unpaired_gt as U
from vtonlab.data.labels import N_ATR, atr_to_cihp, cihp_roundtrip_through_atr

SIZE = (64, 48)
SEED = 3
GARMENT, NECK_SKIN, ARMS = 5, 10, (14, 15)


def snapshot(root):
    return {p.relative_to(root): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """VITON-HD (API: snapshot before the ground truth) and Dress Code (CLI with --unpaired-gt), 2 train + 4 test."""
    base = tmp_path_factory.mktemp("ugt")
    vton = base / "vitonhd"
    D.write_synthvton(vton, "vitonhd", 2, 4, seed=SEED, size=SIZE, workers=1, progress=False)
    plain = base / "plain"
    shutil.copytree(vton, plain)
    before = snapshot(vton)
    ensure_unpaired_gt(vton, workers=1, progress=False)
    dc = base / "dresscode"
    assert main(["data", "generate", "--layout", "dresscode", "--out", str(dc), "--n-train", "2", "--n-test", "4",
                 "--seed", str(SEED), "--size", "64x48", "--workers", "1", "--unpaired-gt"]) == 0
    return {"vitonhd": vton, "dresscode": dc, "plain": plain, "before": before}


def rows(path, n):
    return L.read_pair_file(path, n, n, allow_empty=True)


@pytest.mark.parametrize("layout", ["vitonhd", "dresscode"])
def test_lists_extend_the_unpaired_pair_file(roots, layout):
    root = roots[layout]
    lists = root if layout == "vitonhd" else root / "upper_body"
    pairs = rows(lists / ("test_pairs.txt" if layout == "vitonhd" else "test_pairs_unpaired.txt"), 2)
    single = rows(lists / U.UNPAIRED_GT_LIST, 3)
    assert [r[:2] for r in single] == pairs and len(single) == 4
    assert all(gt == f"{L.stem_of(p)}__{L.stem_of(c)}.jpg" for p, c, gt in single)
    assert all(L.stem_of(p).split("_")[0] != L.stem_of(c).split("_")[0] for p, c, _ in single)  # another garment
    gt_of = {p: (c, gt) for p, c, gt in single}
    multi = rows(lists / U.MPV_UNPAIRED_GT_LIST, 4)
    mpv_test = [(a, b) for a, b, _, s in L.read_mpv_list(lists / L.MPV_LIST) if s == "test"]
    assert [(a, b) for a, b, _, _ in multi] == mpv_test and len(multi) == 4  # 2 groups x 2 ordered pairs
    assert all((c, gt) == gt_of[b] for _, b, c, gt in multi)
    marker = json.loads((root / U.UNPAIRED_GT_MARKER).read_text())
    assert marker["params"] == {**D.read_marker(root), "unpaired_gt_format": U.UNPAIRED_GT_FORMAT}
    assert marker["counts"] == {"test_unpaired_gt": 4, "mpv_unpaired_gt": 4}


def test_existing_files_untouched_and_second_call_renders_nothing(roots, monkeypatch):
    root, before = roots["vitonhd"], roots["before"]
    after = snapshot(root)
    assert {k: after[k] for k in before} == before  # every file of the folder, synthvton.json included
    new = sorted(str(k) for k in set(after) - set(before))
    assert len(new) == 3 + 4 * 3 and all(n.startswith("test/unpaired_gt/") or "/" not in n for n in new)
    assert {n for n in new if "/" not in n} == {U.UNPAIRED_GT_LIST, U.MPV_UNPAIRED_GT_LIST, U.UNPAIRED_GT_MARKER}

    def boom(*a, **k):
        raise AssertionError("rendered again")

    monkeypatch.setattr(synth, "render_group", boom)
    assert ensure_unpaired_gt(root, workers=1) == root
    assert snapshot(root) == after
    assert not list(root.parent.glob(".*tmp*")) and not list((root / "test").glob(".*"))


def test_ground_truth_changes_the_garment_only(roots):
    root = roots["vitonhd"]
    for person, cloth, gt in rows(root / U.UNPAIRED_GT_LIST, 3):
        own = L.read_rgb(root / "test" / "image" / person).astype(np.float32)
        new = L.read_rgb(root / "test" / U.UNPAIRED_GT_DIR / "image" / gt).astype(np.float32)
        p_own = L.read_label_map(root / "test" / "image-parse-v3" / f"{L.stem_of(person)}.png", 20)
        p_new = L.read_label_map(root / "test" / U.UNPAIRED_GT_DIR / "image-parse-v3" / f"{L.stem_of(gt)}.png", 20)
        changed = np.isin(p_own, (GARMENT, NECK_SKIN, *ARMS)) | np.isin(p_new, (GARMENT, NECK_SKIN, *ARMS))
        outside = ~ndimage.binary_dilation(changed | (p_own != p_new), iterations=2)
        diff = np.abs(own - new).max(-1)
        assert outside.mean() > 0.6 and diff[outside].mean() < 2.0 and np.percentile(diff[outside], 99) < 16
        both = (p_own == GARMENT) & (p_new == GARMENT)
        assert diff[both].mean() > 20  # another garment
        # its colour is the partner garment's, not the own one's
        def dominant(c_name):
            img = L.read_rgb(root / "test" / "cloth" / c_name).astype(np.float32)
            return np.median(img[L.read_mask(root / "test" / "cloth-mask" / c_name) > 0], axis=0)
        worn = np.median(new[p_new == GARMENT], axis=0)
        d_partner, d_own = np.linalg.norm(worn - dominant(cloth)), np.linalg.norm(worn - dominant(person))
        assert np.linalg.norm(dominant(cloth) - dominant(person)) > 60  # the fixture's garments differ clearly
        assert d_partner < 0.3 * d_own


@pytest.mark.parametrize("layout", ["vitonhd", "dresscode"])
def test_readers(roots, layout):
    root = roots[layout]
    single = unpaired_tryon_set(root)
    multi = unpaired_tryon_set(root, multipose=True, size=(32, 24), pose_style="ladi")
    assert isinstance(single, UnpairedGroundTruthDataset) and isinstance(multi, MultiPoseUnpairedGroundTruthDataset)
    assert len(single) == 4 and len(multi) == 4 and single.size == SIZE
    by_person = {single.rows[i][0]: single[i] for i in range(len(single))}
    for person, cloth, gt in single.rows:
        item = by_person[person]
        assert item["im_name"] == person and item["c_name"] == cloth and item["gt_name"] == gt
        assert item["gt_image"].shape == (3, *SIZE) and item["gt_image"].dtype == torch.float32
        assert -1 <= item["gt_image"].min() and item["gt_image"].max() <= 1
        assert item["gt_parse"].shape == SIZE and item["gt_parse"].dtype == torch.long
        assert torch.equal(item["gt_flow_mask"][0], (item["gt_parse"] == GARMENT).float())
        # the files hold the render of the person (same pose) in the partner's garment
        stem = L.stem_of(person)
        group, pose, partner = int(stem[:5]), int(stem[6:8] if layout == "vitonhd" else stem[5]), int(cloth[:5])
        ref = synth.render_group(D.group_seed(SEED, group), 2, SIZE, garment_seed=D.group_seed(SEED, partner))[pose]
        got = ((item["gt_image"].permute(1, 2, 0).numpy() + 1) * 127.5).round()
        assert np.abs(got - ref["image"]).mean() < 3
        parse = ref["parse"] if layout == "vitonhd" else cihp_roundtrip_through_atr(ref["parse"])  # Dress Code: via ATR
        assert torch.equal(item["gt_parse"], torch.from_numpy(parse.astype(np.int64)))
        assert np.abs(item["pose_keypoints"].numpy() - ref["keypoints"]).max() < 1e-2  # the pose file's keypoints
        if layout == "dresscode":  # parsing stored as SCHP-ATR, read back in the internal set
            stored = L.read_label_map(root / "upper_body" / U.UNPAIRED_GT_DIR / "label_maps" / f"{L.stem_of(gt)}.png", N_ATR)
            assert torch.equal(item["gt_parse"], torch.from_numpy(atr_to_cihp(stored).astype(np.int64)))
    small = unpaired_tryon_set(root, size=(32, 24))
    for j, (a, b, c, gt) in enumerate(multi.rows):
        item = multi[j]
        assert item["source"]["im_name"] == a and item["target"]["im_name"] == b and item["c_name"] == c
        assert item["source"]["c_name"] != c and item["target"]["c_name"] != c  # own garments
        assert item["cloth"].shape == (3, 32, 24) and item["cloth_mask"].shape == (1, 32, 24)
        assert item["target"]["pose_map"].shape == (18, 32, 24) and item["gt_image"].shape == (3, 32, 24)
        ref = small[[r[0] for r in small.rows].index(b)]
        assert gt == ref["gt_name"]
        for key in ("gt_image", "gt_parse", "gt_flow", "cloth", "cloth_mask"):
            assert torch.equal(item[key], ref[key]), key
        assert not torch.equal(item["target"]["cloth"], item["cloth"])


def test_refusals_and_missing_ground_truth(roots, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ensure_unpaired_gt(tmp_path / "nowhere")
    fake = tmp_path / "real_vitonhd"
    shutil.copytree(roots["plain"] / "test", fake / "test")
    shutil.copy(roots["plain"] / "test_pairs.txt", fake / "test_pairs.txt")
    with pytest.raises(LayoutError, match=f"{re.escape(str(fake))}: no SynthVTON marker"):
        ensure_unpaired_gt(fake)
    assert sorted(p.name for p in fake.iterdir()) == ["test", "test_pairs.txt"]  # nothing written
    # without the ground truth: the real readers work, the ground-truth readers say how to make it
    plain = roots["plain"]
    assert len(VitonHDDataset(plain, "test", "unpaired", SIZE)) == 4 and len(MultiPoseDataset(plain, "test", SIZE)) == 4
    with pytest.raises(FileNotFoundError, match=f"{re.escape(str(plain / U.UNPAIRED_GT_LIST))}: .*ensure_unpaired_gt"):
        unpaired_tryon_set(plain)
    assert check_dataset(roots["vitonhd"]).kinds() == check_dataset(plain).kinds()  # the folder is known to `data check`


def test_checks_while_rendering(roots, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(roots["plain"], root)
    # a partner garment that is not what the seeds draw (here: a blank in-shop image)
    partner_cloth = root / "test" / "cloth" / "00002_00.jpg"
    Image.new("RGB", SIZE[::-1], "white").save(partner_cloth)
    with pytest.raises(LayoutError, match=f"{re.escape(str(partner_cloth))}: the garment drawn"):
        ensure_unpaired_gt(root, workers=1, progress=False)
    assert not (root / U.UNPAIRED_GT_MARKER).exists() and not (root / "test" / U.UNPAIRED_GT_DIR).exists()
    assert not [p for p in (root / "test").iterdir() if p.name.startswith(".")]  # the temporary folder is gone
    shutil.copy(roots["plain"] / "test" / "cloth" / "00002_00.jpg", partner_cloth)
    # keypoints that are not the person's
    kp_file = root / "test" / "openpose_json" / "00001_01_keypoints.json"
    shutil.copy(root / "test" / "openpose_json" / "00001_00_keypoints.json", kp_file)
    with pytest.raises(LayoutError, match=f"{re.escape(str(kp_file))}: the keypoints"):
        ensure_unpaired_gt(root, workers=1, progress=False)
    shutil.copy(roots["plain"] / "test" / "openpose_json" / "00001_01_keypoints.json", kp_file)
    # an edited pair file
    (root / "test_pairs.txt").write_text((root / "test_pairs.txt").read_text().replace("00002_00.jpg\n", "00001_00.jpg\n", 1))
    with pytest.raises(LayoutError, match="test_pairs.txt: rows differ"):
        ensure_unpaired_gt(root, workers=1, progress=False)


def test_synthvton_unpaired(tmp_cache):
    from vtonlab.profiles import get_profile

    prof = get_profile("ci").replace(n_train=2, n_test=4)
    ds = synthvton_unpaired(prof, workers=2, progress=False)
    assert isinstance(ds, UnpairedGroundTruthDataset) and len(ds) == 4 and ds.size == tuple(prof.image_size)
    assert (ds.root / U.UNPAIRED_GT_MARKER).is_file() and ds[3]["gt_image"].shape == (3, *prof.image_size)
    mp = synthvton_unpaired(prof, multipose=True, size=(32, 24), progress=False)
    assert len(mp) == 4 and mp[0]["source"]["image"].shape == (3, 32, 24)
