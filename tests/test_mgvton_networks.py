"""Tests for vtonlab.mgvton.networks: MG-VTON's ResNet-like generator and pix2pixHD's multi-scale discriminator."""

import pytest
import torch
from torch import nn

from vtonlab import losses
from vtonlab.mgvton import networks as N


def _leaves(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not list(m.children())]


# ------------------------------------------------------------------ generator


def test_generator_shapes_and_bottleneck():
    torch.manual_seed(0)
    g = N.ResnetGenerator(5, 7, width=4, n_down=3, n_blocks=2)
    x = torch.randn(2, 5, 32, 24)
    assert g(x).shape == (2, 7, 32, 24)
    assert g.encode(x).shape == (2, 32, 4, 3)  # width * 2^3 channels at 1/8 resolution
    g2 = N.ResnetGenerator(5, 7, width=4, n_down=2, n_blocks=1)
    assert g2(torch.randn(1, 5, 12, 8)).shape == (1, 7, 12, 8) and g2.encode(torch.randn(1, 5, 12, 8)).shape == (1, 16, 3, 2)


@pytest.mark.parametrize("width,n_down,n_blocks", [(64, 3, 9), (16, 3, 2), (8, 2, 0)])
def test_generator_layout_follows_the_config(width, n_down, n_blocks):
    with torch.device("meta"):  # the paper's size without allocating it
        g = N.ResnetGenerator(24, 20, width=width, n_down=n_down, n_blocks=n_blocks)
    leaves = _leaves(g)
    convs = [m for m in leaves if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    # MG-VTON's filters: 64, 128, 256, 512 x 9 (two convs per block), 256, 128, 64, then the output conv
    bottleneck = width * 2**n_down
    expected = ([width * 2**i for i in range(n_down + 1)] + [bottleneck] * (2 * n_blocks)
                + [width * 2**i for i in reversed(range(n_down))] + [20])
    assert [c.out_channels for c in convs] == expected
    if (width, n_down, n_blocks) == (64, 3, 9):
        assert expected[:4] == [64, 128, 256, 512] and expected[-4:-1] == [256, 128, 64]
    assert [c.stride for c in convs if isinstance(c, nn.Conv2d) and c.stride == (2, 2)] == [(2, 2)] * n_down
    ups = [c for c in convs if isinstance(c, nn.ConvTranspose2d)]
    assert len(ups) == n_down and all(u.kernel_size == (3, 3) and u.output_padding == (1, 1) for u in ups)
    assert convs[0].kernel_size == (7, 7) and convs[-1].kernel_size == (7, 7)
    bns = [m for m in leaves if isinstance(m, nn.BatchNorm2d)]
    relus = [m for m in leaves if isinstance(m, nn.ReLU)]
    assert len(bns) == 1 + 2 * n_down + 2 * n_blocks
    assert len(relus) == 1 + 2 * n_down + n_blocks
    assert len(g.blocks) == n_blocks and all(isinstance(b, N.ResnetBlock) for b in g.blocks)
    # conv -> BatchNorm -> ReLU in the stem, the downsampling and the upsampling parts
    for part in (g.stem, g.down, g.up):
        kinds = [type(m) for m in part if not isinstance(m, nn.ReflectionPad2d)]
        for i in range(0, len(kinds), 3):
            assert kinds[i] in (nn.Conv2d, nn.ConvTranspose2d) and kinds[i + 1] is nn.BatchNorm2d and kinds[i + 2] is nn.ReLU
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.ReLU, nn.Tanh)) for m in g.head)  # logits by default


def test_residual_block_adds_its_input_and_has_no_activation_after_the_sum():
    torch.manual_seed(0)
    block = N.ResnetBlock(4).eval()
    last_bn = block.conv_block[-1]
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.fill_(-5.0)
    x = torch.randn(1, 4, 6, 6)
    assert torch.allclose(block(x), x - 5.0)  # x + f(x) with f = -5: no ReLU after the sum


