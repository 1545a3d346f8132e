"""MG-VTON's conditional parsing: the target human parsing from the source person, the garment and the target pose.

MG-VTON (Dong et al., ICCV 2019, arXiv 1902.11026, Sec. 3.1) first predicts how the person will look in the new
pose, as a human parsing: which pixels will be hair, face, arms, the garment, ... Its generator reads

    x = [M_h, M_f, M_b, C, P]  (B, 24, H, W):
        M_h  hair mask of the SOURCE person                       1 channel   (parse == hair)
        M_f  face mask of the SOURCE person                       1 channel   (parse == face)
        M_b  body shape of the SOURCE person (CP-VTON's blurred    1 channel
             low-resolution body mask, ``body_shape``)
        C    the in-shop garment, RGB                              3 channels
        P    the TARGET pose, one heatmap per COCO-18 keypoint    18 channels

(:func:`parsing_input`, in that order; the masks and the body shape are mapped from [0, 1] to [-1, 1] like the
other images, the pose heatmaps are used as given) and outputs logits over the 20 labels of the internal (CIHP)
set (:mod:`vtonlab.data.labels`): ``S = G(x)`` ``(B, 20, H, W)``, the parsing ``argmax_c S``. The generator is
MG-VTON's ResNet-like network and the discriminator pix2pixHD's multi-scale PatchGAN
(:mod:`vtonlab.mgvton.networks`). The loss (:func:`parsing_losses`) is

    L_G = adv_weight * sum_k (D_k(x, softmax S) - 1)^2                     (LSGAN, summed over scales)
        + l1_weight  * mean_pixels sum_c |softmax(S)_c - onehot(y)_c|      (= 2 (1 - p_y) per pixel)
        + ce_weight  * mean_pixels -log softmax(S)_y                       (pixel-wise cross-entropy)
    L_D = sum_k 0.5 * ((D_k(x, onehot y) - 1)^2 + D_k(x, softmax S)^2)     (the fake detached)

with ``y`` the target person's parsing. The discriminator sees the condition ``x`` concatenated with a parsing
map of 20 channels: the one-hot ground truth (real) or the generator's softmax (fake). The softmax keeps the
generator's adversarial gradient; the price is that a soft map is told from a one-hot one by its sharpness, so
the adversarial term also pushes the generator to confident outputs, which is what the cross-entropy asks too.
(A straight-through or Gumbel one-hot would hide the sharpness; it is not in the paper and not done here.)

Loss weights: MG-VTON names the three terms but gives no weights (the project's reference notes list none). The
defaults are 1, 1, 1: at initialisation the cross-entropy is about ln 20 = 3.0, the L1 term about
2 (1 - 1/20) = 1.9, and the LSGAN generator term of order 1 per scale, so no term outweighs another by more than a
few times; pix2pixHD also weights its adversarial term by 1. They are named options (``adv_weight``,
``l1_weight``, ``ce_weight``); ``adv_weight=0`` trains the generator without the GAN.

Two baselines measure what the network adds (:func:`source_parsing_baseline`, :func:`pose_warp_parsing`): the
source parsing unchanged, and the source parsing moved by the pose change, a thin-plate spline
(:mod:`vtonlab.tps`) that sends every COCO-18 keypoint present in both poses from its source to its target
position, with the four image corners and four edge midpoints held fixed (so the frame stays put and the
spline cannot fold far from the body), labels sampled by nearest neighbour. Both are scored with
:func:`parsing_miou` (dataset-level intersection over union per class; classes absent from both maps ignored).

Training data: MPV-style pairs (same person and garment, two poses), :class:`vtonlab.data.MultiPoseDataset` on the
profile's SynthVTON (:func:`multipose_pairs`); the source is pose A, the target pose B.

Fidelity (paper: MG-VTON as summarised in the project's reference notes; official code: none for MG-VTON,
pix2pixHD's where the paper is silent, see :mod:`vtonlab.mgvton.networks`). Every difference is a named option of
:class:`ParsingConfig`:

| point | paper | official code | vtonlab |
|---|---|---|---|
| inputs | hair mask, face mask, body shape, garment, target pose | - | the same: 1 + 1 + 1 + 3 + 18 = 24 channels |
| hair / face masks | of the reference (source) person | - | ``parse == hair`` (2), ``== face`` (13); no hat, sunglasses |
| body shape | body shape | - | CP-VTON's ``body_shape`` of the source person |
| pose maps | 18 keypoint maps | - | ``pose_style="mgvton"``: discs of radius 4 at 256 px height |
| output | target parsing | - | logits over the 20 internal (CIHP) labels |
| generator | 3 down, 9 res blocks, 3 up, BN + ReLU, 64 ... 512 | pix2pixHD ``GlobalGenerator`` | (1) |
| discriminator | pix2pixHD multi-scale, 4x4, InstanceNorm, LeakyReLU | ``num_D`` 2, ``n_layers_D`` 3, ``ndf`` 64 | (1) |
| discriminator input | not stated | pix2pixHD: condition + image | condition + parsing map (one-hot real, softmax fake) |
| adversarial loss | adversarial | LSGAN (pix2pixHD) | LSGAN (:mod:`vtonlab.losses`), ``adv_weight=1`` |
| L1 loss | L1 | - | softmax vs one-hot, summed over labels, ``l1_weight=1`` |
| cross-entropy | pixel-wise softmax loss | - | ``ce_weight=1`` |
| optimiser | Adam, lr 2e-4, betas (0.5, 0.999), G and D | the same in pix2pixHD | the same (``lr``, ``betas``) |
| update order | - | pix2pixHD: G step, then D step, from one forward pass | the same |
| batch, length | batch 40, 200 epochs | - | the profile's batch (cpu: 8) and ``parsing`` steps |
| precision | - | - | float32; bf16 autocast in cpu and gpu (``precision``, see :func:`~vtonlab.mgvton.networks.profile_sizes`) |
| image size | 256x192 | - | the profile's (gpu 256x192) |

1. gpu: the paper's ``width=64``, ``n_blocks=9`` and pix2pixHD's ``ndf=64``; cpu: ``width=32``, ``n_blocks=4``,
   ``ndf=32``; ci: ``width=16``, ``n_blocks=2``, ``ndf=16``. Depth of the discriminator and number of scales are the
   same in every profile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab import tps
from vtonlab.data.labels import CIHP, INTERNAL_LABELS
from vtonlab.data.preload import Preloaded
from vtonlab.data.representation import POSE_STYLES
from vtonlab.losses import lsgan_d_loss, lsgan_g_loss
from vtonlab.mgvton.networks import (
    NORMS,
    PRECISIONS,
    MultiscaleDiscriminator,
    ResnetGenerator,
    check_loss_weights,
    check_precision,
    config_dict,
    profile_sizes,
    shape_of,
)
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "N_LABELS",
    "POSE_CHANNELS",
    "INPUT_LAYOUT",
    "INPUT_CHANNELS",
    "CHECKPOINT_NAME",
    "PAIR_KEYS",
    "ParsingConfig",
    "parsing_input",
    "ParsingGenerator",
    "build_discriminator",
    "one_hot_parsing",
    "discriminator_input",
    "parsing_losses",
    "multipose_pairs",
    "target_with_own_flow",
    "preload_pairs",
    "source_of",
    "train",
    "confusion_matrix",
    "iou_from_confusion",
    "parsing_miou",
    "source_parsing_baseline",
    "pose_warp_parsing",
    "evaluate_parsing",
    "get_trained",
]

N_LABELS = len(INTERNAL_LABELS)
"""Labels of the internal (CIHP) set: the generator's output channels (20)."""
POSE_CHANNELS = 18
"""COCO-18 pose heatmaps."""
HAIR, FACE = CIHP["hair"], CIHP["face"]
INPUT_LAYOUT: tuple[tuple[str, int], ...] = (("hair", 1), ("face", 1), ("body_shape", 1), ("cloth", 3),
                                              ("target_pose", POSE_CHANNELS))
