"""Figures for notebook 11 (LaDI-VTON's textual inversion: pseudo-words of the garment).

- :func:`prompt_tokens_figure`: the tokenized prompt as a strip of boxes, the placeholders (where the pseudo-words go)
  highlighted.
- :func:`nearest_tokens_figure`: garments, their captions and the nearest vocabulary word of each pseudo-word.
- :func:`retrieval_figure`: similarity matrices of text queries against garment images, the target and the
  retrieved item of every query marked.
- :func:`tryon_comparison_figure`: masked persons, garments, ground truth and the try-ons of each prompt.
- :func:`render_inversion_browser`: the render function behind the notebook's widget: one garment, its nearest
  words and its try-ons with each prompt.

Images: persons, garments and ground truth ``(3, H, W)`` in [-1, 1] (model convention); try-ons ``(3, H, W)`` in
[0, 1] (the pipeline's output). Figures are closed before they are returned, so a notebook shows each one once.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import torch

from vtonlab.viz import check_index, finish_figure, require_keys, to_numpy_image

__all__ = ["TOKEN_COLOURS", "prompt_tokens_figure", "nearest_tokens_figure", "retrieval_figure", "tryon_comparison_figure",
           "BROWSER_KEYS", "render_inversion_browser"]

TOKEN_COLOURS = {"special": "#bbbbbb", "word": "#9ecae1", "placeholder": "#fd8d3c"}
"""Box colours of :func:`prompt_tokens_figure`: start / end / padding tokens, prompt words, placeholders."""


def _images(x, name: str, n: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3 or (n is not None and x.shape[0] != n):
        want = f"({n}, 3, H, W)" if n is not None else "(N, 3, H, W)"
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected images {want}, got {got}")
    return x


def prompt_tokens_figure(tokens: Sequence[str], placeholder: Sequence[bool] | torch.Tensor,
                         special: Sequence[bool] | torch.Tensor | None = None, n_show: int | None = None,
                         title: str | None = None):
    """One row of boxes, one per token position (index below, token inside): placeholders orange, prompt words blue,
    special tokens grey (:data:`TOKEN_COLOURS`). ``tokens`` ``(L,)`` strings; ``placeholder`` ``(L,)`` bools: where
    the pseudo-words replace the token embeddings; ``special`` ``(L,)`` bools (default: tokens written ``<|...|>``);
    ``n_show``: the first positions only (the rest, padding, summarised in the title). Returns a one-panel Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    tokens = [str(t) for t in tokens]
    ph = [bool(v) for v in (placeholder.tolist() if isinstance(placeholder, torch.Tensor) else placeholder)]
    if len(ph) != len(tokens) or not tokens:
        raise ValueError(f"placeholder: expected one flag per token ({len(tokens)}), got {len(ph)}")
    sp = [t.startswith("<|") and t.endswith("|>") for t in tokens] if special is None else \
        [bool(v) for v in (special.tolist() if isinstance(special, torch.Tensor) else special)]
    if len(sp) != len(tokens):
        raise ValueError(f"special: expected one flag per token ({len(tokens)}), got {len(sp)}")
    n = len(tokens) if n_show is None else int(n_show)
    if not 1 <= n <= len(tokens):
        raise ValueError(f"n_show: expected 1..{len(tokens)} (the number of tokens), got {n_show!r}")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.62 * n), 1.55))
    for j in range(n):
        kind = "placeholder" if ph[j] else ("special" if sp[j] else "word")
        ax.add_patch(plt.Rectangle((j + 0.04, 0.0), 0.92, 1.0, facecolor=TOKEN_COLOURS[kind], edgecolor="black", lw=0.5))
        label = tokens[j].replace("<|startoftext|>", "<start>").replace("<|endoftext|>", "<end>")
        ax.text(j + 0.5, 0.5, label, ha="center", va="center", rotation=90 if len(label) > 3 else 0, fontsize=7)
        ax.text(j + 0.5, -0.18, str(j), ha="center", va="top", fontsize=6)
    ax.set_xlim(0, n)
    ax.set_ylim(-0.45, 1.05)
    ax.axis("off")
    handles = [Patch(facecolor=c, edgecolor="black", lw=0.5, label=k) for k, c in TOKEN_COLOURS.items()]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    rest = len(tokens) - n
    head = title or "tokenized prompt"
    return finish_figure(fig, [ax], head + (f" (first {n} of {len(tokens)} positions; the other {rest} repeat the last "
                                            "shown token)" if rest else ""))


