"""SynthVTON: a procedural virtual try-on dataset rendered from a seed.

No try-on dataset can be downloaded with vtonlab, so it renders its own. Every sample is a
stylised person (a COCO-18 skeleton with varied pose, body proportions, skin, hair, face, trousers
or skirt, shoes, on a studio backdrop) wearing an upper garment, plus that garment in its in-shop
form (flat, front view, centred on white, same H x W canvas, as in VITON-HD) with its mask, the
CIHP human parsing, the keypoints and a caption. Because the worn garment is rendered *from* the
in-shop garment through a known dense map, the ground-truth warp is exact:

    worn(p) = shading(p) * bilinear(cloth, gt_flow(p))   for every p with gt_flow_mask(p) = 1,

i.e. ``torch.nn.functional.grid_sample(cloth, gt_flow[None], align_corners=True) * shading``
reproduces the visible worn garment. Measured residual |image - shading * grid_sample| (max over
RGB, 0-255 levels) over seeds 0-39 at 256 x 192: 0.37 on the 88 % of garment pixels that are
interior on the person and whose four in-shop taps are interior to the in-shop garment (the uint8
rounding only; 99.5th percentile 0.5), 1.49 over all garment pixels: the rest are rims, where the
in-shop picture is blended with its white background or the person picture with a neighbouring
layer (anti-aliasing). At 128 x 96: 0.38 and 2.54; at 64 x 48: 0.47 and 4.8. ``tests/test_synth.py``
checks these bounds.

Determinism: the same seed and size give identical arrays; all shapes are defined in a canonical
256 x 192 frame, so one seed depicts the same sample at every size. Multi-pose groups
(:func:`render_group`) keep person and garment and change the pose (MG-VTON's MPV setting);
``garment_seed`` dresses a person in another garment (the unpaired setting, with ground truth).

Labels follow CIHP (0 background ... 19 right shoe, see :data:`CIHP_LABELS`); "left" is the
person's left, which appears on the image's right for this front-facing person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vtonlab.data import _synth_draw, _synth_garment, _synth_person, _synth_worn
from vtonlab.data._synth_draw import Canvas, Frame
from vtonlab.data._synth_garment import (
    CATEGORIES,
    COLOURS,
    LOGOS,
    PATTERNS,
    WORDS,
    GarmentSpec,
    InShop,
    render_inshop,
    sample_garment,
)
from vtonlab.data._synth_person import (
    HAIR_COLOURS,
    HAIR_STYLES,
    LOWER_COLOURS,
    LOWERS,
    SKIN_TONES,
    Body,
    background,
    build_body,
    sample_person,
    sample_pose,
)

__all__ = [
    "CATEGORIES", "CIHP_LABELS", "COCO18_KEYPOINTS", "COLOURS", "HAIR_COLOURS", "HAIR_STYLES", "LOGOS",
    "LOWER_COLOURS", "LOWERS", "MIN_SIZE", "PATTERNS", "PHRASINGS", "SKIN_TONES", "WORDS", "caption_for", "RENDERER_VERSION",
    "render_garment", "render_group", "render_sample",
]  # fmt: skip

#: Smallest accepted (H, W).
MIN_SIZE: tuple[int, int] = (32, 24)

#: CIHP human-parsing labels (index = label value).
CIHP_LABELS: tuple[str, ...] = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks", "pants",
    "neck/torso-skin", "scarf", "skirt", "face", "left arm", "right arm", "left leg", "right leg", "left shoe",
    "right shoe",
)  # fmt: skip

#: COCO-18 keypoint names (OpenPose order).
COCO18_KEYPOINTS: tuple[str, ...] = (
    "nose", "neck", "r-shoulder", "r-elbow", "r-wrist", "l-shoulder", "l-elbow", "l-wrist", "r-hip", "r-knee",
    "r-ankle", "l-hip", "l-knee", "l-ankle", "r-eye", "l-eye", "r-ear", "l-ear",
)  # fmt: skip

#: Sentence frames of captions (``{a}``: the article, ``{desc}``: the garment description).
PHRASINGS: tuple[str, ...] = (
    "{a} {desc}",
    "a photo of {a} {desc}",
    "{a} {desc}, front view",
    "a model wearing {a} {desc}",
    "a person in {a} {desc}",
)


# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------


def _check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{name} must be a non-negative int, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative int, got {seed}")
    return int(seed)


def _check_size(size) -> tuple[int, int]:
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"size must be a pair (H, W) of ints, got {size!r}")
    h, w = size
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"size must be a pair (H, W) of ints, got {size!r}")
    if h < MIN_SIZE[0] or w < MIN_SIZE[1]:
        raise ValueError(f"size={tuple(size)!r} is too small: expected H >= {MIN_SIZE[0]} and W >= {MIN_SIZE[1]}")
    return int(h), int(w)


# ----------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------


def _describe(attrs: Mapping[str, str]) -> str:
    colour, pcol = attrs["colour"], attrs.get("pattern_colour", "none")
    noun = CATEGORIES[attrs["category"]]
    pattern = attrs["pattern"]
    if pattern == "solid":
        return f"{colour} {noun}"
    if pattern.endswith("stripes") or pattern == "polka dots":
        return f"{colour} {noun} with {pcol} {pattern}"
    if pattern == "checks":
        return f"{colour} {noun} with {pcol} checks"
    if pattern == "gradient":
        return f"{colour} {noun} fading to {pcol}"
    if pattern == "logo":
        return f"{colour} {noun} with a {pcol} {attrs['print']} logo"
    if pattern == "text":
        return f"{colour} {noun} with the word \"{attrs['print']}\" printed in {pcol}"
    raise ValueError(f"attributes['pattern']={pattern!r} is not one of {PATTERNS}")


def caption_for(attributes: Mapping[str, str], phrasing: int = 0) -> str:
    """A caption of the garment from its attributes, e.g. "a red long-sleeve shirt with white
    horizontal stripes". ``phrasing`` picks one of a few sentence frames (modulo their number)."""
    desc = _describe(attributes)
    art = "an" if desc[0] in "aeiou" else "a"
    return PHRASINGS[phrasing % len(PHRASINGS)].format(a=art, desc=desc)


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _keypoints(frame: Frame, body: Body) -> np.ndarray:
    """COCO-18 (18, 3): pixel x, y and confidence; (0, 0, 0) for points outside the image."""
    xy = frame.to_pixel(body.keypoints())
    conf = np.asarray(body.pose.confidence, dtype=np.float64)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= frame.width - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= frame.height - 1)
    out = np.zeros((18, 3), dtype=np.float32)
    out[inside, :2] = xy[inside]
    out[inside, 2] = conf[inside]
    return out


