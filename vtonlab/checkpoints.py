"""Checkpoints: safetensors weights + a JSON manifest, and ``load_or_train``.

A checkpoint named ``gmm`` for the ``cpu`` profile is two files::

    gmm-cpu.safetensors   the weights (``"<module>.<param>"`` keys), never a pickle
    gmm-cpu.json          the manifest: config, profile, step, metrics, loss history, sha256 of
                          the weights file, the command that created it, package versions

``load_or_train(name, config, train_fn)`` returns a shipped checkpoint (``data/checkpoints/``) or a
cached one (``data/cache/checkpoints/``) whose config matches the requested one exactly; otherwise
it calls ``train_fn`` and caches the result. So a notebook never depends on another notebook, and
a CPU user sees the shipped results at once.

Every problem names the file: a config that does not match, a weights file whose sha256 differs
from the manifest's, a truncated or corrupt file, a malformed manifest, keys or shapes that do not
fit a module. A corrupt *cached* checkpoint is a miss (removed, with a message, and retrained); a
corrupt *shipped* one stays an error.

Several processes may use one checkpoint at once (two notebooks run side by side): writers hold an
exclusive lock on the checkpoint (:mod:`vtonlab.locks`) while they publish the weights and then the
manifest, each through a temporary file of their own renamed into place; readers hold the shared
lock while they read both, so no reader ever sees the weights of one save with the manifest of
another. ``load_or_train`` holds the exclusive lock while it trains, so a second process asking for
the same checkpoint waits (saying for whom) and then loads the first one's result.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vtonlab import paths
from vtonlab import train as _train
from vtonlab.locks import file_lock
from vtonlab.profiles import Profile, get_profile
from vtonlab.train import History, module_state

FORMAT = "vtonlab-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def config_dict(config, lists: Sequence[str] = ("image_size", "betas")) -> dict:
    """A frozen config dataclass as JSON-ready values: ``dataclasses.asdict`` with the tuple fields named in ``lists``
    as lists (what a checkpoint records as its config)."""
    import dataclasses

    d = dataclasses.asdict(config)
    for key in lists:
        d[key] = list(getattr(config, key))
    return d


def normalise_config(config: Mapping[str, Any]) -> dict:
    """The JSON form of a config (tuples become lists, keys sorted), used for comparisons."""
    try:
        return json.loads(json.dumps(config, sort_keys=True))
    except TypeError as err:
        raise TypeError(f"checkpoint config must be JSON-serialisable: {err}") from err


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(normalise_config(config), sort_keys=True).encode()).hexdigest()[:12]


def config_diff(stored: Mapping[str, Any], requested: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two configs (``key: checkpoint X, requested Y``)."""
    out = []
    for key in sorted(set(stored) | set(requested)):
        a, b = stored.get(key, "<missing>"), requested.get(key, "<missing>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_diff(a, b, prefix=f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint {a!r}, requested {b!r}")
    return out


def _versions() -> dict[str, str]:
    from vtonlab.env import package_versions

    return package_versions(("torch", "vtonlab", "diffusers", "transformers"))


def _default_command() -> str:
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0.endswith(os.path.join("vtonlab", "__main__.py")):
        return " ".join(["python -m vtonlab"] + sys.argv[1:])
    if "ipykernel" in argv0 or "ipykernel_launcher" in " ".join(sys.argv):
        return "a notebook cell (load_or_train)"
    return " ".join([os.path.basename(argv0)] + sys.argv[1:])


def _json_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of checkpoint ``path``: ``.<stem>.lock`` beside it, or under ``<cache>/locks/``
    for the shipped folder (which stays free of anything but the checkpoints themselves)."""
    path = Path(path).with_suffix(".safetensors")
    folder = path.parent.resolve() if path.parent.exists() else path.parent.absolute()
    shipped = paths.shipped_checkpoints_dir()
    if folder == (shipped.resolve() if shipped.exists() else shipped.absolute()):
        return paths.cache_dir() / "locks" / f"shipped-{path.stem}.lock"
    return path.parent / f".{path.stem}.lock"


@contextlib.contextmanager
def checkpoint_lock(path: str | os.PathLike, *, shared: bool = False, waiting: str | None = None):
    """Hold the lock of checkpoint ``path`` (exclusive for writers, ``shared`` for readers).

    A reader of a folder where no lock file can be created (read-only) reads without one: nothing
    can be written there either.
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(lock_path(path), shared=shared,
                                          waiting=waiting or f"writing checkpoint {Path(path).name}"))
        except OSError as err:
            if not shared or err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
        yield


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path, token: str) -> Path:
    """A temporary name beside ``path`` owned by one save (``.<name>.tmp-<pid>-<random>``)."""
    return path.with_name(f".{path.name}.tmp-{token}")


