"""Pre-training of LaDI-VTON's inversion adapter (vtonlab.ladi.adapter): the loss path through the frozen base
inpainting UNet, what stays frozen, the metrics, checkpoints and bad inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from vtonlab.checkpoints import CheckpointError, save_checkpoint
from vtonlab.clip import CLIP
from vtonlab.clip.images import preprocess
from vtonlab.ladi import adapter as A
from vtonlab.ladi import inpaint as I
from vtonlab.ladi import vae as V
from vtonlab.ladi.unet import resize_mask, widen_conv_in

H, W, N_DATA = 64, 48, 8


@pytest.fixture(scope="module")
def clip() -> CLIP:
    torch.manual_seed(0)
    return CLIP.from_size("ci").eval()


@pytest.fixture(scope="module")
def tiny_vae() -> nn.Module:
    cfg = V.VAEConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, image_size=(H, W))
    return V.build_vae(cfg).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def unet() -> nn.Module:
    return I.build_unet(I.InpaintConfig.for_profile("ci")).eval()


@pytest.fixture(scope="module")
def data() -> A.GarmentPersons:
    """8 persons, each with its own garment and a try-on mask covering latent row i only (so rows tell samples apart)."""
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(N_DATA, 1, H, W)
    for i in range(N_DATA):
        masks[i, :, 8 * i:8 * i + 8, 8:40] = 1
    return A.GarmentPersons(torch.rand(N_DATA, 3, H, W, generator=g) * 2 - 1, masks,
                            torch.rand(N_DATA, 3, H, W, generator=g) * 2 - 1, [f"a shirt {i}" for i in range(N_DATA)])


def _config(**kw) -> A.AdapterConfig:
    return A.AdapterConfig.for_profile("ci", **{"batch_size": 4, "n_train": N_DATA, "eval_samples": 4, **kw})


def test_config_defaults_are_the_official_scripts_and_checkpoint_names_follow_the_variants():
    d = A.AdapterConfig()
    official = dict(num_pseudo_words=16, num_encoder_layers=1, dropout=0.5, lr=1e-5, betas=(0.9, 0.999), weight_decay=1e-2,
                    eps=1e-8, grad_clip=1.0, warmup_steps=500, steps=200_001, batch_size=16, image_size=(512, 384))
    assert {k: getattr(d, k) for k in official} == official
    ci = A.AdapterConfig.for_profile("ci")
    assert (ci.steps, ci.warmup_steps, ci.image_size, ci.batch_size) == (60, 3, (64, 48), 8)
    assert ci.prompt == "a photo of a model wearing an upper body garment " + " ".join(["$"] * 16)
    assert [A.checkpoint_name(A.AdapterConfig(num_pseudo_words=n, seed=s)) for n, s in ((16, 0), (8, 0), (16, 2), (4, 1))] \
        == ["ladi_adapter", "ladi_adapter_n8", "ladi_adapter_seed2", "ladi_adapter_n4_seed1"]


def test_the_loss_feeds_the_base_unet_the_pseudo_words_of_each_persons_own_garment(clip, tiny_vae, unet, data, monkeypatch):
    seen: dict[str, list] = {"pixels": [], "vision": [], "adapter_in": [], "adapter_out": [], "unet_x": [], "unet_text": []}
    forward = A.InversionAdapter.forward

    def spy_adapter(self, x):
        out = forward(self, x)
        seen["adapter_in"].append(x.detach().clone())
        seen["adapter_out"].append(out.detach().clone())
        return out

    def spy_vision(_m, _args, kwargs, out):
        seen["pixels"].append(kwargs["pixel_values"].clone())
        seen["vision"].append(out.last_hidden_state.clone())

    def spy_unet(_m, args, kwargs):
        seen["unet_x"].append(args[0].detach().clone())
        seen["unet_text"].append(kwargs["encoder_hidden_states"].detach().clone())

    monkeypatch.setattr(A.InversionAdapter, "forward", spy_adapter)
    hooks = [clip.hf.vision_model.register_forward_hook(spy_vision, with_kwargs=True),
             unet.register_forward_pre_hook(spy_unet, with_kwargs=True)]
    try:
        A.train(_config(steps=1), data, unet=unet, vae=tiny_vae, clip=clip, progress=False)
    finally:
        for h in hooks:
            h.remove()
    assert all(len(v) == 1 for v in seen.values())
    pixels, x, text = seen["pixels"][0], seen["unet_x"][0], seen["unet_text"][0]
    every = preprocess(data.cloths, clip.image_size, clip.image_mean, clip.image_std, clip.fit)
    rows = [int((pixels[r] - every).flatten(1).abs().amax(1).argmin()) for r in range(len(pixels))]
    assert torch.allclose(pixels, every[rows], atol=1e-6) and len(set(rows)) == len(rows)
    # the person of each row is the one wearing that garment: its own try-on mask reaches the UNet's mask channel
    assert torch.equal(x[:, 4:5], resize_mask(data.masks[rows], x.shape[-2:]))
    # the adapter reads the image tower's last hidden states (class token first, no post layer norm)
    assert torch.equal(seen["adapter_in"][0], seen["vision"][0])
    words = seen["adapter_out"][0]
    ids = A.tokenize_prompts([A.prompt("upper_body", 16)] * len(rows), clip)
    with torch.no_grad():
        expected = A.encode_text_with_pseudo_words(clip, ids, words)
        literal = I.encode_prompts(clip, [A.prompt("upper_body", 16)] * len(rows))  # "$" read as a word
    assert torch.allclose(text, expected, atol=1e-6)
    assert (text - literal).abs().amax() > 1e-2


def test_three_steps_train_the_adapter_and_leave_the_frozen_models_bit_identical(clip, tiny_vae, unet, data):
    before = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in
              (("unet", unet), ("vae", tiny_vae), ("clip", clip))}
    cfg = _config(steps=3)
    adapter, history = A.train(cfg, data, unet=unet, vae=tiny_vae, clip=clip, progress=False)
    for name, m in (("unet", unet), ("vae", tiny_vae), ("clip", clip)):
        after = m.state_dict()
        changed = [k for k, v in before[name].items() if not torch.equal(v, after[k])]
        assert not changed, f"{name} changed: {changed[:3]}"
        assert not any(p.requires_grad for p in m.parameters())
    init = A.build_adapter(cfg, clip).state_dict()
    moved = [k for k, v in adapter.state_dict().items() if not torch.equal(v, init[k])]
    assert len(moved) == len(init)  # every adapter tensor learned
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(history.losses["loss"])))


def test_evaluate_shares_the_noise_across_prompts_and_matches_the_training_objective(clip, tiny_vae, unet, data):
    torch.manual_seed(3)
    adapter = A.InversionAdapter.for_clip(clip).eval()
    out = A.evaluate(adapter, unet, tiny_vae, clip, data, n=4, seed=5)
    assert out["n_eval"] == 4 and set(A.TEXT_CONDITIONS) == {"inversion", "caption", "empty"}
    x, m = data.images[:4], data.masks[:4]
    sf, sched = tiny_vae.config.scaling_factor, I.noise_scheduler()
    with torch.no_grad():
        z = tiny_vae.encode(x).latent_dist.mode() * sf
        zm = tiny_vae.encode(I.masked_image(x, m)).latent_dist.mode() * sf
        ml = resize_mask(m, z.shape[-2:])
        g = torch.Generator().manual_seed(5)
        noises = {t: torch.randn(z.shape, generator=g) for t in A.EVAL_TIMESTEPS}
        states = {"empty": I.encode_prompts(clip, [""] * 4),
                  "inversion": A.pseudo_word_states(clip, adapter(A.garment_features(clip, data.cloths[:4])))}
        for cond, st in states.items():
            inside = []
            for t in A.EVAL_TIMESTEPS:
                ts = torch.full((4,), t)
                mse = I.diffusion_loss(unet, sched, z, noises[t], ts, ml, zm, st)
                assert out[f"test_mse_{cond}_t{t}"] == pytest.approx(float(mse), rel=1e-5)
                pred = unet(I.inpaint_unet_input(sched.add_noise(z, noises[t], ts), ml, zm), ts, encoder_hidden_states=st).sample
                inside.append(float(((pred - noises[t]) ** 2 * ml).sum() / (ml.sum() * 4)))
            assert out[f"test_mse_inside_{cond}"] == pytest.approx(sum(inside) / 3, rel=1e-5)
    assert out["inversion_gain_inside"] == pytest.approx(out["test_mse_inside_empty"] - out["test_mse_inside_inversion"])
    assert out["test_mse_inversion_t500"] != out["test_mse_empty_t500"]  # the prompt, not the noise, differs


def test_get_trained_trains_caches_and_reloads_the_variant(clip, tiny_vae, unet, data, tmp_path, monkeypatch):
    monkeypatch.setenv("VTONLAB_CACHE", str(tmp_path))
    cfg = _config(steps=2, num_pseudo_words=4, seed=1)
    kw = dict(config=cfg, inpaint=(unet, None), vae=(tiny_vae, None), clip=(clip, None), train_data=data, eval_data=data,
              progress=False, verbose=False)
    adapter, ckpt = A.get_trained("ci", **kw)
    assert ckpt.name == "ladi_adapter_n4_seed1" and ckpt.path.parent == tmp_path / "checkpoints" and ckpt.step == 2
    assert ckpt.config["num_pseudo_words"] == 4 and ckpt.config["inpaint_sha256"] is None and "data" in ckpt.config
    assert {"test_mse_inversion", "test_mse_caption", "test_mse_empty", "inversion_gain_inside"} <= set(ckpt.metrics)
    assert adapter.num_pseudo_words == 4 and not adapter.training
    again, ckpt2 = A.get_trained("ci", **kw)
    assert ckpt2.source == "cache"
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in adapter.state_dict().items())
    init = A.build_adapter(cfg, clip).state_dict()
    assert not torch.equal(again.state_dict()["layers.6.weight"], init["layers.6.weight"])  # the trained weights loaded


def test_get_trained_refuses_a_checkpoint_of_another_config_naming_it_and_the_fields(clip, tiny_vae, unet, tmp_path):
    cfg = A.AdapterConfig.for_profile("ci")
    adapter = A.build_adapter(cfg, clip)
    expected = {**A.checkpoint_config(cfg, "ci"), "profile": "ci"}
    parts = dict(inpaint=(unet, None), vae=(tiny_vae, None), clip=(clip, None), verbose=False)
    good = save_checkpoint(tmp_path / "adapter_good.safetensors", {"adapter": adapter}, name="ladi_adapter",
                           config=expected, profile="ci")
    loaded, _ = A.get_trained("ci", checkpoint=good, **parts)
    assert all(torch.equal(v, adapter.state_dict()[k]) for k, v in loaded.state_dict().items())
    other = {**expected, "lr": 1e-3, "num_pseudo_words": 8}
    bad = save_checkpoint(tmp_path / "adapter_other.safetensors", {"adapter": adapter}, name="ladi_adapter",
                          config=other, profile="ci")
    with pytest.raises(CheckpointError, match="adapter_other.safetensors") as err:
        A.get_trained("ci", checkpoint=bad, **parts)
    assert "lr: checkpoint 0.001, requested 0.0001" in str(err.value) and "num_pseudo_words" in str(err.value)
    another_base = SimpleNamespace(manifest={"sha256": "another base UNet"})
    with pytest.raises(CheckpointError, match="inpaint_sha256"):
        A.get_trained("ci", checkpoint=good, **{**parts, "inpaint": (unet, another_base)})


def test_bad_inputs_name_what_was_expected(clip, tiny_vae, unet, data):
    words = torch.zeros(2, 16, clip.text_width)
    with pytest.raises(ValueError, match=r"prompts\[1\] 'a photo of a red shirt' has 0 placeholders"):
        A.pseudo_word_states(clip, words, ["a photo of a model wearing a shirt " + " ".join(["$"] * 16), "a photo of a red shirt"])
    with pytest.raises(ValueError, match=r"has 8 placeholders .* need 16"):
        A.pseudo_word_states(clip, words, A.prompt("upper_body", 8))
    small = A.GarmentPersons(data.images[:, :, :32, :24], data.masks[:, :, :32, :24], data.cloths, data.captions)
    with pytest.raises(ValueError, match=r"training images: expected \(64, 48\) \(AdapterConfig.image_size\), got \(32, 24\)"):
        A.train(_config(steps=1), small, unet=unet, vae=tiny_vae, clip=clip, progress=False)
    with pytest.raises(ValueError, match="at least one batch of 16"):
        A.train(_config(steps=1, batch_size=16), data, unet=unet, vae=tiny_vae, clip=clip, progress=False)
    with pytest.raises(ValueError, match="9-channel base inpainting UNet.*in_channels=31"):
        A.train(_config(steps=1), data, unet=widen_conv_in(I.build_unet(I.InpaintConfig.for_profile("ci")), 31),
                vae=tiny_vae, clip=clip, progress=False)
    with pytest.raises(ValueError, match=r"cloth: expected in-shop garments.*got \(2, 1, 64, 48\)"):
        A.garment_features(clip, torch.zeros(2, 1, 64, 48))
    with pytest.raises(ValueError, match="AdapterConfig.category"):
        A.AdapterConfig(category="shoes")
    with pytest.raises(ValueError, match="AdapterConfig.num_pseudo_words"):
        A.AdapterConfig(num_pseudo_words=0)
    with pytest.raises(ValueError, match="num_pseudo_words=8 differs from config.num_pseudo_words=16"):
        A.get_trained("ci", config=_config(), num_pseudo_words=8)
    with pytest.raises(ValueError, match=r"AdapterConfig.image_size \(128, 96\) differs from profile 'ci'"):
        A.get_trained("ci", config=A.AdapterConfig.for_profile("cpu"))
