"""COCO-compatible uncompressed RLE: column-major run lengths starting with a background run."""

from __future__ import annotations

import numpy as np


def encode_crop(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> list[int]:
    """RLE of a full-image mask that is zero outside the box at (x0, y0); costs the box's columns only."""
    crop = np.asarray(crop, dtype=bool)
    if height * width == 0:
        return []
    columns = np.zeros((crop.shape[1], height), dtype=np.int8)
    columns[:, y0 : y0 + crop.shape[0]] = crop.T
    flat = np.concatenate(([0], columns.ravel(), [0]))
    edges = np.flatnonzero(np.diff(flat))  # alternating starts and ends of runs of ones
    if edges.size == 0:
        return [height * width]
    edges = edges + x0 * height
    bounds = np.concatenate(([0], edges, [height * width]))
    counts = np.diff(bounds).tolist()
    return counts[:-1] if counts[-1] == 0 else counts  # a mask ending in foreground has no closing background run


def encode(mask: np.ndarray) -> list[int]:
    mask = np.asarray(mask, dtype=bool)
    return encode_crop(mask, 0, 0, *mask.shape)


def decode(counts: list[int], height: int, width: int) -> np.ndarray:
    flat = np.zeros(height * width, dtype=bool)
    pos, value = 0, False
    for run in counts:
        if value:
            flat[pos : pos + run] = True
        pos += run
        value = not value
    return flat.reshape((height, width), order="F")
