"""MG-VTON's networks: the ResNet-like generator and pix2pixHD's multi-scale PatchGAN discriminator.

MG-VTON (Dong et al., ICCV 2019, arXiv 1902.11026) builds every stage from one generator and one discriminator:

* **Generator** (:class:`ResnetGenerator`): "3 downsampling layers, 9 residual blocks, 3 upsampling layers", each
  convolution followed by BatchNorm and ReLU, with filters 64, 128, 256, 512 x 9, 256, 128, 64. That is
  pix2pixHD's ``GlobalGenerator`` with three downsamplings and BatchNorm; the kernels the paper does not give are
  taken from it::

      x -> [pad 3, conv 7x7, w] -> [conv 3x3 / 2, 2w] -> [4w] -> [8w] -> 9 x ResBlock(8w)
        -> [convT 3x3 x 2, 4w] -> [2w] -> [w] -> [pad 3, conv 7x7, out]     (each [ ] ends with norm + ReLU
                                                                             except the last)
      ResBlock(h) = h + (pad 1, conv 3x3, norm, ReLU, pad 1, conv 3x3, norm)(h)

* **Discriminator** (:class:`MultiscaleDiscriminator`): pix2pixHD's (Wang et al., CVPR 2018, Sec. 3.2) PatchGAN
  at ``num_D`` scales; scale ``k + 1`` sees the input average-pooled once more (3x3, stride 2). Each scale
  (:class:`NLayerDiscriminator`) is ``n_layers`` stride-2 4x4 convolutions, one stride-1 4x4 convolution (all
  with LeakyReLU 0.2, InstanceNorm after all but the first) and a stride-1 4x4 convolution to one channel: a
  grid of real/fake scores, one per overlapping patch.

Output format: ``D(x)`` is a list with one entry per scale (full resolution first), each the list of the
scale's ``n_layers + 2`` block outputs, intermediate features first, the prediction last, which is
:mod:`vtonlab.losses`' multi-scale convention: :func:`~vtonlab.losses.lsgan_d_loss`,
:func:`~vtonlab.losses.lsgan_g_loss` and :func:`~vtonlab.losses.feature_matching_loss` take it as it is.

Fidelity (paper: MG-VTON's text as summarised in the project's reference notes; official code: NVIDIA/pix2pixHD
at 14b3b3c: ``models/networks.py`` (N), ``options/base_options.py`` (B), ``options/train_options.py`` (T),
``models/pix2pixHD_model.py`` (M), ``train.py``, with line numbers; MG-VTON has no official code). Every
difference is an argument of the classes below and a named option of the stage configs:

| point | paper (MG-VTON) | official code (pix2pixHD) | vtonlab |
|---|---|---|---|
| G stages | 3 down, 9 res blocks, 3 up | ``GlobalGenerator``; 4 down, 9 blocks (B:47-48) | ``n_down=3``, ``n_blocks=9`` |
| G widths | 64, 128, 256, 512 x 9, 256, 128, 64 | ``ngf`` 64, x2 per down, /2 per up (B:46, N:192-206) | ``width=64`` |
| G norm | BatchNorm + ReLU | ``--norm instance`` by default (B:17), ReLU | ``norm="batch"`` |
| G first, last conv | not stated | reflection pad 3, 7x7 (N:190, N:207) | same |
| G downsampling | stride-2 convs | 3x3, stride 2, padding 1 (N:194) | same |
| G upsampling | "upsampling layers" | ``ConvTranspose2d`` 3x3 / 2, padding 1, output padding 1 (N:205) | same |
| residual block | residual blocks | (1) (N:214-253) | same |
| G output | parsing / image | ``Tanh`` (N:207) | ``out_activation="none"`` (logits) or ``"tanh"`` |
| weight init | not stated | conv N(0, 0.02); BN weight N(1, 0.02), bias 0 (N:10-16, 43, 53) | same (``init="pix2pixhd"``) |
| D kernel, padding | 4x4 convs | ``kw = 4``, ``padw = ceil(3 / 2) = 2`` (N:340-341) | same |
| D layers | "4 downsampling layers" | ``n_layers_D`` 3 (T:26): four 4x4 conv blocks, then the output conv (2) | ``n_layers=3`` (2) |
| D norm | InstanceNorm | ``InstanceNorm2d(affine=False)`` (N:22), none in block 1 (N:342) | same (``norm``) |
| D activation | LeakyReLU | ``LeakyReLU(0.2)`` (N:342-358) | same |
| D widths | not stated | ``ndf`` 64 (T:27), x2 per block, at most 512 (N:347, N:354) | ``ndf=64`` |
| D output | not stated | no sigmoid with LSGAN (``use_sigmoid = no_lsgan``, M:41, N:363) | no sigmoid |
| D scales | multi-scale | ``num_D`` 2 (T:25; the class default 3, N:294, is unused) | ``num_D=2`` |
| between scales | not stated | ``AvgPool2d(3, 2, padding=1, count_include_pad=False)`` (N:308) | same |
| D returns | not stated | per scale the ``n_layers + 2`` block outputs (3) | same; ``intermediate=False``: ``[[pred]]`` |
| scale order | - | full resolution first, run by D number ``num_D - 1 - i`` (N:323-328) | full resolution first, ``scales[0]`` |
| GAN loss | adversarial | LSGAN summed over scales (N:100-107); D: 0.5 (fake + real) (train.py:78) | :mod:`vtonlab.losses` LSGAN |
| feature matching | (Warp-GAN) | ``10 * 1/num_D * 4/(n_layers_D + 1) * L1`` (M:178-185) | ``losses.feature_matching_loss`` |
| optimiser | Adam, lr 2e-4, betas (0.5, 0.999) | the same (T:21-22, M:105, M:109) | in each stage's config |

Profiles change only widths and block counts (``width``, ``n_blocks``, ``ndf``; see each stage's table).

1. Reflection pad 1, conv 3x3, norm, ReLU, reflection pad 1, conv 3x3, norm; ``x + f(x)`` with no activation
   after the sum.
2. ``[conv / 2, LeakyReLU]``, ``n_layers - 1`` x ``[conv / 2, norm, LeakyReLU]``, ``[conv / 1, norm, LeakyReLU]``,
   ``[conv / 1 -> 1 channel]`` (N:342-361): four 4x4 convolution blocks, three of them strided. The paper follows
   pix2pixHD, so its "four downsampling layers" are read as these four blocks; a literal four stride-2 blocks is
   ``n_layers=4``.
3. ``getIntermFeat = not no_ganFeat_loss`` is on by default (M:45-46): ``singleD_forward`` returns every block's
   output, the prediction last (N:310-317, N:375-381).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "profile_sizes",
    "config_dict",
    "check_loss_weights",
    "shape_of",
    "NORMS",
    "norm_layer",
    "pix2pixhd_init",
    "ResnetBlock",
    "ResnetGenerator",
    "NLayerDiscriminator",
    "MultiscaleDiscriminator",
    "scale_downsample",
]

NORMS = ("batch", "instance")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """pix2pixHD's ``get_norm_layer``: ``"batch"`` -> ``BatchNorm2d(affine=True)``,
    ``"instance"`` -> ``InstanceNorm2d(affine=False)``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    raise ValueError(f"norm: expected one of {list(NORMS)}, got {kind!r}")


