import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

from vtonlab.data import representation as R
from vtonlab.data.labels import CIHP


def one_keypoint(x, y, conf=1.0, k=0):
    kp = torch.zeros(18, 3)
    kp[k] = torch.tensor([x, y, conf])
    return kp


def test_cpvton_squares_match_pil_rectangles():
    # CP-VTON draws each keypoint with PIL: rectangle((x-r, y-r, x+r, y+r)), r = 5 at 256x192.
    maps = R.pose_heatmaps(one_keypoint(60, 100), (256, 192), "cpvton")
    img = Image.new("L", (192, 256))
    ImageDraw.Draw(img).rectangle((60 - 5, 100 - 5, 60 + 5, 100 + 5), fill=255)
    assert torch.equal(maps[0], torch.from_numpy(np.asarray(img) > 0).float())
    assert maps[1:].sum() == 0


def test_mgvton_discs_match_pil_ellipses_in_area():
    maps = R.pose_heatmaps(one_keypoint(40, 50), (256, 192), "mgvton")
    img = Image.new("L", (192, 256))
    ImageDraw.Draw(img).ellipse((40 - 4, 50 - 4, 40 + 4, 50 + 4), fill=255)
    ref = np.asarray(img) > 0
    ours = maps[0].numpy() > 0
    # PIL fills the 9x9 bounding box's inscribed ellipse (radius ~4.5): ours lies inside it
    assert not (ours & ~ref).any()
    assert ours.sum() == 49  # lattice points with x^2 + y^2 <= 16 (Gauss circle problem, N(4) = 49)
    assert math.isclose(ours.sum(), math.pi * 16, rel_tol=0.05)


def _official_ladi_heatmap(kpoint, shape, sigma):
    """A direct transcription of LaDI-VTON's kpoint_to_heatmap (src/utils/posemap.py)."""
    map_h, map_w = shape
    x, y = kpoint
    xy_grid = np.mgrid[:map_w, :map_h].transpose(2, 1, 0)
    heatmap = np.exp(-np.sum((xy_grid - (x, y)) ** 2, axis=-1) / sigma**2)
    return heatmap / (heatmap.max() + np.finfo("float32").eps)


def test_ladi_gaussians_follow_the_official_code_with_sigma_scaled_from_512():
    # at LaDI-VTON's 512x384 the official sigma is 9 px
    kp = one_keypoint(120.3, 230.7)
    maps = R.pose_heatmaps(kp, (512, 384), "ladi")
    assert np.allclose(maps[0].numpy(), _official_ladi_heatmap((120.3, 230.7), (512, 384), 9), atol=1e-5)
    # at 64x48 the same heatmap, scaled: sigma 9 * 64 / 512 = 1.125 px (not 9 * 64 / 256)
    h, w = 64, 48
    maps = R.pose_heatmaps(one_keypoint(20.3, 30.7), (h, w), "ladi")
    assert np.allclose(maps[0].numpy(), _official_ladi_heatmap((20.3, 30.7), (h, w), 9 * h / 512), atol=1e-5)
    assert not np.allclose(maps[0].numpy(), _official_ladi_heatmap((20.3, 30.7), (h, w), 9 * h / 256), atol=1e-2)


def test_missing_keypoints_give_zero_maps_in_every_style():
    kp = one_keypoint(20, 20, conf=0.0)
    for style in R.POSE_STYLES:
        assert R.pose_heatmaps(kp, (64, 48), style).abs().sum() == 0


def test_radius_scales_with_height():
    maps = R.pose_heatmaps(one_keypoint(24, 30), (128, 96), "cpvton")  # r = 2.5 -> 5 x 5 pixels
    assert maps[0].sum() == 25