def test_generator_options_norm_activation_init():
    torch.manual_seed(0)
    g = N.ResnetGenerator(3, 3, width=8, n_blocks=1, norm="instance", out_activation="tanh")
    assert any(isinstance(m, nn.InstanceNorm2d) and not m.affine for m in g.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    y = g(10 * torch.randn(1, 3, 16, 16))
    assert isinstance(g.head[-1], nn.Tanh) and y.abs().max() <= 1
    big = N.ResnetGenerator(3, 3, width=32, n_blocks=1)  # pix2pixHD init: conv N(0, 0.02), BN N(1, 0.02) and 0
    w = big.blocks[0].conv_block[1].weight
    assert abs(w.std().item() - 0.02) < 0.001 and abs(w.mean().item()) < 0.001
    bn = big.blocks[0].conv_block[2]
    assert abs(bn.weight.mean().item() - 1) < 0.02 and 0 < bn.weight.std().item() < 0.04 and torch.all(bn.bias == 0)
    default = N.ResnetGenerator(3, 3, width=32, n_blocks=1, init="default")
    assert torch.all(default.blocks[0].conv_block[2].weight == 1)  # PyTorch's BatchNorm init


def test_generator_bad_inputs_name_what_was_expected():
    g = N.ResnetGenerator(5, 2, width=4, n_blocks=1)
    with pytest.raises(ValueError, match=r"expected \(B, 5, H, W\)"):
        g(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        g(torch.zeros(1, 5, 20, 16))
    with pytest.raises(ValueError, match="norm: expected one of"):
        N.ResnetGenerator(5, 2, norm="group")
    with pytest.raises(ValueError, match="out_activation"):
        N.ResnetGenerator(5, 2, out_activation="sigmoid")
    with pytest.raises(ValueError, match="n_blocks"):
        N.ResnetGenerator(5, 2, n_blocks=-1)


# ------------------------------------------------------------------ discriminator


def _official_blocks(input_nc, ndf, n_layers):
    """pix2pixHD models/networks.py NLayerDiscriminator.__init__ (lines 340-361), transcribed as (module, args) rows."""
    kw, padw = 4, 2
    rows = [[("conv", input_nc, ndf, kw, 2, padw), ("lrelu", 0.2)]]
    nf = ndf
    for _ in range(1, n_layers):
        nf_prev, nf = nf, min(nf * 2, 512)
        rows.append([("conv", nf_prev, nf, kw, 2, padw), ("inorm", nf), ("lrelu", 0.2)])
    nf_prev, nf = nf, min(nf * 2, 512)
    rows.append([("conv", nf_prev, nf, kw, 1, padw), ("inorm", nf), ("lrelu", 0.2)])
    rows.append([("conv", nf, 1, kw, 1, padw)])
    return rows


def _describe(block: nn.Sequential):
    out = []
    for m in block:
        if isinstance(m, nn.Conv2d):
            out.append(("conv", m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]))
        elif isinstance(m, nn.InstanceNorm2d):
            assert not m.affine
            out.append(("inorm", m.num_features))
        elif isinstance(m, nn.LeakyReLU):
            out.append(("lrelu", m.negative_slope))
        else:
            out.append((type(m).__name__,))
    return out


@pytest.mark.parametrize("input_nc,ndf,n_layers", [(44, 64, 3), (5, 4, 3), (3, 256, 3), (6, 8, 4), (2, 4, 1)])
def test_discriminator_transcribes_the_official_layer_list(input_nc, ndf, n_layers):
    with torch.device("meta"):
        d = N.NLayerDiscriminator(input_nc, ndf, n_layers)
    assert [_describe(b) for b in d.blocks] == _official_blocks(input_nc, ndf, n_layers)
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())  # LSGAN: no sigmoid


