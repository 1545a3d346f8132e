"""The base inpainting latent diffusion model (vtonlab.ladi.inpaint): inputs, schedule, objective, masks, training,
sampling, checkpoints and bad inputs."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from vtonlab.checkpoints import CheckpointError, save_checkpoint
from vtonlab.clip import CLIP
from vtonlab.ladi import inpaint as I
from vtonlab.ladi import vae as V

H, W = 64, 48


@pytest.fixture(scope="module")
def clip() -> CLIP:
    torch.manual_seed(0)
    return CLIP.from_size("ci").eval()


@pytest.fixture(scope="module")
def tiny_vae() -> nn.Module:
    cfg = V.VAEConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, image_size=(H, W))
    return V.build_vae(cfg).eval().requires_grad_(False)


def _config(**kw) -> I.InpaintConfig:
    return I.InpaintConfig.for_profile("ci", **kw)


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    x = torch.rand(n, 3, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return torch.nn.functional.avg_pool2d(x, 9, 1, 4)  # smooth, so the autoencoder has something to keep


def _box_masks(n: int = 2) -> torch.Tensor:
    m = torch.zeros(n, 1, H, W)
    m[:, :, 16:48, 8:40] = 1
    return m


def test_unet_input_has_the_nine_channels_in_stable_diffusion_order():
    g = torch.Generator().manual_seed(0)
    noisy, mask = torch.randn(2, 4, 8, 6, generator=g), torch.rand(2, 1, 8, 6, generator=g)
    masked = torch.randn(2, 4, 8, 6, generator=g)
    expected = torch.empty(2, 9, 8, 6)
    expected[:, 0:4] = noisy  # noisy latent
    expected[:, 4] = mask[:, 0]  # mask
    expected[:, 5:9] = masked  # masked-image latent
    assert torch.equal(I.inpaint_unet_input(noisy, mask, masked), expected)
    assert I.INPAINT_LAYOUT == (("noisy_latent", 4), ("mask", 1), ("masked_image_latent", 4))
    unet = I.build_unet(_config())
    assert unet.config.in_channels == unet.conv_in.in_channels == 9 and unet.config.out_channels == 4


def test_training_objective_feeds_the_unet_noisy_latent_mask_and_masked_latent_in_order(clip):
    cfg = _config()
    unet, sched = I.build_unet(cfg).eval(), I.noise_scheduler(cfg)
    g = torch.Generator().manual_seed(1)
    z0, eps, zm = (torch.randn(2, 4, 8, 6, generator=g) for _ in range(3))
    mask = (torch.rand(2, 1, 8, 6, generator=g) > 0.5).float()
    t = torch.tensor([10, 700])
    seen = []
    handle = unet.conv_in.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    try:
        with torch.no_grad():
            I.diffusion_loss(unet, sched, z0, eps, t, mask, zm, I.encode_prompts(clip, ["a", "b"]))
    finally:
        handle.remove()
    x = seen[0]
    assert torch.allclose(x[:, :4], sched.add_noise(z0, eps, t)) and torch.equal(x[:, 4:5], mask) and torch.equal(x[:, 5:9], zm)


def test_noise_schedule_is_stable_diffusions_scaled_linear_formula():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    train, sample = I.noise_scheduler(), I.sampling_scheduler()
    for sched in (train, sample, I.noise_scheduler(_config())):
        assert torch.allclose(sched.alphas_cumprod.double(), abar, atol=1e-6, rtol=0)
        assert sched.config.prediction_type == "epsilon"
    assert float(abar[-1]) == pytest.approx(0.0047, abs=1e-4)  # SD's terminal signal level (not zero-SNR)
    sample.set_timesteps(10)
    assert sample.timesteps.tolist() == list(range(901, 0, -100))  # "leading" spacing with steps_offset 1
    assert float(sample.final_alpha_cumprod) == pytest.approx(float(abar[0]))  # set_alpha_to_one=False


def test_epsilon_loss_equals_a_hand_computation(clip):
    cfg = _config()
    unet = I.build_unet(cfg).eval()
    g = torch.Generator().manual_seed(2)
    z0, eps, zm = (torch.randn(3, 4, 8, 6, generator=g) for _ in range(3))
    mask = (torch.rand(3, 1, 8, 6, generator=g) > 0.5).float()
    t = torch.tensor([0, 499, 999])
    states = I.encode_prompts(clip, ["a red shirt", "", "stripes"])
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    a = torch.cumprod(1 - betas, 0)[t].float().view(-1, 1, 1, 1)
    zt = a.sqrt() * z0 + (1 - a).sqrt() * eps  # DDPM Eq. 4
    hand_in = torch.zeros(3, 9, 8, 6)
    hand_in[:, :4], hand_in[:, 4:5], hand_in[:, 5:] = zt, mask, zm
    with torch.no_grad():
        pred = unet(hand_in, t, encoder_hidden_states=states).sample
        hand = ((pred - eps) ** 2).mean()
        ours = I.diffusion_loss(unet, I.noise_scheduler(cfg), z0, eps, t, mask, zm, states)
    assert torch.allclose(ours, hand, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(hand, ((pred - z0) ** 2).mean(), rtol=1e-2)  # the target is the noise, not z_0


def test_text_dropout_rate_measured_over_many_draws():
    assert I.InpaintConfig().text_dropout == _config().text_dropout == 0.1
    prompts = [f"caption {i}" for i in range(20000)]
    out, dropped = I.drop_text(prompts, 0.1, torch.Generator().manual_seed(0))
    assert abs(float(dropped.float().mean()) - 0.1) < 0.01
    assert all(o == "" for o, d in zip(out, dropped.tolist()) if d)
    assert all(o == p for o, p, d in zip(out, prompts, dropped.tolist()) if not d)
    again, _ = I.drop_text(prompts, 0.1, torch.Generator().manual_seed(0))
    assert again == out


def test_random_masks_stay_in_the_stated_area_range_and_mix_strokes_and_boxes():
    cfg = _config()
    lo, hi = cfg.random_mask_area
    masks, kinds = I.random_masks(300, (H, W), seed=0, area=cfg.random_mask_area)
    area = masks.flatten(1).mean(1)
    assert masks.shape == (300, 1, H, W) and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert bool(((area >= lo) & (area <= hi)).all()), (float(area.min()), float(area.max()))
    assert 100 < kinds.count("strokes") < 200 and 100 < kinds.count("boxes") < 200 and kinds.count("fallback") < 10
    assert torch.equal(I.random_masks(5, (H, W), seed=3)[0], I.random_masks(5, (H, W), seed=3)[0])
    assert not torch.equal(I.random_masks(5, (H, W), seed=3)[0], I.random_masks(5, (H, W), seed=4)[0])
    full, kinds = I.random_masks(4, (H, W), seed=0, full_prob=1.0)
    assert bool((full == 1).all()) and kinds == ["full"] * 4
    tryon = _box_masks(400)
    mixed, used = I.training_masks(tryon, cfg, torch.Generator().manual_seed(0))
    assert abs(float(used.float().mean()) - cfg.tryon_mask_prob) < 0.07
    assert torch.equal(mixed[used], tryon[used]) and not torch.equal(mixed[~used], tryon[~used])


def test_encode_prompts_gives_the_full_sequence_and_the_penultimate_layer_as_sd2_builds_it(clip):
    last = I.encode_prompts(clip, ["a blue shirt", ""])
    assert last.shape == (2, 77, clip.text_width)
    from vtonlab.ladi.adapter import tokenize_prompts

    tok_ids = tokenize_prompts(["a blue shirt", ""], clip)
    with torch.no_grad():
        assert torch.allclose(last, clip.hf.text_model(input_ids=tok_ids).last_hidden_state)
        pen = I.encode_prompts(clip, ["a blue shirt", ""], layer="penultimate")
        cut = copy.deepcopy(clip)
        cut.hf.text_model.encoder.layers = cut.hf.text_model.encoder.layers[:-1]  # SD 2: 23 of OpenCLIP's 24 layers
        assert torch.allclose(pen, I.encode_prompts(cut, ["a blue shirt", ""]), atol=1e-5)
    assert not torch.allclose(pen, last, atol=1e-3)


def test_three_training_steps_change_the_unet_and_nothing_else(clip, tiny_vae):
    data = I.CaptionedImages(_images(8), _box_masks(8), [f"a shirt {i}" for i in range(8)])
    cfg = _config(steps=3, batch_size=4, n_train=8)
    vae_before = {k: v.clone() for k, v in tiny_vae.state_dict().items()}
    clip_before = {k: v.clone() for k, v in clip.state_dict().items()}
    unet, history = I.train(cfg, data, vae=tiny_vae, text_encoder=clip, progress=False)
    assert all(torch.equal(v, tiny_vae.state_dict()[k]) for k, v in vae_before.items())
    assert all(torch.equal(v, clip.state_dict()[k]) for k, v in clip_before.items())
    frozen = list(tiny_vae.parameters()) + list(clip.hf.text_model.parameters())
    assert not any(p.requires_grad for p in frozen)
    init = I.build_unet(cfg).state_dict()
    moved = [k for k, v in unet.state_dict().items() if not torch.equal(v, init[k])]
    assert len(moved) > len(init) // 2  # the (averaged) UNet did train
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(history.losses["loss"])))


class OracleUNet(nn.Module):
    """A perfect denoiser for images equal to their masked version: it reads ``z_0`` from the masked-image latent
    channels (5:9) and returns the noise that explains ``z_t``. Sampling with it must end at that latent."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(in_channels=9)
        self.abar = I.noise_scheduler().alphas_cumprod

    def forward(self, x, t, encoder_hidden_states=None):
        a = self.abar[int(t)]
        return SimpleNamespace(sample=(x[:, :4] - a.sqrt() * x[:, 5:9]) / (1 - a).sqrt())


