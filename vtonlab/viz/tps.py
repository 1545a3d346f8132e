"""Figures for thin-plate splines and geometric matching (notebooks 03 and 04).

Render functions behind the widgets (each returns a matplotlib Figure and is unit-tested, extreme
slider values included):

- :func:`render_tps_warp`: drag one control point of a TPS and see the sampling grid on the source
  garment and the warped garment (notebook 03).
- :func:`render_warp_errors` / :func:`render_warp_browser`: one GMM test warp with its error maps:
  the end-point error against SynthVTON's ``gt_flow`` and the colour error inside the worn mask
  (notebook 04).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from vtonlab import tps
from vtonlab.viz import finish_figure as _finish
from vtonlab.viz import to_numpy_image

__all__ = ["demo_garment", "render_tps_warp", "render_warp_errors", "render_warp_browser", "correlation_figure"]


def demo_garment(size: tuple[int, int] = (128, 96)) -> torch.Tensor:
    """A procedurally drawn T-shirt on white with a checker pattern and a round logo, ``(3, H, W)`` in [-1, 1].

    Checkers make every deformation visible; it needs no dataset (notebook 03).
    """
    h, w = (int(s) for s in size)
    if h < 8 or w < 8:
        raise ValueError(f"size must be at least (8, 8), got {(h, w)}")
    ss = 4  # drawn at 4x and averaged: anti-aliased edges
    g = tps.pixel_grid((h * ss, w * ss), dtype=torch.float64)
    x, y = g[..., 0], g[..., 1]
    body = (x.abs() <= 0.52) & (y >= -0.62) & (y <= 0.92)
    sleeve = (y >= -0.62) & (y <= -0.62 + 0.45 - 0.35 * (x.abs() - 0.52) / 0.4) & (x.abs() <= 0.92)
    neck = ((x / 0.22) ** 2 + ((y + 0.66) / 0.16) ** 2) <= 1
    shirt = (body | sleeve) & ~neck
    cells = ((torch.floor((x + 1) * 5) + torch.floor((y + 1) * 6)) % 2).bool()
    c1 = torch.tensor([0.15, 0.35, 0.75], dtype=torch.float64)
    c2 = torch.tensor([0.92, 0.75, 0.25], dtype=torch.float64)
    rgb = torch.where(cells[..., None], c1, c2)
    logo = (((x - 0.18) / 0.17) ** 2 + ((y + 0.15) / 0.17 * h / w * 0.75) ** 2) <= 1
    rgb = torch.where(logo[..., None], torch.tensor([0.85, 0.1, 0.15], dtype=torch.float64), rgb)
    rgb = torch.where(shirt[..., None], rgb, torch.ones(3, dtype=torch.float64))
    rgb = torch.nn.functional.avg_pool2d(rgb.permute(2, 0, 1)[None], ss)[0]
    return (rgb * 2 - 1).float()


def _to_px(points: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (x, y) -> pixel column/row (align_corners=True)."""
    return (points[..., 0] + 1) * (w - 1) / 2, (points[..., 1] + 1) * (h - 1) / 2


