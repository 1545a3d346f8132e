"""LaDI-VTON's garment warping: a CP-VTON-style TPS matcher, then a refinement UNet, trained on SynthVTON.

LaDI-VTON (Morelli et al., ACM MM 2023, arXiv 2305.13501) conditions its latent diffusion model on the in-shop
garment warped onto the person. The official code (``src/train_tps.py``) builds that warp in two stages:

1. **TPS stage** (``ConvNet_TPS``): a geometric matching module as in CP-VTON (feature extractors, L2
   normalisation, correlation, regression of a 5x5 TPS control grid; :mod:`vtonlab.gmm`, variant ``"ladi"``).
   Its person input is the masked person (the inpainting region greyed out, 3 channels) and 18 pose
   heatmaps: 21 channels. Loss: ``L1(warp(c), I * M + (1 - M)) + 0.01 * (rx + ry + cx + cy + rg + cg)``,
   the bounded second-order constraints on the predicted control points (:func:`vtonlab.gmm.tps_grid_constraints`).
2. **Refinement** (``UNetVanilla``): a UNet reads ``[masked person, pose maps, TPS-warped garment]`` (24 channels)
   and outputs the refined warped garment (3 channels), trained with the TPS frozen against the same target
   ``I * M + (1 - M)`` with ``L1 + 0.25 * VGG`` (:class:`vtonlab.losses.VGGPerceptualLoss`).

Checkpoints: :func:`get_trained_tps` (``ladi_tps``) and :func:`get_trained_refine` (``ladi_warp_refine``, whose
config holds the TPS config it was trained on). :func:`compare_matchers` puts the CP-VTON GMM, MG-VTON's GML and
both LaDI-VTON stages in one table on one test split.

Fidelity (official code miccunifi/ladi-vton at b127ad9, ``src/train_tps.py``, ``src/models/ConvNet_TPS.py``,
``UNet.py``, ``unet_parts.py``, ``utils/vgg_loss.py``, ``dataset/vitonhd.py``; the paper's text was not checked
here: ``-``). Every difference is a named option of :class:`vtonlab.gmm.GMMConfig` or :class:`WarpRefineConfig`:

| point | paper | official code | vtonlab |
|---|---|---|---|
| TPS person input | masked person + pose | ``cat([im_mask, pose_map])``: 3 + 18 = 21 channels | same: ``agnostic`` + ``pose_map`` |
| masked person | - | ``image * parse_mask_total`` (0 in the inpainting region) | ``agnostic``: the same construction |
| pose maps (1) | - | Gaussians, sigma 9 px at the dataset size | ``pose_style="ladi"``: 9 px at 512 px height |
| feature extractors | - | CP-VTON's (``n_layer=3``) | :class:`vtonlab.gmm.FeatureExtractor` |
| correlation axes | - | spatial = *person*, channel = garment | ``correlation_spatial="person"`` (CP-VTON: garment) |
| regression network | - | CP-VTON's (512 ... 64, linear, tanh) | same; 3x3 stride-2 convs in ci (4x3 features) |
| control grid | 5x5 TPS | 5x5 in [-0.9, 0.9] | ``grid_size=5``, ``grid_range=0.9`` |
| TPS parameters (2) | - | tanh = the points, in (-1, 1); start at the grid | ``tps_points="absolute"``, ``zero_init=True`` |
| TPS kernel | - | ``r^2 log r`` | ``r^2 log r^2``: the same interpolant |
| TPS loss | L1 + grid constraints | ``L1 + 0.01 * (rx + ry + cx + cy + rg + cg)`` | same (``tps_constraint=0.01``) |
| constraint terms (3) | - | bounded squared-spacing differences, collinearity | :func:`vtonlab.gmm.tps_grid_constraints` |
| collinearity terms | - | first sample of the batch only | same; ``tps_constraint_samples="all"`` |
| warp sampling | - | border padding, ``align_corners=False`` (4) | border padding, ``align_corners=True`` |
| optimiser | - | Adam, lr 1e-4, betas (0.5, 0.99), both stages | same (``lr``, ``betas``) |
| precision | - | fp16 autocast + GradScaler | the profile's: float32 (ci, cpu), bf16 (gpu) |
| resolution (5) | - | TPS 256x192; refinement 512x384 | both at the profile's size (gpu 256x192) |
| steps, batch | - | 50 + 50 epochs, batch 16 | the profile's ``ladi_tps`` / ``warp_refine`` steps; refinement batch 8 in ci / cpu |
| refinement input | person, pose, warped garment | ``cat([im_mask, pose_map, warped_cloth])``, 24 ch | same (:func:`refine_input`) |
| refinement network (6) | UNet | ``UNetVanilla(24, 3, bilinear=True)``, 64 ... 512 | :class:`RefineUNet`; ci / cpu: ``width=16`` |
| refinement output | - | the 1x1 convolution, no activation | same (``output="linear"``; ``"tanh"`` option) |
| refinement loss | L1 + 0.25 VGG | ``1 * L1 + 0.25 * VGGLoss`` | same (``l1_weight``, ``vgg_weight``) |
| VGG loss (7) | - | VGG19 relu1_1 ... relu5_1, 1/32 ... 1, resize to 256 | same; ``vgg_resize=0`` (none) in ci / cpu |
| TPS during refinement | frozen | ``tps.eval()``, only the UNet optimised | eval mode, no gradients, not optimised |
| target of both stages | - | ``im_cloth = image * parse_cloth + (1 - parse_cloth)`` | ``image * worn_mask + (1 - worn_mask)`` |
| DensePose input | - | ``--dense``: 5 DensePose channels instead of pose | not available (SynthVTON has none) |

1. ``kpoint_to_heatmap(..., 9)``: ``exp(-d^2 / 9^2)`` divided by its maximum. The TPS trains on maps drawn at
   256x192 (9 px) but is evaluated on 512x384 maps resized to 256x192 (4.5 px); vtonlab scales 9 px at 512.
2. ``BoundedGridLocNet``: linear weight 0, bias ``atanh(grid)``, so training starts at the identity warp;
   CP-VTON's regressor outputs offsets ``c + tanh`` with PyTorch's default initialisation.
3. Per grid row (r) and column (c), per component x / y: ``mean(max(0.08, |d_{i+1} - d_i|))`` of the squared
   spacings ``d_i = (p_{i+1} - p_i)^2``; ``rg`` / ``cg``: ``max(0.02, sum |(y1 - y0)(x1 - x2) - (y1 - y2)(x1 - x0)|)``.
4. The TPS grid is built in ``align_corners=True`` coordinates but sampled with ``grid_sample``'s default
   ``align_corners=False`` (half a pixel); vtonlab uses ``True`` everywhere.
5. The official refinement warps at 512x384 with the 256x192 TPS grid upsampled bilinearly; vtonlab has one size.
6. Four max-pool levels (64, 128, 256, 512, 512), (conv3x3 without bias, BN, ReLU) x 2 per level, bilinear
   upsampling (``align_corners=True``), padding to the skip's size, concatenation ``[skip, up]``, 1x1 output.
7. ``VGGLoss`` resizes both images to 256 on the short side (``Resize(256)``); ImageNet VGG19 weights are used
   only when their file is present (:class:`vtonlab.losses.VGGPerceptualLoss`); the manifest names the weights.

The metrics: EPE against SynthVTON's true warp (in-shop pixels) for the TPS stages, IoU of the warped in-shop
mask with the worn mask, and SSIM / LPIPS of the warped garment against the worn garment, both composited on
white outside the worn mask (:mod:`vtonlab.metrics.warp`). The refinement outputs RGB only, so its IoU is the
TPS stage's mask IoU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab import gmm
from vtonlab.data.preload import Preloaded, preload
from vtonlab.data.representation import POSE_STYLES
from vtonlab.metrics.warp import warp_ssim
from vtonlab.metrics.warp_eval import warp_garment
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "TPS_VARIANT",
    "POSE_CHANNELS",
    "REFINE_IN_CHANNELS",
    "tps_config",
    "person_input",
    "garment_target",
    "tps_warp",
    "refine_input",
    "WarpRefineConfig",
    "RefineUNet",
    "refine_losses",
    "train_refine",
    "evaluate_refined",
    "MatcherComparison",
    "compare_matchers",
    "get_trained_tps",
    "get_trained_refine",
]

TPS_VARIANT = "ladi"
"""The :data:`vtonlab.gmm.VARIANTS` entry of LaDI-VTON's TPS stage."""
POSE_CHANNELS = 18
REFINE_IN_CHANNELS = 3 + POSE_CHANNELS + 3
"""The refinement UNet's input: masked person (3) + pose heatmaps (18) + TPS-warped garment (3)."""


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def tps_config(profile: Profile | str | None = None, **overrides) -> gmm.GMMConfig:
    """LaDI-VTON's TPS stage for a profile: ``GMMConfig.for_profile(profile, "ladi", **overrides)``."""
    return gmm.GMMConfig.for_profile(profile, TPS_VARIANT, **overrides)


