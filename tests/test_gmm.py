"""Tests for vtonlab.gmm (CP-VTON GMM, CP-VTON+, MG-VTON GML) and the GMM figures of vtonlab.viz.tps."""

import dataclasses
import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from vtonlab import gmm, tps
from vtonlab.metrics import warp as wm
from vtonlab.profiles import get_profile

matplotlib.use("Agg")

H, W = 64, 48


def synthetic_samples(n=16, size=(H, W), seed=0, magnitude=0.12):
    """Samples with a known warp: the person wears the in-shop garment warped by a random TPS (= gt_flow)."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    pix = tps.pixel_grid((h, w))
    fixed = tps.FixedGridTPS(5)
    samples = []
    for i in range(n):
        rx, ry = 0.45 + 0.1 * torch.rand(1, generator=g).item(), 0.55 + 0.1 * torch.rand(1, generator=g).item()
        mask = ((((pix[..., 0]) / rx) ** 2 + ((pix[..., 1]) / ry) ** 2) <= 1).float()[None]
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1
        stripes = (torch.sin(pix[..., 1] * 12 + 6 * torch.rand(1, generator=g)) > 0).float()[None]
        cloth = (colour * (0.6 + 0.4 * stripes)) * mask + (1 - mask)
        offsets = magnitude * (torch.rand(1, 2, 25, generator=g) * 2 - 1)
        # as on a person, the garment appears smaller and shifted: the sampling grid zooms out (scale > 1)
        scale = 1.3 + 0.3 * torch.rand(1, generator=g).item()
        shift = 0.15 * (torch.rand(2, generator=g) * 2 - 1)
        flow = fixed(offsets, (h, w))[0] + (scale - 1) * pix + shift
        worn = (F.grid_sample(mask[None], flow[None], align_corners=True)[0] > 0.5).float()
        garment_on = F.grid_sample(cloth[None], flow[None], padding_mode="border", align_corners=True)[0]
        image = garment_on * worn + (1 - worn) * (-0.3)
        samples.append({
            "cloth": cloth, "cloth_mask": mask, "image": image, "worn_mask": worn, "gt_flow": flow,
            "gt_flow_mask": worn, "body_shape": F.avg_pool2d(worn[None], 9, 1, 4)[0],
            "head": torch.full((3, h, w), -1.0), "pose_map": torch.zeros(18, h, w), "agnostic": image * (1 - worn),
            "im_name": f"{i:05d}_00.jpg",
        })
    return samples


@pytest.fixture(scope="module")
def samples():
    return synthetic_samples()


def _collate(samples):
    return torch.utils.data.default_collate(samples)


# ------------------------------------------------------------------ pure functions


def _official_correlation(feature_a, feature_b):
    """A direct transcription of CP-VTON's FeatureCorrelation (networks.py): A = person, B = garment."""
    b, c, h, w = feature_a.size()
    feature_a = feature_a.transpose(2, 3).contiguous().view(b, c, h * w)
    feature_b = feature_b.view(b, c, h * w).transpose(1, 2)
    feature_mul = torch.bmm(feature_b, feature_a)
    return feature_mul.view(b, h, w, h * w).transpose(2, 3).transpose(1, 2)


def test_correlation_matches_cpvton_layout():
    """Spatial axes = garment location, channel = person location numbered column by column (official code)."""
    g = torch.Generator().manual_seed(0)
    fp = torch.randn(2, 5, 4, 3, generator=g)
    fg = torch.randn(2, 5, 4, 3, generator=g)
    corr = gmm.correlation(fp, fg)
    assert corr.shape == (2, 12, 4, 3)
    assert torch.equal(corr, _official_correlation(fp, fg)) or torch.allclose(corr, _official_correlation(fp, fg), atol=1e-6)
    # person cell (row 3, col 0) is channel 0 * 4 + 3; garment cell (2, 1) is the spatial position
    k = gmm.person_channel(3, 0, (4, 3))
    assert k == 3
    assert torch.allclose(corr[1, k, 2, 1], (fp[1, :, 3, 0] * fg[1, :, 2, 1]).sum(), atol=1e-5)
    # the layout vtonlab used before (spatial = person, channel = garment row-major) differs
    old = torch.einsum("bcij,bckl->bklij", fp, fg).reshape(2, 12, 4, 3)
    assert not torch.allclose(corr, old, atol=1e-3)
    with pytest.raises(ValueError, match="same shape|one shape"):
        gmm.correlation(fp, fg[:, :4])
    with pytest.raises(IndexError, match="row, col"):
        gmm.person_channel(4, 0, (4, 3))


