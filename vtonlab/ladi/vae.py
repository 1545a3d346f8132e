"""LaDI-VTON's latent space: a KL autoencoder configured like Stable Diffusion's, trained on SynthVTON persons.

Latent diffusion (Rombach et al., CVPR 2022, arXiv 2112.10752) does not denoise pixels: a KL-regularised
autoencoder maps a ``3 x H x W`` image to a ``4 x H/8 x W/8`` latent (downsampling factor f = 8), the
diffusion model works there, and the decoder maps its result back. LaDI-VTON (Morelli et al., ACM MM 2023,
arXiv 2305.13501) uses Stable Diffusion 2 inpainting's autoencoder unchanged. An f = 8 latent keeps the
layout and colours but loses high frequencies (faces, hands, printed text, logos), even *outside* the
inpainted region, which the try-on must keep exactly; EMASC (:mod:`vtonlab.ladi.emasc`) gives them back
through skip connections from the encoder of the masked image.

No Stable Diffusion weights can be downloaded here, so vtonlab trains a smaller autoencoder of the same
structure (diffusers' :class:`~diffusers.AutoencoderKL`, four ``DownEncoderBlock2D`` / ``UpDecoderBlock2D``)
on the profile's SynthVTON persons. When a real Stable Diffusion (inpainting) folder in the diffusers layout is
present locally, :func:`load_sd_vae` loads its VAE with the same code (``$VTONLAB_SD_PATH``).

The EMASC hooks: :func:`encode_with_features` returns the encoder's intermediate features in the official
code's order, ``[x, conv_in(x), input of down block 0, 1, 2, 3]`` (LaDI-VTON uses indices 1..5,
:data:`SKIP_LAYERS`), and :func:`decode_with_skips` adds skip features to the decoder: ``skips[i]`` to the
input of up block ``i`` and the last one after the decoder's final activation, as the official ``Decoder``
does. Both work through forward hooks on a stock ``AutoencoderKL``: diffusers' Encoder/Decoder code is
called, not copied.

Fidelity (Stable Diffusion 2 inpainting's VAE, as LaDI-VTON uses it / vtonlab; differences are
:class:`VAEConfig` options):

| point | Stable Diffusion 2 (LaDI-VTON) | vtonlab |
|---|---|---|
| structure | AutoencoderKL, 4 blocks, f = 8, 4 latent channels, mid-block attention | same (diffusers' class) |
| widths, layers per block, groups | 128-256-512-512, 2, 32 (``vae/config.json``) | gpu same; cpu 16-32-64-64, 1, 8; ci 16-32-32-32 |
| ``scaling_factor`` | 0.18215 (1 / std of SD's latents) | measured: 1 / std of our training latents |
| training loss | LDM: L1 + LPIPS + KL 1e-6 + GAN (LaDI-VTON: frozen) | L1 + VGG19 (``perceptual_weight``) + KL 1e-6 (a) |
| training data | LAION (frozen in LaDI-VTON) | the profile's SynthVTON training persons |
| skip features for EMASC | encoder features 1..5 (``models/vae.py``, ``train_emasc.py``) | same, through hooks |

(a) The recipe ``long`` (:data:`VARIANTS`, checkpoint ``ladi_vae_long``) drops the VGG19 term and trains five times
the steps (ci, cpu; gpu: the profile's 20,000): the 800-step cpu autoencoder washes out much of a garment's
chroma, which bounds the colour any latent try-on can reach (notebook 13, section 4); notebook 09 compares the two.
(b) The LaDI-VTON stack (EMASC, inpainting UNet, adapter, try-on UNets, pipeline) is trained on recipe ``long``
(:data:`STACK_RECIPE`, :func:`get_trained_stack`); ``ladi_vae`` (L1 + VGG19, the profile's steps) stays as the
faithful-loss comparison of notebook 09.

The perceptual term uses :class:`vtonlab.losses.VGGPerceptualLoss`: ImageNet VGG19 when its file is in the
torch cache, otherwise a fixed random VGG19 (the checkpoint's metrics name which).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "SD_VAE", "SKIP_LAYERS", "SD_PATH_ENV", "VAEConfig", "build_vae", "encode_with_features", "decode_with_skips",
    "skip_channels", "encode_latents", "decode_latents", "measure_scaling_factor", "vae_losses",
    "train", "get_trained", "get_trained_long", "VARIANTS", "variant_config", "STACK_RECIPE", "stack_config", "get_trained_stack",
    "load_sd_vae", "load", "checkpoint_name",
]

SD_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
              scaling_factor=0.18215)
"""Stable Diffusion 2 (inpainting)'s ``vae/config.json`` values that matter here."""

