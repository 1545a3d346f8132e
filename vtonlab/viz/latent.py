"""Figures for notebook 09 (LaDI-VTON's latent space: the KL autoencoder and EMASC).

- :func:`error_map`, :func:`mask_outline`, :func:`region_box`: the pieces every figure uses (per-pixel
  reconstruction error, the inpainting mask's outline, the bounding box of a region to zoom into).
- :func:`latent_figure`: a person and the channels of its latent at ``H/8 x W/8``.
- :func:`reconstruction_figure`: originals, reconstructions and error maps, with the inpainting mask outlined.
- :func:`zoom_figure`: crops of a region (face, printed text) in the original and in several reconstructions.
- :func:`feature_masking_figure`: one encoder feature channel before and after EMASC's masking.
- :func:`render_emasc_sample`: the render function behind the widget (sample, EMASC kind, seed): the original,
  its reconstruction and the error map, the mask outlined.
- :func:`seed_stats`, :func:`ablation_markdown`, :func:`judge`: mean and spread over training seeds, the
  ablation table, and a comparison judged against that spread.

Images are ``(3, H, W)`` tensors in [-1, 1] (model convention), masks ``(1, H, W)`` in {0, 1} (1 = inpainted).
Errors are in [0, 1] image units: ``|x - x_rec|`` of images mapped to [0, 1], averaged over the channels.
Figures are closed before they are returned, so a notebook shows each one once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vtonlab.viz import finish_figure as _finish
from vtonlab.viz import to_numpy_image

__all__ = [
    "OUTLINE_COLOUR", "EMASC_KINDS", "error_map", "mask_outline", "draw_outline", "region_box", "latent_figure",
    "reconstruction_figure", "zoom_figure", "feature_masking_figure", "row_key", "render_emasc_sample", "SeedStats",
    "seed_stats", "ablation_markdown", "judge",
]

OUTLINE_COLOUR = (1.0, 0.1, 0.1)
"""RGB in [0, 1] of the inpainting-mask outline drawn on images."""

EMASC_KINDS = ("none", "linear", "nonlinear")
"""The widget's EMASC choices: no skip connections, the linear and the nonlinear adapters."""


def _check_image(x, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != 3:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (3, H, W) tensor in [-1, 1], got {got}")


def _mask_array(mask, size: tuple[int, int], name: str = "mask") -> np.ndarray:
    """A (1, H, W) / (H, W) mask -> bool array (H, W), checked against ``size``."""
    m = mask.detach().float().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, dtype=np.float32)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.shape != tuple(size):
        raise ValueError(f"{name} must have shape (1, {size[0]}, {size[1]}) or ({size[0]}, {size[1]}), got {m.shape}")
    return m > 0.5


def error_map(image: torch.Tensor, reconstruction: torch.Tensor) -> np.ndarray:
    """``|x - x_rec|`` averaged over the channels, in [0, 1] image units: float array ``(H, W)``.

    Both images are ``(3, H, W)`` in [-1, 1]; the difference is halved to express it in [0, 1] units.
    """
    _check_image(image, "image")
    _check_image(reconstruction, "reconstruction")
    if image.shape != reconstruction.shape:
        raise ValueError(f"image {tuple(image.shape)} and reconstruction {tuple(reconstruction.shape)} differ in shape")
    diff = (image.detach().float().cpu() - reconstruction.detach().float().cpu()).abs().mean(0) / 2
    return diff.numpy()


def mask_outline(mask) -> np.ndarray:
    """Bool ``(H, W)``: mask pixels with at least one 4-neighbour outside the mask (the image border does not count)."""
    m = mask.detach().float().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, dtype=np.float32)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"mask must be (1, H, W) or (H, W), got shape {m.shape}")
    m = m > 0.5
    p = np.pad(m, 1, mode="edge")
    interior = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~interior


