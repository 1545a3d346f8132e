"""CLIP (Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", 2021).

Everything the course needs from CLIP, one module per job (every name is also available here as
``vtonlab.clip.<name>``):

- :mod:`vtonlab.clip.bpe`: :func:`tokenizer`, the real CLIP byte-pair-encoding tokenizer (49,408
  tokens, context 77) as a ``transformers.CLIPTokenizer``, built offline from the vocabulary file
  shipped with open_clip, and :func:`tokenize`;
- :mod:`vtonlab.clip.config`: :class:`CLIPSize`, the sizes of our small CLIP per profile, and the
  ``transformers.CLIPConfig`` built from them;
- :mod:`vtonlab.clip.images`: image preprocessing (:func:`preprocess`, :func:`to_model_images`);
- :mod:`vtonlab.clip.model`: :class:`CLIP`, a ``transformers.CLIPModel`` (text transformer + vision
  transformer + linear projections + a learnable temperature) with image preprocessing, per-token
  text hidden states and per-patch image features, so LaDI-VTON's text encoder and textual-inversion
  adapter can reuse it; :meth:`CLIP.from_pretrained` loads real OpenAI / LAION CLIP weights from a
  local directory;
- :mod:`vtonlab.clip.loss`: :func:`contrastive_loss`, CLIP's symmetric InfoNCE loss, written by
  hand (paper, Fig. 3);
- :mod:`vtonlab.clip.evaluation`: zero-shot classification with prompt templates
  (:func:`zero_shot_eval`) and retrieval recall (:func:`retrieval_recall`);
- :mod:`vtonlab.clip.training`: training on SynthVTON garments and captions (:func:`train`,
  :func:`get_trained`), through the shared :class:`vtonlab.train.Trainer` and
  :func:`vtonlab.checkpoints.load_or_train`, and :func:`load`, the CLIP every notebook uses.

The garments and their captions (caption variants, twin pairs) live in :mod:`vtonlab.data.captions`
and are re-exported here.

Fidelity (paper / vtonlab; there is no official training code, and our CLIP is trained from scratch):

| point | paper | vtonlab |
|---|---|---|
| loss | symmetric InfoNCE over the batch similarity matrix | same (:func:`contrastive_loss`) |
| temperature | learnable logit scale, init log(1/0.07), clamped at 100 | same |
| tokenizer | byte-level BPE, 49,408 tokens, context 77 | the same vocabulary and merges (open_clip's file) |
| towers, data | ViT or ResNet and a text transformer; web image-text pairs | tiny towers (:class:`CLIPSize`); SynthVTON garments |
| weight decay, twins | not checked here | ours: weight decay 0.1; twin pairs, captions naming the difference |
"""

from vtonlab.clip.bpe import (
    BOS_TOKEN,
    BPE_FILE,
    CONTEXT_LENGTH,
    EOS_TOKEN,
    N_MERGES,
    VOCAB_SIZE,
    bpe_vocab_path,
    build_vocab,
    byte_alphabet,
    read_bpe_merges,
    tokenize,
    tokenizer,
)
from vtonlab.clip.config import CLIP_SIZES, LOGIT_SCALE_INIT, LOGIT_SCALE_MAX, CLIPSize, build_config, clip_size
from vtonlab.clip.evaluation import (
    ZERO_SHOT_TEMPLATES,
    ZeroShotResult,
    evaluate,
    retrieval_recall,
    zero_shot_classifier,
    zero_shot_eval,
)
from vtonlab.clip.images import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, preprocess, to_model_images
from vtonlab.clip.loss import contrastive_loss, similarity_matrix
from vtonlab.clip.model import CLIP, ContrastiveOutput, ImageEncoding, TextEncoding
from vtonlab.clip.training import (
    PRETRAINED_ENV,
    TEST_SEED_OFFSET,
    CLIPTrainConfig,
    clip_step,
    get_trained,
    load,
    make_batch_fn,
    train,
    train_config,
    train_split,
)
from vtonlab.data.captions import (
    N_PHRASINGS,
    PATTERN_PHRASES,
    TWIN_CHANGES,
    GarmentSet,
    attribute_classes,
    attribute_phrases,
    caption_variants,
    distinguishing_captions,
    render_garments,
    render_twins,
    twin_overrides,
)

__all__ = [
    "BOS_TOKEN", "BPE_FILE", "CLIP", "CLIPSize", "CLIPTrainConfig", "CLIP_SIZES", "CONTEXT_LENGTH", "ContrastiveOutput", "EOS_TOKEN",
    "GarmentSet", "ImageEncoding", "LOGIT_SCALE_INIT", "LOGIT_SCALE_MAX", "N_MERGES", "N_PHRASINGS", "OPENAI_CLIP_MEAN",
    "OPENAI_CLIP_STD", "PATTERN_PHRASES", "PRETRAINED_ENV", "TEST_SEED_OFFSET", "TWIN_CHANGES", "TextEncoding",
    "VOCAB_SIZE", "ZERO_SHOT_TEMPLATES", "ZeroShotResult", "attribute_classes", "attribute_phrases", "bpe_vocab_path",
    "build_config", "build_vocab", "byte_alphabet", "caption_variants", "clip_size", "clip_step", "contrastive_loss",
    "distinguishing_captions", "evaluate", "get_trained", "load", "make_batch_fn", "preprocess", "read_bpe_merges",
    "render_garments", "render_twins", "retrieval_recall", "similarity_matrix", "to_model_images", "tokenize",
    "tokenizer", "train", "train_config", "train_split", "twin_overrides", "zero_shot_classifier", "zero_shot_eval",
]  # fmt: skip