@torch.no_grad()
def pix2pixhd_init(module: nn.Module) -> None:
    """pix2pixHD's ``weights_init`` (apply with ``net.apply``): every ``Conv*`` weight ~ N(0, 0.02) (biases keep
    PyTorch's initialisation), every ``BatchNorm2d`` weight ~ N(1, 0.02) with bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        module.weight.normal_(0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        module.weight.normal_(1.0, 0.02)
        module.bias.zero_()


def _check_init(init: str) -> None:
    if init not in ("pix2pixhd", "default"):
        raise ValueError(f"init: expected 'pix2pixhd' (N(0, 0.02) convs) or 'default' (PyTorch's), got {init!r}")


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")


# ----------------------------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------------------------


class ResnetBlock(nn.Module):
    """pix2pixHD's residual block: ``x + (pad 1, conv 3x3, norm, ReLU, pad 1, conv 3x3, norm)(x)``, ``(B, C, H, W)``."""

    def __init__(self, channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """MG-VTON's ResNet-like generator (pix2pixHD ``GlobalGenerator`` layout): ``(B, in, H, W)`` -> ``(B, out, H, W)``.

    Args:
        in_channels, out_channels: input and output channels.
        width: channels after the first convolution (MG-VTON: 64); the widths are ``width * 2^i``.
        n_down: stride-2 convolutions, and as many transposed convolutions (MG-VTON: 3); ``H`` and ``W`` must be
            multiples of ``2^n_down``.
        n_blocks: residual blocks at ``width * 2^n_down`` channels (MG-VTON: 9).
        norm: ``"batch"`` (MG-VTON) or ``"instance"`` (pix2pixHD's default).
        out_activation: ``"none"`` (logits, e.g. a parsing) or ``"tanh"`` (an image in [-1, 1], pix2pixHD).
        init: ``"pix2pixhd"`` (N(0, 0.02) convolutions) or ``"default"``.

    Parts (for stages that work on the bottleneck): ``stem`` (7x7 conv), ``down`` (strided convs), ``blocks``,
    ``up`` (transposed convs), ``head`` (7x7 conv and activation); ``encode(x) = down(stem(x))``.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int = 64, n_down: int = 3, n_blocks: int = 9,
                 norm: str = "batch", out_activation: str = "none", init: str = "pix2pixhd") -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, out_channels=out_channels, width=width, n_down=n_down)
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 0:
            raise ValueError(f"n_blocks: expected an int >= 0, got {n_blocks!r}")
        if out_activation not in ("none", "tanh"):
            raise ValueError(f"out_activation: expected 'none' or 'tanh', got {out_activation!r}")
        _check_init(init)
        norm_layer(norm, 1)  # validates ``norm``
        self.in_channels, self.out_channels, self.width = in_channels, out_channels, width
        self.n_down, self.n_blocks, self.norm, self.out_activation = n_down, n_blocks, norm, out_activation
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, width, 7), norm_layer(norm, width),
                                  nn.ReLU(True))
        down: list[nn.Module] = []
        for i in range(n_down):
            c = width * 2**i
            down += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), norm_layer(norm, 2 * c), nn.ReLU(True)]
        self.down = nn.Sequential(*down)
        bottleneck = width * 2**n_down
        self.blocks = nn.Sequential(*[ResnetBlock(bottleneck, norm) for _ in range(n_blocks)])
        up: list[nn.Module] = []
        for i in range(n_down):
            c = width * 2 ** (n_down - i)
            up += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1), norm_layer(norm, c // 2),
                   nn.ReLU(True)]
        self.up = nn.Sequential(*up)
        head: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7)]
        if out_activation == "tanh":
            head.append(nn.Tanh())
        self.head = nn.Sequential(*head)
        if init == "pix2pixhd":
            self.apply(pix2pixhd_init)

    @property
    def multiple(self) -> int:
        """``H`` and ``W`` must be multiples of this (``2^n_down``)."""
        return 2**self.n_down

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"generator input: expected (B, {self.in_channels}, H, W), got {got}")
        h, w = x.shape[-2:]
        if h % self.multiple or w % self.multiple or min(h, w) < 4:
            raise ValueError(f"generator input: H and W must be multiples of {self.multiple} (2^n_down, n_down="
                             f"{self.n_down}) and at least 4, got {h}x{w}")

    def encode(self, x: Tensor) -> Tensor:
        """The features before the residual blocks: ``(B, width * 2^n_down, H / 2^n_down, W / 2^n_down)``."""
        self._check(x)
        return self.down(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.up(self.blocks(self.encode(x))))

    def extra_repr(self) -> str:
        return (f"in={self.in_channels}, out={self.out_channels}, width={self.width}, n_down={self.n_down}, "
                f"n_blocks={self.n_blocks}, norm={self.norm!r}, out_activation={self.out_activation!r}")


# ----------------------------------------------------------------------------------------------
# Discriminator
# ----------------------------------------------------------------------------------------------


class NLayerDiscriminator(nn.Module):
    """pix2pixHD's PatchGAN (``NLayerDiscriminator`` with ``getIntermFeat``): ``(B, C, H, W)`` -> list of block outputs.

    Blocks: ``[conv 4x4 / 2, LeakyReLU]``, ``n_layers - 1`` x ``[conv 4x4 / 2, norm, LeakyReLU]``,
    ``[conv 4x4 / 1, norm, LeakyReLU]``, ``[conv 4x4 / 1 -> 1 channel]``; padding 2 everywhere, widths
    ``ndf * 2^i`` capped at 512. ``forward`` returns the ``n_layers + 2`` block outputs, the prediction last.
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 init: str = "pix2pixhd") -> None:
        super().__init__()
        _check_positive(in_channels=in_channels, ndf=ndf, n_layers=n_layers)
        _check_init(init)
        norm_layer(norm, 1)
        self.in_channels, self.n_layers = in_channels, n_layers
        kw, padw = 4, 2  # official: kw = 4, padw = int(np.ceil((kw - 1.0) / 2))
        blocks = [nn.Sequential(nn.Conv2d(in_channels, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True))]
        nf = ndf
        for _ in range(1, n_layers):
            prev, nf = nf, min(nf * 2, 512)
            blocks.append(nn.Sequential(nn.Conv2d(prev, nf, kw, stride=2, padding=padw), norm_layer(norm, nf),
                                        nn.LeakyReLU(0.2, True)))
        prev, nf = nf, min(nf * 2, 512)
        blocks.append(nn.Sequential(nn.Conv2d(prev, nf, kw, stride=1, padding=padw), norm_layer(norm, nf),
                                    nn.LeakyReLU(0.2, True)))
        blocks.append(nn.Sequential(nn.Conv2d(nf, 1, kw, stride=1, padding=padw)))
        self.blocks = nn.ModuleList(blocks)
        if init == "pix2pixhd":
            self.apply(pix2pixhd_init)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out


