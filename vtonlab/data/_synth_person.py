"""SynthVTON people: body, pose (a COCO-18 skeleton) and the drawing of everything but the upper garment.

A :class:`PersonSpec` (drawn from the person's seed) fixes proportions, skin, hair, face, lower
garment, shoes and backdrop; a :class:`PoseSpec` (drawn from the seed and the pose index) fixes
scale, position, lean and the arm and leg angles. :func:`build_body` turns both into a
:class:`Body`: canonical-frame joint positions plus the scaled dimensions the painters need.
Front view: the person's right side (COCO "r-" keypoints, CIHP "right" labels) is on the image's
left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vtonlab.data._synth_draw import (
    CANON_H,
    Canvas,
    Frame,
    capsule,
    ellipse,
    ellipse_local,
    limb,
    local,
    smooth_profile,
    smoothstep,
)

# CIHP labels used by the renderer
BACKGROUND, HAIR, UPPER, PANTS, TORSO_SKIN, SKIRT, FACE = 0, 2, 5, 9, 10, 12, 13
LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE = 14, 15, 16, 17, 18, 19

#: Skin tones (RGB).
SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (250, 222, 196), (240, 196, 162), (226, 178, 140), (205, 150, 110),
    (176, 120, 84), (142, 94, 64), (108, 70, 48), (84, 56, 40),
)  # fmt: skip

#: Hair colours (name -> RGB).
HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (30, 26, 26), "dark brown": (62, 42, 30), "brown": (112, 74, 44), "auburn": (136, 62, 36),
    "blonde": (214, 178, 112), "grey": (168, 166, 164),
}  # fmt: skip

#: Hair styles.
HAIR_STYLES: tuple[str, ...] = ("short", "buzz", "bob", "long", "bun")

#: Lower-garment kinds and colours (name -> RGB).
LOWERS: tuple[str, ...] = ("trousers", "skirt")
LOWER_COLOURS: dict[str, tuple[int, int, int]] = {
    "denim": (62, 90, 136), "black": (36, 36, 40), "navy": (34, 42, 80), "grey": (120, 122, 128),
    "khaki": (184, 164, 118), "olive": (96, 102, 60), "brown": (104, 72, 50), "white": (236, 234, 228),
    "maroon": (110, 32, 46), "red": (178, 42, 48),
}  # fmt: skip

_SHOE_COLOURS = ((30, 30, 32), (240, 240, 238), (92, 60, 40), (150, 36, 40), (110, 110, 116), (40, 52, 92))
_EYE_COLOURS = ((70, 45, 30), (40, 30, 25), (70, 110, 150), (80, 110, 70))

# arm pose kinds: (theta outward from hanging, degrees), (phi elbow bend towards the midline, degrees)
_ARM_POSES: dict[str, tuple[tuple[float, float], tuple[float, float], float]] = {
    "down": ((5.0, 15.0), (0.0, 14.0), 0.24),
    "a-pose": ((20.0, 32.0), (0.0, 12.0), 0.12),
    "hip": ((38.0, 50.0), (98.0, 122.0), 0.15),
    "front": ((-3.0, 8.0), (95.0, 118.0), 0.14),
    "chest": ((4.0, 12.0), (118.0, 134.0), 0.07),
    "raised": ((58.0, 75.0), (8.0, 38.0), 0.08),
    "wave": ((45.0, 62.0), (-118.0, -88.0), 0.06),
    "relaxed-bent": ((12.0, 22.0), (18.0, 40.0), 0.14),
}
_LEG_STANCES = ("together", "apart", "contrapposto")


def _rot(v, ang: float) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    return np.array([v[0] * c - v[1] * s, v[0] * s + v[1] * c])


@dataclass(frozen=True)
class PersonSpec:
    """Who is drawn: looks, proportions (canonical units at pose scale 1), clothes below the waist, backdrop."""

    person_id: int
    skin: tuple[float, float, float]
    hair_style: str
    hair_colour: str
    eye_colour: tuple[int, int, int]
    lip: tuple[float, float, float]
    # proportions (canonical units at pose scale 1)
    shoulder_hw: float
    chest_b: float
    waist_b: float
    hip_b: float
    hip_hw: float
    torso_len: float
    neck_len: float
    neck_r: float
    head_rx: float
    head_ry: float
    upper_arm: float
    forearm: float
    arm_r: float
    hand_len: float
    hand_r: float
    thigh: float
    shin: float
    leg_r: float
    lower: str
    lower_colour: str
    trouser_flare: float
    skirt_len: float
    skirt_flare: float
    shoe_colour: tuple[int, int, int]
    bg_top: tuple[float, float, float]
    bg_bottom: tuple[float, float, float]
    hair_len: float
    fringe: float


def sample_person(seed: int) -> PersonSpec:
    """Draw a person from ``seed`` (its own random stream: the same in every pose and at every size)."""
    rng = np.random.default_rng([int(seed), 1])
    u = rng.uniform
    skin = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], dtype=float) + u(-6, 6, 3)
    style = str(rng.choice(HAIR_STYLES, p=[0.27, 0.1, 0.2, 0.3, 0.13]))
    hair = str(rng.choice(list(HAIR_COLOURS), p=[0.3, 0.25, 0.17, 0.1, 0.12, 0.06]))
    femininity = u(0.0, 1.0)
    shoulder_hw = u(22.5, 26.0) - 1.5 * femininity
    arm_r = u(6.0, 7.2) - 0.5 * femininity
    chest_b = shoulder_hw + u(1.0, 3.0)
    waist_b = u(17.5, 21.5) - 1.5 * femininity
    hip_b = u(21.0, 24.0) + 2.5 * femininity
    lower = "skirt" if rng.random() < 0.25 + 0.35 * femininity else "trousers"
    lower_names = list(LOWER_COLOURS)
    lower_colour = str(rng.choice(lower_names))
    bg = np.array([u(226, 246), u(226, 246), u(226, 246)])
    bg = bg - (bg - bg.mean()) * 0.6
    lip = skin * np.array([0.82, 0.6, 0.6]) + np.array([30.0, 0.0, 5.0])
    return PersonSpec(
        person_id=int(seed), skin=tuple(np.clip(skin, 0, 255)), hair_style=style, hair_colour=hair,
        eye_colour=_EYE_COLOURS[int(rng.integers(len(_EYE_COLOURS)))], lip=tuple(np.clip(lip, 0, 255)),
        shoulder_hw=shoulder_hw, chest_b=chest_b, waist_b=waist_b, hip_b=hip_b, hip_hw=hip_b - u(6.0, 7.5),
        torso_len=u(72.0, 79.0), neck_len=u(11.0, 13.5), neck_r=u(5.4, 6.6) - 0.4 * femininity,
        head_rx=u(12.6, 14.2), head_ry=u(16.4, 18.0), upper_arm=u(37.0, 42.0), forearm=u(33.0, 37.0), arm_r=arm_r,
        hand_len=u(11.0, 13.0), hand_r=u(3.8, 4.5), thigh=u(47.0, 52.0), shin=u(43.0, 47.0), leg_r=u(10.0, 11.5),
        lower=lower, lower_colour=lower_colour, trouser_flare=u(0.0, 3.5), skirt_len=u(0.55, 0.95),
        skirt_flare=u(1.15, 1.5), shoe_colour=_SHOE_COLOURS[int(rng.integers(len(_SHOE_COLOURS)))],
        bg_top=tuple(bg + u(-8, 4)), bg_bottom=tuple(bg - u(8, 22)), hair_len=u(0.25, 0.55), fringe=u(-0.3, 0.3),
    )  # fmt: skip


@dataclass(frozen=True)
class PoseSpec:
    """How the person stands: framing (scale, position), lean, head, arm and leg angles, keypoint confidences."""

    pose_id: int
    scale: float
    cx: float
    top: float
    lean: float
    head_tilt: float
    yaw: float
    shrug: tuple[float, float]
    arms: tuple[str, str]  # (right, left) arm pose kinds
    theta: tuple[float, float]  # (right, left) radians
    phi: tuple[float, float]
    front_arm: int  # 0: right arm drawn last (in front), 1: left arm
    stance: str
    leg_theta: tuple[float, float]
    knee: tuple[float, float]
    hip_tilt: float
    confidence: tuple[float, ...]
    fold_seed: int


def sample_pose(seed: int, pose_id: int) -> PoseSpec:
    """Draw pose ``pose_id`` of person ``seed``: an arm pose per arm (the same kind for both arms 40 % of
    the time), a leg stance, and with probability 0.15 a closer framing that crops the feet."""
    rng = np.random.default_rng([int(seed), 3, int(pose_id)])
    u = rng.uniform
    kinds = list(_ARM_POSES)
    p = np.array([_ARM_POSES[k][2] for k in kinds])
    p = p / p.sum()
    a_r = str(rng.choice(kinds, p=p))
    a_l = a_r if rng.random() < 0.4 and a_r not in ("wave", "raised", "chest") else str(rng.choice(kinds, p=p))
    if a_r == "wave" and a_l == "wave":
        a_l = "down"
    th, ph = [], []
    for kind in (a_r, a_l):
        (t0, t1), (p0, p1), _ = _ARM_POSES[kind]
        th.append(math.radians(u(t0, t1)))
        ph.append(math.radians(u(p0, p1)))
    stance = str(rng.choice(_LEG_STANCES, p=[0.35, 0.4, 0.25]))
    if stance == "together":
        lt, kn = (u(1.0, 4.0), u(1.0, 4.0)), (u(-2.0, 3.0), u(-2.0, 3.0))
    elif stance == "apart":
        lt, kn = (u(5.0, 11.0), u(5.0, 11.0)), (u(-3.0, 4.0), u(-3.0, 4.0))
    else:
        bent = int(rng.integers(2))
        lt = [u(1.0, 3.5), u(1.0, 3.5)]
        kn = [u(-2.0, 2.0), u(-2.0, 2.0)]
        lt[bent] = u(5.0, 10.0)
        kn[bent] = u(8.0, 16.0)
    big = rng.random() < 0.15
    conf = u(0.7, 0.98, 18)
    conf[[0, 14, 15]] = u(0.82, 0.99, 3)
    conf[[16, 17]] = u(0.45, 0.9, 2)
    return PoseSpec(
        pose_id=int(pose_id), scale=u(1.08, 1.2) if big else u(0.9, 1.05), cx=96.0 + u(-9.0, 9.0), top=u(4.0, 13.0),
        lean=math.radians(u(-4.0, 4.0)), head_tilt=math.radians(u(-7.0, 7.0)), yaw=u(-0.12, 0.12),
        shrug=(u(-1.5, 1.5), u(-1.5, 1.5)), arms=(a_r, a_l), theta=(th[0], th[1]), phi=(ph[0], ph[1]),
        front_arm=int(rng.integers(2)), stance=stance, leg_theta=(math.radians(lt[0]), math.radians(lt[1])),
        knee=(math.radians(kn[0]), math.radians(kn[1])), hip_tilt=math.radians(u(-2.5, 2.5)),
        confidence=tuple(float(c) for c in conf), fold_seed=int(rng.integers(1 << 30)),
    )  # fmt: skip


@dataclass
class Body:
    """Joints (canonical frame) and scaled dimensions of one person in one pose."""

    person: PersonSpec
    pose: PoseSpec
    sc: float
    joints: dict[str, np.ndarray]
    down: np.ndarray  # unit vector along the spine, shoulders -> hips
    perp: np.ndarray  # unit vector across the torso, towards the image right (person's left)
    head_up: np.ndarray
    head_right: np.ndarray

    # -- torso frame ---------------------------------------------------------------------------
    @property
    def T(self) -> float:
        return self.person.torso_len * self.sc

    def torso_coords(self, U: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(t, l): distance below the shoulder line along the spine, and across (towards the image right)."""
        n = self.joints["neck"]
        x = U - np.float32(n[0])
        y = V - np.float32(n[1])
        t = x * np.float32(self.down[0]) + y * np.float32(self.down[1])
        lat = x * np.float32(self.perp[0]) + y * np.float32(self.perp[1])
        return t, lat

    def torso_hw(self, t: np.ndarray) -> np.ndarray:
        """Half-width of the torso at distance t below the shoulder line (canonical units)."""
        p, T = self.person, self.T
        b_s = (p.shoulder_hw + 0.55 * p.arm_r) * self.sc
        knots_t = np.array([0.0, 0.28, 0.62, 1.0, 1.3]) * T
        knots_v = np.array([b_s, p.chest_b * self.sc, p.waist_b * self.sc, p.hip_b * self.sc, (p.hip_b + 1.0) * self.sc])
        return smooth_profile(t, knots_t, knots_v)

    @property
    def shoulder_b(self) -> float:
        return (self.person.shoulder_hw + 0.55 * self.person.arm_r) * self.sc

    def arm(self, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shoulder, elbow, wrist) of side 'r' or 'l'."""
        j = self.joints
        return j[f"{side}_shoulder"], j[f"{side}_elbow"], j[f"{side}_wrist"]

    def arm_root(self, side: str) -> np.ndarray:
        """Where the upper-arm capsule starts: the shoulder joint sits inside the deltoid, a little
        below the shoulder keypoint, so the arm's round top meets the shoulder line."""
        return self.joints[f"{side}_shoulder"] + self.down * (0.45 * self.arm_radii()[0])

    def arm_radii(self) -> tuple[float, float, float]:
        r = self.person.arm_r * self.sc
        return r, 0.8 * r, 0.6 * r

    def head_point(self, x: float, y: float) -> np.ndarray:
        """A point in the head frame: x towards the image right, y down the face, in canonical units."""
        return self.joints["head"] + x * self.head_right - y * self.head_up

    def keypoints(self) -> np.ndarray:
        """COCO-18 keypoints (18, 2), canonical frame."""
        j = self.joints
        names = ["nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip",
                 "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear"]  # fmt: skip
        return np.stack([j[n] for n in names])


