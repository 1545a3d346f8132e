"""``python -m vtonlab train MODEL``: train a model of the course for a profile and cache it.

Each trainable model exposes ``get_trained(profile=None, *, force_train=False) -> (model, checkpoint)``
in its module; this command calls it with ``force_train=True`` and, with ``--ship``, copies the
checkpoint into ``data/checkpoints/`` (what a fresh clone loads instead of training).
"""

from __future__ import annotations

import importlib
import time

# model name -> "module:function"
MODELS: dict[str, str] = {
    "demo": "vtonlab.demo:get_trained",
    "clip": "vtonlab.clip:get_trained",
    "gmm": "vtonlab.gmm:get_trained",
    "gml": "vtonlab.gmm:get_trained_gml",
}


def available() -> dict[str, str]:
    out = {}
    for name, target in MODELS.items():
        module = target.split(":")[0]
        if importlib.util.find_spec(module) is not None:
            out[name] = target
    return out


def register(sub) -> None:
    models = available()
    p = sub.add_parser("train", help="train a model for a profile and cache (or ship) its checkpoint")
    p.add_argument("model", choices=sorted(models), help="which model")
    p.add_argument("--profile", default=None, help="ci | cpu | gpu (default: VTONLAB_PROFILE, else auto)")
    p.add_argument("--ship", action="store_true", help="copy the checkpoint into data/checkpoints/")
    p.add_argument("--overwrite", action="store_true", help="with --ship: replace an existing shipped checkpoint")
    p.add_argument("--reuse", action="store_true", help="load a matching checkpoint instead of training anew")
    p.set_defaults(func=run)


def run(args) -> int:
    from vtonlab.checkpoints import ship
    from vtonlab.profiles import get_profile

    profile = get_profile(args.profile)
    module_name, fn_name = available()[args.model].split(":")
    get_trained = getattr(importlib.import_module(module_name), fn_name)
    start = time.perf_counter()
    _, ckpt = get_trained(profile, force_train=not args.reuse)
    print(ckpt.summary())
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    if args.ship:
        target = ship(ckpt, overwrite=args.overwrite)
        print(f"shipped: {target}")
    return 0