@dataclass
class Checkpoint:
    """A loaded checkpoint: weights, manifest and where they came from."""

    name: str
    path: Path  # the .safetensors file
    manifest: dict
    tensors: dict[str, torch.Tensor]
    trained: bool = False  # True when train_fn ran in this call
    source: str = "file"  # "shipped", "cache", "trained" or "file"

    @property
    def config(self) -> dict:
        return self.manifest.get("config", {})

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    @property
    def step(self) -> int | None:
        return self.manifest.get("step")

    @property
    def history(self) -> History | None:
        h = self.manifest.get("history")
        return History.from_dict(h) if h else None

    def state_dict(self, prefix: str | None = None) -> dict[str, torch.Tensor]:
        """All tensors, or those under ``prefix.`` with the prefix removed."""
        if prefix is None:
            return dict(self.tensors)
        p = prefix + "."
        sub = {k[len(p):]: v for k, v in self.tensors.items() if k.startswith(p)}
        if not sub:
            prefixes = sorted({k.split(".", 1)[0] for k in self.tensors})
            raise CheckpointError(f"{self.path}: no weights under prefix {prefix!r}; it holds: {', '.join(prefixes)}")
        return sub

    def load_into(self, module: nn.Module, prefix: str | None = None, strict: bool = True) -> nn.Module:
        """Copy the weights into ``module``; missing/unexpected keys or shape mismatches name the file."""
        sd = self.state_dict(prefix)
        own = module.state_dict()
        bad_shapes = [f"{k}: checkpoint {tuple(v.shape)}, module {tuple(own[k].shape)}"
                      for k, v in sd.items() if k in own and own[k].shape != v.shape]
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        if bad_shapes or (strict and (missing or unexpected)):
            parts = []
            if bad_shapes:
                parts.append("shape mismatch: " + "; ".join(bad_shapes[:5]))
            if strict and missing:
                parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
            if strict and unexpected:
                parts.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
            raise CheckpointError(f"{self.path} does not fit {type(module).__name__}"
                                  f"{' under prefix ' + repr(prefix) if prefix else ''}: " + "; ".join(parts)
                                  + ". Was it saved from another config?")
        module.load_state_dict(sd, strict=strict)
        return module

    def summary(self) -> str:
        m = self.manifest
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.metrics.items())
        head = f"checkpoint {self.name} ({self.source}): {paths.shown(self.path)}"
        made = f"  profile {m.get('profile')}, step {m.get('step')}, created {m.get('created_at')} by `{m.get('command')}`"
        return "\n".join([head, made] + ([f"  metrics: {metrics}"] if metrics else []))