def build_body(person: PersonSpec, pose: PoseSpec) -> Body:
    """Forward kinematics of the COCO-18 skeleton: torso leaning about the hip centre, limbs as
    chains of rotations (outwards by theta, elbow/knee bending towards the midline by phi), head on
    the neck; then scaled and placed in the canonical frame."""
    p, q = person, pose
    sc = q.scale
    lean = q.lean
    up = np.array([math.sin(lean), -math.cos(lean)])
    perp = np.array([math.cos(lean), math.sin(lean)])
    j: dict[str, np.ndarray] = {}
    hip_mid = np.zeros(2)
    neck = hip_mid + p.torso_len * up
    j["neck"] = neck
    j["r_shoulder"] = neck - p.shoulder_hw * perp + np.array([0.0, q.shrug[0]])
    j["l_shoulder"] = neck + p.shoulder_hw * perp + np.array([0.0, q.shrug[1]])
    ph = np.array([math.cos(lean * 0.4 + q.hip_tilt), math.sin(lean * 0.4 + q.hip_tilt)])
    j["r_hip"] = hip_mid - p.hip_hw * ph
    j["l_hip"] = hip_mid + p.hip_hw * ph
    for side, sgn, i in (("r", 1.0, 0), ("l", -1.0, 1)):
        # sgn: rotation direction that moves a hanging limb outwards for this side
        d_up = _rot((0.0, 1.0), sgn * q.theta[i])
        elbow = j[f"{side}_shoulder"] + p.upper_arm * d_up
        d_fore = _rot(d_up, -sgn * q.phi[i])
        fore = p.forearm * (1.0 - 0.1 * max(0.0, math.cos(q.phi[i] - math.pi / 2)) * (abs(q.phi[i]) > 1.2))
        j[f"{side}_elbow"] = elbow
        j[f"{side}_wrist"] = elbow + fore * d_fore
        d_th = _rot((0.0, 1.0), sgn * q.leg_theta[i])
        knee = j[f"{side}_hip"] + p.thigh * d_th
        d_sh = _rot(d_th, -sgn * q.knee[i])
        shin = p.shin * (0.96 if q.knee[i] > math.radians(7) else 1.0)
        j[f"{side}_knee"] = knee
        j[f"{side}_ankle"] = knee + shin * d_sh
    head_up = _rot(up, q.head_tilt)
    head_right = np.array([-head_up[1], head_up[0]])
    j["head"] = neck + (p.neck_len + p.head_ry) * head_up
    # scale about the hip centre, then place: hair top at `top`, hips at cx
    head_top = j["head"][1] - p.head_ry - 3.0
    for k in j:
        j[k] = j[k] * sc
    shift = np.array([q.cx, q.top - head_top * sc])
    for k in j:
        j[k] = j[k] + shift
    body = Body(p, q, sc, j, -up, perp, head_up, head_right)
    rx, ry = p.head_rx * sc, p.head_ry * sc
    yaw = q.yaw
    j["nose"] = body.head_point(yaw * rx * 0.6, 0.24 * ry)
    j["r_eye"] = body.head_point(-0.36 * rx + yaw * 0.45 * rx, 0.0)
    j["l_eye"] = body.head_point(0.36 * rx + yaw * 0.45 * rx, 0.0)
    j["r_ear"] = body.head_point(-0.97 * rx + yaw * 0.2 * rx, 0.06 * ry)
    j["l_ear"] = body.head_point(0.97 * rx + yaw * 0.2 * rx, 0.06 * ry)
    return body


