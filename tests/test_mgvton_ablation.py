"""Tests for vtonlab.mgvton.ablation: the rows' wiring, the metrics against planted answers, the seed statistics and
the test sets (paired and unpaired, ci profile). Stages are tiny UNTRAINED networks: no training happens here."""

import pytest
import torch

from vtonlab import gmm
from vtonlab.data.representation import worn_mask
from vtonlab.metrics import LPIPSMetric
from vtonlab.mgvton import ablation as A
from vtonlab.mgvton import parsing as P
from vtonlab.mgvton import refine as R
from vtonlab.mgvton import warpgan as G
from vtonlab.profiles import get_profile

PROFILE = get_profile("ci")
SMALL = dict(width=4, n_blocks=1)


@pytest.fixture(scope="module")
def lpips():
    return LPIPSMetric(weights="random")


@pytest.fixture()
def fake_stages(monkeypatch):
    """Replace every trained stage with a tiny untrained one and record which variants were asked for."""
    calls = []

    def get_stage(profile, stage, variant="full", seed=0, **kw):
        calls.append((stage, variant, seed))
        torch.manual_seed(seed)
        over = A.STAGE_VARIANTS[stage][variant]
        if stage == "warpgan":
            return G.WarpGANGenerator(G.WarpGANConfig.for_profile(PROFILE, ndf=4, seed=seed, **SMALL, **over)), None
        return R.RefineGenerator(R.RefineConfig.for_profile(PROFILE, seed=seed, **SMALL, **over)), None

    def tiny_gmm(profile, variant="cpvton", **kw):
        calls.append(("gmm", variant, 0))
        return gmm.GMM(gmm.GMMConfig.for_profile(PROFILE, variant, width=4, max_channels=8)), None

    monkeypatch.setattr(A, "get_stage", get_stage)
    monkeypatch.setattr(P, "get_trained", lambda profile, **kw: (P.ParsingGenerator(
        P.ParsingConfig.for_profile(PROFILE, ndf=4, **SMALL)), None))
    monkeypatch.setattr(gmm, "get_trained", tiny_gmm)
    return calls


def test_checkpoint_keys_and_unknown_names():
    assert A.checkpoint_key("warpgan") == "warpgan"
    assert A.checkpoint_key("warpgan", "nofw", 2) == "warpgan_nofw_seed2"
    assert A.checkpoint_key("refine", "nomask", 0) == "refine_nomask"
    with pytest.raises(KeyError, match="variant of refine"):
        A.checkpoint_key("refine", "nofw")
    with pytest.raises(KeyError, match="stage"):
        A.checkpoint_key("parsing")
    with pytest.raises(ValueError, match="seed"):
        A.checkpoint_key("warpgan", "full", -1)
    with pytest.raises(KeyError, match="unknown ablation row"):
        A.pipeline_for(PROFILE, "w/o everything")
    # three training seeds wherever the table is read; ci only checks that the notebook runs
    assert A.ablation_seeds("cpu") == A.ablation_seeds("gpu") == (0, 1, 2) and A.ablation_seeds("ci") == (0,)


@pytest.mark.parametrize("row, expect", [
    ("full", {("warpgan", "full", 1), ("refine", "full", 1), ("gmm", "gml", 0)}),
    ("w/o Mask", {("warpgan", "full", 1), ("refine", "nomask", 1), ("gmm", "gml", 0)}),
    ("w/o feature warping", {("warpgan", "nofw", 1), ("refine", "full", 1), ("gmm", "gml", 0)}),
    ("CP-VTON GMM", {("warpgan", "full", 1), ("refine", "full", 1), ("gmm", "cpvton", 0)}),
])
def test_each_row_builds_its_own_stages(fake_stages, row, expect):
    pipe = A.pipeline_for(PROFILE, row, seed=1)
    assert set(fake_stages) == expect
    assert pipe.warpgan_model.config.feature_warping == (row != "w/o feature warping")
    assert pipe.refine_model.config.composition == (row != "w/o Mask")
    assert pipe.gml_model.config.person == ("cpvton" if row == "CP-VTON GMM" else "gml")
    assert pipe.use_render


def test_stage_cache_shares_models_between_rows(fake_stages):
    cache = {}
    a = A.pipeline_for(PROFILE, "full", 0, cache=cache)
    b = A.pipeline_for(PROFILE, "w/o Render", 0, cache=cache)
    assert a.warpgan_model is b.warpgan_model and a.refine_model is b.refine_model
    assert not b.use_render and a.use_render
    assert len(fake_stages) == 3  # warpgan, refine and GML once each


@pytest.fixture(scope="module")
def paired():
    return A.test_set(PROFILE, "paired", limit=4)


@pytest.fixture(scope="module")
def unpaired():
    return A.test_set(PROFILE, "unpaired", limit=4)


def test_test_sets_hold_the_right_ground_truth(paired, unpaired):
    h, w = PROFILE.image_size
    for data in (paired, unpaired):
        assert data["gt_image"].shape == (4, 3, h, w) and data["cloth"].shape == (4, 3, h, w)
        assert data["target_pose_map"].shape == (4, 18, h, w) and data["gt_parse"].dtype == torch.long
    # same pairs, same people and poses: only the garment and with it the ground truth change
    assert torch.equal(paired["source_parse"], unpaired["source_parse"])
    assert torch.equal(paired["target_pose_keypoints"], unpaired["target_pose_keypoints"])
    assert not torch.equal(paired["cloth"], unpaired["cloth"])
    region = worn_mask(paired["gt_parse"]) + worn_mask(unpaired["gt_parse"])
    outside = (region == 0).expand_as(paired["gt_image"])
    inside = (worn_mask(unpaired["gt_parse"]) > 0).expand_as(paired["gt_image"])
    diff = (paired["gt_image"] - unpaired["gt_image"]).abs()
    assert diff[inside].mean() > 5 * diff[outside].mean()
    with pytest.raises(ValueError, match="setting"):
        A.test_set(PROFILE, "half-paired")


def test_row_metrics_on_planted_outputs(paired, lpips):
    perfect = {"tryon": paired["gt_image"].clone(), "parsing": paired["gt_parse"].clone()}
    m = A.row_metrics(perfect, paired, lpips=lpips)
    assert m["ssim"] == pytest.approx(1, abs=1e-3) and m["ssim_garment"] == pytest.approx(1, abs=1e-3)
    assert m["lpips"] == pytest.approx(0, abs=1e-6) and m["lpips_garment"] == pytest.approx(0, abs=1e-6)
    assert m["miou"] == 1.0 and m["fid"] is None
    # damage only OUTSIDE the garment: the garment-region metrics must not see it, the whole-image ones must
    region = worn_mask(paired["gt_parse"]).float()
    noisy = paired["gt_image"] * region + (1 - region) * torch.rand_like(paired["gt_image"])
    m2 = A.row_metrics({"tryon": noisy, "parsing": paired["gt_parse"]}, paired, lpips=lpips)
    assert m2["lpips_garment"] == pytest.approx(0, abs=1e-6)
    assert m2["ssim"] < 0.9 and m2["lpips"] > 0.01
    # a wrong parsing lowers the mIoU
    wrong = torch.zeros_like(paired["gt_parse"])
    assert A.row_metrics({"tryon": noisy, "parsing": wrong}, paired, lpips=lpips)["miou"] < 0.5


def test_ground_truth_parsing_row_feeds_the_true_parsing(fake_stages, paired):
    pipe = A.pipeline_for(PROFILE, "ground-truth parsing", 0)
    out = A.run_pipeline(pipe, paired, "ground-truth parsing", batch_size=3)
    assert torch.equal(out["parsing"], paired["gt_parse"])
    full = A.run_pipeline(A.pipeline_for(PROFILE, "full", 0), paired, "full", batch_size=3)
    assert not torch.equal(full["parsing"], paired["gt_parse"])
    off = A.run_pipeline(A.pipeline_for(PROFILE, "w/o Render", 0), paired, "w/o Render", batch_size=3)
    assert torch.equal(off["tryon"], off["coarse"])


def _result(values):
    """An AblationResult with planted per-seed values of one metric ("ssim") for rows full and w/o Render."""
    res = A.AblationResult((0, 1, 2), ("full", "w/o Render"), ("paired",), {"paired": 4})
    for row, vals in values.items():
        for seed, v in zip((0, 1, 2), vals):
            res.runs[("paired", row, seed)] = {m: (v if m == "ssim" else None) for m in A.METRICS}
    return res


def test_mean_spread_and_direction_need_more_than_the_seed_spread():
    res = _result({"full": [0.50, 0.52, 0.54], "w/o Render": [0.60, 0.61, 0.62]})
    assert res.mean("paired", "full", "ssim") == pytest.approx(0.52)
    assert res.spread("paired", "full", "ssim") == pytest.approx(0.04)
    assert res.direction("paired", "w/o Render", "ssim") == "better"
    close = _result({"full": [0.50, 0.52, 0.54], "w/o Render": [0.53, 0.54, 0.55]})
    assert close.direction("paired", "w/o Render", "ssim") == "within spread"
    table = res.table("paired", metrics=("ssim",))
    assert "| w/o Render | 0.610 (0.020) |" in table and "ssim ↑" in table
    assert res.to_dict()["rows"]["paired/full"]["ssim"]["spread"] == pytest.approx(0.04)
