"""Figures for LaDI-VTON's warping next to CP-VTON's GMM and MG-VTON's GML (notebook 10).

Render functions (each returns a matplotlib Figure, a numpy array or markdown text, and is unit-tested):

- :func:`matcher_setup_table`: the three geometric-matching set-ups (inputs, loss, grid, optimiser) as a
  markdown table, generated from their :class:`vtonlab.gmm.GMMConfig`.
- :func:`matcher_input_panels` / :func:`render_matcher_inputs`: what each matcher reads for one sample
  (person side, garment side) and what its loss compares the warp with.
- :func:`render_control_grids`: hand-made 5x5 TPS control grids with LaDI-VTON's bounded second-order
  constraint terms (:func:`vtonlab.gmm.tps_grid_constraints`).
- :func:`warp_error_map`: the per-pixel L1 error of a warped garment against the worn garment on white.
- :func:`render_refinement`: test samples before and after LaDI-VTON's refinement UNet, with error maps.
- :func:`render_matcher_browser`: the widget's picture, one test warp of one matcher with its error maps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vtonlab import gmm
from vtonlab.data.representation import POSE_STYLES
from vtonlab.viz import to_numpy_image

__all__ = [
    "PERSON_INPUTS",
    "matcher_setup_rows",
    "matcher_setup_table",
    "matcher_input_panels",
    "render_matcher_inputs",
    "render_control_grids",
    "warp_error_map",
    "render_refinement",
    "render_matcher_browser",
]

PERSON_INPUTS = {
    "cpvton": "body shape (1) + head RGB (3) + pose maps (18)",
    "gml": "body shape (1) + target garment mask (1)",
    "ladi": "masked person (3) + pose maps (18)",
}
"""What each person representation (:func:`vtonlab.gmm.person_representation`) stacks, channels in brackets."""

_GARMENT_INPUTS = {"rgb": "in-shop garment RGB (3)", "mask": "in-shop garment mask (1)"}
_LOSSES = {"rgb": "L1(warped garment, worn garment on white)", "mask": "L1(warped mask, worn mask)",
           "flow": "L1(sampling grid, true warp)"}


def _pose_text(person: str) -> str:
    if person == "gml":
        return "none"
    shape, radius, height = POSE_STYLES[gmm.POSE_STYLES[person]]
    what = "Gaussians exp(-d^2 / r^2), r =" if shape == "gaussian" else f"{shape}s, radius"
    return f"{what} {radius:g} px at {height} px height"


def matcher_setup_rows(configs: Mapping[str, gmm.GMMConfig]) -> list[dict[str, str]]:
    """One row per matcher, every cell derived from its config: ``{"matcher", "person input", "pose maps",
    "garment input", "loss", "grid", "regressor output", "correlation", "optimiser", "widths",
    "steps (this profile)"}``."""
    rows = []
    for label, c in configs.items():
        if not isinstance(c, gmm.GMMConfig):
            raise TypeError(f"configs[{label!r}]: expected a vtonlab.gmm.GMMConfig, got {type(c).__name__}")
        loss = _LOSSES[c.loss]
        if c.grid_reg:
            loss += f" + {c.grid_reg:g} x grid interval term"
        if c.tps_constraint:
            samples = "the first sample" if c.tps_constraint_samples == "first" else "every sample"
            loss += f" + {c.tps_constraint:g} x bounded grid constraints (collinearity on {samples})"
        if c.transform == "tps":
            lo = f"{-c.grid_range:g}"
            grid = f"{c.grid_size}x{c.grid_size} TPS in [{lo}, {c.grid_range:g}]"
            out = ("tanh = the control points" if c.tps_points == "absolute" else "control grid + tanh offsets")
        else:
            grid, out = "affine", "identity + tanh"
        out += ", starts at the identity" if c.zero_init else ", default init"
        sched = "" if c.lr_schedule == "constant" else f", {c.lr_schedule}"
        rows.append({"matcher": label, "person input": f"{PERSON_INPUTS[c.person]}: {c.person_channels} ch",
                     "pose maps": _pose_text(c.person), "garment input": _GARMENT_INPUTS[c.garment], "loss": loss,
                     "grid": grid, "regressor output": out,
                     "correlation": f"spatial axes = {c.correlation_spatial} locations",
                     "optimiser": f"Adam, lr {c.lr:g}, betas ({c.betas[0]:g}, {c.betas[1]:g}){sched}",
                     "widths": f"{c.width} ... {c.max_channels} channels",
                     "steps (this profile)": f"{c.steps} x batch {c.batch_size}"})
    return rows


def matcher_setup_table(configs: Mapping[str, gmm.GMMConfig]) -> str:
    """:func:`matcher_setup_rows` as a markdown table, one column per matcher (the set-ups side by side)."""
    rows = matcher_setup_rows(configs)
    if not rows:
        raise ValueError("configs is empty: expected {label: GMMConfig}")
    keys = [k for k in rows[0] if k != "matcher"]
    lines = ["| | " + " | ".join(r["matcher"] for r in rows) + " |", "|---|" + "---|" * len(rows)]
    lines += [f"| {k} | " + " | ".join(r[k] for r in rows) + " |" for k in keys]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _need(sample: Mapping, keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in sample]
    if missing:
        raise KeyError(f"{what} needs {', '.join(missing)} in the sample dict; it has {', '.join(map(str, sample))}")


def _one(sample: Mapping, key: str, channels: int | None = None) -> torch.Tensor:
    x = sample[key]
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or (channels is not None and x.shape[0] != channels):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"sample[{key!r}]: expected one sample ({channels or 'C'}, H, W), got {got}")
    return x


def matcher_input_panels(cpvton: Mapping[str, torch.Tensor],
                         ladi: Mapping[str, torch.Tensor]) -> dict[str, dict[str, list[tuple[str, np.ndarray, int]]]]:
    """The inputs and loss target of each matcher for one sample, as images in [0, 1].

    Args:
        cpvton: one sample dict (tensors ``(C, H, W)``) read with CP-VTON pose maps (``pose_style="cpvton"``).
        ladi: the same sample read with LaDI-VTON pose maps (``pose_style="ladi"``).
    Returns:
        ``{matcher: {"person": [(title, image, channels)], "garment": [...], "target": [...]}}`` for
        ``"CP-VTON GMM"``, ``"MG-VTON GML"``, ``"LaDI-VTON TPS"``; ``image`` is ``(H, W, 3)`` or ``(H, W)``;
        pose maps are shown as their maximum over the 18 channels; ``channels`` is how many input
        channels the panel stands for (the person panels add up to the representation's width).
    """
    _need(cpvton, ("body_shape", "head", "pose_map", "cloth", "cloth_mask", "worn_mask", "image"), "the CP-VTON / GML inputs")
    _need(ladi, ("agnostic", "pose_map", "cloth", "worn_mask", "image"), "the LaDI-VTON inputs")
    body, head = _one(cpvton, "body_shape", 1), _one(cpvton, "head", 3)
    pose_cp, pose_ladi = _one(cpvton, "pose_map"), _one(ladi, "pose_map")
    worn, cloth, cmask = _one(cpvton, "worn_mask", 1), _one(cpvton, "cloth", 3), _one(cpvton, "cloth_mask", 1)
    image, agnostic = _one(cpvton, "image", 3), _one(ladi, "agnostic", 3)
    shapes = {tuple(t.shape[-2:]) for t in (body, head, pose_cp, pose_ladi, worn, cloth, cmask, image, agnostic)}
    if len(shapes) != 1:
        raise ValueError(f"cpvton and ladi samples must share one image size, got sizes {sorted(shapes)}")
    if not torch.equal(_one(ladi, "image", 3), image):
        raise ValueError("cpvton and ladi must be the same sample (their 'image' differs): read one split twice, "
                         "once per pose style")
    target = image * worn + (1 - worn)  # the garment as worn, on white: CP-VTON's and LaDI-VTON's L1 target
    m01 = (0.0, 1.0)
    return {
        "CP-VTON GMM": {
            "person": [("body shape", to_numpy_image(body, m01), body.shape[0]),
                       ("head", to_numpy_image(head), head.shape[0]),
                       (f"pose: {pose_cp.shape[0]} squares", to_numpy_image(pose_cp.amax(0), m01), pose_cp.shape[0])],
            "garment": [("in-shop garment", to_numpy_image(cloth), cloth.shape[0])],
            "target": [("target: worn garment", to_numpy_image(target), 3)]},
        "MG-VTON GML": {
            "person": [("body shape", to_numpy_image(body, m01), body.shape[0]),
                       ("target mask (ground truth)", to_numpy_image(worn, m01), worn.shape[0])],
            "garment": [("in-shop mask", to_numpy_image(cmask, m01), cmask.shape[0])],
            "target": [("target: worn mask", to_numpy_image(worn, m01), 1)]},
        "LaDI-VTON TPS": {
            "person": [("masked person", to_numpy_image(agnostic), agnostic.shape[0]),
                       (f"pose: {pose_ladi.shape[0]} Gaussians", to_numpy_image(pose_ladi.amax(0), m01), pose_ladi.shape[0])],
            "garment": [("in-shop garment", to_numpy_image(cloth), cloth.shape[0])],
            "target": [("target: worn garment", to_numpy_image(target), 3)]},
    }


def render_matcher_inputs(cpvton: Mapping[str, torch.Tensor], ladi: Mapping[str, torch.Tensor], title: str | None = None):
    """One row per matcher: its person-side inputs (channel counts in the row label), garment input and loss target.

    ``cpvton`` / ``ladi``: the same sample read with each pose style (see :func:`matcher_input_panels`).
    """
    import matplotlib.pyplot as plt

    panels = matcher_input_panels(cpvton, ladi)
    n_person = max(len(p["person"]) for p in panels.values())
    ncols = n_person + 2
    h, w = cpvton["image"].shape[-2:]
    fig, axes = plt.subplots(len(panels), ncols, figsize=(1.75 * ncols * w / h + 0.6, 2.0 * len(panels)), squeeze=False)
    for r, (label, p) in enumerate(panels.items()):
        inputs = [(name, img, f" ({ch} ch)") for name, img, ch in p["person"]]
        slots = inputs + [None] * (n_person - len(inputs))
        slots += [(name, img, f" ({ch} ch)") for name, img, ch in p["garment"]] + [(name, img, "") for name, img, _ in p["target"]]
        for ax, slot in zip(axes[r], slots):
            ax.set_xticks([])
            ax.set_yticks([])
            if slot is None:
                ax.axis("off")
                continue
            name, img, suffix = slot
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_title(name + suffix, fontsize=7)
        channels = sum(ch for _, _, ch in p["person"])
        axes[r, 0].set_ylabel(f"{label}\nperson: {channels} ch", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------------------------
# Control grids and their constraint terms
# ----------------------------------------------------------------------------------------------


def render_control_grids(grids: Mapping[str, torch.Tensor], *, reference: torch.Tensor | None = None):
    """Hand-made TPS control grids and LaDI-VTON's constraint terms, one panel per grid.

    Args:
        grids: ``{name: points (K, 2)}``, ``K = n^2`` row-major ``(x, y)`` in normalised coordinates: where the
            fixed control grid samples the garment (:func:`vtonlab.gmm.tps_grid_constraints`).
        reference: ``(K, 2)`` drawn faintly behind each grid (e.g. the identity grid); optional.
    Each panel draws the grid's rows and columns (y downwards, as in an image) and lists the six terms; a term
    above its floor (:data:`vtonlab.gmm.CONSTRAINT_FLOOR`, :data:`vtonlab.gmm.COLLINEAR_FLOOR`) is red.
    The title gives the total.
    """
    import matplotlib.pyplot as plt

    if not grids:
        raise ValueError("grids is empty: expected {name: points (K, 2)}")
    fig, axes = plt.subplots(1, len(grids), figsize=(2.6 * len(grids), 3.3), squeeze=False)
    for ax, (name, pts) in zip(axes[0], grids.items()):
        if not isinstance(pts, torch.Tensor) or pts.ndim != 2 or pts.shape[-1] != 2:
            got = tuple(pts.shape) if isinstance(pts, torch.Tensor) else type(pts).__name__
            raise ValueError(f"grids[{name!r}]: expected points (K, 2), got {got}")
        n = int(round(math.sqrt(pts.shape[0])))
        terms = gmm.tps_grid_constraints(pts[None].detach().double(), n)
        p = pts.detach().double().view(n, n, 2).numpy()
        if reference is not None:
            ref = reference.detach().double().view(n, n, 2).numpy()
            for i in range(n):
                ax.plot(ref[i, :, 0], ref[i, :, 1], color="0.8", lw=0.8)
                ax.plot(ref[:, i, 0], ref[:, i, 1], color="0.8", lw=0.8)
        for i in range(n):
            ax.plot(p[i, :, 0], p[i, :, 1], color="tab:blue", lw=1.2)  # a grid row
            ax.plot(p[:, i, 0], p[:, i, 1], color="tab:orange", lw=1.2)  # a grid column
        ax.scatter(p[..., 0].ravel(), p[..., 1].ravel(), s=10, c="k", zorder=3)
        ax.set_xlim(-1.15, 1.15)
        ax.set_ylim(1.15, -1.15)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}\ntotal {terms['total'].item():.4f}", fontsize=8)
        for j, key in enumerate(("rx", "ry", "cx", "cy", "rg", "cg")):
            floor = gmm.CONSTRAINT_FLOOR if key in ("rx", "ry", "cx", "cy") else gmm.COLLINEAR_FLOOR
            value = terms[key].item()
            above = value > floor * (1 + 1e-9)
            ax.text(0.02 + 0.33 * (j % 3), -0.06 - 0.09 * (j // 3), f"{key} {value:.3f}", transform=ax.transAxes,
                    fontsize=7, va="top", color="tab:red" if above else "0.3", fontweight="bold" if above else "normal")
    fig.tight_layout()
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------------------------
# Warps and their errors
# ----------------------------------------------------------------------------------------------


def warp_error_map(output: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Per-pixel L1 error ``(H, W)`` in [0, 1]: ``mean_c |output - target|`` with both mapped from [-1, 1] to [0, 1].

    ``output``, ``target``: ``(3, H, W)`` in [-1, 1] (``output`` is clipped to that range first, as for display
    and the metrics). Its mean is the L1 loss of CP-VTON's GMM and of both LaDI-VTON stages, halved (they
    compare in [-1, 1]) up to the clipping.
    """
    for name, t in (("output", output), ("target", target)):
        if not isinstance(t, torch.Tensor) or t.ndim != 3 or t.shape[0] != 3:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a (3, H, W) tensor in [-1, 1], got {got}")
    if output.shape != target.shape:
        raise ValueError(f"output {tuple(output.shape)} and target {tuple(target.shape)} must have the same shape")
    return np.abs(to_numpy_image(output) - to_numpy_image(target)).mean(-1)


def _target(image: torch.Tensor, worn_mask: torch.Tensor) -> torch.Tensor:
    return image * worn_mask + (1 - worn_mask)


def _check_results(results: Mapping, keys: Sequence[str], what: str) -> int:
    missing = [k for k in keys if k not in results]
    if missing:
        raise KeyError(f"{what} is missing {', '.join(missing)}; it has {', '.join(map(str, results))}")
    return int(results[keys[0]].shape[0])


def _index(index: int, n: int) -> int:
    if not -n <= int(index) < n:
        raise IndexError(f"index must be in [0, {n - 1}], got {index}")
    return int(index) % n


def render_refinement(results: Mapping[str, torch.Tensor], indices: Sequence[int] = (0, 1, 2, 3),
                      cloth: torch.Tensor | None = None, vmax: float | None = None):
    """Test samples before and after LaDI-VTON's refinement: one row per sample.

    Columns: person, in-shop garment (when given), TPS warp, refined warp, target (worn garment on white), and the
    :func:`warp_error_map` of the TPS warp and of the refined warp against the target, on one colour scale.

    Args:
        results: :func:`vtonlab.ladi.warping.evaluate_refined` with ``keep=True``: ``"image"``, ``"warped"``,
            ``"refined"``, ``"worn_mask"`` ``(N, C, H, W)``; uses ``"cloth"`` too when present.
        indices: which samples, one row each.
        cloth: ``(N, 3, H, W)`` in-shop garments (``evaluate_refined`` does not keep them).
        vmax: top of the error colour scale (default: the 99th percentile of the shown maps, at least 0.05).
    """
    import matplotlib.pyplot as plt

    n = _check_results(results, ("image", "warped", "refined", "worn_mask"), "results")
    cloth = cloth if cloth is not None else results.get("cloth")
    if cloth is not None and (not isinstance(cloth, torch.Tensor) or tuple(cloth.shape) != tuple(results["image"].shape)):
        got = tuple(cloth.shape) if isinstance(cloth, torch.Tensor) else type(cloth).__name__
        raise ValueError(f"cloth must have the shape of results['image'] {tuple(results['image'].shape)}, got {got}")
    rows = [_index(i, n) for i in indices]
    if not rows:
        raise ValueError("indices is empty: expected at least one sample index")
    errors = []
    for i in rows:
        t = _target(results["image"][i], results["worn_mask"][i])
        errors.append((warp_error_map(results["warped"][i], t), warp_error_map(results["refined"][i], t)))
    top = vmax if vmax is not None else max(0.05, float(np.percentile(np.stack([e for pair in errors for e in pair]), 99)))
    ncols = 6 + (cloth is not None)
    h, w = results["image"].shape[-2:]
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.6 * ncols * w / h + 0.9, 1.75 * len(rows) + 0.3), squeeze=False)
    im = None
    for r, (i, (e_tps, e_ref)) in enumerate(zip(rows, errors)):
        views = [(results["image"][i], f"person #{i}")]
        if cloth is not None:
            views.append((cloth[i], "in-shop garment"))
        views += [(results["warped"][i], "TPS warp"), (results["refined"][i], "refined warp"),
                  (_target(results["image"][i], results["worn_mask"][i]), "target")]
        for ax, (img, name) in zip(axes[r], views):
            ax.imshow(to_numpy_image(img), vmin=0, vmax=1)
            ax.set_title(name, fontsize=7)
        for ax, (e, name) in zip(axes[r, len(views):], ((e_tps, "|TPS - target|"), (e_ref, "|refined - target|"))):
            im = ax.imshow(e, cmap="magma", vmin=0, vmax=top)
            ax.set_title(f"{name}\nmean {e.mean():.3f}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    cbar = fig.colorbar(im, cax=fig.add_axes((0.94, 0.2, 0.012, 0.6)))
    cbar.ax.tick_params(labelsize=6)
    cbar.set_label("L1 error ([0, 1] images)", fontsize=7)
    plt.close(fig)
    return fig


_METRIC_FORMATS = (("epe_px", "EPE", "{:.2f} px"), ("iou", "IoU", "{:.3f}"), ("ssim", "SSIM", "{:.3f}"),
                   ("lpips", "LPIPS", "{:.3f}"))


def render_matcher_browser(results: Mapping[str, Mapping[str, torch.Tensor]], matcher: str, index: int = 0,
                           max_epe: float | None = None, lpips_name: str = "LPIPS"):
    """One test warp of one matcher: person, in-shop garment, warped garment, target, L1 error map, EPE map.

    Args:
        results: ``{matcher: evaluation}``; each evaluation holds ``"image"``, ``"cloth"``, ``"warped"`` (the
            matcher's output garment) and ``"worn_mask"`` ``(N, C, H, W)``, and optionally ``"epe_map"``
            ``(N, H, W)`` (NaN where there is no ground truth), per-sample ``"epe_px"``, ``"iou"``, ``"ssim"``,
            ``"lpips"`` ``(N,)`` and ``"names"`` (as :func:`vtonlab.gmm.evaluate_warps` with ``keep=True`` returns).
        matcher: a key of ``results`` (the widget's dropdown).
        index: the test sample (the widget's slider); negative counts from the end.
        max_epe: top of the EPE colour scale (default: the map's 99th percentile, at least 1 px).
        lpips_name: the LPIPS metric's name, for the title (e.g. ``LPIPSMetric.name``).
    A matcher without ``"epe_map"`` (the refinement outputs an image, not a sampling grid) gets an EPE panel that
    says so, so every matcher shows the same six panels.
    """
    import matplotlib.pyplot as plt

    if matcher not in results:
        raise KeyError(f"matcher {matcher!r} is not in results; expected one of {list(results)}")
    res = results[matcher]
    n = _check_results(res, ("image", "cloth", "warped", "worn_mask"), f"results[{matcher!r}]")
    i = _index(index, n)
    image, warped, worn = res["image"][i], res["warped"][i], res["worn_mask"][i]
    target = _target(image, worn)
    err = warp_error_map(warped, target)
    h, w = image.shape[-2:]
    fig, axes = plt.subplots(1, 6, figsize=(2.0 * 6 * w / h + 1.4, 2.9))
    for ax, (img, name) in zip(axes, ((image, "person"), (res["cloth"][i], "in-shop garment"), (warped, "warped garment"),
                                      (target, "target: worn garment"))):
        ax.imshow(to_numpy_image(img), vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
    im = axes[4].imshow(err, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=axes[4], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    axes[4].set_title(f"|warped - target|\nmean {err.mean():.3f}", fontsize=8)
    if "epe_map" in res:
        e = res["epe_map"][i]
        e = e.detach().float().cpu().numpy() if isinstance(e, torch.Tensor) else np.asarray(e, dtype=np.float32)
        if e.shape != (h, w):
            raise ValueError(f"results[{matcher!r}]['epe_map'][{i}] must have shape ({h}, {w}), got {e.shape}")
        finite = e[np.isfinite(e)]
        top = max_epe if max_epe is not None else max(1.0, float(np.percentile(finite, 99)) if finite.size else 1.0)
        axes[5].imshow(to_numpy_image(image).mean(-1), cmap="gray", vmin=0, vmax=1, alpha=0.5)
        im = axes[5].imshow(np.ma.masked_invalid(e), cmap="magma", vmin=0, vmax=top)
        fig.colorbar(im, ax=axes[5], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        axes[5].set_title("end-point error (px)\n" + (f"mean {finite.mean():.2f}" if finite.size else "no visible garment"),
                          fontsize=8)
    else:
        axes[5].text(0.5, 0.5, "no sampling grid:\nno end-point error", ha="center", va="center", fontsize=8,
                     transform=axes[5].transAxes)
        axes[5].set_title("end-point error", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    parts = [f"{matcher}: test sample {i}" + (f" ({res['names'][i]})" if "names" in res else "")]
    for key, label, fmt in _METRIC_FORMATS:
        if key in res:
            value = float(res[key][i])
            parts.append(f"{lpips_name if key == 'lpips' else label} " + ("-" if math.isnan(value) else fmt.format(value)))
    fig.suptitle(",  ".join(parts), fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig
