"""Label sets of try-on data: human-parsing labels and body keypoints.

vtonlab uses ONE internal parsing label set, **CIHP** (20 labels, the set VITON-HD ships in
``image-parse-v3``). Dress Code ships SCHP parsings with the **ATR** label set (18 labels); the
Dress Code reader maps them to CIHP with :func:`atr_to_cihp`, the Dress Code writer maps back
with :func:`cihp_to_atr`.

The two sets do not match one to one, so the mapping is lossy in these places (documented here
and nowhere else):

ATR -> CIHP
    ``belt`` -> ``pants`` (CIHP has no belt; a belt sits with the lower garment).
    ``bag`` -> ``background`` (CIHP has no bag).
    ``head`` -> ``face`` (ATR's head label is the face skin).
CIHP -> ATR
    ``coat`` -> ``upper_clothes`` (ATR has one upper-garment label).
    ``torso_skin`` (neck) -> ``head`` (ATR has no neck/torso-skin label; the neck is kept with the head).
    ``glove`` -> ``left_arm`` / ``right_arm`` and ``socks`` -> ``left_leg`` / ``right_leg``: ATR has
    no glove or sock label and CIHP's glove/socks carry no side, so the side is chosen by image
    half (a front-facing person's left side appears on the image's right).

So ``atr_to_cihp(cihp_to_atr(p))`` equals ``p`` except where ``p`` holds coat, torso skin, glove or
socks (:func:`cihp_roundtrip_through_atr` gives the exact projection).

Keypoints: vtonlab uses the **COCO-18** order of OpenPose (CP-VTON, VITON-HD, Dress Code). VITON-HD
stores OpenPose **BODY_25**, which adds MidHip (index 8) and six foot points (19..24):
COCO 0..7 = BODY_25 0..7 and COCO 8..17 = BODY_25 9..18.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# ----------------------------------------------------------------------------------------------
# Human parsing
# ----------------------------------------------------------------------------------------------

CIHP_LABELS: tuple[str, ...] = (
    "background", "hat", "hair", "glove", "sunglasses", "upper_clothes", "dress", "coat", "socks",
    "pants", "torso_skin", "scarf", "skirt", "face", "left_arm", "right_arm", "left_leg",
    "right_leg", "left_shoe", "right_shoe",
)  # fmt: skip
"""CIHP label names by value (0..19); ``torso_skin`` is the neck / exposed torso skin."""

ATR_LABELS: tuple[str, ...] = (
    "background", "hat", "hair", "sunglasses", "upper_clothes", "skirt", "pants", "dress", "belt",
    "left_shoe", "right_shoe", "head", "left_leg", "right_leg", "left_arm", "right_arm", "bag", "scarf",
)  # fmt: skip
"""SCHP-ATR label names by value (0..17), the label set of Dress Code's ``label_maps``."""

INTERNAL_LABELS = CIHP_LABELS
"""The label set of every ``parse`` tensor in vtonlab."""

N_CIHP = len(CIHP_LABELS)
N_ATR = len(ATR_LABELS)

CIHP = {name: i for i, name in enumerate(CIHP_LABELS)}
ATR = {name: i for i, name in enumerate(ATR_LABELS)}

# The colour table of CIHP parsings (as in VITON-HD's image-parse-v3 palette PNGs).
CIHP_PALETTE = np.array(
    [
        [0, 0, 0], [128, 0, 0], [254, 0, 0], [0, 85, 0], [169, 0, 51], [254, 85, 0], [0, 0, 85],
        [0, 119, 221], [85, 85, 0], [0, 85, 85], [85, 51, 0], [52, 86, 128], [0, 128, 0], [0, 0, 254],
        [51, 169, 220], [0, 254, 254], [85, 254, 169], [169, 254, 85], [254, 254, 0], [254, 169, 0],
    ],
    dtype=np.uint8,
)  # fmt: skip

# Label groups of the internal (CIHP) set used to build the person representation.
HEAD_LABELS: tuple[int, ...] = (CIHP["hat"], CIHP["hair"], CIHP["sunglasses"], CIHP["face"])
"""CP-VTON's head region: hat, hair, sunglasses, face."""
ARM_LABELS: tuple[int, ...] = (CIHP["left_arm"], CIHP["right_arm"], CIHP["glove"])
LEG_LABELS: tuple[int, ...] = (CIHP["left_leg"], CIHP["right_leg"], CIHP["socks"])
SHOE_LABELS: tuple[int, ...] = (CIHP["left_shoe"], CIHP["right_shoe"])
NECK_LABELS: tuple[int, ...] = (CIHP["torso_skin"],)
UPPER_GARMENT_LABELS: tuple[int, ...] = (CIHP["upper_clothes"], CIHP["dress"], CIHP["coat"])
LOWER_GARMENT_LABELS: tuple[int, ...] = (CIHP["pants"], CIHP["skirt"])

