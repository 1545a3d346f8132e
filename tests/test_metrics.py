"""Tests of vtonlab.metrics: ideal values, direction under controlled degradations, regions,
provenance labels, and the official-weights code paths (with locally made stand-in weights)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import warnings

import kornia
import lpips
import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision
from torch_fidelity import feature_extractor_inceptionv3 as fidelity_inception

import vtonlab.metrics as M
from vtonlab.metrics import degradations as D
from vtonlab.metrics import weights as W
from vtonlab.metrics.result import MetricResult, MetricTable


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    """Every test starts with an empty torch cache: no official weights unless a test puts them there."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to download weights fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network download attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def scenes(n: int, seed: int = 0, h: int = 64, w: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Person-like test images (n, 3, h, w) in [0, 1] and garment masks (n, 1, h, w).

    Smooth background, a skin-coloured body ellipse, a striped garment rectangle of a random colour.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    images, masks = [], []
    for _ in range(n):
        bg = torch.rand(3, 1, 1, generator=g) * 0.3 + 0.6 + 0.1 * yy
        cx, cy = (torch.rand(2, generator=g) - 0.5) * 0.3
        body = (((xx - cx) / 0.45) ** 2 + ((yy - cy) / 0.9) ** 2 < 1).float()
        skin = torch.tensor([0.85, 0.65, 0.5]).view(3, 1, 1)
        garment = ((xx - cx).abs() < 0.42) & (yy - cy > -0.45) & (yy - cy < 0.35)
        garment = garment.float() * body
        colour = torch.rand(3, 1, 1, generator=g) * 0.8 + 0.1
        freq = float(torch.randint(3, 8, (1,), generator=g))
        stripes = 0.75 + 0.25 * torch.sin(freq * math.pi * yy + 3 * float(torch.rand(1, generator=g)))
        img = bg * (1 - body) + skin * body
        img = img * (1 - garment) + colour * stripes * garment
        images.append(img.clamp(0, 1))
        masks.append(garment[None])
    return torch.stack(images), torch.stack(masks)


@pytest.fixture(scope="module")
def batch():
    return scenes(12, seed=1)


@pytest.fixture(scope="module")
def lpips_random():
    return M.LPIPSMetric("random")


@pytest.fixture(scope="module")
def randconv():
    return M.random_conv_features(seed=0)


# ---------------------------------------------------------------------------------------------
# Ideal values


def test_identical_images_give_ideal_values(batch, lpips_random, randconv):
    x, _ = batch
    assert torch.allclose(M.ssim(x.double(), x.double()), torch.ones(len(x), dtype=torch.float64), atol=1e-12)
    assert torch.allclose(M.ssim(x, x), torch.ones(len(x)), atol=1e-4)  # float32: flat regions cancel
    assert torch.isinf(M.psnr(x, x)).all()
    assert torch.equal(lpips_random(x, x), torch.zeros(len(x)))
    fid, kid = M.fid_kid(x, x, randconv)
    assert abs(fid.value) < 1e-3
    # KID's unbiased estimator is <= 0 for identical sets (0 only in expectation)
    assert kid.value <= 1e-9


def test_psnr_result_of_identical_images_is_written_to_json(batch):
    x, _ = batch
    r = M.psnr_result(x, x)
    assert math.isinf(r.value)
    d = json.loads(MetricTable([r]).to_json())
    assert d["results"][0]["value"] == "inf"
    assert math.isinf(MetricTable.from_dict(d).results[0].value)


# ---------------------------------------------------------------------------------------------
# SSIM / PSNR against independent computations, and regions


def test_ssim_map_matches_kornia_in_the_interior(batch):
    x = batch[0].double()  # float64: flat regions make float32 SSIM noisy at the 1e-4 level
    y = D.gaussian_blur(x, 1.0)
    ours = M.ssim_map(x, y)
    ref = kornia.metrics.ssim(x, y, window_size=11, max_val=1.0)  # independent implementation, zero padding
    assert torch.allclose(ours[..., 5:-5, 5:-5], ref[..., 5:-5, 5:-5], atol=1e-8)
    assert M.ssim(x, y).dtype == torch.float64


def test_psnr_matches_hand_formula(batch):
    x, m = batch
    y = (x + 0.1 * torch.sign(0.5 - x)).clamp(0, 1)  # |error| = 0.1 everywhere
    mse = (x - y).pow(2).flatten(1).mean(1)
    assert torch.allclose(M.psnr(x, y), 10 * torch.log10(1 / mse), atol=1e-4)
    assert torch.allclose(M.psnr(x, y, m, "inside"), torch.full((len(x),), 20.0), atol=1e-3)


