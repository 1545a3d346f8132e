"""FID and KID, in whatever embedding a :class:`FeatureExtractor` provides, along two paths:

* :class:`DistributionMetrics` / :func:`fid_kid`: torchmetrics, on the tensors as given (each
  extractor resizes inside); quick, used by the degradation studies;
* :class:`CleanFIDMetrics` / :func:`cleanfid_fid_kid`: clean-fid (Parmar et al. 2022, "On Aliased
  Resizing and Surprising Subtleties in GAN Evaluation", arXiv 2104.11222), ``mode="clean"``, as
  LaDI-VTON's evaluation code calls it: every image quantised to 8 bits (as the saved PNG it
  would be), resized to 299 x 299 by clean-fid's resizer (PIL bicubic on float channels, no
  re-quantisation), embedded, then clean-fid's ``frechet_distance`` and ``kernel_distance``.
  The LaDI-VTON protocol (:func:`vtonlab.metrics.evaluate_tryon`) uses this path.

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

import importlib.metadata
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from cleanfid import fid as cleanfid_fid
from cleanfid import resize as cleanfid_resize
from scipy.linalg import LinAlgWarning
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchvision.transforms import ToTensor

from vtonlab.metrics.checks import check_images
from vtonlab.metrics.features import FeatureExtractor
from vtonlab.metrics.result import MetricResult


def _batches(images: torch.Tensor | Iterable[torch.Tensor], batch_size: int, name: str) -> Iterable[torch.Tensor]:
    if isinstance(images, torch.Tensor):
        images = images.split(batch_size)
    for b in images:
        yield check_images(b, name)


def _init_common(metrics, features, kid_subsets: int, kid_subset_size: int, seed: int, batch_size: int, device) -> None:
    """The settings both FID/KID paths keep (torchmetrics and clean-fid), after checking the extractor."""
    if not isinstance(features, FeatureExtractor):
        raise TypeError("features: expected a vtonlab.metrics.FeatureExtractor (wrap a module with "
                        f"vtonlab.metrics.from_module), got {type(features).__name__}")
    metrics.features = features
    metrics.kid_subsets = kid_subsets
    metrics.kid_subset_size = kid_subset_size
    metrics.seed = seed
    metrics.batch_size = batch_size
    metrics.device = torch.device(device) if device is not None else torch.device("cpu")


def _fid_kid_results(f, extractor: str, setting: str, n: int, fid: float, kid: float, kid_std: float | None,
                     note: str, kid_note: str) -> list[MetricResult]:
    """The FID and KID results of one comparison, named and labelled by the feature extractor ``f``."""
    common = dict(extractor=extractor, weights=f.weights, better="lower", setting=setting, n=n, official=f.official)
    return [MetricResult(f.metric_name("FID"), fid, note=note, **common),
            MetricResult(f.metric_name("KID"), kid, std=kid_std, note=kid_note, **common)]


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
        _init_common(self, features, kid_subsets, kid_subset_size, seed, batch_size, device)
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
        if self.kid.subsets == 1:  # one subset has no spread: print none rather than "± 0"
            kid_std, kid_note = None, f"one subset of {self.kid.subset_size}: no spread"
        else:
            kid_note = f"mean ± std over {self.kid.subsets} subsets of {self.kid.subset_size}"
        return _fid_kid_results(f, f.extractor, setting, n, fid, kid_mean, kid_std, note,
                                f"{note}; raw (not x100); {kid_note}")


def fid_kid(reference: torch.Tensor, generated: torch.Tensor, features: FeatureExtractor, setting: str = "",
            **kwargs) -> list[MetricResult]:
    """One-shot [FID, KID] of ``generated`` against ``reference`` (both (N, 3, H, W) in [0, 1])."""
    return DistributionMetrics(features, **kwargs).set_reference(reference).score(generated, setting)


# ------------------------------------------------------------------------------------------ clean-fid

CLEANFID_MODE = "clean"
CLEANFID_VERSION = importlib.metadata.version("clean-fid")


def quantise(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8, rounded as a saved PNG would be (torchvision's
    ``save_image``: ``x * 255 + 0.5`` truncated); clean-fid reads exactly such 8-bit images."""
    return (image.detach().float().cpu().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


def cleanfid_batch(images: torch.Tensor | Sequence[torch.Tensor], mode: str = CLEANFID_MODE) -> torch.Tensor:
    """What clean-fid hands its extractor: images (N, 3, H, W) or a list of (3, H, W), in [0, 1] and of
    any sizes -> (N, 3, 299, 299) float32 in [0, 255].

    Per image, as clean-fid's ``ResizeDataset``: 8-bit quantisation, ``cleanfid.resize.build_resizer(mode)``
    (for "clean": PIL bicubic resize of each float channel, clipped to [0, 255], not re-quantised),
    ``torchvision.transforms.ToTensor`` (a float array is only transposed, not rescaled).
    """
    resize = cleanfid_resize.build_resizer(mode)  # looked up at call time: the tests watch it
    to_tensor = ToTensor()
    out = []
    for x in images:
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"images: expected (3, H, W) tensors in [0, 1], got {shape}")
        r = resize(quantise(x))
        t = to_tensor(r) * 255 if r.dtype == np.uint8 else to_tensor(r)  # clean-fid's ResizeDataset rule
        out.append(t.float())
    if not out:
        raise ValueError("images: no images given")
    return torch.stack(out)


