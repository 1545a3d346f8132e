"""MG-VTON's Warp-GAN: the coarse try-on image in the target pose, with the source person's features warped.

MG-VTON (Dong et al., ICCV 2019, arXiv 1902.11026, Sec. 3.2) renders a coarse result from four inputs

    x = [C_w, I_s, P, S_t]  (B, 44, H, W)  (:func:`warpgan_input`, :data:`INPUT_LAYOUT`, in this order):
        C_w  the warped garment, RGB in [-1, 1], white outside the garment       3 channels   (0:3)
        I_s  the SOURCE person with the garment removed: the sample dict's        3 channels   (3:6)
             ``agnostic`` image (upper garment, arms and neck greyed out, dilated, holes filled;
             :func:`vtonlab.data.representation.inpaint_mask`). The arms go too: their silhouette
             shows the old sleeve length, and in the target pose they are elsewhere anyway.
        P    the TARGET pose, one heatmap per COCO-18 keypoint, in [0, 1]        18 channels   (6:24)
        S_t  the synthesized TARGET parsing as a map over the 20 internal        20 channels  (24:44)
             (CIHP) labels: one-hot (from labels) or the parsing stage's softmax

and its key idea is **feature warping**: the source person is drawn in another pose, so the generator
(:class:`WarpGANGenerator`) encodes ``I_s`` in its own branch and warps those bottleneck features to the target
pose before decoding::

    f_s = E_s(I_s)                               (B, 8w, H/8, W/8)   source branch (stem + 3 downsamplings)
    f_c = E_c([C_w, P, S_t])                     (B, 8w, H/8, W/8)   condition branch (41 channels in)
    f_w = grid_sample(f_s, T(S_s -> S_t))        the source features moved to the target layout
    y   = tanh(Dec(ResBlocks(Fuse([f_w, f_c]))))  (B, 3, H, W)       Fuse = 3x3 conv, norm, ReLU: 16w -> 8w

with the widths and blocks of MG-VTON's ResNet-like generator (:mod:`vtonlab.mgvton.networks`): ``E_c``, the
residual blocks and the decoder are one :class:`~vtonlab.mgvton.networks.ResnetGenerator`, ``E_s`` is the stem and
downsampling of a second one.

**The transform** ``T`` (:func:`feature_warp_grid`). The paper estimates "affine and TPS transformations" between the
source (reference) parsing and the synthesized parsing; MG-VTON has no official code, so vtonlab does it in closed
form from the two parsings, with :mod:`vtonlab.tps`, and without learning:

1. control points: the centroid of each body part of :data:`PART_GROUPS` (head, neck, torso, each arm, lower
   garment, each leg, each shoe) in both parsings; a part counts when it covers at least ``min_part_fraction`` of
   the image in both (a soft target map counts probability mass, so a softmax works as well as a one-hot map);
2. affine: the ``theta`` (target -> source, the backward map ``grid_sample`` needs) fitted to the matched
   centroids by least squares with a ridge pulling its 2x2 linear part towards the identity (``affine_ridge``;
   the translation is free, so a shifted parsing still gives a pure shift). Most centroids lie near the body's
   vertical axis, so without it the horizontal scale is set by the arms, legs and shoes alone; with fewer than 3
   parts, the mean translation (none: the identity);
3. TPS (``warp_transform="tps"``): a thin-plate spline through the residuals ``src_k - theta(dst_k)`` at the target
   centroids, with the image corners and edge midpoints held at residual 0 (so the spline stays near the affine map
   away from the body), smoothing ``tps_reg``; it needs at least 4 parts, else the affine map alone is used. With
   ``tps_reg = 0`` the map sends every matched target centroid exactly onto its source centroid; the affine step
   keeps a sensible map when few parts match, anchors the frame, and alone is the ``"affine"`` ablation.

Why not a trained matcher (``vtonlab.gmm`` in GML mode between the two parsing masks)? It would make this stage
depend on another trained network and on what it learned, and a learned warp cannot be checked exactly; the
closed-form fit is exact on what the tests can state (equal parsings give the identity, a shifted parsing shifts
the features by the same amount) and costs nothing to train.

Coordinates: centroids are in image pixels; a feature cell ``j`` of a map downsampled ``s`` times is read as
covering pixels ``s j .. s j + s - 1`` (centre ``s j + (s - 1) / 2``), and the fit is done in the feature map's
normalised ``align_corners=True`` frame, so a parsing shifted by ``s`` pixels shifts the features by one cell
exactly. The transform is computed without gradients (parsings are labels, or the parsing stage's output, which
this stage does not train); gradients flow to ``f_s`` through the bilinear ``grid_sample``.

**Loss** (:func:`warpgan_losses`), with ``y_hat = G(x)`` and ``y`` the target person's image:

    L_G = adv_weight * sum_k (D_k(x, y_hat) - 1)^2                       (LSGAN, pix2pixHD multi-scale)
        + fm_weight  * L_FM(D(x, y_hat), D(x, y))                        (pix2pixHD Eq. 4, 1/num_D, 4/(n_layers+1))
        + vgg_weight * sum_i lambda_i |phi_i(y_hat) - phi_i(y)|_1         (5 VGG19 layers, lambda = 1/32 ... 1)
        + l1_weight  * |y_hat - y|_1
    L_D = sum_k 0.5 ((D_k(x, y) - 1)^2 + D_k(x, y_hat.detach())^2)

MG-VTON names the four terms but gives no weights (the project's reference notes list none). ``fm_weight = 10`` and
``vgg_weight = 10`` are pix2pixHD's (``lambda_feat = 10`` multiplies both its feature-matching and its VGG loss,
``models/pix2pixHD_model.py`` ``forward``); pix2pixHD has no L1 term and ``l1_weight = 1`` is vtonlab's choice,
the weight CP-VTON's try-on module gives its L1 term (sergeywong/cp-vton ``train.py``, ``train_tom``:
``loss = loss_l1 + loss_vgg + loss_mask``).

**Training** (:func:`train`): MG-VTON trains its stages separately, so this stage sees *ground-truth* inputs: the
target person's parsing (one-hot) for ``S_t`` and for the transform, and the in-shop garment warped by SynthVTON's
ground-truth flow of the target person (``gt_flow``, visible garment only, white elsewhere;
:func:`ground_truth_warp`) for ``C_w`` (the flow of the target with its own garment file, which SynthVTON renders
identical for every pose of a group; :func:`preload_pairs` checks that). At test time the pipeline feeds the parsing
stage's output and the GML warp instead; that gap (the true warp is sharper than any TPS) is what the pipeline's
ablations measure.

Fidelity (paper: MG-VTON as summarised in the project's reference notes; official code: none for MG-VTON;
pix2pixHD's where the paper is silent, see :mod:`vtonlab.mgvton.networks`). Every choice is a named option of
:class:`WarpGANConfig`:

| point | paper | official code | vtonlab |
|---|---|---|---|
| inputs | warped garment, person without garment, target pose, synthesized parsing | none | the same, 3 + 3 + 18 + 20 = 44 channels |
| person without garment | "clothes removed" | none | the sample's ``agnostic`` (garment, arms, neck greyed) |
| synthesized parsing | a parsing | none | 20-channel map: one-hot or softmax |
| pose maps | 18 keypoint maps | none | ``pose_style="mgvton"``: discs of radius 4 at 256 px height |
| generator | ResNet-like, 3 down, 9 blocks, 3 up, BN + ReLU | none | (1) |
| where features are warped | bottleneck of the reference image | none | after the source branch's 3 downsamplings (2) |
| combining the features | not stated | none | concat with the condition features, 3x3 conv + norm + ReLU (2) |
| transform | affine + TPS between reference and synthesized parsing | none | part centroids, affine least squares + TPS (3) |
| transform options | - | - | ``warp_transform="tps"`` / ``"affine"``, ``tps_reg=1e-3``, ``affine_ridge=1``, (5) |
| w/o feature warping | ablation | none | ``feature_warping=False``: source features used unwarped |
| output | coarse image | pix2pixHD: ``Tanh`` | tanh, [-1, 1] |
| discriminator | pix2pixHD multi-scale, 4x4, InstanceNorm, LeakyReLU | ``num_D`` 2, ``n_layers_D`` 3, ``ndf`` 64 | (1) |
| D input | not stated | pix2pixHD: condition + image | condition (44) + image (3) |
| adversarial loss | adversarial | LSGAN | LSGAN (:mod:`vtonlab.losses`), ``adv_weight=1`` |
| feature matching | feature matching | ``lambda_feat`` 10 | ``fm_weight=10`` |
| perceptual | 5 VGG19 layers | VGG x ``lambda_feat`` 10, lambdas 1/32 ... 1 | ``vgg_weight=10``, ``losses.VGGPerceptualLoss`` (4) |
| L1 | L1 | pix2pixHD: none; CP-VTON try-on: weight 1 | ``l1_weight=1`` |
| training inputs | stages trained separately | none | ground-truth target parsing and ``gt_flow`` garment warp |
| optimiser | Adam, lr 2e-4, betas (0.5, 0.999), G and D | the same in pix2pixHD | the same (``lr``, ``betas``) |
| update order | - | pix2pixHD: G step, then D step, from one forward pass | the same |
| batch, length | batch 40, 15 epochs | - | the profile's batch (cpu: 8) and ``warpgan`` steps |
| precision | - | - | float32; bf16 autocast in cpu and gpu (``precision``, see :func:`~vtonlab.mgvton.networks.profile_sizes`) |
| image size | 256x192 | - | the profile's (gpu 256x192) |

1. gpu: the paper's ``width=64``, ``n_blocks=9`` and pix2pixHD's ``ndf=64``; cpu and ci: ``width=16``, ``n_blocks=2``,
   ``ndf=16`` (cpu is smaller than the parsing stage's 32 / 4 because the ablation ships six Warp-GAN checkpoints:
   3.5 MB each instead of 25 MB, :func:`~vtonlab.mgvton.networks.profile_sizes`).
2. The paper's figure is not recovered in the reference notes; the two-branch layout is the simplest reading of
   "the bottleneck features of the reference image are warped and combined".
3. Closed form, not learned; see "The transform" above.
4. ImageNet VGG19 when its file is in the torch cache, else a fixed random VGG19 with a warning; the checkpoint's
   metrics name the weights used (``vgg_weights``).
5. ``min_part_fraction=1e-3``: a part is a control point when it covers 0.1 % of the image in both parsings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab import tps
from vtonlab.data.labels import CIHP
from vtonlab.data.preload import Preloaded
from vtonlab.data.representation import POSE_STYLES
from vtonlab.losses import feature_matching_loss, lsgan_d_loss, lsgan_g_loss
from vtonlab.mgvton.networks import (
    NORMS,
    PRECISIONS,
    MultiscaleDiscriminator,
    ResnetGenerator,
    check_loss_weights,
    check_precision,
    config_dict,
    norm_layer,
    pix2pixhd_init,
    profile_sizes,
    shape_of,
)
from vtonlab.mgvton.parsing import (
    N_LABELS,
    POSE_CHANNELS,
    _check_labels,
    multipose_pairs,
    one_hot_parsing,
)
from vtonlab.mgvton.parsing import preload_pairs as parsing_preload_pairs
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "INPUT_LAYOUT",
    "INPUT_CHANNELS",
    "CONDITION_CHANNELS",
    "CHECKPOINT_NAME",
    "PART_GROUPS",
    "PAIR_KEYS",
    "WARP_TRANSFORMS",
    "WarpGANConfig",
    "warpgan_input",
    "parsing_map",
    "part_centroids",
    "fit_affine",
    "feature_warp_grid",
    "warp_features",
    "WarpGANGenerator",
    "build_discriminator",
    "warpgan_losses",
    "ground_truth_warp",
    "preload_pairs",
    "pair_inputs",
    "train",
    "evaluate_coarse",
    "get_trained",
]

INPUT_LAYOUT: tuple[tuple[str, int], ...] = (("warped_cloth", 3), ("source_person", 3), ("target_pose", POSE_CHANNELS),
                                              ("target_parsing", N_LABELS))
"""The generator's input channels in order: ``(name, channels)``."""
INPUT_CHANNELS = sum(c for _, c in INPUT_LAYOUT)
"""44 = warped garment 3 + source person 3 + target pose 18 + target parsing 20."""
SOURCE_SLICE = slice(3, 6)
"""The source person's channels in the input (what the source branch encodes)."""
CONDITION_CHANNELS = INPUT_CHANNELS - 3
"""41: what the condition branch encodes (every input but the source person)."""
CHECKPOINT_NAME = "mgvton-warpgan"
"""The checkpoint (and ``python -m vtonlab train`` model) name."""
WARP_TRANSFORMS = ("tps", "affine")

