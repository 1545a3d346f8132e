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
from the manifest's, a truncated or corrupt file, keys or shapes that do not fit a module.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vtonlab import paths
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
        return (f"checkpoint {self.name} ({self.source}): {self.path}\n  profile {m.get('profile')}, step {m.get('step')}, "
                f"created {m.get('created_at')} by `{m.get('command')}`" + (f"\n  metrics: {metrics}" if metrics else ""))


def save_checkpoint(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor] | Mapping[str, nn.Module], *,
                    name: str, config: Mapping[str, Any], profile: str | None = None,
                    metrics: Mapping[str, Any] | None = None, history: History | None = None,
                    step: int | None = None, command: str | None = None, overwrite: bool = True) -> Path:
    """Write ``path`` (``.safetensors``) and its manifest (``.json``) atomically; returns the weights path.

    ``tensors`` may be a flat state dict or ``{"name": nn.Module}`` (flattened to ``name.param``).
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    if not overwrite and (path.exists() or _json_path(path).exists()):
        raise FileExistsError(f"{path} already exists; pass overwrite=True (or --overwrite) to replace it")
    if tensors and all(isinstance(v, nn.Module) for v in tensors.values()):
        flat = module_state(tensors)  # type: ignore[arg-type]
    else:
        flat = {k: v.detach().cpu().clone().contiguous() for k, v in tensors.items()}  # type: ignore[union-attr]
    if not flat:
        raise ValueError(f"nothing to save in {path}: no tensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(flat, str(tmp), metadata={"format": FORMAT, "name": name})
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
    tmp_json = _json_path(tmp)
    tmp_json.write_text(json.dumps(manifest, indent=1))
    tmp.replace(path)
    tmp_json.replace(_json_path(path))
    return path


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a checkpoint (``.json`` beside the ``.safetensors``)."""
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
    return manifest


def load_checkpoint(path: str | os.PathLike, expected_config: Mapping[str, Any] | None = None, *,
                    name: str | None = None, source: str = "file") -> Checkpoint:
    """Load and verify a checkpoint: manifest present, sha256 and size match, config matches.

    Raises :class:`CheckpointError` naming the file and the mismatch.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
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


def load_or_train(name: str, config: Mapping[str, Any], train_fn: Callable[[], Any], *,
                  profile: Profile | str | None = None, force_train: bool = False, cache: bool = True,
                  command: str | None = None, verbose: bool = True) -> Checkpoint:
    """Load a shipped or cached checkpoint whose config matches ``config``, else train and cache.

    ``train_fn()`` returns ``(modules_or_state_dict, metrics)`` or ``(..., metrics, history)``.
    The profile's name is added to the config (``config["profile"]``), so checkpoints of one profile
    are never used for another.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    full = normalise_config({**config, "profile": prof.name})
    say = print if verbose else (lambda *a, **k: None)
    if not force_train:
        for source, candidate in (("shipped", shipped_path(name, prof)), ("cache", cache_path(name, full, prof))):
            if not _json_path(candidate).exists() and not candidate.exists():
                continue
            manifest = read_manifest(candidate)
            diff = config_diff(manifest.get("config", {}), full)
            if diff:
                say(f"{source} checkpoint {candidate} has a different config ({'; '.join(diff[:4])}); not using it")
                continue
            ckpt = load_checkpoint(candidate, full, name=name, source=source)
            say(f"loaded {source} checkpoint {candidate.name} (profile {prof.name}, step {ckpt.step})")
            return ckpt
    say(f"training {name!r} for profile {prof.name} (no matching checkpoint)")
    weights, metrics, history = _unpack_train_result(train_fn(), name)
    target = cache_path(name, full, prof)
    if cache:
        save_checkpoint(target, weights, name=name, config=full, profile=prof.name, metrics=metrics,
                        history=history, command=command)
        say(f"cached checkpoint {target}")
        ckpt = load_checkpoint(target, full, name=name, source="trained")
        ckpt.trained = True
        return ckpt
    manifest = {"format": FORMAT, "name": name, "profile": prof.name, "config": full,
                "metrics": normalise_config(metrics), "history": history.to_dict() if history else None,
                "step": history.steps[-1] if history and history.steps else None}
    return Checkpoint(name=name, path=target, manifest=manifest, tensors=weights, trained=True, source="trained")


def ship(ckpt: Checkpoint, *, overwrite: bool = False) -> Path:
    """Copy a checkpoint into ``data/checkpoints/<name>-<profile>.*`` (refuses to overwrite unless asked)."""
    target = shipped_path(ckpt.name, ckpt.manifest.get("profile") or "unknown")
    if not overwrite and (target.exists() or _json_path(target).exists()):
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace the shipped checkpoint")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ckpt.path, target)
    shutil.copyfile(_json_path(ckpt.path), _json_path(target))
    load_checkpoint(target)  # verify the copy
    return target