def save_checkpoint(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor] | Mapping[str, nn.Module], *,
                    name: str, config: Mapping[str, Any], profile: str | None = None,
                    metrics: Mapping[str, Any] | None = None, history: History | None = None,
                    step: int | None = None, command: str | None = None, overwrite: bool = True) -> Path:
    """Write ``path`` (``.safetensors``) and its manifest (``.json``); returns the weights path.

    ``tensors`` may be a flat state dict or ``{"name": nn.Module}`` (flattened to ``name.param``).
    Both files are written under temporary names of this call and renamed into place, weights first,
    while the checkpoint's exclusive lock is held (see the module docstring): each rename is atomic and
    readers (who take the shared lock) never see a mismatched pair, but a crash between the two renames
    leaves a pair that fails its sha256 check (a cache entry is then retrained, a shipped one is an error).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    if tensors and all(isinstance(v, nn.Module) for v in tensors.values()):
        flat = module_state(tensors)  # type: ignore[arg-type]
    else:
        flat = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # type: ignore[union-attr]
    if not flat:
        raise ValueError(f"nothing to save in {path}: no tensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _staging(path, overwrite, "pass overwrite=True (or --overwrite) to replace it") as (tmp, tmp_json):
        _save_files(flat, path, tmp, tmp_json, name=name, config=config, profile=profile, metrics=metrics,
                    history=history, step=step, command=command)
    return path


@contextlib.contextmanager
def _staging(path: Path, overwrite: bool, refusal: str):
    """Hold ``path``'s exclusive lock, refuse an existing pair unless ``overwrite``, and yield this call's
    temporary names ``(weights, manifest)`` beside it; whatever is left of them is removed on the way out."""
    with checkpoint_lock(path):
        if not overwrite and (path.exists() or _json_path(path).exists()):
            raise FileExistsError(f"{path} already exists; {refusal}")
        token = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp, tmp_json = _temporary(path, token), _temporary(_json_path(path), token)
        try:
            yield tmp, tmp_json
        finally:
            for leftover in (tmp, tmp_json):
                leftover.unlink(missing_ok=True)


def _publish(tmp: Path, tmp_json: Path, path: Path) -> None:
    """Rename a staged pair into place, weights first (the caller holds the exclusive lock)."""
    tmp.replace(path)
    tmp_json.replace(_json_path(path))


def _save_files(flat: dict[str, torch.Tensor], path: Path, tmp: Path, tmp_json: Path, *, name: str,
                config: Mapping[str, Any], profile: str | None, metrics: Mapping[str, Any] | None,
                history: History | None, step: int | None, command: str | None) -> None:
    save_file(flat, str(tmp), metadata={"format": FORMAT, "name": name})
    _fsync(tmp)
    digest = sha256_file(tmp)
    manifest = {
        "format": FORMAT,
        "name": name,
        "profile": profile,
        "config": normalise_config(config),
        "step": step if step is not None else (history.steps[-1] if history and history.steps else None),
        "metrics": normalise_config(dict(metrics or {})),
        "sha256": digest,
        "size_bytes": tmp.stat().st_size,
        "n_tensors": len(flat),
        "n_parameters": int(sum(v.numel() for v in flat.values())),
        "command": command or _default_command(),
        "created_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": _versions(),
        "history": history.to_dict(max_points=1000) if history else None,
    }
    tmp_json.write_text(json.dumps(manifest, indent=1))
    _fsync(tmp_json)
    _publish(tmp, tmp_json, path)


def _check_history(history: Any, mpath: Path) -> None:
    expected = "expected null or {'steps': [int, ...], 'losses': {name: [number or null, ...]}, 'seconds': number}"
    if history is None:
        return
    problem = None
    if not isinstance(history, dict):
        problem = f"it is a {type(history).__name__}"
    else:
        steps, losses = history.get("steps", []), history.get("losses", {})
        if not isinstance(steps, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in steps):
            problem = "'steps' is not a list of integers"
        elif not isinstance(losses, dict):
            problem = f"'losses' is a {type(losses).__name__}"
        elif not isinstance(history.get("seconds", 0.0), (int, float)) or isinstance(history.get("seconds"), bool):
            problem = "'seconds' is not a number"
        else:
            for key, values in losses.items():
                if not isinstance(values, list) or not all(
                        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
                    problem = f"losses[{key!r}] is not a list of numbers"
                    break
                if len(values) > len(steps):
                    problem = f"losses[{key!r}] has {len(values)} values for {len(steps)} steps"
                    break
    if problem:
        raise CheckpointError(f"checkpoint manifest {mpath} has a malformed 'history' ({problem}); {expected}")


def _check_manifest(manifest: dict, mpath: Path) -> None:
    """Types of the manifest fields that are used, each error naming the file and the field."""
    if not isinstance(manifest.get("config"), dict):
        got = "missing" if "config" not in manifest else f"a {type(manifest['config']).__name__}"
        raise CheckpointError(f"checkpoint manifest {mpath}: 'config' must be a JSON object (the training config); "
                              f"it is {got}")
    if not isinstance(manifest.get("metrics", {}), dict):
        raise CheckpointError(f"checkpoint manifest {mpath}: 'metrics' must be a JSON object of numbers, "
                              f"it is a {type(manifest['metrics']).__name__}")
    step = manifest.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        raise CheckpointError(f"checkpoint manifest {mpath}: 'step' must be an integer or null, got {step!r}")
    _check_history(manifest.get("history"), mpath)


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a checkpoint (``.json`` beside the ``.safetensors``), with its fields checked."""
    path = Path(path)
    mpath = _json_path(path) if path.suffix == ".safetensors" else path
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint manifest {mpath} is missing (expected beside {path.with_suffix('.safetensors')})")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint manifest {mpath} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{mpath} is not a vtonlab checkpoint manifest (expected format {FORMAT!r})")
    _check_manifest(manifest, mpath)
    return manifest


