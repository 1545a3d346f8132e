"""MG-VTON's refinement render: a composition mask that puts the warped garment's texture onto the coarse result.

MG-VTON (Dong et al., ICCV 2019, arXiv 1902.11026, Sec. 3.4) ends with a pose-guided refinement network. Warp-GAN's
coarse result ``I_c`` has the right shape and pose but blurred garment texture; the garment warped by geometric
matching learning ``C_w`` has the texture but nothing else. The generator ``G_p`` reads both and the target pose

    x = [C_w, I_c, P]  (B, 24, H, W):
        C_w  the warped in-shop garment, RGB in [-1, 1], white outside the garment   3 channels
        I_c  the coarse result of Warp-GAN, RGB in [-1, 1]                            3 channels
        P    the TARGET pose, one heatmap per COCO-18 keypoint                       18 channels

(:func:`refine_input`, in that order) and predicts a composition mask, which mixes the two images per pixel
(:func:`compose`):

    M = sigmoid(G_p(x))                   (B, 1, H, W) in [0, 1]
    I = M * C_w + (1 - M) * I_c           (B, 3, H, W)

The loss (:func:`refine_losses`) compares ``I`` with the target person ``I_t``:

    L_p = mu1 * L_VGG(I, I_t) + mu2 * ||1 - M||_1

with ``L_VGG`` pix2pixHD's VGG19 loss (:class:`vtonlab.losses.VGGPerceptualLoss`: relu1_1..relu5_1, weights
1/32 .. 1) and ``||1 - M||_1`` the mean over pixels of ``|1 - M|`` (as ``nn.L1Loss`` averages).

**The mask term.** ``||1 - M||_1`` is 0 only where ``M = 1`` and its gradient is the same constant pull towards
``M = 1`` at every pixel: on its own it would copy the warped garment everywhere (the white background of ``C_w``
included). The perceptual term resists wherever ``C_w`` is wrong (skin, hair, background), so the balance
``mu2 / mu1`` decides how much evidence the network needs before it keeps the coarse pixel: the term makes the
render prefer the warped garment's real texture to Warp-GAN's blurred one where both look alike, which is the point
of the stage ("preserve the clothes details"). Too large a ``mu2`` pastes white background over the person; ``mu2 =
0`` leaves no preference, and the network may settle for the coarse image where it is already close in VGG terms.
The project's reference notes write the term as ``||1 - M||_1``; the paper's text could not be re-checked here.
CP-VTON (whose try-on module MG-VTON's render follows) writes the same term in its paper, but its official code
(sergeywong/cp-vton, ``train.py``, ``train_tom``) computes ``L1(M, warped garment mask)`` instead, which also pulls
``M`` to 0 outside the garment; that variant is ``mask_target="warped_mask"``.

**The mask term with a random VGG19.** ``||1 - M||_1`` is balanced only by the perceptual term, and the size of
that term depends on the VGG19's weights. Without the ImageNet file (the case on the machines the course was built
on) the random VGG19's loss is small: trained with ``mask_target="one"`` in the cpu profile (``python -m vtonlab
train mgvton-refine --profile cpu``, 300 steps), the render's mask was close to 1 everywhere, inside the warped
garment and outside it, so it pasted the white background of ``C_w`` over the person and its test L1 was several
times the coarse input's. The course's profiles therefore train with CP-VTON's official mask term,
``mask_target="warped_mask"`` (:data:`COURSE_MASK_TARGET`), which pulls ``M`` to 1 on the warped garment and to 0
elsewhere whatever the perceptual term's scale; ``RefineConfig(mask_target="one")`` is the paper's, for a machine
with ImageNet VGG19 weights.

Weights: the reference notes list no values for ``mu1`` and ``mu2``. The defaults are 1 and 1, as CP-VTON's
official code weights its VGG and mask terms (``loss = loss_l1 + loss_vgg + loss_mask``). At initialisation the mask
term is about 0.5 (``M`` near 0.5); the size of the VGG term depends on the VGG19 weights in use (the random
fallback of :class:`~vtonlab.losses.VGGPerceptualLoss` gives far smaller values than ImageNet weights), so the
balance is read off the ``perceptual`` and ``mask`` curves of the training history, not assumed. They are the named
options ``perceptual_weight`` (mu1) and ``mask_weight`` (mu2).

**Ablation "w/o Mask"** (``composition=False``): the same generator outputs the image directly (3 channels, tanh)
instead of a mask; the loss is ``mu1 * L_VGG`` alone. The paper reports it with the best IS but visibly worse.

**Training inputs.** MG-VTON trains its stages separately. The refinement needs a warped garment and a coarse
result for every training pair; here they are fixed before training (no gradient reaches them):

* ``C_w``: with ``warp="gt_flow"`` (default on SynthVTON) the in-shop garment sampled by the target's ground-truth
  flow (:func:`flow_warp`), white outside the visible garment: the warp a perfect geometric matching would give.
  (A multi-pose target is read with the source's garment file and so without a flow; the flow of the target's own
  paired sample is used, after checking that its in-shop image is the same.)
  ``warp_fn`` (e.g. MG-VTON's GML on the synthesized parsing) replaces it (``warp="fn"``).
* ``I_c``: with a trained Warp-GAN given as ``coarse_fn`` (``coarse="fn"``, preferred) its output on the pair.
  Without one, ``coarse="blur"`` (default) uses a fixed degraded version of the target, :func:`blur_coarse`: the
  target average-pooled by ``coarse_factor`` (4) and upsampled bilinearly. It has what a good coarse result has
  (the person, pose, garment shape and colours) and lacks what the render must add (texture and edges), so the mask
  learns the paper's job; it is easier than a real Warp-GAN output (no shape or colour errors), so a render trained
  on it trusts the coarse image more than one trained on Warp-GAN's.

Training data: MPV-style multi-pose pairs (:func:`vtonlab.mgvton.parsing.multipose_pairs`); the target side gives
``I_t``, ``P`` and the flow; the source side is there for a ``coarse_fn`` (Warp-GAN reads the source person).

Fidelity (paper: MG-VTON as summarised in the project's reference notes; official code: none for MG-VTON,
pix2pixHD's where the paper is silent, see :mod:`vtonlab.mgvton.networks`; CP-VTON's for the composition). Every
difference is a named option of :class:`RefineConfig` or an argument of :func:`get_trained`:

| point | paper | official code | vtonlab |
|---|---|---|---|
| inputs | warped garment, coarse result, target pose | none | ``[C_w, I_c, P]``: 3 + 3 + 18 = 24 channels |
| output | composition mask M | none (CP-VTON: sigmoid mask) | ``sigmoid``, 1 channel |
| result | M * C_w + (1 - M) * coarse | none | the same (:func:`compose`) |
| generator | 3 down, 9 res blocks, 3 up, BN + ReLU, 64 ... 512 | pix2pixHD ``GlobalGenerator`` | (1) |
| perceptual loss | mu1 * perceptual | pix2pixHD VGG19, 5 layers | ``VGGPerceptualLoss``, ``perceptual_weight=1`` (2) |
| mask loss | mu2 * \\|1 - M\\|_1 | none (CP-VTON code: L1(M, warped mask)) | ``mask_weight=1``, ``mask_target`` (2) (4) |
| "w/o Mask" ablation | image output, no mask | none | ``composition=False``: 3 channels, tanh, no mask term |
| warped garment | from geometric matching | none | ``warp="gt_flow"`` (SynthVTON's true warp) or ``warp_fn`` (3) |
| coarse result | Warp-GAN's | none | ``coarse_fn`` (Warp-GAN) or ``coarse="blur"``, ``coarse_factor=4`` (3) |
| discriminator | none stated for this stage | none | none |
| optimiser | Adam, lr 2e-4, betas (0.5, 0.999) | the same in pix2pixHD | the same (``lr``, ``betas``) |
| batch, length | batch 40, 5 epochs | none | the profile's batch (cpu: 8) and ``refine`` steps |
| precision | - | - | float32; bf16 autocast in cpu and gpu (``precision``, see :func:`~vtonlab.mgvton.networks.profile_sizes`) |
| image size | 256x192 | none | the profile's (gpu 256x192) |

1. gpu: the paper's ``width=64``, ``n_blocks=9``; cpu and ci: ``width=16``, ``n_blocks=2`` (the ablation ships six
   render checkpoints in cpu, :func:`~vtonlab.mgvton.networks.profile_sizes`).
2. mu1 and mu2 are not in the reference notes: 1 and 1 as CP-VTON's code (see above). ImageNet VGG19 weights are
   used when their file is present; otherwise a fixed random VGG19 (with a warning) and the checkpoint's metrics
   name it (``perceptual_vgg``).
3. The stages are trained separately; what the refinement was trained on is in the checkpoint config (``warp``,
   ``coarse``, ``coarse_factor``, and ``warp_key`` / ``coarse_key`` describing a given function).
4. ``mask_target``: ``"one"`` (the paper) by default; the course's profiles use ``"warped_mask"`` (CP-VTON's code),
   because with a random VGG19 the paper's term pastes the garment image everywhere ("The mask term with a random
   VGG19" above).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab.data.preload import Preloaded
from vtonlab.data.representation import POSE_STYLES
from vtonlab.mgvton.networks import (
    NORMS,
    PRECISIONS,
    ResnetGenerator,
    check_precision,
    config_dict,
    profile_sizes,
    shape_of,
)
from vtonlab.mgvton.parsing import PAIR_KEYS as PARSING_PAIR_KEYS
from vtonlab.mgvton.parsing import multipose_pairs, target_with_own_flow
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "POSE_CHANNELS",
    "INPUT_LAYOUT",
    "INPUT_CHANNELS",
    "CHECKPOINT_NAME",
    "WARP_SOURCES",
    "COARSE_SOURCES",
    "MASK_TARGETS",
    "PAIR_KEYS",
    "RefineConfig",
    "refine_input",
    "compose",
    "RefineGenerator",
    "refine_losses",
    "flow_warp",
    "blur_coarse",
    "prepare_pairs",
    "train",
    "evaluate_refine",
    "get_trained",
]

POSE_CHANNELS = 18
"""COCO-18 pose heatmaps."""
INPUT_LAYOUT: tuple[tuple[str, int], ...] = (("warped_cloth", 3), ("coarse", 3), ("target_pose", POSE_CHANNELS))
"""The generator's input channels in order: ``(name, channels)``."""
INPUT_CHANNELS = sum(c for _, c in INPUT_LAYOUT)
"""24 = warped garment 3 + coarse result 3 + target pose 18."""
CHECKPOINT_NAME = "mgvton-refine"
"""The checkpoint (and ``python -m vtonlab train`` model) name."""
WARP_SOURCES = ("gt_flow", "fn")
"""``warp``: SynthVTON's ground-truth flow, or a given ``warp_fn``."""
COARSE_SOURCES = ("blur", "fn")
"""``coarse``: the blurred target (:func:`blur_coarse`), or a given ``coarse_fn`` (a trained Warp-GAN)."""
COURSE_MASK_TARGET = "warped_mask"
"""The mask term the course's profiles train with (:meth:`RefineConfig.for_profile`); the config's default is the
paper's ``"one"``. See "The mask term with a random VGG19" in the module docstring."""
MASK_TARGETS = ("one", "warped_mask")
"""``mask_target``: ``||1 - M||_1`` (MG-VTON), or ``L1(M, warped garment mask)`` (CP-VTON's official code)."""