def test_full_mask_region_equals_whole_image(batch):
    x, _ = batch
    y = D.hue_rotate(x, 40)
    ones = torch.ones(len(x), 1, *x.shape[-2:])
    assert torch.allclose(M.ssim(x, y, ones, "inside"), M.ssim(x, y), atol=1e-6)
    assert torch.allclose(M.psnr(x, y, ones, "inside"), M.psnr(x, y), atol=1e-4)


def test_region_metrics_see_only_their_side(batch):
    x, m = batch
    x = x.double()
    y = D.hue_rotate(x, 90)
    y = m * x + (1 - m) * y  # damage only outside the garment
    # pixels whose whole 11x11 window lies inside the garment: SSIM exactly 1 there
    core = -torch.nn.functional.max_pool2d(-m, 11, stride=1, padding=5)
    assert torch.allclose(M.ssim(x, y, core, "inside"), torch.ones(len(x), dtype=torch.float64), atol=1e-10)
    assert (M.ssim(x, y, m, "outside") < 0.99).all()
    assert torch.isinf(M.psnr(x, y, m, "inside")).all()
    assert torch.isfinite(M.psnr(x, y, m, "outside")).all()


# ---------------------------------------------------------------------------------------------
# Each degradation moves each metric the right way


def _degrade(kind: str, x: torch.Tensor, m: torch.Tensor, s: float) -> torch.Tensor:
    if kind == "blur":
        return D.gaussian_blur(x, 2.5 * s)
    if kind == "colour":
        return D.hue_rotate(x, 150 * s, m)
    if kind == "shift":
        return D.shift_region(x, m, dx=round(10 * s), dy=round(4 * s))
    donor = x.roll(1, dims=0)
    return D.texture_swap(x, m, donor, alpha=s)


KINDS = ("blur", "colour", "shift", "texture")


@pytest.mark.parametrize("kind", KINDS)
def test_paired_metrics_get_worse_with_strength(kind, batch, lpips_random):
    x, m = batch
    strengths = (0.0, 0.4, 1.0)
    ssims = [M.ssim(_degrade(kind, x, m, s), x).mean().item() for s in strengths]
    psnrs = [M.psnr(_degrade(kind, x, m, s), x).mean().item() for s in strengths]
    dists = [lpips_random(_degrade(kind, x, m, s), x).mean().item() for s in strengths]
    assert ssims[0] == pytest.approx(1.0, abs=1e-4) and ssims[0] > ssims[1] > ssims[2]
    assert math.isinf(psnrs[0]) and psnrs[1] > psnrs[2]
    assert dists[0] == 0 and dists[0] < dists[1] < dists[2]


@pytest.mark.parametrize("kind", ("blur", "colour", "shift"))
def test_distribution_metrics_get_worse_with_strength(kind, randconv):
    x, m = scenes(24, seed=3)
    dist = M.DistributionMetrics(randconv).set_reference(x)  # as in the protocol: reference = ground truth
    scores = [dist.score(_degrade(kind, x, m, s)) for s in (0.0, 0.5, 1.0)]
    fids = [s[0].value for s in scores]
    kids = [s[1].value for s in scores]
    assert fids[0] < fids[1] < fids[2]
    assert kids[0] < kids[1] < kids[2]


def test_degradations_at_strength_zero_are_identity(batch):
    x, m = batch
    for kind in KINDS:
        assert torch.allclose(_degrade(kind, x, m, 0.0), x, atol=1e-6), kind


def test_hue_rotation_keeps_grey_and_composes():
    grey = torch.full((1, 3, 4, 4), 0.3)
    assert torch.allclose(D.hue_rotate(grey, 77), grey, atol=1e-6)
    r = D.hue_rotation_matrix
    assert torch.allclose(r(50) @ r(70), r(120), atol=1e-6)
    assert torch.allclose(r(120) @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), atol=1e-6)  # R -> G


def test_shift_region_moves_the_garment():
    x = torch.zeros(1, 3, 10, 10)
    m = torch.zeros(1, 1, 10, 10)
    m[..., 2:4, 2:4] = 1
    x[..., 2:4, 2:4] = 1
    y = D.shift_region(x, m, dx=3, dy=1, fill=0.5)
    assert torch.equal(y[0, 0, 3:5, 5:7], torch.ones(2, 2))  # moved
    assert y[0, 0, 2, 2] == 0.5  # uncovered -> fill
    assert y[0, 0, 0, 0] == 0  # untouched