SKIP_LAYERS = (1, 2, 3, 4, 5)
"""Indices into :func:`encode_with_features`' list that LaDI-VTON's EMASC reads (``int_layers`` in train_emasc.py)."""

SD_PATH_ENV = "VTONLAB_SD_PATH"


@dataclass(frozen=True)
class VAEConfig:
    """A KL autoencoder and how it is trained; defaults are Stable Diffusion 2's structure (see the module docstring)."""

    block_out_channels: tuple[int, ...] = SD_VAE["block_out_channels"]
    layers_per_block: int = SD_VAE["layers_per_block"]
    latent_channels: int = SD_VAE["latent_channels"]
    norm_num_groups: int = SD_VAE["norm_num_groups"]
    image_size: tuple[int, int] = (256, 192)
    perceptual_weight: float = 1.0  # weight of the VGG19 perceptual term (LDM uses LPIPS with weight 1)
    kl_weight: float = 1e-6  # LDM's KL weight
    lr: float = 1e-4
    steps: int = 800
    batch_size: int = 8
    n_train: int = 600
    seed: int = 0

    def __post_init__(self) -> None:
        widths = tuple(int(c) for c in self.block_out_channels)
        if len(widths) != 4:
            raise ValueError(f"VAEConfig.block_out_channels: expected 4 widths (f = 8: three downsamplings), got {widths}")
        bad = [c for c in widths if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"VAEConfig.block_out_channels {widths}: every width must be a multiple of "
                             f"norm_num_groups={self.norm_num_groups} (GroupNorm); {bad} are not")
        h, w = (int(v) for v in self.image_size)
        if h % 8 or w % 8:
            raise ValueError(f"VAEConfig.image_size: height and width must be multiples of 8 (f = 8), got {h}x{w}")
        object.__setattr__(self, "block_out_channels", widths)
        object.__setattr__(self, "image_size", (h, w))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, **overrides) -> VAEConfig:
        """The course's autoencoder for a profile: Stable Diffusion's widths in gpu, narrower ones in cpu and ci."""
        prof = resolve_profile(profile)
        sizes = {"gpu": dict(block_out_channels=SD_VAE["block_out_channels"], layers_per_block=2, norm_num_groups=32),
                 "cpu": dict(block_out_channels=(16, 32, 64, 64), layers_per_block=1, norm_num_groups=8),
                 "ci": dict(block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8)}
        base = dict(image_size=tuple(prof.image_size), steps=prof.steps_for("vae"), batch_size=min(8, prof.batch_size),
                    n_train=prof.n_train, **sizes.get(prof.name, sizes["cpu"]))
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        d["image_size"] = list(self.image_size)
        return d

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.image_size[0] // 8, self.image_size[1] // 8


