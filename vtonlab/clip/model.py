"""The CLIP model (Radford et al. 2021): a text transformer and a vision transformer in one space.

:class:`CLIP` wraps a ``transformers.CLIPModel`` and adds image preprocessing, the clamped
temperature ``exp(t) <= 100`` (Sec. 2.5), per-token text states and per-patch image features (for
LaDI-VTON's text encoder and textual-inversion adapter), and local loading and saving in the
transformers layout (:meth:`CLIP.from_pretrained`, :meth:`CLIP.save_pretrained`). Its forward pass
gives the L2-normalised features ``I_e, T_e`` of the paper's Fig. 3 pseudocode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vtonlab.clip.bpe import VOCAB_SIZE, tokenize, tokenizer
from vtonlab.clip.config import LOGIT_SCALE_MAX, CLIPSize, build_config, clip_size
from vtonlab.clip.images import _FITS, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, preprocess
from vtonlab.profiles import Profile


@dataclass
class TextEncoding:
    """Output of :meth:`CLIP.encode_text`.

    ``embeds`` ``(B, P)``: projected features (not normalised); ``pooled`` ``(B, D_text)``: the
    final-layer-normed state at the end token (before projection); ``hidden_states``
    ``(B, L, D_text)``: every token's final state (what a diffusion UNet cross-attends to);
    ``input_ids`` ``(B, L)``.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor
    hidden_states: torch.Tensor
    input_ids: torch.Tensor


@dataclass
class ImageEncoding:
    """Output of :meth:`CLIP.encode_image`.

    ``embeds`` ``(B, P)``: projected features (not normalised); ``pooled`` ``(B, D_vis)``: the
    post-layer-normed class token; ``hidden_states`` ``(B, 1 + N, D_vis)``: class token and ``N``
    patch tokens from the last layer (before the final layer norm, as transformers returns them).
    """

    embeds: torch.Tensor
    pooled: torch.Tensor
    hidden_states: torch.Tensor

    @property
    def patch_tokens(self) -> torch.Tensor:
        """``(B, N, D_vis)``: the last layer's patch tokens, without the class token."""
        return self.hidden_states[:, 1:]


@dataclass
class ContrastiveOutput:
    """Output of :meth:`CLIP.forward`: L2-normalised features ``(B, P)`` and the clamped scale ``exp(t)``."""

    image_features: torch.Tensor
    text_features: torch.Tensor
    logit_scale: torch.Tensor

    @property
    def logits_per_image(self) -> torch.Tensor:
        """``(B_img, B_txt)`` scaled cosine similarities (rows: images)."""
        return self.logit_scale * self.image_features @ self.text_features.t()


