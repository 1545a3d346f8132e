"""FID and KID through torchmetrics, in whatever embedding a :class:`FeatureExtractor` provides.

FID (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule...", Eq. 6): fit a Gaussian
to the features of each set and take the Fréchet distance

    FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)).

KID (Bińkowski et al. 2018, "Demystifying MMD GANs", Sec. 4): the unbiased estimate of the squared
MMD with the cubic polynomial kernel k(x, y) = (x·y / D + 1)^3, averaged over random subsets.

Both are *set* metrics (no pairing); FID is strongly biased upward for small sets (tens of
images), KID is unbiased — with identical sets its estimate is slightly *negative* (the unbiased
estimator drops the self-similarity terms within each set but not across), and 0 only in
expectation. vtonlab reports raw KID (papers often print KID x 100 or x 1000).

:class:`DistributionMetrics` caches the reference features (the LaDI-VTON protocol's ground-truth
test images) and scores any number of generated sets against them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from vtonlab.metrics.checks import check_images
from vtonlab.metrics.features import FeatureExtractor
from vtonlab.metrics.result import MetricResult


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int, name: str) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        images = images.split(batch_size)
    for b in images:
        yield check_images(b, name)


class DistributionMetrics:
    """FID and KID of generated sets against one reference set, in the embedding ``features``.

    Args:
        features: a :class:`FeatureExtractor` (see :func:`vtonlab.metrics.fid_features`).
        kid_subsets, kid_subset_size: KID averages the MMD over ``kid_subsets`` random subsets of
            ``min(kid_subset_size, n_reference, n_generated)`` images (torchmetrics defaults 100, 1000).
        seed: seeds the KID subset draws (results are reproducible; the global RNG is untouched).
        batch_size: images per feature-extraction batch when a whole tensor is given.
    """

    def __init__(self, features: FeatureExtractor, *, kid_subsets: int = 100, kid_subset_size: int = 1000,
                 seed: int = 0, batch_size: int = 32, device: torch.device | str | None = None):
        if not isinstance(features, FeatureExtractor):
            raise TypeError("features: expected a vtonlab.metrics.FeatureExtractor (wrap a module with "
                            f"vtonlab.metrics.from_module), got {type(features).__name__}")
        self.features = features
        self.seed = seed
        self.batch_size = batch_size
        self.kid_subset_size = kid_subset_size
        self.kid_subsets = kid_subsets
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.fid = FrechetInceptionDistance(feature=features, reset_real_features=False, normalize=True).to(self.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "KID will save all extracted features in buffer"
            self.kid = KernelInceptionDistance(feature=features, subsets=kid_subsets, subset_size=kid_subset_size,
                                               reset_real_features=False, normalize=True).to(self.device)
        self.n_reference = 0

    def set_reference(self, images: torch.Tensor | Iterable[torch.Tensor]) -> DistributionMetrics:
        """Embed the reference set (N, 3, H, W) in [0, 1] (a tensor or an iterable of batches)."""
        self.fid.reset_real_features = True
        self.kid.reset_real_features = True
        self.fid.reset()
        self.kid.reset()
        self.fid.reset_real_features = False
        self.kid.reset_real_features = False
        n = self._feed(images, real=True, what="reference images")
        self.n_reference = n
        return self

    def _feed(self, images, real: bool, what: str) -> int:
        """Update FID and KID with ``images`` (batched); returns how many there were (at least 2)."""
        n = 0
        for b in _batches(images, self.batch_size, what):
            b = b.to(self.device)
            self.fid.update(b, real=real)
            self.kid.update(b, real=real)
            n += b.shape[0]
        if n < 2:
            raise ValueError(f"{what}: FID/KID need at least 2 images, got {n}")
        return n

    def score(self, images: torch.Tensor | Iterable[torch.Tensor], setting: str = "") -> list[MetricResult]:
        """[FID, KID] of ``images`` (N, 3, H, W) in [0, 1] against the reference set."""
        if self.n_reference == 0:
            raise RuntimeError("DistributionMetrics.score called before set_reference(images)")
        self.fid.reset()
        self.kid.reset()
        n = self._feed(images, real=False, what="generated images")
        fid = float(self.fid.compute())
        self.kid.subset_size = min(self.kid_subset_size, n, self.n_reference)
        # subsets that are whole sets are all the same (the MMD ignores order): compute it once
        whole = self.kid.subset_size == n == self.n_reference
        self.kid.subsets = 1 if whole else self.kid_subsets
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            kid_mean, kid_std = (float(t) for t in self.kid.compute())
        f = self.features
        note = f"{n} generated vs {self.n_reference} reference images"
        common = dict(extractor=f.extractor, weights=f.weights, better="lower", setting=setting, n=n,
                      official=f.official)
        return [
            MetricResult(f.metric_name("FID"), fid, note=note, **common),
            MetricResult(f.metric_name("KID"), kid_mean, std=kid_std,
                         note=f"{note}; raw (not x100); {self.kid.subsets} subsets of {self.kid.subset_size}",
                         **common),
        ]


def fid_kid(reference: torch.Tensor, generated: torch.Tensor, features: FeatureExtractor, setting: str = "",
            **kwargs) -> list[MetricResult]:
    """One-shot [FID, KID] of ``generated`` against ``reference`` (both (N, 3, H, W) in [0, 1])."""
    return DistributionMetrics(features, **kwargs).set_reference(reference).score(generated, setting)
