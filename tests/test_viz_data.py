"""Render functions behind notebook 01's widget, extreme widget values included."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vtonlab.data import datasets as D  # noqa: E402
from vtonlab.data.labels import CIHP_PALETTE  # noqa: E402
from vtonlab.data.synth import render_group  # noqa: E402
from vtonlab.viz import data as V  # noqa: E402

SIZE = (64, 48)


@pytest.fixture(scope="module")
def samples():
    rendered = render_group(11, n_poses=2, size=SIZE)
    return [D.sample_from_render(r, im_name=f"{i}.jpg", c_name=f"{i}.jpg") for i, r in enumerate(rendered)]


def test_plain_person_round_trips(samples):
    s = samples[0]
    out = V.render_layers(s, skeleton=False)
    assert out.shape == (*SIZE, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - V.to_uint8(s["image"]).astype(int)).max() == 0


def test_opacity_extremes(samples):
    s = samples[0]
    plain = V.render_layers(s, skeleton=False)
    for layer in ("parsing", "garment_mask", "inpaint_mask", "flow_grid"):
        assert np.array_equal(V.render_layers(s, skeleton=False, opacity=0.0, **{layer: True}), plain), layer
    full = V.render_layers(s, skeleton=False, parsing=True, opacity=1.0)
    assert np.array_equal(full, CIHP_PALETTE[s["parse"].numpy()])
    # values outside [0, 1] are clipped, not an error
    assert np.array_equal(V.render_layers(s, skeleton=False, parsing=True, opacity=7.0), full)
    assert np.array_equal(V.render_layers(s, skeleton=False, parsing=True, opacity=-1.0), plain)


def test_flow_grid_shows_the_warped_garment(samples):
    s = samples[0]
    out = V.render_layers(s, skeleton=False, flow_grid=True, opacity=1.0, grid_step=4)
    m = s["gt_flow_mask"][0].numpy() > 0
    warped = V.to_uint8(V.warp_with_flow(V.gridded_cloth(s, 4), s["gt_flow"], s["gt_flow_mask"]))
    assert np.array_equal(out[m], warped[m])
    assert np.array_equal(out[~m], V.to_uint8(s["image"])[~m])
    for step in (2, 10_000, 0, -5):  # slider extremes and nonsense are clamped to >= 2
        assert V.render_layers(s, flow_grid=True, grid_step=step).shape == (*SIZE, 3)


def test_warp_with_identity_flow_is_identity():
    img = torch.rand(3, 8, 6) * 2 - 1
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 6), indexing="ij")
    out = V.warp_with_flow(img, torch.stack([xs, ys], -1))
    assert torch.allclose(out, img, atol=1e-5)


def test_agnostic_and_skeleton_layers(samples):
    s = samples[1]
    ag = V.render_layers(s, skeleton=False, agnostic=True)
    m = s["inpaint_mask"][0].numpy() > 0
    assert (np.abs(ag[m].astype(int) - 128) <= 1).all()  # grey where the garment was
    sk = V.render_layers(s, skeleton=True)
    assert (sk != V.render_layers(s, skeleton=False)).any()


def test_browse_extreme_indices_and_layers(samples):
    for index in (0, len(samples) - 1):
        out = V.browse(samples, index, opacity=1.0, parsing=True, skeleton=True, garment_mask=True,
                       agnostic=True, inpaint_mask=True, flow_grid=True)
        assert out.shape[0] == SIZE[0] and out.shape[1] > 2 * SIZE[1] and out.dtype == np.uint8
    with pytest.raises(IndexError, match="index"):
        V.browse(samples, len(samples))
    with pytest.raises(TypeError, match="unknown layers"):
        V.browse(samples, 0, sparkles=True)
    unpaired = [{k: v for k, v in samples[0].items() if not k.startswith("gt_flow")}]
    assert V.browse(unpaired, 0, flow_grid=True).shape[0] == SIZE[0]  # silently no flow
    with pytest.raises(KeyError, match="gt_flow"):
        V.render_layers(unpaired[0], flow_grid=True)


def test_sample_grid_and_views(samples):
    fig = V.sample_grid(samples, columns=("image", "cloth", "parse", "skeleton", "pose", "agnostic", "inpaint_mask",
                                          "body_shape", "head", "flow", "layers"))
    assert len(fig.axes) == 2 * 11
    plt.close(fig)
    with pytest.raises(KeyError, match="view"):
        V.view_image(samples[0], "nope")
    with pytest.raises(ValueError, match="at least one"):
        V.sample_grid([])


def test_statistics_figures(samples):
    counts = np.bincount(samples[0]["parse"].flatten().numpy(), minlength=20)
    for fig in (
        V.label_frequency_figure(counts),
        V.pose_spread_figure(torch.stack([s["pose_keypoints"] for s in samples]), SIZE),
        V.attribute_counts_figure([s["attributes"] for s in samples], keys=["category", "colour"]),
    ):
        assert fig.axes
        plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        V.attribute_counts_figure([])


def test_parse_rgb_rejects_out_of_range():
    with pytest.raises(ValueError, match="0..19"):
        V.parse_rgb(np.array([[20]]))