def render_tps_warp(
    garment: torch.Tensor | None = None,
    point: int = 12,
    dx: float = 0.0,
    dy: float = 0.0,
    *,
    grid_size: int = 5,
    range: float = 1.0,
    lines: int = 9,
    reg: float = 0.0,
):
    """Move control point ``point`` by ``(dx, dy)`` and show the TPS warp of ``garment``.

    The content at the control point moves to the new position (``src = c``, ``dst = c + d``;
    :func:`vtonlab.tps.warp_image`). Left: the source garment with the *sampling grid*, i.e. where
    the output's regular grid lines read the input (the TPS from ``dst`` to ``src``). Right: the warped
    garment with the regular grid and the moved point. The title gives the bending energy.

    Args:
        garment: ``(3, H, W)`` in [-1, 1]; default :func:`demo_garment`.
        point: control point index in ``[0, grid_size^2)`` (row-major, y outer).
        dx, dy: displacement in normalised units (the image spans 2). Any value is allowed; when the
            moved point (nearly) coincides with another one the exact system is singular, and a tiny
            smoothing term (``reg = 1e-3``) is used instead (said in the title).
        grid_size, range: the control grid (:func:`vtonlab.tps.control_grid`).
        lines: number of grid lines drawn per direction.
        reg: smoothing term of the TPS (0 = exact interpolation).
    """
    import matplotlib.pyplot as plt

    garment = demo_garment() if garment is None else garment
    if not isinstance(garment, torch.Tensor) or garment.ndim != 3 or garment.shape[0] not in (1, 3):
        raise ValueError(f"garment must be a (3, H, W) tensor in [-1, 1], got "
                         f"{tuple(garment.shape) if isinstance(garment, torch.Tensor) else type(garment).__name__}")
    k = int(grid_size) ** 2
    if not 0 <= int(point) < k:
        raise IndexError(f"point must be in [0, {k - 1}] for a {grid_size}x{grid_size} grid, got {point}")
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise ValueError(f"dx and dy must be finite, got {dx}, {dy}")
    h, w = garment.shape[-2:]
    ctrl = tps.control_grid(grid_size, range, dtype=torch.float64)[None]
    dst = ctrl.clone()
    dst[0, point] += torch.tensor([dx, dy], dtype=torch.float64)
    note = ""
    if reg == 0:
        others = torch.cat([dst[0, :point], dst[0, point + 1:]])
        if (others - dst[0, point]).norm(dim=-1).min() < 1e-3:
            reg, note = 1e-3, " (points coincide: smoothing reg=1e-3)"
    out = tps.warp_image(garment[None].double(), ctrl, dst, reg, padding_mode="border")[0]
    energy = tps.bending_energy(tps.solve(dst, ctrl, reg)).item()  # the sampling map dst -> src
    energy = 0.0 if abs(energy) < 1e-10 else energy  # round-off of an affine (here: identity) map

    # Sampling-grid lines: for each regular line of the output, where it reads the input.
    t = torch.linspace(-1, 1, 100, dtype=torch.float64)
    ticks = torch.linspace(-1, 1, lines, dtype=torch.float64)
    polylines = [torch.stack([torch.full_like(t, v), t], -1) for v in ticks]
    polylines += [torch.stack([t, torch.full_like(t, v)], -1) for v in ticks]
    flat = torch.cat(polylines)[None]
    mapped = tps.evaluate(flat, tps.solve(dst, ctrl, reg))[0].reshape(len(polylines), -1, 2).numpy()

    cx, cy = _to_px(ctrl[0].numpy(), h, w)
    tx, ty = _to_px(dst[0].numpy(), h, w)
    # show the whole image, and moved points that left it
    x0, x1 = min(-0.5, float(tx.min()) - 2), max(w - 0.5, float(tx.max()) + 2)
    y0, y1 = min(-0.5, float(ty.min()) - 2), max(h - 0.5, float(ty.max()) + 2)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 7.2 * (y1 - y0) / (x1 - x0) / 2 + 0.9))
    src_img = to_numpy_image(garment)
    axes[0].imshow(src_img, cmap="gray" if src_img.ndim == 2 else None, vmin=0, vmax=1)
    for line in mapped:
        px, py = _to_px(line, h, w)
        axes[0].plot(px, py, color="black", lw=0.7, alpha=0.7)
    axes[0].scatter(cx, cy, s=14, c="tab:red", zorder=3)
    axes[0].annotate("", xy=(tx[point], ty[point]), xytext=(cx[point], cy[point]),
                     arrowprops=dict(arrowstyle="->", color="tab:red", lw=1.5))
    axes[0].set_title("source + sampling grid", fontsize=9)

    warped = to_numpy_image(out)
    axes[1].imshow(warped, cmap="gray" if warped.ndim == 2 else None, vmin=0, vmax=1)
    for v in ticks.numpy():
        px, _ = _to_px(np.array([v, 0.0]), h, w)
        _, py = _to_px(np.array([0.0, v]), h, w)
        axes[1].axvline(px, color="black", lw=0.5, alpha=0.5)
        axes[1].axhline(py, color="black", lw=0.5, alpha=0.5)
    mask = np.ones(k, dtype=bool)
    mask[point] = False
    axes[1].scatter(tx[mask], ty[mask], s=14, c="tab:red", zorder=3)
    axes[1].scatter([tx[point]], [ty[point]], s=60, c="tab:red", marker="*", zorder=3)
    axes[1].set_title("warped: content at the dot moved to the star", fontsize=9)
    for ax in axes:
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"point {point} moved by ({dx:+.2f}, {dy:+.2f}); bending energy {energy:.3g}{note}", fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _overlay_error(ax, base: np.ndarray, err: np.ndarray, vmax: float, cmap: str, label: str, fig) -> None:
    grey = base.mean(-1) if base.ndim == 3 else base
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, alpha=0.5)
    im = ax.imshow(np.ma.masked_invalid(err), cmap=cmap, vmin=0, vmax=vmax)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    cbar.ax.tick_params(labelsize=6)
    cbar.set_label(label, fontsize=7)


