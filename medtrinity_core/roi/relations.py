"""Relations between the ROIs of one image: containment, overlap, contact, direction, distance."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from medtrinity_core.roi.components import EIGHT, Component

MAX_RELATED = 6  # the largest ROIs per image get pairwise relations (n^2 stays small)
CONTAINED = 0.9  # share of a region's area inside another for "contains" / "inside"


def _union_box(a: Component, b: Component, pad: int = 0) -> tuple[int, int, int, int]:
    return min(a.x0, b.x0) - pad, min(a.y0, b.y0) - pad, max(a.x1, b.x1) + pad, max(a.y1, b.y1) + pad


def intersection(a: Component, b: Component) -> int:
    x0, y0, x1, y1 = max(a.x0, b.x0), max(a.y0, b.y0), min(a.x1, b.x1), min(a.y1, b.y1)
    if x0 >= x1 or y0 >= y1:
        return 0
    return int(np.count_nonzero(a.window(x0, y0, x1, y1) & b.window(x0, y0, x1, y1)))


def touches(a: Component, b: Component) -> bool:
    if a.x1 < b.x0 or b.x1 < a.x0 or a.y1 < b.y0 or b.y1 < a.y0:
        return False
    box = _union_box(a, b, pad=1)
    return bool((ndimage.binary_dilation(a.window(*box), structure=EIGHT) & b.window(*box)).any())


def relation(a: Component, b: Component, width: int, height: int) -> tuple[str, float]:
    """How `a` relates to `b` (image terms), and the centroid distance in % of the image diagonal."""
    (ax, ay), (bx, by) = a.centroid, b.centroid
    distance = 100.0 * math.hypot(ax - bx, ay - by) / math.hypot(width, height)
    inter = intersection(a, b)
    if inter and inter >= CONTAINED * b.area:
        kind = "contains"
    elif inter and inter >= CONTAINED * a.area:
        kind = "inside"
    elif inter:
        kind = "overlaps"
    elif touches(a, b):
        kind = "touches"
    elif abs(ax - bx) >= abs(ay - by):
        kind = "left of" if ax < bx else "right of"
    else:
        kind = "above" if ay < by else "below"
    return kind, round(distance, 2)
