"""Reading try-on results and ground truth from disk for evaluation.

Ground truth comes from a dataset directory in the VITON-HD or the Dress Code layout (only the
pair file and the person images are needed)::

    VITON-HD:   <root>/test_pairs.txt                 "<person> <cloth>" per line
                <root>/test/image/<person>
    Dress Code: <root>/<category>/test_pairs_paired.txt, .../test_pairs_unpaired.txt
                (or the same files at the root, "<person> <cloth> <category>" per line)
                <root>/{upper_body,lower_body,dresses}/images/<person>

Predictions are image files named like the person images (any image extension; the stem must
match), directly in the prediction folder or in per-category sub-folders. They must all have one
size (:func:`check_one_size`) and must not be the ground-truth files themselves
(:func:`identical_to_ground_truth`).
"""

from __future__ import annotations

import filecmp
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vtonlab.metrics.protocol import MismatchError, check_names

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """An RGB image file -> float tensor (3, H, W) in [0, 1]; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"image {path} cannot be read as an image ({err})") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0


class ImageFolder(Mapping[str, torch.Tensor]):
    """A lazy mapping ``name -> (3, H, W) tensor in [0, 1]`` over image files (read on access)."""

    def __init__(self, files: Mapping[str, str | os.PathLike]):
        self.files = {k: Path(v) for k, v in files.items()}

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            path = self.files[name]
        except KeyError:
            raise KeyError(f"no image named {name!r}") from None
        return read_image(path)

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class GroundTruth:
    """Person images of one split and pair file: ``files`` (name -> path) in pair-file order."""

    layout: str  # "viton-hd" or "dresscode"
    pair_file: Path
    files: dict[str, Path]

    @property
    def names(self) -> list[str]:
        return list(self.files)


def _persons(rows: list[tuple[str, ...]], pair_file: Path) -> list[str]:
    seen: dict[str, None] = {}
    dup = []
    for row in rows:
        if row[0] in seen:
            dup.append(row[0])
        seen[row[0]] = None
    if dup:
        raise ValueError(f"{pair_file} lists some person images more than once ({', '.join(sorted(set(dup))[:5])}); "
                         "results named like the person images would collide")
    if not seen:
        raise ValueError(f"{pair_file} lists no pairs")
    return list(seen)


def ground_truth(data_dir: str | os.PathLike, split: str = "test", pairs: str = "paired") -> GroundTruth:
    """Find the pair file and the person images of ``split`` in a VITON-HD or Dress Code directory.

    VITON-HD has one pair file for both settings (paired results re-dress each person in its own
    garment; unpaired ones use column 2), Dress Code one per setting and category; either way the
    results are named like the person images (column 1), which are the ground truth / reference set.
    File names and layout detection come from :mod:`vtonlab.data.layouts`.
    """
    from vtonlab.data import layouts as L

    root = Path(data_dir)
    if pairs not in ("paired", "unpaired"):
        raise ValueError(f"pairs: expected 'paired' or 'unpaired', got {pairs!r}")
    if split not in L.VITONHD_SPLITS:
        raise ValueError(f"split: expected one of {', '.join(L.VITONHD_SPLITS)}, got {split!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root}: not a directory")
    layout = L.detect_layout(root)
    files: dict[str, Path] = {}
    if layout == "vitonhd":
        pair_file = root / f"{split}_pairs.txt"
        for person in _persons(L.read_pair_file(pair_file, 2, 2), pair_file):
            files[person] = L.vitonhd_paths(root, split, L.stem_of(person))["image"]
    else:
        name = L.DRESSCODE_PAIR_FILES[(split, pairs)]
        per_category = [(c, root / c / name) for c in L.DRESSCODE_CATEGORIES if (root / c / name).is_file()]
        if per_category:
            for category, pf in per_category:
                for person in _persons(L.read_pair_file(pf, 2, 2), pf):
                    if person in files:
                        raise ValueError(f"{pf}: person image {person} also appears in another category")
                    files[person] = L.dresscode_paths(root, category, L.dresscode_id(person))["image"]
            pair_file = per_category[0][1]
        else:
            pair_file = root / name  # root-level file: "<person> <cloth> <category>"
            rows = L.read_dresscode_root_pairs(pair_file)
            category_of = {person: category for person, _, category in rows}
            for person in _persons(rows, pair_file):
                files[person] = L.dresscode_paths(root, category_of[person], L.dresscode_id(person))["image"]
    missing = [p for p, f in files.items() if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"--data {root}: {len(missing)} person images listed in {pair_file} are missing, "
                                f"e.g. {files[missing[0]]}")
    return GroundTruth("viton-hd" if layout == "vitonhd" else "dresscode", pair_file, files)


def prediction_files(pred_dir: str | os.PathLike, expected: list[str]) -> dict[str, Path]:
    """Map each expected person image name to its result file in ``pred_dir`` (matched by stem).

    Looks in ``pred_dir`` and its immediate sub-folders. Raises :class:`MismatchError` listing the
    missing and the extra results, ValueError when two files share a stem.
    """
    root = Path(pred_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"--pred {root}: not a directory")
    found: dict[str, Path] = {}
    candidates = [f for f in root.iterdir() if f.is_file()]
    candidates += [f for d in root.iterdir() if d.is_dir() for f in d.iterdir() if f.is_file()]
    for f in sorted(candidates):
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if f.stem in found:
            raise ValueError(f"--pred {root}: two results for {f.stem!r}: {found[f.stem]} and {f}")
        found[f.stem] = f
    by_stem = {Path(n).stem: n for n in expected}
    try:
        check_names(list(by_stem), list(found), what=f"results in {root}")
    except MismatchError as err:
        raise MismatchError(f"{err} (results are matched to person images by file name without extension)") from None
    return {by_stem[s]: f for s, f in found.items()}


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file from its header (no pixel data decoded); errors name the file."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"image {path} cannot be read as an image ({err})") from err


def check_one_size(files: Mapping[str, str | os.PathLike], what: str = "--pred") -> tuple[int, int]:
    """The common (H, W) of ``files``; ValueError naming the files of another size and the expected one.

    The expected size is the most common one (ties: the first file's). Reads image headers only,
    so it runs in well under a second for thousands of files, before any metric is computed.
    """
    sizes = {name: image_size(f) for name, f in files.items()}
    if not sizes:
        raise ValueError(f"{what}: no images")
    counts = Counter(sizes.values())
    expected, n = counts.most_common(1)[0]
    odd = [name for name, size in sizes.items() if size != expected]
    if odd:
        shown = ", ".join(f"{files[k]} is {sizes[k][0]}x{sizes[k][1]}" for k in odd[:5])
        more = f" (and {len(odd) - 5} more)" if len(odd) > 5 else ""
        raise ValueError(f"{what}: results must all have one size; expected {expected[0]}x{expected[1]} (H x W, the size "
                         f"of {n} of the {len(sizes)} results), but {shown}{more}")
    return expected


def identical_to_ground_truth(pred: Mapping[str, str | os.PathLike],
                              ground_truth: Mapping[str, str | os.PathLike]) -> list[str]:
    """Names whose result file IS its ground-truth file, or has the very same bytes.

    Scoring such results measures nothing (SSIM 1, LPIPS 0, FID 0): it happens when the
    prediction folder is given as the ground-truth folder. Re-encoded copies (another format)
    are not flagged: they are legitimate "ideal result" checks.
    """
    same = []
    for name, p in pred.items():
        g = ground_truth.get(name)
        if g is None:
            continue
        p, g = Path(p), Path(g)
        if os.path.samefile(p, g) or (p.stat().st_size == g.stat().st_size and filecmp.cmp(p, g, shallow=False)):
            same.append(name)
    return same
