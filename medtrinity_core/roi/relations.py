"""Relations between the ROIs of one image: containment, overlap, contact, direction, distance."""

from __future__ import annotations

import math

import numpy as np

from medtrinity_core.roi.components import Component

MAX_RELATED = 6  # the largest ROIs per image get pairwise relations (n^2 stays small)


def relation(a: Component, b: Component, width: int, height: int) -> tuple[str, float]:
    """How `a` relates to `b`, and the centroid distance in % of the image diagonal."""
    (ax, ay), (bx, by) = a.centroid, b.centroid
    distance = 100.0 * math.hypot(ax - bx, ay - by) / math.hypot(width, height)
    inter = int(np.count_nonzero(a.mask & b.mask))
    if inter and inter >= 0.9 * b.area:
        kind = "contains"
    elif inter and inter >= 0.9 * a.area:
        kind = "inside"
    elif inter:
        kind = "overlaps"
    elif _touches(a, b):
        kind = "touches"
    elif abs(ax - bx) >= abs(ay - by):
        kind = "left of" if ax < bx else "right of"
    else:
        kind = "above" if ay < by else "below"
    return kind, round(distance, 2)


def _touches(a: Component, b: Component) -> bool:
    if a.x1 < b.x0 or b.x1 < a.x0 or a.y1 < b.y0 or b.y1 < a.y0:
        return False
    y0, y1 = max(min(a.y0, b.y0) - 1, 0), max(a.y1, b.y1) + 1
    x0, x1 = max(min(a.x0, b.x0) - 1, 0), max(a.x1, b.x1) + 1
    am, bm = a.mask[y0:y1, x0:x1], b.mask[y0:y1, x0:x1]
    grown = am.copy()
    grown[1:, :] |= am[:-1, :]
    grown[:-1, :] |= am[1:, :]
    grown[:, 1:] |= am[:, :-1]
    grown[:, :-1] |= am[:, 1:]
    return bool((grown & bm).any())
