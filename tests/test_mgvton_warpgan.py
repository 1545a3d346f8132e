"""Tests for vtonlab.mgvton.warpgan: MG-VTON's Warp-GAN (coarse stage) and its feature warping."""

import math

import pytest
import torch

from vtonlab.data.labels import CIHP
from vtonlab.losses import VGGPerceptualLoss, feature_matching_loss, lsgan_g_loss
from vtonlab.mgvton import warpgan as G
from vtonlab.profiles import get_profile

H, W = 64, 48  # ci size; n_down = 3 gives an 8x6 bottleneck, one cell = 8 pixels

BLOCKS = (("hair", 4, 12, 18, 30), ("face", 12, 20, 19, 29), ("torso_skin", 20, 24, 21, 27),
          ("upper_clothes", 24, 40, 14, 34), ("left_arm", 24, 40, 8, 13), ("right_arm", 24, 40, 35, 40),
          ("pants", 40, 50, 15, 33), ("left_leg", 50, 56, 16, 23), ("right_leg", 50, 56, 25, 32))


def _parse(b=2, dx=0, dy=0, skip=()):
    """A blocky person parsing (B, H, W); every part moved by (dx, dy) pixels."""
    p = torch.zeros(b, H, W, dtype=torch.long)
    for name, y0, y1, x0, x1 in BLOCKS:
        if name not in skip:
            p[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx] = CIHP[name]
    return p


def _inputs(b=2, seed=0, target=None):
    g = torch.Generator().manual_seed(seed)
    cloth = torch.rand(b, 3, H, W, generator=g) * 2 - 1
    person = torch.rand(b, 3, H, W, generator=g) * 2 - 1
    pose = torch.rand(b, 18, H, W, generator=g)
    return G.warpgan_input(cloth, person, pose, _parse(b) if target is None else target), (cloth, person, pose)


def _ci(**kw):
    return G.WarpGANConfig.for_profile("ci", **kw)


# ------------------------------------------------------------------ config and inputs


def test_config_per_profile_and_paper_defaults():
    gpu = G.WarpGANConfig.for_profile("gpu")
    assert (gpu.width, gpu.n_blocks, gpu.n_down, gpu.ndf, gpu.n_layers_d, gpu.num_d) == (64, 9, 3, 64, 3, 2)
    assert (gpu.norm, gpu.d_norm, gpu.lr, gpu.betas, gpu.image_size) == ("batch", "instance", 2e-4, (0.5, 0.999), (256, 192))
    assert (gpu.adv_weight, gpu.fm_weight, gpu.vgg_weight, gpu.l1_weight) == (1.0, 10.0, 10.0, 1.0)
    assert gpu.feature_warping is True and gpu.warp_transform == "tps" and gpu.feature_size == (32, 24)
    ci = _ci()
    assert (ci.width, ci.n_blocks, ci.ndf, ci.image_size) == (16, 2, 16, (64, 48))
    assert ci.steps == get_profile("ci").steps_for("warpgan")
    assert ci.to_dict()["feature_warping"] is True and _ci(feature_warping=False).to_dict()["feature_warping"] is False
    for bad, match in ((dict(warp_transform="flow"), "warp_transform"), (dict(feature_warping=1), "feature_warping"),
                       (dict(fm_weight=-1.0), "loss weights"), (dict(image_size=(60, 48)), "image_size"),
                       (dict(tps_reg=float("nan")), "tps_reg"), (dict(min_part_fraction=1.0), "min_part_fraction")):
        with pytest.raises(ValueError, match=match):
            _ci(**bad)


def test_warpgan_input_channel_order():
    assert G.INPUT_CHANNELS == 44 and [c for _, c in G.INPUT_LAYOUT] == [3, 3, 18, 20]
    target = _parse(2, dx=2)
    x, (cloth, person, pose) = _inputs(target=target)
    assert x.shape == (2, 44, H, W) and x.dtype == torch.float32
    assert torch.equal(x[:, 0:3], cloth) and torch.equal(x[:, 3:6], person) and torch.equal(x[:, 6:24], pose)
    assert torch.equal(x[:, 24:44].argmax(1), target) and torch.equal(x[:, 24:44].sum(1), torch.ones(2, H, W))
    assert x[0, 24 + CIHP["face"], 14, 24] == 1 and x[0, 24 + CIHP["face"], 0, 0] == 0
    soft = torch.randn(2, 20, H, W).softmax(1)  # the parsing stage's softmax goes in as it is
    assert torch.equal(G.warpgan_input(cloth, person, pose, soft)[:, 24:], soft)


