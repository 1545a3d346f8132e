"""How VITON-HD, Dress Code and MPV lay out their files, and how to read and write each file.

VITON-HD (Choi et al. CVPR 2021)::

    root/train_pairs.txt  root/test_pairs.txt           "<person>.jpg <cloth>.jpg" per line
    root/<split>/image/00006_00.jpg                     person
    root/<split>/cloth/00006_00.jpg                     in-shop garment
    root/<split>/cloth-mask/00006_00.jpg                garment mask (JPEG: thresholded on reading)
    root/<split>/image-parse-v3/00006_00.png            palette PNG, CIHP labels 0..19
    root/<split>/openpose_json/00006_00_keypoints.json  OpenPose BODY_25, people[0].pose_keypoints_2d
    root/<split>/openpose_img/00006_00_rendered.png     the rendered skeleton

Dress Code (Morelli et al. CVPR 2022), per category ``upper_body`` | ``lower_body`` | ``dresses``::

    root/train_pairs.txt root/test_pairs_paired.txt root/test_pairs_unpaired.txt   (+ category column)
    root/<category>/{train_pairs,test_pairs_paired,test_pairs_unpaired}.txt
    root/<category>/images/013563_0.jpg     person        images/013563_1.jpg   garment
    root/<category>/keypoints/013563_2.json {"keypoints": [[x, y, conf, id] x 18]} in 384x512 coordinates
    root/<category>/label_maps/013563_4.png SCHP-ATR labels 0..17
    root/<category>/skeletons/013563_5.jpg  the rendered skeleton

MPV (MG-VTON, Dong et al. ICCV 2019) multi-pose list: ``personA personB cloth train|test`` per line;
vtonlab writes it as ``mpv_triplets.txt`` at the root of either layout.

SynthVTON adds what real datasets lack, in extra folders that readers use only when present:
``gt-flow/<person stem>.npz`` (ground-truth garment flow + validity mask, float16, compressed),
``synth-meta/<person stem>.json`` (caption, attributes, ids), and for Dress Code
``cloth_mask/<id>_1.png`` (without it, the Dress Code reader estimates the mask from the white
background), plus ``synthvton.json`` at the root (the render parameters).

SynthVTON's unpaired ground truth (:mod:`vtonlab.data.unpaired_gt`, added on request by
``ensure_unpaired_gt`` or ``data generate --unpaired-gt``): each test person wearing the garment of
their unpaired pair, in ``test/unpaired_gt/{image,image-parse-v3,gt-flow}/<person stem>__<cloth stem>.*``
(Dress Code: ``upper_body/unpaired_gt/{images,label_maps,gt-flow}/``), listed in ``test_unpaired_gt.txt``
(``person cloth gt_image``) and ``mpv_unpaired_gt.txt`` (``personA personB cloth gt_image``) beside the
unpaired pair file, with its own marker ``unpaired_gt.json``. The readers of the real layouts ignore it.

Every reader raises an error naming the file and what was expected: ``FileNotFoundError`` for a
missing file, :class:`LayoutError` (a ``ValueError``) for unreadable or malformed content.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image

from vtonlab.data.labels import (
    ATR_PALETTE,
    CIHP_PALETTE,
    COCO18_NAMES,
    N_ATR,
    N_CIHP,
    body25_to_coco18,
    check_labels,
    cihp_to_atr,
    coco18_to_body25,
)
from vtonlab.data.representation import skeleton_image

# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------

VITONHD_SPLITS = ("train", "test")
VITONHD_FOLDERS: dict[str, tuple[str, str]] = {
    "image": ("image", ".jpg"),
    "cloth": ("cloth", ".jpg"),
    "cloth_mask": ("cloth-mask", ".jpg"),
    "parse": ("image-parse-v3", ".png"),
    "keypoints": ("openpose_json", "_keypoints.json"),
    "skeleton": ("openpose_img", "_rendered.png"),
}
"""Per-sample files of VITON-HD: kind -> (folder, suffix appended to the person stem)."""
VITONHD_OPTIONAL_FOLDERS = ("agnostic-v3.2", "image-parse-agnostic-v3.2", "image-densepose")

DRESSCODE_CATEGORIES = ("upper_body", "lower_body", "dresses")
DRESSCODE_FILES: dict[str, tuple[str, str]] = {
    "image": ("images", "_0.jpg"),
    "cloth": ("images", "_1.jpg"),
    "keypoints": ("keypoints", "_2.json"),
    "parse": ("label_maps", "_4.png"),
    "skeleton": ("skeletons", "_5.jpg"),
}
"""Per-sample files of Dress Code: kind -> (folder, suffix appended to the numeric id)."""
DRESSCODE_OPTIONAL_FOLDERS = ("dense", "cloth_parse", "parse")
DRESSCODE_PAIR_FILES = {
    ("train", "paired"): "train_pairs.txt",
    ("train", "unpaired"): "train_pairs.txt",
    ("test", "paired"): "test_pairs_paired.txt",
    ("test", "unpaired"): "test_pairs_unpaired.txt",
}
DRESSCODE_KEYPOINT_FRAME = (512, 384)
"""(H, W) of the frame Dress Code keypoints are given in."""

GT_FLOW_DIR = "gt-flow"
META_DIR = "synth-meta"
DRESSCODE_CLOTH_MASK_DIR = "cloth_mask"
MPV_LIST = "mpv_triplets.txt"
SYNTH_MARKER = "synthvton.json"

JPEG_QUALITY = 95


KEYPOINT_FORMATS = ("body25", "coco18")
"""Layouts of ``pose_keypoints_2d`` in VITON-HD OpenPose files: BODY_25 (75 values, what VITON-HD ships)
or COCO-18 (54 values, as in the original VITON; read only when the user says so)."""

GT_FLOW_DTYPES = ("float16", "float32", "float64")
GT_FLOW_MASK_DTYPES = ("uint8", "bool")


class LayoutError(ValueError):
    """A dataset file exists but its content is not what the layout expects."""


class KeypointFormatWarning(UserWarning):
    """A keypoint file holds another layout than the one the reader was told to expect."""


# ----------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------


def stem_of(name: str) -> str:
    """``"00006_00.jpg"`` -> ``"00006_00"``."""
    return Path(name).stem


def vitonhd_paths(root: str | os.PathLike, split: str, stem: str) -> dict[str, Path]:
    """Every file of one VITON-HD sample (plus SynthVTON's ``gt_flow`` and ``meta``)."""
    base = Path(root) / split
    out = {kind: base / folder / f"{stem}{suffix}" for kind, (folder, suffix) in VITONHD_FOLDERS.items()}
    out["gt_flow"] = base / GT_FLOW_DIR / f"{stem}.npz"
    out["meta"] = base / META_DIR / f"{stem}.json"
    return out


def dresscode_id(name: str) -> str:
    """``"013563_0.jpg"`` or ``"013563_1.jpg"`` -> ``"013563"``."""
    stem = stem_of(name)
    head, sep, tail = stem.rpartition("_")
    if not sep or not tail.isdigit():
        raise LayoutError(f"{name!r}: expected a Dress Code file name '<id>_<n>.<ext>' (e.g. 013563_0.jpg)")
    return head


def dresscode_paths(root: str | os.PathLike, category: str, sample_id: str) -> dict[str, Path]:
    """Every file of one Dress Code sample (plus SynthVTON's ``cloth_mask``, ``gt_flow``, ``meta``)."""
    base = Path(root) / category
    out = {kind: base / folder / f"{sample_id}{suffix}" for kind, (folder, suffix) in DRESSCODE_FILES.items()}
    out["cloth_mask"] = base / DRESSCODE_CLOTH_MASK_DIR / f"{sample_id}_1.png"
    out["gt_flow"] = base / GT_FLOW_DIR / f"{sample_id}_0.npz"
    out["meta"] = base / META_DIR / f"{sample_id}_0.json"
    return out


def detect_layout(root: str | os.PathLike) -> str:
    """``"vitonhd"`` or ``"dresscode"`` from the folders under ``root``; ``LayoutError`` otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset directory not found")
    if any((root / c).is_dir() for c in DRESSCODE_CATEGORIES):
        return "dresscode"
    if any((root / s).is_dir() for s in VITONHD_SPLITS) or (root / "train_pairs.txt").exists():
        return "vitonhd"
    raise LayoutError(
        f"{root}: not a VITON-HD layout (train/ and test/ folders, train_pairs.txt) nor a Dress Code "
        f"layout (folders {', '.join(DRESSCODE_CATEGORIES)})"
    )


# ----------------------------------------------------------------------------------------------
# Reading single files
# ----------------------------------------------------------------------------------------------


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")


def _open_image(path: Path, what: str) -> Image.Image:
    _require(path, what)
    try:
        img = Image.open(path)
        img.load()
    except Exception as e:  # PIL raises several types for corrupt or truncated files
        raise LayoutError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from e
    return img


def read_rgb(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """An RGB image file -> uint8 (H, W, 3)."""
    return np.asarray(_open_image(Path(path), what).convert("RGB"), dtype=np.uint8).copy()


def read_mask(path: str | os.PathLike, what: str = "mask", threshold: int = 128) -> np.ndarray:
    """A mask image (JPEG or PNG, grey or RGB) -> uint8 (H, W) in {0, 1}, thresholded at ``threshold``."""
    img = _open_image(Path(path), what)
    return (np.asarray(img.convert("L"), dtype=np.uint8) >= threshold).astype(np.uint8)


def read_label_map(path: str | os.PathLike, n_labels: int, what: str = "label map") -> np.ndarray:
    """A label PNG (palette ``P`` or greyscale ``L``) -> uint8 (H, W); values must be < ``n_labels``."""
    path = Path(path)
    img = _open_image(path, what)
    if img.mode not in ("P", "L"):
        raise LayoutError(
            f"{path}: {what} must be a palette (P) or greyscale (L) PNG holding label values 0..{n_labels - 1}, "
            f"got image mode {img.mode}"
        )
    labels = np.asarray(img, dtype=np.uint8).copy()
    try:
        check_labels(labels, n_labels, str(path))
    except ValueError as e:
        raise LayoutError(str(e)) from None
    return labels


def _read_json(path: Path, what: str):
    _require(path, what)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: {what} is not valid JSON ({e})") from e


def _check_keypoint_format(keypoint_format: str) -> str:
    if keypoint_format not in KEYPOINT_FORMATS:
        raise ValueError(f"keypoint_format: expected one of {', '.join(KEYPOINT_FORMATS)}, got {keypoint_format!r}")
    return keypoint_format


def read_openpose_json(path: str | os.PathLike, keypoint_format: str = "body25") -> np.ndarray:
    """An OpenPose JSON (VITON-HD ``openpose_json``) -> COCO-18 keypoints float32 (18, 3) in image pixels.

    Reads ``people[0].pose_keypoints_2d`` (or the older key ``pose_keypoints``).

    Args:
        path: the JSON file.
        keypoint_format: ``"body25"`` (default; what VITON-HD ships: 75 values, 25 x [x, y, conf];
            MidHip and the feet are dropped) or ``"coco18"`` (54 values, 18 x [x, y, conf], as in
            the original VITON). With ``"body25"``, a file of 54 values is read as COCO-18 with a
            :class:`KeypointFormatWarning` naming the file: 54 values may also be a truncated BODY_25
            list, whose joints after MidHip would be shifted, so only the caller can say which it is.
            With ``"coco18"``, every file must hold 54 values. Any other count is a :class:`LayoutError`.

    No person detected (``people == []``) gives all keypoints missing.
    """
    path = Path(path)
    _check_keypoint_format(keypoint_format)
    data = _read_json(path, "OpenPose keypoint file")
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise LayoutError(f"{path}: expected an OpenPose JSON object with a 'people' list")
    if not people:
        return np.zeros((len(COCO18_NAMES), 3), dtype=np.float32)
    person = people[0]
    values = person.get("pose_keypoints_2d", person.get("pose_keypoints")) if isinstance(person, dict) else None
    if values is None:
        raise LayoutError(f"{path}: people[0] has no 'pose_keypoints_2d' list")
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise LayoutError(f"{path}: pose_keypoints_2d must be a list of numbers ({e})") from e
    if keypoint_format == "body25" and arr.shape == (75,):
        kp = body25_to_coco18(arr)
    elif arr.shape == (54,):
        if keypoint_format == "body25":
            warnings.warn(
                f"{path}: pose_keypoints_2d holds 54 values (COCO-18 layout), but VITON-HD ships OpenPose BODY_25 "
                "with 75 values (25 x [x, y, conf]); read as COCO-18. If this dataset uses COCO-18, say so with "
                "keypoint_format='coco18' (data check --keypoints coco18)",
                KeypointFormatWarning,
                stacklevel=2,
            )
        kp = arr.reshape(18, 3).copy()
        kp[kp[:, 2] <= 0] = 0
    elif keypoint_format == "coco18":
        raise LayoutError(
            f"{path}: pose_keypoints_2d must hold 54 numbers (COCO-18: 18 x [x, y, conf], as keypoint_format='coco18' "
            f"says), got shape {arr.shape}" + (" (BODY_25?)" if arr.shape == (75,) else "")
        )
    else:
        raise LayoutError(
            f"{path}: pose_keypoints_2d must hold 75 numbers (BODY_25: 25 x [x, y, conf], what VITON-HD ships), "
            f"got shape {arr.shape}"
        )
    if not np.isfinite(kp).all():
        raise LayoutError(f"{path}: keypoints contain NaN or infinity")
    return kp


def read_dresscode_keypoints(path: str | os.PathLike) -> np.ndarray:
    """A Dress Code keypoint JSON -> COCO-18 float32 (18, 3) in the 384x512 keypoint frame.

    Expects ``{"keypoints": [[x, y, conf, id] x 18]}``; points with confidence 0 or negative
    coordinates are missing (returned as zeros).
    """
    path = Path(path)
    data = _read_json(path, "Dress Code keypoint file")
    kps = data.get("keypoints") if isinstance(data, dict) else None
    if not isinstance(kps, list):
        raise LayoutError(f"{path}: expected a JSON object {{\"keypoints\": [[x, y, conf, id] x 18]}}")
    try:
        arr = np.asarray(kps, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise LayoutError(f"{path}: 'keypoints' must be 18 lists [x, y, conf, id] of numbers ({e})") from e
    if arr.ndim != 2 or arr.shape[0] != len(COCO18_NAMES) or arr.shape[1] not in (3, 4):
        raise LayoutError(f"{path}: 'keypoints' must be 18 lists [x, y, conf, id], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise LayoutError(f"{path}: keypoints contain NaN or infinity")
    kp = arr[:, :3].copy()
    if arr.shape[1] == 4:
        order = arr[:, 3]
        if not np.array_equal(order, np.arange(len(COCO18_NAMES))):
            got = order.astype(int).tolist()
            raise LayoutError(f"{path}: keypoint ids (4th column) must be 0..17 in order, got {got}")
    kp[(kp[:, 2] <= 0) | (kp[:, 0] < 0) | (kp[:, 1] < 0)] = 0
    return kp


def _read_text(path: Path, what: str) -> str:
    """A UTF-8 text file (a byte-order mark is dropped); LayoutError naming the file and the bad byte otherwise."""
    _require(path, what)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad = data[e.start: e.start + 1].hex()
        line = data[: e.start].count(b"\n") + 1
        raise LayoutError(f"{path}:{line}: {what} is not UTF-8 text (byte 0x{bad} at offset {e.start}); "
                          "expected plain text with file names, one entry per line") from None


def read_pair_file(path: str | os.PathLike, min_cols: int = 2, max_cols: int = 2,
                   allow_empty: bool = False) -> list[tuple[str, ...]]:
    """A pair / list file (UTF-8 text) -> list of rows (tuples of names), blank lines skipped.

    A file without any row is a :class:`LayoutError` unless ``allow_empty`` (a dataset of length 0
    is never what a user meant).
    """
    path = Path(path)
    rows = []
    for i, line in enumerate(_read_text(path, "pair file").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if not min_cols <= len(parts) <= max_cols:
            want = str(min_cols) if min_cols == max_cols else f"{min_cols} to {max_cols}"
            raise LayoutError(f"{path}:{i}: expected {want} names per line, got {len(parts)}: {line!r}")
        rows.append(tuple(parts))
    if not rows and not allow_empty:
        want = " ".join(["<person>", "<cloth>", "<category>", "<more>"][:max_cols])
        raise LayoutError(f"{path}: pair file lists no pairs (it is empty or holds only blank lines); "
                          f"expected lines '{want}'")
    return rows


def read_dresscode_root_pairs(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """A Dress Code pair file at the dataset root -> rows ``(person, cloth, category)``.

    Root-level files mix the categories, so every line must name its category in a third column:
    ``upper_body`` | ``lower_body`` | ``dresses``, or its index 0 | 1 | 2 (in that order).
    """
    path = Path(path)
    out = []
    for i, line in enumerate(_read_text(path, "pair file").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise LayoutError(
                f"{path}:{i}: expected 3 names per line '<person> <cloth> <category>' (a Dress Code pair file at the "
                f"dataset root names each pair's category: {', '.join(DRESSCODE_CATEGORIES)} or 0, 1, 2), "
                f"got {len(parts)}: {line!r}"
            )
        category = parts[2]
        if category.isdigit() and int(category) < len(DRESSCODE_CATEGORIES):
            category = DRESSCODE_CATEGORIES[int(category)]
        if category not in DRESSCODE_CATEGORIES:
            raise LayoutError(f"{path}:{i}: unknown category {parts[2]!r}; expected one of "
                              f"{', '.join(DRESSCODE_CATEGORIES)} or 0, 1, 2")
        out.append((parts[0], parts[1], category))
    if not out:
        raise LayoutError(f"{path}: pair file lists no pairs (it is empty or holds only blank lines); "
                          "expected lines '<person> <cloth> <category>'")
    return out


def read_mpv_list(path: str | os.PathLike) -> list[tuple[str, str, str, str]]:
    """An MPV-style list ``personA personB cloth train|test`` -> rows (an empty list is allowed:
    SynthVTON with one pose per group has no multi-pose pairs)."""
    rows = read_pair_file(path, 4, 4, allow_empty=True)
    for i, row in enumerate(rows, 1):
        if row[3] not in VITONHD_SPLITS:
            raise LayoutError(f"{path}: row {i}: split must be 'train' or 'test', got {row[3]!r}")
    return rows  # type: ignore[return-value]


def _npy_header(fp) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of a ``.npy`` stream, reading no array data."""
    version = npy_format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = npy_format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]} (expected 1.0 or 2.0)")
    return tuple(int(n) for n in shape), dtype