def person_input(batch: Mapping[str, Tensor]) -> Tensor:
    """The TPS stage's person input ``cat([agnostic, pose_map])``: ``(B, 21, H, W)`` (official ``cat([im_mask, pose_map])``)."""
    return gmm.person_representation(batch, "ladi")


def _check(name: str, x: Tensor, channels: int, size: tuple[int, int] | None, what: str) -> None:
    ok = isinstance(x, Tensor) and x.ndim == 4 and x.shape[1] == channels
    if ok and size is not None:
        ok = tuple(x.shape[-2:]) == tuple(size)
    if not ok:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        hw = f"{size[0]}, {size[1]}" if size is not None else "H, W"
        raise ValueError(f"{name}: expected (B, {channels}, {hw}) ({what}), got {got}")


def garment_target(batch: Mapping[str, Tensor]) -> Tensor:
    """The garment as worn, on white: ``image * worn_mask + (1 - worn_mask)`` ``(B, 3, H, W)`` (official ``im_cloth``)."""
    gmm._need(batch, ("image", "worn_mask"), "the warped-garment target")
    m = batch["worn_mask"]
    return batch["image"] * m + (1 - m)


def tps_warp(model: gmm.GMM, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Warp ``batch["cloth"]`` with a GMM (no gradients): ``(grid (B, H, W, 2), warped (B, 3, H, W), warped mask (B, 1, H, W))``."""
    c = model.config
    with torch.no_grad():
        grid, _ = model(gmm.person_representation(batch, c.person), gmm.garment_input(batch, c.garment))
        warped, warped_mask = warp_garment(grid, batch)
    return grid, warped, warped_mask


def refine_input(batch: Mapping[str, Tensor], warped: Tensor) -> Tensor:
    """``cat([agnostic, pose_map, warped])``: ``(B, 24, H, W)``, the refinement UNet's input (official order)."""
    gmm._need(batch, ("agnostic", "pose_map"), "the refinement input")
    agnostic, pose = batch["agnostic"], batch["pose_map"]
    size = tuple(agnostic.shape[-2:]) if isinstance(agnostic, Tensor) and agnostic.ndim == 4 else None
    _check("agnostic", agnostic, 3, size, "the masked person")
    _check("pose_map", pose, POSE_CHANNELS, size, "COCO-18 pose heatmaps")
    _check("warped", warped, 3, size, "the TPS-warped garment, same size as agnostic")
    return torch.cat([agnostic, pose, warped.to(agnostic.dtype)], dim=1)


# ----------------------------------------------------------------------------------------------
# Refinement network
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarpRefineConfig:
    """Everything that determines a trained refinement UNet (given the frozen TPS it refines).

    Defaults are the official ``UNetVanilla`` and ``train_tps.py`` settings; :meth:`for_profile` sets size,
    steps, batch, data size, and the narrower widths and no VGG resize of the ci / cpu profiles.
    """

    image_size: tuple[int, int] = (256, 192)
    width: int = 64  # channels of the first level (official 64; levels w, 2w, 4w, 8w, 16w / (2 if bilinear))
    bilinear: bool = True  # bilinear upsampling + conv (official) or transposed convolutions
    output: str = "linear"  # "linear": the 1x1 conv output as is (official); "tanh": squashed to (-1, 1)
    pose_style: str = "ladi"  # pose_map style the UNet (and its TPS) read
    l1_weight: float = 1.0
    vgg_weight: float = 0.25
    vgg_resize: int = 256  # short side the VGG loss resizes both images to (official 256); 0: no resize
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.99)
    steps: int = 1000
    batch_size: int = 16
    n_train: int = 600
    seed: int = 0

    def __post_init__(self) -> None:
        h, w = self.image_size
        if h < 16 or w < 16:
            raise ValueError(f"WarpRefineConfig.image_size: expected at least 16x16 (four 2x2 max-pools), got {h}x{w}")
        if self.output not in ("linear", "tanh"):
            raise ValueError(f"WarpRefineConfig.output: expected 'linear' or 'tanh', got {self.output!r}")
        if self.pose_style not in POSE_STYLES:
            raise ValueError(f"WarpRefineConfig.pose_style: expected one of {sorted(POSE_STYLES)}, got {self.pose_style!r}")
        if self.width < 2 or self.vgg_resize < 0 or self.l1_weight < 0 or self.vgg_weight < 0:
            raise ValueError(f"WarpRefineConfig: width >= 2, vgg_resize >= 0 and loss weights >= 0 expected, got width="
                             f"{self.width}, vgg_resize={self.vgg_resize}, l1_weight={self.l1_weight}, vgg_weight={self.vgg_weight}")
        object.__setattr__(self, "image_size", (int(h), int(w)))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> WarpRefineConfig:
        """The course's refinement config: official widths and VGG resize in gpu; ``width=16``, no resize, batch 8 in ci / cpu."""
        prof = resolve_profile(profile)
        base = dict(image_size=tuple(prof.image_size), steps=prof.steps_for("warp_refine"), n_train=prof.n_train,
                    batch_size=prof.batch_size if prof.name == "gpu" else min(8, prof.batch_size),
                    **({} if prof.name == "gpu" else dict(width=16, vgg_resize=0)))
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        from vtonlab.checkpoints import config_dict

        return config_dict(self)