def test_feature_l2norm_gives_unit_vectors_and_correlation_of_identical_features_peaks_on_the_diagonal():
    x = torch.randn(2, 8, 4, 3)
    n = gmm.feature_l2norm(x)
    assert torch.allclose(n.norm(dim=1), torch.ones(2, 4, 3), atol=1e-5)
    corr = gmm.correlation(n, n)  # cosine similarities: 1 where a location meets itself
    for row in range(4):
        for col in range(3):
            assert corr[:, gmm.person_channel(row, col, (4, 3)), row, col].sub(1).abs().max() < 1e-5
    assert (corr <= 1 + 1e-5).all()


def _official_gic(grid):
    """A direct transcription of CP-VTON+'s GicLoss (networks.py) and its division by B*H*W (train.py)."""
    h, w = grid.shape[1], grid.shape[2]
    gx, gy = grid[:, :, :, 0], grid[:, :, :, 1]
    gxc, gxl, gxr = gx[:, 1:h - 1, 1:w - 1], gx[:, 1:h - 1, 0:w - 2], gx[:, 1:h - 1, 2:w]
    gyc, gyu, gyd = gy[:, 1:h - 1, 1:w - 1], gy[:, 0:h - 2, 1:w - 1], gy[:, 2:h, 1:w - 1]
    dtleft, dtright = (gxl - gxc).abs(), (gxr - gxc).abs()
    dtup, dtdown = (gyu - gyc).abs(), (gyd - gyc).abs()
    return torch.sum((dtleft - dtright).abs() + (dtup - dtdown).abs()) / (grid.shape[0] * grid.shape[1] * grid.shape[2])


def _four_term_grid_interval(grid):
    """The formula vtonlab used before: both components along both directions."""
    c = grid[:, 1:-1, 1:-1]
    horizontal = ((grid[:, 1:-1, 2:] - c).abs() - (c - grid[:, 1:-1, :-2]).abs()).abs()
    vertical = ((grid[:, 2:, 1:-1] - c).abs() - (c - grid[:, :-2, 1:-1]).abs()).abs()
    return (horizontal + vertical).sum() / (grid.shape[0] * grid.shape[1] * grid.shape[2])


def test_grid_interval_loss_is_cpvton_plus_gicloss():
    theta = torch.tensor([[[0.7, 0.1, 0.05], [-0.2, 0.9, 0.1]]])
    assert gmm.grid_interval_loss(tps.affine_sampling_grid(theta, (12, 9))).item() < 1e-6
    assert gmm.grid_interval_loss(tps.pixel_grid((12, 9))[None]).item() < 1e-6
    gen = torch.Generator().manual_seed(1)
    for shape in ((2, 7, 6, 2), (3, 16, 12, 2)):
        grid = torch.rand(shape, generator=gen) * 2 - 1  # random grids: every term matters
        loss = gmm.grid_interval_loss(grid)
        assert torch.allclose(loss, _official_gic(grid), rtol=1e-6, atol=1e-7)
        assert not torch.allclose(loss, _four_term_grid_interval(grid), rtol=1e-2)
    # a grid bent only in y along rows costs nothing in the official term (it ignores y along rows)
    g = tps.pixel_grid((8, 8))[None].clone()
    g[..., 1] += 0.05 * torch.linspace(-1, 1, 8) ** 2  # y changes along each row, curved
    assert gmm.grid_interval_loss(g).item() < 1e-7 < _four_term_grid_interval(g).item()
    with pytest.raises(ValueError, match="grid must have shape"):
        gmm.grid_interval_loss(torch.zeros(1, 4, 4))


