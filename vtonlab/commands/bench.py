"""``python -m vtonlab bench render|flow|tps|ladi_sampling|ladi_training``: measure what no checkpoint or notebook records.

Each bench writes one JSON file (default ``data/bench/<name>.json``, committed, so the README's
numbers are reproducible on a fresh clone) holding the command that reproduces it, the machine
(CPU count, torch threads, load average), the date and the numbers; ``python -m vtonlab report``
reads it.

- ``render``: SynthVTON :func:`~vtonlab.data.synth.render_sample` speed at a size, in samples per
  wall-clock second and per CPU-second of this process (the second depends less on other jobs).
- ``flow``: how well the true flow reproduces the worn garment:
  ``|image - shading * grid_sample(cloth, gt_flow)|`` in grey levels (0-255, max over RGB), the mean
  over "clean" pixels (the worn pixel and its four in-shop taps inside the garment, away from
  anti-aliased rims) and over every garment pixel (``tests/test_synth.py`` checks the same numbers).
- ``tps``: :func:`vtonlab.tps.benchmark`, the TPS warp against kornia (what notebook 03 shows).
- ``ladi_sampling``: :func:`vtonlab.ladi.pipeline.sampling_benchmark`, seconds per LaDI-VTON try-on of a profile's
  trained pipeline at its DDIM steps with guidance (``--profile``; on CUDA the gpu recipe: bf16 autocast,
  channels_last), written to ``data/bench/ladi_sampling-<profile>.json``.
- ``ladi_training``: :func:`vtonlab.ladi.tryon.training_benchmark`, seconds per training step of a profile's try-on
  UNet and autoencoder on this machine (untrained, random inputs of the profile's shapes: any profile can be measured
  anywhere) and the hours the profile's steps would take (``--repeats`` timed steps, median), written to
  ``data/bench/ladi_training-<profile>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vtonlab import paths

FORMAT = "vtonlab-bench-v1"
BENCHES = ("render", "flow", "tps", "ladi_sampling", "ladi_training")


def bench_dir() -> Path:
    """Where bench JSON files live by default: ``<data>/bench`` (committed with the repository)."""
    return paths.data_dir() / "bench"


def read_record(path: str | os.PathLike) -> dict:
    """A bench JSON file (what :func:`run` writes), checked: a clear error names the file when it is missing (with
    the command that makes it) or lacks a field."""
    path = Path(path)
    if not path.exists():
        name, _, profile = path.stem.partition("-")
        option = f" --profile {profile}" if name in PROFILE_BENCHES and profile else ""
        raise FileNotFoundError(f"{path}: bench file not found; create it with `python -m vtonlab bench {name}{option}`")
    record = json.loads(path.read_text())
    for key in ("command", "date", "machine", "result"):
        if key not in record:
            raise ValueError(f"{path}: bench file has no {key!r} field")
    return record


def machine_info() -> dict[str, Any]:
    """CPU count (all and usable by this process), torch threads, load average, platform, versions."""
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "processor": _processor_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def _processor_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------------------------------
# The measurements (pure functions of their arguments, clocks injectable for tests)
# --------------------------------------------------------------------------------------------------
def render_speed(n: int, size: tuple[int, int], seed: int = 0, *,
                 clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.process_time,
                 render: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Render SynthVTON samples ``seed .. seed + n - 1`` at ``size`` (H, W) and time them.

    Returns ``n``, ``size``, ``seconds`` (wall clock), ``cpu_seconds`` (this process),
    ``samples_per_s = n / seconds`` and ``samples_per_cpu_s = n / cpu_seconds``.
    """
    if render is None:
        from vtonlab.data.synth import render_sample as render
    n, size = _check_n(n), _check_size(size)
    t0, c0 = clock(), cpu_clock()
    for i in range(n):
        render(seed + i, size)
    seconds, cpu_seconds = clock() - t0, cpu_clock() - c0
    if seconds <= 0 or cpu_seconds <= 0:
        raise RuntimeError(f"render bench: the clocks did not advance (wall {seconds} s, CPU {cpu_seconds} s)")
    return {"n": n, "size": list(size), "seeds": [seed, seed + n - 1], "seconds": seconds, "cpu_seconds": cpu_seconds,
            "samples_per_s": n / seconds, "samples_per_cpu_s": n / cpu_seconds}


