"""The base inpainting latent diffusion model: vtonlab's stand-in for Stable Diffusion 2 inpainting.

LaDI-VTON (Morelli et al., ACM MM 2023, arXiv 2305.13501) starts from Stable Diffusion 2 inpainting: a latent
diffusion model (Rombach et al., CVPR 2022, arXiv 2112.10752) whose UNet denoises a latent ``z_t`` given the
inpainting mask and the latent of the masked image, and cross-attends to the CLIP text encoder's hidden states of
a prompt. No Stable Diffusion weights can be downloaded here, so vtonlab trains a small model of the same kind on
SynthVTON persons, in the latent space of the course's autoencoder (:mod:`vtonlab.ladi.vae`, the stack's recipe,
checkpoint ``ladi_vae_long``) and with the text tower of the course's CLIP (:mod:`vtonlab.clip`). It is a real inpainting model:
:func:`inpaint` fills any masked region of a person; :mod:`vtonlab.ladi.unet` later widens it to the 31-channel
try-on UNet.

Training (DDPM, Ho et al. 2020, Eq. 14, the epsilon objective): encode the person ``x`` to ``z_0 = s E(x)`` (a
posterior sample times the autoencoder's scaling factor ``s``), draw ``t ~ U{0, ..., 999}`` and ``eps ~ N(0, I)``,
form ``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps`` and minimise ``|| eps - eps_theta([z_t, m, z_m], t, c) ||^2``
where ``m`` is the mask at the latent size (nearest), ``z_m = s E(x * (1 - m))`` the latent of the masked person and
``c`` the text hidden states of the caption (the empty prompt with probability 0.1, so classifier-free guidance
works at sampling time: ``eps = eps(empty) + w (eps(c) - eps(empty))``, Ho & Salimans 2022).

Fidelity (paper = the Stable Diffusion model cards and the LDM paper; official code = the released
``stabilityai/stable-diffusion-2-inpainting`` configs as LaDI-VTON (miccunifi/ladi-vton) loads and uses them; every
difference is an :class:`InpaintConfig` option, and what a profile changes is said in the row):

| point | paper | official code | vtonlab |
|---|---|---|---|
| UNet input [1] | 4 + 1 + 4 channels | noisy latent, mask, masked-image latent (9) | same (:func:`inpaint_unet_input`) |
| UNet widths [2] (a) | - | 320-640-1280-1280, 2 layers per block | ``block_out_channels``, ``layers_per_block`` |
| attention [2] (a) | - | 3 high-res blocks + mid; 5-10-20-20 heads | ``attention_blocks``, ``attention_heads`` |
| attention details [2] | - | head width 64, linear projections, 32 groups | head width 32; linear; ``norm_num_groups`` |
| text encoder [3] (b) | OpenCLIP ViT-H/14, frozen | 23rd of 24 layers + final norm, width 1024 | course CLIP, frozen; ``text_layer`` |
| text sequence [3] | - | 77 tokens, ``max_length`` padding, no attention mask | same (:func:`encode_prompts`) |
| noise schedule [4] | DDPM, 1000 steps | ``scaled_linear`` 0.00085 - 0.012, epsilon | same (``beta_*``, ``prediction_type``) |
| objective [5] | epsilon MSE | ``mse_loss(pred, noise)``, ``t ~ U{0..999}`` | same (:func:`diffusion_loss`) |
| latents [5] | f = 8, 4 channels | posterior sample x 0.18215 | posterior sample x the autoencoder's measured factor |
| masked image [6] | its latent | ``image * (mask < 0.5)``, sampled; mask nearest | same (:func:`masked_image`, ``resize_mask``) |
| masks [7] (c) | SD 2: LaMa's; SD 1.5: 25 % full | not released | ``tryon_mask_prob``, ``random_masks``, ``random_mask_area`` |
| full masks [7] | SD 1.5: 25 % | - | ``full_mask_prob`` 0 |
| text dropout [7] | SD 1.5 inpainting: 10 % | - | ``text_dropout`` 0.1 (caption -> ``""``) |
| prompts | LAION captions | - | SynthVTON's garment captions |
| start [7] | SD 2 base, new channels zero | - | from scratch (no base model here) |
| optimiser [8] (d) | SD 1: AdamW, 1e-4, 10k warmup | betas (0.9, 0.999), wd 1e-2, eps 1e-8, clip 1 | same; ``lr``, ``warmup_steps`` |
| batch, steps | 2048, 200k | LaDI-VTON: 16 | the profile's batch and ``unet`` steps |
| weights averaging [9] | EMA weights released | ``LitEma`` 0.9999, ``min(d, (1 + n) / (10 + n))`` | ``ema_decay`` 0.999; same |
| sampling [10] (e) | DDIM | 50 steps, guidance 7.5, eta 0, empty negative | same (:func:`inpaint`), profile's steps |
| compositing [10] | - | none: the decoder's output everywhere | same; ``composite=True`` pastes the input |

(a) gpu: 128-256-256-512, 2 layers, SD's attention layout (4-8-8-16 heads); cpu: 32-64-64, 1 layer, cross-attention
in the two low-resolution blocks and the mid block only (1-2-2 heads); ci: 32-64, 1 layer, attention in the second
block and the mid block (1-2 heads); 8 GroupNorm groups in ci and cpu. (b) Our CLIP is trained from scratch and has
2-4 text layers, so ``text_layer="last"`` (its last layer after the final layer norm, what
:func:`vtonlab.ladi.adapter.encode_text_with_pseudo_words` gives the try-on UNet); ``"penultimate"`` is SD 2's
choice; cross-attention is as wide as our text tower (64 / 96 / 256). (c) ``tryon_mask_prob`` 0.5: SynthVTON's
try-on mask, else a LaMa-style random mask (``random_masks="lama"``, :func:`random_masks`): brush strokes or boxes
with probability 1/2 each (LaMa mixes strokes, boxes and segmentation masks 1/3 each; SynthVTON has no object
segmentations), LaMa's 256-px sizes scaled to the image height, redrawn until the masked fraction lies in
``random_mask_area`` (0.05, 0.5) (LaMa draws 0-10 strokes or 0-3 boxes, empty masks included). The defaults of
:class:`InpaintConfig` are SD 2's (random masks only). (d) ``lr`` 5e-4 in ci and cpu, 1e-4 in gpu; warmup a
twentieth of the steps, then constant. (e) DDIM from SD 2 inpainting's scheduler config, eta 0, the negative branch
the empty prompt; the profile's ``sampling_steps``.

Sources: [1] ``unet/config.json`` of stable-diffusion-2-inpainting, ``src/train_inversion_adapter.py`` 506 of
miccunifi/ladi-vton; [2] ``unet/config.json`` (``attention_head_dim`` there is the number of heads); [3]
``text_encoder/config.json`` (``num_hidden_layers`` 23) and ``train_vto.py`` 606-618 (``text_encoder(ids)``, ids
padded to ``max_length``); [4] ``scheduler/scheduler_config.json``; [5] ``train_inversion_adapter.py`` 443-455,
511; [6] ``train_vto.py`` 577-583 and ``train_inversion_adapter.py`` 477, diffusers'
``prepare_mask_and_masked_image`` used by ``vto_pipelines/tryon_pipe.py`` 630; [7] the model cards of
stabilityai/stable-diffusion-2-inpainting and runwayml/stable-diffusion-inpainting (text dropout, full masks and
zero-initialised channels are stated for SD 1.5 inpainting; the SD 2 card names LaMa's strategy), LaMa's
``saicinpainting/training/data/masks.py`` (``make_random_irregular_mask``: 0-10 strokes of 1-5 segments, length
10-69 px, width 5-24 px; ``make_random_rectangle_mask``: 0-3 boxes of 30-99 px, margin 10 px); [8] the Stable
Diffusion v1 model card (the v2 cards' procedure was not checked here), ``train_vto.py`` 104-135; [9]
``ldm/modules/ema.py`` (CompVis/latent-diffusion); [10] ``tryon_pipe.py`` 410-440, 505-508, 708-740,
``src/inference.py`` 86-87, 123.

The checkpoint (``python -m vtonlab train ladi_inpaint --profile P``) holds the config, the SHA-256 of the
autoencoder and CLIP weights it was trained with, and SynthVTON's render parameters; its metrics are the test
denoising MSE at fixed timesteps and the quality of DDIM inpainting of the try-on region (:func:`evaluate`).
"""

