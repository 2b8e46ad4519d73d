"""Facts about one ROI: size class, location phrase, appearance against a ring of surrounding tissue."""

from __future__ import annotations

import colorsys

import numpy as np
from scipy import ndimage

from medtrinity_core.imaging.readers import OPPOSITE
from medtrinity_core.modalities import DEFAULT_INTENSITY_WORDS, INTENSITY_WORDS

CONTRAST_STEP = 12.0  # grey levels (of 255) between ROI and ring before we call it brighter or darker
HOMOGENEOUS_CV = 0.15  # coefficient of variation inside the ROI below which texture is homogeneous
PATIENT_SIDE = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}


def size_class(area_ratio: float) -> str:
    if area_ratio < 0.01:
        return "small"
    if area_ratio < 0.10:
        return "medium"
    return "large"


def _third(position: float) -> int:
    return 0 if position < 1 / 3 else (2 if position > 2 / 3 else 1)


def location_phrase(cx: float, cy: float, width: int, height: int, image_left: str | None = None, image_top: str | None = None) -> str:
    """Image-grid terms for photographs; patient terms when the slice's orientation is known."""
    col, row = _third(cx / width), _third(cy / height)
    if image_left and image_top:
        horizontal = (f"patient's {PATIENT_SIDE[image_left]}", "midline", f"patient's {PATIENT_SIDE[OPPOSITE[image_left]]}")[col]
        vertical = (PATIENT_SIDE[image_top], None, PATIENT_SIDE[OPPOSITE[image_top]])[row]
        return f"{vertical}, {horizontal}" if vertical else horizontal
    vertical = ("upper", None, "lower")[row]
    horizontal = ("left", None, "right")[col]
    if not vertical and not horizontal:
        return "centre of the image"
    return " ".join(p for p in (vertical, horizontal) if p) + " part of the image"


def ring(mask: np.ndarray, width: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, iterations=width) & ~mask


HUES = ((15, "red"), (45, "orange"), (70, "yellow"), (170, "green"), (260, "blue"), (330, "purple"), (361, "red"))


def colour_name(rgb: np.ndarray) -> str:
    h, s, v = colorsys.rgb_to_hsv(*(float(c) / 255.0 for c in rgb))
    if v < 0.2:
        return "dark"
    if s < 0.15:
        return "white" if v > 0.85 else "grey"
    name = next(n for limit, n in HUES if h * 360 < limit)
    if name == "red" and s < 0.35:
        return "pink"
    if name == "orange" and v < 0.6:
        return "brown"
    return ("pale " if s < 0.35 else "") + name


def appearance(image: np.ndarray, mask: np.ndarray, modality: str) -> dict:
    """Mean and spread inside the ROI against a ring around it, in the modality's words."""
    grey = image if image.ndim == 2 else image.mean(axis=2)
    inside = grey[mask].astype(np.float64)
    width = max(2, int(round(0.15 * np.sqrt(mask.sum()))))
    around = grey[ring(mask, width)].astype(np.float64)
    roi_mean = float(inside.mean())
    ring_mean = float(around.mean()) if around.size else roi_mean
    cv = float(inside.std() / roi_mean) if roi_mean > 0 else 0.0
    higher, same, lower = INTENSITY_WORDS.get(modality, DEFAULT_INTENSITY_WORDS)
    diff = roi_mean - ring_mean
    contrast = higher if diff > CONTRAST_STEP else (lower if diff < -CONTRAST_STEP else same)
    colour = colour_name(image[mask].mean(axis=0)) if image.ndim == 3 else None
    return {
        "roi_mean": round(roi_mean, 3),
        "ring_mean": round(ring_mean, 3),
        "roi_cv": round(cv, 4),
        "contrast": contrast,
        "texture": "homogeneous" if cv < HOMOGENEOUS_CV else "heterogeneous",
        "colour": colour,
    }
