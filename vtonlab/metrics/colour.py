"""Colour fidelity inside a region: the mean CIELAB colour, its chroma, and CIE76 Delta E between two images.

A try-on can have the right shape and the wrong colour, and an autoencoder can keep the layout of a garment while
washing its colour out; neither shows much in SSIM or LPIPS. These measures compare the *mean* CIELAB colour
(kornia's sRGB -> CIELAB, D65) of an image region with the same region of a reference. CIE76 Delta E is the
Euclidean distance in CIELAB (about 2.3 is a just noticeable difference); chroma is the norm of (a, b) (0 for greys).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mean_lab", "chroma", "colour_error", "chroma_ratio"]


def mean_lab(images: Tensor, region: Tensor) -> Tensor:
    """Per image: the mean CIELAB colour ``(N, 3)`` (L, a, b) of ``images`` ``(N, 3, H, W)`` in [0, 1] inside
    ``region`` ``(N, 1, H, W)``; zeros where the region is empty."""
    from kornia.color import rgb_to_lab

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected (N, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
    if region.ndim != 4 or region.shape[1] != 1 or region.shape[0] != images.shape[0] or region.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"region: expected (N, 1, H, W) matching images {tuple(images.shape)}, got {tuple(region.shape)}")
    w = region.float()
    area = w.flatten(1).sum(1)
    return (rgb_to_lab(images.float().clamp(0, 1)) * w).flatten(2).sum(2) / area.clamp_min(1)[:, None]


def chroma(images: Tensor, region: Tensor) -> Tensor:
    """Per image: the chroma (norm of a, b) of the mean CIELAB colour (:func:`mean_lab`) inside ``region``."""
    return mean_lab(images, region)[:, 1:].norm(dim=1)


def colour_error(pred: Tensor, target: Tensor, region: Tensor) -> Tensor:
    """Per image: CIE76 Delta E between the mean CIELAB colours (:func:`mean_lab`) of ``pred`` and ``target``
    ``(N, 3, H, W)`` in [0, 1] inside ``region`` ``(N, 1, H, W)``; NaN where the region is empty."""
    d = (mean_lab(pred, region) - mean_lab(target, region)).norm(dim=1)
    area = region.float().flatten(1).sum(1)
    return torch.where(area > 0, d, torch.full_like(d, float("nan")))


def chroma_ratio(pred: Tensor, target: Tensor, region: Tensor) -> float:
    """How much of ``target``'s colour ``pred`` keeps inside ``region``: the mean chroma of ``pred`` over the mean
    chroma of ``target`` (images with a non-empty region only; 1 = as saturated, 0 = grey); NaN if none."""
    keep = region.float().flatten(1).sum(1) > 0
    if not keep.any():
        return float("nan")
    return float(chroma(pred[keep], region[keep]).mean() / chroma(target[keep], region[keep]).mean().clamp_min(1e-6))