def test_pose_heatmaps_batched_equals_single():
    rng = np.random.default_rng(1)
    kp = torch.from_numpy(np.concatenate([rng.uniform(0, 40, (2, 3, 18, 2)), rng.uniform(0, 1, (2, 3, 18, 1))], -1))
    batched = R.pose_heatmaps(kp, (32, 24), "ladi")
    assert batched.shape == (2, 3, 18, 32, 24)
    assert torch.allclose(batched[1, 2], R.pose_heatmaps(kp[1, 2], (32, 24), "ladi"))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="style"):
        R.pose_heatmaps(one_keypoint(1, 1), (8, 8), "openpose")
    with pytest.raises(ValueError, match=r"keypoints.*\(\.\.\., 18, 3\)"):
        R.pose_heatmaps(torch.zeros(17, 3), (8, 8))
    with pytest.raises(ValueError, match="parse.*integer"):
        R.worn_mask(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="category"):
        R.inpaint_mask(torch.zeros(8, 8, dtype=torch.long), category="shoes")


def test_dilate_matches_scipy_with_a_disc():
    rng = np.random.default_rng(2)
    m = rng.random((40, 30)) > 0.97
    for r in (1, 2, 3.7):
        ri = int(r)
        yy, xx = np.mgrid[-ri : ri + 1, -ri : ri + 1]
        ref = ndimage.binary_dilation(m, structure=(xx**2 + yy**2) <= ri**2)
        ours = R.dilate(torch.from_numpy(m).float()[None], r)[0].numpy() > 0
        assert np.array_equal(ours, ref)


def test_segments_mask_is_the_distance_to_the_segment():
    size = (40, 50)
    a, b = torch.tensor([[5.0, 8.0]]), torch.tensor([[40.0, 30.0]])
    m = R.segments_mask(a, b, torch.tensor([True]), size, 3.0)[0].numpy()
    ys, xs = np.mgrid[0 : size[0], 0 : size[1]]
    # distance by dense sampling of the segment (independent of the projection formula)
    t = np.linspace(0, 1, 2001)
    px, py = 5 + 35 * t, 8 + 22 * t
    d = np.sqrt((xs[..., None] - px) ** 2 + (ys[..., None] - py) ** 2).min(-1)
    assert np.array_equal(m > 0, d <= 3.0 + 1e-9) or np.sum((m > 0) != (d <= 3.0)) <= 2
    assert R.segments_mask(a, b, torch.tensor([False]), size, 3.0).sum() == 0


def test_body_shape_matches_cpvton_pil_recipe():
    # CP-VTON: body mask -> PIL bilinear resize to (W/16, H/16) -> PIL bilinear resize back.
    parse = np.zeros((256, 192), np.uint8)
    parse[40:230, 60:130] = CIHP["upper_clothes"]
    parse[10:50, 80:110] = CIHP["face"]
    img = Image.fromarray((parse > 0).astype(np.uint8) * 255)
    ref = np.asarray(img.resize((12, 16), Image.BILINEAR).resize((192, 256), Image.BILINEAR), np.float32) / 255
    ours = R.body_shape(torch.from_numpy(parse))
    assert ours.shape == (1, 256, 192)
    assert np.abs(ours[0].numpy() - ref).mean() < 0.01
    assert np.abs(ours[0].numpy() - ref).max() < 0.08


def synthetic_parse(h=64, w=48):
    p = torch.zeros(h, w, dtype=torch.long)
    p[2:10, 18:30] = CIHP["hair"]
    p[6:14, 19:29] = CIHP["face"]
    p[14:16, 21:27] = CIHP["torso_skin"]
    p[16:34, 14:34] = CIHP["upper_clothes"]
    p[16:32, 8:14] = CIHP["right_arm"]
    p[16:32, 34:40] = CIHP["left_arm"]
    p[34:56, 15:33] = CIHP["pants"]
    p[56:60, 15:23] = CIHP["right_shoe"]
    p[56:60, 25:33] = CIHP["left_shoe"]
    return p


def test_head_image_keeps_head_only():
    p = synthetic_parse()
    img = torch.rand(3, 64, 48) * 2 - 1
    head = R.head_image(img, p)
    m = R.head_mask(p)[0].bool()
    assert torch.equal(head[:, m], img[:, m])
    assert (head[:, ~m] == -1).all()