def test_multiscale_output_format_and_downsampling_between_scales():
    torch.manual_seed(0)
    d = N.MultiscaleDiscriminator(5, ndf=4, n_layers=3, num_D=3).eval()
    x = torch.randn(2, 5, 64, 48)
    out = d(x)
    assert len(out) == 3 and all(len(s) == 3 + 2 for s in out)
    sizes = [(64, 48), (32, 24), (16, 12)]
    for s, (h, w) in zip(out, sizes):
        for f, stride in zip(s, (2, 2, 2, 1, 1)):  # padding 2, kernel 4: out = floor((n + 4 - 4) / s) + 1
            h, w = h // stride + 1, w // stride + 1
            assert f.shape[-2:] == (h, w)
        assert s[-1].shape[:2] == (2, 1)
    # scale k sees the input average-pooled k times (3x3, stride 2, padding 1, padding not counted)
    down = N.scale_downsample(x)
    assert torch.allclose(down, nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)(x))
    assert torch.allclose(N.scale_downsample(torch.ones(1, 1, 9, 7)), torch.ones(1, 1, 5, 4))  # borders stay 1
    for a, b in zip(out[1], d.scales[1](down)):
        assert torch.equal(a, b)
    for a, b in zip(out[2], d.scales[2](N.scale_downsample(down))):
        assert torch.equal(a, b)
    plain = N.MultiscaleDiscriminator(5, ndf=4, num_D=2, intermediate=False)
    res = plain(x)
    assert len(res) == 2 and all(len(s) == 1 and s[0].shape[1] == 1 for s in res)
    with pytest.raises(ValueError, match=r"expected \(B, 5, H, W\)"):
        d(torch.zeros(1, 6, 32, 32))


def test_patch_receptive_field_is_70_pixels():
    """pix2pixHD's default PatchGAN (n_layers 3) sees 70x70 patches: the gradient of one score has that support."""
    torch.manual_seed(0)
    d = N.NLayerDiscriminator(1, ndf=4, n_layers=3, norm="batch").eval()  # eval BatchNorm: no global statistics
    x = torch.randn(1, 1, 128, 128, requires_grad=True)
    pred = d(x)[-1]
    i, j = pred.shape[-2] // 2, pred.shape[-1] // 2
    pred[0, 0, i, j].backward()
    support = x.grad[0, 0] != 0
    rows, cols = support.any(1).nonzero().flatten(), support.any(0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70
    assert len(rows) == 70 and len(cols) == 70


def test_vtonlab_losses_accept_the_multiscale_output():
    torch.manual_seed(0)
    d = N.MultiscaleDiscriminator(3, ndf=4, n_layers=3, num_D=2)
    real = torch.randn(2, 3, 32, 32)
    fake = torch.randn(2, 3, 32, 32, requires_grad=True)
    d_real, d_fake = d(real), d(fake)
    ld = losses.lsgan_d_loss(d_real, [[t.detach() for t in s] for s in d_fake])
    manual_d = sum(0.5 * ((r[-1] - 1).pow(2).mean() + f[-1].pow(2).mean()) for r, f in zip(d_real, d_fake))
    assert torch.allclose(ld, manual_d)
    lg = losses.lsgan_g_loss(d_fake)
    assert torch.allclose(lg, sum((f[-1] - 1).pow(2).mean() for f in d_fake))
    fm = losses.feature_matching_loss(d_fake, d_real)
    # pix2pixHD: 1/num_D * 4/(n_layers_D + 1) * L1 over the n_layers_D + 1 intermediate features
    manual_fm = sum(0.5 * (4 / 4) * (f - r).abs().mean() for fs, rs in zip(d_fake, d_real) for f, r in zip(fs[:-1], rs[:-1]))
    assert torch.allclose(fm, manual_fm) and fm > 0
    assert losses.feature_matching_loss(d_real, d_real) == 0
    fm.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    plain = N.MultiscaleDiscriminator(3, ndf=4, intermediate=False)
    assert torch.isfinite(losses.lsgan_g_loss(plain(fake)))
    with pytest.raises(ValueError, match=">= 2"):  # without intermediate features there is nothing to match
        losses.feature_matching_loss(plain(fake), plain(real))
