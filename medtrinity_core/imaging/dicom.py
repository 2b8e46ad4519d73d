"""DICOM intensity: Modality LUT, VOI window or LUT from the file, CT presets, PET SUVbw, MONOCHROME1."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pydicom
from pydicom.pixels import apply_voi_lut

from medtrinity_core.imaging.intensity import (
    DEFAULT_CT_WINDOW,
    percentile_range,
    scale_percentile,
    to_uint8,
    window_ct,
)


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    text = str(value).split(".")[0].ljust(6, "0")[:6]
    try:
        t = datetime.strptime(text, "%H%M%S")
    except ValueError:
        return None
    return t.hour * 3600 + t.minute * 60 + t.second


def suv_factor(ds: pydicom.Dataset) -> tuple[float | None, str]:
    """Bq/ml to SUVbw: weight (g) over the injected dose decayed to the series start; (None, why) if the
    tags do not allow it."""
    if str(ds.get("Units", "")).upper() != "BQML":
        return None, f"units {ds.get('Units', 'unknown')}, not BQML"
    weight = float(ds.get("PatientWeight") or 0)
    info = (ds.get("RadiopharmaceuticalInformationSequence") or [None])[0]
    if not weight or info is None:
        return None, "patient weight or radiopharmaceutical information missing"
    dose = float(info.get("RadionuclideTotalDose") or 0)
    half_life = float(info.get("RadionuclideHalfLife") or 0)
    start = _seconds(info.get("RadiopharmaceuticalStartTime"))
    scan = _seconds(ds.get("SeriesTime") or ds.get("AcquisitionTime"))
    if not dose or not half_life or start is None or scan is None:
        return None, "dose, half-life or injection and scan times missing"
    decayed = dose * 2 ** (-((scan - start) % 86400) / half_life)
    return weight * 1000.0 / decayed, "SUVbw"


def to_suv(values: np.ndarray, ds: pydicom.Dataset) -> tuple[np.ndarray, dict]:
    """PET values in SUVbw when the tags allow, else unchanged; the record says which and why."""
    factor, why = suv_factor(ds)
    if factor is None:
        return values, {"suv": None, "suv_flag": why}
    return values * factor, {"suv": "bw"}  # the factor is weight over dose: it would reveal the patient's weight


def dicom_to_uint8(values: np.ndarray, ds: pydicom.Dataset, modality: str, window: str | None) -> tuple[np.ndarray, dict]:
    """Stored values (after the Modality LUT) to 8 bits, recording how."""
    extra: dict = {}
    if str(ds.get("Modality", "")) == "PT" or modality == "pet":
        values, extra = to_suv(values, ds)
    if modality == "ct" and window:
        pixels, params = window_ct(values, window)
    elif "VOILUTSequence" in ds:
        voi = np.asarray(apply_voi_lut(values.astype(np.int64) if values.dtype.kind == "f" else values, ds), dtype=np.float32)
        pixels, params = to_uint8(voi, float(voi.min()), float(voi.max())), {"method": "voi_lut"}
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center = float(np.atleast_1d(ds.WindowCenter)[0])
        width = float(np.atleast_1d(ds.WindowWidth)[0])
        pixels, params = to_uint8(values, center - width / 2, center + width / 2), {"method": "dicom_window", "level": center, "width": width}
    elif modality == "ct":
        pixels, params = window_ct(values, DEFAULT_CT_WINDOW)
    else:
        pixels, params = scale_percentile(values, *percentile_range(values, nonzero_only=modality in ("mri", "pet")))
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        pixels, params = 255 - pixels, {**params, "inverted": True}
    return pixels, {**params, **extra}
