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

Pre-training (:func:`train`, :func:`get_trained`; checkpoint ``ladi_adapter``): the adapter alone learns, through the
frozen base inpainting UNet (:mod:`vtonlab.ladi.inpaint`, checkpoint ``ladi_inpaint``), the frozen text and image
towers of the course's CLIP and the frozen autoencoder (``ladi_vae_long``). Per step, for persons ``x`` with their try-on
masks ``m`` and the in-shop garments ``c`` they wear (paired): ``z_0 = s E(x)``, ``z_m = s E(x * (1 - m))`` (posterior
samples), ``eps ~ N(0, I)``, ``t ~ U{0, ..., 999}``, ``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps``, pseudo-words
``v = A(CLIP_img(c))``, text states ``T(prompt; v)`` (:func:`encode_text_with_pseudo_words`), and the loss
``|| eps - eps_theta([z_t, m, z_m], t, T(prompt; v)) ||^2`` (DDPM Eq. 14) is minimised over the adapter's weights only.
The pseudo-words are useful exactly when they lower this loss below the empty prompt's inside the garment region: the
denoiser can only recover the hidden garment from the text (:func:`evaluate` measures it).

Fidelity of the pre-training (official code: ``src/train_inversion_adapter.py``; every difference is an
:class:`AdapterConfig` option, what a profile changes is said in the row; "not checked" as above):

