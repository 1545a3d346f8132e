"""``python -m vtonlab report``: the README's "Measured results" table, generated from recorded runs.

Every number in the table is read from a file in the repository, and each row names it:

- shipped checkpoint manifests ``data/checkpoints/*.json`` (their ``metrics``, ``config``, training
  ``history.seconds`` and the ``command`` that made them);
- the closing :class:`~vtonlab.report.Summary` table of each executed notebook in ``notebooks/``
  (read with :func:`vtonlab.report.read_notebook_summary`);
- bench files ``data/bench/*.json`` written by ``python -m vtonlab bench``.

The README holds the table between ``<!-- results:begin -->`` and ``<!-- results:end -->``;
``python -m vtonlab report`` rewrites that block, ``--check`` compares it and exits 1 with a diff
when it differs (``make test`` runs the check). When ``results/notebooks/`` holds executed
notebooks (``make reproduce``), the command also writes ``results/summary.md``: the same table
built from those notebooks, every notebook's full summary and the wall times.

After retraining a checkpoint, re-executing a notebook or rerunning a bench, run the command
and commit the README. A notebook row that is gone (renamed in its summary) is an error that
lists the rows the notebook has; adapt :func:`build_rows`.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtonlab import paths
from vtonlab.commands.bench import read_record

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
MODEL_ORDER = ("demo", "clip", "gmm", "gml", "ladi_tps", "ladi_warp_refine", "ladi_vae", "ladi_vae_long")
PROFILE_ORDER = ("ci", "cpu", "gpu")


# --------------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------------
@dataclass
class NotebookSummary:
    """The closing summary of one executed notebook, with lookups that fail loudly."""

    path: Path
    data: dict

    @property
    def setting(self) -> str:
        h, w = self.data["image_size"]
        return f"{self.data['profile']}, {h}x{w}"

    def row(self, pattern: str) -> dict:
        """The row whose name matches the regular expression ``pattern`` entirely."""
        rows = [r for r in self.data["rows"] if re.fullmatch(pattern, r["name"])]
        if len(rows) != 1:
            names = "; ".join(repr(r["name"]) for r in self.data["rows"])
            raise KeyError(f"{self.path}: {len(rows)} summary rows match {pattern!r} (expected 1); its rows: {names}. "
                           "Adapt vtonlab/commands/report.py (build_rows) to the notebook's summary.")
        return rows[0]

    def value(self, pattern: str) -> Any:
        return self.row(pattern)["value"]

    def source(self, *patterns: str) -> str:
        names = ", ".join(f"'{self.row(p)['name']}'" for p in patterns)
        return f"notebook `{paths.shown(self.path)}`, summary {names}"


@dataclass
class Sources:
    """Where the report reads from; each reader names the file at fault when something is missing."""

    checkpoints: Path
    notebooks: Path
    bench: Path
    _notebooks: dict[str, NotebookSummary] = field(default_factory=dict)
    _bench: dict[str, dict] = field(default_factory=dict)

    def manifests(self) -> list[tuple[Path, dict]]:
        """Every shipped manifest, ordered by model (``MODEL_ORDER``, then by name) and profile."""
        out = []
        for f in sorted(self.checkpoints.glob("*.json")):
            try:
                m = json.loads(f.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{f}: not valid JSON ({err})") from err
            for key in ("name", "profile", "metrics", "config", "command"):
                if key not in m:
                    raise ValueError(f"{f}: manifest has no {key!r} field")
            out.append((f, m))

        def order(item):
            _, m = item
            model = MODEL_ORDER.index(m["name"]) if m["name"] in MODEL_ORDER else len(MODEL_ORDER)
            prof = PROFILE_ORDER.index(m["profile"]) if m["profile"] in PROFILE_ORDER else len(PROFILE_ORDER)
            return model, m["name"], prof, m["profile"]

        return sorted(out, key=order)

    def notebook(self, stem: str) -> NotebookSummary:
        if stem not in self._notebooks:
            from vtonlab.report import read_notebook_summary

            path = self.notebooks / f"{stem}.ipynb"
            if not path.exists():
                raise FileNotFoundError(f"{path}: notebook not found (the results table reads its closing summary)")
            data = read_notebook_summary(path)
            if data is None:
                raise ValueError(f"{path}: no Summary table in the saved outputs; execute the notebook and save it")
            self._notebooks[stem] = NotebookSummary(path, data)
        return self._notebooks[stem]

    def bench_result(self, name: str) -> tuple[Path, dict]:
        path = self.bench / f"{name}.json"
        if name not in self._bench:
            self._bench[name] = read_record(path)
        return path, self._bench[name]


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableRow:
    what: str
    setting: str
    value: str
    measured_with: str
    source: str


def _px(v: float) -> str:
    return f"{v:.2f} px"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _f3(v: float) -> str:
    return f"{v:.3f}"


def _sig(v: Any) -> str:
    from vtonlab.report import Row

    return Row("", v).formatted()


def _manifest_source(path: Path, m: dict, keys: str = "metrics") -> str:
    return f"`{paths.shown(path)}` {keys} (made by `{m['command']}`)"


def _weights(path: Path, m: dict) -> str:
    sha = m.get("sha256", "")
    return f"weights `{path.with_suffix('.safetensors').name}`" + (f" (sha256 {sha[:12]})" if sha else "")


def _training(m: dict) -> str:
    seconds = (m.get("history") or {}).get("seconds")
    steps = m.get("step", m["config"].get("steps"))
    return f"{steps} steps" + (f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else "")


def _metric(path: Path, m: dict, key: str) -> Any:
    if key not in m["metrics"]:
        raise KeyError(f"{path}: manifest metrics have no {key!r} (it has {', '.join(sorted(m['metrics']))})")
    return m["metrics"][key]


def _demo_rows(path: Path, m: dict) -> list[TableRow]:
    c = m["config"]
    return [TableRow("demo denoiser (notebook 00), test MSE; predicting zero", f"{m['profile']}, {c['size']} px, {_training(m)}",
                     f"{_f3(_metric(path, m, 'test_mse'))}; {_f3(_metric(path, m, 'zero_baseline_mse'))}",
                     _weights(path, m), _manifest_source(path, m))]


def _clip_rows(path: Path, m: dict) -> list[TableRow]:
    c, size = m["config"], m["config"]["size"]
    n = _metric(path, m, "n_test_garments")
    setting = (f"{m['profile']}, {size['image_size']} px, patch {size['patch_size']}, {size['n_train']} train garments, "
               f"{_training(m)}")
    zs = " / ".join(f"{_pct(_metric(path, m, f'zeroshot_{a}_acc'))} (chance {_pct(_metric(path, m, f'zeroshot_{a}_chance'))}, "
                    f"majority class {_pct(_metric(path, m, f'zeroshot_{a}_majority'))})" for a in ("category", "colour", "pattern"))
    rec = (f"{_pct(_metric(path, m, 'i2t_R@1'))} / {_pct(_metric(path, m, 'i2t_R@5'))} "
           f"({_pct(_metric(path, m, 't2i_R@1'))} / {_pct(_metric(path, m, 't2i_R@5'))}); "
           f"chance {_pct(1 / n)} / {_pct(min(5 / n, 1.0))}")
    with_ = f"our CLIP trained from scratch on SynthVTON, {_weights(path, m)}; {c.get('twin_captions', '')} twin captions"
    return [TableRow(f"CLIP zero-shot on {n} held-out garments: category / colour / pattern", setting, zs, with_,
                     _manifest_source(path, m)),
            TableRow("CLIP retrieval recall@1 / @5, image to text (text to image)", setting, rec, with_,
                     _manifest_source(path, m))]


def _gmm_rows(path: Path, m: dict) -> list[TableRow]:
    c = m["config"]
    label = {"gmm": "GMM (CP-VTON inputs)", "gml": "GML (MG-VTON, mask to mask)",
             "ladi_tps": "LaDI-VTON TPS (masked person + pose)"}.get(m["name"], m["name"])
    h, w = c["image_size"]
    setting = (f"{m['profile']}, {h}x{w}, {c['n_train']} train / {_metric(path, m, 'n_test')} test, {_training(m)}")
    value = (f"{_px(_metric(path, m, 'test_epe_px'))} / {_f3(_metric(path, m, 'test_iou'))} / "
             f"{_f3(_metric(path, m, 'test_ssim'))}")
    return [TableRow(f"{label}: test EPE / IoU / warp SSIM", setting, value,
                     f"{_weights(path, m)}; EPE against the true flow, SSIM by torchmetrics inside the worn mask",
                     _manifest_source(path, m))]


def _ablation_row(items: list[tuple[Path, dict]]) -> TableRow:
    """One row for the shipped GMM ablation checkpoints of notebook 04 (one manifest per variant)."""
    items = sorted(items, key=lambda pm: pm[1]["metrics"]["test_epe_px"])
    m0 = items[0][1]
    h, w = m0["config"]["image_size"]
    value = "; ".join(f"{m['name'].removeprefix('gmm_ablation_')} {_px(m['metrics']['test_epe_px'])}" for _, m in items)
    commands = sorted({m["command"] for _, m in items})
    return TableRow("GMM ablation (notebook 04), test EPE per variant, best first", f"{m0['profile']}, {h}x{w}, "
                    f"{m0['config']['steps']} steps each", value, "EPE against the true flow; one shipped checkpoint each",
                    f"`data/checkpoints/gmm_ablation_*-{m0['profile']}.json` metrics (made by `{'`, `'.join(commands)}`)")


def _generic_rows(path: Path, m: dict) -> list[TableRow]:
    numbers = {k: v for k, v in sorted(m["metrics"].items()) if isinstance(v, (int, float)) and not isinstance(v, bool)}
    value = "; ".join(f"{k} {_sig(v)}" for k, v in numbers.items())
    return [TableRow(f"{m['name']}: {', '.join(numbers)}", f"{m['profile']}, {_training(m)}", value, _weights(path, m),
                     _manifest_source(path, m))]


def _lpips_label(m: dict) -> str:
    return str(m["metrics"].get("lpips_extractor", m["metrics"].get("lpips_metric", "LPIPS")))


def _vae_rows(path: Path, m: dict) -> list[TableRow]:
    c = m["config"]
    h, w = c["image_size"]
    widths = "-".join(str(x) for x in c["block_out_channels"])
    value = " / ".join(f"{_f3(_metric(path, m, f'ssim_{r}'))}, {_sig(_metric(path, m, f'lpips_{r}'))}"
                       for r in ("all", "face", "text"))
    colour = ""
    if "colour_garment" in m["metrics"]:  # checkpoints made before the garment colour was measured lack it
        colour = (f"; garment colour error {_sig(_metric(path, m, 'colour_garment'))} ΔE, chroma kept "
                  f"{_f3(_metric(path, m, 'chroma_kept_garment'))}")
    recipe = f", recipe `{m['name'].removeprefix('ladi_vae_')}`" if m["name"] != "ladi_vae" else ""
    return [TableRow("KL autoencoder (f = 8, notebook 09): reconstruction SSIM, LPIPS overall / face / printed-text garments",
                     f"{m['profile']}, {h}x{w}, widths {widths}{recipe}, {_training(m)}",
                     f"{value}; scaling factor {_f3(_metric(path, m, 'scaling_factor'))}{colour}",
                     f"{_weights(path, m)}; SSIM: torchmetrics; {_lpips_label(m)}; "
                     f"perceptual loss VGG: {m['metrics'].get('perceptual_vgg')}",
                     _manifest_source(path, m))]


def _emasc_row(items: list[tuple[Path, dict]], vae: tuple[Path, dict] | None) -> TableRow:
    """One row per profile for the shipped EMASC checkpoints: outside-mask SSIM / LPIPS per kind, mean and spread over seeds."""
    m0 = items[0][1]
    parts = []
    if vae is not None:
        parts.append(f"none {_f3(vae[1]['metrics']['ssim_outside'])}, {_sig(vae[1]['metrics']['lpips_outside'])}")
    for kind in ("linear", "nonlinear"):
        ms = [m["metrics"] for _, m in items if m["config"]["kind"] == kind]
        if not ms:
            continue
        s = [x["ssim_outside"] for x in ms]
        lp = [x["lpips_outside"] for x in ms]
        parts.append(f"{kind} {_f3(sum(s) / len(s))} (spread {_f3(max(s) - min(s))}), {_sig(sum(lp) / len(lp))} "
                     f"(spread {_sig(max(lp) - min(lp))})")
    commands = sorted({m["command"] for _, m in items})
    return TableRow("EMASC (notebook 09): reconstruction SSIM, LPIPS outside the inpainting mask; mean over seeds",
                    f"{m0['profile']}, {len(items)} runs of {m0['config']['steps']} steps", "; ".join(parts),
                    f"SSIM: torchmetrics; {_lpips_label(m0)}; frozen VAE "
                    f"`{vae[1]['name'] if vae is not None else 'ladi_vae*'}-{m0['profile']}`",
                    f"`data/checkpoints/ladi_emasc_*-{m0['profile']}.json` metrics (made by `{'`, `'.join(commands)}`)")


def _warp_refine_rows(path: Path, m: dict) -> list[TableRow]:
    h, w = m["config"]["image_size"]
    value = (f"{_f3(_metric(path, m, 'test_ssim_tps'))} -> {_f3(_metric(path, m, 'test_ssim'))} / "
             f"{_sig(_metric(path, m, 'test_lpips'))}")
    return [TableRow("LaDI-VTON warp refinement (notebook 10): warped-garment SSIM, TPS -> refined / refined LPIPS",
                     f"{m['profile']}, {h}x{w}, {_training(m)}", value,
                     f"{_weights(path, m)}; SSIM: torchmetrics; {_lpips_label(m)}; VGG loss: {m['metrics'].get('vgg_weights')}",
                     _manifest_source(path, m))]


def _mg_parsing_rows(path: Path, m: dict) -> list[TableRow]:
    c = m["config"]
    h, w = c["image_size"]
    value = (f"{_f3(_metric(path, m, 'test_miou'))} / {_f3(_metric(path, m, 'test_miou_pose_warp'))} / "
             f"{_f3(_metric(path, m, 'test_miou_source'))}")
    return [TableRow("MG-VTON conditional parsing (notebook 06): test mIoU, network / source parsing moved by the pose "
                     "change / source parsing unchanged",
                     f"{m['profile']}, {h}x{w}, width {c['width']}, {c['n_blocks']} blocks, {_metric(path, m, 'n_test')} "
                     f"test pairs, {_training(m)}", value, f"{_weights(path, m)}; 20 CIHP labels, dataset-level IoU",
                     _manifest_source(path, m))]


def _runs(ms: list[dict]) -> str:
    """``N runs of S steps, A-B s each`` (training time from each manifest's history)."""
    secs = [(m.get("history") or {}).get("seconds") for m in ms]
    secs = [x for x in secs if isinstance(x, (int, float))]
    steps = sorted({m.get("step", m["config"].get("steps")) for m in ms})
    span = f", {min(secs):.0f}-{max(secs):.0f} s each" if secs else ""
    return f"{len(ms)} runs of {'/'.join(str(s) for s in steps)} steps{span}"


def _seed_stats(values: list[float]) -> str:
    mean = sum(values) / len(values)
    return _f3(mean) + (f" (spread {_f3(max(values) - min(values))})" if len(values) > 1 else "")


def _mgvton_stage_rows(items: list[tuple[Path, dict]]) -> list[TableRow]:
    """Rows for the MG-VTON Warp-GAN and render checkpoints of a profile: the main one and the ablation family's
    variants, mean and spread over training seeds (one manifest per variant and seed)."""
    def variant(m: dict) -> tuple[str, str]:
        c = m["config"]
        if "feature_warping" in c:
            return "warpgan", "full" if c["feature_warping"] else "w/o feature warping"
        return "refine", "full" if c["composition"] else "w/o Mask"

    groups: dict[tuple[str, str], list[dict]] = {}
    for _, m in items:
        groups.setdefault(variant(m), []).append(m)
    m0 = items[0][1]
    h, w = m0["config"]["image_size"]
    commands = sorted({m["command"] for _, m in items})
    names = sorted({m["name"].split("_")[0] for _, m in items})
    source = (", ".join(f"`data/checkpoints/{n}*-{m0['profile']}.json`" for n in names)
              + f" metrics (made by `{'`, `'.join(commands)}`)")
    rows = []
    wg = {k[1]: v for k, v in groups.items() if k[0] == "warpgan"}
    if wg:
        value = "; ".join(f"{v} {_seed_stats([m['metrics']['test_ssim'] for m in ms])} ({len(ms)} seeds)"
                          for v, ms in sorted(wg.items()))
        first = next(iter(wg.values()))[0]
        rows.append(TableRow("MG-VTON Warp-GAN (notebooks 07, 08): coarse-image test SSIM with true parsing and warp",
                             f"{m0['profile']}, {h}x{w}, {_runs([m for ms in wg.values() for m in ms])}", value,
                             f"SSIM: torchmetrics; VGG loss: {first['metrics'].get('vgg_weights')}", source))
    rf = {k[1]: v for k, v in groups.items() if k[0] == "refine"}
    if rf:
        value = "; ".join(f"{v} {_seed_stats([m['metrics']['test_ssim_garment'] for m in ms])} ({len(ms)} seeds)"
                          for v, ms in sorted(rf.items()))
        first = next(iter(rf.values()))[0]
        coarse = first["metrics"].get("test_ssim_garment_coarse")
        rows.append(TableRow("MG-VTON render (notebook 08): garment-region test SSIM with the true warp and a blurred "
                             "coarse input" + (f" (the coarse input alone: {_f3(coarse)})" if coarse is not None else ""),
                             f"{m0['profile']}, {h}x{w}, {_runs([m for ms in rf.values() for m in ms])}", value,
                             f"SSIM: torchmetrics; VGG loss: {first['metrics'].get('perceptual_vgg')}", source))
    return rows


def _notebook_ablation_rows(nb: NotebookSummary, what: str, names: Sequence[str], first: str, second: str,
                            fmt: Callable[[Any], str], extra: str = "") -> list[TableRow]:
    """One row per setting of a notebook's ablation summary: ``<setting> <row> <first>`` / ``... <second>`` of each
    row name; the first metric's note names its extractor (before the first ``;``) and the seeds (after the second)."""
    rows = []
    for setting in ("paired", "unpaired"):
        a = [rf"{setting} {re.escape(n)} {first}" for n in names]
        b = [rf"{setting} {re.escape(n)} {second}" for n in names]
        value = "; ".join(f"{n} {_sig(nb.value(x))} / {fmt(nb.value(y))}" for n, x, y in zip(names, a, b))
        note = nb.row(a[0])["note"]
        rows.append(TableRow(f"{what}, {setting}", nb.setting, value,
                             f"{note.split(';')[0]}; {extra}{note.split(';', 2)[-1].strip()}", nb.source(a[0], b[0])))
    return rows


def _mgvton_ablation_rows(nb: NotebookSummary) -> list[TableRow]:
    """Notebook 08's ablation: garment-region LPIPS and SSIM of the main rows in each setting (mean over seeds)."""
    return _notebook_ablation_rows(nb, "MG-VTON pipeline ablation (notebook 08): garment-region LPIPS / whole-image SSIM",
                                   ("full", "w/o Render", "w/o Mask", "ground-truth parsing"), "garment LPIPS", "SSIM",
                                   _f3, extra="SSIM: torchmetrics; ")


def _inpaint_rows(path: Path, m: dict) -> list[TableRow]:
    c, r = m["config"], m["metrics"]
    h, w = c["image_size"]
    value = " / ".join(_f3(_metric(path, m, f"{k}_l1_inside")) for k in ("inpaint", "inpaint_unguided", "masked", "vae"))
    return [TableRow("LaDI-VTON base inpainting LDM (notebook 12): try-on region L1 of DDIM inpainting, guided / unguided / "
                     "the grey masked person / the autoencoder's reconstruction", f"{m['profile']}, {h}x{w}, {_training(m)}",
                     value, f"{r['n_eval']} test persons, {r['sampling_steps']} DDIM steps, guidance {r['guidance_scale']:g}, "
                     "images in [0, 1]; " + _weights(path, m), _manifest_source(path, m))]


def _adapter_rows(path: Path, m: dict) -> list[TableRow]:
    c = m["config"]
    h, w = c["image_size"]
    value = " / ".join(_sig(_metric(path, m, f"test_mse_inside_{k}")) for k in ("inversion", "caption", "empty"))
    return [TableRow(f"LaDI-VTON inversion adapter, {c['num_pseudo_words']} pseudo-words (notebook 11): the frozen base "
                     "UNet's test MSE inside the mask with pseudo-words / caption / empty prompt",
                     f"{m['profile']}, {h}x{w}, {_training(m)}", value,
                     f"epsilon MSE at t = 100, 500, 900, {m['metrics']['n_eval']} test persons; " + _weights(path, m),
                     _manifest_source(path, m))]


def _tryon_rows(items: list[tuple[Path, dict]]) -> list[TableRow]:
    """The try-on UNets of one profile (main + ablation variants): test MSE with all conditions and with the garment
    latent zeroed, mean over training seeds, one row."""
    by_variant: dict[str, list[tuple[Path, dict]]] = {}
    for path, m in items:
        by_variant.setdefault(re.sub(r"_seed\d+$", "", m["name"]), []).append((path, m))
    parts = []
    for name in sorted(by_variant, key=lambda n: (n != "ladi_tryon", n)):
        ms = [m for _, m in by_variant[name]]
        allc = _seed_stats([m["metrics"]["test_mse_all"] for m in ms])
        gar = [m["metrics"]["test_mse_no_garment"] for m in ms if "test_mse_no_garment" in m["metrics"]]
        parts.append(f"{name.removeprefix('ladi_tryon_') if name != 'ladi_tryon' else 'full'} {allc}"
                     + (f" / {_seed_stats(gar)}" if gar else ""))
    m0 = items[0][1]
    h, w = m0["config"]["image_size"]
    commands = sorted({m["command"] for _, m in items})
    return [TableRow("LaDI-VTON try-on UNets (notebooks 12, 13): test epsilon MSE with all conditions / garment latent zeroed "
                     "(mean over the shipped training seeds)", f"{m0['profile']}, {h}x{w}, {_runs([m for _, m in items])}",
                     "; ".join(parts),
                     "t = 100, 500, 900 at fixed noise, the same test persons for every variant",
                     f"`data/checkpoints/ladi_tryon*-{m0['profile']}.json` metrics (made by `{'`, `'.join(commands)}`)")]


def _ladi_ablation_rows(nb: NotebookSummary) -> list[TableRow]:
    """Notebook 13: garment-region colour error and LPIPS of full, no garment input, no text and the base model."""
    return _notebook_ablation_rows(nb, "LaDI-VTON ablation (notebook 13): garment-region LPIPS / colour error (CIE76 ΔE)",
                                   ("full", "garment input: none", "text: none", "base inpainting"), "lpips_garment",
                                   "colour_error", _sig, extra="colour error: mean CIELAB colour in that region; ")


MANIFEST_ROWS: dict[str, Callable[[Path, dict], list[TableRow]]] = {
    "demo": _demo_rows, "clip": _clip_rows, "gmm": _gmm_rows, "gml": _gmm_rows, "ladi_tps": _gmm_rows,
    "ladi_vae": _vae_rows, "ladi_vae_long": _vae_rows, "ladi_warp_refine": _warp_refine_rows, "mgvton-parsing": _mg_parsing_rows,
    "ladi_inpaint": _inpaint_rows,
}


def _machine(record: dict) -> str:
    mc = record["machine"]
    load = f", load {mc['load_average_1min']}" if "load_average_1min" in mc else ""
    return f"{mc.get('cpus_usable', mc.get('cpu_count'))} CPUs, {mc.get('torch_threads')} torch threads{load}"


def _bench_source(path: Path, record: dict) -> str:
    return f"`{paths.shown(path)}` ({record['date'][:10]}; `{record['command']}`)"


def _bench_rows(src: Sources) -> list[TableRow]:
    rows = []
    path, rec = src.bench_result("render")
    r = rec["result"]
    rows.append(TableRow(f"SynthVTON `render_sample`, {r['n']} samples", f"{r['size'][0]}x{r['size'][1]}, {_machine(rec)}",
                         f"{r['samples_per_s']:.1f} samples/s wall clock, {r['samples_per_cpu_s']:.1f} per CPU-second",
                         "one process", _bench_source(path, rec)))
    path, rec = src.bench_result("flow")
    r = rec["result"]
    rows.append(TableRow("the in-shop garment sampled with the true flow vs the worn garment: mean error, "
                         "clean pixels / all garment pixels", f"{r['size'][0]}x{r['size'][1]}, {r['n']} samples",
                         f"{r['mean_error_clean']:.2f} / {r['mean_error_all']:.2f} grey levels "
                         f"(clean: {_pct(r['clean_share'])} of the garment)",
                         "`grid_sample` (bilinear, align_corners) x shading, max over RGB", _bench_source(path, rec)))
    path, rec = src.bench_result("tps")
    r = rec["result"]
    rows.append(TableRow(f"TPS warp of {r['batch']} garments vs kornia",
                         f"{r['size'][0]}x{r['size'][1]}, {r['device']}, {_machine(rec)}",
                         f"`warp_image` {r['speedup']:.1f}x faster ({1e3 * r['vtonlab_s']:.0f} ms vs "
                         f"{1e3 * r['kornia_s']:.0f} ms); `FixedGridTPS` {r['speedup_fixed']:.1f}x ({1e3 * r['fixed_s']:.0f} ms)",
                         f"`vtonlab.tps.benchmark`, median of {r['repeats']}", _bench_source(path, rec)))
    for profile in PROFILE_ORDER:
        if not (src.bench / f"ladi_sampling-{profile}.json").exists():
            continue
        path, rec = src.bench_result(f"ladi_sampling-{profile}")
        r = rec["result"]
        rows.append(TableRow(f"LaDI-VTON try-on sampling, {r['n']} test persons (notebook 12)",
                             f"{profile}, {r['image_size'][0]}x{r['image_size'][1]}, {r['device']}, {_machine(rec)}",
                             f"{r['seconds_per_image']:.3f} s per image ({r['images_per_second']:.1f} images/s)",
                             f"{r['num_inference_steps']} DDIM steps, guidance {r['guidance_scale']:g} (two UNet branches), "
                             f"batch {r['batch_size']}, EMASC decoding, {r['precision']}, median of {r['repeats']}",
                             _bench_source(path, rec)))
    for profile in PROFILE_ORDER:
        if not (src.bench / f"ladi_training-{profile}.json").exists():
            continue
        path, rec = src.bench_result(f"ladi_training-{profile}")
        r = rec["result"]
        u, v = r["tryon_unet"], r["autoencoder"]
        rows.append(TableRow(f"LaDI-VTON training step, try-on UNet / autoencoder, on the machine named ({profile} profile's "
                             "models, untrained, random inputs)",
                             f"{profile}, UNet {u['parameters'] / 1e6:.1f} M at {u['input'][1]}x{u['input'][2]} latent, "
                             f"batch {u['batch_size']}; autoencoder {v['parameters'] / 1e6:.1f} M at "
                             f"{v['input'][1]}x{v['input'][2]}, batch {v['batch_size']}; {r['device']}, {_machine(rec)}",
                             f"{u['seconds_per_step']:.2f} s / {v['seconds_per_step']:.2f} s per step: "
                             f"{u['hours_for_profile_steps']:.1f} h / {v['hours_for_profile_steps']:.1f} h for the "
                             f"profile's {u['profile_steps']:,} / {v['profile_steps']:,} steps (at least)",
                             f"forward, loss, backward, AdamW / Adam step; data, text encoder and warping not timed; "
                             f"{r['precision']}, median of {r['timed_steps']}", _bench_source(path, rec)))
    return rows


def build_rows(src: Sources) -> list[TableRow]:
    """The table: benches, notebook 03 and 04 baselines, every shipped checkpoint, notebook 05's metrics."""
    rows = _bench_rows(src)
    nb = src.notebook("03_tps")
    p = r"kornia with our coefficients, max \|diff\|"
    rows.append(TableRow("kornia's TPS warp with our coefficients: max abs difference", f"{nb.setting}, float64",
                         _sig(nb.value(p)), "`kornia.geometry.transform.warp_image_tps`", nb.source(p)))
    nb = src.notebook("04_geometric_matching")
    ident, oracle = r"identity warp EPE", r"5x5 TPS oracle EPE"
    rows.append(TableRow("no warp (identity) / best 5x5 TPS fitted to the true flow: test EPE", nb.setting,
                         f"{_px(nb.value(ident))} / {_px(nb.value(oracle))}", "the true flow (no network)",
                         nb.source(ident, oracle)))
    ablation, emasc, mg_stages, tryons = [], {}, {}, {}
    for path, m in src.manifests():
        if m["name"] == "ladi_tryon" or m["name"].startswith("ladi_tryon_"):
            tryons.setdefault(m["profile"], []).append((path, m))
            continue
        if m["name"] == "ladi_adapter" or m["name"].startswith("ladi_adapter_"):
            rows += _adapter_rows(path, m)
            continue
        if m["name"].startswith("gmm_ablation_"):
            ablation.append((path, m))
            continue
        if m["name"].startswith("ladi_emasc_"):
            emasc.setdefault(m["profile"], []).append((path, m))
            continue
        if m["name"] in ("mgvton-warpgan", "mgvton-refine") or m["name"].startswith("mgvton-ablation_"):
            mg_stages.setdefault(m["profile"], []).append((path, m))
            continue
        rows += MANIFEST_ROWS.get(m["name"], _generic_rows)(path, m)
    if ablation:
        rows.append(_ablation_row(ablation))
    # the autoencoder each profile's EMASC was trained on: the one whose weights' SHA-256 its config records
    vaes = {m.get("sha256"): (p, m) for p, m in src.manifests() if m["name"].startswith("ladi_vae")}
    for profile in sorted(emasc, key=lambda p: PROFILE_ORDER.index(p) if p in PROFILE_ORDER else len(PROFILE_ORDER)):
        rows.append(_emasc_row(emasc[profile], vaes.get(emasc[profile][0][1]["config"].get("vae_sha256"))))
    for profile in sorted(mg_stages, key=lambda p: PROFILE_ORDER.index(p) if p in PROFILE_ORDER else len(PROFILE_ORDER)):
        rows += _mgvton_stage_rows(mg_stages[profile])
    for profile in sorted(tryons, key=lambda p: PROFILE_ORDER.index(p) if p in PROFILE_ORDER else len(PROFILE_ORDER)):
        rows += _tryon_rows(tryons[profile])
    best, best_epe, spread = r"best ablation variant \(EPE\)", r"best ablation EPE", r"seed spread of the ablation EPE"
    rows.append(TableRow("GMM ablation: best variant, its test EPE; EPE spread over three seeds", nb.setting,
                         f"{nb.value(best)}: {_px(nb.value(best_epe))}; {_px(nb.value(spread))}",
                         f"{nb.row(best)['note']}; {nb.row(spread)['note']}", nb.source(best, best_epe, spread)))
    if (src.notebooks / "08_mgvton_pipeline.ipynb").exists():
        rows += _mgvton_ablation_rows(src.notebook("08_mgvton_pipeline"))
    if (src.notebooks / "13_ladi_ablations.ipynb").exists():
        rows += _ladi_ablation_rows(src.notebook("13_ladi_ablations"))
    nb = src.notebook("05_metrics")
    # the Inception-or-substitute pair (named FID / FID-randconv); FID-synthclip is a row of its own
    fid, kid = r"unpaired FID(-randconv)?, perfect rendered results", r"unpaired KID(-randconv)?, perfect rendered results"
    ssim, lpips = r"paired SSIM, blurred test set", r"paired LPIPS(-\w+)?, blurred test set"
    rows.append(TableRow(f"{nb.row(fid)['name'].split(',')[0]} / {nb.row(kid)['name'].split(',')[0].removeprefix('unpaired ')}"
                         " of perfect renders against the test set", nb.setting,
                         f"{_sig(nb.value(fid))} / {_sig(nb.value(kid))}", nb.row(fid)["note"], nb.source(fid, kid)))
    rows.append(TableRow(f"{nb.row(ssim)['name'].split(',')[0]} / {nb.row(lpips)['name'].split(',')[0].removeprefix('paired ')}"
                         " of a blurred test set", nb.setting, f"{_sig(nb.value(ssim))} / {_sig(nb.value(lpips))}",
                         f"SSIM: torchmetrics; {nb.row(lpips)['note']}", nb.source(ssim, lpips)))
    clip_fid, swap = r"unpaired FID-synthclip, perfect rendered results", r"KID-synthclip: range under texture swap / range under blur"
    rows.append(TableRow("FID-synthclip of perfect renders against the test set; KID-synthclip texture-swap / blur range",
                         nb.setting, f"{_sig(nb.value(clip_fid))}; {_sig(nb.value(swap))}",
                         nb.row(clip_fid)["note"], nb.source(clip_fid, swap)))
    return rows


# Notebook rows that show a shipped manifest's metric: the report warns when they disagree (a stale notebook).
MIRRORED = (
    ("gmm", "cpu", "test_epe_px", "04_geometric_matching", r"GMM \(CP-VTON\) test EPE"),
    ("gml", "cpu", "test_epe_px", "04_geometric_matching", r"GML test EPE"),
    ("clip", "cpu", "zeroshot_pattern_acc", "02_clip", r"zero-shot pattern accuracy"),
    ("clip", "cpu", "i2t_R@1", "02_clip", r"retrieval i2t_R@1"),
)


def stale_notebooks(src: Sources) -> list[str]:
    """Warnings for notebook summaries that disagree with the shipped manifest they show (beyond 4 digits)."""
    out = []
    manifests = {(m["name"], m["profile"]): (p, m) for p, m in src.manifests()}
    for model, profile, key, stem, pattern in MIRRORED:
        if (model, profile) not in manifests or not (src.notebooks / f"{stem}.ipynb").exists():
            continue
        path, m = manifests[(model, profile)]
        nb = src.notebook(stem)
        if nb.data["profile"] != profile or key not in m["metrics"]:
            continue
        shown, stored = nb.value(pattern), m["metrics"][key]
        if isinstance(shown, (int, float)) and abs(shown - stored) > 1e-3 * max(abs(stored), 1e-12):
            out.append(f"{nb.path} shows {nb.row(pattern)['name']} = {shown}, {paths.shown(path)} has {stored:.6g}: "
                       "re-execute the notebook")
    return out


# --------------------------------------------------------------------------------------------------
# Rendering, the README block and results/summary.md
# --------------------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_table(rows: list[TableRow]) -> str:
    lines = ["| what | setting | value | measured with | source |", "|---|---|---|---|---|"]
    lines += [f"| {_cell(r.what)} | {_cell(r.setting)} | {_cell(r.value)} | {_cell(r.measured_with)} | {_cell(r.source)} |"
              for r in rows]
    return "\n".join(lines)


def render_block(src: Sources) -> str:
    """The text between the README markers (markers excluded), newline-terminated."""
    note = "<!-- generated by `python -m vtonlab report`; edit the sources, not this table -->"
    return f"{note}\n{render_table(build_rows(src))}\n"


def split_readme(text: str, readme: Path) -> tuple[str, str, str]:
    """(before, block, after) around the markers; the markers stay in ``before`` / ``after``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"{readme}: expected exactly one {BEGIN} and one {END} line "
                         f"(found {text.count(BEGIN)} and {text.count(END)})")
    head, rest = text.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    if not block.startswith("\n"):
        raise ValueError(f"{readme}: {BEGIN} must end its line")
    return head + BEGIN + "\n", block[1:], END + tail


def summary_page(src: Sources, results: Path) -> str:
    """``results/summary.md``: the table from the executed notebooks there, their full summaries, wall times."""
    from vtonlab.report import Row, read_notebook_summary

    parts = ["# vtonlab results", "", f"Generated by `python -m vtonlab report` from `{paths.shown(results / 'notebooks')}`, "
             "the shipped checkpoint manifests and the bench files.", ""]
    try:
        parts += [render_table(build_rows(src)), ""]
    except (KeyError, FileNotFoundError, ValueError) as err:
        parts += [f"(the results table could not be built from these notebooks: {err})", ""]
    for nb_path in sorted(src.notebooks.glob("[0-9][0-9]_*.ipynb")):
        d = read_notebook_summary(nb_path)
        if d is None:
            parts += [f"## {nb_path.stem}", "", "no summary table (did the notebook fail?)", ""]
            continue
        parts += [f"## {d['notebook']} (profile `{d['profile']}`, {d['image_size'][0]}x{d['image_size'][1]})", "",
                  "| measured | value | unit | note |", "|---|---|---|---|"]
        for r in d["rows"]:
            shown = Row(**{k: r[k] for k in ("name", "value", "unit", "note")}).formatted()
            parts.append(f"| {_cell(r['name'])} | {_cell(shown)} | {_cell(r['unit'])} | {_cell(r['note'])} |")
        parts.append("")
    timings = results / "summary.json"
    if timings.exists():
        t = json.loads(timings.read_text()).get("notebooks", {})
        parts += ["## Wall time per notebook", "", "| notebook | seconds | status |", "|---|---|---|"]
        parts += [f"| {k} | {v.get('seconds')} | {v.get('status')} |" for k, v in t.items()]
        parts.append("")
    return "\n".join(parts)


def register(sub) -> None:
    p = sub.add_parser("report", help="write the README's results table from manifests, notebooks and bench files")
    p.add_argument("--check", action="store_true", help="do not write; exit 1 with a diff when the README block differs")
    p.add_argument("--readme", default=None, help="README to update (default: README.md of the repository)")
    p.add_argument("--notebooks", default=None, help="executed notebooks to read (default: notebooks/)")
    p.add_argument("--checkpoints", default=None, help="shipped manifests (default: data/checkpoints/)")
    p.add_argument("--bench", default=None, help="bench JSON files (default: data/bench/)")
    p.add_argument("--results", default=None, help="results folder for summary.md (default: results/)")
    p.set_defaults(func=run)


def sources(args) -> Sources:
    from vtonlab.commands.bench import bench_dir

    return Sources(checkpoints=Path(args.checkpoints) if args.checkpoints else paths.shipped_checkpoints_dir(),
                   notebooks=Path(args.notebooks) if args.notebooks else paths.repo_root() / "notebooks",
                   bench=Path(args.bench) if args.bench else bench_dir())


def run(args) -> int:
    readme = Path(args.readme) if args.readme else paths.repo_root() / "README.md"
    if not readme.exists():
        raise FileNotFoundError(f"{readme}: README not found (--readme)")
    src = sources(args)
    text = readme.read_text(encoding="utf-8")
    before, old, after = split_readme(text, readme)
    new = render_block(src)
    for warning in stale_notebooks(src):
        print(f"warning: {warning}", file=sys.stderr)
    if args.check:
        if old == new:
            print(f"{readme}: results table up to date")
            return 0
        diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                    fromfile=f"{readme} (results block)", tofile="python -m vtonlab report")
        sys.stdout.writelines(diff)
        print(f"\n{readme}: the results table differs from its sources; run `python -m vtonlab report` "
              "(numbers are generated, never typed)", file=sys.stderr)
        return 1
    if old != new:
        readme.write_text(before + new + after, encoding="utf-8")
        print(f"updated the results table in {readme}")
    else:
        print(f"{readme}: results table already up to date")
    results = Path(args.results) if args.results else paths.results_dir()
    if any((results / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        run_src = Sources(checkpoints=src.checkpoints, notebooks=results / "notebooks", bench=src.bench)
        (results / "summary.md").write_text(summary_page(run_src, results), encoding="utf-8")
        print(f"wrote {results / 'summary.md'}")
    return 0