class CleanFIDMetrics:
    """FID and KID of generated sets against one reference set, computed by clean-fid (``mode="clean"``).

    The extractor is :func:`vtonlab.metrics.cleanfid_inception_features` (clean-fid's own
    TorchScript Inception, LaDI-VTON's setting) or any named substitute, which clean-fid's
    pipeline feeds through :meth:`FeatureExtractor.cleanfid_forward` (its ``custom_feat_extractor``
    route). FID: ``cleanfid.fid.frechet_distance`` of the two Gaussians (features' mean and
    ``np.cov``). KID: ``cleanfid.fid.kernel_distance(reference, generated, ...)`` — clean-fid draws
    its subsets from numpy's global generator; here that generator is seeded with ``seed`` and
    restored afterwards, and the subsets are drawn one at a time, so that their spread is known.
    Their mean is clean-fid's KID on the same draws.

    Args:
        features: the embedding (a :class:`FeatureExtractor`).
        kid_subsets, kid_subset_size: clean-fid's ``num_subsets`` (100) and ``max_subset_size`` (1000).
        seed: seeds the KID subset draws.
        batch_size: images per extractor call.
    """

    def __init__(self, features: FeatureExtractor, *, kid_subsets: int = 100, kid_subset_size: int = 1000,
                 seed: int = 0, batch_size: int = 32, device: torch.device | str | None = None):
        if kid_subsets < 1 or kid_subset_size < 2:
            raise ValueError(f"kid_subsets must be >= 1 and kid_subset_size >= 2, got {kid_subsets}, {kid_subset_size}")
        _init_common(self, features, kid_subsets, kid_subset_size, seed, batch_size, device)
        self.reference_features: np.ndarray | None = None

    @property
    def extractor(self) -> str:
        """The extractor as printed in results: the network and clean-fid's resizing path."""
        return (f"{self.features.extractor}; clean-fid {CLEANFID_VERSION} mode='{CLEANFID_MODE}' "
                "(8-bit images, PIL bicubic to 299x299)")

    def embed(self, images: torch.Tensor | Iterable[torch.Tensor | Sequence[torch.Tensor]], what: str = "images"
              ) -> np.ndarray:
        """clean-fid features (N, D) float32 of ``images``: a tensor (N, 3, H, W) in [0, 1], or an
        iterable of such batches or of lists of (3, H, W) tensors (sizes may differ)."""
        if isinstance(images, torch.Tensor):
            images = [check_images(images, what)]
        feats = []
        model = self.features.to(self.device)
        for chunk in images:
            if isinstance(chunk, torch.Tensor):
                chunk = check_images(chunk, what)
            else:
                chunk = [check_images(x[None], what)[0] for x in chunk]
            for i in range(0, len(chunk), self.batch_size):
                batch = cleanfid_batch(chunk[i: i + self.batch_size])
                feats.append(cleanfid_fid.get_batch_features(batch, model.cleanfid_forward, self.device))
        if not feats:
            raise ValueError(f"{what}: no images given")
        out = np.concatenate(feats)
        if len(out) < 2:
            raise ValueError(f"{what}: FID/KID need at least 2 images, got {len(out)}")
        return out

    def set_reference(self, images) -> CleanFIDMetrics:
        """Embed the reference set (the ground-truth test images; see :meth:`embed` for the forms)."""
        self.reference_features = self.embed(images, "reference images")
        return self

    @property
    def n_reference(self) -> int:
        return 0 if self.reference_features is None else len(self.reference_features)

    def kid_subsets_of(self, ref: np.ndarray, gen: np.ndarray) -> np.ndarray:
        """The KID of each subset, (S,): ``kernel_distance`` one subset at a time, numpy seeded with ``seed``.

        When a subset is the whole of both sets every draw gives the same value, so S = 1.
        """
        m = min(len(ref), len(gen), self.kid_subset_size)
        n_subsets = 1 if m == len(ref) == len(gen) else self.kid_subsets
        state = np.random.get_state()
        np.random.seed(self.seed)
        try:
            values = [cleanfid_fid.kernel_distance(ref, gen, num_subsets=1, max_subset_size=self.kid_subset_size)
                      for _ in range(n_subsets)]
        finally:
            np.random.set_state(state)
        return np.asarray(values, dtype=np.float64)

    def score_features(self, gen: np.ndarray, setting: str = "") -> list[MetricResult]:
        """[FID, KID] of generated features (N, D) against the reference features."""
        if self.reference_features is None:
            raise RuntimeError("CleanFIDMetrics.score called before set_reference(images)")
        ref = self.reference_features
        if gen.ndim != 2 or gen.shape[1] != ref.shape[1]:
            raise ValueError(f"generated features: expected (N, {ref.shape[1]}), got {gen.shape}")
        with warnings.catch_warnings():
            # scipy's sqrtm warns that the covariances are singular whenever N <= D (VITON-HD's 2032 test
            # images in 2048-d Inception features too) and that clean-fid's ``disp`` argument is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", LinAlgWarning)
            fid = float(cleanfid_fid.frechet_distance(np.mean(gen, axis=0), np.cov(gen, rowvar=False),
                                                      np.mean(ref, axis=0), np.cov(ref, rowvar=False)))
        kids = self.kid_subsets_of(ref, gen)
        m = min(len(ref), len(gen), self.kid_subset_size)
        n = len(gen)
        f = self.features
        note = f"{n} generated vs {len(ref)} reference images"
        if min(n, len(ref)) <= ref.shape[1]:
            note += f" (fewer than the {ref.shape[1]} feature dimensions: singular covariances)"
        if len(kids) == 1:
            kid_note = f"{note}; raw (not x100); one subset ({m} images, the whole sets): no spread"
        else:
            kid_note = f"{note}; raw (not x100); mean ± std over {len(kids)} subsets of {m}"
        return _fid_kid_results(f, self.extractor, setting, n, fid, float(kids.mean()),
                                float(kids.std(ddof=1)) if len(kids) > 1 else None, note, kid_note)

    def score(self, images, setting: str = "") -> list[MetricResult]:
        """[FID, KID] of ``images`` (the forms of :meth:`embed`) against the reference set."""
        if self.reference_features is None:
            raise RuntimeError("CleanFIDMetrics.score called before set_reference(images)")
        return self.score_features(self.embed(images, "generated images"), setting)


def cleanfid_fid_kid(reference: torch.Tensor, generated: torch.Tensor, features: FeatureExtractor, setting: str = "",
                     **kwargs) -> list[MetricResult]:
    """One-shot clean-fid [FID, KID] of ``generated`` against ``reference`` (both (N, 3, H, W) in [0, 1])."""
    return CleanFIDMetrics(features, **kwargs).set_reference(reference).score(generated, setting)
