"""``python -m vtonlab data``: render SynthVTON into a real layout, check a dataset folder.

``data generate --layout vitonhd|dresscode --out DIR --n-train N --n-test M --seed S [--size 256x192]``
    renders SynthVTON and writes it in the VITON-HD or Dress Code layout. Refuses a non-empty
    ``DIR`` unless ``--overwrite``, which replaces only a folder holding a SynthVTON marker; two runs
    to one ``DIR`` take turns on its lock (the second then finds it taken).
``data check DIR [--keypoints body25|coco18]``
    validates a VITON-HD or Dress Code folder (auto-detected; real or SynthVTON): missing and extra
    files, unreadable images, label values outside the label set, size mismatches, dangling pair
    entries, empty or non-UTF-8 pair files, malformed keypoint JSON, VITON-HD keypoint files in
    another layout than ``--keypoints`` (default BODY_25, what VITON-HD ships). Prints counts and
    the first problems of each kind; exits 1 when it found errors. The core is :func:`check_dataset`.
``data prepare [--profile P] [--layout L]``
    renders the cached SynthVTON of a profile (what ``vtonlab.data.synthvton()`` would on first use).
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vtonlab.data import layouts as L
from vtonlab.data.labels import N_ATR, N_CIHP

# ----------------------------------------------------------------------------------------------
# The check
# ----------------------------------------------------------------------------------------------

ERROR_KINDS = {
    "missing_file": "a file a sample needs is absent",
    "corrupt_image": "an image that cannot be decoded",
    "bad_labels": "a label map with values outside the label set (or not a label PNG)",
    "size_mismatch": "files of one sample disagree in size",
    "dangling_pair": "a pair / list entry names a file that does not exist",
    "bad_keypoints": "malformed keypoint JSON, or keypoints outside the image",
    "keypoint_format": "a VITON-HD keypoint file in another layout than expected (--keypoints; VITON-HD ships BODY_25)",
    "bad_pair_file": "a pair file that cannot be parsed, is not UTF-8, or lists no pairs",
    "bad_extra": "an unreadable SynthVTON extra (gt-flow, synth-meta)",
}
WARNING_KINDS = {
    "extra_file": "a file that belongs to no sample or pair entry",
    "missing_optional": "an optional file is absent (rendered skeleton)",
    "no_person": "a keypoint file with no person detected",
}


@dataclass
class Problem:
    kind: str
    path: str
    message: str

    @property
    def is_error(self) -> bool:
        return self.kind in ERROR_KINDS

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    """What :func:`check_dataset` found: counts of what was checked and the problems."""

    root: Path
    layout: str
    counts: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    def add(self, kind: str, path, message: str) -> None:
        if kind not in ERROR_KINDS and kind not in WARNING_KINDS:
            raise ValueError(f"unknown problem kind {kind!r}")
        self.problems.append(Problem(kind, str(path), message))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def kinds(self) -> Counter:
        """Number of problems of each kind."""
        return Counter(p.kind for p in self.problems)

    def of_kind(self, kind: str) -> list[Problem]:
        return [p for p in self.problems if p.kind == kind]

    def format(self, max_per_kind: int = 5) -> str:
        name = {"vitonhd": "VITON-HD", "dresscode": "Dress Code"}.get(self.layout, self.layout)
        lines = [f"{self.root}: {name} layout"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.counts.items())]
        for title, kinds in (("errors", ERROR_KINDS), ("warnings", WARNING_KINDS)):
            found = [(k, self.of_kind(k)) for k in kinds if self.of_kind(k)]
            if not found:
                continue
            lines.append(f"{title}:")
            for kind, probs in found:
                lines.append(f"  {kind} ({len(probs)}): {kinds[kind]}")
                lines += [f"    {p}" for p in probs[:max_per_kind]]
                if len(probs) > max_per_kind:
                    lines.append(f"    ... and {len(probs) - max_per_kind} more")
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: {len(self.errors)} errors, {len(self.warnings)} warnings")
        return "\n".join(lines)

    __str__ = format


def _image_size(path: Path, report: Report, what: str) -> tuple[int, int] | None:
    """(H, W) of a decodable image, else record the problem and return None."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.size[1], img.size[0]
    except Exception as e:
        report.add("corrupt_image", path, f"cannot decode {what} ({type(e).__name__}: {e})")
        return None


