"""The geometric matching module (CP-VTON GMM, CP-VTON+, MG-VTON GML), trained on SynthVTON.

CP-VTON (Wang et al., ECCV 2018, Sec. 3.1) warps the in-shop garment onto the person in four steps:

1. two feature extractors (person representation; garment) bring their inputs to 1/16 resolution
   with a stack of stride-2 convolutions (BatchNorm, ReLU);
2. features are L2-normalised per location and **correlated**: every person location against every
   garment location, one batched matrix product, giving ``h*w`` channels at ``h x w`` (192 channels
   at 256x192);
3. a regression network (convolutions, a linear layer and tanh) turns the correlation into the
   offsets of a 5x5 grid of TPS control points;
4. the TPS sampling grid warps the garment (:class:`vtonlab.tps.FixedGridTPS`).

Training minimises ``L1(warped garment, garment region on the person)`` (CP-VTON Eq. 2). Variants:

- ``cpvton``: person representation = body shape (1) + head (3) + pose heatmaps (18) = 22 channels;
  garment = RGB (3); loss = L1.
- ``cpvton_plus``: CP-VTON+ (Minar et al., CVPRW 2020) feeds the garment *mask* to the garment
  extractor and adds the grid regulariser (grid interval consistency, weight 40, per pixel).
- ``gml``: MG-VTON's geometric matching learning (Dong et al., ICCV 2019, Sec. 3.4): garment mask ->
  body shape + target garment mask; loss = L1 on the warped mask. MG-VTON takes the target mask from
  its synthesised parsing; here it is SynthVTON's ground-truth worn mask (no parsing model needed).

Ablation switches (any variant): ``garment`` input ``rgb``/``mask``, ``grid_reg`` weight, and
``transform`` ``tps``/``affine`` (a spatial transformer with 6 parameters). A diagnostic that no paper
can run: ``loss="flow"`` supervises the sampling grid with SynthVTON's true warp, and
:func:`oracle_grid_fn` fits each transformation family to it (the best a perfect regressor could do).

Deliberate differences from the papers, all in :class:`GMMConfig`: narrower networks (``width`` 16
instead of 64, at most 128 channels instead of 512) so that training fits on a CPU; 3x3 stride-2
regression convolutions (valid down to 64x48 inputs); the last linear layer starts at zero, so an
untrained GMM returns the identity warp.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab import tps
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "VARIANTS",
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
    "checkpoint_name",
]

PERSON_CHANNELS = {"cpvton": 22, "gml": 2}
GARMENT_CHANNELS = {"rgb": 3, "mask": 1}

VARIANTS: dict[str, dict] = {
    "cpvton": dict(person="cpvton", garment="rgb", transform="tps", loss="rgb", grid_reg=0.0),
    "cpvton_plus": dict(person="cpvton", garment="mask", transform="tps", loss="rgb", grid_reg=40.0),
    "gml": dict(person="gml", garment="mask", transform="tps", loss="mask", grid_reg=0.0),
}
"""The three geometric matching set-ups of the course; keys are ``variant`` names."""

# Keys of the sample dict the GMM uses (SynthVTON gives them all; real datasets lack gt_flow).
SAMPLE_KEYS = ("image", "cloth", "cloth_mask", "worn_mask", "body_shape", "head", "pose_map", "gt_flow",
               "gt_flow_mask", "agnostic")


@dataclass(frozen=True)
class GMMConfig:
    """Everything that determines a trained GMM (architecture, inputs, loss, optimisation, data).

    Use :meth:`for_profile` to get the course's settings for a profile.
    """

    variant: str = "cpvton"
    person: str = "cpvton"  # "cpvton": body shape + head + pose (22 ch); "gml": body shape + target mask (2 ch)
    garment: str = "rgb"  # "rgb" (CP-VTON) or "mask" (CP-VTON+, GML)
    transform: str = "tps"  # "tps" (5x5 control grid) or "affine" (ablation)
    loss: str = "rgb"  # "rgb": L1 warped garment vs garment on person; "mask": L1 warped mask vs worn mask;
    # "flow": L1 between the sampling grid and SynthVTON's gt_flow (a diagnostic that needs the true warp)
    grid_reg: float = 0.0  # weight of the CP-VTON+ grid interval consistency term (40 in CP-VTON+)
    image_size: tuple[int, int] = (256, 192)
    width: int = 16  # channels of the first extractor layer (CP-VTON: 64)
    max_channels: int = 128  # (CP-VTON: 512)
    grid_size: int = 5
    grid_range: float = 1.0
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)  # CP-VTON's Adam betas
    steps: int = 1000
    batch_size: int = 16
    n_train: int = 600
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (("person", self.person, PERSON_CHANNELS), ("garment", self.garment, GARMENT_CHANNELS),
                  ("transform", self.transform, ("tps", "affine")), ("loss", self.loss, ("rgb", "mask", "flow")))
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"GMMConfig.{name}: expected one of {list(allowed)}, got {value!r}")
        h, w = self.image_size
        if h < 16 or w < 16:
            raise ValueError(f"GMMConfig.image_size: expected at least 16x16 (1/16 resolution >= 1), got {h}x{w}")
        if self.grid_reg < 0:
            raise ValueError(f"GMMConfig.grid_reg must be >= 0, got {self.grid_reg}")
        object.__setattr__(self, "image_size", (int(h), int(w)))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, variant: str = "cpvton", **overrides) -> GMMConfig:
        """The course's config of ``variant`` for a profile (steps from ``profile.steps_for``)."""
        prof = resolve_profile(profile)
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {list(VARIANTS)}, got {variant!r}")
        model_name = "gml" if variant == "gml" else "gmm"
        base = dict(variant=variant, image_size=tuple(prof.image_size), steps=prof.steps_for(model_name),
                    batch_size=prof.batch_size, n_train=prof.n_train, **VARIANTS[variant])
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
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


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _need(batch: Mapping, keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{what} needs {', '.join(missing)} in the sample dict; it has {', '.join(map(str, batch))}")


def person_representation(batch: Mapping[str, Tensor], kind: str = "cpvton") -> Tensor:
    """The person input of the GMM, ``(B, C, H, W)`` in about [-1, 1].

    ``cpvton`` (CP-VTON Sec. 3.1): body shape (1) + head RGB (3) + 18 pose heatmaps = 22 channels.
    ``gml`` (MG-VTON Sec. 3.4): body shape (1) + target garment mask (1) = 2 channels.
    Masks and the body shape are mapped from [0, 1] to [-1, 1]; pose heatmaps are used as given.
    """
    if kind == "cpvton":
        _need(batch, ("body_shape", "head", "pose_map"), "the CP-VTON person representation")
        return torch.cat([batch["body_shape"] * 2 - 1, batch["head"], batch["pose_map"]], dim=1)
    if kind == "gml":
        _need(batch, ("body_shape", "worn_mask"), "the GML person representation")
        return torch.cat([batch["body_shape"] * 2 - 1, batch["worn_mask"] * 2 - 1], dim=1)
    raise ValueError(f"person representation: expected 'cpvton' or 'gml', got {kind!r}")


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
    """L2-normalise features over channels at every location: ``x / ||x||_2`` (CP-VTON Sec. 3.1), ``(B, C, h, w)``."""
    return x / torch.sqrt((x * x).sum(dim=1, keepdim=True) + eps)


def correlation(person_features: Tensor, garment_features: Tensor) -> Tensor:
    """Correlation of every person location with every garment location (CP-VTON Sec. 3.1).

    ``corr[b, k, i, j] = <f_person[b, :, i, j], f_garment[b, :, k // w, k % w]>``: for the person
    location ``(i, j)``, channel ``k`` is its similarity to garment location ``k`` (row-major).

    Args:
        person_features, garment_features: ``(B, C, h, w)``.
    Returns:
        ``(B, h*w, h, w)``, computed as one batched matrix product.
    """
    if person_features.shape != garment_features.shape or person_features.ndim != 4:
        raise ValueError(f"person and garment features must both be (B, C, h, w) of one shape, got "
                         f"{tuple(person_features.shape)} and {tuple(garment_features.shape)}")
    b, c, h, w = person_features.shape
    fp = person_features.reshape(b, c, h * w)  # (B, C, P)   person locations
    fg = garment_features.reshape(b, c, h * w)  # (B, C, G)   garment locations
    corr = torch.bmm(fg.transpose(1, 2), fp)  # (B, G, P): [k, p] = <f_g[k], f_p[p]>
    return corr.reshape(b, h * w, h, w)


# ----------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------


def _conv_bn_relu(cin: int, cout: int, k: int, s: int, p: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class FeatureExtractor(nn.Module):
    """CP-VTON's feature extractor: four 4x4 stride-2 convolutions to 1/16, then two 3x3 convolutions.

    ``(B, in_channels, H, W)`` -> ``(B, C, H/16, W/16)`` with ``C = min(8 * width, max_channels)``.
    """

    def __init__(self, in_channels: int, width: int = 16, max_channels: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(4):
            cout = min(width * 2**i, max_channels)
            layers += _conv_bn_relu(cin, cout, 4, 2, 1)
            cin = cout
        layers += _conv_bn_relu(cin, cin, 3, 1, 1)
        layers += [nn.Conv2d(cin, cin, 3, 1, 1)]
        self.net = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Regressor(nn.Module):
    """CP-VTON's regression network: correlation ``(B, h*w, h, w)`` -> parameters ``(B, n_out)`` in (-1, 1).

    Two stride-2 and two stride-1 3x3 convolutions (BatchNorm, ReLU), a linear layer and tanh. The
    linear layer starts at zero: the untrained module predicts zero offsets (the identity warp).
    """

    def __init__(self, feature_size: tuple[int, int], n_out: int, width: int = 16, max_channels: int = 128) -> None:
        super().__init__()
        h, w = feature_size
        chans = [min(width * m, max_channels) for m in (8, 4, 2, 1)]
        layers: list[nn.Module] = []
        cin = h * w
        for i, cout in enumerate(chans):
            stride = 2 if i < 2 else 1
            layers += _conv_bn_relu(cin, cout, 3, stride, 1)
            cin = cout
            if stride == 2:
                h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(cin * h * w, n_out)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, corr: Tensor) -> Tensor:
        return torch.tanh(self.linear(self.convs(corr).flatten(1)))


class GMM(nn.Module):
    """The geometric matching module: ``(person, garment)`` -> sampling grid ``(B, H, W, 2)`` + parameters.

    CP-VTON Sec. 3.1 (see the module docstring). With ``transform="tps"`` the parameters are the
    control-point offsets ``(B, 2, K)`` (row 0: x, row 1: y) of a fixed ``grid_size x grid_size`` grid in
    ``[-grid_range, grid_range]``; with ``"affine"`` they are ``theta`` ``(B, 2, 3)`` = identity + tanh output.
    """

    def __init__(self, config: GMMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.extract_person = FeatureExtractor(c.person_channels, c.width, c.max_channels)
        self.extract_garment = FeatureExtractor(c.garment_channels, c.width, c.max_channels)
        n_out = 2 * c.grid_size**2 if c.transform == "tps" else 6
        self.regressor = Regressor(c.feature_size, n_out, c.width, c.max_channels)
        self.tps = tps.FixedGridTPS(c.grid_size, c.grid_range)
        self.register_buffer("_identity_theta", torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), persistent=False)

    def correlation_volume(self, person: Tensor, garment: Tensor) -> Tensor:
        """L2-normalised features correlated: ``(B, h*w, h, w)`` (before the ReLU/normalisation of :meth:`forward`)."""
        self._check_inputs(person, garment)
        fp = feature_l2norm(self.extract_person(person))
        fg = feature_l2norm(self.extract_garment(garment))
        return correlation(fp, fg)

    def _check_inputs(self, person: Tensor, garment: Tensor) -> None:
        c = self.config
        for name, x, ch in (("person", person, c.person_channels), ("garment", garment, c.garment_channels)):
            if x.ndim != 4 or x.shape[1] != ch or tuple(x.shape[-2:]) != c.image_size:
                raise ValueError(f"GMM {name} input: expected (B, {ch}, {c.image_size[0]}, {c.image_size[1]}) "
                                 f"for person={c.person!r}, garment={c.garment!r}; got {tuple(x.shape)}")

    def forward(self, person: Tensor, garment: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(grid (B, H, W, 2), params)``; ``params`` is ``(B, 2, K)`` offsets or ``(B, 2, 3)`` theta."""
        corr = self.correlation_volume(person, garment)
        corr = feature_l2norm(F.relu(corr))  # CP-VTON normalises the rectified correlation
        out = self.regressor(corr)
        size = self.config.image_size
        if self.config.transform == "tps":
            offsets = out.view(out.shape[0], 2, self.config.grid_size**2)
            return self.tps(offsets, size), offsets
        theta = self._identity_theta + out.view(out.shape[0], 2, 3)
        return tps.affine_sampling_grid(theta, size), theta


def warp_garment(grid: Tensor, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Warp ``cloth`` (border padding: stays white) and ``cloth_mask`` (zero padding) with ``grid``.

    Returns ``(warped cloth (B, 3, H, W), warped mask (B, 1, H, W))``.
    """
    _need(batch, ("cloth", "cloth_mask"), "warp_garment")
    cloth = F.grid_sample(batch["cloth"], grid, mode="bilinear", padding_mode="border", align_corners=True)
    mask = F.grid_sample(batch["cloth_mask"], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return cloth, mask


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------


def grid_interval_loss(grid: Tensor) -> Tensor:
    """CP-VTON+ grid regulariser ("grid interval consistency"), summed and divided by ``B * H * W``.

    Minar et al. (CVPRW 2020), Eq. 3: neighbouring sampling points should keep equal spacing, a
    second-order smoothness of the sampling grid ``G`` ``(B, H, W, 2)``. For each component ``c`` of
    ``G`` and each interior pixel,
    ``| |G_c(i, j+1) - G_c(i, j)| - |G_c(i, j) - G_c(i, j-1)| | + | |G_c(i+1, j) - G_c(i, j)| - |G_c(i, j) - G_c(i-1, j)| |``.
    A regular (affine) grid costs 0. CP-VTON+ weights it by 40.
    """
    if grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(f"grid must have shape (B, H, W, 2), got {tuple(grid.shape)}")
    b, h, w, _ = grid.shape
    centre = grid[:, 1:-1, 1:-1]
    right = (grid[:, 1:-1, 2:] - centre).abs()
    left = (centre - grid[:, 1:-1, :-2]).abs()
    down = (grid[:, 2:, 1:-1] - centre).abs()
    up = (centre - grid[:, :-2, 1:-1]).abs()
    return ((right - left).abs() + (down - up).abs()).sum() / (b * h * w)


def gmm_losses(grid: Tensor, batch: Mapping[str, Tensor], config: GMMConfig) -> dict[str, Tensor]:
    """The training loss of a GMM variant: ``{"loss", "l1", "grid"}`` (scalars).

    ``loss="rgb"`` (CP-VTON Eq. 2): ``|| warp(c) - I * M - (1 - M) ||_1``, the garment region of the
    person on white. ``loss="mask"`` (MG-VTON GML): ``|| warp(M_c) - M ||_1``. ``loss="flow"`` (not in
    the papers; SynthVTON only): ``|| G - gt_flow ||_1`` over the visible garment pixels, direct
    supervision of the sampling grid. Plus ``config.grid_reg * grid_interval_loss(grid)`` (CP-VTON+).
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
    return {"loss": loss, "l1": l1.detach(), "grid": reg.detach()}


# ----------------------------------------------------------------------------------------------
# Data and training
# ----------------------------------------------------------------------------------------------


class _Preloaded(torch.utils.data.Dataset):
    """A dataset held in memory as stacked tensors (decoding SynthVTON files once, not every epoch)."""

    def __init__(self, tensors: dict[str, Tensor], names: list[str]) -> None:
        self.tensors = tensors
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def batch(self, start: int, stop: int) -> dict[str, Tensor]:
        return {k: v[start:stop] for k, v in self.tensors.items()}


def preload(dataset, keys: Sequence[str] = SAMPLE_KEYS, limit: int | None = None) -> _Preloaded:
    """Read ``dataset`` (sample dicts) once into memory, keeping ``keys``; ``limit`` the first N samples."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("preload: the dataset is empty")
    if isinstance(dataset, _Preloaded):
        return _Preloaded({k: dataset.tensors[k][:n] for k in keys if k in dataset.tensors}, dataset.names[:n])
    first = dataset[0]
    present = [k for k in keys if k in first]
    cols: dict[str, list[Tensor]] = {k: [] for k in present}
    names = []
    for i in range(n):
        s = first if i == 0 else dataset[i]
        for k in present:
            cols[k].append(s[k])
        names.append(str(s.get("im_name", i)))
    return _Preloaded({k: torch.stack(v) for k, v in cols.items()}, names)


def _schedule(total: int) -> Callable[[int], float]:
    """CP-VTON's learning-rate schedule: constant for the first half, then linear decay to 0."""
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
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(config.steps))

    def step(ctx, batch):
        gmm = ctx.modules["gmm"]
        grid, _ = gmm(person_representation(batch, config.person), garment_input(batch, config.garment))
        losses = gmm_losses(grid, batch, config)
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


def identity_grid_fn(batch: Mapping[str, Tensor]) -> Tensor:
    """The "no warp" baseline: the identity sampling grid ``(B, H, W, 2)``."""
    b, _, h, w = batch["cloth"].shape
    return tps.pixel_grid((h, w), device=batch["cloth"].device).expand(b, h, w, 2)


def model_grid_fn(model: GMM) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """A ``batch -> grid`` function of a trained GMM (eval mode, no gradients)."""

    def fn(batch):
        c = model.config
        with torch.no_grad():
            grid, _ = model(person_representation(batch, c.person), garment_input(batch, c.garment))
        return grid

    return fn


def oracle_grid_fn(transform: str = "tps", grid_size: int = 5, grid_range: float = 1.0,
                   ridge: float = 1e-6) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """The best warp of a transformation family, fitted to ``gt_flow`` by least squares (SynthVTON only).

    For each sample, the TPS offsets (``g(p) = p + M(p) o``, :class:`vtonlab.tps.FixedGridTPS`) or the
    affine ``theta`` that minimise ``sum |g(p) - gt_flow(p)|^2`` over the visible garment pixels: what a
    perfect regressor could reach with that family (its EPE is a floor for the learned GMM, up to the
    tanh bound on the learned offsets). ``ridge`` keeps the fit defined when few pixels are visible.
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


ABLATIONS: dict[str, dict] = {
    "tps_rgb": dict(garment="rgb", grid_reg=0.0, transform="tps"),
    "tps_rgb_reg": dict(garment="rgb", grid_reg=40.0, transform="tps"),
    "tps_mask": dict(garment="mask", grid_reg=0.0, transform="tps"),
    "tps_mask_reg": dict(garment="mask", grid_reg=40.0, transform="tps"),
    "affine_rgb": dict(garment="rgb", grid_reg=0.0, transform="affine"),
    "tps_rgb_flow": dict(garment="rgb", grid_reg=0.0, transform="tps", loss="flow"),
}
"""Notebook 04's ablation: garment input x grid regulariser x transformation (CP-VTON person representation),
and a diagnostic that replaces the L1 loss by direct supervision with SynthVTON's ``gt_flow``."""


def ablation_configs(profile: Profile | str | None = None, steps: int | None = None) -> dict[str, GMMConfig]:
    """One :class:`GMMConfig` per :data:`ABLATIONS` entry (variant ``ablation_<key>``).

    Every variant trains for the same ``steps``: by default a quarter of ``profile.steps_for("gmm")``,
    so that the whole ablation costs about as much as the main model.
    """
    prof = resolve_profile(profile)
    n = steps if steps is not None else max(1, prof.steps_for("gmm") // 4)
    return {key: dataclasses.replace(GMMConfig.for_profile(prof, "cpvton", **spec, steps=n), variant=f"ablation_{key}")
            for key, spec in ABLATIONS.items()}


@torch.no_grad()
def evaluate_warps(grid_fn: Callable[[Mapping[str, Tensor]], Tensor] | GMM | None, data, *,
                   batch_size: int = 32, keep: bool = True) -> dict:
    """Warp every test sample and score it (EPE, IoU, SSIM; :mod:`vtonlab.metrics.warp`).

    Args:
        grid_fn: a trained :class:`GMM`, a ``batch -> grid`` function, or ``None`` (identity warp).
        data: a map-style dataset of SynthVTON sample dicts (or a :func:`preload` result).
        keep: also return the images, grids and EPE maps (for figures and the browser widget).

    Returns:
        ``{"epe_px", "iou", "ssim"}`` per sample ``(N,)``, their means ``"mean_epe_px"``,
        ``"mean_iou"``, ``"mean_ssim"``, ``"names"``, and with ``keep`` ``"cloth"``, ``"image"``,
        ``"warped"``, ``"warped_mask"``, ``"worn_mask"``, ``"grid"``, ``"epe_map"``.
    """
    from vtonlab.metrics import warp as warp_metrics_module

    if isinstance(grid_fn, GMM):
        grid_fn = model_grid_fn(grid_fn.eval())
    elif grid_fn is None:
        grid_fn = identity_grid_fn
    data = data if isinstance(data, _Preloaded) else preload(data)
    out: dict[str, list] = {}
    for start in range(0, len(data), batch_size):
        batch = data.batch(start, start + batch_size)
        grid = grid_fn(batch)
        scores = warp_metrics_module.warp_metrics(grid, batch)
        for k, v in scores.items():
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


def _summary_metrics(res: Mapping) -> dict:
    return {"test_epe_px": res["mean_epe_px"], "test_iou": res["mean_iou"], "test_ssim": res["mean_ssim"],
            "n_test": int(res["epe_px"].numel())}


# ----------------------------------------------------------------------------------------------
# Load or train
# ----------------------------------------------------------------------------------------------


def checkpoint_name(config: GMMConfig) -> str:
    """``gmm`` (CP-VTON), ``gmm_cpvton_plus``, ``gml``; ``gmm_<variant>`` for anything else."""
    return {"cpvton": "gmm", "gml": "gml"}.get(config.variant, f"gmm_{config.variant}")


def get_trained(profile: Profile | str | None = None, *, variant: str = "cpvton", force_train: bool = False,
                config: GMMConfig | None = None, train_data=None, test_data=None, progress: bool = True,
                verbose: bool = True) -> tuple[GMM, object]:
    """A trained GMM for a profile (loaded when a matching checkpoint exists): ``(model, checkpoint)``.

    Args:
        profile: a Profile, a profile name or None (the active one).
        variant: ``"cpvton"`` | ``"cpvton_plus"`` | ``"gml"`` (see :data:`VARIANTS`).
        config: a full :class:`GMMConfig` instead (e.g. an ablation); its ``variant`` names the checkpoint.
        train_data, test_data: SynthVTON datasets to use (default: ``vtonlab.data.synthvton`` of the profile).
    The checkpoint's metrics are the test-split EPE (in-shop px), IoU and SSIM.
    """
    from vtonlab.checkpoints import load_or_train

    prof = resolve_profile(profile)
    cfg = config if config is not None else GMMConfig.for_profile(prof, variant)
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"GMMConfig.image_size {cfg.image_size} differs from profile {prof.name!r} "
                         f"image size {tuple(prof.image_size)}")

    def train_fn():
        from vtonlab.data import synthvton

        tr = train_data if train_data is not None else synthvton("train", prof)
        te = test_data if test_data is not None else synthvton("test", prof)
        model, history = train(cfg, preload(tr, limit=cfg.n_train), progress=progress, profile=prof)
        res = evaluate_warps(model, te, batch_size=prof.eval_batch_size, keep=False)
        return {"gmm": model}, _summary_metrics(res), history

    ckpt = load_or_train(checkpoint_name(cfg), cfg.to_dict(), train_fn, profile=prof, force_train=force_train,
                         verbose=verbose)
    model = GMM(cfg)
    ckpt.load_into(model, prefix="gmm")
    return model.eval(), ckpt


def get_trained_gml(profile: Profile | str | None = None, *, force_train: bool = False):
    """MG-VTON's geometric matching learning (``variant="gml"``) for ``python -m vtonlab train gml``."""
    return get_trained(profile, variant="gml", force_train=force_train)
