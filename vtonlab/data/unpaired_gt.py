"""SynthVTON's unpaired ground truth: each test person wearing *another* garment, rendered.

Real try-on datasets cannot show a person in a garment they did not wear at the photo shoot, so the
unpaired setting (VITON-HD's ``test_pairs.txt``, MG-VTON's new garment in a new pose) is scored only
with distribution metrics (FID, KID). SynthVTON renders the person from a seed, so it can dress the
same person, in the same pose, in the garment of the unpaired pair (``render_group(person seed,
garment_seed=partner seed)``): a true ground truth for SSIM, LPIPS, garment-region errors and even
the exact warp, unpaired and multi-pose.

:func:`ensure_unpaired_gt` adds it to an existing rendered SynthVTON folder, lazily and atomically;
the folder's own files and marker are never touched, so checkpoints keyed on the folder's render
parameters stay valid. What it writes (``<gt>`` = ``<person stem>__<cloth stem>``)::

    VITON-HD                                                 Dress Code (category upper_body)
    test/unpaired_gt/image/<gt>.jpg            person B      upper_body/unpaired_gt/images/<gt>.jpg
    test/unpaired_gt/image-parse-v3/<gt>.png   CIHP labels   upper_body/unpaired_gt/label_maps/<gt>.png (SCHP-ATR)
    test/unpaired_gt/gt-flow/<gt>.npz          garment flow  upper_body/unpaired_gt/gt-flow/<gt>.npz
    test_unpaired_gt.txt                       lists         upper_body/test_unpaired_gt.txt
    mpv_unpaired_gt.txt                                      upper_body/mpv_unpaired_gt.txt
    unpaired_gt.json                           marker        unpaired_gt.json

e.g. ``00300_01__00301_00.jpg``: person ``00300_01`` wearing garment ``00301_00``. The lists sit
beside the pair files they extend:

- ``test_unpaired_gt.txt``: ``person cloth gt_image`` per line: exactly the rows of the unpaired test
  pair file (VITON-HD ``test_pairs.txt``, Dress Code ``test_pairs_unpaired.txt``) plus the name of the
  ground-truth image;
- ``mpv_unpaired_gt.txt``: ``source_person target_person cloth gt_image``: every ordered pose pair of
  a test group, the garment of the group's unpaired partner, and the target person wearing it (the
  same file as the single-pose ground truth of the target).

The parsing is in the layout's own label format and palette; the keypoints are those of the
person's pose file (checked identical while rendering); ``gt-flow`` maps each visible garment pixel
of the ground truth to its (x, y) in the partner's in-shop image (as SynthVTON's paired ``gt-flow``).
``unpaired_gt.json`` (written last) holds the folder's render parameters plus
:data:`UNPAIRED_GT_FORMAT`.

Readers: :class:`UnpairedGroundTruthDataset` (single pose) and
:class:`MultiPoseUnpairedGroundTruthDataset` (MG-VTON's setting), both made by
:func:`unpaired_tryon_set`; :func:`synthvton_unpaired` renders a profile's data and its ground truth
and returns the reader. The real-dataset readers never look at these files.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from vtonlab.data import datasets as D
from vtonlab.data import layouts as L
from vtonlab.data.labels import ATR_PALETTE, CIHP_PALETTE, N_ATR, N_CIHP, atr_to_cihp, cihp_to_atr

UNPAIRED_GT_FORMAT = 1
"""Bumped when the files written for the unpaired ground truth change; part of its marker."""
UNPAIRED_GT_DIR = "unpaired_gt"
UNPAIRED_GT_LIST = "test_unpaired_gt.txt"
MPV_UNPAIRED_GT_LIST = "mpv_unpaired_gt.txt"
UNPAIRED_GT_MARKER = "unpaired_gt.json"
GT_FOLDERS: dict[str, dict[str, tuple[str, str]]] = {
    "vitonhd": {"image": ("image", ".jpg"), "parse": ("image-parse-v3", ".png"), "gt_flow": (L.GT_FLOW_DIR, ".npz")},
    "dresscode": {"image": ("images", ".jpg"), "parse": ("label_maps", ".png"), "gt_flow": (L.GT_FLOW_DIR, ".npz")},
}
"""Files of one ground-truth sample per layout: kind -> (folder under ``unpaired_gt/``, suffix)."""
CATEGORY = "upper_body"
"""The Dress Code category SynthVTON writes."""
CLOTH_TOLERANCE = 4.0
"""Largest mean absolute difference (grey levels of 255) between the garment drawn for the ground truth
and the partner's in-shop JPEG on disk (JPEG quality 95 gives about 1)."""