@pytest.fixture(scope="module")
def deterministic_vae() -> nn.Module:
    """The shipped ci autoencoder with its posterior variance set to ~0, so the masked image has one latent."""
    vae = copy.deepcopy(V.get_trained("ci", verbose=False)[0])
    with torch.no_grad():
        vae.quant_conv.weight[4:] = 0
        vae.quant_conv.bias[4:] = -30.0  # log-variance: std = e^-15
    return vae


def test_inpaint_keeps_the_unmasked_region_up_to_the_autoencoder_or_exactly_when_compositing(clip, deterministic_vae):
    vae, x, m = deterministic_vae, _images(), _box_masks()
    kw = dict(num_inference_steps=10, guidance_scale=7.5, generator=None)
    out = I.inpaint(OracleUNet(), vae, clip, x, m, ["a shirt", ""], **{**kw, "generator": torch.Generator().manual_seed(1)})
    with torch.no_grad():
        ref = V.decode_latents(vae, V.encode_latents(vae, I.masked_image(x, m)))  # the oracle's end point, decoded
    assert out.shape == x.shape and float((out - ref).abs().max()) < 0.1 and float((out - ref).abs().mean()) < 0.01
    keep = 1 - m
    err = float(((out - x).abs() * keep).sum() / keep.sum() / 3)
    vae_err = float(((ref - x).abs() * keep).sum() / keep.sum() / 3)
    assert err <= vae_err + 0.01  # without compositing, the kept region is as close as the autoencoder allows
    pasted = I.inpaint(OracleUNet(), vae, clip, x, m, "a shirt", composite=True,
                       **{**kw, "generator": torch.Generator().manual_seed(1)})
    assert torch.equal(pasted * keep, x * keep)  # compositing: exactly the input outside the mask
    assert torch.allclose(pasted * m, out * m, atol=1e-5)  # the generated region is the sampler's