"""The generator's input channels in order: ``(name, channels)``."""
INPUT_CHANNELS = sum(c for _, c in INPUT_LAYOUT)
"""24 = hair 1 + face 1 + body shape 1 + garment 3 + target pose 18."""
CHECKPOINT_NAME = "mgvton-parsing"
"""The checkpoint (and ``python -m vtonlab train`` model) name."""


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsingConfig:
    """Everything that determines a trained conditional-parsing generator.

    Defaults are the paper's (generator, optimiser) and pix2pixHD's (discriminator); :meth:`for_profile` sets size,
    steps, batch, data size and the narrower networks of the ci and cpu profiles. See the module's fidelity table.
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
    adv_weight: float = 1.0  # not given by the paper (see the module docstring)
    l1_weight: float = 1.0  # not given by the paper
    ce_weight: float = 1.0  # not given by the paper
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
        if h % m or w % m or min(h, w) < 16:
            raise ValueError(f"ParsingConfig.image_size: expected H and W multiples of {m} (2^n_down) and at least 16, "
                             f"got {h}x{w}")
        for name in ("width", "n_down", "ndf", "n_layers_d", "num_d", "steps", "batch_size", "n_train"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "steps" else 1):
                raise ValueError(f"ParsingConfig.{name}: expected a positive int, got {v!r}")
        if isinstance(self.n_blocks, bool) or not isinstance(self.n_blocks, int) or self.n_blocks < 0:
            raise ValueError(f"ParsingConfig.n_blocks: expected an int >= 0, got {self.n_blocks!r}")
        for name in ("norm", "d_norm"):
            if getattr(self, name) not in NORMS:
                raise ValueError(f"ParsingConfig.{name}: expected one of {list(NORMS)}, got {getattr(self, name)!r}")
        if self.pose_style not in POSE_STYLES:
            raise ValueError(f"ParsingConfig.pose_style: expected one of {sorted(POSE_STYLES)}, got {self.pose_style!r}")
        check_loss_weights("ParsingConfig", {"adv_weight": self.adv_weight, "l1_weight": self.l1_weight,
                                             "ce_weight": self.ce_weight})
        check_precision("ParsingConfig", self.precision)
        object.__setattr__(self, "image_size", (h, w))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> ParsingConfig:
        """The course's config for a profile: the paper's networks in gpu; ``width=32, n_blocks=4, ndf=32`` in cpu and
        ``width=16, n_blocks=2, ndf=16`` in ci; size, steps (``parsing``), batch and ``n_train`` from the profile."""
        prof = resolve_profile(profile)
        base = dict(image_size=tuple(prof.image_size), steps=prof.steps_for("parsing"), batch_size=prof.batch_size,
                    n_train=prof.n_train)
        base.update(profile_sizes(prof.name))
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        return config_dict(self)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _check_labels(name: str, labels: Tensor, n_classes: int = N_LABELS) -> None:
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.is_complex() or labels.ndim < 2:
        raise ValueError(f"{name}: expected an integer label map (B, H, W) or (H, W), got "
                         f"{shape_of(labels)} {getattr(labels, 'dtype', '')}")
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_classes:
            bad = torch.unique(labels[(labels < 0) | (labels >= n_classes)])[:8].tolist()
            raise ValueError(f"{name}: label values {bad} outside the internal label set 0..{n_classes - 1}")


def _check_map(name: str, x, channels: int, b: int, size: tuple[int, int], what: str) -> None:
    if not (isinstance(x, Tensor) and x.ndim == 4 and tuple(x.shape) == (b, channels, *size)):
        raise ValueError(f"{name}: expected ({b}, {channels}, {size[0]}, {size[1]}) ({what}, at the parsing's size), "
                         f"got {shape_of(x)}")


def parsing_input(source_sample: Mapping[str, Tensor], cloth: Tensor, target_pose_map: Tensor) -> Tensor:
    """The conditional parsing generator's input ``[M_h, M_f, M_b, C, P]``: ``(B, 24, H, W)`` (:data:`INPUT_LAYOUT`).

    Args:
        source_sample: the SOURCE person's sample dict (batched): ``parse`` ``(B, H, W)`` internal labels and
            ``body_shape`` ``(B, 1, H, W)`` in [0, 1]. A single sample (``parse`` ``(H, W)``, the other tensors
            without the batch axis) gives a batch of one.
        cloth: the in-shop garment ``(B, 3, H, W)`` in [-1, 1].
        target_pose_map: the TARGET pose ``(B, 18, H, W)``, COCO-18 heatmaps in [0, 1].
    Returns:
        ``cat([hair * 2 - 1, face * 2 - 1, body_shape * 2 - 1, cloth, target_pose_map], dim=1)``.
    """
    missing = [k for k in ("parse", "body_shape") if k not in source_sample]
    if missing:
        raise KeyError(f"parsing_input needs {', '.join(missing)} in the source sample dict; "
                       f"it has {', '.join(map(str, source_sample))}")
    parse, body = source_sample["parse"], source_sample["body_shape"]
    if isinstance(parse, Tensor) and parse.ndim == 2:  # one sample: add the batch axis everywhere
        parse = parse[None]
        body, cloth, target_pose_map = (t[None] if isinstance(t, Tensor) else t for t in (body, cloth, target_pose_map))
    _check_labels("source parse", parse)
    if parse.ndim != 3:
        raise ValueError(f"source parse: expected (B, H, W), got {shape_of(parse)}")
    b, size = parse.shape[0], tuple(parse.shape[-2:])
    _check_map("source body_shape", body, 1, b, size, "the source person's body shape")
    _check_map("cloth", cloth, 3, b, size, "the in-shop garment, RGB")
    _check_map("target_pose_map", target_pose_map, POSE_CHANNELS, b, size, "COCO-18 heatmaps of the target pose")
    dtype = cloth.dtype if cloth.is_floating_point() else torch.float32
    hair = (parse == HAIR).to(dtype)[:, None]
    face = (parse == FACE).to(dtype)[:, None]
    return torch.cat([hair * 2 - 1, face * 2 - 1, body.to(dtype) * 2 - 1, cloth.to(dtype), target_pose_map.to(dtype)], dim=1)


# ----------------------------------------------------------------------------------------------
# Networks and losses
# ----------------------------------------------------------------------------------------------


class ParsingGenerator(ResnetGenerator):
    """MG-VTON's conditional parsing generator: ``(B, 24, H, W)`` -> logits ``(B, 20, H, W)`` over the internal labels."""

    def __init__(self, config: ParsingConfig) -> None:
        super().__init__(INPUT_CHANNELS, N_LABELS, width=config.width, n_down=config.n_down, n_blocks=config.n_blocks,
                         norm=config.norm, out_activation="none")
        self.config = config

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The predicted parsing ``argmax_c G(x)``: long ``(B, H, W)`` (no gradients; the module's current mode)."""
        return self(x).argmax(1)


def build_discriminator(config: ParsingConfig) -> MultiscaleDiscriminator:
    """pix2pixHD's multi-scale discriminator on ``[condition (24), parsing map (20)]``: 44 input channels."""
    return MultiscaleDiscriminator(INPUT_CHANNELS + N_LABELS, ndf=config.ndf, n_layers=config.n_layers_d,
                                   num_D=config.num_d, norm=config.d_norm)


def one_hot_parsing(labels: Tensor, n_classes: int = N_LABELS, dtype: torch.dtype = torch.float32) -> Tensor:
    """Labels ``(B, H, W)`` -> one-hot maps ``(B, n_classes, H, W)``."""
    _check_labels("labels", labels, n_classes)
    return F.one_hot(labels.long(), n_classes).permute(0, 3, 1, 2).to(dtype)


def discriminator_input(condition: Tensor, parsing_map: Tensor) -> Tensor:
    """``cat([condition (B, 24, H, W), parsing map (B, 20, H, W)])``: what the discriminator judges."""
    if not isinstance(condition, Tensor) or condition.ndim != 4 or condition.shape[1] != INPUT_CHANNELS:
        raise ValueError(f"condition: expected (B, {INPUT_CHANNELS}, H, W) (parsing_input), got {shape_of(condition)}")
    if not isinstance(parsing_map, Tensor) or parsing_map.shape != (condition.shape[0], N_LABELS, *condition.shape[-2:]):
        raise ValueError(f"parsing map: expected ({condition.shape[0]}, {N_LABELS}, {condition.shape[-2]}, "
                         f"{condition.shape[-1]}) (one-hot or softmax over the internal labels), got {shape_of(parsing_map)}")
    return torch.cat([condition, parsing_map.to(condition.dtype)], dim=1)


def parsing_losses(logits: Tensor, target: Tensor, condition: Tensor, discriminator: nn.Module,
                   config: ParsingConfig) -> dict[str, Tensor]:
    """The generator and discriminator losses of one batch (the equations of the module docstring).

    Args:
        logits: the generator's output ``(B, 20, H, W)``.
        target: the target person's parsing ``(B, H, W)`` (internal labels).
        condition: the generator's input ``(B, 24, H, W)`` (:func:`parsing_input`).
        discriminator: a :class:`~vtonlab.mgvton.networks.MultiscaleDiscriminator` on 44 channels.
    Returns:
        ``{"loss_g", "loss_d"}`` (to optimise: ``loss_d`` sees the generator's output detached) and the terms
        ``"ce"``, ``"l1"``, ``"adv_g"``, ``"adv_d"`` (detached).
    """
    if not isinstance(logits, Tensor) or logits.ndim != 4 or logits.shape[1] != N_LABELS:
        raise ValueError(f"logits: expected (B, {N_LABELS}, H, W), got {shape_of(logits)}")
    _check_labels("target parse", target)
    if tuple(target.shape) != (logits.shape[0], *logits.shape[-2:]):
        raise ValueError(f"target parse: expected ({logits.shape[0]}, {logits.shape[-2]}, {logits.shape[-1]}) like the "
                         f"logits, got {tuple(target.shape)}")
    target = target.long()
    prob = logits.softmax(1)
    real = one_hot_parsing(target, dtype=prob.dtype)
    ce = F.cross_entropy(logits, target)
    l1 = (prob - real).abs().sum(1).mean()
    if config.adv_weight:
        adv_g = lsgan_g_loss(discriminator(discriminator_input(condition, prob)))
        adv_d = lsgan_d_loss(discriminator(discriminator_input(condition, real)),
                             discriminator(discriminator_input(condition.detach(), prob.detach())))
    else:
        adv_g = adv_d = logits.new_zeros(())
    loss_g = config.adv_weight * adv_g + config.l1_weight * l1 + config.ce_weight * ce
    return {"loss_g": loss_g, "loss_d": adv_d, "ce": ce.detach(), "l1": l1.detach(), "adv_g": adv_g.detach(),
            "adv_d": adv_d.detach()}


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------

PAIR_KEYS: tuple[tuple[str, str, str], ...] = (
    ("source_parse", "source", "parse"), ("source_body_shape", "source", "body_shape"),
    ("source_pose_keypoints", "source", "pose_keypoints"), ("cloth", "source", "cloth"),
    ("target_parse", "target", "parse"), ("target_pose_map", "target", "pose_map"),
    ("target_pose_keypoints", "target", "pose_keypoints"),
)
"""The flat keys of a preloaded pair (:func:`preload_pairs`): ``(key, "source" | "target", sample-dict key)``."""


def multipose_pairs(split: str = "train", profile: Profile | str | None = None, pose_style: str = "mgvton"):
    """The profile's SynthVTON multi-pose pairs: a :class:`vtonlab.data.MultiPoseDataset` (rendered on first use).

    Items are ``{"source": sample in pose A, "target": the same person and garment in pose B}``, every ordered pair
    of poses of a group, from the ``mpv_triplets.txt`` list SynthVTON writes.
    """
    from vtonlab.data import MultiPoseDataset, synthvton

    prof = resolve_profile(profile)
    root = synthvton(split, prof, pose_style=pose_style).root  # renders the cache when needed
    return MultiPoseDataset(root, split, tuple(prof.image_size), pose_style)


def target_with_own_flow(data, i: int, target: Mapping, what: str = "multi-pose pairs") -> dict:
    """The target sample with SynthVTON's ground-truth flow of its own garment image.

    A multi-pose triplet ``(A, B, garment of A)`` loads B with A's garment file, and a dataset only gives ``gt_flow``
    for a person with their own garment file; SynthVTON renders every pose of a group in the same garment, so B's
    own flow warps the same in-shop image (checked: the two garment tensors must be equal). A KeyError when
    ``data`` cannot give the flow, a ValueError when the garments differ; ``what`` starts the messages.
    """
    base, triplets = getattr(data, "base", None), getattr(data, "triplets", None)
    if base is None or triplets is None:
        raise KeyError(f"{what}: the target sample of item {i} has no 'gt_flow' (the ground-truth "
                       "garment warp; SynthVTON multi-pose pairs give it)")
    name = triplets[i][1]
    own = base.load(name, name)
    if "gt_flow" not in own:
        raise KeyError(f"{what}: {name} has no ground-truth flow file (SynthVTON data only)")
    if not torch.equal(torch.as_tensor(own["cloth"]), torch.as_tensor(target["cloth"])):
        raise ValueError(f"{what}: item {i}: {name}'s own garment image differs from the pair's "
                         f"({target.get('c_name')}), so its ground-truth flow does not warp the pair's garment")
    return {**target, "gt_flow": own["gt_flow"], "gt_flow_mask": own["gt_flow_mask"]}


def preload_pairs(data, limit: int | None = None, *, pair_keys: tuple[tuple[str, str, str], ...] = PAIR_KEYS,
                  own_flow: bool = False, what: str = "preload_pairs") -> Preloaded:
    """Pairs in memory, as flat sample dicts with the ``pair_keys`` (default :data:`PAIR_KEYS`: ``source_parse``, ...).

    ``data``: items ``{"source": sample, "target": sample}`` (:class:`~vtonlab.data.MultiPoseDataset`), or a
    :class:`~vtonlab.data.preload.Preloaded` that already holds the pair keys. ``limit``: the first N pairs.
    ``own_flow``: a target without ``gt_flow`` takes the flow of its own garment (:func:`target_with_own_flow`).
    ``what`` starts the error messages.
    """
    keys = [k for k, _, _ in pair_keys]
    n = len(data) if limit is None else min(int(limit), len(data))
    if n == 0:
        raise ValueError(f"{what}: no pairs (an empty multi-pose dataset or list)")
    if isinstance(data, Preloaded):
        missing = [k for k in keys if k not in data.tensors]
        if missing:
            raise KeyError(f"{what}: the preloaded data lacks {', '.join(missing)}; expected the keys {keys}")
        return Preloaded({k: data.tensors[k][:n] for k in keys}, list(data.names[:n]))
    cols: dict[str, list[Tensor]] = {k: [] for k in keys}
    names = []
    for i in range(n):
        item = data[i]
        if not isinstance(item, Mapping) or "source" not in item or "target" not in item:
            raise TypeError(f"{what}: item {i} is not a {{'source': sample, 'target': sample}} dict "
                            "(a MultiPoseDataset item)")
        if own_flow and "gt_flow" not in item["target"]:
            item = {"source": item["source"], "target": target_with_own_flow(data, i, item["target"], what)}
        for key, side, field in pair_keys:
            if field not in item[side]:
                raise KeyError(f"{what}: the {side} sample of item {i} has no {field!r}")
            cols[key].append(torch.as_tensor(item[side][field]))
        names.append(f"{item['source'].get('im_name', i)}->{item['target'].get('im_name', i)}")
    return Preloaded({k: torch.stack(v) for k, v in cols.items()}, names)


def source_of(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The source-person part of a preloaded pair batch as a sample dict (``parse``, ``body_shape``, ``pose_keypoints``)."""
    return {"parse": batch["source_parse"], "body_shape": batch["source_body_shape"],
            "pose_keypoints": batch["source_pose_keypoints"]}


def _pair_input(batch: Mapping[str, Tensor]) -> Tensor:
    return parsing_input(source_of(batch), batch["cloth"], batch["target_pose_map"])


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def train(config: ParsingConfig, data, *, progress: bool = True, profile: Profile | None = None, checkpoint_dir=None,
          checkpoint_every: int | None = None) -> tuple[ParsingGenerator, object]:
    """Train the parsing generator and its discriminator with :class:`vtonlab.train.Trainer`: ``(generator, history)``.

    ``data``: multi-pose pairs (:func:`multipose_pairs` or :func:`preload_pairs` output); the first ``config.n_train``
    are used. Each step: one forward pass, the generator's update with ``loss_g``, then the discriminator's with
    ``loss_d`` (pix2pixHD's order). The generator comes back on the CPU in eval mode.
    """
    from vtonlab.train import Trainer

    pairs = preload_pairs(data, limit=config.n_train)
    if len(pairs) < config.batch_size:
        raise ValueError(f"parsing training needs at least one batch of {config.batch_size} pairs, got {len(pairs)}")
    size = tuple(pairs.tensors["cloth"].shape[-2:])
    if size != config.image_size:
        raise ValueError(f"data images are {size} but ParsingConfig.image_size is {config.image_size}")
    torch.manual_seed(config.seed)
    generator = ParsingGenerator(config)
    discriminator = build_discriminator(config)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=config.betas)

    def step(ctx, batch):
        condition = _pair_input(batch)
        logits = ctx.modules["generator"](condition)
        losses = parsing_losses(logits, batch["target_parse"], condition, ctx.modules["discriminator"], config)
        ctx.optimize(losses["loss_g"], "generator")
        if config.adv_weight:
            ctx.optimize(losses["loss_d"], "discriminator")
        return {k: v.detach() for k, v in losses.items()}

    trainer = Trainer({"generator": generator, "discriminator": discriminator},
                      {"generator": opt_g, "discriminator": opt_d}, step, pairs, batch_size=config.batch_size,
                      max_steps=config.steps, seed=config.seed, progress=progress, desc="MG-VTON parsing", profile=profile,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                      mixed_precision=PRECISIONS[config.precision])
    history = trainer.fit()
    modules = trainer.unwrapped()
    modules["discriminator"].cpu()
    return modules["generator"].cpu().eval(), history


# ----------------------------------------------------------------------------------------------
# Metrics and baselines
# ----------------------------------------------------------------------------------------------


def confusion_matrix(pred_labels: Tensor, true_labels: Tensor, n_classes: int = N_LABELS) -> Tensor:
    """``cm[t, p]`` = pixels of true class ``t`` predicted as ``p``: long ``(n_classes, n_classes)``."""
    if not isinstance(pred_labels, Tensor) or not isinstance(true_labels, Tensor) or pred_labels.shape != true_labels.shape:
        raise ValueError(f"pred_labels and true_labels: expected label maps of one shape, got {shape_of(pred_labels)} "
                         f"and {shape_of(true_labels)}")
    _check_labels("pred_labels", pred_labels, n_classes)
    _check_labels("true_labels", true_labels, n_classes)
    idx = true_labels.reshape(-1).long() * n_classes + pred_labels.reshape(-1).long()
    return torch.bincount(idx.cpu(), minlength=n_classes * n_classes).view(n_classes, n_classes)


def iou_from_confusion(cm: Tensor) -> tuple[float, Tensor]:
    """Per-class IoU ``TP / (TP + FP + FN)`` ``(n,)`` float64, NaN for classes absent from both maps, and their mean."""
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    per_class = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    present = per_class[~per_class.isnan()]
    return (present.mean().item() if present.numel() else math.nan), per_class


def parsing_miou(pred_labels: Tensor, true_labels: Tensor, n_classes: int = N_LABELS) -> tuple[float, Tensor]:
    """Mean intersection over union of two parsings over all their pixels: ``(mIoU, per-class IoU (n_classes,))``.

    Per class ``c``: ``|pred = c and true = c| / |pred = c or true = c|``, counted over every pixel of the batch (the
    dataset-level IoU of segmentation benchmarks); classes absent from both maps get NaN and are left out of the mean.
    """
    return iou_from_confusion(confusion_matrix(pred_labels, true_labels, n_classes))


def source_parsing_baseline(source_parse: Tensor) -> Tensor:
    """Baseline 1: the target parsing predicted as the source parsing, unchanged (long ``(B, H, W)``)."""
    _check_labels("source parse", source_parse)
    return source_parse.long().clone()


def _check_keypoints(name: str, kp, b: int) -> Tensor:
    if not isinstance(kp, Tensor) or kp.ndim != 3 or tuple(kp.shape) != (b, POSE_CHANNELS, 3):
        raise ValueError(f"{name}: expected ({b}, {POSE_CHANNELS}, 3) COCO-18 keypoints (x, y in pixels, confidence), "
                         f"got {shape_of(kp)}")
    return kp.float()


FRAME_ANCHORS = ((-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0), (0.0, -1.0), (0.0, 1.0), (-1.0, 0.0), (1.0, 0.0))
"""Normalised points the pose-warp baseline keeps fixed: the image corners and edge midpoints."""


def pose_warp_parsing(source_parse: Tensor, source_keypoints: Tensor, target_keypoints: Tensor, *,
                      reg: float = 1e-3, anchors: bool = True) -> Tensor:
    """Baseline 2: the source parsing moved by the pose change (a keypoint TPS, labels by nearest neighbour).

    For each sample, the COCO-18 keypoints present in both poses (confidence > 0) are the control points: the
    thin-plate spline :func:`vtonlab.tps.sampling_grid` moves the content at each source keypoint to its target
    position; with ``anchors`` the :data:`FRAME_ANCHORS` stay where they are. ``reg`` is the smoothing spline's
    lambda (coincident keypoints stay solvable). Pixels mapped from outside the image become background. A sample
    with fewer than 3 control points (no anchors) or a singular system keeps its source parsing. Equal keypoints
    give the identity warp.

    Args:
        source_parse: long ``(B, H, W)``.
        source_keypoints, target_keypoints: ``(B, 18, 3)``, x, y in pixels of the ``(H, W)`` image, confidence.
    Returns:
        long ``(B, H, W)``.
    """
    _check_labels("source parse", source_parse)
    if source_parse.ndim != 3:
        raise ValueError(f"source parse: expected (B, H, W), got {tuple(source_parse.shape)}")
    b, h, w = source_parse.shape
    src_kp = _check_keypoints("source keypoints", source_keypoints, b)
    tgt_kp = _check_keypoints("target keypoints", target_keypoints, b)
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    anchor = torch.tensor(FRAME_ANCHORS, dtype=torch.float32)
    out = source_parse.long().clone()
    for i in range(b):
        valid = (src_kp[i, :, 2] > 0) & (tgt_kp[i, :, 2] > 0)
        src = src_kp[i, valid, :2].cpu() * scale - 1
        dst = tgt_kp[i, valid, :2].cpu() * scale - 1
        if anchors:
            src, dst = torch.cat([src, anchor]), torch.cat([dst, anchor])
        if len(src) < 3:
            continue
        try:
            grid = tps.sampling_grid(src[None].double(), dst[None].double(), (h, w), reg=reg)
        except ValueError:
            continue
        moved = F.grid_sample(source_parse[i, None, None].double().cpu(), grid, mode="nearest", padding_mode="zeros",
                              align_corners=True)
        out[i] = moved[0, 0].round().long().to(out.device)
    return out


@torch.no_grad()
def evaluate_parsing(model: ParsingGenerator | None, data, *, batch_size: int = 32, keep: bool = False) -> dict:
    """Parsing mIoU on multi-pose pairs: the model (when given) and both baselines, on the same pixels.

    Returns ``{method: {"miou", "per_class" (20,) float64 with NaN for absent classes, "pixel_accuracy"}}`` for the
    methods ``"model"`` (when ``model`` is given), ``"source"`` and ``"pose_warp"``, plus ``"n_pairs"``; with
    ``keep`` also ``"predictions"`` ``{method: long (N, H, W)}`` and ``"target"``.
    """
    pairs = preload_pairs(data)
    if model is not None:
        model.eval()
    cms: dict[str, Tensor] = {}
    kept: dict[str, list[Tensor]] = {}
    for start in range(0, len(pairs), batch_size):
        batch = pairs.batch(start, start + batch_size)
        target = batch["target_parse"]
        preds = {}
        if model is not None:
            device = next(model.parameters()).device
            preds["model"] = model.predict(_pair_input(batch).to(device)).cpu()
        preds["source"] = source_parsing_baseline(batch["source_parse"])
        preds["pose_warp"] = pose_warp_parsing(batch["source_parse"], batch["source_pose_keypoints"],
                                               batch["target_pose_keypoints"])
        for k, p in preds.items():
            cm = confusion_matrix(p, target)
            cms[k] = cms[k] + cm if k in cms else cm
            if keep:
                kept.setdefault(k, []).append(p)
        if keep:
            kept.setdefault("target", []).append(target)
    out: dict = {}
    for k, cm in cms.items():
        miou, per_class = iou_from_confusion(cm)
        out[k] = {"miou": miou, "per_class": per_class,
                  "pixel_accuracy": (cm.diagonal().sum() / cm.sum().clamp(min=1)).item()}
    out["n_pairs"] = len(pairs)
    if keep:
        out["target"] = torch.cat(kept.pop("target"))
        out["predictions"] = {k: torch.cat(v) for k, v in kept.items()}
    return out


def _per_class_dict(per_class: Tensor) -> dict[str, float]:
    return {INTERNAL_LABELS[i]: float(v) for i, v in enumerate(per_class.tolist()) if not math.isnan(v)}


# ----------------------------------------------------------------------------------------------
# Load or train
# ----------------------------------------------------------------------------------------------


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False, config: ParsingConfig | None = None,
                train_data=None, test_data=None, progress: bool = True,
                verbose: bool = True) -> tuple[ParsingGenerator, object]:
    """The trained conditional-parsing generator of a profile (checkpoint ``mgvton-parsing``): ``(generator, checkpoint)``.

    ``python -m vtonlab train mgvton-parsing`` makes it. The checkpoint config is the :class:`ParsingConfig` plus the
    SynthVTON data key (render parameters and renderer version); its metrics are the test-pair mIoU of the model and
    of both baselines (``test_miou``, ``test_miou_source``, ``test_miou_pose_warp``), pixel accuracies, the model's
    per-class IoU and ``n_test``. ``train_data`` / ``test_data`` default to the profile's SynthVTON multi-pose pairs
    (:func:`multipose_pairs`); other data would not match the data key.
    """
    from vtonlab.checkpoints import load_or_train
    from vtonlab.data import synthvton_params

    prof = resolve_profile(profile)
    cfg = config if config is not None else ParsingConfig.for_profile(prof)
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"ParsingConfig.image_size {cfg.image_size} differs from profile {prof.name!r} image size "
                         f"{tuple(prof.image_size)}")

    def train_fn():
        tr = train_data if train_data is not None else multipose_pairs("train", prof, cfg.pose_style)
        te = test_data if test_data is not None else multipose_pairs("test", prof, cfg.pose_style)
        model, history = train(cfg, tr, progress=progress, profile=prof)
        res = evaluate_parsing(model, te, batch_size=prof.eval_batch_size)
        metrics = {"test_miou": res["model"]["miou"], "test_miou_source": res["source"]["miou"],
                   "test_miou_pose_warp": res["pose_warp"]["miou"],
                   "test_pixel_accuracy": res["model"]["pixel_accuracy"],
                   "test_pixel_accuracy_source": res["source"]["pixel_accuracy"],
                   "test_pixel_accuracy_pose_warp": res["pose_warp"]["pixel_accuracy"],
                   "test_iou_per_class": _per_class_dict(res["model"]["per_class"]), "n_test": res["n_pairs"]}
        return {"generator": model}, metrics, history

    full = {**cfg.to_dict(), "data": synthvton_params(prof)}
    ckpt = load_or_train(CHECKPOINT_NAME, full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    model = ParsingGenerator(cfg)
    ckpt.load_into(model, prefix="generator")
    return model.eval(), ckpt