from __future__ import annotations

import inspect
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab.ladi.unet import INPUT_LAYOUT, resize_mask
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "SD_INPAINT_UNET", "SD_SCHEDULER", "INPAINT_LAYOUT", "IN_CHANNELS", "LATENT_CHANNELS", "TEXT_LAYERS", "RANDOM_MASKS",
    "EVAL_TIMESTEPS", "STEPS_KEY", "CHECKPOINT_NAME", "InpaintConfig", "build_unet", "noise_scheduler",
    "sampling_scheduler", "inpaint_unet_input", "masked_image", "encode_prompts", "drop_text", "random_masks",
    "training_masks", "diffusion_loss", "predict_noise", "denoise_step", "inpaint", "CaptionedImages", "load_split",
    "train", "evaluate", "checkpoint_config", "get_trained",
]

SD_INPAINT_UNET = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                       attention_blocks=(True, True, True, False), attention_heads=(5, 10, 20, 20), norm_num_groups=32,
                       cross_attention_dim=1024, use_linear_projection=True)
"""Stable Diffusion 2 inpainting's ``unet/config.json`` values that matter here (heads: its ``attention_head_dim``)."""

SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                    prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)
"""Stable Diffusion 2 inpainting's ``scheduler/scheduler_config.json`` (the DDIM used for sampling reads the same)."""

INPAINT_LAYOUT = INPUT_LAYOUT[:3]
"""``(("noisy_latent", 4), ("mask", 1), ("masked_image_latent", 4))``: the 9 input channels in order."""

IN_CHANNELS = sum(c for _, c in INPAINT_LAYOUT)
LATENT_CHANNELS = dict(INPAINT_LAYOUT)["noisy_latent"]
TEXT_LAYERS = ("last", "penultimate")
RANDOM_MASKS = ("lama",)
EVAL_TIMESTEPS = (100, 500, 900)
"""Timesteps at which :func:`evaluate` measures the test denoising MSE."""

STEPS_KEY = "inpaint"
"""The profile's ``steps_for`` key of this model."""

CHECKPOINT_NAME = "ladi_inpaint"

LAMA_SIZE = 256
"""LaMa's masks are specified in pixels of its 256 x 256 training crops; vtonlab scales them by ``H / 256``."""

_PROFILE_SIZES = {
    "ci": dict(block_out_channels=(32, 64), attention_blocks=(False, True), attention_heads=(1, 2), layers_per_block=1,
               norm_num_groups=8, lr=5e-4),
    "cpu": dict(block_out_channels=(32, 64, 64), attention_blocks=(False, True, True), attention_heads=(1, 2, 2),
                layers_per_block=1, norm_num_groups=8, lr=5e-4),
    "gpu": dict(block_out_channels=(128, 256, 256, 512), attention_blocks=(True, True, True, False),
                attention_heads=(4, 8, 8, 16), layers_per_block=2, norm_num_groups=32, lr=1e-4),
}


