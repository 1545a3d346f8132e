"""Warp metrics for geometric matching (CP-VTON GMM, MG-VTON GML): EPE, mask IoU, masked SSIM.

SynthVTON knows the true garment warp of every sample, so a learned warp can be scored exactly:

- **End-point error (EPE, pixels)**: both the predicted sampling grid and SynthVTON's ``gt_flow``
  say, for each pixel of the *person* image, where that garment point lies in the *in-shop* image
  (normalised ``(x, y)``, ``align_corners=True``). At the person's visible garment pixels
  (``gt_flow_mask = 1``) the difference is converted to pixels of the in-shop image of size
  ``(H_c, W_c)``: ``dx_px = dx (W_c - 1) / 2``, ``dy_px = dy (H_c - 1) / 2``, and
  ``EPE = mean sqrt(dx_px^2 + dy_px^2)`` over those pixels (the optical-flow end-point error of
  Baker et al. 2011, applied to the backward warp). An EPE of 0 means the warp puts every visible
  garment point exactly where it is on the person. Real datasets have no ``gt_flow``.
- **IoU**: intersection over union of the warped in-shop mask (thresholded at 0.5) and the worn
  garment mask on the person (``worn_mask``).
- **SSIM**: the warped garment against the worn garment, both composited on white outside the worn
  mask, with the torchmetrics SSIM map (Gaussian window 11, sigma 1.5, data range 1) averaged over the
  worn-mask pixels (see :mod:`vtonlab.metrics.similarity`). Its window sees up to 5 pixels across the
  mask border.

Per-sample functions return ``(B,)`` tensors; the ``*_result`` functions return
:class:`~vtonlab.metrics.result.MetricResult` with the provenance of the number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vtonlab.metrics.checks import check_images
from vtonlab.metrics.result import MetricResult
from vtonlab.metrics.similarity import SSIM_EXTRACTOR, ssim

__all__ = [
    "EPE_EXTRACTOR",
    "IOU_EXTRACTOR",
    "flow_to_pixels",
    "epe_map",
    "end_point_error",
    "mask_iou",
    "warp_ssim",
    "warp_metrics",
    "epe_result",
    "iou_result",
    "warp_ssim_result",
]

EPE_EXTRACTOR = "none: predicted sampling grid vs SynthVTON gt_flow at visible garment pixels"
IOU_EXTRACTOR = "none: warped in-shop mask (>0.5) vs worn garment mask"


def _check_grid(name: str, grid: Tensor) -> None:
    if not isinstance(grid, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (B, H, W, 2), got {type(grid).__name__}")
    if grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(f"{name}: expected shape (B, H, W, 2) of normalised (x, y), got {tuple(grid.shape)}")


def _check_mask(name: str, mask: Tensor, batch: int, size: tuple[int, int]) -> Tensor:
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (B, 1, H, W), got {type(mask).__name__}")
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != batch or tuple(mask.shape[-2:]) != tuple(size):
        raise ValueError(f"{name}: expected shape ({batch}, 1, {size[0]}, {size[1]}), got {tuple(mask.shape)}")
    if mask.numel() and (float(mask.min()) < 0 or float(mask.max()) > 1):
        raise ValueError(f"{name}: expected values in [0, 1], got min {float(mask.min()):.3g}, "
                         f"max {float(mask.max()):.3g}")
    return mask.float()


def flow_to_pixels(diff: Tensor, size: tuple[int, int]) -> Tensor:
    """Normalised ``(dx, dy)`` differences ``(..., 2)`` -> pixels of an ``(H, W)`` image (``align_corners=True``).

    ``dx_px = dx (W - 1) / 2`` and ``dy_px = dy (H - 1) / 2``: the corner pixel centres are at -1 and 1.
    """
    h, w = (int(s) for s in size)
    scale = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=diff.dtype, device=diff.device)
    return diff * scale


def epe_map(grid: Tensor, gt_flow: Tensor, gt_flow_mask: Tensor, cloth_size: tuple[int, int] | None = None) -> Tensor:
    """Per-pixel end-point error in in-shop pixels, ``(B, H, W)``; NaN where ``gt_flow_mask`` is 0.

    Args:
        grid: ``(B, H, W, 2)`` the predicted sampling grid (person pixel -> in-shop ``(x, y)``).
        gt_flow: ``(B, H, W, 2)`` SynthVTON's true in-shop ``(x, y)`` of each person pixel.
        gt_flow_mask: ``(B, 1, H, W)`` 1 where ``gt_flow`` is valid (visible garment).
        cloth_size: ``(H_c, W_c)`` of the in-shop image (default: the grid's ``(H, W)``).
    """
    _check_grid("grid", grid)
    _check_grid("gt_flow", gt_flow)
    if grid.shape != gt_flow.shape:
        raise ValueError(f"grid {tuple(grid.shape)} and gt_flow {tuple(gt_flow.shape)} must have the same shape")
    b, h, w, _ = grid.shape
    mask = _check_mask("gt_flow_mask", gt_flow_mask, b, (h, w))[:, 0] > 0.5
    cloth_size = (h, w) if cloth_size is None else cloth_size
    err = flow_to_pixels(grid.float() - gt_flow.float(), cloth_size).norm(dim=-1)
    return torch.where(mask, err, torch.full_like(err, float("nan")))


def end_point_error(grid: Tensor, gt_flow: Tensor, gt_flow_mask: Tensor,
                    cloth_size: tuple[int, int] | None = None) -> Tensor:
    """Mean end-point error (in-shop pixels) per sample, ``(B,)``; NaN for a sample without visible garment.

    See the module docstring: the predicted *sampling grid* at the person's visible garment pixels is
    compared with ``gt_flow`` there.
    """
    emap = epe_map(grid, gt_flow, gt_flow_mask, cloth_size)
    return torch.nanmean(emap.flatten(1), dim=1)


def mask_iou(warped_mask: Tensor, worn_mask: Tensor, threshold: float = 0.5) -> Tensor:
    """IoU of the warped in-shop mask and the worn garment mask per sample, ``(B,)``.

    Both ``(B, 1, H, W)`` in [0, 1], binarised at ``threshold``. Two empty masks give IoU 1.
    """
    if not isinstance(warped_mask, Tensor) or warped_mask.ndim != 4:
        got = tuple(warped_mask.shape) if isinstance(warped_mask, Tensor) else type(warped_mask).__name__
        raise ValueError(f"warped_mask: expected a (B, 1, H, W) tensor, got {got}")
    b, _, h, w = warped_mask.shape
    a = _check_mask("warped_mask", warped_mask.clamp(0, 1), b, (h, w)) > threshold
    t = _check_mask("worn_mask", worn_mask, b, (h, w)) > threshold
    inter = (a & t).flatten(1).sum(1).float()
    union = (a | t).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def warp_ssim(warped_cloth: Tensor, image: Tensor, worn_mask: Tensor) -> Tensor:
    """SSIM of the warped garment against the worn garment inside the worn mask, ``(B,)``.

    Args:
        warped_cloth: ``(B, 3, H, W)`` in [0, 1], the in-shop garment after the warp.
        image: ``(B, 3, H, W)`` in [0, 1], the person wearing the garment.
        worn_mask: ``(B, 1, H, W)`` in {0, 1}, the garment on the person.

    Both images are composited on white outside the mask (CP-VTON's target ``I * M + (1 - M)``), then
    the SSIM map is averaged over the mask's pixels (Wang et al. 2004, Eq. 13, via torchmetrics).
    """
    warped_cloth = check_images(warped_cloth, "warped_cloth")
    image = check_images(image, "image")
    if warped_cloth.shape != image.shape:
        raise ValueError(f"warped_cloth {tuple(warped_cloth.shape)} and image {tuple(image.shape)} must match")
    b, _, h, w = image.shape
    m = _check_mask("worn_mask", worn_mask, b, (h, w)).to(image.device)
    if (m.flatten(1).sum(1) <= 0).any():
        empty = (m.flatten(1).sum(1) <= 0).nonzero().flatten().tolist()
        raise ValueError(f"worn_mask is empty for sample(s) {empty}: SSIM inside the mask is undefined")
    pred = warped_cloth * m + (1 - m)
    target = image * m + (1 - m)
    return ssim(pred, target, m, region="inside")


def warp_metrics(grid: Tensor, batch: dict, *, cloth_padding: str = "border") -> dict[str, Tensor]:
    """Warp ``batch["cloth"]`` and ``batch["cloth_mask"]`` with ``grid`` and score them, per sample.

    Args:
        grid: ``(B, H, W, 2)`` sampling grid (from a GMM, an affine warp, or the identity).
        batch: a collated SynthVTON sample dict with ``cloth``, ``cloth_mask``, ``image`` (images in
            [-1, 1]), ``worn_mask``, ``gt_flow``, ``gt_flow_mask``.
        cloth_padding: ``grid_sample`` padding for the garment image (``"border"`` keeps the white
            background white, as CP-VTON does); the mask is always padded with zeros.

    Returns:
        ``{"epe_px": (B,), "iou": (B,), "ssim": (B,)}`` (float tensors on the CPU).
    """
    missing = [k for k in ("cloth", "cloth_mask", "image", "worn_mask", "gt_flow", "gt_flow_mask") if k not in batch]
    if missing:
        raise KeyError(f"batch is missing {', '.join(missing)} (needs a SynthVTON sample dict with gt_flow)")
    _check_grid("grid", grid)
    cloth = batch["cloth"].to(grid)
    cloth_mask = batch["cloth_mask"].to(grid)
    warped = F.grid_sample(cloth, grid, mode="bilinear", padding_mode=cloth_padding, align_corners=True)
    warped_mask = F.grid_sample(cloth_mask, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    worn = batch["worn_mask"].to(grid)
    image01 = ((batch["image"].to(grid) + 1) / 2).clamp(0, 1)
    warped01 = ((warped + 1) / 2).clamp(0, 1)
    return {
        "epe_px": end_point_error(grid, batch["gt_flow"].to(grid), batch["gt_flow_mask"].to(grid),
                                  cloth_size=tuple(cloth.shape[-2:])).cpu(),
        "iou": mask_iou(warped_mask, worn).cpu(),
        "ssim": warp_ssim(warped01, image01, worn).cpu(),
    }


def _summary(values: Tensor) -> tuple[float, float | None, int]:
    v = values[torch.isfinite(values)].double()
    if v.numel() == 0:
        return float("nan"), None, 0
    return v.mean().item(), (v.std().item() if v.numel() > 1 else None), v.numel()


def epe_result(values: Tensor, setting: str = "", note: str = "") -> MetricResult:
    """Mean of per-sample EPEs ``(B,)`` (samples without visible garment skipped) as a MetricResult."""
    mean, std, n = _summary(values)
    return MetricResult("EPE", mean, EPE_EXTRACTOR, "none", better="lower", setting=setting, std=std, n=n,
                        note=("px of the in-shop image; " + note).rstrip("; "))


def iou_result(values: Tensor, setting: str = "", note: str = "") -> MetricResult:
    """Mean of per-sample mask IoUs ``(B,)`` as a MetricResult."""
    mean, std, n = _summary(values)
    return MetricResult("IoU", mean, IOU_EXTRACTOR, "none", better="higher", setting=setting, std=std, n=n,
                        note=note)


def warp_ssim_result(values: Tensor, setting: str = "", note: str = "") -> MetricResult:
    """Mean of per-sample :func:`warp_ssim` values ``(B,)`` as a MetricResult."""
    mean, std, n = _summary(values)
    where = ", ".join(s for s in (setting, "inside worn mask") if s)
    return MetricResult("SSIM", mean, SSIM_EXTRACTOR, "none", better="higher", setting=where, std=std, n=n,
                        note=note)
