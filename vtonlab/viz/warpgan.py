"""Figures for MG-VTON's Warp-GAN, the coarse try-on with feature warping (notebook 07).

Render functions (each returns a matplotlib Figure, an array or markdown text, and is unit-tested):

- :func:`input_panels` / :func:`render_warpgan_inputs`: the generator's 44 input channels ``[C_w, I_s, P, S_t]`` of
  one pair, as pictures.
- :func:`render_part_centres`: the body-part centres (the transform's control points) on the source and target
  parsings, with the motion of each matched part.
- :func:`grid_to_pixels`, :func:`render_warp_grid`: a feature-map sampling grid drawn over the source image (where
  each output cell reads), the source image warped by the same transform, and the target.
- :func:`render_feature_maps`: the mean over channels of the bottleneck features before and after warping.
- :func:`config_table`: what a profile's :class:`~vtonlab.mgvton.warpgan.WarpGANConfig` changes from the paper's.
- :func:`plot_training_curves`: the generator's loss terms and the discriminator's loss of a training history.
- :func:`results_rows` / :func:`results_table`: mean SSIM and L1 of the coarse image and of reference predictions.
- :func:`error_map`, :func:`render_coarse_results`: test pairs with source, target pose, target parsing, coarse
  image, target and the per-pixel error.
- :func:`render_warpgan_browser`: the widget's picture for one test pair.

Conventions: images ``(3, H, W)`` in [-1, 1]; parsings are integer label maps ``(H, W)`` (one pair) or ``(N, H, W)``
over the internal (CIHP) labels; sampling grids are ``(h, w, 2)`` normalised ``(x, y)`` with ``align_corners=True``,
at the bottleneck's resolution, whose cell ``j`` covers image pixels ``s j .. s j + s - 1`` (``s = H / h``), as
:func:`vtonlab.mgvton.warpgan.feature_warp_grid` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vtonlab.mgvton import warpgan
from vtonlab.mgvton.networks import shape_of as _shape
from vtonlab.viz import check_index as _index
from vtonlab.viz import check_label_map as _labels
from vtonlab.viz import config_table as shared_config_table
from vtonlab.viz import finish_figure, to_numpy_image
from vtonlab.viz import require_keys as _need
from vtonlab.viz.mgvton_parsing import label_image

__all__ = [
    "PICTURE_KEYS",
    "PART_NAMES",
    "input_panels",
    "render_warpgan_inputs",
    "render_part_centres",
    "grid_to_pixels",
    "render_warp_grid",
    "render_feature_maps",
    "config_table",
    "plot_training_curves",
    "results_rows",
    "results_table",
    "error_map",
    "render_coarse_results",
    "render_warpgan_browser",
]

PICTURE_KEYS: tuple[tuple[str, str, str], ...] = warpgan.PAIR_KEYS + (
    ("source_image", "source", "image"), ("target_agnostic", "target", "agnostic"))
"""``parsing.preload_pairs(data, pair_keys=PICTURE_KEYS, own_flow=True)``: the pair keys Warp-GAN reads plus the
source person's image and the target person without the garment (what the source branch would see in the target pose)."""

PART_NAMES: tuple[str, ...] = tuple(name for name, _ in warpgan.PART_GROUPS)
"""The names of the transform's control points, in :data:`~vtonlab.mgvton.warpgan.PART_GROUPS` order."""

_INPUT_TITLES = {"warped_cloth": ("$C_w$", "warped garment"), "source_person": ("$I_s$", "source, no garment"),
                 "target_pose": ("$P$", "target pose (max)"), "target_parsing": ("$S_t$", "target parsing")}


# ----------------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------------


def _image(name: str, x, size: tuple[int, int] | None = None) -> torch.Tensor:
    ok = isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[0] == 3
    if not ok or (size is not None and tuple(x.shape[-2:]) != tuple(size)):
        want = f"(3, {size[0]}, {size[1]})" if size is not None else "(3, H, W)"
        raise ValueError(f"{name}: expected one image {want} in [-1, 1], got {_shape(x)}")
    return x


