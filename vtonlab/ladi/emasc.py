"""EMASC: LaDI-VTON's Enhanced Mask-Aware Skip Connections from the VAE encoder to its decoder.

The f = 8 autoencoder (:mod:`vtonlab.ladi.vae`) blurs everything it decodes, including the parts of the person
the try-on must keep: the face, the hands, the trousers, printed text. LaDI-VTON (Morelli et al., ACM MM 2023,
arXiv 2305.13501) encodes the *masked* person (the inpainting region greyed out), takes the encoder's
intermediate features at five points, passes each through a small adapter, multiplies it by ``1 - m`` (the
inpainting mask resized to its resolution, nearest neighbour) and adds it to the matching point of the decoder.
Only what lies outside the mask comes through; inside it the decoder works from the latent alone.

Adapters (``kind``): ``"nonlinear"`` (the paper's and the default: conv3x3 -> SiLU -> conv3x3 per skip) or
``"linear"`` (one conv3x3, zero-initialised, so decoding at initialisation is exactly the plain decoding).
``"none"`` in the ablation means no EMASC at all. Training: the VAE frozen, the latents from the full image's
posterior (a sample), the skips from the masked image; loss ``L1 + 0.5 * VGG`` against the full image.

Fidelity (paper / official code miccunifi/ladi-vton / vtonlab; differences are :class:`EMASCConfig` options):

| point | paper | official code | vtonlab |
|---|---|---|---|
| skip points | several resolutions | encoder features 1..5 -> up blocks 0..3 inputs + after last act. | same (``vae.SKIP_LAYERS``) |
| channels (SD) | - | in 128,128,128,256,512; out 128,256,512,512,512 | same rule, from the VAE's widths |
| adapter | conv - SiLU - conv | ``nonlinear``; ``linear``: one zero-initialised conv3x3 | same |
| nonlinear init | - | PyTorch default | same |
| masking | features x (1 - m) | after the adapter, mask resized with ``interpolate`` (nearest) | same |
| loss | L1 + VGG | L1 + 0.5 x VGG19 relu1_1..relu5_1, weights 1/32..1, inputs resized to 256 | same, no resize (``vgg_weight``) |
| optimiser | AdamW | AdamW lr 1e-5, betas (0.9, 0.999), wd 1e-2, eps 1e-8, clip 1.0 | same but lr 1e-4 (``lr``) |
| schedule | - | constant after 500 warmup steps | constant after ``warmup_steps`` (a tenth of the steps) |
| batch, seed | - | 16, seed 1234 | 8 on ci / cpu (``batch_size``), seeds 0, 1, 2 |

The 10x learning rate and the shorter warmup fit the few hundred steps a CPU can afford (the official run is
far longer); notebook 09 shows the loss curves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtonlab.ladi import vae as vae_mod
from vtonlab.ladi.vae import VAEConfig
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = [
    "KINDS", "ABLATION_KINDS", "ABLATION_SEEDS", "EMASC", "EMASCConfig", "mask_features", "emasc_skips",
    "reconstruct_with_emasc", "emasc_losses", "train", "load_eval_data", "reconstruction_metrics", "get_trained",
    "get_trained_ablation", "checkpoint_name",
]

KINDS = ("nonlinear", "linear")
ABLATION_KINDS = ("none", "linear", "nonlinear")
ABLATION_SEEDS = (0, 1, 2)
"""Training seeds of every trained EMASC row of notebook 09's ablation (mean and spread over them)."""


def mask_features(features: Sequence[Tensor], mask: Tensor) -> list[Tensor]:
    """Each feature ``(B, C, h, w)`` times ``1 - mask`` resized to ``h x w`` (nearest, as the official code)."""
    return [f * (1 - F.interpolate(mask.to(f.dtype), size=f.shape[-2:], mode="nearest")) for f in features]


