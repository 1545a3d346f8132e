"""LaDI-VTON's inversion adapter: the garment image turned into pseudo-words of CLIP's text vocabulary.

Textual inversion (Gal et al. 2022) finds a word embedding ``v*`` that makes a text-to-image model draw a given
concept. LaDI-VTON (Morelli et al., ACM MM 2023, arXiv 2305.13501) predicts such embeddings in one forward pass: the
:class:`InversionAdapter` reads the CLIP image tower's hidden states of the in-shop garment and outputs ``N``
pseudo-word token embeddings (``N = 16``). They take the place of the placeholders of the prompt
"a photo of a model wearing an upper body garment $ $ ... $" (:func:`prompt`) at the token-embedding level, *before*
the text transformer, so positional embeddings, the causal self-attention and the final layer norm process them like
ordinary words (:func:`encode_text_with_pseudo_words`); the UNet cross-attends to the resulting hidden states.
The adapter is first trained with the inpainting UNet frozen (the diffusion loss), then used by the try-on UNet.

Fidelity (official code: miccunifi/ladi-vton; "not checked" = not verified against the paper's text here):

| point | paper | official code | vtonlab |
|---|---|---|---|
| adapter input [1] | not checked | image tower's ``last_hidden_state``, before ``post_layernorm`` | same states of our CLIP |
| adapter layers [2] | not checked | ``CLIPEncoderLayer`` x 1, CLS token, LayerNorm, MLP (below) | same, same parameter names |
| adapter MLP [2] | not checked | Linear(d, 4d) GELU Dropout(0.5) Linear(4d, 4d) GELU Dropout(0.5) Linear(4d, N d_t) | same |
| pseudo-words N [3] | not checked | ``--num_vstar`` 16 | :data:`NUM_PSEUDO_WORDS`, an argument |
| prompt [4] | not checked | "a photo of a model wearing <noun> $ ... $", nouns of :data:`CATEGORY_NOUNS` | same ids (:func:`prompt`) |
| placeholder id [5] | - | 259 hard-coded (``'$</w>'``) | read from the tokenizer; 259 for CLIP's BPE |
| replaced positions [5] | - | first ``$`` and the N - 1 after it; rows without ``$`` unchanged | same; bad prompts are errors |
| text transformer [6] | - | + positions, causal mask, no padding mask, final layer norm | transformers' own, via a hook |
| padding [4] | - | ``padding="max_length"`` (77 tokens) | same (:func:`tokenize_prompts`) |

Sources: [1] ``src/train_inversion_adapter.py`` 232-236, 490-494 (``CLIPVisionModelWithProjection``); [2]
``src/models/inversion_adapter.py`` 9-28, ``train_inversion_adapter.py`` 256-260 (hidden 4d, output N x text width);
[3] ``train_inversion_adapter.py`` 173; [4] ``train_inversion_adapter.py`` 459-466, 480-481; [5]
``src/utils/encode_text_word_embedding.py`` 12-35; [6] the same file, 37-57. "Bad prompts": a prompt other than the
empty one (the dropped-text rows) without ``$``, with a number of ``$`` other than N, or with them not consecutive;
the official code would silently overwrite other tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "PLACEHOLDER", "OFFICIAL_PLACEHOLDER_ID", "NUM_PSEUDO_WORDS", "CATEGORY_NOUNS", "prompt", "placeholder_token_id",
    "tokenize_prompts", "InversionAdapter", "encode_text_with_pseudo_words",
]

PLACEHOLDER = "$"
"""The placeholder word of the prompt; each occurrence becomes one pseudo-word."""

OFFICIAL_PLACEHOLDER_ID = 259
"""The id the official code hard-codes for ``'$'`` (``'$</w>'``: byte ``$`` is the 4th printable byte, + 256)."""

NUM_PSEUDO_WORDS = 16
"""``N``, pseudo-words per garment (``--num_vstar`` in the official code)."""

CATEGORY_NOUNS: dict[str, str] = {
    "dresses": "a dress",
    "upper_body": "an upper body garment",
    "lower_body": "a lower body garment",
}
"""Dress Code's categories -> the words of the prompt (``category_text`` in ``train_inversion_adapter.py``)."""


def prompt(category: str, n: int = NUM_PSEUDO_WORDS) -> str:
    """``"a photo of a model wearing <noun> $ $ ... $"`` with ``n`` placeholders (``category`` as in :data:`CATEGORY_NOUNS`)."""
    if category not in CATEGORY_NOUNS:
        raise ValueError(f"category: expected one of {list(CATEGORY_NOUNS)} (Dress Code's; SynthVTON and VITON-HD are "
                         f"'upper_body'), got {category!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive number of pseudo-words (LaDI-VTON: {NUM_PSEUDO_WORDS}), got {n!r}")
    return f"a photo of a model wearing {CATEGORY_NOUNS[category]} " + " ".join([PLACEHOLDER] * n)


