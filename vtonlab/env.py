"""The environment cell: the first cell of every notebook.

``vtonlab.setup(seed)`` seeds Python, NumPy and PyTorch, picks the device (CUDA, then Apple MPS,
then CPU), resolves the profile and prints all of it with the versions of the key packages, so a
reader of an executed notebook knows exactly what produced its numbers.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch

from vtonlab.profiles import Profile, get_profile

KEY_PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "safetensors",
                "torchmetrics", "lpips", "kornia", "open_clip_torch", "numpy")


@dataclass(frozen=True)
class Env:
    """What :func:`setup` decided: the profile, the device and the seed."""

    profile: Profile
    device: torch.device
    seed: int

    def __iter__(self):  # allows ``profile, device, seed = vtonlab.setup()``
        return iter((self.profile, self.device, self.seed))


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (all devices)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device() -> torch.device:
    """CUDA if available, then MPS, then CPU (``$VTONLAB_DEVICE`` overrides)."""
    forced = os.environ.get("VTONLAB_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def package_versions(names=KEY_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def describe(profile: Profile, device: torch.device, seed: int) -> str:
    lines = [f"vtonlab profile: {profile.name}  ({profile.description})",
             f"device: {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
             f"seed: {seed}   threads: {torch.get_num_threads()}   python: {platform.python_version()}",
             "versions: " + ", ".join(f"{k} {v}" for k, v in package_versions().items())]
    return "\n".join(lines)


def setup(seed: int = 0, *, profile: str | None = None, quiet: bool = False) -> Env:
    """Seed everything, pick the device, resolve the profile and print a short report.

    Returns an :class:`Env` (``env.profile``, ``env.device``, ``env.seed``).
    """
    seed_everything(seed)
    prof = get_profile(profile)
    device = pick_device()
    if not quiet:
        print(describe(prof, device, seed))
    return Env(prof, device, seed)