def render_warp_errors(
    cloth: torch.Tensor,
    image: torch.Tensor,
    warped: torch.Tensor,
    worn_mask: torch.Tensor,
    epe_map: torch.Tensor | None = None,
    *,
    warped_mask: torch.Tensor | None = None,
    title: str | None = None,
    max_epe: float | None = None,
):
    """One warp and its error maps: garment, person, warped garment, try-on overlay, EPE map, colour error.

    Args:
        cloth, image, warped: ``(3, H, W)`` in [-1, 1] (in-shop garment, person, warped garment).
        worn_mask: ``(1, H, W)`` the garment on the person.
        epe_map: ``(H, W)`` end-point error in in-shop pixels, NaN where there is no ground truth
            (:func:`vtonlab.metrics.warp.epe_map`); omitted for real data.
        warped_mask: ``(1, H, W)`` the warped in-shop mask: the overlay pastes the warped garment
            through it, so a wrong shape shows (default: through ``worn_mask``).
        max_epe: top of the EPE colour scale (default: the map's 99th percentile, at least 1 px).
    """
    import matplotlib.pyplot as plt

    for name, t, c in (("cloth", cloth, 3), ("image", image, 3), ("warped", warped, 3), ("worn_mask", worn_mask, 1)):
        if not isinstance(t, torch.Tensor) or t.ndim != 3 or t.shape[0] != c:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a ({c}, H, W) tensor, got {got}")
    h, w = image.shape[-2:]
    m = to_numpy_image(worn_mask, (0.0, 1.0))
    person, garment, warp = to_numpy_image(image), to_numpy_image(cloth), to_numpy_image(warped)
    paste = m if warped_mask is None else to_numpy_image(warped_mask, (0.0, 1.0))
    tryon = warp * paste[..., None] + person * (1 - paste[..., None])
    colour_err = np.abs(warp - person).mean(-1)
    colour_err = np.where(m > 0.5, colour_err, np.nan)

    panels = 6 if epe_map is not None else 5
    fig, axes = plt.subplots(1, panels, figsize=(2.2 * panels * w / h + 1.2, 3.0))
    views = [(garment, "in-shop garment"), (person, "person"), (warp, "warped garment"),
             (tryon, "warped on person" if warped_mask is not None else "warped, in worn mask")]
    for ax, (img, name) in zip(axes, views):
        ax.imshow(img, vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
    i = 4
    if epe_map is not None:
        e = epe_map.detach().float().cpu().numpy() if isinstance(epe_map, torch.Tensor) else np.asarray(epe_map)
        if e.shape != (h, w):
            raise ValueError(f"epe_map must have shape ({h}, {w}), got {e.shape}")
        finite = e[np.isfinite(e)]
        top = max_epe if max_epe is not None else max(1.0, float(np.percentile(finite, 99)) if finite.size else 1.0)
        _overlay_error(axes[i], person, e, top, "magma", "EPE (in-shop px)", fig)
        mean = f"mean {finite.mean():.2f} px" if finite.size else "no visible garment"
        axes[i].set_title(f"end-point error\n{mean}", fontsize=8)
        i += 1
    _overlay_error(axes[i], person, colour_err, 1.0, "viridis", "|warped - person|", fig)
    axes[i].set_title("colour error\ninside worn mask", fontsize=8)
    return _finish(fig, axes, title)


def render_warp_browser(results: Mapping[str, torch.Tensor], index: int = 0, max_epe: float | None = None):
    """Browse a batch of evaluated warps: ``results`` as returned by :func:`vtonlab.gmm.evaluate_warps`.

    Needs ``cloth``, ``image``, ``warped``, ``worn_mask`` ``(N, ...)``; uses ``warped_mask``, ``epe_map``,
    ``epe_px``, ``iou``, ``ssim`` and ``names`` when present.
    """
    missing = [k for k in ("cloth", "image", "warped", "worn_mask") if k not in results]
    if missing:
        raise KeyError(f"results are missing {', '.join(missing)}")
    n = results["image"].shape[0]
    if not -n <= int(index) < n:
        raise IndexError(f"index must be in [0, {n - 1}], got {index}")
    i = int(index) % n
    parts = [f"test sample {i}"]
    if "names" in results:
        parts[0] += f" ({results['names'][i]})"
    for key, label, fmt in (("epe_px", "EPE", "{:.2f} px"), ("iou", "IoU", "{:.3f}"), ("ssim", "SSIM", "{:.3f}")):
        if key in results:
            parts.append(f"{label} " + fmt.format(float(results[key][i])))
    epe = results["epe_map"][i] if "epe_map" in results else None
    wmask = results["warped_mask"][i] if "warped_mask" in results else None
    return render_warp_errors(results["cloth"][i], results["image"][i], results["warped"][i],
                              results["worn_mask"][i], epe, warped_mask=wmask, title=",  ".join(parts),
                              max_epe=max_epe)


def correlation_figure(person: torch.Tensor, cloth: torch.Tensor, correlation: torch.Tensor, row: int, col: int,
                       title: str | None = None):
    """For one person location, its correlation with every garment location (CP-VTON Sec. 3.1).

    Args:
        person: ``(3, H, W)`` in [-1, 1], the person image (for orientation).
        cloth: ``(3, H, W)`` in [-1, 1], the in-shop garment.
        correlation: ``(h*w, h, w)`` correlation of one sample in CP-VTON's layout (:func:`vtonlab.gmm.correlation`):
            channel ``k = col * h + row`` is person location ``(row, col)``, its map is over garment locations.
        row, col: the person feature location, in ``[0, h) x [0, w)``.
    """
    import matplotlib.pyplot as plt

    if correlation.ndim != 3 or correlation.shape[0] != correlation.shape[1] * correlation.shape[2]:
        raise ValueError(f"correlation must have shape (h*w, h, w), got {tuple(correlation.shape)}")
    _, fh, fw = correlation.shape
    if not (0 <= row < fh and 0 <= col < fw):
        raise IndexError(f"(row, col) must be in [0, {fh - 1}] x [0, {fw - 1}], got ({row}, {col})")
    h, w = person.shape[-2:]
    cmap_vals = correlation[col * fh + row].detach().float().cpu().numpy()  # column-major person index
    fig, axes = plt.subplots(1, 3, figsize=(6.6, 2.9))
    axes[0].imshow(to_numpy_image(person))
    sy, sx = h / fh, w / fw
    axes[0].add_patch(plt.Rectangle((col * sx - 0.5, row * sy - 0.5), sx, sy, fill=False, edgecolor="red", lw=2))
    axes[0].set_title(f"person cell ({row}, {col})", fontsize=8)
    axes[1].imshow(to_numpy_image(cloth))
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    axes[1].imshow(cmap_vals, cmap="magma", alpha=0.55, extent=extent, interpolation="nearest")
    best = np.unravel_index(np.argmax(cmap_vals), cmap_vals.shape)
    axes[1].add_patch(plt.Rectangle((best[1] * sx - 0.5, best[0] * sy - 0.5), sx, sy, fill=False,
                                    edgecolor="cyan", lw=2))
    axes[1].set_title("over the garment (best: cyan)", fontsize=8)
    im = axes[2].imshow(cmap_vals, cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    axes[2].set_title(f"correlation map ({fh}x{fw})", fontsize=8)
    return _finish(fig, axes, title)
