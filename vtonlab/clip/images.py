"""Image inputs of CLIP: vtonlab's model range [-1, 1] to CLIP's standardised square pixels.

:func:`to_model_images` accepts the renderer's uint8 garments or float tensors; :func:`preprocess`
pads (or centre-crops, as OpenAI's CLIP preprocessing does) to the square input of the vision
transformer and standardises with CLIP's per-channel mean and std.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_FITS = ("pad", "crop")


def to_model_images(images: Any) -> torch.Tensor:
    """Images as float ``(B, 3, H, W)`` in [-1, 1] (vtonlab's convention for model inputs).

    Accepts a float tensor ``(3, H, W)`` / ``(B, 3, H, W)`` already in [-1, 1], or uint8 arrays or
    tensors ``(H, W, 3)`` / ``(B, H, W, 3)`` (e.g. the renderer's ``cloth``), or a list of those.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is an empty list")
        return torch.cat([to_model_images(im) for im in images])
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor, a numpy array or a list of them, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (H, W, 3) or (B, H, W, 3), got {tuple(images.shape)}")
        return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 (H, W, 3) or float (3, H, W) in [-1, 1], got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"float images must be (3, H, W) or (B, 3, H, W), got {tuple(images.shape)}")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"float images must lie in [-1, 1] (vtonlab's model range), got values in [{lo:.3g}, {hi:.3g}]; "
                         "convert [0, 1] images with x * 2 - 1")
    return images


def preprocess(images: torch.Tensor, image_size: int, mean: Sequence[float] = OPENAI_CLIP_MEAN,
               std: Sequence[float] = OPENAI_CLIP_STD, fit: str = "pad") -> torch.Tensor:
    """CLIP's input normalisation: ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 3, S, S)`` standardised pixels.

    ``fit="pad"`` pads the short side with white (garments are photographed on white) and resizes
    the square, so no part of a tall garment is cut off; ``fit="crop"`` resizes the short side to
    ``S`` and centre-crops, as OpenAI's CLIP preprocessing does. Then ``(x - mean) / std`` on [0, 1]
    values with CLIP's per-channel mean and std.
    """
    if fit not in _FITS:
        raise ValueError(f"fit must be one of {_FITS}, got {fit!r}")
    x = to_model_images(images)
    _, _, h, w = x.shape
    if fit == "pad":
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        x = F.pad(x, (left, side - w - left, top, side - h - top), value=1.0)
    else:
        scale = image_size / min(h, w)
        nh, nw = max(image_size, round(h * scale)), max(image_size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - image_size) // 2, (nw - image_size) // 2
        x = x[:, :, top:top + image_size, left:left + image_size]
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=True)
    x = ((x + 1) / 2).clamp(0, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s
