"""The worn garment: a dense, known deformation of the in-shop garment onto the body.

Every person pixel the garment may cover is mapped *backwards* to garment units, hence to a
position in the in-shop picture; the worn colour is the in-shop colour layer sampled there with
exactly the bilinear rule of ``torch.nn.functional.grid_sample(..., align_corners=True)``, times
a shading factor. The same positions, normalised to [-1, 1], are the ground-truth flow.

- Torso: the person's torso frame ``(t, l)`` (down the spine, across) maps to garment units by
  ``y_u = (t + lift) / r_v`` and ``x_u = l * hw_ref(y_u) / G(t)``: the panel's side seams
  ``|x_u| = hw_ref`` land on the worn silhouette ``|l| = G(t)``, a smooth maximum of the body's
  half-width (plus ease) and the garment's own straight fall.
- Sleeves: along the arm polyline (shoulder-elbow-wrist) a pixel has an arc position ``a`` and a
  signed offset ``d`` from the arm axis (positive on the arm's outer side); ``(a / l_w,
  1/2 - d / 2 r_s)`` are the sleeve's parameters in :class:`SleeveGeom`.
- Folds: a few creases displace the mapping (the fabric is pinched towards the crease line) and
  darken the shading along it.
"""

from __future__ import annotations

import math

import numpy as np

from vtonlab.data._synth_draw import BilinearTaps, Canvas, Frame, capsule, segment, smax
from vtonlab.data._synth_garment import InShop
from vtonlab.data._synth_person import UPPER, Body, arm_window


def _lift(body: Body) -> float:
    """How far above the shoulder line the garment's shoulder points sit (canonical units)."""
    return 3.5 * body.sc


def vertical_ratio(body: Body, inshop: InShop) -> float:
    """Person canonical units per garment unit along the body (the garment stretches to its hem)."""
    g = inshop.spec
    return (g.hem_t * body.T + _lift(body)) / g.length


def _taps_and_flow(inshop: InShop, xu: np.ndarray, yu: np.ndarray) -> tuple[BilinearTaps, np.ndarray]:
    """Bilinear taps into the in-shop picture at garment units, and the normalised flow (h, w, 2)
    (align_corners=True)."""
    px, py = inshop.to_pixel(xu, yu)
    h, w = inshop.frame.height, inshop.frame.width
    px = np.clip(px, 0.0, w - 1.0)
    py = np.clip(py, 0.0, h - 1.0)
    taps = BilinearTaps(px, py, h, w)
    flow = np.stack([px * np.float32(2.0 / (w - 1)) - 1.0, py * np.float32(2.0 / (h - 1)) - 1.0], axis=-1)
    return taps, flow.astype(np.float32)


def sample_folds(body: Body, rng: np.random.Generator) -> list[dict]:
    """Creases on the torso in person coordinates (canonical units)."""
    T, sc = body.T, body.sc
    folds = []
    n = int(rng.integers(3, 6))
    for i in range(n):
        kind = i % 3
        if kind == 0:  # drag folds from the armpits towards the waist
            side = 1.0 if rng.random() < 0.5 else -1.0
            s, tau = side * rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.6)
            ang = math.radians(90.0 + side * rng.uniform(30.0, 60.0))
        elif kind == 1:  # gathering around the waist
            s, tau = rng.uniform(-0.6, 0.6), rng.uniform(0.75, 1.0)
            ang = math.radians(rng.uniform(-14.0, 14.0))
        else:
            s, tau = rng.uniform(-0.6, 0.6), rng.uniform(0.3, 1.0)
            ang = rng.uniform(0.0, math.pi)
        folds.append(dict(
            c=body.joints["neck"] + body.down * (tau * T) + body.perp * (s * body.shoulder_b),
            dir=np.array([math.cos(ang), math.sin(ang)]), length=rng.uniform(0.15, 0.3) * T,
            width=rng.uniform(1.8, 3.2) * sc, depth=rng.uniform(0.08, 0.17), amp=rng.uniform(0.6, 1.6) * sc,
        ))  # fmt: skip
    return folds


