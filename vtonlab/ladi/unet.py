"""LaDI-VTON's try-on UNet: the inpainting UNet widened from 9 to 31 input channels, and its inputs.

Stable Diffusion 2 inpainting denoises a latent ``z_t`` (4 channels) given the inpainting mask (1 channel, at the
latent size) and the latent of the masked person (4 channels): its ``conv_in`` reads 9 channels. LaDI-VTON
(Morelli et al., ACM MM 2023, arXiv 2305.13501) adds two conditions as extra input channels: the 18 pose
heatmaps resized to the latent size and the latent of the warped garment (4), 31 channels in all (27 in the
"no garment input" ablation). :func:`widen_conv_in` widens a trained inpainting UNet: the 9 old channels keep
their weights and the new ones start at zero, so the widened UNet computes exactly what the inpainting UNet did
until fine-tuning moves the new weights. :func:`tryon_unet_input` concatenates the inputs in the official order
(:data:`INPUT_LAYOUT`), checking each shape.

Classifier-free guidance needs the UNet to know the unconditional case, so during fine-tuning each condition is
dropped independently with probability 0.2: the text becomes the empty prompt, the pose map and the garment latent
become zeros (:func:`drop_conditions`). At sampling time the negative branch is the empty prompt, zero pose and
zero garment latent.

Fidelity (official code: miccunifi/ladi-vton; "not checked" = not verified against the paper's text here):

| point | paper | official code | vtonlab |
|---|---|---|---|
| input channels [1] | not checked | 31 = 4 + 1 + 4 + 18 + 4; 27 without garment | same (:data:`INPUT_LAYOUT`) |
| input order [2] | not checked | noisy, mask, masked-image latent, pose, garment | same (:func:`tryon_unet_input`) |
| new ``conv_in`` weights [3] | not checked | kaiming, then x 0: zeros; old 9 and bias copied | same (:func:`widen_conv_in`) |
| config [4] | - | ``unet.config['in_channels'] = 31`` | ``register_to_config``: reloads as 31 |
| pose to latent size [5] | not checked | bilinear, align_corners False, no antialias | same (:func:`resize_pose`) |
| mask to latent size [6] | - | nearest (``F.interpolate``'s default) | same (:func:`resize_mask`) |
| condition dropout [7] | not checked | p 0.2 each, per sample, independent | same draws, same order (:func:`drop_conditions`) |
| dropped values [7] | - | text ``""``, pose 0, garment latent 0 (in place) | same, on copies (inputs untouched) |
| no-garment variant [7] | - | garment mask still drawn | same: both variants use the same draws |

Sources (``src/train_vto.py`` unless named): [1] 259; [2] 623-628, ``vto_pipelines/tryon_pipe.py`` 723-729;
[3] 263-276; [4] 277; [5] 526-527 and ``tryon_pipe.py`` 632-634, both ``size=(H // 8, W // 8), mode="bilinear"``;
[6] 579 and ``tryon_pipe.py`` 434-436; [7] 187 (``--uncond_fraction`` 0.2), 597-604 (masks drawn for text, garment,
pose in that order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "INPUT_LAYOUT", "BASE_CHANNELS", "TRYON_CHANNELS", "UNCOND_FRACTION", "input_channels", "widen_conv_in",
    "tryon_unet_input", "resize_pose", "resize_mask", "DroppedConditions", "drop_conditions",
]

INPUT_LAYOUT: tuple[tuple[str, int], ...] = (
    ("noisy_latent", 4),
    ("mask", 1),
    ("masked_image_latent", 4),
    ("pose", 18),
    ("garment_latent", 4),
)
"""The try-on UNet's input channels in order: ``(name, channels)`` (``train_vto.py`` 623-628)."""

BASE_CHANNELS = sum(c for _, c in INPUT_LAYOUT[:3])
"""9: the inpainting UNet's input (noisy latent, mask, masked-image latent)."""

TRYON_CHANNELS = sum(c for _, c in INPUT_LAYOUT)
"""31: the try-on UNet's input with the garment latent (27 without it)."""

UNCOND_FRACTION = 0.2
"""Probability of dropping each condition during fine-tuning (``--uncond_fraction`` in ``train_vto.py``)."""

_CH = dict(INPUT_LAYOUT)


def input_channels(garment: bool = True) -> int:
    """31 input channels, or 27 for the "no garment input" variant (``cloth_input_type == "none"``)."""
    return TRYON_CHANNELS if garment else TRYON_CHANNELS - _CH["garment_latent"]


