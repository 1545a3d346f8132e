"""Tests for vtonlab.ladi.ablation: the rows' wiring, the colour error against planted answers, the two-level seed
statistics, the family's shipped-file check, and one small end-to-end evaluation on the shipped ci checkpoints."""

import math

import pytest
import torch

from vtonlab.ladi import ablation as A
from vtonlab.metrics import LPIPSMetric
from vtonlab.profiles import get_profile

PROFILE = get_profile("ci")


def test_rows_resolve_to_known_variants():
    for row in A.ROWS:
        spec = A._row_spec(row)
        assert spec["variant"] in {*A.VARIANTS, "base"}, row
        assert spec["emasc"] in ("none", "linear", "nonlinear"), row
    assert A._row_spec("full") == {"variant": "full", "emasc": "nonlinear", "pose": True, "garment": True}
    # the garment input alone: the no-text UNet sampled with and without its garment latent
    assert A._row_spec("text: none, garment zeroed at sampling") == {**A._row_spec("text: none"), "garment": False}
    assert A.VARIANTS[A._row_spec("text: none")["variant"]] == {"text_mode": "none"}
    with pytest.raises(KeyError, match="unknown ablation row"):
        A._row_spec("no diffusion")
    with pytest.raises(KeyError, match="unknown try-on variant"):
        A.get_variant(PROFILE, "nopose")
    with pytest.raises(ValueError, match="seed"):
        A.get_variant(PROFILE, "full", -1)
    assert set(A.PAPER_CLAIMS) == set(A.ROWS) - {"full"}
    assert A.ablation_seeds("ci") == (0,) and A.ablation_seeds("cpu") == (0, 1, 2)


def test_colour_error_planted():
    from kornia.color import rgb_to_lab

    gt = torch.zeros(2, 3, 8, 6)
    gt[:, 0] = 0.8  # a red garment
    pred = gt.clone()
    region = torch.zeros(2, 1, 8, 6)
    region[0, :, 2:6, 1:5] = 1
    assert A.colour_error(pred, gt, region)[0].item() == pytest.approx(0.0, abs=1e-5)
    assert math.isnan(A.colour_error(pred, gt, region)[1].item())  # empty region
    pred[:, :, 2:6, 1:5] = torch.tensor([0.1, 0.2, 0.7]).view(1, 3, 1, 1)  # blue inside the region only
    pred[:, :, :2] = 0.0  # outside the region: not counted
    lab = rgb_to_lab(torch.tensor([[0.1, 0.2, 0.7], [0.8, 0.0, 0.0]]).view(2, 3, 1, 1)).flatten(1)
    expected = (lab[0] - lab[1]).norm().item()
    assert A.colour_error(pred, gt, region)[0].item() == pytest.approx(expected, rel=1e-4)
    assert expected > 50  # red vs blue is far apart in CIELAB
    means = A.mean_lab(pred, region)
    assert torch.allclose(means[0], lab[0], atol=1e-3)  # the blue inside the region, nothing from outside
    assert means[0, 1:].norm() > 40 and A.mean_lab(torch.full_like(gt, 0.5), region)[0, 1:].norm() < 1  # chroma: grey ~ 0


def test_chroma_ratio_and_colour_metrics_live_in_metrics():
    from vtonlab import metrics as M

    assert A.colour_error is M.colour_error and A.mean_lab is M.mean_lab
    gt = torch.zeros(2, 3, 8, 6)
    gt[:, 0] = 0.8
    region = torch.zeros(2, 1, 8, 6)
    region[:, :, 2:6, 1:5] = 1
    half = 0.5 * gt + 0.5 * gt.mean(1, keepdim=True)  # halfway to grey
    assert M.chroma_ratio(gt, gt, region) == pytest.approx(1.0, rel=1e-5)
    assert 0.3 < M.chroma_ratio(half, gt, region) < 0.8
    assert M.chroma_ratio(gt.mean(1, keepdim=True).expand_as(gt), gt, region) < 0.05
    assert math.isnan(M.chroma_ratio(gt, gt, torch.zeros_like(region)))
    with pytest.raises(ValueError, match="region: expected"):
        M.mean_lab(gt, region[:1])


def _result():
    res = A.LadiAblationResult((0, 1, 2), ("full", "base inpainting"), ("paired",), {"paired": 4},
                               metrics=A.METRICS, higher_is_better=dict(A.HIGHER_IS_BETTER), sample_seeds=(0, 1))
    vals = {("full", 0): [0.10, 0.12], ("full", 1): [0.11, 0.11], ("full", 2): [0.20, 0.20],
            ("base inpainting", 0): [0.50, 0.40]}
    for (row, t), per_sample in vals.items():
        for s, v in enumerate(per_sample):
            res.samples[("paired", row, t, s)] = {m: v for m in A.METRICS}
        res.runs[("paired", row, t)] = {m: sum(per_sample) / 2 for m in A.METRICS}
    return res


