"""Classical region proposals for images with no annotation and no expert model.

Flagged `method=proposal` with a confidence, and kept out of the dataset unless the source opts in:
they are guesses, not ground truth.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.segmentation import clear_border

PHOTOGRAPHIC = {"dermoscopy", "endoscopy", "fundus", "histopathology", "microscopy"}
Z_BRIGHT = 3.0


def _clean(mask: np.ndarray) -> np.ndarray:
    mask = ndimage.binary_opening(mask, structure=np.ones((3, 3), bool), iterations=2)
    return ndimage.binary_fill_holes(mask)


def otsu_proposal(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """The minority side of Otsu's threshold (a lesion on skin, a polyp on mucosa); confidence is the
    share of variance Otsu's split explains."""
    if grey.min() == grey.max():
        return np.zeros_like(grey, bool), 0.0
    t = threshold_otsu(grey)
    below = grey <= t
    mask = below if below.mean() < 0.5 else ~below
    a, b = grey[mask], grey[~mask]
    if a.size == 0 or b.size == 0:
        return np.zeros_like(grey, bool), 0.0
    between = a.size * b.size / grey.size**2 * (a.mean() - b.mean()) ** 2
    return _clean(mask), float(min(1.0, between / grey.var()))


def hypoechoic_proposal(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """Ultrasound: the dark side of Otsu's threshold on the despeckled image, away from the image
    border (where the fan's background and shadows lie); confidence from the contrast to the rest."""
    smooth = ndimage.gaussian_filter(grey, 2)
    if smooth.min() == smooth.max():
        return np.zeros_like(grey, bool), 0.0
    mask = _clean(clear_border(ndimage.binary_opening(smooth <= threshold_otsu(smooth), structure=np.ones((3, 3), bool), iterations=2)))
    if not mask.any():
        return mask, 0.0
    return mask, float(min(1.0, max(0.0, smooth[~mask].mean() - smooth[mask].mean()) / 128.0))


def outlier_proposal(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """Robust z-score outliers: hot spots on PET, CT, MR and X-ray."""
    median = np.median(grey)
    mad = 1.4826 * np.median(np.abs(grey - median)) or 1.0
    z = (grey - median) / mad
    mask = _clean(z > Z_BRIGHT)
    if not mask.any():
        return mask, 0.0
    return mask, float(min(1.0, np.abs(z[mask]).mean() / 10.0))


def propose(image: np.ndarray, modality: str) -> tuple[np.ndarray, float]:
    grey = (image if image.ndim == 2 else image.mean(axis=2)).astype(np.float64)
    if modality in PHOTOGRAPHIC:
        return otsu_proposal(grey)
    return hypoechoic_proposal(grey) if modality == "ultrasound" else outlier_proposal(grey)
