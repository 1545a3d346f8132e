"""Scoring a warp on a whole test split, and its references: no warp, and the best warp of a family.

- :func:`evaluate_warps`: warp every sample with a ``batch -> grid`` function and score it with
  :mod:`vtonlab.metrics.warp` (EPE, IoU, SSIM), keeping images for figures when asked.
- :func:`identity_grid_fn`: the "no warp" baseline.
- :func:`oracle_grid_fn`: the affine map or 5x5 TPS fitted to SynthVTON's ``gt_flow`` by least squares.
  It minimises the EPE's squared form, so it is the best *EPE* a perfect regressor of that family
  could reach; it is not the best IoU or SSIM (a warp fitted to the visible points says nothing about
  the garment's outline where points are hidden, and least squares trades outline for interior).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from vtonlab import tps
from vtonlab.data.preload import Preloaded, preload
from vtonlab.metrics import warp as warp_metrics_module

__all__ = ["identity_grid_fn", "oracle_grid_fn", "warp_garment", "evaluate_warps"]

GridFn = Callable[[Mapping[str, Tensor]], Tensor]


def _need(batch: Mapping, keys, what: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{what} needs {', '.join(missing)} in the sample dict; it has {', '.join(map(str, batch))}")


def warp_garment(grid: Tensor, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Warp ``cloth`` (border padding: stays white, as CP-VTON) and ``cloth_mask`` (zero padding) with ``grid``.

    Returns ``(warped cloth (B, 3, H, W), warped mask (B, 1, H, W))``.
    """
    _need(batch, ("cloth", "cloth_mask"), "warp_garment")
    cloth = F.grid_sample(batch["cloth"], grid, mode="bilinear", padding_mode="border", align_corners=True)
    mask = F.grid_sample(batch["cloth_mask"], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return cloth, mask


def identity_grid_fn(batch: Mapping[str, Tensor]) -> Tensor:
    """The "no warp" baseline: the identity sampling grid ``(B, H, W, 2)``."""
    b, _, h, w = batch["cloth"].shape
    return tps.pixel_grid((h, w), device=batch["cloth"].device).expand(b, h, w, 2)


def oracle_grid_fn(transform: str = "tps", grid_size: int = 5, grid_range: float = 1.0, ridge: float = 1e-6) -> GridFn:
    """The best warp of a transformation family, fitted to ``gt_flow`` by least squares (SynthVTON only).

    For each sample, the TPS offsets (``g(p) = p + M(p) o``, :class:`vtonlab.tps.FixedGridTPS`) or the
    affine ``theta`` that minimise ``sum |g(p) - gt_flow(p)|^2`` over the visible garment pixels: a floor
    for the EPE of a learned GMM of that family (up to the tanh bound on the learned offsets), not for
    its IoU or SSIM. ``ridge`` keeps the fit defined when few pixels are visible.
    """
    if transform not in ("tps", "affine"):
        raise ValueError(f"transform: expected 'tps' or 'affine', got {transform!r}")
    fixed = tps.FixedGridTPS(grid_size, grid_range)

    def fn(batch):
        _need(batch, ("gt_flow", "gt_flow_mask"), "the oracle warp")
        flow = batch["gt_flow"].double()
        b, h, w, _ = flow.shape
        pix = tps.pixel_grid((h, w), dtype=torch.float64).reshape(h * w, 2)
        if transform == "tps":
            basis, base = fixed.interpolation_matrix((h, w), dtype=torch.float64), pix
        else:
            basis, base = torch.cat([pix, torch.ones(h * w, 1, dtype=torch.float64)], 1), torch.zeros_like(pix)
        eye = torch.eye(basis.shape[1], dtype=torch.float64)
        grids = []
        for i in range(b):
            m = batch["gt_flow_mask"][i, 0].reshape(-1) > 0.5
            a = basis[m]
            y = flow[i].reshape(-1, 2)[m] - base[m]
            coef = torch.linalg.solve(a.T @ a + ridge * eye, a.T @ y)
            grids.append(base + basis @ coef)
        return torch.stack(grids).reshape(b, h, w, 2).to(batch["cloth"].dtype)

    return fn


@torch.no_grad()
def evaluate_warps(grid_fn: GridFn | None, data, *, batch_size: int = 32, keep: bool = True) -> dict:
    """Warp every test sample and score it (EPE, IoU, SSIM; :mod:`vtonlab.metrics.warp`).

    Args:
        grid_fn: a ``batch -> grid (B, H, W, 2)`` function, or ``None`` (identity warp).
        data: a map-style dataset of SynthVTON sample dicts (or a :func:`vtonlab.data.preload.preload` result).
        keep: also return the images, grids and EPE maps (for figures and the browser widget).

    Returns:
        ``{"epe_px", "iou", "ssim"}`` per sample ``(N,)``, their means ``"mean_epe_px"``,
        ``"mean_iou"``, ``"mean_ssim"``, ``"names"``, and with ``keep`` ``"cloth"``, ``"image"``,
        ``"warped"``, ``"warped_mask"``, ``"worn_mask"``, ``"grid"``, ``"epe_map"``.
    """
    grid_fn = identity_grid_fn if grid_fn is None else grid_fn
    data = data if isinstance(data, Preloaded) else preload(data)
    out: dict[str, list] = {}
    for start in range(0, len(data), batch_size):
        batch = data.batch(start, start + batch_size)
        grid = grid_fn(batch)
        for k, v in warp_metrics_module.warp_metrics(grid, batch).items():
            out.setdefault(k, []).append(v)
        if keep:
            warped, warped_mask = warp_garment(grid, batch)
            emap = warp_metrics_module.epe_map(grid, batch["gt_flow"], batch["gt_flow_mask"])
            for k, v in (("cloth", batch["cloth"]), ("image", batch["image"]), ("warped", warped),
                         ("warped_mask", warped_mask), ("worn_mask", batch["worn_mask"]), ("grid", grid),
                         ("epe_map", emap)):
                out.setdefault(k, []).append(v.detach().cpu())
    result: dict = {k: torch.cat(v) for k, v in out.items()}
    result["names"] = list(data.names)
    for k in ("epe_px", "iou", "ssim"):
        v = result[k][torch.isfinite(result[k])]
        result[f"mean_{k}"] = v.mean().item() if v.numel() else math.nan
    return result