def _tokenizer_of(model: object):
    tok = getattr(model, "tokenizer", None)
    if tok is None:
        from vtonlab.clip.bpe import tokenizer

        tok = tokenizer()
    return tok


def placeholder_token_id(tok=None) -> int:
    """The id of :data:`PLACEHOLDER` as a word in ``tok`` (default: CLIP's BPE tokenizer, where it is 259)."""
    if tok is None:
        from vtonlab.clip.bpe import tokenizer

        tok = tokenizer()
    ids = tok(PLACEHOLDER, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"the tokenizer splits the placeholder {PLACEHOLDER!r} into {len(ids)} tokens {ids}; "
                         "expected one token")
    return int(ids[0])


def tokenize_prompts(texts: str | Sequence[str], model: object = None, *, context_length: int = 77) -> Tensor:
    """Token ids ``(B, context_length)``, padded to the full context as the official code does (``padding="max_length"``)."""
    from vtonlab.clip.bpe import tokenize

    return tokenize(texts, _tokenizer_of(model), context_length=context_length, padding="max_length")[0]


class InversionAdapter(nn.Module):
    """Garment image hidden states -> ``N`` pseudo-word token embeddings (LaDI-VTON's textual-inversion adapter).

    ``forward(x)``: ``x`` ``(B, T, d)``: the CLIP image tower's last hidden states (class token first, before
    ``post_layernorm``; ``d = vision_config.hidden_size``) -> ``num_encoder_layers`` new CLIP encoder layers ->
    the class token ``[:, 0]`` -> ``LayerNorm`` -> MLP ``d -> 4d -> 4d -> N * d_text`` -> ``(B, N, d_text)``.

    Parameter names follow the official module (``encoder_layers``, ``post_layernorm``, ``layers``), so its
    released state dict loads with ``load_state_dict``.
    """

    def __init__(self, vision_config, text_hidden_size: int, num_pseudo_words: int = NUM_PSEUDO_WORDS,
                 num_encoder_layers: int = 1, dropout: float = 0.5):
        super().__init__()
        from transformers import CLIPVisionConfig
        from transformers.models.clip.modeling_clip import CLIPEncoderLayer

        if not isinstance(vision_config, CLIPVisionConfig):
            raise TypeError(f"vision_config: expected a transformers CLIPVisionConfig (the image tower's, e.g. "
                            f"clip.hf.config.vision_config), got {type(vision_config).__name__}")
        for name, value, low in (("text_hidden_size", text_hidden_size, 1), ("num_pseudo_words", num_pseudo_words, 1),
                                 ("num_encoder_layers", num_encoder_layers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        config = copy.deepcopy(vision_config)
        if config._attn_implementation is None:
            config._attn_implementation = "sdpa"
        d = config.hidden_size
        self.config = config
        self.num_pseudo_words = num_pseudo_words
        self.text_hidden_size = text_hidden_size
        self.encoder_layers = nn.ModuleList([CLIPEncoderLayer(config) for _ in range(num_encoder_layers)])
        self.post_layernorm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.layers = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(4 * d, 4 * d), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(4 * d, num_pseudo_words * text_hidden_size),
        )

    @classmethod
    def for_clip(cls, clip, num_pseudo_words: int = NUM_PSEUDO_WORDS, num_encoder_layers: int = 1,
                 dropout: float = 0.5) -> InversionAdapter:
        """An adapter sized for a :class:`vtonlab.clip.CLIP` (or a transformers ``CLIPModel``): its vision config and text width."""
        hf = getattr(clip, "hf", clip)
        cfg = getattr(hf, "config", None)
        if cfg is None or not hasattr(cfg, "vision_config") or not hasattr(cfg, "text_config"):
            raise TypeError(f"clip: expected a vtonlab.clip.CLIP or transformers CLIPModel, got {type(clip).__name__}")
        return cls(cfg.vision_config, cfg.text_config.hidden_size, num_pseudo_words, num_encoder_layers, dropout)

    def forward(self, x: Tensor) -> Tensor:
        d = self.config.hidden_size
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != d or x.shape[1] < 1:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x: expected the image tower's hidden states (B, T, {d}), class token first, got {shape}")
        for layer in self.encoder_layers:
            out = layer(x, None)
            x = out[0] if isinstance(out, tuple) else out
        cls_token = self.post_layernorm(x[:, 0])
        return self.layers(cls_token).reshape(x.shape[0], self.num_pseudo_words, self.text_hidden_size)


def _text_model(model: object) -> tuple[nn.Module, nn.Embedding]:
    hf = getattr(model, "hf", model)
    text = getattr(hf, "text_model", hf)
    emb = getattr(getattr(text, "embeddings", None), "token_embedding", None)
    if not isinstance(text, nn.Module) or not isinstance(emb, nn.Embedding):
        raise TypeError(f"clip_or_text_model: expected a vtonlab.clip.CLIP, a transformers CLIPModel or "
                        f"CLIPTextModel, got {type(model).__name__}")
    return text, emb


def encode_text_with_pseudo_words(clip_or_text_model: object, input_ids: Tensor, pseudo_words: Tensor, *,
                                  placeholder_id: int | None = None) -> Tensor:
    """Text hidden states ``(B, L, d_text)`` of prompts whose placeholders are replaced by pseudo-words.

    ``input_ids`` ``(B, L)``: prompts from :func:`prompt` tokenized with :func:`tokenize_prompts`; ``pseudo_words``
    ``(B, N, d_text)``: the adapter's output. In each prompt the first placeholder and the ``N - 1`` positions after
    it (all placeholders) get the pseudo-words' token embeddings, in order; then the text transformer runs as usual
    (positional embeddings, causal mask, final layer norm; no padding mask, as the official code). Rows that are
    the empty prompt (condition dropout) are encoded unchanged. Returns the final hidden states, what the UNet
    cross-attends to; gradients flow into ``pseudo_words``.

    ``placeholder_id``: the placeholder's token id; default :func:`placeholder_token_id` of the model's tokenizer.
    """
    text, emb = _text_model(clip_or_text_model)
    tok = _tokenizer_of(clip_or_text_model)
    ph = placeholder_token_id(tok) if placeholder_id is None else int(placeholder_id)
    if not isinstance(input_ids, Tensor) or input_ids.ndim != 2 or input_ids.dtype not in (torch.int32, torch.int64):
        shape = f"{input_ids.dtype} {tuple(input_ids.shape)}" if isinstance(input_ids, Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids: expected an integer tensor (B, L) from tokenize_prompts, got {shape}")
    b, length = input_ids.shape
    n_pos = text.embeddings.position_embedding.num_embeddings
    if not 2 <= length <= n_pos:
        raise ValueError(f"input_ids: expected 2..{n_pos} positions (start and end tokens included), got {length}")
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= emb.num_embeddings):
        raise ValueError(f"input_ids: expected ids in [0, {emb.num_embeddings}), got [{int(input_ids.min())}, "
                         f"{int(input_ids.max())}]")
    width = emb.embedding_dim
    if not isinstance(pseudo_words, Tensor) or pseudo_words.ndim != 3 or pseudo_words.shape[0] != b \
            or pseudo_words.shape[2] != width or pseudo_words.shape[1] < 1:
        shape = tuple(pseudo_words.shape) if isinstance(pseudo_words, Tensor) else type(pseudo_words).__name__
        raise ValueError(f"pseudo_words: expected (B, N, d_text) = ({b}, N, {width}) (the text tower's token width), "
                         f"got {shape}")
    n = pseudo_words.shape[1]
    device = emb.weight.device
    ids = input_ids.to(device)
    is_ph = ids == ph
    counts = is_ph.sum(dim=1)
    empty = ids[:, 1] == tok.eos_token_id
    for i in range(b):
        c = int(counts[i])
        if c == 0 and not bool(empty[i]):
            raise ValueError(f"input_ids row {i} has no placeholder {PLACEHOLDER!r} (token id {ph}) but pseudo-words were "
                             f"given: expected {n} placeholders, as in prompt(category, {n}), or the empty prompt")
        if c not in (0, n):
            raise ValueError(f"input_ids row {i} has {c} placeholders {PLACEHOLDER!r} (token id {ph}); expected {n}, "
                             f"one per pseudo-word (was the prompt truncated, or built for another N?)")
    rows = torch.nonzero(counts > 0).squeeze(1)
    first = is_ph.int().argmax(dim=1)
    cols = first[rows, None] + torch.arange(n, device=device)
    if rows.numel() and not bool(is_ph[rows[:, None], cols.clamp(max=length - 1)].all()):
        bad = int(rows[~is_ph[rows[:, None], cols.clamp(max=length - 1)].all(dim=1)][0])
        raise ValueError(f"input_ids row {bad}: the {n} placeholders {PLACEHOLDER!r} must be consecutive tokens "
                         f"(as prompt() writes them)")
    words = pseudo_words.to(device)

    def replace(_module, _inputs, out: Tensor) -> Tensor:
        out = out.clone()
        out[rows[:, None], cols] = words[rows].to(out.dtype)
        return out

    handle = emb.register_forward_hook(replace)
    try:
        out = text(input_ids=ids)
    finally:
        handle.remove()
    return out[0]