def draw_outline(rgb: np.ndarray, mask, colour: Sequence[float] = OUTLINE_COLOUR) -> np.ndarray:
    """A copy of ``rgb`` (float ``(H, W, 3)`` in [0, 1]) with the outline of ``mask`` painted in ``colour``."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must be an (H, W, 3) array, got shape {rgb.shape}")
    edge = mask_outline(mask)
    if edge.shape != rgb.shape[:2]:
        raise ValueError(f"mask {edge.shape} and image {rgb.shape[:2]} differ in size")
    out = rgb.copy()
    out[edge] = np.asarray(colour, dtype=np.float32)
    return out


def region_box(region, pad: int = 2, min_size: int = 8) -> tuple[int, int, int, int]:
    """The bounding box ``(top, bottom, left, right)`` (bottom/right exclusive) of a region, padded by ``pad`` pixels,
    grown around its centre to at least ``min_size`` per side (as far as the image allows), clipped to the image.

    ``region``: ``(1, H, W)`` / ``(H, W)`` in {0, 1}. An empty region is a ValueError.
    """
    m = region.detach().float().cpu().numpy() if isinstance(region, torch.Tensor) else np.asarray(region, dtype=np.float32)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"region must be (1, H, W) or (H, W), got shape {m.shape}")
    rows, cols = np.nonzero(m > 0.5)
    if rows.size == 0:
        raise ValueError("region is empty: nothing to zoom into")
    h, w = m.shape

    def span(lo: int, hi: int, size: int) -> tuple[int, int]:
        lo, hi = max(0, lo - pad), min(size, hi + 1 + pad)
        need = min(size, max(int(min_size), 1)) - (hi - lo)
        if need > 0:
            lo -= need // 2
            hi += need - need // 2
            shift = max(0, -lo) - max(0, hi - size)
            lo, hi = lo + shift, hi + shift
        return max(0, lo), min(size, hi)

    top, bottom = span(int(rows.min()), int(rows.max()), h)
    left, right = span(int(cols.min()), int(cols.max()), w)
    return top, bottom, left, right


def latent_figure(image: torch.Tensor, latent: torch.Tensor, title: str | None = None):
    """The person and each channel of its latent ``(C, h, w)`` as an image (blue < 0 < red, one symmetric scale).

    The panels share one colour scale (the largest absolute value), so channels can be compared.
    """
    import matplotlib.pyplot as plt

    _check_image(image, "image")
    if not isinstance(latent, torch.Tensor) or latent.ndim != 3:
        raise ValueError(f"latent must be a (C, h, w) tensor, got "
                         f"{tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__}")
    c, lh, lw = latent.shape
    h, w = image.shape[-2:]
    z = latent.detach().float().cpu().numpy()
    top = float(np.abs(z).max()) or 1.0
    fig, axes = plt.subplots(1, c + 1, figsize=(1.45 * (c + 1) * w / h + 0.9, 2.3))
    axes[0].imshow(to_numpy_image(image))
    axes[0].set_title(f"person\n{h}x{w}", fontsize=8)
    im = None
    for k in range(c):
        im = axes[k + 1].imshow(z[k], cmap="RdBu_r", vmin=-top, vmax=top, interpolation="nearest")
        axes[k + 1].set_title(f"latent channel {k}\n{lh}x{lw}", fontsize=8)
    cbar = fig.colorbar(im, ax=list(axes[1:]), fraction=0.03, pad=0.02)
    cbar.ax.tick_params(labelsize=6)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    plt.close(fig)
    return fig


def _default_max_error(errors: Sequence[np.ndarray]) -> float:
    vals = np.concatenate([e.ravel() for e in errors])
    return max(1e-3, float(np.percentile(vals, 99)))


def reconstruction_figure(images: torch.Tensor, reconstructions: torch.Tensor, masks: torch.Tensor,
                          titles: Sequence[str] | None = None, max_error: float | None = None,
                          title: str | None = None):
    """One row per sample: original, reconstruction (mask outlined) and the error map ``|x - x_rec|``.

    Args:
        images, reconstructions: ``(N, 3, H, W)`` in [-1, 1].
        masks: ``(N, 1, H, W)`` inpainting masks (outlined in red on the images, in white on the error maps).
        titles: a label per row (shown above its original).
        max_error: top of the error colour scale, shared by every row (default: the 99th percentile of all errors).
    """
    import matplotlib.pyplot as plt

    if images.ndim != 4 or reconstructions.shape != images.shape:
        raise ValueError(f"images and reconstructions must be (N, 3, H, W) of one shape, got {tuple(images.shape)} "
                         f"and {tuple(reconstructions.shape)}")
    n, _, h, w = images.shape
    if masks.shape != (n, 1, h, w):
        raise ValueError(f"masks must have shape ({n}, 1, {h}, {w}), got {tuple(masks.shape)}")
    if n == 0:
        raise ValueError("reconstruction_figure needs at least one sample")
    errors = [error_map(images[i], reconstructions[i]) for i in range(n)]
    top = max_error if max_error is not None else _default_max_error(errors)
    fig, axes = plt.subplots(n, 3, figsize=(3 * 1.9 * w / h + 1.0, 1.9 * n + 0.4), squeeze=False)
    for i in range(n):
        label = f"{titles[i]}: " if titles is not None and i < len(titles) else ""
        axes[i, 0].imshow(draw_outline(to_numpy_image(images[i]), masks[i]))
        axes[i, 0].set_title(f"{label}original", fontsize=8)
        axes[i, 1].imshow(draw_outline(to_numpy_image(reconstructions[i]), masks[i]))
        axes[i, 1].set_title("reconstruction", fontsize=8)
        axes[i, 2].imshow(draw_outline(plt.get_cmap("magma")(np.clip(errors[i] / top, 0, 1))[..., :3], masks[i],
                                            (1.0, 1.0, 1.0)))
        axes[i, 2].set_title(f"|x - rec|, mean {errors[i].mean():.3f}", fontsize=8)
    sm = plt.cm.ScalarMappable(cmap="magma", norm=plt.Normalize(0, top))
    cbar = fig.colorbar(sm, ax=list(axes[:, 2]), fraction=0.05, pad=0.03)
    cbar.ax.tick_params(labelsize=6)
    cbar.set_label("|x - rec| ([0, 1] units)", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    plt.close(fig)
    return fig


def zoom_figure(rows: Mapping[str, tuple[Mapping[str, torch.Tensor], torch.Tensor]], pad: int = 2, min_size: int = 12,
                title: str | None = None):
    """Crops of regions, magnified: one row per region, one column per version of the image.

    Args:
        rows: ``{row label: (versions, region)}``; ``versions`` maps a column label to a ``(3, H, W)`` image in
            [-1, 1] (the first is the reference, usually ``"original"``), ``region`` is ``(1, H, W)``: its
            bounding box (:func:`region_box`) is cropped. Every row needs the same column labels.
        pad, min_size: passed to :func:`region_box`.
    Each crop's title gives the mean error ``|x - x_rec|`` inside the region against the first version.
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("zoom_figure needs at least one row")
    labels = list(next(iter(rows.values()))[0])
    if not labels:
        raise ValueError("zoom_figure: every row needs at least one image")
    fig, axes = plt.subplots(len(rows), len(labels), figsize=(1.9 * len(labels) + 0.3, 2.0 * len(rows) + 0.3),
                             squeeze=False)
    for r, (row_label, (versions, region)) in enumerate(rows.items()):
        if list(versions) != labels:
            raise ValueError(f"zoom_figure row {row_label!r}: columns {list(versions)} differ from {labels}")
        ref = versions[labels[0]]
        _check_image(ref, f"{row_label}/{labels[0]}")
        reg = _mask_array(region, tuple(ref.shape[-2:]), f"region of {row_label!r}")
        top, bottom, left, right = region_box(reg, pad, min_size)
        for c, label in enumerate(labels):
            img = versions[label]
            _check_image(img, f"{row_label}/{label}")
            ax = axes[r, c]
            ax.imshow(to_numpy_image(img)[top:bottom, left:right], interpolation="nearest")
            if c == 0:
                ax.set_title(f"{label}", fontsize=8)
                ax.set_ylabel(row_label, fontsize=9)
            else:
                err = error_map(ref, img)[reg].mean()
                ax.set_title(f"{label}\nerror {err:.3f}", fontsize=8)
    return _finish(fig, axes, title)


