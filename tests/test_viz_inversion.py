"""vtonlab.viz.inversion: the figures and the widget's render function of notebook 11."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from vtonlab.viz import inversion as V  # noqa: E402

G, N, H, W = 4, 6, 16, 12
LABELS = ("pseudo-words", "caption", "empty prompt")


def _images(n=G, lo=-1.0):
    g = torch.Generator().manual_seed(n)
    return torch.rand(n, 3, H, W, generator=g) * (1 - lo) + lo


def _browse():
    return {"cloth": _images(), "masked": _images(), "gt": _images(), "captions": [f"a red shirt {i}" for i in range(G)],
            "tryons": {label: _images(lo=0.0) for label in LABELS},
            "words": [[f"w{i}{j}" for j in range(N)] for i in range(G)], "similarity": torch.rand(G, N)}


def test_prompt_tokens_figure_colours_the_placeholders():
    tokens = ["<|startoftext|>", "a", "photo", "$", "$", "<|endoftext|>", "<|endoftext|>"]
    fig = V.prompt_tokens_figure(tokens, [False, False, False, True, True, False, False], n_show=6)
    assert len(fig.axes) == 1
    faces = [p.get_facecolor() for p in fig.axes[0].patches]
    assert len(faces) == 6                                                   # n_show boxes
    orange, blue, grey = (to_rgba(V.TOKEN_COLOURS[k]) for k in ("placeholder", "word", "special"))
    assert [np.allclose(f, orange) for f in faces] == [False, False, False, True, True, False]
    assert np.allclose(faces[1], blue) and np.allclose(faces[0], grey) and np.allclose(faces[5], grey)
    assert "first 6 of 7" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="placeholder"):
        V.prompt_tokens_figure(tokens, [True])
    with pytest.raises(ValueError, match="n_show"):
        V.prompt_tokens_figure(tokens, [False] * 7, n_show=8)


def test_nearest_tokens_figure_has_an_image_and_a_text_panel_per_garment():
    b = _browse()
    fig = V.nearest_tokens_figure(b["cloth"], b["captions"], b["words"], b["similarity"], title="t")
    assert len(fig.axes) == 2 * G
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert texts[0].startswith("caption: a red shirt 0") and len(texts) == 1 + N
    assert f"v1  -> w00 ({b['similarity'][0, 0]:.2f})" == texts[1]
    with pytest.raises(ValueError, match="similarity"):
        V.nearest_tokens_figure(b["cloth"], b["captions"], b["words"], b["similarity"][:, :2])
    with pytest.raises(ValueError, match="captions"):
        V.nearest_tokens_figure(b["cloth"], b["captions"][:2], b["words"], b["similarity"])


def test_retrieval_figure_marks_targets_and_counts_top1_in_the_titles():
    sim = torch.eye(3) + 0.1
    wrong = sim[:, [1, 2, 0]]                                                # every query retrieves another garment
    fig = V.retrieval_figure({"captions": sim, "pseudo-words": wrong})
    assert len(fig.axes) == 2 + 1                                            # two heat maps and the colour bar
    assert fig.axes[0].get_title() == "captions: top-1 3/3" and fig.axes[1].get_title() == "pseudo-words: top-1 0/3"
    assert len(fig.axes[0].patches) == 3                                     # one target box per query
    with pytest.raises(ValueError, match="similarities"):
        V.retrieval_figure({"a": sim, "b": torch.eye(2)})
    with pytest.raises(ValueError, match="targets"):
        V.retrieval_figure({"a": sim}, targets=[0, 1, 3])


def test_tryon_comparison_figure_has_one_panel_per_person_and_column():
    b = _browse()
    scores = {"caption": torch.tensor([1.0, 2.0, 3.0, 4.5])}
    fig = V.tryon_comparison_figure(b["masked"], b["cloth"], b["gt"], b["tryons"], indices=[0, -1], scores=scores)
    assert len(fig.axes) == 2 * (3 + len(LABELS))
    assert fig.axes[4].get_title() == "caption\ndE 1.0"                      # row 0, the caption column
    assert fig.axes[6 + 4].get_title() == "dE 4.5"                           # row 1 is person 3 (index -1)
    with pytest.raises(IndexError, match="index must be in \\[0, 3\\]"):
        V.tryon_comparison_figure(b["masked"], b["cloth"], b["gt"], b["tryons"], indices=[4])
    with pytest.raises(ValueError, match="tryons\\['caption'\\]"):
        V.tryon_comparison_figure(b["masked"], b["cloth"], b["gt"], {**b["tryons"], "caption": _images(3)})
    with pytest.raises(ValueError, match="scores\\['other'\\]"):
        V.tryon_comparison_figure(b["masked"], b["cloth"], b["gt"], b["tryons"], scores={"other": torch.zeros(G)})


@pytest.mark.parametrize("index", [0, G - 1, -1, -G])
def test_render_inversion_browser_at_extreme_indices(index):
    b = _browse()
    fig = V.render_inversion_browser(b, index, scores={"pseudo-words": torch.arange(G).float()})
    assert len(fig.axes) == 4 + len(LABELS)
    i = index % G
    assert fig._suptitle.get_text() == f"garment {i}"
    text = fig.axes[0].texts[0].get_text()
    assert f"a red shirt {i}" in text and f"w{i}{N - 1}" in text
    assert fig.axes[4].get_title() == f"pseudo-words\ndE {float(i):.1f}"
    shown = fig.axes[1].images[0].get_array()
    assert np.allclose(shown, ((b["cloth"][i] + 1) / 2).permute(1, 2, 0).numpy(), atol=1e-6)


def test_render_inversion_browser_bad_input():
    b = _browse()
    with pytest.raises(IndexError, match="index must be in \\[0, 3\\]"):
        V.render_inversion_browser(b, G)
    with pytest.raises(KeyError, match="'words'"):
        V.render_inversion_browser({k: v for k, v in b.items() if k != "words"}, 0)
    with pytest.raises(ValueError, match="browse\\['masked'\\]"):
        V.render_inversion_browser({**b, "masked": _images(G - 1)}, 0)
    with pytest.raises(ValueError, match="browse\\['words'\\]\\[1\\]"):
        V.render_inversion_browser({**b, "words": [w[:2] if i == 1 else w for i, w in enumerate(b["words"])]}, 1)