_HOW = ("make it with vtonlab.data.ensure_unpaired_gt(root) or `python -m vtonlab data generate ... --unpaired-gt` "
        "(`data prepare --unpaired-gt` for a profile's cache)")


# ----------------------------------------------------------------------------------------------
# Names and paths
# ----------------------------------------------------------------------------------------------


def gt_name(person: str, cloth: str) -> str:
    """Ground-truth image name of ``person`` wearing ``cloth``: ``"00300_01.jpg", "00301_00.jpg"`` ->
    ``"00300_01__00301_00.jpg"`` (Dress Code: ``"000120_0__000130_1.jpg"``)."""
    return f"{L.stem_of(person)}__{L.stem_of(cloth)}.jpg"


def gt_folder(root: str | os.PathLike, layout: str, category: str = CATEGORY) -> Path:
    """``root/test/unpaired_gt`` (VITON-HD) or ``root/<category>/unpaired_gt`` (Dress Code)."""
    return Path(root) / ("test" if layout == "vitonhd" else category) / UNPAIRED_GT_DIR


def list_folder(root: str | os.PathLike, layout: str, category: str = CATEGORY) -> Path:
    """Where the two lists are: beside the unpaired pair file (the root, or ``root/<category>``)."""
    return Path(root) if layout == "vitonhd" else Path(root) / category


def gt_paths(folder: str | os.PathLike, layout: str, name: str) -> dict[str, Path]:
    """The files of ground-truth sample ``name`` (a ``gt_image`` column entry) under ``folder`` (:func:`gt_folder`)."""
    stem = L.stem_of(name)
    return {kind: Path(folder) / sub / f"{stem}{suffix}" for kind, (sub, suffix) in GT_FOLDERS[layout].items()}


def _sample_paths(root: Path, layout: str, stem: str) -> dict[str, Path]:
    """The files of a test sample of the SynthVTON folder (stem as written by ``sample_stem``)."""
    if layout == "vitonhd":
        return L.vitonhd_paths(root, "test", stem)
    return L.dresscode_paths(root, CATEGORY, stem)


def _own_cloth(layout: str, person: str) -> str:
    """The garment a person wears in the paired setting: the same name (VITON-HD) or ``<id>_1.jpg`` (Dress Code)."""
    return person if layout == "vitonhd" else f"{L.dresscode_id(person)}_1.jpg"


def unpaired_gt_params(root_params: dict) -> dict:
    """The parameters in ``unpaired_gt.json``: the folder's render parameters plus :data:`UNPAIRED_GT_FORMAT`."""
    return {**root_params, "unpaired_gt_format": UNPAIRED_GT_FORMAT}


def read_unpaired_gt_marker(root: str | os.PathLike) -> dict | None:
    """The parameters stored in ``root/unpaired_gt.json`` (``None`` when absent or unreadable)."""
    try:
        return json.loads((Path(root) / UNPAIRED_GT_MARKER).read_text()).get("params")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


