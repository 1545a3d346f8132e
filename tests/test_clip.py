"""Tests for vtonlab.clip: tokenizer, loss, temperature, zero-shot, retrieval, pretrained loading, training."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from vtonlab import clip as C

TINY = C.CLIPSize(image_size=16, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                  text_layers=1, text_heads=2, embed_dim=16, batch_size=8, lr=1e-3, n_train=16, n_test=8,
                  render_size=(32, 24))


@pytest.fixture(scope="module")
def tiny() -> C.CLIP:
    torch.manual_seed(0)
    return C.CLIP.from_size(TINY).eval()


# ----------------------------------------------------------------------------- tokenizer
STRINGS = [
    "a red striped t-shirt",
    "A RED Striped T-Shirt",  # case folding
    "Hello, world!! it's 3.14 o'clock; we'll see (maybe) -- ok?",
    "café crème, naïve jalapeño",  # accents: byte-level BPE
    "emoji 🙂👕 and CJK 衣服",
    "multiple    spaces\tand\nnewlines",
    "",
    "x",
    "navy-blue polka-dot dress with long sleeves and a v-neck",
    " ".join(["stripes"] * 120),  # longer than the context: truncated
    "antidisestablishmentarianism supercalifragilistic",
]


def test_tokenizer_is_the_real_clip_bpe():
    tok = C.tokenizer()
    assert len(tok) == C.VOCAB_SIZE == 49408
    assert tok.model_max_length == C.CONTEXT_LENGTH == 77
    assert tok.convert_tokens_to_ids(C.BOS_TOKEN) == 49406
    assert tok.convert_tokens_to_ids(C.EOS_TOKEN) == 49407
    assert C.tokenizer() is tok  # cached


def test_tokenizer_matches_open_clip_tokenize():
    ids, mask = C.tokenize(STRINGS, padding="max_length")
    ref = open_clip.tokenize(STRINGS)  # (B, 77), padded with 0
    assert ids.shape == ref.shape == (len(STRINGS), 77)
    real = ref != 0
    assert torch.equal(ids[real], ref[real])
    assert torch.equal(mask.bool(), real)
    assert bool((ids[~real] == 49407).all())  # our padding is the end token


def test_tokenizer_truncates_at_77_keeping_the_end_token():
    long = " ".join(["stripes"] * 120)
    ids, mask = C.tokenize([long, "short"])
    assert ids.shape == (2, 77)
    assert ids[0, 0] == 49406 and ids[0, -1] == 49407
    assert int(mask[0].sum()) == 77
    assert torch.equal(ids[0], open_clip.tokenize([long])[0])
    # "longest" padding pads the short caption to the longest one, not to 77
    short_ids, _ = C.tokenize(["short", "a red dress"])
    assert short_ids.shape == (2, 5)


def test_tokenizer_survives_save_and_reload(tmp_path):
    from transformers import CLIPTokenizer

    C.tokenizer().save_pretrained(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert len(again) == 49408 and again.model_max_length == 77
    a, _ = C.tokenize(STRINGS, again, padding="max_length")
    b, _ = C.tokenize(STRINGS, padding="max_length")
    assert torch.equal(a, b)


def test_byte_alphabet_is_a_bijection_of_printable_characters():
    table = C.byte_alphabet()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert table[ord("a")] == "a" and table[ord(" ")] == chr(256 + 32)


def test_tokenize_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        C.tokenize([])
    with pytest.raises(TypeError, match="strings"):
        C.tokenize(["ok", 3])
    with pytest.raises(ValueError, match="padding"):
        C.tokenize("a", padding="nope")


def test_corrupt_merges_file_names_the_file(tmp_path):
    bad = tmp_path / "bpe.txt.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as f:
        f.write("#version\n" + "a b\n" * 10)
    with pytest.raises(ValueError, match=str(bad.name)):
        C.read_bpe_merges(bad)
    notgz = tmp_path / "plain.txt.gz"
    notgz.write_text("not gzip")
    with pytest.raises(ValueError, match="plain.txt.gz"):
        C.read_bpe_merges(notgz)


# ----------------------------------------------------------------------------- loss
def _random_features(b: int, p: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(b, p, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(b, p, generator=g, dtype=torch.float64), dim=-1)
    return img, txt


@pytest.mark.parametrize("b,p,scale", [(1, 4, 1.0), (8, 16, 14.2857), (33, 64, 100.0), (5, 3, 0.5)])
def test_loss_matches_open_clip_and_cross_entropy(b, p, scale):
    img, txt = _random_features(b, p, seed=b * 100 + p)
    s = torch.tensor(scale, dtype=torch.float64)
    ours = C.contrastive_loss(img, txt, s)
    ref_open_clip = ClipLoss()(img, txt, s)
    logits = s * img @ txt.t()
    target = torch.arange(b)
    ref_ce = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
    assert torch.allclose(ours, ref_open_clip, atol=1e-12, rtol=1e-10)
    assert torch.allclose(ours, ref_ce, atol=1e-12, rtol=1e-10)


def test_loss_gradients_match_cross_entropy():
    img, txt = _random_features(12, 8, seed=3)
    s = torch.tensor(7.0, dtype=torch.float64)
    grads = []
    for fn in (lambda i, t, s: C.contrastive_loss(i, t, s),
               lambda i, t, s: (F.cross_entropy(s * i @ t.t(), torch.arange(12))
                                + F.cross_entropy(s * t @ i.t(), torch.arange(12))) / 2):
        i, t, sc = img.clone().requires_grad_(), txt.clone().requires_grad_(), s.clone().requires_grad_()
        fn(i, t, sc).backward()
        grads.append((i.grad, t.grad, sc.grad))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-12)


def test_loss_is_low_for_matching_pairs_and_symmetric():
    img, txt = _random_features(16, 32, seed=5)
    perfect = C.contrastive_loss(img, img, 100.0)
    assert perfect < 1e-3
    chance_level = C.contrastive_loss(img, txt, 1e-6)
    assert math.isclose(float(chance_level), math.log(16), rel_tol=1e-4)  # uniform softmax over 16
    assert torch.allclose(C.contrastive_loss(img, txt, 3.0), C.contrastive_loss(txt, img, 3.0))


def test_loss_rejects_bad_input():
    img, txt = _random_features(4, 8, seed=0)
    with pytest.raises(ValueError, match="L2-normalised"):
        C.contrastive_loss(img * 2, txt, 1.0)
    with pytest.raises(ValueError, match="both be"):
        C.contrastive_loss(img, txt[:3], 1.0)
    with pytest.raises(ValueError, match="logit_scale"):
        C.contrastive_loss(img, txt, -1.0)


# ----------------------------------------------------------------------------- the model
def test_logit_scale_initialised_and_clamped(tiny):
    model = C.CLIP.from_size(TINY)
    assert math.isclose(float(model.hf.logit_scale.detach()), math.log(1 / 0.07), rel_tol=1e-6)
    assert math.isclose(float(model.logit_scale().detach()), 1 / 0.07, rel_tol=1e-5)
    with torch.no_grad():
        model.hf.logit_scale.fill_(math.log(1000.0))
    assert float(model.logit_scale().detach()) == pytest.approx(100.0)
    model.hf.logit_scale.grad = None
    model.logit_scale().backward()
    assert float(model.hf.logit_scale.grad) == 0.0  # no push beyond the clamp
    with torch.no_grad():
        model.hf.logit_scale.fill_(math.log(50.0))
    assert float(model.logit_scale().detach()) == pytest.approx(50.0)


def test_encoders_shapes_and_per_token_states(tiny):
    images = torch.rand(3, 3, 40, 30) * 2 - 1
    enc = tiny.encode_image(images)
    n_patches = (16 // 8) ** 2
    assert enc.embeds.shape == (3, 16) and enc.pooled.shape == (3, 32)
    assert enc.hidden_states.shape == (3, 1 + n_patches, 32) and enc.patch_tokens.shape == (3, n_patches, 32)
    text = tiny.encode_text(["a red shirt", "a blue striped dress with long sleeves"])
    length = text.input_ids.shape[1]
    assert text.hidden_states.shape == (2, length, 32) and text.embeds.shape == (2, 16)
    # the pooled state sits at the end token of each caption
    eos = (text.input_ids == 49407).int().argmax(dim=1)
    assert torch.allclose(text.pooled, text.hidden_states[torch.arange(2), eos])
    assert torch.allclose(text.embeds, tiny.hf.text_projection(text.pooled), atol=1e-6)
    out = tiny(images[:2], ["a", "b"])
    assert torch.allclose(out.image_features.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert out.logits_per_image.shape == (2, 2)


def test_text_is_causal_so_padding_does_not_change_features(tiny):
    alone = tiny.text_features(["red"])
    padded = tiny.text_features(["red", "a much longer caption about a green checked coat"])
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_token_embeddings_replace_the_lookup(tiny):
    ids, mask = C.tokenize(["a photo of a model wearing a t-shirt"])
    table = tiny.hf.text_model.embeddings.token_embedding
    same = tiny.encode_text(ids, mask, token_embeddings=table(ids))
    plain = tiny.encode_text(ids, mask)
    assert torch.allclose(same.embeds, plain.embeds, atol=1e-6)
    pseudo = table(ids).clone()
    pseudo[0, 3] = torch.randn(32)  # a pseudo-word in place of one token
    changed = tiny.encode_text(ids, mask, token_embeddings=pseudo)
    assert not torch.allclose(changed.embeds, plain.embeds, atol=1e-4)
    assert torch.allclose(changed.hidden_states[0, :3], plain.hidden_states[0, :3], atol=1e-5)  # causal
    with pytest.raises(ValueError, match="token_embeddings"):
        tiny.encode_text(ids, mask, token_embeddings=torch.zeros(1, 3, 32))


def test_encode_text_rejects_ids_without_end_token(tiny):
    with pytest.raises(ValueError, match="end token"):
        tiny.encode_text(torch.tensor([[49406, 320, 736]]))
    with pytest.raises(ValueError, match=r"\[0, 49408\)"):
        tiny.encode_text(torch.tensor([[49406, 60000, 49407]]))
    with pytest.raises(ValueError, match="context"):
        tiny.encode_text(torch.full((1, 80), 49407))


def test_preprocess_pads_with_white_and_normalises():
    x = torch.full((1, 3, 8, 4), -1.0)  # a black image, taller than wide
    out = C.preprocess(x, 8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fit="pad")
    assert out.shape == (1, 3, 8, 8)
    assert torch.allclose(out[..., :, 3:5], torch.full((1, 3, 8, 2), -1.0), atol=1e-5)  # black middle
    assert torch.allclose(out[..., :, :1], torch.ones(1, 3, 8, 1), atol=1e-5)  # white padding
    crop = C.preprocess(x, 4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fit="crop")
    assert torch.allclose(crop, torch.full((1, 3, 4, 4), -1.0), atol=1e-5)  # centre crop keeps black only
    # a square image already at the model size is only standardised: (x01 - mean) / std
    sq = torch.rand(2, 3, 16, 16) * 2 - 1
    mean, std = torch.tensor(C.OPENAI_CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(C.OPENAI_CLIP_STD).view(1, 3, 1, 1)
    assert torch.allclose(C.preprocess(sq, 16), ((sq + 1) / 2 - mean) / std, atol=1e-5)


def test_preprocess_crop_agrees_with_transformers_image_processor():
    from transformers import CLIPImageProcessor

    rng = np.random.default_rng(0)
    # a smooth image so that PIL and torch bicubic resampling differ only slightly
    yy, xx = np.mgrid[0:96, 0:64]
    img = np.stack([128 + 100 * np.sin(xx / 9), 128 + 100 * np.cos(yy / 11), 60 + xx + yy * 0.5], -1)
    img = np.clip(img + rng.normal(0, 1, img.shape), 0, 255).astype(np.uint8)
    proc = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    ref = proc(images=img, return_tensors="pt")["pixel_values"]
    ours = C.preprocess(C.to_model_images(img), 32, fit="crop")
    assert ours.shape == ref.shape == (1, 3, 32, 32)
    assert (ours - ref).abs().mean() < 0.03


def test_to_model_images_converts_and_rejects():
    u8 = np.zeros((5, 4, 3), np.uint8)
    u8[..., 0] = 255
    x = C.to_model_images(u8)
    assert x.shape == (1, 3, 5, 4) and float(x[0, 0].min()) == 1.0 and float(x[0, 1].max()) == -1.0
    assert C.to_model_images([u8, u8]).shape == (2, 3, 5, 4)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        C.to_model_images(torch.rand(1, 3, 4, 4) * 255)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        C.to_model_images(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        C.to_model_images(torch.zeros(2, 4, 4, 4))


# ----------------------------------------------------------------------------- pretrained
def test_from_pretrained_round_trip(tmp_path, tiny):
    model = C.CLIP.from_size(TINY)
    with torch.no_grad():
        model.hf.logit_scale.fill_(3.0)
    model.image_mean, model.image_std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)
    model.save_pretrained(tmp_path / "clip")
    assert (tmp_path / "clip" / "model.safetensors").is_file()
    assert not list((tmp_path / "clip").glob("*.bin"))
    loaded = C.CLIP.from_pretrained(tmp_path / "clip").eval()
    model.eval()
    assert loaded.image_size == 16 and loaded.image_mean == (0.4, 0.5, 0.6) and loaded.image_std == (0.2, 0.3, 0.25)
    assert len(loaded.tokenizer) == 49408
    images = torch.rand(2, 3, 24, 18) * 2 - 1
    texts = ["a yellow dotted skirt", "trousers"]
    with torch.no_grad():
        assert torch.allclose(model.encode_image(images).embeds, loaded.encode_image(images).embeds, atol=1e-6)
        assert torch.allclose(model.encode_text(texts).hidden_states, loaded.encode_text(texts).hidden_states,
                              atol=1e-6)
    assert float(loaded.logit_scale().detach()) == pytest.approx(math.exp(3.0))
    # a plain transformers CLIPModel directory (no tokenizer, no preprocessor config) also loads
    model.hf.save_pretrained(tmp_path / "bare")
    bare = C.CLIP.from_pretrained(tmp_path / "bare")
    assert bare.image_mean == C.OPENAI_CLIP_MEAN and len(bare.tokenizer) == 49408


def test_from_pretrained_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        C.CLIP.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        C.CLIP.from_pretrained(tmp_path / "empty")
    d = tmp_path / "pickled"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(FileNotFoundError, match="pickled weights are never loaded"):
        C.CLIP.from_pretrained(d)
    (d / "config.json").write_text(json.dumps({"model_type": "clip_vision_model"}))
    with pytest.raises(ValueError, match="model_type"):
        C.CLIP.from_pretrained(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        C.CLIP.from_pretrained(d)


# ----------------------------------------------------------------------------- zero-shot, retrieval
def test_zero_shot_on_a_separable_case(tiny):
    """Image features placed exactly at each class's prompt embedding must be classified perfectly."""
    classes = ["red", "green", "blue", "yellow"]
    weights = C.zero_shot_classifier(tiny, classes, C.ZERO_SHOT_TEMPLATES["colour"])
    assert weights.shape == (4, 16)
    assert torch.allclose(weights.norm(dim=-1), torch.ones(4), atol=1e-5)
    labels = ["blue", "red", "yellow", "green", "green", "red"]
    feats = torch.stack([weights[classes.index(lab)] for lab in labels])
    res = C.zero_shot_eval(tiny, feats, labels, classes, attribute="colour")
    assert res.accuracy == 1.0
    assert res.chance == 0.25 and res.majority == pytest.approx(2 / 6)
    assert torch.equal(res.confusion.diagonal(), torch.tensor([2, 2, 1, 1]))
    assert res.per_class() == {"red": 1.0, "green": 1.0, "blue": 1.0, "yellow": 1.0}
    # the prompts decide, not the class order: describing "red" with the word "green" (and back)
    # exchanges exactly those two predictions
    swapped = C.zero_shot_eval(tiny, feats, labels, classes, attribute="colour",
                               phrases={"green": "red", "red": "green"})
    predicted = [classes[i] for i in swapped.predictions]
    assert predicted == ["blue", "green", "yellow", "red", "red", "green"]
    assert swapped.accuracy == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="not among"):
        C.zero_shot_eval(tiny, feats, ["purple"] * 6, classes, attribute="colour")
    with pytest.raises(KeyError, match="templates"):
        C.zero_shot_eval(tiny, feats, labels, classes, attribute="fabric")