@torch.no_grad()
def widen_conv_in(unet: nn.Module, in_channels: int = TRYON_CHANNELS) -> nn.Module:
    """Widen a diffusers ``UNet2DConditionModel``'s ``conv_in`` to ``in_channels`` input channels, in place.

    The new ``conv_in`` has the old one's output channels, kernel, stride, padding, dtype and device; its
    weight ``(C_out, in_channels, k, k)`` holds the old weight in input channels ``[:C_old]`` and zeros in
    ``[C_old:]``, and the old bias is copied. With zeros in the new channels' inputs, or at initialisation
    whatever they hold, the widened UNet computes what the old one did. The UNet's config records the new
    ``in_channels`` (``register_to_config``), so ``save_pretrained`` / ``from_pretrained`` round-trips it.
    Returns ``unet``.
    """
    conv = getattr(unet, "conv_in", None)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"unet: expected a diffusers UNet2DConditionModel with an nn.Conv2d conv_in, got "
                        f"{type(unet).__name__} with conv_in {type(conv).__name__}")
    if not hasattr(unet, "register_to_config"):
        raise TypeError(f"unet: expected a diffusers ModelMixin (register_to_config), got {type(unet).__name__}")
    old = conv.in_channels
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels <= old:
        raise ValueError(f"in_channels: expected an int larger than the UNet's current {old} input channels "
                         f"(LaDI-VTON: {TRYON_CHANNELS}, or {input_channels(False)} without garment), got {in_channels!r}")
    if conv.groups != 1:
        raise ValueError(f"unet.conv_in has groups={conv.groups}; only an ungrouped conv_in can be widened")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                    device=conv.weight.device, dtype=conv.weight.dtype)
    new.weight.zero_()
    new.weight[:, :old] = conv.weight
    if conv.bias is not None:
        new.bias.copy_(conv.bias)
    new.weight.requires_grad_(conv.weight.requires_grad)
    if new.bias is not None:
        new.bias.requires_grad_(conv.bias.requires_grad)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


def _shape(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _check_part(name: str, x: object, batch: int, latent: tuple[int, int], hint: str = "") -> Tensor:
    expected = (batch, _CH[name], *latent)
    if not isinstance(x, Tensor) or not x.is_floating_point() or tuple(x.shape) != expected:
        what = f"{x.dtype} {_shape(x)}" if isinstance(x, Tensor) else _shape(x)
        raise ValueError(f"{name}: expected a float tensor (B, {_CH[name]}, h, w) = {expected} (the noisy latent's "
                         f"batch and latent size){hint}, got {what}")
    return x


def tryon_unet_input(noisy: Tensor, mask: Tensor, masked_latents: Tensor, pose: Tensor,
                     garment_latents: Tensor | None = None) -> Tensor:
    """Concatenate the try-on UNet's input in the official order (:data:`INPUT_LAYOUT`).

    ``noisy`` ``(B, 4, h, w)``: the noisy latent ``z_t`` (already ``scheduler.scale_model_input``-ed at sampling);
    ``mask`` ``(B, 1, h, w)``: the inpainting mask at the latent size (:func:`resize_mask`); ``masked_latents``
    ``(B, 4, h, w)``: the scaled latent of the masked person; ``pose`` ``(B, 18, h, w)``: pose heatmaps at the
    latent size (:func:`resize_pose`); ``garment_latents`` ``(B, 4, h, w)``: the scaled latent of the warped
    garment, or ``None`` for the 27-channel variant. Returns ``(B, 31, h, w)`` (or ``(B, 27, h, w)``) in
    ``noisy``'s dtype.
    """
    if not isinstance(noisy, Tensor) or not noisy.is_floating_point() or noisy.ndim != 4 \
            or noisy.shape[1] != _CH["noisy_latent"]:
        raise ValueError(f"noisy_latent: expected a float tensor (B, {_CH['noisy_latent']}, h, w), got "
                         f"{_shape(noisy)}")
    b, latent = noisy.shape[0], (noisy.shape[2], noisy.shape[3])
    parts = [noisy,
             _check_part("mask", mask, b, latent, "; resize an image-size mask with resize_mask"),
             _check_part("masked_image_latent", masked_latents, b, latent),
             _check_part("pose", pose, b, latent, "; resize image-size heatmaps with resize_pose")]
    if garment_latents is not None:
        parts.append(_check_part("garment_latent", garment_latents, b, latent))
    return torch.cat([p.to(noisy.dtype) for p in parts], dim=1)


def _latent_size(latent_size: Sequence[int]) -> tuple[int, int]:
    size = tuple(latent_size) if isinstance(latent_size, (tuple, list, torch.Size)) else ()
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"latent_size: expected (h, w), two positive ints (the image size / 8), got {latent_size!r}")
    return size  # type: ignore[return-value]


