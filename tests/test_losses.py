"""Tests of vtonlab.losses: hand-computed values, gradients, and where the VGG weights come from."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision

from vtonlab import losses as L
from vtonlab.metrics import weights as W


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture(scope="module")
def vgg_random():
    return L.VGGPerceptualLoss("random")


def _images(n=2, h=32, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g) * 2 - 1


# ---------------------------------------------------------------------------------------------
# VGG perceptual loss


def test_vgg_trunk_matches_torchvision_layout():
    ours = L.vgg19_trunk()
    ref = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])  # torchvision's VGG19 features
    ref_state = ref.state_dict()
    for k, v in ours.state_dict().items():
        assert ref_state[k].shape == v.shape, k
    for i in L.VGG19_RELU_X_1:
        assert isinstance(ref[i], torch.nn.ReLU) and isinstance(ref[i - 1], torch.nn.Conv2d)
    # relu1_1..relu5_1 are the ReLUs after the 1st, 3rd, 5th, 9th and 13th convolutions
    convs = [i for i, m in enumerate(ref) if isinstance(m, torch.nn.Conv2d)]
    assert [convs[j] + 1 for j in (0, 2, 4, 8, 12)] == list(L.VGG19_RELU_X_1)


def test_imagenet_normalise_hand_values():
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    expected = torch.tensor([(0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (1 - 0.406) / 0.225]).view(1, 3, 1, 1)
    assert torch.allclose(L.imagenet_normalise(x), expected)
    with pytest.raises(ValueError, match="N, 3, H, W"):
        L.imagenet_normalise(torch.zeros(3, 4, 4))


def test_vgg_loss_zero_for_identical_and_gradients_flow(vgg_random):
    x = _images()
    assert vgg_random(x, x).item() == 0
    pred = _images(seed=1).requires_grad_(True)
    target = _images(seed=2).requires_grad_(True)
    loss = vgg_random(pred, target)
    loss.backward()
    assert loss.item() > 0
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert target.grad is None  # target features are detached (pix2pixHD)
    assert all(p.grad is None and not p.requires_grad for p in vgg_random.parameters())


def test_vgg_loss_is_weighted_sum_of_layer_l1(vgg_random):
    x, y = _images(seed=3), _images(seed=4)
    fx, fy = vgg_random.feature_maps(x), vgg_random.feature_maps(y)
    assert [f.shape[1] for f in fx] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in fx] == [24, 12, 6, 3, 1]
    hand = sum(w * (a - b).abs().mean() for w, a, b in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0), fx, fy))
    assert torch.allclose(vgg_random(x, y), hand)
    only_last = L.VGGPerceptualLoss("random", layer_weights=(0, 0, 0, 0, 1))
    assert torch.allclose(only_last(x, y), (fx[4] - fy[4]).abs().mean())


def test_vgg_random_fallback_warns_and_says_so():
    with pytest.warns(UserWarning, match="randomly initialised VGG19.*vgg19-dcbb9e9d.pth"):
        loss = L.VGGPerceptualLoss()
    assert not loss.official and loss.source is None and "NOT ImageNet" in loss.weights
    with pytest.raises(FileNotFoundError, match="vgg19-dcbb9e9d.pth"):
        L.VGGPerceptualLoss("imagenet")
    with pytest.raises(ValueError, match="layer_weights"):
        L.VGGPerceptualLoss("random", layer_weights=(1, 1))


def test_vgg_uses_local_weights_file(vgg_random):
    torch.manual_seed(5)
    ref = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])
    state = {f"features.{k}": v for k, v in ref.state_dict().items()}
    folder = W.hub_checkpoint_dir()
    folder.mkdir(parents=True)
    path = folder / W.OFFICIAL["vgg19"].filename
    torch.save(state, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "random VGG" warning now
        loss = L.VGGPerceptualLoss("auto")
    assert loss.source == path and "unverified local file" in loss.weights and not loss.official
    x, y = _images(seed=6), _images(seed=7)
    # independent forward through torchvision's layers loaded from the same file
    ref.load_state_dict({k[len("features."):]: v for k, v in torch.load(path, weights_only=True).items()})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def feats(img):
        h, out = ((img + 1) / 2 - mean) / std, []
        for i, layer in enumerate(ref[:30]):
            h = layer(h)
            if i in (1, 6, 11, 20, 29):
                out.append(h)
        return out

    expected = sum(w * F.l1_loss(a, b) for w, a, b in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1), feats(x), feats(y)))
    assert torch.allclose(loss(x, y), expected, rtol=1e-5)
    assert not torch.allclose(loss(x, y), vgg_random(x, y))


def test_vgg_bad_weights_file_names_it():
    folder = W.hub_checkpoint_dir()
    folder.mkdir(parents=True)
    path = folder / W.OFFICIAL["vgg19"].filename
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match="vgg19-dcbb9e9d.pth lacks"):
        L.VGGPerceptualLoss()
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="vgg19-dcbb9e9d.pth is not a readable"):
        L.VGGPerceptualLoss()


# ---------------------------------------------------------------------------------------------
# Adversarial losses


def test_lsgan_hand_values():
    real, fake = torch.full((2, 1, 4, 4), 0.5), torch.full((2, 1, 4, 4), 0.25)
    assert L.lsgan_d_loss(real, fake).item() == pytest.approx(0.5 * ((0.5 - 1) ** 2 + 0.25**2))
    assert L.lsgan_g_loss(fake).item() == pytest.approx((0.25 - 1) ** 2)
    # two scales are summed; lists of [features..., prediction] use the prediction
    two = [[torch.randn(2, 8, 4, 4), real], [torch.full((2, 1, 2, 2), 1.0)]]
    two_fake = [fake, torch.full((2, 1, 2, 2), -1.0)]
    assert L.lsgan_d_loss(two, two_fake).item() == pytest.approx(0.15625 + 0.5 * (0 + 1))
    assert L.lsgan_g_loss(two_fake).item() == pytest.approx(0.5625 + 4.0)
    # against MSE (an independent formulation)
    r, f = torch.randn(3, 1, 5, 5), torch.randn(3, 1, 5, 5)
    expected = 0.5 * (F.mse_loss(r, torch.ones_like(r)) + F.mse_loss(f, torch.zeros_like(f)))
    assert torch.allclose(L.lsgan_d_loss(r, f), expected)


def test_hinge_hand_values():
    real = torch.tensor([0.5, 2.0, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = [0.5, 0, 2] -> 2.5/3 ; relu(1 + fake) = [0, 1, 2] -> 1
    assert L.hinge_d_loss(real, fake).item() == pytest.approx(2.5 / 3 + 1.0)
    assert L.hinge_g_loss(fake).item() == pytest.approx(1 / 3)
    assert L.hinge_g_loss([fake, fake]).item() == pytest.approx(2 / 3)


def test_adversarial_gradients_flow_to_the_right_side():
    w = torch.tensor(0.3, requires_grad=True)
    fake = w * torch.ones(2, 1, 3, 3)
    L.lsgan_g_loss(fake).backward()
    assert w.grad.item() == pytest.approx(2 * (0.3 - 1))  # d/dw mean (w - 1)^2
    w.grad = None
    L.hinge_g_loss(w * torch.ones(4)).backward()
    assert w.grad.item() == pytest.approx(-1.0)
    d = torch.tensor(0.2, requires_grad=True)
    L.hinge_d_loss(d * torch.ones(3), -d * torch.ones(3)).backward()  # both sides active
    assert d.grad.item() == pytest.approx(-2.0)


def test_adversarial_bad_inputs():
    with pytest.raises(ValueError, match="scales"):
        L.lsgan_d_loss([torch.zeros(1)], [torch.zeros(1), torch.zeros(1)])
    with pytest.raises(TypeError, match="fake_pred"):
        L.hinge_g_loss("nope")
    with pytest.raises(TypeError, match=r"fake_pred\[0\]"):
        L.lsgan_g_loss([[]])


# ---------------------------------------------------------------------------------------------
# Feature matching


def test_feature_matching_hand_values_and_detach():
    # scale 1: two features + prediction; scale 2: one feature + prediction
    f1 = [torch.full((1, 2, 4, 4), 1.0, requires_grad=True), torch.full((1, 2, 2, 2), 0.0, requires_grad=True)]
    r1 = [torch.full((1, 2, 4, 4), 0.5, requires_grad=True), torch.full((1, 2, 2, 2), 2.0, requires_grad=True)]
    f2 = [torch.full((1, 3, 2, 2), 1.0, requires_grad=True)]
    r2 = [torch.full((1, 3, 2, 2), 4.0, requires_grad=True)]
    fake = [f1 + [torch.zeros(1, 1, 2, 2)], f2 + [torch.zeros(1, 1, 1, 1)]]
    real = [r1 + [torch.ones(1, 1, 2, 2)], r2 + [torch.ones(1, 1, 1, 1)]]
    # K = 2 scales; scale 1: T = 2 -> weight 4/2 ; scale 2: T = 1 -> weight 4
    expected = 0.5 * (2 * 0.5 + 2 * 2.0) + 0.5 * (4 * 3.0)
    loss = L.feature_matching_loss(fake, real)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert f1[0].grad is not None and f2[0].grad is not None
    assert r1[0].grad is None and r2[0].grad is None


def test_feature_matching_bad_inputs():
    a = [[torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 1, 1)]]
    with pytest.raises(ValueError, match="shapes differ"):
        L.feature_matching_loss(a, [[torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 1, 1)]])
    with pytest.raises(ValueError, match="scales"):
        L.feature_matching_loss(a, a + a)
    with pytest.raises(TypeError, match="list"):
        L.feature_matching_loss([torch.zeros(1)], a)