def test_retrieval_recall_by_hand():
    img = torch.eye(4)
    txt = torch.eye(4)[[0, 2, 1, 3]]  # texts 1 and 2 swapped
    r = C.retrieval_recall(img, txt, ks=(1, 2, 10))
    assert r["i2t_R@1"] == 0.5 and r["t2i_R@1"] == 0.5
    assert r["i2t_R@10"] == 1.0
    relevant = torch.eye(4, dtype=torch.bool)
    relevant[1, 2] = relevant[2, 1] = True  # images 1 and 2 share a caption
    assert C.retrieval_recall(img, txt, ks=(1,), relevant=relevant)["i2t_R@1"] == 1.0
    with pytest.raises(ValueError, match="matching pairs"):
        C.retrieval_recall(img, txt[:3])


# ----------------------------------------------------------------------------- data, training
def test_caption_variants_are_true_and_varied():
    from vtonlab.data import synth

    g = synth.render_garment(3, (64, 48), category="tank-top", colour="teal", pattern="polka dots",
                             pattern_colour="white")
    variants = C.caption_variants(g["attributes"])
    assert g["caption"] in variants
    assert len(set(variants)) == len(variants) >= 10
    assert "a teal garment" in variants and "a garment with polka dots" in variants and "a tank top" in variants
    solid = C.caption_variants({"category": "sweater", "colour": "orange", "pattern": "solid",
                                "pattern_colour": "none"})
    assert "a plain orange sweater" in solid and "a garment with a plain colour" in solid
    with pytest.raises(KeyError, match="colour"):
        C.caption_variants({"category": "sweater", "pattern": "solid"})
    with pytest.raises(ValueError, match="pattern"):
        C.caption_variants({"category": "sweater", "colour": "red", "pattern": "paisley"})