def _probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"InpaintConfig.{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class InpaintConfig:
    """The base inpainting model and its training; defaults are Stable Diffusion 2 inpainting's (module docstring).

    :meth:`for_profile` gives the course's sizes; the JSON form (:meth:`to_dict`) is the checkpoint config.
    """

    block_out_channels: tuple[int, ...] = SD_INPAINT_UNET["block_out_channels"]
    attention_blocks: tuple[bool, ...] = SD_INPAINT_UNET["attention_blocks"]  # cross-attention in down block i (mirrored up)
    attention_heads: tuple[int, ...] = SD_INPAINT_UNET["attention_heads"]  # heads per block (diffusers' attention_head_dim)
    layers_per_block: int = SD_INPAINT_UNET["layers_per_block"]
    norm_num_groups: int = SD_INPAINT_UNET["norm_num_groups"]
    cross_attention_dim: int = SD_INPAINT_UNET["cross_attention_dim"]  # the text encoder's width
    use_linear_projection: bool = SD_INPAINT_UNET["use_linear_projection"]
    image_size: tuple[int, int] = (512, 512)
    num_train_timesteps: int = SD_SCHEDULER["num_train_timesteps"]
    beta_start: float = SD_SCHEDULER["beta_start"]
    beta_end: float = SD_SCHEDULER["beta_end"]
    beta_schedule: str = SD_SCHEDULER["beta_schedule"]
    prediction_type: str = SD_SCHEDULER["prediction_type"]
    text_layer: str = "penultimate"
    text_dropout: float = 0.1
    tryon_mask_prob: float = 0.0  # SD: random masks only; LaDI-VTON's fine-tuning: the try-on mask only
    random_masks: str = "lama"
    random_mask_area: tuple[float, float] = (0.05, 0.5)
    full_mask_prob: float = 0.0
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_steps: int = 10_000
    ema_decay: float = 0.9999
    steps: int = 200_000
    batch_size: int = 16
    n_train: int = 600
    guidance_scale: float = 7.5  # the evaluation's classifier-free guidance (LaDI-VTON's inference default)
    eval_samples: int = 32  # test persons in the metrics
    seed: int = 0

    def __post_init__(self) -> None:
        widths = tuple(int(c) for c in self.block_out_channels)
        attn = tuple(bool(a) for a in self.attention_blocks)
        heads = tuple(int(h) for h in self.attention_heads)
        if not widths or len(attn) != len(widths) or len(heads) != len(widths):
            raise ValueError(f"InpaintConfig: block_out_channels {widths}, attention_blocks {attn} and attention_heads "
                             f"{heads} need one entry per block")
        bad = [c for c in widths if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"InpaintConfig.block_out_channels {widths}: every width must be a multiple of "
                             f"norm_num_groups={self.norm_num_groups} (GroupNorm); {bad} are not")
        bad = [(c, h) for c, h in zip(widths, heads) if h < 1 or c % h]
        if bad:
            raise ValueError(f"InpaintConfig.attention_heads {heads}: each block's width must be a multiple of its heads; "
                             f"(width, heads) {bad} are not")
        h, w = (int(v) for v in self.image_size)
        down = 8 * 2 ** (len(widths) - 1)
        if h % down or w % down:
            raise ValueError(f"InpaintConfig.image_size {h}x{w}: height and width must be multiples of {down} (f = 8 "
                             f"autoencoder, then {len(widths) - 1} UNet downsamplings)")
        if self.text_layer not in TEXT_LAYERS:
            raise ValueError(f"InpaintConfig.text_layer: expected one of {list(TEXT_LAYERS)}, got {self.text_layer!r}")
        if self.random_masks not in RANDOM_MASKS:
            raise ValueError(f"InpaintConfig.random_masks: expected one of {list(RANDOM_MASKS)}, got {self.random_masks!r}")
        if self.prediction_type != "epsilon":
            raise ValueError(f"InpaintConfig.prediction_type: only 'epsilon' (Stable Diffusion 2 inpainting's) is "
                             f"implemented, got {self.prediction_type!r}")
        lo, hi = (float(a) for a in self.random_mask_area)
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"InpaintConfig.random_mask_area: expected (low, high) with 0 < low <= high <= 1, got "
                             f"{self.random_mask_area!r}")
        for name in ("text_dropout", "tryon_mask_prob", "full_mask_prob"):
            _probability(name, getattr(self, name))
        if not 0.0 <= float(self.ema_decay) < 1.0:
            raise ValueError(f"InpaintConfig.ema_decay: expected a decay in [0, 1) (0 = no averaging), got {self.ema_decay!r}")
        object.__setattr__(self, "block_out_channels", widths)
        object.__setattr__(self, "attention_blocks", attn)
        object.__setattr__(self, "attention_heads", heads)
        object.__setattr__(self, "image_size", (h, w))
        object.__setattr__(self, "random_mask_area", (lo, hi))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> InpaintConfig:
        """The course's model for a profile: sizes from the module docstring's table, the profile's image size,
        ``unet`` steps, batch and training persons; cross-attention as wide as the profile's CLIP text tower; the
        try-on mask half of the time, the last text layer, EMA 0.999."""
        from vtonlab.clip.config import clip_size

        prof = resolve_profile(profile)
        steps = prof.steps_for(STEPS_KEY)
        base = dict(image_size=tuple(prof.image_size), cross_attention_dim=clip_size(prof).text_width, text_layer="last",
                    tryon_mask_prob=0.5, steps=steps, warmup_steps=max(1, steps // 20), ema_decay=0.999,
                    batch_size=prof.batch_size, n_train=prof.n_train, eval_samples=min(32, prof.n_test),
                    **_PROFILE_SIZES.get(prof.name, _PROFILE_SIZES["cpu"]))
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        from vtonlab.checkpoints import config_dict

        return config_dict(self, ("block_out_channels", "attention_blocks", "attention_heads", "image_size",
                                  "random_mask_area", "betas"))

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.image_size[0] // 8, self.image_size[1] // 8


def build_unet(config: InpaintConfig) -> nn.Module:
    """An untrained diffusers ``UNet2DConditionModel`` with 9 input channels (seeded by ``config.seed``)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(config.seed)
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.attention_blocks)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in config.attention_blocks[::-1])
    return UNet2DConditionModel(sample_size=config.latent_size[0], in_channels=IN_CHANNELS, out_channels=LATENT_CHANNELS,
                                down_block_types=down, up_block_types=up, block_out_channels=config.block_out_channels,
                                layers_per_block=config.layers_per_block, norm_num_groups=config.norm_num_groups,
                                cross_attention_dim=config.cross_attention_dim, attention_head_dim=config.attention_heads,
                                use_linear_projection=config.use_linear_projection)


def _scheduler_kwargs(config: InpaintConfig | None) -> dict:
    kw = dict(SD_SCHEDULER)
    if config is not None:
        kw.update(num_train_timesteps=config.num_train_timesteps, beta_start=config.beta_start, beta_end=config.beta_end,
                  beta_schedule=config.beta_schedule, prediction_type=config.prediction_type)
    return kw


def noise_scheduler(config: InpaintConfig | None = None):
    """The training noise schedule: a diffusers ``DDPMScheduler`` with Stable Diffusion's betas (or ``config``'s)."""
    from diffusers import DDPMScheduler

    kw = _scheduler_kwargs(config)
    kw.pop("set_alpha_to_one")
    return DDPMScheduler(**kw)


def sampling_scheduler(config: InpaintConfig | None = None):
    """The sampler: a diffusers ``DDIMScheduler`` from Stable Diffusion 2 inpainting's scheduler config (or ``config``'s
    schedule), as LaDI-VTON builds it (``DDIMScheduler.from_pretrained(..., subfolder="scheduler")``)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**_scheduler_kwargs(config))


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _shape(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def inpaint_unet_input(noisy: Tensor, mask: Tensor, masked_latents: Tensor) -> Tensor:
    """Concatenate the inpainting UNet's input in Stable Diffusion's order (:data:`INPAINT_LAYOUT`).

    ``noisy`` ``(B, 4, h, w)``: the noisy latent (``scheduler.scale_model_input``-ed at sampling); ``mask``
    ``(B, 1, h, w)``: the inpainting mask at the latent size (``vtonlab.ladi.unet.resize_mask``); ``masked_latents``
    ``(B, 4, h, w)``: the scaled latent of the masked image. Returns ``(B, 9, h, w)`` in ``noisy``'s dtype.
    """
    c = dict(INPAINT_LAYOUT)
    if not isinstance(noisy, Tensor) or not noisy.is_floating_point() or noisy.ndim != 4 or noisy.shape[1] != c["noisy_latent"]:
        raise ValueError(f"noisy latents: expected a float tensor (B, {c['noisy_latent']}, h, w), got {_shape(noisy)}")
    b, _, h, w = noisy.shape
    for name, x, hint in (("mask", mask, "; resize an image-size mask with vtonlab.ladi.unet.resize_mask"),
                          ("masked_image_latent", masked_latents, "")):
        expected = (b, c[name], h, w)
        if not isinstance(x, Tensor) or not x.is_floating_point() or tuple(x.shape) != expected:
            raise ValueError(f"{name}: expected a float tensor of shape {expected} (the noisy latents' batch and latent "
                             f"size){hint}, got {_shape(x)}")
    return torch.cat([noisy, mask.to(noisy.dtype), masked_latents.to(noisy.dtype)], dim=1)


def masked_image(images: Tensor, masks: Tensor) -> Tensor:
    """``images * (masks < 0.5)``: the image with the region to inpaint set to 0 (mid grey in [-1, 1]), as diffusers'
    ``prepare_mask_and_masked_image`` (for binary masks: ``vtonlab.data.representation.agnostic_image``)."""
    return images * (masks < 0.5).to(images.dtype)


def _text_tower(text_encoder: object) -> nn.Module:
    hf = getattr(text_encoder, "hf", text_encoder)
    tower = getattr(hf, "text_model", hf)
    if not isinstance(tower, nn.Module) or not hasattr(tower, "final_layer_norm") or not hasattr(tower, "embeddings"):
        raise TypeError(f"text_encoder: expected a vtonlab.clip.CLIP, a transformers CLIPModel or CLIPTextModel, got "
                        f"{type(text_encoder).__name__}")
    return tower


def _text_width(text_encoder: object) -> int:
    return int(_text_tower(text_encoder).config.hidden_size)


def encode_prompts(text_encoder: object, prompts: str | Sequence[str], *, layer: str = "last", tokenizer=None) -> Tensor:
    """Text hidden states ``(B, 77, d_text)`` the UNet cross-attends to, as Stable Diffusion computes them.

    Prompts are padded to the full context (``padding="max_length"``) and encoded without an attention mask (the
    causal mask alone), every position is kept; ``layer="last"``: the last layer's states after the final layer
    norm (``last_hidden_state``); ``"penultimate"``: the layer before, through the final layer norm (SD 2's
    OpenCLIP choice). ``text_encoder``: a :class:`vtonlab.clip.CLIP`, transformers ``CLIPModel`` or ``CLIPTextModel``;
    ``tokenizer``: default the model's own (``text_encoder.tokenizer``), else CLIP's BPE tokenizer.
    """
    from vtonlab.clip.bpe import tokenize
    from vtonlab.clip.bpe import tokenizer as clip_tokenizer

    if layer not in TEXT_LAYERS:
        raise ValueError(f"layer: expected one of {list(TEXT_LAYERS)}, got {layer!r}")
    tower = _text_tower(text_encoder)
    context = int(tower.config.max_position_embeddings)
    tok = tokenizer if tokenizer is not None else getattr(text_encoder, "tokenizer", None) or clip_tokenizer()
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    ids = tokenize(texts, tok, context_length=context, padding="max_length")[0]
    ids = ids.to(tower.embeddings.token_embedding.weight.device)
    if layer == "last":
        return tower(input_ids=ids).last_hidden_state
    out = tower(input_ids=ids, output_hidden_states=True)
    return tower.final_layer_norm(out.hidden_states[-2])


def _generator_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def drop_text(prompts: Sequence[str], p: float, generator: torch.Generator | None = None) -> tuple[list[str], Tensor]:
    """Classifier-free guidance training: each prompt becomes ``""`` with probability ``p`` (one ``U(0, 1)`` draw per
    prompt from ``generator``). Returns ``(prompts, dropped)`` with ``dropped`` bool ``(B,)`` on the generator's device."""
    if isinstance(prompts, str) or not all(isinstance(t, str) for t in prompts):
        raise TypeError(f"prompts: expected a sequence of strings, got {type(prompts).__name__}")
    p = _probability("text_dropout", p)
    dropped = torch.rand(len(prompts), generator=generator, device=_generator_device(generator)) < p
    return ["" if d else t for t, d in zip(prompts, dropped.tolist())], dropped


# ----------------------------------------------------------------------------------------------
# Random masks (LaMa-style)
# ----------------------------------------------------------------------------------------------


def _draw_segments(segments: list[tuple[float, float, float, float, float]], h: int, w: int) -> Tensor:
    """``(h, w)`` bool: pixels within half a width of any segment ``(x0, y0, x1, y1, width)`` (a thick line)."""
    if not segments:
        return torch.zeros(h, w, dtype=torch.bool)
    s = torch.tensor(segments, dtype=torch.float32)[:, :, None, None]
    x0, y0, x1, y1, width = s.unbind(1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    dx, dy = x1 - x0, y1 - y0
    t = (((xs - x0) * dx + (ys - y0) * dy) / (dx * dx + dy * dy).clamp_min(1e-6)).clamp(0, 1)
    dist2 = (xs - x0 - t * dx) ** 2 + (ys - y0 - t * dy) ** 2
    return (dist2 <= (width / 2) ** 2).any(0)


def _lama_strokes(rng: random.Random, h: int, w: int, scale: float) -> Tensor:
    """LaMa's ``make_random_irregular_mask`` (``max_angle`` 4, ``max_len`` 60, ``max_width`` 20, 0-10 strokes), in pixels
    of a 256-px image times ``scale``."""
    segments = []
    for i in range(rng.randint(0, 10)):
        x, y = float(rng.randrange(w)), float(rng.randrange(h))
        for _ in range(1 + rng.randrange(5)):
            angle = 0.01 + rng.randrange(4)
            if i % 2 == 0:
                angle = 2 * math.pi - angle
            length = (10 + rng.randrange(60)) * scale
            width = (5 + rng.randrange(20)) * scale
            ex = min(max(x + length * math.sin(angle), 0.0), float(w))
            ey = min(max(y + length * math.cos(angle), 0.0), float(h))
            segments.append((x, y, ex, ey, width))
            x, y = ex, ey
    return _draw_segments(segments, h, w)


def _lama_boxes(rng: random.Random, h: int, w: int, scale: float) -> Tensor:
    """LaMa's ``make_random_rectangle_mask`` (margin 10, sides 30-99, 0-3 boxes), in pixels of 256 times ``scale``."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    margin = max(0, round(10 * scale))
    lo = max(1, round(30 * scale))
    hi = max(lo + 1, min(round(100 * scale), h - 2 * margin, w - 2 * margin))
    for _ in range(rng.randint(0, 3)):
        bw, bh = rng.randrange(lo, hi), rng.randrange(lo, hi)
        x0 = rng.randrange(margin, max(margin + 1, w - margin - bw + 1))
        y0 = rng.randrange(margin, max(margin + 1, h - margin - bh + 1))
        mask[y0:y0 + bh, x0:x0 + bw] = True
    return mask


def random_masks(n: int, size: Sequence[int], *, seed: int, area: Sequence[float] = (0.05, 0.5), full_prob: float = 0.0,
                 stroke_prob: float = 0.5, max_tries: int = 50) -> tuple[Tensor, list[str]]:
    """``n`` LaMa-style random inpainting masks ``(n, 1, H, W)`` in {0, 1} and the kind of each.

    Each mask is, with probability ``full_prob``, the whole image (``"full"``: SD 1.5 inpainting's "mask everything");
    otherwise brush strokes (``"strokes"``, probability ``stroke_prob``) or boxes (``"boxes"``) drawn as LaMa's
    generators do at 256 px, scaled by ``H / 256``, and redrawn until the masked fraction lies in ``area`` (after
    ``max_tries`` draws, a centred box of the middle area is used: ``"fallback"``). Deterministic in ``seed``.
    """
    h, w = (int(v) for v in size)
    lo, hi = (float(a) for a in area)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"area: expected (low, high) with 0 < low <= high <= 1, got {tuple(area)!r}")
    rng = random.Random(int(seed))
    scale = h / LAMA_SIZE
    out = torch.zeros(n, 1, h, w)
    kinds: list[str] = []
    for i in range(n):
        if rng.random() < full_prob:
            out[i] = 1.0
            kinds.append("full")
            continue
        kind = "strokes" if rng.random() < stroke_prob else "boxes"
        draw = _lama_strokes if kind == "strokes" else _lama_boxes
        for _ in range(max_tries):
            m = draw(rng, h, w, scale)
            if lo <= float(m.float().mean()) <= hi:
                break
        else:
            side = math.sqrt((lo + hi) / 2)
            bh, bw = max(1, round(h * side)), max(1, round(w * side))
            m = torch.zeros(h, w, dtype=torch.bool)
            m[(h - bh) // 2:(h - bh) // 2 + bh, (w - bw) // 2:(w - bw) // 2 + bw] = True
            kind = "fallback"
        out[i, 0] = m.float()
        kinds.append(kind)
    return out, kinds


def training_masks(tryon_masks: Tensor, config: InpaintConfig, generator: torch.Generator | None = None
                   ) -> tuple[Tensor, Tensor]:
    """The masks of one training batch: per sample, the try-on mask with probability ``config.tryon_mask_prob``, else a
    :func:`random_masks` mask. Draws from ``generator``: one ``U(0, 1)`` per sample, then one seed for the masks'
    geometry. Returns ``(masks (B, 1, H, W), used_tryon bool (B,))``, on ``tryon_masks``' device."""
    if not isinstance(tryon_masks, Tensor) or tryon_masks.ndim != 4 or tryon_masks.shape[1] != 1:
        raise ValueError(f"tryon_masks: expected (B, 1, H, W), got {_shape(tryon_masks)}")
    b, _, h, w = tryon_masks.shape
    device = _generator_device(generator)
    use = (torch.rand(b, generator=generator, device=device) < config.tryon_mask_prob).to(tryon_masks.device)
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=device))
    rand, _ = random_masks(b, (h, w), seed=seed, area=config.random_mask_area, full_prob=config.full_mask_prob)
    masks = torch.where(use[:, None, None, None], tryon_masks.float(), rand.to(tryon_masks.device))
    return masks, use


# ----------------------------------------------------------------------------------------------
# Objective and sampling
# ----------------------------------------------------------------------------------------------


def diffusion_loss(unet: nn.Module, scheduler, latents: Tensor, noise: Tensor, timesteps: Tensor, mask: Tensor,
                   masked_latents: Tensor, text_states: Tensor) -> Tensor:
    """The epsilon objective ``mean || eps - eps_theta([z_t, m, z_m], t, c) ||^2`` (DDPM Eq. 14, as LaDI-VTON trains).

    ``latents`` ``z_0`` and ``noise`` ``eps`` ``(B, 4, h, w)``; ``timesteps`` ``(B,)`` ints; ``mask`` ``(B, 1, h, w)`` at
    the latent size; ``masked_latents`` ``(B, 4, h, w)``; ``text_states`` ``(B, L, d)``. ``z_t`` is
    ``scheduler.add_noise(z_0, eps, t)`` = ``sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps``.
    """
    if noise.shape != latents.shape:
        raise ValueError(f"noise: expected the latents' shape {tuple(latents.shape)}, got {tuple(noise.shape)}")
    noisy = scheduler.add_noise(latents, noise, timesteps)
    pred = unet(inpaint_unet_input(noisy, mask, masked_latents), timesteps, encoder_hidden_states=text_states).sample
    return F.mse_loss(pred.float(), noise.float(), reduction="mean")


def _check_unet(unet: nn.Module) -> None:
    cin = getattr(getattr(unet, "config", None), "in_channels", None)
    if cin != IN_CHANNELS:
        raise ValueError(f"unet: expected a {IN_CHANNELS}-channel inpainting UNet (noisy latent, mask, masked-image latent), "
                         f"got in_channels={cin}; the 31-channel try-on UNet needs its pose and garment inputs")


def predict_noise(unet: nn.Module, latents: Tensor, t, mask: Tensor, masked_latents: Tensor, text_states: Tensor,
                  uncond_states: Tensor | None = None, guidance_scale: float = 1.0, scheduler=None) -> Tensor:
    """The UNet's noise prediction at timestep ``t``, with classifier-free guidance when ``guidance_scale > 1``.

    ``eps = eps(uncond) + w (eps(text) - eps(uncond))`` (Ho & Salimans 2022), both branches in one batch
    ``[uncond, text]`` as diffusers' pipelines run them; ``uncond_states`` are the empty prompt's hidden states. The
    latents go through ``scheduler.scale_model_input`` when a scheduler is given.
    """
    x = scheduler.scale_model_input(latents, t) if scheduler is not None else latents
    guided = guidance_scale > 1.0 and uncond_states is not None
    if not guided:
        return unet(inpaint_unet_input(x, mask, masked_latents), t, encoder_hidden_states=text_states).sample
    inp = inpaint_unet_input(torch.cat([x, x]), torch.cat([mask, mask]), torch.cat([masked_latents, masked_latents]))
    eps_u, eps_c = unet(inp, t, encoder_hidden_states=torch.cat([uncond_states, text_states])).sample.chunk(2)
    return eps_u + guidance_scale * (eps_c - eps_u)


def denoise_step(unet: nn.Module, scheduler, latents: Tensor, t, mask: Tensor, masked_latents: Tensor,
                 text_states: Tensor, uncond_states: Tensor | None = None, guidance_scale: float = 1.0, *,
                 generator: torch.Generator | None = None, eta: float = 0.0) -> Tensor:
    """One sampling step ``z_t -> z_{t-1}``: :func:`predict_noise`, then ``scheduler.step`` (DDIM: ``eta`` 0)."""
    eps = predict_noise(unet, latents, t, mask, masked_latents, text_states, uncond_states, guidance_scale, scheduler)
    kwargs = {"eta": eta} if "eta" in inspect.signature(scheduler.step).parameters else {}
    return scheduler.step(eps, t, latents, generator=generator, **kwargs).prev_sample


def _check_batch(images: Tensor, masks: Tensor) -> tuple[int, int, int]:
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a float tensor (B, 3, H, W) in [-1, 1], got {_shape(images)}")
    b, _, h, w = images.shape
    if h % 8 or w % 8:
        raise ValueError(f"images: height and width must be multiples of 8 (f = 8 autoencoder), got {h}x{w}")
    if not isinstance(masks, Tensor) or tuple(masks.shape) != (b, 1, h, w):
        raise ValueError(f"masks: expected shape {(b, 1, h, w)} (one mask per image, at the image size; 1 = inpaint), "
                         f"got {_shape(masks)}")
    return b, h, w


@torch.no_grad()
def inpaint(unet: nn.Module, vae: nn.Module, text_encoder: object, images: Tensor, masks: Tensor,
            prompts: str | Sequence[str], *, num_inference_steps: int = 50, guidance_scale: float = 7.5,
            generator: torch.Generator | None = None, scheduler=None, latents: Tensor | None = None,
            text_layer: str = "last", composite: bool = False, eta: float = 0.0,
            callback: Callable[[int, int, Tensor], None] | None = None) -> Tensor:
    """Fill the masked regions of ``images`` with the base inpainting model: a plain DDIM loop.

    Args:
        images: ``(B, 3, H, W)`` in [-1, 1]; masks: ``(B, 1, H, W)``, 1 = to be generated (binarised at 0.5).
        prompts: one prompt or ``B`` (``""`` for none); the negative branch of guidance is the empty prompt.
        num_inference_steps, guidance_scale, eta: DDIM steps, guidance weight (``<= 1``: no guidance), DDIM eta.
        generator: for the initial noise and the masked image's posterior sample (in that order).
        scheduler: default :func:`sampling_scheduler` (Stable Diffusion's DDIM); any diffusers scheduler works.
        latents: the initial noise ``(B, 4, H/8, W/8)`` (default: drawn from ``generator``).
        text_layer: as the model was trained (``InpaintConfig.text_layer``).
        composite: ``False`` (Stable Diffusion's and LaDI-VTON's pipelines): the decoder's output everywhere, so the
            kept region goes through the autoencoder; ``True``: the input pasted back outside the mask, exactly.
        callback: ``callback(i, t, latents)`` after each step (a notebook's trajectory view).
    Returns:
        ``(B, 3, H, W)`` in [-1, 1].
    """
    from diffusers.utils.torch_utils import randn_tensor

    from vtonlab.ladi.vae import decode_latents

    _check_unet(unet)
    b, h, w = _check_batch(images, masks)
    prompts = [prompts] * b if isinstance(prompts, str) else list(prompts)
    if len(prompts) != b:
        raise ValueError(f"prompts: expected one prompt or {b} (one per image), got {len(prompts)}")
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    shape = (b, LATENT_CHANNELS, h // 8, w // 8)
    if latents is not None and (not isinstance(latents, Tensor) or tuple(latents.shape) != shape):
        raise ValueError(f"latents: expected the initial noise of shape {shape} (B, 4, H/8, W/8), got {_shape(latents)}")
    scheduler = scheduler if scheduler is not None else sampling_scheduler()
    scheduler.set_timesteps(num_inference_steps, device=device)
    images, binary = images.to(device, dtype), (masks.to(device, dtype) >= 0.5).to(dtype)
    if latents is None:
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    latents = latents.to(device, dtype) * scheduler.init_noise_sigma
    sf = vae.config.scaling_factor
    masked_latents = vae.encode(masked_image(images, binary)).latent_dist.sample(generator) * sf
    mask_lat = resize_mask(binary, shape[-2:])
    text = encode_prompts(text_encoder, prompts, layer=text_layer).to(device, dtype)
    uncond = encode_prompts(text_encoder, [""] * b, layer=text_layer).to(device, dtype) if guidance_scale > 1.0 else None
    for i, t in enumerate(scheduler.timesteps):
        latents = denoise_step(unet, scheduler, latents, t, mask_lat, masked_latents, text, uncond, guidance_scale,
                               generator=generator, eta=eta)
        if callback is not None:
            callback(i, int(t), latents)
    out = decode_latents(vae, latents)
    return out * binary + images * (1 - binary) if composite else out


# ----------------------------------------------------------------------------------------------
# Data and training
# ----------------------------------------------------------------------------------------------


class CaptionedImages(torch.utils.data.Dataset):
    """Persons in memory with their try-on masks and captions: ``ds[i]`` = ``{"image", "inpaint_mask", "caption"}``."""

    def __init__(self, images: Tensor, masks: Tensor, captions: Sequence[str]) -> None:
        n = len(images)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected (N, 3, H, W), got {_shape(images)}")
        if tuple(masks.shape) != (n, 1, *images.shape[-2:]):
            raise ValueError(f"masks: expected shape {(n, 1, *images.shape[-2:])}, got {_shape(masks)}")
        if len(captions) != n or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions: expected {n} strings (one per image), got {len(captions)}")
        self.images, self.masks, self.captions = images, masks.float(), list(captions)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "inpaint_mask": self.masks[i], "caption": self.captions[i]}


def load_split(profile: Profile | str | None = None, split: str = "train", limit: int | None = None) -> CaptionedImages:
    """The profile's SynthVTON ``split`` (the first ``limit`` persons) as :class:`CaptionedImages`."""
    from vtonlab.data import synthvton

    ds = synthvton(split, resolve_profile(profile))
    n = len(ds) if limit is None else min(limit, len(ds))
    samples = [ds[i] for i in range(n)]
    return CaptionedImages(torch.stack([s["image"] for s in samples]), torch.stack([s["inpaint_mask"] for s in samples]),
                           [str(s["caption"]) for s in samples])


def _check_models(config: InpaintConfig, vae: nn.Module, text_encoder: object) -> None:
    width = _text_width(text_encoder)
    if width != config.cross_attention_dim:
        raise ValueError(f"InpaintConfig.cross_attention_dim={config.cross_attention_dim} but the text encoder is {width} "
                         f"wide; build the config with cross_attention_dim={width}")
    if getattr(vae.config, "latent_channels", None) != LATENT_CHANNELS:
        raise ValueError(f"vae: expected an autoencoder with {LATENT_CHANNELS} latent channels, got "
                         f"{getattr(vae.config, 'latent_channels', None)}")


def train(config: InpaintConfig, data, *, vae: nn.Module, text_encoder: object, progress: bool = True,
          profile: Profile | None = None):
    """Train the base inpainting UNet with :class:`vtonlab.train.Trainer`; the autoencoder and the text tower stay frozen.

    ``data``: a dataset of sample dicts with ``image`` ``(3, H, W)``, ``inpaint_mask`` ``(1, H, W)`` and ``caption``
    (:class:`CaptionedImages`). Per step, from the loop's generator in this order: the masks (:func:`training_masks`),
    the text dropout (:func:`drop_text`), the posterior samples of the persons and masked persons, the noise, the
    timesteps. Returns ``(unet, history)``: the EMA weights when ``config.ema_decay > 0``, else the trained ones.
    """
    from vtonlab.train import Trainer

    if len(data) < config.batch_size:
        raise ValueError(f"inpainting training needs at least one batch of {config.batch_size} samples, got {len(data)}")
    first = data[0]
    missing = [k for k in ("image", "inpaint_mask", "caption") if k not in first]
    if missing:
        raise KeyError(f"inpainting training data lacks {', '.join(missing)} (needs image, inpaint_mask, caption)")
    if tuple(first["image"].shape[-2:]) != config.image_size:
        raise ValueError(f"training images: expected {config.image_size} (InpaintConfig.image_size), got "
                         f"{tuple(first['image'].shape[-2:])}")
    _check_models(config, vae, text_encoder)
    vae = vae.eval().requires_grad_(False)
    tower = _text_tower(text_encoder).eval().requires_grad_(False)
    tok = getattr(text_encoder, "tokenizer", None)
    unet = build_unet(config)
    modules = {"unet": unet, "vae": vae, "text": tower}
    if config.ema_decay:
        ema = build_unet(config).requires_grad_(False)
        ema.load_state_dict(unet.state_dict())
        modules["ema"] = ema.eval()
    scheduler = noise_scheduler(config)
    sf = float(vae.config.scaling_factor)
    opt = torch.optim.AdamW(unet.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay,
                            eps=config.eps)
    warm = max(1, config.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    latent_size = config.latent_size

    def step(ctx, batch):
        g = ctx.generator
        image = batch["image"]
        b = image.shape[0]
        masks, used_tryon = training_masks(batch["inpaint_mask"], config, g)
        prompts, dropped = drop_text(list(batch["caption"]), config.text_dropout, g)
        with torch.no_grad():
            both = ctx.modules["vae"].encode(torch.cat([image, masked_image(image, masks)])).latent_dist.sample(g) * sf
            latents, masked_latents = both[:b], both[b:]
            states = encode_prompts(ctx.modules["text"], prompts, layer=config.text_layer, tokenizer=tok)
        noise = torch.randn(latents.shape, generator=g, device=g.device, dtype=latents.dtype).to(latents.device)
        t = torch.randint(0, config.num_train_timesteps, (b,), generator=g, device=g.device).to(latents.device)
        loss = diffusion_loss(ctx.modules["unet"], scheduler, latents, noise, t, resize_mask(masks, latent_size),
                              masked_latents, states)
        ctx.optimize(loss, "unet")
        if config.ema_decay:
            decay = min(config.ema_decay, (1 + ctx.step) / (10 + ctx.step))
            with torch.no_grad():
                for pe, p in zip(ctx.modules["ema"].parameters(), ctx.unwrap("unet").parameters()):
                    pe.lerp_(p.detach().to(pe.dtype), 1 - decay)
        return {"loss": loss, "tryon_masks": used_tryon.float().mean(), "text_dropped": dropped.float().mean()}

    trainer = Trainer(modules, {"unet": opt}, step, data, schedulers={"unet": sched}, batch_size=config.batch_size,
                      max_steps=config.steps, seed=config.seed, grad_clip=config.grad_clip, progress=progress,
                      desc="inpainting UNet", profile=profile)
    history = trainer.fit()
    trained = trainer.unwrapped()
    return trained["ema" if config.ema_decay else "unet"].cpu().eval(), history


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(unet: nn.Module, vae: nn.Module, text_encoder: object, data: CaptionedImages, config: InpaintConfig, *,
             sampling_steps: int, n: int | None = None, seed: int = 0, batch_size: int = 16) -> dict:
    """Test metrics of a trained inpainting UNet on the first ``n`` persons of ``data``, with their try-on masks and
    captions, noise from ``seed``:

    - ``test_mse_t<t>``: the denoising MSE of the epsilon objective at each of :data:`EVAL_TIMESTEPS` (latents: the
      posterior means, so the number depends on the noise seed only);
    - ``inpaint_l1_inside`` / ``inpaint_ssim_inside``: L1 (images in [0, 1]) and SSIM averaged over the masked region,
      of DDIM samples (``sampling_steps``, ``config.guidance_scale``) against the originals; ``inpaint_unguided_*``:
      the same without guidance (scale 1); ``vae_*``: the autoencoder's reconstruction of the original (what a
      perfect denoiser would reach); ``masked_*``: the masked person itself (grey in the region: no inpainting);
    - ``sample_seconds_per_image`` (guided sampling, wall clock on this machine), ``sampling_steps``,
      ``guidance_scale``, ``n_eval``.
    """
    from vtonlab.metrics.similarity import ssim

    n = len(data) if n is None else min(n, len(data))
    images, masks = data.images[:n].float(), data.masks[:n].float()
    captions = data.captions[:n]
    unet = unet.eval()
    sf = float(vae.config.scaling_factor)
    scheduler = noise_scheduler(config)
    g = torch.Generator().manual_seed(seed)
    out: dict = {}
    mse = {t: 0.0 for t in EVAL_TIMESTEPS}
    for i in range(0, n, batch_size):
        x, m, c = images[i:i + batch_size], masks[i:i + batch_size], captions[i:i + batch_size]
        z = vae.encode(x).latent_dist.mode() * sf
        zm = vae.encode(masked_image(x, m)).latent_dist.mode() * sf
        states = encode_prompts(text_encoder, c, layer=config.text_layer)
        for t in EVAL_TIMESTEPS:
            noise = torch.randn(z.shape, generator=g)
            ts = torch.full((len(x),), t, dtype=torch.long)
            mse[t] += float(diffusion_loss(unet, scheduler, z, noise, ts, resize_mask(m, z.shape[-2:]), zm, states)) * len(x)
    out.update({f"test_mse_t{t}": v / n for t, v in mse.items()})
    preds: dict[str, Tensor] = {}
    for name, scale in (("inpaint", config.guidance_scale), ("inpaint_unguided", 1.0)):
        samples = []
        start = time.perf_counter()
        for i in range(0, n, batch_size):
            gen = torch.Generator().manual_seed(seed + i)
            samples.append(inpaint(unet, vae, text_encoder, images[i:i + batch_size], masks[i:i + batch_size],
                                   captions[i:i + batch_size], num_inference_steps=sampling_steps, guidance_scale=scale,
                                   generator=gen, text_layer=config.text_layer, scheduler=sampling_scheduler(config)))
        if name == "inpaint":
            seconds = time.perf_counter() - start
        preds[name] = torch.cat(samples)
    preds["vae"] = torch.cat([vae.decode(vae.encode(images[i:i + batch_size]).latent_dist.mode()).sample.clamp(-1, 1)
                              for i in range(0, n, batch_size)])
    preds["masked"] = masked_image(images, masks)
    target = (images + 1) / 2
    inside = masks.flatten(1).sum(1).clamp_min(1)
    for name, pred in preds.items():
        p = (pred + 1) / 2
        out[f"{name}_l1_inside"] = float(((p - target).abs().mean(1, keepdim=True) * masks).flatten(1).sum(1).div(inside).mean())
        out[f"{name}_ssim_inside"] = float(ssim(p.clamp(0, 1), target, masks, region="inside").mean())
    out.update(sample_seconds_per_image=seconds / n, sampling_steps=int(sampling_steps),
               guidance_scale=float(config.guidance_scale), n_eval=n)
    return out


# ----------------------------------------------------------------------------------------------
# Load or train
# ----------------------------------------------------------------------------------------------


def _sha(ckpt) -> str | None:
    return None if ckpt is None else ckpt.manifest.get("sha256")


def checkpoint_config(config: InpaintConfig, profile: Profile | str | None = None, vae_checkpoint=None,
                      clip_checkpoint=None) -> dict:
    """The checkpoint config: the model config, the SHA-256 of the autoencoder and CLIP weights it is trained with
    (``None`` for models without a checkpoint) and the profile's SynthVTON render parameters (the data key)."""
    from vtonlab.data import synthvton_params

    return {**config.to_dict(), "vae_sha256": _sha(vae_checkpoint), "clip_sha256": _sha(clip_checkpoint),
            "data": synthvton_params(resolve_profile(profile))}


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False, config: InpaintConfig | None = None,
                vae: tuple | None = None, text_encoder: tuple | None = None, train_data: CaptionedImages | None = None,
                eval_data: CaptionedImages | None = None, checkpoint: str | os.PathLike | None = None,
                progress: bool = True, verbose: bool = True):
    """The profile's trained base inpainting UNet: ``(unet, checkpoint)``, loaded when a matching checkpoint exists.

    ``python -m vtonlab train ladi_inpaint --profile P`` makes it (checkpoint ``ladi_inpaint``). ``vae`` and
    ``text_encoder``: ``(model, checkpoint or None)`` pairs; default the profile's stack autoencoder
    (:func:`vtonlab.ladi.vae.get_trained_stack`) and CLIP (:func:`vtonlab.clip.get_trained`). ``checkpoint``: a
    checkpoint file to load instead of the shipped or cached one; a :class:`vtonlab.checkpoints.CheckpointError`
    naming it and every differing field is raised when it was made with another config, autoencoder, CLIP or data.
    Metrics: :func:`evaluate` on the test split.
    """
    from vtonlab.checkpoints import load_checkpoint, load_or_train, normalise_config

    prof = resolve_profile(profile)
    cfg = config if config is not None else InpaintConfig.for_profile(prof)
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"InpaintConfig.image_size {cfg.image_size} differs from profile {prof.name!r} image size "
                         f"{tuple(prof.image_size)}")
    if vae is None:
        from vtonlab.ladi import vae as vae_mod

        vae = vae_mod.get_trained_stack(prof, verbose=verbose)
    if text_encoder is None:
        from vtonlab.clip import get_trained as get_clip

        text_encoder = get_clip(prof)
    vae_model, vae_ckpt = vae
    clip_model, clip_ckpt = text_encoder
    _check_models(cfg, vae_model, clip_model)
    full = checkpoint_config(cfg, prof, vae_ckpt, clip_ckpt)

    def train_fn():
        tr = train_data if train_data is not None else load_split(prof, "train", cfg.n_train)
        unet, history = train(cfg, tr, vae=vae_model, text_encoder=clip_model, progress=progress, profile=prof)
        ev = eval_data if eval_data is not None else load_split(prof, "test", cfg.eval_samples)
        metrics = evaluate(unet, vae_model, clip_model, ev, cfg, sampling_steps=prof.sampling_steps, n=cfg.eval_samples)
        metrics["n_parameters"] = sum(p.numel() for p in unet.parameters())
        return {"unet": unet}, metrics, history

    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint, normalise_config({**full, "profile": prof.name}), name=CHECKPOINT_NAME)
    else:
        ckpt = load_or_train(CHECKPOINT_NAME, full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    unet = build_unet(cfg)
    ckpt.load_into(unet, prefix="unet")
    return unet.eval().requires_grad_(False), ckpt

