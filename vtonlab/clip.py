"""CLIP (Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", 2021).

Everything the course needs from CLIP, in one place:

- :func:`tokenizer`: the real CLIP byte-pair-encoding tokenizer (49,408 tokens, context 77) as a
  ``transformers.CLIPTokenizer``, built offline from the vocabulary file shipped with open_clip;
- :class:`CLIP`: a ``transformers.CLIPModel`` (text transformer + vision transformer + linear
  projections + a learnable temperature) with image preprocessing, per-token text hidden states and
  per-patch image features, so LaDI-VTON's text encoder and textual-inversion adapter can reuse it;
  :meth:`CLIP.from_pretrained` loads real OpenAI / LAION CLIP weights from a local directory;
- :func:`contrastive_loss`: CLIP's symmetric InfoNCE loss, written by hand (paper, Fig. 3);
- zero-shot classification with prompt templates (:func:`zero_shot_eval`) and retrieval recall
  (:func:`retrieval_recall`);
- training on SynthVTON garments and captions (:func:`train`, :func:`get_trained`), through the
  shared :class:`vtonlab.train.Trainer` and :func:`vtonlab.checkpoints.load_or_train`.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

# --------------------------------------------------------------------------------------------
# Constants from the paper and the released models
# --------------------------------------------------------------------------------------------
VOCAB_SIZE = 49408  # 256 bytes + 256 end-of-word bytes + 48,894 merges + 2 special tokens
CONTEXT_LENGTH = 77  # tokens per caption, start and end tokens included
N_MERGES = VOCAB_SIZE - 2 * 256 - 2
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
LOGIT_SCALE_INIT = math.log(1 / 0.07)  # temperature 0.07 (paper, Sec. 2.5)
LOGIT_SCALE_MAX = 100.0  # "clipped to prevent scaling the logits by more than 100"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_FITS = ("pad", "crop")


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------
def bpe_vocab_path() -> Path:
    """The BPE merges file ``bpe_simple_vocab_16e6.txt.gz`` shipped inside open_clip_torch."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"open_clip_torch is not installed; the CLIP tokenizer is built from its {BPE_FILE}")
    path = Path(spec.origin).parent / BPE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the open_clip_torch installation lacks the CLIP BPE vocabulary")
    return path


def byte_alphabet() -> dict[int, str]:
    """Byte-level BPE alphabet (GPT-2, reused by CLIP): each of the 256 bytes -> one printable character.

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves; the other
    68 bytes (controls, space, ...) are mapped in byte order to ``chr(256)``, ``chr(257)``, ...
    The dict's order (printable bytes first) is the order of the first 256 vocabulary ids.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    for extra, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + extra)
    return table


def read_bpe_merges(path: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """The first 48,894 merge rules of CLIP's BPE file (the released models use exactly these)."""
    path = Path(path) if path is not None else bpe_vocab_path()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable gzip text file of BPE merges: {err}") from err
    body = lines[1:N_MERGES + 1]  # line 0 is a version header
    merges = [tuple(line.split()) for line in body]
    bad = next((i for i, m in enumerate(merges) if len(m) != 2), None)
    if len(merges) < N_MERGES or bad is not None:
        where = f"line {bad + 2} is {body[bad]!r}" if bad is not None else f"only {len(merges)} merge lines"
        raise ValueError(f"{path}: expected {N_MERGES} merge rules 'a b' after the header; {where}")
    return merges  # type: ignore[return-value]