def _label_size(path: Path, n_labels: int, report: Report) -> tuple[int, int] | None:
    try:
        labels = L.read_label_map(path, n_labels)
    except L.LayoutError as e:
        kind = "corrupt_image" if "cannot read" in str(e) else "bad_labels"
        report.add(kind, path, str(e).split(": ", 1)[-1])
        return None
    return labels.shape


def _keypoints(path: Path, reader, frame: tuple[int, int] | None, report: Report) -> None:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", L.KeypointFormatWarning)
            kp = reader(path)
    except L.LayoutError as e:
        report.add("bad_keypoints", path, str(e).split(": ", 1)[-1])
        return
    for w in caught:
        if issubclass(w.category, L.KeypointFormatWarning):
            report.add("keypoint_format", path, str(w.message).split(": ", 1)[-1])
        else:  # pragma: no cover - other warnings pass through unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    present = kp[:, 2] > 0
    if not present.any():
        report.add("no_person", path, "no keypoint detected")
        return
    if frame is not None:
        h, w = frame
        xs, ys = kp[present, 0], kp[present, 1]
        if (xs < -1).any() or (xs > w).any() or (ys < -1).any() or (ys > h).any():
            report.add("bad_keypoints", path, f"keypoints outside the {w}x{h} frame (x up to {xs.max():.1f}, "
                                              f"y up to {ys.max():.1f})")


def _extras(paths: dict[str, Path], image_size, report: Report, has_flow: bool, has_meta: bool) -> None:
    if has_flow:
        if not paths["gt_flow"].is_file():
            report.add("missing_file", paths["gt_flow"], "ground-truth flow file not found")
        else:
            # the array headers first: a file declaring a huge array is reported without reading it
            try:
                declared = L.read_gt_flow_header(paths["gt_flow"])["flow"][0][:2]
                if image_size is None:
                    pass  # the person image is unreadable (reported): nothing to compare the flow with
                elif declared != tuple(image_size):
                    msg = f"flow is {declared}, person image {tuple(image_size)} (from the array header; data not read)"
                    report.add("size_mismatch", paths["gt_flow"], msg)
                else:
                    L.read_gt_flow(paths["gt_flow"], image_size)
            except L.LayoutError as e:
                report.add("bad_extra", paths["gt_flow"], str(e).split(": ", 1)[-1])
    if has_meta:
        if not paths["meta"].is_file():
            report.add("missing_file", paths["meta"], "SynthVTON metadata file not found")
        else:
            try:
                L.read_meta(paths["meta"])
            except L.LayoutError as e:
                report.add("bad_extra", paths["meta"], str(e).split(": ", 1)[-1])


def _same_aspect(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] / a[1] - b[0] / b[1]) <= 0.01 * (a[0] / a[1])


def _pair_file_problem(path: Path, err: L.LayoutError, report: Report) -> None:
    """Record a pair-file error at ``path`` or ``path:line`` (when the message names a line)."""
    text = str(err)
    where, message = str(path), text.split(": ", 1)[-1]
    if text.startswith(f"{path}:"):
        head, sep, rest = text[len(str(path)) + 1:].partition(": ")
        if sep and head.isdigit():
            where, message = f"{path}:{head}", rest
    report.add("bad_pair_file", where, message)


def _read_pairs(path: Path, report: Report, min_cols: int, max_cols: int,
                allow_empty: bool = False) -> list[tuple[str, ...]] | None:
    if not path.is_file():
        report.add("missing_file", path, "pair file not found")
        return None
    try:
        return L.read_pair_file(path, min_cols, max_cols, allow_empty=allow_empty)
    except L.LayoutError as e:
        _pair_file_problem(path, e, report)
        return None


def _list_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _rendered_empty(root: Path, pair_file: str) -> bool:
    """A train pair file SynthVTON rendered empty on purpose (its marker records ``n_train`` 0)."""
    from vtonlab.data.datasets import read_marker

    marker = read_marker(root)
    return pair_file == "train_pairs.txt" and isinstance(marker, dict) and marker.get("n_train") == 0