def _render(seed: int, pose_id: int, garment: GarmentSpec, inshop: InShop, frame: Frame) -> dict:
    person = sample_person(seed)
    pose = sample_pose(seed, pose_id)
    body = build_body(person, pose)
    canvas = Canvas(background(frame, person))
    rng = np.random.default_rng(pose.fold_seed)
    folds = _synth_worn.sample_folds(body, rng)

    _synth_person.draw_floor_shadow(frame, canvas, body)
    _synth_person.draw_back_hair(frame, canvas, body)
    if person.lower == "skirt":
        _synth_person.draw_legs(frame, canvas, body)
    _synth_person.draw_torso(frame, canvas, body)
    _synth_person.draw_lower(frame, canvas, body)
    _synth_person.draw_shoes(frame, canvas, body)
    _synth_worn.draw_worn_torso(frame, canvas, body, inshop, folds)
    _synth_person.draw_front_hair(frame, canvas, body)
    order = ("l", "r") if pose.front_arm == 0 else ("r", "l")  # the arm drawn last is in front
    for side in order:
        _synth_worn.arm_shadow(frame, canvas, body, side)
        _synth_person.draw_arm(frame, canvas, body, side)
        _synth_worn.draw_worn_sleeve(frame, canvas, body, inshop, side, rng)
    _synth_person.draw_head(frame, canvas, body)

    valid = canvas.flow_ok
    flow = canvas.flow
    flow[~valid] = 0.0
    shading = canvas.shading
    shading[~valid] = 1.0
    img = canvas.img
    np.clip(img, 0.0, 255.0, out=img)
    np.rint(img, out=img)
    attrs = garment.attributes()
    attrs.update(lower=person.lower, lower_colour=person.lower_colour, hair=person.hair_style,
                 hair_colour=person.hair_colour, arms=f"{pose.arms[0]}/{pose.arms[1]}", stance=pose.stance)
    phrasing = int(np.random.default_rng([seed, 4, garment.garment_id]).integers(len(PHRASINGS)))
    return {
        "image": img.astype(np.uint8),
        "cloth": inshop.cloth.copy(),
        "cloth_mask": inshop.mask.copy(),
        "parse": canvas.parse,
        "keypoints": _keypoints(frame, body),
        "gt_flow": flow,
        "gt_flow_mask": valid.astype(np.uint8),
        "shading": shading,
        "caption": caption_for(attrs, phrasing),
        "attributes": attrs,
        "person_id": int(seed),
        "garment_id": int(garment.garment_id),
        "pose_id": int(pose_id),
    }