PART_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("head", (CIHP["hat"], CIHP["hair"], CIHP["sunglasses"], CIHP["face"])),
    ("neck", (CIHP["torso_skin"],)),
    ("torso", (CIHP["upper_clothes"], CIHP["dress"], CIHP["coat"], CIHP["scarf"])),
    ("left_arm", (CIHP["left_arm"],)),
    ("right_arm", (CIHP["right_arm"],)),
    ("lower", (CIHP["pants"], CIHP["skirt"])),
    ("left_leg", (CIHP["left_leg"],)),
    ("right_leg", (CIHP["right_leg"],)),
    ("left_shoe", (CIHP["left_shoe"],)),
    ("right_shoe", (CIHP["right_shoe"],)),
)
"""Body parts whose centroids are the transform's control points: ``(name, internal labels)``. Gloves and socks
carry no side in CIHP and are left out; the background is not a part."""

FRAME_ANCHORS = ((-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0), (0.0, -1.0), (0.0, 1.0), (-1.0, 0.0), (1.0, 0.0))
"""Normalised points where the TPS residual is held at 0: the corners and edge midpoints of the feature map."""


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WarpGANConfig:
    """Everything that determines a trained Warp-GAN generator.

    Defaults are the paper's (generator, optimiser) and pix2pixHD's (discriminator, feature-matching and VGG
    weights); :meth:`for_profile` sets size, steps, batch, data size and the narrower networks of the ci and cpu
    profiles. See the module's fidelity table.
    """

    image_size: tuple[int, int] = (256, 192)
    width: int = 64  # generator channels after the first conv (MG-VTON: 64 -> 128, 256, 512)
    n_down: int = 3  # stride-2 convolutions (MG-VTON: 3)
    n_blocks: int = 9  # residual blocks (MG-VTON: 9)
    norm: str = "batch"  # generator norm (MG-VTON: BatchNorm)
    ndf: int = 64  # discriminator channels of the first conv (pix2pixHD: 64)
    n_layers_d: int = 3  # stride-2 conv blocks per discriminator scale (pix2pixHD n_layers_D: 3)
    num_d: int = 2  # discriminator scales (pix2pixHD num_D: 2)
    d_norm: str = "instance"  # discriminator norm (MG-VTON / pix2pixHD: InstanceNorm)
    feature_warping: bool = True  # MG-VTON's feature warping; False = the "w/o feature warping" ablation
    warp_transform: str = "tps"  # "tps": affine + TPS of the residuals; "affine": the affine fit only
    tps_reg: float = 1e-3  # smoothing of the residual TPS (lambda of vtonlab.tps.solve)
    affine_ridge: float = 1.0  # ridge of the affine fit's 2x2 linear part towards I (holds the scale the limbs would set)
    min_part_fraction: float = 1e-3  # a part is a control point when it covers this fraction of the image in both
    adv_weight: float = 1.0  # not given by the paper; pix2pixHD: 1
    fm_weight: float = 10.0  # not given by the paper; pix2pixHD lambda_feat: 10
    vgg_weight: float = 10.0  # not given by the paper; pix2pixHD lambda_feat: 10
    l1_weight: float = 1.0  # not given by the paper; pix2pixHD has no L1 term
    lr: float = 2e-4  # MG-VTON: Adam lr 2e-4 for generator and discriminator
    betas: tuple[float, float] = (0.5, 0.999)  # MG-VTON
    pose_style: str = "mgvton"  # pose heatmaps (MG-VTON: discs of radius 4 at 256x192)
    precision: str = "fp32"  # "fp32" | "bf16" (autocast while training; the cpu and gpu profiles: bf16)
    steps: int = 1000
    batch_size: int = 16
    n_train: int = 600  # training pairs (at most)
    seed: int = 0

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.image_size)
        m = 2**self.n_down if isinstance(self.n_down, int) and self.n_down > 0 else 1
        if h % m or w % m or min(h // m, w // m) < 2:
            raise ValueError(f"WarpGANConfig.image_size: expected H and W multiples of {m} (2^n_down) with a feature map "
                             f"of at least 2x2, got {h}x{w}")
        for name in ("width", "n_down", "ndf", "n_layers_d", "num_d", "steps", "batch_size", "n_train"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "steps" else 1):
                raise ValueError(f"WarpGANConfig.{name}: expected a positive int, got {v!r}")
        if isinstance(self.n_blocks, bool) or not isinstance(self.n_blocks, int) or self.n_blocks < 0:
            raise ValueError(f"WarpGANConfig.n_blocks: expected an int >= 0, got {self.n_blocks!r}")
        for name in ("norm", "d_norm"):
            if getattr(self, name) not in NORMS:
                raise ValueError(f"WarpGANConfig.{name}: expected one of {list(NORMS)}, got {getattr(self, name)!r}")
        if not isinstance(self.feature_warping, bool):
            raise ValueError(f"WarpGANConfig.feature_warping: expected True or False, got {self.feature_warping!r}")
        if self.warp_transform not in WARP_TRANSFORMS:
            raise ValueError(f"WarpGANConfig.warp_transform: expected one of {list(WARP_TRANSFORMS)}, "
                             f"got {self.warp_transform!r}")
        for name in ("tps_reg", "affine_ridge"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"WarpGANConfig.{name}: expected a finite value >= 0, got {v!r}")
        if not 0 <= self.min_part_fraction < 1:
            raise ValueError(f"WarpGANConfig.min_part_fraction: expected a value in [0, 1), got {self.min_part_fraction!r}")
        if self.pose_style not in POSE_STYLES:
            raise ValueError(f"WarpGANConfig.pose_style: expected one of {sorted(POSE_STYLES)}, got {self.pose_style!r}")
        check_loss_weights("WarpGANConfig", {"adv_weight": self.adv_weight, "fm_weight": self.fm_weight,
                                             "vgg_weight": self.vgg_weight, "l1_weight": self.l1_weight})
        check_precision("WarpGANConfig", self.precision)
        object.__setattr__(self, "image_size", (h, w))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> WarpGANConfig:
        """The course's config for a profile: the paper's networks in gpu; ``width=16, n_blocks=2, ndf=16`` in cpu and ci;
        size, steps (``warpgan``), batch and ``n_train`` from the profile (cpu: batch 8, bf16)."""
        prof = resolve_profile(profile)
        base = dict(image_size=tuple(prof.image_size), steps=prof.steps_for("warpgan"), batch_size=prof.batch_size,
                    n_train=prof.n_train)
        base.update(profile_sizes(prof.name, compact=True))
        base.update(overrides)
        return cls(**base)

    @property
    def feature_size(self) -> tuple[int, int]:
        """The bottleneck's ``(H / 2^n_down, W / 2^n_down)``."""
        m = 2**self.n_down
        return self.image_size[0] // m, self.image_size[1] // m

    def to_dict(self) -> dict:
        return config_dict(self)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _check_image(name: str, x, channels: int, b: int | None, size: tuple[int, int] | None, what: str) -> None:
    ok = isinstance(x, Tensor) and x.ndim == 4 and x.is_floating_point() and x.shape[1] == channels
    ok = ok and (b is None or x.shape[0] == b) and (size is None or tuple(x.shape[-2:]) == tuple(size))
    if not ok:
        bb = "B" if b is None else b
        hh, ww = ("H", "W") if size is None else size
        raise ValueError(f"{name}: expected a float ({bb}, {channels}, {hh}, {ww}) tensor ({what}), got {shape_of(x)} "
                         f"{getattr(x, 'dtype', '')}")


def parsing_map(parsing: Tensor, name: str = "parsing", *, b: int | None = None,
                size: tuple[int, int] | None = None) -> Tensor:
    """A parsing as a map over the 20 internal labels ``(B, 20, H, W)``.

    ``parsing``: integer labels ``(B, H, W)`` (one-hot encoded here), or a float map ``(B, 20, H, W)`` whose channels
    sum to 1 at every pixel (a one-hot map, or the parsing stage's ``softmax(logits, 1)``; raw logits are refused).
    """
    if isinstance(parsing, Tensor) and not parsing.is_floating_point() and parsing.ndim == 3:
        _check_labels(name, parsing)
        out = one_hot_parsing(parsing)
    elif isinstance(parsing, Tensor) and parsing.is_floating_point() and parsing.ndim == 4 and parsing.shape[1] == N_LABELS:
        out = parsing
        if out.numel():
            sums = out.sum(1)
            if out.min() < -1e-4 or (sums - 1).abs().max() > 1e-3:
                raise ValueError(f"{name}: a float map must hold probabilities over the {N_LABELS} labels (>= 0, summing "
                                 "to 1 per pixel: one-hot or softmax(logits, 1)), got values outside that")
    else:
        raise ValueError(f"{name}: expected integer labels (B, H, W) or a float map (B, {N_LABELS}, H, W) over the "
                         f"internal labels, got {shape_of(parsing)} {getattr(parsing, 'dtype', '')}")
    if (b is not None and out.shape[0] != b) or (size is not None and tuple(out.shape[-2:]) != tuple(size)):
        raise ValueError(f"{name}: expected batch {b} and size {tuple(size) if size else None} like the other inputs, "
                         f"got {shape_of(parsing)}")
    return out


def warpgan_input(warped_cloth: Tensor, source_person: Tensor, target_pose_map: Tensor, target_parsing: Tensor) -> Tensor:
    """The Warp-GAN generator's input ``[C_w, I_s, P, S_t]``: ``(B, 44, H, W)`` (:data:`INPUT_LAYOUT`).

    Args:
        warped_cloth: the garment warped onto the target person ``(B, 3, H, W)`` in [-1, 1].
        source_person: the source person with the garment removed, the sample's ``agnostic`` ``(B, 3, H, W)``.
        target_pose_map: the TARGET pose ``(B, 18, H, W)``, COCO-18 heatmaps in [0, 1].
        target_parsing: the (synthesized) TARGET parsing: labels ``(B, H, W)`` or a ``(B, 20, H, W)`` map
            (:func:`parsing_map`).
    Returns:
        ``cat([warped_cloth, source_person, target_pose_map, parsing_map(target_parsing)], dim=1)``, float.
    """
    _check_image("warped_cloth", warped_cloth, 3, None, None, "the warped garment, RGB in [-1, 1]")
    b, size = warped_cloth.shape[0], tuple(warped_cloth.shape[-2:])
    _check_image("source_person", source_person, 3, b, size, "the source person without the garment: 'agnostic'")
    _check_image("target_pose_map", target_pose_map, POSE_CHANNELS, b, size, "COCO-18 heatmaps of the target pose")
    target = parsing_map(target_parsing, "target_parsing", b=b, size=size)
    dtype = warped_cloth.dtype
    return torch.cat([warped_cloth, source_person.to(dtype), target_pose_map.to(dtype), target.to(dtype)], dim=1)


def _check_input(x) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != INPUT_CHANNELS:
        raise ValueError(f"Warp-GAN input: expected (B, {INPUT_CHANNELS}, H, W) from warpgan_input (warped garment 3, "
                         f"source person 3, target pose 18, target parsing 20), got {shape_of(x)}")


# ----------------------------------------------------------------------------------------------
# The transform between the two parsings
# ----------------------------------------------------------------------------------------------


def part_centroids(parsing: Tensor, min_part_fraction: float = 1e-3) -> tuple[Tensor, Tensor]:
    """Centroids of the :data:`PART_GROUPS` of a parsing: ``(points (B, 10, 2) in pixels (x, y), valid (B, 10) bool)``.

    ``parsing``: labels ``(B, H, W)`` or a ``(B, 20, H, W)`` map (mass = probability). A part is valid when its mass
    is at least ``min_part_fraction * H * W`` pixels (and > 0); invalid points are 0. Float64.
    """
    p = parsing_map(parsing).double()
    b, _, h, w = p.shape
    index = torch.tensor([lab for _, labs in PART_GROUPS for lab in labs], device=p.device)
    group = torch.tensor([g for g, (_, labs) in enumerate(PART_GROUPS) for _ in labs], device=p.device)
    mass_maps = torch.zeros(b, len(PART_GROUPS), h, w, dtype=p.dtype, device=p.device)
    mass_maps.index_add_(1, group, p[:, index])
    ys = torch.arange(h, dtype=p.dtype, device=p.device)
    xs = torch.arange(w, dtype=p.dtype, device=p.device)
    mass = mass_maps.sum((2, 3))
    cx = (mass_maps.sum(2) * xs).sum(-1) / mass.clamp_min(1e-12)
    cy = (mass_maps.sum(3) * ys).sum(-1) / mass.clamp_min(1e-12)
    valid = (mass > 0) & (mass >= min_part_fraction * h * w)
    points = torch.stack([cx, cy], -1) * valid[..., None]
    return points, valid


def _pixels_to_feature_frame(points: Tensor, image_size: tuple[int, int], feature_size: tuple[int, int]) -> Tensor:
    """Image pixels ``(x, y)`` -> the feature map's normalised ``align_corners=True`` frame (cell ``j`` = pixels
    ``s j .. s j + s - 1``, ``s`` = image / feature size)."""
    (h, w), (fh, fw) = image_size, feature_size
    sx, sy = w / fw, h / fh
    fx = (points[..., 0] - (sx - 1) / 2) / sx
    fy = (points[..., 1] - (sy - 1) / 2) / sy
    return torch.stack([2 * fx / max(fw - 1, 1) - 1, 2 * fy / max(fh - 1, 1) - 1], -1)


def fit_affine(dst: Tensor, src: Tensor, valid: Tensor, ridge: float = 1.0) -> Tensor:
    """The affine ``theta`` ``(B, 2, 3)`` with ``theta [dst_k; 1] ~ src_k`` over the valid points (least squares).

    Minimises ``sum_k valid_k |theta [dst_k, 1] - src_k|^2 + ridge |A - I|^2`` with ``A = theta[:, :2]`` (the translation
    is not penalised, so exact translations are fitted exactly; closed form, float64). With
    fewer than 3 valid points: the identity plus the mean translation ``mean(src - dst)`` (the identity when none).
    ``dst``, ``src``: ``(B, K, 2)``; ``valid``: ``(B, K)`` bool.
    """
    dst, src = dst.double(), src.double()
    wgt = valid.to(dst.dtype)
    b = dst.shape[0]
    eye = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dst.dtype, device=dst.device).expand(b, 2, 3)
    x = torch.cat([dst, torch.ones_like(dst[..., :1])], -1)  # (B, K, 3)
    linear = torch.tensor([1.0, 1.0, 0.0], dtype=dst.dtype, device=dst.device).diag()  # no ridge on the translation
    xtx = x.transpose(1, 2) @ (x * wgt[..., None]) + ridge * linear
    xty = x.transpose(1, 2) @ (src * wgt[..., None]) + ridge * eye.transpose(1, 2)
    n = wgt.sum(1)
    # The 3x3 system is positive definite when ridge > 0 or the points span the plane; elsewhere fall back below.
    full = (n >= 3) & (torch.linalg.matrix_rank(xtx) == 3)
    safe = torch.where(full[:, None, None], xtx, torch.eye(3, dtype=dst.dtype, device=dst.device).expand(b, 3, 3))
    theta_ls = torch.linalg.solve(safe, xty).transpose(1, 2)  # (B, 2, 3)
    shift = ((src - dst) * wgt[..., None]).sum(1) / n.clamp_min(1)[:, None]
    theta_tr = torch.cat([eye[..., :2], shift[..., None]], -1)
    return torch.where(full[:, None, None], theta_ls, theta_tr)