PAIR_KEYS: tuple[tuple[str, str, str], ...] = PARSING_PAIR_KEYS + (
    ("source_image", "source", "image"), ("target_image", "target", "image"),
    ("target_worn_mask", "target", "worn_mask"), ("target_gt_flow", "target", "gt_flow"),
    ("target_gt_flow_mask", "target", "gt_flow_mask"),
)
"""The flat keys of a preloaded refinement pair: the parsing stage's (:data:`vtonlab.mgvton.parsing.PAIR_KEYS`) plus
both images, the target's worn-garment mask and its ground-truth flow (SynthVTON). Keys a dataset lacks are left out."""
PREPARED_KEYS = ("warped_cloth", "warped_mask", "coarse")
"""What :func:`prepare_pairs` adds: ``C_w`` (B, 3, H, W), its mask (B, 1, H, W) and ``I_c`` (B, 3, H, W)."""

WarpFn = Callable[[Mapping[str, Tensor]], tuple[Tensor, Tensor]]
CoarseFn = Callable[[Mapping[str, Tensor]], Tensor]


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefineConfig:
    """Everything that determines a trained refinement render (with the data key and any ``warp_key`` / ``coarse_key``).

    Defaults are the paper's (generator, composition, optimiser); :meth:`for_profile` sets size, steps, batch, data
    size and the narrower networks of the ci and cpu profiles. See the module's fidelity table.
    """

    image_size: tuple[int, int] = (256, 192)
    width: int = 64  # generator channels after the first conv (MG-VTON: 64 -> 128, 256, 512)
    n_down: int = 3  # stride-2 convolutions (MG-VTON: 3)
    n_blocks: int = 9  # residual blocks (MG-VTON: 9)
    norm: str = "batch"  # MG-VTON: BatchNorm
    composition: bool = True  # False: the "w/o Mask" ablation (the image directly, no mask)
    perceptual_weight: float = 1.0  # mu1 (not in the reference notes; CP-VTON's code: 1)
    mask_weight: float = 1.0  # mu2 (not in the reference notes; CP-VTON's code: 1)
    mask_target: str = "one"  # "one": ||1 - M||_1 (MG-VTON); "warped_mask": L1(M, warped mask) (CP-VTON's code)
    warp: str = "gt_flow"  # where C_w comes from: "gt_flow" (SynthVTON) or "fn" (a given warp_fn)
    coarse: str = "blur"  # where I_c comes from: "blur" (the degraded target) or "fn" (a given coarse_fn, Warp-GAN)
    coarse_factor: int = 4  # coarse="blur": average-pool factor before the bilinear upsampling
    lr: float = 2e-4  # MG-VTON: Adam lr 2e-4
    betas: tuple[float, float] = (0.5, 0.999)  # MG-VTON
    pose_style: str = "mgvton"  # pose heatmaps (MG-VTON: discs of radius 4 at 256x192)
    precision: str = "fp32"  # "fp32" | "bf16" (autocast while training; the cpu and gpu profiles: bf16)
    steps: int = 1000
    batch_size: int = 16
    n_train: int = 600  # training pairs (at most)
    seed: int = 0

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.image_size)
        for name in ("width", "n_down", "coarse_factor", "steps", "batch_size", "n_train"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "steps" else 1):
                raise ValueError(f"RefineConfig.{name}: expected a positive int, got {v!r}")
        if isinstance(self.n_blocks, bool) or not isinstance(self.n_blocks, int) or self.n_blocks < 0:
            raise ValueError(f"RefineConfig.n_blocks: expected an int >= 0, got {self.n_blocks!r}")
        m = 2**self.n_down
        if h % m or w % m or min(h, w) < 16:
            raise ValueError(f"RefineConfig.image_size: expected H and W multiples of {m} (2^n_down) and at least 16, "
                             f"got {h}x{w}")
        if h % self.coarse_factor or w % self.coarse_factor:
            raise ValueError(f"RefineConfig.coarse_factor: expected a divisor of H and W ({h}x{w}), got {self.coarse_factor}")
        if not isinstance(self.composition, bool):
            raise ValueError(f"RefineConfig.composition: expected True (mask) or False (w/o Mask), got {self.composition!r}")
        choices = {"norm": NORMS, "mask_target": MASK_TARGETS, "warp": WARP_SOURCES, "coarse": COARSE_SOURCES,
                   "pose_style": tuple(sorted(POSE_STYLES))}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"RefineConfig.{name}: expected one of {list(allowed)}, got {getattr(self, name)!r}")
        weights = {"perceptual_weight": self.perceptual_weight, "mask_weight": self.mask_weight}
        if any(not math.isfinite(v) or v < 0 for v in weights.values()) or not self.perceptual_weight:
            raise ValueError(f"RefineConfig: loss weights must be finite and >= 0, perceptual_weight > 0, got {weights}")
        check_precision("RefineConfig", self.precision)
        object.__setattr__(self, "image_size", (h, w))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> RefineConfig:
        """The course's config for a profile: the paper's network in gpu; ``width=16, n_blocks=2`` in cpu and ci; size,
        steps (``refine``), batch and ``n_train`` from the profile (cpu: batch 8, bf16); in every profile
        ``mask_target="warped_mask"`` (:data:`COURSE_MASK_TARGET`, the module docstring says why)."""
        prof = resolve_profile(profile)
        base = dict(image_size=tuple(prof.image_size), steps=prof.steps_for("refine"), batch_size=prof.batch_size,
                    n_train=prof.n_train, mask_target=COURSE_MASK_TARGET)
        base.update(profile_sizes(prof.name, discriminator=False, compact=True))
        base.update(overrides)
        return cls(**base)

    @property
    def out_channels(self) -> int:
        """1 (the mask) with ``composition``, else 3 (the image)."""
        return 1 if self.composition else 3

    def to_dict(self) -> dict:
        return config_dict(self)


