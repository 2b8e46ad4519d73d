"""The patient's body on a slice, from the values before windowing: its box and centre in pixels.

Patient-frame words (right/left, anterior/posterior) are measured from the body's centre, not from
the image frame, whose field of view may be much wider than the body. CT: voxels above -500 HU (air
and lung-free background below); other modalities: the non-background component, above half way
from the background level to the median tissue level. The largest connected component is the body.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BODY_HU = -500.0
TISSUE_FLOOR = 0.02  # share of the value range above the background counted as tissue when finding its level


def body_box(values: np.ndarray, modality: str) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) of the body on a 2D plane (x1, y1 exclusive); None when nothing stands out."""
    plane = np.asarray(values, dtype=np.float64)
    if plane.ndim == 3:
        plane = plane.mean(axis=2)
    if not plane.size or not np.isfinite(plane).all():
        return None
    if modality == "ct":
        foreground = plane > BODY_HU
    else:
        lo, hi = float(plane.min()), float(plane.max())
        if hi <= lo:
            return None
        tissue = plane[plane > lo + TISSUE_FLOOR * (hi - lo)]
        foreground = plane > lo + 0.5 * (float(np.median(tissue)) - lo)
    labels, count = ndimage.label(foreground)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    ys, xs = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def body_record(box: tuple[float, float, float, float] | None, scale_x: float, scale_y: float) -> dict | None:
    """The box in the resized image's pixels, with its centre."""
    if box is None:
        return None
    x0, y0, x1, y1 = box[0] * scale_x, box[1] * scale_y, box[2] * scale_x, box[3] * scale_y
    return {k: round(v, 3) for k, v in (("x0", x0), ("y0", y0), ("x1", x1), ("y1", y1), ("cx", (x0 + x1) / 2), ("cy", (y0 + y1) / 2))}