def resize_pose(pose_map: Tensor, latent_size: Sequence[int]) -> Tensor:
    """Pose heatmaps ``(B, 18, H, W)`` -> ``(B, 18, h, w)`` at the latent size, as the official code resizes them.

    Bilinear, ``align_corners=False``, no antialiasing (``train_vto.py`` 526-527, ``tryon_pipe.py`` 632-634, which
    pass ``size=(H // 8, W // 8)``). Downsampling by 8 without antialiasing samples the heatmaps: a keypoint
    blob narrower than about 8 pixels can fall between samples.
    """
    size = _latent_size(latent_size)
    n = _CH["pose"]
    if not isinstance(pose_map, Tensor) or not pose_map.is_floating_point() or pose_map.ndim != 4 \
            or pose_map.shape[1] != n:
        raise ValueError(f"pose_map: expected a float tensor (B, {n}, H, W) of COCO-18 heatmaps, got {_shape(pose_map)}")
    return F.interpolate(pose_map, size=size, mode="bilinear", align_corners=False)


def resize_mask(mask: Tensor, latent_size: Sequence[int]) -> Tensor:
    """Inpainting mask ``(B, 1, H, W)`` -> ``(B, 1, h, w)``: nearest, as the official code (``F.interpolate``'s
    default mode; ``train_vto.py`` 579, ``tryon_pipe.py`` 434-436)."""
    size = _latent_size(latent_size)
    if not isinstance(mask, Tensor) or not mask.is_floating_point() or mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask: expected a float tensor (B, 1, H, W), got {_shape(mask)}")
    return F.interpolate(mask, size=size, mode="nearest")


class DroppedConditions(NamedTuple):
    """Output of :func:`drop_conditions`: the conditions after dropout and which samples lost each one.

    ``texts``: list of ``B`` prompts (``""`` where dropped); ``pose`` ``(B, 18, h, w)``; ``garment_latents``
    ``(B, 4, h, w)`` or ``None``; ``text_dropped``, ``pose_dropped``, ``garment_dropped``: bool ``(B,)`` on
    ``pose``'s device.
    """

    texts: list[str]
    pose: Tensor
    garment_latents: Tensor | None
    text_dropped: Tensor
    pose_dropped: Tensor
    garment_dropped: Tensor


def drop_conditions(texts: Sequence[str], pose: Tensor, garment_latents: Tensor | None = None, p: float = UNCOND_FRACTION,
                    generator: torch.Generator | None = None) -> DroppedConditions:
    """Drop each condition of each sample independently with probability ``p`` (classifier-free guidance training).

    Three masks ``u < p`` with ``u ~ U(0, 1)`` per sample are drawn in the official order (text, garment, pose;
    ``train_vto.py`` 597-604), on ``generator``'s device (or ``pose``'s): dropped texts become ``""``, dropped pose
    maps and garment latents become zeros. The garment mask is drawn even when ``garment_latents`` is ``None``.
    The inputs are not modified.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p: expected a probability in [0, 1] (LaDI-VTON: {UNCOND_FRACTION}), got {p!r}")
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"texts: expected a sequence of B strings, got {type(texts).__name__}")
    if not isinstance(pose, Tensor) or pose.ndim != 4 or pose.shape[1] != _CH["pose"]:
        raise ValueError(f"pose: expected a tensor (B, {_CH['pose']}, h, w), got {_shape(pose)}")
    b = pose.shape[0]
    if len(texts) != b:
        raise ValueError(f"texts: expected {b} prompts (the pose batch), got {len(texts)}")
    if garment_latents is not None and (not isinstance(garment_latents, Tensor) or garment_latents.ndim != 4
                                        or garment_latents.shape[0] != b
                                        or garment_latents.shape[1] != _CH["garment_latent"]):
        raise ValueError(f"garment_latents: expected a tensor ({b}, {_CH['garment_latent']}, h, w) or None, "
                         f"got {_shape(garment_latents)}")
    device = generator.device if generator is not None else pose.device
    draws = [torch.rand(b, generator=generator, device=device) < p for _ in range(3)]
    text_m, garment_m, pose_m = (d.to(pose.device) for d in draws)
    out_texts = ["" if bool(m) else t for t, m in zip(texts, text_m.tolist())]
    out_pose = torch.where(pose_m[:, None, None, None], torch.zeros_like(pose), pose)
    out_garment = None
    if garment_latents is not None:
        drop = garment_m.to(garment_latents.device)[:, None, None, None]
        out_garment = torch.where(drop, torch.zeros_like(garment_latents), garment_latents)
    return DroppedConditions(out_texts, out_pose, out_garment, text_m, pose_m, garment_m)
