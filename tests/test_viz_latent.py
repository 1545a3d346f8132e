"""Figures and the widget render function of notebook 09 (vtonlab.viz.latent), extreme widget values included."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vtonlab.viz import latent as L  # noqa: E402
from vtonlab.viz import to_numpy_image  # noqa: E402

H, W = 16, 12


def _images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, H, W, generator=g) * 1.2 - 0.6  # room to add 0.2 without clamping


def _masks(n=3):
    m = torch.zeros(n, 1, H, W)
    m[:, :, 4:12, 3:9] = 1  # 8 x 6 = 48 of 192 pixels: a quarter of the image
    return m


def _image_data(ax) -> np.ndarray:
    return np.asarray(ax.images[0].get_array())


def test_error_map_is_the_channel_mean_in_unit_range():
    x = _images(1)[0]
    assert np.array_equal(L.error_map(x, x), np.zeros((H, W), dtype=np.float32))
    np.testing.assert_allclose(L.error_map(x, x + 0.2), np.full((H, W), 0.1), atol=1e-6)  # 0.2 in [-1, 1] = 0.1
    y = x.clone()
    y[0] += 0.6  # one channel of three
    np.testing.assert_allclose(L.error_map(x, y), np.full((H, W), 0.1), atol=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        L.error_map(x, x[:, :8])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        L.error_map(x[0], x[0])


def test_mask_outline_is_the_inner_ring():
    m = np.zeros((10, 10))
    m[2:8, 3:9] = 1  # 6 x 6
    edge = L.mask_outline(m)
    assert edge.sum() == 20  # perimeter of a 6 x 6 square
    assert not edge[3:7, 4:8].any() and edge[2, 3] and edge[7, 8]
    assert not edge[m == 0].any()
    assert not L.mask_outline(np.ones((5, 4))).any()  # the image border is no outline
    assert not L.mask_outline(torch.zeros(1, 5, 4)).any()
    with pytest.raises(ValueError, match="mask"):
        L.mask_outline(np.zeros((2, 3, 4)))


def test_draw_outline_paints_only_the_outline():
    rgb = np.full((H, W, 3), 0.5, dtype=np.float32)
    out = L.draw_outline(rgb, _masks(1)[0], (0.0, 1.0, 0.0))
    edge = L.mask_outline(_masks(1)[0])
    assert np.array_equal(out[edge], np.tile([0.0, 1.0, 0.0], (edge.sum(), 1)).astype(np.float32))
    assert np.array_equal(out[~edge], rgb[~edge])
    assert np.array_equal(rgb, np.full((H, W, 3), 0.5, dtype=np.float32))  # the input is not modified
    with pytest.raises(ValueError, match="differ in size"):
        L.draw_outline(rgb, np.ones((4, 4)))


def test_region_box_pads_grows_and_clips():
    m = np.zeros((20, 20))
    m[5:9, 6:8] = 1
    assert L.region_box(m, pad=1, min_size=1) == (4, 10, 5, 9)
    top, bottom, left, right = L.region_box(m, pad=0, min_size=8)  # grown around the centre to 8 x 8
    assert (bottom - top, right - left) == (8, 8) and top <= 5 and bottom >= 9 and left <= 6 and right >= 8
    corner = np.zeros((20, 20))
    corner[0, 19] = 1
    box = L.region_box(corner, pad=2, min_size=10)  # shifted back inside the image
    assert box == (0, 10, 10, 20)
    assert L.region_box(corner, pad=0, min_size=100) == (0, 20, 0, 20)  # never larger than the image
    with pytest.raises(ValueError, match="empty"):
        L.region_box(np.zeros((4, 4)))


def test_row_key():
    assert L.row_key("none", 2) == "none"
    assert L.row_key("linear", 0) == "linear"
    assert L.row_key("nonlinear", 2) == "nonlinear_seed2"
    with pytest.raises(ValueError, match="kind"):
        L.row_key("both")


def _widget_data():
    images, masks = _images(), _masks()
    inside = masks.expand_as(images)
    recs = {"none": images + 0.2 * inside,  # error 0.1 inside the mask, 0 outside
            "linear": images.clone(),  # perfect
            "linear_seed1": images + 0.1 * inside,  # error 0.05 inside
            "nonlinear": images + 0.2}  # error 0.1 everywhere
    return images, masks, recs


def test_render_emasc_sample_shows_the_chosen_reconstruction_and_its_error():
    images, masks, recs = _widget_data()
    fig = L.render_emasc_sample(images, masks, recs, index=1, kind="linear", seed=0)
    assert "mean error outside the mask 0.0000, inside 0.0000" in fig._suptitle.get_text()
    shown = _image_data(fig.axes[1])
    edge = L.mask_outline(masks[1])
    np.testing.assert_allclose(shown[~edge], to_numpy_image(recs["linear"][1])[~edge], atol=1e-6)
    assert np.allclose(shown[edge], L.OUTLINE_COLOUR)
    heat = _image_data(fig.axes[2])
    assert np.allclose(heat[~edge], plt.get_cmap("magma")(0.0)[:3], atol=1e-6)  # zero error everywhere
    plt.close(fig)

    fig = L.render_emasc_sample(images, masks, recs, index=1, kind="nonlinear", seed=0)
    assert "outside the mask 0.1000, inside 0.1000" in fig._suptitle.get_text()
    plt.close(fig)


def test_render_emasc_sample_keeps_the_colour_scale_of_the_plain_autoencoder():
    images, masks, recs = _widget_data()
    inside = masks[0, 0].numpy() > 0.5
    edge = L.mask_outline(masks[0])
    body = inside & ~edge
    # "none" errs 0.1 on a quarter of the pixels: its 99th percentile, 0.1, tops the scale for every kind
    fig = L.render_emasc_sample(images, masks, recs, index=0, kind="none", seed=2)
    assert "no EMASC" in fig._suptitle.get_text()
    assert np.allclose(_image_data(fig.axes[2])[body], plt.get_cmap("magma")(1.0)[:3], atol=1e-6)
    plt.close(fig)
    fig = L.render_emasc_sample(images, masks, recs, index=0, kind="linear", seed=1)  # error 0.05: mid-scale
    assert "linear EMASC, seed 1" in fig._suptitle.get_text()
    assert np.allclose(_image_data(fig.axes[2])[body], plt.get_cmap("magma")(0.5)[:3], atol=1e-2)
    plt.close(fig)
    fig = L.render_emasc_sample(images, masks, recs, index=0, kind="linear", seed=1, max_error=0.05)
    assert np.allclose(_image_data(fig.axes[2])[body], plt.get_cmap("magma")(1.0)[:3], atol=1e-6)
    plt.close(fig)


def test_render_emasc_sample_extreme_and_bad_values():
    images, masks, recs = _widget_data()
    for index in (0, len(images) - 1, -1):
        plt.close(L.render_emasc_sample(images, masks, recs, index=index, kind="none"))
    assert "sample 2," in L.render_emasc_sample(images, masks, recs, index=-1, kind="none")._suptitle.get_text()
    with pytest.raises(IndexError, match="index"):
        L.render_emasc_sample(images, masks, recs, index=len(images))
    with pytest.raises(KeyError, match="nonlinear_seed2"):
        L.render_emasc_sample(images, masks, recs, kind="nonlinear", seed=2)
    with pytest.raises(KeyError, match="none"):
        L.render_emasc_sample(images, masks, {"linear": recs["linear"]})
    with pytest.raises(ValueError, match="masks"):
        L.render_emasc_sample(images, masks[:, :, :8], recs)
    with pytest.raises(ValueError, match="reconstructions"):
        L.render_emasc_sample(images, masks, {**recs, "linear": recs["linear"][:2]})


def test_reconstruction_figure():
    images, masks, recs = _widget_data()
    fig = L.reconstruction_figure(images[:2], recs["nonlinear"][:2], masks[:2], titles=["a", "b"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6
    assert panels[0].get_title() == "a: original" and panels[2].get_title() == "|x - rec|, mean 0.100"
    plt.close(fig)
    with pytest.raises(ValueError, match="masks"):
        L.reconstruction_figure(images, recs["none"], masks[:2])
    with pytest.raises(ValueError, match="one shape"):
        L.reconstruction_figure(images, recs["none"][:2], masks)


def test_zoom_figure_crops_the_region_and_measures_it():
    images, masks, recs = _widget_data()
    region = torch.zeros(1, H, W)
    region[0, 5:7, 4:6] = 1
    rows = {"face": ({"original": images[0], "none": recs["none"][0], "perfect": recs["linear"][0]}, region),
            "all": ({"original": images[1], "none": recs["none"][1], "perfect": recs["linear"][1]}, torch.ones(1, H, W))}
    fig = L.zoom_figure(rows, pad=1, min_size=4)
    axes = np.asarray(fig.axes).reshape(2, 3)
    assert _image_data(axes[0, 0]).shape == (4, 4, 3)  # 2x2 region + 1 px on each side
    np.testing.assert_allclose(_image_data(axes[0, 0]), to_numpy_image(images[0])[4:8, 3:7], atol=1e-6)
    assert axes[0, 1].get_title() == "none\nerror 0.100" and axes[0, 2].get_title() == "perfect\nerror 0.000"
    assert _image_data(axes[1, 0]).shape == (H, W, 3)
    assert axes[1, 1].get_title() == "none\nerror 0.025"  # 0.1 on a quarter of the image
    plt.close(fig)
    with pytest.raises(ValueError, match="columns"):
        L.zoom_figure({**rows, "other": ({"original": images[0]}, region)})
    with pytest.raises(ValueError, match="empty"):
        L.zoom_figure({"face": (rows["face"][0], torch.zeros(1, H, W))})


def test_latent_and_feature_figures():
    image = _images(1)[0]
    z = torch.randn(4, H // 8 * 4, W // 8 * 4)
    fig = L.latent_figure(image, z)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 5
    lim = float(z.abs().max())
    assert all(np.allclose(ax.images[0].get_clim(), (-lim, lim)) for ax in panels[1:])  # one symmetric scale
    plt.close(fig)
    with pytest.raises(ValueError, match="latent"):
        L.latent_figure(image, z[0])

    feature = torch.randn(8, 8, 6)
    mask = torch.zeros(1, 16, 12)
    mask[:, :8] = 1  # the top half
    masked = feature * torch.cat([torch.zeros(1, 4, 6), torch.ones(1, 4, 6)], 1)
    fig = L.feature_masking_figure(feature, masked, mask, channel=7)
    np.testing.assert_allclose(_image_data(fig.axes[1]), np.r_[np.zeros((4, 6)), np.ones((4, 6))])  # 1 - mask at 8x6
    np.testing.assert_allclose(_image_data(fig.axes[2]), masked[7].numpy())
    plt.close(fig)
    with pytest.raises(IndexError, match="channel"):
        L.feature_masking_figure(feature, masked, mask, channel=8)


METRICS = {"none": {"ssim": 0.5, "lpips": 0.3},
           "linear": {"ssim": 0.70, "lpips": 0.20}, "linear_seed1": {"ssim": 0.72, "lpips": 0.21},
           "linear_seed2": {"ssim": 0.74, "lpips": 0.19},
           "nonlinear": {"ssim": 0.60, "lpips": 0.25}, "nonlinear_seed1": {"ssim": 0.61, "lpips": 0.26}}


def test_seed_stats_takes_only_the_kinds_rows():
    s = L.seed_stats(METRICS, "linear", "ssim")
    assert s.values == (0.70, 0.72, 0.74) and math.isclose(s.mean, 0.72) and math.isclose(s.spread, 0.04)
    n = L.seed_stats(METRICS, "nonlinear", "lpips")
    assert n.values == (0.25, 0.26) and math.isclose(n.spread, 0.01)
    assert L.seed_stats(METRICS, "none", "ssim") == L.SeedStats(0.5, 0.0, (0.5,))
    with pytest.raises(KeyError, match="kind"):
        L.seed_stats(METRICS, "cubic", "ssim")
    with pytest.raises(KeyError, match="psnr"):
        L.seed_stats(METRICS, "linear", "psnr")


def test_ablation_markdown_and_judge():
    md = L.ablation_markdown(METRICS, {"ssim": "SSIM out", "lpips": "LPIPS out"}, extractor="LPIPS-test")
    lines = md.splitlines()
    assert lines[0] == "| EMASC | seeds | SSIM out | LPIPS out |"
    assert lines[2] == "| none | 1 | 0.5 | 0.3 |"
    assert lines[3] == "| linear | 3 | 0.72 (spread 0.04) | 0.2 (spread 0.02) |"
    assert lines[4] == "| nonlinear | 2 | 0.605 (spread 0.01) | 0.255 (spread 0.01) |"
    assert md.endswith("LPIPS extractor: LPIPS-test")
    assert L.judge(0.72, 0.5, 0.04) == "yes"
    assert L.judge(0.5, 0.72, 0.04) == "no"
    assert L.judge(0.72, 0.70, 0.04) == "within the seed spread"
    assert L.judge(0.20, 0.30, 0.02, higher_is_better=False) == "yes"  # lower LPIPS is better
    assert L.judge(0.30, 0.20, 0.02, higher_is_better=False) == "no"
    assert L.judge(float("nan"), 0.2, 0.0) == "undetermined"
