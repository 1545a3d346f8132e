"""Figures and the render functions behind every widget.

Topic modules: ``vtonlab.viz.data``, ``vtonlab.viz.tps``, ``vtonlab.viz.clip``,
``vtonlab.viz.metrics``, ``vtonlab.viz.latent``, ``vtonlab.viz.ladi_warp``, ``vtonlab.viz.mgvton_parsing``,
``vtonlab.viz.warpgan``, ``vtonlab.viz.mgvton``. Shared helpers live here.
"""

from __future__ import annotations

import numpy as np
import torch


def to_numpy_image(x: torch.Tensor | np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """A (3, H, W) / (1, H, W) / (H, W) tensor in ``value_range`` -> float array (H, W, 3) or (H, W) in [0, 1]."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3 and x.shape[0] in (1, 3):
        x = np.moveaxis(x, 0, -1)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    lo, hi = value_range
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def image_grid(images, ncols: int, titles=None, figsize_per: float = 1.6, value_range=(-1.0, 1.0), cmap=None):
    """Show a list of images in a grid; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    images = list(images)
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    first = to_numpy_image(images[0], value_range)
    aspect = first.shape[1] / first.shape[0]
    fig, axes = plt.subplots(nrows, ncols, figsize=(figsize_per * aspect * ncols, figsize_per * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = to_numpy_image(images[i], value_range)
            ax.imshow(img, cmap=cmap if img.ndim == 2 else None, vmin=0, vmax=1)
            if titles is not None and i < len(titles):
                ax.set_title(str(titles[i]), fontsize=8)
    fig.tight_layout()
    return fig


def finish_figure(fig, axes, title: str | None = None):
    """Hide the ticks of ``axes``, add the title, lay out and close ``fig`` (so a notebook shows the returned figure once)."""
    import matplotlib.pyplot as plt

    for ax in np.asarray(axes).flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig
