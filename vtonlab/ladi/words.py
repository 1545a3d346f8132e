"""What the inversion adapter's pseudo-words capture (notebook 11): nearest vocabulary tokens, retrieval, try-on.

LaDI-VTON (Morelli et al., ACM MM 2023, arXiv 2305.13501) turns an in-shop garment into ``N`` pseudo-words
``v_1 .. v_N`` of the text encoder's token-embedding space (:mod:`vtonlab.ladi.adapter`), the idea of textual
inversion (Gal et al. 2022, arXiv 2208.01618) predicted in one forward pass. A pseudo-word is a vector, not a word;
this module asks three questions of it:

1. **Which words is it near?** Cosine similarity of each pseudo-word to every row of the token-embedding table
   ``E`` ``(V, d_text)`` (:func:`nearest_tokens`), optionally among the tokens of SynthVTON's captions only
   (:func:`caption_token_ids` of :func:`synthvton_captions`): a CLIP trained from scratch on those captions has
   trained only their rows; the other ~49,000 rows keep their random initialisation. :func:`caption_hit_matrix`
   says whether a garment's nearest words occur in its own caption more often than in other garments' captions.
2. **Does the prompt with them land near the garment in CLIP's joint space?** The text feature of the pseudo-word
   prompt (:func:`pseudo_word_text_features`: the projected final state at the end token, as CLIP reads a caption)
   queries the image features of the test garments; :func:`retrieval_ranks` and :func:`retrieval_metrics` give
   top-k accuracy and the median rank against chance. The adapter was trained through the diffusion loss only (its
   pseudo-words feed every cross-attention token state of the UNet), never to match CLIP's pooled features, so this
   asks whether garment information shows up in a space the training never targeted.
3. **Does the inpainting model use them?** The base inpainting model fills the try-on mask with the pseudo-word
   prompt, the garment's caption or the empty prompt, with the same initial noise for the three prompts
   (:func:`prompt_comparison`); :func:`score_prompts` scores the results against the ground truth with the garment
   measures of :mod:`vtonlab.ladi.ablation` (colour error and garment-region LPIPS).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CONDITIONS", "CONDITION_LABELS", "PIPELINE_TEXT_MODES", "SAMPLE_SEEDS", "token_embedding_table",
           "token_strings", "caption_token_ids", "synthvton_captions", "NearestTokens", "nearest_tokens",
           "caption_hit_matrix", "distinct_garments", "pseudo_word_text_features", "retrieval_ranks", "retrieval_metrics",
           "person_generators", "prompt_comparison", "score_prompts"]

CONDITIONS = ("inversion", "caption", "empty")
"""The prompts compared, as :data:`vtonlab.ladi.adapter.TEXT_CONDITIONS`: pseudo-words, the caption, ``""``."""

CONDITION_LABELS = {"inversion": "pseudo-words", "caption": "caption", "empty": "empty prompt"}
"""How tables and figures name each condition."""

PIPELINE_TEXT_MODES = {"inversion": "inversion", "caption": "caption", "empty": "none"}
"""Each condition's ``text_mode`` of :class:`vtonlab.ladi.pipeline.LadiVTONPipeline`."""

SAMPLE_SEEDS = (0, 1, 2)
"""Sampling seeds of the try-on comparison (as :data:`vtonlab.ladi.ablation.SAMPLE_SEEDS`)."""


def _shape(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _default_tokenizer(tokenizer=None):
    if tokenizer is not None:
        return tokenizer
    from vtonlab.clip.bpe import tokenizer as clip_tokenizer

    return clip_tokenizer()


# ----------------------------------------------------------------------------------------------
# The vocabulary
# ----------------------------------------------------------------------------------------------


def token_embedding_table(clip) -> Tensor:
    """The text tower's token-embedding table ``E`` ``(V, d_text)`` (a view of the weights, no copy) of a
    :class:`vtonlab.clip.CLIP`, a transformers ``CLIPModel`` or ``CLIPTextModel``."""
    hf = getattr(clip, "hf", clip)
    text = getattr(hf, "text_model", hf)
    emb = getattr(getattr(text, "embeddings", None), "token_embedding", None)
    if not isinstance(emb, torch.nn.Embedding):
        raise TypeError(f"clip: expected a vtonlab.clip.CLIP, a transformers CLIPModel or CLIPTextModel, got "
                        f"{type(clip).__name__}")
    return emb.weight


@functools.lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    from vtonlab.clip.bpe import byte_alphabet

    return {ch: b for b, ch in byte_alphabet().items()}


def token_strings(ids: Tensor | Sequence[int], tokenizer=None) -> list:
    """Readable strings of token ids (nested lists of the same shape as ``ids``).

    A token that ends a word (``</w>`` in CLIP's BPE) is shown as the word; a piece that continues into the next token
    gets a trailing ``~`` (``"fad~"`` then ``"ing"``); special tokens keep their names.
    """
    tok = _default_tokenizer(tokenizer)
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    if isinstance(ids, int):
        raw = tok.convert_ids_to_tokens(ids)
        if raw in tok.all_special_tokens:
            return raw
        end = raw.endswith("</w>")
        body = raw[:-4] if end else raw
        inverse = _byte_decoder()
        text = bytes(inverse[ch] for ch in body if ch in inverse).decode("utf-8", errors="replace") \
            if all(ch in inverse for ch in body) else body
        return text if end else text + "~"
    return [token_strings(i, tok) for i in ids]


def caption_token_ids(captions: str | Sequence[str], tokenizer=None) -> Tensor:
    """The sorted distinct token ids ``(K,)`` of ``captions``, start, end and padding tokens excluded."""
    tok = _default_tokenizer(tokenizer)
    texts = [captions] if isinstance(captions, str) else list(captions)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"captions: expected one or more strings, got {type(captions).__name__} of {len(texts)}")
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    special = set(tok.all_special_ids)
    return torch.tensor(sorted({i for row in ids for i in row} - special), dtype=torch.long)


def synthvton_captions() -> list[str]:
    """Captions that together hold every word SynthVTON's garment captions can hold (our CLIP's training vocabulary).

    Every caption variant (:func:`vtonlab.data.captions.caption_variants`) of garments that vary one attribute at a
    time from a base garment: every category, colour, pattern, pattern colour, logo and printed word. BPE tokenizes
    each word on its own, so the union of their tokens is the union over all attribute combinations.
    """
    from vtonlab.data import _synth_garment as G
    from vtonlab.data.captions import caption_variants

    colours = list(G.COLOURS)
    base = {"category": next(iter(G.CATEGORIES)), "colour": colours[0], "pattern": "solid", "pattern_colour": colours[1]}
    gars = [{**base, "category": c} for c in G.CATEGORIES] + [{**base, "colour": c} for c in colours]
    gars += [{**base, "pattern": p, "print": G.LOGOS[0] if p == "logo" else G.WORDS[0]} for p in G.PATTERNS]
    gars += [{**base, "pattern": "checks", "pattern_colour": c} for c in colours]
    gars += [{**base, "pattern": "logo", "print": s} for s in G.LOGOS] + [{**base, "pattern": "text", "print": w} for w in G.WORDS]
    return [c for g in gars for c in caption_variants(g)]


# ----------------------------------------------------------------------------------------------
# Nearest vocabulary tokens
# ----------------------------------------------------------------------------------------------


@dataclass
class NearestTokens:
    """``ids`` ``(..., k)``: vocabulary ids of the ``k`` nearest tokens, most similar first; ``similarity``
    ``(..., k)``: their cosine similarities to the pseudo-word."""

    ids: Tensor
    similarity: Tensor


@torch.no_grad()
def nearest_tokens(words: Tensor, table: Tensor, k: int = 5, candidates: Tensor | None = None) -> NearestTokens:
    """The ``k`` vocabulary tokens nearest each pseudo-word by cosine similarity ``<v, E_t> / (|v| |E_t|)``.

    ``words`` ``(..., d)``: pseudo-words (e.g. the adapter's ``(B, N, d_text)``); ``table`` ``(V, d)``: the
    token-embedding table (:func:`token_embedding_table`); ``candidates`` ``(K,)``: the vocabulary ids to search
    (default all ``V``), e.g. :func:`caption_token_ids`. Returns ids into the full vocabulary.
    """
    if not isinstance(table, Tensor) or table.ndim != 2 or not table.is_floating_point():
        raise ValueError(f"table: expected the token-embedding table, a float tensor (V, d), got {_shape(table)}")
    v, d = table.shape
    if not isinstance(words, Tensor) or words.ndim < 1 or words.shape[-1] != d or not words.is_floating_point():
        raise ValueError(f"words: expected pseudo-words (..., {d}) (the table's width), got {_shape(words)}")
    if candidates is None:
        cand = torch.arange(v, device=table.device)
    else:
        cand = torch.as_tensor(candidates, dtype=torch.long, device=table.device)
        if cand.ndim != 1 or cand.numel() == 0 or int(cand.min()) < 0 or int(cand.max()) >= v:
            raise ValueError(f"candidates: expected a non-empty 1-D tensor of vocabulary ids in [0, {v}), got {_shape(cand)}"
                             + (f" with values {int(cand.min())}..{int(cand.max())}" if cand.numel() else ""))
        if cand.unique().numel() != cand.numel():
            raise ValueError("candidates: expected distinct vocabulary ids (a token listed twice would fill two of the k places)")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= cand.numel():
        raise ValueError(f"k: expected an int in [1, {cand.numel()}] (the number of candidate tokens), got {k!r}")
    sim = F.normalize(words.float().to(table.device), dim=-1) @ F.normalize(table[cand].float(), dim=-1).T
    top = sim.topk(k, dim=-1)
    return NearestTokens(ids=cand[top.indices].cpu(), similarity=top.values.cpu())


def caption_hit_matrix(nearest_ids: Tensor, caption_ids: Sequence[Tensor]) -> Tensor:
    """``(G, G)``: entry ``(i, j)`` is the fraction of garment ``i``'s nearest tokens (all its pseudo-words' ``k``
    nearest, ``nearest_ids[i]`` ``(N, k)``, with repeats) that occur in caption ``j`` (``caption_ids[j]``: its token
    ids, :func:`caption_token_ids`). The diagonal against the off-diagonal mean says whether the nearest words are
    specific to the garment or merely common caption words."""
    if not isinstance(nearest_ids, Tensor) or nearest_ids.ndim < 2 or nearest_ids.is_floating_point():
        raise ValueError(f"nearest_ids: expected integer ids (G, N, k) or (G, n), got {_shape(nearest_ids)}")
    g = nearest_ids.shape[0]
    if len(caption_ids) != g:
        raise ValueError(f"caption_ids: expected {g} id sets (one caption per garment), got {len(caption_ids)}")
    flat = nearest_ids.reshape(g, -1)
    out = torch.zeros(g, g)
    for j, ids in enumerate(caption_ids):
        out[:, j] = torch.isin(flat, torch.as_tensor(ids, dtype=flat.dtype)).float().mean(dim=1)
    return out


# ----------------------------------------------------------------------------------------------
# Retrieval in CLIP's joint space
# ----------------------------------------------------------------------------------------------


def distinct_garments(cloth: Tensor) -> Tensor:
    """Indices ``(G,)`` of the first occurrence of each distinct garment image in ``cloth`` ``(N, 3, H, W)``, in order
    (SynthVTON shows each garment on one person in several poses; equal images are one garment)."""
    if not isinstance(cloth, Tensor) or cloth.ndim != 4 or cloth.shape[0] == 0:
        raise ValueError(f"cloth: expected garment images (N, 3, H, W) with N >= 1, got {_shape(cloth)}")
    seen: dict[bytes, int] = {}
    for i, c in enumerate(cloth.detach().cpu().contiguous()):
        seen.setdefault(c.numpy().tobytes(), i)
    return torch.tensor(sorted(seen.values()), dtype=torch.long)


