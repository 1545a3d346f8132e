"""Tests for vtonlab.mgvton.refine: MG-VTON's refinement render (composition mask) and its "w/o Mask" ablation."""

import math

import pytest
import torch

from vtonlab.data.preload import Preloaded
from vtonlab.mgvton import refine as R
from vtonlab.mgvton.networks import ResnetGenerator
from vtonlab.profiles import get_profile

H, W = 32, 24


def _tiny(**kw):
    return R.RefineConfig(image_size=(H, W), width=4, n_blocks=1, **kw)


def _images(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    warped = torch.rand(b, 3, H, W, generator=g) * 2 - 1
    coarse = torch.rand(b, 3, H, W, generator=g) * 2 - 1
    pose = torch.rand(b, 18, H, W, generator=g)
    return warped, coarse, pose, g


def l1_perceptual(a, b):
    """A stand-in for the VGG loss in exact-value tests: mean |a - b|."""
    return (a - b).abs().mean()


# ------------------------------------------------------------------ config and inputs


def test_config_per_profile_and_paper_defaults():
    c = R.RefineConfig()
    assert (c.width, c.n_down, c.n_blocks, c.norm) == (64, 3, 9, "batch")
    assert (c.lr, c.betas, c.composition, c.mask_target) == (2e-4, (0.5, 0.999), True, "one")
    assert (c.warp, c.coarse, c.coarse_factor, c.out_channels) == ("gt_flow", "blur", 4, 1)
    ci = R.RefineConfig.for_profile("ci")
    assert (ci.width, ci.n_blocks, ci.steps) == (16, 2, get_profile("ci").steps_for("refine"))
    cpu = R.RefineConfig.for_profile("cpu")
    assert (cpu.width, cpu.n_blocks, cpu.batch_size, cpu.precision) == (16, 2, 8, "bf16")  # compact: six shipped seeds
    assert R.RefineConfig.for_profile("ci").precision == "fp32"
    with pytest.raises(ValueError, match=r"RefineConfig.precision: expected one of \['fp32', 'bf16'\]"):
        _tiny(precision="fp16")
    gpu = R.RefineConfig.for_profile("gpu")
    assert (gpu.width, gpu.n_blocks, gpu.image_size) == (64, 9, (256, 192))
    assert R.RefineConfig.for_profile("ci", composition=False).out_channels == 3
    assert R.RefineConfig.for_profile("ci").to_dict()["betas"] == [0.5, 0.999]
    with pytest.raises(ValueError, match=r"RefineConfig.coarse: expected one of \['blur', 'fn'\]"):
        _tiny(coarse="warpgan")
    with pytest.raises(ValueError, match="RefineConfig.mask_target"):
        _tiny(mask_target="zero")
    with pytest.raises(ValueError, match="RefineConfig.coarse_factor: expected a divisor"):
        _tiny(coarse_factor=5)
    with pytest.raises(ValueError, match="perceptual_weight > 0"):
        _tiny(perceptual_weight=0.0)
    with pytest.raises(ValueError, match="RefineConfig.composition"):
        _tiny(composition="no")


def test_refine_input_channel_order():
    warped, coarse, pose, _ = _images()
    x = R.refine_input(warped, coarse, pose)
    assert x.shape == (2, R.INPUT_CHANNELS, H, W) and R.INPUT_CHANNELS == 24
    assert [n for n, _ in R.INPUT_LAYOUT] == ["warped_cloth", "coarse", "target_pose"]
    assert torch.equal(x[:, :3], warped) and torch.equal(x[:, 3:6], coarse) and torch.equal(x[:, 6:], pose)


def test_bad_inputs_name_the_expected_shape():
    warped, coarse, pose, _ = _images()
    with pytest.raises(ValueError, match=r"target_pose_map: expected \(2, 18, 32, 24\)"):
        R.refine_input(warped, coarse, pose[:, :17])
    with pytest.raises(ValueError, match=r"coarse: expected \(2, 3, 32, 24\).*got \(2, 3, 16, 12\)"):
        R.refine_input(warped, coarse[..., ::2, ::2], pose)
    with pytest.raises(ValueError, match=r"warped_cloth: expected \(B, 3, H, W\)"):
        R.refine_input(warped[:, :1], coarse, pose)
    with pytest.raises(ValueError, match=r"mask: expected \(2, 1, 32, 24\)"):
        R.compose(torch.rand(2, 3, H, W), warped, coarse)
    with pytest.raises(ValueError, match=r"mask: expected values in \[0, 1\]"):
        R.compose(torch.full((2, 1, H, W), 1.5), warped, coarse)
    with pytest.raises(ValueError, match=r"gt_flow: expected \(2, 32, 24, 2\)"):
        R.flow_warp(warped, torch.zeros(2, H, W, 3), torch.ones(2, 1, H, W))
    with pytest.raises(ValueError, match="coarse_factor: expected a positive divisor"):
        R.blur_coarse(warped, 5)
    with pytest.raises(ValueError, match=r"generator input: expected \(B, 24, H, W\)"):
        R.RefineGenerator(_tiny())(torch.zeros(1, 23, H, W))


# ------------------------------------------------------------------ composition, network, loss


def test_compose_is_the_formula_the_garment_at_one_and_the_coarse_at_zero():
    warped, coarse, _, g = _images()
    mask = torch.rand(2, 1, H, W, generator=g)
    assert torch.allclose(R.compose(mask, warped, coarse), mask * warped + (1 - mask) * coarse)
    assert torch.equal(R.compose(torch.ones(2, 1, H, W), warped, coarse), warped)
    assert torch.equal(R.compose(torch.zeros(2, 1, H, W), warped, coarse), coarse)
    half = torch.zeros(2, 1, H, W)
    half[..., : W // 2] = 1  # garment on the left, coarse on the right, in every channel
    out = R.compose(half, warped, coarse)
    assert torch.equal(out[..., : W // 2], warped[..., : W // 2]) and torch.equal(out[..., W // 2:], coarse[..., W // 2:])


def test_generator_mask_is_a_sigmoid_in_the_unit_interval_and_render_composes():
    torch.manual_seed(0)
    model = R.RefineGenerator(_tiny()).eval()
    with torch.no_grad():
        model.head[-1].weight.mul_(1000)  # pix2pixHD's N(0, 0.02) init gives logits near 0: make them large
    warped, coarse, pose, _ = _images()
    x = R.refine_input(warped, coarse, pose * 100)
    with torch.no_grad():
        mask = model(x)
        logits = ResnetGenerator.forward(model, x)
    assert mask.shape == (2, 1, H, W)
    assert ((logits < 0) | (logits > 1)).any()  # the raw output leaves [0, 1]: the sigmoid is what keeps M inside
    assert mask.min() >= 0 and mask.max() <= 1 and torch.allclose(mask, torch.sigmoid(logits))
    with torch.no_grad():
        res = model.render(warped, coarse, pose * 100)
    assert torch.allclose(res["composition_mask"], mask)
    assert torch.allclose(res["tryon"], mask * warped + (1 - mask) * coarse)


def test_mask_term_is_zero_at_one_and_pulls_the_mask_towards_one():
    cfg = _tiny(perceptual_weight=2.0, mask_weight=3.0)
    warped, coarse, _, g = _images()
    target = torch.rand(2, 3, H, W, generator=g) * 2 - 1
    ones = torch.ones(2, 1, H, W)
    out = R.refine_losses(R.compose(ones, warped, coarse), target, cfg, l1_perceptual, mask=ones)
    p = (warped - target).abs().mean()
    assert out["mask"].item() == 0.0 and torch.allclose(out["loss"], 2.0 * p)
    m = torch.full((2, 1, H, W), 0.25, requires_grad=True)
    out = R.refine_losses(R.compose(m, warped, coarse), target, cfg, l1_perceptual, mask=m)
    assert out["mask"].item() == pytest.approx(0.75)
    assert out["loss"].item() == pytest.approx(2.0 * out["perceptual"].item() + 3.0 * 0.75, rel=1e-6)
    (mask_grad,) = torch.autograd.grad(3.0 * (1 - m).abs().mean(), m)
    assert torch.allclose(mask_grad, torch.full_like(m, -3.0 / m.numel()))  # the same pull up at every pixel
    # CP-VTON's official-code variant: L1 to the warped garment's mask
    cp = _tiny(mask_target="warped_mask")
    wm = torch.zeros(2, 1, H, W)
    wm[..., : W // 2] = 1
    assert R.refine_losses(target, target, cp, l1_perceptual, mask=wm, warped_mask=wm)["mask"].item() == 0.0
    assert R.refine_losses(target, target, cp, l1_perceptual, mask=ones, warped_mask=wm)["mask"].item() == 0.5
    with pytest.raises(ValueError, match="warped_mask: mask_target='warped_mask' needs"):
        R.refine_losses(target, target, cp, l1_perceptual, mask=ones)
    with pytest.raises(ValueError, match=r"composition=True needs the composition mask M \(B, 1, H, W\)"):
        R.refine_losses(target, target, cfg, l1_perceptual)


def test_without_mask_ablation_outputs_the_image_and_has_no_mask_term():
    torch.manual_seed(0)
    cfg = _tiny(composition=False, perceptual_weight=2.0, mask_weight=3.0)
    model = R.RefineGenerator(cfg).eval()
    with torch.no_grad():
        model.head[1].weight.mul_(1000)  # large pre-activations: only the tanh keeps the image in [-1, 1]
    warped, coarse, pose, g = _images()
    x = R.refine_input(warped, coarse, pose * 100)
    with torch.no_grad():
        image = model(x)
        res = model.render(warped, coarse, pose * 100)
        raw = model.head[1](model.head[0](model.up(model.blocks(model.encode(x)))))
    assert image.shape == (2, 3, H, W) and image.abs().max() <= 1 and raw.abs().max() > 1
    assert res["composition_mask"] is None and torch.equal(res["tryon"], image)
    target = torch.rand(2, 3, H, W, generator=g) * 2 - 1
    out = R.refine_losses(image, target, cfg, l1_perceptual)
    assert set(out) == {"loss", "perceptual"} and torch.allclose(out["loss"], 2.0 * (image - target).abs().mean())
    with pytest.raises(ValueError, match="composition=False .* has no mask term"):
        R.refine_losses(image, target, cfg, l1_perceptual, mask=torch.ones(2, 1, H, W))


# ------------------------------------------------------------------ training inputs


def _identity_flow(b):
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    return torch.stack([xs, ys], -1).expand(b, H, W, 2).clone()


def test_flow_warp_and_blurred_coarse():
    warped, _, _, _ = _images()
    mask = torch.zeros(2, 1, H, W)
    mask[:, :, 4:20, 6:18] = 1
    out, m = R.flow_warp(warped, _identity_flow(2), mask)
    inside = mask.expand_as(out).bool()
    assert torch.allclose(out[inside], warped[inside], atol=1e-5) and torch.equal(out[~inside], torch.ones_like(out[~inside]))
    assert torch.equal(m, mask)
    check = torch.zeros(1, 3, H, W)
    check[..., ::2, ::2] = check[..., 1::2, 1::2] = 1  # a 2x2 checkerboard: its mean is 0.5 in every 2x2 cell
    assert torch.allclose(R.blur_coarse(check, 2), torch.full_like(check, 0.5))
    assert torch.equal(R.blur_coarse(warped, 1), warped)


def _fake_pairs(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = {"cloth": torch.rand(n, 3, H, W, generator=g) * 2 - 1, "target_image": torch.rand(n, 3, H, W, generator=g) * 2 - 1,
         "target_pose_map": torch.rand(n, 18, H, W, generator=g), "target_gt_flow": _identity_flow(n),
         "target_gt_flow_mask": torch.ones(n, 1, H, W)}
    return Preloaded(t, [f"p{i}" for i in range(n)])


def test_prepare_pairs_default_sources_and_given_functions():
    pairs = _fake_pairs()
    prep = R.prepare_pairs(pairs, _tiny(), batch_size=3)
    assert torch.allclose(prep.tensors["warped_cloth"], pairs.tensors["cloth"], atol=1e-5)  # identity flow, full mask
    assert torch.allclose(prep.tensors["coarse"], R.blur_coarse(pairs.tensors["target_image"], 4))
    seen = []

    def coarse_fn(batch):
        seen.append(sorted(batch))
        return batch["warped_cloth"] * 0.5

    def warp_fn(batch):
        return -batch["cloth"], torch.zeros_like(batch["cloth"][:, :1])

    cfg = _tiny(warp="fn", coarse="fn")
    prep = R.prepare_pairs(pairs, cfg, warp_fn=warp_fn, coarse_fn=coarse_fn, batch_size=3)
    assert len(seen) == 2 and "warped_cloth" in seen[0] and "target_image" in seen[0]
    assert torch.equal(prep.tensors["warped_cloth"], -pairs.tensors["cloth"])
    assert torch.equal(prep.tensors["coarse"], -0.5 * pairs.tensors["cloth"])
    with pytest.raises(ValueError, match="coarse_fn is given but RefineConfig.coarse is 'blur'"):
        R.prepare_pairs(pairs, _tiny(), coarse_fn=coarse_fn)
    with pytest.raises(ValueError, match="coarse_fn's result: expected \\(3, 3, 32, 24\\)"):
        R.prepare_pairs(pairs, _tiny(coarse="fn"), coarse_fn=lambda b: b["cloth"][:, :1], batch_size=3)
    with pytest.raises(KeyError, match="target_gt_flow"):
        R.prepare_pairs(Preloaded({k: v for k, v in pairs.tensors.items() if k != "target_gt_flow"}, pairs.names), _tiny())
    with pytest.raises(ValueError, match="coarse_key: a function's output determines the weights"):
        R.get_trained("ci", coarse_fn=coarse_fn)


# ------------------------------------------------------------------ training through load_or_train


@pytest.mark.filterwarnings("ignore:VGGPerceptualLoss uses a randomly initialised VGG19")
def test_three_step_get_trained_caches_and_reloads(tmp_cache):
    from vtonlab.data import synthvton_params

    prof = get_profile("ci").replace(n_train=8, n_test=4)
    cfg = R.RefineConfig.for_profile(prof, steps=3, batch_size=4, n_train=8, n_blocks=1)
    model, ckpt = R.get_trained(prof, config=cfg, progress=False, verbose=False)
    assert ckpt.trained and ckpt.name == "mgvton-refine"
    assert ckpt.config["data"] == synthvton_params(prof) and ckpt.config["steps"] == 3 and ckpt.config["coarse"] == "blur"
    m = ckpt.metrics
    assert m["n_test"] == 4 and isinstance(m["perceptual_vgg"], str) and m["perceptual_vgg"]
    for k in ("test_ssim", "test_ssim_coarse", "test_ssim_garment", "test_mask_garment", "test_mask_outside"):
        assert 0 <= m[k] <= 1, k
    losses = ckpt.history.losses
    assert len(losses["loss"]) == 3 and all(math.isfinite(v) for v in losses["loss"] + losses["mask"])
    again, ckpt2 = R.get_trained(prof, config=cfg, verbose=False)
    assert not ckpt2.trained and ckpt2.source == "cache"
    prep = R.prepare_pairs(R.multipose_pairs("test", prof), cfg, limit=2)
    assert prep.tensors["warped_cloth"].shape == (2, 3, 64, 48) and prep.tensors["warped_mask"].sum() > 0
    x = R.refine_input(prep.tensors["warped_cloth"], prep.tensors["coarse"], prep.tensors["target_pose_map"])
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert R.evaluate_refine(again, R.prepare_pairs(R.multipose_pairs("test", prof), cfg))["ssim"] == pytest.approx(
        m["test_ssim"], rel=1e-6)
