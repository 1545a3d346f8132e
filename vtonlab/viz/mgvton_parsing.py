"""Figures for MG-VTON's conditional human parsing (notebook 06).

Render functions (each returns a matplotlib Figure, an array or markdown text, and is unit-tested):

- :func:`label_image`, :func:`error_map`, :func:`pair_miou`: a parsing in the CIHP colours, the pixels where a
  predicted parsing differs from the truth, and the mIoU of one pair.
- :func:`config_table`: what a profile's :class:`~vtonlab.mgvton.parsing.ParsingConfig` changes from the paper's.
- :func:`input_panels` / :func:`render_parsing_inputs`: the generator's 24 input channels ``[M_h, M_f, M_b, C, P]``
  of one pair, as pictures.
- :func:`render_pose_warp`: the two baselines (the source parsing unchanged; moved by a keypoint TPS) next to the
  truth, with the keypoint motion drawn.
- :func:`plot_training_curves`: the loss terms of a training history (generator and discriminator).
- :func:`results_rows` / :func:`results_table`, :func:`plot_per_class_iou`: mIoU and pixel accuracy of the model and
  both baselines (:func:`vtonlab.mgvton.parsing.evaluate_parsing`), per-class IoU bars.
- :func:`render_parsing_results`: test pairs with every prediction and the model's error map.
- :func:`render_parsing_browser`: the widget's picture for one test pair.

Label maps are integer tensors ``(H, W)`` (one pair) or ``(N, H, W)`` over the internal (CIHP) labels; images are
``(3, H, W)`` in [-1, 1]; keypoints ``(18, 3)`` COCO-18 x, y in pixels and confidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from vtonlab.data.labels import INTERNAL_LABELS
from vtonlab.data.representation import skeleton_image
from vtonlab.mgvton import parsing
from vtonlab.mgvton.networks import shape_of as _shape
from vtonlab.viz import check_index as _index
from vtonlab.viz import check_label_map as _labels
from vtonlab.viz import config_table as shared_config_table
from vtonlab.viz import finish_figure, to_numpy_image
from vtonlab.viz import require_keys as _need
from vtonlab.viz.data import parse_rgb

__all__ = [
    "IMAGE_KEYS",
    "PICTURE_KEYS",
    "METHODS",
    "SHORT_NAMES",
    "ERROR_COLOUR",
    "CORRECT_COLOUR",
    "label_image",
    "error_map",
    "pair_miou",
    "config_table",
    "input_panels",
    "render_parsing_inputs",
    "render_pose_warp",
    "plot_training_curves",
    "results_rows",
    "results_table",
    "plot_per_class_iou",
    "render_parsing_results",
    "render_parsing_browser",
]

IMAGE_KEYS: tuple[tuple[str, str, str], ...] = (("source_image", "source", "image"), ("target_image", "target", "image"))
"""The person images of a pair, in :func:`vtonlab.mgvton.parsing.preload_pairs`' ``pair_keys`` form."""
PICTURE_KEYS = parsing.PAIR_KEYS + IMAGE_KEYS
"""``preload_pairs(data, pair_keys=PICTURE_KEYS)``: the pair keys the model reads plus both person images."""

METHODS = {"model": "MG-VTON parsing", "source": "source parsing (unchanged)", "pose_warp": "pose warp (keypoint TPS)"}
"""The methods of :func:`vtonlab.mgvton.parsing.evaluate_parsing` and their names in tables and legends."""
SHORT_NAMES = {"model": "model", "source": "baseline 1: source", "pose_warp": "baseline 2: pose warp"}
"""The methods' names in the titles of picture columns."""

ERROR_COLOUR = (0.85, 0.1, 0.1)
"""RGB in [0, 1] of a wrongly labelled pixel in :func:`error_map`."""
CORRECT_COLOUR = (0.9, 0.9, 0.9)
"""RGB in [0, 1] of a correctly labelled pixel in :func:`error_map`."""

