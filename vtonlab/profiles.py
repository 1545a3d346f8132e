"""Run profiles: one switch that sizes every experiment in vtonlab.

A profile fixes image size, dataset sizes, batch sizes, training steps per model, sampling steps
and the dtype used for mixed precision. Code reads the active profile instead of branching on
"are we in CI": the same notebook runs in 1-2 minutes on a 2-core laptop (``ci``), in a few
minutes with nicer results (``cpu``), or at the papers' 256x192 resolution on a GPU (``gpu``).

Choose with the environment variable ``VTONLAB_PROFILE`` (``ci`` | ``cpu`` | ``gpu``); when unset,
``gpu`` is used if CUDA is available, else ``cpu``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ENV_VAR = "VTONLAB_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Sizes of every experiment. Frozen: change a profile with :meth:`replace`."""

    name: str
    image_size: tuple[int, int]  # (H, W)
    n_train: int  # SynthVTON training samples
    n_test: int  # SynthVTON test samples
    batch_size: int
    steps: Mapping[str, int]  # training steps per model, keyed by model name
    sampling_steps: int  # DDIM steps at inference
    dtype: str  # "float32" or "bfloat16" (mixed precision through accelerate)
    eval_batch_size: int = 16
    description: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", MappingProxyType(dict(self.steps)))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @property
    def height(self) -> int:
        return self.image_size[0]

    @property
    def width(self) -> int:
        return self.image_size[1]

    @property
    def mixed_precision(self) -> str:
        """The value accelerate expects: ``"no"`` or ``"bf16"``."""
        return "bf16" if self.dtype == "bfloat16" else "no"

    def steps_for(self, model: str) -> int:
        """Training steps for ``model``; a clear error names the models this profile knows."""
        try:
            return self.steps[model]
        except KeyError:
            known = ", ".join(sorted(self.steps))
            raise KeyError(f"profile {self.name!r} has no step count for model {model!r}; known models: {known}") from None

    def replace(self, **changes) -> Profile:
        """A copy with some fields changed (e.g. ``profile.replace(n_train=32)``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["steps"] = dict(self.steps)
        d["extra"] = dict(self.extra)
        d["image_size"] = list(self.image_size)
        return d

    def table(self) -> str:
        """A readable two-column table of every setting."""
        rows = [
            ("profile", self.name),
            ("description", self.description),
            ("image size (H x W)", f"{self.height} x {self.width}"),
            ("train / test samples", f"{self.n_train} / {self.n_test}"),
            ("batch size (train / eval)", f"{self.batch_size} / {self.eval_batch_size}"),
            ("sampling steps (DDIM)", str(self.sampling_steps)),
            ("dtype", self.dtype),
        ]
        rows += [(f"steps: {k}", str(v)) for k, v in sorted(self.steps.items())]
        rows += [(f"extra: {k}", str(v)) for k, v in sorted(self.extra.items())]
        w = max(len(k) for k, _ in rows)
        line = "-" * (w + 2 + max(len(v) for _, v in rows))
        return "\n".join([line] + [f"{k.ljust(w)}  {v}" for k, v in rows] + [line])

    def __str__(self) -> str:
        return self.table()

    def _repr_markdown_(self) -> str:
        body = self.table().splitlines()[1:-1]
        rows = [(ln[: ln.index("  ")].strip(), ln[ln.index("  ") :].strip()) for ln in body]
        return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


# Training steps per model. Keys are the model names used with load_or_train and steps_for.
_CI_STEPS = dict(demo=60, clip=150, gmm=150, gml=100, parsing=100, warpgan=100, refine=60,
                 emasc=60, adapter=60, inpaint=100, unet=100, warp_refine=60, ladi_tps=150, vae=150)
_CPU_STEPS = dict(demo=300, clip=3000, gmm=1000, gml=600, parsing=600, warpgan=200, refine=300,
                  emasc=200, adapter=300, inpaint=1500, unet=2000, warp_refine=600, ladi_tps=1000, vae=800)
_GPU_STEPS = dict(demo=1000, clip=10000, gmm=10000, gml=5000, parsing=6000, warpgan=6000,
                  refine=3000, emasc=3000, adapter=3000, inpaint=20000, unet=20000, warp_refine=4000, ladi_tps=10000, vae=20000)

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", image_size=(64, 48), n_train=96, n_test=16, batch_size=8, eval_batch_size=16,
        steps=_CI_STEPS, sampling_steps=10, dtype="float32",
        description="smallest: every notebook in about a minute on 2 CPU cores (used by make test)",
    ),
    "cpu": Profile(
        name="cpu", image_size=(128, 96), n_train=600, n_test=64, batch_size=16, eval_batch_size=32,
        steps=_CPU_STEPS, sampling_steps=20, dtype="float32",
        description="laptop CPU: a few minutes per notebook, results worth looking at",
    ),
    "gpu": Profile(
        name="gpu", image_size=(256, 192), n_train=8000, n_test=500, batch_size=32, eval_batch_size=64,
        steps=_GPU_STEPS, sampling_steps=50, dtype="bfloat16",
        description="one GPU: the papers' 256x192 resolution, bf16 mixed precision, channels_last convolutions",
        extra={"channels_last": True},
    ),
}


@dataclass(frozen=True)
class DeviceRecipe:
    """How a profile's models run on one device outside :class:`vtonlab.train.Trainer` (the LaDI-VTON benches): on
    CUDA, bf16 autocast when the profile's dtype is bfloat16 and channels_last when its ``extra["channels_last"]``
    says so; float32 and the default memory format elsewhere. Made by :func:`device_recipe`."""

    device: object  # torch.device
    bf16: bool
    channels_last: bool

    @property
    def precision(self) -> str:
        return "bf16 autocast" if self.bf16 else "float32"

    def autocast(self):
        """The autocast context of the recipe (a no-op without bf16)."""
        import contextlib

        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def prepare(self, *modules) -> None:
        """Move ``modules`` to the device, in the channels_last memory format when the recipe says so."""
        import torch

        for m in modules:
            m.to(self.device)
            if self.channels_last:
                m.to(memory_format=torch.channels_last)


def device_recipe(profile: Profile | str | None = None, device=None) -> DeviceRecipe:
    """The :class:`DeviceRecipe` of a profile on ``device`` (default: CUDA when available, else the CPU)."""
    import torch

    prof = resolve(profile)
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.type == "cuda"
    return DeviceRecipe(dev, cuda and prof.dtype == "bfloat16", cuda and bool(prof.extra.get("channels_last")))


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing is reported elsewhere
        return False


def profile_name(name: str | None = None) -> str:
    """Resolve a profile name: the argument, else ``$VTONLAB_PROFILE``, else auto (gpu/cpu).

    ``None`` (no argument) falls back to the environment variable; an unset variable means auto.
    An empty name, given as the argument (``--profile ""``) or as a variable that is set but empty
    (``VTONLAB_PROFILE=``), is an error naming where it came from: it usually is a shell variable
    that was meant to hold a profile, and silently picking one would hide that.
    """
    valid = ", ".join(list(PROFILES) + ["auto"])
    source = "argument --profile" if name is not None else f"environment variable {ENV_VAR}"
    raw = name if name is not None else os.environ.get(ENV_VAR)
    if raw is None:
        return "gpu" if _cuda_available() else "cpu"
    if not isinstance(raw, str):
        raise TypeError(f"profile name from {source}: expected a string, got {type(raw).__name__}")
    chosen = raw.strip().lower()
    if not chosen:
        unset = "omit the option" if name is not None else f"unset {ENV_VAR}"
        raise ValueError(f"empty profile name from {source} ({raw!r}); expected one of {valid} "
                         f"({unset} to use the default: gpu when CUDA is available, else cpu)")
    if chosen == "auto":
        return "gpu" if _cuda_available() else "cpu"
    if chosen not in PROFILES:
        raise ValueError(f"unknown profile {chosen!r} (from {source}); valid profiles: {valid}")
    return chosen


def get_profile(name: str | None = None) -> Profile:
    """The active :class:`Profile` (see :func:`profile_name` for how it is chosen)."""
    return PROFILES[profile_name(name)]


def resolve(profile: Profile | str | None = None) -> Profile:
    """A :class:`Profile` from a Profile (returned as is), a profile name, or ``None`` (the active one)."""
    return profile if isinstance(profile, Profile) else get_profile(profile)
