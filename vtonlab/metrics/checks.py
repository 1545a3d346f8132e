"""Input checks shared by the metrics: images in [0, 1], matching shapes, region masks."""

from __future__ import annotations

from typing import Literal

import torch

Region = Literal["all", "inside", "outside"]
REGIONS = ("all", "inside", "outside")

# Images that went through a JPEG/PNG round trip or bilinear resizing can overshoot by a hair.
_RANGE_TOL = 1e-4


def check_images(x: torch.Tensor, name: str = "images") -> torch.Tensor:
    """``x`` must be a float tensor (N, 3, H, W) with values in [0, 1]; returns it as float32 (float64 kept).

    Metrics work on [0, 1] images; models in vtonlab produce [-1, 1], so a negative value almost
    always means a forgotten ``(x + 1) / 2`` and the error says so.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (N, 3, H, W) in [0, 1], got {type(x).__name__}")
    if x.ndim == 3:
        raise ValueError(f"{name}: expected a batch (N, 3, H, W), got a single image {tuple(x.shape)}; "
                         "use x.unsqueeze(0)")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected float images in [0, 1], got dtype {x.dtype} "
                         "(convert uint8 with x.float() / 255)")
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
            hint = " (model outputs in [-1, 1] must be mapped with (x + 1) / 2)" if lo < 0 else ""
            raise ValueError(f"{name}: expected values in [0, 1], got min {lo:.4g}, max {hi:.4g}{hint}")
    return (x if x.dtype == torch.float64 else x.float()).clamp(0, 1)


def check_pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both checked with :func:`check_images` and of the same shape."""
    pred = check_images(pred, "pred")
    target = check_images(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    return pred, target


def region_weights(mask: torch.Tensor | None, region: str, like: torch.Tensor) -> torch.Tensor | None:
    """Per-pixel weights (N, 1, H, W) selecting ``region`` of ``mask``; None for the whole image.

    ``mask``: (N, 1, H, W), (1, H, W) or (H, W), values in [0, 1] (1 = the inpainting region).
    ``region``: "all" (ignore the mask), "inside" (mask) or "outside" (1 - mask).
    """
    if region not in REGIONS:
        raise ValueError(f"region: expected one of {', '.join(REGIONS)}, got {region!r}")
    if region == "all":
        return None
    if mask is None:
        raise ValueError(f"region={region!r} needs a mask (N, 1, H, W) in [0, 1]")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask: expected a torch.Tensor, got {type(mask).__name__}")
    m = mask.float()
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None] if m.shape[0] == like.shape[0] and m.shape[0] != 1 else m[None]
    n, _, h, w = like.shape
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != (h, w) or m.shape[0] not in (1, n):
        raise ValueError(f"mask: expected shape (N, 1, {h}, {w}) with N = 1 or {n}, got {tuple(mask.shape)}")
    if m.numel() and (float(m.min()) < 0 or float(m.max()) > 1):
        raise ValueError(f"mask: expected values in [0, 1], got min {float(m.min()):.3g}, max {float(m.max()):.3g}")
    m = m.expand(n, 1, h, w).to(like.device)
    weights = m if region == "inside" else 1 - m
    empty = (weights.flatten(1).sum(1) <= 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"mask: region {region!r} is empty for image(s) {empty}")
    return weights