def render_sample(
    seed: int, size: tuple[int, int] = (256, 192), *, garment_seed: int | None = None, pose_id: int = 0
) -> dict:
    """Render one SynthVTON sample.

    Args:
        seed: the person (and, unless ``garment_seed`` is given, the garment); any int >= 0.
        size: (H, W) of every image, at least :data:`MIN_SIZE`; the canonical 256 x 192 scene is
            scaled to fit (other aspect ratios are centred).
        garment_seed: dress the person in the garment of another seed (unpaired try-on, with ground truth).
        pose_id: which pose of the person (``render_group(seed)[k]`` is ``pose_id=k``).

    Returns:
        dict of numpy arrays and metadata:
        ``image`` uint8 (H, W, 3) the person; ``cloth`` uint8 (H, W, 3) the in-shop garment on white;
        ``cloth_mask`` uint8 (H, W) {0,1}; ``parse`` uint8 (H, W) CIHP labels 0..19;
        ``keypoints`` float32 (18, 3) COCO-18 pixel x, y, confidence in (0, 1] (0, 0, 0 outside the image);
        ``gt_flow`` float32 (H, W, 2): for each visible worn-garment pixel its (x, y) in ``cloth``,
        normalised to [-1, 1] with align_corners=True (0 where invalid); ``gt_flow_mask`` uint8 (H, W) {0,1}
        (equal to ``parse == 5``); ``shading`` float32 (H, W): the factor applied to the sampled garment
        colour (1 off the garment); ``caption`` str; ``attributes`` dict[str, str] (category, colour,
        pattern, pattern_colour, neckline, sleeve, [print], lower, lower_colour, hair, hair_colour,
        arms, stance); ``person_id``, ``garment_id``, ``pose_id`` int.
    """
    seed = _check_seed(seed)
    pose_id = _check_seed(pose_id, "pose_id")
    gseed = seed if garment_seed is None else _check_seed(garment_seed, "garment_seed")
    frame = Frame(*_check_size(size))
    garment = sample_garment(gseed)
    return _render(seed, pose_id, garment, render_inshop(garment, frame), frame)


def render_group(seed: int, n_poses: int = 2, size: tuple[int, int] = (256, 192), *,
                 garment_seed: int | None = None) -> list[dict]:
    """The same person and garment in ``n_poses`` poses (MG-VTON's multi-pose setting).

    ``render_group(seed, n)[k]`` equals ``render_sample(seed, size, pose_id=k)``.
    """
    seed = _check_seed(seed)
    if isinstance(n_poses, bool) or not isinstance(n_poses, int | np.integer) or n_poses < 1:
        raise ValueError(f"n_poses must be an int >= 1, got {n_poses!r}")
    gseed = seed if garment_seed is None else _check_seed(garment_seed, "garment_seed")
    frame = Frame(*_check_size(size))
    garment = sample_garment(gseed)
    inshop = render_inshop(garment, frame)
    return [_render(seed, k, garment, inshop, frame) for k in range(int(n_poses))]


def render_garment(seed: int, size: tuple[int, int] = (256, 192), **attributes: str) -> dict:
    """The in-shop garment alone: ``cloth`` (H, W, 3) uint8 on white, ``cloth_mask`` (H, W) uint8,
    ``caption``, ``attributes`` and ``garment_id``.

    Keyword attributes fix what the seed would otherwise choose: ``category`` (:data:`CATEGORIES`),
    ``colour`` (:data:`COLOURS`), ``pattern`` (:data:`PATTERNS`), ``pattern_colour`` (a colour, or
    ``"none"`` for solid). E.g. ``render_garment(0, category="tank-top", colour="red", pattern="checks")``.
    """
    seed = _check_seed(seed)
    frame = Frame(*_check_size(size))
    allowed = {"category", "colour", "pattern", "pattern_colour"}
    unknown = set(attributes) - allowed
    if unknown:
        raise TypeError(f"render_garment got unknown attribute(s) {sorted(unknown)}; expected some of {sorted(allowed)}")
    garment = sample_garment(seed, **attributes)
    inshop = render_inshop(garment, frame)
    attrs = garment.attributes()
    return {
        "cloth": inshop.cloth,
        "cloth_mask": inshop.mask,
        "caption": caption_for(attrs),
        "attributes": attrs,
        "garment_id": int(seed),
    }


RENDERER_VERSION = 1
"""Version of what the renderer draws. Bump it whenever a rendered picture changes: it is part of every
SynthVTON cache marker and of the data key of every checkpoint trained on SynthVTON, so a changed renderer
never silently reuses old renders, weights or metrics. ``tests/test_synth.py`` stores a digest of a few
renders and fails (asking for a bump) when the pictures change."""