| point | paper | official code | vtonlab |
|---|---|---|---|
| trained [a] | not checked | AdamW over ``inversion_adapter.parameters()`` | same; the rest ``requires_grad_(False)`` |
| denoiser [b] | not checked | its UNet (9 channels), not in the optimiser | ``ladi_inpaint`` (9 channels), frozen |
| text encoder [c] | not checked | SD 2's, never stepped; ``last_hidden_state`` | course CLIP's text tower, frozen; last layer |
| image encoder [d] | not checked | ``last_hidden_state``; ``(c + 1) / 2`` to 224, processor | our CLIP's, frozen; its own fit |
| inputs [e] | not checked | person latent, try-on mask (nearest), ``image * (1 - m)`` latent | same (``masked_image``) |
| latents [e] | not checked | posterior samples x ``scaling_factor`` | same, the autoencoder's factor |
| prompt [f] | not checked | ``category_text``, N ``$``, ``max_length`` padding | :func:`prompt` of ``category`` |
| text dropout, masks [g] | not checked | none; the dataset's try-on mask only | none; the try-on mask only |
| noise, timesteps [h] | not checked | ``randn_like``, ``t ~ U{0..999}`` | same, from the loop's generator |
| loss [i] | not checked | ``mse_loss(pred, noise)`` | ``inpaint.diffusion_loss`` |
| optimiser [j] | not checked | AdamW 1e-5, betas (0.9, 0.999), wd 1e-2, eps 1e-8 | same; ``lr`` (*) |
| lr schedule [j] | not checked | ``constant_with_warmup``, 500 steps | same; ``warmup_steps`` (*) |
| gradient clip [j] | not checked | 1.0 (the adapter's norm) | same (``grad_clip``) |
| batch, steps [j] | not checked | 16, 200,001 | the profile's batch and ``adapter`` steps |
| precision [k] | not checked | fp16; VAE and image tower cast to fp16 | the profile's: float32 (ci, cpu), bf16 (gpu) |
| adapter dropout [l] | not checked | 0.5, ``train()`` mode while training | same (``dropout``); ``eval()`` when measured |
| seed [m] | not checked | 1234 | ``seed`` 0; ``_seed<k>`` checkpoints |
| validation [n] | not checked | sampling + ``compute_metrics`` every 50k steps | test denoising MSE: pseudo-words, caption, ``""`` |

(*) ``lr`` 1e-4 in ci and cpu and 2e-5 in gpu: the profiles train 60 / 300 / 3000 steps instead of 200k, so the
official 1e-5 would barely move a freshly initialised adapter; ``warmup_steps`` a twentieth of the steps. Mixed
precision is the profile's (:class:`vtonlab.train.Trainer`), never fp16 on a CPU.

Sources (``src/train_inversion_adapter.py`` unless named): [a] 272-278, 245-247, 441; [b] 243, 506-507 (no
``requires_grad_(False)`` on the UNet and text encoder: their gradients are computed but never applied); [c] 227-228,
501-503; [d] 232-236, 489-494; [e] 443-444, 471-477, ``src/dataset/vitonhd.py`` 353-354 (``im_mask = image *
parse_mask_total``, ``inpaint_mask = 1 - parse_mask_total``); [f] 457-466, 479-481; [g] 281, 472, 476; [h] 447-455;
[i] 469, 505-511; [j] 66, 77, 91-123, 272-278, 350-355, 519-520; [k] 125-135, 363-371; [l]
``src/models/inversion_adapter.py`` 6, 15, 18, ``train_inversion_adapter.py`` 433; [m] 63; [n] 147-154, 533-572.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "PLACEHOLDER", "OFFICIAL_PLACEHOLDER_ID", "NUM_PSEUDO_WORDS", "CATEGORY_NOUNS", "prompt", "placeholder_token_id",
    "tokenize_prompts", "InversionAdapter", "encode_text_with_pseudo_words",
    "STEPS_KEY", "CHECKPOINT_NAME", "EVAL_TIMESTEPS", "TEXT_CONDITIONS", "AdapterConfig", "build_adapter",
    "garment_features", "pseudo_word_states", "GarmentPersons", "load_split", "train", "evaluate", "checkpoint_name",
    "checkpoint_config", "get_trained",
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


# ----------------------------------------------------------------------------------------------
# Pre-training through the frozen base inpainting model
# ----------------------------------------------------------------------------------------------

STEPS_KEY = "adapter"
"""The profile's ``steps_for`` key of the adapter's pre-training."""

CHECKPOINT_NAME = "ladi_adapter"

EVAL_TIMESTEPS = (100, 500, 900)
"""Timesteps at which :func:`evaluate` measures the test denoising MSE (as ``vtonlab.ladi.inpaint.EVAL_TIMESTEPS``)."""

TEXT_CONDITIONS = ("inversion", "caption", "empty")
"""The prompts :func:`evaluate` compares: the adapter's pseudo-words, the garment caption, the empty prompt."""

_PROFILE_LR = {"ci": 1e-4, "cpu": 1e-4, "gpu": 2e-5}


def _positive_int(name: str, value: object, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"AdapterConfig.{name}: expected an int >= {low}, got {value!r}")
    return value


@dataclass(frozen=True)
class AdapterConfig:
    """The adapter and its pre-training; defaults are the official ``train_inversion_adapter.py``'s (module docstring).

    :meth:`for_profile` gives the course's run; the JSON form (:meth:`to_dict`) is the checkpoint config together with
    the SHA-256 of the frozen models and the data key (:func:`checkpoint_config`).
    """

    num_pseudo_words: int = NUM_PSEUDO_WORDS  # N (``--num_vstar``)
    num_encoder_layers: int = 1
    dropout: float = 0.5
    category: str = "upper_body"  # the prompt's noun (CATEGORY_NOUNS); SynthVTON and VITON-HD: upper_body
    image_size: tuple[int, int] = (512, 384)  # (H, W) of the persons (the official 512 x 384)
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_steps: int = 500
    steps: int = 200_001
    batch_size: int = 16
    n_train: int | None = None  # training persons (None: the whole split)
    eval_samples: int = 32  # test persons in the metrics
    seed: int = 0

    def __post_init__(self) -> None:
        _positive_int("num_pseudo_words", self.num_pseudo_words)
        _positive_int("num_encoder_layers", self.num_encoder_layers, 0)
        _positive_int("steps", self.steps, 0)
        _positive_int("warmup_steps", self.warmup_steps, 0)
        _positive_int("batch_size", self.batch_size)
        _positive_int("eval_samples", self.eval_samples)
        _positive_int("seed", self.seed, 0)
        if self.n_train is not None:
            _positive_int("n_train", self.n_train)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"AdapterConfig.dropout: expected a probability in [0, 1), got {self.dropout!r}")
        if self.category not in CATEGORY_NOUNS:
            raise ValueError(f"AdapterConfig.category: expected one of {list(CATEGORY_NOUNS)}, got {self.category!r}")
        for name in ("lr", "grad_clip", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"AdapterConfig.{name}: expected a positive number, got {value!r}")
        h, w = (int(v) for v in self.image_size)
        if h < 8 or w < 8 or h % 8 or w % 8:
            raise ValueError(f"AdapterConfig.image_size {self.image_size}: expected (H, W), multiples of 8 (f = 8 autoencoder)")
        object.__setattr__(self, "image_size", (h, w))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "dropout", float(self.dropout))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> AdapterConfig:
        """The course's pre-training for a profile: its image size, batch, training persons and ``adapter`` steps,
        ``lr`` from the module docstring's note (*), warm-up a twentieth of the steps."""
        prof = resolve_profile(profile)
        steps = prof.steps_for(STEPS_KEY)
        base = dict(image_size=tuple(prof.image_size), steps=steps, warmup_steps=max(1, steps // 20),
                    batch_size=prof.batch_size, n_train=prof.n_train, eval_samples=min(32, prof.n_test),
                    lr=_PROFILE_LR.get(prof.name, _PROFILE_LR["cpu"]))
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        from vtonlab.checkpoints import config_dict

        return config_dict(self)

    @property
    def prompt(self) -> str:
        """The training prompt: :func:`prompt` of ``category`` with ``num_pseudo_words`` placeholders."""
        return prompt(self.category, self.num_pseudo_words)


def build_adapter(config: AdapterConfig, clip) -> InversionAdapter:
    """An untrained :class:`InversionAdapter` sized for ``clip`` (a :class:`vtonlab.clip.CLIP`), seeded by ``config.seed``."""
    torch.manual_seed(config.seed)
    return InversionAdapter.for_clip(clip, config.num_pseudo_words, config.num_encoder_layers, config.dropout)


def _clip_parts(clip) -> tuple[nn.Module, nn.Module]:
    hf = getattr(clip, "hf", None)
    if hf is None or not hasattr(hf, "vision_model") or not hasattr(hf, "text_model") or not hasattr(clip, "image_mean"):
        raise TypeError(f"clip: expected a vtonlab.clip.CLIP (its image and text towers, tokenizer and preprocessing), got "
                        f"{type(clip).__name__}")
    return hf.vision_model, hf.text_model


def garment_features(clip, cloth: Tensor) -> Tensor:
    """The adapter's input: the image tower's last hidden states ``(B, 1 + P, d_vis)`` (class token first, before
    ``post_layernorm``) of in-shop garments ``cloth`` ``(B, 3, H, W)`` in [-1, 1].

    The garments go through the CLIP's own preprocessing (:func:`vtonlab.clip.images.preprocess` with its fit, mean and
    std), as :class:`vtonlab.ladi.pipeline.LadiVTONPipeline` feeds them for our CLIP; the official code feeds
    ``CLIPVisionModelWithProjection(...).last_hidden_state`` of its ViT-H/14 (``train_inversion_adapter.py`` 489-494).
    """
    from vtonlab.clip.images import preprocess

    vision, _ = _clip_parts(clip)
    if not isinstance(cloth, Tensor) or not cloth.is_floating_point() or cloth.ndim != 4 or cloth.shape[1] != 3:
        shape = tuple(cloth.shape) if isinstance(cloth, Tensor) else type(cloth).__name__
        raise ValueError(f"cloth: expected in-shop garments, a float tensor (B, 3, H, W) in [-1, 1], got {shape}")
    weight = next(vision.parameters())
    pixels = preprocess(cloth, clip.image_size, clip.image_mean, clip.image_std, clip.fit)
    return vision(pixel_values=pixels.to(weight.device, weight.dtype)).last_hidden_state


def pseudo_word_states(clip, pseudo_words: Tensor, prompts: str | Sequence[str] | None = None, *,
                       category: str = "upper_body") -> Tensor:
    """Text hidden states ``(B, L, d_text)`` of the prompts with the pseudo-words ``(B, N, d_text)`` in their placeholders.

    ``prompts``: one prompt or ``B``, each with exactly ``N`` placeholders ``$``; default :func:`prompt` of ``category``
    with ``N`` placeholders. The prompts are padded to the text tower's full context, as the official code
    tokenizes them (``train_inversion_adapter.py`` 479-481); :func:`encode_text_with_pseudo_words` does the rest.
    """
    _, text = _clip_parts(clip)
    if not isinstance(pseudo_words, Tensor) or pseudo_words.ndim != 3:
        shape = tuple(pseudo_words.shape) if isinstance(pseudo_words, Tensor) else type(pseudo_words).__name__
        raise ValueError(f"pseudo_words: expected the adapter's output (B, N, d_text), got {shape}")
    b, n = pseudo_words.shape[:2]
    if prompts is None:
        texts = [prompt(category, n)] * b
    else:
        texts = [prompts] * b if isinstance(prompts, str) else list(prompts)
        if len(texts) != b or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"prompts: expected one prompt or {b} (one per garment), got {len(texts)}")
        for i, t in enumerate(texts):
            count = t.split().count(PLACEHOLDER)
            if count != n:
                raise ValueError(f"prompts[{i}] {t!r} has {count} placeholders {PLACEHOLDER!r}; the adapter's {n} "
                                 f"pseudo-words need {n}, as in vtonlab.ladi.adapter.prompt(category, {n})")
    ids = tokenize_prompts(texts, clip, context_length=int(text.config.max_position_embeddings))
    return encode_text_with_pseudo_words(clip, ids, pseudo_words)


