"""Controlled degradations of try-on results, to see what each metric sees (notebook 05).

Each function takes images (N, 3, H, W) in [0, 1] and a strength; strength 0 returns the input
unchanged, and every function is pure (no randomness). They imitate typical try-on failures:

* :func:`gaussian_blur` — a blurry generator (sigma in pixels);
* :func:`hue_rotate` — the right garment in the wrong colour (rotation of the RGB cube about its
  grey axis, which keeps grey levels and roughly keeps luminance);
* :func:`shift_region` — a misaligned warp: the garment region moved by (dx, dy) pixels, the
  uncovered part filled with ``fill`` (e.g. the agnostic image's grey);
* :func:`texture_swap` — the wrong garment: the region blended towards a donor image (the garment of
  another sample), ``alpha`` = 1 is a full swap.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vtonlab.metrics.checks import check_images


def _mask(mask: torch.Tensor | None, x: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """(N, 1, H, W) float mask broadcast to ``x``; all ones when ``mask`` is None."""
    n, _, h, w = x.shape
    if mask is None:
        return torch.ones(n, 1, h, w, dtype=x.dtype, device=x.device)
    m = mask.to(x.dtype)
    if m.ndim == 3:
        m = m[:, None] if m.shape[0] == n and n != 1 else m[None]
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != (h, w) or m.shape[0] not in (1, n):
        raise ValueError(f"{name}: expected shape (N, 1, {h}, {w}) with N = 1 or {n}, got {tuple(mask.shape)}")
    return m.expand(n, 1, h, w)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with standard deviation ``sigma`` pixels (kernel radius ceil(3 sigma)),
    reflection padding. (N, 3, H, W) -> (N, 3, H, W)."""
    x = check_images(images, "images")
    if sigma < 0:
        raise ValueError(f"sigma: expected >= 0, got {sigma}")
    if sigma == 0:
        return x.clone()
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, min(x.shape[-2:]) - 1)  # reflection padding needs radius < size
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x.clamp(0, 1)


def hue_rotation_matrix(degrees: float) -> torch.Tensor:
    """3x3 rotation of RGB space by ``degrees`` about the grey axis (1, 1, 1)/sqrt(3) (Rodrigues' formula)."""
    a = math.radians(degrees)
    u = torch.full((3,), 1 / math.sqrt(3), dtype=torch.float64)
    ux = torch.tensor([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]], dtype=torch.float64)
    r = math.cos(a) * torch.eye(3, dtype=torch.float64) + math.sin(a) * ux + (1 - math.cos(a)) * torch.outer(u, u)
    return r.float()


def hue_rotate(images: torch.Tensor, degrees: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate hues by ``degrees`` inside ``mask`` (N, 1, H, W) (whole image when None); clamps to [0, 1]."""
    x = check_images(images, "images")
    m = _mask(mask, x)
    r = hue_rotation_matrix(degrees).to(x)
    rotated = torch.einsum("ij,njhw->nihw", r, x).clamp(0, 1)
    return m * rotated + (1 - m) * x


def _translate(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Content moved right by ``dx`` and down by ``dy`` pixels; vacated pixels are zero."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        return out
    src = x[..., max(0, -dy): h - max(0, dy), max(0, -dx): w - max(0, dx)]
    out[..., max(0, dy): max(0, dy) + src.shape[-2], max(0, dx): max(0, dx) + src.shape[-1]] = src
    return out


def shift_region(images: torch.Tensor, mask: torch.Tensor, dx: int, dy: int = 0,
                 fill: torch.Tensor | float = 0.5) -> torch.Tensor:
    """A misaligned garment: the pixels under ``mask`` moved by (dx, dy) whole pixels (x right, y down).

    Pixels of the original region that the moved region no longer covers take ``fill`` (an image
    (N, 3, H, W) in [0, 1], e.g. the agnostic person, or a grey level); everything else is kept.
    """
    x = check_images(images, "images")
    m = _mask(mask, x)
    moved = _translate(x * m, int(dx), int(dy))
    moved_m = _translate(m, int(dx), int(dy))
    if isinstance(fill, torch.Tensor):
        fill_img = check_images(fill, "fill").to(x)
        if fill_img.shape != x.shape:
            raise ValueError(f"fill: expected shape {tuple(x.shape)}, got {tuple(fill_img.shape)}")
    else:
        fill_img = torch.full_like(x, float(fill))
    uncovered = m * (1 - moved_m)
    out = x * (1 - uncovered) + fill_img * uncovered
    return out * (1 - moved_m) + moved * moved_m


def texture_swap(images: torch.Tensor, mask: torch.Tensor, donor: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """The region under ``mask`` blended towards ``donor`` (N, 3, H, W): alpha 0 keeps, 1 swaps fully."""
    x = check_images(images, "images")
    d = check_images(donor, "donor").to(x)
    if d.shape != x.shape:
        raise ValueError(f"donor: expected shape {tuple(x.shape)}, got {tuple(d.shape)}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha: expected a value in [0, 1], got {alpha}")
    m = _mask(mask, x) * alpha
    return x * (1 - m) + d * m
