"""Feature extractors for FID and KID, each carrying its own name and weights label.

FID and KID compare *distributions of image embeddings*; the embedding defines the metric. The
papers use the 2048-d pool features of the FID Inception-v3 (TensorFlow 2015-12-05 weights).
Offline those weights are absent, so vtonlab offers, in order of preference:

* :func:`inception_features` — the official extractor (torchmetrics' ``NoTrainInceptionV3`` from
  torch-fidelity), used only when ``weights-inception-2015-12-05-6726825d.pth`` is in the torch
  cache and ``torch-fidelity`` is installed;
* :func:`from_module` — any module or callable mapping [0, 1] images (N, 3, H, W) to (N, D), e.g.
  the image tower of a CLIP trained in notebook 01, with a name you give it;
* :func:`random_conv_features` — a fixed random-init conv net (the deterministic fallback that
  needs nothing): "randconv".

All take float images in [0, 1] and return float features (N, D).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from vtonlab.metrics.weights import LocalWeights, find_official, load_state_dict, missing_message

FEATURE_CHOICES = ("auto", "inception", "randconv")


class FeatureExtractor(nn.Module):
    """A named embedding ``[0, 1] images (N, 3, H, W) -> (N, D)`` for FID / KID.

    Attributes: ``short`` (suffix of substitute metric names, "" for the official Inception),
    ``extractor`` (what network), ``weights`` (which weights), ``official``, ``reason`` (why a
    substitute), ``num_features`` (D; torchmetrics reads it).
    """

    def __init__(self, net: nn.Module | Callable[[torch.Tensor], torch.Tensor], *, short: str, extractor: str,
                 weights: str, num_features: int | None = None, official: bool = False, reason: str = "",
                 preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        if isinstance(net, nn.Module):
            self.net = net
            self._fn = None
        elif callable(net):
            self.net = None
            self._fn = net
        else:
            raise TypeError(f"net: expected an nn.Module or a callable, got {type(net).__name__}")
        self.short = short
        self.extractor = extractor
        self.weights = weights
        self.official = official
        self.reason = reason
        self._preprocess = preprocess
        if num_features is None:
            with torch.no_grad():
                num_features = int(self(torch.full((2, 3, 64, 48), 0.5)).shape[-1])
        self.num_features = int(num_features)

    def metric_name(self, metric: str) -> str:
        """"FID" for the official extractor, "FID-<short>" for a substitute."""
        return metric if not self.short else f"{metric}-{self.short}"

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._preprocess is not None:
            x = self._preprocess(x)
        f = self.net(x) if self.net is not None else self._fn(x)
        if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[0] != x.shape[0]:
            shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"feature extractor {self.extractor!r} must return (N, D) = ({x.shape[0]}, D), "
                             f"got {shape}")
        return f.float()

    def train(self, mode: bool = True) -> FeatureExtractor:  # an embedding for metrics never trains
        return super().train(False)

    def __repr__(self) -> str:
        return (f"FeatureExtractor(extractor={self.extractor!r}, weights={self.weights!r}, "
                f"D={getattr(self, 'num_features', '?')}, official={self.official})")


class RandomConvNet(nn.Module):
    """A fixed random conv net: resize to ``size`` x ``size``, four stride-2 3x3 conv + ReLU stages,
    global mean of every stage concatenated -> (N, sum(widths)).

    Weights are He-normal (fan-in) from ``torch.Generator().manual_seed(seed)``, biases zero, so the
    same seed gives bit-identical features on every machine and in every process. The pooled means
    of the early stages summarise colour, those of the later stages texture and edge energy: a
    crude but honest, training-free image statistic.
    """

    def __init__(self, seed: int = 0, widths: tuple[int, ...] = (16, 32, 64, 64), size: int = 64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        chans = (3, *widths)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=g)
            nn.init.zeros_(conv.bias)
        self.size = size
        self.seed = seed
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, sum(widths))."""
        x = F.interpolate(x.float(), size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        x = (x - 0.5) / 0.25
        pooled = []
        for conv in self.convs:
            x = F.relu(conv(x))
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


def random_conv_features(seed: int = 0, reason: str = "chosen: features='randconv'") -> FeatureExtractor:
    """The deterministic fallback embedding (:class:`RandomConvNet`, 176-d): metric names "FID-randconv"."""
    net = RandomConvNet(seed=seed)
    return FeatureExtractor(net, short="randconv", extractor="random conv net (4 stride-2 convs, pooled, 176-d)",
                            weights=f"random init (He normal, seed {seed}); no training", reason=reason,
                            num_features=sum(c.out_channels for c in net.convs))


def from_module(net: nn.Module | Callable[[torch.Tensor], torch.Tensor], *, short: str, extractor: str,
                weights: str, num_features: int | None = None, value_range: tuple[float, float] = (0.0, 1.0),
                reason: str = "") -> FeatureExtractor:
    """Wrap any embedding (e.g. a trained CLIP image tower) as a named FID/KID feature extractor.

    ``net`` receives images in ``value_range`` (mapped from [0, 1]; use (-1, 1) for vtonlab models)
    and must return (N, D). ``short`` names the substitute metrics ("clip" -> "FID-clip").
    """
    if not short or not short.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"short: a non-empty name of letters, digits, - or _ is needed, got {short!r}")
    lo, hi = value_range
    pre = None if (lo, hi) == (0.0, 1.0) else (lambda x: x * (hi - lo) + lo)
    return FeatureExtractor(net, short=short, extractor=extractor, weights=weights, num_features=num_features,
                            preprocess=pre, reason=reason)


