"""Datasets that read VITON-HD and Dress Code layouts, and SynthVTON rendered into them.

Every dataset yields the sample dict of ``docs/architecture.md``: the person, the garment, its
mask, the parsing in the internal (CIHP) label set, COCO-18 keypoints in pixels of the resized
image, and the person representation of :mod:`vtonlab.data.representation`. SynthVTON files
additionally give ``gt_flow`` / ``gt_flow_mask`` (paired samples only: the flow maps the person to
*their own* garment) and ``caption`` / ``attributes`` (of the in-shop garment).

``synthvton(split, profile)`` is the default dataset of the course: it renders SynthVTON into the
cache on first use, in the real VITON-HD (or Dress Code) layout, and reads it back with the same
reader a user would point at the real dataset.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vtonlab.data import layouts as L
from vtonlab.data.labels import CATEGORIES, N_ATR, N_CIHP, atr_to_cihp
from vtonlab.data.representation import (
    POSE_STYLES,
    agnostic_image,
    body_shape,
    head_image,
    inpaint_mask,
    pose_heatmaps,
    worn_mask,
)

FORMAT_VERSION = 1
"""Bumped when the files written for SynthVTON change; part of the cache marker."""


# ----------------------------------------------------------------------------------------------
# Arrays -> the sample dict
# ----------------------------------------------------------------------------------------------


def _check_size(size: Sequence[int], name: str = "size") -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected (H, W), got {size!r}") from None
    if h < 8 or w < 8:
        raise ValueError(f"{name}: expected (H, W) of at least 8 x 8 pixels, got {(h, w)}")
    return h, w


def _image_tensor(img: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (H0, W0, 3) -> float (3, H, W) in [-1, 1], bilinear (anti-aliased) resize."""
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(127.5).sub(1.0)
    if tuple(t.shape[-2:]) != size:
        t = F.interpolate(t[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return t.clamp(-1.0, 1.0)


def _label_tensor(labels: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Integer (H0, W0) -> long (H, W), nearest-neighbour resize (pixel centres)."""
    t = torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64))
    if tuple(t.shape) != size:
        t = F.interpolate(t[None, None].float(), size=size, mode="nearest-exact")[0, 0].round().long()
    return t


def _renormalise(u: torch.Tensor, n_old: int, n_new: int) -> torch.Tensor:
    """Normalised (align_corners=True) coordinate along an axis of n_old pixels -> same point, n_new pixels."""
    if n_old == n_new:
        return u
    x_old = (u + 1) / 2 * (n_old - 1)
    x_new = (x_old + 0.5) * n_new / n_old - 0.5
    return x_new * 2 / max(n_new - 1, 1) - 1


def _flow_tensors(
    flow: np.ndarray, mask: np.ndarray, size: tuple[int, int], cloth_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth flow (H0, W0, 2) + mask -> (H, W, 2), (1, H, W) for a sample resized to ``size``.

    The flow field is resampled by normalised convolution (a bilinear average of valid pixels only),
    and its values are corrected for the garment being resized from ``cloth_size`` to ``size``.
    """
    f = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)[None]
    m = torch.from_numpy((np.asarray(mask) > 0).astype(np.float32))[None, None]
    if tuple(f.shape[-2:]) != size:
        num = F.interpolate(f * m, size=size, mode="bilinear", align_corners=False, antialias=True)
        den = F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=True)
        m = (den > 0.5).float()
        f = num / den.clamp_min(1e-6) * m
    f = f[0].permute(1, 2, 0).contiguous()
    f = torch.stack(
        [_renormalise(f[..., 0], cloth_size[1], size[1]), _renormalise(f[..., 1], cloth_size[0], size[0])], dim=-1
    )
    return f * m[0, 0, ..., None], m[0]


def to_sample(
    image: np.ndarray,
    cloth: np.ndarray,
    cloth_mask: np.ndarray,
    parse: np.ndarray,
    keypoints: np.ndarray,
    *,
    size: Sequence[int] | None = None,
    keypoint_frame: Sequence[int] | None = None,
    category: str = "upper_body",
    pose_style: str = "cpvton",
    im_name: str = "",
    c_name: str = "",
    gt_flow: tuple[np.ndarray, np.ndarray] | None = None,
    meta: Mapping | None = None,
) -> dict:
    """Build the sample dict from arrays as read from disk (or rendered).

    Args:
        image, cloth: uint8 (H0, W0, 3) person and in-shop garment (may differ in size).
        cloth_mask: (Hc, Wc) {0, 1}, the garment's size.
        parse: (Hp, Wp) internal (CIHP) labels.
        keypoints: (18, 3) COCO-18 in pixels of ``keypoint_frame`` (default: the person image size).
        size: output (H, W); default the person image size. Images are resized bilinearly, labels
            and masks with nearest neighbour.
        category: which garment the representation removes (``upper_body`` for VITON-HD).
        pose_style: heatmap style of ``pose_map`` (see :data:`~vtonlab.data.representation.POSE_STYLES`).
        gt_flow: optional (flow (H0, W0, 2), mask (H0, W0)) on the person grid, coordinates in the garment.
        meta: optional SynthVTON metadata (``caption``, ``attributes``).

    Returns:
        the sample dict (tensors, see ``docs/architecture.md``).
    """
    if category not in CATEGORIES:
        raise ValueError(f"category: expected one of {list(CATEGORIES)}, got {category!r}")
    if pose_style not in POSE_STYLES:
        raise ValueError(f"pose_style: expected one of {sorted(POSE_STYLES)}, got {pose_style!r}")
    image, cloth = np.asarray(image), np.asarray(cloth)
    size = _check_size(size) if size is not None else tuple(image.shape[:2])
    if np.asarray(cloth_mask).shape != cloth.shape[:2]:
        raise ValueError(f"{c_name or 'cloth_mask'}: garment mask size {np.asarray(cloth_mask).shape} "
                         f"differs from the garment image size {cloth.shape[:2]}")
    frame = tuple(keypoint_frame) if keypoint_frame is not None else tuple(image.shape[:2])
    kp = torch.from_numpy(L.rescale_keypoints(keypoints, frame, size))

    img_t = _image_tensor(image, size)
    parse_t = _label_tensor(parse, size)
    inpaint = inpaint_mask(parse_t, kp, category=category)
    sample = {
        "image": img_t,
        "cloth": _image_tensor(cloth, size),
        "cloth_mask": _label_tensor((np.asarray(cloth_mask) > 0).astype(np.uint8), size).float()[None],
        "parse": parse_t,
        "pose_keypoints": kp,
        "pose_map": pose_heatmaps(kp, size, style=pose_style),
        "agnostic": agnostic_image(img_t, inpaint),
        "inpaint_mask": inpaint,
        "worn_mask": worn_mask(parse_t, category),
        "body_shape": body_shape(parse_t),
        "head": head_image(img_t, parse_t),
        "im_name": im_name,
        "c_name": c_name,
    }
    if gt_flow is not None:
        flow, flow_mask = gt_flow
        sample["gt_flow"], sample["gt_flow_mask"] = _flow_tensors(flow, flow_mask, size, tuple(cloth.shape[:2]))
    if meta is not None:
        sample["caption"] = str(meta["caption"])
        sample["attributes"] = {str(k): str(v) for k, v in dict(meta["attributes"]).items()}
    return sample


def sample_from_render(
    rendered: Mapping,
    *,
    size: Sequence[int] | None = None,
    category: str = "upper_body",
    pose_style: str = "cpvton",
    im_name: str = "",
    c_name: str = "",
) -> dict:
    """The sample dict of a freshly rendered SynthVTON sample (the numpy dict of ``synth.render_sample``)."""
    meta = rendered if "caption" in rendered else None
    flow = (rendered["gt_flow"], rendered["gt_flow_mask"]) if "gt_flow" in rendered else None
    return to_sample(
        rendered["image"], rendered["cloth"], rendered["cloth_mask"], rendered["parse"], rendered["keypoints"],
        size=size, category=category, pose_style=pose_style, im_name=im_name, c_name=c_name, gt_flow=flow, meta=meta,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------


def _check_choice(value: str, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


class _TryOnDataset(Dataset):
    """Shared part of the readers: pair list, size, pose style; ``load(im_name, c_name)``."""

    category = "upper_body"

    def __init__(self, root, split: str, pairs: str, size: Sequence[int], pose_style: str):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: dataset root directory not found")
        self.split = _check_choice(split, L.VITONHD_SPLITS, "split")
        self.pairs_mode = _check_choice(pairs, ("paired", "unpaired"), "pairs")
        self.size = _check_size(size)
        self.pose_style = _check_choice(pose_style, sorted(POSE_STYLES), "pose_style")
        self.pairs: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        im_name, c_name = self.pairs[index]
        return self.load(im_name, c_name)

    def load(self, im_name: str, c_name: str) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, pairs={self.pairs_mode!r}, "
                f"size={self.size}, {len(self)} samples)")


class VitonHDDataset(_TryOnDataset):
    """A dataset in the VITON-HD layout (the real one, or SynthVTON written like it).

    Args:
        root: the folder holding ``train_pairs.txt``, ``test_pairs.txt``, ``train/``, ``test/``.
        split: ``"train"`` | ``"test"``.
        pairs: ``"paired"`` (each person with their own garment: the second column is ignored, as
            VITON-HD's paired test setting does) | ``"unpaired"`` (the garment of the second column).
        size: output (H, W); every file is resized to it.
        pose_style: heatmap style of ``pose_map``.
        keypoint_format: ``"body25"`` (75 values, what VITON-HD ships) | ``"coco18"`` (54 values, as in
            the original VITON); see :func:`~vtonlab.data.layouts.read_openpose_json`.

    Keypoints are read in pixels of the person image as found on disk (1024x768 for the real
    dataset) and scaled to ``size``.
    """

    def __init__(self, root, split: str = "train", pairs: str = "paired", size: Sequence[int] = (256, 192),
                 pose_style: str = "cpvton", keypoint_format: str = "body25"):
        super().__init__(root, split, pairs, size, pose_style)
        self.keypoint_format = _check_choice(keypoint_format, L.KEYPOINT_FORMATS, "keypoint_format")
        rows = L.read_pair_file(self.root / f"{self.split}_pairs.txt", 2, 2)
        self.pairs = [(im, im if self.pairs_mode == "paired" else c) for im, c in rows]

    def load(self, im_name: str, c_name: str) -> dict:
        """The sample dict of person ``im_name`` with garment ``c_name`` (file names as in the pair files)."""
        p = L.vitonhd_paths(self.root, self.split, L.stem_of(im_name))
        q = L.vitonhd_paths(self.root, self.split, L.stem_of(c_name))
        image = L.read_rgb(p["image"], "person image")
        cloth = L.read_rgb(q["cloth"], "in-shop garment image")
        cloth_mask = L.read_mask(q["cloth_mask"], "garment mask")
        parse = L.read_label_map(p["parse"], N_CIHP, "CIHP parsing")
        kp = L.read_openpose_json(p["keypoints"], self.keypoint_format)
        paired = p["gt_flow"] == q["gt_flow"] and p["gt_flow"].is_file()
        flow = L.read_gt_flow(p["gt_flow"], image.shape[:2]) if paired else None
        meta = L.read_meta(q["meta"]) if q["meta"].is_file() else None
        return to_sample(image, cloth, cloth_mask, parse, kp, size=self.size, category="upper_body",
                         pose_style=self.pose_style, im_name=im_name, c_name=c_name, gt_flow=flow, meta=meta)


class DressCodeDataset(_TryOnDataset):
    """A dataset in the Dress Code layout (one category).

    Args:
        root: the folder holding ``upper_body/``, ``lower_body/``, ``dresses/``.
        category: ``"upper_body"`` | ``"lower_body"`` | ``"dresses"``.
        split: ``"train"`` | ``"test"``.
        pairs: ``"paired"`` | ``"unpaired"`` (test: ``test_pairs_paired.txt`` / ``test_pairs_unpaired.txt``;
            train always reads ``train_pairs.txt``).
        size: output (H, W).
        pose_style: heatmap style of ``pose_map``.

    SCHP-ATR labels are mapped to the internal CIHP set (:func:`vtonlab.data.labels.atr_to_cihp`),
    keypoints from the 384x512 frame to ``size``. The garment mask comes from ``cloth_mask/`` when
    present, else it is estimated from the white background (:func:`~vtonlab.data.layouts.estimate_cloth_mask`).
    """

    def __init__(self, root, category: str = "upper_body", split: str = "train", pairs: str = "paired",
                 size: Sequence[int] = (256, 192), pose_style: str = "cpvton"):
        super().__init__(root, split, pairs, size, pose_style)
        self.category = _check_choice(category, L.DRESSCODE_CATEGORIES, "category")
        pair_file = self.root / self.category / L.DRESSCODE_PAIR_FILES[(self.split, self.pairs_mode)]
        self.pairs = [(im, c) for im, c in L.read_pair_file(pair_file, 2, 2)]

    def load(self, im_name: str, c_name: str) -> dict:
        """The sample dict of person ``<id>_0.jpg`` with garment ``<id>_1.jpg``."""
        sid, cid = L.dresscode_id(im_name), L.dresscode_id(c_name)
        p = L.dresscode_paths(self.root, self.category, sid)
        q = L.dresscode_paths(self.root, self.category, cid)
        image = L.read_rgb(p["image"], "person image")
        cloth = L.read_rgb(q["cloth"], "in-shop garment image")
        if q["cloth_mask"].is_file():
            cloth_mask = L.read_mask(q["cloth_mask"], "garment mask")
        else:
            cloth_mask = L.estimate_cloth_mask(cloth)
        parse = atr_to_cihp(L.read_label_map(p["parse"], N_ATR, "SCHP-ATR label map"), source=str(p["parse"]))
        kp = L.read_dresscode_keypoints(p["keypoints"])
        flow = L.read_gt_flow(p["gt_flow"], image.shape[:2]) if sid == cid and p["gt_flow"].is_file() else None
        meta = L.read_meta(q["meta"]) if q["meta"].is_file() else None
        return to_sample(image, cloth, cloth_mask, parse, kp, size=self.size, keypoint_frame=L.DRESSCODE_KEYPOINT_FRAME,
                         category=self.category, pose_style=self.pose_style, im_name=im_name, c_name=c_name,
                         gt_flow=flow, meta=meta)


class MultiPoseDataset(Dataset):
    """MG-VTON's multi-pose setting from an MPV-style list (``personA personB cloth split``).

    Each item is ``{"source": sample A, "target": sample B}``: the same person wearing the same
    garment (``cloth``) in two poses; both are sample dicts with that garment. SynthVTON writes the
    list as ``mpv_triplets.txt`` at the root (VITON-HD) or in the category folder (Dress Code).
    """

    def __init__(self, root, split: str = "train", size: Sequence[int] = (256, 192), pose_style: str = "cpvton",
                 category: str = "upper_body"):
        root = Path(root)
        layout = L.detect_layout(root)
        if layout == "vitonhd":
            self.base: _TryOnDataset = VitonHDDataset(root, split, "paired", size, pose_style)
            list_file = root / L.MPV_LIST
        else:
            self.base = DressCodeDataset(root, category, split, "paired", size, pose_style)
            list_file = root / category / L.MPV_LIST
        self.split = split
        self.triplets = [(a, b, c) for a, b, c, s in L.read_mpv_list(list_file) if s == split]

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} triplets")
        a, b, c = self.triplets[index]
        return {"source": self.base.load(a, c), "target": self.base.load(b, c)}


# ----------------------------------------------------------------------------------------------
# Writing SynthVTON
# ----------------------------------------------------------------------------------------------


def _renderer():
    try:
        from vtonlab.data import synth
    except ModuleNotFoundError as e:  # pragma: no cover - only while the renderer is missing
        raise RuntimeError("the SynthVTON renderer vtonlab.data.synth is not available") from e
    return synth


def renderer_version() -> int:
    """The renderer's :data:`~vtonlab.data.synth.RENDERER_VERSION`: part of the cache marker and of data keys."""
    return int(_renderer().RENDERER_VERSION)


def group_seed(seed: int, group: int) -> int:
    """The renderer seed of group ``group`` of a dataset with seed ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(group)]).generate_state(1)[0])


def sample_stem(layout: str, group: int, pose: int) -> str:
    """File stem of pose ``pose`` of group ``group``: VITON-HD ``00012_01``, Dress Code id ``000121``."""
    if layout == "vitonhd":
        return f"{group:05d}_{pose:02d}"
    return f"{group:05d}{pose}"


def _person_name(layout: str, stem: str) -> str:
    return f"{stem}.jpg" if layout == "vitonhd" else f"{stem}_0.jpg"


def _cloth_name(layout: str, stem: str) -> str:
    return f"{stem}.jpg" if layout == "vitonhd" else f"{stem}_1.jpg"


def _render_and_write(job: tuple) -> list[dict]:
    """Worker: render one multi-pose group and write its files. Returns what the pair files need."""
    root, layout, split, group, n_poses, seed, size = job
    samples = _renderer().render_group(group_seed(seed, group), n_poses=n_poses, size=tuple(size))
    out = []
    for pose, s in enumerate(samples):
        stem = sample_stem(layout, group, pose)
        s = dict(s, seed=group_seed(seed, group), group=group)
        if layout == "vitonhd":
            L.write_vitonhd_sample(root, split, stem, s)
        else:
            L.write_dresscode_sample(root, "upper_body", stem, s)
        out.append({"split": split, "group": group, "pose": pose, "stem": stem,
                    "garment_id": int(s["garment_id"]), "person_id": int(s["person_id"])})
    return out


def _plan(n_train: int, n_test: int, n_poses: int) -> list[tuple[str, int, int]]:
    jobs, group = [], 0
    for split, n in (("train", n_train), ("test", n_test)):
        left = n
        while left > 0:
            k = min(n_poses, left)
            jobs.append((split, group, k))
            left -= k
            group += 1
    return jobs


def _unpaired_partner(test_groups: list[list[dict]], gi: int) -> dict:
    """The first pose of the next test group (cyclically) with a different garment; own if none."""
    n = len(test_groups)
    for step in range(1, n):
        other = test_groups[(gi + step) % n]
        if other[0]["garment_id"] != test_groups[gi][0]["garment_id"]:
            return other[0]
    return test_groups[gi][0]


def _write_lists(root: Path, layout: str, records: list[dict]) -> dict[str, int]:
    groups: dict[int, list[dict]] = {}
    for r in records:
        groups.setdefault(r["group"], []).append(r)
    for g in groups.values():
        g.sort(key=lambda r: r["pose"])
    ordered = [groups[k] for k in sorted(groups)]
    train = [g for g in ordered if g[0]["split"] == "train"]
    test = [g for g in ordered if g[0]["split"] == "test"]

    def person(r):
        return _person_name(layout, r["stem"])

    def cloth(r):
        return _cloth_name(layout, r["stem"])

    train_rows = [(person(r), cloth(r)) for g in train for r in g]
    paired_rows = [(person(r), cloth(r)) for g in test for r in g]
    unpaired_rows = [(person(r), cloth(_unpaired_partner(test, gi))) for gi, g in enumerate(test) for r in g]
    mpv_rows = [(person(a), person(b), cloth(a), a["split"]) for g in ordered for a in g for b in g if a is not b]
    if layout == "vitonhd":
        L.write_pair_file(root / "train_pairs.txt", train_rows)
        L.write_pair_file(root / "test_pairs.txt", unpaired_rows)
        L.write_pair_file(root / L.MPV_LIST, mpv_rows)
    else:
        cat = root / "upper_body"
        for name, rows in (("train_pairs.txt", train_rows), ("test_pairs_paired.txt", paired_rows),
                           ("test_pairs_unpaired.txt", unpaired_rows)):
            L.write_pair_file(cat / name, rows)
            L.write_pair_file(root / name, [(a, b, "upper_body") for a, b in rows])
        L.write_pair_file(cat / L.MPV_LIST, mpv_rows)
    return {"train": len(train_rows), "test": len(paired_rows), "mpv_triplets": len(mpv_rows)}


def render_params(layout: str, n_train: int, n_test: int, seed: int, size: Sequence[int], n_poses: int) -> dict:
    """Everything that determines a rendered SynthVTON folder (stored in its ``synthvton.json``)."""
    return {"format": FORMAT_VERSION, "renderer_version": renderer_version(), "layout": layout,
            "n_train": int(n_train), "n_test": int(n_test), "seed": int(seed),
            "size": [int(size[0]), int(size[1])], "n_poses": int(n_poses)}


def read_marker(root: str | os.PathLike) -> dict | None:
    """The render parameters stored in ``root/synthvton.json`` (``None`` when absent or unreadable)."""
    path = Path(root) / L.SYNTH_MARKER
    try:
        return json.loads(path.read_text()).get("params")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def _default_workers(n_jobs: int) -> int:
    """Rendering processes: ``$VTONLAB_WORKERS`` (a positive integer), else up to 2 (one per 4 groups)."""
    env = os.environ.get("VTONLAB_WORKERS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"VTONLAB_WORKERS: expected a positive number of rendering processes, got {env!r}")
        return int(env)
    return max(1, min(2, os.cpu_count() or 1, n_jobs // 4))


def check_render_args(layout: str, n_train: int, n_test: int, seed: int, size: Sequence[int], n_poses: int,
                      workers: int | None = None) -> tuple[str, tuple[int, int], int]:
    """Validate the arguments of :func:`write_synthvton` before any work: ``(layout, size, workers)``.

    ``workers=None`` resolves ``$VTONLAB_WORKERS`` (an error names the variable when it is not a
    positive integer).
    """
    layout = _check_choice(layout, ("vitonhd", "dresscode"), "layout")
    size = _check_size(size)
    for name, value in (("n_train", n_train), ("n_test", n_test), ("seed", seed), ("n_poses", n_poses)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
    if n_train < 0 or n_test < 1:
        raise ValueError(f"n_train must be >= 0 and n_test >= 1, got {n_train} and {n_test}")
    if not 1 <= n_poses <= 10:
        raise ValueError(f"n_poses: expected 1..10, got {n_poses}")
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"workers: expected a positive number of rendering processes, got {workers!r}")
    n_jobs = len(_plan(n_train, n_test, n_poses))
    return layout, size, (_default_workers(n_jobs) if workers is None else int(workers))


def _die_with_parent(parent_pid: int) -> None:
    """Pool initializer: the worker is killed when the process that started the pool dies (Linux).

    So a render killed with SIGKILL leaves no workers behind (they would go on writing into its
    temporary folder). Render locks are never held by workers (:mod:`vtonlab.locks`).
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    from vtonlab.locks import pid_alive

    if not pid_alive(parent_pid):  # it died before prctl took effect
        os._exit(1)


def write_synthvton(
    root: str | os.PathLike,
    layout: str = "vitonhd",
    n_train: int = 96,
    n_test: int = 16,
    seed: int = 0,
    size: Sequence[int] = (256, 192),
    n_poses: int = 2,
    workers: int | None = None,
    progress: bool | None = None,
) -> dict:
    """Render SynthVTON and write it into ``root`` (which must not exist or be empty) in ``layout``.

    Samples come in multi-pose groups of ``n_poses`` (same person and garment, different poses);
    train and test never share a group. The test split's unpaired pairs give each person the
    garment of another test group (a different garment). An MPV-style list of every ordered pose
    pair within a group is written too, and ``synthvton.json`` with the parameters, written last.

    Args:
        root: output folder.
        layout: ``"vitonhd"`` | ``"dresscode"`` (Dress Code: category ``upper_body``).
        n_train, n_test: number of person images per split.
        seed: dataset seed, >= 0 (group ``g`` is rendered with :func:`group_seed`).
        size: (H, W) of the written images.
        n_poses: poses per group (1..10).
        workers: processes (default: up to 2; ``$VTONLAB_WORKERS`` overrides). Workers die with the
            process that started them.
        progress: tqdm bar (default on unless ``$VTONLAB_PROGRESS=0``).

    Returns:
        the marker dict (``params`` + ``counts``).
    """
    layout, size, workers = check_render_args(layout, n_train, n_test, seed, size, n_poses, workers)
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: output directory is not empty")
    root.mkdir(parents=True, exist_ok=True)
    params = render_params(layout, n_train, n_test, seed, size, n_poses)
    plan = _plan(n_train, n_test, n_poses)
    jobs = [(str(root), layout, split, group, k, seed, size) for split, group, k in plan]
    if progress is None:
        progress = os.environ.get("VTONLAB_PROGRESS", "1") != "0"
    from vtonlab.progress import progress_bar

    records: list[dict] = []
    with progress_bar(total=n_train + n_test, desc=f"SynthVTON {layout} {size[0]}x{size[1]}", unit="sample",
                      disable=not progress, dynamic_ncols=True) as bar:
        if workers == 1:
            results = map(_render_and_write, jobs)
            for res in results:
                records += res
                bar.update(len(res))
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
                for res in pool.map(_render_and_write, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                    records += res
                    bar.update(len(res))
    counts = _write_lists(root, layout, records)
    marker = {"generator": "vtonlab SynthVTON", "params": params, "counts": counts}
    (root / L.SYNTH_MARKER).write_text(json.dumps(marker, indent=1))
    return marker


def render_lock(root: str | os.PathLike):
    """The lock of a rendered folder (``.<name>.lock`` beside it): one render or replacement at a time.

    A process that has to wait says so once (``waiting for another process rendering <root> (pid N)``).
    Pool workers never hold it, and the kernel releases it when its holder dies.
    """
    from vtonlab.locks import file_lock

    root = Path(root)
    return file_lock(root.parent / f".{root.name}.lock", waiting=f"rendering {root}")


def temporary_folder(root: str | os.PathLike) -> Path:
    """A fresh sibling of ``root`` to render into: ``.<name>.tmp-<pid>-<random>``."""
    root = Path(root)
    return root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale_temporaries(root: str | os.PathLike, say=print) -> list[Path]:
    """Remove the temporary siblings of ``root`` left by renders whose process is dead; call under :func:`render_lock`.

    ``.<name>.tmp-<pid>-...`` of a pid that no longer runs, and ``.<name>.old-...`` (a replaced folder
    whose removal was interrupted). Returns the removed folders.
    """
    from vtonlab.locks import pid_alive

    root = Path(root)
    if not root.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(root.name)}\.(?:tmp-(\d+)-[0-9a-f]+|old-[0-9a-f]+)$")
    removed = []
    for path in sorted(root.parent.iterdir()):
        m = pattern.match(path.name)
        if not m or not path.is_dir() or path.is_symlink():
            continue
        pid = int(m.group(1)) if m.group(1) else None
        if pid is not None and (pid == os.getpid() or pid_alive(pid)):
            continue
        say(f"removing {path}, left by an interrupted render" + (f" (pid {pid})" if pid else ""))
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def ensure_synthvton(root: str | os.PathLike, params_kwargs: Mapping, *, workers: int | None = None,
                     progress: bool | None = None) -> Path:
    """Make sure ``root`` holds SynthVTON rendered with these parameters; render it atomically if not.

    The render goes to a temporary sibling folder that is renamed into place once complete, so an
    interrupted render is never mistaken for a finished one; a folder whose marker holds other
    parameters (or none) is replaced. Concurrent callers wait on a lock file (with a message); the
    temporary folders of killed renders are removed under it.
    """
    root = Path(root)
    wanted = render_params(**params_kwargs)
    if read_marker(root) == wanted:
        return root
    check_render_args(workers=workers, **params_kwargs)
    with render_lock(root):
        remove_stale_temporaries(root)
        if read_marker(root) == wanted:  # rendered by someone else while we waited
            return root
        tmp = temporary_folder(root)
        try:
            write_synthvton(tmp, workers=workers, progress=progress, **params_kwargs)
            if root.exists():
                old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(root, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return root


def synthvton_root(profile=None, layout: str = "vitonhd", seed: int = 0) -> Path:
    """Where :func:`synthvton` keeps the dataset of a profile: ``cache_dir()/synthvton-<profile>-<layout>``."""
    from vtonlab.paths import cache_dir
    from vtonlab.profiles import resolve as resolve_profile

    prof = resolve_profile(profile)
    suffix = f"-seed{seed}" if seed else ""
    return cache_dir() / f"synthvton-{prof.name}-{layout}{suffix}"


def synthvton_params(profile=None, layout: str = "vitonhd", seed: int = 0) -> dict:
    """The render parameters of a profile's SynthVTON (with the renderer version): the data key of checkpoints.

    Everything that determines the rendered files; stored in the cache marker and in the ``data`` entry of
    every checkpoint config trained on this dataset.
    """
    from vtonlab.profiles import resolve as resolve_profile

    prof = resolve_profile(profile)
    layout = _check_choice(layout, ("vitonhd", "dresscode"), "layout")
    return render_params(layout, prof.n_train, prof.n_test, seed, tuple(prof.image_size), 2)


def synthvton(
    split: str = "train",
    profile=None,
    layout: str = "vitonhd",
    pairs: str = "paired",
    *,
    seed: int = 0,
    pose_style: str = "cpvton",
    size: Sequence[int] | None = None,
    workers: int | None = None,
    progress: bool | None = None,
) -> VitonHDDataset | DressCodeDataset:
    """The default dataset: SynthVTON of the active profile, rendered into the cache on first use.

    ``profile.n_train`` / ``profile.n_test`` samples at ``profile.image_size`` are rendered once in
    ``layout`` (re-rendered when those parameters or the renderer change) and read back with
    :class:`VitonHDDataset` (or :class:`DressCodeDataset`, category ``upper_body``).

    Args:
        split: ``"train"`` | ``"test"``.
        profile: a :class:`~vtonlab.profiles.Profile`, a profile name, or ``None`` for the active one.
        layout: ``"vitonhd"`` | ``"dresscode"``.
        pairs: ``"paired"`` | ``"unpaired"``.
        seed: dataset seed (seed 0 is the course's dataset).
        pose_style: heatmap style of ``pose_map``.
        size: read at another (H, W) than the rendered one (files are resized).
    """
    from vtonlab.profiles import resolve as resolve_profile

    prof = resolve_profile(profile)
    layout = _check_choice(layout, ("vitonhd", "dresscode"), "layout")
    root = synthvton_root(prof, layout, seed)
    kwargs = {"layout": layout, "n_train": prof.n_train, "n_test": prof.n_test, "seed": seed,
              "size": tuple(prof.image_size), "n_poses": 2}
    ensure_synthvton(root, kwargs, workers=workers, progress=progress)
    out_size = tuple(size) if size is not None else tuple(prof.image_size)
    if layout == "vitonhd":
        return VitonHDDataset(root, split, pairs, out_size, pose_style)
    return DressCodeDataset(root, "upper_body", split, pairs, out_size, pose_style)


__all__: list[str] = [
    "DressCodeDataset", "MultiPoseDataset", "VitonHDDataset", "ensure_synthvton", "read_marker", "render_params",
    "renderer_version", "sample_from_render", "synthvton", "synthvton_params", "synthvton_root", "to_sample", "write_synthvton",
]  # fmt: skip