def _root_params(root: Path) -> dict:
    """The render parameters of a SynthVTON folder; errors name the folder when it is not one we can extend."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: SynthVTON folder not found")
    params = D.read_marker(root)
    if not isinstance(params, dict):
        raise L.LayoutError(f"{root}: no SynthVTON marker ({L.SYNTH_MARKER}); the unpaired ground truth can be rendered "
                            "only into a folder written by write_synthvton, `data generate` or synthvton()")
    missing = [k for k in ("format", "renderer_version", "layout", "n_train", "n_test", "seed", "size", "n_poses")
               if k not in params]
    if missing:
        raise L.LayoutError(f"{root / L.SYNTH_MARKER}: marker lacks the render parameters {missing}")
    if params["renderer_version"] != D.renderer_version() or params["format"] != D.FORMAT_VERSION:
        raise L.LayoutError(
            f"{root}: rendered by SynthVTON renderer version {params['renderer_version']} (file format "
            f"{params['format']}), this vtonlab renders version {D.renderer_version()} (format {D.FORMAT_VERSION}): the "
            "ground truth would not match the folder; re-render it first (`data generate --overwrite`, or synthvton())"
        )
    return params


def _test_groups(root: Path, params: dict) -> list[list[dict]]:
    """The test groups of the folder (as ``_write_lists`` saw them), garment ids read from ``synth-meta``."""
    layout = params["layout"]
    groups = []
    for split, group, k in D._plan(params["n_train"], params["n_test"], params["n_poses"]):
        if split != "test":
            continue
        records = []
        for pose in range(k):
            stem = D.sample_stem(layout, group, pose)
            meta_path = _sample_paths(root, layout, stem)["meta"]
            meta = L.read_meta(meta_path)
            if not isinstance(meta.get("garment_id"), int) or meta.get("group", group) != group:
                raise L.LayoutError(f"{meta_path}: expected the garment_id (int) of group {group}, got "
                                    f"garment_id={meta.get('garment_id')!r}, group={meta.get('group')!r}")
            records.append({"split": "test", "group": group, "pose": pose, "stem": stem,
                            "garment_id": int(meta["garment_id"])})
        groups.append(records)
    return groups


def _rows(layout: str, test: list[list[dict]]) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]], list[int]]:
    """(single-pose rows, multi-pose rows, partner group of each test group), by ``_unpaired_partner``'s rule."""
    single, multi, partners = [], [], []
    for gi, g in enumerate(test):
        partner = D._unpaired_partner(test, gi)
        partners.append(partner["group"])
        cloth = D._cloth_name(layout, partner["stem"])
        for r in g:
            person = D._person_name(layout, r["stem"])
            single.append((person, cloth, gt_name(person, cloth)))
        for a in g:
            for b in g:
                if a is not b:
                    pa, pb = D._person_name(layout, a["stem"]), D._person_name(layout, b["stem"])
                    multi.append((pa, pb, cloth, gt_name(pb, cloth)))
    return single, multi, partners


def _check_keypoints(rendered: np.ndarray, path: Path, layout: str, size: tuple[int, int]) -> None:
    """The ground truth's keypoints must be those of the person's pose file (same person, same pose)."""
    if layout == "vitonhd":
        on_disk = L.read_openpose_json(path)
    else:
        on_disk = L.rescale_keypoints(L.read_dresscode_keypoints(path), L.DRESSCODE_KEYPOINT_FRAME, size)
    rendered = np.asarray(rendered, dtype=np.float32)
    same_points = np.array_equal(on_disk[:, 2] > 0, rendered[:, 2] > 0)
    if not same_points or np.abs(on_disk[:, :2] - rendered[:, :2]).max() > 1e-2 or \
            np.abs(on_disk[:, 2] - rendered[:, 2]).max() > 1e-3:
        raise L.LayoutError(f"{path}: the keypoints rendered for the unpaired ground truth differ from this pose file "
                            "(the folder was not rendered from the seeds its marker names)")


