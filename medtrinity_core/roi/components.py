"""Connected components (8-connectivity) with a minimum area, each kept as a crop of its box.

Crops keep every later measurement (shape, appearance, relations, RLE) proportional to the ROI's
size, not the image's.
"""

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
    crop: np.ndarray  # boolean mask of the box (holes kept)

    @property
    def centroid(self) -> tuple[float, float]:
        ys, xs = np.nonzero(self.crop)
        return float(xs.mean() + self.x0), float(ys.mean() + self.y0)

    def window(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """This component's mask over another box (zeros where it is absent)."""
        out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        ix0, iy0, ix1, iy1 = max(x0, self.x0), max(y0, self.y0), min(x1, self.x1), min(y1, self.y1)
        if ix0 < ix1 and iy0 < iy1:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = self.crop[iy0 - self.y0 : iy1 - self.y0, ix0 - self.x0 : ix1 - self.x0]
        return out


def from_box(index: int, x0: int, y0: int, x1: int, y1: int) -> Component:
    """A ground-truth box as a rectangular component."""
    return Component(index, x0, y0, x1, y1, (x1 - x0) * (y1 - y0), np.ones((y1 - y0, x1 - x0), dtype=bool))


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
        out.append(Component(0, slc[1].start, slc[0].start, slc[1].stop, slc[0].stop, int(areas[i]), labelled[slc] == i))
    out.sort(key=lambda c: (-c.area, c.y0, c.x0))
    return [Component(n, c.x0, c.y0, c.x1, c.y1, c.area, c.crop) for n, c in enumerate(out)]
