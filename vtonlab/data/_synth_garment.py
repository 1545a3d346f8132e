"""SynthVTON garments: attribute vocabularies, garment sampling and the in-shop (flat, front) image.

A garment is designed in *garment units*: roughly the pixels of a reference person at 256 x 192
(shoulder outer half-width 31, shoulder-to-hip 76). ``x_u = 0`` is the centre line and ``y_u = 0``
the height of the shoulder points; the neck opening sits at ``y_u = -drop``. The in-shop picture
is the garment drawn at ``k`` canonical units per garment unit, centred on a white canvas. The worn
garment (:mod:`vtonlab.data._synth_worn`) maps person pixels back to garment units, which is what
makes the ground-truth flow exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vtonlab.data._synth_draw import (
    CANON_H,
    CANON_W,
    Frame,
    convex_polygon,
    ellipse_local,
    polygon,
    smoothstep,
)

# ----------------------------------------------------------------------------------------------
# Vocabularies (public through vtonlab.data.synth)
# ----------------------------------------------------------------------------------------------

#: Named colours of garments and prints (RGB, 0-255). Captions use these names.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (196, 36, 44),
    "orange": (236, 122, 34),
    "yellow": (242, 204, 58),
    "green": (52, 140, 72),
    "teal": (26, 134, 136),
    "light blue": (128, 178, 226),
    "blue": (38, 84, 184),
    "navy": (28, 38, 84),
    "purple": (112, 58, 150),
    "pink": (236, 142, 178),
    "white": (244, 244, 240),
    "grey": (138, 138, 144),
    "black": (34, 34, 38),
    "brown": (118, 78, 48),
    "beige": (214, 194, 158),
    "maroon": (116, 28, 44),
}

#: Upper-garment categories -> the noun phrase captions use.
CATEGORIES: dict[str, str] = {
    "t-shirt": "t-shirt",
    "v-neck": "v-neck t-shirt",
    "long-sleeve": "long-sleeve shirt",
    "three-quarter": "three-quarter-sleeve top",
    "sweater": "sweater",
    "tank-top": "tank top",
    "crop-top": "crop top",
}

#: Textures of the garment fabric.
PATTERNS: tuple[str, ...] = (
    "solid",
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checks",
    "polka dots",
    "gradient",
    "logo",
    "text",
)

#: Shapes of the printed logo (pattern "logo").
LOGOS: tuple[str, ...] = ("star", "heart", "circle", "diamond", "triangle", "lightning bolt")

#: Words of the printed text (pattern "text").
WORDS: tuple[str, ...] = ("VTON", "LOVE", "SURF", "NYC", "COOL", "HELLO", "WILD", "PEACE", "LAB", "BOLD", "SUN")

# category -> neckline, sleeve kind, worn hem position (fraction of shoulder-to-hip), fit range, ribbed
_SHAPES: dict[str, dict] = {
    "t-shirt": dict(neckline="crew", sleeve="short", hem=(1.10, 1.22), fit=(1.0, 1.1), rib=False),
    "v-neck": dict(neckline="v", sleeve="short", hem=(1.10, 1.20), fit=(1.0, 1.08), rib=False),
    "long-sleeve": dict(neckline="crew", sleeve="long", hem=(1.10, 1.20), fit=(1.0, 1.06), rib=False),
    "three-quarter": dict(neckline="scoop", sleeve="three-quarter", hem=(1.06, 1.16), fit=(0.98, 1.05), rib=False),
    "sweater": dict(neckline="crew", sleeve="long", hem=(1.10, 1.18), fit=(1.06, 1.14), rib=True),
    "tank-top": dict(neckline="scoop", sleeve="none", hem=(1.08, 1.18), fit=(0.96, 1.04), rib=False),
    "crop-top": dict(neckline="crew", sleeve="short", hem=(0.70, 0.80), fit=(0.98, 1.05), rib=False),
}

# 5 x 7 block letters for WORDS
_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "#####"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "N": ("#...#", "##..#", "#.#.#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", ".#.#.", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "##.##", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
}

_REF_SHOULDER = 31.0  # reference person's shoulder outer half-width (garment units = its pixels)
_REF_TORSO = 76.0  # reference shoulder-to-hip length
_REF_UPPER_ARM = 40.0
_REF_ARM = 78.0


def luminance(rgb) -> float:
    r, g, b = (float(c) for c in rgb)
    return 0.299 * r + 0.587 * g + 0.114 * b


def _contrast_table() -> dict[str, list[str]]:
    out = {}
    for c, rgb in COLOURS.items():
        ok = [n for n, o in COLOURS.items() if n != c and sum(abs(a - b) for a, b in zip(o, rgb)) > 150
              and abs(luminance(o) - luminance(rgb)) > 45]  # fmt: skip
        out[c] = ok or [n for n in COLOURS if n != c]
    return out


def _contrasting(rng: np.random.Generator, colour: str) -> str:
    """A palette colour that stands out from ``colour`` (for prints and stripes)."""
    names = _CONTRAST[colour]
    return names[int(rng.integers(len(names)))]


_CONTRAST = _contrast_table()


@dataclass(frozen=True)
class SleeveGeom:
    """One sleeve in garment units, for the garment's left side mirrored by ``side``.

    The sleeve is the trapezoid X(a, b) = P + a * length * dir + b * width(a) * n_in, a, b in [0, 1]:
    ``P`` the shoulder point, ``dir`` along the sleeve's top edge, ``n_in`` towards the underarm.
    """

    side: int  # +1: image-right sleeve (the wearer's left), -1: image-left (wearer's right)
    p: tuple[float, float]
    dir: tuple[float, float]
    n_in: tuple[float, float]
    length: float
    w0: float
    w1: float

    def point(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Garment-unit coordinates of sleeve parameters (a along, b across); arrays broadcast."""
        w = self.w0 + (self.w1 - self.w0) * a
        x = self.p[0] + a * (self.length * self.dir[0]) + b * w * self.n_in[0]
        y = self.p[1] + a * (self.length * self.dir[1]) + b * w * self.n_in[1]
        return x, y

    def corners(self) -> np.ndarray:
        a = np.array([0.0, 1.0, 1.0, 0.0])
        b = np.array([0.0, 0.0, 1.0, 1.0])
        x, y = self.point(a, b)
        return np.stack([x, y], axis=1)