@torch.no_grad()
def pseudo_word_text_features(clip, pseudo_words: Tensor, prompts: str | Sequence[str] | None = None, *,
                              category: str = "upper_body") -> Tensor:
    """L2-normalised CLIP text features ``(B, P)`` of prompts whose placeholders hold ``pseudo_words`` ``(B, N, d_text)``.

    As CLIP reads a caption (:meth:`vtonlab.clip.CLIP.text_features`): the final state at the first end token,
    through the text projection, normalised; the states come from
    :func:`vtonlab.ladi.adapter.encode_text_with_pseudo_words` (prompts default :func:`vtonlab.ladi.adapter.prompt` of
    ``category`` with ``N`` placeholders). With every pseudo-word equal to the placeholder's own embedding this is
    the plain prompt's text feature.
    """
    from vtonlab.ladi import adapter as A

    hf = getattr(clip, "hf", None)
    if hf is None or not hasattr(hf, "text_projection"):
        raise TypeError(f"clip: expected a vtonlab.clip.CLIP (its text tower and text projection), got {type(clip).__name__}")
    if not isinstance(pseudo_words, Tensor) or pseudo_words.ndim != 3:
        raise ValueError(f"pseudo_words: expected the adapter's output (B, N, d_text), got {_shape(pseudo_words)}")
    b, n = pseudo_words.shape[:2]
    texts = [A.prompt(category, n)] * b if prompts is None else ([prompts] * b if isinstance(prompts, str) else list(prompts))
    if len(texts) != b:
        raise ValueError(f"prompts: expected one prompt or {b} (one per garment), got {len(texts)}")
    ids = A.tokenize_prompts(texts, clip, context_length=int(hf.text_model.config.max_position_embeddings))
    states = A.encode_text_with_pseudo_words(clip, ids, pseudo_words)
    eos = int(hf.text_model.config.eos_token_id)
    pos = (ids == eos).int().argmax(dim=1) if eos != 2 else ids.argmax(dim=1)
    pooled = states[torch.arange(b, device=states.device), pos.to(states.device)]
    return F.normalize(hf.text_projection(pooled).float(), dim=-1).cpu()


def retrieval_ranks(query: Tensor, gallery: Tensor, targets: Tensor | Sequence[int] | None = None) -> Tensor:
    """Rank ``(Q,)`` (1 = first) of each query's target among the gallery by cosine similarity.

    ``query`` ``(Q, P)``, ``gallery`` ``(G, P)``: features (normalised here); ``targets`` ``(Q,)``: the gallery index
    each query should retrieve (default ``0 .. Q-1``: query ``i`` is gallery item ``i``). Ties count against the
    target: rank = 1 + the number of other gallery items at least as similar, so a query that cannot tell the
    gallery apart gets the last rank, not the first.
    """
    for name, x in (("query", query), ("gallery", gallery)):
        if not isinstance(x, Tensor) or x.ndim != 2 or not x.is_floating_point() or x.shape[0] == 0:
            raise ValueError(f"{name}: expected float features (n, P) with n >= 1, got {_shape(x)}")
    q, g = query.shape[0], gallery.shape[0]
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"gallery: expected features of the query's width {query.shape[1]}, got {tuple(gallery.shape)}")
    t = torch.arange(q) if targets is None else torch.as_tensor(targets, dtype=torch.long).cpu()
    if t.shape != (q,) or int(t.min()) < 0 or int(t.max()) >= g:
        raise ValueError(f"targets: expected {q} gallery indices in [0, {g}), got {_shape(t)}"
                         + (f" with values {int(t.min())}..{int(t.max())}" if t.numel() else ""))
    sim = F.normalize(query.float().cpu(), dim=-1) @ F.normalize(gallery.float().cpu(), dim=-1).T
    own = sim.gather(1, t[:, None])
    others = torch.ones_like(sim, dtype=torch.bool)
    others[torch.arange(q), t] = False
    return 1 + ((sim >= own) & others).sum(dim=1)