def _check_vitonhd(root: Path, report: Report, keypoint_format: str = "body25") -> None:
    splits = [s for s in L.VITONHD_SPLITS if (root / s).is_dir()]
    if not splits:
        report.add("missing_file", root / "train", "no train/ or test/ folder")
        return
    for split in splits:
        base = root / split
        name = f"{split}_pairs.txt"
        pairs = _read_pairs(root / name, report, 2, 2, allow_empty=_rendered_empty(root, name)) or []
        report.counts[f"{split} pairs"] = len(pairs)
        folder_of = {kind: folder for kind, (folder, _) in L.VITONHD_FOLDERS.items()}
        persons = {p.stem for p in _list_files(base / folder_of["image"]) if p.suffix == ".jpg"}
        report.counts[f"{split} person images"] = len(persons)
        referenced_p = {L.stem_of(a) for a, _ in pairs}
        referenced_c = {L.stem_of(b) for _, b in pairs}
        for i, (a, b) in enumerate(pairs, 1):
            if L.stem_of(a) not in persons:
                report.add("dangling_pair", f"{root / f'{split}_pairs.txt'}:{i}", f"person {a} not in {split}/image/")
            if not (base / folder_of["cloth"] / f"{L.stem_of(b)}.jpg").is_file():
                report.add("dangling_pair", f"{root / f'{split}_pairs.txt'}:{i}", f"garment {b} not in {split}/cloth/")
        for stem in sorted(persons - referenced_p - referenced_c):
            report.add("extra_file", base / "image" / f"{stem}.jpg", f"person image not in {split}_pairs.txt")
        garments = persons | (referenced_c & {p.stem for p in _list_files(base / "cloth")})
        has_flow, has_meta = (base / L.GT_FLOW_DIR).is_dir(), (base / L.META_DIR).is_dir()
        expected: set[Path] = set()
        for stem in sorted(persons | garments):
            p = L.vitonhd_paths(root, split, stem)
            sizes: dict[str, tuple[int, int]] = {}
            kinds = (["image", "parse", "keypoints", "skeleton"] if stem in persons else []) + ["cloth", "cloth_mask"]
            for kind in kinds:
                path = p[kind]
                expected.add(path)
                if not path.is_file():
                    if kind == "skeleton":
                        report.add("missing_optional", path, "rendered skeleton not found")
                    else:
                        report.add("missing_file", path, f"{folder_of[kind]} file not found")
                    continue
                if kind == "parse":
                    size = _label_size(path, N_CIHP, report)
                elif kind == "keypoints":
                    continue  # checked below with the image size
                else:
                    size = _image_size(path, report, folder_of[kind])
                if size is not None:
                    sizes[kind] = size
            if stem in persons and p["keypoints"].is_file():
                frame = sizes.get("image")
                reader = functools.partial(L.read_openpose_json, keypoint_format=keypoint_format)
                _keypoints(p["keypoints"], reader, frame, report)
            ref = sizes.get("image") or sizes.get("cloth")
            for kind, size in sizes.items():
                if ref is not None and size != ref:
                    report.add("size_mismatch", p[kind], f"{folder_of[kind]} is {size[1]}x{size[0]}, "
                                                         f"person/garment is {ref[1]}x{ref[0]}")
            if stem in persons:
                _extras(p, sizes.get("image"), report, has_flow, has_meta)
                expected |= {p["gt_flow"], p["meta"]}
            report.counts[f"{split} files checked"] += len(kinds)
        known = {folder for folder, _ in L.VITONHD_FOLDERS.values()} | {L.GT_FLOW_DIR, L.META_DIR}
        for folder in sorted(known):
            for path in _list_files(base / folder):
                if path not in expected:
                    report.add("extra_file", path, "belongs to no sample of this split")
        from vtonlab.data.unpaired_gt import UNPAIRED_GT_DIR  # SynthVTON's unpaired ground truth (not checked here)

        for sub in sorted(p for p in base.iterdir() if p.is_dir()):
            if sub.name not in known | {UNPAIRED_GT_DIR} and sub.name not in L.VITONHD_OPTIONAL_FOLDERS:
                report.add("extra_file", sub, "unknown folder")
    _check_mpv(root / L.MPV_LIST, report, lambda split, name, col: (
        root / split / ("image" if col < 2 else "cloth") / f"{L.stem_of(name)}.jpg"))


def _check_mpv(path: Path, report: Report, file_of) -> None:
    if not path.is_file():
        return
    try:
        rows = L.read_mpv_list(path)
    except L.LayoutError as e:
        _pair_file_problem(path, e, report)
        return
    report.counts["mpv triplets"] += len(rows)
    for i, row in enumerate(rows, 1):
        for col in range(3):
            if not file_of(row[3], row[col], col).is_file():
                report.add("dangling_pair", f"{path}:{i}", f"{row[col]} not found")


