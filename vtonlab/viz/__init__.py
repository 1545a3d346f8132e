"""Figures and the render functions behind every widget.

Topic modules: ``vtonlab.viz.data``, ``vtonlab.viz.tps``, ``vtonlab.viz.clip``,
``vtonlab.viz.metrics``, ``vtonlab.viz.latent``, ``vtonlab.viz.ladi_warp``, ``vtonlab.viz.mgvton_parsing``,
``vtonlab.viz.warpgan``, ``vtonlab.viz.mgvton``, ``vtonlab.viz.inversion``, ``vtonlab.viz.diffusion``. Shared helpers
live here.
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


def config_table(config, reference, cls: type) -> str:
    """Markdown table of the options where ``config`` differs from ``reference`` (both ``cls`` instances; ``reference``
    default ``cls()``, a paper model's config whose defaults are the paper's): ``| option | reference | this config |``;
    one line saying so when none differ. A TypeError names an argument of another class."""
    import dataclasses

    reference = reference if reference is not None else cls()
    for name, c in (("config", config), ("reference", reference)):
        if not isinstance(c, cls):
            raise TypeError(f"{name}: expected a {cls.__module__}.{cls.__name__}, got {type(c).__name__}")
    rows = []
    for f in dataclasses.fields(config):
        a, b = getattr(reference, f.name), getattr(config, f.name)
        if a != b:
            fmt = (lambda v: "x".join(map(str, v))) if f.name == "image_size" else str
            rows.append(f"| `{f.name}` | {fmt(a)} | {fmt(b)} |")
    if not rows:
        return "The config equals the reference in every option."
    return "\n".join([f"| option | `{cls.__name__}()` default | this config |", "|---|---|---|", *rows])


def check_index(index: int, n: int) -> int:
    """A widget's index into ``n`` items (negative counts from the end); IndexError naming the valid range."""
    if not -n <= int(index) < n:
        raise IndexError(f"index must be in [0, {n - 1}], got {index}")
    return int(index) % n


def require_keys(mapping, keys, what: str) -> None:
    """KeyError naming the missing ``keys`` of ``mapping`` (described as ``what``) and the keys it has."""
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise KeyError(f"{what} is missing {', '.join(map(repr, missing))}; it has {', '.join(map(repr, mapping)) or 'nothing'}")


def check_label_map(name: str, x, ndim: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """An integer label tensor with ``ndim`` axes ((H, W) or (N, H, W)), of ``size`` when given, with values in the
    internal label set; ValueError naming ``name`` and what was expected otherwise."""
    from vtonlab.data.labels import INTERNAL_LABELS
    from vtonlab.mgvton.networks import shape_of

    want = "(H, W)" if ndim == 2 else "(N, H, W)"
    if not isinstance(x, torch.Tensor) or x.ndim != ndim or x.is_floating_point() or x.is_complex():
        raise ValueError(f"{name}: expected an integer label map {want}, got {shape_of(x)} {getattr(x, 'dtype', '')}")
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"{name}: expected the image size {size[0]}x{size[1]}, got {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= len(INTERNAL_LABELS)):
        raise ValueError(f"{name}: labels must be 0..{len(INTERNAL_LABELS) - 1} (the internal label set), "
                         f"got {int(x.min())}..{int(x.max())}")
    return x
