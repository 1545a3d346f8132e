"""Figures for CLIP (notebook 02): the batch similarity matrix, zero-shot accuracy, caption search.

The render function behind the notebook's widget is :class:`CaptionSearch`: type a caption, see
the garments whose CLIP image features are closest to the caption's text feature.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from vtonlab.viz import to_numpy_image


def _thumb(image) -> np.ndarray:
    """A model image ``(3, H, W)`` in [-1, 1] or a uint8 ``(H, W, 3)`` array -> float (H, W, 3) in [0, 1]."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8:
        return image.cpu().numpy().astype(np.float32) / 255.0
    return to_numpy_image(image, (-1.0, 1.0))


def similarity_figure(similarity: torch.Tensor | np.ndarray, images: Sequence | None = None,
                      captions: Sequence[str] | None = None, title: str | None = None,
                      value_label: str = "cosine similarity"):
    """Heat map of a ``(N_img, N_txt)`` similarity matrix, garment thumbnails beside the rows and
    captions under the columns; each row's best caption is ringed, so a trained CLIP shows a ringed
    diagonal. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    sim = similarity.detach().float().cpu().numpy() if isinstance(similarity, torch.Tensor) else np.asarray(similarity)
    if sim.ndim != 2 or 0 in sim.shape:
        raise ValueError(f"similarity must be a non-empty (N_img, N_txt) matrix, got shape {sim.shape}")
    n_img, n_txt = sim.shape
    if images is not None and len(images) != n_img:
        raise ValueError(f"{len(images)} images for a similarity matrix with {n_img} rows")
    if captions is not None and len(captions) != n_txt:
        raise ValueError(f"{len(captions)} captions for a similarity matrix with {n_txt} columns")
    thumbs = [_thumb(im) for im in images] if images is not None else []
    aspect = max(t.shape[1] / t.shape[0] for t in thumbs) if thumbs else 0.0
    cell = 0.62
    fig = plt.figure(figsize=(1.6 + cell * (n_txt + aspect), 1.0 + cell * n_img + (1.8 if captions is not None else 0.4)))
    if thumbs:
        grid = fig.add_gridspec(1, 2, width_ratios=[aspect, n_txt], wspace=0.02)
        ax_img, ax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
        for i, t in enumerate(thumbs):  # one thumbnail per row, one unit high
            a = t.shape[1] / t.shape[0]
            ax_img.imshow(t, extent=(aspect - a, aspect, i + 0.5, i - 0.5))
        ax_img.set_xlim(0, aspect)
        ax_img.set_ylim(n_img - 0.5, -0.5)
        ax_img.set_aspect("equal")
        ax_img.axis("off")
    else:
        ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(sim, cmap="viridis", aspect="equal")
    best = sim.argmax(axis=1)
    for i in range(n_img):
        ax.add_patch(plt.Rectangle((best[i] - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="white", lw=2))
    if n_img * n_txt <= 144:
        spread = float(np.ptp(sim)) or 1.0
        for i in range(n_img):
            for j in range(n_txt):
                ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if sim[i, j] > sim.min() + 0.6 * spread else "white")
    ax.set_xticks(range(n_txt))
    ax.set_yticks(range(n_img))
    if captions is not None:
        ax.set_xticklabels([textwrap.shorten(c, 40, placeholder="...") for c in captions], rotation=60, ha="right",
                           fontsize=7)
    else:
        ax.set_xlabel("caption")
    if thumbs:
        ax.set_yticklabels([])
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_ylabel("image")
    cbar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cbar.set_label(value_label, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def zero_shot_figure(results: Sequence, title: str | None = None):
    """Bar chart: zero-shot accuracy of each attribute beside its chance (1/K) and majority levels.

    ``results`` are :class:`vtonlab.clip.ZeroShotResult`. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("results is empty: pass the ZeroShotResult of at least one attribute")
    names = [f"{r.attribute}\n(K={len(r.classnames)})" for r in results]
    x = np.arange(len(results))
    fig, ax = plt.subplots(figsize=(1.2 + 1.5 * len(results), 3.0))
    ax.bar(x - 0.25, [r.accuracy for r in results], 0.25, label="zero-shot", color="C0")
    ax.bar(x, [r.chance for r in results], 0.25, label="chance (1/K)", color="0.7")
    ax.bar(x + 0.25, [r.majority for r in results], 0.25, label="majority class", color="0.45")
    for i, r in enumerate(results):
        ax.text(i - 0.25, r.accuracy + 0.02, f"{100 * r.accuracy:.0f}%", ha="center", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("accuracy")
    ax.legend(frameon=False, fontsize=8, ncol=3, loc="upper center")
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_figure(result, ax=None, title: str | None = None):
    """Row-normalised confusion matrix of one :class:`vtonlab.clip.ZeroShotResult`. Returns the Figure."""
    import matplotlib.pyplot as plt

    conf = result.confusion.float()
    rows = conf.sum(dim=1, keepdim=True).clamp(min=1)
    norm = (conf / rows).numpy()
    k = len(result.classnames)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.2 + 0.42 * k, 1.0 + 0.42 * k))
    else:
        fig = ax.figure
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(result.classnames, rotation=60, ha="right", fontsize=7)
    ax.set_yticklabels(result.classnames, fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    for i in range(k):
        for j in range(k):
            if conf[i, j] > 0:
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or f"{result.attribute}: {100 * result.accuracy:.0f}% (chance {100 * result.chance:.0f}%)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def _message_figure(message: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, wrap=True, transform=ax.transAxes)
    return fig


class CaptionSearch:
    """Caption -> top-k garments: the render function of notebook 02's widget.

    ``search = CaptionSearch(model, images)`` encodes the garments once; ``search("a red striped
    t-shirt", k=5)`` returns a Figure of the ``k`` garments with the highest cosine similarity to
    the caption (scores in the titles). Empty captions give a short message figure instead; any
    other string works (the tokenizer handles every Unicode character and truncates at 77 tokens).
    """

    def __init__(self, model, images, *, labels: Sequence[str] | None = None, batch_size: int = 64):
        from vtonlab.clip import to_model_images

        self.model = model
        self.images = to_model_images(images) if not isinstance(images, torch.Tensor) else images
        if self.images.ndim != 4 or len(self.images) == 0:
            raise ValueError(f"images must be a non-empty batch (B, 3, H, W), got {tuple(self.images.shape)}")
        if labels is not None and len(labels) != len(self.images):
            raise ValueError(f"{len(labels)} labels for {len(self.images)} images")
        self.labels = list(labels) if labels is not None else None
        self.image_features = model.image_features(self.images, batch_size=batch_size)

    def __len__(self) -> int:
        return len(self.images)

    def top_k(self, caption: str, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices ``(k,)`` and cosine similarities ``(k,)`` of the garments closest to ``caption``."""
        if not isinstance(caption, str):
            raise TypeError(f"caption must be a string, got {type(caption).__name__}")
        if not caption.strip():
            raise ValueError("caption is empty: type a description such as 'a red striped t-shirt'")
        k = max(1, min(int(k), len(self.images)))
        text = self.model.text_features([caption])
        sims = (self.image_features @ text[0]).float()
        scores, idx = sims.topk(k)
        return idx, scores

    def __call__(self, caption: str = "", k: int = 5):
        """The Figure for the widget (never raises for odd text; empty text shows a hint)."""
        import matplotlib.pyplot as plt

        if not isinstance(caption, str) or not caption.strip():
            return _message_figure("Type a caption, e.g. 'a red striped t-shirt'.")
        idx, scores = self.top_k(caption, k)
        n = len(idx)
        first = _thumb(self.images[0])
        aspect = first.shape[1] / first.shape[0]
        fig, axes = plt.subplots(1, n, figsize=(max(3.0, 1.9 * aspect * n), 2.6), squeeze=False)
        for ax, i, s in zip(axes[0], idx.tolist(), scores.tolist()):
            ax.imshow(_thumb(self.images[i]))
            ax.axis("off")
            label = f"#{i}  cos {s:.2f}"
            if self.labels is not None:
                label += "\n" + textwrap.shorten(self.labels[i], 28, placeholder="...")
            ax.set_title(label, fontsize=7)
        fig.suptitle(textwrap.shorten(f"\u201c{caption.strip()}\u201d", 90, placeholder="...\u201d"), fontsize=9)
        with warnings.catch_warnings():  # emoji or CJK in a caption: the default font lacks the glyph
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            fig.tight_layout()
        return fig
