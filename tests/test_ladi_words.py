"""vtonlab.ladi.words: nearest vocabulary tokens, retrieval ranks and metrics, the prompt comparison (notebook 11)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from vtonlab import clip as C
from vtonlab.data.captions import caption_variants
from vtonlab.data.labels import CIHP
from vtonlab.ladi import adapter as A
from vtonlab.ladi import words as Wd
from vtonlab.metrics import LPIPSMetric

TINY_CLIP = C.CLIPSize(image_size=16, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                       text_layers=2, text_heads=2, embed_dim=16, batch_size=8, lr=1e-3, n_train=16, n_test=8,
                       render_size=(32, 24))


@pytest.fixture(scope="module")
def tiny_clip() -> C.CLIP:
    torch.manual_seed(0)
    return C.CLIP.from_size(TINY_CLIP).eval()


# ----------------------------------------------------------------------------- nearest tokens
def test_a_pseudo_word_equal_to_a_token_embedding_has_that_token_first():
    g = torch.Generator().manual_seed(0)
    table = torch.randn(50, 8, generator=g)
    words = torch.stack([3.0 * table[17], table[4] + 1e-3 * torch.randn(8, generator=g)])[None]  # (1, 2, 8)
    out = Wd.nearest_tokens(words, table, k=3)
    assert out.ids.shape == (1, 2, 3) and out.similarity.shape == (1, 2, 3)
    assert out.ids[0, :, 0].tolist() == [17, 4]
    assert out.similarity[0, 0, 0].item() == pytest.approx(1.0, abs=1e-6)       # cosine: the scale does not matter
    assert bool((out.similarity[..., :-1] >= out.similarity[..., 1:]).all())      # most similar first
    manual = torch.nn.functional.cosine_similarity(words[0, 1][None], table, dim=-1)
    assert out.ids[0, 1].tolist() == manual.topk(3).indices.tolist()


def test_candidates_restrict_the_search_and_ids_stay_vocabulary_ids():
    table = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    word = 2.0 * table[9]
    inside = Wd.nearest_tokens(word, table, k=2, candidates=torch.tensor([5, 2, 9]))
    assert inside.ids[0].item() == 9 and set(inside.ids.tolist()) <= {5, 2, 9}
    outside = Wd.nearest_tokens(word, table, k=1, candidates=torch.tensor([5, 2]))
    assert outside.ids.item() in (5, 2)


def test_nearest_tokens_bad_input_names_the_argument():
    table = torch.randn(10, 4)
    with pytest.raises(ValueError, match="words"):
        Wd.nearest_tokens(torch.randn(2, 5), table)
    with pytest.raises(ValueError, match="k: expected an int in \\[1, 3\\]"):
        Wd.nearest_tokens(torch.randn(4), table, k=4, candidates=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="candidates"):
        Wd.nearest_tokens(torch.randn(4), table, candidates=torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="candidates: expected distinct"):
        Wd.nearest_tokens(torch.randn(4), table, candidates=torch.tensor([3, 3]))
    with pytest.raises(ValueError, match="table"):
        Wd.nearest_tokens(torch.randn(4), torch.randn(10))


def test_caption_hit_matrix_counts_the_nearest_tokens_found_in_each_caption():
    nearest = torch.tensor([[[1, 2], [3, 3]], [[7, 8], [9, 1]]])  # (G=2, N=2, k=2)
    hits = Wd.caption_hit_matrix(nearest, [torch.tensor([1, 2, 3]), torch.tensor([7, 1])])
    assert torch.allclose(hits, torch.tensor([[1.0, 0.25], [0.25, 0.5]]))
    with pytest.raises(ValueError, match="caption_ids"):
        Wd.caption_hit_matrix(nearest, [torch.tensor([1])])


# ----------------------------------------------------------------------------- vocabulary
def test_token_strings_and_caption_token_ids_follow_the_bpe_tokenizer():
    tok = C.tokenizer()
    ids = tok("a photo of fading", add_special_tokens=False)["input_ids"]
    shown = Wd.token_strings(ids, tok)
    assert shown[:3] == ["a", "photo", "of"]
    assert not shown[-1].endswith("~") and all(s.endswith("~") for s in shown[3:-1])
    assert "".join(s.rstrip("~") for s in shown[3:]) == "fading"
    assert Wd.token_strings(torch.tensor([[tok.bos_token_id]]), tok) == [["<|startoftext|>"]]
    got = Wd.caption_token_ids(["a red shirt", "a blue shirt"], tok)
    assert got.tolist() == sorted(set(tok("a red shirt a blue shirt", add_special_tokens=False)["input_ids"]))
    assert tok.bos_token_id not in got.tolist() and tok.eos_token_id not in got.tolist()


def test_the_synthvton_vocabulary_holds_every_token_of_other_attribute_combinations():
    vocab = set(Wd.caption_token_ids(Wd.synthvton_captions()).tolist())
    combos = [{"category": "crop-top", "colour": "maroon", "pattern": "text", "pattern_colour": "beige", "print": "PEACE"},
              {"category": "three-quarter", "colour": "light blue", "pattern": "logo", "pattern_colour": "navy",
               "print": "lightning bolt"},
              {"category": "sweater", "colour": "grey", "pattern": "gradient", "pattern_colour": "teal"},
              {"category": "v-neck", "colour": "pink", "pattern": "polka dots", "pattern_colour": "brown"}]
    for attrs in combos:
        missing = set(Wd.caption_token_ids(caption_variants(attrs)).tolist()) - vocab
        assert not missing, (attrs, Wd.token_strings(sorted(missing)))
    prompt_only = set(Wd.caption_token_ids(A.prompt("upper_body", 1)).tolist()) - vocab
    assert set(Wd.token_strings(sorted(prompt_only))) == {"upper", "body", "$"}  # words no caption holds


# ----------------------------------------------------------------------------- retrieval
def test_distinct_garments_keeps_the_first_of_equal_images():
    a, b, c = (torch.full((3, 4, 3), v) for v in (0.1, 0.2, 0.3))
    assert Wd.distinct_garments(torch.stack([a, b, a, c, b])).tolist() == [0, 1, 3]
    with pytest.raises(ValueError, match="cloth"):
        Wd.distinct_garments(torch.zeros(0, 3, 4, 3))


def test_retrieval_of_identical_embeddings_gives_rank_one():
    feats = torch.randn(6, 5, generator=torch.Generator().manual_seed(2))
    assert Wd.retrieval_ranks(feats, feats).tolist() == [1] * 6
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert Wd.retrieval_ranks(feats, feats[perm], targets=torch.argsort(perm)).tolist() == [1] * 6
    assert Wd.retrieval_ranks(2.0 * feats, feats).tolist() == [1] * 6       # cosine: the scale does not matter


def test_retrieval_ranks_count_closer_items_and_ties_against_the_target():
    gallery = torch.eye(4)
    query = torch.tensor([[0.9, 0.5, 0.1, 1.0]])                           # target 0: items 3 (1.0) is closer, 1 farther
    assert Wd.retrieval_ranks(query, gallery, targets=[0]).tolist() == [2]
    assert Wd.retrieval_ranks(query, gallery, targets=[2]).tolist() == [4]
    same = torch.ones(3, 2)                                                 # a query that cannot tell them apart
    assert Wd.retrieval_ranks(same, same).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="targets"):
        Wd.retrieval_ranks(query, gallery, targets=[4])
    with pytest.raises(ValueError, match="gallery"):
        Wd.retrieval_ranks(query, torch.eye(3))


def test_retrieval_metrics_and_chance_levels():
    m = Wd.retrieval_metrics(torch.tensor([1, 2, 6, 3]), 8)
    assert m["top1"] == 0.25 and m["top5"] == 0.75 and m["median_rank"] == 2.5
    assert m["chance_top1"] == 1 / 8 and m["chance_top5"] == 5 / 8 and m["chance_median_rank"] == 4.5
    assert (m["n_queries"], m["n_gallery"]) == (4, 8)
    assert m["p_top1"] == pytest.approx(1 - (7 / 8) ** 4)                   # at least one hit among 4 queries
    assert m["p_top5"] == pytest.approx(4 * (5 / 8) ** 3 * (3 / 8) + (5 / 8) ** 4)
    perfect = Wd.retrieval_metrics(torch.ones(4, dtype=torch.long), 8)
    assert perfect["p_top1"] == pytest.approx((1 / 8) ** 4) and perfect["top1"] == 1.0
    assert Wd.retrieval_metrics(torch.full((4,), 8), 8)["p_top1"] == 1.0
    assert Wd.retrieval_metrics(torch.tensor([1, 2]), 3)["chance_top5"] == 1.0
    with pytest.raises(ValueError, match="ranks"):
        Wd.retrieval_metrics(torch.tensor([1, 9]), 8)
    with pytest.raises(ValueError, match="n_gallery"):
        Wd.retrieval_metrics(torch.tensor([1]), 0)


def test_pseudo_word_features_with_the_placeholders_own_embedding_are_the_plain_prompts(tiny_clip):
    table = Wd.token_embedding_table(tiny_clip)
    ph = A.placeholder_token_id(tiny_clip.tokenizer)
    own = table[ph].detach().expand(2, 4, -1).clone()
    feats = Wd.pseudo_word_text_features(tiny_clip, own)
    plain = tiny_clip.text_features([A.prompt("upper_body", 4)] * 2)
    assert feats.shape == (2, TINY_CLIP.embed_dim)
    torch.testing.assert_close(feats, plain, atol=1e-5, rtol=0)
    other = own.clone()
    other[1] = table[320].detach()                                          # 'a</w>' in every placeholder of row 1
    moved = Wd.pseudo_word_text_features(tiny_clip, other)
    torch.testing.assert_close(moved[0], plain[0], atol=1e-5, rtol=0)
    assert (moved[1] - plain[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="pseudo_words"):
        Wd.pseudo_word_text_features(tiny_clip, own[0])


# ----------------------------------------------------------------------------- the prompt comparison
class FakePipe:
    """Returns, per person, uniform noise from its own generator (whatever the prompt), and records each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, image, mask, *, generator, text_mode, num_inference_steps=None, guidance_scale=None, cloth=None,
                 captions=None):
        self.calls.append({"n": len(image), "text_mode": text_mode, "cloth": cloth, "captions": captions,
                           "steps": num_inference_steps, "guidance": guidance_scale})
        noise = torch.stack([torch.rand(3, *image.shape[-2:], generator=g) for g in generator])
        return SimpleNamespace(images=noise)