# ----------------------------------------------------------------------------------------------
# Inputs, composition, network, loss
# ----------------------------------------------------------------------------------------------


def _check_map(name: str, x, channels: int, b: int, size: tuple[int, int], what: str) -> None:
    if not (isinstance(x, Tensor) and x.ndim == 4 and tuple(x.shape) == (b, channels, *size)):
        raise ValueError(f"{name}: expected ({b}, {channels}, {size[0]}, {size[1]}) ({what}), got {shape_of(x)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor ({what}), got {x.dtype}")


def _first_image(name: str, x) -> tuple[int, tuple[int, int]]:
    if not (isinstance(x, Tensor) and x.ndim == 4 and x.shape[1] == 3):
        raise ValueError(f"{name}: expected (B, 3, H, W) RGB in [-1, 1], got {shape_of(x)}")
    return x.shape[0], tuple(x.shape[-2:])


def refine_input(warped_cloth: Tensor, coarse: Tensor, target_pose_map: Tensor) -> Tensor:
    """The render's input ``[C_w, I_c, P]``: ``(B, 24, H, W)`` (:data:`INPUT_LAYOUT`).

    Args:
        warped_cloth: the warped garment ``C_w`` ``(B, 3, H, W)`` in [-1, 1].
        coarse: Warp-GAN's coarse result ``I_c`` ``(B, 3, H, W)`` in [-1, 1], the size of ``warped_cloth``.
        target_pose_map: the TARGET pose ``(B, 18, H, W)``, COCO-18 heatmaps in [0, 1].
    Returns:
        ``cat([warped_cloth, coarse, target_pose_map], dim=1)`` in ``warped_cloth``'s dtype.
    """
    b, size = _first_image("warped_cloth", warped_cloth)
    _check_map("coarse", coarse, 3, b, size, "Warp-GAN's coarse result, RGB, the warped garment's size")
    _check_map("target_pose_map", target_pose_map, POSE_CHANNELS, b, size, "COCO-18 heatmaps of the target pose")
    dtype = warped_cloth.dtype if warped_cloth.is_floating_point() else torch.float32
    return torch.cat([warped_cloth.to(dtype), coarse.to(dtype), target_pose_map.to(dtype)], dim=1)