class CLIP(nn.Module):
    """CLIP (Radford et al. 2021): a text transformer and a vision transformer mapped into one space.

    Wraps a ``transformers.CLIPModel`` (``self.hf``; its projections ``visual_projection`` /
    ``text_projection`` and its ``logit_scale`` parameter ``t``) and adds what the course needs:
    image preprocessing (:func:`preprocess`), the clamped temperature ``exp(t) <= 100``
    (:meth:`logit_scale`), text states per token and image states per patch, and text encoding from
    replaced token embeddings (LaDI-VTON's textual inversion).
    """

    def __init__(self, model, *, image_mean: Sequence[float] = OPENAI_CLIP_MEAN,
                 image_std: Sequence[float] = OPENAI_CLIP_STD, fit: str = "pad", tokenizer_=None):
        super().__init__()
        from transformers import CLIPModel

        if not isinstance(model, CLIPModel):
            raise TypeError(f"model must be a transformers.CLIPModel, got {type(model).__name__}")
        if fit not in _FITS:
            raise ValueError(f"fit must be one of {_FITS}, got {fit!r}")
        if len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0:
            raise ValueError(f"image_mean and image_std must be 3 values (std > 0), got {image_mean}, {image_std}")
        self.hf = model
        self.image_mean = tuple(float(v) for v in image_mean)
        self.image_std = tuple(float(v) for v in image_std)
        self.fit = fit
        self._tokenizer = tokenizer_

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_size(cls, size: CLIPSize | Profile | str | None = None) -> CLIP:
        """A randomly initialised small CLIP of a :class:`CLIPSize` (or of a profile's size)."""
        from transformers import CLIPModel

        if not isinstance(size, CLIPSize):
            size = clip_size(size)
        return cls(CLIPModel(build_config(size)))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, fit: str = "pad", dtype: torch.dtype | None = None) -> CLIP:
        """Load a CLIP saved in the transformers layout from a local directory (never downloads).

        The directory needs ``config.json`` (``model_type`` ``"clip"``) and ``model.safetensors``
        (pickled ``pytorch_model.bin`` files are refused); ``preprocessor_config.json`` supplies
        mean and std when present (else OpenAI's), and tokenizer files their tokenizer (else the
        CLIP BPE tokenizer of :func:`tokenizer`). Works for OpenAI and LAION CLIPs saved with
        ``CLIPModel.save_pretrained`` and for :meth:`save_pretrained` output.
        """
        from transformers import CLIPModel, CLIPTokenizer

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a directory; expected a CLIP saved with save_pretrained "
                                    "(config.json + model.safetensors)")
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{cfg_file} is missing; expected a transformers CLIPModel directory")
        try:
            cfg = json.loads(cfg_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{cfg_file} is not valid JSON: {err}") from err
        if cfg.get("model_type") != "clip":
            raise ValueError(f"{cfg_file} has model_type {cfg.get('model_type')!r}, expected 'clip' (a full CLIPModel "
                             "with both towers, not a text- or vision-only model)")
        weights = sorted(path.glob("*.safetensors"))
        if not weights:
            pickles = sorted(p.name for p in path.glob("*.bin"))
            hint = (f" It holds {', '.join(pickles)}: pickled weights are never loaded; convert them to safetensors "
                    "once in a trusted environment.") if pickles else ""
            raise FileNotFoundError(f"no *.safetensors weights in {path}.{hint}")
        kwargs = {"dtype": dtype} if dtype is not None else {}
        model = CLIPModel.from_pretrained(path, local_files_only=True, use_safetensors=True, **kwargs)
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        pre = path / "preprocessor_config.json"
        if pre.is_file():
            try:
                pcfg = json.loads(pre.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"{pre} is not valid JSON: {err}") from err
            mean, std = pcfg.get("image_mean", mean), pcfg.get("image_std", std)
            fit = pcfg.get("vtonlab_fit", fit)
        tok = None
        if (path / "tokenizer.json").is_file() or (path / "vocab.json").is_file():
            tok = CLIPTokenizer.from_pretrained(path, local_files_only=True)
            if len(tok) < 1000:
                raise ValueError(f"the tokenizer in {path} has only {len(tok)} tokens: its files are not a CLIP BPE "
                                 "vocabulary")
        elif model.config.text_config.vocab_size != VOCAB_SIZE:
            raise ValueError(f"{path} has no tokenizer files and a vocabulary of {model.config.text_config.vocab_size} "
                             f"tokens; the built-in CLIP tokenizer has {VOCAB_SIZE}")
        return cls(model, image_mean=mean, image_std=std, fit=fit, tokenizer_=tok)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write weights (safetensors), config, tokenizer and preprocessing so :meth:`from_pretrained` reloads them."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        size = self.image_size
        pre = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
               "do_center_crop": True, "crop_size": {"height": size, "width": size}, "do_normalize": True,
               "image_mean": list(self.image_mean), "image_std": list(self.image_std), "vtonlab_fit": self.fit}
        (path / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
        return path

    # ---------------------------------------------------------------- properties
    @property
    def tokenizer(self):
        """The tokenizer of this model (the CLIP BPE tokenizer unless loaded with its own)."""
        return self._tokenizer if self._tokenizer is not None else tokenizer()

    @property
    def image_size(self) -> int:
        size = self.hf.config.vision_config.image_size
        return int(size if isinstance(size, int) else size[0])

    @property
    def context_length(self) -> int:
        return int(self.hf.config.text_config.max_position_embeddings)

    @property
    def embed_dim(self) -> int:
        return int(self.hf.config.projection_dim)

    @property
    def text_width(self) -> int:
        return int(self.hf.config.text_config.hidden_size)

    @property
    def vision_width(self) -> int:
        return int(self.hf.config.vision_config.hidden_size)

    @property
    def device(self) -> torch.device:
        return self.hf.logit_scale.device

    def logit_scale(self) -> torch.Tensor:
        """The temperature multiplier ``exp(t)``, clamped at 100 (CLIP, Sec. 2.5); a scalar tensor."""
        return self.hf.logit_scale.exp().clamp(max=LOGIT_SCALE_MAX)

    # ---------------------------------------------------------------- encoders
    def preprocess(self, images: Any) -> torch.Tensor:
        """Images (see :func:`to_model_images`) -> ``(B, 3, S, S)`` pixel values for this model."""
        return preprocess(images, self.image_size, self.image_mean, self.image_std, self.fit).to(self.device)

    def encode_image(self, images: Any, *, preprocessed: bool = False) -> ImageEncoding:
        """Encode images: ``(B, 3, H, W)`` in [-1, 1] (or uint8 ``(B, H, W, 3)``), or, with
        ``preprocessed=True``, pixel values ``(B, 3, S, S)`` from :meth:`preprocess`."""
        if preprocessed:
            if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3 \
                    or tuple(images.shape[-2:]) != (self.image_size, self.image_size):
                shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
                raise ValueError(f"preprocessed images must be (B, 3, {self.image_size}, {self.image_size}), got {shape}")
            pixels = images.to(self.device)
        else:
            pixels = self.preprocess(images)
        out = self.hf.get_image_features(pixel_values=pixels.to(self.hf.visual_projection.weight.dtype))
        pooled = self.hf.vision_model.post_layernorm(out.last_hidden_state[:, 0])
        return ImageEncoding(embeds=out.pooler_output, pooled=pooled, hidden_states=out.last_hidden_state)

    def _check_ids(self, input_ids: torch.Tensor) -> None:
        if input_ids.ndim != 2 or input_ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"input_ids must be an integer tensor (B, L), got {input_ids.dtype} {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.context_length:
            raise ValueError(f"input_ids has {input_ids.shape[1]} positions; this CLIP's context is {self.context_length}")
        vocab = self.hf.config.text_config.vocab_size
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
            raise ValueError(f"input_ids must lie in [0, {vocab}), got [{int(input_ids.min())}, {int(input_ids.max())}]")
        eos = self.hf.config.text_config.eos_token_id
        if eos != 2 and not bool((input_ids == eos).any(dim=1).all()):
            raise ValueError(f"every row of input_ids needs the end token {eos} (the text feature is read there); "
                             "tokenize with vtonlab.clip.tokenize")

    def encode_text(self, text: str | Sequence[str] | torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                    token_embeddings: torch.Tensor | None = None) -> TextEncoding:
        """Encode captions (strings, tokenized here) or token ids ``(B, L)``.

        ``token_embeddings`` ``(B, L, D_text)`` replaces the token-embedding lookup (position
        embeddings are still added): LaDI-VTON's inversion adapter writes its pseudo-word
        embeddings into the prompt this way. The text feature is read at the first end token.
        """
        if isinstance(text, torch.Tensor):
            input_ids = text
        else:
            input_ids, attention_mask = tokenize(text, self.tokenizer, context_length=self.context_length)
        self._check_ids(input_ids)
        input_ids = input_ids.to(self.device)
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}")
            attention_mask = attention_mask.to(self.device)
        handle = None
        if token_embeddings is not None:
            expected = (*input_ids.shape, self.text_width)
            if tuple(token_embeddings.shape) != expected:
                raise ValueError(f"token_embeddings must be (B, L, D_text) = {expected}, got {tuple(token_embeddings.shape)}")
            replacement = token_embeddings.to(self.device)
            handle = self.hf.text_model.embeddings.token_embedding.register_forward_hook(
                lambda _m, _inp, out: replacement.to(out.dtype))
        try:
            out = self.hf.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        finally:
            if handle is not None:
                handle.remove()
        hidden = out.last_hidden_state
        eos = self.hf.config.text_config.eos_token_id
        pos = (input_ids == eos).int().argmax(dim=1) if eos != 2 else input_ids.argmax(dim=1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), pos]
        return TextEncoding(embeds=out.pooler_output, pooled=pooled, hidden_states=hidden, input_ids=input_ids)

    def forward(self, images: Any, text: str | Sequence[str] | torch.Tensor,
                attention_mask: torch.Tensor | None = None, *, preprocessed: bool = False) -> ContrastiveOutput:
        """Normalised image and text features and the clamped logit scale, ready for :func:`contrastive_loss`."""
        img = self.encode_image(images, preprocessed=preprocessed).embeds
        txt = self.encode_text(text, attention_mask).embeds
        return ContrastiveOutput(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), self.logit_scale())

    @torch.no_grad()
    def image_features(self, images: Any, *, batch_size: int = 64, preprocessed: bool = False) -> torch.Tensor:
        """L2-normalised image features ``(B, P)`` computed in batches, in eval mode, on CPU."""
        was = self.training
        self.eval()
        try:
            n = len(images)
            feats = [F.normalize(self.encode_image(images[i:i + batch_size], preprocessed=preprocessed).embeds.float(), dim=-1)
                     for i in range(0, n, batch_size)]
        finally:
            self.train(was)
        return torch.cat(feats).cpu()

    @torch.no_grad()
    def text_features(self, texts: Sequence[str], *, batch_size: int = 256) -> torch.Tensor:
        """L2-normalised text features ``(B, P)`` computed in batches, in eval mode, on CPU."""
        if isinstance(texts, str):
            texts = [texts]
        was = self.training
        self.eval()
        try:
            feats = [F.normalize(self.encode_text(list(texts[i:i + batch_size])).embeds.float(), dim=-1)
                     for i in range(0, len(texts), batch_size)]
        finally:
            self.train(was)
        if not feats:
            raise ValueError("texts is empty")
        return torch.cat(feats).cpu()