def feature_masking_figure(feature: torch.Tensor, masked: torch.Tensor, mask: torch.Tensor, channel: int = 0,
                           title: str | None = None):
    """One channel of an encoder feature ``(C, h, w)`` before and after masking, and the mask at ``h x w``.

    ``mask`` is the inpainting mask ``(1, H, W)`` at the image resolution; it is shown resized to the feature's
    size with nearest-neighbour interpolation, as EMASC resizes it.
    """
    import matplotlib.pyplot as plt

    for name, t in (("feature", feature), ("masked", masked)):
        if not isinstance(t, torch.Tensor) or t.ndim != 3:
            raise ValueError(f"{name} must be a (C, h, w) tensor, got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    if masked.shape != feature.shape:
        raise ValueError(f"feature {tuple(feature.shape)} and masked {tuple(masked.shape)} differ in shape")
    if not 0 <= int(channel) < feature.shape[0]:
        raise IndexError(f"channel must be in [0, {feature.shape[0] - 1}], got {channel}")
    if mask.ndim != 3 or mask.shape[0] != 1:
        raise ValueError(f"mask must be (1, H, W), got shape {tuple(mask.shape)}")
    h, w = feature.shape[-2:]
    small = F.interpolate(mask[None].float(), size=(h, w), mode="nearest")[0, 0].cpu().numpy()
    before = feature[channel].detach().float().cpu().numpy()
    after = masked[channel].detach().float().cpu().numpy()
    top = float(np.abs(before).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(3 * 1.9 * w / h + 1.0, 2.4))
    axes[0].imshow(before, cmap="RdBu_r", vmin=-top, vmax=top, interpolation="nearest")
    axes[0].set_title(f"channel {channel} ({h}x{w})", fontsize=8)
    axes[1].imshow(1 - small, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("1 - mask (nearest)", fontsize=8)
    im = axes[2].imshow(after, cmap="RdBu_r", vmin=-top, vmax=top, interpolation="nearest")
    axes[2].set_title("after masking", fontsize=8)
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    return _finish(fig, axes, title)


def row_key(kind: str, seed: int = 0) -> str:
    """The ablation's key of an EMASC run: ``"none"``, ``"linear"``, ``"nonlinear_seed2"``, ... (seed ignored for none)."""
    if kind not in EMASC_KINDS:
        raise ValueError(f"EMASC kind: expected one of {list(EMASC_KINDS)}, got {kind!r}")
    if kind == "none" or int(seed) == 0:
        return kind
    return f"{kind}_seed{int(seed)}"


def render_emasc_sample(images: torch.Tensor, masks: torch.Tensor, reconstructions: Mapping[str, torch.Tensor],
                        index: int = 0, kind: str = "linear", seed: int = 0, max_error: float | None = None):
    """The widget: one test sample reconstructed with the chosen EMASC, and its error map, the mask outlined.

    Args:
        images: ``(N, 3, H, W)`` originals in [-1, 1]; masks: ``(N, 1, H, W)`` inpainting masks.
        reconstructions: ``{row key: (N, 3, H, W)}`` for the keys of :func:`row_key` (``"none"`` is required: it
            sets the default colour scale, so toggling EMASC keeps the scale of one sample fixed).
        index: the sample (negative counts from the end); kind: ``"none"``, ``"linear"`` or ``"nonlinear"``;
        seed: the training seed of the EMASC run (ignored for ``"none"``).
        max_error: top of the error colour scale (default: the 99th percentile of the ``"none"`` error of the sample).
    The title gives the mean error outside and inside the mask.
    """
    import matplotlib.pyplot as plt

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    n, _, h, w = images.shape
    if masks.shape != (n, 1, h, w):
        raise ValueError(f"masks must have shape ({n}, 1, {h}, {w}), got {tuple(masks.shape)}")
    if "none" not in reconstructions:
        raise KeyError("reconstructions need a 'none' entry (the plain autoencoder), which sets the colour scale")
    key = row_key(kind, seed)
    if key not in reconstructions:
        raise KeyError(f"no reconstructions for {key!r}; available: {', '.join(reconstructions)}")
    if not -n <= int(index) < n:
        raise IndexError(f"index must be in [0, {n - 1}], got {index}")
    i = int(index) % n
    for k, rec in reconstructions.items():
        if rec.shape != images.shape:
            raise ValueError(f"reconstructions[{k!r}] has shape {tuple(rec.shape)}, expected {tuple(images.shape)}")
    err = error_map(images[i], reconstructions[key][i])
    top = max_error if max_error is not None else _default_max_error([error_map(images[i], reconstructions["none"][i])])
    inside = _mask_array(masks[i], (h, w))
    out_err = float(err[~inside].mean()) if (~inside).any() else float("nan")
    in_err = float(err[inside].mean()) if inside.any() else float("nan")
    label = "no EMASC" if kind == "none" else f"{kind} EMASC, seed {int(seed)}"
    fig, axes = plt.subplots(1, 3, figsize=(3 * 2.3 * w / h + 1.2, 3.0))
    axes[0].imshow(draw_outline(to_numpy_image(images[i]), masks[i]))
    axes[0].set_title("original", fontsize=8)
    axes[1].imshow(draw_outline(to_numpy_image(reconstructions[key][i]), masks[i]))
    axes[1].set_title(f"reconstruction ({label})", fontsize=8)
    heat = plt.get_cmap("magma")(np.clip(err / top, 0, 1))[..., :3]
    axes[2].imshow(draw_outline(heat, masks[i], (1.0, 1.0, 1.0)))
    axes[2].set_title("|x - rec| (mask outlined)", fontsize=8)
    sm = plt.cm.ScalarMappable(cmap="magma", norm=plt.Normalize(0, top))
    fig.colorbar(sm, ax=axes[2], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    return _finish(fig, axes, f"sample {i}, {label}: mean error outside the mask {out_err:.4f}, inside {in_err:.4f}")


@dataclass(frozen=True)
class SeedStats:
    """A metric over the training seeds of one EMASC kind: the mean, the spread (max - min) and every value."""

    mean: float
    spread: float
    values: tuple[float, ...]


def seed_stats(metrics: Mapping[str, Mapping[str, float]], kind: str, key: str) -> SeedStats:
    """Mean and spread of ``metrics[row][key]`` over the rows of ``kind`` (``kind``, ``kind_seed1``, ...).

    ``metrics`` maps ablation row keys (:func:`row_key`) to :func:`vtonlab.ladi.emasc.reconstruction_metrics`
    results. ``"none"`` has one row, so its spread is 0.
    """
    rows = [r for r in metrics if r == kind or (r.startswith(f"{kind}_seed") and r[len(kind) + 5:].isdigit())]
    if not rows:
        raise KeyError(f"no ablation rows of kind {kind!r}; rows: {', '.join(metrics)}")
    missing = [r for r in rows if key not in metrics[r]]
    if missing:
        raise KeyError(f"metric {key!r} missing from rows {missing}")
    vals = tuple(float(metrics[r][key]) for r in rows)
    return SeedStats(float(np.mean(vals)), float(max(vals) - min(vals)), vals)


def ablation_markdown(metrics: Mapping[str, Mapping[str, float]], keys: Mapping[str, str],
                      kinds: Sequence[str] = EMASC_KINDS, extractor: str | None = None) -> str:
    """A markdown table: one row per kind, one column per metric of ``keys`` (``{metric key: column title}``).

    Each cell is the mean over the kind's seeds (4 significant digits) followed by ``(spread s)``, ``s`` = max - min
    over the seeds (2 significant digits; none for a kind with one row, such as ``"none"``); the LPIPS extractor is
    written under the table."""
    head = "| EMASC | seeds | " + " | ".join(keys.values()) + " |"
    lines = [head, "|---|---|" + "---|" * len(keys)]
    for kind in kinds:
        cells = []
        n = 0
        for key in keys:
            s = seed_stats(metrics, kind, key)
            n = len(s.values)
            cells.append(f"{s.mean:.4g}" + (f" (spread {s.spread:.2g})" if n > 1 else ""))
        lines.append(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    if extractor:
        lines.append(f"\nLPIPS extractor: {extractor}")
    return "\n".join(lines)


def judge(a: float, b: float, spread: float, higher_is_better: bool = True) -> str:
    """``"yes"`` when ``a`` beats ``b`` by more than ``spread``, ``"no"`` when ``b`` beats ``a`` by more, else
    ``"within the seed spread"``. NaN anywhere gives ``"undetermined"``."""
    if any(math.isnan(float(v)) for v in (a, b, spread)):
        return "undetermined"
    gain = (a - b) if higher_is_better else (b - a)
    if gain > spread:
        return "yes"
    if -gain > spread:
        return "no"
    return "within the seed spread"
