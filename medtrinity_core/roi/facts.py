"""Facts about one ROI: size, location, shape and appearance against a ring of surrounding tissue."""

from __future__ import annotations

import colorsys
import math

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops

from medtrinity_core.imaging.readers import OPPOSITE
from medtrinity_core.modalities import DEFAULT_INTENSITY_WORDS, INTENSITY_WORDS
from medtrinity_core.roi.components import Component

CONTRAST_STEP = 12.0  # grey levels (of 255) between ROI and ring before we call it brighter or darker
HOMOGENEOUS_CV = 0.15  # coefficient of variation inside the ROI below which texture is homogeneous
PATIENT_SIDE = {"R": "right", "L": "left", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}
HUES = ((15, "red"), (45, "orange"), (70, "yellow"), (170, "green"), (260, "blue"), (330, "purple"), (361, "red"))


def size_class(area_ratio: float) -> str:
    if area_ratio < 0.01:
        return "small"
    if area_ratio < 0.10:
        return "medium"
    return "large"


def _third(position: float) -> int:
    return 0 if position < 1 / 3 else (2 if position > 2 / 3 else 1)


def _patient_word(letter: str | None) -> str | None:
    """Right and left are the patient's; anterior, posterior, superior and inferior need no owner."""
    if letter is None:
        return None
    return f"patient's {PATIENT_SIDE[letter]}" if letter in ("R", "L") else PATIENT_SIDE[letter]


def grid_terms(fx: float, fy: float, image_left: str | None = None, image_top: str | None = None) -> tuple[str | None, str | None]:
    """(vertical, horizontal) words for a point at fractions (fx, fy) of a box; None for the middle third."""
    col, row = _third(fx), _third(fy)
    if image_left and image_top:
        horizontal = _patient_word((image_left, None, OPPOSITE[image_left])[col])
        vertical = _patient_word((image_top, None, OPPOSITE[image_top])[row])
    else:
        horizontal = ("left", None, "right")[col]
        vertical = ("upper", None, "lower")[row]
    return vertical, horizontal


MIDLINE_BAND = 0.10  # share of the body's width on each side of its centre that is "midline"


def _side(position: float, centre: float, half_band: float, first: str) -> str | None:
    """The patient side (letter) of a position against a centre, None inside the band; `first` is the
    side at low pixel coordinates."""
    if abs(position - centre) <= half_band:
        return None
    return first if position < centre else OPPOSITE[first]


def location_phrase(cx: float, cy: float, width: int, height: int, image_left: str | None = None, image_top: str | None = None,
                    body: dict | None = None, extent: tuple[float, float] | None = None, band: float = MIDLINE_BAND) -> str:
    """Image-grid terms when the orientation is unknown (photographs). With a known orientation, patient
    terms measured from the body's centre: outside a band of `band` of the body's width (height) the
    patient's right or left (anterior or posterior), inside it midline (central); superior/inferior
    stay thirds of the slice's rows. `extent` (x0, x1) adds "extending across the midline" when the
    region spans the body's centre, never in place of the side. Without a body box, the image's."""
    if not (image_left and image_top):
        vertical, horizontal = grid_terms(cx / width, cy / height)
        if not vertical and not horizontal:
            return "centre of the image"
        return " ".join(p for p in (vertical, horizontal) if p) + " part of the image"
    box = body or {"x0": 0.0, "y0": 0.0, "x1": float(width), "y1": float(height), "cx": width / 2, "cy": height / 2}
    across = _side(cx, box["cx"], band * (box["x1"] - box["x0"]), image_left)
    if image_top in ("S", "I"):
        vertical = grid_terms(cx / width, cy / height, image_left, image_top)[0]
    else:
        vertical = _patient_word(_side(cy, box["cy"], band * (box["y1"] - box["y0"]), image_top))
    horizontal = _patient_word(across)
    if image_left in ("R", "L"):
        if horizontal and extent and extent[0] < box["cx"] < extent[1]:
            horizontal += ", extending across the midline"
        horizontal = horizontal or "midline"
    if vertical and horizontal:
        return f"{vertical}, {horizontal}"
    return vertical or horizontal or "central"


def within_phrase(roi: Component, container: Component, label: str, image_left: str | None, image_top: str | None) -> str:
    """Where an ROI lies inside a larger labelled region, e.g. "within the liver, in its anterior, patient's right part"."""
    cx, cy = roi.centroid
    fx = (cx - container.x0) / max(container.x1 - container.x0, 1)
    fy = (cy - container.y0) / max(container.y1 - container.y0, 1)
    vertical, horizontal = grid_terms(fx, fy, image_left, image_top)
    part = ", ".join(p for p in (vertical, horizontal) if p)
    return f"within the {label}, in its {part} part" if part else f"within the {label}, centrally"


def shape_facts(comp: Component) -> dict:
    """Circularity, solidity, eccentricity and orientation, and the words derived from them."""
    props = regionprops(comp.crop.astype(np.uint8))[0]
    perimeter = props.perimeter or 1.0
    circularity = min(1.0, 4 * math.pi * comp.area / (perimeter * perimeter))
    solidity, eccentricity = float(props.solidity), float(props.eccentricity)
    shape = "round" if eccentricity < 0.6 else ("oval" if eccentricity < 0.9 else "elongated")
    if solidity >= 0.9 and circularity >= 0.6:
        margin = "well-circumscribed"
    elif solidity >= 0.75:
        margin = "lobulated"
    else:
        margin = "irregular"
    return {
        "circularity": round(circularity, 4),
        "solidity": round(solidity, 4),
        "eccentricity": round(eccentricity, 4),
        "orientation_deg": round(math.degrees(props.orientation), 2),
        "shape": shape,
        "margin": margin,
    }


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


def appearance(image: np.ndarray, comp: Component, modality: str) -> dict:
    """Mean and spread inside the ROI against a ring around it, in the modality's words."""
    height, width = image.shape[:2]
    ring_width = max(2, round(0.15 * math.sqrt(comp.area)))
    x0, y0 = max(comp.x0 - ring_width, 0), max(comp.y0 - ring_width, 0)
    x1, y1 = min(comp.x1 + ring_width, width), min(comp.y1 + ring_width, height)
    inside_mask = comp.window(x0, y0, x1, y1)
    # chessboard distance <= w is w rounds of 8-connected dilation, in one pass
    ring = (ndimage.distance_transform_cdt(~inside_mask, metric="chessboard") <= ring_width) & ~inside_mask
    pixels = image[y0:y1, x0:x1]
    grey = pixels if pixels.ndim == 2 else pixels.mean(axis=2)
    inside = grey[inside_mask].astype(np.float64)
    around = grey[ring].astype(np.float64)
    roi_mean = float(inside.mean())
    ring_mean = float(around.mean()) if around.size else roi_mean
    cv = float(inside.std() / roi_mean) if roi_mean > 0 else 0.0
    higher, same, lower = INTENSITY_WORDS.get(modality, DEFAULT_INTENSITY_WORDS)
    diff = roi_mean - ring_mean
    return {
        "roi_mean": round(roi_mean, 3),
        "ring_mean": round(ring_mean, 3),
        "roi_cv": round(cv, 4),
        "contrast": higher if diff > CONTRAST_STEP else (lower if diff < -CONTRAST_STEP else same),
        "texture": "homogeneous" if cv < HOMOGENEOUS_CV else "heterogeneous",
        "colour": colour_name(pixels[inside_mask].mean(axis=0)) if pixels.ndim == 3 else None,
    }