def test_zero_shot_prompts_are_not_training_captions():
    from vtonlab.data import synth

    classes, phrases = C.attribute_classes(), C.attribute_phrases()
    assert set(phrases["pattern"]) == set(synth.PATTERNS) == set(classes["pattern"])
    assert set(phrases["colour"]) == set(synth.COLOURS) and set(phrases["category"]) == set(synth.CATEGORIES)
    garments = C.render_garments(range(300), (32, 24))
    captions = {c for v in garments.variants for c in v}
    prompts = {t.format(p) for a, ts in C.ZERO_SHOT_TEMPLATES.items() for t in ts for p in phrases[a].values()}
    assert len(prompts) == sum(len(ts) * len(phrases[a]) for a, ts in C.ZERO_SHOT_TEMPLATES.items())
    assert not prompts & captions
    # ... but every attribute word of the prompts occurs in some training caption
    words = " ".join(captions)
    assert all(p in words for a in phrases for p in phrases[a].values())


def test_render_garments_and_held_out_seeds():
    g = C.render_garments([0, 1, 2], (32, 24))
    assert g.images.shape == (3, 3, 32, 24) and g.images.min() >= -1 and g.images.max() <= 1
    assert float(g.images[0, :, 0, 0].mean()) == pytest.approx(1.0, abs=0.02)  # white background
    assert g.labels("colour") == [a["colour"] for a in g.attributes]
    with pytest.raises(KeyError, match="fabric"):
        g.labels("fabric")
    cfg = {"size": TINY.to_dict()}
    train_set, test_set = C.train_split(cfg)
    assert len(train_set) == 16 and len(test_set) == 8
    assert not set(train_set.seeds) & set(test_set.seeds)
    with pytest.raises(ValueError, match="CLIPSize"):
        C.train_split({"size": {"image_size": 16}})


def test_batch_fn_is_deterministic_and_well_formed(tiny):
    garments = C.render_garments(range(12), (32, 24))
    fn = C.make_batch_fn(tiny, garments, 5)
    a = fn(0, torch.Generator().manual_seed(1))
    b = fn(0, torch.Generator().manual_seed(1))
    assert a["pixels"].shape == (5, 3, 16, 16)
    assert torch.equal(a["pixels"], b["pixels"]) and torch.equal(a["input_ids"], b["input_ids"])
    assert a["input_ids"].shape == a["attention_mask"].shape and bool((a["input_ids"] == 49407).any(dim=1).all())
    with pytest.raises(ValueError, match="exceeds"):
        C.make_batch_fn(tiny, garments, 13)


def test_distinguishing_captions_name_what_the_twins_differ_in(tiny):
    twins = C.render_twins(range(6), (32, 24))
    dist = C.distinguishing_captions(twins)
    for k in range(0, len(twins), 2):
        a, b = twins.attributes[k], twins.attributes[k + 1]
        changed = [key for key in ("category", "colour", "pattern") if a[key] != b[key]]
        assert len(changed) == 1
        for i, j in ((k, k + 1), (k + 1, k)):
            assert dist[i] and set(dist[i]) <= set(twins.variants[i])
            assert not set(dist[i]) & set(twins.variants[j])  # no caption fits both twins
            assert len(dist[i]) < len(twins.variants[i])  # some captions do not name the changed attribute
    # the batch function draws only those captions for twin pairs
    fn = C.make_batch_fn(tiny, twins, 12, twin_captions="distinguishing")
    tok = tiny.tokenizer
    squash = lambda t: "".join(t.lower().split())  # noqa: E731 (decoding spaces out hyphens)
    allowed = {squash(c) for caps in dist for c in caps}
    for step in range(3):
        ids = fn(step, torch.Generator().manual_seed(step))["input_ids"]
        for row in ids:
            text = tok.decode([int(t) for t in row if int(t) < 49406])
            assert squash(text) in allowed, text
    with pytest.raises(ValueError, match="twin_captions"):
        C.make_batch_fn(tiny, twins, 4, twin_captions="hard")
    with pytest.raises(ValueError, match="twin set"):
        C.distinguishing_captions(C.render_garments(range(2), (32, 24)))