@dataclass(frozen=True)
class GarmentSpec:
    """Everything that defines one upper garment (resolution-independent)."""

    garment_id: int
    category: str
    colour: str
    pattern: str
    pattern_colour: str
    neckline: str
    sleeve: str
    rib: bool
    hw_sh: float  # panel half-width at the shoulder points (garment units)
    hw_hem: float
    drop: float  # shoulder slope: neck opening is `drop` above the shoulder points
    length: float  # shoulder points to hem (garment units)
    hem_t: float  # worn hem position, fraction of the shoulder-to-hip length
    neck_w: float
    neck_depth: float
    back_depth: float
    strap: float  # tank top: strap width
    armhole_depth: float
    sleeves: tuple[SleeveGeom, ...]
    k: float  # canonical units per garment unit in the in-shop picture
    y_anchor: float  # canonical y of garment y_u = 0 in the in-shop picture
    pattern_params: dict = field(default_factory=dict)

    @property
    def rgb(self) -> np.ndarray:
        return np.array(COLOURS[self.colour], dtype=np.float32)

    @property
    def pattern_rgb(self) -> np.ndarray:
        return np.array(COLOURS.get(self.pattern_colour, COLOURS[self.colour]), dtype=np.float32)

    def hw_ref(self, y: np.ndarray) -> np.ndarray:
        """Body-fitting half-width of the panel at garment height y (the side seams)."""
        t = smoothstep(y / self.length)
        return (self.hw_sh + (self.hw_hem - self.hw_sh) * t).astype(np.float32)

    def attributes(self) -> dict[str, str]:
        out = {
            "category": self.category,
            "colour": self.colour,
            "pattern": self.pattern,
            "pattern_colour": self.pattern_colour,
            "neckline": self.neckline,
            "sleeve": self.sleeve,
        }
        if self.pattern == "logo":
            out["print"] = self.pattern_params["logo"]
        elif self.pattern == "text":
            out["print"] = self.pattern_params["word"]
        return out