CATEGORIES: tuple[str, ...] = ("upper_body", "lower_body", "dresses")
"""Garment categories, named as Dress Code's folders. VITON-HD is ``upper_body`` only."""

GARMENT_LABELS: dict[str, tuple[int, ...]] = {
    "upper_body": UPPER_GARMENT_LABELS,  # CP-VTON: upper-clothes + dress + coat
    "lower_body": LOWER_GARMENT_LABELS,
    "dresses": (CIHP["dress"],),
}
"""The worn garment of each category, in internal labels."""


def _build_atr_to_cihp() -> np.ndarray:
    names = {
        "background": "background", "hat": "hat", "hair": "hair", "sunglasses": "sunglasses",
        "upper_clothes": "upper_clothes", "skirt": "skirt", "pants": "pants", "dress": "dress",
        "belt": "pants", "left_shoe": "left_shoe", "right_shoe": "right_shoe", "head": "face",
        "left_leg": "left_leg", "right_leg": "right_leg", "left_arm": "left_arm",
        "right_arm": "right_arm", "bag": "background", "scarf": "scarf",
    }  # fmt: skip
    return np.array([CIHP[names[a]] for a in ATR_LABELS], dtype=np.uint8)


def _build_cihp_to_atr() -> np.ndarray:
    names = {
        "background": "background", "hat": "hat", "hair": "hair", "glove": "left_arm",
        "sunglasses": "sunglasses", "upper_clothes": "upper_clothes", "dress": "dress",
        "coat": "upper_clothes", "socks": "left_leg", "pants": "pants", "torso_skin": "head",
        "scarf": "scarf", "skirt": "skirt", "face": "head", "left_arm": "left_arm",
        "right_arm": "right_arm", "left_leg": "left_leg", "right_leg": "right_leg",
        "left_shoe": "left_shoe", "right_shoe": "right_shoe",
    }  # fmt: skip
    return np.array([ATR[names[c]] for c in CIHP_LABELS], dtype=np.uint8)


ATR_TO_CIHP: np.ndarray = _build_atr_to_cihp()
"""Look-up table: ``ATR_TO_CIHP[atr_value]`` is the internal (CIHP) value."""
CIHP_TO_ATR: np.ndarray = _build_cihp_to_atr()
"""Look-up table CIHP -> ATR; glove/socks map to the left side here, see :func:`cihp_to_atr`."""

# ATR colours: the colour of the matching CIHP label, with distinct colours for belt and bag.
ATR_PALETTE = CIHP_PALETTE[ATR_TO_CIHP].copy()
ATR_PALETTE[ATR["belt"]] = (192, 128, 64)
ATR_PALETTE[ATR["bag"]] = (128, 128, 128)


