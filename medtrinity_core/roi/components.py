"""Connected components (8-connectivity) with a minimum area, each as a cropped mask and its box."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Component:
    index: int
    x0: int  # box: x0, y0 inclusive; x1, y1 exclusive
    y0: int
    x1: int
    y1: int
    area: int
    mask: np.ndarray  # full-image boolean mask

    @property
    def centroid(self) -> tuple[float, float]:
        ys, xs = np.nonzero(self.mask[self.y0 : self.y1, self.x0 : self.x1])
        return float(xs.mean() + self.x0), float(ys.mean() + self.y0)


def components(mask: np.ndarray, min_pixels: int, min_fraction: float) -> list[Component]:
    """Components at least `min_pixels` and `min_fraction` of the image, largest first (ties by position)."""
    labelled, count = ndimage.label(mask, structure=EIGHT)
    if count == 0:
        return []
    areas = np.bincount(labelled.ravel(), minlength=count + 1)
    floor = max(min_pixels, min_fraction * mask.size)
    out = []
    for i, slc in enumerate(ndimage.find_objects(labelled), start=1):
        if slc is None or areas[i] < floor:
            continue
        out.append(Component(0, slc[1].start, slc[0].start, slc[1].stop, slc[0].stop, int(areas[i]), labelled == i))
    out.sort(key=lambda c: (-c.area, c.y0, c.x0))
    return [Component(n, c.x0, c.y0, c.x1, c.y1, c.area, c.mask) for n, c in enumerate(out)]