def compose(mask: Tensor, warped_cloth: Tensor, coarse: Tensor) -> Tensor:
    """MG-VTON's composition ``M * C_w + (1 - M) * I_c``: ``(B, 3, H, W)``.

    Args:
        mask: ``M`` ``(B, 1, H, W)`` in [0, 1] (1 = take the warped garment).
        warped_cloth: ``C_w`` ``(B, 3, H, W)``.
        coarse: ``I_c`` ``(B, 3, H, W)``.
    """
    b, size = _first_image("warped_cloth", warped_cloth)
    _check_map("coarse", coarse, 3, b, size, "Warp-GAN's coarse result, RGB, the warped garment's size")
    _check_map("mask", mask, 1, b, size, "the composition mask M in [0, 1], the warped garment's size")
    if mask.numel() and (mask.min() < 0 or mask.max() > 1):
        raise ValueError(f"mask: expected values in [0, 1] (a composition mask), got [{mask.min().item():.3g}, "
                         f"{mask.max().item():.3g}]")
    return mask * warped_cloth + (1 - mask) * coarse


class RefineGenerator(ResnetGenerator):
    """MG-VTON's refinement render ``G_p``: ``(B, 24, H, W)`` -> the mask ``M`` ``(B, 1, H, W)`` in [0, 1] (sigmoid),
    or with ``composition=False`` the image ``(B, 3, H, W)`` in [-1, 1] (tanh)."""

    def __init__(self, config: RefineConfig) -> None:
        super().__init__(INPUT_CHANNELS, config.out_channels, width=config.width, n_down=config.n_down,
                         n_blocks=config.n_blocks, norm=config.norm,
                         out_activation="none" if config.composition else "tanh")
        self.config = config
        self.composition = config.composition

    def forward(self, x: Tensor) -> Tensor:
        y = super().forward(x)
        return torch.sigmoid(y) if self.composition else y

    def render(self, warped_cloth: Tensor, coarse: Tensor, target_pose_map: Tensor) -> dict[str, Tensor | None]:
        """``{"tryon": (B, 3, H, W), "composition_mask": M (B, 1, H, W), or None with composition=False}``."""
        out = self(refine_input(warped_cloth, coarse, target_pose_map))
        if not self.composition:
            return {"tryon": out, "composition_mask": None}
        return {"tryon": compose(out, warped_cloth.to(out.dtype), coarse.to(out.dtype)), "composition_mask": out}