# ----------------------------------------------------------------------------------------------
# Painters
# ----------------------------------------------------------------------------------------------


def _cyl(q: np.ndarray, depth: float = 0.24, light: float = 0.07) -> np.ndarray:
    """Cylinder shading across a limb: q in [-1, 1] (negative: image left, the lit side)."""
    q = np.clip(q, -1.0, 1.0)
    return (1.0 - depth * q * q - light * q).astype(np.float32)


def _limb_q(U, V, a, b, r) -> np.ndarray:
    """Signed lateral offset from segment a-b, divided by r (positive towards the segment's right)."""
    dx, dy = float(b[0] - a[0]), float(b[1] - a[1])
    n = math.hypot(dx, dy) + 1e-9
    return ((U - np.float32(a[0])) * np.float32(dy / n) - (V - np.float32(a[1])) * np.float32(dx / n)) / np.float32(r)


def background(frame: Frame, person: PersonSpec) -> np.ndarray:
    """A studio backdrop: vertical gradient with a soft vignette, (H, W, 3) float32."""
    h, w = frame.height, frame.width
    v = ((np.arange(h, dtype=np.float32) + 0.5 - frame.oy) / frame.s / CANON_H)[:, None]
    uu = ((np.arange(w, dtype=np.float32) + 0.5 - frame.ox) / frame.s / 192.0)[None, :]
    top = np.array(person.bg_top, dtype=np.float32)
    bot = np.array(person.bg_bottom, dtype=np.float32)
    t = np.clip(v, 0, 1) ** 1.5
    vign = 1.0 - 0.06 * ((uu - 0.5) * 2.0) ** 2
    rows = (top + t[..., None] * (bot - top)).astype(np.float32)  # (h, 1, 3)
    return rows * vign[..., None].astype(np.float32)