def build_vae(config: VAEConfig) -> nn.Module:
    """An untrained diffusers ``AutoencoderKL`` of ``config``'s structure (seeded by ``config.seed``)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(config.seed)
    n = len(config.block_out_channels)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
                         up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=config.block_out_channels,
                         layers_per_block=config.layers_per_block, latent_channels=config.latent_channels,
                         norm_num_groups=config.norm_num_groups, sample_size=config.image_size[0],
                         scaling_factor=SD_VAE["scaling_factor"])


# ----------------------------------------------------------------------------------------------
# Encoder features and decoder skips (forward hooks on a stock AutoencoderKL)
# ----------------------------------------------------------------------------------------------


def _check_images(x: Tensor, what: str = "images") -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{what}: expected (B, 3, H, W) in [-1, 1], got shape {tuple(x.shape)}")
    if x.shape[-2] % 8 or x.shape[-1] % 8:
        raise ValueError(f"{what}: height and width must be multiples of 8 (f = 8), got {tuple(x.shape[-2:])}")


def encode_with_features(vae: nn.Module, x: Tensor):
    """Encode images and collect the encoder's intermediate features, in the official LaDI-VTON order.

    Args:
        vae: a diffusers ``AutoencoderKL`` (four down blocks).
        x: ``(B, 3, H, W)`` in [-1, 1].
    Returns:
        ``(posterior, features)``: the diagonal Gaussian over latents, and the list
        ``[x, conv_in(x), input of down block 0, input of down block 1, input of down block 2, input of
        down block 3]`` (for Stable Diffusion: 3, 128, 128, 128, 256, 512 channels at H, H, H, H/2,
        H/4, H/8). Entries 1 and 2 are the same tensor, as in the official encoder.
    """
    _check_images(x)
    enc = vae.encoder
    feats: list[Tensor] = [x]
    handles = [enc.conv_in.register_forward_hook(lambda m, i, o: feats.append(o))]
    handles += [blk.register_forward_pre_hook(lambda m, args: feats.append(args[0])) for blk in enc.down_blocks]
    try:
        posterior = vae.encode(x).latent_dist
    finally:
        for h in handles:
            h.remove()
    return posterior, feats


def skip_channels(vae: nn.Module, layers: Sequence[int] = SKIP_LAYERS) -> tuple[list[int], list[int]]:
    """EMASC channel counts ``(in_channels, out_channels)`` for the encoder features ``layers``.

    ``in_channels[i]``: channels of encoder feature ``layers[i]``. ``out_channels[i]``: channels of the decoder
    point it is added to (the official pairing: feature 5 -> up block 0's input, 4 -> up block 1, 3 -> up
    block 2, 2 -> up block 3, 1 -> after the decoder's last activation). For Stable Diffusion this gives the
    official ``[128, 128, 128, 256, 512]`` and ``[128, 256, 512, 512, 512]``.
    """
    widths = list(vae.config.block_out_channels)
    if tuple(layers) != SKIP_LAYERS or len(widths) != 4:
        raise ValueError(f"skip_channels supports LaDI-VTON's layers {SKIP_LAYERS} on a 4-block autoencoder; "
                         f"got layers {tuple(layers)} and {len(widths)} blocks")
    enc_in = [widths[0], widths[0], widths[0], widths[1], widths[2]]
    dec_out = [widths[0], widths[1], widths[2], widths[3], widths[3]]
    return enc_in, dec_out


@contextlib.contextmanager
def _decoder_skips(vae: nn.Module, skips: Sequence[Tensor]) -> Iterator[None]:
    dec = vae.decoder
    n = len(dec.up_blocks)
    if len(skips) != n + 1:
        raise ValueError(f"decode_with_skips: expected {n + 1} skip features (one per up block, then one after the last "
                         f"activation), got {len(skips)}")

    def add_to_input(i):
        def hook(module, args):
            sample = args[0]
            if skips[i].shape != sample.shape:
                raise ValueError(f"skip feature {i}: expected shape {tuple(sample.shape)} (input of decoder up block {i}), "
                                 f"got {tuple(skips[i].shape)}")
            return (sample + skips[i],) + tuple(args[1:])
        return hook

    def add_after_act(module, args, out):
        if skips[n].shape != out.shape:
            raise ValueError(f"skip feature {n}: expected shape {tuple(out.shape)} (after the decoder's last activation), "
                             f"got {tuple(skips[n].shape)}")
        return out + skips[n]

    handles = [blk.register_forward_pre_hook(add_to_input(i)) for i, blk in enumerate(dec.up_blocks)]
    handles.append(dec.conv_act.register_forward_hook(add_after_act))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def decode_with_skips(vae: nn.Module, z: Tensor, skips: Sequence[Tensor] | None = None) -> Tensor:
    """Decode (unscaled) latents ``z`` ``(B, 4, h, w)`` to images ``(B, 3, 8h, 8w)``, adding EMASC skips if given.

    ``skips`` is what :class:`vtonlab.ladi.emasc.EMASC` returns: ``skips[i]`` is added to the input of decoder up
    block ``i``, the last one to the output of the decoder's final activation (before ``conv_out``), as the
    official decoder does. ``None`` or an empty list decodes plainly.
    """
    if z.ndim != 4 or z.shape[1] != vae.config.latent_channels:
        raise ValueError(f"latents: expected (B, {vae.config.latent_channels}, h, w), got shape {tuple(z.shape)}")
    if not skips:
        return vae.decode(z).sample
    with _decoder_skips(vae, skips):
        return vae.decode(z).sample


def encode_latents(vae: nn.Module, x: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """Images -> *scaled* latents ``z * scaling_factor`` (what a diffusion model sees): the posterior mean, or a sample."""
    _check_images(x)
    dist = vae.encode(x).latent_dist
    z = dist.sample(generator) if sample else dist.mode()
    return z * vae.config.scaling_factor


def decode_latents(vae: nn.Module, latents: Tensor, skips: Sequence[Tensor] | None = None) -> Tensor:
    """Scaled latents -> images in [-1, 1] (clamped), with optional EMASC skips."""
    return decode_with_skips(vae, latents / vae.config.scaling_factor, skips).clamp(-1, 1)


@torch.no_grad()
def measure_scaling_factor(vae: nn.Module, images: Tensor, batch_size: int = 32, seed: int = 0) -> float:
    """``1 / std`` of posterior samples of ``images`` (how Stable Diffusion's 0.18215 was obtained)."""
    g = torch.Generator().manual_seed(seed)
    zs = [vae.encode(b).latent_dist.sample(g) for b in images.split(batch_size)]
    return float(1.0 / torch.cat(zs).std())


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def vae_losses(vae: nn.Module, x: Tensor, config: VAEConfig, perceptual: nn.Module | None,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """``{"loss", "l1", "perceptual", "kl"}``: L1 + perceptual_weight * VGG + kl_weight * KL (mean over the batch)."""
    dist = vae.encode(x).latent_dist
    rec = vae.decode(dist.sample(generator)).sample
    l1 = F.l1_loss(rec, x)
    kl = dist.kl().mean()
    p = perceptual(rec, x) if perceptual is not None and config.perceptual_weight else torch.zeros((), device=x.device)
    loss = l1 + config.perceptual_weight * p + config.kl_weight * kl
    return {"loss": loss, "l1": l1.detach(), "perceptual": p.detach(), "kl": kl.detach()}


def train(config: VAEConfig, images: Tensor, *, progress: bool = True, profile: Profile | None = None):
    """Train an autoencoder on ``images`` ``(N, 3, H, W)`` in [-1, 1] with :class:`vtonlab.train.Trainer`.

    Returns ``(vae, history, perceptual_label)``; ``vae.config.scaling_factor`` is measured on ``images``.
    """
    from vtonlab.losses import VGGPerceptualLoss
    from vtonlab.train import Trainer

    if images.ndim != 4 or tuple(images.shape[-2:]) != config.image_size:
        raise ValueError(f"training images: expected (N, 3, {config.image_size[0]}, {config.image_size[1]}), "
                         f"got {tuple(images.shape)}")
    if len(images) < config.batch_size:
        raise ValueError(f"VAE training needs at least one batch of {config.batch_size} images, got {len(images)}")
    vae = build_vae(config)
    perceptual = VGGPerceptualLoss() if config.perceptual_weight else None
    opt = torch.optim.Adam(vae.parameters(), lr=config.lr)
    data = torch.utils.data.TensorDataset(images)

    def step(ctx, batch):
        if perceptual is not None:
            perceptual.to(ctx.device)  # a fixed feature extractor: not part of the training state
        losses = vae_losses(ctx.modules["vae"], batch[0], config, perceptual, ctx.generator)
        ctx.optimize(losses["loss"], "vae")
        return losses

    trainer = Trainer({"vae": vae}, {"vae": opt}, step, data, batch_size=config.batch_size, max_steps=config.steps,
                      seed=config.seed, progress=progress, desc="KL autoencoder", profile=profile)
    history = trainer.fit()
    vae = trainer.unwrapped()["vae"].cpu().eval()
    vae.register_to_config(scaling_factor=measure_scaling_factor(vae, images))
    label = perceptual.weights if perceptual is not None else "none"
    return vae, history, label


VARIANTS: dict[str, dict] = {
    "long": dict(perceptual_weight=0.0, steps_factor={"ci": 5, "cpu": 5, "gpu": 1}),
}
"""Named training recipes besides the profile's (``python -m vtonlab train ladi_vae_<name>``): VAEConfig overrides,
``steps_factor`` multiplying the profile's ``vae`` steps (a number, or one per profile name). ``long``: no perceptual
term (on cpu the random-trunk VGG19 is most of a step's cost; the manifests record the seconds) and five times the
steps on ci and cpu, for an autoencoder that keeps more of the garment's colour (notebook 09, section 3); the gpu
profile's 20,000 steps are already 25 times the cpu's, so it keeps them."""


def variant_config(profile: Profile | str | None, variant: str) -> VAEConfig:
    """The :class:`VAEConfig` of a named recipe of :data:`VARIANTS` for a profile."""
    if variant not in VARIANTS:
        raise ValueError(f"VAE variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
    prof = resolve_profile(profile)
    over = dict(VARIANTS[variant])
    factor = over.pop("steps_factor", 1)
    if isinstance(factor, dict):
        factor = factor.get(prof.name, 1)
    return VAEConfig.for_profile(prof, steps=int(factor * prof.steps_for("vae")), **over)


STACK_RECIPE: str | None = "long"
"""The recipe of :data:`VARIANTS` whose autoencoder the LaDI-VTON stack is trained on and decodes with (EMASC, the
inpainting UNet, the inversion adapter, the try-on UNets, :mod:`vtonlab.ladi.pipeline`); ``None``: the profile's
``ladi_vae``. Fidelity table row (b)."""


def stack_config(profile: Profile | str | None = None) -> VAEConfig:
    """The :class:`VAEConfig` of the autoencoder the LaDI-VTON stack uses (:data:`STACK_RECIPE`) for a profile."""
    prof = resolve_profile(profile)
    return variant_config(prof, STACK_RECIPE) if STACK_RECIPE else VAEConfig.for_profile(prof)


def checkpoint_name(config: VAEConfig, variant: str | None = None) -> str:
    """``ladi_vae``, plus ``_<variant>`` for a named recipe and ``_seed<N>`` unless seed 0."""
    name = "ladi_vae" if variant is None else f"ladi_vae_{variant}"
    return name if config.seed == 0 else f"{name}_seed{config.seed}"


def _training_images(prof: Profile, n: int) -> Tensor:
    from vtonlab.data import synthvton
    from vtonlab.data.preload import preload

    return preload(synthvton("train", prof), keys=("image",), limit=n).tensors["image"]


def get_trained(profile: Profile | str | None = None, *, force_train: bool = False, config: VAEConfig | None = None,
                variant: str | None = None, progress: bool = True, verbose: bool = True):
    """The profile's trained autoencoder, loaded when a matching checkpoint exists: ``(vae, checkpoint)``.

    ``python -m vtonlab train ladi_vae --profile P`` makes it. Metrics: reconstruction SSIM and LPIPS on the
    test split (overall, face, printed-text garments; :func:`vtonlab.ladi.emasc.reconstruction_metrics`), the
    measured ``scaling_factor`` and the perceptual loss's VGG weights. ``variant``: a named recipe of :data:`VARIANTS`
    (its own checkpoint, ``ladi_vae_<variant>``; ``config`` then must be None).
    """
    from vtonlab.checkpoints import load_or_train
    from vtonlab.data import synthvton_params

    prof = resolve_profile(profile)
    if variant is not None and config is not None:
        raise ValueError("get_trained: pass config or variant, not both")
    cfg = config if config is not None else variant_config(prof, variant) if variant else VAEConfig.for_profile(prof)
    if tuple(cfg.image_size) != tuple(prof.image_size):
        raise ValueError(f"VAEConfig.image_size {cfg.image_size} differs from profile {prof.name!r} image size "
                         f"{tuple(prof.image_size)}")

    def train_fn():
        from vtonlab.ladi.emasc import load_eval_data, reconstruction_metrics

        vae, history, label = train(cfg, _training_images(prof, cfg.n_train), progress=progress, profile=prof)
        metrics = reconstruction_metrics(vae, None, load_eval_data(prof))
        metrics.update(scaling_factor=float(vae.config.scaling_factor), perceptual_vgg=label)
        tensors = {f"vae.{k}": v for k, v in vae.state_dict().items()}
        tensors["scaling_factor"] = torch.tensor([vae.config.scaling_factor], dtype=torch.float64)
        return tensors, metrics, history

    full = {**cfg.to_dict(), "data": synthvton_params(prof)}
    ckpt = load_or_train(checkpoint_name(cfg, variant), full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    vae = build_vae(cfg)
    ckpt.load_into(vae, prefix="vae")
    vae.register_to_config(scaling_factor=float(ckpt.state_dict()["scaling_factor"][0]))
    return vae.eval().requires_grad_(False), ckpt


def get_trained_long(profile: Profile | str | None = None, *, force_train: bool = False, progress: bool = True,
                     verbose: bool = True):
    """The ``long`` recipe of :data:`VARIANTS` (``python -m vtonlab train ladi_vae_long --profile P``): ``(vae, checkpoint)``."""
    return get_trained(profile, force_train=force_train, variant="long", progress=progress, verbose=verbose)


def get_trained_stack(profile: Profile | str | None = None, *, force_train: bool = False, progress: bool = True,
                      verbose: bool = True):
    """The autoencoder of the LaDI-VTON stack (:data:`STACK_RECIPE`): ``(vae, checkpoint)``. Every LaDI-VTON module
    that needs an autoencoder and is not given one loads this."""
    return get_trained(profile, force_train=force_train, variant=STACK_RECIPE, progress=progress, verbose=verbose)


# ----------------------------------------------------------------------------------------------
# Official weights
# ----------------------------------------------------------------------------------------------


def load_sd_vae(path: str | os.PathLike | None = None) -> nn.Module:
    """The VAE of a Stable Diffusion (inpainting) folder in the diffusers layout (``<path>/vae/config.json`` +
    ``diffusion_pytorch_model.safetensors``); ``path`` defaults to ``$VTONLAB_SD_PATH``. Safetensors only."""
    from diffusers import AutoencoderKL

    raw = path if path is not None else os.environ.get(SD_PATH_ENV)
    if not raw:
        raise FileNotFoundError(f"no Stable Diffusion folder: pass path= or set {SD_PATH_ENV} to a diffusers-layout folder "
                                "(e.g. stabilityai/stable-diffusion-2-inpainting saved locally)")
    folder = Path(raw).expanduser() / "vae"
    config = folder / "config.json"
    weights = folder / "diffusion_pytorch_model.safetensors"
    for f, what in ((config, "the VAE config"), (weights, "the VAE weights in safetensors")):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: expected {what} of a diffusers-layout Stable Diffusion folder "
                                    f"(from {SD_PATH_ENV} or path=); .bin / pickle files are not loaded")
    vae = AutoencoderKL.from_pretrained(folder, use_safetensors=True)
    if len(vae.config.block_out_channels) != 4 or vae.config.latent_channels != 4:
        raise ValueError(f"{config}: expected a 4-block autoencoder with 4 latent channels (f = 8, as Stable Diffusion), "
                         f"got block_out_channels={list(vae.config.block_out_channels)}, "
                         f"latent_channels={vae.config.latent_channels}")
    return vae.eval().requires_grad_(False)


def load(profile: Profile | str | None = None) -> tuple[nn.Module, str]:
    """The autoencoder the course's LaDI-VTON stack uses: ``(vae, label)``; Stable Diffusion's when ``$VTONLAB_SD_PATH``
    is set, else the profile's trained one of :data:`STACK_RECIPE` (label ``"vtonlab <profile> (<checkpoint name>)"``)."""
    if os.environ.get(SD_PATH_ENV):
        return load_sd_vae(), f"Stable Diffusion ({os.environ[SD_PATH_ENV]})"
    prof = resolve_profile(profile)
    vae, ckpt = get_trained_stack(prof)
    return vae, f"vtonlab {prof.name} ({ckpt.name})"