def test_bad_inputs_name_what_was_expected():
    x, (cloth, person, pose) = _inputs()
    target = _parse()
    with pytest.raises(ValueError, match=r"warped_cloth: expected a float \(B, 3, H, W\)"):
        G.warpgan_input(cloth[:, :1], person, pose, target)
    with pytest.raises(ValueError, match=r"source_person: expected a float \(2, 3, 64, 48\)"):
        G.warpgan_input(cloth, person[:, :, :32], pose, target)
    with pytest.raises(ValueError, match=r"target_pose_map: expected a float \(2, 18, 64, 48\)"):
        G.warpgan_input(cloth, person, pose[:, :17], target)
    with pytest.raises(ValueError, match=r"outside the internal label set 0\.\.19"):
        G.warpgan_input(cloth, person, pose, target + 5)
    with pytest.raises(ValueError, match="summing to 1 per pixel"):  # logits instead of softmax
        G.warpgan_input(cloth, person, pose, torch.randn(2, 20, H, W))
    with pytest.raises(ValueError, match=r"target_parsing: expected integer labels \(B, H, W\) or a float map \(B, 20"):
        G.warpgan_input(cloth, person, pose, torch.zeros(2, 19, H, W))
    with pytest.raises(ValueError, match="target_parsing: expected batch 2 and size"):
        G.warpgan_input(cloth, person, pose, target[:, :32])
    gen = G.WarpGANGenerator(_ci())
    with pytest.raises(ValueError, match=r"expected \(B, 44, H, W\) from warpgan_input"):
        gen(x[:, :43], target)
    with pytest.raises(ValueError, match="feature warping needs the source person's parsing"):
        gen(x, None)
    with pytest.raises(ValueError, match=r"source_parsing: expected batch 2 and size \(64, 48\)"):
        gen(x, target[:1])
    with pytest.raises(ValueError, match="multiples of 8"):
        gen(x[..., :44], target[..., :44])
    with pytest.raises(ValueError, match=r"gt_flow: expected \(2, 64, 48, 2\)"):
        G.ground_truth_warp(cloth, torch.zeros(2, H, W, 3), torch.ones(2, 1, H, W))


# ------------------------------------------------------------------ the transform


def test_fit_affine_recovers_a_known_map_and_falls_back_with_few_points():
    g = torch.Generator().manual_seed(1)
    theta = torch.tensor([[[1.1, 0.2, 0.05], [-0.1, 0.9, -0.2]]], dtype=torch.float64)
    dst = torch.rand(1, 6, 2, generator=g, dtype=torch.float64) * 2 - 1
    src = dst @ theta[0, :, :2].T + theta[0, :, 2]
    valid = torch.ones(1, 6, dtype=torch.bool)
    assert torch.allclose(G.fit_affine(dst, src, valid, 1e-9), theta, atol=1e-5)
    # the default ridge pulls the 2x2 part towards I (a scale between the true one and 1) but leaves a shift exact
    pulled = G.fit_affine(dst, src, valid)[0]
    assert 1.0 < pulled[0, 0] < 1.1 and 0.9 < pulled[1, 1] < 1.0
    shifted = G.fit_affine(dst, dst + torch.tensor([0.3, -0.2], dtype=torch.float64), valid)[0]
    assert torch.allclose(shifted, torch.tensor([[1, 0, 0.3], [0, 1, -0.2]], dtype=torch.float64), atol=1e-12)
    valid2 = valid.clone()
    valid2[0, 2:] = False  # two points: the identity plus their mean shift
    shift = (src - dst)[0, :2].mean(0)
    assert torch.allclose(G.fit_affine(dst, src, valid2)[0], torch.tensor([[1, 0, shift[0]], [0, 1, shift[1]]]).double())
    eye = torch.tensor([[1.0, 0, 0], [0, 1, 0]], dtype=torch.float64)
    assert torch.equal(G.fit_affine(dst, src, torch.zeros(1, 6, dtype=torch.bool))[0], eye)
    line = torch.tensor([[[0.0, -0.5], [0.0, 0.0], [0.0, 0.5]]], dtype=torch.float64)  # collinear: x scale undetermined
    fit = G.fit_affine(line, line + 0.1, torch.ones(1, 3, dtype=torch.bool))
    assert torch.isfinite(fit).all() and torch.allclose(fit[0], eye + torch.tensor([[0, 0, 0.1], [0, 0, 0.1]]).double(),
                                                        atol=1e-4)