def check_labels(parse: np.ndarray, n_labels: int, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` if ``parse`` holds a value outside ``0 .. n_labels-1``."""
    parse = np.asarray(parse)
    if parse.size == 0:
        raise ValueError(f"{source}: empty label map")
    if not np.issubdtype(parse.dtype, np.integer):
        raise ValueError(f"{source}: label map must hold integers, got dtype {parse.dtype}")
    lo, hi = int(parse.min()), int(parse.max())
    if lo < 0 or hi >= n_labels:
        bad = np.unique(parse[(parse < 0) | (parse >= n_labels)])[:8].tolist()
        raise ValueError(f"{source}: label values {bad} outside the expected label set 0..{n_labels - 1}")


def atr_to_cihp(atr: np.ndarray, source: str = "label map") -> np.ndarray:
    """Map an SCHP-ATR label map (Dress Code, values 0..17) to internal CIHP labels.

    Args:
        atr: integer array (..., H, W).
        source: the file the labels came from; named in the error for values outside 0..17.

    Returns:
        uint8 array of the same shape, values 0..19.
    """
    atr = np.asarray(atr)
    check_labels(atr, N_ATR, source)
    return ATR_TO_CIHP[atr.astype(np.int64)]


def cihp_to_atr(cihp: np.ndarray, source: str = "label map") -> np.ndarray:
    """Map internal CIHP labels (values 0..19) to SCHP-ATR labels (for writing Dress Code).

    Glove and socks have no ATR label and no side: pixels in the image's right half become the
    person's left arm / leg, the others the right arm / leg (front-facing convention).

    Args:
        cihp: integer array (..., H, W).
        source: named in the error for values outside 0..19.

    Returns:
        uint8 array of the same shape, values 0..17.
    """
    cihp = np.asarray(cihp)
    check_labels(cihp, N_CIHP, source)
    out = CIHP_TO_ATR[cihp.astype(np.int64)]
    width = cihp.shape[-1]
    image_left = np.broadcast_to(np.arange(width) < width / 2, cihp.shape)
    out[(cihp == CIHP["glove"]) & image_left] = ATR["right_arm"]
    out[(cihp == CIHP["socks"]) & image_left] = ATR["right_leg"]
    return out


def cihp_roundtrip_through_atr(cihp: np.ndarray) -> np.ndarray:
    """What a CIHP map becomes after writing as Dress Code and reading back: ``atr_to_cihp(cihp_to_atr(x))``."""
    return atr_to_cihp(cihp_to_atr(cihp))


def colorize(parse: np.ndarray, palette: np.ndarray = CIHP_PALETTE) -> np.ndarray:
    """Colour a label map (H, W) with a palette (n, 3) -> uint8 RGB (H, W, 3)."""
    parse = np.asarray(parse)
    check_labels(parse, len(palette), "parse")
    return np.asarray(palette, dtype=np.uint8)[parse.astype(np.int64)]


def labels_of(names: Iterable[str]) -> tuple[int, ...]:
    """Internal label values of CIHP label names (``labels_of(["hair", "face"]) == (2, 13)``)."""
    out = []
    for n in names:
        if n not in CIHP:
            raise KeyError(f"unknown CIHP label name {n!r}; known: {', '.join(CIHP_LABELS)}")
        out.append(CIHP[n])
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# Keypoints
# ----------------------------------------------------------------------------------------------

COCO18_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
    "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip
"""The COCO-18 keypoint order of OpenPose, used by every sample dict."""

BODY25_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "mid_hip",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
    "l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel",
)  # fmt: skip
"""OpenPose BODY_25 order (VITON-HD ``openpose_json``)."""

COCO18_TO_BODY25: np.ndarray = np.array([*range(0, 8), *range(9, 19)], dtype=np.int64)
"""``COCO18_TO_BODY25[c]`` is the BODY_25 index of COCO-18 keypoint ``c`` (MidHip, 8, is skipped)."""
BODY25_MIDHIP = 8

COCO18_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
"""The 17 limbs OpenPose draws for COCO-18 (pairs of keypoint indices)."""


def _as_keypoints(kp: np.ndarray, n: int, what: str) -> np.ndarray:
    kp = np.asarray(kp, dtype=np.float32)
    if kp.shape == (n * 3,):
        kp = kp.reshape(n, 3)
    if kp.shape != (n, 3):
        raise ValueError(f"{what}: expected {n} keypoints as ({n}, 3) or {n * 3} floats, got shape {kp.shape}")
    return kp


def body25_to_coco18(kp: np.ndarray, source: str = "BODY_25 keypoints") -> np.ndarray:
    """OpenPose BODY_25 (25, 3) or 75 floats -> COCO-18 (18, 3) by dropping MidHip and the feet.

    A point with confidence 0 is missing; its x, y are set to 0.
    """
    kp = _as_keypoints(kp, 25, source)
    out = kp[COCO18_TO_BODY25].copy()
    out[out[:, 2] <= 0] = 0.0
    return out


def coco18_to_body25(kp: np.ndarray, source: str = "COCO-18 keypoints") -> np.ndarray:
    """COCO-18 (18, 3) -> OpenPose BODY_25 (25, 3).

    MidHip (BODY_25 index 8) is synthesised as the mean of the two hips (confidence: the smaller of
    the two) when both hips are present, else missing; the six foot points are missing (all 0).
    """
    kp = _as_keypoints(kp, 18, source)
    out = np.zeros((25, 3), dtype=np.float32)
    out[COCO18_TO_BODY25] = kp
    r_hip, l_hip = kp[COCO18_NAMES.index("r_hip")], kp[COCO18_NAMES.index("l_hip")]
    if r_hip[2] > 0 and l_hip[2] > 0:
        out[BODY25_MIDHIP, :2] = (r_hip[:2] + l_hip[:2]) / 2
        out[BODY25_MIDHIP, 2] = min(r_hip[2], l_hip[2])
    out[out[:, 2] <= 0] = 0.0
    return out