class EMASC(nn.Module):
    """Enhanced mask-aware skip connections.

    Args:
        in_channels: channels of each encoder feature (``vae.skip_channels(vae)[0]``).
        out_channels: channels of the decoder point each one is added to (``vae.skip_channels(vae)[1]``).
        kind: ``"nonlinear"`` (conv3x3 - SiLU - conv3x3, the default) or ``"linear"`` (one conv3x3, zero init).

    ``forward(features, mask)``: ``features`` is the list of encoder features in encoder order (the entries
    :data:`vtonlab.ladi.vae.SKIP_LAYERS` of :func:`vtonlab.ladi.vae.encode_with_features`), ``mask`` the
    inpainting mask ``(B, 1, H, W)`` at the image resolution (1 = to be generated). Returns the processed,
    masked features in *reverse* order: the order :func:`vtonlab.ladi.vae.decode_with_skips` adds them.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], kind: str = "nonlinear",
                 kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"EMASC kind: expected one of {list(KINDS)}, got {kind!r}")
        if len(in_channels) != len(out_channels) or not in_channels:
            raise ValueError(f"EMASC: in_channels and out_channels need one entry per skip and the same length, got "
                             f"{list(in_channels)} and {list(out_channels)}")
        self.kind = kind
        self.in_channels = [int(c) for c in in_channels]
        self.out_channels = [int(c) for c in out_channels]
        if kind == "linear":
            self.conv = nn.ModuleList(nn.Conv2d(i, o, kernel_size, padding=padding) for i, o in zip(in_channels, out_channels))
            for conv in self.conv:
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        else:
            self.conv = nn.ModuleList(
                nn.Sequential(nn.Conv2d(i, i, kernel_size, padding=padding), nn.SiLU(inplace=True),
                              nn.Conv2d(i, o, kernel_size, padding=padding))
                for i, o in zip(in_channels, out_channels))

    def _check(self, features: Sequence[Tensor], mask: Tensor) -> None:
        n = len(self.in_channels)
        if len(features) != n:
            raise ValueError(f"EMASC: expected {n} encoder features (vae.SKIP_LAYERS of encode_with_features), "
                             f"got {len(features)}")
        for i, (f, c) in enumerate(zip(features, self.in_channels)):
            if f.ndim != 4 or f.shape[1] != c:
                raise ValueError(f"EMASC feature {i}: expected (B, {c}, h, w), got shape {tuple(f.shape)}")
        b, _, h, w = features[0].shape
        if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != b or tuple(mask.shape[-2:]) != (h, w):
            raise ValueError(f"EMASC mask: expected the inpainting mask at the image resolution, ({b}, 1, {h}, {w}), "
                             f"got shape {tuple(mask.shape)}")

    def forward(self, features: Sequence[Tensor], mask: Tensor) -> list[Tensor]:
        self._check(features, mask)
        processed = [conv(f) for conv, f in zip(self.conv, features)]
        return mask_features(processed, mask)[::-1]

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, in_channels={self.in_channels}, out_channels={self.out_channels}"


def build_emasc(vae: nn.Module, kind: str = "nonlinear") -> EMASC:
    """An EMASC sized for ``vae`` (channels from :func:`vtonlab.ladi.vae.skip_channels`)."""
    cin, cout = vae_mod.skip_channels(vae)
    return EMASC(cin, cout, kind)


def emasc_skips(vae: nn.Module, emasc: EMASC, masked_image: Tensor, mask: Tensor) -> list[Tensor]:
    """Skip features of the masked image ``(B, 3, H, W)`` for :func:`vtonlab.ladi.vae.decode_with_skips`."""
    _, feats = vae_mod.encode_with_features(vae, masked_image)
    return emasc([feats[i] for i in vae_mod.SKIP_LAYERS], mask)


@torch.no_grad()
def reconstruct_with_emasc(vae: nn.Module, emasc: EMASC | None, image: Tensor, masked_image: Tensor, mask: Tensor,
                           batch_size: int = 32) -> Tensor:
    """Encode ``image`` (posterior mean), decode with the EMASC skips of ``masked_image``; ``emasc=None``: plain."""
    out = []
    for i in range(0, len(image), batch_size):
        x, xm, m = image[i:i + batch_size], masked_image[i:i + batch_size], mask[i:i + batch_size]
        z = vae.encode(x).latent_dist.mode()
        skips = emasc_skips(vae, emasc, xm, m) if emasc is not None else None
        out.append(vae_mod.decode_with_skips(vae, z, skips).clamp(-1, 1))
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EMASCConfig:
    """An EMASC training run on a frozen VAE; the official settings except where the fidelity table says."""

    kind: str = "nonlinear"
    vae: VAEConfig = VAEConfig()
    vgg_weight: float = 0.5
    lr: float = 1e-4  # official 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_steps: int = 500
    steps: int = 300
    batch_size: int = 16
    n_train: int = 600
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"EMASCConfig.kind: expected one of {list(KINDS)}, got {self.kind!r}")
        if isinstance(self.vae, Mapping):
            object.__setattr__(self, "vae", VAEConfig(**self.vae))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    @classmethod
    def for_profile(cls, profile: Profile | str | None = None, kind: str = "nonlinear", **overrides) -> EMASCConfig:
        """Steps and data size from the profile; warmup a tenth of the steps; batch 8 on ci / cpu, 16 on gpu."""
        prof = resolve_profile(profile)
        steps = prof.steps_for("emasc")
        base = dict(kind=kind, vae=vae_mod.stack_config(prof), steps=steps, warmup_steps=max(1, steps // 10),
                    batch_size=16 if prof.name == "gpu" else min(8, prof.batch_size), n_train=prof.n_train)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["vae"] = self.vae.to_dict()
        d["betas"] = list(self.betas)
        return d


def emasc_losses(vae: nn.Module, emasc: EMASC, batch: Mapping[str, Tensor], config: EMASCConfig,
                 perceptual: nn.Module | None, generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """The official EMASC loss ``L1 + vgg_weight * VGG`` of the reconstruction against ``batch["image"]``."""
    image, masked, mask = batch["image"], batch["agnostic"], batch["inpaint_mask"]
    with torch.no_grad():
        z = vae.encode(image).latent_dist.sample(generator)
        _, feats = vae_mod.encode_with_features(vae, masked)
    skips = emasc([feats[i] for i in vae_mod.SKIP_LAYERS], mask)
    rec = vae_mod.decode_with_skips(vae, z, skips)
    l1 = F.l1_loss(rec, image)
    p = perceptual(rec, image) if perceptual is not None and config.vgg_weight else torch.zeros((), device=image.device)
    return {"loss": l1 + config.vgg_weight * p, "l1": l1.detach(), "vgg": p.detach()}


def train(config: EMASCConfig, vae: nn.Module, data, *, progress: bool = True, profile: Profile | None = None):
    """Train an EMASC on a frozen ``vae`` with :class:`vtonlab.train.Trainer`: ``(emasc, history, vgg_label)``.

    ``data``: a dataset of sample dicts with ``image``, ``agnostic`` (the masked person) and ``inpaint_mask``.
    """
    from vtonlab.losses import VGGPerceptualLoss
    from vtonlab.train import Trainer

    if len(data) < config.batch_size:
        raise ValueError(f"EMASC training needs at least one batch of {config.batch_size} samples, got {len(data)}")
    missing = [k for k in ("image", "agnostic", "inpaint_mask") if k not in data[0]]
    if missing:
        raise KeyError(f"EMASC training data lacks {', '.join(missing)} (needs image, agnostic, inpaint_mask)")
    vae = vae.eval().requires_grad_(False)
    torch.manual_seed(config.seed)
    emasc = build_emasc(vae, config.kind)
    perceptual = VGGPerceptualLoss() if config.vgg_weight else None
    opt = torch.optim.AdamW(emasc.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay,
                            eps=config.eps)
    warm = max(1, config.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))

    def step(ctx, batch):
        if perceptual is not None:
            perceptual.to(ctx.device)
        losses = emasc_losses(ctx.modules["vae"], ctx.modules["emasc"], batch, config, perceptual, ctx.generator)
        ctx.optimize(losses["loss"], "emasc")
        return losses

    trainer = Trainer({"emasc": emasc, "vae": vae}, {"emasc": opt}, step, data, schedulers={"emasc": sched},
                      batch_size=config.batch_size, max_steps=config.steps, seed=config.seed, grad_clip=config.grad_clip,
                      progress=progress, desc=f"EMASC {config.kind} seed {config.seed}", profile=profile)
    history = trainer.fit()
    return trainer.unwrapped()["emasc"].cpu().eval(), history, perceptual.weights if perceptual is not None else "none"


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------

EVAL_KEYS = ("image", "agnostic", "inpaint_mask", "parse", "worn_mask")


def load_eval_data(profile: Profile | str | None = None, split: str = "test") -> dict:
    """The split's tensors for reconstruction metrics (:data:`EVAL_KEYS`) plus ``pattern`` (the garment's print)."""
    from vtonlab.data import synthvton
    from vtonlab.data.preload import preload

    ds = synthvton(split, resolve_profile(profile))
    samples = [ds[i] for i in range(len(ds))]  # decoded once: the tensors and the garment attributes
    pre = preload(samples, keys=EVAL_KEYS)
    patterns = [str(s.get("attributes", {}).get("pattern", "")) for s in samples]
    return {**pre.tensors, "names": pre.names, "pattern": patterns}


def _region_ssim(ssim_map: Tensor, region: Tensor) -> Tensor:
    """Mean SSIM inside ``region`` (N, 1, H, W) per image (N,); NaN where the region is empty."""
    w = region.expand_as(ssim_map)
    return (ssim_map * w).flatten(1).sum(1) / w.flatten(1).sum(1)


def _pasted(pred: Tensor, target: Tensor, region: Tensor) -> Tensor:
    """``pred`` inside ``region``, ``target`` elsewhere: LPIPS of it against ``target`` sees only the region."""
    return pred * region + target * (1 - region)


def reconstruction_metrics(vae: nn.Module, emasc: EMASC | None, data: Mapping, *, lpips=None,
                           batch_size: int = 32) -> dict:
    """SSIM and LPIPS of reconstructions against the originals: overall, outside / inside the inpainting mask, on
    the face, and on printed-text garments (their worn region); and the colour of the worn garment.

    Region SSIM is the SSIM map averaged over the region; region LPIPS compares the original with the reconstruction
    pasted into it inside the region only. Returns floats ``ssim_<region>``, ``lpips_<region>`` (regions ``all``,
    ``outside``, ``inside``, ``face``, ``text``), ``n_text``, ``colour_garment`` (CIE76 Delta E of the worn
    garment's mean CIELAB colour, :func:`vtonlab.metrics.colour_error`), ``chroma_kept_garment`` (the reconstruction's
    garment chroma over the original's, :func:`vtonlab.metrics.chroma_ratio`) and ``lpips_extractor`` (the LPIPS
    weights' label).
    """
    from vtonlab.data.labels import CIHP
    from vtonlab.metrics import LPIPSMetric, chroma_ratio, colour_error, ssim_map

    lp = lpips if lpips is not None else LPIPSMetric()
    image = data["image"]
    rec = reconstruct_with_emasc(vae, emasc, image, data["agnostic"], data["inpaint_mask"], batch_size)
    x, y = (rec + 1) / 2, (image + 1) / 2
    smap = ssim_map(x, y)
    m = data["inpaint_mask"].float()
    face = (data["parse"] == CIHP["face"]).float()[:, None]
    text = torch.tensor([p == "text" for p in data["pattern"]])
    regions = {"all": torch.ones_like(m), "outside": 1 - m, "inside": m, "face": face,
               "text": data["worn_mask"].float() * text.view(-1, 1, 1, 1).float()}
    out: dict = {}
    for name, r in regions.items():
        keep = r.flatten(1).sum(1) > 0
        if not keep.any():
            out[f"ssim_{name}"] = out[f"lpips_{name}"] = float("nan")
            continue
        out[f"ssim_{name}"] = float(_region_ssim(smap[keep], r[keep]).mean())
        pred = x[keep] if name == "all" else _pasted(x[keep], y[keep], r[keep])
        out[f"lpips_{name}"] = float(lp(pred, y[keep]).mean())
    out["n_text"] = int(text.sum())
    garment = data["worn_mask"].float()
    out["colour_garment"] = float(colour_error(x, y, garment).nanmean())
    out["chroma_kept_garment"] = chroma_ratio(x, y, garment)
    out["lpips_extractor"] = f"{lp.name} ({lp.weights})"
    return out


# ----------------------------------------------------------------------------------------------
# Load or train
# ----------------------------------------------------------------------------------------------


def checkpoint_name(config: EMASCConfig) -> str:
    """``ladi_emasc_<kind>``, plus ``_seed<N>`` unless seed 0."""
    name = f"ladi_emasc_{config.kind}"
    return name if config.seed == 0 else f"{name}_seed{config.seed}"


def get_trained(profile: Profile | str | None = None, *, kind: str = "nonlinear", seed: int = 0, force_train: bool = False,
                config: EMASCConfig | None = None, vae=None, train_data=None, eval_data=None, progress: bool = True,
                verbose: bool = True):
    """A trained EMASC on the profile's trained VAE: ``(emasc, checkpoint)``.

    ``python -m vtonlab train ladi_emasc --profile P`` makes every ablation row (:func:`get_trained_ablation`).
    The checkpoint config holds the EMASC config (with the VAE's), the data key and the SHA-256 of the VAE weights
    it was trained on, so a retrained VAE never reuses an old EMASC. Metrics: :func:`reconstruction_metrics`.
    """
    from vtonlab.checkpoints import load_or_train
    from vtonlab.data import synthvton, synthvton_params
    from vtonlab.data.preload import preload

    prof = resolve_profile(profile)
    cfg = config if config is not None else EMASCConfig.for_profile(prof, kind, seed=seed)
    vae, vae_ckpt = vae if vae is not None else vae_mod.get_trained_stack(prof, verbose=verbose)

    def train_fn():
        tr = train_data if train_data is not None else preload(synthvton("train", prof), keys=("image", "agnostic", "inpaint_mask"),
                                                                limit=cfg.n_train)
        emasc, history, label = train(cfg, vae, tr, progress=progress, profile=prof)
        metrics = reconstruction_metrics(vae, emasc, eval_data if eval_data is not None else load_eval_data(prof))
        metrics["perceptual_vgg"] = label
        return {"emasc": emasc}, metrics, history

    full = {**cfg.to_dict(), "vae_sha256": vae_ckpt.manifest.get("sha256"), "data": synthvton_params(prof)}
    ckpt = load_or_train(checkpoint_name(cfg), full, train_fn, profile=prof, force_train=force_train, verbose=verbose)
    emasc = build_emasc(vae, cfg.kind)
    ckpt.load_into(emasc, prefix="emasc")
    return emasc.eval(), ckpt


def get_trained_ablation(profile: Profile | str | None = None, *, force_train: bool = False, progress: bool = True,
                         verbose: bool = True) -> dict[str, tuple[EMASC, object]]:
    """Every trained row of the EMASC ablation: ``{"<kind>" or "<kind>_seed<N>": (emasc, checkpoint)}`` for the kinds
    ``linear`` and ``nonlinear`` and :data:`ABLATION_SEEDS` (``python -m vtonlab train ladi_emasc``)."""
    from vtonlab.data import synthvton
    from vtonlab.data.preload import preload

    prof = resolve_profile(profile)
    vae = vae_mod.get_trained_stack(prof, verbose=verbose)
    n = EMASCConfig.for_profile(prof).n_train
    tr = preload(synthvton("train", prof), keys=("image", "agnostic", "inpaint_mask"), limit=n)
    ev = load_eval_data(prof)
    out = {}
    for kind in KINDS[::-1]:
        for seed in ABLATION_SEEDS:
            key = kind if seed == 0 else f"{kind}_seed{seed}"
            out[key] = get_trained(prof, kind=kind, seed=seed, force_train=force_train, vae=vae, train_data=tr, eval_data=ev,
                                   progress=progress, verbose=verbose)
    return out