_INPUT_TITLES = {"hair": "$M_h$: source hair", "face": "$M_f$: source face", "body_shape": "$M_b$: source body shape",
                 "cloth": "$C$: in-shop garment", "target_pose": "$P$: target pose (max)"}


# ----------------------------------------------------------------------------------------------
# Checks and small pieces
# ----------------------------------------------------------------------------------------------


def _keypoints(name: str, x, n: int | None = None) -> torch.Tensor:
    want = (n, 18, 3) if n is not None else (18, 3)
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != want:
        raise ValueError(f"{name}: expected {want} COCO-18 keypoints (x, y in pixels, confidence), got {_shape(x)}")
    return x


def _images(name: str, x, n: int, size: tuple[int, int]) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, 3, *size):
        raise ValueError(f"{name}: expected ({n}, 3, {size[0]}, {size[1]}) images in [-1, 1], got {_shape(x)}")
    return x


def label_image(labels: torch.Tensor) -> np.ndarray:
    """A parsing ``(H, W)`` (internal labels) in the CIHP palette: uint8 ``(H, W, 3)``."""
    return parse_rgb(_labels("labels", labels, 2))


def error_map(pred: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Where a predicted parsing ``(H, W)`` differs from the true one ``(H, W)``: float ``(H, W, 3)`` in [0, 1],
    :data:`ERROR_COLOUR` at wrong pixels, :data:`CORRECT_COLOUR` elsewhere."""
    pred, target = _labels("pred", pred, 2), _labels("target", target, 2)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)}: expected one shape (H, W)")
    wrong = (pred != target).cpu().numpy()[..., None]
    return np.where(wrong, np.asarray(ERROR_COLOUR, np.float32), np.asarray(CORRECT_COLOUR, np.float32))


def pair_miou(pred: torch.Tensor, target: torch.Tensor) -> float:
    """The mIoU of one pair (:func:`vtonlab.mgvton.parsing.parsing_miou` over its pixels only), ``(H, W)`` each."""
    pred, target = _labels("pred", pred, 2), _labels("target", target, 2)
    return parsing.parsing_miou(pred, target)[0]


def config_table(config: parsing.ParsingConfig, reference: parsing.ParsingConfig | None = None) -> str:
    """Markdown table of the options where ``config`` differs from ``reference`` (default: ``ParsingConfig()``, whose
    networks, optimiser and image size are the paper's): ``| option | reference | this config |``; one line saying so
    when none differ."""
    return shared_config_table(config, reference, parsing.ParsingConfig)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def input_panels(x: torch.Tensor) -> list[tuple[str, np.ndarray, int]]:
    """The generator input of ONE pair, ``(24, H, W)`` (:func:`~vtonlab.mgvton.parsing.parsing_input` of a batch, one
    row), split by :data:`~vtonlab.mgvton.parsing.INPUT_LAYOUT`: ``[(title, image in [0, 1], channels)]``.

    The masks and the body shape (stored in [-1, 1]) and the garment are mapped to [0, 1]; the 18 pose heatmaps are
    shown as their maximum over the channels.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] != parsing.INPUT_CHANNELS:
        raise ValueError(f"x: expected one generator input ({parsing.INPUT_CHANNELS}, H, W) (parsing_input, one row), "
                         f"got {_shape(x)}")
    panels, start = [], 0
    for name, channels in parsing.INPUT_LAYOUT:
        part = x[start:start + channels].detach().float()
        start += channels
        if name == "target_pose":
            img = to_numpy_image(part.amax(0), (0.0, 1.0))
        else:
            img = to_numpy_image(part)
        panels.append((_INPUT_TITLES.get(name, name), img, channels))
    return panels


def render_parsing_inputs(x: torch.Tensor, *, source_image: torch.Tensor | None = None,
                          source_parse: torch.Tensor | None = None, target_image: torch.Tensor | None = None,
                          target_parse: torch.Tensor | None = None, title: str | None = None):
    """One pair: (optionally) the source person and parsing, the five input groups of ``x`` ``(24, H, W)`` with their
    channel counts, and (optionally) the target person and parsing the generator must predict."""
    import matplotlib.pyplot as plt

    panels = input_panels(x)
    size = tuple(x.shape[-2:])
    before, after = [], []
    for name, img, store in (("source person", source_image, before), ("source parsing", source_parse, before),
                             ("target person (truth)", target_image, after),
                             ("target parsing (truth)", target_parse, after)):
        if img is None:
            continue
        if "parsing" in name:
            shown = label_image(_labels(name, img, 2))
        else:
            if not isinstance(img, torch.Tensor) or img.ndim != 3 or img.shape[0] != 3:
                raise ValueError(f"{name}: expected (3, {size[0]}, {size[1]}) in [-1, 1], got {_shape(img)}")
            shown = to_numpy_image(img)
        if shown.shape[:2] != size:
            raise ValueError(f"{name}: expected the input's size {size[0]}x{size[1]}, got {shown.shape[0]}x{shown.shape[1]}")
        store.append((name, shown))
    items = before + [(f"{t}\n({c} ch)", img) for t, img, c in panels] + after
    h, w = size
    fig, axes = plt.subplots(1, len(items), figsize=(1.55 * len(items) * w / h + 0.4, 2.5), squeeze=False)
    for ax, (name, img) in zip(axes[0], items):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        ax.set_title(name, fontsize=7)
    return finish_figure(fig, axes, title)


# ----------------------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------------------


def _pixels(kp: torch.Tensor) -> np.ndarray:
    return kp.detach().float().cpu().numpy()


def render_pose_warp(source_parse: torch.Tensor, source_keypoints: torch.Tensor, target_keypoints: torch.Tensor,
                     warped: torch.Tensor, target_parse: torch.Tensor, indices: Sequence[int] = (0,),
                     title: str | None = None):
    """The two baselines for test pairs ``indices``, one row each: the source parsing (baseline 1) with arrows from
    each source keypoint to its target position and the fixed frame points
    (:data:`~vtonlab.mgvton.parsing.FRAME_ANCHORS`) as squares, the pose-warped parsing (baseline 2) with the target
    keypoints, and the true target parsing; each baseline's title gives its mIoU on that pair.

    Args:
        source_parse, warped, target_parse: ``(N, H, W)`` label maps (``warped`` from
            :func:`~vtonlab.mgvton.parsing.pose_warp_parsing`).
        source_keypoints, target_keypoints: ``(N, 18, 3)``.
    """
    import matplotlib.pyplot as plt

    source_parse = _labels("source_parse", source_parse, 3)
    n, h, w = source_parse.shape
    for name, t in (("warped", warped), ("target_parse", target_parse)):
        if tuple(_labels(name, t, 3).shape) != (n, h, w):
            raise ValueError(f"{name}: expected ({n}, {h}, {w}) like source_parse, got {tuple(t.shape)}")
    _keypoints("source_keypoints", source_keypoints, n)
    _keypoints("target_keypoints", target_keypoints, n)
    rows = [_index(i, n) for i in indices]
    if not rows:
        raise ValueError("indices is empty: expected at least one pair index")
    anchors = (np.asarray(parsing.FRAME_ANCHORS) + 1) / 2 * np.array([w - 1, h - 1])
    fig, axes = plt.subplots(len(rows), 3, figsize=(3 * 1.9 * w / h + 0.4, 2.35 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        src, tgt = _pixels(source_keypoints[i]), _pixels(target_keypoints[i])
        both = (src[:, 2] > 0) & (tgt[:, 2] > 0)
        ax = axes[r, 0]
        ax.imshow(label_image(source_parse[i]))
        for (x0, y0, _), (x1, y1, _) in zip(src[both], tgt[both]):
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=dict(arrowstyle="->", color="w", lw=0.9))
        ax.scatter(src[both, 0], src[both, 1], s=6, c="w", zorder=3)
        ax.scatter(anchors[:, 0], anchors[:, 1], s=14, marker="s", c="tab:orange", clip_on=False, zorder=3)
        ax.set_title(f"baseline 1: source parsing\nmIoU {pair_miou(source_parse[i], target_parse[i]):.3f}", fontsize=7)
        ax = axes[r, 1]
        ax.imshow(label_image(warped[i]))
        ax.scatter(tgt[both, 0], tgt[both, 1], s=6, c="w", zorder=3)
        ax.set_title(f"baseline 2: pose warp\nmIoU {pair_miou(warped[i], target_parse[i]):.3f}", fontsize=7)
        ax = axes[r, 2]
        ax.imshow(label_image(target_parse[i]))
        ax.scatter(tgt[both, 0], tgt[both, 1], s=6, c="w", zorder=3)
        ax.set_title(f"target parsing (truth)\npair {i}", fontsize=7)
        for ax in axes[r]:
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
    return finish_figure(fig, axes, title)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

_G_TERMS = ("loss_g", "ce", "l1", "adv_g")
_D_TERMS = ("adv_d",)


def plot_training_curves(history, title: str | None = None):
    """Two panels from a parsing training history (:class:`vtonlab.train.History`): the generator's total
    ``loss_g`` and its terms ``ce``, ``l1``, ``adv_g`` (log scale), and the discriminator's ``adv_d``."""
    import matplotlib.pyplot as plt

    losses = getattr(history, "losses", None)
    if not isinstance(losses, Mapping):
        raise TypeError(f"history: expected a vtonlab.train.History, got {type(history).__name__}")
    missing = [k for k in _G_TERMS + _D_TERMS if k not in losses]
    if missing:
        raise KeyError(f"history lacks {', '.join(missing)}; expected the parsing terms {list(_G_TERMS + _D_TERMS)}, "
                       f"logged: {', '.join(losses) or 'none'}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    history.plot(keys=list(_G_TERMS), ax=axes[0], logy=True, title="generator: loss_g = adv_g + l1 + ce (weighted)")
    history.plot(keys=list(_D_TERMS), ax=axes[1], title="discriminator: LSGAN adv_d (sum over scales)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


def _methods(results: Mapping, methods: Sequence[str] | None = None) -> list[str]:
    if not isinstance(results, Mapping):
        raise TypeError(f"results: expected the dict of vtonlab.mgvton.parsing.evaluate_parsing, got {type(results).__name__}")
    chosen = [m for m in METHODS if m in results] if methods is None else list(methods)
    if not chosen:
        raise KeyError(f"results has none of the methods {list(METHODS)}; it has {', '.join(map(str, results))}")
    for m in chosen:
        _need(results, (m,), "results")
        _need(results[m], ("miou", "per_class", "pixel_accuracy"), f"results[{m!r}]")
        pc = results[m]["per_class"]
        if not isinstance(pc, torch.Tensor) or tuple(pc.shape) != (len(INTERNAL_LABELS),):
            raise ValueError(f"results[{m!r}]['per_class']: expected ({len(INTERNAL_LABELS)},) per-class IoU, got {_shape(pc)}")
    return chosen


def results_rows(results: Mapping) -> list[dict]:
    """One row per method of :func:`~vtonlab.mgvton.parsing.evaluate_parsing`'s result (model first when present):
    ``{"key", "method", "miou", "pixel_accuracy", "classes"}``, ``classes`` = labels scored (present in the
    prediction or the truth)."""
    return [{"key": m, "method": METHODS.get(m, m), "miou": float(results[m]["miou"]),
             "pixel_accuracy": float(results[m]["pixel_accuracy"]),
             "classes": int((~results[m]["per_class"].isnan()).sum())} for m in _methods(results)]


def results_table(results: Mapping) -> str:
    """:func:`results_rows` as a markdown table; the best value of each column in bold."""
    rows = results_rows(results)
    best_miou = max(r["miou"] for r in rows)
    best_acc = max(r["pixel_accuracy"] for r in rows)
    lines = ["| method | mIoU | pixel accuracy | classes scored |", "|---|---|---|---|"]
    for r in rows:
        miou = f"{r['miou']:.3f}" if r["miou"] != best_miou else f"**{r['miou']:.3f}**"
        acc = f"{r['pixel_accuracy']:.3f}" if r["pixel_accuracy"] != best_acc else f"**{r['pixel_accuracy']:.3f}**"
        lines.append(f"| {r['method']} | {miou} | {acc} | {r['classes']} |")
    return "\n".join(lines)


def plot_per_class_iou(results: Mapping, methods: Sequence[str] | None = None, title: str | None = None):
    """Grouped bars of the per-class IoU of each method (default: every method present), one group per label that
    any method scores (labels absent from both maps everywhere are left out); the legend gives each mIoU."""
    import matplotlib.pyplot as plt

    chosen = _methods(results, methods)
    table = torch.stack([results[m]["per_class"].double().cpu() for m in chosen])  # (M, 20)
    keep = [c for c in range(table.shape[1]) if not table[:, c].isnan().all()]
    if not keep:
        raise ValueError("results: no class is scored by any method (every per-class IoU is NaN)")
    fig, ax = plt.subplots(figsize=(0.55 * len(keep) * len(chosen) / 2 + 2.5, 3.4))
    width = 0.8 / len(chosen)
    xs = np.arange(len(keep))
    for k, m in enumerate(chosen):
        vals = table[k, keep].numpy()
        ax.bar(xs + (k - (len(chosen) - 1) / 2) * width, np.nan_to_num(vals, nan=0.0), width,
               label=f"{METHODS.get(m, m)} (mIoU {float(results[m]['miou']):.3f})", color=f"C{k}")
    ax.set_xticks(xs)
    ax.set_xticklabels([INTERNAL_LABELS[c] for c in keep], rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("IoU")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title or "per-class IoU on the test pairs (all pixels of the split)", fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _check_pairs(pairs: Mapping, predictions: Mapping, keys: Sequence[str]) -> tuple[int, tuple[int, int]]:
    _need(pairs, keys, "pairs")
    target = _labels("pairs['target_parse']", pairs["target_parse"], 3)
    n, size = target.shape[0], tuple(target.shape[-2:])
    for k in keys:
        if k.endswith("_image"):
            _images(f"pairs[{k!r}]", pairs[k], n, size)
        elif k.endswith("_keypoints"):
            _keypoints(f"pairs[{k!r}]", pairs[k], n)
    if not predictions:
        raise ValueError("predictions is empty: expected {method: label maps (N, H, W)}")
    for m, p in predictions.items():
        if tuple(_labels(f"predictions[{m!r}]", p, 3).shape) != (n, *size):
            raise ValueError(f"predictions[{m!r}]: expected ({n}, {size[0]}, {size[1]}) like pairs['target_parse'], "
                             f"got {tuple(p.shape)}")
    return n, size


def render_parsing_results(pairs: Mapping[str, torch.Tensor], predictions: Mapping[str, torch.Tensor],
                           indices: Sequence[int] = (0, 1, 2), title: str | None = None):
    """Test pairs, one row each: source person, target pose, target person, true target parsing, every method's
    prediction (with its mIoU on the pair) and the first method's :func:`error_map`.

    Args:
        pairs: ``source_image``, ``target_image`` ``(N, 3, H, W)``, ``target_pose_keypoints`` ``(N, 18, 3)``,
            ``target_parse`` ``(N, H, W)`` (``preload_pairs(data, pair_keys=PICTURE_KEYS).tensors``).
        predictions: ``{method: (N, H, W)}`` (``evaluate_parsing(..., keep=True)["predictions"]``), in column order.
    """
    import matplotlib.pyplot as plt

    n, (h, w) = _check_pairs(pairs, predictions, ("source_image", "target_image", "target_pose_keypoints", "target_parse"))
    rows = [_index(i, n) for i in indices]
    if not rows:
        raise ValueError("indices is empty: expected at least one pair index")
    methods = list(predictions)
    first = methods[0]
    ncols = 5 + len(methods)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.5 * ncols * w / h + 0.5, 1.5 * 1.45 * len(rows) + 0.3), squeeze=False)
    for r, i in enumerate(rows):
        truth = pairs["target_parse"][i]
        views = [(to_numpy_image(pairs["source_image"][i]), f"source person\npair {i}"),
                 (skeleton_image(pairs["target_pose_keypoints"][i], (h, w)), "target pose"),
                 (to_numpy_image(pairs["target_image"][i]), "target person"),
                 (label_image(truth), "target parsing\n(truth)")]
        views += [(label_image(predictions[m][i]), f"{SHORT_NAMES.get(m, m)}\nmIoU {pair_miou(predictions[m][i], truth):.3f}")
                  for m in methods]
        err = error_map(predictions[first][i], truth)
        wrong = float((predictions[first][i] != truth).float().mean())
        views.append((err, f"{SHORT_NAMES.get(first, first)} errors\n{100 * wrong:.1f}% of pixels"))
        for ax, (img, name) in zip(axes[r], views):
            ax.imshow(img, vmin=0, vmax=1)
            ax.set_title(name, fontsize=6.5)
    return finish_figure(fig, axes, title)


def render_parsing_browser(pairs: Mapping[str, torch.Tensor], predictions: Mapping[str, torch.Tensor], index: int = 0,
                           names: Sequence[str] | None = None, title: str | None = None):
    """The widget's picture for test pair ``index`` (negative counts from the end): source person, target pose, the
    model's parsing, the true target parsing, the pose-warp baseline, and the model's :func:`error_map`; the model
    and the baseline with their mIoU on this pair, the title their difference. ``pairs`` and ``predictions`` as
    :func:`render_parsing_results`; ``predictions`` needs ``"model"`` and ``"pose_warp"``; ``names`` (optional) one
    per pair, shown in the title."""
    import matplotlib.pyplot as plt

    _need(predictions, ("model", "pose_warp"), "predictions")
    n, (h, w) = _check_pairs(pairs, predictions, ("source_image", "target_pose_keypoints", "target_parse"))
    if names is not None and len(names) != n:
        raise ValueError(f"names: expected one name per pair ({n}), got {len(names)}")
    i = _index(index, n)
    truth = pairs["target_parse"][i]
    model, warp = predictions["model"][i], predictions["pose_warp"][i]
    m_model, m_warp = pair_miou(model, truth), pair_miou(warp, truth)
    wrong = float((model != truth).float().mean())
    panels = ((to_numpy_image(pairs["source_image"][i]), "source person"),
              (skeleton_image(pairs["target_pose_keypoints"][i], (h, w)), "target pose"),
              (label_image(model), f"{SHORT_NAMES['model']}\nmIoU {m_model:.3f}"),
              (label_image(truth), "target parsing (truth)"),
              (label_image(warp), f"{SHORT_NAMES['pose_warp']}\nmIoU {m_warp:.3f}"),
              (error_map(model, truth), f"model errors: {100 * wrong:.1f}%\nof pixels"))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.75 * len(panels) * w / h + 0.6, 2.9), squeeze=False)
    for ax, (img, name) in zip(axes[0], panels):
        ax.imshow(img, vmin=0, vmax=1)
        ax.set_title(name, fontsize=7.5)
    if title is None:
        diff = m_model - m_warp
        better = "the model" if diff > 0 else ("the pose warp" if diff < 0 else "neither")
        title = (f"test pair {i}" + (f" ({names[i]})" if names is not None else "")
                 + f": model - pose warp = {diff:+.3f} mIoU ({better} better on this pair)")
    return finish_figure(fig, axes, title)
