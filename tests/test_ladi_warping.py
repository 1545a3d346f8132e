"""Tests for vtonlab.ladi.warping (LaDI-VTON's TPS stage and refinement UNet) and the "ladi" variant of vtonlab.gmm."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from vtonlab import gmm, tps
from vtonlab.ladi import warping as W
from vtonlab.losses import VGGPerceptualLoss
from vtonlab.metrics.perceptual import LPIPSMetric

H, W_ = 64, 48


def samples(n=12, seed=0):
    """Samples with a known warp (gt_flow), a masked person, 18 distinct pose maps (and CP-VTON's body shape, head)."""
    g = torch.Generator().manual_seed(seed)
    pix = tps.pixel_grid((H, W_))
    fixed = tps.FixedGridTPS(5)
    out = []
    for i in range(n):
        mask = (((pix[..., 0] / 0.5) ** 2 + (pix[..., 1] / 0.6) ** 2) <= 1).float()[None]
        colour = torch.rand(3, 1, 1, generator=g) * 2 - 1
        stripes = (torch.sin(pix[..., 1] * 12 + 6 * torch.rand(1, generator=g)) > 0).float()[None]
        cloth = colour * (0.6 + 0.4 * stripes) * mask + (1 - mask)
        flow = fixed(0.1 * (torch.rand(1, 2, 25, generator=g) * 2 - 1), (H, W_))[0] + 0.3 * pix
        worn = (F.grid_sample(mask[None], flow[None], align_corners=True)[0] > 0.5).float()
        on = F.grid_sample(cloth[None], flow[None], padding_mode="border", align_corners=True)[0]
        image = on * worn + (1 - worn) * (-0.3)
        kp = torch.cat([torch.rand(18, 1, generator=g) * W_, torch.rand(18, 1, generator=g) * H, torch.ones(18, 1)], 1)
        pose = torch.exp(-((pix[None, ..., 0] + 1) * (W_ - 1) / 2 - kp[:, 0, None, None]) ** 2 / 9
                         - ((pix[None, ..., 1] + 1) * (H - 1) / 2 - kp[:, 1, None, None]) ** 2 / 9)
        out.append({"cloth": cloth, "cloth_mask": mask, "image": image, "worn_mask": worn, "gt_flow": flow,
                    "gt_flow_mask": worn, "agnostic": image * (1 - worn), "pose_map": pose, "im_name": f"{i:05d}_00.jpg",
                    "body_shape": F.avg_pool2d(worn[None], 9, 1, 4)[0], "head": torch.full((3, H, W_), -1.0)})
    return out


def _batch(n=2):
    return torch.utils.data.default_collate(samples(n))


def _small_tps(**kw):
    return W.tps_config("ci", **kw)


# ------------------------------------------------------------------ official transcriptions (read, not imported)


def _official_constraints(coor):
    """Line-by-line transcription of ConvNet_TPS.BoundedGridLocNet.forward's terms (without .cuda()); coor (B, 25, 2)."""
    num = 5

    def get_row(coor, num):
        sec_dic = []
        for j in range(num):
            buffer, flag = 0, False
            for i in range(num - 1):
                differ = (coor[:, j * num + i + 1, :] - coor[:, j * num + i, :]) ** 2
                if not flag:
                    flag = True
                else:
                    sec_dic.append(torch.abs(differ - buffer))
                buffer = differ
        return torch.stack(sec_dic, dim=1)

    def get_col(coor, num):
        sec_dic = []
        for i in range(num):
            buffer, flag = 0, False
            for j in range(num - 1):
                differ = (coor[:, (j + 1) * num + i, :] - coor[:, j * num + i, :]) ** 2
                if not flag:
                    flag = True
                else:
                    sec_dic.append(torch.abs(differ - buffer))
                buffer = differ
        return torch.stack(sec_dic, dim=1)

    def grad_row(coor, num):
        sec_term = []
        for j in range(num):
            for i in range(1, num - 1):
                x0, y0 = coor[:, j * num + i - 1, :][0]
                x1, y1 = coor[:, j * num + i + 0, :][0]
                x2, y2 = coor[:, j * num + i + 1, :][0]
                sec_term.append(torch.abs((y1 - y0) * (x1 - x2) - (y1 - y2) * (x1 - x0)))
        return sec_term

    def grad_col(coor, num):
        sec_term = []
        for i in range(num):
            for j in range(1, num - 1):
                x0, y0 = coor[:, (j - 1) * num + i, :][0]
                x1, y1 = coor[:, j * num + i, :][0]
                x2, y2 = coor[:, (j + 1) * num + i, :][0]
                sec_term.append(torch.abs((y1 - y0) * (x1 - x2) - (y1 - y2) * (x1 - x0)))
        return sec_term

    row, col = get_row(coor, num), get_col(coor, num)
    rg = torch.max(sum(grad_row(coor, num)), torch.tensor(0.02))
    cg = torch.max(sum(grad_col(coor, num)), torch.tensor(0.02))
    r = torch.tensor(0.08)
    rx, ry = torch.max(r, row[:, :, 0]).mean(), torch.max(r, row[:, :, 1]).mean()
    cx, cy = torch.max(r, col[:, :, 0]).mean(), torch.max(r, col[:, :, 1]).mean()
    return {"rx": rx, "ry": ry, "cx": cx, "cy": cy, "rg": rg, "cg": cg,
            "total": torch.mean(rx + ry + cx + cy + rg + cg)}, row, col


def _official_correlation(feature_a, feature_b):
    """ConvNet_TPS's FeatureCorrelation (the same code as CP-VTON's); LaDI-VTON calls it with A = garment, B = person."""
    b, c, h, w = feature_a.size()
    feature_a = feature_a.transpose(2, 3).contiguous().view(b, c, h * w)
    feature_b = feature_b.view(b, c, h * w).transpose(1, 2)
    return torch.bmm(feature_b, feature_a).view(b, h, w, h * w).transpose(2, 3).transpose(1, 2)


# ------------------------------------------------------------------ inputs and configuration


def test_person_input_is_agnostic_then_pose_maps():
    batch = _batch(2)
    x = W.person_input(batch)
    assert x.shape == (2, 21, H, W_)
    assert torch.equal(x[:, :3], batch["agnostic"]) and torch.equal(x[:, 3:], batch["pose_map"])
    assert torch.equal(gmm.person_representation(batch, "ladi"), x)
    assert gmm.GMMConfig.for_profile("ci", "ladi").person_channels == 21
    with pytest.raises(KeyError, match="agnostic"):
        W.person_input({"pose_map": batch["pose_map"]})


def test_ladi_config_is_the_official_convnet_tps_and_earlier_configs_are_unchanged():
    cfg = W.tps_config("gpu")
    assert (cfg.person, cfg.garment, cfg.loss, cfg.grid_size, cfg.grid_range) == ("ladi", "rgb", "rgb", 5, 0.9)
    assert (cfg.lr, cfg.betas, cfg.tps_constraint, cfg.tps_constraint_samples) == (1e-4, (0.5, 0.99), 0.01, "first")
    assert (cfg.correlation_spatial, cfg.tps_points, cfg.zero_init, cfg.width) == ("person", "absolute", True, 64)
    assert W.tps_config("ci").steps == 150 and W.tps_config("gpu").steps == 10000
    # the options added for LaDI-VTON are absent from the earlier variants' configs, so their checkpoints still match
    for variant in ("cpvton", "cpvton_plus", "gml"):
        keys = set(gmm.GMMConfig.for_profile("cpu", variant).to_dict())
        assert not keys & {"correlation_spatial", "tps_points", "tps_constraint", "tps_constraint_samples"}
    assert gmm.checkpoint_name(cfg) == "ladi_tps"


def test_ladi_gmm_starts_at_its_grid_and_correlates_garment_against_person():
    torch.manual_seed(0)
    model = gmm.GMM(_small_tps()).eval()
    lin = model.regressor.linear
    assert lin.weight.abs().sum() == 0  # BoundedGridLocNet: weight 0, bias atanh(control points)
    ctrl = tps.control_grid(5, 0.9)
    assert torch.allclose(torch.tanh(lin.bias), ctrl.t().reshape(-1), atol=1e-6)
    batch = _batch(2)
    grid, offsets = model(W.person_input(batch), batch["cloth"])
    assert offsets.abs().max() < 1e-6 and torch.allclose(grid, tps.pixel_grid((H, W_)).expand(2, H, W_, 2), atol=1e-5)
    fp = gmm.feature_l2norm(model.extract_person(W.person_input(batch)))
    fg = gmm.feature_l2norm(model.extract_garment(batch["cloth"]))
    official = _official_correlation(fg, fp)  # ConvNet_TPS: correlation(featureA = garment, featureB = person)
    assert torch.allclose(model.correlation_volume(W.person_input(batch), batch["cloth"]), official, atol=1e-6)
    assert not torch.allclose(official, _official_correlation(fp, fg), atol=1e-3)  # CP-VTON's order differs
    # absolute points stay inside (-1, 1), whatever the regressor says
    with torch.no_grad():
        lin.bias.fill_(50.0)
    _, offsets = model(W.person_input(batch), batch["cloth"])
    assert (model.tps.source_points(offsets).abs() <= 1).all()


# ------------------------------------------------------------------ the bounded second-order constraints


def _affine_points(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ctrl = tps.control_grid(5, 0.9)
    a = torch.eye(2) + 0.3 * torch.randn(b, 2, 2, generator=g)
    t = 0.1 * torch.randn(b, 1, 2, generator=g)
    return ctrl[None] @ a.transpose(1, 2) + t


def test_constraints_cost_their_floor_on_affine_grids_and_match_the_official_terms():
    pts = _affine_points().requires_grad_(True)
    ours = gmm.tps_grid_constraints(pts)
    official, row, col = _official_constraints(pts.detach())
    assert row.abs().max() < 1e-6 and col.abs().max() < 1e-6  # an affine grid has no second-order differences
    assert ours["total"].item() == pytest.approx(4 * 0.08 + 2 * 0.02, abs=1e-6)
    ours["total"].backward()
    assert pts.grad.abs().max() == 0  # bounded: nothing to push
    bent = tps.control_grid(5, 0.9)[None].repeat(3, 1, 1)
    bent.view(3, 5, 5, 2)[:, 2, 1, 0] += 0.3  # one point moved along its row: uneven spacing, not collinear across
    bent.view(3, 5, 5, 2)[0, 1, 3, 1] += 0.35
    bent = bent + 0.05 * torch.randn(3, 25, 2, generator=torch.Generator().manual_seed(1))
    ours = gmm.tps_grid_constraints(bent)
    official, _, _ = _official_constraints(bent)
    assert ours["total"] > 0.36 + 0.05
    for k in ("rx", "ry", "cx", "cy", "rg", "cg", "total"):
        assert ours[k].item() == pytest.approx(official[k].item(), rel=1e-5, abs=1e-7), k
    # the collinearity terms read the first sample only (as the official [0]); "all" averages the batch
    every = gmm.tps_grid_constraints(bent, samples="all")
    assert every["rx"] == ours["rx"] and every["rg"].item() != pytest.approx(ours["rg"].item())
    with pytest.raises(ValueError, match="grid_size"):
        gmm.tps_grid_constraints(torch.zeros(2, 24, 2))


def test_gmm_losses_add_the_weighted_constraint():
    cfg = _small_tps()
    batch = _batch(2)
    offsets = 0.2 * torch.randn(2, 2, 25, generator=torch.Generator().manual_seed(0))
    grid = tps.FixedGridTPS(5, 0.9)(offsets, (H, W_))
    losses = gmm.gmm_losses(grid, batch, cfg, offsets)
    terms = gmm.tps_grid_constraints(tps.control_grid(5, 0.9)[None] + offsets.transpose(1, 2))
    assert losses["loss"].item() == pytest.approx((losses["l1"] + 0.01 * terms["total"]).item(), rel=1e-6)
    assert losses["constraint"].item() == pytest.approx(terms["total"].item())
    target = batch["image"] * batch["worn_mask"] + (1 - batch["worn_mask"])
    assert losses["l1"].item() == pytest.approx((gmm.warp_garment(grid, batch)[0] - target).abs().mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 2, 25\)"):
        gmm.gmm_losses(grid, batch, cfg)


# ------------------------------------------------------------------ the refinement UNet


def test_refine_unet_is_the_official_unet_and_its_output_is_not_squashed():
    big = W.RefineUNet(W.WarpRefineConfig.for_profile("gpu", image_size=(H, W_)))
    widths = [big.inc[3].out_channels] + [d[1][3].out_channels for d in big.downs]
    assert widths == [64, 128, 256, 512, 512] and big.inc[0].in_channels == 24 and big.inc[0].bias is None
    assert [u.conv[3].out_channels for u in big.ups] == [256, 128, 64, 64] and big.outc.kernel_size == (1, 1)
    cfg = W.WarpRefineConfig.for_profile("ci")
    assert (cfg.width, cfg.vgg_resize, cfg.l1_weight, cfg.vgg_weight, cfg.betas) == (16, 0, 1.0, 0.25, (0.5, 0.99))
    assert W.WarpRefineConfig.for_profile("gpu").vgg_resize == 256
    net = W.RefineUNet(cfg).eval()
    batch = _batch(2)
    x = W.refine_input(batch, batch["cloth"])
    assert torch.equal(x[:, :3], batch["agnostic"]) and torch.equal(x[:, 3:21], batch["pose_map"])
    assert torch.equal(x[:, 21:], batch["cloth"])
    assert net(x).shape == (2, 3, H, W_)
    with torch.no_grad():
        net.outc.weight.zero_()
        net.outc.bias.fill_(5.0)
    assert torch.allclose(net(x), torch.full((2, 3, H, W_), 5.0))  # official: the 1x1 conv as is
    squashed = W.RefineUNet(dataclasses.replace(cfg, output="tanh")).eval()
    squashed.load_state_dict(net.state_dict())
    assert torch.allclose(squashed(x), torch.tanh(torch.tensor(5.0)).expand(2, 3, H, W_))


def test_bad_inputs_name_what_was_expected():
    batch = _batch(2)
    net = W.RefineUNet(W.WarpRefineConfig.for_profile("ci"))
    with pytest.raises(ValueError, match=r"\(B, 24, 64, 48\)"):
        net(torch.zeros(1, 21, H, W_))
    with pytest.raises(ValueError, match=r"\(B, 24, 64, 48\)"):
        net(torch.zeros(1, 24, 32, 48))
    with pytest.raises(ValueError, match=r"pose_map: expected \(B, 18, 64, 48\)"):
        W.refine_input({**batch, "pose_map": batch["pose_map"][:, :17]}, batch["cloth"])
    with pytest.raises(ValueError, match=r"warped: expected \(B, 3, 64, 48\)"):
        W.refine_input(batch, batch["cloth"][..., :32, :])
    model = gmm.GMM(_small_tps())
    with pytest.raises(ValueError, match=r"expected \(B, 21, 64, 48\)"):
        model(torch.zeros(1, 22, H, W_), batch["cloth"][:1])
    with pytest.raises(ValueError, match="output"):
        W.WarpRefineConfig(output="relu")
    with pytest.raises(ValueError, match="grid_range"):
        gmm.GMMConfig(image_size=(H, W_), regressor_kernel=3, tps_points="absolute", grid_range=1.0)
    with pytest.raises(ValueError, match="tps_constraint"):
        gmm.GMMConfig(image_size=(H, W_), regressor_kernel=3, transform="affine", tps_constraint=0.01)
    with pytest.raises(ValueError, match="pose"):
        W.train_refine(W.WarpRefineConfig.for_profile("ci", pose_style="cpvton"), model, samples(8))


# ------------------------------------------------------------------ training


def test_refinement_training_keeps_the_tps_frozen():
    torch.manual_seed(0)
    tps_model = gmm.GMM(_small_tps())
    before = {k: v.clone() for k, v in tps_model.state_dict().items()}
    cfg = W.WarpRefineConfig.for_profile("ci", steps=3, batch_size=4)
    torch.manual_seed(cfg.seed)
    initial = W.RefineUNet(cfg).state_dict()
    model, history, label = W.train_refine(cfg, tps_model, samples(8), vgg=VGGPerceptualLoss("random"), progress=False)
    after = tps_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
    assert not any(p.requires_grad for p in tps_model.parameters())
    assert any(not torch.equal(initial[k], v) for k, v in model.state_dict().items())
    assert len(history.losses["loss"]) == 3 and "random init" in label
    assert history.losses["vgg"][0] > 0 and all(torch.isfinite(torch.tensor(history.losses["loss"])))


def test_get_trained_stages_cache_and_reload_and_compare(tmp_cache):
    data = samples(12)
    train_data, test_data = data[:8], data[8:]
    tps_cfg = _small_tps(steps=3, batch_size=4)
    cfg = W.WarpRefineConfig.for_profile("ci", steps=2, batch_size=4)
    kw = dict(train_data=train_data, test_data=test_data, progress=False, verbose=False)
    refine, ckpt = W.get_trained_refine("ci", config=cfg, tps=tps_cfg, vgg=VGGPerceptualLoss("random"), **kw)
    assert ckpt.trained and ckpt.name == "ladi_warp_refine"
    assert set(ckpt.metrics) >= {"test_ssim", "test_lpips", "lpips_metric", "test_iou", "test_ssim_tps", "vgg_weights"}
    assert ckpt.config["tps"] == tps_cfg.to_dict() and ckpt.config["steps"] == 2
    from vtonlab.data import synthvton_params
    assert ckpt.config["data"] == synthvton_params("ci")
    tps_model, tps_ckpt = W.get_trained_tps("ci", config=tps_cfg, verbose=False)  # trained above, now cached
    assert tps_ckpt.name == "ladi_tps" and not tps_ckpt.trained
    assert set(tps_ckpt.metrics) >= {"test_epe_px", "test_iou", "test_ssim"} and tps_ckpt.config["tps_constraint"] == 0.01
    again, ckpt2 = W.get_trained_refine("ci", config=cfg, tps=tps_cfg, verbose=False)
    assert not ckpt2.trained and ckpt2.source == "cache"
    x = W.refine_input(_batch(2), _batch(2)["cloth"])
    assert torch.equal(refine(x), again(x))

    lpips = LPIPSMetric("random")
    cp = gmm.GMM(gmm.GMMConfig.for_profile("ci", zero_init=True)).eval()
    table = W.compare_matchers("ci", test_data=test_data, lpips=lpips,
                               models={"CP-VTON GMM": cp, "LaDI-VTON TPS": tps_model,
                                       "LaDI-VTON TPS + refinement": (tps_model, refine)})
    rows = table.to_dict()
    assert list(rows) == ["CP-VTON GMM", "LaDI-VTON TPS", "LaDI-VTON TPS + refinement"]
    direct = gmm.evaluate_warps(tps_model, test_data, keep=False)
    assert rows["LaDI-VTON TPS"]["epe_px"] == pytest.approx(direct["mean_epe_px"], rel=1e-6)
    assert rows["LaDI-VTON TPS"]["ssim"] == pytest.approx(direct["mean_ssim"], rel=1e-6)
    assert rows["LaDI-VTON TPS + refinement"]["epe_px"] is None
    assert rows["LaDI-VTON TPS + refinement"]["iou"] == pytest.approx(rows["LaDI-VTON TPS"]["iou"])
    assert rows["LaDI-VTON TPS + refinement"]["ssim"] == pytest.approx(ckpt.metrics["test_ssim"], rel=1e-5)
    assert all(0 <= r["lpips"] for r in rows.values())
    md = table.to_markdown()
    assert "| LPIPS-randalex |" in md.splitlines()[0] and "| LaDI-VTON TPS + refinement | - |" in md


def test_refine_losses_weights_and_the_official_vgg_resize():
    seen = []

    def vgg(a, b):  # records what the perceptual loss receives
        seen.append((tuple(a.shape), tuple(b.shape)))
        return (a - b).abs().mean() * 10

    pred, target = torch.zeros(2, 3, H, W_), torch.ones(2, 3, H, W_)
    cfg = W.WarpRefineConfig.for_profile("ci")
    losses = W.refine_losses(pred, target, vgg, cfg)
    assert losses["loss"].item() == pytest.approx(1.0 + 0.25 * 10.0) and seen[-1][0] == (2, 3, H, W_)
    W.refine_losses(pred, target, vgg, dataclasses.replace(cfg, vgg_resize=96))  # short side 48 -> 96, as Resize(256)
    assert seen[-1] == ((2, 3, 128, 96), (2, 3, 128, 96))
    with pytest.raises(ValueError, match="same shape"):
        W.refine_losses(pred, target[:, :, :32], vgg, cfg)