def _render_group_gt(job: tuple) -> int:
    """Worker: render one test group in its partner's garment, check it, write it under ``tmp``. Returns its size."""
    root, tmp, layout, seed, size, group, k, partner_group, partner_stem, partner_garment = job
    root, tmp, size = Path(root), Path(tmp), tuple(size)
    synth = D._renderer()
    garment_seed = D.group_seed(seed, partner_group)
    samples = synth.render_group(D.group_seed(seed, group), n_poses=k, size=size, garment_seed=garment_seed)
    shop = synth.render_garment(garment_seed, size)  # the partner's in-shop garment, as write_synthvton drew it
    partner = _sample_paths(root, layout, partner_stem)
    partner_cloth = L.read_rgb(partner["cloth"], "in-shop garment image").astype(np.float32)
    cloth = D._cloth_name(layout, partner_stem)
    for pose, s in enumerate(samples):
        stem = D.sample_stem(layout, group, pose)
        if int(s["garment_id"]) != partner_garment:
            raise L.LayoutError(f"{partner['meta']}: partner garment id {partner_garment}, but the ground truth of {stem} "
                                f"was drawn in garment {int(s['garment_id'])}")
        if not (np.array_equal(s["cloth"], shop["cloth"]) and np.array_equal(s["cloth_mask"], shop["cloth_mask"])):
            raise RuntimeError(f"ground truth of {stem}: the garment drawn with garment_seed={garment_seed} is not the "
                               f"in-shop garment of group {partner_group} (renderer inconsistency)")
        err = float(np.abs(s["cloth"].astype(np.float32) - partner_cloth).mean())
        if err > CLOTH_TOLERANCE:
            raise L.LayoutError(f"{partner['cloth']}: the garment drawn for the unpaired ground truth differs from this "
                                f"in-shop image (mean |difference| {err:.1f} > {CLOTH_TOLERANCE} grey levels)")
        _check_keypoints(s["keypoints"], _sample_paths(root, layout, stem)["keypoints"], layout, size)
        out = gt_paths(tmp, layout, gt_name(D._person_name(layout, stem), cloth))
        L.write_jpeg(out["image"], s["image"])
        if layout == "vitonhd":
            L.write_label_png(out["parse"], s["parse"], CIHP_PALETTE)
        else:
            L.write_label_png(out["parse"], cihp_to_atr(s["parse"], source=stem), ATR_PALETTE)
        L.write_gt_flow(out["gt_flow"], s["gt_flow"], s["gt_flow_mask"])
    return len(samples)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _is_complete(root: Path, layout: str, wanted: dict) -> bool:
    lists = list_folder(root, layout)
    return (read_unpaired_gt_marker(root) == wanted and gt_folder(root, layout).is_dir()
            and (lists / UNPAIRED_GT_LIST).is_file() and (lists / MPV_UNPAIRED_GT_LIST).is_file())


