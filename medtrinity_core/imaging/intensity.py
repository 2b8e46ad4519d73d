"""Intensity to 8 bits: CT windows from presets, percentile scaling for MR, PET and the rest."""

from __future__ import annotations

import numpy as np

# (level, width) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (50.0, 400.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}
DEFAULT_CT_WINDOW = "soft_tissue"
PERCENTILES = (0.5, 99.5)


def to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = (values.astype(np.float32) - lo) * scale
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def window_ct(hu: np.ndarray, preset: str) -> tuple[np.ndarray, dict]:
    level, width = CT_WINDOWS[preset]
    lo, hi = level - width / 2, level + width / 2
    return to_uint8(hu, lo, hi), {"method": "ct_window", "preset": preset, "level": level, "width": width}


def percentile_range(values: np.ndarray, nonzero_only: bool = True) -> tuple[float, float]:
    sample = values[values != 0] if nonzero_only else values.ravel()
    if sample.size == 0:
        sample = values.ravel()
    lo, hi = np.percentile(sample, PERCENTILES)
    return float(lo), float(hi)


def scale_percentile(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, dict]:
    return to_uint8(values, lo, hi), {
        "method": "percentile",
        "percentiles": list(PERCENTILES),
        "lo": round(lo, 4),
        "hi": round(hi, 4),
    }