def test_default_config_is_the_official_gmm():
    """CP-VTON's networks.py / train.py: Adam 1e-4, betas (0.5, 0.999), no scheduler step, conv-ReLU-BN, 4x4 regression."""
    cfg = gmm.GMMConfig()
    assert (cfg.lr, cfg.betas, cfg.lr_schedule) == (1e-4, (0.5, 0.999), "constant")
    assert (cfg.width, cfg.max_channels, cfg.regressor_kernel) == (64, 512, 4)
    assert not cfg.correlation_norm and not cfg.zero_init
    model = gmm.GMM(cfg)
    kinds = [type(m).__name__ for m in model.extract_person.net]
    assert kinds[:3] == ["Conv2d", "ReLU", "BatchNorm2d"] and kinds[-2:] == ["Conv2d", "ReLU"]
    assert len([k for k in kinds if k == "Conv2d"]) == 6
    convs = [m for m in model.regressor.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(4, 4), (4, 4), (3, 3), (3, 3)]
    assert [c.out_channels for c in convs] == [512, 256, 128, 64] and convs[0].in_channels == 192
    assert model.regressor.linear.in_features == 64 * 4 * 3  # as CP-VTON's nn.Linear(64 * 4 * 3, ...)
    assert model.regressor.linear.weight.abs().sum() > 0  # PyTorch default init, not zero
    assert gmm._schedule(100, "constant")(99) == 1.0
    # the gpu profile is the paper's size; the ci profile needs 3x3 regression convolutions
    assert gmm.GMMConfig.for_profile("gpu").width == 64
    assert gmm.GMMConfig.for_profile("ci").regressor_kernel == 3
    with pytest.raises(ValueError, match="regressor_kernel=3"):
        gmm.GMMConfig(image_size=(64, 48))


def test_forward_reads_the_raw_correlation_unless_correlation_norm():
    cfg = gmm.GMMConfig(image_size=(64, 64), width=8, max_channels=16)
    model = gmm.GMM(cfg).eval()
    person, garment = torch.randn(1, 22, 64, 64), torch.randn(1, 3, 64, 64)
    seen = {}
    model.regressor.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]))
    model(person, garment)
    assert torch.allclose(seen["x"], model.correlation_volume(person, garment))
    normed = gmm.GMM(dataclasses.replace(cfg, correlation_norm=True)).eval()
    normed.load_state_dict(model.state_dict())
    normed.regressor.register_forward_pre_hook(lambda mod, args: seen.update(y=args[0]))
    normed(person, garment)
    assert torch.allclose(seen["y"], gmm.feature_l2norm(F.relu(seen["x"])))


def test_representations_and_bad_inputs(samples):
    batch = _collate(samples[:2])
    assert gmm.person_representation(batch, "cpvton").shape == (2, 22, H, W)
    assert gmm.person_representation(batch, "gml").shape == (2, 2, H, W)
    assert gmm.garment_input(batch, "rgb").shape == (2, 3, H, W)
    mask_in = gmm.garment_input(batch, "mask")
    assert mask_in.shape == (2, 1, H, W) and mask_in.min() == -1 and mask_in.max() == 1
    with pytest.raises(KeyError, match="pose_map"):
        gmm.person_representation({k: v for k, v in batch.items() if k != "pose_map"}, "cpvton")
    with pytest.raises(ValueError, match="expected 'cpvton' or 'gml'"):
        gmm.person_representation(batch, "viton")
    with pytest.raises(ValueError, match="GMMConfig.garment"):
        gmm.GMMConfig(garment="depth")
    with pytest.raises(ValueError, match="at least 16x16"):
        gmm.GMMConfig(image_size=(8, 8))
    with pytest.raises(ValueError, match="variant"):
        gmm.GMMConfig.for_profile("ci", "viton")


# ------------------------------------------------------------------ the network


