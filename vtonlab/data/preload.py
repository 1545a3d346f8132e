"""Datasets held in memory: decode the image files once, then index stacked tensors.

Reading SynthVTON (or a real dataset) from JPEG/PNG on every step costs more than a small model's
training step on a CPU; models that train for many epochs on a few hundred samples use
:func:`preload` once and then sample batches from memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["PRELOAD_KEYS", "Preloaded", "preload"]

PRELOAD_KEYS = ("image", "cloth", "cloth_mask", "worn_mask", "body_shape", "head", "pose_map", "gt_flow",
                "gt_flow_mask", "agnostic")
"""The sample-dict keys kept by default (what the geometric matching models and warp metrics use)."""


class Preloaded(torch.utils.data.Dataset):
    """A dataset held in memory as stacked tensors: ``dataset[i]`` is a sample dict, ``batch(a, b)`` a batch."""

    def __init__(self, tensors: dict[str, Tensor], names: list[str]) -> None:
        lengths = {k: len(v) for k, v in tensors.items()}
        if len(set(lengths.values()) | {len(names)}) != 1:
            raise ValueError(f"Preloaded: every tensor needs one row per name ({len(names)} names), got {lengths}")
        self.tensors = tensors
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}

    def batch(self, start: int, stop: int) -> dict[str, Tensor]:
        """Samples ``start`` to ``stop - 1`` as one batch dict (tensors ``(B, ...)``)."""
        return {k: v[start:stop] for k, v in self.tensors.items()}


def preload(dataset, keys: Sequence[str] = PRELOAD_KEYS, limit: int | None = None) -> Preloaded:
    """Read ``dataset`` (sample dicts) once into memory, keeping ``keys`` (those present); ``limit``: the first N."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("preload: the dataset is empty")
    if isinstance(dataset, Preloaded):
        return Preloaded({k: dataset.tensors[k][:n] for k in keys if k in dataset.tensors}, dataset.names[:n])
    first = dataset[0]
    present = [k for k in keys if k in first]
    cols: dict[str, list[Tensor]] = {k: [] for k in present}
    names = []
    for i in range(n):
        s = first if i == 0 else dataset[i]
        for k in present:
            cols[k].append(s[k])
        names.append(str(s.get("im_name", i)))
    return Preloaded({k: torch.stack(v) for k, v in cols.items()}, names)