def draw_floor_shadow(frame: Frame, canvas: Canvas, body: Body) -> None:
    la, ra = body.joints["l_ankle"], body.joints["r_ankle"]
    c = (la + ra) / 2 + np.array([0.0, 8.0 * body.sc])
    rx = abs(la[0] - ra[0]) / 2 + 16 * body.sc
    win = frame.window(c[0] - rx - 4, c[0] + rx + 4, c[1] - 8, c[1] + 8)
    if win is None:
        return
    U, V = frame.coords(win)
    x, y = local(U, V, c)
    r2 = (x / rx) ** 2 + (y / (4.5 * body.sc)) ** 2
    canvas.darken(win, (1.0 - 0.16 * np.exp(-2.0 * r2)).astype(np.float32))


def _hair_rgb(person: PersonSpec) -> np.ndarray:
    return np.array(HAIR_COLOURS[person.hair_colour], dtype=np.float32)


def _hair_colour(body: Body, U, V, alpha) -> np.ndarray:
    """Hair with strands (fine radial streaks from the crown) and a soft highlight."""
    base = _hair_rgb(body.person)
    crown = body.head_point(0.0, -body.person.head_ry * body.sc * 1.1)
    x, y = local(U, V, crown)
    ang = np.arctan2(x, y + 1e-3)
    r = np.sqrt(x * x + y * y) / (body.person.head_ry * body.sc)
    streak = 1.0 + 0.09 * np.sin(ang * 37.0) * np.sin(ang * 11.0 + 1.0)
    hl = 1.0 + 0.22 * np.exp(-((r - 0.75) ** 2) / 0.04) * np.clip(-x / (body.person.head_rx * body.sc) + 0.2, 0, 1)
    return (base * (streak * hl)[..., None] + 6.0).astype(np.float32)


