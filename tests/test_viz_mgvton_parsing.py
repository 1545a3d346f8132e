"""Render functions of notebook 06 (vtonlab.viz.mgvton_parsing): colours, inputs, baselines, curves, tables, browser."""

import matplotlib

matplotlib.use("Agg")

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vtonlab.data.labels import CIHP, CIHP_PALETTE, INTERNAL_LABELS  # noqa: E402
from vtonlab.data.preload import Preloaded  # noqa: E402
from vtonlab.mgvton import parsing  # noqa: E402
from vtonlab.train import History  # noqa: E402
from vtonlab.viz import mgvton_parsing as V  # noqa: E402

H, W, N = 32, 24, 3


def _parse(seed: int) -> torch.Tensor:
    """A person-like label map (H, W): background, hair, face, upper clothes, pants, arms."""
    p = torch.zeros(H, W, dtype=torch.long)
    s = seed % 3
    p[2:6, 9:15] = CIHP["hair"]
    p[4:8, 10:14] = CIHP["face"]
    p[8:18, 7 + s:17 + s] = CIHP["upper_clothes"]
    p[8:16, 4:7] = CIHP["left_arm"]
    p[18:29, 8:16] = CIHP["pants"]
    return p


def _keypoints(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kp = torch.stack([torch.rand(18, generator=g) * (W - 1), torch.rand(18, generator=g) * (H - 1), torch.ones(18)], -1)
    kp[3, 2] = 0  # one missing keypoint
    return kp


def _pairs(n: int = N) -> dict:
    g = torch.Generator().manual_seed(1)
    return {"source_parse": torch.stack([_parse(i) for i in range(n)]),
            "source_body_shape": torch.rand(n, 1, H, W, generator=g),
            "source_pose_keypoints": torch.stack([_keypoints(i) for i in range(n)]),
            "cloth": torch.rand(n, 3, H, W, generator=g) * 2 - 1,
            "target_parse": torch.stack([_parse(i + 1) for i in range(n)]),
            "target_pose_map": (torch.rand(n, 18, H, W, generator=g) > 0.97).float(),
            "target_pose_keypoints": torch.stack([_keypoints(i + 10) for i in range(n)]),
            "source_image": torch.rand(n, 3, H, W, generator=g) * 2 - 1,
            "target_image": torch.rand(n, 3, H, W, generator=g) * 2 - 1}


def _results(pairs: dict) -> dict:
    """evaluate_parsing (no model) on the pairs, plus a "model" that predicts the truth except one stripe."""
    data = Preloaded({k: pairs[k] for k, _, _ in parsing.PAIR_KEYS}, [f"p{i}" for i in range(len(pairs["cloth"]))])
    res = parsing.evaluate_parsing(None, data, keep=True)
    model = res["target"].clone()
    model[:, :, :3] = CIHP["background"]
    miou, per_class = parsing.parsing_miou(model, res["target"])
    acc = (model == res["target"]).float().mean().item()
    res["model"] = {"miou": miou, "per_class": per_class, "pixel_accuracy": acc}
    res["predictions"] = {"model": model, **res["predictions"]}
    return res


def _image_of(ax) -> np.ndarray:
    return np.asarray(ax.images[0].get_array())


# ------------------------------------------------------------------------------------------ colours, errors, mIoU


def test_label_image_uses_the_cihp_colours():
    labels = torch.tensor([[0, 2, 5], [13, 14, 19]])
    img = V.label_image(labels)
    assert img.shape == (2, 3, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [0, 0, 0]  # background black
    assert img[0, 1].tolist() == [254, 0, 0]  # hair
    assert img[0, 2].tolist() == [254, 85, 0]  # upper clothes
    assert img[1, 0].tolist() == [0, 0, 254]  # face
    assert (img == CIHP_PALETTE[labels.numpy()]).all()
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        V.label_image(labels[None])
    with pytest.raises(ValueError, match="0..19"):
        V.label_image(torch.tensor([[0, 20]]))
    with pytest.raises(ValueError, match="integer label map"):
        V.label_image(labels.float())


def test_error_map_marks_exactly_the_wrong_pixels():
    target = _parse(0)
    pred = target.clone()
    pred[0, 0] = CIHP["hair"]
    pred[20, 10] = CIHP["background"]
    err = V.error_map(pred, target)
    assert err.shape == (H, W, 3)
    wrong = np.all(np.isclose(err, V.ERROR_COLOUR), axis=-1)
    right = np.all(np.isclose(err, V.CORRECT_COLOUR), axis=-1)
    assert wrong.sum() == 2 and wrong[0, 0] and wrong[20, 10]
    assert (wrong | right).all()
    with pytest.raises(ValueError, match=r"pred \(32, 24\) and target \(32, 23\)"):
        V.error_map(pred, target[:, :23])


def test_pair_miou_counts_one_pair():
    true = torch.tensor([[0, 0, 1], [1, 2, 2]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    assert V.pair_miou(pred, true) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert V.pair_miou(true, true) == 1.0
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        V.pair_miou(pred[None], true[None])


def test_config_table_lists_what_the_profile_changes():
    table = V.config_table(parsing.ParsingConfig.for_profile("ci"))
    lines = table.splitlines()
    assert lines[0] == "| option | `ParsingConfig()` default | this config |"
    assert "| `width` | 64 | 16 |" in lines and "| `n_blocks` | 9 | 2 |" in lines and "| `ndf` | 64 | 16 |" in lines
    assert "| `image_size` | 256x192 | 64x48 |" in lines
    assert not any(line.startswith("| `lr`") for line in lines)  # the paper's optimiser is kept
    assert V.config_table(parsing.ParsingConfig()) == "The config equals the reference in every option."
    changed = V.config_table(parsing.ParsingConfig(adv_weight=0.0))
    assert "| `adv_weight` | 1.0 | 0.0 |" in changed.splitlines()
    with pytest.raises(TypeError, match="ParsingConfig"):
        V.config_table({"width": 16})


# ------------------------------------------------------------------------------------------ inputs


def test_input_panels_split_the_24_channels():
    pairs = _pairs()
    src = {"parse": pairs["source_parse"], "body_shape": pairs["source_body_shape"]}
    x = parsing.parsing_input(src, pairs["cloth"], pairs["target_pose_map"])
    panels = V.input_panels(x[1])
    assert [c for _, _, c in panels] == [1, 1, 1, 3, 18]
    assert panels[0][0].startswith("$M_h$") and panels[4][0].startswith("$P$")
    hair = panels[0][1]
    assert hair.shape == (H, W) and set(np.unique(hair)) <= {0.0, 1.0}
    assert (hair == (pairs["source_parse"][1] == CIHP["hair"]).numpy()).all()
    assert np.allclose(panels[2][1], pairs["source_body_shape"][1, 0].numpy(), atol=1e-6)  # back to [0, 1]
    assert panels[3][1].shape == (H, W, 3)
    assert np.array_equal(panels[4][1], pairs["target_pose_map"][1].amax(0).numpy())
    with pytest.raises(ValueError, match=r"expected one generator input \(24, H, W\).*got \(3, 24, 32, 24\)"):
        V.input_panels(x)
    with pytest.raises(ValueError, match=r"\(24, H, W\).*got \(23, 32, 24\)"):
        V.input_panels(x[0, :23])


def test_render_parsing_inputs_panels_and_colours():
    pairs = _pairs()
    src = {"parse": pairs["source_parse"], "body_shape": pairs["source_body_shape"]}
    x = parsing.parsing_input(src, pairs["cloth"], pairs["target_pose_map"])[0]
    fig = V.render_parsing_inputs(x, source_image=pairs["source_image"][0], source_parse=pairs["source_parse"][0],
                                  target_image=pairs["target_image"][0], target_parse=pairs["target_parse"][0], title="t")
    axes = fig.axes
    assert len(axes) == 9
    titles = [ax.get_title() for ax in axes]
    assert titles[0] == "source person" and titles[1] == "source parsing" and titles[-1] == "target parsing (truth)"
    assert titles[6].endswith("(18 ch)") and titles[5].endswith("(3 ch)")
    assert (_image_of(axes[1]) == CIHP_PALETTE[pairs["source_parse"][0].numpy()]).all()
    assert (_image_of(axes[-1]) == CIHP_PALETTE[pairs["target_parse"][0].numpy()]).all()
    assert len(V.render_parsing_inputs(x).axes) == 5
    with pytest.raises(ValueError, match=r"source person: expected \(3, 32, 24\)"):
        V.render_parsing_inputs(x, source_image=pairs["source_image"][0, :1])
    with pytest.raises(ValueError, match="expected the input's size 32x24, got 16x24"):
        V.render_parsing_inputs(x, target_parse=pairs["target_parse"][0, :16])


# ------------------------------------------------------------------------------------------ baselines


def test_render_pose_warp_rows_arrows_and_pair_miou():
    pairs = _pairs()
    warped = parsing.pose_warp_parsing(pairs["source_parse"], pairs["source_pose_keypoints"], pairs["target_pose_keypoints"])
    fig = V.render_pose_warp(pairs["source_parse"], pairs["source_pose_keypoints"], pairs["target_pose_keypoints"], warped,
                             pairs["target_parse"], indices=(0, -1))
    axes = np.asarray(fig.axes).reshape(2, 3)
    both = int(((pairs["source_pose_keypoints"][0, :, 2] > 0) & (pairs["target_pose_keypoints"][0, :, 2] > 0)).sum())
    assert both == 17
    assert len(axes[0, 0].texts) == both  # one arrow per keypoint present in both poses
    m = V.pair_miou(warped[2], pairs["target_parse"][2])
    assert axes[1, 1].get_title() == f"baseline 2: pose warp\nmIoU {m:.3f}"
    assert axes[1, 2].get_title().endswith("pair 2")
    assert (_image_of(axes[0, 1]) == CIHP_PALETTE[warped[0].numpy()]).all()
    with pytest.raises(ValueError, match=r"source_keypoints: expected \(3, 18, 3\)"):
        V.render_pose_warp(pairs["source_parse"], pairs["source_pose_keypoints"][:, :17], pairs["target_pose_keypoints"],
                           warped, pairs["target_parse"])
    with pytest.raises(ValueError, match=r"warped: expected \(3, 32, 24\)"):
        V.render_pose_warp(pairs["source_parse"], pairs["source_pose_keypoints"], pairs["target_pose_keypoints"], warped[:2],
                           pairs["target_parse"])
    with pytest.raises(IndexError, match=r"\[0, 2\], got 3"):
        V.render_pose_warp(pairs["source_parse"], pairs["source_pose_keypoints"], pairs["target_pose_keypoints"], warped,
                           pairs["target_parse"], indices=(3,))
    with pytest.raises(ValueError, match="indices is empty"):
        V.render_pose_warp(pairs["source_parse"], pairs["source_pose_keypoints"], pairs["target_pose_keypoints"], warped,
                           pairs["target_parse"], indices=())


# ------------------------------------------------------------------------------------------ training curves


def _history(keys=("loss_g", "loss_d", "ce", "l1", "adv_g", "adv_d"), steps: int = 30) -> History:
    h = History()
    for s in range(1, steps + 1):
        h.append(s, {k: 1.0 + 1.0 / s + 0.1 * i for i, k in enumerate(keys)})
    return h


def test_plot_training_curves_draws_every_term():
    fig = V.plot_training_curves(_history())
    left, right = fig.axes
    assert left.get_yscale() == "log"
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["loss_g", "ce", "l1", "adv_g"]
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["adv_d"]
    assert len(left.lines) == 8 and len(right.lines) == 2  # raw and smoothed per term
    with pytest.raises(KeyError, match="history lacks adv_g, adv_d"):
        V.plot_training_curves(_history(keys=("loss_g", "ce", "l1")))
    with pytest.raises(TypeError, match="History"):
        V.plot_training_curves({"ce": [1.0]})


# ------------------------------------------------------------------------------------------ results


def test_results_rows_and_table_from_evaluate_parsing():
    res = _results(_pairs())
    rows = V.results_rows(res)
    assert [r["key"] for r in rows] == ["model", "source", "pose_warp"]
    assert rows[1]["miou"] == pytest.approx(res["source"]["miou"])
    assert rows[0]["classes"] == int((~res["model"]["per_class"].isnan()).sum())
    table = V.results_table(res)
    lines = table.splitlines()
    assert lines[0] == "| method | mIoU | pixel accuracy | classes scored |"
    best = max(rows, key=lambda r: r["miou"])
    assert f"**{best['miou']:.3f}**" in table and table.count("**") == 4  # one bold cell per metric column
    assert any(line.startswith("| source parsing (unchanged) |") for line in lines)
    bad = {**res, "source": {**res["source"], "per_class": res["source"]["per_class"][:19]}}
    with pytest.raises(ValueError, match=r"results\['source'\]\['per_class'\]: expected \(20,\)"):
        V.results_rows(bad)
    with pytest.raises(KeyError, match="none of the methods"):
        V.results_rows({"n_pairs": 3})


def test_plot_per_class_iou_bars_and_class_names():
    res = _results(_pairs())
    fig = V.plot_per_class_iou(res)
    ax = fig.axes[0]
    scored = [c for c in range(len(INTERNAL_LABELS))
              if not all(math.isnan(res[m]["per_class"][c].item()) for m in ("model", "source", "pose_warp"))]
    assert [t.get_text() for t in ax.get_xticklabels()] == [INTERNAL_LABELS[c] for c in scored]
    assert len(ax.containers) == 3 and all(len(c) == len(scored) for c in ax.containers)
    heights = [b.get_height() for b in ax.containers[1]]
    assert heights == pytest.approx(np.nan_to_num(res["source"]["per_class"][scored].numpy()).tolist())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == f"MG-VTON parsing (mIoU {res['model']['miou']:.3f})"
    assert len(V.plot_per_class_iou(res, methods=["pose_warp"]).axes[0].containers) == 1
    nan = {"miou": math.nan, "per_class": torch.full((20,), math.nan, dtype=torch.float64), "pixel_accuracy": 0.0}
    with pytest.raises(ValueError, match="no class is scored"):
        V.plot_per_class_iou({"model": nan})


def test_render_parsing_results_columns_and_titles():
    pairs = _pairs()
    res = _results(pairs)
    fig = V.render_parsing_results(pairs, res["predictions"], indices=(0, -1))
    axes = np.asarray(fig.axes).reshape(2, 8)
    titles = [ax.get_title() for ax in axes[1]]
    truth = pairs["target_parse"][2]
    assert titles[0] == "source person\npair 2" and titles[3] == "target parsing\n(truth)"
    m = V.pair_miou(res["predictions"]["pose_warp"][2], truth)
    assert titles[6] == f"baseline 2: pose warp\nmIoU {m:.3f}"
    wrong = (res["predictions"]["model"][2] != truth).float().mean().item()
    assert titles[7] == f"model errors\n{100 * wrong:.1f}% of pixels"
    assert (_image_of(axes[1, 3]) == CIHP_PALETTE[truth.numpy()]).all()
    with pytest.raises(ValueError, match=r"predictions\['model'\]: expected \(3, 32, 24\)"):
        V.render_parsing_results(pairs, {"model": res["predictions"]["model"][:, :16]})
    with pytest.raises(ValueError, match=r"pairs\['source_image'\]: expected \(3, 3, 32, 24\)"):
        V.render_parsing_results({**pairs, "source_image": pairs["source_image"][:2]}, res["predictions"])
    with pytest.raises(KeyError, match="'target_image'"):
        V.render_parsing_results({k: v for k, v in pairs.items() if k != "target_image"}, res["predictions"])
    with pytest.raises(ValueError, match="predictions is empty"):
        V.render_parsing_results(pairs, {})


def test_render_parsing_browser_at_both_ends_of_the_slider():
    pairs = _pairs()
    res = _results(pairs)
    names = ["a->b", "b->a", "c->d"]
    for index in (0, N - 1):
        fig = V.render_parsing_browser(pairs, res["predictions"], index, names=names)
        assert len(fig.axes) == 6
        truth = pairs["target_parse"][index]
        m_model = V.pair_miou(res["predictions"]["model"][index], truth)
        m_warp = V.pair_miou(res["predictions"]["pose_warp"][index], truth)
        assert fig.axes[2].get_title() == f"model\nmIoU {m_model:.3f}"
        assert fig.axes[4].get_title() == f"baseline 2: pose warp\nmIoU {m_warp:.3f}"
        head = fig._suptitle.get_text()
        assert head.startswith(f"test pair {index} ({names[index]}): model - pose warp = {m_model - m_warp:+.3f} mIoU")
        assert (_image_of(fig.axes[3]) == CIHP_PALETTE[truth.numpy()]).all()
    with pytest.raises(IndexError, match=r"\[0, 2\], got 3"):
        V.render_parsing_browser(pairs, res["predictions"], N)
    with pytest.raises(KeyError, match="'pose_warp'"):
        V.render_parsing_browser(pairs, {"model": res["predictions"]["model"]}, 0)
    with pytest.raises(ValueError, match=r"names: expected one name per pair \(3\), got 2"):
        V.render_parsing_browser(pairs, res["predictions"], 0, names=names[:2])
