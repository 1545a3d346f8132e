"""MG-VTON's ablations on one test split, paired and unpaired, with SynthVTON's ground truth (notebook 08).

MG-VTON (Dong et al., ICCV 2019, arXiv 1902.11026, Sec. 4) ablates its pipeline by removing one piece at a time.
vtonlab measures each row on the same held-out multi-pose pairs, in two settings:

- **paired**: source person in pose A, the same garment, target pose B; the ground truth is the person in pose B
  (:func:`vtonlab.mgvton.parsing.multipose_pairs`, ``"test"``);
- **unpaired**: the same, but the garment of another test group; SynthVTON renders the person in pose B wearing it,
  so this setting has a ground truth too (:func:`vtonlab.data.synthvton_unpaired`, ``multipose=True``), which MPV
  does not have.

Rows (:data:`ROWS`): ``full``; ``w/o Render`` (the coarse image, ``use_render=False``); ``w/o Mask`` (a render
trained with ``RefineConfig.composition=False``: the network outputs the image directly); ``w/o feature warping``
(a Warp-GAN trained with ``feature_warping=False``); ``CP-VTON GMM`` (CP-VTON's matcher in place of GML);
``ground-truth parsing`` (the target's true parsing in place of the predicted one: what parsing errors cost; not in
the paper). The rows that need their own training (w/o Mask, w/o feature warping) are trained as their own
checkpoints, and every Warp-GAN and render variant with :data:`ABLATION_SEEDS`: ``python -m vtonlab train
mgvton-ablation`` makes the family (checkpoints ``mgvton-ablation_<stage>[_<variant>][_seed<N>]``; seed 0 of the
full stages is the main checkpoint of :func:`vtonlab.mgvton.load`). The parsing stage and the matchers are the
main checkpoints in every row (one training seed).

Metrics (:func:`row_metrics`), each with the extractor that produced it: SSIM (torchmetrics, images in [0, 1]);
LPIPS (:class:`vtonlab.metrics.LPIPSMetric`: ImageNet AlexNet when present, else its random trunk, labelled
``LPIPS-randalex``); SSIM and LPIPS inside the ground truth's garment region (SSIM map averaged over the region;
LPIPS of the ground truth with the result pasted into it inside the region only); FID and KID
(:func:`vtonlab.metrics.fid_features`: the official Inception when present, else a random conv net, labelled);
parsing mIoU and per-class IoU of the parsing each row used. IS needs the official Inception classifier's logits;
without the file it is left out and :attr:`AblationResult.notes` says why.

The paper's claims (:data:`PAPER_CLAIMS`) are compared with the measured direction in notebook 08.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from vtonlab.profiles import Profile
from vtonlab.profiles import resolve as resolve_profile

__all__ = ["ABLATION_SEEDS", "FAMILY", "METRICS", "PAPER_CLAIMS", "ROWS", "SETTINGS", "STAGE_VARIANTS",
           "AblationResult", "ablation_seeds", "checkpoint_key", "evaluate_ablation", "get_stage",
           "get_trained_ablation", "pipeline_for", "row_metrics", "run_pipeline", "test_set"]

ABLATION_SEEDS = (0, 1, 2)
"""Training seeds of every Warp-GAN and render variant (seed 0 of the full stages = the main checkpoints)."""


def ablation_seeds(profile: Profile | str | None = None) -> tuple[int, ...]:
    """The training seeds of a profile's ablation: :data:`ABLATION_SEEDS`, except seed 0 alone in ci (the ci profile
    only checks that notebook 08 runs; its table is not read)."""
    return (0,) if resolve_profile(profile).name == "ci" else ABLATION_SEEDS
FAMILY = "mgvton-ablation"
STAGE_VARIANTS: dict[str, dict[str, dict]] = {
    "warpgan": {"full": {}, "nofw": {"feature_warping": False}},
    "refine": {"full": {}, "nomask": {"composition": False}},
}
"""Config overrides of each trained variant of a stage."""
ROWS: dict[str, dict] = {
    "full": {},
    "w/o Render": {"render": False},
    "w/o Mask": {"refine": "nomask"},
    "w/o feature warping": {"warpgan": "nofw"},
    "CP-VTON GMM": {"gmm": "cpvton"},
    "ground-truth parsing": {"parsing": "gt"},
}
"""Each ablation row as its differences from ``full`` (keys ``warpgan``, ``refine``, ``gmm``, ``parsing``, ``render``)."""
SETTINGS = ("paired", "unpaired")
PAPER_CLAIMS: dict[str, str] = {
    "w/o Render": "MG-VTON: the best SSIM of all rows, but visibly worse (blurry garment texture)",
    "w/o Mask": "MG-VTON: the best IS, but visibly worse",
    "w/o feature warping": "MG-VTON: worse than full (misaligned person details in the new pose)",
    "CP-VTON GMM": "MG-VTON: GML warps better than CP-VTON's GMM, so full is better",
}
"""What the paper says of each row (as summarised in the project's reference notes); not every row is in the paper."""
METRICS = ("ssim", "lpips", "ssim_garment", "lpips_garment", "fid", "kid", "miou")
HIGHER_IS_BETTER = {"ssim": True, "lpips": False, "ssim_garment": True, "lpips_garment": False, "fid": False,
                    "kid": False, "miou": True}


def _row_spec(row: str) -> dict:
    if row not in ROWS:
        raise KeyError(f"unknown ablation row {row!r}; expected one of {list(ROWS)}")
    return {"warpgan": "full", "refine": "full", "gmm": "gml", "parsing": "predicted", "render": True, **ROWS[row]}


def checkpoint_key(stage: str, variant: str = "full", seed: int = 0) -> str:
    """``<stage>[_<variant>][_seed<N>]``, e.g. ``warpgan_nofw_seed2``: the key of a trained stage variant."""
    if stage not in STAGE_VARIANTS:
        raise KeyError(f"stage: expected one of {list(STAGE_VARIANTS)}, got {stage!r}")
    if variant not in STAGE_VARIANTS[stage]:
        raise KeyError(f"variant of {stage}: expected one of {list(STAGE_VARIANTS[stage])}, got {variant!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    return stage + ("" if variant == "full" else f"_{variant}") + (f"_seed{seed}" if seed else "")


def get_stage(profile: Profile | str | None = None, stage: str = "warpgan", variant: str = "full", seed: int = 0, *,
              force_train: bool = False, progress: bool = True, verbose: bool = True, train_data=None, test_data=None):
    """One trained Warp-GAN or render variant: ``(model, checkpoint)``; the main checkpoint for ``full`` seed 0."""
    from vtonlab.mgvton import refine, warpgan

    prof = resolve_profile(profile)
    key = checkpoint_key(stage, variant, seed)
    module, config_cls = (warpgan, warpgan.WarpGANConfig) if stage == "warpgan" else (refine, refine.RefineConfig)
    kw = dict(force_train=force_train, progress=progress, verbose=verbose, train_data=train_data, test_data=test_data)
    if variant == "full" and seed == 0:
        return module.get_trained(prof, **kw)
    cfg = config_cls.for_profile(prof, seed=seed, **STAGE_VARIANTS[stage][variant])
    return module.get_trained(prof, config=cfg, name=f"{FAMILY}_{key}", **kw)


def get_trained_ablation(profile: Profile | str | None = None, *, force_train: bool = False, progress: bool = True,
                         verbose: bool = True) -> dict[str, tuple]:
    """Every trained variant the ablation needs besides the main checkpoints: ``{key: (model, checkpoint)}``
    (``python -m vtonlab train mgvton-ablation``): each stage variant x :func:`ablation_seeds`, seed 0 first."""
    from vtonlab.mgvton import refine, warpgan
    from vtonlab.mgvton.parsing import multipose_pairs, preload_pairs

    prof = resolve_profile(profile)
    # the pairs are read once for all ten runs: the union of what Warp-GAN and the render read, in memory
    keys = tuple(dict.fromkeys(warpgan.PAIR_KEYS + refine.PAIR_KEYS))
    n_train = max(warpgan.WarpGANConfig.for_profile(prof).n_train, refine.RefineConfig.for_profile(prof).n_train)
    tr = preload_pairs(multipose_pairs("train", prof), n_train, pair_keys=keys, own_flow=True, what="MG-VTON ablation")
    te = preload_pairs(multipose_pairs("test", prof), pair_keys=keys, own_flow=True, what="MG-VTON ablation")
    out = {}
    for seed in ablation_seeds(prof):
        for stage, variants in STAGE_VARIANTS.items():
            for variant in variants:
                if variant == "full" and seed == 0:
                    continue
                out[checkpoint_key(stage, variant, seed)] = get_stage(
                    prof, stage, variant, seed, force_train=force_train, progress=progress, verbose=verbose,
                    train_data=tr, test_data=te)
    return out


# ----------------------------------------------------------------------------------------------
# Test data
# ----------------------------------------------------------------------------------------------

TEST_KEYS = ("source_parse", "source_body_shape", "source_agnostic", "source_head", "source_image",
             "target_pose_map", "target_pose_keypoints", "cloth", "cloth_mask", "gt_image", "gt_parse")


def test_set(profile: Profile | str | None = None, setting: str = "paired", limit: int | None = None) -> dict:
    """The held-out multi-pose pairs of a setting as tensors (:data:`TEST_KEYS`) plus ``names``.

    ``paired``: the garment is the source's own, the ground truth the target person; ``unpaired``: another test
    group's garment, the ground truth SynthVTON's render of the target person wearing it (rendered into the
    dataset folder on first use). Poses are drawn in MG-VTON's style.
    """
    from vtonlab.mgvton.parsing import multipose_pairs

    prof = resolve_profile(profile)
    if setting == "paired":
        data = multipose_pairs("test", prof, "mgvton")
    elif setting == "unpaired":
        from vtonlab.data import synthvton_unpaired

        data = synthvton_unpaired(prof, multipose=True, pose_style="mgvton")
    else:
        raise ValueError(f"setting: expected one of {list(SETTINGS)}, got {setting!r}")
    n = len(data) if limit is None else min(int(limit), len(data))
    cols: dict[str, list] = {k: [] for k in TEST_KEYS}
    names = []
    for i in range(n):
        item = data[i]
        src, tgt = item["source"], item["target"]
        for k in ("parse", "body_shape", "agnostic", "head", "image"):
            cols[f"source_{k}"].append(torch.as_tensor(src[k]))
        cols["target_pose_map"].append(torch.as_tensor(tgt["pose_map"]))
        cols["target_pose_keypoints"].append(torch.as_tensor(tgt["pose_keypoints"]))
        garment = src if setting == "paired" else item
        cols["cloth"].append(torch.as_tensor(garment["cloth"]))
        cols["cloth_mask"].append(torch.as_tensor(garment["cloth_mask"]))
        cols["gt_image"].append(torch.as_tensor(tgt["image"] if setting == "paired" else item["gt_image"]))
        cols["gt_parse"].append(torch.as_tensor(tgt["parse"] if setting == "paired" else item["gt_parse"]))
        names.append(f"{src.get('im_name', i)} -> {tgt.get('im_name', i)}"
                     + ("" if setting == "paired" else f" in {item.get('c_name', '?')}"))
    out = {k: torch.stack(v) for k, v in cols.items()}
    out["names"] = names
    out["setting"] = setting
    return out


# ----------------------------------------------------------------------------------------------
# Pipelines and metrics
# ----------------------------------------------------------------------------------------------


def pipeline_for(profile: Profile | str | None, row: str, seed: int = 0, *, cache: dict | None = None,
                 verbose: bool = False):
    """The :class:`~vtonlab.mgvton.pipeline.MGVTONPipeline` of an ablation row and training seed (stages loaded, or
    trained when missing); ``cache`` shares loaded stages between calls."""
    from vtonlab import gmm
    from vtonlab.mgvton import parsing
    from vtonlab.mgvton.pipeline import MGVTONPipeline

    prof = resolve_profile(profile)
    spec = _row_spec(row)
    cache = {} if cache is None else cache

    def stage(key, make):
        if key not in cache:
            cache[key] = make()
        return cache[key]

    parsing_model = stage("parsing", lambda: parsing.get_trained(prof, verbose=verbose)[0])
    matcher = stage(spec["gmm"], lambda: gmm.get_trained(prof, variant="gml" if spec["gmm"] == "gml" else "cpvton",
                                                         verbose=verbose)[0])
    wg = stage(("warpgan", spec["warpgan"], seed),
               lambda: get_stage(prof, "warpgan", spec["warpgan"], seed, verbose=verbose)[0])
    rf = stage(("refine", spec["refine"], seed), lambda: get_stage(prof, "refine", spec["refine"], seed, verbose=verbose)[0])
    return MGVTONPipeline(parsing_model, matcher, wg, rf, profile=prof, use_render=spec["render"])


def run_pipeline(pipe, data: Mapping, row: str = "full", batch_size: int = 32) -> dict[str, Tensor]:
    """The pipeline's outputs on a :func:`test_set` (CPU tensors, concatenated over batches); ``row`` decides whether
    the ground-truth parsing replaces the predicted one."""
    spec = _row_spec(row)
    keep = ("parsing", "warped_cloth", "coarse", "composition_mask", "tryon")
    out: dict[str, list[Tensor]] = {k: [] for k in keep}
    n = len(data["names"])
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        source = {"parse": data["source_parse"][sl], "body_shape": data["source_body_shape"][sl],
                  "agnostic": data["source_agnostic"][sl], "head": data["source_head"][sl]}
        res = pipe(source, data["cloth"][sl], data["cloth_mask"][sl], data["target_pose_map"][sl],
                   target_keypoints=data["target_pose_keypoints"][sl],
                   parsing_override=data["gt_parse"][sl] if spec["parsing"] == "gt" else None)
        for k in keep:
            out[k].append(res[k].cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def _unit(x: Tensor) -> Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def row_metrics(outputs: Mapping[str, Tensor], data: Mapping, *, lpips=None, distribution=None) -> dict:
    """The metrics of one row's outputs against the ground truth of ``data`` (a :func:`test_set`).

    Returns floats ``ssim``, ``lpips``, ``ssim_garment``, ``lpips_garment``, ``miou``, ``fid``, ``kid`` (None without
    ``distribution``), ``iou_per_class`` (label -> IoU) and the per-pair tensors ``per_pair_ssim``,
    ``per_pair_lpips_garment``. ``lpips``: a :class:`vtonlab.metrics.LPIPSMetric`; ``distribution``: a
    :class:`vtonlab.metrics.distribution.DistributionMetrics` whose reference is the ground truth.
    """
    from vtonlab.data.labels import INTERNAL_LABELS
    from vtonlab.data.representation import worn_mask
    from vtonlab.metrics import LPIPSMetric, ssim_map
    from vtonlab.mgvton.parsing import parsing_miou

    lp = lpips if lpips is not None else LPIPSMetric()
    pred, gt = _unit(outputs["tryon"]), _unit(data["gt_image"])
    region = worn_mask(data["gt_parse"]).float()
    smap = ssim_map(pred, gt).mean(1, keepdim=True)
    per_ssim = smap.flatten(1).mean(1)
    area = region.flatten(1).sum(1).clamp_min(1)
    per_ssim_g = (smap * region).flatten(1).sum(1) / area
    per_lpips = lp(pred, gt)
    per_lpips_g = lp(pred * region + gt * (1 - region), gt)
    miou, per_class = parsing_miou(outputs["parsing"], data["gt_parse"])
    out = {"ssim": per_ssim.mean().item(), "lpips": per_lpips.mean().item(), "ssim_garment": per_ssim_g.mean().item(),
           "lpips_garment": per_lpips_g.mean().item(), "miou": float(miou),
           "iou_per_class": {INTERNAL_LABELS[i]: float(v) for i, v in enumerate(per_class.tolist()) if not math.isnan(v)},
           "per_pair_ssim": per_ssim, "per_pair_lpips_garment": per_lpips_g, "fid": None, "kid": None}
    if distribution is not None:
        fid, kid = distribution.score(pred)[:2]
        out["fid"], out["kid"] = float(fid.value), float(kid.value)
    return out


@dataclass
class AblationResult:
    """Per-seed metrics of every (setting, row) and their mean and spread over seeds.

    ``runs[(setting, row, seed)]`` is a :func:`row_metrics` dict; ``extractors`` names what produced LPIPS and
    FID/KID; ``notes`` what was left out and why; ``outputs[(setting, row, seed)]`` the images when kept.
    """

    seeds: tuple[int, ...]
    rows: tuple[str, ...]
    settings: tuple[str, ...]
    n_pairs: dict[str, int]
    runs: dict = field(default_factory=dict)
    extractors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    metrics: tuple[str, ...] = METRICS
    higher_is_better: dict[str, bool] = field(default_factory=lambda: dict(HIGHER_IS_BETTER))

    def values(self, setting: str, row: str, metric: str) -> list[float]:
        """The metric of each training seed the row was measured with (a row may have fewer seeds than others)."""
        runs = [self.runs.get((setting, row, s)) for s in self.seeds]
        return [r[metric] for r in runs if r is not None and r.get(metric) is not None]

    def mean(self, setting: str, row: str, metric: str) -> float:
        v = self.values(setting, row, metric)
        return sum(v) / len(v) if v else float("nan")

    def spread(self, setting: str, row: str, metric: str) -> float:
        """max - min over the training seeds (0 for a row measured once)."""
        v = self.values(setting, row, metric)
        return max(v) - min(v) if v else float("nan")

    def table(self, setting: str, metrics: Sequence[str] | None = None) -> str:
        """A markdown table of one setting: mean (spread = max - min over seeds) per row and metric."""
        metrics = self.metrics if metrics is None else metrics
        arrows = {m: "↑" if self.higher_is_better[m] else "↓" for m in metrics}
        head = "| row | " + " | ".join(f"{m} {arrows[m]}" for m in metrics) + " |"
        lines = [head, "|---|" + "---|" * len(metrics)]
        for row in self.rows:
            cells = []
            for m in metrics:
                if not self.values(setting, row, m):
                    cells.append("-")
                    continue
                digits = 4 if m in ("lpips", "lpips_garment", "kid") else 3
                cells.append(f"{self.mean(setting, row, m):.{digits}f} ({self.spread(setting, row, m):.{digits}f})")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def direction(self, setting: str, row: str, metric: str, versus: str = "full") -> str:
        """``"better"``, ``"worse"`` or ``"within spread"`` of ``row`` against ``versus`` on ``metric``: the difference
        of the means must exceed the larger of the two rows' seed spreads to count."""
        d = self.mean(setting, row, metric) - self.mean(setting, versus, metric)
        margin = max(self.spread(setting, row, metric), self.spread(setting, versus, metric))
        if abs(d) <= margin:
            return "within spread"
        return "better" if (d > 0) == self.higher_is_better[metric] else "worse"

    def to_dict(self) -> dict:
        out = {"seeds": list(self.seeds), "n_pairs": self.n_pairs, "extractors": self.extractors, "notes": self.notes,
               "rows": {}}
        for setting in self.settings:
            for row in self.rows:
                out["rows"][f"{setting}/{row}"] = {m: {"mean": self.mean(setting, row, m),
                                                       "spread": self.spread(setting, row, m)} for m in self.metrics
                                                   if self.values(setting, row, m)}
        return out


def evaluate_ablation(profile: Profile | str | None = None, *, settings: Sequence[str] = SETTINGS,
                      rows: Sequence[str] = tuple(ROWS), seeds: Sequence[int] | None = None, lpips=None,
                      features=None, keep_outputs: bool = False, limit: int | None = None,
                      progress: bool = True) -> AblationResult:
    """Every row x training seed (default :func:`ablation_seeds`) x setting on the profile's test pairs
    (:func:`test_set`), with the metrics of :func:`row_metrics`. Stages are loaded (or trained when their checkpoint
    is missing: ``python -m vtonlab train mgvton-ablation`` trains them all ahead)."""
    from vtonlab.metrics import LPIPSMetric, fid_features
    from vtonlab.metrics.distribution import DistributionMetrics
    from vtonlab.progress import progress_bar

    prof = resolve_profile(profile)
    seeds = ablation_seeds(prof) if seeds is None else tuple(seeds)
    for row in rows:
        _row_spec(row)
    lp = lpips if lpips is not None else LPIPSMetric()
    feats = features if features is not None else fid_features("auto")
    res = AblationResult(tuple(seeds), tuple(rows), tuple(settings), {})
    res.extractors = {"lpips": f"{lp.name} ({lp.weights})", "fid_kid": f"{feats.extractor} ({feats.weights})"}
    if getattr(feats, "reason", ""):
        res.notes.append(f"FID/KID features: {feats.reason}")
    res.notes.append("IS: not computed (it needs the official Inception classifier's logits; vtonlab computes IS only "
                     "when that file is present)")
    cache: dict = {}
    total = len(settings) * len(rows) * len(seeds)
    with progress_bar(total=total, desc="MG-VTON ablation", unit="run", disable=not progress) as bar:
        for setting in settings:
            data = test_set(prof, setting, limit)
            n = len(data["names"])
            res.n_pairs[setting] = n
            dist = DistributionMetrics(feats, kid_subsets=50, kid_subset_size=max(2, n // 2))
            dist.set_reference(_unit(data["gt_image"]))
            for row in rows:
                for seed in seeds:
                    pipe = pipeline_for(prof, row, seed, cache=cache)
                    out = run_pipeline(pipe, data, row, prof.eval_batch_size)
                    res.runs[(setting, row, seed)] = row_metrics(out, data, lpips=lp, distribution=dist)
                    if keep_outputs:
                        res.outputs[(setting, row, seed)] = out
                    bar.update(1)
    return res