def draw_back_hair(frame: Frame, canvas: Canvas, body: Body) -> None:
    p, sc = body.person, body.sc
    if p.hair_style not in ("long", "bob"):
        return
    head = body.joints["head"]
    rx = p.head_rx * sc
    if p.hair_style == "long":
        bottom = body.joints["neck"] + body.down * (p.hair_len * body.T)
        r0, r1 = rx + 3.5 * sc, rx + 5.5 * sc
        win = frame.window_around(np.stack([head, bottom]), r1 + 2)
        if win is None:
            return
        U, V = frame.coords(win)
        d, t = capsule(U, V, head, bottom, r0, r1)
        # square off the bottom of the hair
        t_px = t * float(np.linalg.norm(bottom - head))
        d = np.maximum(d, t_px - float(np.linalg.norm(bottom - head)) - 2.0 * sc)
    else:  # bob: a rounded volume behind the head
        ry = p.head_ry * sc
        c = body.head_point(0.0, 0.1 * ry)
        win = frame.window_around(c, max(rx + 4 * sc, ry) + 2)
        if win is None:
            return
        U, V = frame.coords(win)
        d = ellipse(U, V, c, rx + 3.4 * sc, 0.95 * ry, math.atan2(body.head_right[1], body.head_right[0]))
    a = frame.alpha(d)
    canvas.paint(win, a, _hair_colour(body, U, V, a) * 0.82, HAIR)


def draw_front_hair(frame: Frame, canvas: Canvas, body: Body) -> None:
    """Long hair falling over the shoulders, in front of the garment."""
    p, sc = body.person, body.sc
    if p.hair_style != "long":
        return
    rx, ry = p.head_rx * sc, p.head_ry * sc
    for sgn in (-1.0, 1.0):
        top = body.head_point(sgn * (rx + 0.5 * sc), 0.1 * ry)
        bottom = body.joints["neck"] + body.down * (p.hair_len * body.T + 4 * sc) + body.perp * sgn * (rx + 4.0 * sc)
        win = frame.window_around(np.stack([top, bottom]), 7 * sc + 2)
        if win is None:
            continue
        U, V = frame.coords(win)
        d, t = capsule(U, V, top, bottom, 3.6 * sc, 4.6 * sc)
        a = frame.alpha(d)
        canvas.paint(win, a, _hair_colour(body, U, V, a), HAIR)


def draw_legs(frame: Frame, canvas: Canvas, body: Body) -> None:
    """Bare legs (visible below a skirt)."""
    p, sc = body.person, body.sc
    skin = np.array(p.skin, dtype=np.float32)
    r0, r1, r2 = p.leg_r * sc, 0.62 * p.leg_r * sc, 0.46 * p.leg_r * sc
    for side, label in (("r", RIGHT_LEG), ("l", LEFT_LEG)):
        hip, knee, ankle = (body.joints[f"{side}_{n}"] for n in ("hip", "knee", "ankle"))
        win = frame.window_around(np.stack([hip, knee, ankle]), r0 + 2)
        if win is None:
            continue
        U, V = frame.coords(win)
        d1, q1 = limb(U, V, hip, knee, r0, r1)
        d2, q2 = limb(U, V, knee, ankle, r1, r2)
        d = np.minimum(d1, d2)
        q = np.where(d1 < d2, q1, q2)
        canvas.paint(win, frame.alpha(d), skin * _cyl(q)[..., None], label)


