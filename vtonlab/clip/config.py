"""The sizes of our small CLIP per profile and the ``transformers.CLIPConfig`` built from them.

:class:`CLIPSize` holds the architecture (two transformers and the joint embedding size of Radford
et al. 2021, Sec. 2.4) and the training sizes of one profile; the learnable temperature starts at
0.07 and the logit scale is clamped at 100 (Sec. 2.5).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from vtonlab.clip.bpe import CONTEXT_LENGTH, VOCAB_SIZE
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

LOGIT_SCALE_INIT = math.log(1 / 0.07)  # temperature 0.07 (paper, Sec. 2.5)
LOGIT_SCALE_MAX = 100.0  # "clipped to prevent scaling the logits by more than 100"


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