def flow_reproduction_error(sample: dict) -> tuple[Any, Any, Any]:
    """Per-pixel error of the true flow on one rendered sample (arrays ``(H, W)``).

    Returns ``err`` = ``max_c |image - clip(shading * grid_sample(cloth, gt_flow), 0, 255)|`` (float64
    grey levels), the garment mask ``gt_flow_mask`` and the ``clean`` mask: garment pixels whose 3x3
    neighbourhood is garment and whose four bilinear in-shop taps lie inside the eroded in-shop mask.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    h, w = sample["parse"].shape
    cloth = torch.from_numpy(sample["cloth"]).permute(2, 0, 1)[None].double()
    grid = torch.from_numpy(sample["gt_flow"]).double()[None]
    warped = F.grid_sample(cloth, grid, mode="bilinear", align_corners=True)[0].permute(1, 2, 0).numpy()
    pred = np.clip(warped * sample["shading"][..., None], 0, 255)
    err = np.abs(pred - sample["image"].astype(np.float64)).max(-1)
    mask = sample["gt_flow_mask"].astype(bool)
    core = ndimage.binary_erosion(sample["cloth_mask"].astype(bool), np.ones((3, 3)))
    fx = (sample["gt_flow"][..., 0] + 1) / 2 * (w - 1)
    fy = (sample["gt_flow"][..., 1] + 1) / 2 * (h - 1)
    x0 = np.clip(np.floor(fx).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(fy).astype(int), 0, h - 2)
    taps_in = core[y0, x0] & core[y0 + 1, x0] & core[y0, x0 + 1] & core[y0 + 1, x0 + 1]
    clean = ndimage.binary_erosion(mask, np.ones((3, 3))) & taps_in
    return err, mask, clean


def flow_error(n: int, size: tuple[int, int], seed: int = 0, *, samples: Iterable[dict] | None = None) -> dict[str, Any]:
    """:func:`flow_reproduction_error` pooled over samples ``seed .. seed + n - 1`` at ``size``.

    Returns the mean error over clean pixels and over all garment pixels (grey levels), the 99th
    percentile on clean pixels, and the share of garment pixels that are clean.
    """
    import numpy as np

    n, size = _check_n(n), _check_size(size)
    if samples is None:
        from vtonlab.data.synth import render_sample

        samples = (render_sample(seed + i, size) for i in range(n))
    errs, clean_errs = [], []
    for s in samples:
        err, mask, clean = flow_reproduction_error(s)
        errs.append(err[mask])
        clean_errs.append(err[clean])
    e_all, e_clean = np.concatenate(errs), np.concatenate(clean_errs)
    return {"n": n, "size": list(size), "seeds": [seed, seed + n - 1],
            "mean_error_clean": float(e_clean.mean()), "mean_error_all": float(e_all.mean()),
            "p99_error_clean": float(np.quantile(e_clean, 0.99)), "clean_share": e_clean.size / e_all.size,
            "garment_pixels": int(e_all.size), "unit": "grey levels (0-255), max over RGB"}


def tps_speed(batch: int, size: tuple[int, int], repeats: int, grid_size: int = 5) -> dict[str, Any]:
    """:func:`vtonlab.tps.benchmark` as a dict (median seconds per batch warp and the speed-ups)."""
    from vtonlab.tps import benchmark

    return benchmark(batch=_check_n(batch, "batch"), size=_check_size(size), repeats=_check_n(repeats, "repeats"),
                     grid_size=grid_size).to_dict()


def _check_n(n: int, name: str = "n") -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return n


def _check_size(size) -> tuple[int, int]:
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(v, int) and v >= 8 for v in size):
        raise ValueError(f"size must be two integers H W (each >= 8), got {size!r}")
    return size


# --------------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------------
def register(sub) -> None:
    p = sub.add_parser("bench", help="measure render speed, flow reproduction error, TPS speed or LaDI-VTON sampling and "
                       "training speed; write a JSON")
    p.add_argument("name", choices=BENCHES, help="render: SynthVTON speed; flow: gt_flow error; tps: TPS vs kornia; "
                   "ladi_sampling: LaDI-VTON seconds per try-on; ladi_training: seconds per LaDI-VTON training step")
    p.add_argument("--n", type=int, default=None, help="samples (render: 200, flow: 40, ladi_sampling: 32) or batch size "
                   "(tps: 64)")
    p.add_argument("--profile", default=None, help="ladi_sampling, ladi_training: ci | cpu | gpu (default: "
                   "VTONLAB_PROFILE, else auto)")
    p.add_argument("--size", type=int, nargs=2, default=[256, 192], metavar=("H", "W"), help="image size (256 192)")
    p.add_argument("--seed", type=int, default=0, help="first sample seed (render, flow)")
    p.add_argument("--repeats", type=int, default=None, help="tps: timed repeats (5); ladi_sampling: timed passes "
                   "(5); ladi_training: timed steps per model (3); the median is kept")
    p.add_argument("--out", default=None, help="JSON file (default: data/bench/<name>.json)")
    p.set_defaults(func=run)


DEFAULT_N = {"render": 200, "flow": 40, "tps": 64, "ladi_sampling": 32}
DEFAULT_REPEATS = {"tps": 5, "ladi_sampling": 5, "ladi_training": 3}
PROFILE_BENCHES = ("ladi_sampling", "ladi_training")
"""Benches of a profile's models: their JSON is ``<bench>-<profile>.json``."""