def test_gaussian_blur_matches_torchvision(batch):
    x, _ = batch
    ours = D.gaussian_blur(x, 1.5)
    ref = torchvision.transforms.functional.gaussian_blur(x, kernel_size=11, sigma=1.5)  # radius ceil(4.5) = 5
    assert torch.allclose(ours, ref, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_inputs_name_the_argument(batch):
    x, m = batch
    with pytest.raises(ValueError, match=r"pred: .*\(x \+ 1\) / 2"):
        M.ssim(x * 2 - 1, x)
    with pytest.raises(ValueError, match="same shape"):
        M.psnr(x, x[:, :, :32])
    with pytest.raises(ValueError, match="single image"):
        M.ssim(x[0], x[0])
    with pytest.raises(ValueError, match="region"):
        M.ssim(x, x, m, "middle")
    with pytest.raises(ValueError, match="needs a mask"):
        M.ssim(x, x, None, "inside")
    with pytest.raises(ValueError, match=r"mask: expected shape"):
        M.ssim(x, x, m[..., :10], "inside")
    with pytest.raises(ValueError, match="empty"):
        M.ssim(x, x, torch.zeros_like(m), "inside")
    with pytest.raises(ValueError, match="uint8"):
        M.ssim((x * 255).byte(), x)


def _flat_features() -> M.FeatureExtractor:
    """The identity embedding: a (N, 3, 2, 2) image is its own 12-d feature vector."""
    return M.from_module(lambda x: x.flatten(1), short="flat", extractor="pixels", weights="none", num_features=12)


def _two_feature_sets(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    real = torch.rand(n, 3, 2, 2, generator=g)
    mix = torch.rand(12, 12, generator=g) / 12  # correlated, shifted, narrower: FID well above 0
    fake = ((torch.rand(n, 12, generator=g) @ mix) * 0.7 + 0.25 * torch.rand(12, generator=g)).view(n, 3, 2, 2)
    return real, fake.clamp(0, 1)


def test_fid_equals_the_frechet_distance_computed_with_scipy_sqrtm():
    # Heusel et al. 2017, Eq. 6, with unbiased (N - 1) covariances, computed directly in float64
    real, fake = _two_feature_sets()
    fid, _ = M.fid_kid(real, fake, _flat_features())
    a, b = real.flatten(1).double().numpy(), fake.flatten(1).double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    expected = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real))
    assert expected > 0.1
    assert fid.value == pytest.approx(expected, rel=1e-5)


def test_kid_equals_a_hand_written_unbiased_polynomial_mmd():
    # Binkowski et al. 2018: k(x, y) = (x.y / D + 1)^3; unbiased MMD^2 drops the i == j terms within
    # each set. With sets no larger than the subset size, KID is this estimate on the whole sets.
    real, fake = _two_feature_sets(n=30)
    _, kid = M.fid_kid(real, fake, _flat_features(), kid_subset_size=1000)
    x, y = real.flatten(1).double().numpy(), fake.flatten(1).double().numpy()
    n, d = x.shape

    def k(u, v):
        return (u @ v / d + 1.0) ** 3

    within_x = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    within_y = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    across = sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / (n * n)
    expected = within_x + within_y - 2 * across
    assert expected > 1e-3
    assert kid.value == pytest.approx(expected, rel=1e-5)
    assert "one subset of 30" in kid.note and kid.std is None  # no "± 0" from a single subset


def test_feature_extractor_output_is_checked():
    bad = M.from_module(lambda x: x.mean(dim=(2, 3)), short="mean", extractor="mean colour", weights="none")
    assert bad.num_features == 3
    wrong = M.from_module(lambda x: x, short="ident", extractor="identity", weights="none", num_features=5)
    with pytest.raises(ValueError, match=r"must return \(N, D\)"):
        wrong(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="short"):
        M.from_module(torch.nn.Identity(), short="", extractor="x", weights="none")


# ---------------------------------------------------------------------------------------------
# Provenance