def nearest_tokens_figure(cloth: torch.Tensor, captions: Sequence[str], words: Sequence[Sequence[str]],
                          similarity: torch.Tensor, title: str | None = None, columns: int = 2):
    """For each garment: its image, then a text panel with its caption and, for each pseudo-word ``v_j``, the nearest
    vocabulary word and the cosine similarity. ``cloth`` ``(G, 3, H, W)`` in [-1, 1]; ``captions`` ``G`` strings;
    ``words`` ``G`` lists of ``N`` strings (:func:`vtonlab.ladi.words.token_strings` of the top-1 ids); ``similarity``
    ``(G, N)``. Returns a Figure with ``2 G`` panels (image, text) in ``G`` rows."""
    import matplotlib.pyplot as plt

    g = _images(cloth, "cloth").shape[0]
    if len(captions) != g:
        raise ValueError(f"captions: expected {g} captions (one per garment), got {len(captions)}")
    if len(words) != g:
        raise ValueError(f"words: expected {g} lists of nearest words (one per garment), got {len(words)}")
    sim = torch.as_tensor(similarity).float()
    n = len(words[0]) if g else 0
    if sim.shape != (g, n) or any(len(w) != n for w in words):
        raise ValueError(f"similarity: expected ({g}, {n}) (garments x pseudo-words, as words), got {tuple(sim.shape)}")
    if g == 0:
        raise ValueError("cloth: expected at least one garment")
    per_col = -(-n // max(1, int(columns)))
    fig, axes = plt.subplots(g, 2, figsize=(7.8, max(1.7, 0.17 * per_col + 0.7) * g),
                             gridspec_kw={"width_ratios": [1, 5]}, squeeze=False)
    for i in range(g):
        axes[i, 0].imshow(to_numpy_image(cloth[i]))
        axes[i, 0].set_title(f"garment {i}", fontsize=8)
        ax = axes[i, 1]
        ax.axis("off")
        ax.text(0.0, 1.0, "caption: " + textwrap.shorten(str(captions[i]), 90, placeholder="..."), fontsize=8,
                va="top", ha="left", transform=ax.transAxes, weight="bold")
        for j in range(n):
            col, row = divmod(j, per_col)
            ax.text(0.02 + 0.5 * col, 0.84 - row * 0.8 / max(1, per_col), f"v{j + 1:<2d} -> {words[i][j]} ({sim[i, j]:.2f})",
                    fontsize=7, va="top", ha="left", family="monospace", transform=ax.transAxes)
    return finish_figure(fig, axes, title)


def retrieval_figure(similarities: Mapping[str, torch.Tensor], targets: torch.Tensor | Sequence[int] | None = None,
                     title: str | None = None):
    """One heat map per query kind (``{label: (Q, G)}`` cosine similarities, rows queries, columns gallery garments),
    on one colour scale: a white box on each query's target (``targets`` ``(Q,)``, default the diagonal) and a red dot
    on the gallery item it retrieves (the row's maximum). Returns a Figure with one panel per kind plus a colour bar."""
    import matplotlib.pyplot as plt

    if not similarities:
        raise ValueError("similarities: expected at least one {label: (Q, G) similarity matrix}")
    mats = {k: torch.as_tensor(v).detach().float().cpu() for k, v in similarities.items()}
    shapes = {tuple(m.shape) for m in mats.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or 0 in next(iter(shapes)):
        raise ValueError(f"similarities: expected non-empty (Q, G) matrices of one shape, got {sorted(shapes)}")
    q, g = next(iter(shapes))
    t = torch.arange(q) if targets is None else torch.as_tensor(targets, dtype=torch.long)
    if t.shape != (q,) or int(t.min()) < 0 or int(t.max()) >= g:
        raise ValueError(f"targets: expected {q} gallery indices in [0, {g}), got {tuple(t.shape)}")
    lo = min(float(m.min()) for m in mats.values())
    hi = max(float(m.max()) for m in mats.values())
    k = len(mats)
    side = min(4.2, 0.3 * max(q, g) + 1.4)
    fig, axes = plt.subplots(1, k, figsize=(side * k + 0.9, side + 0.5), squeeze=False)
    im = None
    for ax, (label, m) in zip(axes[0], mats.items()):
        im = ax.imshow(m.numpy(), cmap="viridis", vmin=lo, vmax=hi)
        hits = 0
        for r in range(q):
            ax.add_patch(plt.Rectangle((int(t[r]) - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="white", lw=1.4))
            best = int(m[r].argmax())
            hits += best == int(t[r])
            ax.plot(best, r, "o", color="red", ms=3)
        ax.set_title(f"{label}: top-1 {hits}/{q}", fontsize=8)
        ax.set_xlabel("gallery garment (image)", fontsize=7)
        ax.set_ylabel("query (text)", fontsize=7)
    cbar = fig.colorbar(im, ax=list(axes[0]), fraction=0.03, pad=0.02)
    cbar.set_label("cosine similarity", fontsize=7)
    cbar.ax.tick_params(labelsize=6)
    plt.close(fig)
    if title:
        fig.suptitle(title, fontsize=9)
    for ax in axes[0]:
        ax.tick_params(labelsize=6)
    return fig


def _tryon_columns(tryons: Mapping[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    if not tryons:
        raise ValueError("tryons: expected at least one {label: (N, 3, H, W) try-ons in [0, 1]}")
    return {label: _images(x, f"tryons[{label!r}]", n) for label, x in tryons.items()}


def tryon_comparison_figure(masked: torch.Tensor, cloth: torch.Tensor, gt: torch.Tensor, tryons: Mapping[str, torch.Tensor],
                            indices: Sequence[int] | None = None, scores: Mapping[str, torch.Tensor] | None = None,
                            score_name: str = "dE", title: str | None = None):
    """Rows: persons (``indices``, default all); columns: the masked person, the garment, the ground truth, then one
    try-on per prompt (``tryons`` ``{label: (N, 3, H, W)}`` in [0, 1]). ``masked``, ``cloth``, ``gt``
    ``(N, 3, H, W)`` in [-1, 1]. ``scores`` ``{label: (N,)}`` are written under each try-on (as ``score_name``).
    Returns a Figure with ``len(indices) x (3 + len(tryons))`` panels."""
    import matplotlib.pyplot as plt

    n = _images(masked, "masked").shape[0]
    _images(cloth, "cloth", n)
    _images(gt, "gt", n)
    cols = _tryon_columns(tryons, n)
    rows = [check_index(i, n) for i in (range(n) if indices is None else indices)]
    if not rows:
        raise ValueError("indices: expected at least one person")
    if scores is not None:
        for label in scores:
            if label not in cols or torch.as_tensor(scores[label]).shape != (n,):
                raise ValueError(f"scores[{label!r}]: expected ({n},) values for a label of tryons {list(cols)}")
    h, w = masked.shape[-2:]
    ncol = 3 + len(cols)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(ncol * 1.45 * w / h + 0.3, len(rows) * 1.7 + 0.3), squeeze=False)
    for r, i in enumerate(rows):
        panels = [(masked[i], (-1, 1), "masked person"), (cloth[i], (-1, 1), "garment"), (gt[i], (-1, 1), "ground truth")]
        panels += [(x[i], (0, 1), label) for label, x in cols.items()]
        for c, (img, rng, label) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(to_numpy_image(img, rng))
            head = label if r == 0 else ""
            if scores is not None and label in scores:
                head += ("\n" if head else "") + f"{score_name} {float(torch.as_tensor(scores[label])[i]):.1f}"
            ax.set_title(head, fontsize=7)
        axes[r, 0].set_ylabel(f"person {i}", fontsize=7)
    return finish_figure(fig, axes, title)


BROWSER_KEYS = ("cloth", "masked", "gt", "captions", "tryons", "words", "similarity")
"""What :func:`render_inversion_browser` reads from its ``browse`` dict."""


def render_inversion_browser(browse: Mapping, index: int = 0, scores: Mapping[str, torch.Tensor] | None = None,
                             score_name: str = "dE"):
    """The widget: one garment (``index``; negative counts from the end), its caption and the nearest vocabulary word
    of each pseudo-word, and the person's try-ons with each prompt.

    ``browse``: ``cloth``, ``masked``, ``gt`` ``(G, 3, H, W)`` in [-1, 1]; ``captions`` (``G`` strings); ``tryons``
    ``{label: (G, 3, H, W)}`` in [0, 1]; ``words`` (``G`` lists of ``N`` strings) and ``similarity`` ``(G, N)`` (the
    nearest word of each pseudo-word and its cosine similarity). ``scores`` ``{label: (G,)}`` are shown under each
    try-on. Returns a Figure with ``4 + len(tryons)`` panels: the text, the garment, the masked person, the ground truth
    and the try-ons.
    """
    import matplotlib.pyplot as plt

    require_keys(browse, BROWSER_KEYS, "browse")
    g = _images(browse["cloth"], "browse['cloth']").shape[0]
    _images(browse["masked"], "browse['masked']", g)
    _images(browse["gt"], "browse['gt']", g)
    cols = _tryon_columns(browse["tryons"], g)
    if len(browse["captions"]) != g or len(browse["words"]) != g:
        raise ValueError(f"browse['captions'], browse['words']: expected {g} entries each (one per garment), got "
                         f"{len(browse['captions'])} and {len(browse['words'])}")
    sim = torch.as_tensor(browse["similarity"]).float()
    if sim.ndim != 2 or sim.shape[0] != g:
        raise ValueError(f"browse['similarity']: expected ({g}, N), got {tuple(sim.shape)}")
    i = check_index(index, g)
    words = list(browse["words"][i])
    if len(words) != sim.shape[1]:
        raise ValueError(f"browse['words'][{i}]: expected {sim.shape[1]} words (one per pseudo-word), got {len(words)}")
    h, w = browse["cloth"].shape[-2:]
    n_img = 3 + len(cols)
    fig = plt.figure(figsize=(3.0 + n_img * 1.5 * w / h, 2.6))
    grid = fig.add_gridspec(1, n_img + 1, width_ratios=[2.2] + [w / h] * n_img, wspace=0.08)
    tax = fig.add_subplot(grid[0])
    tax.axis("off")
    lines = [textwrap.fill("caption: " + str(browse["captions"][i]), 38), "nearest word of each pseudo-word:"]
    lines += [f"v{j + 1:<2d} {words[j]:<12s} {float(sim[i, j]):.2f}" for j in range(len(words))]
    tax.text(0.0, 1.0, "\n".join(lines), fontsize=6.5, family="monospace", va="top", ha="left", transform=tax.transAxes)
    panels = [(browse["cloth"][i], (-1, 1), "garment"), (browse["masked"][i], (-1, 1), "masked person"),
              (browse["gt"][i], (-1, 1), "ground truth")] + [(x[i], (0, 1), label) for label, x in cols.items()]
    axes = [tax]
    for c, (img, rng, label) in enumerate(panels):
        ax = fig.add_subplot(grid[c + 1])
        ax.imshow(to_numpy_image(img, rng))
        if scores is not None and label in scores:
            label += f"\n{score_name} {float(torch.as_tensor(scores[label])[i]):.1f}"
        ax.set_title(label, fontsize=7)
        axes.append(ax)
    for ax in axes[1:]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"garment {i}", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.78, bottom=0.02)
    plt.close(fig)
    return fig