class GarmentPersons(torch.utils.data.Dataset):
    """Persons with their try-on masks, the in-shop garments they wear (paired) and the garments' captions, in memory:
    ``ds[i]`` = ``{"image", "inpaint_mask", "cloth", "caption"}``."""

    def __init__(self, images: Tensor, masks: Tensor, cloths: Tensor, captions: Sequence[str]) -> None:
        n = len(images)
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected (N, 3, H, W) in [-1, 1], got {_shape_of(images)}")
        if not isinstance(masks, Tensor) or tuple(masks.shape) != (n, 1, *images.shape[-2:]):
            raise ValueError(f"masks: expected shape {(n, 1, *images.shape[-2:])} (one try-on mask per person), got "
                             f"{_shape_of(masks)}")
        if not isinstance(cloths, Tensor) or cloths.ndim != 4 or cloths.shape[:2] != (n, 3):
            raise ValueError(f"cloths: expected ({n}, 3, H', W') (the garment each person wears), got {_shape_of(cloths)}")
        if len(captions) != n or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions: expected {n} strings (one per garment), got {len(captions)}")
        self.images, self.masks, self.cloths, self.captions = images, masks.float(), cloths, list(captions)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "inpaint_mask": self.masks[i], "cloth": self.cloths[i], "caption": self.captions[i]}


