"""SynthVTON garments with their captions: the image-text pairs CLIP is trained and evaluated on.

:func:`caption_variants` gives every caption of a garment (the renderer's sentences and partial
descriptions); :func:`render_garments` renders a :class:`GarmentSet`; :func:`render_twins` renders
each garment with a *twin* that differs in one attribute, a hard negative for the contrastive loss
of Radford et al. 2021 (Fig. 3), and :func:`distinguishing_captions` picks the captions that tell
the twins apart. :func:`attribute_classes` and :func:`attribute_phrases` name the classes of the
zero-shot prompts (Sec. 3.1.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

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