def test_identity_transform_leaves_the_features_unchanged():
    f = torch.randn(2, 5, 8, 6)
    src = _parse()
    for transform in G.WARP_TRANSFORMS:
        assert torch.allclose(G.warp_features(f, src, src, warp_transform=transform), f, atol=1e-5)
    soft = (G.parsing_map(src) * 8).softmax(1)  # a softmax parsing equal on both sides: the identity too
    assert torch.allclose(G.warp_features(f, soft, soft), f, atol=1e-5)
    # inside the generator: source parsing == target parsing -> warped features == source features
    gen = G.WarpGANGenerator(_ci()).eval()
    x, _ = _inputs(target=src)
    feats = gen.features(x, src)
    assert feats["warped"].shape == (2, 128, 8, 6)
    assert torch.allclose(feats["warped"], feats["source"], atol=1e-5 * feats["source"].abs().max().item())


def test_a_shifted_parsing_shifts_the_warped_features():
    f = torch.randn(2, 5, 8, 6)
    src = _parse()
    for transform in G.WARP_TRANSFORMS:
        right = G.warp_features(f, src, _parse(dx=8), warp_transform=transform)  # 8 px = one feature cell
        assert torch.allclose(right[..., 1:], f[..., :-1], atol=1e-4)
        assert right[..., 0].abs().max() < 1e-4  # read from outside the map: zeros
        down = G.warp_features(f, src, _parse(dy=8), warp_transform=transform)
        assert torch.allclose(down[..., 1:, :], f[..., :-1, :], atol=1e-4)
    half = G.feature_warp_grid(src, _parse(dx=4), (8, 6))  # half a cell: every x moves by 1 / (w - 1) = 0.2
    assert torch.allclose(half[..., 0], G.feature_warp_grid(src, src, (8, 6))[..., 0] - 0.2, atol=1e-5)
    # only the arms move: the TPS bends, the affine map cannot
    arms = _parse().clone()
    arms[arms == CIHP["left_arm"]] = 0
    arms[:, 24:40, 2:7] = CIHP["left_arm"]
    tps_grid = G.feature_warp_grid(src, arms, (8, 6), warp_transform="tps")
    aff_grid = G.feature_warp_grid(src, arms, (8, 6), warp_transform="affine")
    assert (tps_grid - aff_grid).abs().max() > 0.05
    assert (tps_grid[:, 0, 0] - aff_grid[:, 0, 0]).abs().max() < 1e-4  # the corners are anchored to the affine map


def test_feature_warping_false_bypasses_the_warp():
    torch.manual_seed(0)
    on = G.WarpGANGenerator(_ci()).eval()
    torch.manual_seed(0)
    off = G.WarpGANGenerator(_ci(feature_warping=False)).eval()
    x, _ = _inputs()
    moved = _parse(dx=8)
    feats = off.features(x, moved)
    assert torch.equal(feats["warped"], feats["source"])
    with torch.no_grad():
        y_off = off(x, None)
        assert torch.equal(y_off, off(x, moved))  # the source parsing plays no part
        assert torch.allclose(y_off, on(x, _parse()), atol=1e-4)  # same weights, identity warp: the same image
        assert not torch.equal(on(x, moved), y_off)  # warping on: the source parsing matters
    warped_on, plain = on.features(x, moved), off.features(x, None)
    assert torch.equal(warped_on["source"], plain["source"])
    # the source parsing is one cell right of the target's: the features move one cell left
    assert torch.allclose(warped_on["warped"][..., :-1], plain["source"][..., 1:], atol=1e-4)
    assert (warped_on["fused"] - plain["fused"]).abs().max() > 0.1 * plain["fused"].abs().max()


# ------------------------------------------------------------------ generator and losses


def test_generator_output_and_gradients_through_the_warp():
    gen = G.WarpGANGenerator(_ci())
    x, _ = _inputs()
    y = gen(x, _parse(dx=8))
    assert y.shape == (2, 3, H, W) and y.min() >= -1 and y.max() <= 1
    y.mean().backward()
    grad = gen.source_encoder[0][1].weight.grad  # the source branch's first conv learns through grid_sample
    assert grad is not None and grad.abs().sum() > 0