def _persons(n=5, h=8, w=6):
    g = torch.Generator().manual_seed(3)
    return {"image": torch.rand(n, 3, h, w, generator=g) * 2 - 1, "inpaint_mask": torch.ones(n, 1, h, w),
            "cloth": torch.rand(n, 3, h, w, generator=g) * 2 - 1, "captions": [f"caption {i}" for i in range(n)]}


def test_prompt_comparison_shares_each_persons_noise_across_prompts_and_batches():
    data = _persons()
    pipe = FakePipe()
    out = Wd.prompt_comparison(pipe, data, seeds=(0, 2), batch_size=2, num_inference_steps=3, guidance_scale=1.5)
    assert set(out) == set(Wd.CONDITIONS) and all(set(v) == {0, 2} for v in out.values())
    assert out["inversion"][0].shape == (5, 3, 8, 6)
    torch.testing.assert_close(out["inversion"][0], out["empty"][0], rtol=0, atol=0)      # same noise, prompt aside
    assert not torch.equal(out["caption"][0], out["caption"][2])                          # seeds differ
    assert not torch.equal(out["caption"][0][0], out["caption"][0][1])                    # persons differ
    whole = Wd.prompt_comparison(FakePipe(), data, seeds=(2,), conditions=("caption",), batch_size=16)
    torch.testing.assert_close(whole["caption"][2], out["caption"][2], rtol=0, atol=0)   # batch size does not matter
    modes = {c["text_mode"] for c in pipe.calls}
    assert modes == {"inversion", "caption", "none"}
    cap_calls = [c for c in pipe.calls if c["text_mode"] == "caption"]
    assert cap_calls[0]["captions"] == ["caption 0", "caption 1"] and cap_calls[0]["cloth"] is None
    inv_calls = [c for c in pipe.calls if c["text_mode"] == "inversion"]
    assert torch.equal(inv_calls[1]["cloth"], data["cloth"][2:4])
    assert all(c["steps"] == 3 and c["guidance"] == 1.5 for c in pipe.calls)


