"""Feature extractors for FID and KID, each carrying its own name and weights label.

FID and KID compare *distributions of image embeddings*; the embedding defines the metric. The
papers use the 2048-d pool features of the FID Inception-v3 (TensorFlow 2015-12-05 weights).
Offline those weights are absent, so vtonlab offers, in order of preference:

* :func:`cleanfid_inception_features` — the extractor of LaDI-VTON's evaluation: clean-fid's
  TorchScript Inception (``inception-2015-12-05.pt``), used only when that file is in the torch cache;
* :func:`inception_features` — the same weights as torchmetrics' ``NoTrainInceptionV3`` from
  torch-fidelity, used only when ``weights-inception-2015-12-05-6726825d.pth`` is in the torch
  cache and ``torch-fidelity`` is installed;
* :func:`from_module` — any module or callable mapping [0, 1] images (N, 3, H, W) to (N, D), e.g.
  :func:`synthclip_features`, the image tower of vtonlab's CLIP trained on SynthVTON ("synthclip");
* :func:`random_conv_features` — a fixed random-init conv net (the deterministic fallback that
  needs nothing): "randconv".

All take float images in [0, 1] and return float features (N, D). Each also takes the batches of
clean-fid's resizer, (N, 3, 299, 299) floats in [0, 255] (:meth:`FeatureExtractor.cleanfid_forward`),
which is how :class:`vtonlab.metrics.CleanFIDMetrics` and the LaDI-VTON protocol feed them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from vtonlab.metrics.weights import (
    OFFICIAL,
    LocalWeights,
    display_path,
    find_official,
    hub_checkpoint_dir,
    load_state_dict,
    missing_message,
)

FEATURE_CHOICES = ("auto", "inception", "randconv", "synthclip")
CLEANFID_SIZE = 299  # clean-fid resizes every image to 299 x 299 before the extractor


class FeatureExtractor(nn.Module):
    """A named embedding ``[0, 1] images (N, 3, H, W) -> (N, D)`` for FID / KID.

    Attributes: ``short`` (suffix of substitute metric names, "" for the official Inception),
    ``extractor`` (what network), ``weights`` (which weights), ``official``, ``reason`` (why a
    substitute), ``num_features`` (D; torchmetrics reads it).

    ``cleanfid_input=True`` says that ``net`` itself takes clean-fid's batches, (N, 3, 299, 299)
    floats in [0, 255] (clean-fid's own Inception); :meth:`cleanfid_forward` then hands them over
    untouched, and ``preprocess`` maps the [0, 1] interface to that form.
    """

    def __init__(self, net: nn.Module | Callable[[torch.Tensor], torch.Tensor], *, short: str, extractor: str,
                 weights: str, num_features: int | None = None, official: bool = False, reason: str = "",
                 preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None, cleanfid_input: bool = False):
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
        self.cleanfid_input = cleanfid_input
        self.eval()  # an embedding for metrics: dropout and batch statistics off, whatever ``net`` was
        if num_features is None:
            with torch.no_grad():
                num_features = int(self(torch.full((2, 3, 64, 48), 0.5)).shape[-1])
        self.num_features = int(num_features)

    def metric_name(self, metric: str) -> str:
        """"FID" for the official extractor, "FID-<short>" for a substitute."""
        return metric if not self.short else f"{metric}-{self.short}"

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net(x) if self.net is not None else self._fn(x)
        if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[0] != x.shape[0]:
            shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"feature extractor {self.extractor!r} must return (N, D) = ({x.shape[0]}, D), "
                             f"got {shape}")
        return f.float()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, D)."""
        if self._preprocess is not None:
            x = self._preprocess(x)
        return self._run(x)

    @torch.no_grad()
    def cleanfid_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of a batch as clean-fid's resizer leaves it: (N, 3, 299, 299) floats in [0, 255] -> (N, D).

        clean-fid's own Inception takes it as it is; every other extractor gets ``x / 255`` through
        its [0, 1] interface (and resizes further inside, as it always does).
        """
        if self.cleanfid_input:
            return self._run(x)
        return self(x / 255.0)

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


def _cleanfid_preprocess(x: torch.Tensor) -> torch.Tensor:
    # the [0, 1] interface of clean-fid's Inception (torch bicubic, not clean-fid's PIL resize: use
    # CleanFIDMetrics for that): (N, 3, H, W) in [0, 1] -> (N, 3, 299, 299) in [0, 255]
    if tuple(x.shape[-2:]) != (CLEANFID_SIZE, CLEANFID_SIZE):
        x = F.interpolate(x.float(), size=(CLEANFID_SIZE, CLEANFID_SIZE), mode="bicubic", align_corners=False,
                          antialias=True)
    return (x * 255).clamp(0, 255)


def cleanfid_inception_features(local: LocalWeights | None = None) -> FeatureExtractor:
    """LaDI-VTON's FID/KID extractor: clean-fid's TorchScript FID Inception-v3, 2048-d pool3 features.

    clean-fid (``features.build_feature_extractor("clean")``) builds ``InceptionV3W("/tmp",
    download=True, resize_inside=False)``: it downloads ``inception-2015-12-05.pt`` into ``/tmp``
    when missing and runs ``torch.jit.load`` on it. Here the same class gets the folder of the
    torch cache and ``download=False``, so nothing is fetched; the file must already be there
    (:func:`vtonlab.metrics.weights.find_official` ``("inception-cleanfid")``). Raises
    FileNotFoundError naming the expected place, or ValueError when the file is not a TorchScript
    Inception.
    """
    local = local or find_official("inception-cleanfid")
    if local is None:
        raise FileNotFoundError(missing_message("inception-cleanfid"))
    from cleanfid.inception_torchscript import InceptionV3W

    try:
        net = InceptionV3W(str(local.path.parent), download=False, resize_inside=False).eval()
        with torch.no_grad():
            d = net(torch.full((1, 3, CLEANFID_SIZE, CLEANFID_SIZE), 128.0)).shape[-1]
    except Exception as err:  # not TorchScript, no .layers, or not (N, 2048)
        raise ValueError(f"clean-fid Inception: {display_path(local.path)} is not the TorchScript FID Inception "
                         f"clean-fid expects ({type(err).__name__}: {err})") from err
    return FeatureExtractor(net, short="", extractor="FID Inception-v3 pool3 (clean-fid TorchScript), 2048-d",
                            weights=local.label, num_features=int(d), official=local.official,
                            preprocess=_cleanfid_preprocess, cleanfid_input=True)


class CLIPImageEmbedding(nn.Module):
    """A CLIP's projected image embedding: (N, 3, H, W) in [-1, 1] -> (N, embed_dim), not normalised.

    Holds the CLIP as a submodule (it moves with ``.to(device)``; as a metric embedding it is put
    in eval mode).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.clip = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(x).embeds


def synthclip_features(model=None, *, profile=None, weights: str | None = None) -> FeatureExtractor:
    """FID/KID in the image embedding of vtonlab's CLIP trained on SynthVTON: "FID-synthclip".

    The idea of Kynkäänniemi et al. 2023 ("The Role of ImageNet Classes in Fréchet Inception
    Distance", arXiv 2203.06026): FID in the embedding of a CLIP image encoder, which is not tied
    to the ImageNet classes. As clean-fid's ``model_name="clip_vit_b_32"`` does, the feature is the
    projected image embedding (``encode_image``), not L2-normalised. Our CLIP was trained on
    SynthVTON garment images and their captions, so the embedding encodes what captions name
    (garment category, colour, pattern): a *domain-trained* substitute, sensitive to a wrong
    garment, and a different metric whenever the CLIP is retrained (the weights label says which).

    ``model``: a :class:`vtonlab.clip.CLIP` (default: ``vtonlab.clip.get_trained(profile)``, the
    shipped or cached checkpoint of the profile, trained when there is none). Images (N, 3, H, W)
    in [0, 1] go through the model's own preprocessing (pad to a square, resize, standardise).
    """
    from vtonlab import clip

    if model is None:
        model, ckpt = clip.get_trained(profile)
        manifest = getattr(ckpt, "manifest", {}) or {}
        step = manifest.get("step")
        where = getattr(ckpt, "source", "") or "checkpoint"
        weights = weights or (f"vtonlab CLIP trained on SynthVTON garments and captions (profile "
                              f"{manifest.get('profile', '?')}, {step} steps, {where} checkpoint)")
    elif not isinstance(model, clip.CLIP):
        raise TypeError(f"model: expected a vtonlab.clip.CLIP, got {type(model).__name__}")
    return from_module(CLIPImageEmbedding(model), short="synthclip", value_range=(-1.0, 1.0),
                       num_features=model.embed_dim,
                       extractor=f"vtonlab CLIP image tower (ViT, {model.image_size}px input, projected "
                                 f"{model.embed_dim}-d embedding)",
                       weights=weights or "vtonlab CLIP (weights given by the caller)",
                       reason="a domain-trained substitute (CLIP features, Kynkäänniemi et al. 2023), "
                              "not the Inception of the papers")


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
                                  "(pip install torch-fidelity); the weights are at " + display_path(local.path))
    load_state_dict(local.path, what="FID Inception weights")  # readable, tensors only: clear error if not
    from torchmetrics.image.fid import NoTrainInceptionV3

    with _weights_only_loads():
        net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                 feature_extractor_weights_path=str(local.path))
    return FeatureExtractor(net, short="", extractor="FID Inception-v3 pool3 (torchmetrics / torch-fidelity), 2048-d",
                            weights=local.label, num_features=2048, official=local.verified,
                            preprocess=_to_uint8)


