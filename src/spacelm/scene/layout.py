"""The ``Layout`` container and the pure transforms that move a layout with its point cloud."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from spacelm.scene.entities import Box, Door, Wall, Window


@dataclass(frozen=True)
class Layout:
    """An immutable scene layout: walls, doors, windows and oriented boxes (metres).

    ``Door.wall_id`` / ``Window.wall_id`` index into ``walls``.

    >>> Layout(walls=(Wall(0, 0, 0, 4, 0, 0, 2.5, 0.0),)).num_entities
    1
    """

    walls: tuple[Wall, ...] = ()
    doors: tuple[Door, ...] = ()
    windows: tuple[Window, ...] = ()
    boxes: tuple[Box, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists for convenience, store tuples so the layout stays hashable and immutable.
        for name in ("walls", "doors", "windows", "boxes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def num_entities(self) -> int:
        return len(self.walls) + len(self.doors) + len(self.windows) + len(self.boxes)

    def box_array(self) -> np.ndarray:
        """Boxes as ``(N, 7) float64`` rows ``[x, y, z, angle_z, scale_x, scale_y, scale_z]``."""
        rows = [(b.x, b.y, b.z, b.angle_z, b.scale_x, b.scale_y, b.scale_z) for b in self.boxes]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 7)

    def wall_array(self) -> np.ndarray:
        """Walls as ``(N, 8) float64`` rows ``[ax, ay, az, bx, by, bz, height, thickness]``."""
        rows = [(w.ax, w.ay, w.az, w.bx, w.by, w.bz, w.height, w.thickness) for w in self.walls]
        return np.asarray(rows, dtype=np.float64).reshape(-1, 8)


def translate(layout: Layout, offset) -> Layout:
    """Move every entity by ``offset`` (3 floats, metres)."""
    dx, dy, dz = (float(v) for v in offset)
    return Layout(
        walls=[replace(w, ax=w.ax + dx, ay=w.ay + dy, az=w.az + dz, bx=w.bx + dx, by=w.by + dy,
                       bz=w.bz + dz) for w in layout.walls],
        doors=[replace(d, x=d.x + dx, y=d.y + dy, z=d.z + dz) for d in layout.doors],
        windows=[replace(w, x=w.x + dx, y=w.y + dy, z=w.z + dz) for w in layout.windows],
        boxes=[replace(b, x=b.x + dx, y=b.y + dy, z=b.z + dz) for b in layout.boxes],
    )


def rotate_z(layout: Layout, angle: float, center=(0.0, 0.0)) -> Layout:
    """Rotate the layout by ``angle`` radians counter-clockwise about the vertical axis through ``center``."""
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = (float(v) for v in center)

    def rot(x: float, y: float) -> tuple[float, float]:
        x, y = x - cx, y - cy
        return cx + c * x - s * y, cy + s * x + c * y

    walls = []
    for w in layout.walls:
        (ax, ay), (bx, by) = rot(w.ax, w.ay), rot(w.bx, w.by)
        walls.append(replace(w, ax=ax, ay=ay, bx=bx, by=by))
    doors = [replace(d, **dict(zip("xy", rot(d.x, d.y)))) for d in layout.doors]
    windows = [replace(w, **dict(zip("xy", rot(w.x, w.y)))) for w in layout.windows]
    boxes = [replace(b, angle_z=b.angle_z + angle, **dict(zip("xy", rot(b.x, b.y))))
             for b in layout.boxes]
    return Layout(walls, doors, windows, boxes)


def scale(layout: Layout, factor: float) -> Layout:
    """Scale every position and size by ``factor`` about the origin (augmentation, unit fixes)."""
    f = float(factor)
    return Layout(
        walls=[Wall(*(v * f for v in (w.ax, w.ay, w.az, w.bx, w.by, w.bz, w.height, w.thickness)))
               for w in layout.walls],
        doors=[replace(d, x=d.x * f, y=d.y * f, z=d.z * f, width=d.width * f, height=d.height * f)
               for d in layout.doors],
        windows=[replace(w, x=w.x * f, y=w.y * f, z=w.z * f, width=w.width * f, height=w.height * f)
                 for w in layout.windows],
        boxes=[replace(b, x=b.x * f, y=b.y * f, z=b.z * f, scale_x=b.scale_x * f,
                       scale_y=b.scale_y * f, scale_z=b.scale_z * f) for b in layout.boxes],
    )


def canonical_order(layout: Layout) -> Layout:
    """Reorder entities as SpatialLM's training does, so equal scenes always give equal text.

    Each wall's endpoints are put in (z, y, x) lexicographic order, then walls are sorted by their
    first endpoint and then their second (keys z, y, x); doors, windows and boxes are sorted by the
    centre's y, then x. Door and window ``wall_id`` follow their wall to its new index. The sort is
    stable, so exact ties keep their input order.
    """
    def endpoints(w: Wall):
        a, b = (w.az, w.ay, w.ax), (w.bz, w.by, w.bx)
        return (a, b) if a <= b else (b, a)

    walls = []
    for w in layout.walls:
        (az, ay, ax), (bz, by, bx) = endpoints(w)
        walls.append(replace(w, ax=ax, ay=ay, az=az, bx=bx, by=by, bz=bz))
    wall_order = sorted(range(len(walls)), key=lambda i: endpoints(walls[i]))
    new_index = {old: new for new, old in enumerate(wall_order)}

    def by_yx(entities):
        return sorted(entities, key=lambda e: (e.y, e.x))

    return Layout(
        walls=[walls[i] for i in wall_order],
        doors=by_yx(replace(d, wall_id=new_index[d.wall_id]) for d in layout.doors),
        windows=by_yx(replace(w, wall_id=new_index[w.wall_id]) for w in layout.windows),
        boxes=by_yx(layout.boxes),
    )


def fold_box_yaws(layout: Layout) -> Layout:
    """Fold every box yaw into its canonical interval (see ``quantize.fold_yaw``)."""
    return replace(layout, boxes=tuple(replace(b, angle_z=fold_yaw(b.angle_z, b.scale_x, b.scale_y))
                                       for b in layout.boxes))


def fold_yaw(angle: float, scale_x: float, scale_y: float) -> float:
    """Fold a box yaw by the box's symmetry into one canonical interval, as SpatialLM's training does.

    A box looks the same after a half turn, and after a quarter turn when its footprint is square
    (|scale_x - scale_y| < 1 mm), so one yaw per box is kept: the angle is wrapped to [-pi, pi) and
    folded by that period into [-pi, 0) (non-square) or [-pi, -pi/2) (square). Without this the LM
    would be asked to predict one of several equivalent answers at random.

    >>> round(fold_yaw(0.1, 2.0, 1.0), 6)  # 0.1 rad is the same box as 0.1 - pi
    -3.041593
    """
    period = math.pi / 2 if abs(scale_x - scale_y) < 1e-3 else math.pi
    wrapped = (angle + math.pi) % (2 * math.pi) - math.pi
    folded = (wrapped + math.pi) % period - math.pi
    return folded
