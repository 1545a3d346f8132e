"""Fine-tuning LaDI-VTON's try-on UNet: the base inpainting UNet widened to 31 channels, trained on try-on pairs.

LaDI-VTON (Morelli et al., ACM MM 2023, arXiv 2305.13501, Sec. 3) turns an inpainting latent diffusion model into a
try-on model by fine-tuning its UNet on persons whose garment region is masked, with two extra input conditions
(:mod:`vtonlab.ladi.unet`): the 18 pose heatmaps and the latent of the in-shop garment *warped* onto the person by
the frozen warping module (TPS + refinement, :mod:`vtonlab.ladi.warping`), and with a prompt in which the frozen
inversion adapter's pseudo-words stand for the garment (:mod:`vtonlab.ladi.adapter`). The objective is the one the
base model was trained with (DDPM, Ho et al. 2020, Eq. 14):

``L = E || eps - eps_theta([z_t, m, z_m, p, z_c], t, tau(y, V*)) ||^2``

with ``z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps``, ``m`` the inpainting mask and ``p`` the pose maps at the
latent size, ``z_m`` / ``z_c`` the latents of the masked person and of the warped garment, and ``tau(y, V*)`` the
text encoder's hidden states of "a photo of a model wearing an upper body garment $ ... $" with the pseudo-words
``V*`` in place of the ``$``. Each of the text, pose and garment conditions is dropped independently with
probability 0.2 (:func:`vtonlab.ladi.unet.drop_conditions`) so that classifier-free guidance can use the empty
prompt, zero pose and zero garment latent as its negative branch.

Only the UNet trains; the autoencoder, CLIP, the adapter and the warping stages are frozen, so everything they give
a training sample is computed once (:func:`prepare_data`): the refined warp of the garment, the posterior moments
of the person, masked person and warped garment latents (a posterior sample is drawn from them at every step, as the
official code samples at every step), the mask and pose maps at the latent size and the pseudo-words.

Fidelity (official code: miccunifi/ladi-vton; "not checked" = not verified against the paper's text here; every
difference is a :class:`TryOnConfig` option, and what a profile changes is said in the row):

| point | paper | official code | vtonlab |
|---|---|---|---|
| trained modules [1] | the UNet | UNet only; VAE, text encoder, adapter frozen (adapter: ``eval()``) | same |
| start [2] | SD 2 inpainting | its UNet, ``conv_in`` widened (new channels zero) | ``ladi_inpaint`` widened (:func:`start_unet`) |
| input [3] | 31 channels | noisy, mask, masked, pose, garment; 27 with ``--cloth_input_type none`` | same (``garment_input``) |
| text [4] | pseudo-words | ``--text_usage`` inversion_adapter / noun_chunks / none | ``text_mode`` inversion / caption / none (a) |
| pseudo-words [4] | 16 | ``--num_vstar`` 16; adapter in eval mode (no dropout) | ``num_pseudo_words`` 16; same |
| garment for CLIP [4] | - | ``(cloth + 1) / 2`` resized to 224, ViT-H processor | our CLIP's own preprocessing (as the pipeline) |
| text layer [5] | - | ``last_hidden_state`` (SD 2's 23-layer tower) | our CLIP's last layer; the base must use ``"last"`` |
| warped garment [6] | refined TPS warp | trained TPS + refinement, clamped, saved as 8-bit images | same, in float; ``garment_warp`` |
| latents [7] | - | posterior samples x ``scaling_factor`` at every step | same: moments once, a sample every step |
| masked person [7] | - | ``im_mask`` = ``image * (1 - inpaint_mask)`` | :func:`vtonlab.ladi.inpaint.masked_image` |
| mask, pose size [8] | - | nearest; bilinear, no antialias | ``resize_mask``, ``resize_pose`` (:mod:`vtonlab.ladi.unet`) |
| dropout [9] | p 0.2 each | ``--uncond_fraction`` 0.2; text, garment, pose draws | same (``uncond_fraction``), rates measured |
| objective [10] | epsilon MSE | ``mse_loss(pred, noise)``, ``t ~ U{0..999}``, DDPM schedule of SD 2 | same (the base's schedule) |
| random draws [10] | - | image latent, noise, t, masked latent, garment latent, dropout | same order (the loop's generator) |
| optimiser [11] (b) | - | AdamW 1e-5, betas (0.9, 0.999), wd 1e-2, eps 1e-8, clip 1 | same; ``lr``, ``conv_in_lr_scale`` |
| schedule [11] (b) | - | ``constant_with_warmup``, 500 steps | same; ci / cpu: a twentieth of the steps |
| batch, steps [12] | - | 16, 200 001 | the profile's batch and ``unet`` steps (ci 100, cpu 2000, gpu 20 000) |
| precision [12] | - | fp16 mixed precision | the profile's: float32 (ci, cpu), bf16 (gpu) |
| weight averaging | - | none | none |
| seed [12] | - | 1234 | ``seed`` 0 (``_seed{k}`` checkpoints for others) |
| validation [13] | - | sampled try-ons, FID / KID every 50 000 steps | test diffusion loss per dropped condition |

(a) SynthVTON has no noun chunks: ``"caption"`` uses its garment captions. (b) ``lr`` 5e-4 in ci and cpu (the base
model's rate; a few thousand steps from a small base), 1e-5 in gpu. The rate and the steps decide how much the UNet
comes to read the garment latent (the rise of the test loss when it is zeroed, ``test_mse_no_garment -
test_mse_all`` in the manifest): higher at 5e-4 than at 1e-4 in the course's runs. 2000 cpu steps (600 before)
lowered every variant's garment error in notebook 13, yet at both lengths the sampled try-ons stay within the seed
spread of sampling with the garment latent zeroed. ``conv_in_lr_scale`` (a factor on
the first convolution's rate) and ``garment_warp="tps"`` (the TPS warp without the refinement UNet) are there to study
the same question; they stay at the official choice (1, ``"refined"``) in every profile.

Sources (``src/train_vto.py`` unless named): [1] 279-282, 302-308, 346-350; [2] 257-277; [3] 259, 312-313, 623-628;
[4] 188-199, 545-571 (``category_text``, ``" $ " * num_vstar``), 562-566; [5] 612-618; [6] ``dataset/vitonhd.py``
136-149 (the ``warped_cloths`` folder), ``train_tps.py`` 224-280 (``extract_images``: refinement output, ``(x + 1) /
2``, clamp, ``save_image``) and 416-431 (paired train and test splits), README "Train Warping Module"; [7] 521-522,
581-594; [8] 524-527, 577-579; [9] 187, 596-604; [10] 529-538, 575, 630-634; [11] 104-135, 301-308, 421-426;
[12] 76, 79, 88-91, 137-147; [13] 661-699.

The checkpoint (``python -m vtonlab train ladi_tryon --profile P``; variants ``ladi_tryon_nogarment``,
``ladi_tryon_caption``, ``ladi_tryon_notext``, ``ladi_tryon_n{N}``, ``ladi_tryon_seed{k}``) holds the config, the
SHA-256 of every frozen component (base UNet, autoencoder, CLIP, adapter, TPS, refinement) and SynthVTON's render
parameters; its metrics are the test diffusion loss at fixed timesteps and noise with all conditions and with each
one dropped, the base UNet's on the same inputs, and the dropout rates measured over the run.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab.ladi import inpaint as inpaint_mod
from vtonlab.ladi.adapter import CATEGORY_NOUNS, NUM_PSEUDO_WORDS, encode_text_with_pseudo_words, tokenize_prompts
from vtonlab.ladi.adapter import prompt as inversion_prompt
from vtonlab.ladi.unet import (
    BASE_CHANNELS,
    TRYON_CHANNELS,
    UNCOND_FRACTION,
    drop_conditions,
    input_channels,
    resize_mask,
    resize_pose,
    tryon_unet_input,
    widen_conv_in,
)
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "TEXT_MODES", "STEPS_KEY", "CHECKPOINT_NAME", "EVAL_TIMESTEPS", "EVAL_CONDITIONS", "SAMPLE_KEYS", "TryOnConfig",
    "checkpoint_name", "start_unet", "TryOnData", "prepare_data", "text_states", "train", "dropout_rates", "evaluate",
    "checkpoint_config", "get_trained", "training_benchmark",
]

TEXT_MODES = ("inversion", "caption", "none")
"""``text_mode``: the adapter's pseudo-words in the inversion prompt, SynthVTON's caption, or the empty prompt."""

STEPS_KEY = "unet"
"""The profile's ``steps_for`` key of this model."""

