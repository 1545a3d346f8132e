"""Figures for MG-VTON's refinement render, the full pipeline and its ablations (notebook 08).

Render functions (each returns a matplotlib Figure and is unit-tested):

- :func:`render_composition`: ``C_w``, the coarse image, the composition mask ``M`` and ``M C_w + (1 - M) I_c``.
- :func:`render_pipeline`: every intermediate of the pipeline for a few test pairs (source, target pose, parsing,
  warped garment, coarse, mask, result, ground truth).
- :func:`render_rows`: one test pair through every ablation row, next to the ground truth.
- :func:`plot_ablation`: one metric of every row in both settings, mean and seed range.
- :func:`render_tryon_browser`: the widget's picture: a person, a garment and a target pose from the pose library.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vtonlab.viz import finish_figure, to_numpy_image
from vtonlab.viz.data import parse_rgb

__all__ = ["pose_skeleton_image", "render_composition", "render_pipeline", "render_rows", "plot_ablation",
           "render_tryon_browser"]

def _check_batch(name: str, x, channels: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        c = channels if channels is not None else "C"
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a batch (B, {c}, H, W), got {shape}")
    return x


def pose_skeleton_image(keypoints: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A COCO-18 pose ``(18, 3)`` (x, y in pixels, confidence) as OpenPose draws it
    (:func:`vtonlab.data.representation.skeleton_image`), on white: float (H, W, 3) in [0, 1]."""
    from vtonlab.data.representation import skeleton_image

    if not isinstance(keypoints, torch.Tensor) or tuple(keypoints.shape) != (18, 3):
        shape = tuple(keypoints.shape) if isinstance(keypoints, torch.Tensor) else type(keypoints).__name__
        raise ValueError(f"keypoints: expected (18, 3) COCO-18 x, y, confidence, got {shape}")
    white = np.full((*size, 3), 255, np.uint8)
    return skeleton_image(keypoints, size, background=white).astype(np.float32) / 255.0


def _show(ax, img: np.ndarray, title: str, cmap=None) -> None:
    """``img``: float (H, W) in [0, 1] (shown with ``cmap``), float (H, W, 3) in [0, 1] or uint8 (H, W, 3)."""
    if img.ndim == 2:
        ax.imshow(img, cmap=cmap or "gray", vmin=0, vmax=1)
    else:
        ax.imshow(img)
    ax.set_title(title, fontsize=8)


def render_composition(warped_cloth: torch.Tensor, coarse: torch.Tensor, mask: torch.Tensor, tryon: torch.Tensor,
                       indices: Sequence[int] = (0,), target: torch.Tensor | None = None, title: str | None = None):
    """Rows of ``C_w``, ``I_c``, ``M`` and ``M C_w + (1 - M) I_c`` (images in [-1, 1], ``M`` in [0, 1])."""
    import matplotlib.pyplot as plt

    for name, x, c in (("warped_cloth", warped_cloth, 3), ("coarse", coarse, 3), ("mask", mask, 1), ("tryon", tryon, 3)):
        _check_batch(name, x, c)
    idx = list(indices)
    cols = 4 + (target is not None)
    fig, axes = plt.subplots(len(idx), cols, figsize=(1.7 * cols, 2.3 * len(idx)), squeeze=False)
    for r, i in enumerate(idx):
        _show(axes[r, 0], to_numpy_image(warped_cloth[i]), "warped garment $C_w$")
        _show(axes[r, 1], to_numpy_image(coarse[i]), "coarse $I_c$")
        m = mask[i, 0].float()
        _show(axes[r, 2], m.cpu().numpy(), f"mask $M$ (mean {m.mean().item():.2f})", cmap="viridis")
        _show(axes[r, 3], to_numpy_image(tryon[i]), "$M C_w + (1-M) I_c$")
        if target is not None:
            _show(axes[r, 4], to_numpy_image(target[i]), "target")
    return finish_figure(fig, axes, title)


_PIPELINE_COLUMNS = ("source", "target pose", "parsing", "warped garment", "coarse", "mask M", "result", "ground truth")


def render_pipeline(outputs: Mapping[str, torch.Tensor], data: Mapping, indices: Sequence[int] = (0, 1),
                    title: str | None = None):
    """Every intermediate of the pipeline for test pairs ``indices``: ``outputs`` from
    :func:`vtonlab.mgvton.ablation.run_pipeline`, ``data`` the :func:`~vtonlab.mgvton.ablation.test_set`."""
    import matplotlib.pyplot as plt

    for key in ("parsing", "warped_cloth", "coarse", "composition_mask", "tryon"):
        if key not in outputs:
            raise KeyError(f"outputs: missing {key!r}; expected the pipeline's outputs (run_pipeline)")
    idx = list(indices)
    size = tuple(outputs["tryon"].shape[-2:])
    fig, axes = plt.subplots(len(idx), len(_PIPELINE_COLUMNS), figsize=(1.45 * len(_PIPELINE_COLUMNS), 2.1 * len(idx)),
                             squeeze=False)
    for r, i in enumerate(idx):
        panels = (to_numpy_image(data["source_image"][i]), pose_skeleton_image(data["target_pose_keypoints"][i], size),
                  parse_rgb(outputs["parsing"][i]), to_numpy_image(outputs["warped_cloth"][i]),
                  to_numpy_image(outputs["coarse"][i]), outputs["composition_mask"][i, 0].float().cpu().numpy(),
                  to_numpy_image(outputs["tryon"][i]), to_numpy_image(data["gt_image"][i]))
        for c, (name, img) in enumerate(zip(_PIPELINE_COLUMNS, panels)):
            _show(axes[r, c], img, name if r == 0 else "", cmap="viridis" if name == "mask M" else None)
    return finish_figure(fig, axes, title)