def test_losses_accept_the_discriminator_outputs():
    cfg = _ci()
    d = G.build_discriminator(cfg)
    vgg = VGGPerceptualLoss(weights="random")
    x, (cloth, _, _) = _inputs()
    fake = (torch.rand(2, 3, H, W) * 2 - 1).requires_grad_(True)
    same = G.warpgan_losses(cloth, cloth, x, d, vgg, cfg)
    assert same["fm"] == 0 and same["l1"] == 0 and same["vgg"] == 0
    assert same["loss_g"].item() == pytest.approx(same["adv_g"].item(), rel=1e-6)
    out = G.warpgan_losses(fake, cloth, x, d, vgg, cfg)
    d_fake, d_real = d(torch.cat([x, fake], 1)), d(torch.cat([x, cloth], 1))
    assert len(d_fake) == 2 and len(d_fake[0]) == 5  # two scales, four feature blocks + the prediction
    assert out["adv_g"].item() == pytest.approx(lsgan_g_loss(d_fake).item(), rel=1e-5)
    assert out["fm"].item() == pytest.approx(feature_matching_loss(d_fake, d_real).item(), rel=1e-5)
    assert out["l1"].item() == pytest.approx((fake - cloth).abs().mean().item(), rel=1e-6)
    expected = out["adv_g"] + 10 * out["fm"] + 10 * out["vgg"] + out["l1"]
    assert out["loss_g"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss_d"].backward()
    assert fake.grad is None  # the discriminator's loss sees the fake detached
    assert all(math.isfinite(v.item()) for v in out.values())
    no_gan = G.warpgan_losses(fake, cloth, x, d, None, _ci(adv_weight=0.0, fm_weight=0.0, vgg_weight=0.0))
    assert no_gan["loss_d"] == 0 and no_gan["loss_g"].item() == pytest.approx(no_gan["l1"].item())
    with pytest.raises(ValueError, match="vgg_weight > 0 needs a VGGPerceptualLoss"):
        G.warpgan_losses(fake, cloth, x, d, None, cfg)
    with pytest.raises(ValueError, match=r"real: expected a float \(2, 3, 64, 48\)"):
        G.warpgan_losses(fake, cloth[:1], x, d, vgg, cfg)


def test_ground_truth_warp():
    cloth = torch.rand(1, 3, H, W) * 2 - 1
    identity = torch.stack(torch.meshgrid(torch.linspace(-1, 1, W), torch.linspace(-1, 1, H), indexing="xy"), -1)[None]
    mask = torch.zeros(1, 1, H, W)
    mask[..., 10:30, 5:20] = 1
    out = G.ground_truth_warp(cloth, identity, mask)
    assert torch.allclose(out[..., 10:30, 5:20], cloth[..., 10:30, 5:20], atol=1e-5)
    assert torch.equal(out[..., :10, :], torch.ones(1, 3, 10, W))  # white where no garment shows


# ------------------------------------------------------------------ training and checkpoint


def test_tiny_training_caches_and_reloads(tmp_cache):
    prof = get_profile("ci").replace(n_train=8, n_test=4)
    cfg = G.WarpGANConfig.for_profile(prof, steps=3, batch_size=4, n_train=8, n_blocks=1)
    vgg = VGGPerceptualLoss(weights="random")
    model, ckpt = G.get_trained(prof, config=cfg, vgg=vgg, progress=False, verbose=False)
    assert ckpt.trained and ckpt.name == "mgvton-warpgan"
    assert ckpt.metrics["n_test"] == 4 and 0 < ckpt.metrics["test_l1"] < 1 and -1 <= ckpt.metrics["test_ssim"] <= 1
    assert ckpt.metrics["vgg_weights"].startswith("random init")
    from vtonlab.data import synthvton_params

    assert ckpt.config["data"] == synthvton_params(prof) and ckpt.config["steps"] == 3
    assert ckpt.config["feature_warping"] is True
    losses = ckpt.history.losses
    assert len(losses["loss_g"]) == 3 and all(math.isfinite(v) for v in losses["loss_g"] + losses["loss_d"])
    again, ckpt2 = G.get_trained(prof, config=cfg, vgg=vgg, verbose=False)
    assert not ckpt2.trained and ckpt2.source == "cache"
    te = G.preload_pairs(G.multipose_pairs("test", prof))
    batch = te.batch(0, 2)
    assert batch["target_gt_flow"].shape == (2, 64, 48, 2) and batch["source_agnostic"].shape == (2, 3, 64, 48)
    x, source_parse = G.pair_inputs(batch)
    assert torch.equal(model(x, source_parse), again(x, source_parse))
    res = G.evaluate_coarse(again, te)
    assert res["mean_ssim"] == pytest.approx(ckpt.metrics["test_ssim"], rel=1e-6)
