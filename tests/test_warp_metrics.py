"""Tests for vtonlab.metrics.warp: EPE in pixels, mask IoU, masked SSIM of the warped garment."""

import math

import pytest
import torch
import torch.nn.functional as F

from vtonlab import tps
from vtonlab.metrics import warp as wm


def _identity(b, h, w):
    return tps.pixel_grid((h, w))[None].expand(b, -1, -1, -1).clone()


def _blob_mask(h, w, cx=0.0, cy=0.0, rx=0.5, ry=0.6):
    g = tps.pixel_grid((h, w))
    return ((((g[..., 0] - cx) / rx) ** 2 + ((g[..., 1] - cy) / ry) ** 2) <= 1).float()[None, None]


def test_identity_flow_has_zero_epe():
    grid = _identity(2, 16, 12)
    mask = torch.ones(2, 1, 16, 12)
    assert torch.equal(wm.end_point_error(grid, grid.clone(), mask), torch.zeros(2))


def test_known_shift_gives_known_pixels():
    h, w = 17, 13
    gt = _identity(1, h, w)
    shifted = gt.clone()
    shifted[..., 0] += 3 * 2 / (w - 1)  # 3 px to the right
    shifted[..., 1] -= 4 * 2 / (h - 1)  # 4 px up
    mask = torch.ones(1, 1, h, w)
    assert wm.end_point_error(shifted, gt, mask).item() == pytest.approx(5.0, abs=1e-5)
    # measured in the pixels of a larger in-shop image: (2x the size - 1) / (size - 1)
    big = wm.end_point_error(shifted, gt, mask, cloth_size=(2 * h - 1, 2 * w - 1))
    assert big.item() == pytest.approx(10.0, abs=1e-4)
    assert torch.allclose(wm.flow_to_pixels(torch.tensor([2.0, 2.0]), (h, w)), torch.tensor([w - 1.0, h - 1.0]))


def test_epe_only_counts_visible_garment_pixels():
    h, w = 8, 6
    gt = _identity(2, h, w)
    pred = gt.clone()
    pred[0, :4, :, 0] += 2 * 2 / (w - 1)  # 2 px error in the top half only
    mask = torch.zeros(2, 1, h, w)
    mask[0, :, :4] = 1  # sample 0: only the erroneous half is visible
    emap = wm.epe_map(pred, gt, mask)
    assert emap.shape == (2, h, w)
    assert torch.isnan(emap[0, 4:]).all() and torch.isnan(emap[1]).all()
    epe = wm.end_point_error(pred, gt, mask)
    assert epe[0].item() == pytest.approx(2.0, abs=1e-5)
    assert math.isnan(epe[1].item())  # no visible garment: undefined
    result = wm.epe_result(epe)
    assert result.n == 1 and result.value == pytest.approx(2.0, abs=1e-5) and result.better == "lower"
    assert "gt_flow" in result.extractor


def test_mask_iou_known_values():
    a = torch.zeros(3, 1, 4, 4)
    b = torch.zeros(3, 1, 4, 4)
    a[0, :, :2] = 1
    b[0, :, 1:3] = 1  # overlap 4 of union 12
    a[1] = 1
    b[1] = 1
    iou = wm.mask_iou(a, b)
    assert iou[0].item() == pytest.approx(1 / 3)
    assert iou[1].item() == 1.0
    assert iou[2].item() == 1.0  # both empty


def test_warp_ssim_is_one_for_a_perfect_warp_and_ignores_outside_mask():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 32, 24, generator=g)
    mask = _blob_mask(32, 24).expand(2, -1, -1, -1)
    warped = image.clone()
    warped[:, :, ~mask[0, 0].bool()] = torch.rand(1, generator=g).item()  # garbage outside the mask
    assert torch.allclose(wm.warp_ssim(warped, image, mask), torch.ones(2), atol=1e-5)
    worse = (image + 0.3 * torch.randn(image.shape, generator=g)).clamp(0, 1)
    assert (wm.warp_ssim(worse, image, mask) < 0.9).all()


def test_warp_metrics_of_a_known_warp():
    # A "person" made by warping the in-shop garment with a known grid: that grid is the gt_flow.
    h, w = 48, 36
    g = torch.Generator().manual_seed(1)
    cloth_mask = _blob_mask(h, w, rx=0.6, ry=0.7)
    texture = torch.rand(1, 3, h // 4, w // 4, generator=g) * 2 - 1
    cloth = F.interpolate(texture, size=(h, w), mode="bilinear", align_corners=True) * cloth_mask + (1 - cloth_mask)
    fixed = tps.FixedGridTPS(5)
    gt_flow = fixed(0.08 * torch.randn(1, 2, 25, generator=g), (h, w))
    worn = (F.grid_sample(cloth_mask, gt_flow, align_corners=True) > 0.5).float()
    image = F.grid_sample(cloth, gt_flow, padding_mode="border", align_corners=True) * worn - (1 - worn) * 0.2
    batch = {"cloth": cloth, "cloth_mask": cloth_mask, "image": image, "worn_mask": worn, "gt_flow": gt_flow,
             "gt_flow_mask": worn}
    perfect = wm.warp_metrics(gt_flow, batch)
    assert perfect["epe_px"].item() == pytest.approx(0.0, abs=1e-5)
    assert perfect["iou"].item() > 0.98
    assert perfect["ssim"].item() > 0.999
    ident = wm.warp_metrics(_identity(1, h, w), batch)
    assert ident["epe_px"].item() > 1.0
    assert ident["iou"].item() < perfect["iou"].item()
    assert ident["ssim"].item() < perfect["ssim"].item()
    for r in (wm.iou_result(ident["iou"]), wm.warp_ssim_result(ident["ssim"], setting="test")):
        assert r.n == 1 and r.weights == "none"


def test_bad_inputs_name_the_argument():
    grid = _identity(1, 8, 6)
    with pytest.raises(ValueError, match="gt_flow_mask: expected shape"):
        wm.end_point_error(grid, grid, torch.ones(1, 1, 8, 5))
    with pytest.raises(ValueError, match="gt_flow .* must have the same shape"):
        wm.end_point_error(grid, _identity(1, 8, 5), torch.ones(1, 1, 8, 6))
    with pytest.raises(ValueError, match="grid: expected shape"):
        wm.epe_map(grid[..., :1], grid, torch.ones(1, 1, 8, 6))
    with pytest.raises(ValueError, match="worn_mask: expected values in"):
        wm.mask_iou(torch.ones(1, 1, 8, 6), 2 * torch.ones(1, 1, 8, 6))
    with pytest.raises(ValueError, match=r"warped_cloth: expected values in \[0, 1\]"):
        wm.warp_ssim(-torch.ones(1, 3, 16, 16), torch.ones(1, 3, 16, 16), torch.ones(1, 1, 16, 16))
    with pytest.raises(ValueError, match="worn_mask is empty"):
        wm.warp_ssim(torch.ones(1, 3, 16, 16), torch.ones(1, 3, 16, 16), torch.zeros(1, 1, 16, 16))
    with pytest.raises(KeyError, match="gt_flow"):
        wm.warp_metrics(grid, {"cloth": torch.zeros(1, 3, 8, 6)})