def draw_lower(frame: Frame, canvas: Canvas, body: Body) -> None:
    p, sc = body.person, body.sc
    col = np.array(LOWER_COLOURS[p.lower_colour], dtype=np.float32)
    T = body.T
    waist_t = 0.8 * T
    if p.lower == "trousers":
        r0, r1, r2 = (p.leg_r + 2.2) * sc, (0.62 * p.leg_r + 2.6) * sc, (0.46 * p.leg_r + 3.0 + p.trouser_flare) * sc
        pts = [body.joints[k] for k in ("r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle")]
        pts.append(body.joints["neck"] + body.down * waist_t)
        win = frame.window_around(np.stack(pts), r0 + 8 * sc)
        if win is None:
            return
        U, V = frame.coords(win)
        t, lat = body.torso_coords(U, V)
        hw = body.torso_hw(t) + 1.4 * sc
        d_pelvis = np.maximum(np.maximum(np.abs(lat) - hw, waist_t - t), t - 1.1 * T)
        d_leg = None
        q_leg = None
        for side in ("r", "l"):
            hip, knee, ankle = (body.joints[f"{side}_{n}"] for n in ("hip", "knee", "ankle"))
            shin = (ankle - knee) / np.linalg.norm(ankle - knee)
            hem = ankle + shin * 1.5 * sc
            d1, q1 = limb(U, V, hip, knee, r0, r1)
            d2, q2 = limb(U, V, knee, hem, r1, r2)
            # the hem is cut straight across the leg
            d2 = np.maximum(d2, (U - np.float32(hem[0])) * np.float32(shin[0]) + (V - np.float32(hem[1])) * np.float32(shin[1]))
            dk = np.minimum(d1, d2)
            qk = np.where(d1 < d2, q1, q2)
            if d_leg is None:
                d_leg, q_leg = dk, qk
            else:
                q_leg = np.where(dk < d_leg, qk, q_leg)
                d_leg = np.minimum(d_leg, dk)
        # smooth union: the seat blends into the legs
        k = np.float32(4.0 * sc)
        hmix = np.clip(0.5 + 0.5 * (d_leg - d_pelvis) / k, 0.0, 1.0)
        d = d_leg + (d_pelvis - d_leg) * hmix - k * hmix * (1.0 - hmix)
        w_leg = smoothstep(0.5 + (d_pelvis - d_leg) / (6.0 * sc))
        q = (lat / hw) * (1.0 - w_leg) + q_leg * w_leg
        shade = _cyl(q, 0.3, 0.08)
        # waistband, fly and centre crease
        shade *= 1.0 - 0.18 * np.exp(-(((t - waist_t - 3.2 * sc) / (0.6 * sc)) ** 2))
        fly = np.exp(-(((lat + 2.0 * sc) / (0.5 * sc)) ** 2)) * (t < waist_t + 0.26 * T) * (t > waist_t + 4 * sc)
        shade *= 1.0 - 0.16 * fly
        canvas.paint(win, frame.alpha(d), col * shade[..., None], PANTS)
    else:
        bottom_t = T + p.skirt_len * p.thigh * sc
        hw_top = float(body.torso_hw(np.float32(waist_t))) + 1.2 * sc
        hw_bot = p.hip_b * sc * p.skirt_flare
        corners = [body.joints["neck"] + body.down * bottom_t + body.perp * s * hw_bot for s in (-1, 1)]
        win = frame.window_around(np.stack(corners + [body.joints["neck"] + body.down * waist_t]), 4 * sc + 2)
        if win is None:
            return
        U, V = frame.coords(win)
        t, lat = body.torso_coords(U, V)
        f = np.clip((t - waist_t) / (bottom_t - waist_t), 0, 1)
        hw = np.maximum(hw_top + (hw_bot - hw_top) * np.sqrt(f), body.torso_hw(t) + 1.2 * sc)
        hem = bottom_t - 3.0 * sc * (lat / hw_bot) ** 2
        d = np.maximum(np.maximum(np.abs(lat) - hw, waist_t - t), t - hem)
        pleat = 0.5 + 0.5 * np.cos(lat / hw * 7.0 * math.pi)
        shade = _cyl(lat / hw, 0.22, 0.06) * (1.0 - 0.12 * pleat * f)
        shade *= 1.0 - 0.18 * np.exp(-(((t - waist_t - 3.0 * sc) / (0.6 * sc)) ** 2))
        canvas.paint(win, frame.alpha(d), col * shade[..., None], SKIRT)


def draw_shoes(frame: Frame, canvas: Canvas, body: Body) -> None:
    p, sc = body.person, body.sc
    col = np.array(p.shoe_colour, dtype=np.float32)
    sole = np.array((235, 235, 230) if sum(p.shoe_colour) < 600 else (70, 70, 74), dtype=np.float32)
    for side, label, sgn in (("r", RIGHT_SHOE, -1.0), ("l", LEFT_SHOE, 1.0)):
        ankle = body.joints[f"{side}_ankle"]
        c = ankle + np.array([sgn * 1.5 * sc, 5.2 * sc])
        win = frame.window_around(c, 10.5 * sc + 2)
        if win is None:
            continue
        U, V = frame.coords(win)
        ang = sgn * 0.12
        d = ellipse(U, V, c, 8.2 * sc, 5.4 * sc, ang)
        d = np.maximum(d, (c[1] - 4.0 * sc) - V)  # flat top where the trouser / leg enters
        _, y = local(U, V, c, ang)
        shade = (1.0 - 0.25 * np.clip(y / (5 * sc), -1, 1) ** 2 + 0.1 * np.clip(-y / (5 * sc), 0, 1))
        is_sole = (y > 2.6 * sc)[..., None]
        colour = np.where(is_sole, sole, col * shade[..., None])
        canvas.paint(win, frame.alpha(d), colour, label)


