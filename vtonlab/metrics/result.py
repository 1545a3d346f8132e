"""Metric results that say what produced them.

A number such as "FID 12.3" means little unless one knows which network embedded the images and
with which weights: an FID in random-network features is not comparable to a paper's Inception FID.
Every metric in :mod:`vtonlab.metrics` therefore returns a :class:`MetricResult` that carries the
extractor and the weights next to the value, and :class:`MetricTable` prints them as columns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class MetricResult:
    """One measured number and its provenance.

    Attributes:
        name: the metric as it should be quoted ("SSIM", "LPIPS", "FID", or a substitute's own name
            such as "LPIPS-randalex" / "FID-randconv").
        value: the number (mean over images for paired metrics).
        extractor: the algorithm or network that saw the images.
        weights: which weights that network had ("none" for SSIM and PSNR).
        better: "higher" or "lower".
        setting: protocol setting or region ("paired", "unpaired", "inside mask", ...).
        std: spread (standard deviation over images, or over KID subsets).
        n: number of images (or pairs) that went into the value.
        official: True when the metric is computed exactly as in the papers (official weights).
        note: anything else a reader needs (e.g. "ground truth resized to 512x384").
    """

    name: str
    value: float
    extractor: str
    weights: str
    better: str = "higher"
    setting: str = ""
    std: float | None = None
    n: int | None = None
    official: bool = True
    note: str = ""

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise ValueError(f"MetricResult.better must be 'higher' or 'lower', got {self.better!r}")
        object.__setattr__(self, "value", float(self.value))
        if self.std is not None:
            object.__setattr__(self, "std", float(self.std))

    def __float__(self) -> float:
        return self.value

    def with_(self, **changes) -> MetricResult:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def formatted(self, digits: int = 4) -> str:
        """The value (and ``± std`` when known) with ``digits`` significant digits."""
        text = _fmt(self.value, digits)
        if self.std is not None and math.isfinite(self.std):
            text += f" ± {_fmt(self.std, 2)}"
        return text

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("value", "std"):
            if isinstance(d[key], float) and not math.isfinite(d[key]):
                d[key] = str(d[key])  # JSON has no inf/nan: write "inf" / "nan"
        return d

    def __str__(self) -> str:
        arrow = "↑" if self.better == "higher" else "↓"
        where = f" [{self.setting}]" if self.setting else ""
        return f"{self.name}{arrow}{where} = {self.formatted()}  ({self.extractor}; weights: {self.weights})"


def _fmt(v: float, digits: int) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


@dataclass
class MetricTable:
    """An ordered list of :class:`MetricResult` that prints as a table with provenance columns.

    ``table["FID"]`` returns the first result of that name (``table.get(name, setting)`` to pick a
    setting); ``table.markdown()`` and ``table.to_json()`` give the written forms.
    """

    results: list[MetricResult] = field(default_factory=list)
    title: str = ""
    notes: list[str] = field(default_factory=list)
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)  # image name -> metric -> value

    def add(self, result: MetricResult) -> MetricTable:
        if not isinstance(result, MetricResult):
            raise TypeError(f"MetricTable.add expects a MetricResult, got {type(result).__name__}")
        self.results.append(result)
        return self

    def extend(self, results: Iterable[MetricResult]) -> MetricTable:
        for r in results:
            self.add(r)
        return self

    def __iter__(self) -> Iterator[MetricResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def get(self, name: str, setting: str | None = None) -> MetricResult:
        for r in self.results:
            if r.name == name and (setting is None or r.setting == setting):
                return r
        have = ", ".join(f"{r.name} [{r.setting}]" if r.setting else r.name for r in self.results) or "nothing"
        where = f" in setting {setting!r}" if setting is not None else ""
        raise KeyError(f"no metric named {name!r}{where}; the table has: {have}")

    def __getitem__(self, name: str) -> MetricResult:
        return self.get(name)

    def names(self) -> list[str]:
        return [r.name for r in self.results]

    def rows(self) -> list[list[str]]:
        out = []
        for r in self.results:
            arrow = "↑" if r.better == "higher" else "↓"
            out.append([f"{r.name} {arrow}", r.setting, r.formatted(), "" if r.n is None else str(r.n),
                        r.extractor, r.weights, "yes" if r.official else "no (substitute)", r.note])
        return out

    HEADER = ["metric", "setting", "value", "n", "extractor", "weights", "official", "note"]

    def markdown(self) -> str:
        """A GitHub-markdown table (title and notes as text above/below it)."""
        lines = []
        if self.title:
            lines += [f"**{self.title}**", ""]
        lines += ["| " + " | ".join(self.HEADER) + " |", "|" + "---|" * len(self.HEADER)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows()]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        rows = [self.HEADER] + self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        text = [self.title] if self.title else []
        for k, row in enumerate(rows):
            text.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
            if k == 0:
                text.append("  ".join("-" * w for w in widths))
        text += [f"note: {n}" for n in self.notes]
        return "\n".join(text)

    __repr__ = __str__

    def to_dict(self) -> dict:
        d = {"title": self.title, "notes": list(self.notes), "results": [r.to_dict() for r in self.results]}
        if self.per_image:
            d["per_image"] = {k: dict(v) for k, v in self.per_image.items()}
        return d

    def to_json(self, indent: int = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> MetricTable:
        def value(v):
            return float(v) if isinstance(v, str) else v

        results = [MetricResult(**{**r, "value": value(r["value"]), "std": value(r.get("std"))}) for r in d["results"]]
        return cls(results=results, title=d.get("title", ""), notes=list(d.get("notes", [])),
                   per_image={k: dict(v) for k, v in d.get("per_image", {}).items()})