def scale_downsample(x: Tensor) -> Tensor:
    """pix2pixHD's downsampling between discriminator scales: ``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``."""
    return nn.functional.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)


class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD's multi-scale discriminator: ``num_D`` :class:`NLayerDiscriminator` on ever coarser inputs.

    ``forward(x)`` with ``x`` ``(B, in_channels, H, W)`` returns ``[[f_1, ..., f_{n_layers+1}, prediction] per
    scale]``, full resolution first (``intermediate=False``: ``[[prediction]]`` per scale); the prediction of
    scale ``k`` is a ``(B, 1, h_k, w_k)`` grid of patch scores (no sigmoid: LSGAN).
    """

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3, num_D: int = 2, norm: str = "instance",
                 intermediate: bool = True, init: str = "pix2pixhd") -> None:
        super().__init__()
        _check_positive(num_D=num_D)
        self.in_channels, self.num_D, self.n_layers, self.intermediate = in_channels, num_D, n_layers, bool(intermediate)
        self.scales = nn.ModuleList([NLayerDiscriminator(in_channels, ndf, n_layers, norm, init) for _ in range(num_D)])

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"discriminator input: expected (B, {self.in_channels}, H, W), got {got}")
        out = []
        for k, d in enumerate(self.scales):
            if k:
                x = scale_downsample(x)
            feats = d(x)
            out.append(feats if self.intermediate else feats[-1:])
        return out


# ----------------------------------------------------------------------------------------------
# Shared by the stage configs and input checks
# ----------------------------------------------------------------------------------------------


def profile_sizes(profile_name: str, discriminator: bool = True, compact: bool = False) -> dict:
    """Network sizes, batch and precision of a stage per profile: the paper's networks (the configs' defaults) in gpu;
    ``width=32, n_blocks=4`` in cpu (``compact``: ``width=16, n_blocks=2``, for Warp-GAN and the render, whose
    ablation ships three seeds of two variants each: 3.5 MB a checkpoint instead of 22 MB), ``width=16, n_blocks=2``
    in ci, with ``ndf`` equal to ``width`` when the stage has a discriminator. The cpu profile trains at batch 8 with
    bf16 autocast (on a CPU with AVX512-BF16 the VGG19 of the perceptual losses runs about twice as fast: 2.5 s ->
    1.3 s per batch of 16 at 128x96, measured), gpu in bf16 too; ci keeps the profile's batch and float32."""
    if profile_name == "gpu":
        return {"precision": "bf16"}
    width, n_blocks = (32, 4) if profile_name == "cpu" and not compact else (16, 2)
    out = dict(width=width, n_blocks=n_blocks, **(dict(ndf=width) if discriminator else {}))
    if profile_name == "cpu":
        out.update(batch_size=8, precision="bf16")
    return out


PRECISIONS = {"fp32": "no", "bf16": "bf16"}
"""A stage config's ``precision`` -> the :class:`vtonlab.train.Trainer` ``mixed_precision`` it trains with."""


def check_precision(owner: str, precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"{owner}.precision: expected one of {list(PRECISIONS)}, got {precision!r}")


def config_dict(config) -> dict:
    """A stage config as JSON-ready values (``image_size`` and ``betas`` as lists): what its checkpoint records."""
    from vtonlab.checkpoints import config_dict as as_json

    return as_json(config)


def check_loss_weights(owner: str, weights: dict[str, float]) -> None:
    """Loss weights must be finite, >= 0 and not all 0; the error names ``owner`` (the config class) and the weights."""
    import math

    if any(not math.isfinite(v) or v < 0 for v in weights.values()) or not any(weights.values()):
        raise ValueError(f"{owner}: loss weights must be finite, >= 0 and not all 0, got {weights}")


def shape_of(x) -> object:
    """What an error message shows of an input: a tensor's shape, else the type's name."""
    return tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