def build_vocab(merges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary: bytes, bytes + ``</w>`` (end of word), one token per merge, then BOS and EOS."""
    chars = list(byte_alphabet().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("duplicate tokens in the BPE vocabulary: the merges file is not CLIP's")
    return vocab


@functools.lru_cache(maxsize=1)
def tokenizer():
    """The CLIP BPE tokenizer (49,408 tokens, context length 77) as a ``transformers.CLIPTokenizer``.

    Built offline from open_clip's ``bpe_simple_vocab_16e6.txt.gz`` by passing the vocabulary dict
    and merge tuples (``vocab_file=``/``merges_file=`` silently give a 2-token vocabulary in
    transformers 5). Ids agree with ``open_clip.tokenize``; padding uses the end token (as the
    OpenAI checkpoints on the Hugging Face hub do), where ``open_clip`` pads with 0. Cached.
    """
    from transformers import CLIPTokenizer

    merges = read_bpe_merges()
    tok = CLIPTokenizer(vocab=build_vocab(merges), merges=merges, model_max_length=CONTEXT_LENGTH)
    if len(tok) != VOCAB_SIZE:
        raise RuntimeError(f"CLIP tokenizer has {len(tok)} tokens, expected {VOCAB_SIZE}")
    return tok


def tokenize(texts: str | Sequence[str], tok=None, *, context_length: int = CONTEXT_LENGTH,
             padding: str = "longest") -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, both ``(B, L)`` with ``L <= context_length``.

    Each row is ``<|startoftext|> tokens... <|endoftext|>`` then padding; text longer than
    ``context_length - 2`` tokens is truncated (the end token is kept). ``padding="max_length"``
    pads to ``context_length`` (what ``open_clip.tokenize`` does).
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: give at least one caption")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; got {', '.join(sorted(set(bad)))}")
    if padding not in ("longest", "max_length"):
        raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}")
    tok = tok if tok is not None else tokenizer()
    enc = tok(texts, padding=padding, truncation=True, max_length=context_length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


# --------------------------------------------------------------------------------------------
# Model sizes per profile
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CLIPSize:
    """Architecture and training sizes of our small CLIP (see :data:`CLIP_SIZES`)."""

    image_size: int  # square input of the vision transformer
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    embed_dim: int  # joint embedding (projection) size
    batch_size: int  # contrastive batch: more negatives per step than the profile's batch
    lr: float
    n_train: int  # rendered training garments (each with several captions)
    n_test: int  # held-out garments (other seeds) for zero-shot and retrieval
    render_size: tuple[int, int]  # (H, W) at which garments are rendered

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["render_size"] = list(self.render_size)
        return d


# Garments are rendered at (S, 3S/4), the in-shop aspect ratio of VITON-HD, so that padding to a
# square gives the model's input size S exactly, with no resampling. ci: ~15 s of training on 2
# cores; cpu: ~23 minutes on 2 cores (3000 steps; patch 8, because 16-pixel patches barely learned
# stripe patterns), so its checkpoint is shipped; gpu: sized for one GPU (not measured here).
CLIP_SIZES: dict[str, CLIPSize] = {
    "ci": CLIPSize(image_size=64, patch_size=16, vision_width=64, vision_layers=2, vision_heads=2,
                   text_width=64, text_layers=2, text_heads=2, embed_dim=64, batch_size=32, lr=2e-3,
                   n_train=512, n_test=128, render_size=(64, 48)),
    "cpu": CLIPSize(image_size=96, patch_size=8, vision_width=128, vision_layers=3, vision_heads=4,
                    text_width=96, text_layers=3, text_heads=4, embed_dim=128, batch_size=64, lr=1e-3,
                    n_train=3000, n_test=400, render_size=(96, 72)),
    "gpu": CLIPSize(image_size=128, patch_size=8, vision_width=384, vision_layers=6, vision_heads=6,
                    text_width=256, text_layers=4, text_heads=4, embed_dim=256, batch_size=256, lr=5e-4,
                    n_train=20000, n_test=2000, render_size=(128, 96)),
}


def clip_size(profile: Profile | str | None = None) -> CLIPSize:
    """The :class:`CLIPSize` of a profile (unknown profiles get the size of the closest image size)."""
    prof = resolve_profile(profile)
    if prof.name in CLIP_SIZES:
        return CLIP_SIZES[prof.name]
    by_size = {"ci": 64, "cpu": 128, "gpu": 256}
    name = min(by_size, key=lambda n: abs(by_size[n] - prof.height))
    return CLIP_SIZES[name]


def build_config(size: CLIPSize):
    """A ``transformers.CLIPConfig`` for our small CLIP (context 77, the real 49,408-token vocabulary)."""
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(vocab_size=VOCAB_SIZE, hidden_size=size.text_width, intermediate_size=4 * size.text_width,
                          num_hidden_layers=size.text_layers, num_attention_heads=size.text_heads,
                          max_position_embeddings=CONTEXT_LENGTH, projection_dim=size.embed_dim,
                          bos_token_id=VOCAB_SIZE - 2, eos_token_id=VOCAB_SIZE - 1, pad_token_id=VOCAB_SIZE - 1)
    vision = CLIPVisionConfig(hidden_size=size.vision_width, intermediate_size=4 * size.vision_width,
                              num_hidden_layers=size.vision_layers, num_attention_heads=size.vision_heads,
                              image_size=size.image_size, patch_size=size.patch_size, projection_dim=size.embed_dim)
    return CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=size.embed_dim,
                      logit_scale_init_value=LOGIT_SCALE_INIT)


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
def to_model_images(images: Any) -> torch.Tensor:
    """Images as float ``(B, 3, H, W)`` in [-1, 1] (vtonlab's convention for model inputs).

    Accepts a float tensor ``(3, H, W)`` / ``(B, 3, H, W)`` already in [-1, 1], or uint8 arrays or
    tensors ``(H, W, 3)`` / ``(B, H, W, 3)`` (e.g. the renderer's ``cloth``), or a list of those.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is an empty list")
        return torch.cat([to_model_images(im) for im in images])
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a tensor, a numpy array or a list of them, got {type(images).__name__}")
    if images.dtype == torch.uint8:
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (H, W, 3) or (B, H, W, 3), got {tuple(images.shape)}")
        return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 (H, W, 3) or float (3, H, W) in [-1, 1], got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"float images must be (3, H, W) or (B, 3, H, W), got {tuple(images.shape)}")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"float images must lie in [-1, 1] (vtonlab's model range), got values in [{lo:.3g}, {hi:.3g}]; "
                         "convert [0, 1] images with x * 2 - 1")
    return images


def preprocess(images: torch.Tensor, image_size: int, mean: Sequence[float] = OPENAI_CLIP_MEAN,
               std: Sequence[float] = OPENAI_CLIP_STD, fit: str = "pad") -> torch.Tensor:
    """CLIP's input normalisation: ``(B, 3, H, W)`` in [-1, 1] -> ``(B, 3, S, S)`` standardised pixels.

    ``fit="pad"`` pads the short side with white (garments are photographed on white) and resizes
    the square, so no part of a tall garment is cut off; ``fit="crop"`` resizes the short side to
    ``S`` and centre-crops, as OpenAI's CLIP preprocessing does. Then ``(x - mean) / std`` on [0, 1]
    values with CLIP's per-channel mean and std.
    """
    if fit not in _FITS:
        raise ValueError(f"fit must be one of {_FITS}, got {fit!r}")
    x = to_model_images(images)
    _, _, h, w = x.shape
    if fit == "pad":
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        x = F.pad(x, (left, side - w - left, top, side - h - top), value=1.0)
    else:
        scale = image_size / min(h, w)
        nh, nw = max(image_size, round(h * scale)), max(image_size, round(w * scale))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True)
        top, left = (nh - image_size) // 2, (nw - image_size) // 2
        x = x[:, :, top:top + image_size, left:left + image_size]
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=True)
    x = ((x + 1) / 2).clamp(0, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------
def similarity_matrix(image_features: torch.Tensor, text_features: torch.Tensor,
                      logit_scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """``logit_scale * I @ T^T``: ``(B_img, B_txt)`` scaled cosine similarities of normalised features."""
    if image_features.ndim != 2 or text_features.ndim != 2 or image_features.shape[1] != text_features.shape[1]:
        raise ValueError(f"features must be (B, P) with the same P; got image {tuple(image_features.shape)}, "
                         f"text {tuple(text_features.shape)}")
    return logit_scale * image_features @ text_features.t()


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss (Radford et al. 2021, Fig. 3), written out.

    With L2-normalised features ``I, T`` ``(B, P)`` (row ``i`` of each is a matching pair) and the
    already exponentiated scale ``s = exp(t)``, the logits are ``L = s * I T^T`` ``(B, B)`` and

        loss = 1/2 [ -1/B sum_i log softmax_j(L)_ii  -  1/B sum_j log softmax_i(L)_jj ]

    i.e. the mean of the image->text cross-entropy (rows) and the text->image cross-entropy
    (columns), each with the diagonal as the target. Returns a scalar tensor.
    """
    if image_features.shape != text_features.shape or image_features.ndim != 2:
        raise ValueError(f"image_features and text_features must both be (B, P); got {tuple(image_features.shape)} "
                         f"and {tuple(text_features.shape)}")
    if image_features.shape[0] < 1:
        raise ValueError("contrastive_loss needs at least one pair")
    scale = torch.as_tensor(logit_scale, dtype=image_features.dtype, device=image_features.device)
    if scale.numel() != 1 or not bool(scale.detach() > 0):
        raise ValueError(f"logit_scale must be one positive number (exp of the learnable t), got {scale.detach()}")
    for name, feats in (("image_features", image_features), ("text_features", text_features)):
        norms = feats.detach().float().norm(dim=-1)
        if not torch.allclose(norms, torch.ones_like(norms), atol=1e-2):
            raise ValueError(f"{name} must be L2-normalised (row norms 1); got norms in "
                             f"[{float(norms.min()):.3g}, {float(norms.max()):.3g}]; use F.normalize(x, dim=-1)")
    logits = similarity_matrix(image_features, text_features, scale.reshape(()))
    diagonal = logits.diagonal()
    image_to_text = (logits.logsumexp(dim=1) - diagonal).mean()  # each image picks its caption among B
    text_to_image = (logits.logsumexp(dim=0) - diagonal).mean()  # each caption picks its image among B
    return (image_to_text + text_to_image) / 2


# --------------------------------------------------------------------------------------------
# Zero-shot classification and retrieval
# --------------------------------------------------------------------------------------------
# Prompt templates per attribute (CLIP, Sec. 3.1.4: "prompt engineering and ensembling"); ``{}``
# takes the class phrase (:func:`attribute_phrases`). A small CLIP knows only the words of its
# training captions, so the prompts use those words, but no prompt is itself a training caption
# (``tests/test_clip.py`` checks it): zero-shot accuracy measures whether the model tied each
# attribute word to its look, not whether it memorised sentences.
ZERO_SHOT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "category": ("a photo of {}.", "a product photo of {}.", "this is {}."),
    "colour": ("a photo of clothing in {}.", "this garment is {}.", "a product photo of a garment in {}."),
    "pattern": ("a photo of a garment with {}.", "this garment has {}.", "a product photo of clothing with {}."),
}


@torch.no_grad()
def zero_shot_classifier(model: CLIP, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Class embeddings ``(K, P)``: each class's prompts encoded, averaged, re-normalised (CLIP, Sec. 3.1.4)."""
    if not classnames:
        raise ValueError("classnames is empty")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"templates must be a non-empty list of strings with a '{{}}' slot, got {list(templates)}")
    prompts = [t.format(c) for c in classnames for t in templates]
    feats = model.text_features(prompts).view(len(classnames), len(templates), -1)
    return F.normalize(feats.mean(dim=1), dim=-1)


@dataclass
class ZeroShotResult:
    """Zero-shot accuracy of one attribute, with the chance levels to compare it with."""

    attribute: str
    classnames: list[str]
    labels: torch.Tensor  # (N,) true class index
    predictions: torch.Tensor  # (N,) predicted class index
    accuracy: float
    chance: float  # 1 / K: guessing uniformly
    majority: float  # always answering the most frequent test class

    @property
    def confusion(self) -> torch.Tensor:
        """``(K, K)`` counts: rows true class, columns predicted class."""
        k = len(self.classnames)
        return torch.bincount(self.labels * k + self.predictions, minlength=k * k).view(k, k)

    def per_class(self) -> dict[str, float]:
        """Accuracy of each class present in the test set."""
        out = {}
        for i, name in enumerate(self.classnames):
            sel = self.labels == i
            if bool(sel.any()):
                out[name] = float((self.predictions[sel] == i).float().mean())
        return out


def zero_shot_eval(model: CLIP, image_features: torch.Tensor, labels: Sequence[str], classnames: Sequence[str],
                   attribute: str = "attribute", templates: Sequence[str] | None = None,
                   phrases: Mapping[str, str] | None = None) -> ZeroShotResult:
    """Zero-shot classification of normalised image features ``(N, P)`` into ``classnames``.

    Each class is described by ``templates`` filled with its phrase (``phrases[name]``, default the
    name itself); an image gets the class whose prompt embedding has the highest cosine similarity.
    ``labels`` are the true class names (each must be one of ``classnames``).
    """
    classnames = list(classnames)
    if len(labels) != image_features.shape[0]:
        raise ValueError(f"{len(labels)} labels for {image_features.shape[0]} images")
    unknown = sorted({lab for lab in labels if lab not in classnames})
    if unknown:
        raise ValueError(f"labels {unknown} of attribute {attribute!r} are not among its classes {classnames}")
    if templates is None:
        if attribute not in ZERO_SHOT_TEMPLATES:
            raise KeyError(f"no default prompt templates for attribute {attribute!r}; "
                           f"known: {', '.join(ZERO_SHOT_TEMPLATES)} (or pass templates=)")
        templates = ZERO_SHOT_TEMPLATES[attribute]
    words = [phrases.get(c, c) if phrases else c for c in classnames]
    weights = zero_shot_classifier(model, words, templates)
    predictions = (image_features.float() @ weights.t()).argmax(dim=1)
    y = torch.tensor([classnames.index(lab) for lab in labels], dtype=torch.long)
    counts = torch.bincount(y, minlength=len(classnames))
    return ZeroShotResult(attribute=attribute, classnames=classnames, labels=y, predictions=predictions,
                          accuracy=float((predictions == y).float().mean()), chance=1.0 / len(classnames),
                          majority=float(counts.max()) / len(y))


def retrieval_recall(image_features: torch.Tensor, text_features: torch.Tensor, ks: Sequence[int] = (1, 5),
                     relevant: torch.Tensor | None = None) -> dict[str, float]:
    """Recall@k for image->text and text->image retrieval over ``N`` pairs (row ``i`` of each matches).

    ``relevant`` ``(N, N)`` bool optionally marks every (image, text) pair that counts as a hit
    (e.g. identical captions); by default only the diagonal does. Recall@k is the fraction of
    queries with a relevant item among the k most similar. Keys: ``"i2t_R@k"``, ``"t2i_R@k"``.
    """
    n = image_features.shape[0]
    if text_features.shape[0] != n:
        raise ValueError(f"{n} images but {text_features.shape[0]} texts: retrieval needs matching pairs")
    if relevant is None:
        relevant = torch.eye(n, dtype=torch.bool)
    if tuple(relevant.shape) != (n, n):
        raise ValueError(f"relevant must be ({n}, {n}), got {tuple(relevant.shape)}")
    sim = similarity_matrix(image_features.float(), text_features.float())
    relevant = relevant.to(sim.device).bool()
    out = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        kk = min(k, n)
        top_t = sim.topk(kk, dim=1).indices  # (N, k) texts per image
        top_i = sim.t().topk(kk, dim=1).indices  # (N, k) images per text
        out[f"i2t_R@{k}"] = float(relevant.gather(1, top_t).any(dim=1).float().mean())
        out[f"t2i_R@{k}"] = float(relevant.t().gather(1, top_i).any(dim=1).float().mean())
    return out


# --------------------------------------------------------------------------------------------
# Data: SynthVTON garments and captions
# --------------------------------------------------------------------------------------------
TEST_SEED_OFFSET = 10_000_000  # held-out garments are rendered from seeds >= this; training seeds are below
N_PHRASINGS = 5  # sentence frames of vtonlab.data.synth.caption_for

# Natural phrases for the attribute values, used by the extra training captions and by zero-shot
# prompts (a small CLIP knows only words it has read in its training captions).
PATTERN_PHRASES: dict[str, str] = {
    "solid": "a plain colour", "horizontal stripes": "horizontal stripes", "vertical stripes": "vertical stripes",
    "diagonal stripes": "diagonal stripes", "checks": "checks", "polka dots": "polka dots",
    "gradient": "a colour gradient", "logo": "a logo", "text": "a printed word",
}  # fmt: skip


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def caption_variants(attributes: Mapping[str, str]) -> list[str]:
    """Every training caption of one garment: the renderer's sentences plus partial descriptions.

    The renderer (:func:`vtonlab.data.synth.caption_for`) describes colour, category and pattern
    in a few sentence frames; real captions are often partial, so we add captions that name only
    the colour, only the pattern, only the category, or the colour and category.
    """
    from vtonlab.data import synth

    for key in ("category", "colour", "pattern"):
        if key not in attributes:
            raise KeyError(f"garment attributes need {key!r}; got {sorted(attributes)}")
    colour, pattern = attributes["colour"], attributes["pattern"]
    if pattern not in PATTERN_PHRASES:
        raise ValueError(f"attributes['pattern']={pattern!r} is not one of {list(PATTERN_PHRASES)}")
    noun = synth.CATEGORIES[attributes["category"]]
    pat = PATTERN_PHRASES[pattern]
    full = [synth.caption_for(attributes, k) for k in range(N_PHRASINGS)]
    plain = "plain " if pattern == "solid" else ""
    extra = [
        f"{_article(plain or colour)} {plain}{colour} {noun}",
        f"{_article(noun)} {noun} in {colour}",
        f"{_article(colour)} {colour} garment",
        f"clothing in {colour}",
        f"a garment with {pat}",
        f"{_article(noun)} {noun} with {pat}",
        f"{_article(noun)} {noun}",
    ]
    return full + extra


@dataclass
class GarmentSet:
    """Rendered garments: images, attributes and captions.

    With ``twins=True`` the garments come in pairs ``(2k, 2k + 1)``: a garment and its *twin*, the
    same garment with one attribute changed (see :func:`render_twins`).
    """

    seeds: list[int]
    cloth: torch.Tensor  # (N, H, W, 3) uint8, as rendered
    attributes: list[dict[str, str]]
    captions: list[str]  # the renderer's caption of each garment
    variants: list[list[str]]  # every training caption of each garment
    twins: bool = False

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def images(self) -> torch.Tensor:
        """``(N, 3, H, W)`` float in [-1, 1] (converted from ``cloth`` on each access)."""
        return self.cloth.permute(0, 3, 1, 2).float() / 127.5 - 1

    def labels(self, attribute: str) -> list[str]:
        """The value of ``attribute`` (category, colour, pattern, ...) for every garment."""
        missing = [s for s, a in zip(self.seeds, self.attributes) if attribute not in a]
        if missing:
            raise KeyError(f"garments {missing[:3]} have no attribute {attribute!r}")
        return [a[attribute] for a in self.attributes]


def _garment_set(rendered: list[dict], seeds: list[int], twins: bool = False) -> GarmentSet:
    cloth = torch.from_numpy(np.stack([r["cloth"] for r in rendered]))
    attrs = [dict(r["attributes"]) for r in rendered]
    return GarmentSet(seeds=seeds, cloth=cloth, attributes=attrs, captions=[r["caption"] for r in rendered],
                      variants=[caption_variants(a) for a in attrs], twins=twins)


def render_garments(seeds: Sequence[int], size: tuple[int, int]) -> GarmentSet:
    """Render in-shop garments of SynthVTON (:func:`vtonlab.data.synth.render_garment`)."""
    from vtonlab.data import synth

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty")
    return _garment_set([synth.render_garment(s, tuple(size)) for s in seeds], seeds)


# Which attribute a twin changes (pattern most often: it is the attribute a small batch of random
# garments teaches least, because colour and category already tell most garments apart).
TWIN_CHANGES: dict[str, float] = {"pattern": 0.5, "colour": 0.25, "category": 0.25}


def twin_overrides(attributes: Mapping[str, str], seed: int) -> dict[str, str]:
    """The attributes of a garment's twin: the same category, colour and pattern except one, changed.

    Rendering the same seed with these overrides keeps everything else (shape, size, fabric) identical,
    so the pair differs only in the changed attribute: a *hard negative* for the contrastive loss.
    """
    from vtonlab.data import synth

    rng = np.random.default_rng([int(seed), 77])
    which = str(rng.choice(list(TWIN_CHANGES), p=list(TWIN_CHANGES.values())))
    out = {k: attributes[k] for k in ("category", "colour", "pattern")}
    vocab = {"category": list(synth.CATEGORIES), "colour": list(synth.COLOURS), "pattern": list(synth.PATTERNS)}[which]
    out[which] = str(rng.choice([v for v in vocab if v != attributes[which]]))
    return out


def render_twins(seeds: Sequence[int], size: tuple[int, int]) -> GarmentSet:
    """Garments and their twins (:func:`twin_overrides`): items ``2k`` and ``2k + 1`` come from ``seeds[k]``."""
    from vtonlab.data import synth

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty")
    rendered, order = [], []
    for s in seeds:
        first = synth.render_garment(s, tuple(size))
        rendered += [first, synth.render_garment(s, tuple(size), **twin_overrides(first["attributes"], s))]
        order += [s, s]
    return _garment_set(rendered, order, twins=True)


def attribute_classes() -> dict[str, list[str]]:
    """The class names of each zero-shot attribute: SynthVTON's category, colour and pattern vocabularies."""
    from vtonlab.data import synth

    return {"category": list(synth.CATEGORIES), "colour": list(synth.COLOURS), "pattern": list(synth.PATTERNS)}


def attribute_phrases() -> dict[str, dict[str, str]]:
    """How zero-shot prompts name each class: category -> "a" + its noun, colour -> itself, pattern -> its phrase."""
    from vtonlab.data import synth

    return {"category": {c: f"{_article(n)} {n}" for c, n in synth.CATEGORIES.items()},
            "colour": {c: c for c in synth.COLOURS}, "pattern": dict(PATTERN_PHRASES)}


def evaluate(model: CLIP, garments: GarmentSet, *, batch_size: int = 64) -> dict[str, Any]:
    """Zero-shot accuracy (category, colour, pattern) and retrieval recall on held-out garments.

    Returns a flat dict of floats: ``zeroshot_<attr>_acc``, ``zeroshot_<attr>_chance``,
    ``zeroshot_<attr>_majority``, ``i2t_R@1`` ... (retrieval with the renderer's captions; a caption
    shared by several garments counts as a hit for each of them), ``test_loss`` (contrastive loss
    over batches of ``batch_size`` held-out pairs at the learned temperature).
    """
    feats = model.image_features(garments.images, batch_size=batch_size)
    out: dict[str, Any] = {}
    classes, phrases = attribute_classes(), attribute_phrases()
    for attr in ("category", "colour", "pattern"):
        res = zero_shot_eval(model, feats, garments.labels(attr), classes[attr], attribute=attr,
                             phrases=phrases[attr])
        out[f"zeroshot_{attr}_acc"] = res.accuracy
        out[f"zeroshot_{attr}_chance"] = res.chance
        out[f"zeroshot_{attr}_majority"] = res.majority
    text = model.text_features(garments.captions)
    caps = garments.captions
    relevant = torch.tensor([[a == b for b in caps] for a in caps], dtype=torch.bool)
    out.update(retrieval_recall(feats, text, ks=(1, 5), relevant=relevant))
    with torch.no_grad():
        scale = model.logit_scale().detach().float().cpu()
        losses = [float(contrastive_loss(feats[i:i + batch_size], text[i:i + batch_size], scale))
                  for i in range(0, len(caps) - batch_size + 1, batch_size)] or [float(contrastive_loss(feats, text, scale))]
    out["test_loss"] = float(np.mean(losses))
    out["test_loss_batch"] = min(batch_size, len(caps))
    out["logit_scale"] = float(scale)
    out["n_test_garments"] = len(garments)
    return out


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def train_config(profile: Profile | str | None = None) -> dict:
    """The JSON config that fully determines our CLIP's weights for a profile (see ``load_or_train``)."""
    from vtonlab.data import synth

    prof = resolve_profile(profile)
    return {"size": clip_size(prof).to_dict(), "steps": prof.steps_for("clip"), "seed": 0, "warmup": 0.05,
            "weight_decay": 0.1, "betas": [0.9, 0.98], "eps": 1e-6, "grad_clip": 1.0, "captions": "variants-v1", "twins": True,
            "twin_captions": "distinguishing",
            "renderer_version": synth.RENDERER_VERSION}


def _size_from_config(config: Mapping[str, Any]) -> CLIPSize:
    try:
        d = dict(config["size"])
        d["render_size"] = tuple(d["render_size"])
        return CLIPSize(**d)
    except (KeyError, TypeError) as err:
        raise ValueError(f"config['size'] must hold every CLIPSize field ({', '.join(f.name for f in dataclasses.fields(CLIPSize))}): "
                         f"{err}") from err


def train_split(config: Mapping[str, Any]) -> tuple[GarmentSet, GarmentSet]:
    """The training garments (seeds ``0..n_train-1``, with their twins when ``config["twins"]``) and the
    held-out garments (seeds from ``TEST_SEED_OFFSET``, no twins)."""
    size = _size_from_config(config)
    render = render_twins if config.get("twins", False) else render_garments
    train_set = render(range(size.n_train), size.render_size)
    test_set = render_garments(range(TEST_SEED_OFFSET, TEST_SEED_OFFSET + size.n_test), size.render_size)
    return train_set, test_set


def distinguishing_captions(garments: GarmentSet) -> list[list[str]]:
    """For a twin set: the caption variants of each garment that its twin does not share.

    A twin differs in one attribute; a caption that does not name it (say "a red t-shirt" when the
    pattern changed) fits both twins, so the pair teaches nothing. These are the captions that do.
    """
    if not garments.twins:
        raise ValueError("distinguishing captions need a twin set (render_twins)")
    out = []
    for i, own in enumerate(garments.variants):
        other = set(garments.variants[i ^ 1]) if (i ^ 1) < len(garments) else set()
        out.append([c for c in own if c not in other] or list(own))
    return out


def make_batch_fn(model: CLIP, garments: GarmentSet, batch_size: int, *,
                  twin_captions: str = "any") -> Callable[[int, torch.Generator], dict]:
    """``batch_fn(step, generator)``: a random batch of garments, each with one random caption variant.

    From a twin set (:func:`render_twins`) the batch is made of whole pairs, so each garment's twin
    is among its negatives. ``twin_captions="distinguishing"`` draws each twin's caption only from
    those that name the attribute the pair differs in (:func:`distinguishing_captions`); ``"any"``
    draws from all of its captions.

    Images are preprocessed once for ``model`` (``pixels`` ``(B, 3, S, S)``); captions are tokenized
    per batch (``input_ids``, ``attention_mask`` ``(B, L)``).
    """
    if batch_size > len(garments):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(garments)} training garments")
    # pad + resize once, kept as uint8 (N, 3, S, S); mean/std are applied per batch
    size = model.image_size
    square = [((preprocess(garments.cloth[i:i + 256].permute(0, 3, 1, 2).float() / 127.5 - 1, size, (0.0,) * 3,
                           (1.0,) * 3, model.fit) * 255).round().clamp(0, 255).to(torch.uint8))
              for i in range(0, len(garments), 256)]
    pixels = torch.cat(square)
    tok = model.tokenizer
    if twin_captions not in ("any", "distinguishing"):
        raise ValueError(f"twin_captions must be 'any' or 'distinguishing', got {twin_captions!r}")
    captions_of = distinguishing_captions(garments) if twin_captions == "distinguishing" and garments.twins else garments.variants

    def batch_fn(step: int, generator: torch.Generator) -> dict:
        if garments.twins:  # whole pairs: every garment meets its twin in the batch
            pairs = torch.randperm(len(garments) // 2, generator=generator)[:batch_size // 2]
            idx = torch.stack([2 * pairs, 2 * pairs + 1], dim=1).flatten()
            if batch_size % 2:
                idx = torch.cat([idx, torch.randint(0, len(garments), (1,), generator=generator)])
        else:
            idx = torch.randperm(len(garments), generator=generator)[:batch_size]
        choice = torch.randint(0, 1 << 30, (batch_size,), generator=generator)
        captions = [captions_of[i][int(c) % len(captions_of[i])] for i, c in zip(idx.tolist(), choice)]
        ids, mask = tokenize(captions, tok, context_length=model.context_length)
        x = pixels[idx].float() / 127.5 - 1
        return {"pixels": preprocess(x, size, model.image_mean, model.image_std, model.fit), "input_ids": ids,
                "attention_mask": mask}

    return batch_fn


def clip_step(ctx, batch: Mapping[str, torch.Tensor]) -> dict:
    """One step of CLIP training: encode the batch, symmetric InfoNCE, optimise."""
    out = ctx.modules["clip"](batch["pixels"], batch["input_ids"], batch["attention_mask"], preprocessed=True)
    loss = contrastive_loss(out.image_features, out.text_features, out.logit_scale)
    ctx.optimize(loss, "clip")
    return {"loss": loss, "logit_scale": out.logit_scale.detach()}


def _param_groups(model: CLIP, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on biases, norms, embeddings or the temperature)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "embedding" in name or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(config: Mapping[str, Any], *, garments: GarmentSet | None = None, checkpoint_dir=None,
          checkpoint_every: int | None = None, progress: bool = True, profile: Profile | None = None):
    """Train our CLIP from scratch on SynthVTON garments; returns ``(model, history)``.

    AdamW (betas and eps of the CLIP paper), linear warm-up then cosine decay, gradient clipping,
    symmetric InfoNCE with the learnable, clamped temperature.
    """
    from vtonlab.train import Trainer

    size = _size_from_config(config)
    steps = int(config["steps"])
    torch.manual_seed(int(config["seed"]))
    model = CLIP.from_size(size)
    if garments is None:
        garments = train_split(config)[0]
    batch_fn = make_batch_fn(model, garments, size.batch_size, twin_captions=str(config.get("twin_captions", "any")))
    # fused: one kernel for all parameters; ~20x faster than the per-tensor loop on a CPU, where the
    # update of the 49,408-row token embedding would otherwise dominate a step
    fused = torch.cuda.is_available() or not torch.backends.mps.is_available()
    opt = torch.optim.AdamW(_param_groups(model, float(config["weight_decay"])), lr=size.lr,
                            betas=tuple(config["betas"]), eps=float(config["eps"]), fused=fused)
    warm = max(1, int(float(config["warmup"]) * steps))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, steps - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    trainer = Trainer({"clip": model}, {"clip": opt}, clip_step, batch_fn, max_steps=steps,
                      schedulers={"clip": sched}, seed=int(config["seed"]), grad_clip=float(config["grad_clip"]),
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, progress=progress,
                      desc="CLIP", profile=profile)
    history = trainer.fit()
    return trainer.unwrapped()["clip"].eval(), history


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False) -> tuple[CLIP, Any]:
    """Our CLIP for a profile, loaded from a shipped/cached checkpoint or trained: ``(model, checkpoint)``.

    The checkpoint's metrics hold the held-out zero-shot accuracies and retrieval recall of
    :func:`evaluate`.
    """
    from vtonlab.checkpoints import load_or_train

    prof = resolve_profile(profile)
    config = train_config(prof)

    def train_fn():
        train_set, test_set = train_split(config)
        model, history = train(config, garments=train_set, profile=prof)
        return {"clip": model}, evaluate(model, test_set), history

    ckpt = load_or_train("clip", config, train_fn, profile=prof, force_train=force_train)
    model = CLIP.from_size(_size_from_config(config))
    ckpt.load_into(model, prefix="clip")
    return model.eval(), ckpt


PRETRAINED_ENV = "VTONLAB_CLIP_PATH"


def load(profile: Profile | str | None = None, *, path: str | os.PathLike | None = None) -> tuple[CLIP, str]:
    """The CLIP every notebook should use: ``(model, description)``.

    A real pretrained CLIP when ``path`` (or ``$VTONLAB_CLIP_PATH``) names a local transformers CLIP
    directory (:meth:`CLIP.from_pretrained`), else our CLIP trained on SynthVTON for the profile
    (:func:`get_trained`). ``description`` says which, for the labels of every number it produces.
    """
    chosen = path if path is not None else os.environ.get(PRETRAINED_ENV, "").strip() or None
    if chosen is not None:
        model = CLIP.from_pretrained(chosen).eval()
        return model, f"pretrained CLIP from {chosen}"
    prof = resolve_profile(profile)
    model, _ = get_trained(prof)
    return model, f"vtonlab CLIP trained from scratch on SynthVTON garments (profile {prof.name})"