GARMENT_WARPS = ("refined", "tps")
"""``garment_warp``: the refinement UNet's output (official) or the TPS warp alone."""

CHECKPOINT_NAME = "ladi_tryon"

EVAL_TIMESTEPS = inpaint_mod.EVAL_TIMESTEPS
"""Timesteps at which :func:`evaluate` measures the test diffusion loss (those of the base model's metrics)."""

EVAL_CONDITIONS = ("all", "no_text", "no_pose", "no_garment", "none")
"""The conditions of :func:`evaluate`: everything, each condition dropped alone, and all three dropped (the negative
branch of guidance). ``no_garment`` is measured only by 31-channel UNets."""

SAMPLE_KEYS = ("image", "inpaint_mask", "pose_map")
"""What :func:`prepare_data` reads from every sample dict; plus ``cloth``, ``cloth_mask`` and ``agnostic`` for the
garment (warping, pseudo-words) and ``caption`` for ``text_mode="caption"``."""

_CI_CPU_LR, _CI_CPU_WARMUP_FRACTION = 5e-4, 20


@dataclass(frozen=True)
class TryOnConfig:
    """The try-on UNet's fine-tuning; defaults are the official ``train_vto.py``'s (module docstring).

    ``garment_input``: 31 input channels (True) or the 27 of the "no garment input" ablation; ``text_mode``: one of
    :data:`TEXT_MODES`; ``pose_style``: the pose heatmaps read (the warping stages' style). The architecture is the
    base inpainting UNet's. :meth:`for_profile` gives the course's steps, batch and learning rate; the JSON form
    (:meth:`to_dict`) is part of the checkpoint config.
    """

    garment_input: bool = True
    num_pseudo_words: int = NUM_PSEUDO_WORDS
    text_mode: str = "inversion"
    uncond_fraction: float = UNCOND_FRACTION
    image_size: tuple[int, int] = (512, 384)
    pose_style: str = "ladi"
    lr: float = 1e-5
    warmup_steps: int = 500
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    eps: float = 1e-8
    grad_clip: float = 1.0
    steps: int = 200_001
    batch_size: int = 16
    n_train: int = 600
    eval_samples: int = 32
    seed: int = 0
    conv_in_lr_scale: float = 1.0
    garment_warp: str = "refined"

    def __post_init__(self) -> None:
        from vtonlab.data.representation import POSE_STYLES

        if self.garment_warp not in GARMENT_WARPS:
            raise ValueError(f"TryOnConfig.garment_warp: expected one of {list(GARMENT_WARPS)}, got {self.garment_warp!r}")
        if not float(self.conv_in_lr_scale) > 0:
            raise ValueError(f"TryOnConfig.conv_in_lr_scale: expected a positive factor (official: 1), got {self.conv_in_lr_scale!r}")

        if not isinstance(self.garment_input, bool):
            raise ValueError(f"TryOnConfig.garment_input: expected True (31 channels) or False (27), got {self.garment_input!r}")
        if self.text_mode not in TEXT_MODES:
            raise ValueError(f"TryOnConfig.text_mode: expected one of {list(TEXT_MODES)}, got {self.text_mode!r}")
        n = self.num_pseudo_words
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"TryOnConfig.num_pseudo_words: expected a positive int (LaDI-VTON: {NUM_PSEUDO_WORDS}), got {n!r}")
        p = self.uncond_fraction
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"TryOnConfig.uncond_fraction: expected a probability in [0, 1] (LaDI-VTON: {UNCOND_FRACTION}), "
                             f"got {p!r}")
        if self.pose_style not in POSE_STYLES:
            raise ValueError(f"TryOnConfig.pose_style: expected one of {sorted(POSE_STYLES)}, got {self.pose_style!r}")
        h, w = (int(v) for v in self.image_size)
        if h % 8 or w % 8 or h < 8 or w < 8:
            raise ValueError(f"TryOnConfig.image_size {h}x{w}: height and width must be positive multiples of 8 (f = 8 "
                             "autoencoder)")
        for name in ("steps", "batch_size", "n_train", "eval_samples", "warmup_steps"):
            v = getattr(self, name)
            low = 0 if name in ("steps", "warmup_steps") else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"TryOnConfig.{name}: expected an int >= {low}, got {v!r}")
        if not float(self.lr) > 0:
            raise ValueError(f"TryOnConfig.lr: expected a positive learning rate, got {self.lr!r}")
        object.__setattr__(self, "image_size", (h, w))
        object.__setattr__(self, "uncond_fraction", float(p))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> TryOnConfig:
        """The course's fine-tuning for a profile: its image size, ``unet`` steps, batch and training persons; lr 5e-4
        and a warmup of a twentieth of the steps in ci and cpu, the official 1e-5 and 500 warmup steps in gpu."""
        prof = resolve_profile(profile)
        steps = prof.steps_for(STEPS_KEY)
        base = dict(image_size=tuple(prof.image_size), steps=steps, batch_size=prof.batch_size, n_train=prof.n_train,
                    eval_samples=min(32, prof.n_test))
        if prof.name != "gpu":
            base.update(lr=_CI_CPU_LR, warmup_steps=max(1, steps // _CI_CPU_WARMUP_FRACTION))
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        from vtonlab.checkpoints import config_dict

        return config_dict(self)

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.image_size[0] // 8, self.image_size[1] // 8

    @property
    def in_channels(self) -> int:
        """31, or 27 without garment input."""
        return input_channels(self.garment_input)


def checkpoint_name(config: TryOnConfig) -> str:
    """``ladi_tryon`` plus ``_nogarment``, ``_caption`` / ``_notext``, ``_n{N}`` (inversion with N != 16), ``_seed{k}``."""
    name = CHECKPOINT_NAME
    if not config.garment_input:
        name += "_nogarment"
    name += {"inversion": "", "caption": "_caption", "none": "_notext"}[config.text_mode]
    if config.text_mode == "inversion" and config.num_pseudo_words != NUM_PSEUDO_WORDS:
        name += f"_n{config.num_pseudo_words}"
    if config.seed:
        name += f"_seed{config.seed}"
    return name


def _in_channels(unet: object) -> int | None:
    return getattr(getattr(unet, "config", None), "in_channels", None)


def start_unet(base_unet: nn.Module, garment_input: bool = True) -> nn.Module:
    """The try-on UNet before fine-tuning: a copy of the 9-channel ``base_unet`` widened to 31 (or 27) input channels
    by :func:`vtonlab.ladi.unet.widen_conv_in` (new input weights zero, so it computes what the base does). The base
    is not modified; the copy is in train mode with every parameter trainable."""
    cin = _in_channels(base_unet)
    if cin != BASE_CHANNELS:
        raise ValueError(f"base_unet: expected the {BASE_CHANNELS}-channel inpainting UNet (vtonlab.ladi.inpaint.get_trained), "
                         f"got in_channels={cin}")
    unet = widen_conv_in(copy.deepcopy(base_unet), input_channels(garment_input))
    return unet.train().requires_grad_(True)


# ----------------------------------------------------------------------------------------------
# Data: everything the frozen components give a sample, computed once
# ----------------------------------------------------------------------------------------------


class TryOnData(torch.utils.data.Dataset):
    """Precomputed training (or test) samples at the latent size ``(h, w)``.

    ``tensors``: ``latent_mean`` / ``latent_std`` (person), ``masked_mean`` / ``masked_std`` (masked person),
    ``garment_mean`` / ``garment_std`` (warped garment; absent without garment input): ``(N, 4, h, w)`` posterior
    moments already times the autoencoder's ``scaling_factor``; ``mask`` ``(N, 1, h, w)``; ``pose`` ``(N, 18, h, w)``;
    ``words`` ``(N, n, d_text)`` (the adapter's pseudo-words; only with ``text_mode="inversion"``). ``prompts``: ``N``
    strings (the inversion prompt, the caption, or ``""``). ``ds[i]`` is a dict of the rows plus ``"prompt"`` and
    ``"index"``.
    """

    MOMENTS = ("latent", "masked", "garment")

    def __init__(self, tensors: Mapping[str, Tensor], prompts: Sequence[str]) -> None:
        n = len(prompts)
        need = ["latent_mean", "latent_std", "masked_mean", "masked_std", "mask", "pose"]
        missing = [k for k in need if k not in tensors]
        if missing:
            raise KeyError(f"TryOnData: missing tensors {missing}; expected {need} (+ garment_mean/std, words)")
        if ("garment_mean" in tensors) != ("garment_std" in tensors):
            raise KeyError("TryOnData: garment_mean and garment_std go together")
        lat = tuple(tensors["latent_mean"].shape[-2:])
        channels = {"mask": 1, "pose": 18}
        for k, v in tensors.items():
            if not isinstance(v, Tensor) or len(v) != n:
                raise ValueError(f"TryOnData: tensors[{k!r}] must have one row per prompt ({n}), got "
                                 f"{tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__}")
            if k != "words":
                expected = (n, channels.get(k, 4), *lat)
                if tuple(v.shape) != expected:
                    raise ValueError(f"TryOnData: tensors[{k!r}] expected shape {expected}, got {tuple(v.shape)}")
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("TryOnData: prompts must be strings")
        self.tensors = dict(tensors)
        self.prompts = list(prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> dict:
        return {**{k: v[i] for k, v in self.tensors.items()}, "prompt": self.prompts[i], "index": i}

    @property
    def has_garment(self) -> bool:
        return "garment_mean" in self.tensors

    @property
    def latent_size(self) -> tuple[int, int]:
        return tuple(self.tensors["latent_mean"].shape[-2:])  # type: ignore[return-value]

    def head(self, n: int) -> TryOnData:
        """The first ``n`` samples."""
        return TryOnData({k: v[:n] for k, v in self.tensors.items()}, self.prompts[:n])


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _collate(samples: list[dict], keys: Sequence[str]) -> dict:
    out: dict = {}
    for k in keys:
        if k in samples[0]:
            vals = [s[k] for s in samples]
            out[k] = torch.stack(vals) if isinstance(vals[0], Tensor) else vals
    return out


def _warped_garment(batch: Mapping[str, Tensor], tps: nn.Module, refine: nn.Module | None, warp: str = "refined") -> Tensor:
    """The refined TPS warp of ``batch["cloth"]`` ``(B, 3, H, W)``, clamped to [-1, 1] as the official extraction saves it
    (``warp="tps"``: the TPS warp alone)."""
    from vtonlab.ladi.warping import refine_input, tps_warp

    _, warped, _ = tps_warp(tps, batch)
    if warp == "tps":
        return warped.clamp(-1, 1)
    with torch.no_grad():
        return refine(refine_input(batch, warped)).clamp(-1, 1)


def _garment_words(clip: nn.Module, adapter: nn.Module, cloth: Tensor) -> Tensor:
    """The adapter's pseudo-words ``(B, n, d_text)`` of in-shop garments: the image tower's hidden states of the CLIP's
    own preprocessing (:func:`vtonlab.ladi.adapter.garment_features`, what the adapter was pre-trained on) -> adapter."""
    from vtonlab.ladi.adapter import garment_features

    states = garment_features(clip, cloth)
    return adapter(states.to(next(adapter.parameters()).dtype))


@torch.no_grad()
def prepare_data(config: TryOnConfig, dataset, *, vae: nn.Module, clip: nn.Module | None = None,
                 adapter: nn.Module | None = None, tps: nn.Module | None = None, refine: nn.Module | None = None,
                 limit: int | None = None, batch_size: int = 32) -> TryOnData:
    """Run the frozen components once over ``dataset`` (sample dicts, see :data:`SAMPLE_KEYS`) -> :class:`TryOnData`.

    Per sample: the warped garment ``refine([agnostic, pose, tps_warp(cloth)])`` clamped to [-1, 1] (when
    ``config.garment_input``; ``tps`` and ``refine`` are then required and the only callers of the warping), the
    autoencoder's posterior moments of the person, of the masked person ``image * (inpaint_mask < 0.5)`` and of the
    warped garment, the mask (nearest) and pose maps (bilinear) at the latent size, the prompt, and with
    ``text_mode="inversion"`` the pseudo-words of ``adapter`` (in eval mode) on ``clip``'s image tower. Only the first
    ``limit`` samples are read; ``dataset`` is read in chunks of ``batch_size`` (never all images at once). The given
    components are put in eval mode with gradients off (they are frozen).
    """
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    if n < 1:
        raise ValueError("prepare_data: the dataset is empty")
    if config.garment_input and (tps is None or refine is None):
        raise ValueError("prepare_data: garment_input=True needs the frozen warping stages tps= and refine= "
                         "(vtonlab.ladi.warping.get_trained_tps / get_trained_refine)")
    if config.text_mode == "inversion" and (adapter is None or clip is None):
        raise ValueError("prepare_data: text_mode='inversion' needs clip= and adapter= (the inversion adapter)")
    if adapter is not None and config.text_mode == "inversion":
        got = getattr(adapter, "num_pseudo_words", None)
        if got != config.num_pseudo_words:
            raise ValueError(f"adapter: predicts {got} pseudo-words but TryOnConfig.num_pseudo_words="
                             f"{config.num_pseudo_words}; use an adapter trained for {config.num_pseudo_words}")
    need = list(SAMPLE_KEYS)
    if config.garment_input:
        need += ["cloth", "cloth_mask", "agnostic"]
    if config.text_mode == "inversion":
        need += ["cloth"]
    if config.text_mode == "caption":
        need += ["caption"]
    first = dataset[0]
    missing = [k for k in dict.fromkeys(need) if k not in first]
    if missing:
        raise KeyError(f"try-on training samples lack {', '.join(missing)} (text_mode={config.text_mode!r}, "
                       f"garment_input={config.garment_input} needs {', '.join(dict.fromkeys(need))})")
    if tuple(first["image"].shape[-2:]) != config.image_size:
        raise ValueError(f"dataset images: expected {config.image_size} (TryOnConfig.image_size), got "
                         f"{tuple(first['image'].shape[-2:])}")
    if getattr(vae.config, "latent_channels", None) != 4:
        raise ValueError(f"vae: expected an autoencoder with 4 latent channels, got {getattr(vae.config, 'latent_channels', None)}")
    modules = [m for m in (vae, clip, adapter, tps, refine) if m is not None]
    for m in modules:
        m.eval().requires_grad_(False)
    device = _device_of(vae)
    sf = float(vae.config.scaling_factor)
    latent = config.latent_size
    cols: dict[str, list[Tensor]] = {}
    prompts: list[str] = []
    keys = list(dict.fromkeys(need + ["category"]))
    for start in range(0, n, batch_size):
        samples = [first if i == 0 else dataset[i] for i in range(start, min(n, start + batch_size))]
        batch = _collate(samples, keys)
        batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        image, mask = batch["image"], batch["inpaint_mask"].float()
        images = {"latent": image, "masked": inpaint_mod.masked_image(image, mask)}
        if config.garment_input:
            images["garment"] = _warped_garment(batch, tps, refine, config.garment_warp)
        for name, x in images.items():
            dist = vae.encode(x).latent_dist
            cols.setdefault(f"{name}_mean", []).append((dist.mean * sf).cpu())
            cols.setdefault(f"{name}_std", []).append((dist.std * sf).cpu())
        cols.setdefault("mask", []).append(resize_mask((mask >= 0.5).float(), latent).cpu())
        cols.setdefault("pose", []).append(resize_pose(batch["pose_map"].float(), latent).cpu())
        b = len(samples)
        if config.text_mode == "inversion":
            cols.setdefault("words", []).append(_garment_words(clip, adapter, batch["cloth"]).float().cpu())
            cats = batch.get("category", ["upper_body"] * b)
            prompts += [inversion_prompt(c if c in CATEGORY_NOUNS else "upper_body", config.num_pseudo_words) for c in cats]
        elif config.text_mode == "caption":
            prompts += [str(c) for c in batch["caption"]]
        else:
            prompts += [""] * b
    return TryOnData({k: torch.cat(v) for k, v in cols.items()}, prompts)


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------


def _text_tower(text_encoder: object) -> nn.Module:
    return inpaint_mod._text_tower(text_encoder)


def text_states(text_encoder: object, prompts: Sequence[str], words: Tensor | None = None) -> Tensor:
    """The hidden states ``(B, L, d_text)`` the UNet cross-attends to: the text tower's last layer of ``prompts``
    (padded to the full context, no attention mask); with ``words`` ``(B, n, d_text)`` the placeholders of each
    non-empty prompt are replaced by them (:func:`vtonlab.ladi.adapter.encode_text_with_pseudo_words`); empty
    prompts (dropped text) are encoded as they are."""
    if words is None:
        return inpaint_mod.encode_prompts(text_encoder, list(prompts), layer="last")
    tower = _text_tower(text_encoder)
    tok = getattr(text_encoder, "tokenizer", None)
    shim = SimpleNamespace(hf=tower, tokenizer=tok) if tok is not None else tower
    ids = tokenize_prompts(list(prompts), shim, context_length=int(tower.config.max_position_embeddings))
    return encode_text_with_pseudo_words(shim, ids, words.to(tower.embeddings.token_embedding.weight.dtype))


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def _check_training(config: TryOnConfig, data: TryOnData, base_unet: nn.Module, text_encoder: object) -> None:
    if not isinstance(data, TryOnData):
        raise TypeError(f"data: expected a TryOnData (prepare_data), got {type(data).__name__}")
    if data.has_garment != config.garment_input:
        raise ValueError(f"data: {'has' if data.has_garment else 'lacks'} warped-garment latents but "
                         f"TryOnConfig.garment_input={config.garment_input}; prepare it with the same config")
    if (config.text_mode == "inversion") != ("words" in data.tensors):
        raise ValueError(f"data: pseudo-words {'present' if 'words' in data.tensors else 'absent'} but "
                         f"TryOnConfig.text_mode={config.text_mode!r}; prepare it with the same config")
    if data.latent_size != config.latent_size:
        raise ValueError(f"data: latent size {data.latent_size}, expected {config.latent_size} (TryOnConfig.image_size / 8)")
    if len(data) < config.batch_size:
        raise ValueError(f"try-on training needs at least one batch of {config.batch_size} samples, got {len(data)}")
    width = int(_text_tower(text_encoder).config.hidden_size)
    cross = getattr(getattr(base_unet, "config", None), "cross_attention_dim", None)
    if cross != width:
        raise ValueError(f"base_unet: cross_attention_dim={cross} but the text encoder is {width} wide; the base UNet "
                         "must be the one trained with this CLIP")
    if "words" in data.tensors and data.tensors["words"].shape[-1] != width:
        raise ValueError(f"data: pseudo-words are {data.tensors['words'].shape[-1]} wide, the text encoder {width}")


def _sample(mean: Tensor, std: Tensor, g: torch.Generator) -> Tensor:
    """A posterior sample ``mean + std * e``, ``e ~ N(0, I)`` from ``g`` (diffusers' ``DiagonalGaussianDistribution``)."""
    e = torch.randn(mean.shape, generator=g, device=g.device, dtype=mean.dtype).to(mean.device)
    return mean + std * e


def train(config: TryOnConfig, data: TryOnData, *, base_unet: nn.Module, text_encoder: object, progress: bool = True,
          profile: Profile | None = None):
    """Fine-tune the try-on UNet with :class:`vtonlab.train.Trainer`; only the UNet's parameters are optimised.

    ``base_unet``: the trained 9-channel inpainting UNet (copied, widened by :func:`start_unet`; not modified);
    ``text_encoder``: the CLIP whose text tower the base cross-attends to (frozen); ``data``: :func:`prepare_data`'s.
    Per step, from the loop's generator in the official order: the person latent sample, the noise, the timesteps,
    the masked-person and garment latent samples, then the dropout draws (text, garment, pose). The history logs
    ``loss`` and, per step, the fraction of the batch whose text, pose and garment were dropped
    (``text_dropped``, ``pose_dropped``, ``garment_dropped``; :func:`dropout_rates` averages them over the run).
    Returns ``(unet, history)``.
    """
    from vtonlab.train import Trainer

    _check_training(config, data, base_unet, text_encoder)
    tower = _text_tower(text_encoder).eval().requires_grad_(False)
    tok = getattr(text_encoder, "tokenizer", None)
    text = SimpleNamespace(hf=tower, tokenizer=tok) if tok is not None else tower
    unet = start_unet(base_unet, config.garment_input)
    scheduler = inpaint_mod.noise_scheduler()
    first = [p for n, p in unet.named_parameters() if n.startswith("conv_in.")]
    rest = [p for n, p in unet.named_parameters() if not n.startswith("conv_in.")]
    groups = [{"params": rest}, {"params": first, "lr": config.lr * config.conv_in_lr_scale}]
    opt = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, eps=config.eps)
    warm = max(1, config.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    num_t = int(scheduler.config.num_train_timesteps)

    def step(ctx, batch):
        g = ctx.generator
        latents = _sample(batch["latent_mean"], batch["latent_std"], g)
        noise = torch.randn(latents.shape, generator=g, device=g.device, dtype=latents.dtype).to(latents.device)
        t = torch.randint(0, num_t, (latents.shape[0],), generator=g, device=g.device).to(latents.device)
        masked = _sample(batch["masked_mean"], batch["masked_std"], g)
        garment = _sample(batch["garment_mean"], batch["garment_std"], g) if config.garment_input else None
        d = drop_conditions(list(batch["prompt"]), batch["pose"], garment, p=config.uncond_fraction, generator=g)
        with torch.no_grad():
            states = text_states(text, d.texts, batch.get("words"))
        noisy = scheduler.add_noise(latents, noise, t)
        x = tryon_unet_input(noisy, batch["mask"], masked, d.pose, d.garment_latents)
        pred = ctx.modules["unet"](x, t, encoder_hidden_states=states).sample
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        ctx.optimize(loss, "unet")
        return {"loss": loss, "text_dropped": d.text_dropped.float().mean(), "pose_dropped": d.pose_dropped.float().mean(),
                "garment_dropped": d.garment_dropped.float().mean()}

    trainer = Trainer({"unet": unet, "text": tower}, {"unet": opt}, step, data, schedulers={"unet": sched},
                      batch_size=config.batch_size, max_steps=config.steps, seed=config.seed, grad_clip=config.grad_clip,
                      progress=progress, desc="try-on UNet", profile=profile)
    history = trainer.fit()
    return trainer.unwrapped()["unet"].cpu().eval(), history


def dropout_rates(history, batch_size: int) -> dict:
    """The dropout rates measured over a run: ``dropout_rate_<text|pose|garment>`` (dropped samples / samples seen)
    and ``dropout_samples`` (samples seen), from the per-step fractions :func:`train` logs. The garment draw is made
    (and counted) even by the 27-channel variant, which has no garment latent to drop."""
    steps = len(history)
    out: dict = {"dropout_samples": steps * int(batch_size)}
    for name in ("text", "pose", "garment"):
        vals = history.losses.get(f"{name}_dropped", [])
        if len(vals) != steps:
            raise ValueError(f"history: expected {steps} values of {name}_dropped (one per step), got {len(vals)}")
        dropped = sum(round(v * batch_size) for v in vals)
        out[f"dropout_rate_{name}"] = dropped / out["dropout_samples"] if steps else float("nan")
    return out


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(unet: nn.Module, data: TryOnData, config: TryOnConfig, *, text_encoder: object,
             base_unet: nn.Module | None = None, n: int | None = None, seed: int = 0, batch_size: int = 16) -> dict:
    """The test diffusion loss of a try-on UNet on the first ``n`` samples of ``data``, at fixed noise (``seed``) and
    timesteps (:data:`EVAL_TIMESTEPS`), latents at their posterior means:

    - ``test_mse_t<t>_<condition>`` and their mean over ``t``, ``test_mse_<condition>``, for each of
      :data:`EVAL_CONDITIONS` (``no_text``: the empty prompt, ``no_pose``: zero pose, ``no_garment``: zero garment
      latent, ``none``: all three, as guidance's negative branch). The same noise serves every condition, so the
      differences measure what the UNet reads from each condition;
    - with ``base_unet`` (the 9-channel inpainting UNet it started from): ``base_test_mse_t<t>`` and
      ``base_test_mse``, on the same inputs and prompt states: the value before fine-tuning;
    - ``n_eval``.
    """
    n = len(data) if n is None else min(int(n), len(data))
    data = data.head(n)
    unet = unet.eval()
    device = _device_of(unet)
    scheduler = inpaint_mod.noise_scheduler()
    g = torch.Generator().manual_seed(seed)
    conditions = [c for c in EVAL_CONDITIONS if c != "no_garment" or config.garment_input]
    sums: dict[str, float] = {}
    tens = {k: v.to(device) for k, v in data.tensors.items()}
    for i in range(0, n, batch_size):
        sl = slice(i, min(n, i + batch_size))
        b = sl.stop - sl.start
        z, zm, mask, pose = tens["latent_mean"][sl], tens["masked_mean"][sl], tens["mask"][sl], tens["pose"][sl]
        zg = tens["garment_mean"][sl] if config.garment_input else None
        words = tens["words"][sl] if "words" in tens else None
        cond_states = text_states(text_encoder, data.prompts[sl], words).to(device)
        empty_states = text_states(text_encoder, [""] * b).to(device)
        for t in EVAL_TIMESTEPS:
            noise = torch.randn(z.shape, generator=g).to(device)
            ts = torch.full((b,), t, dtype=torch.long, device=device)
            noisy = scheduler.add_noise(z, noise, ts)
            for c in conditions:
                states = empty_states if c in ("no_text", "none") else cond_states
                p = torch.zeros_like(pose) if c in ("no_pose", "none") else pose
                garment = None if zg is None else (torch.zeros_like(zg) if c in ("no_garment", "none") else zg)
                pred = unet(tryon_unet_input(noisy, mask, zm, p, garment), ts, encoder_hidden_states=states).sample
                key = f"test_mse_t{t}_{c}"
                sums[key] = sums.get(key, 0.0) + float(F.mse_loss(pred.float(), noise.float())) * b
            if base_unet is not None:
                pred = base_unet(inpaint_mod.inpaint_unet_input(noisy, mask, zm), ts, encoder_hidden_states=cond_states).sample
                key = f"base_test_mse_t{t}"
                sums[key] = sums.get(key, 0.0) + float(F.mse_loss(pred.float(), noise.float())) * b
    out = {k: v / n for k, v in sums.items()}
    for c in conditions:
        out[f"test_mse_{c}"] = sum(out[f"test_mse_t{t}_{c}"] for t in EVAL_TIMESTEPS) / len(EVAL_TIMESTEPS)
    if base_unet is not None:
        out["base_test_mse"] = sum(out[f"base_test_mse_t{t}"] for t in EVAL_TIMESTEPS) / len(EVAL_TIMESTEPS)
    out["n_eval"] = n
    return out


# ----------------------------------------------------------------------------------------------
# Load or train
# ----------------------------------------------------------------------------------------------


def _weights_sha(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes, values), for components given without a checkpoint."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "state:" + h.hexdigest()


def _component_sha(module: nn.Module | None, ckpt) -> str | None:
    """The checkpoint file's SHA-256 (its manifest's) or, for a module given without one, :func:`_weights_sha`."""
    if module is None:
        return None
    sha = getattr(ckpt, "manifest", {}).get("sha256") if ckpt is not None else None
    return sha if sha is not None else _weights_sha(module)


def checkpoint_config(config: TryOnConfig, profile: Profile | str | None = None, *, base=None, vae=None, clip=None,
                      adapter=None, tps=None, refine=None) -> dict:
    """The checkpoint config: the :class:`TryOnConfig`, the SHA-256 of every frozen component it was trained with
    (``base_sha256``, ``vae_sha256``, ``clip_sha256``, ``adapter_sha256``, ``tps_sha256``, ``refine_sha256``; each
    component a ``(module, checkpoint or None)`` pair; ``None`` for components the variant does not use) and the
    profile's SynthVTON render parameters (the data key)."""
    from vtonlab.data import synthvton_params

    def sha(pair):
        return None if pair is None else _component_sha(*pair)

    return {**config.to_dict(), "base_sha256": sha(base), "vae_sha256": sha(vae), "clip_sha256": sha(clip),
            "adapter_sha256": sha(adapter) if config.text_mode == "inversion" else None,
            "tps_sha256": sha(tps) if config.garment_input else None,
            "refine_sha256": sha(refine) if config.garment_input else None,
            "data": synthvton_params(resolve_profile(profile))}


def _pair(given, what: str) -> tuple[nn.Module, object]:
    if isinstance(given, tuple):
        if len(given) != 2 or not isinstance(given[0], nn.Module):
            raise TypeError(f"{what}: expected a module or a (module, checkpoint) pair, got a tuple of {len(given)}")
        return given
    if not isinstance(given, nn.Module):
        raise TypeError(f"{what}: expected a module or a (module, checkpoint) pair, got {type(given).__name__}")
    return given, None


def _default_adapter(prof: Profile, num_pseudo_words: int, verbose: bool, **components) -> tuple[nn.Module, object]:
    """The trained inversion adapter of :func:`vtonlab.ladi.adapter.get_trained`, imported on use; the frozen
    ``components`` (``inpaint``, ``vae``, ``clip`` pairs) are passed on where it accepts them."""
    import importlib

    getter = getattr(importlib.import_module("vtonlab.ladi.adapter"), "get_trained", None)
    if getter is None:
        raise FileNotFoundError(f"text_mode='inversion' needs the trained inversion adapter for profile {prof.name!r}, but "
                                "vtonlab.ladi.adapter.get_trained does not exist yet; pass adapter= (an InversionAdapter "
                                f"with {num_pseudo_words} pseudo-words, or an (adapter, checkpoint) pair) or use "
                                "text_mode='caption' or 'none'")
    params = inspect.signature(getter).parameters
    offered = {"num_pseudo_words": num_pseudo_words, "verbose": verbose, **components}
    kwargs = {k: v for k, v in offered.items() if k in params}
    out = getter(prof, **kwargs)
    return out if isinstance(out, tuple) else (out, None)


def _check_adapter(adapter: nn.Module, config: TryOnConfig, clip: object) -> None:
    got = getattr(adapter, "num_pseudo_words", None)
    if got != config.num_pseudo_words:
        raise ValueError(f"adapter: predicts {got} pseudo-words but num_pseudo_words={config.num_pseudo_words} was asked; "
                         f"use an adapter trained for {config.num_pseudo_words} (vtonlab.ladi.adapter.get_trained)")
    width = int(_text_tower(clip).config.hidden_size)
    if getattr(adapter, "text_hidden_size", None) != width:
        raise ValueError(f"adapter: text_hidden_size={getattr(adapter, 'text_hidden_size', None)}, expected the CLIP text "
                         f"tower's width {width}")


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False, garment_input: bool = True,
                num_pseudo_words: int = NUM_PSEUDO_WORDS, seed: int = 0, text_mode: str = "inversion",
                config: TryOnConfig | None = None, base=None, vae=None, clip=None, adapter=None, tps=None, refine=None,
                train_data=None, eval_data=None, checkpoint: str | os.PathLike | None = None, progress: bool = True,
                verbose: bool = True, data_cache: dict | None = None):
    """The profile's fine-tuned try-on UNet: ``(unet, checkpoint)``, loaded when a matching checkpoint exists.

    ``python -m vtonlab train ladi_tryon --profile P`` makes the default one (checkpoint ``ladi_tryon``); the
    variants (``garment_input=False``, ``num_pseudo_words``, ``seed``, ``text_mode``) are named by
    :func:`checkpoint_name`. ``config`` replaces :meth:`TryOnConfig.for_profile` (the four variant arguments must then
    be left at their defaults or agree with it).

    Frozen components, each a module or a ``(module, checkpoint)`` pair; by default the profile's: ``clip``
    (:func:`vtonlab.clip.get_trained`), ``vae`` (:func:`vtonlab.ladi.vae.get_trained`), ``base`` (the 9-channel
    UNet of :func:`vtonlab.ladi.inpaint.get_trained`), ``adapter`` (only for ``text_mode="inversion"``:
    ``vtonlab.ladi.adapter.get_trained``, imported when needed), ``tps`` / ``refine`` (only with garment input:
    :func:`vtonlab.ladi.warping.get_trained_tps` / ``get_trained_refine``). ``train_data`` / ``eval_data``: sample
    dicts (default the profile's SynthVTON train and test splits with ``config.pose_style`` heatmaps) or prepared
    :class:`TryOnData`. ``checkpoint``: a checkpoint file to load instead of the shipped or cached one; a
    :class:`vtonlab.checkpoints.CheckpointError` naming it and every differing field is raised when it was made with
    another config, component or data. ``data_cache``: a dict in which the prepared :class:`TryOnData` are kept for
    later calls with the same data-relevant settings and frozen components (a family of variants x seeds prepares
    each once). Metrics: :func:`evaluate` (with the base UNet), :func:`dropout_rates`, ``seconds_per_step``,
    ``prepare_seconds`` (0 when the data came from ``data_cache``), ``n_parameters``.
    """
    from vtonlab.checkpoints import load_checkpoint, load_or_train, normalise_config

    prof = resolve_profile(profile)
    variant = dict(garment_input=garment_input, num_pseudo_words=num_pseudo_words, seed=seed, text_mode=text_mode)
    if config is None:
        cfg = TryOnConfig.for_profile(prof, **variant)
    else:
        defaults = dict(garment_input=True, num_pseudo_words=NUM_PSEUDO_WORDS, seed=0, text_mode="inversion")
        clash = [f"{k}={v!r} (config has {getattr(config, k)!r})" for k, v in variant.items()
                 if v != defaults[k] and v != getattr(config, k)]
        if clash:
            raise ValueError(f"get_trained: config= given together with {', '.join(clash)}; set them in the config")
        cfg = config
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"TryOnConfig.image_size {cfg.image_size} differs from profile {prof.name!r} image size "
                         f"{tuple(prof.image_size)}")
    if clip is None:
        from vtonlab.clip import get_trained as get_clip

        clip = get_clip(prof)
    clip_pair = _pair(clip, "clip")
    if vae is None:
        from vtonlab.ladi import vae as vae_mod

        vae = vae_mod.get_trained_stack(prof, verbose=verbose)
    vae_pair = _pair(vae, "vae")
    if base is None:
        base = inpaint_mod.get_trained(prof, vae=vae_pair, text_encoder=clip_pair, verbose=verbose)
    base_pair = _pair(base, "base")
    if _in_channels(base_pair[0]) != BASE_CHANNELS:
        raise ValueError(f"base: expected the {BASE_CHANNELS}-channel inpainting UNet (vtonlab.ladi.inpaint.get_trained), "
                         f"got in_channels={_in_channels(base_pair[0])}")
    base_layer = getattr(base_pair[1], "config", {}).get("text_layer") if base_pair[1] is not None else None
    if base_layer not in (None, "last"):
        raise ValueError(f"base: trained with text_layer={base_layer!r}; the try-on UNet reads the text tower's last layer "
                         "(as the pseudo-words' encoding gives it), so the base must use InpaintConfig.text_layer='last'")
    adapter_pair = None
    if cfg.text_mode == "inversion":
        if adapter is None:
            adapter = _default_adapter(prof, cfg.num_pseudo_words, verbose, inpaint=base_pair, vae=vae_pair, clip=clip_pair)
        adapter_pair = _pair(adapter, "adapter")
        _check_adapter(adapter_pair[0], cfg, clip_pair[0])
    tps_pair = refine_pair = None
    if cfg.garment_input:
        from vtonlab.ladi import warping

        tps_pair = _pair(tps if tps is not None else warping.get_trained_tps(prof, verbose=verbose), "tps")
        refine_pair = _pair(refine if refine is not None else warping.get_trained_refine(prof, verbose=verbose), "refine")
        refine_style = getattr(getattr(refine_pair[0], "config", None), "pose_style", cfg.pose_style)
        if refine_style != cfg.pose_style:
            raise ValueError(f"refine: reads {refine_style!r} pose maps but TryOnConfig.pose_style={cfg.pose_style!r}")
    full = checkpoint_config(cfg, prof, base=base_pair, vae=vae_pair, clip=clip_pair, adapter=adapter_pair, tps=tps_pair,
                             refine=refine_pair)
    name = checkpoint_name(cfg)
    components = dict(vae=vae_pair[0], clip=clip_pair[0], adapter=adapter_pair[0] if adapter_pair else None,
                      tps=tps_pair[0] if tps_pair else None, refine=refine_pair[0] if refine_pair else None)

    def prepared(given, split: str, limit: int) -> TryOnData:
        if isinstance(given, TryOnData):
            return given.head(limit)
        # what the prepared data depends on: the data source, the frozen components (their SHA-256) and the
        # data-relevant config fields; not the seed or the optimisation settings
        relevant = {k: full[k] for k in ("garment_input", "garment_warp", "text_mode", "num_pseudo_words", "pose_style",
                                         "image_size", "vae_sha256", "clip_sha256", "adapter_sha256", "tps_sha256",
                                         "refine_sha256")}
        key = (split, limit, "default" if given is None else id(given), repr(sorted(relevant.items())), repr(full["data"]))
        if data_cache is not None and key in data_cache:
            return data_cache[key]
        if given is None:
            from vtonlab.data import synthvton

            given = synthvton(split, prof, pose_style=cfg.pose_style)
        data = prepare_data(cfg, given, limit=limit, batch_size=prof.eval_batch_size, **components)
        if data_cache is not None:
            data_cache[key] = data
        return data

    def train_fn():
        start = time.perf_counter()
        tr = prepared(train_data, "train", cfg.n_train)
        ev = prepared(eval_data, "test", cfg.eval_samples)
        prepare_seconds = time.perf_counter() - start
        unet, history = train(cfg, tr, base_unet=base_pair[0], text_encoder=clip_pair[0], progress=progress, profile=prof)
        metrics = evaluate(unet, ev, cfg, text_encoder=clip_pair[0], base_unet=base_pair[0].eval(), n=cfg.eval_samples,
                           batch_size=prof.eval_batch_size)
        metrics.update(dropout_rates(history, cfg.batch_size))
        metrics.update(uncond_fraction=cfg.uncond_fraction, seconds_per_step=history.seconds / max(1, len(history)),
                       prepare_seconds=prepare_seconds, n_train=len(tr), in_channels=cfg.in_channels,
                       n_parameters=sum(p.numel() for p in unet.parameters()))
        return {"unet": unet}, metrics, history

    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint, normalise_config({**full, "profile": prof.name}), name=name)
    else:
        ckpt = load_or_train(name, full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    unet = start_unet(base_pair[0], cfg.garment_input)
    ckpt.load_into(unet, prefix="unet")
    return unet.eval().requires_grad_(False), ckpt


# ----------------------------------------------------------------------------------------------
# What a profile's training costs on this machine
# ----------------------------------------------------------------------------------------------


def training_benchmark(profile: Profile | str | None = None, *, steps: int = 3, device: str | torch.device | None = None
                       ) -> dict:
    """Seconds per training step, on this machine, of a profile's two largest LaDI-VTON models, and the hours their
    training would take at the profile's steps. Returns a dict for ``data/bench``
    (``python -m vtonlab bench ladi_training --profile P``).

    Both are built untrained, with the profile's structure, and fed random inputs of the profile's shapes (nothing is
    loaded, trained or rendered, so the gpu profile can be measured on a laptop):

    - the try-on UNet: :class:`vtonlab.ladi.inpaint.InpaintConfig` widths widened to 31 channels, the profile's batch
      and latent size, text states of the CLIP text tower's width and 77 tokens; forward, epsilon MSE, backward and
      an AdamW step (the same optimiser as :func:`train`). The base inpainting UNet has the same widths and costs
      about the same per step;
    - the stack's autoencoder (:func:`vtonlab.ladi.vae.stack_config`): :func:`vtonlab.ladi.vae.vae_losses` without
      the perceptual network (the stack's recipe gives it weight 0 in every profile), backward and an Adam step.

    Data preparation, the frozen text encoder, warping and checkpointing are not timed, so the hours are a lower
    bound. The first step warms up and is not timed; the result is the median of ``steps`` timed steps. On CUDA the
    gpu recipe applies: bf16 autocast when the profile's dtype is bfloat16, channels_last when its
    ``extra["channels_last"]`` says so.
    """
    import statistics

    from vtonlab.clip.config import CONTEXT_LENGTH
    from vtonlab.ladi import vae as vae_mod
    from vtonlab.profiles import device_recipe

    prof = resolve_profile(profile)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive number of timed steps, got {steps!r}")
    recipe = device_recipe(prof, device)
    dev = recipe.device

    def timed(module: nn.Module, opt: torch.optim.Optimizer, loss_fn) -> list[float]:
        recipe.prepare(module)
        module.train()
        times = []
        for _ in range(steps + 1):
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with recipe.autocast():
                loss = loss_fn()
            loss.backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return times[1:]

    g = torch.Generator().manual_seed(0)
    cfg = TryOnConfig.for_profile(prof)
    icfg = inpaint_mod.InpaintConfig.for_profile(prof)
    unet = widen_conv_in(inpaint_mod.build_unet(icfg), TRYON_CHANNELS)
    b, (h, w) = cfg.batch_size, cfg.latent_size
    x = torch.randn(b, TRYON_CHANNELS, h, w, generator=g).to(dev)
    states = torch.randn(b, CONTEXT_LENGTH, icfg.cross_attention_dim, generator=g).to(dev)
    t = torch.randint(0, icfg.num_train_timesteps, (b,), generator=g).to(dev)
    noise = torch.randn(b, 4, h, w, generator=g).to(dev)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, eps=cfg.eps)
    unet_times = timed(unet, opt, lambda: F.mse_loss(unet(x, t, encoder_hidden_states=states).sample.float(), noise))
    unet_params = sum(p.numel() for p in unet.parameters())
    unet = opt = None  # free the UNet before the autoencoder is built

    vcfg = vae_mod.stack_config(prof)
    vae = vae_mod.build_vae(vcfg)
    images = (torch.rand(vcfg.batch_size, 3, *vcfg.image_size, generator=g) * 2 - 1).to(dev)
    vopt = torch.optim.Adam(vae.parameters(), lr=vcfg.lr)
    vae_times = timed(vae, vopt, lambda: vae_mod.vae_losses(vae, images, vcfg, None)["loss"])
    vae_params = sum(p.numel() for p in vae.parameters())

    def entry(times, params, n_steps, shape, batch):
        sec = statistics.median(times)
        return {"parameters": params, "input": list(shape), "batch_size": batch, "seconds_per_step": sec,
                "step_seconds": times, "profile_steps": n_steps, "hours_for_profile_steps": sec * n_steps / 3600}

    return {"profile": prof.name, "device": str(dev), "precision": recipe.precision,
            "channels_last": recipe.channels_last, "torch_threads": torch.get_num_threads(), "timed_steps": steps,
            "tryon_unet": entry(unet_times, unet_params, cfg.steps, (TRYON_CHANNELS, h, w), b),
            "autoencoder": entry(vae_times, vae_params, vcfg.steps, (3, *vcfg.image_size), vcfg.batch_size)}
