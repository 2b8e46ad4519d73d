"""COCO-compatible uncompressed RLE: column-major run lengths starting with a background run."""

from __future__ import annotations

import numpy as np


def encode(mask: np.ndarray) -> list[int]:
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    return counts if not flat[0] else [0, *counts]


def decode(counts: list[int], height: int, width: int) -> np.ndarray:
    flat = np.zeros(height * width, dtype=bool)
    pos, value = 0, False
    for run in counts:
        if value:
            flat[pos : pos + run] = True
        pos += run
        value = not value
    return flat.reshape((height, width), order="F")