def ensure_unpaired_gt(root: str | os.PathLike, *, workers: int | None = None, progress: bool | None = None) -> Path:
    """Make sure the SynthVTON folder ``root`` holds its unpaired ground truth; render it if not.

    For every test group ``g`` with unpaired partner ``p`` (the rule of the folder's unpaired pair file,
    whose rows are checked to match), renders ``render_group(group_seed(seed, g), n_poses, size,
    garment_seed=group_seed(seed, p))`` and writes each pose's person image, parsing and garment flow
    (files and lists: see the module docstring). Checks, raising an error naming the file: the garment
    drawn is the partner's in-shop garment (same id; identical to the partner's in-shop render before
    JPEG; within :data:`CLOTH_TOLERANCE` of its JPEG), and the keypoints equal the person's pose file.

    The render goes to a temporary folder renamed into place under the folder's render lock (the lock
    of :func:`~vtonlab.data.datasets.ensure_synthvton`; a waiting process says so), and
    ``unpaired_gt.json`` is written last. Already present with the same parameters: returns at once.
    Never touches any other file of ``root``.

    Args:
        root: a folder written by ``write_synthvton`` (``synthvton.json`` marker; other folders are refused).
        workers: rendering processes (default as ``write_synthvton``: up to 2, ``$VTONLAB_WORKERS``).
        progress: tqdm bar (default on unless ``$VTONLAB_PROGRESS=0``).

    Returns:
        ``root``.
    """
    root = Path(root)
    params = _root_params(root)
    layout = params["layout"]
    if _is_complete(root, layout, unpaired_gt_params(params)):
        return root
    if workers is not None and (not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers: expected a positive number of rendering processes, got {workers!r}")
    with D.render_lock(root):
        params = _root_params(root)  # the folder may have been re-rendered while we waited
        layout, seed, size = params["layout"], int(params["seed"]), (int(params["size"][0]), int(params["size"][1]))
        wanted = unpaired_gt_params(params)
        if _is_complete(root, layout, wanted):
            return root
        folder, lists = gt_folder(root, layout), list_folder(root, layout)
        D.remove_stale_temporaries(folder)
        test = _test_groups(root, params)
        single, multi, partners = _rows(layout, test)
        pair_file = lists / ("test_pairs.txt" if layout == "vitonhd" else L.DRESSCODE_PAIR_FILES[("test", "unpaired")])
        if [r[:2] for r in single] != L.read_pair_file(pair_file, 2, 2):
            raise L.LayoutError(f"{pair_file}: rows differ from the unpaired pairs SynthVTON writes for this folder's "
                                "parameters (edited or not written by write_synthvton); no ground truth rendered")
        by_group = {g[0]["group"]: g for g in test}
        tmp = D.temporary_folder(folder)
        jobs = [(str(root), str(tmp), layout, seed, size, g[0]["group"], len(g), p, by_group[p][0]["stem"],
                 by_group[p][0]["garment_id"]) for g, p in zip(test, partners, strict=True)]
        n_workers = D._default_workers(len(jobs)) if workers is None else int(workers)
        if progress is None:
            progress = os.environ.get("VTONLAB_PROGRESS", "1") != "0"
        from vtonlab.progress import progress_bar

        try:
            with progress_bar(total=len(single), desc=f"SynthVTON unpaired ground truth {size[0]}x{size[1]}",
                              unit="sample", disable=not progress, dynamic_ncols=True) as bar:
                if n_workers == 1:
                    for n in map(_render_group_gt, jobs):
                        bar.update(n)
                else:
                    with ProcessPoolExecutor(max_workers=n_workers, initializer=D._die_with_parent,
                                             initargs=(os.getpid(),)) as pool:
                        for n in pool.map(_render_group_gt, jobs, chunksize=max(1, len(jobs) // (8 * n_workers))):
                            bar.update(n)
            (root / UNPAIRED_GT_MARKER).unlink(missing_ok=True)  # no marker while the files change
            if folder.exists():
                old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(folder, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        _write_atomic(lists / UNPAIRED_GT_LIST, "".join(" ".join(r) + "\n" for r in single))
        _write_atomic(lists / MPV_UNPAIRED_GT_LIST, "".join(" ".join(r) + "\n" for r in multi))
        marker = {"generator": "vtonlab SynthVTON unpaired ground truth", "params": wanted,
                  "counts": {"test_unpaired_gt": len(single), "mpv_unpaired_gt": len(multi)}}
        _write_atomic(root / UNPAIRED_GT_MARKER, json.dumps(marker, indent=1))
    return root


# ----------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------


def _require(path: Path, what: str, root: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found (the unpaired ground truth of {root}); {_HOW}")


def _base_reader(root: Path, size: tuple[int, int], pose_style: str, category: str) -> tuple[str, D._TryOnDataset]:
    layout = L.detect_layout(root)
    if layout == "vitonhd":
        return layout, D.VitonHDDataset(root, "test", "unpaired", size, pose_style)
    return layout, D.DressCodeDataset(root, category, "test", "unpaired", size, pose_style)


class UnpairedGroundTruthDataset(Dataset):
    """Single-pose unpaired try-on with its ground truth (rows of ``test_unpaired_gt.txt``).

    Item: the unpaired test sample of :class:`~vtonlab.data.VitonHDDataset` /
    :class:`~vtonlab.data.DressCodeDataset` (the person in their own garment, ``cloth`` / ``cloth_mask``
    / ``caption`` of the other garment), plus

    - ``gt_image`` float (3, H, W) in [-1, 1]: the same person and pose wearing ``cloth``;
    - ``gt_parse`` long (H, W): its parsing in the internal (CIHP) label set;
    - ``gt_flow`` float (H, W, 2), ``gt_flow_mask`` float (1, H, W): for each visible garment pixel of
      ``gt_image``, its (x, y) in ``cloth`` (a ``grid_sample`` grid, align_corners=True);
    - ``gt_name`` str: the file name in the list.

    Args:
        root: a SynthVTON folder holding the ground truth (:func:`ensure_unpaired_gt`).
        size: output (H, W); every file is resized to it.
        pose_style: heatmap style of ``pose_map``.
        category: Dress Code category (SynthVTON writes ``upper_body``).
    """

    def __init__(self, root, size: Sequence[int] = (256, 192), pose_style: str = "cpvton",
                 category: str = CATEGORY):
        self.root = Path(root)
        self.size = D._check_size(size)
        self.layout, self.base = _base_reader(self.root, self.size, pose_style, category)
        self.folder = gt_folder(self.root, self.layout, category)
        list_file = list_folder(self.root, self.layout, category) / UNPAIRED_GT_LIST
        _require(list_file, "unpaired ground-truth list", self.root)
        self.rows: list[tuple[str, str, str]] = [tuple(r) for r in L.read_pair_file(list_file, 3, 3)]  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        return self.load(*self.rows[index])

    def ground_truth(self, name: str) -> dict:
        """``gt_image``, ``gt_parse``, ``gt_flow``, ``gt_flow_mask``, ``gt_name`` of ground-truth file ``name``."""
        paths = gt_paths(self.folder, self.layout, name)
        for kind, what in (("image", "ground-truth image"), ("parse", "ground-truth parsing"),
                           ("gt_flow", "ground-truth flow")):
            _require(paths[kind], what, self.root)
        image = L.read_rgb(paths["image"], "ground-truth image")
        if self.layout == "vitonhd":
            parse = L.read_label_map(paths["parse"], N_CIHP, "ground-truth CIHP parsing")
        else:
            parse = atr_to_cihp(L.read_label_map(paths["parse"], N_ATR, "ground-truth SCHP-ATR parsing"),
                                source=str(paths["parse"]))
        flow, mask = L.read_gt_flow(paths["gt_flow"], image.shape[:2])
        gt_flow, gt_flow_mask = D._flow_tensors(flow, mask, self.size, tuple(image.shape[:2]))  # garment canvas = image
        return {"gt_image": D._image_tensor(image, self.size), "gt_parse": D._label_tensor(parse, self.size),
                "gt_flow": gt_flow, "gt_flow_mask": gt_flow_mask, "gt_name": name}

    def load(self, person: str, cloth: str, gt: str) -> dict:
        """The unpaired sample of ``person`` with garment ``cloth``, plus the ground truth ``gt``."""
        sample = self.base.load(person, cloth)
        sample.update(self.ground_truth(gt))
        return sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, size={self.size}, {len(self)} samples)"


class MultiPoseUnpairedGroundTruthDataset(Dataset):
    """MG-VTON's unpaired multi-pose setting with its ground truth (rows of ``mpv_unpaired_gt.txt``).

    Item: ``{"source": sample A, "target": sample B, "cloth", "cloth_mask", "c_name", "gt_image",
    "gt_parse", "gt_flow", "gt_flow_mask", "gt_name"}`` (+ ``caption``, ``attributes`` of the new
    garment): ``source`` and ``target`` are the person in poses A and B, each in their own garment
    (as :class:`~vtonlab.data.MultiPoseDataset`); ``cloth`` / ``cloth_mask`` (3 | 1, H, W) are the other
    garment; ``gt_*`` show the person in pose B wearing it (the single-pose ground truth of B, see
    :class:`UnpairedGroundTruthDataset`).
    """

    def __init__(self, root, size: Sequence[int] = (256, 192), pose_style: str = "cpvton",
                 category: str = CATEGORY):
        self.single = UnpairedGroundTruthDataset(root, size, pose_style, category)
        self.root, self.size, self.layout = self.single.root, self.single.size, self.single.layout
        list_file = list_folder(self.root, self.layout, category) / MPV_UNPAIRED_GT_LIST
        _require(list_file, "multi-pose unpaired ground-truth list", self.root)
        self.rows: list[tuple[str, str, str, str]] = [
            tuple(r) for r in L.read_pair_file(list_file, 4, 4, allow_empty=True)  # type: ignore[misc]
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} pose pairs")
        a, b, c, gt = self.rows[index]
        base = self.single.base
        unpaired = self.single.load(b, c, gt)
        item = {"source": base.load(a, _own_cloth(self.layout, a)), "target": base.load(b, _own_cloth(self.layout, b))}
        keys = ("cloth", "cloth_mask", "c_name", "gt_image", "gt_parse", "gt_flow", "gt_flow_mask", "gt_name",
                "caption", "attributes")
        item.update({k: unpaired[k] for k in keys if k in unpaired})
        return item

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, size={self.size}, {len(self)} pose pairs)"


def unpaired_tryon_set(
    source, *, multipose: bool = False, size: Sequence[int] | None = None, pose_style: str | None = None,
    category: str | None = None,
) -> UnpairedGroundTruthDataset | MultiPoseUnpairedGroundTruthDataset:
    """The unpaired test set with ground truth of a SynthVTON folder.

    Args:
        source: the folder, or a reader of it (``VitonHDDataset`` / ``DressCodeDataset``, e.g. what
            ``synthvton("test", ...)`` returns), whose ``size``, ``pose_style`` and category are the defaults.
        multipose: :class:`MultiPoseUnpairedGroundTruthDataset` instead of :class:`UnpairedGroundTruthDataset`.
        size: output (H, W) (default: the reader's, else the rendered size of the folder's marker).
        pose_style: heatmap style of ``pose_map`` (default: the reader's, else ``"cpvton"``).
        category: Dress Code category (default: the reader's, else ``upper_body``).
    """
    if isinstance(source, D._TryOnDataset):
        root = source.root
        size = source.size if size is None else size
        pose_style = source.pose_style if pose_style is None else pose_style
        category = source.category if category is None else category
    else:
        root = Path(source)
        if size is None:
            marker = D.read_marker(root)
            size = tuple(marker["size"]) if isinstance(marker, dict) and "size" in marker else (256, 192)
    cls = MultiPoseUnpairedGroundTruthDataset if multipose else UnpairedGroundTruthDataset
    return cls(root, size, pose_style or "cpvton", category or CATEGORY)


def synthvton_unpaired(
    profile=None,
    layout: str = "vitonhd",
    *,
    multipose: bool = False,
    pose_style: str = "cpvton",
    size: Sequence[int] | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: bool | None = None,
) -> UnpairedGroundTruthDataset | MultiPoseUnpairedGroundTruthDataset:
    """SynthVTON's unpaired test set with ground truth for a profile: :func:`~vtonlab.data.synthvton` (rendered
    into the cache on first use) + :func:`ensure_unpaired_gt` + :func:`unpaired_tryon_set`."""
    test = D.synthvton("test", profile, layout, "unpaired", seed=seed, pose_style=pose_style, size=size,
                       workers=workers, progress=progress)
    ensure_unpaired_gt(test.root, workers=workers, progress=progress)
    return unpaired_tryon_set(test, multipose=multipose)


__all__: list[str] = [
    "MPV_UNPAIRED_GT_LIST", "MultiPoseUnpairedGroundTruthDataset", "UNPAIRED_GT_DIR", "UNPAIRED_GT_FORMAT",
    "UNPAIRED_GT_LIST", "UNPAIRED_GT_MARKER", "UnpairedGroundTruthDataset", "ensure_unpaired_gt", "gt_name",
    "read_unpaired_gt_marker", "synthvton_unpaired", "unpaired_tryon_set",
]  # fmt: skip