def draw_torso(frame: Frame, canvas: Canvas, body: Body) -> None:
    """Torso skin (CIHP 10) from the base of the neck to below the hips, and the neck."""
    p, sc, T = body.person, body.sc, body.T
    skin = np.array(p.skin, dtype=np.float32)
    # neck
    n = body.joints["neck"]
    chin = body.head_point(0.0, 0.55 * p.head_ry * sc)
    win = frame.window_around(np.stack([n, chin]), p.neck_r * sc + 2)
    if win is not None:
        U, V = frame.coords(win)
        d, t = capsule(U, V, n + body.down * 4 * sc, chin, p.neck_r * sc, p.neck_r * sc * 0.95)
        q = _limb_q(U, V, n, chin, p.neck_r * sc)
        shade = _cyl(q, 0.2, 0.05) * (1.0 - 0.3 * np.clip((t - 0.45) / 0.55, 0, 1))
        canvas.paint(win, frame.alpha(d), skin * shade[..., None], TORSO_SKIN)
    b_s = body.shoulder_b
    pts = [n - body.perp * b_s - body.down * 16 * sc, n + body.perp * b_s - body.down * 16 * sc]
    pts += [n + body.down * 1.15 * T + body.perp * s * p.hip_b * sc * 1.1 for s in (-1, 1)]
    win = frame.window_around(np.stack(pts), 3)
    if win is None:
        return
    U, V = frame.coords(win)
    t, lat = body.torso_coords(U, V)
    hw = body.torso_hw(t)
    d_cap = np.minimum(ellipse_local(lat, t, b_s, 0.1 * T), ellipse_local(lat, t + 2 * sc, 0.45 * b_s, 0.16 * T))
    d = np.where(t < 0, d_cap, np.abs(lat) - hw)
    d = np.maximum(d, t - 1.0 * T)
    shade = _cyl(lat / hw, 0.2, 0.06)
    # collarbones: a faint shadow line under the neck
    cb = np.exp(-(((t - 0.07 * T + 0.02 * np.abs(lat)) / (0.9 * sc)) ** 2)) * (np.abs(lat) > 2 * sc) * (np.abs(lat) < b_s * 0.75)
    shade *= 1.0 - 0.08 * cb
    canvas.paint(win, frame.alpha(d), skin * shade[..., None], TORSO_SKIN)