def test_results_and_tables_carry_extractor_and_weights(batch, lpips_random, randconv):
    x, m = batch
    y = D.gaussian_blur(x, 1.0)
    table = MetricTable(title="t")
    table.add(M.ssim_result(y, x)).add(M.ssim_result(y, x, m, "inside")).add(lpips_random.result(y, x))
    table.extend(M.fid_kid(x, y, randconv))
    assert table.names() == ["SSIM", "SSIM", "LPIPS-randalex", "FID-randconv", "KID-randconv"]
    assert table.get("SSIM", "inside mask").value > 0
    md = table.markdown()
    assert "| extractor | weights |" in md and "random AlexNet (seed 0)" in md and "random init (He normal, seed 0)" in md
    assert "no (substitute)" in md
    text = str(table)
    assert "LPIPS-randalex" in text and "torchmetrics SSIM" in text
    back = MetricTable.from_dict(json.loads(table.to_json()))
    assert [r.weights for r in back] == [r.weights for r in table]
    with pytest.raises(KeyError, match="the table has"):
        table["FID"]


def test_metric_result_formats_and_validates():
    r = MetricResult("KID-randconv", 0.0012345, "net", "w", better="lower", std=0.0001)
    assert r.formatted() == "0.001234 ± 0.0001"
    assert "↓" in str(r) and "weights: w" in str(r)
    with pytest.raises(ValueError, match="better"):
        MetricResult("x", 1.0, "e", "w", better="up")


def test_random_substitutes_are_deterministic(batch):
    x, _ = batch
    y = D.hue_rotate(x, 60)
    a, b = M.LPIPSMetric("random", seed=3), M.LPIPSMetric("random", seed=3)
    assert torch.equal(a(x, y), b(x, y))
    assert not torch.equal(a(x, y), M.LPIPSMetric("random", seed=4)(x, y))
    assert torch.equal(M.random_conv_features(5)(x), M.random_conv_features(5)(x))
    assert M.fid_kid(x, y, M.random_conv_features(0))[1].value == M.fid_kid(x, y, M.random_conv_features(0))[1].value


def test_offline_defaults_are_substitutes_and_never_download(batch, no_network):
    x, _ = batch
    lp = M.LPIPSMetric()
    assert lp.name == "LPIPS-randalex" and not lp.official and "alexnet-owt-7be5be79.pth" in lp.reason
    f = M.fid_features()
    assert f.metric_name("FID") == "FID-randconv" and "weights-inception" in f.reason
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        M.LPIPSMetric("imagenet")
    with pytest.raises(FileNotFoundError, match="weights-inception-2015-12-05"):
        M.fid_features("inception")
    lp(x, x)


# ---------------------------------------------------------------------------------------------
# Official-weights code paths, exercised with locally made weights placed where the official ones go


def _place(state: dict, filename: str) -> os.PathLike:
    d = W.hub_checkpoint_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / filename
    torch.save(state, path)
    return path


def _random_alexnet(seed: int) -> torchvision.models.AlexNet:
    torch.manual_seed(seed)
    return torchvision.models.alexnet(weights=None)


def test_lpips_uses_local_alexnet_file(batch, lpips_random, no_network):
    x, _ = batch
    y = D.gaussian_blur(x, 1.0)
    tv = _random_alexnet(123)
    _place({k: v for k, v in tv.state_dict().items() if k.startswith("features.")}, W.OFFICIAL["alexnet"].filename)
    metric = M.LPIPSMetric("auto")
    assert metric.name == "LPIPS" and "unverified local file" in metric.weights and not metric.official
    # reference: the lpips package's own network, trunk convs replaced module by module from torchvision's AlexNet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False)
    for k in range(1, 6):
        sl = getattr(ref.net, f"slice{k}")
        for name, module in sl.named_children():
            if isinstance(module, torch.nn.Conv2d):
                module.load_state_dict(tv.features[int(name)].state_dict())
    with torch.no_grad():
        expected = ref(x, y, normalize=True).flatten()
    assert torch.allclose(metric(x, y), expected, atol=1e-6)
    assert not torch.allclose(metric(x, y), lpips_random(x, y))


