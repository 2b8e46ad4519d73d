"""Resize to square pixels with the longest side at most `max_side`; masks nearest-neighbour."""

from __future__ import annotations

import numpy as np
from PIL import Image


def target_size(width: int, height: int, max_side: int, spacing: tuple[float, float] | None) -> tuple[int, int]:
    w, h = float(width), float(height)
    if spacing and spacing[0] > 0 and spacing[1] > 0 and abs(spacing[0] - spacing[1]) > 0.01 * min(spacing):
        finest = min(spacing)
        w, h = w * spacing[0] / finest, h * spacing[1] / finest  # physical aspect: square pixels
    scale = min(1.0, max_side / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def resize_image(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (pixels.shape[1], pixels.shape[0]) == size:
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (mask.shape[1], mask.shape[0]) == size:
        return mask
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