def test_result_spread_takes_the_larger_of_training_and_sampling():
    res = _result()
    # full: seed means 0.11, 0.11, 0.20 -> training spread 0.09; largest sampling spread 0.02
    assert res.training_spread("paired", "full", "lpips") == pytest.approx(0.09)
    assert res.sampling_spread("paired", "full", "lpips") == pytest.approx(0.02)
    assert res.spread("paired", "full", "lpips") == pytest.approx(0.09)
    # base: one training run, so its spread is the sampling spread
    assert res.values("paired", "base inpainting", "lpips") == [pytest.approx(0.45)]
    assert res.spread("paired", "base inpainting", "lpips") == pytest.approx(0.10)
    assert res.mean("paired", "full", "lpips") == pytest.approx(0.14)
    assert res.direction("paired", "base inpainting", "lpips") == "worse"  # 0.45 vs 0.14, margin 0.10
    assert res.direction("paired", "base inpainting", "ssim") == "better"  # higher is better there
    table = res.table("paired")
    assert "colour_error ↓" in table and "| base inpainting |" in table
    assert res.to_dict()["sample_seeds"] == [0, 1]


def test_shipped_conflicts_of_the_family(tmp_path, monkeypatch):
    from vtonlab import paths
    from vtonlab.commands import train

    monkeypatch.setattr(paths, "shipped_checkpoints_dir", lambda: tmp_path)
    for name in ("ladi_tryon_nogarment_seed1-cpu", "ladi_adapter_n4-cpu", "ladi_tryon-ci", "ladi_inpaint-cpu"):
        (tmp_path / f"{name}.safetensors").write_bytes(b"x")
    found = {p.name for p in train.shipped_conflicts("ladi_ablation", "cpu")}
    assert found == {"ladi_tryon_nogarment_seed1-cpu.safetensors", "ladi_adapter_n4-cpu.safetensors"}
    assert "ladi_ablation" in train.available()