def render_rows(row_outputs: Mapping[str, torch.Tensor], ground_truth: torch.Tensor, index: int = 0,
                title: str | None = None, scores: Mapping[str, float] | None = None):
    """One test pair through every ablation row: ``row_outputs`` ``{row: tryon (B, 3, H, W)}``, then the ground truth;
    ``scores`` (optional) ``{row: value}`` printed under each picture."""
    import matplotlib.pyplot as plt

    if not row_outputs:
        raise ValueError("row_outputs: expected at least one row")
    names = list(row_outputs)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(1.7 * (len(names) + 1), 2.6), squeeze=False)
    for c, name in enumerate(names):
        x = _check_batch(f"row_outputs[{name!r}]", row_outputs[name], 3)
        label = name if scores is None or name not in scores else f"{name}\n{scores[name]:.4f}"
        _show(axes[0, c], to_numpy_image(x[index]), label)
    _show(axes[0, -1], to_numpy_image(_check_batch("ground_truth", ground_truth, 3)[index]), "ground truth")
    return finish_figure(fig, axes, title)


def plot_ablation(result, metric: str = "lpips_garment", title: str | None = None):
    """Bars of one metric for every row (mean over training seeds) in each setting, with the seed range as error bars
    and each seed's value as a dot; ``result`` an :class:`vtonlab.mgvton.ablation.AblationResult`."""
    import matplotlib.pyplot as plt

    from vtonlab.mgvton.ablation import HIGHER_IS_BETTER

    if metric not in HIGHER_IS_BETTER:
        raise KeyError(f"metric: expected one of {list(HIGHER_IS_BETTER)}, got {metric!r}")
    rows, settings = list(result.rows), list(result.settings)
    fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 2, 3.2))
    width = 0.8 / len(settings)
    for k, setting in enumerate(settings):
        xs = np.arange(len(rows)) + (k - (len(settings) - 1) / 2) * width
        means = [result.mean(setting, r, metric) for r in rows]
        lo = [m - min(result.values(setting, r, metric), default=m) for m, r in zip(means, rows)]
        hi = [max(result.values(setting, r, metric), default=m) - m for m, r in zip(means, rows)]
        ax.bar(xs, means, width, label=setting, alpha=0.75)
        ax.errorbar(xs, means, yerr=[lo, hi], fmt="none", ecolor="k", capsize=3, lw=1)
        for x, r in zip(xs, rows):
            vals = result.values(setting, r, metric)
            ax.plot([x] * len(vals), vals, "k.", ms=3)
    ax.set_xticks(np.arange(len(rows)))
    ax.set_xticklabels(rows, rotation=20, ha="right", fontsize=8)
    better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
    ax.set_ylabel(f"{metric} ({better} is better)")
    ax.legend(fontsize=8)
    ax.set_title(title or f"{metric}: mean over training seeds, bars = seed range", fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def render_tryon_browser(person: Mapping[str, torch.Tensor], cloth: torch.Tensor, target_keypoints: torch.Tensor,
                         outputs: Mapping[str, torch.Tensor], title: str | None = None):
    """The widget's picture for one try-on: the person, the garment, the target pose, then the pipeline's parsing,
    warped garment, coarse image, mask ``M`` and result (``outputs`` of a batch of one)."""
    import matplotlib.pyplot as plt

    size = tuple(cloth.shape[-2:])
    panels = (("person (pose A)", to_numpy_image(person["image"]), None),
              ("garment", to_numpy_image(cloth), None),
              ("target pose B", pose_skeleton_image(target_keypoints, size), None),
              ("parsing", parse_rgb(outputs["parsing"][0]), None),
              ("warped garment", to_numpy_image(outputs["warped_cloth"][0]), None),
              ("coarse", to_numpy_image(outputs["coarse"][0]), None),
              ("mask M", outputs["composition_mask"][0, 0].float().cpu().numpy(), "viridis"),
              ("result", to_numpy_image(outputs["tryon"][0]), None))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.45 * len(panels), 2.4), squeeze=False)
    for ax, (name, img, cmap) in zip(axes[0], panels):
        _show(ax, img, name, cmap)
    return finish_figure(fig, axes, title)
