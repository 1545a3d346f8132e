"""Rasterisation helpers for the SynthVTON renderer (:mod:`vtonlab.data.synth`).

Every shape is described in a *canonical frame* of 192 x 256 units (W x H, y down), the
resolution the try-on papers use, so that one seed depicts the same sample at every output size.
A :class:`Frame` maps canonical units to the pixels of an ``(H, W)`` image: pixel ``(i, j)``
has its centre at canonical ``((j + 0.5 - ox) / s, (i + 0.5 - oy) / s)``.

Shapes are signed distance fields (negative inside, canonical units) evaluated only inside a
bounding window of the image; :meth:`Frame.alpha` turns a distance into a one-pixel-wide
anti-aliased coverage. A :class:`Canvas` composites coverages back to front (painter's
algorithm) and keeps, pixel by pixel, the label of the top-most layer that covers at least half
of the pixel, which makes the parsing map consistent with the picture by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CANON_W = 192.0
CANON_H = 256.0

Window = tuple[slice, slice]


@dataclass(frozen=True)
class Frame:
    """Canonical (192 x 256) to pixel mapping for an image of ``height x width`` pixels."""

    height: int
    width: int

    @property
    def s(self) -> float:
        """Pixels per canonical unit (the canonical frame is fitted inside the image)."""
        return min(self.height / CANON_H, self.width / CANON_W)

    @property
    def ox(self) -> float:
        return (self.width - CANON_W * self.s) / 2.0

    @property
    def oy(self) -> float:
        return (self.height - CANON_H * self.s) / 2.0

    def window(self, u0: float, u1: float, v0: float, v1: float, pad: float = 1.5) -> Window | None:
        """Pixel slices covering the canonical box ``[u0, u1] x [v0, v1]`` (+ ``pad`` pixels), or None."""
        s, ox, oy = self.s, self.ox, self.oy
        j0 = max(0, math.floor(u0 * s + ox - 0.5 - pad))
        j1 = min(self.width, math.ceil(u1 * s + ox - 0.5 + pad) + 1)
        i0 = max(0, math.floor(v0 * s + oy - 0.5 - pad))
        i1 = min(self.height, math.ceil(v1 * s + oy - 0.5 + pad) + 1)
        if j0 >= j1 or i0 >= i1:
            return None
        return slice(i0, i1), slice(j0, j1)

    def window_around(self, pts: np.ndarray, margin: float) -> Window | None:
        """Window around canonical points ``pts`` (N, 2) grown by ``margin`` canonical units."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        lo = pts.min(axis=0) - margin
        hi = pts.max(axis=0) + margin
        return self.window(lo[0], hi[0], lo[1], hi[1])

    def coords(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        """Canonical coordinates of the pixel centres of ``win``: U (1, w) and V (h, 1), float32."""
        rows, cols = win
        u = (np.arange(cols.start, cols.stop, dtype=np.float32) + np.float32(0.5 - self.ox)) / np.float32(self.s)
        v = (np.arange(rows.start, rows.stop, dtype=np.float32) + np.float32(0.5 - self.oy)) / np.float32(self.s)
        return u[None, :], v[:, None]

    def to_pixel(self, pts: np.ndarray) -> np.ndarray:
        """Canonical points (..., 2) to pixel index coordinates (x = column, y = row; centre of pixel 0 is 0)."""
        pts = np.asarray(pts, dtype=np.float64)
        out = np.empty_like(pts)
        out[..., 0] = pts[..., 0] * self.s + self.ox - 0.5
        out[..., 1] = pts[..., 1] * self.s + self.oy - 0.5
        return out

    def alpha(self, sdf: np.ndarray) -> np.ndarray:
        """Coverage in [0, 1] of a signed distance (canonical units): a one-pixel linear ramp."""
        a = np.float32(0.5) - sdf * np.float32(self.s)
        np.maximum(a, 0.0, out=a)
        np.minimum(a, 1.0, out=a)
        return a.astype(np.float32, copy=False)


class Canvas:
    """Back-to-front compositing of coverage layers with labels, garment flow and shading.

    ``img`` (H, W, 3) float32 in [0, 255]; ``parse`` (H, W) uint8 labels; ``flow`` (H, W, 2) in-shop
    pixel coordinates of the worn garment; ``flow_ok`` (H, W) bool; ``shading`` (H, W) float32, the
    multiplicative factor applied to the sampled in-shop colour at garment pixels.
    """

    def __init__(self, background: np.ndarray) -> None:
        h, w, _ = background.shape
        self.img = np.ascontiguousarray(background, dtype=np.float32)  # owned: the caller passes a fresh array
        self.parse = np.zeros((h, w), dtype=np.uint8)
        self.flow = np.zeros((h, w, 2), dtype=np.float32)
        self.flow_ok = np.zeros((h, w), dtype=bool)
        self.shading = np.ones((h, w), dtype=np.float32)

    def paint(
        self,
        win: Window,
        alpha: np.ndarray,
        colour: np.ndarray,
        label: int | None,
        flow: np.ndarray | None = None,
        shading: np.ndarray | None = None,
    ) -> None:
        """Composite ``colour`` with coverage ``alpha`` (h, w) over ``win``.

        ``label`` is written where ``alpha >= 0.5`` (None: a decoration that keeps labels, e.g. eyes).
        A layer with ``flow`` (h, w, 2) is garment: it records flow and shading where it wins;
        any other labelled layer hides the garment below it (flow becomes invalid there).
        """
        region = self.img[win]
        colour = np.asarray(colour, dtype=np.float32)
        if flow is not None:
            # garment over garment (a sleeve over the body panel): a hard edge, so that every garment
            # pixel shows exactly one garment position and the flow stays exact
            alpha = np.where(self.flow_ok[win], (alpha >= 0.5).astype(np.float32), alpha)
        region += alpha[..., None] * (colour - region)
        if label is None:
            return
        won = alpha >= 0.5
        self.parse[win][won] = label
        if flow is None:
            self.flow_ok[win][won] = False
        else:
            self.flow[win][won] = flow[won]
            self.flow_ok[win][won] = True
            self.shading[win][won] = shading[won] if shading is not None else 1.0

    def darken(self, win: Window, factor: np.ndarray) -> None:
        """Multiply colours by ``factor`` (h, w) (a cast shadow); garment shading records it too."""
        self.img[win] *= factor[..., None]
        ok = self.flow_ok[win]
        self.shading[win][ok] *= factor[ok]


# ----------------------------------------------------------------------------------------------
# Signed distances (canonical units, negative inside). U is (1, w), V is (h, 1); results (h, w).
# ----------------------------------------------------------------------------------------------


def segment(U: np.ndarray, V: np.ndarray, a, b) -> tuple[np.ndarray, np.ndarray]:
    """Distance to segment a-b and the unclamped position t along it (0 at a, 1 at b)."""
    ax, ay = float(a[0]), float(a[1])
    dx, dy = float(b[0]) - ax, float(b[1]) - ay
    l2 = max(dx * dx + dy * dy, 1e-9)
    px = U - np.float32(ax)
    py = V - np.float32(ay)
    t = (px * np.float32(dx / l2) + py * np.float32(dy / l2)).astype(np.float32)
    tc = np.clip(t, 0.0, 1.0)
    qx = px - tc * np.float32(dx)
    qy = py - tc * np.float32(dy)
    return np.sqrt(qx * qx + qy * qy), t


def capsule(U, V, a, b, ra: float, rb: float) -> tuple[np.ndarray, np.ndarray]:
    """Tapered capsule from a (radius ra) to b (radius rb): signed distance and position t."""
    d, t = segment(U, V, a, b)
    tc = np.clip(t, 0.0, 1.0)
    return d - (np.float32(ra) + np.float32(rb - ra) * tc), t


def limb(U, V, a, b, ra: float, rb: float) -> tuple[np.ndarray, np.ndarray]:
    """Tapered capsule a-b: signed distance and the signed lateral offset divided by the local radius
    (q in [-1, 1] inside; positive on the right of the direction a -> b), for cylinder shading."""
    d, t = segment(U, V, a, b)
    tc = np.clip(t, 0.0, 1.0)
    r = np.float32(ra) + np.float32(rb - ra) * tc
    dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
    n = math.hypot(dx, dy) + 1e-9
    lat = (U - np.float32(a[0])) * np.float32(dy / n) - (V - np.float32(a[1])) * np.float32(dx / n)
    return d - r, lat / r


def ellipse(U, V, centre, rx: float, ry: float, angle: float = 0.0) -> np.ndarray:
    """First-order signed distance to a rotated ellipse (exact sign, accurate near the boundary)."""
    x, y = local(U, V, centre, angle)
    return ellipse_local(x, y, rx, ry)


def ellipse_local(x: np.ndarray, y: np.ndarray, rx, ry) -> np.ndarray:
    """Signed distance to the axis-aligned ellipse |x/rx|^2 + |y/ry|^2 = 1 (rx, ry may be arrays)."""
    qx = x / rx
    qy = y / ry
    f = qx * qx + qy * qy - 1.0
    g = 2.0 * np.sqrt((qx / rx) ** 2 + (qy / ry) ** 2) + 1e-6
    return (f / g).astype(np.float32, copy=False)


def local(U, V, centre, angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to ``centre`` in a frame rotated by ``angle`` (radians, image y down)."""
    x = U - np.float32(centre[0])
    y = V - np.float32(centre[1])
    if angle == 0.0:
        return np.broadcast_arrays(x, y)
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    return x * c + y * s, -x * s + y * c


def convex_polygon(U, V, pts: np.ndarray) -> np.ndarray:
    """Signed distance (exact inside, approximate at outer corners) to a convex polygon (any winding)."""
    pts = np.asarray(pts, dtype=np.float64)
    n = len(pts)
    area = 0.5 * sum(pts[i, 0] * pts[(i + 1) % n, 1] - pts[(i + 1) % n, 0] * pts[i, 1] for i in range(n))
    sign = 1.0 if area > 0 else -1.0
    out = None
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        ex, ey = b - a
        norm = math.hypot(ex, ey) + 1e-12
        # outward normal for counter-clockwise (in y-down coordinates: area > 0) winding
        nx, ny = sign * ey / norm, -sign * ex / norm
        d = (U - np.float32(a[0])) * np.float32(nx) + (V - np.float32(a[1])) * np.float32(ny)
        out = d if out is None else np.maximum(out, d)
    return out


def polygon(U, V, pts: np.ndarray) -> np.ndarray:
    """Exact signed distance to a simple (possibly concave) polygon: edge distance, even-odd sign."""
    pts = np.asarray(pts, dtype=np.float64)
    n = len(pts)
    dist = None
    inside = None
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        d, _ = segment(U, V, a, b)
        dist = d if dist is None else np.minimum(dist, d)
        ay, by = a[1], b[1]
        if ay == by:
            continue
        cond = (V >= min(ay, by)) & (V < max(ay, by))
        xcross = a[0] + (V - ay) * ((b[0] - a[0]) / (by - ay))
        hit = cond & (U < xcross)
        inside = hit if inside is None else inside ^ hit
    if inside is None:
        return dist
    return np.where(inside, -dist, dist).astype(np.float32)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def smooth_profile(t: np.ndarray, knots_t, knots_v) -> np.ndarray:
    """Piecewise smoothstep interpolation through (knots_t, knots_v), constant outside (C1, no overshoot)."""
    kt = np.asarray(knots_t, dtype=np.float32)
    kv = np.asarray(knots_v, dtype=np.float32)
    out = np.full(np.shape(t), kv[0], dtype=np.float32)
    for i in range(len(kt) - 1):
        w = smoothstep((t - kt[i]) / (kt[i + 1] - kt[i]))
        out = out + w * (kv[i + 1] - kv[i])
    return out


def smax(a, b, k: float):
    """Smooth maximum of a and b with blend width k."""
    d = a - b
    return 0.5 * (a + b + np.sqrt(d * d + k * k))


class BilinearTaps:
    """Indices and weights of bilinear sampling at pixel index coordinates (x, y), the rule of
    ``grid_sample(..., mode="bilinear", align_corners=True)``; coordinates are clamped to the image,
    which is where every garment position lies. Reuse one set of taps for several images."""

    def __init__(self, x: np.ndarray, y: np.ndarray, height: int, width: int) -> None:
        x = np.clip(x, 0.0, width - 1.0)
        y = np.clip(y, 0.0, height - 1.0)
        x0 = np.minimum(np.floor(x), width - 2.0)
        y0 = np.minimum(np.floor(y), height - 2.0)
        self.fx = (x - x0).astype(np.float32)[..., None]
        self.fy = (y - y0).astype(np.float32)[..., None]
        self.idx = (y0.astype(np.int64) * width + x0.astype(np.int64))
        self.width = width

    def sample(self, image: np.ndarray) -> np.ndarray:
        """``image`` (H, W[, C]) sampled at the taps: shape of x (+ (C,)), float32."""
        flat = image.reshape(-1, image.shape[2] if image.ndim == 3 else 1)
        i, w = self.idx, self.width
        top = flat[i].astype(np.float32)
        top += self.fx * (flat[i + 1] - top)
        bot = flat[i + w].astype(np.float32)
        bot += self.fx * (flat[i + w + 1] - bot)
        out = top + self.fy * (bot - top)
        return out[..., 0] if image.ndim == 2 else out


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample ``image`` (H, W[, C]) at pixel index coordinates (x, y) like ``grid_sample``
    (bilinear, align_corners=True; coordinates clamped to the image). Returns float32."""
    return BilinearTaps(x, y, image.shape[0], image.shape[1]).sample(image)