def retrieval_metrics(ranks: Tensor, n_gallery: int, ks: Sequence[int] = (1, 5)) -> dict:
    """Top-k accuracy, median rank and their chance levels (one target among ``n_gallery`` items, ranks uniform).

    Returns ``top<k>`` (fraction of ranks ``<= k``), ``chance_top<k>`` (``min(k, G) / G``), ``p_top<k>`` (the
    probability of at least as many top-k hits by chance: the binomial tail with ``Q`` queries and success probability
    ``min(k, G) / G``, each query's target rank uniform and independent), ``median_rank``, ``chance_median_rank``
    (``(G + 1) / 2``), ``n_queries``, ``n_gallery``.
    """
    if isinstance(n_gallery, bool) or not isinstance(n_gallery, int) or n_gallery < 1:
        raise ValueError(f"n_gallery: expected a positive int (the gallery size), got {n_gallery!r}")
    r = torch.as_tensor(ranks).float()
    if r.ndim != 1 or r.numel() == 0 or float(r.min()) < 1 or float(r.max()) > n_gallery:
        raise ValueError(f"ranks: expected a 1-D tensor of ranks in [1, {n_gallery}] (retrieval_ranks), got {_shape(r)}"
                         + (f" with values {float(r.min()):g}..{float(r.max()):g}" if r.numel() else ""))
    out: dict = {}
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ks: expected positive ints, got {k!r}")
        hits, q, p = int((r <= k).sum()), int(r.numel()), min(k, n_gallery) / n_gallery
        out[f"top{k}"] = hits / q
        out[f"chance_top{k}"] = p
        out[f"p_top{k}"] = min(1.0, sum(math.comb(q, x) * p**x * (1 - p) ** (q - x) for x in range(hits, q + 1)))
    out["median_rank"] = float(torch.quantile(r, 0.5))
    out["chance_median_rank"] = (n_gallery + 1) / 2
    out["n_queries"], out["n_gallery"] = int(r.numel()), n_gallery
    return out


# ----------------------------------------------------------------------------------------------
# Try-on with each prompt
# ----------------------------------------------------------------------------------------------


def person_generators(seed: int, start: int, stop: int) -> list[torch.Generator]:
    """One generator per person ``start .. stop - 1``, seeded ``seed * 100_003 + i`` (the convention of
    :func:`vtonlab.ladi.ablation.sample_row`), so a person's noise does not depend on the batch it is sampled in."""
    return [torch.Generator().manual_seed(seed * 100_003 + i) for i in range(start, stop)]


