"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", Eq. 1), through the ``lpips`` package, with the weights that are actually available.

    d(x, y) = sum_l 1/(H_l W_l) sum_{h,w} || w_l ⊙ (f̂_l(x)_{hw} - f̂_l(y)_{hw}) ||_2^2

f̂_l are the channel-unit-normalised activations of AlexNet's five conv layers, w_l non-negative
per-channel weights ("linear heads") that the authors fitted to human 2AFC judgements *for the
ImageNet AlexNet's channels*. LaDI-VTON reports this "LPIPS (AlexNet)".

Two configurations:

* **LPIPS** (official): trunk = ImageNet AlexNet read from the torch cache
  (``alexnet-owt-7be5be79.pth``, see :mod:`vtonlab.metrics.weights`), heads = ``lpips`` v0.1.
* **LPIPS-randalex** (substitute, used when that file is absent): the same formula with an AlexNet
  trunk drawn at random from a fixed seed. The heads still come from the package, but they were
  calibrated for ImageNet channel *k*; random channel *k* computes something unrelated, so the
  heads act as a fixed, arbitrary non-negative weighting of random features. What survives is the
  structure of the metric: multi-scale, unit-normalised, spatially averaged feature differences
  of random filters, which respond to edges, colour and texture energy. Its values are **not**
  comparable with any published LPIPS; notebook 05 measures what it does and does not track.

The lpips package is always built with ``pnet_rand=True`` and ``pretrained=False`` (so it loads
nothing itself); we load both weight files ourselves with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lpips
import torch
from torch import nn

from vtonlab.metrics.checks import check_pair
from vtonlab.metrics.result import MetricResult
from vtonlab.metrics.weights import find_official, load_state_dict, missing_message, take_prefixed

LPIPS_LIN_FILE = Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / "alex.pth"
EXTRACTOR = "LPIPS v0.1 (AlexNet conv1-5, unit-normalised, linear heads; lpips package)"
WEIGHT_CHOICES = ("auto", "imagenet", "random")


def _build_lpips(seed: int) -> lpips.LPIPS:
    """lpips.LPIPS with a random AlexNet trunk drawn from ``seed`` and the v0.1 heads loaded here."""
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.simplefilter("ignore")  # torchvision's deprecation note for lpips' pretrained= argument
        net = lpips.LPIPS(pretrained=False, net="alex", version="0.1", pnet_rand=True, verbose=False)
    heads = load_state_dict(LPIPS_LIN_FILE, what="lpips v0.1 linear heads")
    result = net.load_state_dict(heads, strict=False)
    lin_keys = {k for k in net.state_dict() if k.startswith("lin")}
    if result.unexpected_keys or not set(heads) & lin_keys:
        raise ValueError(f"lpips heads: {LPIPS_LIN_FILE} does not fit lpips.LPIPS(net='alex') "
                         f"(unexpected keys: {result.unexpected_keys[:4]})")
    return net


def _load_alexnet_trunk(net: lpips.LPIPS, path: Path) -> None:
    """Copy torchvision AlexNet ``features.<i>.*`` weights into lpips' ``net.slice<k>.<i>.*``."""
    state = load_state_dict(path, what="AlexNet weights")
    targets = [k for k in net.state_dict() if k.startswith("net.slice")]
    # lpips keeps torchvision's layer index i inside each slice: net.slice2.3.weight <- features.3.weight
    wanted = [k.split(".", 2)[2] for k in targets]
    src = take_prefixed(state, "features.", wanted, path=path, what="AlexNet weights")
    mapped = {t: src[w] for t, w in zip(targets, wanted)}
    own = net.state_dict()
    bad = [t for t in targets if own[t].shape != mapped[t].shape]
    if bad:
        raise ValueError(f"AlexNet weights: {path} has wrong shapes for {bad[:3]} (expected torchvision AlexNet)")
    net.load_state_dict(mapped, strict=False)


class LPIPSMetric(nn.Module):
    """LPIPS distance per image pair; lower is better, 0 for identical images.

    Args:
        weights: "auto" (ImageNet AlexNet when its file is in the torch cache, else random),
            "imagenet" (require the file; FileNotFoundError otherwise) or "random".
        seed: seed of the random trunk (substitute only).

    Attributes ``name`` ("LPIPS" or "LPIPS-randalex"), ``extractor``, ``weights`` (label),
    ``official`` and ``reason`` (why the substitute is used) describe what is measured.
    """

    def __init__(self, weights: str = "auto", seed: int = 0):
        super().__init__()
        if weights not in WEIGHT_CHOICES:
            raise ValueError(f"weights: expected one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")
        local = find_official("alexnet") if weights != "random" else None
        if weights == "imagenet" and local is None:
            raise FileNotFoundError(missing_message("alexnet"))
        self.net = _build_lpips(seed)
        if local is not None:
            _load_alexnet_trunk(self.net, local.path)
            self.name = "LPIPS"
            self.weights = f"trunk: {local.label}; heads: lpips v0.1 alex.pth"
            self.official = local.verified
            self.reason = ""
        else:
            self.name = "LPIPS-randalex"
            self.weights = (f"trunk: random AlexNet (seed {seed}), not ImageNet; heads: lpips v0.1 alex.pth "
                            "(calibrated for ImageNet AlexNet channels)")
            self.official = False
            self.reason = "chosen: weights='random'" if weights == "random" else missing_message("alexnet")
        self.extractor = EXTRACTOR
        self.net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPSMetric:  # a metric never trains (dropout stays off)
        return super().train(False)

    @torch.no_grad()
    def forward(self, pred: torch.Tensor, target: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """Distances (N,) between image batches (N, 3, H, W) in [0, 1] (at least 32 x 32 pixels)."""
        pred, target = check_pair(pred, target)
        if min(pred.shape[-2:]) < 32:
            raise ValueError(f"LPIPS needs images of at least 32x32 pixels (AlexNet strides), got "
                             f"{tuple(pred.shape[-2:])}")
        device = next(self.net.parameters()).device
        out = [self.net(p.to(device), t.to(device), normalize=True).flatten()
               for p, t in zip(pred.split(batch_size), target.split(batch_size))]
        return torch.cat(out).cpu()

    def result(self, pred: torch.Tensor, target: torch.Tensor, setting: str = "") -> MetricResult:
        """Mean distance over the batch as a :class:`MetricResult` (std over images)."""
        d = self(pred, target)
        return MetricResult(self.name, d.mean().item(), self.extractor, self.weights, better="lower",
                            setting=setting, std=d.std().item() if d.numel() > 1 else None, n=d.numel(),
                            official=self.official)

    def __repr__(self) -> str:
        return f"LPIPSMetric(name={self.name!r}, official={self.official}, weights={self.weights!r})"
