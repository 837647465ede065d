"""A parametric heart: nested implicit shapes in a heart-aligned frame, varied per case.

Tissue classes are internal to the phantom; ``TISSUE_STRUCTURES`` maps them to vocabulary
structure keys so label codes always come from the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUTSIDE, LUNG, BODY, LV, RV, LA, RA, MYO, AORTA, PA, SCAR, EDEMA, RV_WALL = range(13)

# Structure keys a tissue may be labelled as, most specific first (scar is myocardium in
# layouts that do not annotate scar). Tissues absent here are never labelled.
TISSUE_STRUCTURES: dict[int, tuple[str, ...]] = {
    LV: ("lv",), RV: ("rv",), LA: ("la",), RA: ("ra",), MYO: ("myo",), AORTA: ("aorta",), PA: ("pa",),
    SCAR: ("scar", "myo"), EDEMA: ("edema", "myo"),
}

# Long axis of the LV in RAS, apex -> base: the apex points left, anterior and inferior.
_BASE_DIRECTION = np.array([0.45, -0.7, 0.45])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """Rotation by an angle up to ``max_degrees`` about a random axis (Rodrigues)."""
    axis = _unit(rng.normal(size=3))
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _ellipsoid(p: np.ndarray, center, radii) -> np.ndarray:
    """Normalised radius of points ``p [..., 3]`` in an axis-aligned ellipsoid (<= 1 inside)."""
    # per axis, not over a [..., 3] temporary: the same sums in the same order, about twice as fast
    squares = [((p[..., axis] - center[axis]) / radii[axis]) ** 2 for axis in range(3)]
    return np.sqrt(squares[0] + squares[1] + squares[2])


def _capsule(p: np.ndarray, start, direction, length: float, radius: float) -> np.ndarray:
    """Inside a tube of ``radius`` around a segment (vessels)."""
    d = _unit(np.asarray(direction, dtype=float))
    rel = p - np.asarray(start)
    t = np.clip(rel @ d, 0.0, length)
    return np.linalg.norm(rel - t[..., None] * d, axis=-1) <= radius


@dataclass
class Heart:
    """One case's heart. Lengths in mm; ``rotation`` columns are the heart axes in RAS.

    Args:
        center: world position (RAS mm) of the LV centre.
        rotation: heart frame -> RAS; column 2 is the LV long axis (apex -> base).
        scale: overall size factor.
        lv_radius, lv_length, wall: LV cavity semi-axes and myocardial thickness.
        scar_angle, scar_width, scar_span, scar_depth: scar sector (radians), its apex-base
            extent as fractions, and transmurality (1 = full wall).
        has_scar: whether the case has a scar/edema region.
    """

    center: np.ndarray
    rotation: np.ndarray
    scale: float
    lv_radius: float
    lv_length: float
    wall: float
    scar_angle: float
    scar_width: float
    scar_span: tuple[float, float]
    scar_depth: float
    has_scar: bool

    @classmethod
    def sample(cls, rng: np.random.Generator, center=(0.0, 0.0, 0.0), with_scar: bool = True,
               long_axis=None) -> Heart:
        z = _unit(np.asarray(long_axis if long_axis is not None else _BASE_DIRECTION, dtype=float))
        x = _unit(np.array([-1.0, 0.0, 0.0]) - z * (z @ np.array([-1.0, 0.0, 0.0])))  # towards the patient's left
        base = np.stack([x, np.cross(z, x), z], axis=1)
        scale = rng.uniform(0.85, 1.15)
        return cls(
            center=np.asarray(center, dtype=float),
            rotation=random_rotation(rng, 12.0) @ base,
            scale=scale,
            lv_radius=21.0 * scale * rng.uniform(0.9, 1.1),
            lv_length=38.0 * scale * rng.uniform(0.9, 1.1),
            wall=8.0 * scale * rng.uniform(0.8, 1.25),
            scar_angle=rng.uniform(-np.pi, np.pi),
            scar_width=np.deg2rad(rng.uniform(60, 110)),
            scar_span=(rng.uniform(0.45, 0.8), rng.uniform(0.3, 1.0)),
            scar_depth=rng.uniform(0.5, 1.0),
            has_scar=with_scar,
        )

    @property
    def base_height(self) -> float:
        return 0.45 * self.lv_length

    @property
    def la_center(self) -> np.ndarray:
        """World position of the left atrium (where LA-task crops are centred)."""
        return self.center + self.rotation @ self._la_local()

    def _la_local(self) -> np.ndarray:
        a, s = self.lv_radius, self.scale
        return np.array([0.25 * a, 0.55 * a, self.base_height + 0.55 * 17.0 * s + 4.0])

    def tissues(self, world: np.ndarray) -> np.ndarray:
        """Tissue class of each world point ``[..., 3]`` (RAS mm)."""
        p = (world - self.center) @ self.rotation  # heart-frame coordinates
        rel = world - self.center
        a, b, t, s, zb = self.lv_radius, self.lv_length, self.wall, self.scale, self.base_height
        below_base = p[..., 2] <= zb

        out = np.full(p.shape[:-1], OUTSIDE, dtype=np.uint8)
        thorax = ((rel[..., 0] + 10) / 150) ** 2 + ((rel[..., 1] + 15) / 110) ** 2 <= 1
        out[thorax] = BODY
        for side in (-1.0, 1.0):  # lungs either side of the heart, in world axes
            out[thorax & (_ellipsoid(rel, (side * 95.0, 25.0, 5.0), (55.0, 70.0, 95.0)) <= 1)] = LUNG

        cavity_r = _ellipsoid(p, (0, 0, 0), (a, a, b))
        outer_r = _ellipsoid(p, (0, 0, 0), (a + t, a + t, b + t))
        rv_center, rv_radii = (-(a + t) * 0.8, -4.0 * s, -0.15 * b), (a * 1.1, (a + t) * 1.45, b * 0.8)
        rv_r = _ellipsoid(p, rv_center, rv_radii)
        rv_wall_r = _ellipsoid(p, rv_center, tuple(r + 3.0 for r in rv_radii))
        septum_clear = _ellipsoid(p, (0, 0, 0), (a + t + 2, a + t + 2, b + t + 2)) > 1

        out[_ellipsoid(p, (-(a + t) * 1.1, 0.2 * a, zb + 15 * s), (17 * s, 15 * s, 19 * s)) <= 1] = RA
        out[_ellipsoid(p, self._la_local(), (20 * s, 17 * s, 15 * s)) <= 1] = LA
        out[_capsule(p, (-0.7 * a, -0.9 * a, zb - 8), (0.45, -0.2, 1.0), 45 * s, 11 * s)] = PA
        out[_capsule(p, (0.15 * a, -0.25 * a, zb - 6), (0.1, -0.25, 1.0), 55 * s, 12 * s)] = AORTA
        out[(rv_wall_r <= 1) & below_base & septum_clear] = RV_WALL
        out[(rv_r <= 1) & below_base & septum_clear] = RV
        myo = (outer_r <= 1) & (cavity_r > 1) & below_base
        out[myo] = MYO
        out[(cavity_r <= 1) & below_base] = LV

        if self.has_scar:
            angle = np.angle(np.exp(1j * (np.arctan2(p[..., 1], p[..., 0]) - self.scar_angle)))
            height = p[..., 2]
            lo, hi = -self.scar_span[0] * b, self.scar_span[1] * zb
            # 0 at the endocardium, 1 at the epicardium
            depth = (cavity_r - 1) / np.maximum((cavity_r - 1) + (1 - outer_r), 1e-6)
            edema = myo & (np.abs(angle) <= self.scar_width / 2 + np.deg2rad(20)) & (height >= lo - 8) & (height <= hi + 8)
            scar = myo & (np.abs(angle) <= self.scar_width / 2) & (height >= lo) & (height <= hi) & (depth <= self.scar_depth)
            out[edema] = EDEMA
            out[scar] = SCAR
        return out
