"""Figures for notebook 05 (what each metric sees).

- :func:`degradation_examples`: one test image under every degradation at several strengths.
- :func:`metric_curves`: each metric against degradation strength, one line per degradation.
- :func:`agreement_matrix`: rank correlations between metrics as an annotated heat map.
- :class:`DegradationExplorer`: the render function behind the widget (kind, strength, image):
  the degraded image, its SSIM map against the original, and every metric's value.

All images are (3, H, W) / (N, 3, H, W) tensors in [0, 1] (metric convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vtonlab.viz import to_numpy_image

__all__ = ["KIND_COLOURS", "degradation_examples", "metric_curves", "agreement_matrix", "DegradationExplorer"]

KIND_COLOURS = {"blur": "tab:blue", "colour": "tab:orange", "shift": "tab:green", "texture": "tab:red"}


def degradation_examples(rows: Mapping[str, Sequence[torch.Tensor]], strengths: Sequence[float],
                         scale: float = 1.3):
    """A grid: one row per degradation kind, one column per strength (images (3, H, W) in [0, 1])."""
    import matplotlib.pyplot as plt

    kinds = list(rows)
    if not kinds:
        raise ValueError("rows: at least one degradation kind is needed")
    for k in kinds:
        if len(rows[k]) != len(strengths):
            raise ValueError(f"rows[{k!r}] has {len(rows[k])} images for {len(strengths)} strengths")
    h, w = rows[kinds[0]][0].shape[-2:]
    fig, axes = plt.subplots(len(kinds), len(strengths), squeeze=False,
                             figsize=(scale * len(strengths) * w / h + 0.8, scale * len(kinds) + 0.4))
    for r, k in enumerate(kinds):
        for c, s in enumerate(strengths):
            ax = axes[r, c]
            ax.imshow(to_numpy_image(rows[k][c], (0.0, 1.0)), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"strength {s:g}", fontsize=8)
            if c == 0:
                ax.set_ylabel(k, fontsize=9, color=KIND_COLOURS.get(k, "black"))
    fig.tight_layout()
    return fig


def metric_curves(sweep, metrics: Sequence[str] | None = None, ncols: int = 3, titles: Mapping[str, str] | None = None):
    """Each metric (mean over images, or the set value) against strength; one line per degradation.

    ``sweep`` is a :class:`vtonlab.metrics.study.Sweep`. Titles say which way is better.
    """
    import matplotlib.pyplot as plt

    metrics = list(metrics if metrics is not None else sweep.metrics)
    if not metrics:
        raise ValueError("metrics: nothing to plot")
    ncols = max(1, min(ncols, len(metrics)))
    nrows = (len(metrics) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows), squeeze=False)
    for ax, m in zip(axes.flat, metrics):
        hidden = False
        for kind in sweep.kinds:
            y = np.asarray(sweep.curve(m, kind), dtype=np.float64)
            hidden |= bool(np.isinf(y).any())
            y = np.where(np.isfinite(y), y, np.nan)  # PSNR of untouched images is +inf
            ax.plot(sweep.strengths, y, marker="o", ms=3, color=KIND_COLOURS.get(kind), label=kind)
        arrow = "↑ better" if sweep.better.get(m) == "higher" else "↓ better"
        ax.set_title(f"{(titles or {}).get(m, m)}  ({arrow})", fontsize=9)
        if hidden:
            ax.text(0.02, 0.03, "+∞ values not drawn", transform=ax.transAxes, fontsize=7, color="grey")
        ax.set_xlabel("degradation strength", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def agreement_matrix(matrix: np.ndarray, names: Sequence[str], title: str = "", vmin: float = -1.0):
    """An annotated heat map of a square matrix of rank correlations (rows and columns ``names``)."""
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    n = len(names)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix: expected shape ({n}, {n}) for {n} names, got {matrix.shape}")
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.6 + 0.6 * n))
    im = ax.imshow(matrix, vmin=vmin, vmax=1, cmap="RdBu_r" if vmin < 0 else "viridis")
    ax.set_xticks(range(n), names, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    for i in range(n):
        for j in range(n):
            v = matrix[i, j]
            ax.text(j, i, "–" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


class DegradationExplorer:
    """Render function of the notebook-05 widget: ``interact(explorer.show, kind=..., strength=..., index=...)``.

    Args:
        images, masks, donors: (N, 3, H, W), (N, 1, H, W), (N, 3, H, W) in [0, 1] (see
            :func:`vtonlab.metrics.study.degrade`); ``fill``: what a shifted garment uncovers.
        lpips: an optional :class:`vtonlab.metrics.LPIPSMetric` whose value is shown too.
    """

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, donors: torch.Tensor,
                 fill: torch.Tensor | float = 0.5, lpips=None):
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(f"images: expected (N, 3, H, W) with N >= 1, got {tuple(images.shape)}")
        self.images, self.masks, self.donors, self.fill, self.lpips = images, masks, donors, fill, lpips

    def render(self, kind: str = "blur", strength: float = 0.5, index: int = 0):
        """The figure for one slider setting (out-of-range strength / index are clamped)."""
        import matplotlib.pyplot as plt

        from vtonlab.metrics.similarity import psnr, ssim, ssim_map
        from vtonlab.metrics.study import degrade

        n = len(self.images)
        index = int(min(max(index, 0), n - 1))  # clamp out-of-range slider values
        strength = float(min(max(strength, 0.0), 1.0))
        sl = slice(index, index + 1)
        fill = self.fill[sl] if isinstance(self.fill, torch.Tensor) else self.fill
        x = self.images[sl]
        y = degrade(kind, x, self.masks[sl], strength, donors=self.donors[sl], fill=fill)
        smap = ssim_map(y, x).mean(1)[0]
        vals = [f"SSIM {ssim(y, x).item():.3f}",
                f"SSIM in garment {ssim(y, x, self.masks[sl], 'inside').item():.3f}",
                f"PSNR {psnr(y, x).item():.1f} dB"]
        if self.lpips is not None:
            vals.append(f"{self.lpips.name} {self.lpips(y, x).item():.3f}")
        h, w = x.shape[-2:]
        fig, axes = plt.subplots(1, 3, figsize=(3 * 1.9 * w / h + 1.2, 2.6))
        axes[0].imshow(to_numpy_image(x[0], (0.0, 1.0)))
        axes[0].set_title("original", fontsize=8)
        axes[1].imshow(to_numpy_image(y[0], (0.0, 1.0)))
        axes[1].set_title(f"{kind}, strength {strength:.2f}", fontsize=8)
        im = axes[2].imshow(smap.numpy(), vmin=-0.2, vmax=1, cmap="magma")
        axes[2].set_title("SSIM map", fontsize=8)
        fig.colorbar(im, ax=axes[2], fraction=0.06)
        for ax in axes:
            ax.axis("off")
        fig.suptitle(" | ".join(vals), fontsize=8)
        fig.tight_layout()
        return fig

    def show(self, kind: str = "blur", strength: float = 0.5, index: int = 0) -> None:
        """Draw :meth:`render`'s figure once and return nothing: the function to give ``interact``
        (a figure returned to ``interact`` is drawn a second time, under the inline one)."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig = self.render(kind, strength, index)
        display(fig)
        plt.close(fig)

    __call__ = render