@torch.no_grad()
def feature_warp_grid(source_parsing: Tensor, target_parsing: Tensor, feature_size: tuple[int, int], *,
                      warp_transform: str = "tps", tps_reg: float = 1e-3, affine_ridge: float = 1.0,
                      min_part_fraction: float = 1e-3) -> Tensor:
    """The sampling grid that moves features laid out like ``source_parsing`` to the layout of ``target_parsing``.

    Both parsings: labels ``(B, H, W)`` or ``(B, 20, H, W)`` maps of one size. Returns ``(B, h, w, 2)`` float32, the
    ``grid_sample`` grid (``align_corners=True``) of the ``(h, w) = feature_size`` map: output cell ``p`` reads the
    source features at ``g(p) = theta p + R(p)``, ``theta`` the affine least-squares fit of the part centroids
    (target -> source, :func:`fit_affine`) and ``R`` the TPS of the residuals (``warp_transform="tps"``, at least 4
    parts; corners and edge midpoints at residual 0). See the module docstring.
    """
    if warp_transform not in WARP_TRANSFORMS:
        raise ValueError(f"warp_transform: expected one of {list(WARP_TRANSFORMS)}, got {warp_transform!r}")
    src_map = parsing_map(source_parsing, "source_parsing")
    tgt_map = parsing_map(target_parsing, "target_parsing", b=src_map.shape[0], size=tuple(src_map.shape[-2:]))
    fh, fw = (int(v) for v in feature_size)
    if fh < 2 or fw < 2:
        raise ValueError(f"feature_size: expected at least (2, 2), got {(fh, fw)}")
    image_size = tuple(src_map.shape[-2:])
    src_px, src_ok = part_centroids(src_map, min_part_fraction)
    dst_px, dst_ok = part_centroids(tgt_map, min_part_fraction)
    valid = src_ok & dst_ok
    src = _pixels_to_feature_frame(src_px, image_size, (fh, fw))
    dst = _pixels_to_feature_frame(dst_px, image_size, (fh, fw))
    theta = fit_affine(dst, src, valid, affine_ridge)
    grid = tps.affine_sampling_grid(theta, (fh, fw))  # (B, h, w, 2) float64
    if warp_transform == "tps":
        anchors = torch.tensor(FRAME_ANCHORS, dtype=grid.dtype, device=grid.device)
        identity = tps.pixel_grid((fh, fw), device=grid.device, dtype=grid.dtype)
        for i in range(grid.shape[0]):
            ok = valid[i]
            if int(ok.sum()) < 4:
                continue
            d = dst[i, ok]
            fitted = d @ theta[i, :, :2].T + theta[i, :, 2]
            ctrl = torch.cat([d, anchors])
            moved = ctrl + torch.cat([src[i, ok] - fitted, torch.zeros_like(anchors)])
            try:  # the TPS with g(ctrl_k) = ctrl_k + residual_k, minus the identity: the residual field R
                residual = tps.sampling_grid(moved[None], ctrl[None], (fh, fw), reg=tps_reg)[0] - identity
            except ValueError:  # coincident points with tps_reg = 0: keep the affine map
                continue
            grid[i] = grid[i] + residual
    return grid.float()


def warp_features(features: Tensor, source_parsing: Tensor, target_parsing: Tensor, **transform) -> Tensor:
    """``features`` ``(B, C, h, w)`` laid out like ``source_parsing``, moved to ``target_parsing``'s layout.

    Bilinear, zeros outside the source map (features after ReLU: zero is "nothing"). ``transform``: the keyword
    arguments of :func:`feature_warp_grid`. Gradients flow to ``features``; the grid has none.
    """
    if not isinstance(features, Tensor) or features.ndim != 4:
        raise ValueError(f"features: expected (B, C, h, w), got {shape_of(features)}")
    grid = feature_warp_grid(source_parsing, target_parsing, tuple(features.shape[-2:]), **transform)
    if grid.shape[0] != features.shape[0]:
        raise ValueError(f"features: batch {features.shape[0]} but the parsings have batch {grid.shape[0]}")
    # sampled in float32 at least (a half-precision grid is off by a fraction of a cell, see vtonlab.tps)
    work = torch.promote_types(features.dtype, torch.float32)
    out = F.grid_sample(features.to(work), grid.to(features.device, work), mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return out.to(features.dtype)


# ----------------------------------------------------------------------------------------------
# Networks and losses
# ----------------------------------------------------------------------------------------------


class WarpGANGenerator(nn.Module):
    """MG-VTON's Warp-GAN generator: ``(x (B, 44, H, W), source parsing)`` -> coarse image ``(B, 3, H, W)`` in [-1, 1].

    Parts: ``source_encoder`` (stem + downsampling of a :class:`~vtonlab.mgvton.networks.ResnetGenerator` on the 3
    source-person channels), ``main`` (a ResnetGenerator on the 41 other channels whose ``encode`` is the condition
    branch and whose residual blocks, upsampling and head decode), ``fuse`` (3x3 conv, norm, ReLU from 16w to 8w).
    With ``config.feature_warping`` the source features are warped by :func:`feature_warp_grid` from the source parsing
    to the target parsing (input channels 24:44) before the fusion; without, they are fused as they are.
    """

    def __init__(self, config: WarpGANConfig) -> None:
        super().__init__()
        self.config = config
        kw = dict(width=config.width, n_down=config.n_down, norm=config.norm)
        self.main = ResnetGenerator(CONDITION_CHANNELS, 3, n_blocks=config.n_blocks, out_activation="tanh", **kw)
        source = ResnetGenerator(3, 3, n_blocks=0, **kw)  # only its stem and downsampling are kept
        self.source_encoder = nn.Sequential(source.stem, source.down)
        c = config.width * 2**config.n_down
        self.fuse = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), norm_layer(config.norm, c), nn.ReLU(True))
        self.fuse.apply(pix2pixhd_init)

    def transform_kwargs(self) -> dict:
        """The transform options of the config, as :func:`feature_warp_grid` takes them."""
        c = self.config
        return dict(warp_transform=c.warp_transform, tps_reg=c.tps_reg, affine_ridge=c.affine_ridge,
                    min_part_fraction=c.min_part_fraction)

    def features(self, x: Tensor, source_parsing: Tensor | None) -> dict[str, Tensor]:
        """The bottleneck features: ``{"source", "warped", "condition", "fused"}``, each ``(B, 8w, H/8, W/8)``.

        ``source_parsing``: the SOURCE person's parsing, labels ``(B, H, W)`` or a ``(B, 20, H, W)`` map; ignored
        (may be None) without feature warping.
        """
        _check_input(x)
        self.main._check(x[:, :CONDITION_CHANNELS])  # H and W multiples of 2^n_down
        condition = torch.cat([x[:, :3], x[:, 6:]], dim=1)
        source = self.source_encoder(x[:, SOURCE_SLICE])
        if self.config.feature_warping:
            if source_parsing is None:
                raise ValueError("source_parsing: feature warping needs the source person's parsing, got None")
            target = x[:, INPUT_CHANNELS - N_LABELS:]
            src = parsing_map(source_parsing, "source_parsing", b=x.shape[0], size=tuple(x.shape[-2:]))
            warped = warp_features(source, src.to(x.device), target, **self.transform_kwargs())
        else:
            warped = source
        cond = self.main.encode(condition)
        fused = self.fuse(torch.cat([warped, cond], dim=1))
        return {"source": source, "warped": warped, "condition": cond, "fused": fused}

    def forward(self, x: Tensor, source_parsing: Tensor | None = None) -> Tensor:
        fused = self.features(x, source_parsing)["fused"]
        return self.main.head(self.main.up(self.main.blocks(fused)))


