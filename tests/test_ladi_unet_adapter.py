"""Tests for vtonlab.ladi.unet (31-channel try-on UNet inputs, condition dropout) and vtonlab.ladi.adapter (textual inversion)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from vtonlab import clip as C
from vtonlab.ladi import adapter as A
from vtonlab.ladi import unet as U

LATENT = (8, 6)
TINY_CLIP = C.CLIPSize(image_size=16, patch_size=8, vision_width=32, vision_layers=1, vision_heads=2, text_width=32,
                       text_layers=2, text_heads=2, embed_dim=16, batch_size=8, lr=1e-3, n_train=16, n_test=8,
                       render_size=(32, 24))


def _tiny_unet(in_channels: int = 9) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=LATENT, in_channels=in_channels, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=8).eval()


@pytest.fixture(scope="module")
def unets() -> tuple[UNet2DConditionModel, UNet2DConditionModel]:
    base = _tiny_unet()
    return base, U.widen_conv_in(copy.deepcopy(base), 31)


def _cond(b: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 9, *LATENT, generator=g), torch.tensor([10, 700][:b]), torch.randn(b, 5, 32, generator=g))


# ----------------------------------------------------------------------------- widen_conv_in
def test_widened_unet_equals_base_unet_with_zero_new_channels(unets):
    base, wide = unets
    x9, t, ctx = _cond()
    with torch.no_grad():
        ref = base(x9, t, encoder_hidden_states=ctx).sample
        out = wide(torch.cat([x9, torch.zeros(2, 22, *LATENT)], 1), t, encoder_hidden_states=ctx).sample
    assert out.shape == (2, 4, *LATENT)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_new_channels_start_at_zero_and_count_once_trained(unets):
    base, wide = unets
    assert wide.conv_in.in_channels == 31 and wide.config.in_channels == 31
    assert torch.equal(wide.conv_in.weight[:, :9], base.conv_in.weight)
    assert torch.equal(wide.conv_in.bias, base.conv_in.bias)
    assert not wide.conv_in.weight[:, 9:].any()
    x9, t, ctx = _cond()
    extra = torch.randn(2, 22, *LATENT, generator=torch.Generator().manual_seed(3))
    x31 = torch.cat([x9, extra], 1)
    with torch.no_grad():
        ref = base(x9, t, encoder_hidden_states=ctx).sample
        same = wide(x31, t, encoder_hidden_states=ctx).sample
        torch.testing.assert_close(same, ref, rtol=0, atol=1e-6)  # nonzero pose / garment: still no effect at init
        moved = copy.deepcopy(wide)
        moved.conv_in.weight[:, 9:] += 0.1 * torch.randn_like(moved.conv_in.weight[:, 9:])
        changed = moved(x31, t, encoder_hidden_states=ctx).sample
    assert (changed - ref).abs().max() > 1e-3


def test_widened_config_survives_save_and_load(unets, tmp_path):
    _, wide = unets
    wide.save_pretrained(tmp_path / "unet", safe_serialization=True)
    back = UNet2DConditionModel.from_pretrained(tmp_path / "unet").eval()
    assert back.conv_in.in_channels == 31
    assert torch.equal(back.conv_in.weight, wide.conv_in.weight)


def test_widen_27_channels_and_bad_widths():
    unet = U.widen_conv_in(_tiny_unet(), U.input_channels(garment=False))
    assert unet.conv_in.in_channels == 27 and unet.config.in_channels == 27 == 4 + 1 + 4 + 18
    with pytest.raises(ValueError, match="larger than the UNet's current 27"):
        U.widen_conv_in(unet, 27)
    with pytest.raises(ValueError, match="larger than the UNet's current 9"):
        U.widen_conv_in(_tiny_unet(), 4)
    with pytest.raises(TypeError, match="UNet2DConditionModel"):
        U.widen_conv_in(torch.nn.Linear(3, 3), 31)


# ----------------------------------------------------------------------------- inputs
def test_input_layout_and_order():
    assert U.INPUT_LAYOUT == (("noisy_latent", 4), ("mask", 1), ("masked_image_latent", 4), ("pose", 18),
                              ("garment_latent", 4))
    assert (U.BASE_CHANNELS, U.TRYON_CHANNELS, U.input_channels(False)) == (9, 31, 27)
    b = 2
    parts = [torch.full((b, c, *LATENT), float(k)) for k, (_, c) in enumerate(U.INPUT_LAYOUT)]
    x = U.tryon_unet_input(*parts)
    assert x.shape == (b, 31, *LATENT)
    start = 0
    for k, (_, c) in enumerate(U.INPUT_LAYOUT):
        assert (x[:, start:start + c] == k).all()
        start += c
    assert torch.equal(U.tryon_unet_input(*parts[:4]), x[:, :27])


@pytest.mark.parametrize("which, shape, match", [
    (1, (2, 1, 64, 48), r"mask: expected .*\(2, 1, 8, 6\).*resize_mask"),
    (2, (2, 4, 4, 3), r"masked_image_latent: expected .*\(2, 4, 8, 6\)"),
    (3, (2, 17, 8, 6), r"pose: expected .*\(2, 18, 8, 6\)"),
    (3, (2, 18, 64, 48), r"pose: expected .*resize_pose"),
    (4, (1, 4, 8, 6), r"garment_latent: expected .*\(2, 4, 8, 6\)"),
])
def test_tryon_input_bad_shapes(which, shape, match):
    parts = [torch.zeros(2, c, *LATENT) for _, c in U.INPUT_LAYOUT]
    parts[which] = torch.zeros(shape)
    with pytest.raises(ValueError, match=match):
        U.tryon_unet_input(*parts)
    with pytest.raises(ValueError, match=r"noisy_latent: expected .*\(B, 4, h, w\)"):
        U.tryon_unet_input(torch.zeros(2, 9, *LATENT), *parts[1:])


def test_resize_pose_follows_official_bilinear():
    g = torch.Generator().manual_seed(0)
    pose = torch.rand(2, 18, 64, 48, generator=g)
    out = U.resize_pose(pose, LATENT)
    assert out.shape == (2, 18, *LATENT)
    # bilinear without align_corners and without antialias: each latent pixel averages the 2x2 input pixels around
    # the centre of its 8x8 cell (rows 8i+3, 8i+4)
    manual = pose[:, :, 3::8][:, :, :, 3::8] + pose[:, :, 4::8][:, :, :, 3::8] \
        + pose[:, :, 3::8][:, :, :, 4::8] + pose[:, :, 4::8][:, :, :, 4::8]
    torch.testing.assert_close(out, manual / 4)
    assert not torch.allclose(out, F.interpolate(pose, size=LATENT, mode="area"))
    mask = (torch.rand(1, 1, 64, 48, generator=g) > 0.5).float()
    m = U.resize_mask(mask, LATENT)
    assert torch.equal(m, mask[:, :, ::8, ::8]) and set(m.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match=r"pose_map: expected .*\(B, 18, H, W\)"):
        U.resize_pose(torch.zeros(2, 3, 64, 48), LATENT)
    with pytest.raises(ValueError, match="latent_size"):
        U.resize_pose(pose, 8)


# ----------------------------------------------------------------------------- condition dropout
def test_condition_dropout_rates_and_independence():
    n, p = 20000, U.UNCOND_FRACTION
    texts = [f"t{i}" for i in range(n)]
    pose = torch.rand(n, 18, 2, 2) + 0.5
    garment = torch.rand(n, 4, 2, 2) + 0.5
    pose0, garment0 = pose.clone(), garment.clone()
    d = U.drop_conditions(texts, pose, garment, p=p, generator=torch.Generator().manual_seed(0))
    masks = {"text": d.text_dropped, "pose": d.pose_dropped, "garment": d.garment_dropped}
    for name, m in masks.items():
        assert m.dtype == torch.bool and m.shape == (n,)
        assert abs(m.float().mean().item() - p) < 0.01, name
    for a, b in (("text", "pose"), ("text", "garment"), ("pose", "garment")):
        assert abs((masks[a] & masks[b]).float().mean().item() - p * p) < 0.01, (a, b)
    assert abs((masks["text"] & masks["pose"] & masks["garment"]).float().mean().item() - p ** 3) < 0.005
    # the dropped values: "" and zeros exactly where the masks say, the rest untouched; inputs not modified
    assert [t == "" for t in d.texts] == masks["text"].tolist()
    assert torch.equal(d.pose.flatten(1).eq(0).all(1), masks["pose"])
    assert torch.equal(d.pose[~masks["pose"]], pose0[~masks["pose"]])
    assert torch.equal(d.garment_latents.flatten(1).eq(0).all(1), masks["garment"])
    assert torch.equal(pose, pose0) and torch.equal(garment, garment0) and texts[0] == "t0"


def test_condition_dropout_official_draw_order_and_edges():
    n = 64
    pose, garment = torch.ones(n, 18, 1, 1), torch.ones(n, 4, 1, 1)
    d = U.drop_conditions(["x"] * n, pose, garment, p=0.3, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    text_m, garment_m, pose_m = (torch.rand(n, generator=g) < 0.3 for _ in range(3))  # train_vto.py 598-600
    assert torch.equal(d.text_dropped, text_m) and torch.equal(d.garment_dropped, garment_m)
    assert torch.equal(d.pose_dropped, pose_m)
    no_garment = U.drop_conditions(["x"] * n, pose, None, p=0.3, generator=torch.Generator().manual_seed(5))
    assert no_garment.garment_latents is None and torch.equal(no_garment.pose_dropped, pose_m)
    assert not U.drop_conditions(["x"] * n, pose, garment, p=0.0).pose_dropped.any()
    assert U.drop_conditions(["x"] * n, pose, garment, p=1.0).texts == [""] * n
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\]"):
        U.drop_conditions(["x"] * n, pose, garment, p=1.5)
    with pytest.raises(ValueError, match="texts: expected 64 prompts"):
        U.drop_conditions(["x"] * 3, pose, garment)
    with pytest.raises(ValueError, match=r"garment_latents: expected a tensor \(64, 4, h, w\)"):
        U.drop_conditions(["x"] * n, pose, torch.ones(n, 3, 1, 1))


# ----------------------------------------------------------------------------- inversion adapter
@pytest.fixture(scope="module")
def tiny_clip() -> C.CLIP:
    torch.manual_seed(0)
    return C.CLIP.from_size(TINY_CLIP).eval()


def test_placeholder_and_prompt_match_official():
    assert A.placeholder_token_id() == A.OFFICIAL_PLACEHOLDER_ID == 259
    p = A.prompt("upper_body", 16)
    assert p == "a photo of a model wearing an upper body garment " + " ".join(["$"] * 16)
    official = f'a photo of a model wearing {"a dress"} {" $ " * 16}'  # train_inversion_adapter.py 465
    assert torch.equal(A.tokenize_prompts(A.prompt("dresses", 16)), A.tokenize_prompts(official))
    ids = A.tokenize_prompts([p])
    assert ids.shape == (1, 77) and int((ids == 259).sum()) == 16
    with pytest.raises(ValueError, match="category: expected one of"):
        A.prompt("t-shirt")
    with pytest.raises(ValueError, match="n: expected a positive"):
        A.prompt("upper_body", 0)


def _dollar_words(clip: C.CLIP, b: int, n: int) -> torch.Tensor:
    table = clip.hf.text_model.embeddings.token_embedding.weight.detach()
    return table[259].expand(b, n, -1).clone()


def test_placeholder_embedding_reproduces_plain_encoder(tiny_clip):
    n = 4
    ids = A.tokenize_prompts([A.prompt("upper_body", n), A.prompt("dresses", n), ""], tiny_clip)
    with torch.no_grad():
        plain = tiny_clip.encode_text(ids).hidden_states
        out = A.encode_text_with_pseudo_words(tiny_clip, ids, _dollar_words(tiny_clip, 3, n))
        via_hf = A.encode_text_with_pseudo_words(tiny_clip.hf, ids, _dollar_words(tiny_clip, 3, n))
    assert out.shape == (3, 77, TINY_CLIP.text_width)
    torch.testing.assert_close(out, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(via_hf, plain, rtol=1e-5, atol=1e-6)


def test_each_pseudo_word_lands_on_its_placeholder(tiny_clip):
    n = 4
    ids = A.tokenize_prompts([A.prompt("upper_body", n), A.prompt("dresses", n), ""], tiny_clip)
    first = (ids == 259).int().argmax(dim=1)
    with torch.no_grad():
        plain = tiny_clip.encode_text(ids).hidden_states
        for k in range(n):
            words = _dollar_words(tiny_clip, 3, n)
            words[:, k] = torch.randn(3, TINY_CLIP.text_width)
            out = A.encode_text_with_pseudo_words(tiny_clip, ids, words)
            for row in range(2):
                pos = int(first[row]) + k
                # causal text transformer: positions before the replaced word are untouched, it and later ones change
                torch.testing.assert_close(out[row, :pos], plain[row, :pos], rtol=1e-5, atol=1e-6)
                assert (out[row, pos:] - plain[row, pos:]).abs().amax(dim=-1).min() > 1e-4
            torch.testing.assert_close(out[2], plain[2], rtol=1e-5, atol=1e-6)  # the empty prompt: dropped text


def test_pseudo_words_get_gradients(tiny_clip):
    ids = A.tokenize_prompts([A.prompt("upper_body", 2)], tiny_clip)
    words = torch.randn(1, 2, TINY_CLIP.text_width, requires_grad=True)
    A.encode_text_with_pseudo_words(tiny_clip, ids, words).square().sum().backward()
    assert words.grad is not None and (words.grad.abs().sum(dim=-1) > 0).all()


def test_encode_with_pseudo_words_bad_inputs(tiny_clip):
    w = TINY_CLIP.text_width
    caption = A.tokenize_prompts(["a red striped t-shirt"], tiny_clip)
    with pytest.raises(ValueError, match=r"no placeholder '\$' \(token id 259\).*expected 4 placeholders"):
        A.encode_text_with_pseudo_words(tiny_clip, caption, torch.zeros(1, 4, w))
    three = A.tokenize_prompts([A.prompt("upper_body", 3)], tiny_clip)
    with pytest.raises(ValueError, match=r"has 3 placeholders .*expected 4"):
        A.encode_text_with_pseudo_words(tiny_clip, three, torch.zeros(1, 4, w))
    with pytest.raises(ValueError, match=rf"pseudo_words: expected \(B, N, d_text\) = \(1, N, {w}\)"):
        A.encode_text_with_pseudo_words(tiny_clip, three, torch.zeros(1, 3, w + 1))
    with pytest.raises(ValueError, match=r"pseudo_words: expected .*\(1, N"):
        A.encode_text_with_pseudo_words(tiny_clip, three, torch.zeros(2, 3, w))
    split = A.tokenize_prompts(["a photo of $ $ a model $ $"], tiny_clip)
    with pytest.raises(ValueError, match="must be consecutive"):
        A.encode_text_with_pseudo_words(tiny_clip, split, torch.zeros(1, 4, w))
    with pytest.raises(TypeError, match="clip_or_text_model"):
        A.encode_text_with_pseudo_words(torch.nn.Linear(2, 2), three, torch.zeros(1, 3, w))


def test_adapter_shape_cls_token_and_official_layout(tiny_clip):
    adapter = A.InversionAdapter.for_clip(tiny_clip, num_pseudo_words=5).eval()
    with torch.no_grad():
        states = tiny_clip.encode_image(torch.rand(3, 3, 32, 24) * 2 - 1).hidden_states  # (3, 1 + 4 patches, 32)
        out = adapter(states)
        assert out.shape == (3, 5, TINY_CLIP.text_width)
        # the MLP reads the class token (index 0) of the new encoder layer's output, after the layer norm
        seen = {}
        hook = adapter.layers.register_forward_hook(lambda _m, inp, _o: seen.update(x=inp[0]))  # returns None
        adapter(states)
        hook.remove()
        layer_out = adapter.encoder_layers[0](states, None)
        layer_out = layer_out[0] if isinstance(layer_out, tuple) else layer_out
        torch.testing.assert_close(seen["x"], adapter.post_layernorm(layer_out[:, 0]))
        # without encoder layers only the class token matters
        bare = A.InversionAdapter.for_clip(tiny_clip, num_pseudo_words=5, num_encoder_layers=0).eval()
        moved_patches = states.clone()
        moved_patches[:, 1:] += 1.0
        torch.testing.assert_close(bare(moved_patches), bare(states))
        moved_cls = states.clone()
        moved_cls[:, 0] += torch.linspace(-1.0, 1.0, states.shape[-1])  # not a constant shift: the layer norm removes those
        assert not torch.allclose(bare(moved_cls), bare(states))
    keys = set(adapter.state_dict())  # the official module's names (inversion_adapter.py), so its weights load
    assert {"post_layernorm.weight", "layers.0.weight", "layers.3.weight", "layers.6.weight",
            "encoder_layers.0.self_attn.q_proj.weight", "encoder_layers.0.mlp.fc1.weight"} <= keys
    d = TINY_CLIP.vision_width
    assert adapter.layers[0].weight.shape == (4 * d, d) and adapter.layers[3].weight.shape == (4 * d, 4 * d)
    assert adapter.layers[6].weight.shape == (5 * TINY_CLIP.text_width, 4 * d)
    assert [type(m) for m in adapter.layers] == [torch.nn.Linear, torch.nn.GELU, torch.nn.Dropout] * 2 + [torch.nn.Linear]
    assert adapter.layers[2].p == 0.5


def test_adapter_feeds_the_text_encoder_end_to_end(tiny_clip):
    adapter = A.InversionAdapter.for_clip(tiny_clip, num_pseudo_words=4).train()
    states = tiny_clip.encode_image(torch.rand(2, 3, 32, 24) * 2 - 1).hidden_states.detach()
    ids = A.tokenize_prompts([A.prompt("upper_body", 4)] * 2, tiny_clip)
    hidden = A.encode_text_with_pseudo_words(tiny_clip, ids, adapter(states))
    hidden.mean().backward()
    assert adapter.layers[6].weight.grad.abs().sum() > 0
    assert adapter.encoder_layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_adapter_bad_inputs(tiny_clip):
    with pytest.raises(TypeError, match="vision_config: expected a transformers CLIPVisionConfig"):
        A.InversionAdapter(tiny_clip.hf.config.text_config, 32)
    with pytest.raises(ValueError, match="num_pseudo_words: expected an int >= 1"):
        A.InversionAdapter.for_clip(tiny_clip, num_pseudo_words=0)
    adapter = A.InversionAdapter.for_clip(tiny_clip, num_pseudo_words=2)
    with pytest.raises(ValueError, match=r"x: expected the image tower's hidden states \(B, T, 32\)"):
        adapter(torch.zeros(2, 5, 64))