@pytest.mark.parametrize("variant", ["cpvton", "cpvton_plus", "gml"])
@pytest.mark.parametrize("transform", ["tps", "affine"])
def test_zero_init_gmm_is_the_identity_warp_with_the_right_shapes(samples, variant, transform):
    cfg = gmm.GMMConfig.for_profile("ci", variant, transform=transform, image_size=(H, W), zero_init=True)
    model = gmm.GMM(cfg).eval()
    batch = _collate(samples[:3])
    person, garment = gmm.person_representation(batch, cfg.person), gmm.garment_input(batch, cfg.garment)
    grid, params = model(person, garment)
    assert grid.shape == (3, H, W, 2)
    assert params.shape == ((3, 2, 25) if transform == "tps" else (3, 2, 3))
    assert torch.allclose(grid, tps.pixel_grid((H, W)).expand(3, -1, -1, -1), atol=1e-6)
    fh, fw = cfg.feature_size
    assert (fh, fw) == (H // 16, W // 16)
    assert model.correlation_volume(person, garment).shape == (3, fh * fw, fh, fw)
    with pytest.raises(ValueError, match="GMM person input: expected"):
        model(person[:, :1], garment)


def test_gmm_at_a_larger_size_and_gradients_reach_both_extractors():
    cfg = gmm.GMMConfig(image_size=(128, 96), width=16, max_channels=128)
    model = gmm.GMM(cfg)
    person, garment = torch.randn(2, 22, 128, 96), torch.randn(2, 3, 128, 96)
    grid, offsets = model(person, garment)
    assert grid.shape == (2, 128, 96, 2) and offsets.abs().max() < 1
    grid.square().mean().backward()
    for part in (model.extract_person, model.extract_garment, model.regressor):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads and any(gr.abs().sum() > 0 for gr in grads)


def test_losses_follow_their_definitions(samples):
    batch = _collate(samples[:4])
    grid = batch["gt_flow"]
    cfg_rgb = gmm.GMMConfig(image_size=(H, W), grid_reg=40.0, regressor_kernel=3)
    losses = gmm.gmm_losses(grid, batch, cfg_rgb)
    warped, warped_mask = gmm.warp_garment(grid, batch)
    m = batch["worn_mask"]
    l1 = (warped - (batch["image"] * m + 1 - m)).abs().mean()
    assert torch.allclose(losses["l1"], l1)
    assert torch.allclose(losses["loss"], l1 + 40 * gmm.grid_interval_loss(grid))
    cfg_mask = gmm.GMMConfig(image_size=(H, W), loss="mask", regressor_kernel=3)
    mask_loss = gmm.gmm_losses(grid, batch, cfg_mask)
    assert torch.allclose(mask_loss["loss"], (warped_mask - m).abs().mean())
    cfg_flow = gmm.GMMConfig(image_size=(H, W), loss="flow", regressor_kernel=3)
    assert gmm.gmm_losses(grid, batch, cfg_flow)["loss"].item() == 0.0
    ident4 = tps.pixel_grid((H, W)).expand(4, -1, -1, -1)
    fm = batch["gt_flow_mask"].permute(0, 2, 3, 1).bool().expand(-1, -1, -1, 2)
    expected = (ident4 - grid).abs()[fm].mean()
    assert torch.allclose(gmm.gmm_losses(ident4, batch, cfg_flow)["loss"], expected, atol=1e-6)
    # the true warp beats the identity on both losses
    ident = tps.pixel_grid((H, W)).expand(4, -1, -1, -1)
    assert gmm.gmm_losses(ident, batch, cfg_rgb)["l1"] > losses["l1"]
    assert gmm.gmm_losses(ident, batch, cfg_mask)["loss"] > mask_loss["loss"]


# ------------------------------------------------------------------ training and evaluation


def test_training_reduces_the_loss_and_the_warp_error():
    data = gmm.preload(synthetic_samples(16, size=(32, 32), seed=4))
    assert len(data) == 16 and data[0]["cloth"].shape == (3, 32, 32)
    # zero_init: starts at the identity warp, so "after" is compared with "before"
    cfg = gmm.GMMConfig(image_size=(32, 32), steps=40, batch_size=8, n_train=16, lr=1e-3, regressor_kernel=3, width=16,
                        max_channels=128, zero_init=True)
    model, history = gmm.train(cfg, data, progress=False)
    first, last = history.losses["loss"][:5], history.last("loss", 5)
    assert last < 0.6 * sum(first) / len(first)
    before = gmm.evaluate_warps(None, data, batch_size=8)
    after = gmm.evaluate_warps(model, data, batch_size=8)
    assert after["mean_epe_px"] < before["mean_epe_px"]
    assert after["mean_iou"] > before["mean_iou"] + 0.1


def test_evaluate_warps_returns_consistent_tensors(samples):
    data = gmm.preload(samples[:5])
    res = gmm.evaluate_warps(None, data, batch_size=2)
    assert res["epe_px"].shape == (5,) and res["warped"].shape == (5, 3, H, W) and res["epe_map"].shape == (5, H, W)
    assert res["names"][0] == "00000_00.jpg"
    direct = wm.warp_metrics(gmm.identity_grid_fn(data.batch(0, 5)), data.batch(0, 5))
    assert torch.allclose(res["epe_px"], direct["epe_px"]) and torch.allclose(res["iou"], direct["iou"])
    assert res["mean_epe_px"] == pytest.approx(direct["epe_px"].mean().item(), rel=1e-6)
    perfect = gmm.evaluate_warps(lambda b: b["gt_flow"], data, keep=False)
    assert perfect["mean_epe_px"] < 1e-4 and "warped" not in perfect


def test_get_trained_caches_and_reloads(samples, tmp_cache):
    cfg = gmm.GMMConfig.for_profile("ci", "cpvton_plus", steps=3)
    train_data, test_data = samples[:8], samples[8:12]
    model, ckpt = gmm.get_trained("ci", config=cfg, train_data=train_data, test_data=test_data, progress=False,
                                  verbose=False)
    assert ckpt.trained and ckpt.name == "gmm_cpvton_plus"
    assert set(ckpt.metrics) >= {"test_epe_px", "test_iou", "test_ssim"}
    assert ckpt.config["grid_reg"] == 40.0 and ckpt.config["garment"] == "mask"
    # the data key: SynthVTON's render parameters and renderer version, so a changed renderer retrains
    from vtonlab.data import synth, synthvton_params
    assert ckpt.config["data"] == synthvton_params("ci") and ckpt.config["data"]["renderer_version"] == synth.RENDERER_VERSION
    again, ckpt2 = gmm.get_trained("ci", config=cfg, verbose=False)  # no data needed: loaded from the cache
    assert not ckpt2.trained and ckpt2.source == "cache"
    batch = _collate(samples[:2])
    args = (gmm.person_representation(batch), gmm.garment_input(batch, "mask"))
    assert torch.equal(model(*args)[0], again(*args)[0])
    with pytest.raises(ValueError, match="image size"):
        gmm.get_trained("ci", config=gmm.GMMConfig(image_size=(128, 96)))


def test_checkpoint_names():
    assert gmm.checkpoint_name(gmm.GMMConfig.for_profile("ci", "cpvton")) == "gmm"
    assert gmm.checkpoint_name(gmm.GMMConfig.for_profile("ci", "gml")) == "gml"
    assert gmm.GMMConfig.for_profile("ci", "gml").steps == get_profile("ci").steps_for("gml")
    assert gmm.checkpoint_name(gmm.GMMConfig(variant="ablation_rgb_reg")) == "gmm_ablation_rgb_reg"
    # another seed is another shipped file, never the seed-0 one
    assert gmm.checkpoint_name(gmm.GMMConfig(variant="ablation_tps_rgb", seed=2)) == "gmm_ablation_tps_rgb_seed2"


def test_ablation_configs_differ_only_in_the_ablated_switches():
    cfgs = gmm.ablation_configs("ci")
    assert set(cfgs) == set(gmm.ABLATIONS)
    steps = get_profile("ci").steps_for("gmm") // 4
    for key, cfg in cfgs.items():
        assert cfg.variant == f"ablation_{key}" and cfg.steps == steps and cfg.person == "cpvton"
        assert gmm.checkpoint_name(cfg) == f"gmm_ablation_{key}"
    assert cfgs["tps_mask_reg"].garment == "mask" and cfgs["tps_mask_reg"].grid_reg == 40.0
    assert cfgs["affine_rgb"].transform == "affine"
    assert gmm.ablation_configs("ci", steps=7)["tps_rgb"].steps == 7
    assert cfgs["tps_rgb_corrnorm"].correlation_norm and cfgs["tps_rgb_lr1e-3"].lr == 1e-3
    seeded = gmm.ablation_configs("ci", seeds=(1, 2))
    assert seeded["tps_rgb_seed2"] == dataclasses.replace(cfgs["tps_rgb"], seed=2)
    assert gmm.checkpoint_name(seeded["tps_rgb_seed1"]) == "gmm_ablation_tps_rgb_seed1"


def test_oracle_fits_recover_warps_of_their_family(samples):
    data = gmm.preload(samples[:4])
    batch = data.batch(0, 4)
    # the samples' gt_flow is a 5x5 TPS: the TPS oracle reproduces it (EPE ~ 0), the affine one cannot
    tps_res = gmm.evaluate_warps(gmm.oracle_grid_fn("tps"), data, keep=False)
    aff_res = gmm.evaluate_warps(gmm.oracle_grid_fn("affine"), data, keep=False)
    assert tps_res["mean_epe_px"] < 0.05
    assert aff_res["mean_epe_px"] > tps_res["mean_epe_px"]
    # an affine gt_flow is recovered exactly by the affine oracle
    theta = torch.tensor([[[0.8, 0.1, 0.05], [-0.05, 0.9, 0.1]]]).expand(4, -1, -1)
    affine_batch = {**batch, "gt_flow": tps.affine_sampling_grid(theta, (H, W))}
    fitted = gmm.oracle_grid_fn("affine")(affine_batch)
    assert torch.allclose(fitted, affine_batch["gt_flow"], atol=1e-4)
    with pytest.raises(ValueError, match="transform"):
        gmm.oracle_grid_fn("flow")


# ------------------------------------------------------------------ figures (vtonlab.viz.tps)


def test_render_warp_errors_and_browser(samples):
    from vtonlab.viz.tps import render_warp_browser, render_warp_errors

    res = gmm.evaluate_warps(None, gmm.preload(samples[:3]))
    for index in (0, 2, -1):
        fig = render_warp_browser(res, index)
        assert len(fig.axes) == 6 + 2  # six panels and two colour bars
        assert "EPE" in fig._suptitle.get_text()
        assert fig.axes[3].get_title() == "warped on person"  # pasted through the warp's own mask
    with pytest.raises(IndexError, match=r"index must be in \[0, 2\]"):
        render_warp_browser(res, 3)
    # no visible garment: an all-NaN EPE map is drawn without error; no EPE map at all (real data) too
    fig = render_warp_errors(res["cloth"][0], res["image"][0], res["warped"][0], res["worn_mask"][0],
                             torch.full((H, W), math.nan))
    assert "no visible garment" in fig.axes[4].get_title()
    fig = render_warp_errors(res["cloth"][0], res["image"][0], res["warped"][0], res["worn_mask"][0])
    assert len(fig.axes) == 5 + 1 and fig.axes[3].get_title() == "warped, in worn mask"
    with pytest.raises(ValueError, match="worn_mask must be a"):
        render_warp_errors(res["cloth"][0], res["image"][0], res["warped"][0], res["worn_mask"])


def test_correlation_figure(samples):
    from vtonlab.viz.tps import correlation_figure

    cfg = gmm.GMMConfig(image_size=(H, W), regressor_kernel=3)
    model = gmm.GMM(cfg).eval()
    batch = _collate(samples[:1])
    with torch.no_grad():
        corr = model.correlation_volume(gmm.person_representation(batch), gmm.garment_input(batch))[0]
    for row, col in ((0, 0), (3, 2)):
        fig = correlation_figure(batch["image"][0], batch["cloth"][0], corr, row, col)
        assert len(fig.axes) == 4
        shown = fig.axes[2].images[0].get_array()
        assert torch.allclose(torch.as_tensor(shown.data), corr[gmm.person_channel(row, col, (4, 3))].float())
    with pytest.raises(IndexError):
        correlation_figure(batch["image"][0], batch["cloth"][0], corr, 4, 0)
    with pytest.raises(ValueError, match=r"shape \(h\*w, h, w\)"):
        correlation_figure(batch["image"][0], batch["cloth"][0], corr[:5], 0, 0)