def build_discriminator(config: WarpGANConfig) -> MultiscaleDiscriminator:
    """pix2pixHD's multi-scale discriminator on ``[condition (44), image (3)]``: 47 input channels."""
    return MultiscaleDiscriminator(INPUT_CHANNELS + 3, ndf=config.ndf, n_layers=config.n_layers_d, num_D=config.num_d,
                                   norm=config.d_norm)


def warpgan_losses(fake: Tensor, real: Tensor, condition: Tensor, discriminator: nn.Module, vgg: nn.Module | None,
                   config: WarpGANConfig) -> dict[str, Tensor]:
    """The generator and discriminator losses of one batch (the equations of the module docstring).

    Args:
        fake: the generator's output ``(B, 3, H, W)``; real: the target person's image, the same shape.
        condition: the generator's input ``(B, 44, H, W)`` (:func:`warpgan_input`).
        discriminator: a :class:`~vtonlab.mgvton.networks.MultiscaleDiscriminator` on 47 channels that returns the
            intermediate features (``intermediate=True``, needed by the feature-matching term).
        vgg: a :class:`vtonlab.losses.VGGPerceptualLoss` (None only when ``config.vgg_weight == 0``).
    Returns:
        ``{"loss_g", "loss_d"}`` (to optimise; ``loss_d`` sees ``fake`` detached) and the detached terms ``"adv_g"``,
        ``"fm"``, ``"vgg"``, ``"l1"``, ``"adv_d"``.
    """
    _check_image("fake", fake, 3, None, None, "the generated image")
    _check_image("real", real, 3, fake.shape[0], tuple(fake.shape[-2:]), "the target person's image, like fake")
    _check_input(condition)
    if condition.shape[0] != fake.shape[0] or condition.shape[-2:] != fake.shape[-2:]:
        raise ValueError(f"condition: expected ({fake.shape[0]}, {INPUT_CHANNELS}, {fake.shape[-2]}, {fake.shape[-1]}) "
                         f"like the image, got {shape_of(condition)}")
    zero = fake.new_zeros(())
    l1 = (fake - real).abs().mean()
    if config.vgg_weight:
        if vgg is None:
            raise ValueError("vgg: WarpGANConfig.vgg_weight > 0 needs a VGGPerceptualLoss, got None")
        perceptual = vgg(fake, real)
    else:
        perceptual = zero
    if config.adv_weight or config.fm_weight:
        d_fake = discriminator(torch.cat([condition, fake], 1))
        d_real = discriminator(torch.cat([condition, real], 1))
        adv_g = lsgan_g_loss(d_fake) if config.adv_weight else zero
        fm = feature_matching_loss(d_fake, d_real) if config.fm_weight else zero
        adv_d = lsgan_d_loss(d_real, discriminator(torch.cat([condition.detach(), fake.detach()], 1)))
    else:
        adv_g = fm = adv_d = zero
    loss_g = config.adv_weight * adv_g + config.fm_weight * fm + config.vgg_weight * perceptual + config.l1_weight * l1
    return {"loss_g": loss_g, "loss_d": adv_d, "adv_g": adv_g.detach(), "fm": fm.detach(), "vgg": perceptual.detach(),
            "l1": l1.detach(), "adv_d": adv_d.detach()}


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def ground_truth_warp(cloth: Tensor, gt_flow: Tensor, gt_flow_mask: Tensor) -> Tensor:
    """The in-shop garment moved onto the person by SynthVTON's true flow: ``(B, 3, H, W)``, white where no garment shows.

    ``cloth`` ``(B, 3, H, W)`` in [-1, 1]; ``gt_flow`` ``(B, H, W, 2)`` (a ``grid_sample`` grid, ``align_corners=True``);
    ``gt_flow_mask`` ``(B, 1, H, W)``. ``grid_sample(cloth, gt_flow) * mask + 1 * (1 - mask)``.
    """
    _check_image("cloth", cloth, 3, None, None, "the in-shop garment")
    b, size = cloth.shape[0], tuple(cloth.shape[-2:])
    if not isinstance(gt_flow, Tensor) or tuple(gt_flow.shape) != (b, *size, 2):
        raise ValueError(f"gt_flow: expected ({b}, {size[0]}, {size[1]}, 2) (SynthVTON's true warp), got {shape_of(gt_flow)}")
    _check_image("gt_flow_mask", gt_flow_mask, 1, b, size, "where gt_flow is valid")
    m = gt_flow_mask.to(cloth.dtype)
    warped = F.grid_sample(cloth, gt_flow.to(cloth.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    return warped * m + (1 - m)


PAIR_KEYS: tuple[tuple[str, str, str], ...] = (
    ("source_agnostic", "source", "agnostic"), ("source_parse", "source", "parse"), ("cloth", "source", "cloth"),
    ("target_image", "target", "image"), ("target_parse", "target", "parse"), ("target_pose_map", "target", "pose_map"),
    ("target_gt_flow", "target", "gt_flow"), ("target_gt_flow_mask", "target", "gt_flow_mask"),
)
"""The flat keys of a preloaded Warp-GAN pair (:func:`preload_pairs`): ``(key, "source" | "target", sample key)``."""


def preload_pairs(data, limit: int | None = None) -> Preloaded:
    """Multi-pose pairs in memory with the :data:`PAIR_KEYS` (``source_agnostic``, ``target_gt_flow``, ...).

    ``data``: items ``{"source": sample, "target": sample}`` (:func:`vtonlab.mgvton.parsing.multipose_pairs`; the
    target needs SynthVTON's ``gt_flow``), or a :class:`~vtonlab.data.preload.Preloaded` with the pair keys.
    """
    return parsing_preload_pairs(data, limit, pair_keys=PAIR_KEYS, own_flow=True, what="Warp-GAN preload_pairs")


def pair_inputs(batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Training inputs of a preloaded pair batch: ``(warpgan_input (B, 44, H, W), source parse (B, H, W))`` with the
    ground-truth target parsing and the ground-truth garment warp (:func:`ground_truth_warp`)."""
    warped = ground_truth_warp(batch["cloth"], batch["target_gt_flow"], batch["target_gt_flow_mask"])
    x = warpgan_input(warped, batch["source_agnostic"], batch["target_pose_map"], batch["target_parse"])
    return x, batch["source_parse"]


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------


def train(config: WarpGANConfig, data, *, vgg: nn.Module | None = None, progress: bool = True,
          profile: Profile | None = None, checkpoint_dir=None,
          checkpoint_every: int | None = None) -> tuple[WarpGANGenerator, object, str]:
    """Train the Warp-GAN generator and its discriminator with :class:`vtonlab.train.Trainer`.

    ``data``: multi-pose pairs (:func:`vtonlab.mgvton.parsing.multipose_pairs` or :func:`preload_pairs`); the first
    ``config.n_train`` are used, with ground-truth target parsings and garment warps (:func:`pair_inputs`). ``vgg``:
    the perceptual loss (default ``VGGPerceptualLoss(weights="auto")``). Each step: one forward pass, the generator's
    update with ``loss_g``, then the discriminator's with ``loss_d`` (pix2pixHD's order). Returns ``(generator on the
    CPU in eval mode, history, label of the VGG weights)``.
    """
    from vtonlab.losses import VGGPerceptualLoss
    from vtonlab.train import Trainer

    pairs = preload_pairs(data, limit=config.n_train)
    if len(pairs) < config.batch_size:
        raise ValueError(f"Warp-GAN training needs at least one batch of {config.batch_size} pairs, got {len(pairs)}")
    size = tuple(pairs.tensors["cloth"].shape[-2:])
    if size != config.image_size:
        raise ValueError(f"data images are {size} but WarpGANConfig.image_size is {config.image_size}")
    if vgg is None and config.vgg_weight:
        vgg = VGGPerceptualLoss(weights="auto")
    torch.manual_seed(config.seed)
    generator = WarpGANGenerator(config)
    discriminator = build_discriminator(config)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=config.betas)
    use_d = bool(config.adv_weight or config.fm_weight)

    def step(ctx, batch):
        x, source_parse = pair_inputs(batch)
        fake = ctx.modules["generator"](x, source_parse)
        perceptual = vgg.to(ctx.device) if vgg is not None else None  # a fixed feature extractor, not training state
        losses = warpgan_losses(fake, batch["target_image"], x, ctx.modules["discriminator"], perceptual, config)
        ctx.optimize(losses["loss_g"], "generator")
        if use_d:
            ctx.optimize(losses["loss_d"], "discriminator")
        return {k: v.detach() for k, v in losses.items()}

    trainer = Trainer({"generator": generator, "discriminator": discriminator},
                      {"generator": opt_g, "discriminator": opt_d}, step, pairs, batch_size=config.batch_size,
                      max_steps=config.steps, seed=config.seed, progress=progress, desc="MG-VTON Warp-GAN",
                      profile=profile, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                      mixed_precision=PRECISIONS[config.precision])
    history = trainer.fit()
    modules = trainer.unwrapped()
    modules["discriminator"].cpu()
    label = getattr(vgg, "weights", "none") if vgg is not None else "none"
    return modules["generator"].cpu().eval(), history, str(label)


@torch.no_grad()
def evaluate_coarse(model: WarpGANGenerator, data, *, batch_size: int = 32, keep: bool = False) -> dict:
    """The coarse image against the target person on multi-pose pairs (ground-truth parsing and garment warp).

    Returns per-pair ``"ssim"`` and ``"l1"`` ``(N,)`` (images in [0, 1]), their ``"mean_ssim"``, ``"mean_l1"``,
    ``"n_pairs"``, and with ``keep`` the images ``"coarse"`` and ``"target"`` in [-1, 1].
    """
    from vtonlab.metrics.similarity import ssim

    pairs = preload_pairs(data)
    model.eval()
    device = next(model.parameters()).device
    out: dict[str, list[Tensor]] = {}
    for start in range(0, len(pairs), batch_size):
        batch = pairs.batch(start, start + batch_size)
        x, source_parse = pair_inputs(batch)
        coarse = model(x.to(device), source_parse.to(device)).cpu()
        target = batch["target_image"]
        c01, t01 = ((coarse + 1) / 2).clamp(0, 1), ((target + 1) / 2).clamp(0, 1)
        out.setdefault("ssim", []).append(ssim(c01, t01))
        out.setdefault("l1", []).append((c01 - t01).abs().flatten(1).mean(1))
        if keep:
            out.setdefault("coarse", []).append(coarse)
            out.setdefault("target", []).append(target)
    result: dict = {k: torch.cat(v) for k, v in out.items()}
    result["mean_ssim"] = result["ssim"].mean().item()
    result["mean_l1"] = result["l1"].mean().item()
    result["n_pairs"] = len(pairs)
    return result


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False, config: WarpGANConfig | None = None,
                train_data=None, test_data=None, vgg: nn.Module | None = None, progress: bool = True,
                verbose: bool = True, name: str = CHECKPOINT_NAME) -> tuple[WarpGANGenerator, object]:
    """The trained Warp-GAN generator of a profile (checkpoint ``mgvton-warpgan``): ``(generator, checkpoint)``.

    ``python -m vtonlab train mgvton-warpgan`` makes it. The checkpoint config is the :class:`WarpGANConfig` plus the
    SynthVTON data key (render parameters and renderer version); its metrics are the test pairs' SSIM and L1 of the
    coarse image with ground-truth inputs (``test_ssim``, ``test_l1``), ``n_test`` and the VGG weights used
    (``vgg_weights``). ``train_data`` / ``test_data`` default to the profile's SynthVTON multi-pose pairs; other data
    would not match the data key.
    """
    from vtonlab.checkpoints import load_or_train
    from vtonlab.data import synthvton_params

    prof = resolve_profile(profile)
    cfg = config if config is not None else WarpGANConfig.for_profile(prof)
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"WarpGANConfig.image_size {cfg.image_size} differs from profile {prof.name!r} image size "
                         f"{tuple(prof.image_size)}")

    def train_fn():
        tr = train_data if train_data is not None else multipose_pairs("train", prof, cfg.pose_style)
        te = test_data if test_data is not None else multipose_pairs("test", prof, cfg.pose_style)
        model, history, vgg_label = train(cfg, tr, vgg=vgg, progress=progress, profile=prof)
        res = evaluate_coarse(model, te, batch_size=prof.eval_batch_size)
        metrics = {"test_ssim": res["mean_ssim"], "test_l1": res["mean_l1"], "n_test": res["n_pairs"],
                   "vgg_weights": vgg_label}
        return {"generator": model}, metrics, history

    full = {**cfg.to_dict(), "data": synthvton_params(prof)}
    ckpt = load_or_train(name, full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    model = WarpGANGenerator(cfg)
    ckpt.load_into(model, prefix="generator")
    return model.eval(), ckpt