def _grid(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != 2 or min(x.shape[:2]) < 2:
        raise ValueError(f"{name}: expected one sampling grid (h, w, 2) with h, w >= 2 (normalised x, y, "
                         f"align_corners=True), got {_shape(x)}")
    return x


def _plain(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def input_panels(x: torch.Tensor) -> list[tuple[str, np.ndarray, int]]:
    """The generator input of ONE pair, ``(44, H, W)`` (:func:`~vtonlab.mgvton.warpgan.warpgan_input` of a batch, one
    row), split by :data:`~vtonlab.mgvton.warpgan.INPUT_LAYOUT`: ``[(title, image, channels)]``.

    The garment and the source person (in [-1, 1]) become ``(H, W, 3)`` in [0, 1]; the 18 pose heatmaps their
    maximum ``(H, W)``; the 20-channel parsing map its most likely label in the CIHP colours (uint8 ``(H, W, 3)``).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != warpgan.INPUT_CHANNELS:
        raise ValueError(f"x: expected one Warp-GAN input ({warpgan.INPUT_CHANNELS}, H, W) (warpgan_input, one row), "
                         f"got {_shape(x)}")
    panels, start = [], 0
    for name, channels in warpgan.INPUT_LAYOUT:
        part = x[start:start + channels].detach().float().cpu()
        start += channels
        if name == "target_pose":
            img = to_numpy_image(part.amax(0), (0.0, 1.0))
        elif name == "target_parsing":
            img = label_image(part.argmax(0))
        else:
            img = to_numpy_image(part)
        symbol, what = _INPUT_TITLES.get(name, (name, ""))
        panels.append((f"{symbol}: {what}" if what else symbol, img, channels))
    return panels


def render_warpgan_inputs(x: torch.Tensor, *, source_image: torch.Tensor | None = None,
                          target_image: torch.Tensor | None = None, title: str | None = None):
    """One pair: (optionally) the source person as photographed, the four input groups of ``x`` ``(44, H, W)`` with
    their channel counts, and (optionally) the target person the coarse image should match."""
    import matplotlib.pyplot as plt

    panels = input_panels(x)
    size = tuple(x.shape[-2:])
    items = []
    if source_image is not None:
        items.append(("source person\n(not an input)", to_numpy_image(_image("source_image", source_image, size))))
    items += [(t.replace(": ", "\n", 1) + f"\n({c} ch)", img) for t, img, c in panels]
    if target_image is not None:
        items.append(("target person\n(truth)", to_numpy_image(_image("target_image", target_image, size))))
    h, w = size
    fig, axes = plt.subplots(1, len(items), figsize=(1.6 * len(items) * w / h + 0.4, 2.8), squeeze=False)
    for ax, (name, img) in zip(axes[0], items):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(name, fontsize=7)
    return finish_figure(fig, axes, title)


# ----------------------------------------------------------------------------------------------
# The transform
# ----------------------------------------------------------------------------------------------


def _points(name: str, x, k: int) -> np.ndarray:
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (k, 2):
        raise ValueError(f"{name}: expected ({k}, 2) part centres (x, y) in pixels, one per PART_GROUPS entry, got {_shape(x)}")
    return x.detach().double().cpu().numpy()


def render_part_centres(source_parse: torch.Tensor, target_parse: torch.Tensor, source_points: torch.Tensor,
                        target_points: torch.Tensor, valid: torch.Tensor, *, title: str | None = None):
    """The transform's control points for one pair: the source parsing with the source part centres, and the target
    parsing with the target centres and an arrow from where each matched part was (source centre) to where it is.

    Args:
        source_parse, target_parse: ``(H, W)`` label maps.
        source_points, target_points: ``(10, 2)`` part centres ``(x, y)`` in pixels
            (:func:`~vtonlab.mgvton.warpgan.part_centroids`, one row).
        valid: ``(10,)`` bool, the parts matched in both parsings (unmatched ones are drawn as grey crosses where
            they exist, and left out of the fit).
    """
    import matplotlib.pyplot as plt

    k = len(PART_NAMES)
    source_parse = _labels("source_parse", source_parse, 2)
    h, w = source_parse.shape
    target_parse = _labels("target_parse", target_parse, 2, (h, w))
    src, dst = _points("source_points", source_points, k), _points("target_points", target_points, k)
    if not isinstance(valid, torch.Tensor) or tuple(valid.shape) != (k,) or valid.dtype != torch.bool:
        raise ValueError(f"valid: expected a ({k},) bool tensor (parts matched in both parsings), got {_shape(valid)} "
                         f"{getattr(valid, 'dtype', '')}")
    ok = valid.cpu().numpy()
    fig, axes = plt.subplots(1, 2, figsize=(2 * 2.4 * w / h + 1.6, 3.2), squeeze=False)
    for ax, parse, pts, name in ((axes[0, 0], source_parse, src, "source parsing: part centres"),
                                 (axes[0, 1], target_parse, dst, "target parsing: centres, motion")):
        ax.imshow(label_image(parse))
        ax.scatter(pts[ok, 0], pts[ok, 1], s=22, c="w", edgecolors="k", linewidths=0.6, zorder=3)
        for j in np.flatnonzero(ok):
            ax.annotate(str(j), (pts[j, 0], pts[j, 1]), xytext=(3, -3), textcoords="offset points", fontsize=6,
                        color="w", fontweight="bold")
        ax.set_title(f"{name}\n{int(ok.sum())} of {k} parts matched", fontsize=7.5)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
    ax = axes[0, 1]
    for j in np.flatnonzero(ok):
        ax.annotate("", xy=(dst[j, 0], dst[j, 1]), xytext=(src[j, 0], src[j, 1]),
                    arrowprops=dict(arrowstyle="->", color="yellow", lw=1.0))
    legend = ", ".join(f"{j} {PART_NAMES[j]}" for j in range(k))
    fig.text(0.5, 0.01, legend, ha="center", fontsize=6, wrap=True)
    for a in axes.flat:
        _plain(a)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    plt.close(fig)
    return fig


def grid_to_pixels(grid: torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
    """A feature-map sampling grid ``(h, w, 2)`` as image pixel positions ``(h, w, 2)`` ``(x, y)``.

    The grid is normalised over the feature map (``align_corners=True``: -1 and 1 are the centres of its first and
    last cells); cell ``j`` covers pixels ``s j .. s j + s - 1`` of an image ``s`` times larger, centre
    ``s j + (s - 1) / 2``. ``image_size`` ``(H, W)`` must be a multiple of the grid's ``(h, w)``.
    """
    grid = _grid("grid", grid)
    fh, fw = grid.shape[:2]
    h, w = (int(v) for v in image_size)
    if h % fh or w % fw:
        raise ValueError(f"image_size: expected multiples of the grid's size {fh}x{fw} (the feature map's), got {h}x{w}")
    sy, sx = h / fh, w / fw
    g = grid.detach().double().cpu().numpy()
    cx = (g[..., 0] + 1) / 2 * (fw - 1)
    cy = (g[..., 1] + 1) / 2 * (fh - 1)
    return np.stack([sx * cx + (sx - 1) / 2, sy * cy + (sy - 1) / 2], -1)


def _draw_grid(ax, pixels: np.ndarray, colour: str, lw: float, alpha: float = 1.0) -> None:
    for i in range(pixels.shape[0]):
        ax.plot(pixels[i, :, 0], pixels[i, :, 1], color=colour, lw=lw, alpha=alpha)
    for j in range(pixels.shape[1]):
        ax.plot(pixels[:, j, 0], pixels[:, j, 1], color=colour, lw=lw, alpha=alpha)


def render_warp_grid(source: torch.Tensor, grid: torch.Tensor, *, warped: torch.Tensor | None = None,
                     target: torch.Tensor | None = None, source_title: str = "source person $I_s$",
                     title: str | None = None):
    """Where the warped features read the source: the feature-map grid drawn over the source image.

    Args:
        source: ``(3, H, W)`` in [-1, 1], the image the source branch encodes.
        grid: ``(h, w, 2)`` the feature-map sampling grid (:func:`~vtonlab.mgvton.warpgan.feature_warp_grid`, one
            row); its lines join the points where neighbouring output cells read (orange), over the feature cells'
            own centres (the identity, faint white); a dot marks each cell.
        warped: ``(3, H, W)`` optional, the source moved by the same transform at image resolution.
        target: ``(3, H, W)`` optional, the target person.
    """
    import matplotlib.pyplot as plt

    source = _image("source", source)
    size = tuple(source.shape[-2:])
    grid = _grid("grid", grid)
    pixels = grid_to_pixels(grid, size)
    identity = grid_to_pixels(_identity(grid.shape[0], grid.shape[1]), size)
    panels = [("grid", source, f"{source_title}\nand the {grid.shape[0]}x{grid.shape[1]} feature grid")]
    if warped is not None:
        panels.append(("image", _image("warped", warped, size), "$I_s$ warped by the\nsame transform"))
    if target is not None:
        panels.append(("image", _image("target", target, size), "target person\n(truth)"))
    h, w = size
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * 2.3 * w / h + 0.5, 3.1), squeeze=False)
    for ax, (kind, img, name) in zip(axes[0], panels):
        ax.imshow(to_numpy_image(img), vmin=0, vmax=1)
        if kind == "grid":
            _draw_grid(ax, identity, "w", 0.6, 0.6)
            _draw_grid(ax, pixels, "tab:orange", 1.1)
            ax.scatter(pixels[..., 0].ravel(), pixels[..., 1].ravel(), s=5, c="tab:orange", zorder=3)
            pad = 0.25 * max(h, w)
            lo_x, hi_x = min(-0.5, pixels[..., 0].min()), max(w - 0.5, pixels[..., 0].max())
            lo_y, hi_y = min(-0.5, pixels[..., 1].min()), max(h - 0.5, pixels[..., 1].max())
            ax.set_xlim(max(lo_x, -0.5 - pad), min(hi_x, w - 0.5 + pad))
            ax.set_ylim(min(hi_y, h - 0.5 + pad), max(lo_y, -0.5 - pad))
        ax.set_title(name, fontsize=7.5)
    return finish_figure(fig, axes, title)


def _identity(h: int, w: int) -> torch.Tensor:
    ys, xs = torch.linspace(-1, 1, h, dtype=torch.float64), torch.linspace(-1, 1, w, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1)


def render_feature_maps(source_features: torch.Tensor, warped_features: torch.Tensor, *,
                        source_image: torch.Tensor | None = None, target_image: torch.Tensor | None = None,
                        title: str | None = None):
    """The bottleneck features of one pair before and after warping, as their mean over channels.

    ``source_features`` ``f_s`` and ``warped_features`` ``f_w``: ``(C, h, w)`` (:meth:`WarpGANGenerator.features`,
    one row); shown on one colour scale, next to the optional images ``(3, H, W)`` (source person, target person).
    """
    import matplotlib.pyplot as plt

    for name, f in (("source_features", source_features), ("warped_features", warped_features)):
        if not isinstance(f, torch.Tensor) or f.ndim != 3:
            raise ValueError(f"{name}: expected one feature map (C, h, w), got {_shape(f)}")
    if source_features.shape != warped_features.shape:
        raise ValueError(f"warped_features: expected the shape of source_features {tuple(source_features.shape)}, "
                         f"got {tuple(warped_features.shape)}")
    maps = [source_features.detach().float().cpu().mean(0).numpy(), warped_features.detach().float().cpu().mean(0).numpy()]
    top = max(float(m.max()) for m in maps)
    bottom = min(0.0, min(float(m.min()) for m in maps))
    items: list[tuple[str, object]] = []
    if source_image is not None:
        items.append(("source person $I_s$", to_numpy_image(_image("source_image", source_image))))
    c, fh, fw = source_features.shape
    items += [(f"$f_s = E_s(I_s)$: mean of {c} ch\n({fh}x{fw})", maps[0]), ("$f_w$: $f_s$ warped", maps[1])]
    if target_image is not None:
        items.append(("target person (truth)", to_numpy_image(_image("target_image", target_image))))
    fig, axes = plt.subplots(1, len(items), figsize=(len(items) * 2.2 * fw / fh + 1.0, 3.0), squeeze=False)
    im = None
    for ax, (name, img) in zip(axes[0], items):
        if img.ndim == 2:
            im = ax.imshow(img, cmap="viridis", vmin=bottom, vmax=top if top > bottom else bottom + 1)
        else:
            ax.imshow(img, vmin=0, vmax=1)
        ax.set_title(name, fontsize=7.5)
    for ax in axes.flat:
        _plain(ax)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    cbar = fig.colorbar(im, cax=fig.add_axes((0.94, 0.2, 0.012, 0.6)))
    cbar.ax.tick_params(labelsize=6)
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------------------------
# Configuration and training
# ----------------------------------------------------------------------------------------------


def config_table(config: warpgan.WarpGANConfig, reference: warpgan.WarpGANConfig | None = None) -> str:
    """Markdown table of the options where ``config`` differs from ``reference`` (default ``WarpGANConfig()``: the
    paper's networks, optimiser and image size): ``| option | reference | this config |``; one line when none differ."""
    return shared_config_table(config, reference, warpgan.WarpGANConfig)


_G_TERMS = ("loss_g", "adv_g", "fm", "vgg", "l1")
_D_TERMS = ("adv_d",)


def plot_training_curves(history, vgg_label: str, title: str | None = None):
    """Two panels from a Warp-GAN training history (:class:`vtonlab.train.History`): the generator's total ``loss_g``
    and its unweighted terms ``adv_g``, ``fm``, ``vgg``, ``l1`` (log scale), and the discriminator's ``adv_d``.

    ``vgg_label``: the weights of the perceptual loss's VGG19 (the checkpoint's ``metrics["vgg_weights"]``), written
    under the generator panel so that the ``vgg`` curve is never read without it.
    """
    import matplotlib.pyplot as plt

    losses = getattr(history, "losses", None)
    if not isinstance(losses, Mapping):
        raise TypeError(f"history: expected a vtonlab.train.History, got {type(history).__name__}")
    missing = [k for k in _G_TERMS + _D_TERMS if k not in losses]
    if missing:
        raise KeyError(f"history lacks {', '.join(missing)}; expected the Warp-GAN terms {list(_G_TERMS + _D_TERMS)}, "
                       f"logged: {', '.join(losses) or 'none'}")
    if not isinstance(vgg_label, str) or not vgg_label:
        raise ValueError(f"vgg_label: expected the VGG19 weights' label (checkpoint metrics['vgg_weights']), got {vgg_label!r}")
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.5))
    history.plot(keys=list(_G_TERMS), ax=axes[0], logy=True, title="generator: loss_g and its unweighted terms")
    history.plot(keys=list(_D_TERMS), ax=axes[1], title="discriminator: LSGAN adv_d (sum over scales)")
    axes[0].text(0.0, -0.28, f"vgg: VGG19 weights = {vgg_label}", transform=axes[0].transAxes, fontsize=7, color="0.25")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


def results_rows(results: Mapping[str, Mapping]) -> list[dict]:
    """``{label: result}`` with each result holding ``"mean_ssim"`` and ``"mean_l1"`` (as
    :func:`~vtonlab.mgvton.warpgan.evaluate_coarse` returns) and optionally ``"n_pairs"``: one row per label, in order,
    ``{"method", "ssim", "l1", "n_pairs"}`` (``n_pairs`` None when absent)."""
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results: expected a non-empty {label: {'mean_ssim', 'mean_l1'}} mapping")
    rows = []
    for label, r in results.items():
        if not isinstance(r, Mapping):
            raise TypeError(f"results[{label!r}]: expected a mapping with 'mean_ssim' and 'mean_l1', got {type(r).__name__}")
        _need(r, ("mean_ssim", "mean_l1"), f"results[{label!r}]")
        rows.append({"method": str(label), "ssim": float(r["mean_ssim"]), "l1": float(r["mean_l1"]),
                     "n_pairs": int(r["n_pairs"]) if "n_pairs" in r else None})
    return rows


def results_table(results: Mapping[str, Mapping]) -> str:
    """:func:`results_rows` as a markdown table (``| method | SSIM | L1 |``, higher SSIM and lower L1 better), the
    best of each column in bold; both against the target person's image, in [0, 1]."""
    rows = results_rows(results)
    best_ssim, best_l1 = max(r["ssim"] for r in rows), min(r["l1"] for r in rows)
    lines = ["| prediction | SSIM (higher is better) | L1 (lower is better) |", "|---|---|---|"]
    for r in rows:
        ssim = f"**{r['ssim']:.4f}**" if r["ssim"] == best_ssim else f"{r['ssim']:.4f}"
        l1 = f"**{r['l1']:.4f}**" if r["l1"] == best_l1 else f"{r['l1']:.4f}"
        lines.append(f"| {r['method']} | {ssim} | {l1} |")
    return "\n".join(lines)


def error_map(prediction: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Per-pixel L1 error ``(H, W)`` in [0, 1]: ``mean_c |prediction - target|`` of ``(3, H, W)`` images in [-1, 1],
    both mapped to [0, 1] and clipped (the images :func:`~vtonlab.mgvton.warpgan.evaluate_coarse` scores); its mean is
    that function's per-pair ``"l1"``."""
    prediction = _image("prediction", prediction)
    target = _image("target", target, tuple(prediction.shape[-2:]))
    return np.abs(to_numpy_image(prediction) - to_numpy_image(target)).mean(-1)


_RESULT_KEYS = ("source_image", "target_pose_map", "target_parse", "target_image")


def _check_results(pairs: Mapping, coarse) -> int:
    _need(pairs, _RESULT_KEYS, "pairs")
    target = _labels("pairs['target_parse']", pairs["target_parse"], 3)
    n, (h, w) = target.shape[0], tuple(target.shape[-2:])
    for key, c in (("source_image", 3), ("target_image", 3), ("target_pose_map", 18)):
        x = pairs[key]
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, c, h, w):
            raise ValueError(f"pairs[{key!r}]: expected ({n}, {c}, {h}, {w}) like pairs['target_parse'], got {_shape(x)}")
    if not isinstance(coarse, torch.Tensor) or tuple(coarse.shape) != (n, 3, h, w):
        raise ValueError(f"coarse: expected ({n}, 3, {h}, {w}) coarse images in [-1, 1], one per pair, got {_shape(coarse)}")
    return n


def render_coarse_results(pairs: Mapping[str, torch.Tensor], coarse: torch.Tensor, indices: Sequence[int] = (0, 1, 2),
                          *, vmax: float | None = None, title: str | None = None):
    """Test pairs, one row each: source person, target pose (max of the 18 maps), target parsing, the coarse image,
    the target person and :func:`error_map` (one colour scale for all rows; the title of each gives its mean).

    Args:
        pairs: ``source_image``, ``target_image`` ``(N, 3, H, W)``, ``target_pose_map`` ``(N, 18, H, W)``,
            ``target_parse`` ``(N, H, W)`` (``parsing.preload_pairs(data, pair_keys=PICTURE_KEYS, own_flow=True)``).
        coarse: ``(N, 3, H, W)`` (``evaluate_coarse(..., keep=True)["coarse"]``).
        vmax: top of the error scale (default: the shown maps' 99th percentile, at least 0.05).
    """
    import matplotlib.pyplot as plt

    n = _check_results(pairs, coarse)
    rows = [_index(i, n) for i in indices]
    if not rows:
        raise ValueError("indices is empty: expected at least one pair index")
    errors = [error_map(coarse[i], pairs["target_image"][i]) for i in rows]
    top = vmax if vmax is not None else max(0.05, float(np.percentile(np.stack(errors), 99)))
    h, w = coarse.shape[-2:]
    fig, axes = plt.subplots(len(rows), 6, figsize=(6 * 1.55 * w / h + 0.9, 1.65 * len(rows) + 0.4), squeeze=False)
    im = None
    for r, (i, err) in enumerate(zip(rows, errors)):
        views = [(to_numpy_image(pairs["source_image"][i]), f"source person\npair {i}"),
                 (to_numpy_image(pairs["target_pose_map"][i].amax(0), (0.0, 1.0)), "target pose"),
                 (label_image(pairs["target_parse"][i]), "target parsing"),
                 (to_numpy_image(coarse[i]), "coarse (Warp-GAN)"),
                 (to_numpy_image(pairs["target_image"][i]), "target (truth)")]
        for ax, (img, name) in zip(axes[r], views):
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(name, fontsize=7)
        im = axes[r, 5].imshow(err, cmap="magma", vmin=0, vmax=top)
        axes[r, 5].set_title(f"|coarse - target|\nmean {err.mean():.3f}", fontsize=7)
    for ax in axes.flat:
        _plain(ax)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    cbar = fig.colorbar(im, cax=fig.add_axes((0.94, 0.2, 0.012, 0.6)))
    cbar.ax.tick_params(labelsize=6)
    cbar.set_label("L1 error ([0, 1] images)", fontsize=7)
    plt.close(fig)
    return fig


def render_warpgan_browser(pairs: Mapping[str, torch.Tensor], coarse: torch.Tensor, grids: torch.Tensor, index: int = 0,
                           *, names: Sequence[str] | None = None, title: str | None = None):
    """The widget's picture for test pair ``index`` (negative counts from the end): the source person, the target
    parsing, the feature grid over the source person without the garment, the coarse image, the target, and the
    coarse image's :func:`error_map`.

    ``pairs`` and ``coarse`` as :func:`render_coarse_results` (``pairs`` also needs ``source_agnostic``); ``grids``:
    ``(N, h, w, 2)`` the feature-map sampling grids of every pair; ``names`` (optional) one per pair, for the title.
    """
    import matplotlib.pyplot as plt

    n = _check_results(pairs, coarse)
    _need(pairs, ("source_agnostic",), "pairs")
    if not isinstance(grids, torch.Tensor) or grids.ndim != 4 or grids.shape[0] != n or grids.shape[-1] != 2:
        raise ValueError(f"grids: expected ({n}, h, w, 2) feature-map sampling grids, one per pair, got {_shape(grids)}")
    if names is not None and len(names) != n:
        raise ValueError(f"names: expected one name per pair ({n}), got {len(names)}")
    i = _index(index, n)
    h, w = coarse.shape[-2:]
    agnostic = _image("pairs['source_agnostic'][i]", pairs["source_agnostic"][i], (h, w))
    pixels = grid_to_pixels(grids[i], (h, w))
    identity = grid_to_pixels(_identity(grids.shape[1], grids.shape[2]), (h, w))
    err = error_map(coarse[i], pairs["target_image"][i])
    fig, axes = plt.subplots(1, 6, figsize=(6 * 1.75 * w / h + 0.8, 3.0), squeeze=False)
    ax = axes[0]
    ax[0].imshow(to_numpy_image(pairs["source_image"][i]), vmin=0, vmax=1)
    ax[0].set_title("source person", fontsize=7.5)
    ax[1].imshow(label_image(pairs["target_parse"][i]))
    ax[1].set_title("target parsing $S_t$", fontsize=7.5)
    ax[2].imshow(to_numpy_image(agnostic), vmin=0, vmax=1)
    _draw_grid(ax[2], identity, "w", 0.5, 0.6)
    _draw_grid(ax[2], pixels, "tab:orange", 1.0)
    ax[2].set_xlim(-0.5, w - 0.5)
    ax[2].set_ylim(h - 0.5, -0.5)
    ax[2].set_title(f"feature grid over $I_s$\n({grids.shape[1]}x{grids.shape[2]} cells)", fontsize=7.5)
    ax[3].imshow(to_numpy_image(coarse[i]), vmin=0, vmax=1)
    ax[3].set_title("coarse (Warp-GAN)", fontsize=7.5)
    ax[4].imshow(to_numpy_image(pairs["target_image"][i]), vmin=0, vmax=1)
    ax[4].set_title("target (truth)", fontsize=7.5)
    ax[5].imshow(err, cmap="magma", vmin=0, vmax=max(0.05, float(err.max())))
    ax[5].set_title(f"|coarse - target|\nmean {err.mean():.3f}", fontsize=7.5)
    if title is None:
        title = f"test pair {i}" + (f" ({names[i]})" if names is not None else "")
    return finish_figure(fig, axes, title)