def test_official_label_when_hash_matches(monkeypatch):
    state = {k: v for k, v in _random_alexnet(7).state_dict().items() if k.startswith("features.")}
    path = _place(state, "tmp.pth")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = W.OfficialWeights("alexnet", f"alexnet-owt-{digest[:8]}.pth", "ImageNet AlexNet (test)", "n/a")
    path.rename(path.with_name(spec.filename))
    monkeypatch.setitem(W.OFFICIAL, "alexnet", spec)
    metric = M.LPIPSMetric("imagenet")
    assert metric.official and metric.weights.startswith("trunk: ImageNet AlexNet (test)")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_corrupt_or_unsafe_weight_files_are_refused(tmp_path):
    path = _place({}, W.OFFICIAL["alexnet"].filename)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="alexnet-owt-7be5be79.pth is not a readable tensor state dict"):
        M.LPIPSMetric()
    with open(path, "wb") as f:  # a pickle that would run code if unpickled without weights_only
        pickle.dump({"features.0.weight": _Evil()}, f)
    with pytest.raises(ValueError, match="weights_only=True"):
        M.LPIPSMetric()
    assert not (tmp_path / "pwned").exists()
    torch.save({"something.else": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="lacks .* expected keys"):
        M.LPIPSMetric()


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _random_fid_inception(monkeypatch) -> torch.nn.Module:
    cls = fidelity_inception.FeatureExtractorInceptionV3
    with monkeypatch.context() as mp:  # build it without any weights, random init
        mp.setattr(fidelity_inception, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(cls, "load_state_dict", lambda self, sd, *a, **k: None)
        torch.manual_seed(0)
        return cls("inception-v3-compat", ["2048"])


def test_fid_uses_local_inception_file(batch, monkeypatch, no_network):
    x, _ = batch
    net = _random_fid_inception(monkeypatch)
    _place(net.state_dict(), W.OFFICIAL["inception"].filename)
    f = M.fid_features("auto")
    assert f.official is False and f.short == "" and "unverified local file" in f.weights
    assert f.metric_name("FID") == "FID" and f.num_features == 2048
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # restored after loading
    imgs = x[:4]
    with torch.no_grad():
        expected = net((imgs * 255).byte())[0]
    assert torch.allclose(f(imgs), expected, atol=1e-4)
    fid, kid = M.fid_kid(x[:6], x[6:], f)
    assert fid.name == "FID" and kid.name == "KID" and fid.weights == f.weights


def test_without_torch_fidelity_auto_falls_back(monkeypatch):
    _place({"w": torch.zeros(1)}, W.OFFICIAL["inception"].filename)
    monkeypatch.setattr("vtonlab.metrics.features.torch_fidelity_available", lambda: False)
    f = M.fid_features("auto")
    assert f.short == "randconv" and "torch-fidelity is not installed" in f.reason
    with pytest.raises(ModuleNotFoundError, match="torch-fidelity"):
        M.fid_features("inception")


# ---------------------------------------------------------------------------------------------
# LaDI-VTON protocol


def _as_dict(images: torch.Tensor, prefix: str = "p") -> dict[str, torch.Tensor]:
    return {f"{prefix}{i:03d}.jpg": img for i, img in enumerate(images)}


def test_protocol_paired_and_unpaired(batch, lpips_random, randconv):
    x, m = batch
    gt = _as_dict(x)
    perfect = M.evaluate_tryon(dict(gt), gt, "paired", lpips=lpips_random, features=randconv, kid_subset_size=8)
    assert perfect.names() == ["SSIM", "LPIPS-randalex", "FID-randconv", "KID-randconv"]
    assert perfect["SSIM"].value == pytest.approx(1.0, abs=1e-4) and perfect["LPIPS-randalex"].value == 0
    assert abs(perfect["FID-randconv"].value) < 1e-3
    assert set(perfect.per_image) == set(gt)
    worse = M.evaluate_tryon(_as_dict(D.gaussian_blur(x, 1.5)), gt, "paired", lpips=lpips_random, features=randconv)
    assert worse["SSIM"].value < 1 and worse["LPIPS-randalex"].value > 0 and worse["FID-randconv"].value > 0.01
    unpaired = M.evaluate_tryon(_as_dict(D.hue_rotate(x, 90, m)), gt, "unpaired", features=randconv)
    assert unpaired.names() == ["FID-randconv", "KID-randconv"]
    assert all(r.setting == "unpaired" for r in unpaired)


def test_protocol_resizes_ground_truth_and_notes_it(batch, lpips_random, randconv):
    x, _ = batch
    big = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    t = M.evaluate_tryon(_as_dict(x), _as_dict(big.clamp(0, 1)), "paired", lpips=lpips_random, features=randconv)
    assert any("resized" in n for n in t.notes)
    assert t["SSIM"].value > 0.9


def test_protocol_names_missing_and_extra_predictions(batch, randconv):
    x, _ = batch
    gt = _as_dict(x)
    pred = dict(gt)
    del pred["p003.jpg"]
    pred["stranger.jpg"] = x[0]
    with pytest.raises(M.MismatchError, match=r"1 missing: p003.jpg; 1 not expected: stranger.jpg"):
        M.evaluate_tryon(pred, gt, "unpaired", features=randconv)
    with pytest.raises(ValueError, match="setting"):
        M.evaluate_tryon(gt, gt, "both", features=randconv)


# ---------------------------------------------------------------------------------------------
# Sweeps (notebook 05) and their figures


def test_sweep_scores_and_orders_every_degradation(lpips_random, randconv):
    from vtonlab.metrics.study import KINDS, rank_agreement, sweep

    x, m = scenes(8, seed=4)
    donors = scenes(8, seed=5)[0]
    s = sweep(x, m, [0.0, 0.5, 1.0], donors=donors, fill=0.5, lpips=[lpips_random], features=[randconv],
              kid_subset_size=8)
    assert s.metrics == ["SSIM", "SSIM inside", "SSIM outside", "PSNR", "LPIPS-randalex", "FID-randconv",
                         "KID-randconv"]
    assert s.per_image["SSIM"]["blur"].shape == (3, 8) and s.per_set["FID-randconv"]["blur"].shape == (3,)
    regions = M.similarity.ssim_regions(D.gaussian_blur(x, 8 / 24 * 0.5 * 3), x, m)
    assert torch.allclose(regions["all"], M.ssim(D.gaussian_blur(x, 8 / 24 * 0.5 * 3), x))
    for kind in KINDS:
        assert s.monotonicity("LPIPS-randalex", kind) > 0.5, kind
        assert s.monotonicity("SSIM", kind) > 0.5, kind
        assert s.curve("LPIPS-randalex", kind)[0] == 0
    # colour and texture only touch the garment: outside it SSIM stays high
    assert s.curve("SSIM outside", "colour")[-1] > s.curve("SSIM inside", "colour")[-1]
    assert rank_agreement(s.per_image["SSIM"]["blur"], s.per_image["SSIM"]["blur"], higher_is_better=(True, True)) == pytest.approx(1)
    assert rank_agreement(s.per_image["SSIM"]["blur"], s.per_image["LPIPS-randalex"]["blur"],
                          higher_is_better=(True, False)) > 0.5
    with pytest.raises(KeyError, match="no metric"):
        s.curve("IS", "blur")
    # a hue rotation leaves grey images unchanged: they are not counted; a blind metric scores 0
    grey = x.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    g = sweep(grey, m, [0.0, 0.5, 1.0], donors=donors, kinds=("colour", "blur"), pixel_metrics=False,
              extra={"blind": lambda p, t: torch.zeros(len(p))})
    assert not g.changed["colour"].any() and g.changed["blur"][1:].all()
    assert math.isnan(g.monotonicity("blind", "colour")) and g.monotonicity("blind", "blur") == 0
    with pytest.raises(ValueError, match="donors"):
        M.study.degrade("texture", x, m, 0.5)
    with pytest.raises(ValueError, match="kind"):
        M.study.degrade("noise", x, m, 0.5)
    with pytest.raises(ValueError, match="strength"):
        M.study.degrade("blur", x, m, 1.5)


def test_metric_figures_render(lpips_random, randconv):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vtonlab.metrics.study import KINDS, degrade, sweep
    from vtonlab.viz.metrics import DegradationExplorer, agreement_matrix, degradation_examples, metric_curves

    x, m = scenes(4, seed=6)
    donors = scenes(4, seed=7)[0]
    rows = {k: [degrade(k, x[:1], m[:1], s, donors=donors[:1])[0] for s in (0, 1)] for k in KINDS}
    figs = [degradation_examples(rows, [0, 1])]
    s = sweep(x, m, [0, 1], donors=donors, lpips=[lpips_random], features=[randconv], kid_subset_size=4)
    figs.append(metric_curves(s))
    figs.append(agreement_matrix(np.array([[1.0, np.nan], [0.5, 1.0]]), ["a", "b"], title="t"))
    explorer = DegradationExplorer(x, m, donors, fill=0.5, lpips=lpips_random)
    for kind in KINDS:  # extreme slider values included (clamped)
        for strength, index in ((0.0, 0), (1.0, 3), (-1.0, -5), (2.0, 99)):
            figs.append(explorer.render(kind, strength, index))
    assert "LPIPS-randalex" in figs[-1]._suptitle.get_text()
    for f in figs:
        plt.close(f)
    with pytest.raises(ValueError, match="strengths"):
        degradation_examples(rows, [0, 0.5, 1])
    with pytest.raises(ValueError, match="matrix"):
        agreement_matrix(np.ones((2, 3)), ["a", "b"])
