"""The LaDI-VTON evaluation protocol (Morelli et al. 2023, Sec. 4 "Evaluation metrics"; its public
evaluation code), on any set of try-on results.

* The **reference** for FID and KID is the set of ground-truth test person images.
* **Paired** setting: each person is re-dressed in the garment it already wears, so the result has a
  ground truth; generated images are matched to ground truth *by file name*. Reported: SSIM and
  LPIPS (mean over pairs) and FID, KID (generated set vs reference set).
* FID and KID are computed by clean-fid with ``mode="clean"``, as LaDI-VTON's ``val_metrics.py``
  calls it (:class:`vtonlab.metrics.CleanFIDMetrics`): clean-fid's resizing to 299 x 299 and, when its
  file is local, clean-fid's Inception; otherwise a named substitute embedding on the same path.
* **Unpaired** setting: persons get another garment (second column of the pair file); there is no
  ground truth per image, so only the distribution metrics FID and KID are reported.

Images are given as mappings ``name -> (3, H, W) tensor in [0, 1]`` (a lazy mapping such as
:class:`vtonlab.metrics.folders.ImageFolder` keeps memory flat). Predictions must all have one
size (a prediction of another size is an error naming it, never silently resized). Ground truth of
another size than the predictions is resized to the prediction size (bilinear, antialiased), as
evaluation code does when generating at a lower resolution; the table notes it. That resize is
for SSIM and LPIPS only: for FID and KID every ground-truth image keeps its own size, and clean-fid
resizes each image to 299 x 299 itself.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F

from vtonlab.metrics.distribution import CleanFIDMetrics
from vtonlab.metrics.features import FeatureExtractor, fid_features
from vtonlab.metrics.perceptual import LPIPSMetric
from vtonlab.metrics.result import MetricResult, MetricTable
from vtonlab.metrics.similarity import SSIM_EXTRACTOR, ssim

SETTINGS = ("paired", "unpaired")


class MismatchError(ValueError):
    """Predictions and expected names differ; the message lists the missing and the extra ones."""


def _list(names: Sequence[str], limit: int = 8) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def check_names(expected: Sequence[str], given: Sequence[str], what: str = "predictions") -> None:
    """Raise :class:`MismatchError` naming the missing and the extra names (None when they match)."""
    exp, got = set(expected), set(given)
    missing, extra = exp - got, got - exp
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_list(missing)}")
        if extra:
            parts.append(f"{len(extra)} not expected: {_list(extra)}")
        raise MismatchError(f"{what} do not match the {len(exp)} expected images; " + "; ".join(parts))


def _stack(images: Mapping[str, torch.Tensor], names: Sequence[str], what: str,
           size: tuple[int, int] | None, resize: bool = True) -> torch.Tensor:
    """Stack ``images[names]`` into (N, 3, H, W); other sizes are resized to ``size``, or an error when not ``resize``."""
    out = []
    for name in names:
        x = images[name]
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{what} {name!r}: expected a (3, H, W) tensor in [0, 1], got {shape}")
        x = x.float()
        if size is not None and tuple(x.shape[-2:]) != size and not resize:
            got = f"{x.shape[-2]}x{x.shape[-1]}"
            raise ValueError(f"{what} {name!r} is {got} (H x W), expected {size[0]}x{size[1]} like the first "
                             f"{what}: all {what}s must have one size (resize them consistently before evaluating)")
        if size is not None and tuple(x.shape[-2:]) != size:
            x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)
        out.append(x)
    return torch.stack(out)


def _chunks(names: Sequence[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(names), n):
        yield list(names[i: i + n])


def evaluate_tryon(pred: Mapping[str, torch.Tensor], ground_truth: Mapping[str, torch.Tensor], setting: str, *,
                   names: Sequence[str] | None = None, lpips: LPIPSMetric | None = None,
                   features: FeatureExtractor | None = None, batch_size: int = 16, kid_subset_size: int = 1000,
                   seed: int = 0, title: str = "") -> MetricTable:
    """Score try-on results with the LaDI-VTON protocol.

    Args:
        pred: generated images by name, (3, H, W) in [0, 1].
        ground_truth: ground-truth person images by name (the reference set: all of them are used).
        setting: "paired" (SSIM, LPIPS, FID, KID) or "unpaired" (FID, KID).
        names: the names the predictions must have (default: the ground-truth names). Missing or
            extra predictions raise :class:`MismatchError`.
        lpips: an :class:`LPIPSMetric` (default ``LPIPSMetric("auto")``).
        features: the FID/KID embedding (default ``fid_features("auto")``).

    Returns a :class:`MetricTable` whose rows name their extractor and weights, with per-image
    SSIM / LPIPS in ``table.per_image`` for the paired setting.
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting: expected 'paired' or 'unpaired', got {setting!r}")
    for option, value, low in (("batch_size", batch_size, 1), ("kid_subset_size", kid_subset_size, 2)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{option}: expected an integer >= {low}, got {value!r}")
    gt_names = list(ground_truth.keys())
    if len(gt_names) < 2:
        raise ValueError(f"ground_truth: FID/KID need at least 2 reference images, got {len(gt_names)}")
    names = list(gt_names if names is None else names)
    check_names(names, list(pred.keys()))
    if setting == "paired":
        check_names(names, gt_names, what="paired predictions' ground-truth images")
    features = features if features is not None else fid_features("auto", seed=seed)

    first = pred[names[0]]
    size = tuple(first.shape[-2:])
    gt_size = tuple(ground_truth[gt_names[0]].shape[-2:])
    table = MetricTable(title=title or f"LaDI-VTON protocol, {setting} setting")
    if gt_size != size:
        table.notes.append(f"ground truth {gt_size[0]}x{gt_size[1]} resized to the predictions' "
                           f"{size[0]}x{size[1]} (bilinear, antialiased) for SSIM and LPIPS; FID/KID see every "
                           "image at its own size, resized to 299x299 by clean-fid")

    dist = CleanFIDMetrics(features, kid_subset_size=kid_subset_size, seed=seed, batch_size=batch_size)
    # lists of (3, H, W): ground-truth images may differ in size, clean-fid resizes each one
    dist.set_reference([_stack(ground_truth, [n], "ground truth", None)[0] for n in chunk]
                       for chunk in _chunks(gt_names, batch_size))

    if setting == "paired":
        lpips = lpips if lpips is not None else LPIPSMetric("auto")
        ssims, dists = [], []
        for chunk in _chunks(names, batch_size):
            p = _stack(pred, chunk, "prediction", size, resize=False)
            g = _stack(ground_truth, chunk, "ground truth", size)
            ssims.append(ssim(p, g))
            dists.append(lpips(p, g))
        s, d = torch.cat(ssims), torch.cat(dists)
        table.add(MetricResult("SSIM", s.mean().item(), SSIM_EXTRACTOR, "none", better="higher", setting=setting,
                               std=s.std().item() if len(s) > 1 else None, n=len(s)))
        table.add(MetricResult(lpips.name, d.mean().item(), lpips.extractor, lpips.weights, better="lower",
                               setting=setting, std=d.std().item() if len(d) > 1 else None, n=len(d),
                               official=lpips.official))
        table.per_image = {n: {"SSIM": float(a), lpips.name: float(b)} for n, a, b in zip(names, s, d)}
        if lpips.reason:
            table.notes.append(f"{lpips.name} is a substitute for LPIPS: {lpips.reason}")

    table.extend(dist.score((_stack(pred, chunk, "prediction", size, resize=False) for chunk in _chunks(names, batch_size)),
                            setting=setting))
    if features.reason:
        table.notes.append(f"{features.metric_name('FID')}/{features.metric_name('KID')} use a substitute "
                           f"embedding: {features.reason}")
    return table