def refine_losses(tryon: Tensor, target: Tensor, config: RefineConfig, perceptual: nn.Module, *,
                  mask: Tensor | None = None, warped_mask: Tensor | None = None) -> dict[str, Tensor]:
    """The render's loss ``mu1 * L_VGG(tryon, target) [+ mu2 * L1(M, mask target)]`` (module docstring).

    Args:
        tryon: the result ``(B, 3, H, W)`` (composed, or the generator's image with ``composition=False``).
        target: the target person ``I_t`` ``(B, 3, H, W)``.
        perceptual: ``L_VGG`` (:class:`vtonlab.losses.VGGPerceptualLoss`).
        mask: ``M`` ``(B, 1, H, W)``: required with ``config.composition``, refused without.
        warped_mask: the warped garment's mask ``(B, 1, H, W)`` {0, 1}, for ``mask_target="warped_mask"``.
    Returns:
        ``{"loss", "perceptual"}`` and with ``composition`` ``"mask"`` (``mean |1 - M|``, or ``mean |M - warped_mask|``);
        the terms detached.
    """
    b, size = _first_image("tryon", tryon)
    _check_map("target", target, 3, b, size, "the target person, RGB, the result's size")
    p = perceptual(tryon, target.to(tryon.dtype))
    if not config.composition:
        if mask is not None:
            raise ValueError("mask: composition=False (the w/o Mask ablation) has no mask term; pass mask=None")
        return {"loss": config.perceptual_weight * p, "perceptual": p.detach()}
    if mask is None:
        raise ValueError("mask: composition=True needs the composition mask M (B, 1, H, W) for the ||1 - M|| term")
    _check_map("mask", mask, 1, b, size, "the composition mask M, the result's size")
    if config.mask_target == "one":
        m = (1 - mask).abs().mean()
    else:
        if warped_mask is None:
            raise ValueError("warped_mask: mask_target='warped_mask' needs the warped garment's mask (B, 1, H, W)")
        _check_map("warped_mask", warped_mask, 1, b, size, "the warped garment's mask, the result's size")
        m = (mask - warped_mask.to(mask.dtype)).abs().mean()
    return {"loss": config.perceptual_weight * p + config.mask_weight * m, "perceptual": p.detach(), "mask": m.detach()}


# ----------------------------------------------------------------------------------------------
# Training inputs: the warped garment and the coarse result
# ----------------------------------------------------------------------------------------------


