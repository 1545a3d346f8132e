"""Pictures of try-on samples, and the render functions behind notebook 01's widget.

Every function takes sample dicts (``docs/architecture.md``) and returns an RGB array (uint8
(H, W, 3)) or a matplotlib Figure, so widgets stay thin::

    interact(lambda index, parsing, skeleton: show(browse(dataset, index, parsing=parsing, skeleton=skeleton)),
             index=(0, len(dataset) - 1), parsing=False, skeleton=True)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vtonlab.data.labels import CIHP_LABELS, CIHP_PALETTE, COCO18_NAMES
from vtonlab.data.representation import skeleton_image
from vtonlab.viz import to_numpy_image

LAYERS = ("parsing", "skeleton", "garment_mask", "agnostic", "inpaint_mask", "flow_grid")
"""Layers :func:`render_layers` can switch on."""


def to_uint8(x: torch.Tensor | np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """A (3, H, W) tensor in ``value_range`` (or an (H, W, 3) float array in [0, 1]) -> uint8 (H, W, 3)."""
    arr = to_numpy_image(x, value_range)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return np.round(arr * 255).astype(np.uint8)


def parse_rgb(parse: torch.Tensor | np.ndarray) -> np.ndarray:
    """Internal (CIHP) label map (H, W) -> uint8 RGB (H, W, 3) with the CIHP palette."""
    p = parse.detach().cpu().numpy() if isinstance(parse, torch.Tensor) else np.asarray(parse)
    p = p.astype(np.int64)
    if p.min() < 0 or p.max() >= len(CIHP_PALETTE):
        raise ValueError(f"parse: labels must be 0..{len(CIHP_PALETTE) - 1}, got {p.min()}..{p.max()}")
    return CIHP_PALETTE[p]


def _blend(base: np.ndarray, colour, mask: np.ndarray, opacity: float) -> np.ndarray:
    out = base.astype(np.float32)
    m = (np.asarray(mask, dtype=np.float32) * opacity)[..., None]
    out = out * (1 - m) + np.asarray(colour, dtype=np.float32) * m
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def grid_pattern(size: tuple[int, int], step: int, thickness: int = 1) -> np.ndarray:
    """Bool (H, W): lines every ``step`` pixels in x and y (through the centre row and column)."""
    h, w = size
    step = max(2, int(step))
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    return (((ys - h // 2) % step) < thickness) | (((xs - w // 2) % step) < thickness)


def gridded_cloth(sample: Mapping, step: int = 8) -> torch.Tensor:
    """The in-shop garment (3, H, W) in [-1, 1] with a dark grid drawn on the garment (inside its mask)."""
    cloth = sample["cloth"].float()
    h, w = cloth.shape[-2:]
    lines = torch.from_numpy(grid_pattern((h, w), step)).float() * sample["cloth_mask"][0].float()
    ink = torch.tensor([-0.9, -0.9, -0.6]).view(3, 1, 1)
    return cloth * (1 - lines) + ink * lines


def warp_with_flow(cloth: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sample an in-shop image (3, H, W) with a flow (H, W, 2) in [-1, 1] (``grid_sample``, align_corners=True).

    Where ``mask`` (1, H, W) is 0 the result is 0. Returns (3, H, W).
    """
    out = F.grid_sample(cloth[None].float(), flow[None].float(), mode="bilinear", padding_mode="border",
                        align_corners=True)[0]
    return out if mask is None else out * mask.float()