def load_checkpoint(path: str | os.PathLike, expected_config: Mapping[str, Any] | None = None, *,
                    name: str | None = None, source: str = "file") -> Checkpoint:
    """Load and verify a checkpoint: manifest present, sha256 and size match, config matches.

    Raises :class:`CheckpointError` naming the file and the mismatch. Reads under the checkpoint's
    shared lock, so the manifest and the weights always come from the same save.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    with checkpoint_lock(path, shared=True):
        return _load_checkpoint(path, expected_config, name=name, source=source)


def _load_checkpoint(path: Path, expected_config: Mapping[str, Any] | None, *, name: str | None,
                     source: str) -> Checkpoint:
    manifest = read_manifest(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint weights {path} are missing (its manifest {_json_path(path)} exists)")
    if expected_config is not None:
        diff = config_diff(manifest.get("config", {}), normalise_config(expected_config))
        if diff:
            raise CheckpointError(f"{path} was trained with a different config: " + "; ".join(diff))
    size = path.stat().st_size
    if size != manifest.get("size_bytes"):
        raise CheckpointError(f"{path} is {size} bytes but its manifest says {manifest.get('size_bytes')}: "
                              "the file is truncated or was replaced")
    digest = sha256_file(path)
    if digest != manifest.get("sha256"):
        raise CheckpointError(f"{path} has sha256 {digest[:16]}... but its manifest says "
                              f"{str(manifest.get('sha256'))[:16]}...: the file is corrupt or was replaced")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from err
    return Checkpoint(name=name or manifest.get("name", path.stem), path=path, manifest=manifest,
                      tensors=tensors, source=source)


def shipped_path(name: str, profile: Profile | str) -> Path:
    pname = profile.name if isinstance(profile, Profile) else profile
    return paths.shipped_checkpoints_dir() / f"{name}-{pname}.safetensors"


def cache_path(name: str, config: Mapping[str, Any], profile: Profile | str) -> Path:
    pname = profile.name if isinstance(profile, Profile) else profile
    return paths.cache_dir() / "checkpoints" / f"{name}-{pname}-{config_hash(config)}.safetensors"


def _unpack_train_result(result: Any, name: str) -> tuple[dict[str, torch.Tensor], dict, History | None]:
    if not isinstance(result, tuple) or len(result) not in (2, 3):
        raise TypeError(f"train_fn for {name!r} must return (modules_or_state, metrics) or "
                        f"(modules_or_state, metrics, history); got {type(result).__name__}")
    weights, metrics = result[0], result[1]
    history = result[2] if len(result) == 3 else None
    if isinstance(weights, nn.Module):
        weights = {name: weights}
    if weights and all(isinstance(v, nn.Module) for v in weights.values()):
        weights = module_state(weights)
    return dict(weights), dict(metrics or {}), history


def _manifest_stamp(path: Path) -> tuple | None:
    """What identifies one save of ``path`` (its manifest's sha256 and time), or None when absent."""
    try:
        m = json.loads(_json_path(path).read_text())
        return (m.get("sha256"), m.get("created_at")) if isinstance(m, dict) else ("?",)
    except (OSError, ValueError):
        return None


def _from_cache(target: Path, full: dict, name: str, prof: Profile, say, *, exclusive: bool) -> Checkpoint | None:
    """The cached checkpoint ``target`` if it exists, matches and is sound; else None.

    Holding the exclusive lock, a corrupt entry (unreadable manifest, weights that do not match it)
    is removed with a message, so that the caller retrains it.
    """
    if not _json_path(target).exists() and not target.exists():
        return None
    try:
        with checkpoint_lock(target, shared=True):
            manifest = read_manifest(target)
            diff = config_diff(manifest["config"], full)
            if diff:
                say(f"cache checkpoint {paths.shown(target)} has a different config ({'; '.join(diff[:4])}); not using it")
                return None
            ckpt = _load_checkpoint(target, full, name=name, source="cache")
    except CheckpointError as err:
        if not exclusive or _distributed():
            return None  # the caller takes the exclusive lock and looks again (ranks of one launch train together)
        say(f"cache checkpoint {paths.shown(target)} is unusable ({err}); removing it and training again")
        for path in (target, _json_path(target)):
            path.unlink(missing_ok=True)
        return None
    say(f"loaded cache checkpoint {target.name} (profile {prof.name}, step {ckpt.step})")
    return ckpt


def _distributed() -> bool:
    """Whether this process is one of several launched together (``accelerate launch``, torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def load_or_train(name: str, config: Mapping[str, Any], train_fn: Callable[[], Any], *,
                  profile: Profile | str | None = None, force_train: bool = False, cache: bool = True,
                  command: str | None = None, verbose: bool = True) -> Checkpoint:
    """Load a shipped or cached checkpoint whose config matches ``config``, else train and cache.

    ``train_fn()`` returns ``(modules_or_state_dict, metrics)`` or ``(..., metrics, history)``.
    The profile's name is added to the config (``config["profile"]``), so checkpoints of one profile
    are never used for another.

    A shipped checkpoint that matches but is corrupt raises :class:`CheckpointError`; a corrupt
    cached one is removed and retrained. While one process trains a checkpoint, another asking for
    it waits and then loads it (with ``force_train``: loads it if it was written while waiting).
    Inside :func:`vtonlab.train.resumable`, the training checkpoints periodically and resumes.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    full = normalise_config({**config, "profile": prof.name})
    say = print if verbose else (lambda *a, **k: None)
    shipped = shipped_path(name, prof)
    if not force_train and (_json_path(shipped).exists() or shipped.exists()):
        manifest = read_manifest(shipped)
        diff = config_diff(manifest["config"], full)
        if diff:
            say(f"shipped checkpoint {paths.shown(shipped)} has a different config ({'; '.join(diff[:4])}); not using it")
        else:
            ckpt = load_checkpoint(shipped, full, name=name, source="shipped")
            say(f"loaded shipped checkpoint {shipped.name} (profile {prof.name}, step {ckpt.step})")
            return ckpt
    target = cache_path(name, full, prof)
    if not cache:
        say(f"training {name!r} for profile {prof.name} (no matching checkpoint)")
        weights, metrics, history = _unpack_train_result(train_fn(), name)
        manifest = {"format": FORMAT, "name": name, "profile": prof.name, "config": full,
                    "metrics": normalise_config(metrics), "history": history.to_dict() if history else None,
                    "step": history.steps[-1] if history and history.steps else None}
        return Checkpoint(name=name, path=target, manifest=manifest, tensors=weights, trained=True, source="trained")
    if not force_train and (ckpt := _from_cache(target, full, name, prof, say, exclusive=False)) is not None:
        return ckpt
    before = _manifest_stamp(target)
    # Several processes of one launch train together: none of them may wait for another.
    lock = contextlib.nullcontext() if _distributed() else checkpoint_lock(
        target, waiting=f"training {name} for profile {prof.name}")
    with lock:
        if not force_train or _manifest_stamp(target) != before:  # written by another process while we waited
            ckpt = _from_cache(target, full, name, prof, say, exclusive=True)
            if ckpt is not None:
                return ckpt
        say(f"training {name!r} for profile {prof.name} (no matching checkpoint)")
        with _train.training_run(target.stem, label=name):
            weights, metrics, history = _unpack_train_result(train_fn(), name)
            save_checkpoint(target, weights, name=name, config=full, profile=prof.name, metrics=metrics,
                            history=history, command=command)
        say(f"cached checkpoint {paths.shown(target)}")
        ckpt = load_checkpoint(target, full, name=name, source="trained")
    ckpt.trained = True
    return ckpt


def ship(ckpt: Checkpoint, *, overwrite: bool = False) -> Path:
    """Copy a checkpoint into ``data/checkpoints/<name>-<profile>.*`` (refuses to overwrite unless asked)."""
    target = shipped_path(ckpt.name, ckpt.manifest.get("profile") or "unknown")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _staging(target, overwrite, "pass --overwrite to replace the shipped checkpoint") as (tmp, tmp_json):
        with checkpoint_lock(ckpt.path, shared=True):
            shutil.copyfile(ckpt.path, tmp)
            shutil.copyfile(_json_path(ckpt.path), tmp_json)
        manifest = read_manifest(tmp_json)
        if sha256_file(tmp) != manifest.get("sha256"):
            raise CheckpointError(f"{ckpt.path} changed while it was copied to {target}; nothing was shipped")
        _publish(tmp, tmp_json, target)
        load_checkpoint(target)  # verify the copy
    return target
