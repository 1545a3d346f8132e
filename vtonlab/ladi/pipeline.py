"""LaDI-VTON's try-on pipeline: guided DDIM sampling in the latent space, decoded with EMASC skips.

:class:`LadiVTONPipeline` is a diffusers ``DiffusionPipeline`` with the components vae, unet, text_encoder, tokenizer,
image_encoder, adapter, emasc and scheduler (image_encoder, adapter and emasc may be ``None``, for the ablations).
One call (LaDI-VTON, Morelli et al., ACM MM 2023, arXiv 2305.13501, Sec. 3):

1. the person with the inpainting region greyed out, ``image * (mask < 0.5)``, and the warped garment are encoded
   by the VAE (posterior samples x ``scaling_factor``); the encoder's features of the masked person are kept for EMASC;
2. the prompt "a photo of a model wearing <category> $ ... $" is encoded with the adapter's pseudo-words of the
   in-shop garment in place of the ``$`` (``text_mode="inversion"``), or a caption (``"caption"``), or ``""``
   (``"none"``);
3. DDIM from Gaussian noise: at each step the UNet reads ``[z_t, mask, masked-person latent, pose, garment latent]``
   (31 channels; 27 without garment input, 9 for the base inpainting UNet) and cross-attends to the prompt; with
   ``guidance_scale > 1`` a negative branch with the empty prompt, zero pose and zero garment latent is evaluated
   too and ``eps = eps_u + w (eps_c - eps_u)`` (classifier-free guidance, Ho & Salimans 2022);
4. the final latent is decoded with the EMASC skips of the masked person (or plainly) into ``[0, 1]`` images.

Saving is ``save_pretrained`` / ``from_pretrained`` on a local folder: safetensors weights and JSON configs only
(our adapter and EMASC travel as the diffusers models :class:`InversionAdapterModel` and :class:`EMASCModel`; the
CLIP towers as transformers ``CLIPTextModel`` / ``CLIPVisionModelWithProjection``). A folder holding pickled weights
(``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``) is refused. :func:`load` builds the pipeline from the course's
trained components; :func:`from_official` from Stable Diffusion 2 inpainting, CLIP ViT-H/14 and the released
LaDI-VTON weights when they are on disk (:func:`convert_official` turns the released ``.pth`` files into safetensors:
``python -m vtonlab.ladi.pipeline convert-official DIR``).

Fidelity (official code: miccunifi/ladi-vton; every difference is a named option of :meth:`LadiVTONPipeline.__call__`
or of the pipeline's config):

| point | paper | official code | vtonlab |
|---|---|---|---|
| guidance on [1] | classifier-free guidance | second branch only if ``guidance_scale > 1`` | same |
| negative branch [2] | empty text, no pose / garment | ``""`` padded to 77, zero pose, zero garment latent | same, one UNet call |
| guidance formula [3] | ``eps_u + w (eps_c - eps_u)`` | same | same |
| prompt, inversion [4] | pseudo-words for ``$ .. $`` | ``encode_text_word_embedding`` | ``encode_text_with_pseudo_words`` |
| prompt, ablations [5] | text none / noun chunks | ``""`` / the dataset's noun chunks | ``text_mode`` none / caption |
| garment for CLIP [6] | - | [0, 1], resized to 224 x 224, CLIP processor | ``image_fit="resize"``; ours: CLIP's fit |
| masked person [7] | - | mask binarised at 0.5; ``image * (mask < 0.5)`` | same |
| condition latents [8] | - | posterior samples x ``scaling_factor`` | same; ``sample_latents=False``: means |
| random draws [9] | - | garment, initial noise, masked person, DDIM | same order |
| pose [10] | pose map input | bilinear to ``H/8 x W/8``; ``no_pose``: zeros | ``resize_pose``; ``use_pose=False`` |
| mask to latent [11] | - | nearest | ``resize_mask`` |
| UNet input [12] | - | scaled ``z_t``, mask, masked, pose, garment | ``tryon_unet_input`` |
| garment steps [13] | - | ``cloth_cond_rate`` 1.0 (garment zeroed after) | same option |
| sampler [14] | DDIM 50 steps, eta 0 | SD2's DDIM config; 50 steps, guidance 7.5 | same; :func:`load`: profile steps |
| decoding [15] | EMASC skips | features 1..5 -> EMASC -> x (1 - mask) | same; ``emasc=False``: plain |
| output [16] | - | ``(x / 2 + 0.5).clamp(0, 1)``, PIL | same; tensors by default |
| garment input [17] | none / warped | 27 / 31 channels | 9 / 27 / 31, checked |
| released weights [18] | - | ``torch.hub`` pickles (``.pth``) | ``weights_only=True`` or safetensors |
| trajectory [19] | - | ``callback(i, t, latents)`` | ``callback_on_step_end``, ``return_trajectory`` |

Sources (``src/vto_pipelines/tryon_pipe.py`` unless named): [1] 617; [2] 263-266, 283-301, 315, 701-705, 715, 732
(one UNet call on ``[uncond, cond]``); [3] 735-737; [4] ``src/inference.py`` 276-295, ``src/utils/image_from_pipe.py``
56-87 (prompt "a photo of a model wearing <noun> $ ... $", no padding mask); [5] ``image_from_pipe.py`` 52-55, 108-123; [6]
``inference.py`` 269-273: ``(cloth + 1) / 2`` resized bilinear with antialiasing, then the ViT-H processor (whether
transformers 4.27's processor rescales these [0, 1] floats once more is not checked here); our CLIP's adapter is fed
through :func:`vtonlab.clip.images.preprocess` with the CLIP's own fit, as the CLIP was trained; [7] 630 (diffusers'
``prepare_mask_and_masked_image``); [8] 639-647, 457-462; [9] 639-640, 656-667, 669-699, 331-346; [10] 632-636;
[11] 434-436; [12] 722-729; [13] 653-654, 717-719 (the garment latent of the last ``(1 - rate)`` of the steps is
zero in both branches); [14] 504-508, ``inference.py`` 86-87, 123-124, ``src/eval.py`` 158-159; [15] 349-356,
670-685, 750-753; [16] 356, 759-760; [17] 639-645, ``eval.py`` 112, 166 (9: the base inpainting UNet, no pose and
no garment); [18] ``hubconf.py`` 16-53; [19] 515-516, 743-747.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor, nn
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModelWithProjection

from vtonlab.clip.images import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from vtonlab.ladi import adapter as adapter_mod
from vtonlab.ladi import unet as unet_mod
from vtonlab.ladi import vae as vae_mod
from vtonlab.ladi.adapter import PLACEHOLDER, InversionAdapter
from vtonlab.ladi.emasc import EMASC

__all__ = [
    "SD2_SCHEDULER", "TEXT_MODES", "IMAGE_FITS", "PICKLE_SUFFIXES", "InversionAdapterModel", "EMASCModel",
    "LadiVTONOutput", "LadiVTONPipeline", "clip_towers", "load", "from_official", "convert_official", "sampling_benchmark",
]

SD2_SCHEDULER: dict[str, Any] = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                     beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                                     steps_offset=1, prediction_type="epsilon")
"""Stable Diffusion 2 inpainting's ``scheduler/scheduler_config.json`` values: the DDIM the official code samples with."""

TEXT_MODES = ("inversion", "caption", "none")
IMAGE_FITS = ("resize", "pad", "crop")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_BASE, _NO_GARMENT, _FULL = unet_mod.BASE_CHANNELS, unet_mod.input_channels(False), unet_mod.TRYON_CHANNELS
_VISION_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels",
                "image_size", "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout", "projection_dim",
                "initializer_range", "initializer_factor")


# ----------------------------------------------------------------------------------------------
# Our adapter and EMASC as diffusers models (config.json + safetensors)
# ----------------------------------------------------------------------------------------------