def test_inpaint_mask_upper_body():
    p = synthetic_parse()
    kp = torch.zeros(18, 3)
    kp[2], kp[3], kp[4] = torch.tensor([12.0, 17, 1]), torch.tensor([11.0, 24, 1]), torch.tensor([11.0, 31, 1])
    m = R.inpaint_mask(p, kp, "upper_body")[0].bool()
    garment = R.worn_mask(p)[0].bool()
    assert m[garment].all()  # the whole garment is to be generated
    assert m[p == CIHP["right_arm"]].all() and m[p == CIHP["left_arm"]].all()
    for kept in ("face", "hair", "pants", "left_shoe"):
        assert not m[p == CIHP[kept]].any(), kept
    assert m[(p == 0)].any()  # dilated into the background
    assert m.sum() > garment.sum()
    # the arm strokes reach beyond the parsed arm
    no_pose = R.inpaint_mask(p, None, "upper_body")[0].bool()
    assert m.sum() > no_pose.sum()


def test_inpaint_mask_lower_body_and_dresses():
    p = synthetic_parse()
    low = R.inpaint_mask(p, None, "lower_body")[0].bool()
    assert low[p == CIHP["pants"]].all() and not low[p == CIHP["upper_clothes"]].any()
    dress = R.inpaint_mask(p, None, "dresses")[0].bool()
    assert dress[p == CIHP["pants"]].all() and dress[p == CIHP["upper_clothes"]].all()
    assert not dress[p == CIHP["face"]].any()


def test_inpaint_mask_batched_equals_single():
    p = torch.stack([synthetic_parse(), synthetic_parse().flip(-1)])
    kp = torch.zeros(2, 18, 3)
    kp[:, 2] = torch.tensor([12.0, 17, 1])
    kp[:, 3] = torch.tensor([11.0, 24, 1])
    both = R.inpaint_mask(p, kp)
    assert both.shape == (2, 1, 64, 48)
    assert torch.equal(both[1], R.inpaint_mask(p[1], kp[1]))


def test_agnostic_greys_the_mask():
    img = torch.rand(3, 8, 8) * 2 - 1
    mask = torch.zeros(1, 8, 8)
    mask[:, 2:5, 3:6] = 1
    out = R.agnostic_image(img, mask)
    assert (out[:, 2:5, 3:6] == 0).all()
    assert torch.equal(out[:, 0], img[:, 0])


def test_worn_mask_categories():
    p = synthetic_parse()
    assert R.worn_mask(p, "upper_body").sum() == (p == CIHP["upper_clothes"]).sum()
    assert R.worn_mask(p, "lower_body").sum() == (p == CIHP["pants"]).sum()
    assert R.worn_mask(p, "dresses").sum() == 0


def test_skeleton_image_draws_present_limbs_only():
    kp = np.zeros((18, 3), np.float32)
    assert R.skeleton_image(kp, (64, 48)).sum() == 0
    kp[2] = (10, 20, 1)
    kp[3] = (10, 40, 1)
    img = R.skeleton_image(kp, (64, 48))
    assert img.shape == (64, 48, 3) and img.dtype == np.uint8
    drawn = img.sum(-1) > 0
    assert drawn[25:35, 10].all() and not drawn[:, 30:].any()
    with pytest.raises(ValueError, match="background"):
        R.skeleton_image(kp, (64, 48), background=np.zeros((10, 10, 3), np.uint8))


def test_inpaint_mask_fills_enclosed_background():
    # an arm resting on the hip encloses background between arm and torso
    p = torch.zeros(64, 48, dtype=torch.long)
    p[10:40, 14:30] = CIHP["upper_clothes"]
    p[10:14, 30:44] = CIHP["left_arm"]
    p[10:40, 40:44] = CIHP["left_arm"]
    p[36:40, 30:44] = CIHP["left_arm"]
    m = R.inpaint_mask(p, None, dilate_radius=0)[0].bool()
    assert m[20:30, 32:38].all()  # the enclosed background is part of the mask
    assert not m[50:, :].any() and not m[:, :10].any()
    ring = torch.zeros(1, 9, 9)
    ring[0, 2:7, 2:7] = 1
    ring[0, 4, 4] = 0
    assert R.fill_holes(ring)[0, 4, 4] == 1 and R.fill_holes(ring).sum() == 25
