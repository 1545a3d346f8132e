"""The one training loop of vtonlab, built on ``accelerate``.

Every model in the course (CLIP, the GMM, MG-VTON's stages, LaDI-VTON's modules) trains through
:class:`Trainer`. It gives them, for free:

- a tqdm progress bar with the live (smoothed) losses, and a :class:`History` that plots itself;
- mixed precision on GPU (bf16, from the profile) and several processes or machines through
  ``accelerate launch`` (e.g. ``accelerate launch --num_processes 2 --cpu script.py`` here);
- periodic checkpoints (safetensors + JSON, never pickles) and **exact resume**: weights, optimizer
  and scheduler state, every random number generator, the data order and the step counter are
  restored, so an interrupted run continued from its checkpoint ends with bit-identical weights;
- inside :func:`resumable` (what ``python -m vtonlab train`` enters), every Trainer that
  :func:`vtonlab.checkpoints.load_or_train` runs checkpoints periodically into
  ``<root>/<name>-<profile>-<config hash>/`` and resumes from there when the run is repeated, with no
  change in the model's code.

A training step is a plain function ``step_fn(ctx, batch) -> dict of losses`` that uses
``ctx.modules[...]`` and calls ``ctx.optimize(loss, "name")``; see :class:`StepContext`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vtonlab import paths
from vtonlab.progress import progress_bar

CHECKPOINT_PREFIX = "step_"
_TRAINER_JSON = "trainer.json"
MIXED_PRECISION = ("no", "bf16", "fp16")


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------
@dataclass
class History:
    """Losses logged at each step: ``history.losses["loss"]`` is a list aligned with ``history.steps``."""

    steps: list[int] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def append(self, step: int, logs: Mapping[str, float]) -> None:
        self.steps.append(int(step))
        n = len(self.steps)
        for key, value in logs.items():
            series = self.losses.setdefault(key, [])
            series.extend([math.nan] * (n - 1 - len(series)))
            series.append(float(value))

    def __len__(self) -> int:
        return len(self.steps)

    def last(self, key: str, n: int = 1) -> float:
        """Mean of the last ``n`` logged values of ``key``."""
        if key not in self.losses:
            raise KeyError(f"no loss named {key!r} in history; logged: {', '.join(self.losses) or 'none'}")
        vals = [v for v in self.losses[key][-n:] if not math.isnan(v)]
        return float(np.mean(vals)) if vals else math.nan

    def smoothed(self, key: str, window: int | None = None) -> np.ndarray:
        """Moving average of ``key`` (window ~ 1/20 of the run, at least 1)."""
        y = np.asarray(self.losses[key], dtype=float)
        window = window or max(1, len(y) // 20)
        if window <= 1 or len(y) < window:
            return y
        kernel = np.ones(window) / window
        valid = np.convolve(np.nan_to_num(y), kernel, mode="valid")
        return np.concatenate([np.full(window - 1, np.nan), valid])

    def plot(self, keys: list[str] | None = None, ax=None, title: str | None = None, logy: bool = False):
        """Plot raw (faint) and smoothed losses against the step; returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 3.2))
        else:
            fig = ax.figure
        for i, key in enumerate(keys or list(self.losses)):
            colour = f"C{i}"
            steps = self.steps[: len(self.losses[key])]
            ax.plot(steps, self.losses[key], color=colour, alpha=0.25, lw=0.8)
            ax.plot(steps, self.smoothed(key), color=colour, lw=1.8, label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False)
        if title:
            ax.set_title(title)
        fig.tight_layout()
        return fig

    def to_dict(self, max_points: int | None = None) -> dict:
        idx = range(len(self.steps))
        if max_points and len(self.steps) > max_points:
            idx = np.unique(np.linspace(0, len(self.steps) - 1, max_points).round().astype(int))
        return {"steps": [self.steps[i] for i in idx],
                "losses": {k: [None if i >= len(v) or math.isnan(v[i]) else v[i] for i in idx]
                           for k, v in self.losses.items()},
                "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> History:
        losses = {k: [math.nan if v is None else float(v) for v in vs] for k, vs in d.get("losses", {}).items()}
        return cls(steps=[int(s) for s in d.get("steps", [])], losses=losses, seconds=float(d.get("seconds", 0.0)))


# --------------------------------------------------------------------------------------------
# Helpers: device moves, state flattening, RNG
# --------------------------------------------------------------------------------------------
def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``; other values are left alone."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(moved) if isinstance(batch, list) else tuple(moved)
    return batch


def module_state(modules: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Flatten ``{"name": module}`` into ``{"name.param": tensor}`` (CPU copies, safe for safetensors)."""
    out: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        if "." in name:
            raise ValueError(f"module name {name!r} must not contain '.'")
        for key, value in module.state_dict().items():
            out[f"{name}.{key}"] = value.detach().cpu().clone().contiguous()
    return out


def _split_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def _optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (for safetensors) and a JSON-able remainder."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{idx}.{key}"] = value.detach().cpu().clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_flat(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], prefix: str) -> dict:
    state: dict[int, dict[str, Any]] = {}
    p = prefix + "."
    for key, value in tensors.items():
        if key.startswith(p):
            idx, name = key[len(p):].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    for idx, items in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(items)
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state(generator: torch.Generator) -> dict[str, torch.Tensor]:
    state = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": torch.from_numpy(np.frombuffer(json.dumps(_numpy_state_to_json()).encode(), dtype=np.uint8).copy()),
        "python": torch.from_numpy(np.frombuffer(json.dumps(_python_state_to_json()).encode(), dtype=np.uint8).copy()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _numpy_state_to_json() -> list:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _python_state_to_json() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _restore_rng(state: Mapping[str, torch.Tensor], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    kind, keys, pos, has_gauss, cached = json.loads(bytes(state["numpy"].numpy()).decode())
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = json.loads(bytes(state["python"].numpy()).decode())
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete training checkpoints in ``directory``, oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [p for p in d.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)
             and (p / _TRAINER_JSON).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


# --------------------------------------------------------------------------------------------
# Resumable runs: periodic checkpoints for every Trainer of a command, without model changes
# --------------------------------------------------------------------------------------------
@dataclass
class ResumeSession:
    """What :func:`resumable` yields: where training state goes, and the last checkpoint written.

    ``last_saved`` is ``(run label, checkpoint folder, step)`` of the most recent periodic checkpoint
    (``None`` before the first), so a command interrupted by Ctrl-C can say where its progress is.
    """

    root: Path
    every: int | None = None
    last_saved: tuple[str, Path, int] | None = None


@dataclass
class _Run:
    session: ResumeSession
    directory: Path
    label: str
    n_trainers: int = 0


_SESSION: ContextVar[ResumeSession | None] = ContextVar("vtonlab_resume_session", default=None)
_RUN: ContextVar[_Run | None] = ContextVar("vtonlab_training_run", default=None)


def checkpoint_every_from_env() -> int | None:
    """``$VTONLAB_CHECKPOINT_EVERY`` (steps between periodic checkpoints), or ``None`` when unset."""
    text = os.environ.get("VTONLAB_CHECKPOINT_EVERY", "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"VTONLAB_CHECKPOINT_EVERY: expected a positive number of steps, got {text!r}")
    return int(text)


def default_checkpoint_every(max_steps: int) -> int:
    """Steps between periodic checkpoints of a resumable run: about 20 per run."""
    return max(1, math.ceil(max_steps / 20))


@contextlib.contextmanager
def resumable(root: str | os.PathLike, *, every: int | None = None) -> Iterator[ResumeSession]:
    """Inside this block, training run through ``load_or_train`` checkpoints periodically and resumes.

    Each :func:`training_run` (``load_or_train`` opens one per checkpoint it trains) gets the folder
    ``root/<key>``; the ``i``-th Trainer created in it without a ``checkpoint_dir`` writes its
    periodic checkpoints into ``root/<key>/trainer<i>-<desc>/`` every ``every`` steps (default
    ``$VTONLAB_CHECKPOINT_EVERY``, else about 20 per run) and, when that folder already holds one
    (an interrupted earlier run), resumes from it exactly, printing ``resuming <name> from step N``.
    The folder of a run is deleted once its checkpoint is cached.
    """
    session = ResumeSession(Path(root), every if every is not None else checkpoint_every_from_env())
    token = _SESSION.set(session)
    try:
        yield session
    finally:
        _SESSION.reset(token)


@contextlib.contextmanager
def training_run(key: str, label: str | None = None) -> Iterator[Path | None]:
    """Name the training done inside the block (``key``: a folder name, ``label``: for messages).

    Outside :func:`resumable` this does nothing and yields ``None``. Inside, it yields the run's
    folder; the folder is removed when the block ends normally (the result is kept elsewhere) and
    kept when it ends with an exception (Ctrl-C included), so the next run resumes from it.
    """
    session = _SESSION.get()
    if session is None:
        yield None
        return
    if not key or "/" in key or key in (".", ".."):
        raise ValueError(f"training run key must be a plain folder name, got {key!r}")
    run = _Run(session, session.root / key, label or key)
    token = _RUN.set(run)
    try:
        yield run.directory
    finally:
        _RUN.reset(token)
    shutil.rmtree(run.directory, ignore_errors=True)  # reached only when the block ended normally


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:40] or "train"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16 in ``/proc/cpuinfo``'s flags).

    Without it, bf16 autocast on a CPU is emulated and several times slower than float32 (measured about 7x on an
    AVX2-only EPYC); with it, a VGG19 forward and backward takes about half the float32 time. ``cpuinfo``: the text
    to read instead of ``/proc/cpuinfo`` (tests); an unreadable file counts as no.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _make_accelerator(mixed_precision: str, cpu: bool):
    """An Accelerator with this mixed precision, even when another Trainer of this process chose another.

    accelerate keeps one ``AcceleratorState`` per process and refuses a second setting; the
    process-wide part (``PartialState``: processes, device) is kept and only the precision is reset.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") not in (None, mixed_precision):
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def _activate_precision(mixed_precision: str) -> None:
    """Point accelerate's per-process state at this Trainer's precision (read by its gradient unscaling)."""
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") not in (None, mixed_precision):
        shared["_mixed_precision"] = mixed_precision


# --------------------------------------------------------------------------------------------
# The step context
# --------------------------------------------------------------------------------------------
class StepContext:
    """What a step function sees.

    Attributes: ``modules`` (prepared by accelerate: DDP-wrapped when several processes),
    ``optimizers``, ``schedulers``, ``accelerator``, ``device``, ``step`` (global step, 0-based),
    ``generator`` (the loop's own ``torch.Generator`` on the device for noise, part of the resume
    state), ``max_steps``.
    """

    def __init__(self, trainer: Trainer):
        self._trainer = trainer
        self.accelerator = trainer.accelerator
        self.modules = trainer.prepared_modules
        self.optimizers = trainer.prepared_optimizers
        self.schedulers = trainer.schedulers
        self.device = trainer.accelerator.device
        self.generator = trainer.generator
        self.max_steps = trainer.max_steps
        self.step = 0

    def unwrap(self, name: str) -> nn.Module:
        """The plain module (without a DDP wrapper), e.g. to call custom methods."""
        return self.accelerator.unwrap_model(self.modules[name])

    def optimize(self, loss: torch.Tensor, *names: str, retain_graph: bool = False) -> None:
        """Zero the gradients of the named optimizers (all if none named), backpropagate ``loss``,
        clip gradients (if the trainer has ``grad_clip``), step the optimizers and their schedulers."""
        names = names or tuple(self.optimizers)
        for name in names:
            if name not in self.optimizers:
                raise KeyError(f"no optimizer named {name!r}; the trainer has: {', '.join(self.optimizers)}")
        if not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step}; lower the learning rate or check the data")
        for name in names:
            self.optimizers[name].zero_grad(set_to_none=True)
        self.accelerator.backward(loss, retain_graph=retain_graph)
        clip = self._trainer.grad_clip
        for name in names:
            opt = self.optimizers[name]
            if clip:
                params = [p for g in opt.param_groups for p in g["params"]]
                self.accelerator.clip_grad_norm_(params, clip)
            opt.step()
            if name in self.schedulers:
                self.schedulers[name].step()


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------
DataSource = torch.utils.data.Dataset | Callable[[int, torch.Generator], Any]


def _profile_extra(profile) -> Mapping:
    """The ``extra`` settings of ``profile`` (default: the active profile)."""
    from vtonlab.profiles import get_profile

    return (profile or get_profile()).extra


class Trainer:
    """The shared training loop.

    Args:
        modules: ``{"name": nn.Module}``; trained and frozen modules alike (frozen ones are moved
            to the device but not wrapped).
        optimizers: ``{"name": optimizer}``; a module's parameters belong to at most one.
        step_fn: ``step_fn(ctx: StepContext, batch) -> dict[str, float | Tensor]`` of values to log.
        data: a map-style ``Dataset`` (batched by ``collate_fn``, default ``default_collate``; the
            order of each epoch is a permutation seeded by ``(seed, epoch)``), or a callable
            ``data(step, generator) -> batch`` (the generator is seeded by ``(seed, step)``).
        batch_size: samples per process per step (for a Dataset).
        max_steps: total optimisation steps.
        schedulers: ``{"optimizer name": lr_scheduler}``, stepped after that optimizer's step.
        checkpoint_dir: where periodic checkpoints go; when it holds one, ``fit`` resumes from it
            (default: none, or a folder of the run inside :func:`resumable`).
        checkpoint_every: steps between checkpoints (default: only at the end; inside
            :func:`resumable`, about 20 per run or ``$VTONLAB_CHECKPOINT_EVERY``).
        keep_checkpoints: how many periodic checkpoints to keep (oldest deleted first).
        seed: seeds the data order, ``ctx.generator`` and the global RNGs.
        mixed_precision: ``"no"`` | ``"bf16"`` | ``"fp16"`` (GPU only); default from the profile
            ("bf16" on GPU profiles, but "no" on a machine without a GPU). Trainers with different
            settings may coexist in one process.
        grad_clip: max gradient norm (None: no clipping).
        progress: show a tqdm bar (main process only; ``$VTONLAB_PROGRESS=0`` turns it off).
        desc: the progress bar's label.
        profile: the profile whose mixed precision and ``extra["channels_last"]`` (on CUDA: modules in the
            channels_last memory format, the gpu profile's choice) apply; default the active profile.
    """

    def __init__(self, modules: Mapping[str, nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
                 step_fn: Callable[[StepContext, Any], Mapping[str, Any] | None], data: DataSource, *,
                 max_steps: int, batch_size: int | None = None, schedulers: Mapping[str, Any] | None = None,
                 checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int | None = None,
                 keep_checkpoints: int = 2, seed: int = 0, mixed_precision: str | None = None,
                 grad_clip: float | None = None, collate_fn: Callable | None = None, progress: bool = True,
                 desc: str = "train", accelerator=None, profile=None):
        if not isinstance(max_steps, int) or max_steps < 0:
            raise ValueError(f"max_steps must be a non-negative int, got {max_steps!r}")
        if not modules:
            raise ValueError("modules is empty: give at least one nn.Module to train")
        for name, m in modules.items():
            if not isinstance(m, nn.Module):
                raise TypeError(f"modules[{name!r}] is a {type(m).__name__}, expected an nn.Module")
        for name in (schedulers or {}):
            if name not in optimizers:
                raise KeyError(f"scheduler {name!r} has no optimizer of the same name; optimizers: {', '.join(optimizers)}")
        self.is_dataset = isinstance(data, torch.utils.data.Dataset) or (
            hasattr(data, "__getitem__") and hasattr(data, "__len__") and not callable(data))
        if not self.is_dataset and not callable(data):
            raise TypeError("data must be a map-style Dataset or a callable(step, generator) -> batch")
        if self.is_dataset and (batch_size is None or batch_size < 1):
            raise ValueError("batch_size (a positive int) is required when data is a Dataset")

        use_cpu = not torch.cuda.is_available()
        if mixed_precision is None:
            from vtonlab.profiles import get_profile

            mixed_precision = "no" if use_cpu else (profile or get_profile()).mixed_precision
        if mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision: expected one of {list(MIXED_PRECISION)}, got {mixed_precision!r}")
        if accelerator is None:
            if mixed_precision == "fp16" and use_cpu:
                raise ValueError("mixed_precision='fp16' needs a GPU; use 'bf16' or 'no' on a CPU")
            if mixed_precision == "bf16" and use_cpu and not cpu_has_native_bf16():
                import warnings

                warnings.warn(f"{desc}: bf16 autocast on a CPU without AVX512-BF16 / AMX is emulated and several times "
                              "slower than float32; this config asks for it (precision='bf16'), so the weights match the "
                              "shipped ones, but precision='fp32' trains much faster here", stacklevel=2)
            accelerator = _make_accelerator(mixed_precision, use_cpu)
        self.accelerator = accelerator
        self.mixed_precision = str(accelerator.mixed_precision)
        self._run = _RUN.get() if checkpoint_dir is None else None
        if self._run is not None:
            self._run.n_trainers += 1
            checkpoint_dir = self._run.directory / f"trainer{self._run.n_trainers}-{_slug(desc)}"
            checkpoint_every = checkpoint_every or self._run.session.every or default_checkpoint_every(max_steps)
        self.modules = dict(modules)
        self.optimizers = dict(optimizers)
        self.schedulers = dict(schedulers or {})
        self.step_fn = step_fn
        self.data = data
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = max(1, keep_checkpoints)
        self.seed = seed
        self.grad_clip = grad_clip
        self.collate_fn = collate_fn or torch.utils.data.default_collate
        self.progress = progress and os.environ.get("VTONLAB_PROGRESS", "1") != "0"
        self.desc = desc
        self.history = History()
        self.step = 0
        self._segment_start: float | None = None  # perf_counter() at the start of the running fit(), else None

        # Prepare: trainable modules are wrapped (DDP with several processes); frozen ones just moved.
        # On CUDA a profile may ask for channels_last (NHWC) convolutions: same math, faster kernels under bf16.
        self.channels_last = accelerator.device.type == "cuda" and bool(_profile_extra(profile).get("channels_last"))
        if self.channels_last:
            for module in self.modules.values():
                module.to(memory_format=torch.channels_last)
        self.prepared_modules: dict[str, nn.Module] = {}
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.prepared_modules[name] = accelerator.prepare_model(module)
            else:
                self.prepared_modules[name] = module.to(accelerator.device)
        self.prepared_optimizers = {name: accelerator.prepare_optimizer(opt) for name, opt in self.optimizers.items()}
        rank_seed = seed * 7919 + accelerator.process_index
        self.generator = torch.Generator(device=accelerator.device).manual_seed(rank_seed)

    # ---------------------------------------------------------------- data
    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    def steps_per_epoch(self) -> int:
        n = len(self.data)
        global_batch = self.batch_size * self.world_size
        if n < global_batch:
            raise ValueError(f"dataset has {n} samples, fewer than one global batch of {global_batch} "
                             f"(batch_size {self.batch_size} x {self.world_size} processes)")
        return n // global_batch

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.data), generator=g)

    def batch_at(self, step: int) -> Any:
        """The batch this process sees at global ``step`` (a pure function of seed and step)."""
        if not self.is_dataset:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
            return self.data(step, g)
        per_epoch = self.steps_per_epoch()
        epoch, i = divmod(step, per_epoch)
        order = self._epoch_order(epoch)
        global_batch = self.batch_size * self.world_size
        start = i * global_batch + self.accelerator.process_index * self.batch_size
        idx = order[start:start + self.batch_size].tolist()
        return self.collate_fn([self.data[j] for j in idx])

    # ---------------------------------------------------------------- checkpoints
    def _data_length(self) -> int | None:
        return len(self.data) if self.is_dataset else None

    def save_checkpoint(self) -> Path | None:
        """Write the full training state at the current step into ``checkpoint_dir/step_NNNNNNNN``."""
        if self.checkpoint_dir is None:
            return None
        acc = self.accelerator
        final = self.checkpoint_dir / f"{CHECKPOINT_PREFIX}{self.step:08d}"
        tmp = self.checkpoint_dir / f".tmp_{CHECKPOINT_PREFIX}{self.step:08d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        # every rank writes its own RNG state
        save_file(_rng_state(self.generator), str(tmp / f"rng_rank{acc.process_index}.safetensors"))
        if acc.is_main_process:
            unwrapped = {n: acc.unwrap_model(m) for n, m in self.prepared_modules.items()}
            save_file(module_state(unwrapped), str(tmp / "model.safetensors"))
            opt_tensors: dict[str, torch.Tensor] = {}
            opt_meta = {}
            for name, opt in self.optimizers.items():
                t, meta = _optimizer_to_flat(opt, name)
                opt_tensors.update(t)
                opt_meta[name] = meta
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            sched = {name: s.state_dict() for name, s in self.schedulers.items()}
            meta = {"step": self.step, "seed": self.seed, "max_steps": self.max_steps,
                    "world_size": self.world_size, "batch_size": self.batch_size, "data_length": self._data_length(),
                    "optimizers": opt_meta, "schedulers": sched, "history": self._history_so_far()}
            try:
                text = json.dumps(meta)
            except TypeError as err:
                raise TypeError(f"training state is not JSON-serialisable (a scheduler with a custom object?): {err}") from err
            (tmp / _TRAINER_JSON).write_text(text)
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in list_checkpoints(self.checkpoint_dir)[:-self.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        if self._run is not None:
            self._run.session.last_saved = (self._run.label, final, self.step)
        return final

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore the full training state from a checkpoint written by :meth:`save_checkpoint`."""
        path = Path(path)
        meta_file = path / _TRAINER_JSON
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RuntimeError(f"cannot read training state {meta_file}: {err}") from err
        if not isinstance(meta, dict):
            raise RuntimeError(f"training state {meta_file} is not a JSON object")
        if meta.get("world_size") != self.world_size:
            raise RuntimeError(f"{path} was written by {meta.get('world_size')} processes; this run has "
                               f"{self.world_size}. Resume with the same number of processes.")
        try:
            model = load_file(str(path / "model.safetensors"))
            opt_tensors = load_file(str(path / "optimizer.safetensors"))
            rng = load_file(str(path / f"rng_rank{self.accelerator.process_index}.safetensors"))
        except Exception as err:  # safetensors raises several types for truncated files
            raise RuntimeError(f"checkpoint {path} is unreadable or truncated: {err}") from err
        # the run must continue the same schedule over the same data, else it would not match an uninterrupted one
        ours = {"seed": self.seed, "batch_size": self.batch_size, "max_steps": self.max_steps,
                "data_length": self._data_length()}
        differ = [k for k, v in ours.items() if k in meta and meta[k] != v]
        if differ:
            theirs = ", ".join(f"{k}={meta[k]!r}" for k in differ)
            mine = ", ".join(f"{k}={ours[k]!r}" for k in differ)
            raise RuntimeError(f"{path} was written with {theirs}; this run has {mine}. Resume with the same "
                               f"settings, or train into another checkpoint_dir (or delete {path.parent})")
        if not 0 <= int(meta.get("step", -1)) <= self.max_steps:
            raise RuntimeError(f"{path}: step {meta.get('step')!r} is outside 0..max_steps={self.max_steps}")
        for name, module in self.prepared_modules.items():
            sub = _split_prefix(model, name)
            try:
                self.accelerator.unwrap_model(module).load_state_dict(sub)
            except RuntimeError as err:
                raise RuntimeError(f"{path}: the weights of {name!r} do not fit this module ({err}); was it written by "
                                   f"another version of the model? Delete {path.parent} to start again") from err
        for name, opt in self.optimizers.items():
            opt.load_state_dict(_optimizer_from_flat(opt_tensors, meta["optimizers"][name], name))
        for name, sched in self.schedulers.items():
            sched.load_state_dict(meta["schedulers"][name])
        _restore_rng(rng, self.generator)
        self.step = int(meta["step"])
        self.history = History.from_dict(meta["history"])

    def _history_so_far(self) -> dict:
        """The history as a checkpoint saves it: ``seconds`` includes the running :meth:`fit` so far, so that a run
        resumed after an interruption reports the training time of every part, not only of the last one."""
        d = self.history.to_dict()
        if self._segment_start is not None:
            d["seconds"] += time.perf_counter() - self._segment_start
        return d

    def latest_checkpoint(self) -> Path | None:
        found = list_checkpoints(self.checkpoint_dir) if self.checkpoint_dir else []
        return found[-1] if found else None

    # ---------------------------------------------------------------- loop
    def fit(self, resume: bool = True) -> History:
        """Train until ``max_steps`` (resuming from ``checkpoint_dir`` when it holds a checkpoint)."""
        _activate_precision(self.mixed_precision)
        latest = self.latest_checkpoint() if resume else None
        if latest is not None:
            self.load_checkpoint(latest)
            if self.accelerator.is_main_process and self._run is not None:
                print(f"resuming {self._run.label} from step {self.step} ({paths.shown(latest)})", flush=True)
            elif self.accelerator.is_main_process and self.progress:
                print(f"{self.desc}: resumed from {paths.shown(latest)} (step {self.step})")
        else:
            torch.manual_seed(self.seed * 7919 + self.accelerator.process_index)
        if self.is_dataset:
            self.steps_per_epoch()  # validates the dataset size early, with a clear error
        for m in self.prepared_modules.values():
            if any(p.requires_grad for p in m.parameters()):
                m.train()
        ctx = StepContext(self)
        smooth: dict[str, float] = {}
        start = self._segment_start = time.perf_counter()
        # a saved notebook keeps the bar's final frame (vtonlab.progress)
        with progress_bar(total=self.max_steps, initial=self.step, desc=self.desc, dynamic_ncols=True,
                          disable=not (self.progress and self.accelerator.is_main_process), mininterval=0.5) as bar:
            try:
                while self.step < self.max_steps:
                    batch = to_device(self.batch_at(self.step), self.accelerator.device)
                    ctx.step = self.step
                    with self.autocast():
                        logs = self.step_fn(ctx, batch) or {}
                    logs = {k: float(v.detach().float().mean()) if isinstance(v, torch.Tensor) else float(v)
                            for k, v in logs.items()}
                    self.step += 1
                    self.history.append(self.step, logs)
                    for k, v in logs.items():
                        smooth[k] = v if k not in smooth else 0.9 * smooth[k] + 0.1 * v
                    bar.update(1)
                    if smooth:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in list(smooth.items())[:4]}, refresh=False)
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.step < self.max_steps:
                        self.save_checkpoint()
            finally:
                self.history.seconds += time.perf_counter() - start
                self._segment_start = None
        if self.checkpoint_dir is not None and self.latest_checkpoint() != self.checkpoint_dir / f"{CHECKPOINT_PREFIX}{self.step:08d}":
            self.save_checkpoint()
        self.accelerator.wait_for_everyone()
        for m in self.prepared_modules.values():
            m.eval()
        return self.history

    def autocast(self):
        """The autocast context of this Trainer's ``mixed_precision`` (a no-op for ``"no"``)."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mixed_precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.accelerator.device.type, dtype=dtype)

    def unwrapped(self) -> dict[str, nn.Module]:
        """The trained modules without accelerate/DDP wrappers, for use after :meth:`fit`.

        Mixed precision's autocast wrapper around ``forward`` is removed too, so the returned modules compute in their
        own (float32) weights' precision, as they do when loaded from the checkpoint; metrics computed with them are
        the shipped model's.
        """
        return {n: self.accelerator.unwrap_model(m, keep_fp32_wrapper=False) for n, m in self.prepared_modules.items()}