def flow_warp(cloth: Tensor, flow: Tensor, flow_mask: Tensor) -> tuple[Tensor, Tensor]:
    """The in-shop garment warped by a ground-truth flow: ``(C_w (B, 3, H, W), mask (B, 1, H, W))``.

    ``C_w = grid_sample(cloth, flow) * mask + 1 * (1 - mask)`` (bilinear, ``align_corners=True``): white outside the
    visible garment, as a warped in-shop image on white.

    Args:
        cloth: ``(B, 3, H, W)`` in [-1, 1].
        flow: SynthVTON's ``gt_flow`` ``(B, H, W, 2)``: per person pixel, its (x, y) in the in-shop image.
        flow_mask: ``gt_flow_mask`` ``(B, 1, H, W)`` {0, 1}.
    """
    b, size = _first_image("cloth", cloth)
    if not (isinstance(flow, Tensor) and tuple(flow.shape) == (b, *size, 2)):
        raise ValueError(f"gt_flow: expected ({b}, {size[0]}, {size[1]}, 2) (x, y in [-1, 1]), got {shape_of(flow)}")
    _check_map("gt_flow_mask", flow_mask, 1, b, size, "where gt_flow is valid")
    m = flow_mask.to(cloth.dtype)
    warped = F.grid_sample(cloth, flow.to(cloth.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    return warped * m + (1 - m), m


def blur_coarse(image: Tensor, factor: int = 4) -> Tensor:
    """``coarse="blur"``: a fixed degraded target, ``upsample_bilinear(avg_pool(image, factor))``, ``(B, 3, H, W)``."""
    b, (h, w) = _first_image("target image", image)
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1 or h % factor or w % factor:
        raise ValueError(f"coarse_factor: expected a positive divisor of H and W ({h}x{w}), got {factor!r}")
    return F.interpolate(F.avg_pool2d(image, factor), size=(h, w), mode="bilinear", align_corners=False)


def _with_target_flow(data, index: int, item: Mapping) -> Mapping:
    """The pair with the target's ground-truth flow, when its dataset has one for the target person.

    A :class:`~vtonlab.data.MultiPoseDataset` target is loaded with the SOURCE's garment file, so it carries no
    ``gt_flow`` (flows are stored per person for their own garment). The target's own paired sample has it; its
    in-shop image must equal the pair's (SynthVTON renders the same garment for every pose of a group), else the pair
    is returned unchanged.
    """
    target = item["target"]
    base, triplets = getattr(data, "base", None), getattr(data, "triplets", None)
    if "gt_flow" in target or base is None or triplets is None or not hasattr(base, "load"):
        return item
    try:
        return {**item, "target": target_with_own_flow(data, index, target, "refinement data")}
    except (KeyError, ValueError):
        return item


def _preload(data, limit: int | None, required: tuple[str, ...]) -> Preloaded:
    """Multi-pose pairs (``{"source", "target"}`` items) or a :class:`Preloaded` -> flat :data:`PAIR_KEYS` tensors."""
    n = len(data) if limit is None else min(int(limit), len(data))
    if n == 0:
        raise ValueError("refinement data: no pairs (an empty multi-pose dataset or list)")
    if isinstance(data, Preloaded):
        missing = [k for k in required if k not in data.tensors]
        if missing:
            raise KeyError(f"refinement data: the preloaded pairs lack {', '.join(missing)}; expected {list(required)}")
        return Preloaded({k: v[:n] for k, v in data.tensors.items()}, list(data.names[:n]))
    cols: dict[str, list[Tensor]] = {}
    names = []
    for i in range(n):
        item = data[i]
        if not isinstance(item, Mapping) or "source" not in item or "target" not in item:
            raise TypeError(f"refinement data: item {i} is not a {{'source': sample, 'target': sample}} dict "
                            "(a MultiPoseDataset item)")
        item = _with_target_flow(data, i, item)
        for key, side, field in PAIR_KEYS:
            if i == 0 and field in item[side]:
                cols[key] = []
            if key in cols:
                if field not in item[side]:
                    raise KeyError(f"refinement data: the {side} sample of item {i} has no {field!r}")
                cols[key].append(torch.as_tensor(item[side][field]))
        if i == 0:
            missing = [k for k in required if k not in cols]
            if missing:
                raise KeyError(f"refinement data: the pairs lack {', '.join(missing)} (from {list(required)})")
        names.append(f"{item['source'].get('im_name', i)}->{item['target'].get('im_name', i)}")
    return Preloaded({k: torch.stack(v) for k, v in cols.items()}, names)


def _check_sources(config: RefineConfig, warp_fn, coarse_fn) -> None:
    for what, fn, field in (("warp_fn", warp_fn, "warp"), ("coarse_fn", coarse_fn, "coarse")):
        if fn is not None and not callable(fn):
            raise TypeError(f"{what}: expected a callable(batch) or None, got {type(fn).__name__}")
        if (fn is not None) != (getattr(config, field) == "fn"):
            raise ValueError(f"{what} is {'given' if fn is not None else 'missing'} but RefineConfig.{field} is "
                             f"{getattr(config, field)!r}; {field}='fn' goes with a {what}, the other values without")


@torch.no_grad()
def prepare_pairs(data, config: RefineConfig, *, warp_fn: WarpFn | None = None, coarse_fn: CoarseFn | None = None,
                  limit: int | None = None, batch_size: int = 16) -> Preloaded:
    """Pairs in memory with the render's fixed inputs: :data:`PAIR_KEYS` present plus ``warped_cloth``,
    ``warped_mask`` and ``coarse`` (:data:`PREPARED_KEYS`).

    ``C_w``: ``warp_fn(batch) -> (warped (B, 3, H, W), mask (B, 1, H, W))`` when given (``config.warp="fn"``), else
    :func:`flow_warp` of ``cloth`` by ``target_gt_flow``. ``I_c``: ``coarse_fn(batch) -> (B, 3, H, W)`` when given
    (``config.coarse="fn"``; ``batch`` holds the pair keys and ``warped_cloth`` / ``warped_mask``), else
    :func:`blur_coarse` of ``target_image``. Both are computed without gradients, ``batch_size`` pairs at a time.
    A :class:`Preloaded` that already holds :data:`PREPARED_KEYS` is returned as it is (first ``limit`` pairs).
    """
    _check_sources(config, warp_fn, coarse_fn)
    if isinstance(data, Preloaded) and all(k in data.tensors for k in PREPARED_KEYS):
        n = len(data) if limit is None else min(int(limit), len(data))
        return Preloaded({k: v[:n] for k, v in data.tensors.items()}, list(data.names[:n]))
    required = ("cloth", "target_image", "target_pose_map")
    if warp_fn is None:
        required += ("target_gt_flow", "target_gt_flow_mask")
    pairs = _preload(data, limit, required)
    out: dict[str, list[Tensor]] = {k: [] for k in PREPARED_KEYS}
    for start in range(0, len(pairs), batch_size):
        batch = pairs.batch(start, start + batch_size)
        b, size = _first_image("cloth", batch["cloth"])
        if warp_fn is not None:
            res = warp_fn(batch)
            if not (isinstance(res, tuple) and len(res) == 2):
                raise ValueError("warp_fn: expected a tuple (warped (B, 3, H, W), mask (B, 1, H, W))")
            warped, wmask = res
            _check_map("warp_fn's warped garment", warped, 3, b, size, "RGB in [-1, 1], the pairs' size")
            _check_map("warp_fn's mask", wmask, 1, b, size, "the warped garment's mask, the pairs' size")
        else:
            warped, wmask = flow_warp(batch["cloth"], batch["target_gt_flow"], batch["target_gt_flow_mask"])
        batch = {**batch, "warped_cloth": warped, "warped_mask": wmask}
        if coarse_fn is not None:
            coarse = coarse_fn(batch)
            _check_map("coarse_fn's result", coarse, 3, b, size, "the coarse try-on, RGB in [-1, 1], the pairs' size")
        else:
            coarse = blur_coarse(batch["target_image"], config.coarse_factor)
        for k, v in (("warped_cloth", warped), ("warped_mask", wmask), ("coarse", coarse)):
            if not torch.isfinite(v).all():
                raise ValueError(f"{k}: the {'given function' if k != 'coarse' or coarse_fn else 'input'} produced "
                                 "non-finite values")
            out[k].append(v.detach().float().cpu())
    return Preloaded({**pairs.tensors, **{k: torch.cat(v) for k, v in out.items()}}, list(pairs.names))


TRAIN_KEYS = ("warped_cloth", "warped_mask", "coarse", "target_pose_map", "target_image")
"""The prepared keys one training step reads."""


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------


def train(config: RefineConfig, data, *, warp_fn: WarpFn | None = None, coarse_fn: CoarseFn | None = None,
          vgg: nn.Module | None = None, progress: bool = True, profile: Profile | None = None, checkpoint_dir=None,
          checkpoint_every: int | None = None) -> tuple[RefineGenerator, object, str]:
    """Train the refinement render with :class:`vtonlab.train.Trainer` (Adam, ``config.lr``, ``config.betas``).

    ``data``: multi-pose pairs (:func:`vtonlab.mgvton.parsing.multipose_pairs`) or :func:`prepare_pairs` output; the
    first ``config.n_train`` are used, with ``C_w`` and ``I_c`` fixed before training (:func:`prepare_pairs`).
    ``vgg``: the perceptual loss (default ``VGGPerceptualLoss(weights="auto")``). Returns ``(generator on the CPU in
    eval mode, history, label of the VGG weights)``.
    """
    from vtonlab.losses import VGGPerceptualLoss
    from vtonlab.train import Trainer

    prepared = prepare_pairs(data, config, warp_fn=warp_fn, coarse_fn=coarse_fn, limit=config.n_train)
    if len(prepared) < config.batch_size:
        raise ValueError(f"refinement training needs at least one batch of {config.batch_size} pairs, got {len(prepared)}")
    size = tuple(prepared.tensors["target_image"].shape[-2:])
    if size != config.image_size:
        raise ValueError(f"data images are {size} but RefineConfig.image_size is {config.image_size}")
    pairs = Preloaded({k: prepared.tensors[k] for k in TRAIN_KEYS}, list(prepared.names))
    vgg = vgg if vgg is not None else VGGPerceptualLoss(weights="auto")
    torch.manual_seed(config.seed)
    generator = RefineGenerator(config)
    opt = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas)

    def step(ctx, batch):
        out = ctx.modules["refine"](refine_input(batch["warped_cloth"], batch["coarse"], batch["target_pose_map"]))
        if config.composition:
            tryon, mask = compose(out, batch["warped_cloth"], batch["coarse"]), out
        else:
            tryon, mask = out, None
        losses = refine_losses(tryon, batch["target_image"], config, vgg.to(ctx.device), mask=mask,
                               warped_mask=batch["warped_mask"])
        ctx.optimize(losses["loss"], "refine")
        return {k: v.detach() for k, v in losses.items()}

    trainer = Trainer({"refine": generator}, {"refine": opt}, step, pairs, batch_size=config.batch_size,
                      max_steps=config.steps, seed=config.seed, progress=progress, desc="MG-VTON refinement",
                      profile=profile, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                      mixed_precision=PRECISIONS[config.precision])
    history = trainer.fit()
    return trainer.unwrapped()["refine"].cpu().eval(), history, str(getattr(vgg, "weights", type(vgg).__name__))


@torch.no_grad()
def evaluate_refine(model: RefineGenerator, prepared: Preloaded, *, batch_size: int = 32) -> dict:
    """Scores of the render on prepared pairs (:func:`prepare_pairs`) against ``target_image``, and of the coarse input
    alone (the "w/o Render" row): per-image means of ``ssim`` / ``ssim_coarse`` (whole image), ``ssim_garment`` /
    ``ssim_garment_coarse`` (inside ``target_worn_mask``, when present), ``l1`` / ``l1_coarse``, and with a mask
    ``mask_garment`` / ``mask_outside`` (mean ``M`` inside / outside ``warped_mask``); plus ``n``.
    """
    from vtonlab.metrics.similarity import ssim

    model.eval()
    device = next(model.parameters()).device
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(key: str, values: Tensor) -> None:
        v = values[torch.isfinite(values)]
        sums[key] = sums.get(key, 0.0) + float(v.sum())
        counts[key] = counts.get(key, 0) + int(v.numel())

    for start in range(0, len(prepared), batch_size):
        batch = prepared.batch(start, start + batch_size)
        res = model.render(batch["warped_cloth"].to(device), batch["coarse"].to(device),
                           batch["target_pose_map"].to(device))
        target = batch["target_image"].float()
        to01 = {"": ((res["tryon"].cpu().float() + 1) / 2).clamp(0, 1), "_coarse": ((batch["coarse"] + 1) / 2).clamp(0, 1)}
        t01 = ((target + 1) / 2).clamp(0, 1)
        for suffix, img in to01.items():
            add(f"ssim{suffix}", ssim(img, t01))
            add(f"l1{suffix}", (img * 2 - 1 - target).abs().flatten(1).mean(1))
            if "target_worn_mask" in batch:
                add(f"ssim_garment{suffix}", ssim(img, t01, batch["target_worn_mask"].float(), region="inside"))
        if res["composition_mask"] is not None:
            m, w = res["composition_mask"].cpu().float().flatten(1), batch["warped_mask"].float().flatten(1)
            add("mask_garment", (m * w).sum(1) / w.sum(1))
            add("mask_outside", (m * (1 - w)).sum(1) / (1 - w).sum(1))
    out = {k: (sums[k] / counts[k] if counts[k] else math.nan) for k in sums}
    out["n"] = len(prepared)
    return out


# ----------------------------------------------------------------------------------------------
# Load or train
# ----------------------------------------------------------------------------------------------


def _key(name: str, key) -> object:
    import json

    if key is None:
        raise ValueError(f"{name}: a function's output determines the weights, so give a JSON-able description of it "
                         f"(e.g. the Warp-GAN checkpoint's name and config) as {name}")
    try:
        return json.loads(json.dumps(key, sort_keys=True))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected a JSON-able description, got {type(key).__name__}: {e}") from None


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False, config: RefineConfig | None = None,
                warp_fn: WarpFn | None = None, warp_key=None, coarse_fn: CoarseFn | None = None, coarse_key=None,
                train_data=None, test_data=None, progress: bool = True,
                verbose: bool = True, name: str = CHECKPOINT_NAME) -> tuple[RefineGenerator, object]:
    """The trained refinement render of a profile (checkpoint ``mgvton-refine``): ``(generator, checkpoint)``.

    ``python -m vtonlab train mgvton-refine`` makes it, on the blurred-target coarse input and SynthVTON's true warp.
    A trained Warp-GAN as ``coarse_fn`` (with ``coarse_key``, a JSON-able description such as its checkpoint's name
    and config) is preferred when there is one; a given ``warp_fn`` likewise needs ``warp_key``. Without ``config`` the
    profile's :class:`RefineConfig` is used, with ``warp`` / ``coarse`` set to ``"fn"`` for the functions given.

    The checkpoint config is the :class:`RefineConfig`, the SynthVTON data key and any ``warp_key`` / ``coarse_key``;
    its metrics are :func:`evaluate_refine` on the test pairs (``test_ssim``, ``test_ssim_coarse``, ...), ``n_test``
    and ``perceptual_vgg`` (the VGG19 weights used by the loss).
    """
    from vtonlab.checkpoints import load_or_train
    from vtonlab.data import synthvton_params

    prof = resolve_profile(profile)
    if config is None:
        config = RefineConfig.for_profile(prof, warp="fn" if warp_fn is not None else "gt_flow",
                                          coarse="fn" if coarse_fn is not None else "blur")
    cfg = config
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"RefineConfig.image_size {cfg.image_size} differs from profile {prof.name!r} image size "
                         f"{tuple(prof.image_size)}")
    _check_sources(cfg, warp_fn, coarse_fn)
    full = {**cfg.to_dict(), "data": synthvton_params(prof)}
    if warp_fn is not None:
        full["warp_key"] = _key("warp_key", warp_key)
    if coarse_fn is not None:
        full["coarse_key"] = _key("coarse_key", coarse_key)

    def train_fn():
        tr = train_data if train_data is not None else multipose_pairs("train", prof, cfg.pose_style)
        te = test_data if test_data is not None else multipose_pairs("test", prof, cfg.pose_style)
        model, history, vgg_label = train(cfg, tr, warp_fn=warp_fn, coarse_fn=coarse_fn, progress=progress, profile=prof)
        prepared = prepare_pairs(te, cfg, warp_fn=warp_fn, coarse_fn=coarse_fn, batch_size=prof.eval_batch_size)
        res = evaluate_refine(model, prepared, batch_size=prof.eval_batch_size)
        metrics = {f"test_{k}": v for k, v in res.items() if k != "n"}
        metrics.update(n_test=res["n"], perceptual_vgg=vgg_label)
        return {"refine": model}, metrics, history

    ckpt = load_or_train(name, full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    model = RefineGenerator(cfg)
    ckpt.load_into(model, prefix="refine")
    return model.eval(), ckpt