def read_gt_flow_header(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The arrays a SynthVTON ``gt-flow`` npz declares: ``{"flow": (shape, dtype), "mask": (shape, dtype)}``.

    Reads only the zip directory and the ``.npy`` headers (a few hundred bytes), never the data, so
    a file that declares a huge array costs nothing. Checks the structure: ``flow`` (H, W, 2) of a
    float dtype and ``mask`` (H, W) uint8 or bool. Raises :class:`LayoutError` naming the file.
    """
    path = Path(path)
    _require(path, "ground-truth flow file")
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            for key in ("flow", "mask"):
                if f"{key}.npy" not in names:
                    raise LayoutError(f"{path}: ground-truth flow file has no '{key}' array "
                                      f"(found {sorted(n.removesuffix('.npy') for n in names)})")
                with z.open(f"{key}.npy") as fp:
                    out[key] = _npy_header(fp)
    except LayoutError:
        raise
    except Exception as e:
        raise LayoutError(f"{path}: cannot read ground-truth flow ({type(e).__name__}: {e})") from e
    (fshape, fdtype), (mshape, mdtype) = out["flow"], out["mask"]
    if len(fshape) != 3 or fshape[-1] != 2 or mshape != fshape[:2]:
        raise LayoutError(f"{path}: expected flow (H, W, 2) and mask (H, W), got {fshape} and {mshape}")
    if fdtype.name not in GT_FLOW_DTYPES or mdtype.name not in GT_FLOW_MASK_DTYPES:
        raise LayoutError(f"{path}: expected a float flow ({', '.join(GT_FLOW_DTYPES)}) and a uint8 or bool mask, "
                          f"got {fdtype} and {mdtype}")
    return out


def read_gt_flow(path: str | os.PathLike, size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A SynthVTON ``gt-flow`` file -> (flow float32 (H, W, 2) in [-1, 1], mask uint8 (H, W) {0, 1}).

    The array headers are checked first (:func:`read_gt_flow_header`); with ``size`` (H, W), the
    person image size, a flow of another size is a :class:`LayoutError` before any data is read.
    """
    path = Path(path)
    header = read_gt_flow_header(path)
    declared = header["flow"][0][:2]
    if size is not None and declared != tuple(size):
        raise LayoutError(f"{path}: flow is {declared[1]}x{declared[0]} (W x H), person image {size[1]}x{size[0]}")
    try:
        with np.load(path, allow_pickle=False) as z:
            flow = z["flow"].astype(np.float32)
            mask = z["mask"].astype(np.uint8)
    except Exception as e:
        raise LayoutError(f"{path}: cannot read ground-truth flow ({type(e).__name__}: {e})") from e
    if flow.ndim != 3 or flow.shape[-1] != 2 or mask.shape != flow.shape[:2]:
        raise LayoutError(f"{path}: expected flow (H, W, 2) and mask (H, W), got {flow.shape} and {mask.shape}")
    return flow, mask


def read_meta(path: str | os.PathLike) -> dict:
    """A SynthVTON ``synth-meta`` JSON (caption, attributes, ids)."""
    path = Path(path)
    data = _read_json(path, "SynthVTON metadata file")
    if not isinstance(data, dict) or not isinstance(data.get("caption"), str) or not isinstance(
        data.get("attributes"), dict
    ):
        raise LayoutError(f"{path}: expected a JSON object with 'caption' (str) and 'attributes' (object)")
    return data


def estimate_cloth_mask(cloth: np.ndarray, threshold: int = 20) -> np.ndarray:
    """Garment mask of an in-shop image on white: pixels darker than white by ``threshold``, holes filled.

    Used for Dress Code, which ships no garment masks. Fails for white garments (no contrast).

    Args:
        cloth: uint8 (H, W, 3).

    Returns:
        uint8 (H, W) in {0, 1}.
    """
    from scipy import ndimage

    cloth = np.asarray(cloth)
    fg = (255 - cloth.astype(np.int16)).max(axis=-1) > threshold
    fg = ndimage.binary_opening(fg, iterations=1)
    return ndimage.binary_fill_holes(fg).astype(np.uint8)


def rescale_keypoints(kp: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Keypoints (..., 18, 3) in pixels of an image of ``from_size`` (H, W) -> pixels of ``to_size``.

    Pixel centres sit at integers and an image resize maps edges to edges, so
    ``x' = (x + 0.5) * W' / W - 0.5`` (the mapping of a bilinear resize). Missing points stay (0, 0, 0).
    """
    kp = np.asarray(kp, dtype=np.float32).copy()
    sy, sx = to_size[0] / from_size[0], to_size[1] / from_size[1]
    present = kp[..., 2] > 0
    kp[..., 0] = np.where(present, (kp[..., 0] + 0.5) * sx - 0.5, 0)
    kp[..., 1] = np.where(present, (kp[..., 1] + 0.5) * sy - 0.5, 0)
    return kp


# ----------------------------------------------------------------------------------------------
# Writing single files
# ----------------------------------------------------------------------------------------------


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_jpeg(path: str | os.PathLike, image: np.ndarray, quality: int = JPEG_QUALITY) -> None:
    """uint8 (H, W, 3) or (H, W) -> JPEG (no chroma subsampling: small images keep their colour edges)."""
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(_mkparent(Path(path)), quality=quality, subsampling=0)


def write_mask_jpeg(path: str | os.PathLike, mask: np.ndarray, quality: int = JPEG_QUALITY) -> None:
    """{0, 1} mask (H, W) -> greyscale JPEG with 0 / 255 (as VITON-HD's cloth-mask)."""
    write_jpeg(path, (np.asarray(mask) > 0).astype(np.uint8) * 255, quality)


def write_label_png(path: str | os.PathLike, labels: np.ndarray, palette: np.ndarray) -> None:
    """Labels uint8 (H, W) -> palette PNG whose pixel values are the labels."""
    labels = np.asarray(labels, dtype=np.uint8)
    img = Image.fromarray(labels)  # mode L
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[: len(palette)] = palette
    img.putpalette(pal.reshape(-1).tolist())  # L -> P, values unchanged
    img.save(_mkparent(Path(path)))


def write_openpose_json(path: str | os.PathLike, keypoints: np.ndarray) -> None:
    """COCO-18 (18, 3) -> OpenPose BODY_25 JSON (MidHip synthesised from the hips, feet missing)."""
    body25 = coco18_to_body25(keypoints)
    data = {
        "version": 1.3,
        "people": [
            {
                "person_id": [-1],
                "pose_keypoints_2d": [round(float(v), 3) for v in body25.reshape(-1)],
                "face_keypoints_2d": [],
                "hand_left_keypoints_2d": [],
                "hand_right_keypoints_2d": [],
            }
        ],
    }
    _mkparent(Path(path)).write_text(json.dumps(data))


def write_dresscode_keypoints(path: str | os.PathLike, keypoints: np.ndarray, image_size: tuple[int, int]) -> None:
    """COCO-18 (18, 3) in pixels of an image of ``image_size`` -> Dress Code JSON in the 384x512 frame."""
    kp = rescale_keypoints(keypoints, image_size, DRESSCODE_KEYPOINT_FRAME)
    rows = [[round(float(x), 3), round(float(y), 3), round(float(c), 4), i] for i, (x, y, c) in enumerate(kp)]
    _mkparent(Path(path)).write_text(json.dumps({"keypoints": rows}))


def write_gt_flow(path: str | os.PathLike, flow: np.ndarray, mask: np.ndarray) -> None:
    """Ground-truth flow (H, W, 2) and mask (H, W) -> compressed npz (flow stored as float16)."""
    flow = np.asarray(flow, dtype=np.float32)
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    np.savez_compressed(_mkparent(Path(path)), flow=(flow * mask[..., None]).astype(np.float16), mask=mask)


def write_meta(path: str | os.PathLike, sample: Mapping) -> None:
    """Caption, attributes and ids of a rendered sample -> JSON."""
    meta = {
        "caption": str(sample["caption"]),
        "attributes": {str(k): str(v) for k, v in dict(sample["attributes"]).items()},
    }
    for key in ("person_id", "garment_id", "pose_id", "seed", "group"):
        if key in sample:
            meta[key] = int(sample[key])
    _mkparent(Path(path)).write_text(json.dumps(meta, indent=1))


def write_pair_file(path: str | os.PathLike, rows: Iterable[Iterable[str]]) -> None:
    """Rows of names -> a whitespace-separated list file."""
    _mkparent(Path(path)).write_text("".join(" ".join(r) + "\n" for r in rows))


def _check_rendered(sample: Mapping, what: str) -> tuple[int, int]:
    missing = [k for k in ("image", "cloth", "cloth_mask", "parse", "keypoints") if k not in sample]
    if missing:
        raise KeyError(f"{what}: rendered sample lacks keys {missing}")
    h, w = np.asarray(sample["image"]).shape[:2]
    for k in ("cloth", "cloth_mask", "parse"):
        if np.asarray(sample[k]).shape[:2] != (h, w):
            raise ValueError(f"{what}: {k} has size {np.asarray(sample[k]).shape[:2]}, image has {(h, w)}")
    return h, w


def write_vitonhd_sample(root: str | os.PathLike, split: str, stem: str, sample: Mapping) -> dict[str, Path]:
    """Write one rendered sample (the numpy dict of :mod:`vtonlab.data.synth`) as VITON-HD files.

    The garment is written under the person's name (VITON-HD's paired convention). SynthVTON
    extras (``gt_flow``, ``caption``) go to ``gt-flow/`` and ``synth-meta/`` when present.
    """
    if split not in VITONHD_SPLITS:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    size = _check_rendered(sample, stem)
    paths = vitonhd_paths(root, split, stem)
    write_jpeg(paths["image"], sample["image"])
    write_jpeg(paths["cloth"], sample["cloth"])
    write_mask_jpeg(paths["cloth_mask"], sample["cloth_mask"])
    write_label_png(paths["parse"], sample["parse"], CIHP_PALETTE)
    write_openpose_json(paths["keypoints"], sample["keypoints"])
    Image.fromarray(skeleton_image(sample["keypoints"], size)).save(_mkparent(paths["skeleton"]))
    if "gt_flow" in sample:
        write_gt_flow(paths["gt_flow"], sample["gt_flow"], sample["gt_flow_mask"])
    if "caption" in sample:
        write_meta(paths["meta"], sample)
    return paths


def write_dresscode_sample(
    root: str | os.PathLike, category: str, sample_id: str, sample: Mapping
) -> dict[str, Path]:
    """Write one rendered sample as Dress Code files (labels mapped CIHP -> SCHP-ATR).

    Keypoints go to the 384x512 frame; the garment mask, which Dress Code lacks, goes to
    ``cloth_mask/<id>_1.png`` (extra folder).
    """
    if category not in DRESSCODE_CATEGORIES:
        raise ValueError(f"category: expected one of {DRESSCODE_CATEGORIES}, got {category!r}")
    size = _check_rendered(sample, sample_id)
    paths = dresscode_paths(root, category, sample_id)
    write_jpeg(paths["image"], sample["image"])
    write_jpeg(paths["cloth"], sample["cloth"])
    mask = (np.asarray(sample["cloth_mask"]) > 0).astype(np.uint8) * 255
    Image.fromarray(mask).save(_mkparent(paths["cloth_mask"]))
    write_label_png(paths["parse"], cihp_to_atr(sample["parse"], source=sample_id), ATR_PALETTE)
    write_dresscode_keypoints(paths["keypoints"], sample["keypoints"], size)
    write_jpeg(paths["skeleton"], skeleton_image(sample["keypoints"], size))
    if "gt_flow" in sample:
        write_gt_flow(paths["gt_flow"], sample["gt_flow"], sample["gt_flow_mask"])
    if "caption" in sample:
        write_meta(paths["meta"], sample)
    return paths


N_LABELS = {"vitonhd": N_CIHP, "dresscode": N_ATR}
"""Number of parsing labels in each layout's files."""