def _check_dresscode(root: Path, report: Report) -> None:
    cats = [c for c in L.DRESSCODE_CATEGORIES if (root / c).is_dir()]
    for name in ("train_pairs.txt", "test_pairs_paired.txt", "test_pairs_unpaired.txt"):
        path = root / name
        if not path.is_file():
            continue
        if _rendered_empty(root, name) and not path.read_bytes().strip():
            continue
        try:
            rows = L.read_dresscode_root_pairs(path)
        except L.LayoutError as e:
            _pair_file_problem(path, e, report)
            continue
        for i, (person, _, cat) in enumerate(rows, 1):
            if not (root / cat / "images" / person).is_file():
                report.add("dangling_pair", f"{path}:{i}", f"person {person} not in {cat}/images/")
    for cat in cats:
        base = root / cat
        pair_rows: list[tuple[str, ...]] = []
        for name in ("train_pairs.txt", "test_pairs_paired.txt", "test_pairs_unpaired.txt"):
            rows = _read_pairs(base / name, report, 2, 2, allow_empty=_rendered_empty(root, name)) or []
            report.counts[f"{cat} {name[:-4]}"] = len(rows)
            for i, (a, b) in enumerate(rows, 1):
                for col, fname in ((0, a), (1, b)):
                    if not (base / "images" / fname).is_file():
                        what = "person" if col == 0 else "garment"
                        report.add("dangling_pair", f"{base / name}:{i}", f"{what} {fname} not in {cat}/images/")
            pair_rows += rows
        image_files = _list_files(base / "images")
        persons = {p.name[:-6] for p in image_files if p.name.endswith("_0.jpg")}
        garments = {p.name[:-6] for p in image_files if p.name.endswith("_1.jpg")}
        report.counts[f"{cat} person images"] = len(persons)
        report.counts[f"{cat} garment images"] = len(garments)
        referenced = set()
        for a, b in pair_rows:
            try:
                referenced |= {L.dresscode_id(a), L.dresscode_id(b)}
            except L.LayoutError as e:
                report.add("bad_pair_file", base, str(e))
        has_mask = (base / L.DRESSCODE_CLOTH_MASK_DIR).is_dir()
        has_flow, has_meta = (base / L.GT_FLOW_DIR).is_dir(), (base / L.META_DIR).is_dir()
        expected: set[Path] = set()
        for sid in sorted(persons | garments):
            p = L.dresscode_paths(root, cat, sid)
            if sid not in referenced:
                report.add("extra_file", p["image"] if sid in persons else p["cloth"], "id in no pair file")
            kinds = ["image", "parse", "keypoints", "skeleton"] if sid in persons else []
            kinds += ["cloth"] + (["cloth_mask"] if has_mask else [])
            sizes: dict[str, tuple[int, int]] = {}
            for kind in kinds:
                path = p[kind]
                expected.add(path)
                if not path.is_file():
                    if kind == "skeleton":
                        report.add("missing_optional", path, "rendered skeleton not found")
                    else:
                        report.add("missing_file", path, f"{path.parent.name}/{path.name} not found")
                    continue
                if kind == "parse":
                    size = _label_size(path, N_ATR, report)
                elif kind == "keypoints":
                    _keypoints(path, L.read_dresscode_keypoints, L.DRESSCODE_KEYPOINT_FRAME, report)
                    continue
                else:
                    size = _image_size(path, report, kind)
                if size is not None:
                    sizes[kind] = size
            ref = sizes.get("image") or sizes.get("cloth")
            for kind, size in sizes.items():
                if ref is None:
                    break
                if kind in ("image", "cloth", "cloth_mask"):
                    bad = size != ref
                else:  # label maps and skeletons may be stored downscaled: same aspect ratio suffices
                    bad = not _same_aspect(size, ref)
                if bad:
                    report.add("size_mismatch", p[kind], f"{kind} is {size[1]}x{size[0]}, person/garment is "
                                                         f"{ref[1]}x{ref[0]}")
            if sid in persons:
                _extras(p, sizes.get("image"), report, has_flow, has_meta)
                expected |= {p["gt_flow"], p["meta"]}
            report.counts[f"{cat} files checked"] += len(kinds)
        folders = {folder for folder, _ in L.DRESSCODE_FILES.values()}
        folders |= {L.DRESSCODE_CLOTH_MASK_DIR, L.GT_FLOW_DIR, L.META_DIR}
        for folder in sorted(folders):
            for path in _list_files(base / folder):
                if path not in expected:
                    report.add("extra_file", path, "belongs to no sample")
        _check_mpv(base / L.MPV_LIST, report, lambda split, name, col, base=base: base / "images" / name)