def test_get_trained_refuses_a_checkpoint_of_another_config_naming_it_and_the_fields(tmp_path, clip, tiny_vae):
    cfg = _config()
    unet = I.build_unet(cfg)
    expected = {**I.checkpoint_config(cfg, "ci"), "profile": "ci"}
    good = save_checkpoint(tmp_path / "inpaint_good.safetensors", {"unet": unet}, name="ladi_inpaint", config=expected,
                           profile="ci")
    loaded, ckpt = I.get_trained("ci", vae=(tiny_vae, None), text_encoder=(clip, None), checkpoint=good, verbose=False)
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in loaded.state_dict().items())
    other = {**expected, "lr": 1e-3, "text_dropout": 0.2}
    bad = save_checkpoint(tmp_path / "inpaint_other.safetensors", {"unet": unet}, name="ladi_inpaint", config=other,
                          profile="ci")
    with pytest.raises(CheckpointError, match="inpaint_other.safetensors") as err:
        I.get_trained("ci", vae=(tiny_vae, None), text_encoder=(clip, None), checkpoint=bad, verbose=False)
    assert "lr: checkpoint 0.001, requested 0.0005" in str(err.value) and "text_dropout" in str(err.value)
    vae_sha = SimpleNamespace(manifest={"sha256": "another autoencoder"})
    with pytest.raises(CheckpointError, match="vae_sha256"):
        I.get_trained("ci", vae=(tiny_vae, vae_sha), text_encoder=(clip, None), checkpoint=good, verbose=False)


