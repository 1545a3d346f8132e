"""``python -m vtonlab train MODEL``: train a model of the course for a profile and cache it.

Each trainable model exposes ``get_trained(profile=None, *, force_train=False) -> (model, checkpoint)``
in its module; this command calls it with ``force_train=True`` and, with ``--ship``, copies the
checkpoint into ``data/checkpoints/`` (what a fresh clone loads instead of training).

Training checkpoints periodically into ``<cache>/train-state/<model>-<profile>-<config hash>/``
(:func:`vtonlab.train.resumable`; ``$VTONLAB_CHECKPOINT_EVERY`` sets the interval in steps). Ctrl-C
stops with one line saying where the progress is and exit status 130; running the same command again
resumes from the last periodic checkpoint (``resuming <model> from step N``) and ends with the same
weights as an uninterrupted run.
"""

from __future__ import annotations

import importlib
import sys
import time

# model name -> "module:function"
MODELS: dict[str, str] = {
    "demo": "vtonlab.demo:get_trained",
    "clip": "vtonlab.clip:get_trained",
    "gmm": "vtonlab.gmm:get_trained",
    "gml": "vtonlab.gmm:get_trained_gml",
    "gmm_cpvton_plus": "vtonlab.gmm:get_trained_cpvton_plus",
    "gmm_ablation": "vtonlab.gmm:get_trained_ablation",  # every ablation row of notebook 04 (one checkpoint each)
    "ladi_tps": "vtonlab.ladi.warping:get_trained_tps",
    "ladi_warp_refine": "vtonlab.ladi.warping:get_trained_refine",
    "ladi_vae": "vtonlab.ladi.vae:get_trained",
    "ladi_vae_long": "vtonlab.ladi.vae:get_trained_long",  # the long recipe (no VGG19, 5x steps; notebook 09)
    "ladi_emasc": "vtonlab.ladi.emasc:get_trained_ablation",  # linear and nonlinear, seeds 0-2 (one checkpoint each)
    "ladi_inpaint": "vtonlab.ladi.inpaint:get_trained",
    "ladi_adapter": "vtonlab.ladi.adapter:get_trained",
    "ladi_tryon": "vtonlab.ladi.tryon:get_trained",
    "mgvton-parsing": "vtonlab.mgvton.parsing:get_trained",
    "mgvton-warpgan": "vtonlab.mgvton.warpgan:get_trained",
    "mgvton-refine": "vtonlab.mgvton.refine:get_trained",
    "mgvton-ablation": "vtonlab.mgvton.ablation:get_trained_ablation",  # Warp-GAN / render variants x seeds 0-2
    "ladi_ablation": "vtonlab.ladi.ablation:get_trained_ablation",  # try-on variants x seeds 0-2, adapter n4
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
    p.add_argument("--variants", default=None, metavar="A,B",
                   help="a family's variants to train (comma-separated; default all), e.g. ladi_ablation nogarment,n4")
    p.add_argument("--seeds", default=None, metavar="0,1",
                   help="a family's training seeds (comma-separated; default the profile's), e.g. --seeds 0 to ship seed 0")
    p.set_defaults(func=run)


def state_root():
    """Where interrupted training runs keep their periodic checkpoints."""
    from vtonlab.paths import cache_dir

    return cache_dir() / "train-state"


def _interrupted(session, model: str, profile_name: str) -> str:
    again = f"python -m vtonlab train {model} --profile {profile_name}"
    if session.last_saved is None:
        return f"interrupted: no checkpoint of {model} was saved yet; `{again}` starts again"
    label, folder, step = session.last_saved
    return f"interrupted: {label} saved at step {step} in {folder}; `{again}` resumes from there"


FAMILIES = {"gmm_ablation", "ladi_emasc", "mgvton-ablation", "ladi_ablation"}
"""Models whose ``get_trained`` returns several checkpoints, each named ``<model>_<key>`` (or a prefix of
:data:`FAMILY_PREFIXES`)."""

FAMILY_PREFIXES = {"ladi_ablation": ("ladi_tryon", "ladi_adapter")}
"""Families whose checkpoints keep their models' own names (``ladi_tryon_nogarment_seed1``, ``ladi_adapter_n4``)."""


def shipped_conflicts(model: str, profile_name: str) -> list:
    """Shipped files ``--ship`` would replace for ``model`` (checked before training, not after)."""
    from vtonlab import paths

    folder = paths.shipped_checkpoints_dir()
    found = [folder / f"{model}-{profile_name}.safetensors"]
    if model in FAMILIES:
        for prefix in FAMILY_PREFIXES.get(model, (model,)):
            found += sorted(folder.glob(f"{prefix}_*-{profile_name}.safetensors"))
    return [f for f in found if f.exists()]


def selection(args, get_trained) -> dict:
    """``--variants`` / ``--seeds`` as keyword arguments of ``get_trained``; an error when it takes none of them."""
    import inspect

    out: dict = {}
    if getattr(args, "variants", None):
        out["variants"] = [v.strip() for v in args.variants.split(",") if v.strip()]
    if getattr(args, "seeds", None):
        try:
            out["seeds"] = [int(v) for v in args.seeds.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--seeds: expected comma-separated integers such as 0,1,2, got {args.seeds!r}") from None
        if any(v < 0 for v in out["seeds"]):
            raise ValueError(f"--seeds: expected non-negative seeds, got {args.seeds!r}")
    params = inspect.signature(get_trained).parameters
    for key in out:
        if key not in params:
            raise ValueError(f"--{key}: {args.model} trains one model and takes no --{key} "
                             f"(families that do: {', '.join(sorted(FAMILIES))})")
    return out


def run(args) -> int:
    from vtonlab.checkpoints import ship
    from vtonlab.profiles import get_profile
    from vtonlab.train import checkpoint_every_from_env, resumable

    profile = get_profile(args.profile)
    every = checkpoint_every_from_env()  # a bad value is an error before any work
    if args.ship and not args.overwrite and (taken := shipped_conflicts(args.model, profile.name)):
        names = ", ".join(f.name for f in taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        raise FileExistsError(f"--ship would replace the shipped {names} in {taken[0].parent.name}/; "
                              "add --overwrite to replace them (nothing was trained)")
    module_name, fn_name = available()[args.model].split(":")
    get_trained = getattr(importlib.import_module(module_name), fn_name)
    chosen = selection(args, get_trained)  # a bad --variants / --seeds is an error before any work
    start = time.perf_counter()
    with resumable(state_root(), every=every) as session:
        try:
            result = get_trained(profile, force_train=not args.reuse, **chosen)
        except KeyboardInterrupt:
            print(_interrupted(session, args.model, profile.name), file=sys.stderr, flush=True)
            return 130
    # one (model, checkpoint) pair, or a dict of them for a model family such as gmm_ablation
    ckpts = [ck for _, ck in result.values()] if isinstance(result, dict) else [result[1]]
    for ckpt in ckpts:
        print(ckpt.summary())
    print(f"wall time: {time.perf_counter() - start:.1f} s")
    if args.ship:
        for ckpt in ckpts:
            target = ship(ckpt, overwrite=args.overwrite)
            print(f"shipped: {target}")
    return 0
