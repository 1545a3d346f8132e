"""Tests for vtonlab.viz.mgvton: figure structure, what the panels show, and errors naming the expected shapes."""

import numpy as np
import pytest
import torch

from vtonlab.mgvton.ablation import METRICS, AblationResult
from vtonlab.viz import mgvton as V

H, W, B = 64, 48, 3


def _outputs():
    g = torch.Generator().manual_seed(0)
    img = lambda: torch.rand(B, 3, H, W, generator=g) * 2 - 1  # noqa: E731
    parsing = torch.zeros(B, H, W, dtype=torch.long)
    parsing[:, 20:40, 10:30] = 5
    return {"parsing": parsing, "warped_cloth": img(), "coarse": img(), "composition_mask": torch.rand(B, 1, H, W, generator=g),
            "tryon": img()}


def _data():
    kp = torch.zeros(B, 18, 3)
    kp[:, :, 0], kp[:, :, 1], kp[:, :, 2] = 24, torch.linspace(5, 60, 18), 1
    return {"source_image": torch.zeros(B, 3, H, W), "target_pose_keypoints": kp, "gt_image": torch.ones(B, 3, H, W)}


def test_pose_skeleton_draws_limbs_and_points_only_where_confident():
    kp = torch.zeros(18, 3)
    kp[1] = torch.tensor([24.0, 10.0, 1.0])
    kp[8] = torch.tensor([24.0, 50.0, 1.0])  # neck -> right hip: a vertical limb
    img = V.pose_skeleton_image(kp, (H, W))
    assert img.shape == (H, W, 3) and img.min() >= 0 and img.max() <= 1
    assert (img[30, 24] < 1).any() and (img[30, 5] == 1).all()  # on the limb / far from it
    kp[8, 2] = 0
    assert (V.pose_skeleton_image(kp, (H, W))[30, 24] == 1).all()  # an absent keypoint draws no limb
    with pytest.raises(ValueError, match=r"\(18, 3\)"):
        V.pose_skeleton_image(torch.zeros(17, 3), (H, W))


def test_composition_and_pipeline_figures():
    o = _outputs()
    fig = V.render_composition(o["warped_cloth"], o["coarse"], o["composition_mask"], o["tryon"], indices=(0, 2),
                               target=_data()["gt_image"])
    assert len(fig.axes) == 2 * 5
    with pytest.raises(ValueError, match=r"mask: expected a batch \(B, 1, H, W\)"):
        V.render_composition(o["warped_cloth"], o["coarse"], o["composition_mask"][:, 0], o["tryon"])
    fig = V.render_pipeline(o, _data(), indices=(1,))
    assert [ax.get_title() for ax in fig.axes] == list(V._PIPELINE_COLUMNS)
    shown = fig.axes[7].get_images()[0].get_array()
    assert np.allclose(shown, 1.0)  # the ground-truth panel shows the ground truth
    with pytest.raises(KeyError, match="coarse"):
        V.render_pipeline({k: v for k, v in o.items() if k != "coarse"}, _data())


def test_rows_and_browser_figures():
    o = _outputs()
    fig = V.render_rows({"full": o["tryon"], "w/o Render": o["coarse"]}, _data()["gt_image"], index=2,
                        scores={"full": 0.1234})
    assert [ax.get_title() for ax in fig.axes] == ["full\n0.1234", "w/o Render", "ground truth"]
    with pytest.raises(ValueError, match="at least one row"):
        V.render_rows({}, _data()["gt_image"])
    one = {k: v[:1] for k, v in o.items()}
    fig = V.render_tryon_browser({"image": torch.zeros(3, H, W)}, torch.zeros(3, H, W), _data()["target_pose_keypoints"][0], one)
    assert len(fig.axes) == 8 and fig.axes[-1].get_title() == "result"


def test_ablation_plot_shows_means_and_seed_values():
    res = AblationResult((0, 1, 2), ("full", "w/o Mask"), ("paired", "unpaired"), {"paired": 2, "unpaired": 2})
    for s_i, setting in enumerate(res.settings):
        for r_i, row in enumerate(res.rows):
            for seed in res.seeds:
                res.runs[(setting, row, seed)] = {m: 0.1 * (1 + r_i) + 0.01 * seed + s_i for m in METRICS}
    fig = V.plot_ablation(res, "ssim")
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == [0.11, 0.21, 1.11, 1.21]
    with pytest.raises(KeyError, match="metric"):
        V.plot_ablation(res, "psnr")
