"""Training losses shared by the MG-VTON and LaDI-VTON models: VGG perceptual, adversarial, feature matching.

* :class:`VGGPerceptualLoss` — pix2pixHD's VGG loss (Wang et al. 2018, "High-Resolution Image
  Synthesis and Semantic Manipulation with Conditional GANs", Sec. 3.3), used by MG-VTON's Warp-GAN
  and refinement stages ("perceptual loss on 5 VGG19 layers") and by LaDI-VTON's EMASC training
  (L1 + 0.5 x VGG):

      L_VGG(x, y) = sum_{i=1..5} lambda_i || phi_i(x) - phi_i(y) ||_1,
      phi = VGG19 relu1_1, relu2_1, relu3_1, relu4_1, relu5_1,  lambda = 1/32, 1/16, 1/8, 1/4, 1.

  It needs ImageNet VGG19 weights; they are used when ``vgg19-dcbb9e9d.pth`` is in the torch cache
  (:mod:`vtonlab.metrics.weights`), otherwise the network is randomly initialised from a fixed
  seed, a warning says so and ``loss.weights`` / ``loss.official`` tell which is in use.
* Adversarial losses for the discriminator outputs of one or several scales: least squares
  (LSGAN, Mao et al. 2017, Eq. 9, with a = 0, b = c = 1, as in pix2pixHD) and hinge (Lim & Ye 2017;
  Miyato et al. 2018 Eq. 17 / SAGAN).
* :func:`feature_matching_loss` — pix2pixHD Eq. 4: L1 between the discriminator's intermediate
  features of real and generated images, every layer and scale.

Multi-scale convention (pix2pixHD): a discriminator output is a tensor, a list of tensors (one per
scale), or a list of lists (per scale, the intermediate features followed by the prediction; the
last element is used). Adversarial losses are *summed* over scales, as pix2pixHD does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vtonlab.metrics.weights import find_official, load_state_dict, missing_message, take_prefixed

# ImageNet statistics of torchvision's VGG19 (inputs in [0, 1] before this normalisation).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# VGG19 ("configuration E") convolution widths; "M" is a 2x2 max-pool.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# Indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in torchvision's vgg19().features.
VGG19_RELU_X_1 = (1, 6, 11, 20, 29)
PIX2PIXHD_VGG_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)


def vgg19_trunk() -> nn.Sequential:
    """VGG19 (Simonyan & Zisserman 2015, configuration E) ``features`` up to relu5_1 (30 layers).

    Layer indices equal torchvision's ``vgg19().features`` indices, so its state dict keys
    (``features.<i>.weight``) load directly.
    """
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers)


def imagenet_normalise(x: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) in [-1, 1] -> ImageNet-normalised input ((x + 1)/2 - mean) / std."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images (N, 3, H, W) in [-1, 1], got shape {tuple(x.shape)}")
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


class VGGPerceptualLoss(nn.Module):
    """pix2pixHD VGG19 loss between images (N, 3, H, W) in [-1, 1]; the target's features are detached.

    Args:
        weights: "auto" (ImageNet weights from the torch cache when present, else random with a
            warning), "imagenet" (FileNotFoundError when absent) or "random" (no warning).
        layer_weights: lambda_i for relu1_1..relu5_1.
        seed: seed of the random initialisation (He normal fan-out, as torchvision's VGG).

    Attributes: ``weights`` (a label of the weights in use), ``official`` (True only for verified
    ImageNet weights), ``source`` (the file, or None).
    """

    def __init__(self, weights: str = "auto", layer_weights: Sequence[float] = PIX2PIXHD_VGG_WEIGHTS,
                 seed: int = 0):
        super().__init__()
        if weights not in ("auto", "imagenet", "random"):
            raise ValueError(f"weights: expected 'auto', 'imagenet' or 'random', got {weights!r}")
        if len(layer_weights) != len(VGG19_RELU_X_1):
            raise ValueError(f"layer_weights: expected {len(VGG19_RELU_X_1)} values (relu1_1..relu5_1), "
                             f"got {len(layer_weights)}")
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.features = vgg19_trunk()
        local = find_official("vgg19") if weights != "random" else None
        if weights == "imagenet" and local is None:
            raise FileNotFoundError(missing_message("vgg19"))
        if local is not None:
            state = load_state_dict(local.path, what="VGG19 weights")
            keys = list(self.features.state_dict())
            own = take_prefixed(state, "features.", keys, path=local.path, what="VGG19 weights")
            bad = [k for k in keys if own[k].shape != self.features.state_dict()[k].shape]
            if bad:
                raise ValueError(f"VGG19 weights: {local.path} has wrong shapes for {bad[:3]} "
                                 "(expected torchvision vgg19, without batch norm)")
            self.features.load_state_dict(own)
            self.weights, self.official, self.source = local.label, local.verified, local.path
        else:
            g = torch.Generator().manual_seed(seed)
            for m in self.features:
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
                    nn.init.zeros_(m.bias)
            self.weights = f"random init (He normal, seed {seed}): NOT ImageNet VGG19"
            self.official, self.source = False, None
            if weights == "auto":
                warnings.warn(f"VGGPerceptualLoss uses a randomly initialised VGG19: {missing_message('vgg19')}",
                              UserWarning, stacklevel=2)
        self.features.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:  # the VGG is a fixed feature extractor
        return super().train(False)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """relu1_1..relu5_1 activations of images (N, 3, H, W) in [-1, 1]."""
        h = imagenet_normalise(x)
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in VGG19_RELU_X_1:
                out.append(h)
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss; gradients flow to ``pred`` only."""
        if pred.shape != target.shape:
            raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        fp = self.feature_maps(pred)
        with torch.no_grad():
            ft = self.feature_maps(target)
        return sum(w * F.l1_loss(a, b) for w, a, b in zip(self.layer_weights, fp, ft))

    def __repr__(self) -> str:
        return f"VGGPerceptualLoss(layers=relu1_1..relu5_1, lambdas={self.layer_weights}, weights={self.weights!r})"


# ---------------------------------------------------------------------------------------------
# Adversarial losses


def _predictions(d_out, name: str) -> list[torch.Tensor]:
    """Discriminator output (tensor | [tensor per scale] | [[features..., prediction] per scale]) -> predictions."""
    if isinstance(d_out, torch.Tensor):
        return [d_out]
    if isinstance(d_out, (list, tuple)) and d_out:
        preds = []
        for i, item in enumerate(d_out):
            if isinstance(item, (list, tuple)):
                if not item or not isinstance(item[-1], torch.Tensor):
                    raise TypeError(f"{name}[{i}]: expected a non-empty list of tensors (features..., prediction)")
                preds.append(item[-1])
            elif isinstance(item, torch.Tensor):
                preds.append(item)
            else:
                raise TypeError(f"{name}[{i}]: expected a tensor or a list of tensors, got {type(item).__name__}")
        return preds
    raise TypeError(f"{name}: expected a tensor, a list of tensors per scale, or a list of lists, "
                    f"got {type(d_out).__name__}")


def lsgan_d_loss(real_pred, fake_pred) -> torch.Tensor:
    """LSGAN discriminator loss (Mao et al. 2017, Eq. 9 with b = 1, a = 0; pix2pixHD's 0.5 factor):

    L_D = sum_scales 0.5 * (mean (D(x) - 1)^2 + mean D(G(z))^2). Pass ``fake_pred`` from detached fakes.
    """
    reals, fakes = _predictions(real_pred, "real_pred"), _predictions(fake_pred, "fake_pred")
    if len(reals) != len(fakes):
        raise ValueError(f"real_pred has {len(reals)} scales, fake_pred {len(fakes)}")
    return sum(0.5 * ((r - 1).pow(2).mean() + f.pow(2).mean()) for r, f in zip(reals, fakes))


def lsgan_g_loss(fake_pred) -> torch.Tensor:
    """LSGAN generator loss (Mao et al. 2017, Eq. 9 with c = 1): L_G = sum_scales mean (D(G(z)) - 1)^2."""
    return sum((f - 1).pow(2).mean() for f in _predictions(fake_pred, "fake_pred"))


def hinge_d_loss(real_pred, fake_pred) -> torch.Tensor:
    """Hinge discriminator loss (Lim & Ye 2017; SAGAN, Zhang et al. 2019, Eq. 5):

    L_D = sum_scales mean max(0, 1 - D(x)) + mean max(0, 1 + D(G(z))).
    """
    reals, fakes = _predictions(real_pred, "real_pred"), _predictions(fake_pred, "fake_pred")
    if len(reals) != len(fakes):
        raise ValueError(f"real_pred has {len(reals)} scales, fake_pred {len(fakes)}")
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(reals, fakes))