def test_bad_inputs_name_what_was_expected(clip, tiny_vae):
    unet, x, m = I.build_unet(_config()), _images(), _box_masks()
    with pytest.raises(ValueError, match=r"masks: expected shape \(2, 1, 64, 48\)"):
        I.inpaint(unet, tiny_vae, clip, x, m[:, :, :32], "a shirt", num_inference_steps=2)
    with pytest.raises(ValueError, match=r"latents: expected the initial noise of shape \(2, 4, 8, 6\)"):
        I.inpaint(unet, tiny_vae, clip, x, m, "a shirt", num_inference_steps=2, latents=torch.randn(2, 4, 4, 6))
    with pytest.raises(ValueError, match=r"masked_image_latent: expected a float tensor of shape \(2, 4, 8, 6\)"):
        I.inpaint_unet_input(torch.randn(2, 4, 8, 6), torch.zeros(2, 1, 8, 6), torch.randn(2, 4, 16, 12))
    with pytest.raises(ValueError, match=r"mask: expected a float tensor of shape \(2, 1, 8, 6\).*resize_mask"):
        I.inpaint_unet_input(torch.randn(2, 4, 8, 6), torch.zeros(2, 1, 64, 48), torch.randn(2, 4, 8, 6))
    with pytest.raises(ValueError, match="prompts: expected one prompt or 2"):
        I.inpaint(unet, tiny_vae, clip, x, m, ["a", "b", "c"], num_inference_steps=2)
    from vtonlab.ladi.unet import widen_conv_in

    wide = widen_conv_in(I.build_unet(_config()), 31)
    with pytest.raises(ValueError, match="expected a 9-channel inpainting UNet.*in_channels=31"):
        I.inpaint(wide, tiny_vae, clip, x, m, "a shirt", num_inference_steps=2)
    with pytest.raises(ValueError, match="InpaintConfig.text_layer"):
        _config(text_layer="middle")
    with pytest.raises(ValueError, match="random_mask_area"):
        _config(random_mask_area=(0.6, 0.2))
    data = I.CaptionedImages(_images(4), _box_masks(4), ["a"] * 4)
    with pytest.raises(ValueError, match="cross_attention_dim=32 but the text encoder is 64 wide"):
        I.train(_config(cross_attention_dim=32, steps=1, batch_size=4), data, vae=tiny_vae, text_encoder=clip, progress=False)


def test_guidance_combines_the_empty_prompt_and_text_branches_as_classifier_free_guidance():
    class TextMean(nn.Module):  # noise prediction = the mean of the text states, so the two branches differ
        config = SimpleNamespace(in_channels=9)

        def forward(self, x, t, encoder_hidden_states=None):
            assert x.shape[1] == 9
            return SimpleNamespace(sample=encoder_hidden_states.mean((1, 2)).view(-1, 1, 1, 1).expand(-1, 4, *x.shape[-2:]))

    z, m, zm = torch.randn(2, 4, 8, 6), torch.zeros(2, 1, 8, 6), torch.randn(2, 4, 8, 6)
    text, empty = torch.full((2, 77, 8), 2.0), torch.zeros(2, 77, 8)
    eps = I.predict_noise(TextMean(), z, 5, m, zm, text, empty, guidance_scale=7.5)
    assert torch.allclose(eps, torch.full_like(eps, 0.0 + 7.5 * (2.0 - 0.0)))  # eps(empty) + w (eps(text) - eps(empty))
    assert torch.allclose(I.predict_noise(TextMean(), z, 5, m, zm, text, empty, guidance_scale=1.0), torch.full_like(eps, 2.0))