def arm_sdf(body: Body, side: str, U, V) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance to the whole arm (upper arm, forearm, hand) and a lateral coordinate for shading."""
    s, e, w = body.arm(side)
    r0, r1, r2 = body.arm_radii()
    p, sc = body.person, body.sc
    s = body.arm_root(side)
    d1, q1 = limb(U, V, s, e, r0, r1)
    d2, q2 = limb(U, V, e, w, r1, r2)
    fdir = (w - e) / (np.linalg.norm(w - e) + 1e-9)
    hc = w + fdir * (p.hand_len * sc * 0.42)
    ang = math.atan2(-fdir[0], fdir[1])
    d3 = ellipse(U, V, hc, p.hand_r * sc, p.hand_len * sc * 0.55, ang)
    # thumb
    thumb_side = 1.0 if side == "r" else -1.0
    tdir = _rot(fdir, thumb_side * 0.7)
    d4, _ = capsule(U, V, w + fdir * 2.0 * sc, w + fdir * 2.0 * sc + tdir * 6.0 * sc, 1.5 * sc, 1.2 * sc)
    q = np.where(d1 < d2, q1, q2)
    d = np.minimum(np.minimum(d1, d2), np.minimum(d3, d4))
    q = np.where(np.minimum(d3, d4) < np.minimum(d1, d2), 0.3, q)
    return d, q


def arm_window(frame: Frame, body: Body, side: str, margin: float = 0.0):
    s, e, w = body.arm(side)
    fdir = (w - e) / (np.linalg.norm(w - e) + 1e-9)
    tip = w + fdir * body.person.hand_len * body.sc
    return frame.window_around(np.stack([s, e, w, tip]), body.arm_radii()[0] + 2 + margin)


def draw_arm(frame: Frame, canvas: Canvas, body: Body, side: str) -> None:
    win = arm_window(frame, body, side)
    if win is None:
        return
    U, V = frame.coords(win)
    d, q = arm_sdf(body, side, U, V)
    skin = np.array(body.person.skin, dtype=np.float32)
    canvas.paint(win, frame.alpha(d), skin * _cyl(q)[..., None], RIGHT_ARM if side == "r" else LEFT_ARM)


def draw_head(frame: Frame, canvas: Canvas, body: Body) -> None:
    p, sc = body.person, body.sc
    rx, ry = p.head_rx * sc, p.head_ry * sc
    head = body.joints["head"]
    ang = math.atan2(body.head_right[1], body.head_right[0])
    skin = np.array(p.skin, dtype=np.float32)
    win = frame.window_around(head, ry + 8 * sc + 2)
    if win is None:
        return
    U, V = frame.coords(win)
    x, y = local(U, V, head, ang)
    yaw = body.pose.yaw
    # ears (behind the face outline)
    for ear in (body.joints["r_ear"], body.joints["l_ear"]):
        d = ellipse(U, V, ear, 2.6 * sc, 4.6 * sc, ang)
        canvas.paint(win, frame.alpha(d), skin * 0.9, FACE)
    # face: an egg, narrower at the jaw
    rxx = rx * (1.0 - 0.16 * np.clip(y / ry, 0.0, 1.0) ** 2)
    d_face = ellipse_local(x - yaw * rx * 0.15, y, rxx, ry)
    qx = np.clip((x - yaw * rx * 0.3) / rx, -1, 1)
    shade = 1.0 - 0.16 * qx * qx - 0.05 * qx - 0.08 * np.clip(y / ry, 0, 1) ** 3
    canvas.paint(win, frame.alpha(d_face), skin * shade[..., None], FACE)
    # features (decorations on the face: labels stay FACE), each in its own small window
    fx = yaw * rx * 0.45

    def near(cx: float, cy: float, r: float):
        w = frame.window_around(body.head_point(cx, cy), r)
        if w is None:
            return None, None, None
        uu, vv = frame.coords(w)
        lx, ly = local(uu, vv, head, ang)
        return w, lx, ly

    eye_w = np.array((248, 248, 246), dtype=np.float32)
    iris = np.array(p.eye_colour, dtype=np.float32)
    pupil = np.array((15, 12, 12), np.float32)
    brow_c = _hair_rgb(p) * 0.8 + 10
    for ex in (-0.36 * rx + fx, 0.36 * rx + fx):
        w, lx, ly = near(ex, -0.1 * ry, 0.3 * ry + 3.5 * sc)
        if w is None:
            continue
        white = ellipse_local(lx - ex, ly, 2.3 * sc, 1.35 * sc)
        canvas.paint(w, frame.alpha(white), eye_w, None)
        d = ellipse_local(lx - ex - yaw * 0.6 * sc, ly, 1.25 * sc, 1.3 * sc)
        canvas.paint(w, frame.alpha(np.maximum(d, white)), iris, None)
        d = ellipse_local(lx - ex - yaw * 0.6 * sc, ly, 0.55 * sc, 0.6 * sc)
        canvas.paint(w, frame.alpha(d), pupil, None)
        lid = ellipse_local(lx - ex, ly + 1.1 * sc, 2.6 * sc, 0.55 * sc)
        canvas.paint(w, frame.alpha(lid) * 0.6, skin * 0.55, None)
        brow = ellipse_local(lx - ex, ly + 0.26 * ry - 0.03 * (lx - ex) ** 2 / sc, 3.0 * sc, 0.65 * sc)
        canvas.paint(w, frame.alpha(brow) * 0.9, brow_c, None)
    w, lx, ly = near(fx * 1.2, 0.25 * ry, 3.0 * sc)
    if w is not None:
        nose = ellipse_local(lx - fx * 1.2 - 0.6 * sc, ly - 0.2 * ry, 1.1 * sc, 2.4 * sc)
        canvas.paint(w, frame.alpha(nose) * 0.45, skin * 0.72, None)
        tip = ellipse_local(lx - fx * 1.3, ly - 0.3 * ry, 1.6 * sc, 0.8 * sc)
        canvas.paint(w, frame.alpha(tip) * 0.5, skin * 0.7, None)
    w, lx, ly = near(fx * 1.1, 0.53 * ry, 4.5 * sc)
    if w is not None:
        lip = np.array(p.lip, np.float32)
        curve = ly - 0.53 * ry + 0.04 * (lx - fx * 1.1) ** 2 / sc
        canvas.paint(w, frame.alpha(ellipse_local(lx - fx * 1.1, curve, 3.4 * sc, 1.05 * sc)), lip, None)
        canvas.paint(w, frame.alpha(ellipse_local(lx - fx * 1.1, curve, 3.2 * sc, 0.3 * sc)) * 0.7, lip * 0.6, None)
    _draw_hair_cap(frame, canvas, body, win, U, V, x, y)


def _draw_hair_cap(frame: Frame, canvas: Canvas, body: Body, win, U, V, x, y) -> None:
    p, sc = body.person, body.sc
    rx, ry = p.head_rx * sc, p.head_ry * sc
    style = p.hair_style
    ax = np.abs(x)
    if style == "buzz":
        d = ellipse_local(x, y + 0.06 * ry, rx + 0.9 * sc, ry + 0.7 * sc)
        hairline = -0.5 * ry + 0.45 * ry * (ax / rx) ** 3
        d = np.maximum(d, y - hairline)
    else:
        d = ellipse_local(x, y + 0.1 * ry, rx + 2.4 * sc, ry + 1.8 * sc)
        fr = p.fringe * rx
        hairline = -0.36 * ry + 0.08 * ry * np.abs((x - fr) / rx) + 0.6 * ry * (ax / rx) ** 4
        hairline = hairline + 0.035 * ry * np.sin(x * (2.2 / sc) + 1.3) * (1.0 - (ax / rx) ** 2).clip(0, 1)
        d = np.maximum(d, y - hairline)
        if style in ("bob", "long"):
            big = ellipse_local(x, y - 0.05 * ry, rx + 3.6 * sc, ry * 1.08)
            corner = np.clip((ax - 0.8 * rx) / (0.55 * rx), 0.0, 1.0)
            sides = np.maximum(np.maximum(big, 0.8 * rx - ax), y - 0.72 * ry + 0.3 * ry * corner * corner)
            d = np.minimum(d, sides)
        if style == "bun":
            d = np.minimum(d, ellipse_local(x, y + ry + 2.5 * sc, 6.5 * sc, 5.5 * sc))
    a = frame.alpha(d)
    canvas.paint(win, a, _hair_colour(body, U, V, a), HAIR)