def hinge_g_loss(fake_pred) -> torch.Tensor:
    """Hinge generator loss (SAGAN, Eq. 5): L_G = - sum_scales mean D(G(z))."""
    return sum(-f.mean() for f in _predictions(fake_pred, "fake_pred"))


def feature_matching_loss(fake_features, real_features) -> torch.Tensor:
    """pix2pixHD feature matching (Wang et al. 2018, Eq. 4), as its code weights it:

    L_FM = sum_{k=1..K} 1/K sum_{j=1..T_k} 4/T_k || D_k^(j)(x) - D_k^(j)(G(s)) ||_1 (mean absolute error),

    over K discriminator scales and the T_k intermediate features of each (the final prediction,
    the last element of each list, is excluded). Real features are detached. Multiply by
    lambda_FM (10 in pix2pixHD) yourself.

    Args:
        fake_features, real_features: lists (per scale) of lists of tensors
            [feature_1, ..., feature_T, prediction], as returned by a multi-scale discriminator.
    """
    for name, feats in (("fake_features", fake_features), ("real_features", real_features)):
        if not isinstance(feats, (list, tuple)) or not feats or not all(isinstance(s, (list, tuple)) for s in feats):
            raise TypeError(f"{name}: expected a list (per scale) of lists of tensors (features..., prediction)")
    if len(fake_features) != len(real_features):
        raise ValueError(f"fake_features has {len(fake_features)} scales, real_features {len(real_features)}")
    k = len(fake_features)
    loss = fake_features[0][0].new_zeros(())
    for i, (fs, rs) in enumerate(zip(fake_features, real_features)):
        if len(fs) != len(rs) or len(fs) < 2:
            raise ValueError(f"scale {i}: fake and real must have the same number (>= 2) of outputs, "
                             f"got {len(fs)} and {len(rs)}")
        t = len(fs) - 1
        for j in range(t):
            if fs[j].shape != rs[j].shape:
                raise ValueError(f"scale {i}, layer {j}: shapes differ {tuple(fs[j].shape)} vs {tuple(rs[j].shape)}")
            loss = loss + (1 / k) * (4 / t) * F.l1_loss(fs[j], rs[j].detach())
    return loss
