"""Where vtonlab keeps shipped checkpoints, caches and results.

- ``repo_root()``: the checkout (the folder holding ``vtonlab/``), when installed editable.
- ``data_dir()``: ``$VTONLAB_DATA`` or ``<repo>/data``.
- ``shipped_checkpoints_dir()``: ``<data>/checkpoints`` (committed, small safetensors files).
- ``cache_dir()``: ``$VTONLAB_CACHE`` or ``<data>/cache`` (ignored by git): rendered SynthVTON,
  checkpoints trained on this machine.
- ``results_dir()``: ``$VTONLAB_RESULTS_DIR`` or ``<repo>/results``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The folder that holds the ``vtonlab`` package (the repository root for a checkout)."""
    return _PACKAGE_DIR.parent


def data_dir() -> Path:
    env = os.environ.get("VTONLAB_DATA")
    return Path(env).expanduser() if env else repo_root() / "data"


def shipped_checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def cache_dir() -> Path:
    env = os.environ.get("VTONLAB_CACHE")
    path = Path(env).expanduser() if env else data_dir() / "cache"
    return path


def results_dir() -> Path:
    env = os.environ.get("VTONLAB_RESULTS_DIR")
    return Path(env).expanduser() if env else repo_root() / "results"