def command_line(args) -> str:
    """The command that reproduces a bench run (every option written out)."""
    h, w = args.size
    if args.name == "ladi_sampling":
        return f"python -m vtonlab bench ladi_sampling --n {args.n} --profile {args.profile} --repeats {args.repeats}"
    if args.name == "ladi_training":
        return f"python -m vtonlab bench ladi_training --profile {args.profile} --repeats {args.repeats}"
    cmd = f"python -m vtonlab bench {args.name} --n {args.n} --size {h} {w}"
    if args.name == "tps":
        cmd += f" --repeats {args.repeats}"
    else:
        cmd += f" --seed {args.seed}"
    return cmd


def run(args) -> int:
    if args.n is None:
        args.n = DEFAULT_N.get(args.name)
    if args.repeats is None:
        args.repeats = DEFAULT_REPEATS.get(args.name)
    size = tuple(args.size)
    if args.name == "render":
        result = render_speed(args.n, size, args.seed)
    elif args.name == "flow":
        result = flow_error(args.n, size, args.seed)
    elif args.name == "ladi_sampling":
        from vtonlab.ladi.pipeline import sampling_benchmark
        from vtonlab.profiles import get_profile

        args.profile = get_profile(args.profile).name
        result = sampling_benchmark(args.profile, n=_check_n(args.n), repeats=_check_n(args.repeats, "repeats"))
    elif args.name == "ladi_training":
        from vtonlab.ladi.tryon import training_benchmark
        from vtonlab.profiles import get_profile

        if args.n is not None:
            raise SystemExit("bench ladi_training: --n does not apply (the profile's batch is used); use --repeats")
        args.profile = get_profile(args.profile).name
        result = training_benchmark(args.profile, steps=_check_n(args.repeats, "repeats"))
    else:
        result = tps_speed(args.n, size, args.repeats)
    record = {"format": FORMAT, "bench": args.name, "command": command_line(args),
              "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine_info(), "result": result}
    stem = f"{args.name}-{args.profile}" if args.name in PROFILE_BENCHES else args.name
    out = Path(args.out) if args.out else bench_dir() / f"{stem}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return 0