def render_layers(
    sample: Mapping,
    *,
    parsing: bool = False,
    skeleton: bool = True,
    garment_mask: bool = False,
    agnostic: bool = False,
    inpaint_mask: bool = False,
    flow_grid: bool = False,
    opacity: float = 0.5,
    grid_step: int = 8,
) -> np.ndarray:
    """The person of a sample with layers switched on, as uint8 RGB (H, W, 3).

    Args:
        sample: a sample dict.
        parsing: overlay the parsing colours.
        skeleton: draw the COCO-18 skeleton.
        garment_mask: tint the worn garment (``worn_mask``) green.
        agnostic: start from the clothing-agnostic person instead of the photo.
        inpaint_mask: tint the inpainting region magenta.
        flow_grid: show the ground-truth flow: a grid drawn on the in-shop garment, warped onto the
            person with ``gt_flow`` (needs a SynthVTON paired sample).
        opacity: of every overlay, clipped to [0, 1].
        grid_step: grid spacing in pixels (at least 2).
    """
    opacity = float(np.clip(opacity, 0.0, 1.0))
    out = to_uint8(sample["agnostic"] if agnostic else sample["image"])
    if parsing:
        colours = parse_rgb(sample["parse"]).astype(np.float32)
        out = np.clip(np.round(out * (1 - opacity) + colours * opacity), 0, 255).astype(np.uint8)
    if garment_mask:
        out = _blend(out, (40, 220, 60), sample["worn_mask"][0].numpy(), opacity)
    if inpaint_mask:
        out = _blend(out, (230, 40, 200), sample["inpaint_mask"][0].numpy(), opacity)
    if flow_grid:
        if "gt_flow" not in sample:
            raise KeyError("flow_grid needs a sample with 'gt_flow' (a SynthVTON sample in the paired setting)")
        warped = warp_with_flow(gridded_cloth(sample, grid_step), sample["gt_flow"], sample["gt_flow_mask"])
        m = sample["gt_flow_mask"][0].numpy()
        w = to_uint8(warped).astype(np.float32)
        alpha = (m * opacity)[..., None]
        out = np.clip(np.round(out * (1 - alpha) + w * alpha), 0, 255).astype(np.uint8)
    if skeleton:
        out = skeleton_image(sample["pose_keypoints"], out.shape[:2], background=out)
    return out


def render_cloth(sample: Mapping, *, flow_grid: bool = False, grid_step: int = 8, mask: bool = False) -> np.ndarray:
    """The in-shop garment as uint8 RGB; with ``flow_grid`` the grid that :func:`render_layers` warps."""
    if flow_grid:
        return to_uint8(gridded_cloth(sample, grid_step))
    out = to_uint8(sample["cloth"])
    if mask:
        out = _blend(out, (40, 220, 60), sample["cloth_mask"][0].numpy(), 0.5)
    return out