def test_short_training_run_reduces_the_loss(tmp_path):
    """40 steps of the real training path on 64 garments: the contrastive loss falls well below log(B)."""
    size = dataclasses.replace(TINY, n_train=64, batch_size=16, lr=3e-3, vision_width=48, text_width=48,
                               render_size=(32, 24))
    config = {**C.train_config("ci"), "size": size.to_dict(), "steps": 40}
    garments = C.render_garments(range(64), size.render_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses time to thread hand-offs on a busy machine
    try:
        model, history = C.train(config, garments=garments, progress=False, checkpoint_dir=tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    losses = history.losses["loss"]
    assert len(losses) == 40
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert first > 0.9 * math.log(16)  # starts near chance
    assert last < first - 0.4, (first, last)
    assert not model.training
    # the trainer checkpointed the run (safetensors, resumable)
    assert list((tmp_path / "run").glob("step_*/model.safetensors"))


# ----------------------------------------------------------------------------- figures and the widget
@pytest.fixture()
def close_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_similarity_figure(close_figures, tiny):
    from vtonlab.viz import clip as vclip

    garments = C.render_garments(range(4), (32, 24))
    out = tiny(garments.images, garments.captions)
    sim = (out.image_features @ out.text_features.t()).detach()
    fig = vclip.similarity_figure(sim, garments.images, garments.captions, title="t")
    assert len(fig.axes) == 3  # thumbnails + matrix + colour bar
    fig2 = vclip.similarity_figure(np.random.rand(3, 5))  # no thumbnails, no captions, not square
    assert len(fig2.axes) == 2 and fig2.axes[0].get_images()[0].get_array().shape == (3, 5)
    with pytest.raises(ValueError, match="rows"):
        vclip.similarity_figure(sim, garments.images[:3])
    with pytest.raises(ValueError, match="non-empty"):
        vclip.similarity_figure(np.zeros((0, 3)))


def test_zero_shot_and_confusion_figures(close_figures, tiny):
    from vtonlab.viz import clip as vclip

    feats = F.normalize(torch.randn(6, 16), dim=-1)
    res = C.zero_shot_eval(tiny, feats, ["red", "blue"] * 3, ["red", "blue", "green"], attribute="colour")
    fig = vclip.zero_shot_figure([res, res])
    assert len(fig.axes[0].patches) == 6  # 3 bars per attribute
    fig = vclip.confusion_figure(res)
    assert fig.axes[0].get_images()[0].get_array().shape == (3, 3)
    with pytest.raises(ValueError, match="empty"):
        vclip.zero_shot_figure([])


@pytest.fixture(scope="module")
def search(tiny):
    from vtonlab.viz import clip as vclip

    garments = C.render_garments(range(5), (32, 24))
    return vclip.CaptionSearch(tiny, garments.images, labels=garments.captions)


@pytest.mark.parametrize("caption", ["", "   ", "a red t-shirt", "RED!!! 👕 ??", "x" * 2000, "ünïcödé ✓ 衣服", "\n\t"])
def test_caption_search_handles_any_caption(close_figures, search, caption):
    for k in (1, 100, 0):  # k is clipped to [1, number of garments]
        fig = search(caption, k=k)
        if caption.strip():
            assert len(fig.axes) == max(1, min(k, 5))
            idx, scores = search.top_k(caption, k)
            assert len(idx) == max(1, min(k, 5)) and bool((scores[:-1] >= scores[1:]).all())
        else:
            assert len(fig.axes) == 1 and "Type a caption" in fig.axes[0].texts[0].get_text()
    if not caption.strip():
        with pytest.raises(ValueError, match="empty"):
            search.top_k(caption)


def test_caption_search_finds_the_right_garment(close_figures, tiny):
    """With image features replaced by the text features of the garments' own captions, each caption
    must retrieve its own garment first."""
    from vtonlab.viz import clip as vclip

    garments = C.render_garments(range(6), (32, 24))
    search = vclip.CaptionSearch(tiny, garments.images)
    search.image_features = tiny.text_features(garments.captions)
    for i, caption in enumerate(garments.captions):
        if garments.captions.count(caption) == 1:
            assert int(search.top_k(caption, 1)[0][0]) == i
    with pytest.raises(ValueError, match="labels"):
        vclip.CaptionSearch(tiny, garments.images, labels=["a"])