def _shape_of(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def load_split(profile: Profile | str | None = None, split: str = "train", limit: int | None = None) -> GarmentPersons:
    """The profile's SynthVTON ``split`` (paired; the first ``limit`` persons) as :class:`GarmentPersons`."""
    from vtonlab.data import synthvton

    ds = synthvton(split, resolve_profile(profile))
    n = len(ds) if limit is None else min(limit, len(ds))
    samples = [ds[i] for i in range(n)]
    return GarmentPersons(torch.stack([s["image"] for s in samples]), torch.stack([s["inpaint_mask"] for s in samples]),
                          torch.stack([s["cloth"] for s in samples]), [str(s["caption"]) for s in samples])


def _check_components(unet: nn.Module, vae: nn.Module, clip) -> None:
    from vtonlab.ladi.inpaint import IN_CHANNELS, LATENT_CHANNELS

    _, text = _clip_parts(clip)
    cin = getattr(getattr(unet, "config", None), "in_channels", None)
    if cin != IN_CHANNELS:
        raise ValueError(f"unet: the adapter is pre-trained through the {IN_CHANNELS}-channel base inpainting UNet "
                         f"(ladi_inpaint: noisy latent, mask, masked-image latent), got in_channels={cin}")
    width, cross = int(text.config.hidden_size), getattr(unet.config, "cross_attention_dim", None)
    if cross != width:
        raise ValueError(f"unet: cross_attention_dim={cross}, but the CLIP's text tower is {width} wide; the base UNet "
                         "must have been trained on this CLIP's text states")
    if getattr(getattr(vae, "config", None), "latent_channels", None) != LATENT_CHANNELS:
        raise ValueError(f"vae: expected an autoencoder with {LATENT_CHANNELS} latent channels, got "
                         f"{getattr(getattr(vae, 'config', None), 'latent_channels', None)}")


def _check_data(config: AdapterConfig, data) -> None:
    if len(data) < config.batch_size:
        raise ValueError(f"adapter training needs at least one batch of {config.batch_size} samples "
                         f"(AdapterConfig.batch_size), got {len(data)}")
    first = data[0]
    missing = [k for k in ("image", "inpaint_mask", "cloth") if k not in first]
    if missing:
        raise KeyError(f"adapter training data lacks {', '.join(missing)} (needs image, inpaint_mask, cloth)")
    if tuple(first["image"].shape[-2:]) != config.image_size:
        raise ValueError(f"training images: expected {config.image_size} (AdapterConfig.image_size), got "
                         f"{tuple(first['image'].shape[-2:])}")
    if tuple(first["inpaint_mask"].shape) != (1, *config.image_size):
        raise ValueError(f"training inpaint_mask: expected {(1, *config.image_size)}, got {tuple(first['inpaint_mask'].shape)}")


def train(config: AdapterConfig, data, *, unet: nn.Module, vae: nn.Module, clip, scheduler=None, progress: bool = True,
          profile: Profile | None = None):
    """Pre-train an inversion adapter with :class:`vtonlab.train.Trainer`; only the adapter learns.

    ``data``: sample dicts with ``image`` ``(3, H, W)``, ``inpaint_mask`` ``(1, H, W)`` and the worn garment ``cloth``
    (:class:`GarmentPersons`); ``unet``: the base 9-channel inpainting UNet (``ladi_inpaint``); ``vae``: its
    autoencoder; ``clip``: the :class:`vtonlab.clip.CLIP` whose text tower the UNet reads and whose image tower feeds
    the adapter; ``scheduler``: the training noise schedule (default :func:`vtonlab.ladi.inpaint.noise_scheduler`).
    The UNet, autoencoder and CLIP are set to ``eval`` and ``requires_grad_(False)``. Per step, from the loop's
    generator in this order: the posterior samples of the persons and masked persons, the noise, the timesteps
    (module docstring). Returns ``(adapter, history)``.
    """
    from diffusers.optimization import get_scheduler

    from vtonlab.ladi.inpaint import diffusion_loss, masked_image, noise_scheduler
    from vtonlab.ladi.unet import resize_mask
    from vtonlab.train import Trainer

    _check_components(unet, vae, clip)
    _check_data(config, data)
    vision, text = _clip_parts(clip)
    for frozen in (unet, vae, clip):
        frozen.eval().requires_grad_(False)
    adapter = build_adapter(config, clip)
    scheduler = scheduler if scheduler is not None else noise_scheduler()
    sf = float(vae.config.scaling_factor)
    n_timesteps = int(scheduler.config.num_train_timesteps)
    opt = torch.optim.AdamW(adapter.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay,
                            eps=config.eps)
    sched = get_scheduler("constant_with_warmup", optimizer=opt, num_warmup_steps=config.warmup_steps)
    modules = {"adapter": adapter, "unet": unet, "vae": vae, "text": text, "vision": vision}

    def step(ctx, batch):
        g = ctx.generator
        image, mask = batch["image"], batch["inpaint_mask"]
        b = image.shape[0]
        with torch.no_grad():
            both = ctx.modules["vae"].encode(torch.cat([image, masked_image(image, mask)])).latent_dist.sample(g) * sf
            latents, masked_latents = both[:b], both[b:]
            features = garment_features(clip, batch["cloth"])
        noise = torch.randn(latents.shape, generator=g, device=g.device, dtype=latents.dtype).to(latents.device)
        t = torch.randint(0, n_timesteps, (b,), generator=g, device=g.device).to(latents.device)
        words = ctx.modules["adapter"](features)
        states = pseudo_word_states(clip, words, category=config.category)
        loss = diffusion_loss(ctx.modules["unet"], scheduler, latents, noise, t, resize_mask(mask, latents.shape[-2:]),
                              masked_latents, states)
        ctx.optimize(loss, "adapter")
        return {"loss": loss, "pseudo_word_norm": words.detach().float().norm(dim=-1).mean()}

    trainer = Trainer(modules, {"adapter": opt}, step, data, schedulers={"adapter": sched}, batch_size=config.batch_size,
                      max_steps=config.steps, seed=config.seed, grad_clip=config.grad_clip, progress=progress,
                      desc=f"inversion adapter N={config.num_pseudo_words}", profile=profile)
    history = trainer.fit()
    return trainer.unwrapped()["adapter"].cpu().eval(), history


@torch.no_grad()
def evaluate(adapter: nn.Module, unet: nn.Module, vae: nn.Module, clip, data: GarmentPersons, *,
             category: str = "upper_body", scheduler=None, n: int | None = None, seed: int = 0,
             batch_size: int = 16) -> dict:
    """Test denoising MSE of the frozen base UNet on the first ``n`` persons of ``data`` (their try-on masks), with
    three prompts (:data:`TEXT_CONDITIONS`): the adapter's pseudo-words of each person's garment (``inversion``), the
    garment's caption (``caption``) and ``""`` (``empty``). Latents are posterior means; the noise of each batch and
    timestep comes from ``seed`` and is shared by the three prompts, so their differences are the prompts' alone.

    Returns ``test_mse_<prompt>_t<t>`` at each of :data:`EVAL_TIMESTEPS` and their mean ``test_mse_<prompt>`` (the
    training objective), ``test_mse_inside_<prompt>`` (the squared error averaged over latent pixels inside the
    mask only, where the garment is hidden and only the prompt can tell it), ``inversion_gain_inside`` (``empty``
    minus ``inversion`` inside: > 0 when the pseudo-words carry garment information the UNet uses), ``n_eval``.
    """
    from vtonlab.ladi.inpaint import encode_prompts, inpaint_unet_input, masked_image, noise_scheduler
    from vtonlab.ladi.unet import resize_mask

    n = len(data) if n is None else min(n, len(data))
    if n < 1:
        raise ValueError("evaluate: data is empty")
    scheduler = scheduler if scheduler is not None else noise_scheduler()
    was_training = adapter.training
    adapter.eval()
    sf = float(vae.config.scaling_factor)
    g = torch.Generator().manual_seed(seed)
    total = {(c, t): 0.0 for c in TEXT_CONDITIONS for t in EVAL_TIMESTEPS}
    inside = {(c, t): 0.0 for c in TEXT_CONDITIONS for t in EVAL_TIMESTEPS}
    count = inside_count = 0.0
    try:
        for i in range(0, n, batch_size):
            j = min(n, i + batch_size)
            x, m = data.images[i:j].float(), data.masks[i:j].float()
            z = vae.encode(x).latent_dist.mode() * sf
            zm = vae.encode(masked_image(x, m)).latent_dist.mode() * sf
            ml = resize_mask(m, z.shape[-2:])
            words = adapter(garment_features(clip, data.cloths[i:j].float()))
            states = {"inversion": pseudo_word_states(clip, words, category=category),
                      "caption": encode_prompts(clip, data.captions[i:j], layer="last"),
                      "empty": encode_prompts(clip, [""] * (j - i), layer="last")}
            count += z.numel()
            inside_count += float(ml.sum()) * z.shape[1]
            for t in EVAL_TIMESTEPS:
                noise = torch.randn(z.shape, generator=g)
                ts = torch.full((j - i,), t, dtype=torch.long)
                x_in = inpaint_unet_input(scheduler.add_noise(z, noise, ts), ml, zm)
                for cond, st in states.items():
                    err = (unet(x_in, ts, encoder_hidden_states=st).sample.float() - noise) ** 2
                    total[cond, t] += float(err.sum())
                    inside[cond, t] += float((err * ml).sum())
    finally:
        adapter.train(was_training)
    out: dict = {}
    for cond in TEXT_CONDITIONS:
        for t in EVAL_TIMESTEPS:
            out[f"test_mse_{cond}_t{t}"] = total[cond, t] / count
        out[f"test_mse_{cond}"] = sum(total[cond, t] for t in EVAL_TIMESTEPS) / (count * len(EVAL_TIMESTEPS))
        out[f"test_mse_inside_{cond}"] = (sum(inside[cond, t] for t in EVAL_TIMESTEPS)
                                          / max(inside_count * len(EVAL_TIMESTEPS), 1.0))
    out["inversion_gain_inside"] = out["test_mse_inside_empty"] - out["test_mse_inside_inversion"]
    out["n_eval"] = n
    return out


# ----------------------------------------------------------------------------------------------
# Load or train
# ----------------------------------------------------------------------------------------------


def checkpoint_name(config: AdapterConfig) -> str:
    """``ladi_adapter``, plus ``_n<N>`` when ``N`` is not the paper's 16 and ``_seed<k>`` unless seed 0."""
    name = CHECKPOINT_NAME
    if config.num_pseudo_words != NUM_PSEUDO_WORDS:
        name += f"_n{config.num_pseudo_words}"
    return name if config.seed == 0 else f"{name}_seed{config.seed}"


def _sha(ckpt) -> str | None:
    return None if ckpt is None else ckpt.manifest.get("sha256")


def checkpoint_config(config: AdapterConfig, profile: Profile | str | None = None, inpaint_checkpoint=None,
                      vae_checkpoint=None, clip_checkpoint=None) -> dict:
    """The checkpoint config: the adapter config, the SHA-256 of the frozen base UNet (``ladi_inpaint``), autoencoder
    (:func:`vtonlab.ladi.vae.get_trained_stack`) and CLIP weights (``None`` for models without a checkpoint) and the
    profile's SynthVTON render parameters (the data key)."""
    from vtonlab.data import synthvton_params

    return {**config.to_dict(), "inpaint_sha256": _sha(inpaint_checkpoint), "vae_sha256": _sha(vae_checkpoint),
            "clip_sha256": _sha(clip_checkpoint), "data": synthvton_params(resolve_profile(profile))}


def _base_scheduler(inpaint_checkpoint):
    """The base model's training noise schedule (from its checkpoint config), and a check that it read the last text
    layer, the one :func:`encode_text_with_pseudo_words` gives."""
    from vtonlab.ladi.inpaint import InpaintConfig, noise_scheduler

    cfg = dict(getattr(inpaint_checkpoint, "config", None) or {})
    if cfg.get("text_layer", "last") != "last":
        raise ValueError(f"the base inpainting UNet was trained on the {cfg['text_layer']!r} text layer; the adapter's prompt "
                         "encoding (encode_text_with_pseudo_words) gives the last layer, as the official code")
    keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule")
    return noise_scheduler(InpaintConfig(**{k: cfg[k] for k in keys if k in cfg}))


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False, num_pseudo_words: int | None = None,
                seed: int = 0, config: AdapterConfig | None = None, inpaint: tuple | None = None, vae: tuple | None = None,
                clip: tuple | None = None, train_data: GarmentPersons | None = None,
                eval_data: GarmentPersons | None = None, checkpoint: str | os.PathLike | None = None,
                progress: bool = True, verbose: bool = True):
    """The profile's pre-trained inversion adapter: ``(adapter, checkpoint)``, loaded when a matching checkpoint exists.

    ``python -m vtonlab train ladi_adapter --profile P`` makes it (checkpoint :func:`checkpoint_name`: ``ladi_adapter``,
    ``ladi_adapter_n<N>`` for another pseudo-word count, ``..._seed<k>`` for another seed). ``inpaint``, ``vae``,
    ``clip``: ``(model, checkpoint or None)`` pairs; default the profile's ``ladi_inpaint``
    (:func:`vtonlab.ladi.inpaint.get_trained`), the stack's autoencoder and CLIP. ``checkpoint``: a checkpoint file to load
    instead of the shipped or cached one; a :class:`vtonlab.checkpoints.CheckpointError` naming it and every
    differing field is raised when it was made with another config, frozen model or data. Metrics: :func:`evaluate`
    on the test split.
    """
    from vtonlab.checkpoints import load_checkpoint, load_or_train, normalise_config

    prof = resolve_profile(profile)
    if config is None:
        extra = {} if num_pseudo_words is None else {"num_pseudo_words": num_pseudo_words}
        cfg = AdapterConfig.for_profile(prof, seed=seed, **extra)
    else:
        cfg = config
        if num_pseudo_words is not None and num_pseudo_words != cfg.num_pseudo_words:
            raise ValueError(f"num_pseudo_words={num_pseudo_words} differs from config.num_pseudo_words="
                             f"{cfg.num_pseudo_words}; give one of them")
        if seed not in (0, cfg.seed):
            raise ValueError(f"seed={seed} differs from config.seed={cfg.seed}; give one of them")
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"AdapterConfig.image_size {cfg.image_size} differs from profile {prof.name!r} image size "
                         f"{tuple(prof.image_size)}")
    if vae is None:
        from vtonlab.ladi import vae as vae_mod

        vae = vae_mod.get_trained_stack(prof, verbose=verbose)
    if clip is None:
        from vtonlab.clip import get_trained as get_clip

        clip = get_clip(prof)
    if inpaint is None:
        from vtonlab.ladi import inpaint as inpaint_mod

        inpaint = inpaint_mod.get_trained(prof, vae=vae, text_encoder=clip, progress=progress, verbose=verbose)
    (unet, inpaint_ckpt), (vae_model, vae_ckpt), (clip_model, clip_ckpt) = inpaint, vae, clip
    _check_components(unet, vae_model, clip_model)
    scheduler = _base_scheduler(inpaint_ckpt)
    full = checkpoint_config(cfg, prof, inpaint_ckpt, vae_ckpt, clip_ckpt)
    name = checkpoint_name(cfg)

    def train_fn():
        tr = train_data if train_data is not None else load_split(prof, "train", cfg.n_train)
        adapter, history = train(cfg, tr, unet=unet, vae=vae_model, clip=clip_model, scheduler=scheduler,
                                 progress=progress, profile=prof)
        ev = eval_data if eval_data is not None else load_split(prof, "test", cfg.eval_samples)
        metrics = evaluate(adapter, unet, vae_model, clip_model, ev, category=cfg.category, scheduler=scheduler,
                           n=cfg.eval_samples, seed=cfg.seed)
        metrics["n_parameters"] = sum(p.numel() for p in adapter.parameters())
        return {"adapter": adapter}, metrics, history

    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint, normalise_config({**full, "profile": prof.name}), name=name)
    else:
        ckpt = load_or_train(name, full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    adapter = build_adapter(cfg, clip_model)
    ckpt.load_into(adapter, prefix="adapter")
    return adapter.eval().requires_grad_(False), ckpt