def _double_conv(cin: int, cout: int, mid: int | None = None) -> nn.Sequential:
    """(conv3x3 without bias -> BatchNorm -> ReLU) x 2, as the official ``DoubleConv``."""
    mid = mid or cout
    return nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Up(nn.Module):
    """Upsample x2, pad to the skip's size, concatenate ``[skip, up]``, double conv (the official ``Up``)."""

    def __init__(self, cin: int, cout: int, bilinear: bool) -> None:
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = _double_conv(cin, cout, cin // 2)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
            self.conv = _double_conv(cin, cout)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        dy, dx = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class RefineUNet(nn.Module):
    """LaDI-VTON's refinement network (official ``UNetVanilla``): ``(B, 24, H, W)`` -> refined garment ``(B, 3, H, W)``.

    A UNet with four max-pool levels (widths ``w, 2w, 4w, 8w, 16w / f`` with ``f = 2`` for bilinear
    upsampling), skip connections by concatenation and a 1x1 output convolution. The output is the 1x1
    convolution as is (``output="linear"``, official; images in about [-1, 1], clamp for display) or its tanh.
    """

    def __init__(self, config: WarpRefineConfig) -> None:
        super().__init__()
        self.config = c = config
        w, f = c.width, (2 if c.bilinear else 1)
        self.inc = _double_conv(REFINE_IN_CHANNELS, w)
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), _double_conv(a, b))
                                   for a, b in ((w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w), (8 * w, 16 * w // f)))
        self.ups = nn.ModuleList(_Up(a, b, c.bilinear)
                                 for a, b in ((16 * w, 8 * w // f), (8 * w, 4 * w // f), (4 * w, 2 * w // f), (2 * w, w)))
        self.outc = nn.Conv2d(w, 3, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        _check("RefineUNet input", x, REFINE_IN_CHANNELS, self.config.image_size,
               "masked person 3 + pose heatmaps 18 + warped garment 3, at WarpRefineConfig.image_size")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up in self.ups:
            h = up(h, skips.pop())
        out = self.outc(h)
        return torch.tanh(out) if self.config.output == "tanh" else out


def refine_losses(refined: Tensor, target: Tensor, vgg: nn.Module | None, config: WarpRefineConfig) -> dict[str, Tensor]:
    """``{"loss", "l1", "vgg"}``: ``l1_weight * L1(refined, target) + vgg_weight * VGG(refined, target)`` (official weights 1, 0.25).

    With ``vgg_resize`` both images are resized (bilinear, antialiased) to that short side before the VGG, as the
    official ``VGGLoss`` does with ``Resize(256)``.
    """
    if refined.shape != target.shape:
        raise ValueError(f"refined {tuple(refined.shape)} and target {tuple(target.shape)} must have the same shape")
    l1 = (refined - target).abs().mean()
    if vgg is not None and config.vgg_weight:
        a, b = refined, target
        if config.vgg_resize:
            import torchvision.transforms.functional as TF

            a, b = (TF.resize(t, config.vgg_resize, antialias=True) for t in (a, b))
        perceptual = vgg(a, b)
    else:
        perceptual = torch.zeros((), device=refined.device)
    loss = config.l1_weight * l1 + config.vgg_weight * perceptual
    return {"loss": loss, "l1": l1.detach(), "vgg": perceptual.detach()}


def _check_pair(config: WarpRefineConfig, tps_model: gmm.GMM) -> None:
    tc = tps_model.config
    if tuple(tc.image_size) != tuple(config.image_size):
        raise ValueError(f"the TPS works at {tc.image_size} but WarpRefineConfig.image_size is {config.image_size}")
    if gmm.POSE_STYLES[tc.person] != config.pose_style:
        raise ValueError(f"the TPS (person={tc.person!r}) reads {gmm.POSE_STYLES[tc.person]!r} pose maps but "
                         f"WarpRefineConfig.pose_style is {config.pose_style!r}")


def train_refine(config: WarpRefineConfig, tps_model: gmm.GMM, data, *, vgg: nn.Module | None = None,
                 progress: bool = True, profile: Profile | None = None, checkpoint_dir=None,
                 checkpoint_every: int | None = None) -> tuple[RefineUNet, object, str]:
    """Train the refinement UNet with ``tps_model`` frozen (:class:`vtonlab.train.Trainer`).

    ``data``: map-style sample dicts with ``pose_map`` in ``config.pose_style``. ``vgg``: the perceptual loss
    (default ``VGGPerceptualLoss(weights="auto")``). Returns ``(model, history, label of the VGG weights)``.
    """
    from vtonlab.losses import VGGPerceptualLoss
    from vtonlab.train import Trainer

    _check_pair(config, tps_model)
    if len(data) < config.batch_size:
        raise ValueError(f"refinement training needs at least one batch of {config.batch_size} samples, got {len(data)}")
    if tuple(data[0]["cloth"].shape[-2:]) != config.image_size:
        raise ValueError(f"data images are {tuple(data[0]['cloth'].shape[-2:])} but WarpRefineConfig.image_size is "
                         f"{config.image_size}")
    tps_model.eval().requires_grad_(False)  # frozen: eval-mode BatchNorm, no gradients, no optimiser
    if vgg is None and config.vgg_weight:
        vgg = VGGPerceptualLoss(weights="auto")
    torch.manual_seed(config.seed)
    model = RefineUNet(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)

    def step(ctx, batch):
        _, warped, _ = tps_warp(ctx.modules["tps"], batch)
        refined = ctx.modules["refine"](refine_input(batch, warped))
        perceptual = vgg.to(ctx.device) if vgg is not None else None  # a fixed feature extractor, not training state
        losses = refine_losses(refined, garment_target(batch), perceptual, config)
        ctx.optimize(losses["loss"], "refine")
        return losses

    trainer = Trainer({"refine": model, "tps": tps_model}, {"refine": opt}, step, data, batch_size=config.batch_size,
                      max_steps=config.steps, seed=config.seed, progress=progress, desc="LaDI-VTON warp refinement",
                      profile=profile, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
    history = trainer.fit()
    modules = trainer.unwrapped()
    modules["tps"].cpu()
    label = getattr(vgg, "weights", "none") if vgg is not None else "none"
    return modules["refine"].cpu().eval(), history, str(label)


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def _lpips_on_white(metric, warped: Tensor, image: Tensor, worn: Tensor) -> Tensor:
    """LPIPS ``(N,)`` of the warped garment vs the worn garment, both in [-1, 1] and composited on white outside ``worn``."""
    m = worn.float()
    pred = (((warped.float() + 1) / 2).clamp(0, 1)) * m + (1 - m)
    target = (((image.float() + 1) / 2).clamp(0, 1)) * m + (1 - m)
    return metric(pred, target)


def _as_preloaded(data) -> Preloaded:
    return data if isinstance(data, Preloaded) else preload(data)


@torch.no_grad()
def evaluate_refined(tps_model: gmm.GMM, refine_model: RefineUNet, data, *, batch_size: int = 32, lpips=None,
                     keep: bool = True) -> dict:
    """Score the refined warps on a split: per-sample ``"ssim"``, ``"lpips"``, ``"iou"`` (the TPS mask's), ``"l1"``
    and ``"ssim_tps"`` (before refinement) ``(N,)``, their ``mean_*``, ``"lpips_name"``, and with ``keep`` the images
    ``"refined"``, ``"warped"``, ``"image"``, ``"worn_mask"`` (in [-1, 1] / {0, 1}).
    """
    from vtonlab.metrics import warp as wm
    from vtonlab.metrics.perceptual import LPIPSMetric

    lpips = lpips if lpips is not None else LPIPSMetric(weights="auto")
    data = _as_preloaded(data)
    tps_model.eval()
    refine_model.eval()
    out: dict[str, list] = {}
    for start in range(0, len(data), batch_size):
        batch = data.batch(start, start + batch_size)
        grid, warped, warped_mask = tps_warp(tps_model, batch)
        refined = refine_model(refine_input(batch, warped))
        worn, image = batch["worn_mask"], batch["image"]
        image01 = ((image + 1) / 2).clamp(0, 1)
        values = {"ssim": warp_ssim(((refined + 1) / 2).clamp(0, 1), image01, worn),
                  "ssim_tps": warp_ssim(((warped + 1) / 2).clamp(0, 1), image01, worn),
                  "lpips": _lpips_on_white(lpips, refined, image, worn),
                  "iou": wm.mask_iou(warped_mask, worn),
                  "l1": (refined - garment_target(batch)).abs().flatten(1).mean(1)}
        for k, v in values.items():
            out.setdefault(k, []).append(v.cpu())
        if keep:
            for k, v in (("refined", refined), ("warped", warped), ("image", image), ("worn_mask", worn)):
                out.setdefault(k, []).append(v.cpu())
    result: dict = {k: torch.cat(v) for k, v in out.items()}
    for k in ("ssim", "ssim_tps", "lpips", "iou", "l1"):
        v = result[k][torch.isfinite(result[k])]
        result[f"mean_{k}"] = v.mean().item() if v.numel() else math.nan
    result["lpips_name"] = lpips.name
    result["names"] = list(data.names)
    return result


@dataclass
class MatcherComparison:
    """One table of geometric matchers on one test split; ``rows[label] = {"epe_px", "iou", "ssim", "lpips"}``.

    ``epe_px`` is None for the refined garment (an image, not a sampling grid). ``lpips_name`` is the LPIPS
    metric's label (``LPIPS`` with ImageNet AlexNet, ``LPIPS-randalex`` without), kept as the column header.
    """

    rows: dict[str, dict[str, float | None]]
    lpips_name: str
    n_test: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, dict[str, float | None]]:
        """A plain dict of numbers: ``{matcher: {"epe_px", "iou", "ssim", "lpips"}}``."""
        return {k: dict(v) for k, v in self.rows.items()}

    def to_markdown(self) -> str:
        def fmt(v, digits):
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"

        lines = [f"| matcher | EPE (in-shop px) | IoU | SSIM | {self.lpips_name} |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {fmt(r['epe_px'], 2)} | {fmt(r['iou'], 3)} | {fmt(r['ssim'], 3)} | {fmt(r['lpips'], 3)} |"
                  for k, r in self.rows.items()]
        text = "\n".join(lines) + f"\n\n{self.n_test} test samples."
        return text + "".join(f" {n}" for n in self.notes)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        return self.to_markdown()


def _grid_row(model: gmm.GMM, data: Preloaded, lpips, batch_size: int) -> dict[str, float | None]:
    res = gmm.evaluate_warps(model, data, batch_size=batch_size, keep=True)
    lp = torch.cat([_lpips_on_white(lpips, res["warped"][i:i + batch_size], res["image"][i:i + batch_size],
                                    res["worn_mask"][i:i + batch_size]) for i in range(0, len(data), batch_size)])
    return {"epe_px": res["mean_epe_px"], "iou": res["mean_iou"], "ssim": res["mean_ssim"], "lpips": lp.mean().item()}


def compare_matchers(profile: Profile | str | None = None, *, test_data=None,
                     models: Mapping[str, gmm.GMM | tuple[gmm.GMM, RefineUNet]] | None = None, lpips=None) -> MatcherComparison:
    """CP-VTON's GMM, MG-VTON's GML, LaDI-VTON's TPS and TPS + refinement on the same SynthVTON test split.

    Args:
        profile: whose checkpoints and test split (loaded, or trained when missing, through each ``get_trained``).
        test_data: a test split to use for every model instead (its ``pose_map`` is then used as given);
            by default the profile's SynthVTON test split, read with each model's pose-map style.
        models: ``{label: GMM or (TPS GMM, RefineUNet)}`` instead of the four trained models.
        lpips: an :class:`~vtonlab.metrics.perceptual.LPIPSMetric` (default ``weights="auto"``).
    Returns:
        a :class:`MatcherComparison` (``.to_markdown()``, ``.to_dict()``).
    """
    from vtonlab.metrics.perceptual import LPIPSMetric

    prof = resolve_profile(profile)
    if models is None:
        tps_model, _ = get_trained_tps(prof)
        refine_model, _ = get_trained_refine(prof)
        models = {"CP-VTON GMM": gmm.get_trained(prof)[0], "MG-VTON GML": gmm.get_trained_gml(prof)[0],
                  "LaDI-VTON TPS": tps_model, "LaDI-VTON TPS + refinement": (tps_model, refine_model)}
    lpips = lpips if lpips is not None else LPIPSMetric(weights="auto")
    splits: dict[str, Preloaded] = {}

    def split_for(model: gmm.GMM) -> Preloaded:
        style = gmm.POSE_STYLES[model.config.person]
        if style not in splits:
            if test_data is not None:
                splits[style] = _as_preloaded(test_data)
            else:
                from vtonlab.data import synthvton

                splits[style] = preload(synthvton("test", prof, pose_style=style))
        return splits[style]

    rows: dict[str, dict[str, float | None]] = {}
    n_test = 0
    for label, entry in models.items():
        if isinstance(entry, tuple):
            tps_model, refine_model = entry
            data = split_for(tps_model)
            res = evaluate_refined(tps_model, refine_model, data, batch_size=prof.eval_batch_size, lpips=lpips, keep=False)
            rows[label] = {"epe_px": None, "iou": res["mean_iou"], "ssim": res["mean_ssim"], "lpips": res["mean_lpips"]}
        elif isinstance(entry, gmm.GMM):
            data = split_for(entry)
            rows[label] = _grid_row(entry.eval(), data, lpips, prof.eval_batch_size)
        else:
            raise TypeError(f"models[{label!r}]: expected a GMM or a (GMM, RefineUNet) pair, got {type(entry).__name__}")
        n_test = len(data)
    notes = ("EPE: sampling grid vs SynthVTON's true warp at the visible garment pixels; the refined garment is an "
             "image, not a grid, and its IoU is the TPS stage's warped-mask IoU.",
             f"SSIM and {lpips.name}: warped vs worn garment, both on white outside the worn mask.")
    return MatcherComparison(rows, lpips.name, n_test, notes)


# ----------------------------------------------------------------------------------------------
# Load or train
# ----------------------------------------------------------------------------------------------


def get_trained_tps(profile: Profile | str | None = None, *, force_train: bool = False, config: gmm.GMMConfig | None = None,
                    train_data=None, test_data=None, progress: bool = True, verbose: bool = True) -> tuple[gmm.GMM, object]:
    """LaDI-VTON's trained TPS stage (checkpoint ``ladi_tps``): ``python -m vtonlab train ladi_tps``.

    :func:`vtonlab.gmm.get_trained` with variant ``"ladi"``: the checkpoint config is the :class:`~vtonlab.gmm.GMMConfig`
    plus the SynthVTON data key; metrics are the test EPE (in-shop px), IoU and SSIM. ``train_data`` / ``test_data``
    default to the profile's SynthVTON splits with LaDI-VTON pose maps.
    """
    prof = resolve_profile(profile)
    cfg = config if config is not None else tps_config(prof)
    return gmm.get_trained(prof, config=cfg, force_train=force_train, train_data=train_data, test_data=test_data,
                           progress=progress, verbose=verbose)


def get_trained_refine(profile: Profile | str | None = None, *, force_train: bool = False,
                       config: WarpRefineConfig | None = None, tps: gmm.GMMConfig | None = None, train_data=None,
                       test_data=None, vgg: nn.Module | None = None, progress: bool = True,
                       verbose: bool = True) -> tuple[RefineUNet, object]:
    """The trained refinement UNet (checkpoint ``ladi_warp_refine``): ``python -m vtonlab train ladi_warp_refine``.

    Trains on the frozen TPS of :func:`get_trained_tps` (loaded, or trained first; ``force_train`` retrains the
    refinement only). The checkpoint config is the :class:`WarpRefineConfig`, the TPS config (``"tps"``) and the
    SynthVTON data key; metrics: refined SSIM and LPIPS (named), IoU, L1, the TPS stage's SSIM, and the VGG weights.
    Get the matching TPS with ``get_trained_tps(profile)``.
    """
    from vtonlab.checkpoints import load_or_train
    from vtonlab.data import synthvton_params
    from vtonlab.metrics.perceptual import LPIPSMetric

    prof = resolve_profile(profile)
    cfg = config if config is not None else WarpRefineConfig.for_profile(prof)
    tps_cfg = tps if tps is not None else tps_config(prof)
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"WarpRefineConfig.image_size {cfg.image_size} differs from profile {prof.name!r} "
                         f"image size {tuple(prof.image_size)}")
    tps_model, _ = get_trained_tps(prof, config=tps_cfg, train_data=train_data, test_data=test_data, progress=progress,
                                   verbose=verbose)
    _check_pair(cfg, tps_model)

    def train_fn():
        from vtonlab.data import synthvton

        tr = train_data if train_data is not None else synthvton("train", prof, pose_style=cfg.pose_style)
        te = test_data if test_data is not None else synthvton("test", prof, pose_style=cfg.pose_style)
        model, history, vgg_label = train_refine(cfg, tps_model, preload(tr, limit=cfg.n_train), vgg=vgg,
                                                 progress=progress, profile=prof)
        lpips = LPIPSMetric(weights="auto")
        res = evaluate_refined(tps_model, model, te, batch_size=prof.eval_batch_size, lpips=lpips, keep=False)
        metrics = {"test_ssim": res["mean_ssim"], "test_lpips": res["mean_lpips"], "lpips_metric": lpips.name,
                   "test_iou": res["mean_iou"], "test_l1": res["mean_l1"], "test_ssim_tps": res["mean_ssim_tps"],
                   "vgg_weights": vgg_label, "n_test": int(res["ssim"].numel())}
        return {"refine": model}, metrics, history

    full = {**cfg.to_dict(), "tps": tps_cfg.to_dict(), "data": synthvton_params(prof)}
    ckpt = load_or_train("ladi_warp_refine", full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    model = RefineUNet(cfg)
    ckpt.load_into(model, prefix="refine")
    return model.eval(), ckpt

