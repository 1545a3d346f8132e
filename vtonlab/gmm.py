"""The geometric matching module (CP-VTON GMM, CP-VTON+, MG-VTON GML), trained on SynthVTON.

CP-VTON (Wang et al., ECCV 2018, arXiv 1807.07688) warps the in-shop garment onto the person in four steps:

1. two feature extractors (person representation; garment) bring their inputs to 1/16 resolution
   with four 4x4 stride-2 convolutions and two 3x3 convolutions, each followed by ReLU then BatchNorm
   (the last one by ReLU only);
2. features are L2-normalised per location and **correlated**: every person location against every
   garment location, one batched matrix product, giving ``h*w`` channels at ``h x w`` (192 channels
   at 256x192). As in the official code, the spatial axes are the *garment* location and the
   channel is the *person* location, numbered column by column (``k = j * h + i``);
3. a regression network (two 4x4 stride-2 and two 3x3 convolutions with BatchNorm and ReLU, a linear
   layer and tanh) turns the correlation into the offsets of a 5x5 grid of TPS control points;
4. the TPS sampling grid warps the garment (:class:`vtonlab.tps.FixedGridTPS`).

Training minimises the L1 distance between the warped garment and the garment region of the person on
white (CP-VTON's GMM loss). Variants (:data:`VARIANTS`):

- ``cpvton``: person representation = body shape (1) + head (3) + pose heatmaps (18) = 22 channels;
  garment = RGB (3); loss = L1 on the warped garment.
- ``cpvton_plus``: CP-VTON+ (Minar et al., CVPRW 2020): its official training script feeds the garment
  *mask* to the garment extractor (``model(agnostic, cm)``), keeps the L1 loss on the warped *RGB*
  garment, and adds the grid interval consistency term (:func:`grid_interval_loss`, weight 40).
- ``ladi``: LaDI-VTON's TPS stage (Morelli et al., ACM MM 2023; official ``ConvNet_TPS``): person = masked
  person (3) + pose heatmaps (18) = 21 channels; the correlation's spatial axes are the *person*
  locations; the regressor's tanh gives the control points themselves, inside (-1, 1), starting at a
  5x5 grid in [-0.9, 0.9]; loss = L1 + 0.01 x the bounded second-order grid constraints
  (:func:`tps_grid_constraints`); Adam betas (0.5, 0.99). Its fidelity table is in :mod:`vtonlab.ladi.warping`.
- ``gml``: MG-VTON's geometric matching learning (Dong et al., ICCV 2019, arXiv 1902.11026): garment
  mask -> body shape + target garment mask; loss = L1 on the warped mask; Adam with MG-VTON's lr 2e-4,
  betas (0.5, 0.999) (MG-VTON has no official code; the GMM network is CP-VTON's). MG-VTON takes the
  target mask from its synthesised parsing; here it is SynthVTON's ground-truth worn mask.

Fidelity (paper / official code sergeywong/cp-vton / vtonlab default; every difference is a named
:class:`GMMConfig` option):

| point | paper | official code | vtonlab |
|---|---|---|---|
| extractor layer order | not stated | conv -> ReLU -> BN | same |
| after the correlation | not stated | nothing (regressor reads it raw) | same; ``correlation_norm=True``: ReLU + L2 (CNNGeometric) |
| correlation axes | not stated | spatial = garment, channel = person (column-major) | same |
| regression convs | not stated | 4x4 stride 2 (twice), 3x3 (twice) | same; ``regressor_kernel=3`` in ci (4x3 features) |
| last linear layer | not stated | PyTorch default init | same; ``zero_init=True`` starts at the identity warp |
| optimiser | Adam | Adam, lr 1e-4, betas (0.5, 0.999) | same (``lr``, ``betas``) |
| lr schedule | not checked | LambdaLR built, never stepped: constant | same; ``lr_schedule="keep_decay"``: half, then linear to 0 |
| widths | 64 ... 512 | 64 ... 512 | gpu profile: same; ci / cpu: 16 ... 128 (``width``, ``max_channels``) |
| steps, batch | - | 200,000 steps, batch 4 | the profile's steps and batch |
| pose maps in the input | - | squares drawn then normalised: -1 background, +1 | [0, 1] as ``pose_map`` gives them |
| CP-VTON+ garment mask input | - | {0, 1} (``cm``) | {-1, 1}, like the other inputs |
| CP-VTON+ grid term | distances of 2-D grid points | x along rows, y along columns, / (B H W), x 40 | the official code's |

Ablation rows of notebook 04 (:data:`ABLATIONS`) switch the garment input (``rgb``/``mask``), the grid
regulariser, the transformation (``tps``/``affine``), the deviations above, and a diagnostic that no
paper can run: ``loss="flow"`` supervises the sampling grid with SynthVTON's true warp.

Data loading (:mod:`vtonlab.data.preload`), whole-split evaluation and the oracle fits
(:mod:`vtonlab.metrics.warp_eval`) live in their packages; ``vtonlab.gmm.preload``,
``evaluate_warps``, ``oracle_grid_fn`` and ``identity_grid_fn`` are re-exported for the notebooks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab import tps
from vtonlab.data.preload import preload
from vtonlab.metrics import warp_eval
from vtonlab.metrics.warp_eval import identity_grid_fn, oracle_grid_fn, warp_garment
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "VARIANTS",
    "ABLATIONS",
    "GMMConfig",
    "person_representation",
    "garment_input",
    "feature_l2norm",
    "correlation",
    "FeatureExtractor",
    "Regressor",
    "GMM",
    "warp_garment",
    "grid_interval_loss",
    "tps_grid_constraints",
    "gmm_losses",
    "preload",
    "train",
    "identity_grid_fn",
    "model_grid_fn",
    "oracle_grid_fn",
    "ablation_configs",
    "evaluate_warps",
    "get_trained",
    "get_trained_gml",
    "get_trained_ablation",
    "checkpoint_name",
]

PERSON_CHANNELS = {"cpvton": 22, "gml": 2, "ladi": 21}
POSE_STYLES = {"cpvton": "cpvton", "gml": "cpvton", "ladi": "ladi"}
"""The ``pose_map`` style (:func:`vtonlab.data.representation.pose_heatmaps`) each person representation is read with."""
GARMENT_CHANNELS = {"rgb": 3, "mask": 1}

VARIANTS: dict[str, dict] = {
    "cpvton": dict(person="cpvton", garment="rgb", transform="tps", loss="rgb", grid_reg=0.0),
    "cpvton_plus": dict(person="cpvton", garment="mask", transform="tps", loss="rgb", grid_reg=40.0),
    "gml": dict(person="gml", garment="mask", transform="tps", loss="mask", grid_reg=0.0, lr=2e-4),
    "ladi": dict(person="ladi", garment="rgb", transform="tps", loss="rgb", grid_reg=0.0, grid_range=0.9, zero_init=True,
                 betas=(0.5, 0.99), correlation_spatial="person", tps_points="absolute", tps_constraint=0.01),
}
"""The three geometric matching set-ups of the course; keys are ``variant`` names."""

@dataclass(frozen=True)
class GMMConfig:
    """Everything that determines a trained GMM (architecture, inputs, loss, optimisation, data size).

    The architecture and optimiser defaults are the official CP-VTON GMM's (see the fidelity table in the
    module docstring); steps, batch and data size are placeholders that :meth:`for_profile` sets from a profile.
    """

    variant: str = "cpvton"
    person: str = "cpvton"  # "cpvton": body shape + head + pose (22 ch); "gml": body shape + target mask (2 ch)
    garment: str = "rgb"  # "rgb" (CP-VTON) or "mask" (CP-VTON+, GML)
    transform: str = "tps"  # "tps" (5x5 control grid) or "affine" (ablation)
    loss: str = "rgb"  # "rgb": L1 warped garment vs garment on person; "mask": L1 warped mask vs worn mask;
    # "flow": L1 between the sampling grid and SynthVTON's gt_flow (a diagnostic that needs the true warp)
    grid_reg: float = 0.0  # weight of the CP-VTON+ grid interval consistency term (40 in CP-VTON+)
    image_size: tuple[int, int] = (256, 192)
    width: int = 64  # channels of the first extractor layer (CP-VTON: 64)
    max_channels: int = 512  # (CP-VTON: 512)
    grid_size: int = 5
    grid_range: float = 1.0
    correlation_norm: bool = False  # vtonlab option: ReLU + L2 normalisation of the correlation (CNNGeometric)
    regressor_kernel: int = 4  # kernel of the two stride-2 regression convolutions (CP-VTON: 4)
    zero_init: bool = False  # vtonlab option: the last linear layer starts at zero (identity warp)
    lr: float = 1e-4  # CP-VTON's Adam learning rate
    betas: tuple[float, float] = (0.5, 0.999)  # CP-VTON's Adam betas
    lr_schedule: str = "constant"  # "constant" (official code) or "keep_decay" (half constant, then linear to 0)
    steps: int = 1000
    batch_size: int = 16
    n_train: int = 600
    seed: int = 0
    # Options added for LaDI-VTON's ConvNet_TPS; written by to_dict only when not at these (CP-VTON) defaults.
    correlation_spatial: str = "garment"  # spatial axes of the correlation: "garment" (CP-VTON) or "person" (LaDI-VTON)
    tps_points: str = "offset"  # regressor output: "offset" (c + tanh) or "absolute" (tanh = the point, LaDI-VTON)
    tps_constraint: float = 0.0  # weight of the bounded second-order grid constraints (LaDI-VTON: 0.01)
    tps_constraint_samples: str = "first"  # collinearity terms on the batch's "first" sample (official) or "all"

    def __post_init__(self) -> None:
        checks = (("person", self.person, PERSON_CHANNELS), ("garment", self.garment, GARMENT_CHANNELS),
                  ("transform", self.transform, ("tps", "affine")), ("loss", self.loss, ("rgb", "mask", "flow")),
                  ("lr_schedule", self.lr_schedule, ("constant", "keep_decay")), ("regressor_kernel", self.regressor_kernel, (3, 4)),
                  ("correlation_spatial", self.correlation_spatial, ("garment", "person")),
                  ("tps_points", self.tps_points, ("offset", "absolute")),
                  ("tps_constraint_samples", self.tps_constraint_samples, ("first", "all")))
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"GMMConfig.{name}: expected one of {list(allowed)}, got {value!r}")
        h, w = self.image_size
        if h < 16 or w < 16:
            raise ValueError(f"GMMConfig.image_size: expected at least 16x16 (1/16 resolution >= 1), got {h}x{w}")
        if self.grid_reg < 0:
            raise ValueError(f"GMMConfig.grid_reg must be >= 0, got {self.grid_reg}")
        if self.tps_constraint < 0 or (self.tps_constraint and self.transform != "tps"):
            raise ValueError(f"GMMConfig.tps_constraint must be >= 0 and needs transform='tps', got {self.tps_constraint} "
                             f"with transform={self.transform!r}")
        if self.tps_points == "absolute" and not 0 < self.grid_range < 1:
            raise ValueError(f"GMMConfig.tps_points='absolute' keeps the points inside (-1, 1) (tanh): grid_range must be "
                             f"in (0, 1), got {self.grid_range}")
        object.__setattr__(self, "image_size", (int(h), int(w)))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        fh, fw = self.feature_size
        if self.regressor_kernel == 4 and (fh < 4 or fw < 4):
            raise ValueError(f"GMMConfig.regressor_kernel=4 needs features of at least 4x4 (two 4x4 stride-2 convolutions); "
                             f"{h}x{w} images give {fh}x{fw}: use regressor_kernel=3")

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, variant: str = "cpvton", **overrides) -> GMMConfig:
        """The course's config of ``variant`` for a profile.

        Steps, batch and training-set size come from the profile; the gpu profile uses CP-VTON's widths
        (64 ... 512), ci and cpu narrower ones (16 ... 128); 3x3 regression convolutions where the
        features are too small for 4x4 ones (the ci profile's 4x3).
        """
        prof = resolve_profile(profile)
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {list(VARIANTS)}, got {variant!r}")
        model_name = {"gml": "gml", "ladi": "ladi_tps"}.get(variant, "gmm")
        h, w = prof.image_size
        small_features = min(h, w) // 16 < 4
        base = dict(variant=variant, image_size=(h, w), steps=prof.steps_for(model_name),
                    batch_size=prof.batch_size, n_train=prof.n_train, regressor_kernel=3 if small_features else 4,
                    **({} if prof.name == "gpu" else dict(width=16, max_channels=128)), **VARIANTS[variant])
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for name, default in _LADI_OPTION_DEFAULTS.items():  # so earlier variants' configs (and checkpoints) stay as they were
            if d[name] == default:
                del d[name]
        d["image_size"] = list(self.image_size)
        d["betas"] = list(self.betas)
        return d

    @property
    def person_channels(self) -> int:
        return PERSON_CHANNELS[self.person]

    @property
    def garment_channels(self) -> int:
        return GARMENT_CHANNELS[self.garment]

    @property
    def feature_size(self) -> tuple[int, int]:
        """Spatial size after the four stride-2 convolutions (1/16)."""
        h, w = self.image_size
        for _ in range(4):
            h, w = (h + 2 - 4) // 2 + 1, (w + 2 - 4) // 2 + 1
        return h, w


_LADI_OPTION_DEFAULTS = {"correlation_spatial": "garment", "tps_points": "offset", "tps_constraint": 0.0,
                         "tps_constraint_samples": "first"}


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _need(batch: Mapping, keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{what} needs {', '.join(missing)} in the sample dict; it has {', '.join(map(str, batch))}")


def person_representation(batch: Mapping[str, Tensor], kind: str = "cpvton") -> Tensor:
    """The person input of the GMM, ``(B, C, H, W)`` in about [-1, 1].

    ``cpvton`` (CP-VTON's clothing-agnostic person representation): body shape (1) + head RGB (3) + 18
    pose heatmaps = 22 channels. ``gml`` (MG-VTON's geometric matching learning): body shape (1) +
    target garment mask (1) = 2 channels. ``ladi`` (LaDI-VTON's TPS input ``cat([im_mask, pose_map])``):
    the masked person ``agnostic`` (3) + 18 pose heatmaps = 21 channels. Masks and the body shape are
    mapped from [0, 1] to [-1, 1]; pose heatmaps are used as given.
    """
    if kind == "cpvton":
        _need(batch, ("body_shape", "head", "pose_map"), "the CP-VTON person representation")
        return torch.cat([batch["body_shape"] * 2 - 1, batch["head"], batch["pose_map"]], dim=1)
    if kind == "gml":
        _need(batch, ("body_shape", "worn_mask"), "the GML person representation")
        return torch.cat([batch["body_shape"] * 2 - 1, batch["worn_mask"] * 2 - 1], dim=1)
    if kind == "ladi":
        _need(batch, ("agnostic", "pose_map"), "the LaDI-VTON person representation")
        return torch.cat([batch["agnostic"], batch["pose_map"]], dim=1)
    raise ValueError(f"person representation: expected 'cpvton' or 'gml' or 'ladi', got {kind!r}")


def garment_input(batch: Mapping[str, Tensor], kind: str = "rgb") -> Tensor:
    """The garment input: ``rgb`` -> ``cloth`` (B, 3, H, W); ``mask`` -> ``cloth_mask`` in [-1, 1] (B, 1, H, W)."""
    if kind == "rgb":
        _need(batch, ("cloth",), "the garment input 'rgb'")
        return batch["cloth"]
    if kind == "mask":
        _need(batch, ("cloth_mask",), "the garment input 'mask'")
        return batch["cloth_mask"] * 2 - 1
    raise ValueError(f"garment input: expected 'rgb' or 'mask', got {kind!r}")


# ----------------------------------------------------------------------------------------------
# Pure functions: normalisation and correlation
# ----------------------------------------------------------------------------------------------


def feature_l2norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """L2-normalise features over channels at every location: ``x / sqrt(||x||^2 + eps)``, ``(B, C, h, w)``."""
    return x / torch.sqrt((x * x).sum(dim=1, keepdim=True) + eps)


def correlation(person_features: Tensor, garment_features: Tensor) -> Tensor:
    """Correlation of every person location with every garment location, laid out as CP-VTON's code does.

    ``corr[b, k, i, j] = <f_person[b, :, k % h, k // h], f_garment[b, :, i, j]>``: the spatial axes are
    the *garment* location ``(i, j)``; channel ``k`` is the *person* location, numbered column by column
    (``k = column * h + row``). So ``corr[b, k]`` is the map, over the garment, of one person cell.

    Args:
        person_features, garment_features: ``(B, C, h, w)``.
    Returns:
        ``(B, h*w, h, w)``, computed as one batched matrix product.
    """
    if person_features.shape != garment_features.shape or person_features.ndim != 4:
        raise ValueError(f"person and garment features must both be (B, C, h, w) of one shape, got "
                         f"{tuple(person_features.shape)} and {tuple(garment_features.shape)}")
    b, c, h, w = person_features.shape
    fp = person_features.transpose(2, 3).reshape(b, c, h * w)  # (B, C, P) person locations, column-major
    fg = garment_features.reshape(b, c, h * w)  # (B, C, G) garment locations, row-major
    corr = torch.bmm(fp.transpose(1, 2), fg)  # (B, P, G): [k, g] = <f_p[k], f_g[g]>
    return corr.reshape(b, h * w, h, w)


def person_channel(row: int, col: int, feature_size: tuple[int, int]) -> int:
    """The correlation channel of the person feature cell ``(row, col)`` (column-major, as CP-VTON)."""
    h, w = feature_size
    if not (0 <= row < h and 0 <= col < w):
        raise IndexError(f"(row, col) must be in [0, {h - 1}] x [0, {w - 1}], got ({row}, {col})")
    return col * h + row


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


def _conv_relu_bn(cin: int, cout: int, k: int, s: int, p: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, p), nn.ReLU(inplace=True), nn.BatchNorm2d(cout)]


def _init_normal(module: nn.Module) -> None:
    """CP-VTON's ``init_weights(..., 'normal')``: conv weights N(0, 0.02); BatchNorm weights N(1, 0.02), bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class FeatureExtractor(nn.Module):
    """CP-VTON's feature extractor: four 4x4 stride-2 convolutions to 1/16, then two 3x3 convolutions.

    Each convolution is followed by ReLU then BatchNorm, the last by ReLU only (the official order).
    ``(B, in_channels, H, W)`` -> ``(B, C, H/16, W/16)`` with ``C = min(8 * width, max_channels)``.
    """

    def __init__(self, in_channels: int, width: int = 64, max_channels: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(4):
            cout = min(width * 2**i, max_channels)
            layers += _conv_relu_bn(cin, cout, 4, 2, 1)
            cin = cout
        layers += _conv_relu_bn(cin, cin, 3, 1, 1)
        layers += [nn.Conv2d(cin, cin, 3, 1, 1), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_channels = cin
        _init_normal(self.net)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Regressor(nn.Module):
    """CP-VTON's regression network: correlation ``(B, h*w, h, w)`` -> parameters ``(B, n_out)`` in (-1, 1).

    Two stride-2 convolutions (4x4 as CP-VTON, or 3x3) and two 3x3 convolutions, each with BatchNorm and
    ReLU, then a linear layer and tanh. With ``zero_init`` the linear layer starts at zero, so the
    untrained module predicts zero offsets (the identity warp); CP-VTON keeps PyTorch's default init.
    """

    def __init__(self, feature_size: tuple[int, int], n_out: int, width: int = 64, max_channels: int = 512,
                 kernel: int = 4, zero_init: bool = False) -> None:
        super().__init__()
        h, w = feature_size
        chans = [min(width * m, max_channels) for m in (8, 4, 2, 1)]
        layers: list[nn.Module] = []
        cin = h * w
        for i, cout in enumerate(chans):
            k, stride = (kernel, 2) if i < 2 else (3, 1)
            pad = 1
            layers += [nn.Conv2d(cin, cout, k, stride, pad), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
            h, w = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        if h < 1 or w < 1:
            raise ValueError(f"Regressor: {feature_size} features are too small for {kernel}x{kernel} stride-2 convolutions")
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(cin * h * w, n_out)
        if zero_init:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def forward(self, corr: Tensor) -> Tensor:
        return torch.tanh(self.linear(self.convs(corr).flatten(1)))


class GMM(nn.Module):
    """The geometric matching module: ``(person, garment)`` -> sampling grid ``(B, H, W, 2)`` + parameters.

    See the module docstring. With ``transform="tps"`` the parameters are the control-point offsets
    ``(B, 2, K)`` (row 0: x, row 1: y) of a fixed ``grid_size x grid_size`` grid in
    ``[-grid_range, grid_range]``; with ``"affine"`` they are ``theta`` ``(B, 2, 3)`` = identity + tanh output.
    """

    def __init__(self, config: GMMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.extract_person = FeatureExtractor(c.person_channels, c.width, c.max_channels)
        self.extract_garment = FeatureExtractor(c.garment_channels, c.width, c.max_channels)
        n_out = 2 * c.grid_size**2 if c.transform == "tps" else 6
        self.regressor = Regressor(c.feature_size, n_out, c.width, c.max_channels, c.regressor_kernel, c.zero_init)
        self.tps = tps.FixedGridTPS(c.grid_size, c.grid_range)
        if c.transform == "tps" and c.tps_points == "absolute" and c.zero_init:  # LaDI-VTON: tanh(bias) = the control grid
            with torch.no_grad():
                self.regressor.linear.bias.copy_(torch.atanh(self.tps.control_points.t().reshape(-1)))
        self.register_buffer("_identity_theta", torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), persistent=False)

    def correlation_volume(self, person: Tensor, garment: Tensor) -> Tensor:
        """L2-normalised features correlated (:func:`correlation`): ``(B, h*w, h, w)``, what the regressor reads."""
        self._check_inputs(person, garment)
        fp = feature_l2norm(self.extract_person(person))
        fg = feature_l2norm(self.extract_garment(garment))
        return correlation(fp, fg) if self.config.correlation_spatial == "garment" else correlation(fg, fp)

    def _check_inputs(self, person: Tensor, garment: Tensor) -> None:
        c = self.config
        for name, x, ch in (("person", person, c.person_channels), ("garment", garment, c.garment_channels)):
            if x.ndim != 4 or x.shape[1] != ch or tuple(x.shape[-2:]) != c.image_size:
                raise ValueError(f"GMM {name} input: expected (B, {ch}, {c.image_size[0]}, {c.image_size[1]}) "
                                 f"for person={c.person!r}, garment={c.garment!r}; got {tuple(x.shape)}")

    def forward(self, person: Tensor, garment: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(grid (B, H, W, 2), params)``; ``params`` is ``(B, 2, K)`` offsets or ``(B, 2, 3)`` theta."""
        corr = self.correlation_volume(person, garment)
        if self.config.correlation_norm:  # CNNGeometric's match normalisation (not in CP-VTON)
            corr = feature_l2norm(F.relu(corr))
        out = self.regressor(corr)
        size = self.config.image_size
        if self.config.transform == "tps":
            offsets = out.view(out.shape[0], 2, self.config.grid_size**2)
            if self.config.tps_points == "absolute":  # the tanh output is the point itself
                offsets = offsets - self.tps.control_points.t()
            return self.tps(offsets, size), offsets
        theta = self._identity_theta + out.view(out.shape[0], 2, 3)
        return tps.affine_sampling_grid(theta, size), theta


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


def grid_interval_loss(grid: Tensor) -> Tensor:
    """CP-VTON+'s grid regulariser ("grid interval consistency") as its official ``GicLoss`` computes it.

    For every interior pixel of the sampling grid ``G`` ``(B, H, W, 2)``: the x-component's distance to
    its left and right neighbours should be equal, and the y-component's distance to its upper and lower
    neighbours,
    ``| |G_x(i, j-1) - G_x(i, j)| - |G_x(i, j+1) - G_x(i, j)| | + | |G_y(i-1, j) - G_y(i, j)| - |G_y(i+1, j) - G_y(i, j)| |``,
    summed and divided by ``B * H * W`` (as the official training script does; it weights the result by 40).
    The paper writes the term with distances between 2-D grid points; the code keeps one component per
    direction. An affine grid costs 0.
    """
    if grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(f"grid must have shape (B, H, W, 2), got {tuple(grid.shape)}")
    b, h, w, _ = grid.shape
    gx, gy = grid[..., 0], grid[..., 1]
    cx, cy = gx[:, 1:-1, 1:-1], gy[:, 1:-1, 1:-1]
    horizontal = ((gx[:, 1:-1, :-2] - cx).abs() - (gx[:, 1:-1, 2:] - cx).abs()).abs()
    vertical = ((gy[:, :-2, 1:-1] - cy).abs() - (gy[:, 2:, 1:-1] - cy).abs()).abs()
    return (horizontal + vertical).sum() / (b * h * w)


CONSTRAINT_FLOOR = 0.08
"""LaDI-VTON's bound on each squared-spacing difference (``ConvNet_TPS.BoundedGridLocNet``: ``torch.max(0.08, .)``)."""
COLLINEAR_FLOOR = 0.02
"""LaDI-VTON's bound on each summed collinearity term (``torch.max(sum, 0.02)``)."""


def tps_grid_constraints(points: Tensor, grid_size: int | None = None, *, samples: str = "first") -> dict[str, Tensor]:
    """LaDI-VTON's bounded second-order constraints on the TPS control points (official ``BoundedGridLocNet``).

    ``points`` ``(B, K, 2)``: where the ``n x n`` control points sample the garment, row-major (``k = row * n + col``),
    ``(x, y)``. With ``d_i = (p_{i+1} - p_i)^2`` taken per component along a grid row (``r``) or column (``c``):

    - ``rx, ry, cx, cy``: ``mean(max(0.08, |d_{i+1} - d_i|))`` of the x or y component over the batch and the
      ``n (n - 2)`` triples (equal squared spacings cost only the floor 0.08);
    - ``rg, cg``: ``max(0.02, sum |(y1 - y0)(x1 - x2) - (y1 - y2)(x1 - x0)|)`` over the triples of consecutive points
      of the rows / columns (twice the area of each triangle: 0 when collinear). The official code reads these
      on the batch's **first** sample only (``coor[:, k, :][0]``); ``samples="all"`` bounds each sample's sum and
      averages over the batch.

    Returns ``{"rx", "ry", "cx", "cy", "rg", "cg", "total"}`` (scalars), ``total = rx + ry + cx + cy + rg + cg``
    (the official ``const_loss``; the training loss adds ``0.01 * total``). An affine grid costs exactly the floor
    ``4 * 0.08 + 2 * 0.02`` and receives no gradient.
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (B, K, 2), got {tuple(points.shape)}")
    b, k, _ = points.shape
    n = int(round(k**0.5)) if grid_size is None else int(grid_size)
    if n * n != k or n < 3:
        raise ValueError(f"points: expected K = grid_size^2 >= 9 points, got K = {k} (grid_size {grid_size})")
    if samples not in ("first", "all"):
        raise ValueError(f"samples: expected 'first' or 'all', got {samples!r}")
    p = points.view(b, n, n, 2)  # [b, row, col, (x, y)]
    d_row = (p[:, :, 1:] - p[:, :, :-1]) ** 2  # squared spacings along each row, per component
    d_col = (p[:, 1:] - p[:, :-1]) ** 2
    sec_row = (d_row[:, :, 1:] - d_row[:, :, :-1]).abs()  # (B, n, n-2, 2)
    sec_col = (d_col[:, 1:] - d_col[:, :-1]).abs()  # (B, n-2, n, 2)
    out = {"rx": sec_row[..., 0].clamp(min=CONSTRAINT_FLOOR).mean(), "ry": sec_row[..., 1].clamp(min=CONSTRAINT_FLOOR).mean(),
           "cx": sec_col[..., 0].clamp(min=CONSTRAINT_FLOOR).mean(), "cy": sec_col[..., 1].clamp(min=CONSTRAINT_FLOOR).mean()}

    def area2(p0: Tensor, p1: Tensor, p2: Tensor) -> Tensor:  # |(y1 - y0)(x1 - x2) - (y1 - y2)(x1 - x0)|, summed per sample
        x0, y0, x1, y1, x2, y2 = p0[..., 0], p0[..., 1], p1[..., 0], p1[..., 1], p2[..., 0], p2[..., 1]
        return ((y1 - y0) * (x1 - x2) - (y1 - y2) * (x1 - x0)).abs().flatten(1).sum(1)

    for key, per_sample in (("rg", area2(p[:, :, :-2], p[:, :, 1:-1], p[:, :, 2:])),
                            ("cg", area2(p[:, :-2], p[:, 1:-1], p[:, 2:]))):
        out[key] = per_sample[0].clamp(min=COLLINEAR_FLOOR) if samples == "first" else per_sample.clamp(min=COLLINEAR_FLOOR).mean()
    out["total"] = out["rx"] + out["ry"] + out["cx"] + out["cy"] + out["rg"] + out["cg"]
    return out


def gmm_losses(grid: Tensor, batch: Mapping[str, Tensor], config: GMMConfig,
               params: Tensor | None = None) -> dict[str, Tensor]:
    """The training loss of a GMM variant: ``{"loss", "l1", "grid"}`` (scalars), plus ``"constraint"`` with ``tps_constraint``.

    ``loss="rgb"`` (CP-VTON's GMM loss): ``|| warp(c) - (I * M + (1 - M)) ||_1``, the garment region of the
    person on white. ``loss="mask"`` (MG-VTON GML): ``|| warp(M_c) - M ||_1``. ``loss="flow"`` (not in
    the papers; SynthVTON only): ``|| G - gt_flow ||_1`` over the visible garment pixels, direct
    supervision of the sampling grid. Plus ``config.grid_reg * grid_interval_loss(grid)`` (CP-VTON+), and
    ``config.tps_constraint * tps_grid_constraints(points)["total"]`` (LaDI-VTON), for which ``params`` (the
    GMM's control-point offsets ``(B, 2, K)``) are needed.
    """
    warped, warped_mask = warp_garment(grid, batch)
    if config.loss == "flow":
        _need(batch, ("gt_flow", "gt_flow_mask"), "the flow loss")
        m = batch["gt_flow_mask"].permute(0, 2, 3, 1)  # (B, H, W, 1)
        l1 = ((grid - batch["gt_flow"]).abs() * m).sum() / (2 * m.sum()).clamp(min=1)
    elif config.loss == "rgb":
        _need(batch, ("image", "worn_mask"), "the L1 garment loss")
        m = batch["worn_mask"]
        target = batch["image"] * m + (1 - m)
        l1 = (warped - target).abs().mean()
    else:
        _need(batch, ("worn_mask",), "the GML mask loss")
        l1 = (warped_mask - batch["worn_mask"]).abs().mean()
    reg = grid_interval_loss(grid)
    loss = l1 + config.grid_reg * reg if config.grid_reg else l1
    out = {"loss": loss, "l1": l1.detach(), "grid": reg.detach()}
    if config.tps_constraint:
        k = config.grid_size**2
        if params is None or params.ndim != 3 or params.shape[1:] != (2, k):
            got = None if params is None else tuple(params.shape)
            raise ValueError(f"tps_constraint needs the control-point offsets (B, 2, {k}) (the GMM's second output), got {got}")
        ctrl = tps.control_grid(config.grid_size, config.grid_range, device=params.device, dtype=params.dtype)
        terms = tps_grid_constraints(ctrl[None] + params.transpose(1, 2), config.grid_size, samples=config.tps_constraint_samples)
        out["loss"] = loss + config.tps_constraint * terms["total"]
        out["constraint"] = terms["total"].detach()
    return out


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def _schedule(total: int, kind: str = "keep_decay") -> Callable[[int], float]:
    """The learning-rate factor per step: ``constant`` (1), or ``keep_decay`` (1 for half the steps, then linear to 0)."""
    if kind == "constant":
        return lambda step: 1.0
    keep = total // 2

    def factor(step: int) -> float:
        return 1.0 if step < keep else max(0.0, (total - step) / max(1, total - keep))

    return factor


def train(config: GMMConfig, data, *, progress: bool = True, profile: Profile | None = None,
          checkpoint_dir=None, checkpoint_every: int | None = None):
    """Train a GMM with :class:`vtonlab.train.Trainer`; returns ``(model, history)``.

    ``data``: a map-style dataset of sample dicts (use :func:`preload` for speed).
    """
    from vtonlab.train import Trainer

    if len(data) < config.batch_size:
        raise ValueError(f"GMM training needs at least one batch of {config.batch_size} samples, got {len(data)}")
    sample = data[0]
    if tuple(sample["cloth"].shape[-2:]) != config.image_size:
        raise ValueError(f"data images are {tuple(sample['cloth'].shape[-2:])} but GMMConfig.image_size is "
                         f"{config.image_size}")
    torch.manual_seed(config.seed)
    model = GMM(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(config.steps, config.lr_schedule))

    def step(ctx, batch):
        gmm = ctx.modules["gmm"]
        grid, params = gmm(person_representation(batch, config.person), garment_input(batch, config.garment))
        losses = gmm_losses(grid, batch, config, params)
        ctx.optimize(losses["loss"], "gmm")
        return losses

    trainer = Trainer({"gmm": model}, {"gmm": opt}, step, data, schedulers={"gmm": sched},
                      batch_size=config.batch_size, max_steps=config.steps, seed=config.seed, progress=progress,
                      desc=f"GMM {config.variant}", profile=profile, checkpoint_dir=checkpoint_dir,
                      checkpoint_every=checkpoint_every)
    history = trainer.fit()
    model = trainer.unwrapped()["gmm"].cpu().eval()
    return model, history


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def model_grid_fn(model: GMM) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """A ``batch -> grid`` function of a trained GMM (eval mode, no gradients)."""

    def fn(batch):
        c = model.config
        with torch.no_grad():
            grid, _ = model(person_representation(batch, c.person), garment_input(batch, c.garment))
        return grid

    return fn


def evaluate_warps(grid_fn: Callable[[Mapping[str, Tensor]], Tensor] | GMM | None, data, *,
                   batch_size: int = 32, keep: bool = True) -> dict:
    """:func:`vtonlab.metrics.warp_eval.evaluate_warps` that also accepts a trained :class:`GMM`."""
    if isinstance(grid_fn, GMM):
        grid_fn = model_grid_fn(grid_fn.eval())
    return warp_eval.evaluate_warps(grid_fn, data, batch_size=batch_size, keep=keep)


def _summary_metrics(res: Mapping) -> dict:
    return {"test_epe_px": res["mean_epe_px"], "test_iou": res["mean_iou"], "test_ssim": res["mean_ssim"],
            "n_test": int(res["epe_px"].numel())}


ABLATIONS: dict[str, dict] = {
    "tps_rgb": dict(garment="rgb", grid_reg=0.0, transform="tps"),
    "tps_rgb_reg": dict(garment="rgb", grid_reg=40.0, transform="tps"),
    "tps_mask": dict(garment="mask", grid_reg=0.0, transform="tps"),
    "tps_mask_reg": dict(garment="mask", grid_reg=40.0, transform="tps"),
    "affine_rgb": dict(garment="rgb", grid_reg=0.0, transform="affine"),
    "tps_rgb_corrnorm": dict(garment="rgb", grid_reg=0.0, transform="tps", correlation_norm=True),
    "tps_rgb_lr1e-3": dict(garment="rgb", grid_reg=0.0, transform="tps", lr=1e-3),
    "tps_rgb_earlier": dict(garment="rgb", grid_reg=0.0, transform="tps", correlation_norm=True, zero_init=True, lr=1e-3,
                            lr_schedule="keep_decay"),
    "tps_rgb_flow": dict(garment="rgb", grid_reg=0.0, transform="tps", loss="flow"),
}
"""Notebook 04's ablation (CP-VTON person representation throughout): garment input x grid regulariser x
transformation, faster-converging settings than the official GMM's (CNNGeometric's correlation
normalisation; a 10x learning rate; ``tps_rgb_earlier``: all four together, also the identity start and
the decaying rate), and a diagnostic that replaces the L1 loss by direct supervision with
SynthVTON's ``gt_flow``."""

ABLATION_SEEDS = (1, 2)
"""Extra training seeds of the ``tps_rgb`` ablation row: the seed spread that judges every difference."""


def ablation_configs(profile: Profile | str | None = None, steps: int | None = None,
                     seeds: Sequence[int] = ()) -> dict[str, GMMConfig]:
    """One :class:`GMMConfig` per :data:`ABLATIONS` entry (variant ``ablation_<key>``), plus ``tps_rgb`` per extra seed.

    Every variant trains for the same ``steps``: by default a quarter of ``profile.steps_for("gmm")``,
    so the whole ablation (11 runs with the seed repeats) costs about three main models. Extra seeds appear as
    ``tps_rgb_seed<N>``.
    """
    prof = resolve_profile(profile)
    n = steps if steps is not None else max(1, prof.steps_for("gmm") // 4)
    out = {key: dataclasses.replace(GMMConfig.for_profile(prof, "cpvton", **spec, steps=n), variant=f"ablation_{key}")
           for key, spec in ABLATIONS.items()}
    for seed in seeds:
        out[f"tps_rgb_seed{seed}"] = dataclasses.replace(out["tps_rgb"], seed=int(seed))
    return out


# ----------------------------------------------------------------------------------------------
# Load or train
# ----------------------------------------------------------------------------------------------


def checkpoint_name(config: GMMConfig) -> str:
    """``gmm`` (CP-VTON), ``gmm_cpvton_plus``, ``gml``, ``ladi_tps``; ``gmm_<variant>`` otherwise; ``_seed<N>`` unless seed 0."""
    name = {"cpvton": "gmm", "gml": "gml", "ladi": "ladi_tps"}.get(config.variant, f"gmm_{config.variant}")
    return name if config.seed == 0 else f"{name}_seed{config.seed}"


def get_trained(profile: Profile | str | None = None, *, variant: str = "cpvton", force_train: bool = False,
                config: GMMConfig | None = None, train_data=None, test_data=None, progress: bool = True,
                verbose: bool = True) -> tuple[GMM, object]:
    """A trained GMM for a profile (loaded when a matching checkpoint exists): ``(model, checkpoint)``.

    Args:
        profile: a Profile, a profile name or None (the active one).
        variant: ``"cpvton"`` | ``"cpvton_plus"`` | ``"gml"`` | ``"ladi"`` (see :data:`VARIANTS`).
        config: a full :class:`GMMConfig` instead (e.g. an ablation); its ``variant`` names the checkpoint.
        train_data, test_data: the profile's SynthVTON splits, already loaded (e.g. :func:`preload`
            results); by default they are read with ``vtonlab.data.synthvton``. Other data would not
            match the checkpoint's data key.
    The checkpoint config holds the model config and the data key (SynthVTON's render parameters and
    renderer version); its metrics are the test-split EPE (in-shop px), IoU and SSIM.
    """
    from vtonlab.checkpoints import load_or_train
    from vtonlab.data import synthvton_params

    prof = resolve_profile(profile)
    cfg = config if config is not None else GMMConfig.for_profile(prof, variant)
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"GMMConfig.image_size {cfg.image_size} differs from profile {prof.name!r} "
                         f"image size {tuple(prof.image_size)}")

    def train_fn():
        from vtonlab.data import synthvton

        style = POSE_STYLES[cfg.person]
        tr = train_data if train_data is not None else synthvton("train", prof, pose_style=style)
        te = test_data if test_data is not None else synthvton("test", prof, pose_style=style)
        model, history = train(cfg, preload(tr, limit=cfg.n_train), progress=progress, profile=prof)
        res = evaluate_warps(model, te, batch_size=prof.eval_batch_size, keep=False)
        return {"gmm": model}, _summary_metrics(res), history

    full = {**cfg.to_dict(), "data": synthvton_params(prof)}
    ckpt = load_or_train(checkpoint_name(cfg), full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    model = GMM(cfg)
    ckpt.load_into(model, prefix="gmm")
    return model.eval(), ckpt


def get_trained_gml(profile: Profile | str | None = None, *, force_train: bool = False):
    """MG-VTON's geometric matching learning (``variant="gml"``): ``python -m vtonlab train gml``."""
    return get_trained(profile, variant="gml", force_train=force_train)


def get_trained_cpvton_plus(profile: Profile | str | None = None, *, force_train: bool = False):
    """CP-VTON+'s GMM (mask input, grid regulariser): ``python -m vtonlab train gmm_cpvton_plus``."""
    return get_trained(profile, variant="cpvton_plus", force_train=force_train)


def get_trained_ablation(profile: Profile | str | None = None, *, force_train: bool = False,
                         train_data=None, test_data=None, progress: bool = True,
                         verbose: bool = True) -> dict[str, tuple[GMM, object]]:
    """Every ablation variant of notebook 04 and the extra seeds: ``python -m vtonlab train gmm_ablation``.

    Returns ``{key: (model, checkpoint)}`` for the keys of :func:`ablation_configs` (with
    :data:`ABLATION_SEEDS`).
    """
    from vtonlab.data import synthvton

    prof = resolve_profile(profile)
    tr = preload(train_data if train_data is not None else synthvton("train", prof))
    te = preload(test_data if test_data is not None else synthvton("test", prof))
    return {key: get_trained(prof, config=cfg, force_train=force_train, train_data=tr, test_data=te, progress=progress,
                             verbose=verbose)
            for key, cfg in ablation_configs(prof, seeds=ABLATION_SEEDS).items()}
