"""Render functions of notebook 07 (vtonlab.viz.warpgan): input panels, control points, grids, features, results, browser."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

from vtonlab.data.labels import CIHP  # noqa: E402
from vtonlab.mgvton import warpgan  # noqa: E402
from vtonlab.train import History  # noqa: E402
from vtonlab.viz import warpgan as V  # noqa: E402
from vtonlab.viz.mgvton_parsing import label_image  # noqa: E402

H, W, N = 32, 24, 3
FH, FW = 4, 3  # the bottleneck of a 32x24 image (s = 8)


def _person(shift: int = 0) -> torch.Tensor:
    """A parsing (H, W) with head, torso, both arms, pants and shoes; ``shift`` moves it right."""
    p = torch.zeros(H, W, dtype=torch.long)
    p[2:7, 4:9] = CIHP["face"]
    p[8:18, 3:10] = CIHP["upper_clothes"]
    p[8:17, 1:3] = CIHP["left_arm"]
    p[8:17, 10:12] = CIHP["right_arm"]
    p[18:27, 3:10] = CIHP["pants"]
    p[27:29, 3:5] = CIHP["left_shoe"]
    p[27:29, 8:10] = CIHP["right_shoe"]
    assert shift <= W - 12  # the person spans columns 1..11: nothing wraps round
    return torch.roll(p, shift, dims=1)


def _pairs(n: int = N) -> dict:
    g = torch.Generator().manual_seed(0)
    img = lambda: torch.rand(n, 3, H, W, generator=g) * 2 - 1  # noqa: E731
    pose = torch.zeros(n, 18, H, W)
    pose[:, 3, 10, 12] = 1
    parse = torch.stack([_person(k % 2) for k in range(n)])
    return {"source_image": img(), "target_image": img(), "source_agnostic": img(), "target_pose_map": pose,
            "target_parse": parse}


def _x(labels: torch.Tensor) -> torch.Tensor:
    """One Warp-GAN input (44, H, W) with a white garment, a grey source, one pose spot and a one-hot parsing."""
    pose = torch.zeros(18, H, W)
    pose[5, 4, 7] = 1
    return torch.cat([torch.ones(3, H, W), torch.zeros(3, H, W), pose,
                      F.one_hot(labels, 20).permute(2, 0, 1).float()])


# ------------------------------------------------------------------------------------------ inputs


def test_input_panels_split_the_44_channels_by_the_library_layout():
    labels = _person()
    panels = V.input_panels(_x(labels))
    assert [c for _, _, c in panels] == [c for _, c in warpgan.INPUT_LAYOUT] and sum(c for _, _, c in panels) == 44
    garment, source, pose, parse = (img for _, img, _ in panels)
    assert garment.shape == (H, W, 3) and np.allclose(garment, 1.0)  # +1 -> white in [0, 1]
    assert np.allclose(source, 0.5)  # 0 in [-1, 1] -> mid grey
    assert pose.shape == (H, W) and pose[4, 7] == 1 and pose.sum() == 1  # the max over the 18 maps
    assert np.array_equal(parse, label_image(labels))  # the parsing map shown as its labels
    assert panels[3][0].startswith("$S_t$")


def test_input_panels_errors_name_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(44, H, W\)"):
        V.input_panels(torch.zeros(24, H, W))
    with pytest.raises(ValueError, match=r"\(44, H, W\)"):
        V.input_panels(torch.zeros(1, 44, H, W))


def test_render_inputs_adds_the_optional_images_and_checks_their_size():
    x = _x(_person())
    assert len(V.render_warpgan_inputs(x).axes) == 4
    fig = V.render_warpgan_inputs(x, source_image=torch.zeros(3, H, W), target_image=torch.zeros(3, H, W), title="t")
    assert len(fig.axes) == 6 and "(not an input)" in fig.axes[0].get_title() and "(20 ch)" in fig.axes[4].get_title()
    with pytest.raises(ValueError, match=rf"source_image: expected one image \(3, {H}, {W}\)"):
        V.render_warpgan_inputs(x, source_image=torch.zeros(3, H, W + 8))


# ------------------------------------------------------------------------------------------ transform


def _arrows(ax):
    return [c for c in ax.get_children() if isinstance(c, Annotation) and c.arrow_patch is not None]


def test_part_centres_draw_one_arrow_per_matched_part():
    src, tgt = _person(), _person(2)
    ps, ok_s = warpgan.part_centroids(src[None])
    pt, ok_t = warpgan.part_centroids(tgt[None])
    valid = (ok_s & ok_t)[0]
    fig = V.render_part_centres(src, tgt, ps[0], pt[0], valid)
    assert len(fig.axes) == 2
    assert len(_arrows(fig.axes[1])) == int(valid.sum()) == 7 and not _arrows(fig.axes[0])
    assert f"{int(valid.sum())} of 10 parts matched" in fig.axes[0].get_title()
    arrow = _arrows(fig.axes[1])[0]  # the first matched part (head): from the source centre to the target centre
    assert np.allclose(arrow.xyann, ps[0, 0].numpy()) and np.allclose(arrow.xy, pt[0, 0].numpy())
    valid_less = valid.clone()
    valid_less[0] = False
    assert len(_arrows(V.render_part_centres(src, tgt, ps[0], pt[0], valid_less).axes[1])) == 6


def test_part_centres_errors():
    src = _person()
    pts = torch.zeros(10, 2)
    ok = torch.ones(10, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"source_points: expected \(10, 2\)"):
        V.render_part_centres(src, src, torch.zeros(9, 2), pts, ok)
    with pytest.raises(ValueError, match=r"valid: expected a \(10,\) bool"):
        V.render_part_centres(src, src, pts, pts, torch.ones(10))
    with pytest.raises(ValueError, match=r"target_parse: expected the image size"):
        V.render_part_centres(src, src[:16], pts, pts, ok)
    with pytest.raises(ValueError, match=r"labels must be 0\.\.19"):
        V.render_part_centres(src + 20, src, pts, pts, ok)


def test_grid_to_pixels_inverts_the_feature_frame_of_the_library():
    ident = torch.stack(torch.meshgrid(torch.linspace(-1, 1, FW), torch.linspace(-1, 1, FH), indexing="xy"), -1)
    px = V.grid_to_pixels(ident, (H, W))  # the identity: cell centres s j + (s - 1) / 2
    assert px.shape == (FH, FW, 2)
    assert np.allclose(px[0, :, 0], [3.5, 11.5, 19.5]) and np.allclose(px[:, 0, 1], [3.5, 11.5, 19.5, 27.5])
    pixels = torch.tensor([[[0.0, 0.0], [23.0, 31.0], [10.2, 17.7]]], dtype=torch.float64)
    frame = warpgan._pixels_to_feature_frame(pixels, (H, W), (FH, FW))  # the frame feature_warp_grid fits in
    back = V.grid_to_pixels(frame[0][None].expand(FH, 3, 2), (H, W))  # any (FH, FW, 2) grid holding the three points
    assert np.allclose(back[0], pixels[0].numpy())
    with pytest.raises(ValueError, match=r"multiples of the grid's size 4x3"):
        V.grid_to_pixels(ident, (30, 24))
    with pytest.raises(ValueError, match=r"\(h, w, 2\)"):
        V.grid_to_pixels(ident[None], (H, W))


def test_render_warp_grid_draws_the_grid_where_the_cells_read():
    src, tgt = _person(), _person(8)  # one cell to the right
    grid = warpgan.feature_warp_grid(src[None], tgt[None], (FH, FW))[0]
    fig = V.render_warp_grid(torch.zeros(3, H, W), grid, warped=torch.zeros(3, H, W), target=torch.zeros(3, H, W))
    assert len(fig.axes) == 3
    orange = [ln for ln in fig.axes[0].get_lines() if ln.get_color() == "tab:orange"]
    assert len(orange) == FH + FW  # one line per row and per column of cells
    px = V.grid_to_pixels(grid, (H, W))
    assert np.allclose(orange[0].get_xydata(), px[0], atol=1e-4)
    assert np.allclose(px[..., 0] - V.grid_to_pixels(torch.stack(torch.meshgrid(
        torch.linspace(-1, 1, FW), torch.linspace(-1, 1, FH), indexing="xy"), -1), (H, W))[..., 0], -8, atol=1e-3)
    assert len(V.render_warp_grid(torch.zeros(3, H, W), grid).axes) == 1
    with pytest.raises(ValueError, match=r"source: expected one image \(3, H, W\)"):
        V.render_warp_grid(torch.zeros(1, H, W), grid)
    with pytest.raises(ValueError, match=rf"warped: expected one image \(3, {H}, {W}\)"):
        V.render_warp_grid(torch.zeros(3, H, W), grid, warped=torch.zeros(3, 16, 12))


def test_render_feature_maps_shows_channel_means_on_one_scale():
    f = torch.zeros(4, FH, FW)
    f[:, 1, 1] = torch.tensor([1.0, 2.0, 3.0, 6.0])  # mean 3
    g = torch.roll(f, 1, dims=2)
    fig = V.render_feature_maps(f, g, source_image=torch.zeros(3, H, W), target_image=torch.zeros(3, H, W))
    assert len(fig.axes) == 5  # four panels and the colour bar
    before, after = fig.axes[1].images[0], fig.axes[2].images[0]
    assert np.allclose(before.get_array(), f.mean(0).numpy()) and np.allclose(after.get_array(), g.mean(0).numpy())
    assert before.get_clim() == after.get_clim() == (0.0, 3.0)
    assert len(V.render_feature_maps(f, f).axes) == 3
    with pytest.raises(ValueError, match=r"expected the shape of source_features \(4, 4, 3\)"):
        V.render_feature_maps(f, torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match=r"source_features: expected one feature map \(C, h, w\)"):
        V.render_feature_maps(f[None], f)


# ------------------------------------------------------------------------------------------ config and training


def test_config_table_lists_only_what_the_profile_changes():
    table = V.config_table(warpgan.WarpGANConfig.for_profile("ci"))
    assert "| `width` | 64 | 16 |" in table and "| `image_size` | 256x192 | 64x48 |" in table
    assert "warp_transform" not in table and "lr" not in table
    assert V.config_table(warpgan.WarpGANConfig()) == "The config equals the reference in every option."
    with pytest.raises(TypeError, match="WarpGANConfig"):
        V.config_table({"width": 16})


def _history(keys=("loss_g", "loss_d", "adv_g", "fm", "vgg", "l1", "adv_d")) -> History:
    h = History()
    for step in range(1, 31):
        h.append(step, {k: 1.0 / step + j for j, k in enumerate(keys)})
    return h


def test_training_curves_plot_every_term_and_name_the_vgg():
    fig = V.plot_training_curves(_history(), "random init (He normal, seed 0): NOT ImageNet VGG19", title="x")
    g_labels = {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    assert g_labels == {"loss_g", "adv_g", "fm", "vgg", "l1"}
    assert {t.get_text() for t in fig.axes[1].get_legend().get_texts()} == {"adv_d"}
    assert any("NOT ImageNet VGG19" in t.get_text() for t in fig.axes[0].texts)
    with pytest.raises(KeyError, match="history lacks fm"):
        V.plot_training_curves(_history(("loss_g", "adv_g", "vgg", "l1", "adv_d")), "label")
    with pytest.raises(ValueError, match="vgg_label"):
        V.plot_training_curves(_history(), "")
    with pytest.raises(TypeError, match="vtonlab.train.History"):
        V.plot_training_curves({"loss_g": [1.0]}, "label")


# ------------------------------------------------------------------------------------------ results


def test_results_table_bolds_the_higher_ssim_and_the_lower_l1():
    results = {"model": {"mean_ssim": 0.5, "mean_l1": 0.05, "n_pairs": 16}, "source": {"mean_ssim": 0.7, "mean_l1": 0.08}}
    rows = V.results_rows(results)
    assert [r["method"] for r in rows] == ["model", "source"] and rows[0]["n_pairs"] == 16 and rows[1]["n_pairs"] is None
    table = V.results_table(results)
    assert "| model | 0.5000 | **0.0500** |" in table and "| source | **0.7000** | 0.0800 |" in table
    with pytest.raises(KeyError, match="results\\['x'\\] is missing 'mean_l1'"):
        V.results_rows({"x": {"mean_ssim": 0.1}})
    with pytest.raises(ValueError, match="non-empty"):
        V.results_rows({})


def test_error_map_is_the_l1_of_evaluate_coarse():
    white, black = torch.ones(3, H, W), -torch.ones(3, H, W)
    assert np.allclose(V.error_map(white, black), 1.0)
    assert np.allclose(V.error_map(3 * white, white), 0.0)  # the prediction is clipped to [-1, 1] first
    a, b = torch.rand(3, H, W) * 2 - 1, torch.rand(3, H, W) * 2 - 1
    expected = (((a + 1) / 2).clamp(0, 1) - ((b + 1) / 2).clamp(0, 1)).abs().mean()
    assert V.error_map(a, b).mean() == pytest.approx(expected.item(), abs=1e-6)
    with pytest.raises(ValueError, match=rf"target: expected one image \(3, {H}, {W}\)"):
        V.error_map(a, torch.zeros(3, H, W + 1))


def test_render_coarse_results_rows_columns_and_errors():
    pairs, coarse = _pairs(), torch.zeros(N, 3, H, W)
    fig = V.render_coarse_results(pairs, coarse, indices=(0, -1))
    assert len(fig.axes) == 2 * 6 + 1  # two rows of six panels and the colour bar
    assert "pair 2" in fig.axes[6].get_title()  # -1 counts from the end
    err = V.error_map(coarse[0], pairs["target_image"][0])
    assert f"mean {err.mean():.3f}" in fig.axes[5].get_title()
    with pytest.raises(ValueError, match=rf"coarse: expected \({N}, 3, {H}, {W}\)"):
        V.render_coarse_results(pairs, torch.zeros(N - 1, 3, H, W))
    with pytest.raises(KeyError, match="'target_pose_map'"):
        V.render_coarse_results({k: v for k, v in pairs.items() if k != "target_pose_map"}, coarse)
    with pytest.raises(IndexError, match=rf"\[0, {N - 1}\]"):
        V.render_coarse_results(pairs, coarse, indices=(N,))
    with pytest.raises(ValueError, match="indices is empty"):
        V.render_coarse_results(pairs, coarse, indices=())


def test_browser_at_both_ends_of_the_slider_and_its_errors():
    pairs, coarse = _pairs(), torch.zeros(N, 3, H, W)
    grids = warpgan.feature_warp_grid(pairs["target_parse"], pairs["target_parse"].flip(0), (FH, FW))
    names = [f"p{k}" for k in range(N)]
    for index in (0, N - 1, -1):
        fig = V.render_warpgan_browser(pairs, coarse, grids, index, names=names)
        assert len(fig.axes) == 6
        assert f"test pair {index % N} (p{index % N})" in fig.texts[0].get_text()
    orange = [ln for ln in fig.axes[2].get_lines() if ln.get_color() == "tab:orange"]
    assert len(orange) == FH + FW
    assert np.allclose(orange[0].get_xydata(), V.grid_to_pixels(grids[N - 1], (H, W))[0], atol=1e-4)
    with pytest.raises(ValueError, match=rf"grids: expected \({N}, h, w, 2\)"):
        V.render_warpgan_browser(pairs, coarse, grids[:1], 0)
    with pytest.raises(ValueError, match=rf"names: expected one name per pair \({N}\)"):
        V.render_warpgan_browser(pairs, coarse, grids, 0, names=names[:1])
    with pytest.raises(IndexError):
        V.render_warpgan_browser(pairs, coarse, grids, N)
    with pytest.raises(KeyError, match="'source_agnostic'"):
        V.render_warpgan_browser({k: v for k, v in pairs.items() if k != "source_agnostic"}, coarse, grids, 0)


def test_picture_keys_extend_the_library_pair_keys():
    keys = [k for k, _, _ in V.PICTURE_KEYS]
    assert keys[:len(warpgan.PAIR_KEYS)] == [k for k, _, _ in warpgan.PAIR_KEYS]
    assert {"source_image", "target_agnostic"} <= set(keys) and len(set(keys)) == len(keys)
    assert V.PART_NAMES == tuple(n for n, _ in warpgan.PART_GROUPS)


def test_equal_parsings_draw_the_grid_on_the_identity_lattice():
    src = _person()
    grid = warpgan.feature_warp_grid(src[None], src[None], (FH, FW))[0]
    fig = V.render_warp_grid(torch.zeros(3, H, W), grid)
    assert all(isinstance(ln, Line2D) for ln in fig.axes[0].get_lines())
    white = [ln for ln in fig.axes[0].get_lines() if ln.get_color() == "w"]
    orange = [ln for ln in fig.axes[0].get_lines() if ln.get_color() == "tab:orange"]
    for a, b in zip(white, orange):  # equal parsings: the grid lies on the identity lattice
        assert np.allclose(a.get_xydata(), b.get_xydata(), atol=1e-4)