@torch.no_grad()
def prompt_comparison(pipe, data: Mapping, *, seeds: Sequence[int] = SAMPLE_SEEDS, conditions: Sequence[str] = CONDITIONS,
                      batch_size: int = 16, num_inference_steps: int | None = None,
                      guidance_scale: float | None = None) -> dict[str, dict[int, Tensor]]:
    """Fill every person's try-on mask once per prompt condition and sampling seed: ``{condition: {seed: (N, 3, H, W)}}``
    in [0, 1] on the CPU.

    ``pipe``: a :class:`vtonlab.ladi.pipeline.LadiVTONPipeline` (here the base 9-channel inpainting UNet with the
    inversion adapter); ``data``: ``image`` ``(N, 3, H, W)`` and ``inpaint_mask`` ``(N, 1, H, W)``, plus ``cloth``
    ``(N, 3, H', W')`` for ``"inversion"`` and ``captions`` (``N`` strings) for ``"caption"`` (as
    :func:`vtonlab.ladi.ablation.test_set`). Person ``i`` draws its noise from :func:`person_generators`, the same for
    every condition: two conditions differ by their prompts alone. ``num_inference_steps``, ``guidance_scale``:
    default the pipeline's (the negative branch of guidance is the empty prompt, so guidance does not change the
    ``"empty"`` condition).
    """
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad or not conditions:
        raise ValueError(f"conditions: expected some of {list(CONDITIONS)}, got {list(conditions)}")
    need = {"image", "inpaint_mask"} | ({"cloth"} if "inversion" in conditions else set()) \
        | ({"captions"} if "caption" in conditions else set())
    missing = sorted(need - set(data))
    if missing:
        raise KeyError(f"data is missing {missing} (the conditions {list(conditions)} need {sorted(need)})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    n = len(data["image"])
    if "captions" in need and len(data["captions"]) != n:
        raise ValueError(f"data['captions']: expected {n} captions (one per person), got {len(data['captions'])}")
    out: dict[str, dict[int, Tensor]] = {c: {} for c in conditions}
    for cond in conditions:
        for seed in seeds:
            parts = []
            for s in range(0, n, batch_size):
                e = min(n, s + batch_size)
                kw: dict = {"text_mode": PIPELINE_TEXT_MODES[cond]}
                if cond == "inversion":
                    kw["cloth"] = data["cloth"][s:e]
                elif cond == "caption":
                    kw["captions"] = list(data["captions"][s:e])
                images = pipe(data["image"][s:e], data["inpaint_mask"][s:e], generator=person_generators(seed, s, e),
                              num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, **kw).images
                parts.append(images.float().cpu())
            out[cond][int(seed)] = torch.cat(parts).clamp(0, 1)
    return out


def score_prompts(results: Mapping[str, Mapping[int, Tensor]], data: Mapping, *, lpips=None) -> dict[str, dict]:
    """Colour error and garment-region LPIPS of each condition's try-ons against the ground truth.

    ``results``: :func:`prompt_comparison`'s ``{condition: {seed: (N, 3, H, W) in [0, 1]}}``; ``data``: ``gt_image``
    ``(N, 3, H, W)`` in [-1, 1] and ``gt_parse`` ``(N, H, W)`` (:func:`vtonlab.ladi.ablation.test_set`). The measures
    are :func:`vtonlab.ladi.ablation.row_metrics`' ``colour_error`` (CIE76 Delta E of the mean CIELAB colour inside
    the ground truth's garment region) and ``lpips_garment`` (LPIPS of the ground truth with the result pasted in
    that region), so they match notebook 13's. Per condition: ``colour_error``, ``lpips_garment`` (means over the
    seeds of the per-seed means), ``<metric>_spread`` (max - min over seeds), ``<metric>_per_seed`` ``{seed: value}``
    and ``<metric>_per_person`` ``(N,)`` (mean over seeds).
    """
    from vtonlab.ladi.ablation import row_metrics
    from vtonlab.metrics import LPIPSMetric

    missing = [k for k in ("gt_image", "gt_parse") if k not in data]
    if missing:
        raise KeyError(f"data is missing {missing}: the ground truth (gt_image, gt_parse) of vtonlab.ladi.ablation.test_set")
    lp = lpips if lpips is not None else LPIPSMetric()
    n = len(data["gt_image"])
    scores: dict[str, dict] = {}
    for cond, by_seed in results.items():
        if not by_seed:
            raise ValueError(f"results[{cond!r}]: expected try-ons for at least one seed, got none")
        per_seed: dict[str, dict[int, float]] = {"colour_error": {}, "lpips_garment": {}}
        per_person: dict[str, list[Tensor]] = {"colour_error": [], "lpips_garment": []}
        for seed, images in by_seed.items():
            if not isinstance(images, Tensor) or tuple(images.shape) != (n, 3, *data["gt_image"].shape[-2:]):
                raise ValueError(f"results[{cond!r}][{seed}]: expected try-ons {(n, 3, *data['gt_image'].shape[-2:])} "
                                 f"(one per ground-truth person), got {_shape(images)}")
            m = row_metrics(images, data, lpips=lp)
            for key in per_seed:
                per_seed[key][int(seed)] = m[key]
                per_person[key].append(m[f"per_pair_{key}"].float().cpu())
        entry: dict = {}
        for key, values in per_seed.items():
            vals = list(values.values())
            entry[key] = sum(vals) / len(vals)
            entry[f"{key}_spread"] = max(vals) - min(vals)
            entry[f"{key}_per_seed"] = values
            entry[f"{key}_per_person"] = torch.stack(per_person[key]).mean(dim=0)
        scores[cond] = entry
    return scores
