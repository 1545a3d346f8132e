"""LaDI-VTON's ablations on one test split, paired and unpaired, with SynthVTON's ground truth (notebook 13).

LaDI-VTON (Morelli et al., ACM MM 2023, arXiv 2305.13501) switches its pieces off one at a time; its evaluation code
has the switches EMASC none / linear / nonlinear, text none / noun chunks / inversion adapter, garment input none /
warped, the number of pseudo-words and pose on / off (``../shared/REFERENCE.md`` section 5). vtonlab measures each
row on the same held-out SynthVTON persons in two settings:

- **paired**: the person's own garment; the ground truth is the person image itself;
- **unpaired**: another test person's garment; SynthVTON renders the person wearing it
  (:func:`vtonlab.data.synthvton_unpaired`), so this setting has a ground truth too (VITON-HD has none).

Rows (:data:`ROWS`, each its differences from ``full``): ``full`` (31-channel try-on UNet, pseudo-words of the
inversion adapter, pose, warped garment, nonlinear EMASC at decoding, classifier-free guidance with the empty
prompt, zero pose and zero garment latent as the negative branch); the inference-time switches on that one trained
model: ``EMASC none`` / ``EMASC linear`` (the same sampled latents decoded without skips / with the linear EMASC),
``pose off`` (zero pose maps, as the official ``no_pose``), ``garment zeroed at sampling`` (a zero garment latent at
every step: what the trained UNet reads from that input; not a paper row); the switches that need their own training (variants of
:func:`vtonlab.ladi.tryon.get_trained`, :data:`VARIANTS`): ``text: none`` / ``text: caption`` (trained and sampled
with the empty prompt / SynthVTON's garment caption in place of the official noun chunks), ``garment input: none``
(27 channels), ``4 pseudo-words`` (an adapter pre-trained for 4 and a try-on UNet on it; the paper's 16 is
``full``); and, not paper rows, ``text: none, garment zeroed at sampling`` (the ``text: none`` UNet with a zero
garment latent at every step: against ``text: none``, what the garment input carries when no pseudo-words do) and
``base inpainting`` (the 9-channel model the try-on UNet starts from, with the empty prompt: no garment information
at all).

Every trained variant has :func:`ablation_seeds` training seeds (``python -m vtonlab train ladi_ablation`` trains
them; seed 0 of ``full`` is the main ``ladi_tryon`` checkpoint) and every row is sampled with
:data:`SAMPLE_SEEDS` (one generator per test person, so a result does not depend on the batch size). The base
inpainting model has one training run (``ladi_inpaint``): its spread is the sampling seeds' only.

Metrics (:func:`row_metrics`), each with the extractor that produced it: SSIM (whole image, [0, 1], as the
LaDI-VTON protocol's torchmetrics SSIM); LPIPS (:class:`vtonlab.metrics.LPIPSMetric`: ImageNet AlexNet when present,
else its random trunk, labelled ``LPIPS-randalex``); FID and KID against the setting's ground-truth images
(:func:`vtonlab.metrics.fid_features`: the official Inception when present, else a random conv net, labelled); and
two garment measures SynthVTON makes possible: LPIPS inside the ground truth's garment region (the ground truth
with the result pasted in that region only) and the colour error: CIE76 Delta E between the mean CIELAB colour of
the result and of the ground truth inside that region. Every row's try-on is a decoded latent:
:func:`autoencoder_floor` (the ground truth's own latent, decoded as the row decodes) scores what a row reaches when
its UNet gives exactly the latent it is trained to give, the floor the autoencoder sets under every latent row. A
row's value is the mean over sampling seeds and then over training seeds; its spread
(:meth:`LadiAblationResult.spread`) is the larger of max - min over training seeds and max - min over sampling seeds,
and :meth:`~vtonlab.mgvton.ablation.AblationResult.direction` counts a difference
only beyond the larger spread of the two rows.

What the paper says of each row (:data:`PAPER_CLAIMS`) comes from its text (abstract and method); its ablation
tables were not recovered here, so the notebook compares directions, not numbers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from vtonlab.metrics.colour import colour_error, mean_lab  # re-exported: notebook 13 reads them from here
from vtonlab.mgvton.ablation import AblationResult
from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = ["ABLATION_SEEDS", "SAMPLE_SEEDS", "FAMILY", "VARIANTS", "ROWS", "SETTINGS", "METRICS", "HIGHER_IS_BETTER",
           "PAPER_CLAIMS", "LadiAblationResult", "ablation_seeds", "get_variant", "get_trained_ablation", "test_set",
           "Components", "sample_row", "autoencoder_floor", "row_metrics", "mean_lab", "colour_error", "evaluate_ablation"]

ABLATION_SEEDS = (0, 1, 2)
"""Training seeds of every try-on variant (seed 0 of ``full`` = the main ``ladi_tryon`` checkpoint)."""

SAMPLE_SEEDS = (0, 1, 2)
"""Sampling seeds of every row (every profile)."""

FAMILY = "ladi_ablation"

VARIANTS: dict[str, dict] = {
    "full": {},
    "nogarment": {"garment_input": False},
    "notext": {"text_mode": "none"},
    "caption": {"text_mode": "caption"},
    "n4": {"num_pseudo_words": 4},
}
"""The try-on UNets the ablation trains: :func:`vtonlab.ladi.tryon.get_trained` arguments of each."""

ROWS: dict[str, dict] = {
    "full": {},
    "EMASC none": {"emasc": "none"},
    "EMASC linear": {"emasc": "linear"},
    "text: none": {"variant": "notext"},
    "text: caption": {"variant": "caption"},
    "garment input: none": {"variant": "nogarment"},
    "pose off": {"pose": False},
    "garment zeroed at sampling": {"garment": False},
    "text: none, garment zeroed at sampling": {"variant": "notext", "garment": False},
    "4 pseudo-words": {"variant": "n4"},
    "base inpainting": {"variant": "base"},
}
"""Each row as its differences from ``full`` (keys ``variant``: a :data:`VARIANTS` key or ``"base"``, ``emasc``:
``"nonlinear"`` / ``"linear"`` / ``"none"``, ``pose``, ``garment``: the garment latent given at sampling)."""

SETTINGS = ("paired", "unpaired")

METRICS = ("ssim", "lpips", "lpips_garment", "colour_error", "fid", "kid")
HIGHER_IS_BETTER = {"ssim": True, "lpips": False, "lpips_garment": False, "colour_error": False, "fid": False,
                    "kid": False}

PAPER_CLAIMS: dict[str, str] = {
    "EMASC none": "LaDI-VTON: EMASC restores the details the autoencoder loses outside the mask (faces, hands), "
                  "so full is better",
    "EMASC linear": "LaDI-VTON: proposes the nonlinear EMASC and keeps it in the final model",
    "text: none": "LaDI-VTON: the pseudo-words of the garment keep its texture and details, so full is better",
    "text: caption": "LaDI-VTON: pseudo-words describe the garment better than words (noun chunks), so full is better",
    "garment input: none": "LaDI-VTON: the warped garment conditions the generation, so full is better",
    "pose off": "LaDI-VTON: the pose maps condition the generation, so full is better",
    "garment zeroed at sampling": "not a paper row: the full UNet with a zero garment latent at every step (what it "
                                  "reads from the garment input)",
    "text: none, garment zeroed at sampling": "not a paper row: the UNet trained with the empty prompt, with a zero "
                                              "garment latent at every step (what the garment input carries when no "
                                              "pseudo-words do)",
    "4 pseudo-words": "LaDI-VTON: uses 16 pseudo-words in the final model",
    "base inpainting": "not a paper row: the model the try-on UNet starts from, with no garment information",
}
"""What the paper says of each row (its text; its ablation tables were not recovered here)."""


def ablation_seeds(profile: Profile | str | None = None) -> tuple[int, ...]:
    """Training seeds of a profile's ablation: :data:`ABLATION_SEEDS`, seed 0 alone in ci (the ci profile only checks
    that notebook 13 runs; its table is not read)."""
    return (0,) if resolve_profile(profile).name == "ci" else ABLATION_SEEDS


def _row_spec(row: str) -> dict:
    if row not in ROWS:
        raise KeyError(f"unknown ablation row {row!r}; expected one of {list(ROWS)}")
    return {"variant": "full", "emasc": "nonlinear", "pose": True, "garment": True, **ROWS[row]}


def _variant(name: str) -> dict:
    if name not in VARIANTS:
        raise KeyError(f"unknown try-on variant {name!r}; expected one of {list(VARIANTS)}")
    return VARIANTS[name]


# ----------------------------------------------------------------------------------------------
# Training the family
# ----------------------------------------------------------------------------------------------


def get_variant(profile: Profile | str | None = None, variant: str = "full", seed: int = 0, *, force_train: bool = False,
                progress: bool = True, verbose: bool = True, components: Mapping | None = None,
                data_cache: dict | None = None):
    """One trained try-on variant: ``(unet, checkpoint)`` (:func:`vtonlab.ladi.tryon.get_trained`); ``components``
    (``base``, ``vae``, ``clip``, ``tps``, ``refine``: ``(module, checkpoint)`` pairs) and ``data_cache`` are shared
    between the calls of a family."""
    from vtonlab.ladi import tryon

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    prof = resolve_profile(profile)
    kw = dict(components or {})
    return tryon.get_trained(prof, force_train=force_train, seed=seed, progress=progress, verbose=verbose,
                             data_cache=data_cache, **_variant(variant), **kw)


def _frozen_components(prof: Profile, verbose: bool) -> dict:
    from vtonlab.clip import get_trained as get_clip
    from vtonlab.ladi import inpaint, vae, warping

    clip = get_clip(prof)
    vae_pair = vae.get_trained_stack(prof, verbose=verbose)
    return {"clip": clip, "vae": vae_pair, "base": inpaint.get_trained(prof, vae=vae_pair, text_encoder=clip, verbose=verbose),
            "tps": warping.get_trained_tps(prof, verbose=verbose), "refine": warping.get_trained_refine(prof, verbose=verbose)}


def get_trained_ablation(profile: Profile | str | None = None, *, force_train: bool = False, progress: bool = True,
                         verbose: bool = True, variants: Sequence[str] | None = None,
                         seeds: Sequence[int] | None = None) -> dict[str, tuple]:
    """Every trained model the ablation needs besides the main checkpoints (``python -m vtonlab train ladi_ablation``):
    ``{key: (model, checkpoint)}``: the adapter of each pseudo-word count other than 16 (``adapter_n<N>``) and each
    try-on variant x :func:`ablation_seeds` (``<variant>[_seed<k>]``), seed 0 of every variant first. The frozen
    components are loaded once and each variant's prepared training data is computed once for all seeds.
    ``variants`` / ``seeds``: a subset (``--variants`` / ``--seeds`` of the train command; e.g. seed 0 alone to ship it).
    The adapter of a pseudo-word count comes with the variants that need it."""
    from vtonlab.ladi import adapter as adapter_mod

    prof = resolve_profile(profile)
    names = tuple(VARIANTS) if variants is None else tuple(variants)
    for v in names:
        _variant(v)
    comps = _frozen_components(prof, verbose)
    out: dict[str, tuple] = {}
    adapters: dict[int, tuple] = {}
    for v in names:
        n = VARIANTS[v].get("num_pseudo_words")
        if n is not None and n not in adapters:
            adapters[n] = adapter_mod.get_trained(prof, force_train=force_train, num_pseudo_words=n, inpaint=comps["base"],
                                                  vae=comps["vae"], clip=comps["clip"], progress=progress, verbose=verbose)
            out[f"adapter_n{n}"] = adapters[n]
    cache: dict = {}
    for seed in (ablation_seeds(prof) if seeds is None else tuple(seeds)):
        for v in names:
            if v == "full" and seed == 0:
                continue
            kw = dict(comps)
            n = VARIANTS[v].get("num_pseudo_words")
            if n is not None:
                kw["adapter"] = adapters[n]
            out[v + (f"_seed{seed}" if seed else "")] = get_variant(prof, v, seed, force_train=force_train, progress=progress,
                                                                    verbose=verbose, components=kw, data_cache=cache)
    return out


# ----------------------------------------------------------------------------------------------
# Test data
# ----------------------------------------------------------------------------------------------

TEST_KEYS = ("image", "inpaint_mask", "pose_map", "cloth", "cloth_mask", "agnostic", "gt_image", "gt_parse")


def test_set(profile: Profile | str | None = None, setting: str = "paired", limit: int | None = None, *,
             pose_style: str = "ladi") -> dict:
    """The profile's test persons of a setting as tensors (:data:`TEST_KEYS`) plus ``captions`` (of the garment
    tried on), ``names`` and ``setting``. ``paired``: the person's own garment, ground truth the person image;
    ``unpaired``: another test person's garment, ground truth SynthVTON's render of the person wearing it (rendered
    into the dataset folder on first use)."""
    from vtonlab.data import synthvton, synthvton_unpaired

    prof = resolve_profile(profile)
    if setting == "paired":
        data = synthvton("test", prof, pose_style=pose_style)
    elif setting == "unpaired":
        data = synthvton_unpaired(prof, pose_style=pose_style)
    else:
        raise ValueError(f"setting: expected one of {list(SETTINGS)}, got {setting!r}")
    n = len(data) if limit is None else min(int(limit), len(data))
    cols: dict[str, list] = {k: [] for k in TEST_KEYS}
    captions, names = [], []
    for i in range(n):
        item = data[i]
        for k in TEST_KEYS:
            src = {"gt_image": "image", "gt_parse": "parse"}.get(k, k) if setting == "paired" else k
            cols[k].append(torch.as_tensor(item[src]))
        captions.append(str(item.get("caption", "")))
        names.append(f"{item.get('im_name', i)}" + ("" if setting == "paired" else f" in {item.get('c_name', '?')}"))
    out: dict = {k: torch.stack(v) for k, v in cols.items()}
    out.update(captions=captions, names=names, setting=setting, profile=prof.name)
    return out


def add_warped_cloth(data: dict, tps, refine, batch_size: int = 32, warp: str | None = None) -> dict:
    """``data["warped_cloth"]``: the warp of every garment by the frozen warping stages (``warp``: ``"refined"`` or
    ``"tps"``; default the profile's :class:`vtonlab.ladi.tryon.TryOnConfig` ``garment_warp``), computed once."""
    from vtonlab.ladi.tryon import TryOnConfig, _warped_garment

    if warp is None:
        warp = TryOnConfig.for_profile(data.get("profile")).garment_warp
    if data.get("warp") not in (None, warp):
        raise ValueError(f"data already holds {data['warp']!r} warps; asked for {warp!r}")
    data["warp"] = warp
    if "warped_cloth" not in data:
        parts = []
        with torch.no_grad():
            for s in range(0, len(data["names"]), batch_size):
                batch = {k: data[k][s:s + batch_size] for k in ("cloth", "cloth_mask", "agnostic", "pose_map", "image",
                                                                "inpaint_mask")}
                parts.append(_warped_garment(batch, tps, refine, warp).cpu())
        data["warped_cloth"] = torch.cat(parts)
    return data


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


@dataclass
class Components:
    """The loaded models of a profile's ablation, each loaded (or trained) on first use and kept."""

    profile: Profile
    verbose: bool = False
    cache: dict = field(default_factory=dict)

    def _get(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def frozen(self) -> dict:
        return self._get("frozen", lambda: _frozen_components(self.profile, self.verbose))

    def emasc(self, kind: str):
        from vtonlab.ladi import emasc

        if kind == "none":
            return None
        return self._get(("emasc", kind), lambda: emasc.get_trained(self.profile, kind=kind, vae=self.frozen()["vae"],
                                                                     verbose=self.verbose)[0])

    def adapter(self, n: int):
        from vtonlab.ladi import adapter as adapter_mod

        f = self.frozen()
        return self._get(("adapter", n), lambda: adapter_mod.get_trained(
            self.profile, num_pseudo_words=n, inpaint=f["base"], vae=f["vae"], clip=f["clip"], verbose=self.verbose))

    def unet(self, variant: str, seed: int):
        if variant == "base":
            return self.frozen()["base"][0]

        def make():
            kw = dict(self.frozen())
            n = VARIANTS[variant].get("num_pseudo_words")
            if n is not None:
                kw["adapter"] = self.adapter(n)
            return get_variant(self.profile, variant, seed, verbose=self.verbose, components=kw)[0]

        return self._get(("unet", variant, seed), make)

    def pipeline(self, variant: str, seed: int, emasc: str = "nonlinear"):
        """The :class:`~vtonlab.ladi.pipeline.LadiVTONPipeline` of a variant (``"base"``: the inpainting UNet)."""
        from vtonlab.ladi.adapter import NUM_PSEUDO_WORDS
        from vtonlab.ladi.pipeline import LadiVTONPipeline

        text = "none" if variant == "base" else VARIANTS[variant].get("text_mode", "inversion")
        adapter = None
        if text == "inversion":
            adapter = self.adapter(VARIANTS[variant].get("num_pseudo_words", NUM_PSEUDO_WORDS))[0]
        f = self.frozen()
        pipe = LadiVTONPipeline.from_components(f["vae"][0], self.unet(variant, seed), f["clip"][0], adapter=adapter,
                                                emasc=self.emasc(emasc), default_inference_steps=self.profile.sampling_steps,
                                                label=f"vtonlab {self.profile.name} {variant} seed {seed}")
        pipe.set_progress_bar_config(disable=True)
        return pipe


def _text_mode(variant: str) -> str:
    return "none" if variant == "base" else VARIANTS[variant].get("text_mode", "inversion")


def sample_row(comps: Components, data: Mapping, row: str, train_seed: int = 0, sample_seed: int = 0, *,
               batch_size: int = 32, guidance_scale: float | None = None, emasc_kinds: Sequence[str] | None = None,
               num_inference_steps: int | None = None) -> dict[str, Tensor]:
    """Try-ons ``(N, 3, H, W)`` in [0, 1] of a row on a :func:`test_set` (with ``warped_cloth``): ``{emasc kind:
    images}`` for the row's EMASC kind, or for each of ``emasc_kinds`` (the same sampled latents decoded each way).
    Person ``i`` draws its noise from ``torch.Generator().manual_seed(sample_seed * 100_003 + i)``."""
    spec = _row_spec(row)
    variant = spec["variant"]
    kinds = (spec["emasc"],) if emasc_kinds is None else tuple(emasc_kinds)
    pipes = {k: comps.pipeline(variant, train_seed, k) for k in kinds}
    pipe = pipes[kinds[0]]
    text = _text_mode(variant)
    reads_garment = pipe.unet_channels == 31
    reads_pose = pipe.unet_channels != 9
    out: dict[str, list[Tensor]] = {k: [] for k in kinds}
    n = len(data["names"])
    for s in range(0, n, batch_size):
        sl = slice(s, min(n, s + batch_size))
        gens = [torch.Generator().manual_seed(sample_seed * 100_003 + i) for i in range(sl.start, sl.stop)]
        kw = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, generator=gens, text_mode=text,
                  output_type="latent")
        if reads_pose:
            kw.update(pose_map=data["pose_map"][sl], use_pose=spec["pose"])
        if reads_garment:
            kw["warped_cloth"] = data["warped_cloth"][sl]
            if not spec["garment"]:
                kw["cloth_cond_rate"] = 0.0  # the garment latent is zero at every step
        if text == "inversion":
            kw["cloth"] = data["cloth"][sl]
        elif text == "caption":
            kw["captions"] = data["captions"][sl]
        latents = pipe(data["image"][sl], data["inpaint_mask"][sl], **kw).images
        for k, p in pipes.items():
            out[k].append(p.decode(latents, data["image"][sl], data["inpaint_mask"][sl], emasc=k != "none").float().cpu())
    return {k: torch.cat(v).clamp(0, 1) for k, v in out.items()}


@torch.no_grad()
def autoencoder_floor(comps: Components, data: Mapping, *, emasc: str = "nonlinear", batch_size: int = 32) -> Tensor:
    """The ground truth of a :func:`test_set` ``(N, 3, H, W)`` in [0, 1] after the autoencoder: its own latent (the
    posterior mode, scaled) decoded as a row decodes (``emasc``: the kind of the row; ``"nonlinear"`` for ``full``,
    with the person image and inpainting mask as skips). A latent row can at best produce the ground truth's latent,
    so :func:`row_metrics` of these images bound what any row reaches with this autoencoder; the warped garment, an
    image, has no such bound."""
    from vtonlab.ladi.vae import encode_latents

    pipe = comps.pipeline("base", 0, emasc)  # only its autoencoder and EMASC are used
    vae = comps.frozen()["vae"][0]
    out = []
    n = len(data["names"])
    for s in range(0, n, batch_size):
        sl = slice(s, min(n, s + batch_size))
        z = encode_latents(vae, data["gt_image"][sl].to(vae.dtype))
        out.append(pipe.decode(z, data["image"][sl], data["inpaint_mask"][sl], emasc=emasc != "none").float().cpu())
    return torch.cat(out).clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


def row_metrics(pred: Tensor, data: Mapping, *, lpips=None, distribution=None) -> dict:
    """The metrics of try-ons ``pred`` ``(N, 3, H, W)`` in [0, 1] against the ground truth of ``data`` (a
    :func:`test_set`): floats ``ssim``, ``lpips``, ``lpips_garment``, ``colour_error``, ``fid``, ``kid`` (None without
    ``distribution``) and the per-person tensors ``per_pair_lpips_garment``, ``per_pair_colour_error``."""
    from vtonlab.data.representation import worn_mask
    from vtonlab.metrics import LPIPSMetric, ssim_map

    lp = lpips if lpips is not None else LPIPSMetric()
    gt = ((data["gt_image"].float() + 1) / 2).clamp(0, 1)
    pred = pred.float().clamp(0, 1)
    region = worn_mask(data["gt_parse"]).float()
    per_ssim = ssim_map(pred, gt).flatten(1).mean(1)
    per_lpips = lp(pred, gt)
    per_lpips_g = lp(pred * region + gt * (1 - region), gt)
    per_colour = colour_error(pred, gt, region)
    out = {"ssim": per_ssim.mean().item(), "lpips": per_lpips.mean().item(), "lpips_garment": per_lpips_g.mean().item(),
           "colour_error": per_colour.nanmean().item(), "fid": None, "kid": None,
           "per_pair_lpips_garment": per_lpips_g, "per_pair_colour_error": per_colour}
    if distribution is not None:
        fid, kid = distribution.score(pred)[:2]
        out["fid"], out["kid"] = float(fid.value), float(kid.value)
    return out


@dataclass
class LadiAblationResult(AblationResult):
    """:class:`~vtonlab.mgvton.ablation.AblationResult` with sampling seeds: ``runs[(setting, row, train_seed)]`` holds
    each metric's mean over :attr:`sample_seeds` and ``samples[(setting, row, train_seed, sample_seed)]`` the single
    runs; :meth:`spread` is the larger of max - min over training seeds and over sampling seeds. ``seconds_per_image``:
    sampling seconds per try-on of each sampled row (the profile's DDIM steps, guidance on, batch
    ``eval_batch_size``)."""

    sample_seeds: tuple[int, ...] = SAMPLE_SEEDS
    samples: dict = field(default_factory=dict)
    seconds_per_image: dict = field(default_factory=dict)

    def sampling_spread(self, setting: str, row: str, metric: str) -> float:
        """The largest max - min over sampling seeds of any training seed of the row."""
        best = 0.0
        for t in self.seeds:
            v = [self.samples[(setting, row, t, s)][metric] for s in self.sample_seeds
                 if (setting, row, t, s) in self.samples and self.samples[(setting, row, t, s)][metric] is not None]
            if v:
                best = max(best, max(v) - min(v))
        return best

    def training_spread(self, setting: str, row: str, metric: str) -> float:
        return super().spread(setting, row, metric)

    def spread(self, setting: str, row: str, metric: str) -> float:
        return max(self.training_spread(setting, row, metric), self.sampling_spread(setting, row, metric))

    def per_pair(self, setting: str, row: str, metric: str) -> Tensor:
        """The per-person values of ``per_pair_<metric>`` averaged over every run of the row."""
        runs = [v[f"per_pair_{metric}"] for (st, r, _, _), v in self.samples.items() if st == setting and r == row]
        return torch.stack(runs).mean(0)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out.update(sample_seeds=list(self.sample_seeds), seconds_per_image=dict(self.seconds_per_image))
        return out


def evaluate_ablation(profile: Profile | str | None = None, *, settings: Sequence[str] = SETTINGS,
                      rows: Sequence[str] = tuple(ROWS), seeds: Sequence[int] | None = None,
                      sample_seeds: Sequence[int] = SAMPLE_SEEDS, lpips=None, features=None, limit: int | None = None,
                      keep_outputs: bool = False, components: Components | None = None,
                      progress: bool = True) -> LadiAblationResult:
    """Every row x training seed (default :func:`ablation_seeds`; one for ``base inpainting``) x sampling seed x
    setting on the profile's test persons, with the metrics of :func:`row_metrics`. Models are loaded (or trained
    when their checkpoint is missing: ``python -m vtonlab train ladi_ablation`` trains the family ahead). The rows that
    differ only in EMASC decode the same sampled latents."""
    from vtonlab.metrics import LPIPSMetric, fid_features
    from vtonlab.metrics.distribution import DistributionMetrics
    from vtonlab.progress import progress_bar

    prof = resolve_profile(profile)
    seeds = ablation_seeds(prof) if seeds is None else tuple(seeds)
    rows = tuple(rows)
    for row in rows:
        _row_spec(row)
    comps = components if components is not None else Components(prof)
    lp = lpips if lpips is not None else LPIPSMetric()
    feats = features if features is not None else fid_features("auto")
    res = LadiAblationResult(tuple(seeds), rows, tuple(settings), {}, metrics=METRICS,
                             higher_is_better=dict(HIGHER_IS_BETTER), sample_seeds=tuple(sample_seeds))
    res.extractors = {"lpips": f"{lp.name} ({lp.weights})", "fid_kid": f"{feats.extractor} ({feats.weights})",
                      "ssim": "SSIM (Wang et al. 2004), Gaussian window 11, sigma 1.5, images in [0, 1]",
                      "colour_error": "CIE76 Delta E of the mean CIELAB colour in the ground truth's garment region"}
    if getattr(feats, "reason", ""):
        res.notes.append(f"FID/KID features: {feats.reason}")
    # groups of rows that share the sampled latents: (variant, pose) -> {emasc kind: row}
    groups: dict[tuple, dict[str, str]] = {}
    for row in rows:
        spec = _row_spec(row)
        groups.setdefault((spec["variant"], spec["pose"], spec["garment"]), {})[spec["emasc"]] = row
    jobs = [(g, t) for g in groups for t in ((0,) if g[0] == "base" else seeds)]
    total = len(settings) * len(jobs) * len(sample_seeds)
    with progress_bar(total=total, desc="LaDI-VTON ablation", unit="run", disable=not progress) as bar:
        for setting in settings:
            data = add_warped_cloth(test_set(prof, setting, limit), *(comps.frozen()[k][0] for k in ("tps", "refine")),
                                    batch_size=prof.eval_batch_size)
            n = len(data["names"])
            res.n_pairs[setting] = n
            dist = DistributionMetrics(feats, kid_subsets=50, kid_subset_size=max(2, n // 2))
            dist.set_reference(((data["gt_image"] + 1) / 2).clamp(0, 1))
            for (variant, _pose, _garment), by_kind in groups.items():
                for t in ((0,) if variant == "base" else seeds):
                    for s in sample_seeds:
                        first_row = next(iter(by_kind.values()))
                        start = time.perf_counter()
                        images = sample_row(comps, data, first_row, t, s, batch_size=prof.eval_batch_size,
                                            emasc_kinds=tuple(by_kind))
                        res.seconds_per_image.setdefault(first_row, (time.perf_counter() - start) / n)
                        for kind, row in by_kind.items():
                            m = row_metrics(images[kind], data, lpips=lp, distribution=dist)
                            res.samples[(setting, row, t, s)] = m
                            if keep_outputs:
                                res.outputs[(setting, row, t, s)] = images[kind]
                        bar.update(1)
                    for row in by_kind.values():
                        runs = [res.samples[(setting, row, t, s)] for s in sample_seeds]
                        res.runs[(setting, row, t)] = {
                            m: (sum(r[m] for r in runs) / len(runs) if runs[0][m] is not None else None) for m in METRICS}
    return res