def check_dataset(root: str | os.PathLike, keypoints: str = "body25") -> Report:
    """Validate a VITON-HD or Dress Code folder (layout auto-detected) and return a :class:`Report`.

    ``keypoints``: the layout of VITON-HD OpenPose files, ``"body25"`` (75 values, what VITON-HD
    ships) or ``"coco18"`` (54 values); a file in the other layout is a ``keypoint_format`` error.
    Raises ``FileNotFoundError`` / :class:`~vtonlab.data.layouts.LayoutError` when ``root`` is
    missing or is neither layout, ValueError for an unknown ``keypoints``; every other problem is
    recorded in the report.
    """
    if keypoints not in L.KEYPOINT_FORMATS:
        raise ValueError(f"--keypoints: expected one of {', '.join(L.KEYPOINT_FORMATS)}, got {keypoints!r}")
    root = Path(root)
    layout = L.detect_layout(root)
    report = Report(root, layout)
    if layout == "vitonhd":
        _check_vitonhd(root, report, keypoints)
    else:
        _check_dresscode(root, report)
    return report


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """``"256x192"`` -> ``(256, 192)`` (H x W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size: expected HxW such as 256x192, got {text!r}") from None
    if h < 8 or w < 8:
        raise ValueError(f"--size: expected at least 8x8, got {text!r}")
    return h, w


def _check_out(out: Path) -> None:
    """``--out`` must name a folder of its own: not ``.``, not a symbolic link, not a home, repository or
    working directory (nor a parent of one), not a file."""
    from vtonlab.paths import repo_root

    if out.is_symlink():
        raise ValueError(f"--out: {out} is a symbolic link (to {os.readlink(out)}); give the folder itself")
    if out.name in ("", ".", ".."):
        raise ValueError(f"--out: {str(out)!r} names no folder of its own; give a new folder such as ./synthvton")
    resolved = out.resolve()
    protected = {Path("/").resolve(), Path.home().resolve(), repo_root().resolve(), Path.cwd().resolve()}
    if any(resolved == p or resolved in p.parents for p in protected):
        raise ValueError(f"--out: refusing {out} (a home, repository or working directory, or a folder holding one)")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out: {out} exists and is not a directory")


def _replaceable(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` holds something to replace; raises unless ``overwrite`` and it is SynthVTON."""
    from vtonlab.data.datasets import read_marker

    if not out.is_dir() or not any(out.iterdir()):
        return False
    if not overwrite:
        raise FileExistsError(f"--out: {out} is not empty (pass --overwrite to replace a SynthVTON folder)")
    if read_marker(out) is None:
        raise FileExistsError(f"--out: {out} is not empty and holds no SynthVTON marker ({L.SYNTH_MARKER}); "
                              "--overwrite only replaces a folder written by `data generate`. Nothing was removed")
    return True


def generate(out: str | os.PathLike, layout: str, n_train: int, n_test: int, seed: int = 0,
             size: tuple[int, int] = (256, 192), n_poses: int = 2, overwrite: bool = False,
             workers: int | None = None, progress: bool | None = None) -> dict:
    """Render SynthVTON into ``out`` and return its marker.

    Every argument (and ``$VTONLAB_WORKERS``) is checked before any work. The render goes to a
    temporary sibling folder and is moved into place under the folder's lock (two runs to one ``out``
    take turns; the second then finds the folder taken). A non-empty ``out`` is refused unless
    ``overwrite``, and ``overwrite`` replaces only a folder holding a SynthVTON marker; files that
    appear in an empty ``out`` during the render are never removed (the run fails instead).
    """
    from vtonlab.data.datasets import check_render_args, remove_stale_temporaries, render_lock, temporary_folder, write_synthvton

    out = Path(out)
    _check_out(out)
    for option, value, low in (("--n-train", n_train, 0), ("--n-test", n_test, 1), ("--seed", seed, 0),
                               ("--n-poses", n_poses, 1), ("--workers", 1 if workers is None else workers, 1)):
        if value < low:
            raise ValueError(f"{option}: expected an integer >= {low}, got {value}")
    layout, size, workers = check_render_args(layout, n_train, n_test, seed, size, n_poses, workers)
    _replaceable(out, overwrite)  # fail at once, before waiting for the lock or rendering
    out.parent.mkdir(parents=True, exist_ok=True)
    with render_lock(out):
        remove_stale_temporaries(out)
        _check_out(out)
        replace = _replaceable(out, overwrite)  # again: another run may have written it while we waited
        tmp = temporary_folder(out)
        try:
            marker = write_synthvton(tmp, layout, n_train, n_test, seed, size, n_poses, workers, progress)
            if replace and _replaceable(out, overwrite):
                old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(out, old)
                try:
                    os.rename(tmp, out)
                except OSError:
                    os.rename(old, out)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                try:
                    os.rename(tmp, out)  # onto an absent or empty folder only: never over files
                except OSError:
                    raise FileExistsError(f"--out: files appeared in {out} during the render; nothing was removed and "
                                          "the render was discarded") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return marker