class InversionAdapterModel(ModelMixin, ConfigMixin):
    """:class:`~vtonlab.ladi.adapter.InversionAdapter` as a diffusers model, so a pipeline saves and loads it.

    The config holds the image tower's vision config (the keys the adapter's CLIP encoder layer reads), the text
    width, ``N`` and the layer count; the weights are the adapter's under the prefix ``adapter.``.
    ``forward(x)``: image tower hidden states ``(B, T, d)`` -> pseudo-words ``(B, N, d_text)``.
    """

    @register_to_config
    def __init__(self, vision_config: dict, text_hidden_size: int, num_pseudo_words: int = adapter_mod.NUM_PSEUDO_WORDS,
                 num_encoder_layers: int = 1, dropout: float = 0.5):
        super().__init__()
        self.adapter = InversionAdapter(CLIPVisionConfig(**dict(vision_config)), text_hidden_size, num_pseudo_words,
                                        num_encoder_layers, dropout)

    @classmethod
    def from_adapter(cls, adapter: InversionAdapter) -> InversionAdapterModel:
        """Wrap a trained :class:`InversionAdapter` (its weights are copied)."""
        if not isinstance(adapter, InversionAdapter):
            raise TypeError(f"adapter: expected a vtonlab.ladi.adapter.InversionAdapter, got {type(adapter).__name__}")
        drop = next((m.p for m in adapter.layers if isinstance(m, nn.Dropout)), 0.0)
        model = cls(vision_config_dict(adapter.config), adapter.text_hidden_size, adapter.num_pseudo_words,
                    len(adapter.encoder_layers), float(drop))
        model.adapter.load_state_dict(adapter.state_dict())
        return model.to(next(adapter.parameters()).device)

    @property
    def num_pseudo_words(self) -> int:
        return int(self.config.num_pseudo_words)

    def forward(self, x: Tensor) -> Tensor:
        return self.adapter(x)


class EMASCModel(ModelMixin, ConfigMixin):
    """:class:`~vtonlab.ladi.emasc.EMASC` as a diffusers model (weights under the prefix ``emasc.``).

    ``forward(features, mask)``: the encoder features :data:`vtonlab.ladi.vae.SKIP_LAYERS` of the masked person and
    the inpainting mask ``(B, 1, H, W)`` -> the masked skip features in decoder order.
    """

    @register_to_config
    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], kind: str = "nonlinear",
                 kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.emasc = EMASC(list(in_channels), list(out_channels), kind, kernel_size, padding)

    @classmethod
    def from_emasc(cls, emasc: EMASC) -> EMASCModel:
        """Wrap a trained :class:`EMASC` (its weights are copied)."""
        if not isinstance(emasc, EMASC):
            raise TypeError(f"emasc: expected a vtonlab.ladi.emasc.EMASC, got {type(emasc).__name__}")
        first = emasc.conv[0] if emasc.kind == "linear" else emasc.conv[0][0]
        model = cls(emasc.in_channels, emasc.out_channels, emasc.kind, first.kernel_size[0], first.padding[0])
        model.emasc.load_state_dict(emasc.state_dict())
        return model.to(first.weight.device)

    def forward(self, features: Sequence[Tensor], mask: Tensor) -> list[Tensor]:
        return self.emasc(features, mask)


def vision_config_dict(config: CLIPVisionConfig) -> dict:
    """The JSON-able part of a ``CLIPVisionConfig`` that an adapter needs (see :class:`InversionAdapterModel`)."""
    d = config.to_dict()
    return {k: d[k] for k in _VISION_KEYS if k in d}


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _where(component: object) -> str:
    """`` (from <folder>)`` when the component was loaded from a folder, else ``""``."""
    cfg = getattr(component, "config", None)
    path = None
    if cfg is not None:
        path = cfg.get("_name_or_path") if isinstance(cfg, Mapping) else getattr(cfg, "_name_or_path", None)
    path = path or getattr(component, "name_or_path", None)
    return f" (from {path})" if path else ""


def _shape(x: object) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _pickles(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)


def _refuse_pickles(folder: Path) -> None:
    found = _pickles(folder)
    if found:
        raise ValueError(f"{found[0]}: pickled weights are never loaded ({len(found)} such file(s) in {folder}). Convert "
                         "them once, in an environment you trust, to safetensors: load the component there and call "
                         "save_pretrained(..., safe_serialization=True), or for the released LaDI-VTON .pth files run "
                         "`python -m vtonlab.ladi.pipeline convert-official DIR`; then remove the pickled file")


def _check_image_batch(name: str, x: object, channels: int, batch: int | None, size: tuple[int, int] | None,
                       low: float | None = None, high: float | None = None) -> Tensor:
    """A float ``(B, channels, H, W)`` tensor with the given batch / size (``None``: any) and value range."""
    want_b = batch if batch is not None else "B"
    want_hw = size if size is not None else ("H", "W")
    expected = f"a float tensor ({want_b}, {channels}, {want_hw[0]}, {want_hw[1]})"
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 4 or x.shape[1] != channels:
        what = f"{x.dtype} {_shape(x)}" if isinstance(x, Tensor) else _shape(x)
        raise ValueError(f"{name}: expected {expected}, got {what}")
    if batch is not None and x.shape[0] != batch:
        raise ValueError(f"{name}: expected batch {batch} (the image's), got {_shape(x)}")
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"{name}: expected spatial size {tuple(size)} (the image's), got {_shape(x)}")
    if low is not None and x.numel() and (float(x.min()) < low - 1e-3 or float(x.max()) > high + 1e-3):
        raise ValueError(f"{name}: expected values in [{low:g}, {high:g}], got [{float(x.min()):.3g}, {float(x.max()):.3g}]")
    return x


def _per_sample(name: str, value: str | Sequence[str], b: int) -> list[str]:
    if isinstance(value, str):
        return [value] * b
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name}: expected a string or a list of {b} strings, got {type(value).__name__}")
    if len(value) != b:
        raise ValueError(f"{name}: expected {b} entries (the image batch), got {len(value)}")
    return list(value)


@dataclass
class LadiVTONOutput(BaseOutput):
    """Output of :class:`LadiVTONPipeline`.

    ``images``: ``(B, 3, H, W)`` in [0, 1] (``output_type="pt"``), a list of PIL images (``"pil"``), an array
    ``(B, H, W, 3)`` (``"np"``) or the final scaled latents ``(B, 4, H/8, W/8)`` (``"latent"``). With
    ``return_trajectory=True``: ``trajectory`` ``(T, B, 4, h, w)``, the latent after each of the ``T`` steps (after
    the callback); ``pred_original`` ``(T, B, 4, h, w)``, the scheduler's prediction of the clean latent at each
    step (DDIM's ``x_0``); ``timesteps`` ``(T,)``. All on the CPU; decode any of them with
    :meth:`LadiVTONPipeline.decode`.
    """

    images: Any
    trajectory: Tensor | None = None
    pred_original: Tensor | None = None
    timesteps: Tensor | None = None


# ----------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------


