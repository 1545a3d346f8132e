"""The person representation of the CP-VTON family: pose maps, body shape, head, masks.

A try-on model may not see the garment the person already wears (it would copy it), so it gets a
*clothing-agnostic* description of the person instead (CP-VTON, Wang et al. ECCV 2018, Sec. 3.1;
VITON-HD; LaDI-VTON, Morelli et al. ACM MM 2023, Sec. 3):

* pose: 18 COCO keypoints as 18 heatmaps (:func:`pose_heatmaps`),
* body shape: a blurred low-resolution body mask (:func:`body_shape`),
* head: the RGB of hair and face, everything else blanked (:func:`head_image`),
* agnostic image / inpainting mask: the person with the garment region (and the arms, whose
  silhouette betrays the sleeve length) removed (:func:`inpaint_mask`, :func:`agnostic_image`).

All functions are pure torch functions on label maps in the internal (CIHP) label set of
:mod:`vtonlab.data.labels`. They take a batch or a single sample: ``parse`` is (..., H, W) long,
masks are returned as (..., 1, H, W) float in {0, 1}, keypoints are (..., 18, 3) with x, y in
pixels (pixel centres at integers) and a confidence (0 = missing). Every radius is given for a
256-pixel-high image and scaled with the height (:func:`scaled_radius`).
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from vtonlab.data.labels import (
    ARM_LABELS,
    CATEGORIES,
    COCO18_LIMBS,
    COCO18_NAMES,
    GARMENT_LABELS,
    HEAD_LABELS,
    LEG_LABELS,
    LOWER_GARMENT_LABELS,
    NECK_LABELS,
    SHOE_LABELS,
    UPPER_GARMENT_LABELS,
)

REFERENCE_HEIGHT = 256
"""Radii below are in pixels of a 256-pixel-high image (the papers' 256x192)."""

POSE_STYLES: dict[str, tuple[str, float, int]] = {
    "cpvton": ("square", 5.0, 256),  # CP-VTON: filled 11x11 squares (radius 5) at 256x192
    "ladi": ("gaussian", 9.0, 512),  # LaDI-VTON: exp(-d^2 / 9^2) at 512x384 (its posemap.py), peak 1
    "mgvton": ("disc", 4.0, 256),  # MG-VTON: filled discs of radius 4 at 256x192
}
"""Heatmap shape, radius and the image height that radius is given for, per paper's pose representation.

LaDI-VTON's official code draws its Gaussians with sigma 9 px on 512x384 images (``kpoint_to_heatmap(...,
9)``); at 256x192 the same heatmap has sigma 4.5 px."""

ARM_RADIUS = 8.0
"""Half-width of the pose-drawn arm strokes added to the inpainting mask (px at 256 height)."""
DILATE_RADIUS = 5.0
"""Dilation of the garment region in the inpainting mask (px at 256 height)."""
BODY_SHAPE_FACTOR = 16
"""CP-VTON downsamples the body mask by 16 (256x192 -> 16x12)."""


def scaled_radius(radius: float, height: int, reference_height: int = REFERENCE_HEIGHT) -> float:
    """A radius given for a ``reference_height``-pixel-high image, scaled to ``height``: ``radius * height / reference_height``."""
    return float(radius) * float(height) / float(reference_height)


def _flatten(x: torch.Tensor, n_trailing: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    lead = tuple(x.shape[: x.ndim - n_trailing])
    return x.reshape((-1, *x.shape[x.ndim - n_trailing :])), lead


def _check_keypoints(keypoints: torch.Tensor | np.ndarray) -> torch.Tensor:
    kp = torch.as_tensor(np.asarray(keypoints) if not isinstance(keypoints, torch.Tensor) else keypoints)
    kp = kp.float()
    if kp.ndim < 2 or kp.shape[-1] != 3 or kp.shape[-2] != len(COCO18_NAMES):
        raise ValueError(f"keypoints: expected shape (..., 18, 3) (COCO-18 x, y, confidence), got {tuple(kp.shape)}")
    return kp


def _check_parse(parse: torch.Tensor | np.ndarray) -> torch.Tensor:
    p = torch.as_tensor(np.asarray(parse) if not isinstance(parse, torch.Tensor) else parse)
    if p.ndim < 2:
        raise ValueError(f"parse: expected a label map (..., H, W), got shape {tuple(p.shape)}")
    if p.is_floating_point():
        raise ValueError(f"parse: expected integer labels, got dtype {p.dtype}")
    return p.long()


def pose_heatmaps(
    keypoints: torch.Tensor | np.ndarray,
    size: tuple[int, int],
    style: str = "cpvton",
    radius: float | None = None,
) -> torch.Tensor:
    """One heatmap per COCO-18 keypoint, in the style of CP-VTON, LaDI-VTON or MG-VTON.

    With ``d`` the distance of a pixel centre (x, y) from the keypoint (kx, ky) and ``r`` the
    style's radius scaled to the image height:

    * ``"cpvton"`` (CP-VTON's person representation): ``1`` where ``max(|x-kx|, |y-ky|) <= r`` (a filled
      square), r = 5 at 256 px height;
    * ``"ladi"`` (LaDI-VTON pose maps): ``exp(-d^2 / r^2)`` divided by its maximum over the image (as the
      official ``kpoint_to_heatmap``), r = 9 at 512 px height (4.5 at 256);
    * ``"mgvton"`` (MG-VTON pose representation): ``1`` where ``d <= r`` (a filled disc), r = 4 at 256 px height.

    A keypoint with confidence 0 (missing) gives an all-zero map in every style.

    Args:
        keypoints: (..., 18, 3) x, y in pixels, confidence.
        size: (H, W) of the maps.
        style: one of :data:`POSE_STYLES`.
        radius: override the radius in pixels of *this* image (no scaling applied).

    Returns:
        float tensor (..., 18, H, W) in [0, 1].
    """
    if style not in POSE_STYLES:
        raise ValueError(f"style: expected one of {sorted(POSE_STYLES)}, got {style!r}")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise ValueError(f"size: expected positive (H, W), got {size}")
    shape, base, reference = POSE_STYLES[style]
    r = scaled_radius(base, height, reference) if radius is None else float(radius)
    kp = _check_keypoints(keypoints)
    flat, lead = _flatten(kp, 2)
    ys = torch.arange(height, dtype=torch.float32, device=flat.device).view(1, 1, height, 1)
    xs = torch.arange(width, dtype=torch.float32, device=flat.device).view(1, 1, 1, width)
    dx = xs - flat[:, :, 0, None, None]
    dy = ys - flat[:, :, 1, None, None]
    if shape == "square":
        maps = ((dx.abs() <= r) & (dy.abs() <= r)).float()
    elif shape == "disc":
        maps = (dx * dx + dy * dy <= r * r).float()
    else:
        maps = torch.exp(-(dx * dx + dy * dy) / (r * r))
        maps = maps / (maps.amax(dim=(-2, -1), keepdim=True) + torch.finfo(torch.float32).eps)
    maps = maps * (flat[:, :, 2] > 0).float()[:, :, None, None]
    return maps.reshape(*lead, flat.shape[1], height, width)


def label_mask(parse: torch.Tensor | np.ndarray, labels: Iterable[int]) -> torch.Tensor:
    """Mask of the pixels whose label is in ``labels``: (..., H, W) -> float (..., 1, H, W)."""
    p = _check_parse(parse)
    values = torch.as_tensor(sorted(set(int(v) for v in labels)), dtype=torch.long, device=p.device)
    return torch.isin(p, values).float().unsqueeze(-3)


def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"category: expected one of {list(CATEGORIES)}, got {category!r}")


def worn_mask(parse: torch.Tensor | np.ndarray, category: str = "upper_body") -> torch.Tensor:
    """The garment of ``category`` worn by the person: (..., H, W) -> (..., 1, H, W).

    ``upper_body`` follows CP-VTON (upper-clothes + dress + coat); ``lower_body`` is pants + skirt;
    ``dresses`` is the dress.
    """
    _check_category(category)
    return label_mask(parse, GARMENT_LABELS[category])


def body_shape(parse: torch.Tensor | np.ndarray, factor: int = BODY_SHAPE_FACTOR) -> torch.Tensor:
    """CP-VTON body shape (Sec. 3.1): the body mask downsampled by ``factor`` and upsampled back.

    The binary mask of every non-background pixel is reduced to (H/16, W/16) (16x12 at 256x192)
    with an area-averaging (anti-aliased bilinear) resize and brought back to (H, W) bilinearly,
    which blurs it: the model sees the rough body outline, not the garment's silhouette.

    Returns:
        float tensor (..., 1, H, W) in [0, 1].
    """
    if factor < 1:
        raise ValueError(f"factor: expected >= 1, got {factor}")
    p = _check_parse(parse)
    flat, lead = _flatten(p, 2)
    height, width = flat.shape[-2:]
    body = (flat > 0).float().unsqueeze(1)
    small = (max(1, height // factor), max(1, width // factor))
    low = F.interpolate(body, size=small, mode="bilinear", align_corners=False, antialias=True)
    up = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    return up.clamp(0, 1).reshape(*lead, 1, height, width)


def head_mask(parse: torch.Tensor | np.ndarray) -> torch.Tensor:
    """CP-VTON head region: hat, hair, sunglasses and face -> (..., 1, H, W)."""
    return label_mask(parse, HEAD_LABELS)


def head_image(image: torch.Tensor, parse: torch.Tensor | np.ndarray, fill: float = -1.0) -> torch.Tensor:
    """CP-VTON head image: ``image * head + fill * (1 - head)``.

    Args:
        image: (..., 3, H, W) in [-1, 1].
        parse: (..., H, W) internal labels.
        fill: value outside the head (CP-VTON uses -1, black in [-1, 1]).

    Returns:
        (..., 3, H, W).
    """
    m = head_mask(parse).to(image.dtype)
    return image * m + fill * (1 - m)


def dilate(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Binary dilation of a mask (..., 1, H, W) by a disc of ``radius`` pixels (``floor`` taken)."""
    r = int(np.floor(radius))
    if r < 1:
        return (mask > 0.5).to(mask.dtype) if mask.is_floating_point() else mask.float()
    flat, lead = _flatten(mask.float(), 3)
    yy, xx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    kernel = ((xx * xx + yy * yy) <= r * r).float().to(flat.device)[None, None]
    out = F.conv2d((flat > 0.5).float(), kernel, padding=r) > 0.5
    return out.float().reshape(*lead, *flat.shape[1:])


def segments_mask(
    starts: torch.Tensor, ends: torch.Tensor, valid: torch.Tensor, size: tuple[int, int], radius: float
) -> torch.Tensor:
    """Union of thick line segments: pixels within ``radius`` of a segment.

    Args:
        starts, ends: (..., S, 2) segment end points (x, y) in pixels.
        valid: (..., S) bool, segments to draw.
        size: (H, W).
        radius: half-width in pixels.

    Returns:
        (..., 1, H, W) float in {0, 1}.
    """
    height, width = size
    a, lead = _flatten(starts.float(), 2)
    b, _ = _flatten(ends.float(), 2)
    v = valid.reshape(a.shape[0], a.shape[1])
    ys = torch.arange(height, dtype=torch.float32, device=a.device).view(1, 1, height, 1)
    xs = torch.arange(width, dtype=torch.float32, device=a.device).view(1, 1, 1, width)
    ax, ay = a[..., 0, None, None], a[..., 1, None, None]
    dx, dy = (b[..., 0] - a[..., 0])[..., None, None], (b[..., 1] - a[..., 1])[..., None, None]
    length2 = (dx * dx + dy * dy).clamp_min(1e-12)
    t = (((xs - ax) * dx + (ys - ay) * dy) / length2).clamp(0, 1)
    ex, ey = xs - (ax + t * dx), ys - (ay + t * dy)
    near = (ex * ex + ey * ey <= radius * radius) & v[..., None, None]
    return near.any(dim=1, keepdim=True).float().reshape(*lead, 1, height, width)


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """Fill the holes of a binary mask (..., 1, H, W): background regions not connected to the border.

    Computed per image with ``scipy.ndimage.binary_fill_holes`` (4-connected background) on the CPU.
    """
    from scipy import ndimage

    flat, lead = _flatten(mask, 3)
    arr = (flat > 0.5).cpu().numpy()
    out = np.stack([ndimage.binary_fill_holes(a[0])[None] for a in arr]) if len(arr) else arr
    return torch.from_numpy(out).to(device=mask.device, dtype=torch.float32).reshape(*lead, *flat.shape[1:])


_ARM_SEGMENTS = [(2, 3), (3, 4), (5, 6), (6, 7)]  # shoulder-elbow, elbow-wrist, both sides


def arms_from_pose(
    keypoints: torch.Tensor | np.ndarray, size: tuple[int, int], radius: float | None = None
) -> torch.Tensor:
    """Thick strokes along both arms (shoulder-elbow-wrist) drawn from the keypoints -> (..., 1, H, W).

    VITON-HD and LaDI-VTON add such strokes to the agnostic / inpainting mask so that the arm
    silhouette does not reveal the sleeve length. ``radius`` defaults to :data:`ARM_RADIUS` scaled.
    """
    kp = _check_keypoints(keypoints)
    r = scaled_radius(ARM_RADIUS, size[0]) if radius is None else float(radius)
    i0 = torch.tensor([s for s, _ in _ARM_SEGMENTS])
    i1 = torch.tensor([e for _, e in _ARM_SEGMENTS])
    starts, ends = kp[..., i0, :2], kp[..., i1, :2]
    valid = (kp[..., i0, 2] > 0) & (kp[..., i1, 2] > 0)
    return segments_mask(starts, ends, valid, size, r)


def inpaint_mask(
    parse: torch.Tensor | np.ndarray,
    keypoints: torch.Tensor | np.ndarray | None = None,
    category: str = "upper_body",
    dilate_radius: float | None = None,
    arm_radius: float | None = None,
) -> torch.Tensor:
    """LaDI-VTON inpainting mask (1 = to be generated): the garment region dilated, minus kept regions.

    ``M = fill_holes(dilate(G) | A) & ~K`` where, for

    * ``upper_body``: G = upper garment + arms + neck, A = arm strokes from the pose,
      K = head + lower garments + legs + shoes;
    * ``lower_body``: G = lower garment + legs, no A, K = head + upper garments + arms + neck + shoes;
    * ``dresses``: G = dress + upper + lower garments + arms + legs + neck, A = arm strokes, K = head + shoes.

    Holes are filled (a hand on the hip encloses background between arm and torso whose shape would
    betray the garment's outline). The same mask greys out the agnostic image (:func:`agnostic_image`), as VITON-HD's agnostic
    person and LaDI-VTON's masked image are built from the same region.

    Args:
        parse: (..., H, W) internal labels.
        keypoints: (..., 18, 3); ``None`` skips the arm strokes.
        category: ``upper_body`` | ``lower_body`` | ``dresses``.
        dilate_radius, arm_radius: pixels of this image (default: :data:`DILATE_RADIUS`, :data:`ARM_RADIUS` scaled).

    Returns:
        (..., 1, H, W) float in {0, 1}.
    """
    _check_category(category)
    p = _check_parse(parse)
    height, width = p.shape[-2:]
    if category == "upper_body":
        region = UPPER_GARMENT_LABELS + ARM_LABELS + NECK_LABELS
        keep = HEAD_LABELS + LOWER_GARMENT_LABELS + LEG_LABELS + SHOE_LABELS
        arms = True
    elif category == "lower_body":
        region = LOWER_GARMENT_LABELS + LEG_LABELS
        keep = HEAD_LABELS + UPPER_GARMENT_LABELS + ARM_LABELS + NECK_LABELS + SHOE_LABELS
        arms = False
    else:
        region = UPPER_GARMENT_LABELS + LOWER_GARMENT_LABELS + ARM_LABELS + LEG_LABELS + NECK_LABELS
        keep = HEAD_LABELS + SHOE_LABELS
        arms = True
    r = scaled_radius(DILATE_RADIUS, height) if dilate_radius is None else float(dilate_radius)
    mask = dilate(label_mask(p, region), r)
    if arms and keypoints is not None:
        kp = _check_keypoints(keypoints)
        if kp.shape[:-2] != p.shape[:-2]:
            raise ValueError(
                f"keypoints: batch shape {tuple(kp.shape[:-2])} does not match parse batch shape {tuple(p.shape[:-2])}"
            )
        mask = torch.maximum(mask, arms_from_pose(kp.to(p.device), (height, width), arm_radius))
    return fill_holes(mask) * (1 - label_mask(p, keep))


def agnostic_image(image: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """The clothing-agnostic person: ``image * (1 - mask) + fill * mask`` (0 = mid grey in [-1, 1]).

    Args:
        image: (..., 3, H, W) in [-1, 1].
        mask: (..., 1, H, W) region to remove (e.g. :func:`inpaint_mask`).
    """
    m = mask.to(image.dtype)
    return image * (1 - m) + fill * m


def limb_colours(n: int = len(COCO18_LIMBS)) -> np.ndarray:
    """``n`` distinct saturated colours (uint8 (n, 3)) for drawing skeleton limbs, hue-ordered."""
    return np.array(
        [[round(255 * c) for c in colorsys.hsv_to_rgb(i / n, 1.0, 1.0)] for i in range(n)], dtype=np.uint8
    )


def skeleton_image(
    keypoints: np.ndarray | torch.Tensor,
    size: tuple[int, int],
    thickness: float | None = None,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Draw the COCO-18 skeleton as OpenPose renders it (coloured limbs and joints on black).

    Args:
        keypoints: (18, 3) x, y in pixels, confidence (0 = missing: its limbs are not drawn).
        size: (H, W) of the picture.
        thickness: limb width in pixels (default 4 px at 256 height, at least 1).
        background: optional uint8 (H, W, 3) to draw on instead of black.

    Returns:
        uint8 (H, W, 3).
    """
    from PIL import Image, ImageDraw

    # NumPy only (no torch ops): this runs in the forked writer processes of SynthVTON rendering
    kp = keypoints.detach().cpu().numpy() if isinstance(keypoints, torch.Tensor) else np.asarray(keypoints)
    kp = kp.astype(np.float32)
    if kp.shape != (len(COCO18_NAMES), 3):
        raise ValueError(f"keypoints: skeleton_image draws one skeleton of shape (18, 3), got {kp.shape}")
    height, width = int(size[0]), int(size[1])
    if background is None:
        canvas = Image.new("RGB", (width, height))
    else:
        background = np.asarray(background, dtype=np.uint8)
        if background.shape != (height, width, 3):
            raise ValueError(f"background: expected shape {(height, width, 3)}, got {background.shape}")
        canvas = Image.fromarray(background)
    draw = ImageDraw.Draw(canvas)
    w = max(1, round(scaled_radius(4.0, height) if thickness is None else thickness))
    colours = limb_colours()
    for colour, (i, j) in zip(colours, COCO18_LIMBS, strict=True):
        if kp[i, 2] > 0 and kp[j, 2] > 0:
            draw.line([(float(kp[i, 0]), float(kp[i, 1])), (float(kp[j, 0]), float(kp[j, 1]))],
                      fill=tuple(int(c) for c in colour), width=w)
    joint = limb_colours(len(COCO18_NAMES))
    rr = max(1.0, w * 0.75)
    for k in range(len(COCO18_NAMES)):
        if kp[k, 2] > 0:
            x, y = float(kp[k, 0]), float(kp[k, 1])
            draw.ellipse([x - rr, y - rr, x + rr, y + rr], fill=tuple(int(c) for c in joint[k]))
    return np.asarray(canvas, dtype=np.uint8).copy()
