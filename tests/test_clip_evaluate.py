"""``vtonlab.clip.evaluate`` on a stub CLIP whose embeddings make a known number of answers right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vtonlab.clip as clip

N = 12
ATTRS = ("category", "colour", "pattern")
RIGHT = {"category": 7, "colour": 4, "pattern": 10}  # zero-shot: the first k garments are classified right
# Retrieval similarities S[i, j] (image i, caption j): images 0-4 rank their caption first; images 5-11
# rank caption p(i) first and their own second (5-8) or last (9-11); image 5 likes caption 0 best of all,
# so caption 0 ranks image 5 first and its own image second.
WRONG = list(range(5, N))
P = {i: WRONG[(k + 1) % len(WRONG)] for k, i in enumerate(WRONG)}
EXPECTED_RECALL = {"i2t_R@1": 5 / N, "i2t_R@5": 9 / N, "t2i_R@1": 4 / N, "t2i_R@5": 9 / N}


def _similarities() -> np.ndarray:
    i, j = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    s = 0.01 + 0.29 * ((7 * i + 3 * j) % 13) / 13  # distinct small values below every planted one
    for a in range(5):
        s[a, a] = 1.0
    for a in WRONG:
        s[a, P[a]] = 1.0
        s[a, a] = 0.9 if a <= 8 else -0.5
    s[5, 0] = 1.1
    return s


class StubGarments:
    """What ``evaluate`` reads from a garment set: images, labels per attribute, captions."""

    def __init__(self):
        self.classes = clip.attribute_classes()
        self.images = torch.arange(N, dtype=torch.float32).view(N, 1, 1, 1)  # the stub model reads the index
        self.captions = [f"caption number {i}" for i in range(N)]

    def __len__(self):
        return N

    def true_index(self, attr: str, i: int) -> int:
        return i % len(self.classes[attr])

    def labels(self, attr: str) -> list[str]:
        return [self.classes[attr][self.true_index(attr, i)] for i in range(N)]


class StubCLIP:
    """Image i: a one-hot "answer" per attribute block, then row i of S; texts: one-hot per class or caption."""

    def __init__(self, garments: StubGarments, scale: float = 10.0):
        self.g, self.scale = garments, scale
        self.offsets, off = {}, 0
        for attr in ATTRS:
            self.offsets[attr] = off
            off += len(garments.classes[attr])
        self.caption_offset = off
        self.dim = off + N + 1  # + a slack dimension that gives every image vector the same norm
        self.prompts = {}
        phrases = clip.attribute_phrases()
        for attr in ATTRS:
            for k, name in enumerate(garments.classes[attr]):
                for template in clip.ZERO_SHOT_TEMPLATES[attr]:
                    self.prompts[template.format(phrases[attr].get(name, name))] = self.offsets[attr] + k
        for j, cap in enumerate(garments.captions):
            self.prompts[cap] = self.caption_offset + j
        s = _similarities()
        rows = []
        for i in range(N):
            v = torch.zeros(self.dim, dtype=torch.float64)
            for attr in ATTRS:
                k = garments.true_index(attr, i)
                answer = k if i < RIGHT[attr] else (k + 1) % len(garments.classes[attr])
                v[self.offsets[attr] + answer] = 1.0
            v[self.caption_offset:self.caption_offset + N] = torch.from_numpy(s[i])
            rows.append(v)
        norm2 = max(float(v @ v) for v in rows) + 1.0
        for v in rows:
            v[-1] = (norm2 - float(v @ v)) ** 0.5
        self.norm = norm2**0.5
        self.features = torch.stack(rows).float() / self.norm

    def image_features(self, images, batch_size=64):
        return self.features[images.view(-1).long()]

    def text_features(self, texts, batch_size=64):
        unknown = [t for t in texts if t not in self.prompts]
        if unknown:
            raise KeyError(f"stub CLIP has no embedding for {unknown[:3]}")
        out = torch.zeros(len(texts), self.dim)
        out[torch.arange(len(texts)), torch.tensor([self.prompts[t] for t in texts])] = 1.0
        return out

    def logit_scale(self):
        return torch.tensor(self.scale)


def test_evaluate_reports_the_planted_accuracies_and_recalls():
    garments = StubGarments()
    model = StubCLIP(garments)
    out = clip.evaluate(model, garments)
    for attr in ATTRS:
        k = len(garments.classes[attr])
        counts = np.bincount([garments.true_index(attr, i) for i in range(N)], minlength=k)
        assert out[f"zeroshot_{attr}_acc"] == pytest.approx(RIGHT[attr] / N, abs=1e-7), attr
        assert out[f"zeroshot_{attr}_chance"] == pytest.approx(1 / k)
        assert out[f"zeroshot_{attr}_majority"] == pytest.approx(counts.max() / N)
    for key, value in EXPECTED_RECALL.items():
        assert out[key] == pytest.approx(value, abs=1e-7), key
    # the contrastive loss of the one batch (12 < 64), written out: logits = scale * S / |image vector|
    logits = model.scale * _similarities() / model.norm
    lse_rows = np.log(np.exp(logits).sum(1))
    lse_cols = np.log(np.exp(logits).sum(0))
    expected = ((lse_rows - np.diag(logits)).mean() + (lse_cols - np.diag(logits)).mean()) / 2
    assert out["test_loss"] == pytest.approx(expected, rel=1e-5)
    assert (out["test_loss_batch"], out["n_test_garments"]) == (N, N)
    assert out["logit_scale"] == pytest.approx(10.0)


def test_shared_captions_count_as_hits_for_every_garment_that_has_them():
    # Caption 9 made identical to caption 10: text 9's column becomes text 10's. Image 9's best caption
    # is then one of the two equal ones (a hit either way), image 8 (whose best was caption 9) now ranks
    # its own first; caption 10's best image is image 9 (S[9, 10] = 1), a hit only because image 9 has the
    # same caption. Counting only the diagonal would give t2i_R@1 = 5 / 12.
    garments = StubGarments()
    model = StubCLIP(garments)
    garments.captions[9] = garments.captions[10]
    out = clip.evaluate(model, garments)
    assert out["i2t_R@1"] == pytest.approx(7 / N, abs=1e-7)
    assert out["t2i_R@1"] == pytest.approx(6 / N, abs=1e-7)
