"""Metric sweeps over controlled degradations: what each metric sees (notebook 05).

:func:`degrade` maps a degradation kind and a strength in [0, 1] to one of the functions of
:mod:`vtonlab.metrics.degradations`, scaled to the image size so that a strength means the same
at 64x48 and at 256x192:

==========  ==========================================================  ==================
kind        what changes                                                at strength 1
==========  ==========================================================  ==================
blur        Gaussian blur of the whole image                            sigma = W / 24
colour      hue rotation of the garment region                          180 degrees
shift       the garment region moved right and down (misaligned warp)   (W / 6, H / 16) px
texture     the garment region blended towards a donor garment          fully swapped
==========  ==========================================================  ==================

:func:`sweep` scores every (kind, strength) with the paired metrics (per image) and the
distribution metrics (per set, against the undegraded images as reference, as in the LaDI-VTON
protocol), and :func:`rank_agreement` measures how far two metrics order the same degraded
images alike (Spearman's rho, from scipy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats

from vtonlab.metrics import degradations as D
from vtonlab.metrics.distribution import DistributionMetrics
from vtonlab.metrics.features import FeatureExtractor
from vtonlab.metrics.perceptual import LPIPSMetric
from vtonlab.metrics.similarity import psnr, ssim_regions

KINDS = ("blur", "colour", "shift", "texture")
KIND_LABELS = {
    "blur": "blur (sigma up to W/24)",
    "colour": "garment hue rotation (up to 180°)",
    "shift": "garment shift (up to W/6, H/16)",
    "texture": "garment texture swap (alpha up to 1)",
}


def degrade(kind: str, images: torch.Tensor, masks: torch.Tensor, strength: float, *,
            donors: torch.Tensor | None = None, fill: torch.Tensor | float = 0.5) -> torch.Tensor:
    """Degrade images (N, 3, H, W) in [0, 1] with garment masks (N, 1, H, W); see the module table.

    ``donors`` (N, 3, H, W): the garment images pasted by "texture"; ``fill``: what "shift" leaves
    where the garment was (an image or a grey level).
    """
    if not 0 <= strength <= 1:
        raise ValueError(f"strength: expected a value in [0, 1], got {strength}")
    h, w = images.shape[-2:]
    if kind == "blur":
        return D.gaussian_blur(images, strength * w / 24)
    if kind == "colour":
        return D.hue_rotate(images, 180 * strength, masks)
    if kind == "shift":
        return D.shift_region(images, masks, dx=round(strength * w / 6), dy=round(strength * h / 16), fill=fill)
    if kind == "texture":
        if donors is None:
            raise ValueError("kind 'texture' needs donors: (N, 3, H, W) images whose garment is pasted")
        return D.texture_swap(images, masks, donors, alpha=strength)
    raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


@dataclass
class Sweep:
    """Scores of a degradation sweep.

    ``per_image[metric][kind]``: array (S, N) over strengths and images (paired metrics);
    ``per_set[metric][kind]``: array (S,) (FID / KID); ``labels[metric]``: extractor and weights;
    ``changed[kind]``: bool (S, N), whether the degraded image differs from the original by more than
    one grey level anywhere (a hue rotation leaves a grey garment unchanged).
    """

    strengths: np.ndarray
    kinds: tuple[str, ...]
    per_image: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    per_set: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    better: dict[str, str] = field(default_factory=dict)
    changed: dict[str, np.ndarray] = field(default_factory=dict)

    def curve(self, metric: str, kind: str) -> np.ndarray:
        """Mean over images (paired metrics) or the set value, per strength: (S,)."""
        if metric in self.per_image:
            return self.per_image[metric][kind].mean(axis=1)
        if metric in self.per_set:
            return self.per_set[metric][kind]
        raise KeyError(f"no metric {metric!r} in this sweep; have {', '.join(self.metrics)}")

    @property
    def metrics(self) -> list[str]:
        return list(self.per_image) + list(self.per_set)

    def monotonicity(self, metric: str, kind: str) -> float:
        """How well the metric orders the damage: Spearman's rho between strength and "badness"
        (higher-is-better metrics negated); 1 = always worse at a higher strength.

        Set metrics: over the S sets. Paired metrics: the mean over images of each image's rho,
        using only the strengths at which that image actually changed (plus strength 0); images
        that never change are left out, a metric that stays constant on a changing image scores 0.
        """
        sign = -1.0 if self.better[metric] == "higher" else 1.0
        if metric in self.per_set:
            return _spearman(self.strengths, sign * self.per_set[metric][kind])
        v = sign * _finite(self.per_image[metric][kind])
        changed = self.changed.get(kind, np.ones_like(v, dtype=bool))
        rhos = []
        for i in range(v.shape[1]):
            keep = changed[:, i] | (self.strengths == 0)
            if keep.sum() < 2 or not changed[:, i].any():
                continue
            rho = _spearman(self.strengths[keep], v[keep, i])
            rhos.append(0.0 if np.isnan(rho) else rho)
        return float(np.mean(rhos)) if rhos else float("nan")


def _finite(v: np.ndarray) -> np.ndarray:
    """+inf PSNR of untouched images -> a value above every finite one (keeps the order)."""
    v = v.astype(np.float64).copy()
    bad = ~np.isfinite(v)
    if bad.any():
        top = np.nanmax(np.where(bad, np.nan, v)) if (~bad).any() else 0.0
        v[bad] = top + 1.0
    return v


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def rank_agreement(a: np.ndarray, b: np.ndarray, *, higher_is_better: tuple[bool, bool] = (False, False)) -> float:
    """Spearman's rho between two metrics' "badness" over the same degraded images (any shape)."""
    x = _finite(np.asarray(a)).ravel() * (-1 if higher_is_better[0] else 1)
    y = _finite(np.asarray(b)).ravel() * (-1 if higher_is_better[1] else 1)
    if x.shape != y.shape:
        raise ValueError(f"rank_agreement needs values for the same images, got {x.shape} and {y.shape}")
    return _spearman(x, y)


def sweep(images: torch.Tensor, masks: torch.Tensor, strengths: Sequence[float], *, donors: torch.Tensor,
          fill: torch.Tensor | float = 0.5, lpips: Sequence[LPIPSMetric] = (),
          features: Sequence[FeatureExtractor] = (), kinds: Sequence[str] = KINDS,
          extra: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None,
          pixel_metrics: bool = True, kid_subset_size: int = 1000, seed: int = 0) -> Sweep:
    """Score every degradation kind at every strength.

    Paired metrics per image: SSIM, SSIM inside/outside the garment mask, PSNR (unless
    ``pixel_metrics`` is False), each LPIPS in
    ``lpips`` and each function in ``extra`` (name -> f(pred, target) -> (N,), lower is better). Set metrics: FID and
    KID in each embedding of ``features``, the undegraded images being the reference.
    """
    strengths = np.asarray(strengths, dtype=np.float64)
    out = Sweep(strengths=strengths, kinds=tuple(kinds))
    ssim_names = {"all": "SSIM", "inside": "SSIM inside", "outside": "SSIM outside"}  # region -> metric
    paired: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}
    if pixel_metrics:
        paired["PSNR"] = lambda p, t: psnr(p, t)
        out.labels.update({"SSIM": "torchmetrics SSIM", "SSIM inside": "SSIM map averaged inside the garment mask",
                           "SSIM outside": "SSIM map averaged outside the garment mask",
                           "PSNR": "torchmetrics PSNR (dB)"})
        for name in (*ssim_names.values(), "PSNR"):
            out.better[name] = "higher"
    for metric in lpips:
        paired[metric.name] = metric
        out.labels[metric.name] = metric.weights
        out.better[metric.name] = "lower"
    for name, fn in (extra or {}).items():
        paired[name] = fn
        out.labels.setdefault(name, name)
        out.better.setdefault(name, "lower")
    dists = []
    for f in features:
        dists.append(DistributionMetrics(f, kid_subset_size=kid_subset_size, seed=seed).set_reference(images))
        for m in ("FID", "KID"):
            out.labels[f.metric_name(m)] = f"{f.extractor}; {f.weights}"
            out.better[f.metric_name(m)] = "lower"
    for name in (list(ssim_names.values()) if pixel_metrics else []) + list(paired):
        out.per_image[name] = {k: np.zeros((len(strengths), len(images))) for k in kinds}
    for f in features:
        for m in ("FID", "KID"):
            out.per_set[f.metric_name(m)] = {k: np.zeros(len(strengths)) for k in kinds}
    out.changed = {k: np.zeros((len(strengths), len(images)), dtype=bool) for k in kinds}
    for kind in kinds:
        for i, s in enumerate(strengths):
            x = degrade(kind, images, masks, float(s), donors=donors, fill=fill)
            out.changed[kind][i] = ((x - images).abs().flatten(1).amax(1) > 1 / 255).numpy()
            if pixel_metrics:  # one SSIM map for the three regions
                for region, v in ssim_regions(x, images, masks).items():
                    out.per_image[ssim_names[region]][kind][i] = v.double().numpy()
            for name, fn in paired.items():
                out.per_image[name][kind][i] = fn(x, images).double().numpy()
            for dm in dists:
                for r in dm.score(x):
                    out.per_set[r.name][kind][i] = r.value
    return out