class LadiVTONPipeline(DiffusionPipeline):
    """LaDI-VTON's try-on pipeline (see the module docstring for the steps and the fidelity table).

    Components: ``vae`` (``AutoencoderKL``, 4 latent channels), ``unet`` (``UNet2DConditionModel`` with 31, 27 or 9
    input channels, cross-attention width = the text tower's), ``text_encoder`` (``CLIPTextModel``), ``tokenizer``
    (``CLIPTokenizer``), ``scheduler`` (DDIM by default), ``image_encoder`` (``CLIPVisionModelWithProjection``),
    ``adapter`` (:class:`InversionAdapterModel`; an :class:`InversionAdapter` is wrapped), ``emasc``
    (:class:`EMASCModel`; an :class:`EMASC` is wrapped). Config: how garment images are fed to the image tower
    (``image_fit`` in :data:`IMAGE_FITS`, ``image_mean``, ``image_std``), the default number of steps and guidance
    scale, and a ``label`` saying where the weights come from. The components are checked against one another
    (errors name the component, the folder it came from and what was expected) and set to eval mode.
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->adapter->unet->vae"
    _optional_components = ["image_encoder", "adapter", "emasc"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds", "noise_pred"]

    def __init__(self, vae: AutoencoderKL, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                 tokenizer: CLIPTokenizer, scheduler: DDIMScheduler,
                 image_encoder: CLIPVisionModelWithProjection | None = None,
                 adapter: InversionAdapterModel | None = None, emasc: EMASCModel | None = None,
                 image_fit: str = "resize", image_mean: list[float] | tuple[float, ...] = OPENAI_CLIP_MEAN,
                 image_std: list[float] | tuple[float, ...] = OPENAI_CLIP_STD, default_inference_steps: int = 50,
                 default_guidance_scale: float = 7.5, label: str = ""):
        super().__init__()
        if isinstance(adapter, InversionAdapter):
            adapter = InversionAdapterModel.from_adapter(adapter)
        if isinstance(emasc, EMASC):
            emasc = EMASCModel.from_emasc(emasc)
        if image_fit not in IMAGE_FITS:
            raise ValueError(f"image_fit: expected one of {list(IMAGE_FITS)}, got {image_fit!r}")
        if len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0:
            raise ValueError(f"image_mean, image_std: expected 3 values each (std > 0), got {image_mean}, {image_std}")
        if isinstance(default_inference_steps, bool) or not isinstance(default_inference_steps, int) \
                or default_inference_steps < 1:
            raise ValueError(f"default_inference_steps: expected a positive int, got {default_inference_steps!r}")
        _check_components(vae, unet, text_encoder, tokenizer, scheduler, image_encoder, adapter, emasc)
        for m in (vae, unet, text_encoder, image_encoder, adapter, emasc):
            if m is not None:
                m.eval()
        self.register_modules(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                              image_encoder=image_encoder, adapter=adapter, emasc=emasc)
        self.register_to_config(image_fit=image_fit, image_mean=[float(v) for v in image_mean],
                                image_std=[float(v) for v in image_std], default_inference_steps=default_inference_steps,
                                default_guidance_scale=float(default_guidance_scale), label=str(label))
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    # ------------------------------------------------------------------ construction, saving, loading
    @classmethod
    def from_components(cls, vae: AutoencoderKL, unet: UNet2DConditionModel, clip, *, adapter=None, emasc=None,
                        scheduler=None, **config) -> LadiVTONPipeline:
        """A pipeline from our components: ``clip`` a :class:`vtonlab.clip.CLIP` (its towers, tokenizer and image
        preprocessing, :func:`clip_towers`), ``adapter`` an :class:`InversionAdapter` (or ``None``), ``emasc`` an
        :class:`EMASC` (or ``None``), ``scheduler`` default DDIM with :data:`SD2_SCHEDULER`."""
        text_encoder, image_encoder, tokenizer, pre = clip_towers(clip)
        scheduler = scheduler if scheduler is not None else DDIMScheduler(**SD2_SCHEDULER)
        return cls(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                   image_encoder=image_encoder if adapter is not None else None, adapter=adapter, emasc=emasc,
                   **{**pre, **config})

    def save_pretrained(self, save_directory: str | os.PathLike, safe_serialization: bool = True, *,
                        overwrite: bool = False, **kwargs) -> None:
        """Write the pipeline to a local folder: ``model_index.json``, one subfolder per component (safetensors +
        JSON). An existing non-empty folder is refused unless ``overwrite=True``; pickled weights are never written."""
        if not safe_serialization:
            raise ValueError("safe_serialization=False: vtonlab writes safetensors only (pickled weights can run code)")
        if kwargs.get("push_to_hub"):
            raise ValueError("push_to_hub: LadiVTONPipeline saves to a local folder only")
        folder = Path(save_directory)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
            raise FileExistsError(f"{folder} exists and is not empty; pass overwrite=True to replace the pipeline "
                                  "saved there, or choose another folder")
        super().save_pretrained(folder, safe_serialization=True, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> LadiVTONPipeline:
        """Load a pipeline saved by :meth:`save_pretrained` from a local folder (never downloads).

        Only safetensors are read: a folder with pickled weights (:data:`PICKLE_SUFFIXES`) is refused with the name of
        the file and how to convert it. Components whose configs do not fit together (a subfolder from a pipeline of
        another configuration) raise a ``ValueError`` naming the component and its folder.
        """
        folder = Path(pretrained_model_name_or_path)
        index = folder / "model_index.json"
        if not folder.is_dir() or not index.is_file():
            raise FileNotFoundError(f"{folder}: expected a local folder with model_index.json written by "
                                    "LadiVTONPipeline.save_pretrained")
        try:
            saved_class = json.loads(index.read_text()).get("_class_name")
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{index} is not valid JSON: {err}") from err
        if saved_class != cls.__name__:
            raise ValueError(f"{index}: the folder holds a {saved_class!r} pipeline, expected {cls.__name__!r}")
        _refuse_pickles(folder)
        for key in ("use_safetensors", "local_files_only"):
            if kwargs.pop(key, True) is not True:
                raise ValueError(f"{key}: LadiVTONPipeline.from_pretrained reads local safetensors only")
        return super().from_pretrained(folder, use_safetensors=True, local_files_only=True, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def unet_channels(self) -> int:
        """31 (pose and garment), 27 (pose, no garment input) or 9 (base inpainting)."""
        return int(self.unet.config.in_channels)

    @property
    def num_pseudo_words(self) -> int | None:
        return self.adapter.num_pseudo_words if self.adapter is not None else None

    @property
    def num_timesteps(self) -> int:
        """Steps of the current (or last) call; a callback reads it to find the last step."""
        return int(getattr(self, "_num_timesteps", 0))

    @property
    def guidance_scale(self) -> float:
        """Guidance scale of the current (or last) call."""
        return float(getattr(self, "_guidance_scale", self.config.default_guidance_scale))

    @property
    def context_length(self) -> int:
        return int(min(self.tokenizer.model_max_length, self.text_encoder.config.max_position_embeddings))

    # ------------------------------------------------------------------ text
    def _tokenize(self, texts: Sequence[str]) -> Tensor:
        from vtonlab.clip.bpe import tokenize

        return tokenize(list(texts), self.tokenizer, context_length=self.context_length, padding="max_length")[0]

    def _encode_plain(self, texts: Sequence[str], device: torch.device) -> Tensor:
        ids = self._tokenize(texts).to(device)
        return self.text_encoder(input_ids=ids)[0]

    def garment_pixels(self, cloth: Tensor) -> Tensor:
        """In-shop garments ``(B, 3, H, W)`` in [-1, 1] -> the image tower's standardised input ``(B, 3, S, S)``.

        ``image_fit="resize"``: the official preprocessing (``(x + 1) / 2`` resized to ``S x S``, bilinear with
        antialiasing, then CLIP's mean and std); ``"pad"`` / ``"crop"``: :func:`vtonlab.clip.images.preprocess`.
        """
        from vtonlab.clip.images import preprocess

        size = self.image_encoder.config.image_size
        size = int(size if isinstance(size, int) else size[0])
        mean, std = self.config.image_mean, self.config.image_std
        if self.config.image_fit != "resize":
            return preprocess(cloth, size, mean, std, self.config.image_fit)
        x = F.interpolate((cloth.float() + 1) / 2, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).clamp(0, 1)
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - m) / s

    def pseudo_words(self, cloth: Tensor) -> Tensor:
        """The adapter's pseudo-words ``(B, N, d_text)`` of in-shop garments ``(B, 3, H, W)`` in [-1, 1]."""
        if self.adapter is None or self.image_encoder is None:
            raise ValueError("text_mode='inversion' needs the adapter and image_encoder components; this pipeline has "
                             f"adapter={type(self.adapter).__name__}, image_encoder={type(self.image_encoder).__name__} "
                             "(build it with an adapter, or use text_mode='caption' or 'none')")
        device = self._execution_device
        pixels = self.garment_pixels(cloth.to(device)).to(self.image_encoder.dtype)
        states = self.image_encoder(pixel_values=pixels).last_hidden_state
        return self.adapter(states.to(self.adapter.dtype))

    def encode_prompt(self, batch: int, *, text_mode: str = "inversion", category: str | Sequence[str] = "upper_body",
                      prompt: str | Sequence[str] | None = None, captions: Sequence[str] | None = None,
                      cloth: Tensor | None = None, negative: bool = True) -> tuple[Tensor, Tensor | None]:
        """The text hidden states the UNet cross-attends to: ``(prompt_embeds, negative_prompt_embeds)``, each
        ``(B, L, d_text)`` (``L`` = the context length); the negative ones are the empty prompt's (``None`` unless
        ``negative``). ``text_mode``: ``"inversion"`` (``prompt``, default ``adapter.prompt(category, N)``, with the
        pseudo-words of ``cloth``), ``"caption"`` (``captions``) or ``"none"`` (the empty prompt)."""
        device = self._execution_device
        if text_mode not in TEXT_MODES:
            raise ValueError(f"text_mode: expected one of {list(TEXT_MODES)}, got {text_mode!r}")
        if text_mode != "inversion" and prompt is not None:
            raise ValueError(f"prompt: a prompt with placeholders is for text_mode='inversion'; with text_mode={text_mode!r} "
                             "give captions= ('caption') or nothing ('none')")
        if text_mode != "caption" and captions is not None:
            raise ValueError(f"captions: only read with text_mode='caption', got text_mode={text_mode!r}")
        if text_mode == "inversion":
            if cloth is None:
                raise ValueError("cloth: text_mode='inversion' needs the in-shop garments (B, 3, H, W) in [-1, 1]")
            words = self.pseudo_words(cloth)
            n = words.shape[1]
            if prompt is None:
                texts = [adapter_mod.prompt(c, n) for c in _per_sample("category", category, batch)]
            else:
                texts = _per_sample("prompt", prompt, batch)
                for i, t in enumerate(texts):
                    count = t.split().count(PLACEHOLDER)
                    if count != n:
                        raise ValueError(f"prompt {i} {t!r} has {count} placeholders {PLACEHOLDER!r}; text_mode='inversion' "
                                         f"writes the adapter's {n} pseudo-words into {n} placeholders, as in "
                                         f"vtonlab.ladi.adapter.prompt(category, {n}) (or use text_mode='caption')")
            ids = self._tokenize(texts).to(device)
            shim = SimpleNamespace(hf=self.text_encoder, tokenizer=self.tokenizer)
            embeds = adapter_mod.encode_text_with_pseudo_words(shim, ids, words.to(self.text_encoder.dtype))
        elif text_mode == "caption":
            if captions is None:
                raise ValueError("captions: text_mode='caption' needs one caption per sample")
            embeds = self._encode_plain(_per_sample("captions", captions, batch), device)
        else:
            embeds = self._encode_plain([""] * batch, device)
        neg = self._encode_plain([""] * batch, device) if negative else None
        return embeds, neg

    # ------------------------------------------------------------------ latents
    def _posterior_latents(self, posterior, sample: bool, generator) -> Tensor:
        z = posterior.sample(generator) if sample else posterior.mode()
        return z * self.vae.config.scaling_factor

    def emasc_skips(self, image: Tensor, mask: Tensor) -> list[Tensor]:
        """EMASC's skip features of the person ``(B, 3, H, W)`` masked by ``mask`` ``(B, 1, H, W)`` (binarised at 0.5)."""
        if self.emasc is None:
            raise ValueError("emasc=True: this pipeline has no emasc component (pass emasc=False, or build it with one)")
        m = (mask >= 0.5).to(image.dtype)
        _, feats = vae_mod.encode_with_features(self.vae, image * (1 - m))
        return self.emasc([feats[i] for i in vae_mod.SKIP_LAYERS], m)

    @torch.no_grad()
    def decode(self, latents: Tensor, image: Tensor | None = None, mask: Tensor | None = None, *,
               emasc: bool | None = None) -> Tensor:
        """Scaled latents ``(B, 4, h, w)`` -> images ``(B, 3, 8h, 8w)`` in [0, 1]; with EMASC (the skips of ``image``
        masked by ``mask``) when ``emasc`` is true (``None``: when the pipeline has one and ``image`` is given)."""
        use = (self.emasc is not None and image is not None) if emasc is None else bool(emasc)
        device = self._execution_device
        latents = latents.to(device=device, dtype=self.vae.dtype)
        skips = None
        if use:
            if image is None or mask is None:
                raise ValueError("decode with emasc: give the person image and the inpainting mask")
            skips = self.emasc_skips(image.to(device, self.vae.dtype), mask.to(device, self.vae.dtype))
        return (vae_mod.decode_latents(self.vae, latents, skips) + 1) / 2

    # ------------------------------------------------------------------ the call
    def _resolve_switches(self, use_pose: bool | None, use_garment: bool | None) -> tuple[bool, bool]:
        c = self.unet_channels
        reads_pose, reads_garment = c in (_NO_GARMENT, _FULL), c == _FULL
        what = {_FULL: "noisy latent, mask, masked-person latent, pose, garment latent",
                _NO_GARMENT: "noisy latent, mask, masked-person latent, pose (the 'no garment input' variant)",
                _BASE: "noisy latent, mask, masked-person latent (the base inpainting UNet)"}[c]
        pose = reads_pose if use_pose is None else bool(use_pose)
        garment = reads_garment if use_garment is None else bool(use_garment)
        if pose and not reads_pose:
            raise ValueError(f"use_pose=True: the UNet{_where(self.unet)} has in_channels={c} ({what}) and reads no pose; "
                             f"pose needs in_channels {_NO_GARMENT} or {_FULL} (pass use_pose=False)")
        if garment != reads_garment:
            need = (f"in_channels={_FULL}" if garment else f"in_channels={_NO_GARMENT} or {_BASE} (a 'no garment input' "
                    f"variant; to zero the garment latent of a {_FULL}-channel UNet use cloth_cond_rate=0)")
            raise ValueError(f"use_garment={garment}: the UNet{_where(self.unet)} has in_channels={c} ({what}); "
                             f"use_garment={garment} expects {need}")
        return pose, garment

    @torch.no_grad()
    def __call__(self, image: Tensor, mask: Tensor, pose_map: Tensor | None = None, warped_cloth: Tensor | None = None,
                 cloth: Tensor | None = None, category: str | Sequence[str] = "upper_body",
                 prompt: str | Sequence[str] | None = None, *, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, generator: torch.Generator | list[torch.Generator] | None = None,
                 eta: float = 0.0, text_mode: str = "inversion", captions: Sequence[str] | None = None,
                 use_pose: bool | None = None, use_garment: bool | None = None, emasc: bool | None = None,
                 cloth_cond_rate: float = 1.0, sample_latents: bool = True, latents: Tensor | None = None,
                 callback_on_step_end: Callable | None = None,
                 callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",), output_type: str = "pt",
                 return_dict: bool = True, return_trajectory: bool = False):
        """Try ``warped_cloth`` on the person ``image`` (see the module docstring for the steps).

        Args:
            image: the person ``(B, 3, H, W)`` in [-1, 1], ``H`` and ``W`` multiples of 8.
            mask: the inpainting mask ``(B, 1, H, W)`` in [0, 1], 1 = generate (binarised at 0.5).
            pose_map: pose heatmaps ``(B, 18, H, W)``; needed when the UNet reads pose (31 / 27 channels).
            warped_cloth: the warped garment ``(B, 3, H, W)`` in [-1, 1]; needed with a 31-channel UNet.
            cloth: the in-shop garment ``(B, 3, H', W')`` in [-1, 1]; needed with ``text_mode="inversion"``.
            category, prompt: the inversion prompt: ``adapter.prompt(category, N)`` (a category, or one per sample),
                or ``prompt`` with exactly ``N`` placeholders ``$``.
            num_inference_steps, guidance_scale: default the config's (50 and 7.5 as the official code; :func:`load`
                sets the profile's steps). Guidance runs the negative branch only when ``guidance_scale > 1``.
            generator: a ``torch.Generator`` (or one per sample) for every random draw.
            eta: DDIM's eta (0: deterministic steps).
            text_mode: ``"inversion"``, ``"caption"`` (``captions``: one per sample) or ``"none"`` (empty prompt).
            use_pose, use_garment: ``None``: as the UNet reads; ``use_pose=False`` with a pose-reading UNet feeds zeros
                (the official ``no_pose``); a value the UNet's ``in_channels`` cannot honour is an error.
            emasc: decode with EMASC skips (``None``: when the pipeline has an emasc component).
            cloth_cond_rate: the fraction of the steps, from the first, that see the garment latent (official 1.0).
            sample_latents: encode the masked person and the garment as posterior samples (official) or means.
            latents: the initial noise ``(B, 4, H/8, W/8)`` instead of drawing it.
            callback_on_step_end: ``fn(pipe, i, t, tensors) -> dict`` after each step; ``tensors`` holds the names in
                ``callback_on_step_end_tensor_inputs`` (of ``latents``, ``prompt_embeds``, ``negative_prompt_embeds``,
                ``noise_pred``); returned ``latents`` / ``prompt_embeds`` / ``negative_prompt_embeds`` replace them.
            output_type: ``"pt"`` (``(B, 3, H, W)`` in [0, 1]), ``"pil"``, ``"np"`` or ``"latent"``.
            return_dict: a :class:`LadiVTONOutput`, else the tuple ``(images,)`` (``(images, trajectory)`` with
                ``return_trajectory``).
            return_trajectory: keep every step's latent and clean-latent prediction (for a denoising widget).
        """
        from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

        # -- 1. check the inputs
        steps = self.config.default_inference_steps if num_inference_steps is None else num_inference_steps
        scale = self.config.default_guidance_scale if guidance_scale is None else guidance_scale
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"num_inference_steps: expected a positive int, got {steps!r}")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale < 0:
            raise ValueError(f"guidance_scale: expected a number >= 0 (1: no guidance), got {scale!r}")
        if not 0.0 <= float(cloth_cond_rate) <= 1.0:
            raise ValueError(f"cloth_cond_rate: expected a fraction of the steps in [0, 1], got {cloth_cond_rate!r}")
        if output_type not in ("pt", "pil", "np", "latent"):
            raise ValueError(f"output_type: expected 'pt', 'pil', 'np' or 'latent', got {output_type!r}")
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        bad = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
        if bad:
            raise ValueError(f"callback_on_step_end_tensor_inputs: {bad} are not among {self._callback_tensor_inputs}")
        _check_image_batch("image", image, 3, None, None, -1.0, 1.0)
        b, (h, w) = image.shape[0], tuple(image.shape[-2:])
        if h % 8 or w % 8:
            raise ValueError(f"image: height and width must be multiples of 8 (the VAE's f = 8), got {h}x{w}")
        _check_image_batch("mask", mask, 1, b, (h, w), 0.0, 1.0)
        pose_on, garment_on = self._resolve_switches(use_pose, use_garment)
        reads_pose = self.unet_channels != _BASE
        if reads_pose and pose_on:
            _check_image_batch("pose_map", pose_map, unet_mod.INPUT_LAYOUT[3][1], b, (h, w))
        if garment_on:
            if warped_cloth is None:
                raise ValueError(f"warped_cloth: the {_FULL}-channel UNet needs the warped garment ({b}, 3, {h}, {w}) "
                                 "in [-1, 1]")
            _check_image_batch("warped_cloth", warped_cloth, 3, b, (h, w), -1.0, 1.0)
        if text_mode == "inversion" and cloth is not None:
            _check_image_batch("cloth", cloth, 3, b, None, -1.0, 1.0)
        if isinstance(generator, list) and len(generator) != b:
            raise ValueError(f"generator: expected one generator or a list of {b} (the batch), got {len(generator)}")
        latent_shape = (b, self.vae.config.latent_channels, h // self.vae_scale_factor, w // self.vae_scale_factor)
        if latents is not None and (not isinstance(latents, Tensor) or tuple(latents.shape) != latent_shape):
            raise ValueError(f"latents: expected the initial noise {latent_shape} (B, 4, H/8, W/8), got {_shape(latents)}")

        device = self._execution_device
        dtype = self.unet.dtype
        use_emasc = (self.emasc is not None) if emasc is None else bool(emasc)
        if use_emasc and self.emasc is None:
            raise ValueError("emasc=True: this pipeline has no emasc component (pass emasc=False, or build it with one)")
        guided = scale > 1.0

        # -- 2. the prompt (negative: the empty prompt)
        prompt_embeds, negative_embeds = self.encode_prompt(b, text_mode=text_mode, category=category, prompt=prompt,
                                                            captions=captions, cloth=cloth, negative=guided)

        # -- 3. mask, masked person, pose, garment latent (the official order of random draws)
        image = image.to(device=device, dtype=self.vae.dtype)
        m_full = (mask.to(device=device, dtype=self.vae.dtype) >= 0.5).to(self.vae.dtype)
        masked = image * (1 - m_full)
        latent_hw = latent_shape[2:]
        pose = None
        if reads_pose:
            pose = unet_mod.resize_pose(pose_map.to(device=device, dtype=dtype), latent_hw) if pose_on else \
                torch.zeros(b, unet_mod.INPUT_LAYOUT[3][1], *latent_hw, device=device, dtype=dtype)
        garment = None
        if garment_on:
            garment = self._posterior_latents(self.vae.encode(warped_cloth.to(device, self.vae.dtype)).latent_dist,
                                              sample_latents, generator).to(dtype)
        self.scheduler.set_timesteps(steps, device=device)
        timesteps = self.scheduler.timesteps
        if latents is None:
            latents = randn_tensor(latent_shape, generator=generator, device=device, dtype=dtype)
        latents = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma
        posterior, feats = vae_mod.encode_with_features(self.vae, masked)
        masked_latents = self._posterior_latents(posterior, sample_latents, generator).to(dtype)
        skips = self.emasc([feats[i] for i in vae_mod.SKIP_LAYERS], m_full) if use_emasc else None
        del feats
        m_lat = unet_mod.resize_mask(m_full, latent_hw).to(dtype)

        def doubled(x: Tensor | None, uncond: Tensor | None = None) -> Tensor | None:
            if x is None or not guided:
                return x
            return torch.cat([x if uncond is None else uncond, x])

        mask_in, masked_in = doubled(m_lat), doubled(masked_latents)
        pose_in = doubled(pose, torch.zeros_like(pose) if pose is not None else None)
        garment_in = doubled(garment, torch.zeros_like(garment) if garment is not None else None)
        embeds = torch.cat([negative_embeds, prompt_embeds]) if guided else prompt_embeds

        extra = {}
        params = set(inspect.signature(self.scheduler.step).parameters)
        if "eta" in params:
            extra["eta"] = eta
        if "generator" in params:
            extra["generator"] = generator

        # -- 4. denoising
        garment_steps = (1.0 - float(cloth_cond_rate)) * steps
        traj, preds = [], []
        self._num_timesteps, self._guidance_scale = len(timesteps), float(scale)
        with self.progress_bar(total=len(timesteps)) as bar:
            for i, t in enumerate(timesteps):
                if garment_in is not None and i >= steps - garment_steps:
                    garment_in = torch.zeros_like(garment_in)
                x = torch.cat([latents] * 2) if guided else latents
                x = self.scheduler.scale_model_input(x, t)
                if reads_pose:
                    x = unet_mod.tryon_unet_input(x, mask_in, masked_in, pose_in, garment_in)
                else:
                    x = torch.cat([x, mask_in, masked_in], dim=1)
                noise_pred = self.unet(x, t, encoder_hidden_states=embeds.to(dtype)).sample
                if guided:
                    uncond, cond = noise_pred.chunk(2)
                    noise_pred = uncond + scale * (cond - uncond)
                out = self.scheduler.step(noise_pred, t, latents, **extra)
                latents = out.prev_sample.to(dtype)
                if callback_on_step_end is not None:
                    values = {"latents": latents, "prompt_embeds": prompt_embeds,
                              "negative_prompt_embeds": negative_embeds, "noise_pred": noise_pred}
                    result = callback_on_step_end(self, i, t, {k: values[k] for k in callback_on_step_end_tensor_inputs})
                    if not isinstance(result, Mapping):
                        raise TypeError(f"callback_on_step_end must return a dict of tensors (possibly empty), got "
                                        f"{type(result).__name__}")
                    latents = result.get("latents", latents)
                    if "prompt_embeds" in result or "negative_prompt_embeds" in result:
                        prompt_embeds = result.get("prompt_embeds", prompt_embeds)
                        negative_embeds = result.get("negative_prompt_embeds", negative_embeds)
                        embeds = torch.cat([negative_embeds, prompt_embeds]) if guided else prompt_embeds
                if return_trajectory:
                    traj.append(latents.detach().float().cpu())
                    pred = getattr(out, "pred_original_sample", None)
                    if pred is not None:
                        preds.append(pred.detach().float().cpu())
                bar.update()

        # -- 5. decoding
        if output_type == "latent":
            images: Any = latents
        else:
            images = (vae_mod.decode_latents(self.vae, latents.to(self.vae.dtype), skips) + 1) / 2
            if output_type in ("pil", "np"):
                arr = images.float().permute(0, 2, 3, 1).cpu().numpy()
                images = self.numpy_to_pil(arr) if output_type == "pil" else arr
        self.maybe_free_model_hooks()
        trajectory = torch.stack(traj) if traj else None
        if not return_dict:
            return (images, trajectory) if return_trajectory else (images,)
        return LadiVTONOutput(images=images, trajectory=trajectory,
                              pred_original=torch.stack(preds) if preds else None,
                              timesteps=timesteps.detach().cpu() if return_trajectory else None)


# ----------------------------------------------------------------------------------------------
# Component checks
# ----------------------------------------------------------------------------------------------


def _check_components(vae, unet, text_encoder, tokenizer, scheduler, image_encoder, adapter, emasc) -> None:
    """Raise a ``ValueError`` naming the component (and its folder) whose config does not fit the others."""
    for name, obj, cls in (("vae", vae, AutoencoderKL), ("unet", unet, UNet2DConditionModel),
                           ("text_encoder", text_encoder, CLIPTextModel)):
        if not isinstance(obj, cls):
            raise TypeError(f"{name}: expected a {cls.__name__}, got {type(obj).__name__}")
    for name, obj, cls in (("image_encoder", image_encoder, CLIPVisionModelWithProjection),
                           ("adapter", adapter, InversionAdapterModel), ("emasc", emasc, EMASCModel)):
        if obj is not None and not isinstance(obj, cls):
            raise TypeError(f"{name}: expected a {cls.__name__} or None, got {type(obj).__name__}")
    if not callable(tokenizer) or not hasattr(tokenizer, "model_max_length"):
        raise TypeError(f"tokenizer: expected a transformers CLIPTokenizer, got {type(tokenizer).__name__}")
    if not hasattr(scheduler, "set_timesteps") or not hasattr(scheduler, "step"):
        raise TypeError(f"scheduler: expected a diffusers scheduler, got {type(scheduler).__name__}")
    latent_ch = vae.config.latent_channels
    if latent_ch != unet_mod.INPUT_LAYOUT[0][1]:
        raise ValueError(f"vae{_where(vae)}: expected {unet_mod.INPUT_LAYOUT[0][1]} latent channels (the try-on UNet's "
                         f"layout), got latent_channels={latent_ch}")
    c = unet.config.in_channels
    if c not in (_FULL, _NO_GARMENT, _BASE):
        raise ValueError(f"unet{_where(unet)}: expected in_channels {_FULL} (pose and garment), {_NO_GARMENT} (no garment "
                         f"input) or {_BASE} (base inpainting), got {c}")
    if unet.config.out_channels != latent_ch:
        raise ValueError(f"unet{_where(unet)}: expected out_channels={latent_ch} (the vae's latent channels), got "
                         f"{unet.config.out_channels}")
    width = text_encoder.config.hidden_size
    if unet.config.cross_attention_dim != width:
        raise ValueError(f"unet{_where(unet)}: cross_attention_dim={unet.config.cross_attention_dim}, expected {width} "
                         f"(the hidden_size of text_encoder{_where(text_encoder)}): the two come from pipelines of "
                         "different configurations")
    if len(tokenizer) > text_encoder.config.vocab_size:
        raise ValueError(f"tokenizer{_where(tokenizer)} has {len(tokenizer)} tokens but text_encoder{_where(text_encoder)} "
                         f"embeds {text_encoder.config.vocab_size}")
    if adapter is not None:
        if image_encoder is None:
            raise ValueError("adapter: the inversion adapter reads the image tower's states; image_encoder is None")
        if adapter.config.text_hidden_size != width:
            raise ValueError(f"adapter{_where(adapter)}: text_hidden_size={adapter.config.text_hidden_size}, expected {width} "
                             f"(the hidden_size of text_encoder{_where(text_encoder)})")
        vis = image_encoder.config.hidden_size
        if adapter.config.vision_config.get("hidden_size") != vis:
            raise ValueError(f"adapter{_where(adapter)}: vision hidden_size={adapter.config.vision_config.get('hidden_size')}, "
                             f"expected {vis} (the hidden_size of image_encoder{_where(image_encoder)})")
        adapter_mod.placeholder_token_id(tokenizer)
    if emasc is not None:
        try:
            cin, cout = vae_mod.skip_channels(vae)
        except ValueError as err:
            raise ValueError(f"emasc: EMASC needs a 4-block vae{_where(vae)}: {err}") from None
        if list(emasc.config.in_channels) != cin or list(emasc.config.out_channels) != cout:
            raise ValueError(f"emasc{_where(emasc)}: channels in {list(emasc.config.in_channels)} / out "
                             f"{list(emasc.config.out_channels)}, expected {cin} / {cout} (vae{_where(vae)} widths "
                             f"{list(vae.config.block_out_channels)})")


# ----------------------------------------------------------------------------------------------
# Our CLIP as pipeline components
# ----------------------------------------------------------------------------------------------


def clip_towers(clip) -> tuple[CLIPTextModel, CLIPVisionModelWithProjection, CLIPTokenizer, dict]:
    """A :class:`vtonlab.clip.CLIP` as pipeline components: ``(text_encoder, image_encoder, tokenizer, preprocessing)``.

    The text tower becomes a ``CLIPTextModel`` and the image tower (with its projection) a
    ``CLIPVisionModelWithProjection``, weights copied, so the pipeline treats our CLIP and an official one alike;
    ``preprocessing`` is the pipeline config (``image_fit``, ``image_mean``, ``image_std``) of the CLIP's own image
    preprocessing, which the adapter was trained on.
    """
    hf = getattr(clip, "hf", None)
    if hf is None or not hasattr(hf, "text_model") or not hasattr(hf, "vision_model"):
        raise TypeError(f"clip: expected a vtonlab.clip.CLIP, got {type(clip).__name__}")
    cfg = hf.config
    text = CLIPTextModel(cfg.text_config)
    text.load_state_dict(hf.text_model.state_dict())
    vcfg = CLIPVisionConfig(**{**cfg.vision_config.to_dict(), "projection_dim": cfg.projection_dim})
    vision = CLIPVisionModelWithProjection(vcfg)
    vision.vision_model.load_state_dict(hf.vision_model.state_dict())
    vision.visual_projection.load_state_dict(hf.visual_projection.state_dict())
    device = clip.device
    pre = dict(image_fit=clip.fit, image_mean=list(clip.image_mean), image_std=list(clip.image_std))
    return text.to(device).eval(), vision.to(device).eval(), clip.tokenizer, pre


# ----------------------------------------------------------------------------------------------
# The course's trained pipeline
# ----------------------------------------------------------------------------------------------


def _trained_or_given(given, module_name: str, what: str, arg: str, prof) -> Any:
    if given is not None:
        return given[0] if isinstance(given, tuple) else given
    getter = getattr(importlib.import_module(module_name), "get_trained", None)
    if getter is None:
        raise FileNotFoundError(f"vtonlab.ladi.load: no trained {what} checkpoint for profile {prof.name!r}: "
                                f"{module_name}.get_trained does not exist yet, so no such checkpoint is made or found; "
                                f"pass {arg}= (a trained one)")
    out = getter(prof)
    return out[0] if isinstance(out, tuple) else out


def load(profile=None, *, unet: UNet2DConditionModel | None = None, adapter: InversionAdapter | None = None,
         clip=None, vae=None, emasc=None, emasc_kind: str = "nonlinear", scheduler=None) -> LadiVTONPipeline:
    """The profile's trained LaDI-VTON pipeline (``vtonlab.ladi.load``).

    Components: our CLIP (:func:`vtonlab.clip.get_trained`), the KL autoencoder (:func:`vtonlab.ladi.vae.get_trained`),
    EMASC of ``emasc_kind`` on it (:func:`vtonlab.ladi.emasc.get_trained`), and the try-on UNet and inversion adapter:
    ``unet=`` / ``adapter=`` when given (a module, or a ``(module, checkpoint)`` pair), else the ``get_trained`` of
    :mod:`vtonlab.ladi.tryon` / :mod:`vtonlab.ladi.adapter`; when neither exists a ``FileNotFoundError`` names the
    missing checkpoint before anything is loaded. ``clip``, ``vae`` (a ``(vae, checkpoint)`` pair), ``emasc`` override
    the loaded ones. Sampling defaults: the profile's DDIM steps, guidance 7.5; scheduler DDIM with
    :data:`SD2_SCHEDULER` unless given.
    """
    from vtonlab.ladi import emasc as emasc_mod
    from vtonlab.profiles import resolve

    prof = resolve(profile)
    unet_model = _trained_or_given(unet, "vtonlab.ladi.tryon", "try-on UNet", "unet", prof)
    adapter_model = _trained_or_given(adapter, "vtonlab.ladi.adapter", "inversion adapter", "adapter", prof)
    if clip is None:
        from vtonlab.clip import get_trained as clip_trained

        clip = clip_trained(prof)[0]
    vae_pair = vae if vae is not None else vae_mod.get_trained_stack(prof, verbose=False)
    if not isinstance(vae_pair, tuple):
        raise TypeError("vae: expected the (vae, checkpoint) pair of vtonlab.ladi.vae.get_trained")
    if emasc is None:
        emasc = emasc_mod.get_trained(prof, kind=emasc_kind, vae=vae_pair, verbose=False)[0]
    return LadiVTONPipeline.from_components(vae_pair[0], unet_model, clip, adapter=adapter_model, emasc=emasc,
                                            scheduler=scheduler, default_inference_steps=prof.sampling_steps,
                                            label=f"vtonlab {prof.name}")


# ----------------------------------------------------------------------------------------------
# The official weights
# ----------------------------------------------------------------------------------------------

_OFFICIAL_FILES = ("unet", "emasc", "inversion_adapter")


def _official_state(folder: Path, stem: str) -> dict[str, Tensor]:
    """``<stem>.safetensors`` if present, else ``<stem>.pth`` through ``torch.load(weights_only=True)``."""
    from safetensors.torch import load_file

    st, pth = folder / f"{stem}.safetensors", folder / f"{stem}.pth"
    if st.is_file():
        return load_file(st)
    if pth.is_file():
        state = torch.load(pth, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ValueError(f"{pth}: expected a state dict of tensors (a released LaDI-VTON weight file)")
        return dict(state)
    raise FileNotFoundError(f"{folder}: expected {st.name} or {pth.name} (the released LaDI-VTON weights, "
                            f"https://github.com/miccunifi/ladi-vton/releases)")


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: expected {what}")
    return path


def _safetensors_in(folder: Path, what: str) -> None:
    if not any(folder.glob("*.safetensors")):
        pick = _pickles(folder)
        hint = f"; it holds {pick[0].name}: convert it to safetensors once in a trusted environment" if pick else ""
        raise FileNotFoundError(f"{folder}: expected {what} as *.safetensors{hint}")


def from_official(sd_path: str | os.PathLike, clip_path: str | os.PathLike, ladi_path: str | os.PathLike, *,
                  dataset: str = "vitonhd") -> LadiVTONPipeline:
    """LaDI-VTON as released, from local folders (never downloads).

    ``sd_path``: Stable Diffusion 2 inpainting in the diffusers layout (``vae/``, ``unet/`` (its config only),
    ``text_encoder/``, ``tokenizer/``, ``scheduler/``; weights as safetensors). ``clip_path``: CLIP ViT-H/14
    (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``) in the transformers layout (``config.json``, ``model.safetensors``,
    ``preprocessor_config.json``). ``ladi_path``: the released ``unet_<dataset>``, ``emasc_<dataset>`` and
    ``inversion_adapter_<dataset>`` weights, as ``.safetensors`` (:func:`convert_official`) or the released ``.pth``
    (read with ``torch.load(weights_only=True)``). As ``hubconf.py``: the UNet is SD2's config with the input
    channels of the released weights (31, or 27), EMASC nonlinear (or linear, from the weights) on the VAE's widths,
    the adapter on the CLIP's vision config with ``N`` from its output layer. Garments reach CLIP as the official
    code feeds them (``image_fit="resize"``); 50 DDIM steps, guidance 7.5.
    """
    sd, clip_dir, ladi = Path(sd_path), Path(clip_path), Path(ladi_path)
    for sub in ("vae", "unet", "text_encoder", "tokenizer", "scheduler"):
        _require(sd / sub, f"the {sub}/ folder of Stable Diffusion 2 inpainting in the diffusers layout (sd_path)")
    _safetensors_in(sd / "text_encoder", "the SD2 text encoder weights")
    _require(clip_dir / "config.json", "CLIP ViT-H/14 in the transformers layout (clip_path)")
    _safetensors_in(clip_dir, "the CLIP ViT-H/14 weights")
    if dataset not in ("vitonhd", "dresscode"):
        raise ValueError(f"dataset: expected 'vitonhd' or 'dresscode' (the released weights), got {dataset!r}")
    states = {k: _official_state(ladi, f"{k}_{dataset}") for k in _OFFICIAL_FILES}

    vae = vae_mod.load_sd_vae(sd)
    text_encoder = CLIPTextModel.from_pretrained(sd / "text_encoder", use_safetensors=True, local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(sd / "tokenizer", local_files_only=True)
    if len(tokenizer) < 1000:
        raise ValueError(f"{sd / 'tokenizer'}: the tokenizer has {len(tokenizer)} tokens; expected CLIP's BPE vocabulary")
    scheduler = DDIMScheduler.from_pretrained(sd / "scheduler")
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(clip_dir, use_safetensors=True, local_files_only=True)

    ustate = states["unet"]
    if "conv_in.weight" not in ustate:
        raise ValueError(f"{ladi}/unet_{dataset}: expected a UNet2DConditionModel state dict (conv_in.weight missing)")
    config = dict(UNet2DConditionModel.load_config(sd / "unet"))
    config["in_channels"] = int(ustate["conv_in.weight"].shape[1])
    unet = UNet2DConditionModel.from_config(config)
    _load_strict(unet, ustate, ladi / f"unet_{dataset}")

    astate = states["inversion_adapter"]
    width = text_encoder.config.hidden_size
    last = max((k for k in astate if k.startswith("layers.") and k.endswith(".weight")), key=lambda k: int(k.split(".")[1]),
               default=None)
    if last is None or astate[last].shape[0] % width:
        raise ValueError(f"{ladi}/inversion_adapter_{dataset}: expected the adapter's MLP 'layers.*' with an output of "
                         f"N x {width} (the text width)")
    n_layers = len({k.split(".")[1] for k in astate if k.startswith("encoder_layers.")})
    adapter = InversionAdapter(image_encoder.config, width, astate[last].shape[0] // width, n_layers)
    _load_strict(adapter, astate, ladi / f"inversion_adapter_{dataset}")

    estate = states["emasc"]
    kind = "nonlinear" if any(k.startswith("conv.0.0.") for k in estate) else "linear"
    cin, cout = vae_mod.skip_channels(vae)
    emasc = EMASC(cin, cout, kind)
    _load_strict(emasc, estate, ladi / f"emasc_{dataset}")

    mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    pre = clip_dir / "preprocessor_config.json"
    if pre.is_file():
        p = json.loads(pre.read_text())
        mean, std = p.get("image_mean", mean), p.get("image_std", std)
    return LadiVTONPipeline(vae=vae, unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                            image_encoder=image_encoder, adapter=adapter, emasc=emasc, image_fit="resize",
                            image_mean=mean, image_std=std, label=f"official LaDI-VTON ({dataset})")


def _load_strict(module: nn.Module, state: Mapping[str, Tensor], source: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{source}: the weights do not fit a {type(module).__name__} built from the given configs: "
                         f"{str(err).splitlines()[0]}") from None


def convert_official(ladi_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                     overwrite: bool = False) -> list[Path]:
    """Convert the released LaDI-VTON ``*.pth`` weights in ``ladi_path`` to ``*.safetensors`` (in ``out_dir``,
    default the same folder). Each file is read with ``torch.load(weights_only=True)``; nested dicts (the warping
    module's ``{"tps": ..., "refinement": ...}``) are flattened with ``"<key>."`` prefixes. Existing outputs are
    refused unless ``overwrite``. Returns the written paths. Command: ``python -m vtonlab.ladi.pipeline
    convert-official DIR [--out OUT]``."""
    from safetensors.torch import save_file

    src = Path(ladi_path)
    out = Path(out_dir) if out_dir is not None else src
    files = sorted(src.glob("*.pth"))
    if not files:
        raise FileNotFoundError(f"{src}: no *.pth files (the released LaDI-VTON weights) to convert")
    targets = [out / f"{f.stem}.safetensors" for f in files]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass overwrite=True (--overwrite) to replace it")
    out.mkdir(parents=True, exist_ok=True)

    def flat(state: Mapping, prefix: str = "") -> dict[str, Tensor]:
        res: dict[str, Tensor] = {}
        for k, v in state.items():
            if isinstance(v, Mapping):
                res.update(flat(v, f"{prefix}{k}."))
            elif isinstance(v, Tensor):
                res[f"{prefix}{k}"] = v.detach().cpu().contiguous()
            else:
                raise ValueError(f"entry {prefix}{k}: expected tensors or dicts of tensors, got {type(v).__name__}")
        return res

    for f, t in zip(files, targets):
        state = torch.load(f, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise ValueError(f"{f}: expected a state dict, got {type(state).__name__}")
        save_file(flat(state), t, metadata={"source": f.name, "converted_by": "vtonlab.ladi.pipeline.convert_official"})
    return targets


# ----------------------------------------------------------------------------------------------
# Sampling speed
# ----------------------------------------------------------------------------------------------


def sampling_benchmark(profile=None, *, n: int = 32, batch_size: int | None = None, repeats: int = 2,
                       pipe: LadiVTONPipeline | None = None, device: str | torch.device | None = None,
                       guidance_scale: float = 7.5) -> dict:
    """Seconds per try-on of the profile's full pipeline (:func:`load`) at the profile's DDIM steps with guidance
    (two UNet branches per step), EMASC decoding included, on ``n`` SynthVTON test persons (warped garments computed
    beforehand, not timed). The first batch warms up and is not timed; the result is the median of ``repeats`` timed
    passes. On CUDA the gpu recipe applies: bf16 autocast and, when the profile's ``extra["channels_last"]`` says so,
    the UNet and autoencoder in the channels_last memory format. Returns a dict for ``data/bench``."""
    import statistics
    import time as _time

    from vtonlab.ladi import ablation
    from vtonlab.profiles import device_recipe, resolve

    prof = resolve(profile)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive number of persons, got {n!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    bs = min(n, batch_size or prof.eval_batch_size)
    recipe = device_recipe(prof, device)
    dev = recipe.device
    comps = ablation.Components(prof)
    data = ablation.test_set(prof, "paired", n)
    frozen = comps.frozen()
    ablation.add_warped_cloth(data, frozen["tps"][0], frozen["refine"][0], batch_size=bs)
    n = len(data["names"])
    pipe = pipe if pipe is not None else load(prof)
    pipe.to(dev)
    recipe.prepare(pipe.unet, pipe.vae)

    def one_pass(limit: int) -> float:
        start = _time.perf_counter()
        for s in range(0, limit, bs):
            sl = slice(s, min(limit, s + bs))
            gens = [torch.Generator().manual_seed(i) for i in range(sl.start, sl.stop)]
            with recipe.autocast():
                pipe(data["image"][sl].to(dev), data["inpaint_mask"][sl].to(dev), data["pose_map"][sl].to(dev),
                     data["warped_cloth"][sl].to(dev), data["cloth"][sl].to(dev), guidance_scale=guidance_scale,
                     generator=gens)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return _time.perf_counter() - start

    pipe.set_progress_bar_config(disable=True)
    one_pass(min(n, bs))  # warm-up
    times = [one_pass(n) for _ in range(repeats)]
    sec = statistics.median(times)
    return {"profile": prof.name, "image_size": list(prof.image_size), "num_inference_steps": prof.sampling_steps,
            "guidance_scale": guidance_scale, "n": n, "batch_size": bs, "repeats": repeats, "device": str(dev),
            "precision": recipe.precision, "channels_last": recipe.channels_last, "torch_threads": torch.get_num_threads(),
            "seconds_per_image": sec / n, "images_per_second": n / sec, "pass_seconds": times}


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vtonlab.ladi.pipeline",
                                     description="LaDI-VTON weights: convert the released .pth files to safetensors")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert-official", help="write <name>.safetensors next to each released <name>.pth")
    conv.add_argument("ladi_path")
    conv.add_argument("--out", default=None, help="output folder (default: the same folder)")
    conv.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    for path in convert_official(args.ladi_path, args.out, overwrite=args.overwrite):
        print(path)


if __name__ == "__main__":
    _main()
