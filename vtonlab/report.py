"""``Summary``: the closing table of every notebook.

Each notebook ends with a table of what it measured. When ``$VTONLAB_RESULTS_DIR`` is set (as
``make reproduce`` does), the table is also written there as JSON, and ``make reproduce`` gathers
every notebook's table into ``results/summary.md``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from vtonlab.profiles import Profile, get_profile


@dataclass
class Row:
    name: str
    value: float | int | str
    unit: str = ""
    note: str = ""

    def formatted(self) -> str:
        v = self.value
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
        return str(v)


class Summary:
    """A table of measured numbers: ``s.add("GMM test EPE", 1.93, unit="px", note="...")``."""

    def __init__(self, notebook: str, profile: Profile | None = None):
        self.notebook = notebook
        self.profile = profile or get_profile()
        self.rows: list[Row] = []

    def add(self, name: str, value, unit: str = "", note: str = "") -> Summary:
        if hasattr(value, "item"):
            value = value.item()
        if not isinstance(value, (int, float, str)):
            raise TypeError(f"Summary value for {name!r} must be a number or a string, got {type(value).__name__}")
        self.rows.append(Row(name, value, unit, note))
        self._write()
        return self

    def to_markdown(self) -> str:
        head = f"**{self.notebook}** (profile `{self.profile.name}`, {self.profile.height}x{self.profile.width})\n\n"
        lines = ["| measured | value | unit | note |", "|---|---|---|---|"]
        lines += [f"| {r.name} | {r.formatted()} | {r.unit} | {r.note} |" for r in self.rows]
        return head + "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        w = max([len(r.name) for r in self.rows] + [8])
        out = [f"{self.notebook} (profile {self.profile.name})"]
        out += [f"  {r.name.ljust(w)}  {r.formatted()} {r.unit}  {r.note}".rstrip() for r in self.rows]
        return "\n".join(out)

    __repr__ = __str__

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "profile": self.profile.name,
                "image_size": list(self.profile.image_size), "rows": [asdict(r) for r in self.rows]}

    def _write(self) -> None:
        target = os.environ.get("VTONLAB_RESULTS_DIR")
        if not target:
            return
        out = Path(target) / "summaries"
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{self.notebook}.json").write_text(json.dumps(self.to_dict(), indent=1))


def collect(results_dir: str | os.PathLike) -> str:
    """Gather every notebook's summary JSON under ``results_dir/summaries`` into one markdown page."""
    root = Path(results_dir) / "summaries"
    parts = ["# vtonlab results\n"]
    for f in sorted(root.glob("*.json")):
        d = json.loads(f.read_text())
        parts.append(f"## {d['notebook']} (profile `{d['profile']}`, {d['image_size'][0]}x{d['image_size'][1]})\n")
        parts.append("| measured | value | unit | note |\n|---|---|---|---|")
        for r in d["rows"]:
            parts.append(f"| {r['name']} | {Row(**r).formatted()} | {r['unit']} | {r['note']} |")
        parts.append("")
    return "\n".join(parts)
