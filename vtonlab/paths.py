"""Where vtonlab keeps shipped checkpoints, caches and results.

In a checkout (the repository, installed editable or used in place):

- ``repo_root()``: the checkout (the folder holding ``vtonlab/``).
- ``data_dir()``: ``$VTONLAB_DATA`` or ``<repo>/data``.
- ``shipped_checkpoints_dir()``: ``<data>/checkpoints`` (committed, small safetensors files).
- ``cache_dir()``: ``$VTONLAB_CACHE`` or ``<data>/cache`` (ignored by git): rendered SynthVTON,
  checkpoints trained on this machine.
- ``results_dir()``: ``$VTONLAB_RESULTS_DIR`` or ``<repo>/results``.

Installed from a wheel (``pip install vtonlab``, no checkout around the package), nothing is written
next to ``site-packages``: the data folder is the user data folder of ``platformdirs``
(``~/.local/share/vtonlab`` on Linux), the cache the user cache folder (``~/.cache/vtonlab``) and
the results ``<user data>/results``; the environment variables above still win.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
APP_NAME = "vtonlab"


def repo_root() -> Path:
    """The folder that holds the ``vtonlab`` package (the repository root for a checkout)."""
    return _PACKAGE_DIR.parent


def is_checkout() -> bool:
    """Whether the package sits in a vtonlab checkout: ``data/checkpoints/`` beside it, and a git
    repository or the project's ``pyproject.toml`` (not a ``site-packages`` folder)."""
    root = repo_root()
    return (root / "data" / "checkpoints").is_dir() and ((root / ".git").exists() or (root / "pyproject.toml").is_file())


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    env = _env_path("VTONLAB_DATA")
    if env is not None:
        return env
    if is_checkout():
        return repo_root() / "data"
    import platformdirs

    return platformdirs.user_data_path(APP_NAME)


def shipped_checkpoints_dir() -> Path:
    return data_dir() / "checkpoints"


def cache_dir() -> Path:
    env = _env_path("VTONLAB_CACHE")
    if env is not None:
        return env
    if os.environ.get("VTONLAB_DATA") or is_checkout():
        return data_dir() / "cache"
    import platformdirs

    return platformdirs.user_cache_path(APP_NAME)


def results_dir() -> Path:
    env = _env_path("VTONLAB_RESULTS_DIR")
    if env is not None:
        return env
    if is_checkout():
        return repo_root() / "results"
    import platformdirs

    return platformdirs.user_data_path(APP_NAME) / "results"


def shown(path: str | os.PathLike) -> str:
    """``path`` as printed in messages a notebook may save: relative to the repository when inside it,
    ``~/...`` when inside the home folder, else as given (so no machine's absolute path lands in outputs)."""
    p = Path(path)
    try:
        return p.resolve().relative_to(repo_root().resolve()).as_posix()
    except (ValueError, OSError):
        pass
    try:
        return "~/" + p.resolve().relative_to(Path.home().resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):
        return p.as_posix()