def _no_inception_message() -> str:
    clean, tf = OFFICIAL["inception-cleanfid"], OFFICIAL["inception"]
    return (f"no FID Inception in {display_path(hub_checkpoint_dir())}: neither clean-fid's {clean.filename} "
            f"({clean.url_hint}) nor torch-fidelity's {tf.filename} ({tf.url_hint}); copy either file there "
            "on an offline machine")


def fid_features(kind: str = "auto", seed: int = 0) -> FeatureExtractor:
    """Pick the FID/KID embedding.

    "inception": an official Inception, which must be present — clean-fid's TorchScript file
    (LaDI-VTON's extractor) first, else torch-fidelity's weights; "randconv"; "synthclip"
    (:func:`synthclip_features` for the active profile); "auto": an official Inception when one is
    present, else randconv with the reason.
    """
    if kind not in FEATURE_CHOICES:
        raise ValueError(f"features: expected one of {', '.join(FEATURE_CHOICES)}, got {kind!r}")
    if kind == "randconv":
        return random_conv_features(seed)
    if kind == "synthclip":
        return synthclip_features()
    clean = find_official("inception-cleanfid")
    if clean is not None:
        return cleanfid_inception_features(clean)
    local = find_official("inception")
    if kind == "inception":
        if local is None:
            raise FileNotFoundError(_no_inception_message())
        return inception_features(local)
    if local is None:
        return random_conv_features(seed, reason=_no_inception_message())
    if not torch_fidelity_available():
        return random_conv_features(seed, reason=f"torch-fidelity is not installed (weights found at "
                                                 f"{display_path(local.path)})")
    return inception_features(local)
