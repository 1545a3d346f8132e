"""LaDI-VTON's latent space: the KL autoencoder's hooks (vtonlab.ladi.vae) and EMASC (vtonlab.ladi.emasc)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from vtonlab.ladi import emasc as E
from vtonlab.ladi import vae as V

H, W = 64, 48


def _tiny_config(**kw) -> V.VAEConfig:
    return V.VAEConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, image_size=(H, W), **kw)


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _mask(n: int = 2) -> torch.Tensor:
    m = torch.zeros(n, 1, H, W)
    m[:, :, 18:44, 10:38] = 1
    return m


def _official_decoder(vae, z, skips):
    """The official LaDI-VTON Decoder.forward (src/models/vae.py), transcribed on diffusers' blocks: every skip but the
    last is added to an up block's input; the last after the final activation."""
    dec = vae.decoder
    sample = dec.conv_in(vae.post_quant_conv(z))
    sample = dec.mid_block(sample)
    for up_block, feat in zip(dec.up_blocks, skips):
        sample = up_block(sample + feat)
    sample = dec.conv_act(dec.conv_norm_out(sample))
    sample = sample + skips[len(dec.up_blocks)]
    return dec.conv_out(sample)


def test_encoder_features_and_skip_channels_follow_the_official_code_for_stable_diffusion():
    sd = V.build_vae(V.VAEConfig(image_size=(H, W))).eval()
    cin, cout = V.skip_channels(sd)
    assert cin == [128, 128, 128, 256, 512]  # train_emasc.py: in_feature_channels
    assert cout == [128, 256, 512, 512, 512]  # out_feature_channels
    with torch.no_grad():
        _, feats = V.encode_with_features(sd, _images(1))
    assert [tuple(f.shape[1:]) for f in feats] == [(3, H, W), (128, H, W), (128, H, W), (128, H // 2, W // 2),
                                                   (256, H // 4, W // 4), (512, H // 8, W // 8)]
    assert torch.equal(feats[1], feats[2])  # conv_in's output is also the first down block's input, as officially
    assert [feats[i].shape[1] for i in V.SKIP_LAYERS] == cin


def test_decode_with_skips_adds_them_where_the_official_decoder_does_and_removes_its_hooks():
    vae = V.build_vae(_tiny_config()).eval()
    em = E.EMASC(*V.skip_channels(vae), kind="nonlinear")
    x, m = _images(), _mask()
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        skips = E.emasc_skips(vae, em, x * (1 - m), m)
        ours = V.decode_with_skips(vae, z, skips)
        official = _official_decoder(vae, z, skips)
        plain = vae.decode(z).sample
    assert torch.allclose(ours, official, atol=1e-5)
    assert (ours - plain).abs().max() > 1e-3  # the skips changed something
    with torch.no_grad():
        assert torch.equal(vae.decode(z).sample, plain)  # no hook left behind
        assert torch.equal(V.decode_with_skips(vae, z, None), plain)


def test_linear_emasc_at_initialisation_leaves_decoding_unchanged():
    vae = V.build_vae(_tiny_config()).eval()
    em = E.build_emasc(vae, "linear")
    x, m = _images(), _mask()
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        skips = E.emasc_skips(vae, em, x * (1 - m), m)
        assert all(torch.count_nonzero(s) == 0 for s in skips)
        assert torch.equal(V.decode_with_skips(vae, z, skips), vae.decode(z).sample)
    nonlinear = E.build_emasc(vae, "nonlinear")
    with torch.no_grad():
        assert not torch.equal(V.decode_with_skips(vae, z, E.emasc_skips(vae, nonlinear, x, m)), vae.decode(z).sample)


def test_emasc_masks_after_the_adapter_and_returns_the_reverse_order():
    torch.manual_seed(0)
    em = E.EMASC([4, 4, 8], [6, 8, 8], kind="nonlinear")
    feats = [torch.randn(2, 4, 16, 12), torch.randn(2, 4, 8, 6), torch.randn(2, 8, 4, 3)]
    m = torch.zeros(2, 1, 16, 12)
    m[:, :, 4:12, 2:10] = 1
    out = em(feats, m)
    # the official forward + mask_features, then the decoder's reverse()
    expected = []
    for conv, f in zip(em.conv, feats):
        g = conv(f)
        expected.append(g * (1 - F.interpolate(m, size=g.shape[-2:])))
    expected.reverse()
    assert [tuple(o.shape) for o in out] == [(2, 8, 4, 3), (2, 8, 8, 6), (2, 6, 16, 12)]
    for a, b in zip(out, expected):
        assert torch.equal(a, b)
    assert out[-1][:, :, 4:12, 2:10].abs().max() == 0  # nothing of the inpainting region comes through
    assert out[-1][:, :, :4].abs().max() > 0


def test_bad_inputs_name_what_was_expected():
    em = E.EMASC([4, 8], [4, 8], kind="linear")
    f = [torch.zeros(1, 4, 16, 12), torch.zeros(1, 8, 8, 6)]
    with pytest.raises(ValueError, match="expected 2 encoder features"):
        em(f[:1], torch.zeros(1, 1, 16, 12))
    with pytest.raises(ValueError, match=r"feature 1: expected \(B, 8, h, w\)"):
        em([f[0], torch.zeros(1, 5, 8, 6)], torch.zeros(1, 1, 16, 12))
    with pytest.raises(ValueError, match=r"mask: expected .*\(1, 1, 16, 12\)"):
        em(f, torch.zeros(1, 1, 32, 24))
    with pytest.raises(ValueError, match="kind"):
        E.EMASC([4], [4], kind="quadratic")
    vae = V.build_vae(_tiny_config()).eval()
    z = torch.zeros(1, 4, H // 8, W // 8)
    with pytest.raises(ValueError, match="expected 5 skip features"):
        V.decode_with_skips(vae, z, [torch.zeros(1)] * 3)
    with pytest.raises(ValueError, match=r"skip feature 0: expected shape \(1, 16, 8, 6\)"):
        V.decode_with_skips(vae, z, [torch.zeros(1, 16, 4, 4)] + [torch.zeros(1)] * 4)
    with pytest.raises(ValueError, match=r"latents: expected \(B, 4, h, w\)"):
        V.decode_with_skips(vae, torch.zeros(1, 3, 8, 6))
    with pytest.raises(ValueError, match="multiples of 8"):
        V.encode_with_features(vae, torch.zeros(1, 3, 60, 48))
    with pytest.raises(ValueError, match="multiple of norm_num_groups"):
        V.VAEConfig(block_out_channels=(8, 12, 16, 16), norm_num_groups=8)


def test_vae_training_measures_its_scaling_factor():
    cfg = _tiny_config(steps=3, batch_size=4, perceptual_weight=0.0)
    images = _images(8, seed=1)
    vae, history, label = V.train(cfg, images, progress=False)
    assert len(history) == 3 and label == "none"
    expected = V.measure_scaling_factor(vae, images)
    assert vae.config.scaling_factor == pytest.approx(expected)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = vae.encode(images).latent_dist.sample(g)
    assert expected == pytest.approx(1 / z.std().item(), rel=1e-5)
    with pytest.raises(ValueError, match="expected \\(N, 3, 64, 48\\)"):
        V.train(cfg, torch.zeros(8, 3, 32, 24), progress=False)


def test_long_recipe_is_its_own_checkpoint_and_keeps_the_default_as_it_was():
    from vtonlab.commands.train import MODELS
    from vtonlab.profiles import resolve

    for name in ("ci", "cpu"):
        prof = resolve(name)
        base, long = V.VAEConfig.for_profile(prof), V.variant_config(prof, "long")
        assert long.steps == 5 * base.steps == 5 * prof.steps_for("vae") and long.perceptual_weight == 0.0
        assert {k for k, v in long.to_dict().items() if base.to_dict()[k] != v} == {"steps", "perceptual_weight"}
    gpu = V.variant_config("gpu", "long")   # the gpu profile's steps are already many: only the VGG term goes
    assert gpu.steps == resolve("gpu").steps_for("vae") and gpu.perceptual_weight == 0.0
    assert V.checkpoint_name(base) == "ladi_vae" and V.checkpoint_name(long, "long") == "ladi_vae_long"
    assert V.checkpoint_name(V.VAEConfig(seed=2), "long") == "ladi_vae_long_seed2"
    assert MODELS["ladi_vae_long"] == "vtonlab.ladi.vae:get_trained_long"
    with pytest.raises(ValueError, match=r"VAE variant: expected one of \['long'\], got 'short'"):
        V.variant_config("ci", "short")
    with pytest.raises(ValueError, match="config or variant"):
        V.get_trained("ci", config=base, variant="long")


def test_emasc_training_updates_only_the_emasc():
    vae = V.build_vae(_tiny_config()).eval()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    x, m = _images(8, seed=2), _mask(8)
    data = torch.utils.data.StackDataset(image=x, agnostic=x * (1 - m), inpaint_mask=m)
    cfg = E.EMASCConfig(kind="linear", vae=_tiny_config(), vgg_weight=0.0, steps=4, batch_size=4, warmup_steps=1)
    em, history, _ = E.train(cfg, vae, data, progress=False)
    assert len(history) == 4 and all(torch.isfinite(torch.tensor(history.losses["loss"])))
    assert all(torch.equal(v, before[k]) for k, v in vae.state_dict().items())
    assert any(p.abs().max() > 0 for p in em.parameters())  # left its zero initialisation
    with pytest.raises(KeyError, match="agnostic"):
        E.train(cfg, vae, torch.utils.data.StackDataset(image=x, inpaint_mask=m), progress=False)


def test_region_metrics_average_inside_the_region_only():
    smap = torch.zeros(2, 3, 4, 4)
    smap[:, :, :2] = 1.0
    top = torch.zeros(2, 1, 4, 4)
    top[:, :, :2] = 1
    assert torch.allclose(E._region_ssim(smap, top), torch.ones(2))
    assert torch.allclose(E._region_ssim(smap, 1 - top), torch.zeros(2))
    pred, target = torch.ones(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    pasted = E._pasted(pred, target, top[:1])
    assert pasted[:, :, :2].min() == 1 and pasted[:, :, 2:].max() == 0


def test_sd_folder_loads_through_the_same_code(tmp_path, monkeypatch):
    tiny = V.build_vae(_tiny_config())
    tiny.save_pretrained(tmp_path / "sd" / "vae", safe_serialization=True)
    monkeypatch.setenv(V.SD_PATH_ENV, str(tmp_path / "sd"))
    loaded, label = V.load()
    assert "Stable Diffusion" in label
    for k, v in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    x = _images(1)
    with torch.no_grad():
        _, feats = V.encode_with_features(loaded, x)
    assert len(feats) == 6
    (tmp_path / "pickled" / "vae").mkdir(parents=True)
    (tmp_path / "pickled" / "vae" / "config.json").write_text(json.dumps(dict(tiny.config)))
    (tmp_path / "pickled" / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        V.load_sd_vae(tmp_path / "pickled")
    monkeypatch.delenv(V.SD_PATH_ENV)
    with pytest.raises(FileNotFoundError, match=V.SD_PATH_ENV):
        V.load_sd_vae()


def test_shipped_ci_checkpoints_load_without_training():
    vae, vckpt = V.get_trained_stack("ci", verbose=False)
    assert vckpt.source == "shipped" and not vckpt.trained and vckpt.name == f"ladi_vae_{V.STACK_RECIPE}"
    assert vae.config.scaling_factor == pytest.approx(vckpt.metrics["scaling_factor"])
    em, eckpt = E.get_trained("ci", kind="linear", seed=1, vae=(vae, vckpt), verbose=False)
    assert eckpt.source == "shipped" and eckpt.config["vae_sha256"] == vckpt.manifest["sha256"]
    assert em.kind == "linear" and eckpt.config["seed"] == 1


def test_stack_autoencoder_is_the_recipe_the_emasc_config_records():
    """Every LaDI-VTON module trains on the stack's recipe: its config is the one EMASC's config embeds."""
    assert V.STACK_RECIPE in V.VARIANTS
    cfg = V.stack_config("cpu")
    assert cfg == V.variant_config("cpu", V.STACK_RECIPE) != V.VAEConfig.for_profile("cpu")
    assert E.EMASCConfig.for_profile("cpu").vae == cfg
