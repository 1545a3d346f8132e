"""Render functions of notebook 10 (vtonlab.viz.ladi_warp): tables from configs, input panels, grids, error maps, browser."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vtonlab import gmm, tps  # noqa: E402
from vtonlab.ladi import warping  # noqa: E402
from vtonlab.viz import ladi_warp as V  # noqa: E402

H, W = 32, 24


def _sample(seed: int = 0, pose_value: float = 1.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    worn = (torch.rand(1, H, W, generator=g) > 0.6).float()
    pose = torch.zeros(18, H, W)
    for k in range(18):
        pose[k, (2 * k) % H, (3 * k) % W] = pose_value * (k + 1) / 18
    return {"image": torch.rand(3, H, W, generator=g) * 2 - 1, "cloth": torch.rand(3, H, W, generator=g) * 2 - 1,
            "cloth_mask": (torch.rand(1, H, W, generator=g) > 0.5).float(), "worn_mask": worn,
            "body_shape": torch.rand(1, H, W, generator=g), "head": torch.rand(3, H, W, generator=g) * 2 - 1,
            "pose_map": pose, "agnostic": torch.rand(3, H, W, generator=g) * 2 - 1}


def _pair(seed: int = 0):
    cp = _sample(seed)
    ladi = dict(cp, pose_map=torch.rand(18, H, W, generator=torch.Generator().manual_seed(seed + 100)))
    return cp, ladi


def _configs(**ladi_overrides):
    return {"CP-VTON GMM": gmm.GMMConfig.for_profile("ci", "cpvton"), "MG-VTON GML": gmm.GMMConfig.for_profile("ci", "gml"),
            "LaDI-VTON TPS": warping.tps_config("ci", **ladi_overrides)}


# ------------------------------------------------------------------------------------------ set-up table


def test_setup_rows_are_read_from_the_configs():
    rows = {r["matcher"]: r for r in V.matcher_setup_rows(_configs())}
    assert rows["CP-VTON GMM"]["person input"].endswith(": 22 ch")
    assert rows["MG-VTON GML"]["person input"].endswith(": 2 ch")
    assert rows["LaDI-VTON TPS"]["person input"].endswith(": 21 ch")
    assert rows["MG-VTON GML"]["garment input"].startswith("in-shop garment mask")
    assert rows["MG-VTON GML"]["loss"] == "L1(warped mask, worn mask)"
    assert "0.01 x bounded grid constraints" in rows["LaDI-VTON TPS"]["loss"] and "first sample" in rows["LaDI-VTON TPS"]["loss"]
    assert "constraints" not in rows["CP-VTON GMM"]["loss"]
    assert rows["LaDI-VTON TPS"]["grid"] == "5x5 TPS in [-0.9, 0.9]" and rows["CP-VTON GMM"]["grid"] == "5x5 TPS in [-1, 1]"
    assert rows["LaDI-VTON TPS"]["optimiser"] == "Adam, lr 0.0001, betas (0.5, 0.99)"
    assert rows["MG-VTON GML"]["optimiser"] == "Adam, lr 0.0002, betas (0.5, 0.999)"
    assert rows["LaDI-VTON TPS"]["correlation"].endswith("person locations")
    assert rows["CP-VTON GMM"]["correlation"].endswith("garment locations")
    assert rows["LaDI-VTON TPS"]["pose maps"].startswith("Gaussians") and rows["CP-VTON GMM"]["pose maps"].startswith("squares")
    assert rows["MG-VTON GML"]["pose maps"] == "none"
    assert "starts at the identity" in rows["LaDI-VTON TPS"]["regressor output"]
    assert rows["CP-VTON GMM"]["steps (this profile)"] == f"{gmm.GMMConfig.for_profile('ci').steps} x batch 8"


def test_setup_table_changes_with_the_config():
    changed = {r["matcher"]: r for r in V.matcher_setup_rows(_configs(lr=3e-4, tps_constraint=0.05, grid_range=0.8,
                                                                      tps_constraint_samples="all"))}["LaDI-VTON TPS"]
    assert changed["optimiser"].startswith("Adam, lr 0.0003,")
    assert "0.05 x bounded grid constraints (collinearity on every sample)" in changed["loss"]
    assert changed["grid"] == "5x5 TPS in [-0.8, 0.8]"
    plus = V.matcher_setup_rows({"CP-VTON+": gmm.GMMConfig.for_profile("ci", "cpvton_plus")})[0]
    assert plus["loss"].endswith("+ 40 x grid interval term")
    table = V.matcher_setup_table(_configs())
    lines = table.splitlines()
    assert lines[0] == "| | CP-VTON GMM | MG-VTON GML | LaDI-VTON TPS |"
    assert all(line.count("|") == 5 for line in lines)
    assert any(line.startswith("| loss |") for line in lines)
    with pytest.raises(TypeError, match="GMMConfig"):
        V.matcher_setup_rows({"x": dataclasses.asdict(gmm.GMMConfig())})
    with pytest.raises(ValueError, match="empty"):
        V.matcher_setup_table({})


# ------------------------------------------------------------------------------------------ inputs


def test_input_panels_show_what_each_matcher_reads():
    cp, ladi = _pair()
    panels = V.matcher_input_panels(cp, ladi)
    for label, kind in (("CP-VTON GMM", "cpvton"), ("MG-VTON GML", "gml"), ("LaDI-VTON TPS", "ladi")):
        assert sum(ch for _, _, ch in panels[label]["person"]) == gmm.PERSON_CHANNELS[kind], label
    cp_pose = dict((t, img) for t, img, _ in panels["CP-VTON GMM"]["person"])["pose: 18 squares"]
    ladi_pose = dict((t, img) for t, img, _ in panels["LaDI-VTON TPS"]["person"])["pose: 18 Gaussians"]
    assert np.allclose(cp_pose, cp["pose_map"].amax(0).numpy())  # each reads its own pose style
    assert np.allclose(ladi_pose, ladi["pose_map"].amax(0).numpy())
    masked = panels["LaDI-VTON TPS"]["person"][0][1]
    assert np.allclose(masked, ((ladi["agnostic"] + 1) / 2).permute(1, 2, 0).numpy(), atol=1e-6)
    m = cp["worn_mask"]
    target = ((cp["image"] * m + (1 - m) + 1) / 2).permute(1, 2, 0).numpy()
    assert np.allclose(panels["LaDI-VTON TPS"]["target"][0][1], target, atol=1e-6)
    assert np.allclose(panels["CP-VTON GMM"]["target"][0][1], target, atol=1e-6)
    assert np.array_equal(panels["MG-VTON GML"]["target"][0][1], m[0].numpy())
    assert np.array_equal(panels["MG-VTON GML"]["garment"][0][1], cp["cloth_mask"][0].numpy())


def test_input_panels_reject_mismatched_samples():
    cp, ladi = _pair()
    with pytest.raises(ValueError, match="same sample"):
        V.matcher_input_panels(cp, dict(ladi, image=ladi["image"].flip(-1)))
    with pytest.raises(KeyError, match="agnostic"):
        V.matcher_input_panels(cp, {k: v for k, v in ladi.items() if k != "agnostic"})
    with pytest.raises(ValueError, match="one sample"):
        V.matcher_input_panels({k: v[None] for k, v in cp.items()}, ladi)
    with pytest.raises(ValueError, match="image size"):
        V.matcher_input_panels(dict(cp, head=torch.zeros(3, H, W + 2)), ladi)


def test_render_matcher_inputs_labels_rows_with_channel_counts():
    cp, ladi = _pair()
    fig = V.render_matcher_inputs(cp, ladi, title="sample 0")
    axes = np.array(fig.axes).reshape(3, 5)
    assert [ax.get_ylabel().splitlines()[1] for ax in axes[:, 0]] == ["person: 22 ch", "person: 2 ch", "person: 21 ch"]
    assert not axes[1, 2].axison  # GML has two person panels: the third slot is empty
    assert axes[2, 1].get_title() == "pose: 18 Gaussians (18 ch)"
    assert axes[0, 4].get_title() == "target: worn garment"
    assert fig._suptitle.get_text() == "sample 0"


# ------------------------------------------------------------------------------------------ control grids


def test_control_grid_panels_show_the_library_terms():
    ident = tps.control_grid(5, 0.9)
    x, y = ident[:, 0], ident[:, 1]
    bent = torch.stack([x, 0.8 * y + 0.6 * x**2 - 0.25], -1)
    fig = V.render_control_grids({"identity": ident, "bent": bent}, reference=ident)
    titles = [ax.get_title() for ax in fig.axes]
    floor = 4 * gmm.CONSTRAINT_FLOOR + 2 * gmm.COLLINEAR_FLOOR
    assert titles[0] == f"identity\ntotal {floor:.4f}"
    total = gmm.tps_grid_constraints(bent[None].double())["total"].item()
    assert titles[1] == f"bent\ntotal {total:.4f}" and total > floor
    red = {ax.get_title().split("\n")[0]: [t.get_text().split()[0] for t in ax.texts if t.get_color() == "tab:red"]
           for ax in fig.axes}
    assert red["identity"] == []  # every term at its floor
    assert "ry" in red["bent"] and "rg" in red["bent"] and "rx" not in red["bent"]  # x spacing unchanged along rows
    with pytest.raises(ValueError, match=r"points \(K, 2\)"):
        V.render_control_grids({"bad": ident.T})
    with pytest.raises(ValueError, match="empty"):
        V.render_control_grids({})


# ------------------------------------------------------------------------------------------ errors, refinement


def test_warp_error_map_values():
    a = torch.rand(3, H, W) * 2 - 1
    assert np.array_equal(V.warp_error_map(a, a), np.zeros((H, W), dtype=np.float32))
    assert np.allclose(V.warp_error_map(torch.ones(3, H, W), -torch.ones(3, H, W)), 1.0)
    assert np.allclose(V.warp_error_map(torch.full((3, H, W), 3.0), torch.ones(3, H, W)), 0.0)  # clipped like the display
    b = torch.rand(3, H, W) * 2 - 1
    assert np.isclose(V.warp_error_map(a, b).mean(), (a - b).abs().mean().item() / 2, atol=1e-6)
    one_channel = a.clone()
    one_channel[0] = -a[0]
    assert np.allclose(V.warp_error_map(one_channel, a), (2 * a[0].abs() / 2 / 3).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        V.warp_error_map(a, b[:, :-1])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        V.warp_error_map(a[:1], b[:1])


def _refined_results(n=5):
    samples = [_sample(i) for i in range(n)]
    image = torch.stack([s["image"] for s in samples])
    worn = torch.stack([s["worn_mask"] for s in samples])
    target = image * worn + (1 - worn)
    return {"image": image, "worn_mask": worn, "warped": target.roll(3, dims=-1), "refined": target * 0.9,
            "cloth": torch.stack([s["cloth"] for s in samples])}


def test_render_refinement_rows_and_error_titles():
    res = _refined_results()
    fig = V.render_refinement(res, (0, -1))
    grid = [ax for ax in fig.axes if ax.get_title()]
    assert len(grid) == 2 * 7  # person, garment, TPS, refined, target, two error maps
    target = res["image"][4] * res["worn_mask"][4] + (1 - res["worn_mask"][4])
    assert grid[7].get_title() == "person #4"
    assert grid[12].get_title() == f"|TPS - target|\nmean {V.warp_error_map(res['warped'][4], target).mean():.3f}"
    assert grid[13].get_title() == f"|refined - target|\nmean {V.warp_error_map(res['refined'][4], target).mean():.3f}"
    no_cloth = V.render_refinement({k: v for k, v in res.items() if k != "cloth"}, [2])
    assert len([ax for ax in no_cloth.axes if ax.get_title()]) == 6
    with pytest.raises(IndexError, match=r"\[0, 4\]"):
        V.render_refinement(res, [5])
    with pytest.raises(ValueError, match="empty"):
        V.render_refinement(res, [])
    with pytest.raises(KeyError, match="refined"):
        V.render_refinement({k: v for k, v in res.items() if k != "refined"})
    with pytest.raises(ValueError, match="cloth"):
        V.render_refinement(res, [0], cloth=res["cloth"][:, :, :-1])


# ------------------------------------------------------------------------------------------ widget


def _browser_results():
    res = _refined_results(4)
    grid = dict(res, warped=res["warped"], epe_map=torch.full((4, H, W), float("nan")),
                epe_px=torch.tensor([1.0, 2.0, 3.0, 4.0]), iou=torch.tensor([0.5, 0.6, 0.7, 0.8]),
                ssim=torch.tensor([0.1, 0.2, 0.3, 0.4]), names=["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    grid["epe_map"][:, :4, :4] = torch.arange(4.0)[:, None, None] + 1
    refined = dict(res, warped=res["refined"], ssim=torch.tensor([0.3, 0.4, 0.5, float("nan")]),
                   lpips=torch.tensor([0.1, 0.2, 0.3, 0.4]))
    return {"LaDI-VTON TPS": grid, "LaDI-VTON TPS + refinement": refined}


def test_matcher_browser_panels_follow_the_chosen_matcher():
    results = _browser_results()
    fig = V.render_matcher_browser(results, "LaDI-VTON TPS", 2)
    assert fig._suptitle.get_text() == "LaDI-VTON TPS: test sample 2 (c.jpg),  EPE 3.00 px,  IoU 0.700,  SSIM 0.300"
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[-1] == "end-point error (px)\nmean 3.00"
    g = results["LaDI-VTON TPS"]
    err = V.warp_error_map(g["warped"][2], g["image"][2] * g["worn_mask"][2] + (1 - g["worn_mask"][2])).mean()
    assert titles[4] == f"|warped - target|\nmean {err:.3f}"
    ref = V.render_matcher_browser(results, "LaDI-VTON TPS + refinement", -1, lpips_name="LPIPS-randalex")
    assert ref._suptitle.get_text() == "LaDI-VTON TPS + refinement: test sample 3,  SSIM -,  LPIPS-randalex 0.400"
    assert any("no end-point error" in t.get_text() for ax in ref.axes for t in ax.texts)
    r = results["LaDI-VTON TPS + refinement"]
    err_ref = V.warp_error_map(r["refined"][3], r["image"][3] * r["worn_mask"][3] + (1 - r["worn_mask"][3])).mean()
    assert [ax.get_title() for ax in ref.axes if ax.get_title()][4] == f"|warped - target|\nmean {err_ref:.3f}"


def test_matcher_browser_bad_inputs():
    results = _browser_results()
    for index in (0, 3, -4):  # slider extremes
        V.render_matcher_browser(results, "LaDI-VTON TPS", index)
    with pytest.raises(IndexError, match=r"\[0, 3\]"):
        V.render_matcher_browser(results, "LaDI-VTON TPS", 4)
    with pytest.raises(KeyError, match="expected one of"):
        V.render_matcher_browser(results, "CP-VTON GMM", 0)
    with pytest.raises(KeyError, match="cloth"):
        V.render_matcher_browser({"x": {k: v for k, v in results["LaDI-VTON TPS"].items() if k != "cloth"}}, "x", 0)
    with pytest.raises(ValueError, match="epe_map"):
        V.render_matcher_browser({"x": dict(results["LaDI-VTON TPS"], epe_map=torch.zeros(4, H, W + 1))}, "x", 0)
