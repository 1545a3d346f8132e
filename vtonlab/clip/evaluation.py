"""Zero-shot classification and retrieval, the evaluations of Radford et al. 2021 (Sec. 3.1, 3.1.4).

Class embeddings from prompt templates averaged over an ensemble (Sec. 3.1.4), zero-shot accuracy
with its chance and majority levels (:func:`zero_shot_eval`), image-to-text and text-to-image
recall@k (:func:`retrieval_recall`), and :func:`evaluate`, which runs them all on held-out SynthVTON
garments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vtonlab.clip.loss import contrastive_loss, similarity_matrix
from vtonlab.clip.model import CLIP
from vtonlab.data.captions import GarmentSet, attribute_classes, attribute_phrases

# Prompt templates per attribute (CLIP, Sec. 3.1.4: "prompt engineering and ensembling"); ``{}``
# takes the class phrase (:func:`vtonlab.data.captions.attribute_phrases`). A small CLIP knows only the words of its
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