def sample_garment(
    seed: int,
    *,
    category: str | None = None,
    colour: str | None = None,
    pattern: str | None = None,
    pattern_colour: str | None = None,
) -> GarmentSpec:
    """Draw a garment from ``seed``; any attribute given overrides the random choice."""
    rng = np.random.default_rng([int(seed), 2])
    cat = str(rng.choice(list(CATEGORIES)))
    col = str(rng.choice(list(COLOURS)))
    pat = str(rng.choice(PATTERNS, p=_PATTERN_P))
    pcol = _contrasting(rng, col)
    cat = _check("category", category, CATEGORIES) or cat
    col = _check("colour", colour, COLOURS) or col
    pat = _check("pattern", pattern, PATTERNS) or pat
    if pattern_colour is not None:
        if pattern_colour != "none":
            _check("pattern_colour", pattern_colour, COLOURS)
        pcol = pattern_colour
    elif colour is not None:
        pcol = _contrasting(rng, col)
    if pat == "solid":
        pcol = "none"
    elif pcol == "none":
        pcol = _contrasting(rng, col)

    shape = _SHAPES[cat]
    u = rng.uniform
    fit = u(*shape["fit"])
    hw_sh = _REF_SHOULDER * fit
    hw_hem = hw_sh + u(-1.5, 3.5) * (1.6 if cat == "sweater" else 1.0)
    drop = u(4.0, 6.0)
    hem_t = u(*shape["hem"])
    length = hem_t * _REF_TORSO + 2.0
    neckline = shape["neckline"]
    neck_w = {"crew": u(9.0, 10.5), "v": u(9.5, 11.0), "scoop": u(11.5, 13.5)}[neckline]
    neck_depth = {"crew": u(5.5, 7.5), "v": u(17.0, 23.0), "scoop": u(12.0, 17.0)}[neckline]
    if cat == "tank-top":
        neck_w, neck_depth = u(11.0, 13.0), u(16.0, 22.0)
    back_depth = u(1.8, 2.8)
    strap = u(6.0, 8.5)
    armhole_depth = u(0.36, 0.42) * _REF_TORSO

    sleeve = shape["sleeve"]
    sleeves: tuple[SleeveGeom, ...] = ()
    reach_x = hw_hem + 2.0
    reach_y = length
    if sleeve != "none":
        if sleeve == "short":
            length_s = _REF_UPPER_ARM * u(0.5, 0.68)
            theta = math.radians(u(30.0, 42.0))
            w0 = u(17.5, 20.0)
            w1 = w0 * u(0.86, 0.95)
        elif sleeve == "three-quarter":
            length_s = _REF_UPPER_ARM + 38.0 * u(0.45, 0.6)
            theta = math.radians(u(56.0, 62.0))
            w0 = u(16.5, 18.0)
            w1 = u(11.5, 13.0)
        else:
            length_s = _REF_ARM * u(0.97, 1.02)
            theta = math.radians(u(62.0, 68.0))
            w0 = u(16.5, 18.0)
            w1 = u(10.0, 11.5) + (1.5 if cat == "sweater" else 0.0)
        geoms = []
        for side in (1, -1):
            d = (side * math.cos(theta), math.sin(theta))
            n_in = (-side * math.sin(theta), math.cos(theta))
            geoms.append(SleeveGeom(side, (side * (hw_sh - 0.3), 0.0), d, n_in, length_s, w0, w1))
        sleeves = tuple(geoms)
        c = geoms[0].corners()
        reach_x = max(reach_x, float(np.abs(c[:, 0]).max()) + 1.0)
        reach_y = max(reach_y, float(c[:, 1].max()) + 1.0)
    # in-shop scale: as large as fits the canvas with a margin
    k = min(u(1.42, 1.58), (CANON_W / 2 - 7.0) / reach_x, (CANON_H - 26.0) / (reach_y + drop))
    y_anchor = CANON_H / 2 - k * (reach_y - drop) / 2 + u(-3.0, 3.0)

    params: dict = {}
    if pat in ("horizontal stripes", "vertical stripes", "diagonal stripes", "checks"):
        params["period"] = u(5.0, 9.5) if pat != "checks" else u(6.0, 10.0)
        params["duty"] = u(0.3, 0.5)
        params["phase"] = u(0.0, 1.0)
        params["angle"] = math.radians(float(rng.choice([-1, 1])) * u(35.0, 55.0))
    elif pat == "polka dots":
        params["period"] = u(6.5, 10.0)
        params["radius"] = params["period"] * u(0.18, 0.3)
        params["phase"] = (u(0.0, 1.0), u(0.0, 1.0))
    elif pat == "gradient":
        params["direction"] = str(rng.choice(["down", "up"]))
    elif pat == "logo":
        params["logo"] = str(rng.choice(LOGOS))
        params["size"] = u(8.5, 12.0)
        params["centre"] = (u(-3.0, 3.0) if rng.random() < 0.7 else u(8.0, 12.0) * rng.choice([-1, 1]), u(0.26, 0.34))
    elif pat == "text":
        params["word"] = str(rng.choice(WORDS))
        params["height"] = u(11.0, 14.0)
        params["centre"] = (u(-2.0, 2.0), u(0.28, 0.36))
    # fabric: in-shop wrinkles
    params["wrinkle"] = (u(0.0, 6.3), u(0.0, 6.3), u(0.07, 0.11), u(0.04, 0.07))
    return GarmentSpec(
        garment_id=int(seed), category=cat, colour=col, pattern=pat, pattern_colour=pcol, neckline=neckline,
        sleeve=sleeve, rib=shape["rib"], hw_sh=hw_sh, hw_hem=hw_hem, drop=drop, length=length, hem_t=hem_t,
        neck_w=neck_w, neck_depth=neck_depth, back_depth=back_depth, strap=strap, armhole_depth=armhole_depth,
        sleeves=sleeves, k=k, y_anchor=y_anchor, pattern_params=params,
    )