def browse(dataset: Sequence[Mapping], index: int, opacity: float = 0.5, grid_step: int = 8, **layers) -> np.ndarray:
    """Widget view of ``dataset[index]``: person with ``layers`` | in-shop garment, side by side (uint8 RGB).

    ``layers`` are the switches of :func:`render_layers`. ``flow_grid`` is ignored (not an error) for
    samples without ground-truth flow, so the widget works on unpaired and real data too.
    """
    n = len(dataset)
    if not 0 <= int(index) < n:
        raise IndexError(f"index: expected 0..{n - 1}, got {index}")
    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise TypeError(f"unknown layers {sorted(unknown)}; known: {', '.join(LAYERS)}")
    sample = dataset[int(index)]
    flow = bool(layers.get("flow_grid")) and "gt_flow" in sample
    layers = {**layers, "flow_grid": flow}
    person = render_layers(sample, opacity=opacity, grid_step=grid_step, **layers)
    cloth = render_cloth(sample, flow_grid=flow, grid_step=grid_step, mask=bool(layers.get("garment_mask")))
    gap = np.full((person.shape[0], max(2, person.shape[1] // 32), 3), 255, dtype=np.uint8)
    return np.concatenate([person, gap, cloth], axis=1)


def sample_grid(
    samples: Sequence[Mapping],
    columns: Sequence[str] = ("image", "cloth", "parse", "skeleton", "agnostic", "flow"),
    scale: float = 1.6,
    titles: bool | Sequence[str] = True,
):
    """A figure with one row per sample and one column per view; returns the matplotlib Figure.

    Views: any image key of the sample dict (``image``, ``cloth``, ``agnostic``, ``head``, masks,
    ``body_shape``), ``parse`` (colours), ``skeleton`` (on the person), ``pose`` (sum of the pose
    maps), ``flow`` (the in-shop grid warped by ``gt_flow``), ``layers`` (parsing overlay).
    ``titles``: ``True`` names the columns by view, a sequence gives the column titles, ``False`` none.
    """
    import matplotlib.pyplot as plt

    samples = list(samples)
    if not samples:
        raise ValueError("samples: need at least one sample")
    if isinstance(titles, bool):
        names = list(columns) if titles else None
    else:
        names = [str(t) for t in titles]
        if len(names) != len(columns):
            raise ValueError(f"titles: expected {len(columns)} titles (one per column), got {len(names)}")
    h, w = samples[0]["image"].shape[-2:]
    fig, axes = plt.subplots(len(samples), len(columns), squeeze=False,
                             figsize=(scale * len(columns) * w / h, scale * len(samples)))
    for r, s in enumerate(samples):
        for c, view in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(view_image(s, view))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if names and r == 0:
                ax.set_title(names[c], fontsize=9)
    fig.tight_layout(pad=0.3, w_pad=0.2, h_pad=0.2)
    return fig


def view_image(sample: Mapping, view: str) -> np.ndarray:
    """One named view of a sample as uint8 RGB (see :func:`sample_grid`)."""
    if view == "parse":
        return parse_rgb(sample["parse"])
    if view == "skeleton":
        return render_layers(sample, skeleton=True)
    if view == "layers":
        return render_layers(sample, parsing=True, skeleton=True, opacity=0.6)
    if view == "pose":
        return to_uint8(sample["pose_map"].sum(0).clamp(0, 1), (0.0, 1.0))
    if view == "flow":
        if "gt_flow" not in sample:
            return np.full((*sample["image"].shape[-2:], 3), 255, dtype=np.uint8)
        return render_layers(sample, skeleton=False, flow_grid=True, opacity=1.0)
    if view not in sample:
        raise KeyError(f"view: unknown view {view!r}")
    x = sample[view]
    if x.shape[0] == 1:  # masks and body shape in [0, 1]
        return to_uint8(x, (0.0, 1.0))
    return to_uint8(x)


def label_frequency_figure(counts: Mapping[int, int] | np.ndarray, title: str = "parsing label frequency"):
    """Bar chart of the share of pixels per internal label (``counts[label] = pixels``)."""
    import matplotlib.pyplot as plt

    c = np.zeros(len(CIHP_LABELS), dtype=np.float64)
    items = counts.items() if isinstance(counts, Mapping) else enumerate(np.asarray(counts))
    for k, v in items:
        c[int(k)] = float(v)
    share = c / max(c.sum(), 1.0)
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.bar(range(len(c)), share * 100, color=CIHP_PALETTE / 255.0, edgecolor="0.3", linewidth=0.5)
    ax.set_xticks(range(len(c)), CIHP_LABELS, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("% of pixels")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def pose_spread_figure(keypoints: torch.Tensor | np.ndarray, size: tuple[int, int], title: str = "keypoint spread"):
    """Scatter of every present keypoint (N, 18, 3) in image coordinates, coloured by keypoint."""
    import matplotlib.pyplot as plt

    kp = keypoints.numpy() if isinstance(keypoints, torch.Tensor) else np.asarray(keypoints)
    h, w = size
    fig, ax = plt.subplots(figsize=(3.2 * w / h + 1.6, 3.2))
    cmap = plt.get_cmap("hsv")
    for k, name in enumerate(COCO18_NAMES):
        present = kp[:, k, 2] > 0
        ax.scatter(kp[present, k, 0], kp[present, k, 1], s=4, color=cmap(k / len(COCO18_NAMES)), label=name, alpha=0.6)
    ax.set_xlim(0, w - 1)
    ax.set_ylim(h - 1, 0)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def attribute_counts_figure(attributes: Sequence[Mapping[str, str]], keys: Sequence[str] | None = None):
    """One bar chart per garment attribute (category, colour, pattern, ...) of a list of attribute dicts."""
    import matplotlib.pyplot as plt

    attributes = list(attributes)
    if not attributes:
        raise ValueError("attributes: need at least one attribute dict")
    keys = list(keys) if keys is not None else sorted({k for a in attributes for k in a})
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        counts = Counter(a.get(key, "?") for a in attributes).most_common()
        names = [n for n, _ in counts]
        ax.barh(range(len(names)), [v for _, v in counts], color="0.45")
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(key, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return fig