def torch_fidelity_available() -> bool:
    return importlib.util.find_spec("torch_fidelity") is not None


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Force every ``torch.load`` inside to ``weights_only=True`` (torch's TORCH_FORCE_WEIGHTS_ONLY_LOAD).

    torch-fidelity reads the Inception file with ``weights_only=False``; this makes that read
    tensor-only too, so no pickled code can run even from a tampered file.
    """
    key = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    # torchmetrics' own conversion for its default extractor (FID(normalize=True)): (imgs * 255).byte()
    return (x * 255).byte()


def inception_features(local: LocalWeights | None = None) -> FeatureExtractor:
    """The official FID extractor: 2048-d pool3 features of the FID Inception-v3 via torchmetrics.

    Needs ``torch-fidelity`` and the weights file in the torch cache (never downloaded); raises
    FileNotFoundError / ModuleNotFoundError naming what is missing.
    """
    local = local or find_official("inception")
    if local is None:
        raise FileNotFoundError(missing_message("inception"))
    if not torch_fidelity_available():
        raise ModuleNotFoundError("the official FID/KID extractor needs the torch-fidelity package "
                                  "(pip install torch-fidelity); the weights are at " + str(local.path))
    load_state_dict(local.path, what="FID Inception weights")  # readable, tensors only: clear error if not
    from torchmetrics.image.fid import NoTrainInceptionV3

    with _weights_only_loads():
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                 feature_extractor_weights_path=str(local.path))
    return FeatureExtractor(net, short="", extractor="FID Inception-v3 pool3 (torchmetrics / torch-fidelity), 2048-d",
                            weights=local.label, num_features=2048, official=local.verified,
                            preprocess=_to_uint8)


def fid_features(kind: str = "auto", seed: int = 0) -> FeatureExtractor:
    """Pick the FID/KID embedding: "inception" (official, must be present), "randconv", or "auto"
    (official when its weights file and torch-fidelity are present, else randconv with the reason)."""
    if kind not in FEATURE_CHOICES:
        raise ValueError(f"features: expected one of {', '.join(FEATURE_CHOICES)}, got {kind!r}")
    if kind == "randconv":
        return random_conv_features(seed)
    local = find_official("inception")
    if kind == "inception":
        return inception_features(local)
    if local is None:
        return random_conv_features(seed, reason=missing_message("inception"))
    if not torch_fidelity_available():
        return random_conv_features(seed, reason=f"torch-fidelity is not installed (weights found at {local.path})")
    return inception_features(local)