def _apply_folds(folds, frame: Frame, win, shade: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Displacement (person units, x and y) and updated shading from creases, each evaluated in the
    part of ``win`` it influences."""
    dx = np.zeros(shade.shape, np.float32)
    dy = np.zeros(shade.shape, np.float32)
    for f in folds:
        ex, ey = f["dir"]
        nx, ny = -ey, ex
        reach = 2.2 * f["length"] * np.abs(f["dir"]) + 3.5 * f["width"] * np.abs(np.array([nx, ny]))
        fw = frame.window(f["c"][0] - reach[0], f["c"][0] + reach[0], f["c"][1] - reach[1], f["c"][1] + reach[1])
        if fw is None:
            continue
        r0, r1 = max(fw[0].start, win[0].start), min(fw[0].stop, win[0].stop)
        c0, c1 = max(fw[1].start, win[1].start), min(fw[1].stop, win[1].stop)
        if r0 >= r1 or c0 >= c1:
            continue
        U, V = frame.coords((slice(r0, r1), slice(c0, c1)))
        sub = (slice(r0 - win[0].start, r1 - win[0].start), slice(c0 - win[1].start, c1 - win[1].start))
        rx = U - np.float32(f["c"][0])
        ry = V - np.float32(f["c"][1])
        along = rx * np.float32(ex) + ry * np.float32(ey)
        dist = rx * np.float32(nx) + ry * np.float32(ny)
        wgt = np.exp(-((along / np.float32(f["length"])) ** 2))
        z = dist / np.float32(f["width"])
        g = np.exp(-z * z) * wgt
        shade[sub] *= 1.0 - f["depth"] * g + 0.45 * f["depth"] * np.exp(-((z - 1.3) ** 2)) * wgt
        pinch = np.float32(f["amp"]) * z * g
        dx[sub] += pinch * np.float32(nx)
        dy[sub] += pinch * np.float32(ny)
    return dx, dy, shade


def draw_worn_torso(frame: Frame, canvas: Canvas, body: Body, inshop: InShop, folds: list[dict]) -> None:
    """The garment's body panel on the torso (CIHP 5), with flow and shading."""
    g = inshop.spec
    sc, T = body.sc, body.T
    rv = vertical_ratio(body, inshop)
    rh = (body.shoulder_b + 0.8 * sc) / g.hw_sh
    lift = _lift(body)
    hem_t = g.hem_t * T + 2.0 * sc
    pr = body.person
    body_max = max(body.shoulder_b, pr.chest_b * sc, (pr.hip_b + 1.0) * sc) + 0.8 * sc
    half = max(body_max, max(g.hw_hem, g.hw_sh) * rh) + 2.0 * sc
    n, d, p = body.joints["neck"], body.down, body.perp
    top = -(g.drop + 1.0) * rv - lift - 1.0
    bottom = hem_t + 1.2 * rv + 4.0 * sc
    pts = [n + d * top + p * half, n + d * top - p * half, n + d * bottom + p * half, n + d * bottom - p * half]
    win = frame.window_around(np.stack(pts), 1.0)
    if win is None:
        return
    U, V = frame.coords(win)
    shade = np.ones(np.broadcast_shapes(U.shape, V.shape), np.float32)
    fdx, fdy, shade = _apply_folds(folds, frame, win, shade)
    t, lat = body.torso_coords(U, V)
    # creases displace the mapping (not the silhouette)
    t_f = t + fdx * np.float32(d[0]) + fdy * np.float32(d[1])
    l_f = lat + fdx * np.float32(p[0]) + fdy * np.float32(p[1])
    fall = g.hw_ref((t + np.float32(lift)) / np.float32(rv)) * np.float32(rh)  # the garment's own straight fall
    G = smax(body.torso_hw(t) + np.float32(0.8 * sc), fall, 2.0 * sc)
    # creases fade out towards the side seams so that the silhouette stays clean
    edge = np.clip((G - np.abs(lat)) / np.float32(3.0 * sc), 0.0, 1.0)
    t_f = t + (t_f - t) * edge
    l_f = lat + (l_f - lat) * edge
    yu = (t_f + np.float32(lift)) / np.float32(rv)
    hw_ref = g.hw_ref(yu)
    xu = l_f * hw_ref / G
    taps, flow = _taps_and_flow(inshop, xu, yu)
    colour = taps.sample(inshop.colour)
    # silhouette: the person-side side seams, and the in-shop front coverage for neckline, shoulders, hem
    a_in = taps.sample(inshop.front)
    alpha = np.minimum(frame.alpha(np.abs(lat) - G), a_in)
    s = np.clip(lat / G, -1.0, 1.0)
    shade *= 1.0 - 0.2 * s * s - 0.06 * s
    shade *= 1.0 - 0.1 * np.exp(-((t - 0.3 * T) ** 2) / (0.1 * T) ** 2) * np.abs(s)  # chest sides
    shade = np.clip(shade, 0.45, 1.08).astype(np.float32)
    canvas.paint(win, alpha, colour * shade[..., None], UPPER, flow=flow, shading=shade)
    # the garment's shadow on what lies below its hem
    hem = (g.length + 1.2 * (np.abs(xu) / max(g.hw_hem, 1.0)) ** 2) * rv - lift
    below = (t - hem) / np.float32(2.2 * sc)
    sh = np.where((below > 0) & (np.abs(lat) < G), 1.0 - 0.28 * np.exp(-below), 1.0).astype(np.float32)
    sh = np.where(canvas.flow_ok[win] | (canvas.parse[win] == 0), 1.0, sh).astype(np.float32)
    canvas.darken(win, sh)


def arm_shadow(frame: Frame, canvas: Canvas, body: Body, side: str) -> None:
    """Soft contact shadow of an arm on the torso (garment or skin) just below and right of it."""
    win = arm_window(frame, body, side, margin=4 * body.sc)
    if win is None:
        return
    U, V = frame.coords(win)
    sc = body.sc
    _, e, w = body.arm(side)
    r0, r1, r2 = body.arm_radii()
    off = np.array([1.2 * sc, 1.8 * sc])
    d1, _ = capsule(U, V, body.arm_root(side) + off, e + off, r0, r1)
    d2, _ = capsule(U, V, e + off, w + off, r1, r2)
    d = np.minimum(d1, d2)
    parse = canvas.parse[win]
    on_torso = (parse == UPPER) | (parse == 10)
    f = np.where(on_torso, 1.0 - 0.3 * np.exp(-np.maximum(d, 0.0) / np.float32(1.6 * sc)), 1.0)
    canvas.darken(win, f.astype(np.float32))


def draw_worn_sleeve(frame: Frame, canvas: Canvas, body: Body, inshop: InShop, side: str, rng) -> None:
    """One sleeve following the arm ``side`` ('r' or 'l'), with flow and shading."""
    g = inshop.spec
    if not g.sleeves:
        return
    sl = next(s for s in g.sleeves if s.side == (1 if side == "l" else -1))
    sc = body.sc
    rv = vertical_ratio(body, inshop)
    _, E, W = body.arm(side)
    S = body.arm_root(side)
    L1 = float(np.linalg.norm(E - S))
    L2 = float(np.linalg.norm(W - E))
    lw = min(sl.length * rv, 0.97 * (L1 + L2))
    r0, r1, r2 = body.arm_radii()
    rmax = max(0.5 * sl.w0 * rv, r0 + 0.8 * sc) + 1.0
    end = S + (E - S) * min(1.0, lw / L1) if lw <= L1 else E + (W - E) * min(1.0, (lw - L1) / L2)
    pts = [S, end] if lw <= L1 else [S, E, end]
    # folds (drawn before any early return, so that every size consumes the same random numbers):
    # bunching at the elbow of long sleeves and a band elsewhere
    bands = []
    if lw > L1 + 2 * sc:
        bands += [(L1 + rng.uniform(-3, 3) * sc, rng.uniform(0.1, 0.2)), (L1 + rng.uniform(6, 12) * sc, rng.uniform(0.06, 0.12))]
    bands += [(rng.uniform(0.3, 0.8) * lw, rng.uniform(0.05, 0.1))]
    win = frame.window_around(np.stack(pts), rmax + 2.0)
    if win is None:
        return
    U, V = frame.coords(win)
    outer = 1.0 if side == "l" else -1.0

    def seg_frame(a, b):
        dist, tt = segment(U, V, a, b)
        u = (b - a) / (np.linalg.norm(b - a) + 1e-9)
        nrm = np.array([u[1], -u[0]]) * outer  # outer normal (away from the body for a hanging arm)
        sd = (U - np.float32(a[0])) * np.float32(nrm[0]) + (V - np.float32(a[1])) * np.float32(nrm[1])
        return dist, tt, sd

    dist1, t1, sd1 = seg_frame(S, E)
    dist2, t2, sd2 = seg_frame(E, W)
    use1 = dist1 <= dist2
    a = np.where(use1, t1 * np.float32(L1), np.float32(L1) + np.clip(t2, 0.0, None) * np.float32(L2))
    sd = np.where(use1, sd1, sd2)
    dist = np.where(use1, dist1, dist2)
    al = np.clip(a / np.float32(lw), 0.0, 1.0)
    r_arm = np.where(a < L1, r0 + (r1 - r0) * np.clip(a / L1, 0, 1), r1 + (r2 - r1) * np.clip((a - L1) / L2, 0, 1))
    # sleeve half-width: the garment's, reached a little below the shoulder (the cap hugs the arm)
    snug = r_arm + np.float32(0.8 * sc)
    w_half = 0.5 * (sl.w0 + (sl.w1 - sl.w0) * al) * np.float32(rv)
    ramp = np.clip(a / np.float32(1.2 * r0), 0.0, 1.0)
    r_s = np.maximum(snug + (w_half - snug) * ramp * ramp * (3 - 2 * ramp), snug)
    beta = np.clip(0.5 - sd / (2.0 * r_s), 0.0, 1.0)
    shade = np.ones(al.shape, np.float32)
    da = np.zeros(al.shape, np.float32)
    for centre, depth in bands:
        z = (a - np.float32(centre)) / np.float32(2.2 * sc)
        gz = np.exp(-z * z)
        shade *= 1.0 - depth * gz * (0.6 + 0.4 * (2 * beta - 1) ** 2)
        da += np.float32(1.2 * sc) * z * gz
    al_f = np.clip((a + da) / np.float32(lw), 0.0, 1.0)
    xu, yu = sl.point(al_f, beta)
    taps, flow = _taps_and_flow(inshop, xu, yu)
    colour = taps.sample(inshop.colour)
    q = 2.0 * beta - 1.0
    shade *= 1.0 - 0.22 * q * q + 0.05 * q * outer
    shade *= 1.0 - 0.12 * np.exp(-a / np.float32(4 * sc)) * np.clip(q, 0, 1)  # armpit
    shade = np.clip(shade, 0.45, 1.08).astype(np.float32)
    sdf = np.maximum(dist - r_s, a - np.float32(lw))
    canvas.paint(win, frame.alpha(sdf), colour * shade[..., None], UPPER, flow=flow, shading=shade)
