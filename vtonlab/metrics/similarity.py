"""SSIM and PSNR, on the whole image or on one side of the inpainting mask.

SSIM (Wang et al. 2004, "Image quality assessment: from error visibility to structural
similarity", Eq. 13) compares local means, variances and covariance in a Gaussian window
(11x11, sigma 1.5):

    SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
    C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = data range = 1.

torchmetrics computes this map at every pixel (reflection padding at the border) and averages it
over pixels and channels; that average is the SSIM that LaDI-VTON reports (float32 by default, see
:func:`ssim_map` on precision).

**Masked SSIM** (defined here, not in the papers): the same SSIM map, averaged only over the
pixels of a region, weighted by the mask,

    SSIM_R(x, y) = sum_p w_p * mean_c SSIM_map(x, y)[c, p] / sum_p w_p,

with w = mask ("inside", the inpainted region) or 1 - mask ("outside", what the model should
have copied). With w = 1 everywhere it equals the plain SSIM exactly. The Gaussian window still
sees up to 5 pixels across the region's border, so the two sides are not fully independent.

**Masked PSNR**: 10 log10(L^2 / MSE_R), with MSE_R the mean squared error over the region's
pixels and the 3 channels. PSNR of identical images is +inf.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from vtonlab.metrics.checks import check_pair, region_weights
from vtonlab.metrics.result import MetricResult

SSIM_EXTRACTOR = "torchmetrics SSIM (Gaussian window 11, sigma 1.5, data range 1)"
PSNR_EXTRACTOR = "torchmetrics PSNR (data range 1)"


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The SSIM map (N, 3, H, W) of two image batches (N, 3, H, W) in [0, 1] (Wang et al. 2004, Eq. 13).

    Computed in the inputs' precision (float32 unless float64 tensors are given). In float32 the
    variances E[x^2] - E[x]^2 of flat image regions cancel, so SSIM(x, x) of images with large flat
    areas reads 1 only to about 1e-4 (as in every float32 evaluation); float64 inputs give 1 exactly,
    at roughly 15x the cost on CPU.
    """
    pred, target = check_pair(pred, target)
    _, full = structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none",
                                                  return_full_image=True)
    return full


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
         region: str = "all") -> torch.Tensor:
    """SSIM per image (N,), higher is better, 1 for identical images.

    Args:
        pred, target: (N, 3, H, W) in [0, 1].
        mask: (N, 1, H, W) in [0, 1], needed for ``region`` "inside" / "outside".
        region: "all", "inside" (mask = 1) or "outside" (mask = 0); see the module docstring.
    """
    full = ssim_map(pred, target).mean(1, keepdim=True)  # (N, 1, H, W)
    w = region_weights(mask, region, full)
    if w is None:
        return full.flatten(1).mean(1)
    return (full * w).flatten(1).sum(1) / w.flatten(1).sum(1)


def ssim_regions(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """SSIM per image (N,) on the whole image, inside and outside ``mask`` from one SSIM map."""
    full = ssim_map(pred, target).mean(1, keepdim=True)
    out = {"all": full.flatten(1).mean(1)}
    for region in ("inside", "outside"):
        w = region_weights(mask, region, full)
        out[region] = (full * w).flatten(1).sum(1) / w.flatten(1).sum(1)
    return out


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
         region: str = "all") -> torch.Tensor:
    """PSNR in dB per image (N,), higher is better, +inf for identical images.

    Whole images go through torchmetrics; a region uses the weighted MSE of the module docstring.
    """
    pred, target = check_pair(pred, target)
    w = region_weights(mask, region, pred)
    if w is None:
        return peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))
    se = (pred - target).pow(2).mean(1, keepdim=True)  # mean over channels, (N, 1, H, W)
    mse = (se * w).flatten(1).sum(1) / w.flatten(1).sum(1)
    return 10 * torch.log10(1.0 / mse)


def _region_label(region: str) -> str:
    return {"all": "", "inside": "inside mask", "outside": "outside mask"}[region]


def ssim_result(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                region: str = "all", setting: str = "") -> MetricResult:
    """Mean :func:`ssim` over the batch as a :class:`MetricResult` (std over images)."""
    v = ssim(pred, target, mask, region)
    where = ", ".join(s for s in (setting, _region_label(region)) if s)
    return MetricResult("SSIM", v.mean().item(), SSIM_EXTRACTOR, "none", better="higher", setting=where,
                        std=v.std().item() if v.numel() > 1 else None, n=v.numel())


def psnr_result(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                region: str = "all", setting: str = "") -> MetricResult:
    """Mean :func:`psnr` over the batch (dB) as a :class:`MetricResult`."""
    v = psnr(pred, target, mask, region)
    where = ", ".join(s for s in (setting, _region_label(region)) if s)
    std = v.std().item() if v.numel() > 1 and torch.isfinite(v).all() else None
    return MetricResult("PSNR", v.mean().item(), PSNR_EXTRACTOR, "none", better="higher", setting=where,
                        std=std, n=v.numel(), note="dB")
