"""Pictures of latent diffusion try-on (notebooks 12 and 13): forward noising, the 31 input channels of LaDI-VTON's
UNet, the denoising trajectory, guidance grids and the ablation rows.

Images are ``(3, H, W)`` tensors in [0, 1] unless a function says otherwise; latents ``(4, h, w)`` are shown per
channel on one symmetric colour scale (blue negative, red positive), as notebook 09 shows them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from vtonlab.viz import check_index, finish_figure

__all__ = ["render_noising", "render_input_channels", "render_trajectory", "render_grid", "render_ablation_rows",
           "plot_metric_rows"]


def _image(x, name: str) -> np.ndarray:
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"{name}: expected an image tensor (3, H, W) in [0, 1], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    return x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def render_noising(images: Sequence[torch.Tensor], timesteps: Sequence[int], alphas_cumprod: torch.Tensor,
                   title: str | None = None):
    """Decoded noisy latents ``z_t`` at ``timesteps`` (one image each) above the schedule's ``abar_t`` and the
    signal-to-noise ratio ``abar_t / (1 - abar_t)`` (log scale) with the shown timesteps marked."""
    if len(images) != len(timesteps) or not images:
        raise ValueError(f"images and timesteps: expected the same positive length, got {len(images)} and {len(timesteps)}")
    abar = torch.as_tensor(alphas_cumprod).double()
    n = len(images)
    fig = plt.figure(figsize=(1.7 * n, 5.0))
    grid = fig.add_gridspec(2, n, height_ratios=[1.3, 1.0])
    for i, (img, t) in enumerate(zip(images, timesteps)):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(_image(img, f"images[{i}]"))
        ax.set_title(f"t = {t}\n√ᾱ = {abar[t].sqrt():.2f}", fontsize=8)
        _off(ax)
    ax = fig.add_subplot(grid[1, :])
    steps = np.arange(len(abar))
    ax.plot(steps, abar.numpy(), label="ᾱ_t (signal variance)")
    ax2 = ax.twinx()
    ax2.semilogy(steps, (abar / (1 - abar)).numpy(), color="tab:orange", label="SNR = ᾱ_t / (1 - ᾱ_t)")
    for t in timesteps:
        ax.axvline(t, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("timestep t")
    ax.set_ylabel("ᾱ_t")
    ax2.set_ylabel("SNR (log)")
    lines = ax.get_lines()[:1] + ax2.get_lines()[:1]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="center right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def render_input_channels(x: torch.Tensor, layout: Sequence[tuple[str, int]], title: str | None = None):
    """One sample's UNet input ``(C, h, w)`` as pictures, grouped by ``layout`` (``((name, channels), ...)``, e.g.
    :data:`vtonlab.ladi.unet.INPUT_LAYOUT`): each channel of the 4-channel latents and the mask on its own axes,
    the 18 pose maps as one max-projection plus their count. Latent groups share one symmetric colour scale."""
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        raise ValueError(f"x: expected one sample's UNet input (C, h, w), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    total = sum(c for _, c in layout)
    if x.shape[0] != total:
        raise ValueError(f"x has {x.shape[0]} channels but layout {[n for n, _ in layout]} adds up to {total}")
    panels: list[tuple[str, np.ndarray, str]] = []
    start = 0
    for name, c in layout:
        part = x[start:start + c].detach().float().cpu()
        start += c
        if c == 18:
            panels.append((f"{name}\n(max of {c} maps)", part.max(0).values.numpy(), "pose"))
        elif c == 1:
            panels.append((name, part[0].numpy(), "mask"))
        else:
            for k in range(c):
                panels.append((f"{name}[{k}]", part[k].numpy(), "latent"))
    lim = max([float(np.abs(p).max()) for _, p, kind in panels if kind == "latent"] + [1e-6])
    ncols = min(9, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.45 * ncols, 1.9 * nrows), squeeze=False)
    for ax, (label, arr, kind) in zip(axes.flat, panels):
        if kind == "latent":
            ax.imshow(arr, cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            ax.imshow(arr, cmap="gray", vmin=0, vmax=max(1.0, float(arr.max())))
        ax.set_title(label, fontsize=7)
    for ax in axes.flat:
        _off(ax)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return finish_figure(fig, axes, title)


def render_trajectory(states: torch.Tensor, predictions: torch.Tensor, timesteps: Sequence[int], step: int,
                      result: torch.Tensor | None = None, title: str | None = None):
    """One step of a denoising trajectory: the decoded current sample ``x_t`` and the decoded clean-image prediction
    ``x̂_0`` at ``step`` (``states``, ``predictions``: ``(S, 3, H, W)`` in [0, 1], one per step), and the final result
    when given; below, the mean absolute change of the prediction from step to step."""
    if states.shape != predictions.shape or states.ndim != 4:
        raise ValueError(f"states and predictions: expected two (S, 3, H, W) stacks of the same shape, got "
                         f"{tuple(states.shape)} and {tuple(predictions.shape)}")
    s = check_index(step, len(states))
    n = 3 if result is not None else 2
    fig = plt.figure(figsize=(2.3 * n + 3.2, 3.3))
    grid = fig.add_gridspec(1, n + 1, width_ratios=[1] * n + [1.6])
    shown = [(f"x_t, step {s + 1}/{len(states)} (t = {int(timesteps[s])})", states[s]),
             ("prediction x̂_0 at this step", predictions[s])]
    if result is not None:
        shown.append(("result (final decode)", result))
    for i, (label, img) in enumerate(shown):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(_image(img, label))
        ax.set_title(label, fontsize=8)
        _off(ax)
    ax = fig.add_subplot(grid[0, n])
    change = (predictions[1:] - predictions[:-1]).abs().flatten(1).mean(1).cpu().numpy()
    ax.plot(np.arange(2, len(states) + 1), change, marker=".")
    ax.axvline(s + 1, color="grey", ls=":")
    ax.set_xlabel("step")
    ax.set_ylabel("mean |Δ x̂_0|")
    ax.set_title("how much the prediction still changes", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)
    return fig


def render_grid(images: Mapping[str, Sequence[torch.Tensor]], column_titles: Sequence[str], title: str | None = None):
    """A grid of images: one row per key of ``images`` (its label on the left), one column per ``column_titles``."""
    if not images:
        raise ValueError("images: expected at least one row")
    ncols = len(column_titles)
    for label, row in images.items():
        if len(row) != ncols:
            raise ValueError(f"row {label!r}: expected {ncols} images (one per column title), got {len(row)}")
    fig, axes = plt.subplots(len(images), ncols, figsize=(1.55 * ncols + 0.8, 2.0 * len(images)), squeeze=False)
    for r, (label, row) in enumerate(images.items()):
        for c, img in enumerate(row):
            ax = axes[r, c]
            ax.imshow(_image(img, f"{label}[{c}]"))
            _off(ax)
            if r == 0:
                ax.set_title(textwrap.fill(str(column_titles[c]), 18), fontsize=8)  # long row names on several lines
        axes[r, 0].set_ylabel(label, fontsize=8)
    return finish_figure(fig, axes, title)


def render_ablation_rows(outputs: Mapping[str, torch.Tensor], data: Mapping, indices: Sequence[int],
                         title: str | None = None):
    """Columns: person (masked region outlined by its grey fill), in-shop garment, warped garment, every row's result,
    the ground truth; one line per index of ``indices``. ``outputs``: ``{row: (N, 3, H, W) in [0, 1]}``; ``data``: a
    :func:`vtonlab.ladi.ablation.test_set` with ``warped_cloth``."""
    unit = lambda x: ((x.float() + 1) / 2).clamp(0, 1)  # noqa: E731
    cols = ["masked person", "garment", "warped garment", *outputs, "ground truth"]
    rows = {}
    n = len(data["names"])
    for i in indices:
        i = check_index(i, n)
        m = (data["inpaint_mask"][i] >= 0.5).float()
        masked = unit(data["image"][i]) * (1 - m) + 0.5 * m
        rows[f"person {i}"] = [masked, unit(data["cloth"][i]), unit(data["warped_cloth"][i]),
                               *[o[i] for o in outputs.values()], unit(data["gt_image"][i])]
    return render_grid(rows, cols, title)


def plot_metric_rows(result, metric: str, settings: Sequence[str] | None = None, title: str | None = None):
    """One horizontal bar per ablation row: the mean of ``metric`` with an error bar of the row's spread
    (:meth:`vtonlab.ladi.ablation.LadiAblationResult.spread`), one panel per setting; the full model's value is a
    dashed line."""
    settings = tuple(result.settings if settings is None else settings)
    if metric not in result.metrics:
        raise KeyError(f"metric: expected one of {list(result.metrics)}, got {metric!r}")
    fig, axes = plt.subplots(1, len(settings), figsize=(4.6 * len(settings) + 1.2, 0.36 * len(result.rows) + 1.2),
                             squeeze=False)
    for k, (ax, setting) in enumerate(zip(axes[0], settings)):
        rows = [r for r in result.rows if result.values(setting, r, metric)]
        means = [result.mean(setting, r, metric) for r in rows]
        spreads = [result.spread(setting, r, metric) for r in rows]
        y = -np.arange(len(rows))  # the first row on top
        colours = ["tab:blue" if r == "full" else "tab:grey" for r in rows]
        ax.barh(y, means, xerr=np.array(spreads) / 2, color=colours, alpha=0.8, capsize=3)
        if "full" in rows:
            ax.axvline(result.mean(setting, "full", metric), color="tab:blue", ls="--", lw=1)
        ax.set_yticks(y, rows if k == 0 else [""] * len(rows), fontsize=8)
        arrow = "higher is better" if result.higher_is_better[metric] else "lower is better"
        ax.set_title(f"{setting}: {metric} ({arrow})", fontsize=9)
        lo = min(m - s / 2 for m, s in zip(means, spreads))
        hi = max(m + s / 2 for m, s in zip(means, spreads))
        pad = 0.1 * (hi - lo) + 1e-9
        ax.set_xlim(lo - pad, hi + pad)
        ax.tick_params(axis="x", labelsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig
