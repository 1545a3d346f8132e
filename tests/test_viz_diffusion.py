"""Tests for vtonlab.viz.diffusion: panel counts, grouping of the 31 input channels, and errors on bad input."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from vtonlab.ladi.unet import INPUT_LAYOUT, TRYON_CHANNELS  # noqa: E402
from vtonlab.viz import diffusion as V  # noqa: E402


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_input_channels_grouped_by_layout():
    x = torch.randn(TRYON_CHANNELS, 8, 6)
    fig = V.render_input_channels(x, INPUT_LAYOUT)
    titles = [ax.get_title() for ax in _visible(fig)]
    # 4 + 1 + 4 single panels, the 18 pose maps as one, 4 garment panels
    assert len(titles) == 4 + 1 + 4 + 1 + 4
    assert titles[4] == "mask" and titles[9].startswith("pose") and titles[-1] == "garment_latent[3]"
    with pytest.raises(ValueError, match="adds up to 31"):
        V.render_input_channels(torch.randn(30, 8, 6), INPUT_LAYOUT)
    with pytest.raises(ValueError, match="one sample"):
        V.render_input_channels(torch.randn(1, 31, 8, 6), INPUT_LAYOUT)


def test_input_channels_share_one_latent_scale():
    x = torch.zeros(TRYON_CHANNELS, 4, 4)
    x[0] = 3.0  # the largest latent value anywhere sets the symmetric scale of every latent panel
    fig = V.render_input_channels(x, INPUT_LAYOUT)
    lims = {ax.get_images()[0].get_clim() for ax in _visible(fig) if "latent" in ax.get_title()}
    assert lims == {(-3.0, 3.0)}


def test_noising_and_trajectory_and_grid():
    imgs = [torch.rand(3, 16, 12) for _ in range(3)]
    abar = torch.linspace(0.999, 0.01, 1000)
    fig = V.render_noising(imgs, [0, 500, 999], abar)
    assert len(fig.axes) == 3 + 2  # three pictures, the schedule axes and its twin
    with pytest.raises(ValueError, match="same positive length"):
        V.render_noising(imgs, [0, 1], abar)
    states, preds = torch.rand(5, 3, 16, 12), torch.rand(5, 3, 16, 12)
    fig = V.render_trajectory(states, preds, [800, 600, 400, 200, 0], 2, result=torch.rand(3, 16, 12))
    assert len(fig.axes) == 4 and "t = 400" in fig.axes[0].get_title()
    with pytest.raises(IndexError, match=r"\[0, 4\]"):
        V.render_trajectory(states, preds, [0] * 5, 7)
    fig = V.render_grid({"a": imgs, "b": imgs}, ["x", "y", "z"])
    assert len(fig.axes) == 6 and fig.axes[0].get_ylabel() == "a"
    with pytest.raises(ValueError, match="expected 2 images"):
        V.render_grid({"a": imgs}, ["x", "y"])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        V.render_grid({"a": [torch.rand(1, 16, 12)]}, ["x"])


def test_plot_metric_rows_error_bars_are_the_spread():
    from vtonlab.ladi import ablation as A

    res = A.LadiAblationResult((0,), ("full", "base inpainting"), ("paired",), {"paired": 2}, metrics=A.METRICS,
                               higher_is_better=dict(A.HIGHER_IS_BETTER), sample_seeds=(0, 1))
    for row, vals in (("full", (10.0, 12.0)), ("base inpainting", (30.0, 30.0))):
        for s, v in enumerate(vals):
            res.samples[("paired", row, 0, s)] = {m: v for m in A.METRICS}
        res.runs[("paired", row, 0)] = {m: sum(vals) / 2 for m in A.METRICS}
    fig = V.plot_metric_rows(res, "colour_error")
    bars = fig.axes[0].patches
    assert [round(b.get_width(), 6) for b in bars] == [11.0, 30.0]
    with pytest.raises(KeyError, match="metric"):
        V.plot_metric_rows(res, "miou")