def test_trainer_keeps_contiguous_format_on_cpu():
    from vtonlab.train import Trainer

    net = torch.nn.Conv2d(3, 4, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    t = Trainer({"net": net}, {"net": opt}, lambda ctx, b: None, lambda step, g: None, max_steps=0,
                profile=get_profile("gpu"), mixed_precision="no", progress=False)
    assert not t.channels_last  # the gpu recipe applies on CUDA only
    assert net.weight.is_contiguous()


@pytest.fixture(scope="module")
def components():
    return A.Components(PROFILE)


@pytest.fixture(scope="module")
def small_set(components):
    frozen = components.frozen()
    return A.add_warped_cloth(A.test_set(PROFILE, "unpaired", limit=4), frozen["tps"][0], frozen["refine"][0])


def test_test_sets_paired_and_unpaired(small_set):
    paired = A.test_set(PROFILE, "paired", limit=3)
    assert torch.equal(paired["gt_image"], paired["image"])  # paired: the person is the ground truth
    assert len(paired["names"]) == 3 and len(paired["captions"]) == 3
    assert small_set["gt_image"].shape == small_set["image"].shape
    assert not torch.equal(small_set["gt_image"], small_set["image"])  # another garment
    assert small_set["warped_cloth"].shape == small_set["image"].shape
    assert small_set["warped_cloth"].abs().max() <= 1
    with pytest.raises(ValueError, match="setting"):
        A.test_set(PROFILE, "multipose")


def test_sampling_is_per_person_and_emasc_rows_share_latents(components, small_set):
    a = A.sample_row(components, small_set, "full", sample_seed=1, batch_size=4, emasc_kinds=("nonlinear", "none"))
    b = A.sample_row(components, small_set, "full", sample_seed=1, batch_size=2)
    assert torch.allclose(a["nonlinear"], b["nonlinear"], atol=1e-5)  # the batch size does not change a person's result
    assert not torch.allclose(a["nonlinear"], a["none"])  # the same latents decoded with and without EMASC
    c = A.sample_row(components, small_set, "full", sample_seed=2, batch_size=4)
    assert (c["nonlinear"] - a["nonlinear"]).abs().max() > 1e-3  # another sampling seed, other images


def test_garment_zeroed_rows_change_only_the_garment_latent(components, small_set):
    row = "text: none, garment zeroed at sampling"
    a = A.sample_row(components, small_set, "text: none", batch_size=4)["nonlinear"]
    b = A.sample_row(components, small_set, row, batch_size=4)["nonlinear"]
    assert a.shape == b.shape == small_set["image"].shape
    assert (a - b).abs().max() > 1e-4  # the no-text UNet reads its garment latent
    zero_cloth = {**small_set, "warped_cloth": torch.zeros_like(small_set["warped_cloth"])}
    c = A.sample_row(components, zero_cloth, "text: none", batch_size=4)["nonlinear"]
    assert (a - c).abs().max() > 1e-4  # and the warp is what it reads: another warp, another result
    assert torch.equal(b, A.sample_row(components, zero_cloth, row, batch_size=4)["nonlinear"])  # zeroed: no warp read


def test_evaluate_small(components):
    res = A.evaluate_ablation(PROFILE, settings=("unpaired",), rows=("full", "EMASC none", "base inpainting"),
                              sample_seeds=(0, 1), limit=4, lpips=LPIPSMetric(weights="random"), components=components,
                              progress=False)
    assert res.n_pairs == {"unpaired": 4}
    assert set(res.samples) == {("unpaired", r, 0, s) for r in ("full", "EMASC none", "base inpainting") for s in (0, 1)}
    for row in ("full", "EMASC none", "base inpainting"):
        for m in A.METRICS:
            v = res.mean("unpaired", row, m)
            assert math.isfinite(v), (row, m)
    assert res.extractors["lpips"].startswith("LPIPS") and "colour_error" in res.extractors
    assert set(res.seconds_per_image) == {"full", "base inpainting"}  # EMASC none reuses the full row's latents


def test_autoencoder_floor_is_the_ground_truth_through_the_autoencoder(components, small_set):
    from vtonlab.ladi.vae import decode_latents, encode_latents

    floor = A.autoencoder_floor(components, small_set, emasc="none", batch_size=3)
    vae = components.frozen()["vae"][0]
    with torch.no_grad():
        by_hand = ((decode_latents(vae, encode_latents(vae, small_set["gt_image"])) + 1) / 2).clamp(0, 1)
    assert floor.shape == small_set["gt_image"].shape
    assert torch.allclose(floor, by_hand, atol=1e-5)  # batching does not change it; no EMASC means the plain decoder
    with_skips = A.autoencoder_floor(components, small_set)  # full's decoding: nonlinear EMASC
    assert not torch.allclose(with_skips, floor)
    gt = ((small_set["gt_image"] + 1) / 2).clamp(0, 1)
    grey = torch.full_like(gt, 0.5)
    assert (floor - gt).square().mean() < (grey - gt).square().mean()  # a reconstruction, not noise
    m = A.row_metrics(floor, small_set, lpips=LPIPSMetric(weights="random"))
    assert math.isfinite(m["colour_error"]) and m["per_pair_colour_error"].shape == (4,)


def test_train_command_selects_variants_and_seeds_of_a_family(monkeypatch):
    from argparse import Namespace

    from vtonlab.commands import train
    from vtonlab.ladi import adapter as adapter_mod

    args = Namespace(model="ladi_ablation", variants="nogarment, n4", seeds="0,2")
    assert train.selection(args, A.get_trained_ablation) == {"variants": ["nogarment", "n4"], "seeds": [0, 2]}
    with pytest.raises(ValueError, match="--seeds: expected comma-separated integers"):
        train.selection(Namespace(model="ladi_ablation", variants=None, seeds="0,x"), A.get_trained_ablation)
    with pytest.raises(ValueError, match="--variants: ladi_tryon trains one model"):
        train.selection(Namespace(model="ladi_tryon", variants="n4", seeds=None), lambda profile, force_train=False: None)
    # what the family trains for that selection: the 4-word adapter, then each variant at each chosen seed
    calls = []
    monkeypatch.setattr(A, "_frozen_components", lambda prof, verbose: {"clip": 1, "vae": 2, "base": 3})
    monkeypatch.setattr(adapter_mod, "get_trained",
                        lambda prof, num_pseudo_words, **kw: calls.append(("adapter", num_pseudo_words)) or "a")
    monkeypatch.setattr(A, "get_variant", lambda prof, v, seed, **kw: calls.append((v, seed)) or (v, seed))
    out = A.get_trained_ablation("ci", variants=["full", "nogarment", "n4"], seeds=[0, 2], progress=False, verbose=False)
    assert calls == [("adapter", 4), ("nogarment", 0), ("n4", 0), ("full", 2), ("nogarment", 2), ("n4", 2)]
    assert list(out) == ["adapter_n4", "nogarment", "n4", "full_seed2", "nogarment_seed2", "n4_seed2"]
    with pytest.raises(KeyError, match="unknown try-on variant 'bogus'"):
        A.get_trained_ablation("ci", variants=["bogus"])