def run_generate(args) -> int:
    size = parse_size(args.size)
    start = time.perf_counter()
    marker = generate(args.out, args.layout, args.n_train, args.n_test, args.seed, size, args.n_poses,
                      args.overwrite, args.workers)
    elapsed = time.perf_counter() - start
    n = args.n_train + args.n_test
    counts = ", ".join(f"{k} {v}" for k, v in marker["counts"].items())
    print(f"wrote SynthVTON ({args.layout}, {size[0]}x{size[1]}) to {args.out}: {counts}")
    print(f"{n} samples in {elapsed:.1f} s ({n / elapsed:.1f} samples/s)")
    if args.unpaired_gt:
        _unpaired_gt(args.out, args.workers)
    return 0


def _unpaired_gt(root, workers=None) -> None:
    from vtonlab.data.unpaired_gt import ensure_unpaired_gt

    start = time.perf_counter()
    ensure_unpaired_gt(root, workers=workers)
    print(f"unpaired ground truth of {root} ready ({time.perf_counter() - start:.1f} s)")


def run_check(args) -> int:
    if args.max_problems < 0:
        raise ValueError(f"--max-problems: expected a number >= 0, got {args.max_problems}")
    report = check_dataset(args.dir, keypoints=args.keypoints)
    print(report.format(args.max_problems))
    return 0 if report.ok else 1


def run_prepare(args) -> int:
    from vtonlab.data.datasets import synthvton
    from vtonlab.profiles import get_profile

    profile = get_profile(args.profile)
    start = time.perf_counter()
    train = synthvton("train", profile, args.layout)
    test = synthvton("test", profile, args.layout)
    print(f"SynthVTON for profile {profile.name}: {len(train)} train, {len(test)} test samples in {train.root} "
          f"({time.perf_counter() - start:.1f} s)")
    if args.unpaired_gt:
        _unpaired_gt(test.root)
    return 0


def register(sub) -> None:
    p = sub.add_parser("data", help="render SynthVTON in a real dataset layout, or check a dataset folder")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    g = dsub.add_parser("generate", help="render SynthVTON and write it in the VITON-HD or Dress Code layout")
    g.add_argument("--layout", choices=("vitonhd", "dresscode"), default="vitonhd")
    g.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    g.add_argument("--n-train", type=int, default=96, help="training person images (default 96)")
    g.add_argument("--n-test", type=int, default=16, help="test person images (default 16)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--size", default="256x192", help="H x W of the written images (default 256x192)")
    g.add_argument("--n-poses", type=int, default=2, help="poses per person/garment group (default 2)")
    g.add_argument("--workers", type=int, default=None, help="rendering processes (default: up to 2)")
    g.add_argument("--overwrite", action="store_true", help="replace an output folder written by `data generate`")
    g.add_argument("--unpaired-gt", action="store_true", help="also render the unpaired ground truth (vtonlab.data.unpaired_gt)")
    g.set_defaults(func=run_generate)

    c = dsub.add_parser("check", help="validate a VITON-HD or Dress Code folder (exit 1 on errors)")
    c.add_argument("dir", help="dataset root")
    c.add_argument("--max-problems", type=int, default=5, help="problems printed per kind (default 5)")
    c.add_argument("--keypoints", choices=L.KEYPOINT_FORMATS, default="body25",
                   help="layout of VITON-HD OpenPose files: body25 (75 values, what VITON-HD ships; default) "
                        "or coco18 (54 values, as in the original VITON)")
    c.set_defaults(func=run_check)

    r = dsub.add_parser("prepare", help="render the cached SynthVTON of a profile (as synthvton() does)")
    r.add_argument("--profile", default=None, help="ci | cpu | gpu (default: VTONLAB_PROFILE, else auto)")
    r.add_argument("--layout", choices=("vitonhd", "dresscode"), default="vitonhd")
    r.add_argument("--unpaired-gt", action="store_true", help="also render the unpaired ground truth of the test split")
    r.set_defaults(func=run_prepare)