_PATTERN_P = np.array([0.2, 0.12, 0.09, 0.08, 0.11, 0.1, 0.08, 0.11, 0.11])
_PATTERN_P = _PATTERN_P / _PATTERN_P.sum()


def _check(name: str, value, valid) -> str | None:
    if value is None:
        return None
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not a known garment {name}; expected one of: {', '.join(valid)}")
    return str(value)


# ----------------------------------------------------------------------------------------------
# Garment shape (signed distances in garment units)
# ----------------------------------------------------------------------------------------------


def panel_sdf(g: GarmentSpec, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Body panel of the garment (no neckline cut), including a tank top's armholes."""
    ax = np.abs(x)
    slope = g.drop / max(g.hw_sh - g.neck_w, 1.0)
    y_top = -g.drop + slope * np.clip(ax - g.neck_w, 0.0, None)
    d_top = (y_top - y) / math.sqrt(1.0 + slope * slope)
    d_side = ax - g.hw_ref(y)
    hem = g.length + 1.2 * (ax / max(g.hw_hem, 1.0)) ** 2
    d = np.maximum(np.maximum(d_top, d_side), y - hem)
    if g.sleeve == "none":
        # armholes: an ellipse cut out of each top corner leaves straps next to the neckline
        cx = g.hw_sh + 3.0
        rx = cx - (g.neck_w + g.strap)
        hole = ellipse_local(ax - cx, y + g.drop + 2.0, rx, g.armhole_depth)
        d = np.maximum(d, -hole)
    return d


def neckline_sdf(g: GarmentSpec, x: np.ndarray, y: np.ndarray, back: bool = False) -> np.ndarray:
    """Neck opening (negative inside): the front neckline, or the (higher) back neckline."""
    yy = y + g.drop
    if back:
        return ellipse_local(x, yy, g.neck_w, g.back_depth)
    if g.neckline == "v":
        # a V: two lines from the neck corners to the point, rounded into the back neckline at the top
        ax = np.abs(x)
        nrm = math.hypot(g.neck_depth, g.neck_w)
        d_v = (ax * g.neck_depth + yy * g.neck_w - g.neck_w * g.neck_depth) / nrm
        return np.minimum(d_v, ellipse_local(x, yy, g.neck_w, g.back_depth + 2.0))
    return ellipse_local(x, yy, g.neck_w, g.neck_depth)


# ----------------------------------------------------------------------------------------------
# Fabric texture
# ----------------------------------------------------------------------------------------------


def _stripes(coord: np.ndarray, period: float, duty: float, phase: float, px: float) -> np.ndarray:
    """Coverage of stripes of width duty*period every period along ``coord``, anti-aliased for a
    pixel of size ``px`` (fading to the mean coverage when stripes are narrower than ~2 pixels)."""
    f = np.mod(coord / period + phase, 1.0)
    d = np.where(f < duty, np.minimum(f, duty - f), -np.minimum(f - duty, 1.0 - f)) * period
    a = np.clip(0.5 + d / px, 0.0, 1.0)
    fade = float(np.clip((period * duty / px - 1.0) / 1.5, 0.0, 1.0))
    return (duty + fade * (a - duty)).astype(np.float32)


def _logo_sdf(name: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    if name == "circle":
        rr = np.sqrt(x * x + y * y)
        return np.maximum(rr - r, r * 0.55 - rr)  # a ring
    if name == "heart":
        xs, ys = x / r, -(y / r) + 0.15
        f = (xs * xs + ys * ys - 1.0) ** 3 - xs * xs * ys**3
        return (np.cbrt(f) * r * 0.55).astype(np.float32)
    if name == "star":
        ang = np.arange(10) * (math.pi / 5) - math.pi / 2
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.42)
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    elif name == "diamond":
        pts = np.array([[0, -r], [0.7 * r, 0], [0, r], [-0.7 * r, 0]])
    elif name == "triangle":
        pts = np.array([[0, -r], [0.9 * r, 0.65 * r], [-0.9 * r, 0.65 * r]])
    else:  # lightning bolt
        pts = np.array([[0.25, -1.0], [-0.5, 0.12], [-0.02, 0.12], [-0.3, 1.0], [0.55, -0.2], [0.05, -0.2], [0.4, -1.0]])
        pts = pts * r
    return polygon(x, y, pts)


def _word_bitmap(word: str) -> np.ndarray:
    cols = []
    for i, ch in enumerate(word):
        glyph = np.array([[c == "#" for c in row] for row in _GLYPHS[ch]], dtype=np.float32)
        if i:
            cols.append(np.zeros((7, 1), np.float32))
        cols.append(glyph)
    bm = np.concatenate(cols, axis=1)
    return np.pad(bm, 1)


def _text_alpha(word: str, x: np.ndarray, y: np.ndarray, cell: float, px: float) -> np.ndarray:
    """Coverage of ``word`` in 5x7 block letters, cell size ``cell``, centred at the origin."""
    bm = _word_bitmap(word)
    h, w = bm.shape
    # continuous bitmap coordinates (cell centres at integers)
    bx = x / cell + w / 2 - 0.5
    by = y / cell + h / 2 - 0.5
    x0 = np.clip(np.floor(bx), 0, w - 2).astype(np.int64)
    y0 = np.clip(np.floor(by), 0, h - 2).astype(np.int64)
    fx = np.clip(bx - x0, 0, 1)
    fy = np.clip(by - y0, 0, 1)
    inside = (bx >= -0.5) & (bx <= w - 0.5) & (by >= -0.5) & (by <= h - 0.5)
    v = (bm[y0, x0] * (1 - fx) * (1 - fy) + bm[y0, x0 + 1] * fx * (1 - fy)
         + bm[y0 + 1, x0] * (1 - fx) * fy + bm[y0 + 1, x0 + 1] * fx * fy)
    # sharpen the bilinear field into crisp letters with slightly rounded corners
    a = np.clip((v - 0.5) * (cell / px) * 1.4 + 0.5, 0.0, 1.0) * inside
    return a.astype(np.float32)


def fabric(g: GarmentSpec, x: np.ndarray, y: np.ndarray, px: float) -> np.ndarray:
    """Fabric colour (h, w, 3) float32 at garment-unit coordinates x (1, w) and y (h, 1) (increasing);
    ``px`` = one pixel in garment units."""
    base = g.rgb
    pc = g.pattern_rgb
    p = g.pattern_params
    shape = np.broadcast_shapes(np.shape(x), np.shape(y))
    a = None
    if g.pattern == "horizontal stripes":
        a = _stripes(y, p["period"], p["duty"], p["phase"], px)
    elif g.pattern == "vertical stripes":
        a = _stripes(x, p["period"], p["duty"], p["phase"], px)
    elif g.pattern == "diagonal stripes":
        c, s = math.cos(p["angle"]), math.sin(p["angle"])
        a = _stripes(x * c + y * s, p["period"], p["duty"], p["phase"], px)
    elif g.pattern == "checks":
        a1 = _stripes(x, p["period"], p["duty"] + 0.1, p["phase"], px)
        a2 = _stripes(y, p["period"], p["duty"] + 0.1, p["phase"], px)
        a = 0.55 * a1 + 0.55 * a2 - 0.1 * a1 * a2
    elif g.pattern == "polka dots":
        per, r = p["period"], p["radius"]
        yy = y / per + p["phase"][1]
        row = np.floor(yy + 0.5)
        xx = x / per + p["phase"][0] + 0.5 * np.mod(row, 2.0)
        dx = (xx - np.floor(xx + 0.5)) * per
        dy = (yy - row) * per
        a = np.clip(0.5 + (r - np.sqrt(dx * dx + dy * dy)) / px, 0.0, 1.0)
        fade = float(np.clip((2 * r / px - 1.0) / 1.5, 0.0, 1.0))
        a = (math.pi * r * r / per**2) * (1 - fade) + fade * a
    elif g.pattern == "gradient":
        t = smoothstep((y + g.drop) / (g.length + g.drop))
        a = t if p["direction"] == "down" else 1.0 - t
    elif g.pattern in ("logo", "text"):
        # a print on the chest: evaluated only in its bounding box (x, y are (1, w) and (h, 1) here)
        cx, cy = p["centre"]
        cy = cy * g.length
        if g.pattern == "logo":
            rx = ry = p["size"] * 1.1 + 2 * px
        else:
            cell = p["height"] / 7.0
            rx, ry = (len(p["word"]) * 3.0 + 1.5) * cell + 2 * px, 4.5 * cell + 2 * px
        xs, ys = np.ravel(x), np.ravel(y)
        if np.ndim(x) != 2 or np.ndim(y) != 2 or np.shape(x)[0] != 1 or np.shape(y)[1] != 1:
            raise ValueError("fabric: x and y must have shapes (1, w) and (h, 1) for prints")
        c0, c1 = np.searchsorted(xs, [cx - rx, cx + rx])
        r0, r1 = np.searchsorted(ys, [cy - ry, cy + ry])
        a = np.zeros(shape, np.float32)
        if c1 > c0 and r1 > r0:
            sx, sy = x[:, c0:c1] - cx, y[r0:r1, :] - cy
            if g.pattern == "logo":
                d = _logo_sdf(p["logo"], *np.broadcast_arrays(sx, sy), p["size"])
                a[r0:r1, c0:c1] = np.clip(0.5 - d / px, 0.0, 1.0)
            else:
                a[r0:r1, c0:c1] = _text_alpha(p["word"], *np.broadcast_arrays(sx, sy), cell, px)
    if a is None:
        return np.broadcast_to(base, shape + (3,)).astype(np.float32)
    a = np.broadcast_to(a, shape)[..., None]
    return (base + a * (pc - base)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# The in-shop picture
# ----------------------------------------------------------------------------------------------


@dataclass
class InShop:
    """The in-shop garment and what the worn garment samples from it.

    ``cloth`` (H, W, 3) uint8 on white; ``mask`` (H, W) uint8 {0,1}; ``colour`` (H, W, 3) uint8: the
    garment's colour layer (equal to ``cloth`` wherever the garment fully covers a pixel, and the
    fabric continued beyond the silhouette elsewhere); ``front`` (H, W) float32: coverage of the
    garment's front (no neck opening, no inner back collar).
    """

    cloth: np.ndarray
    mask: np.ndarray
    colour: np.ndarray
    front: np.ndarray
    frame: Frame
    spec: GarmentSpec

    def to_pixel(self, xu: np.ndarray, yu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Garment units to in-shop pixel index coordinates."""
        f, g = self.frame, self.spec
        px = (np.float32(CANON_W / 2) + np.float32(g.k) * xu) * np.float32(f.s) + np.float32(f.ox - 0.5)
        py = (np.float32(g.y_anchor) + np.float32(g.k) * yu) * np.float32(f.s) + np.float32(f.oy - 0.5)
        return px, py


def render_inshop(g: GarmentSpec, frame: Frame) -> InShop:
    """Draw garment ``g`` flat, front view, centred on a white (H, W) canvas (VITON-HD style)."""
    h, w = frame.height, frame.width
    k = g.k
    cx = CANON_W / 2
    hx = g.hw_hem + 3.0
    top, bottom = -g.drop - 2.0, g.length + 3.0
    for sl in g.sleeves:
        c = sl.corners()
        hx = max(hx, float(np.abs(c[:, 0]).max()) + 2.0)
        bottom = max(bottom, float(c[:, 1].max()) + 2.0)
    win = frame.window(cx - k * hx, cx + k * hx, g.y_anchor + k * top, g.y_anchor + k * bottom, pad=2.0)
    colour = np.full((h, w, 3), 255, dtype=np.uint8)
    front = np.zeros((h, w), dtype=np.float32)
    cloth = np.full((h, w, 3), 255, dtype=np.uint8)
    mask = np.zeros((h, w), dtype=np.uint8)
    if win is None:  # pragma: no cover - the garment always fits the canvas
        return InShop(cloth, mask, colour, front, frame, g)
    U, V = frame.coords(win)
    xs = (U - np.float32(cx)) / np.float32(k)  # (1, w)
    ys = (V - np.float32(g.y_anchor)) / np.float32(k)  # (h, 1)
    x, y = np.broadcast_arrays(xs, ys)
    px = 1.0 / (frame.s * k)  # one pixel in garment units

    def cov(d):
        return frame.alpha(d * np.float32(k))

    d_panel = panel_sdf(g, x, y)
    d_all = d_panel
    sleeve_params = []
    for sl in g.sleeves:
        d_s = convex_polygon(x, y, sl.corners())
        d_all = np.minimum(d_all, d_s)
        sleeve_params.append(d_s)
    a_all = cov(d_all)

    tex = fabric(g, xs, ys, px)
    # soft wrinkles of a garment lying flat (separable), darker towards the silhouette
    p1, p2, f1, f2 = g.pattern_params["wrinkle"]
    shade = 1.0 + 0.035 * np.sin(xs * f1 + p1) * np.sin(ys * f2 + p2)
    shade = shade * (1.0 - 0.09 * np.exp(np.minimum(d_all, 0.0) / 3.0))
    # stitching: armhole seams, hem and sleeve hems; ribbing on sweaters
    seam = np.zeros(x.shape, dtype=np.float32)
    for sl, d_s in zip(g.sleeves, sleeve_params):
        c = sl.corners()
        # armhole seam: where the panel's edge runs inside the sleeve
        seam = np.maximum(seam, np.clip(1.0 - np.abs(d_panel + 0.3) / max(px, 0.5), 0, 1) * (d_s < -0.3))
        d_cuff = (x - c[1, 0]) * sl.dir[0] + (y - c[1, 1]) * sl.dir[1]  # negative inside
        band = 4.0 if g.rib else 2.2
        in_sleeve = d_s < 0.5
        seam = np.maximum(seam, 0.6 * np.clip(1.0 - np.abs(d_cuff + band) / max(px, 0.45), 0, 1) * in_sleeve)
        if g.rib:
            rib = 0.86 + 0.06 * np.sin((x * sl.n_in[0] + y * sl.n_in[1]) * 2.2)
            shade = shade * np.where((d_cuff > -band) & in_sleeve, rib, 1.0)
    hem_band = 4.5 if g.rib else 2.2
    d_hem = y - (g.length + 1.2 * (np.abs(xs) / max(g.hw_hem, 1.0)) ** 2)
    seam = np.maximum(seam, 0.6 * np.clip(1.0 - np.abs(d_hem + hem_band) / max(px, 0.45), 0, 1) * (d_panel < 0.5))
    if g.rib:
        shade = shade * np.where((d_hem > -hem_band) & (d_panel < 0.5), 0.86 + 0.06 * np.sin(xs * 2.2), 1.0)
    shade = (shade * (1.0 - 0.22 * seam)).astype(np.float32)

    # the neck opening, computed in a small window around it: the front opening shows the inside of
    # the back (darker), the back opening is not garment at all; a rim (neck band) borders the front
    a_front_cut = np.zeros(x.shape, np.float32)
    a_back_cut = np.zeros(x.shape, np.float32)
    nwin = frame.window(cx - k * (g.neck_w + 4.0), cx + k * (g.neck_w + 4.0), g.y_anchor + k * (-g.drop - 4.0),
                        g.y_anchor + k * (-g.drop + g.neck_depth + 5.0), pad=2.0)
    if nwin is not None:
        r0 = max(nwin[0].start - win[0].start, 0)
        r1 = min(nwin[0].stop - win[0].start, x.shape[0])
        c0 = max(nwin[1].start - win[1].start, 0)
        c1 = min(nwin[1].stop - win[1].start, x.shape[1])
        sub = (slice(r0, r1), slice(c0, c1))
        nx, ny = xs[:, c0:c1], ys[r0:r1, :]
        d_front_neck = neckline_sdf(g, nx, ny)
        a_fc = cov(d_front_neck)
        a_front_cut[sub] = a_fc
        a_back_cut[sub] = cov(neckline_sdf(g, nx, ny, back=True))
        band_w = 2.6 if g.neckline != "v" else 2.2
        in_band = np.clip((band_w - d_front_neck) / max(px, 0.5), 0, 1) * (1 - a_fc)
        shade[sub] *= (1.0 - 0.14 * in_band) * (1.0 - 0.42 * a_fc)  # 0.58: the inside of the back
    col = tex * shade[..., None]
    col_q = np.rint(np.minimum(col, 255.0)).astype(np.uint8)

    a_mask = a_all * (1.0 - a_back_cut)
    a_front = a_all * (1.0 - a_front_cut)
    cl = 255.0 - a_mask[..., None] * (255.0 - col_q.astype(np.float32))
    colour[win] = col_q
    cloth[win] = np.rint(cl).astype(np.uint8)
    mask[win] = (a_mask >= 0.5).astype(np.uint8)
    front[win] = a_front
    return InShop(cloth, mask, colour, front, frame, g)
