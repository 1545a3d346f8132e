"""``python -m vtonlab``: the command line (profile, data, train, evaluate, notebooks, bench, report)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = ("profile", "data", "train", "evaluate", "notebooks", "bench", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vtonlab",
        description="vtonlab: a study kit for virtual try-on (CLIP, TPS/GMM, MG-VTON, LaDI-VTON).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"vtonlab.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"vtonlab.commands.{name}":
                continue  # command not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, RuntimeError) as err:
        if os.environ.get("VTONLAB_DEBUG"):
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