def test_prompt_comparison_bad_input_names_what_was_expected():
    data = _persons()
    with pytest.raises(ValueError, match="conditions"):
        Wd.prompt_comparison(FakePipe(), data, conditions=("pseudo",))
    no_cloth = {k: v for k, v in data.items() if k != "cloth"}
    with pytest.raises(KeyError, match="cloth"):
        Wd.prompt_comparison(FakePipe(), no_cloth)
    Wd.prompt_comparison(FakePipe(), no_cloth, conditions=("empty",), seeds=(0,))          # no garment needed there
    with pytest.raises(ValueError, match="captions"):
        Wd.prompt_comparison(FakePipe(), {**data, "captions": ["one"]})


def test_score_prompts_is_zero_for_the_ground_truth_and_grows_with_a_colour_shift():
    h, w = 64, 48
    g = torch.Generator().manual_seed(4)
    gt = torch.rand(2, 3, h, w, generator=g) * 2 - 1
    parse = torch.zeros(2, h, w, dtype=torch.long)
    parse[:, 16:48, 12:36] = CIHP["upper_clothes"]
    data = {"gt_image": gt, "gt_parse": parse}
    exact = (gt + 1) / 2
    shifted = exact.clone()
    shifted[:, 0] = 1.0                                                     # the red channel saturated everywhere
    lp = LPIPSMetric(weights="random")
    scores = Wd.score_prompts({"inversion": {0: exact, 1: exact}, "empty": {0: exact, 1: shifted}}, data, lpips=lp)
    inv, emp = scores["inversion"], scores["empty"]
    assert inv["colour_error"] == pytest.approx(0.0, abs=1e-3) and inv["lpips_garment"] == pytest.approx(0.0, abs=1e-5)
    assert inv["colour_error_spread"] == pytest.approx(0.0, abs=1e-3)
    assert emp["colour_error_per_seed"][1] > 5.0 and emp["colour_error_per_seed"][0] == pytest.approx(0.0, abs=1e-3)
    assert emp["colour_error"] == pytest.approx(emp["colour_error_per_seed"][1] / 2, rel=1e-5)
    assert emp["colour_error_spread"] == pytest.approx(emp["colour_error_per_seed"][1], rel=1e-5)
    assert emp["lpips_garment_per_person"].shape == (2,) and bool((emp["lpips_garment_per_person"] > 0).all())
    with pytest.raises(ValueError, match="results\\['inversion'\\]\\[0\\]"):
        Wd.score_prompts({"inversion": {0: exact[:1]}}, data, lpips=lp)
    with pytest.raises(KeyError, match="gt_parse"):
        Wd.score_prompts({"inversion": {0: exact}}, {"gt_image": gt}, lpips=lp)
