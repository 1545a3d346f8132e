"""``python -m vtonlab evaluate``: score a folder of try-on results with the LaDI-VTON protocol.

    python -m vtonlab evaluate --pred results/ladi_paired --data data/synthvton --pairs paired
    python -m vtonlab evaluate --pred out/ --data /datasets/VITON-HD --pairs unpaired --out eval.md

Ground truth is read from a VITON-HD- or Dress-Code-layout directory (pair file + person images);
results must be image files named like the person images, all of one size. Writes a markdown table
and a JSON file (``--out FILE``: FILE.md and FILE.json; default ``results/evaluate_<split>_<pairs>.{md,json}``).
Every row names the extractor and the weights that produced it.

Everything is checked before any metric is computed: the numeric options, the output path, the
pair file, that every result exists and has the size of the others, and that the results are not
the ground-truth files themselves (``--pred`` given the ground-truth folder scores SSIM 1 and FID 0
while measuring nothing: an error unless ``--allow-identical``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vtonlab import paths


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score try-on results: SSIM, LPIPS, FID, KID (LaDI-VTON protocol)",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Without local ImageNet/Inception weights, LPIPS and FID/KID are computed with clearly named "
               "substitutes (LPIPS-randalex, FID-randconv, KID-randconv); see notebook 05.")
    p.add_argument("--pred", required=True, type=Path, help="folder of generated images named like the person images")
    p.add_argument("--data", required=True, type=Path, help="dataset root in VITON-HD or Dress Code layout")
    p.add_argument("--pairs", required=True, choices=("paired", "unpaired"),
                   help="paired: SSIM, LPIPS, FID, KID; unpaired: FID, KID")
    p.add_argument("--split", default="test", choices=("train", "test"),
                   help="split whose pair file and person images are read (default test)")
    p.add_argument("--out", type=Path, default=None,
                   help="output file; FILE.md and FILE.json are written (default results/evaluate_<split>_<pairs>)")
    p.add_argument("--lpips", choices=("auto", "imagenet", "random"), default="auto",
                   help="LPIPS trunk weights: auto = ImageNet AlexNet if in the torch cache, else random")
    p.add_argument("--features", choices=("auto", "inception", "randconv"), default="auto",
                   help="FID/KID embedding: auto = FID Inception if available locally, else randconv")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size (capped at the set sizes)")
    p.add_argument("--seed", type=int, default=0, help="seed of substitute networks and KID subsets")
    p.add_argument("--allow-identical", action="store_true",
                   help="score results that are the ground-truth files themselves (by default an error)")
    p.set_defaults(func=run)


def check_options(args: argparse.Namespace) -> None:
    """Validate every numeric option and the output path (before any file is read or network built)."""
    for option, value, low in (("--batch-size", args.batch_size, 1), ("--kid-subset-size", args.kid_subset_size, 2),
                               ("--seed", args.seed, 0)):
        if value < low:
            raise ValueError(f"{option}: expected an integer >= {low}, got {value}")
    if args.out is not None and (args.out.is_dir() or args.out.name in ("", ".", "..")):
        raise ValueError(f"--out {args.out}: is a directory; expected a file name (FILE.md and FILE.json are written)")


def output_paths(out: Path | None, split: str, pairs: str) -> tuple[Path, Path]:
    """(markdown, json) paths for ``--out``: the suffix is replaced, or added when absent."""
    base = out if out is not None else paths.results_dir() / f"evaluate_{split}_{pairs}"
    if base.suffix.lower() in (".md", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".md"), base.with_name(base.name + ".json")


def run(args: argparse.Namespace) -> int:
    check_options(args)  # before the metric libraries are even imported (several seconds)
    md_path, json_path = output_paths(args.out, args.split, args.pairs)

    from vtonlab.metrics import LPIPSMetric, evaluate_tryon, fid_features
    from vtonlab.metrics.folders import (
        ImageFolder,
        check_one_size,
        ground_truth,
        identical_to_ground_truth,
        prediction_files,
    )

    gt = ground_truth(args.data, split=args.split, pairs=args.pairs)
    preds = prediction_files(args.pred, gt.names)
    check_one_size(preds, what=f"--pred {args.pred}")
    same = identical_to_ground_truth(preds, gt.files)
    if same:
        example = f"{preds[same[0]]} is {gt.files[same[0]]}" if os.path.samefile(preds[same[0]], gt.files[same[0]]) \
            else f"{preds[same[0]]} has the same bytes as {gt.files[same[0]]}"
        what = (f"--pred {args.pred}: {len(same)} of the {len(preds)} results are the ground-truth files themselves "
                f"(e.g. {example}), so SSIM would be 1, LPIPS 0 and FID 0 for them while measuring nothing")
        if not args.allow_identical:
            raise ValueError(f"{what}; is --pred the ground-truth folder? Pass --allow-identical to score them anyway")
        print(f"warning: {what} (scored anyway: --allow-identical)", file=sys.stderr)
    try:
        features = fid_features(args.features, seed=args.seed)
        lpips = LPIPSMetric(args.lpips, seed=args.seed) if args.pairs == "paired" else None
    except ModuleNotFoundError as err:
        raise RuntimeError(str(err)) from err
    table = evaluate_tryon(ImageFolder(preds), ImageFolder(gt.files), args.pairs, names=gt.names, lpips=lpips,
                           features=features, batch_size=args.batch_size, kid_subset_size=args.kid_subset_size,
                           seed=args.seed,
                           title=f"{args.pred} vs {args.data} ({gt.layout}, {args.split}, {args.pairs})")
    table.notes.append(f"{len(preds)} results; pair file {gt.pair_file}")
    if same:
        table.notes.append(f"{len(same)} results are byte-identical to their ground truth (--allow-identical)")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(table.markdown() + "\n")
    json_path.write_text(table.to_json() + "\n")
    print(table.markdown())
    print(f"\nwrote {md_path} and {json_path}", file=sys.stderr)
    return 0
