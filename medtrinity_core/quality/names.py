"""The tokens of each item's own patient name, read back from its DICOM headers at check time (names
are never stored in a manifest), so the patient-data scan can look for exactly them."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl


def _dicom_file(path: Path) -> Path | None:
    if path.is_file():
        return path
    if path.is_dir():
        return next((p for p in sorted(path.rglob("*")) if p.is_file()), None)
    return None


def name_tokens(path: Path) -> set[str]:
    """Family, given and middle names (three letters or more) of the DICOM file's PatientName."""
    import pydicom

    file = _dicom_file(path)
    if file is None:
        return set()
    try:
        ds = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["PatientName"])
    except Exception:  # noqa: BLE001 - not DICOM, or unreadable: nothing to look for
        return set()
    name = str(ds.get("PatientName", "") or "")
    return {t for t in re.split(r"[\^\s=,]+", name) if len(t) >= 3 and t.isalpha()}


def patient_name_tokens(source, raw: pl.DataFrame, images: pl.DataFrame, paths) -> dict[str, set[str]]:
    """image id -> its patient's name tokens, for DICOM sources (others have no patient name)."""
    if source.layout != "dicom" or raw.is_empty():
        return {}
    from medtrinity_core.sources.paths import inside

    by_item = {}
    for row in raw.iter_rows(named=True):
        try:
            by_item[row["item_id"]] = name_tokens(inside(source.root, paths.private(row["relpath"])))
        except Exception:  # noqa: BLE001 - a file gone since discovery: nothing to look for
            by_item[row["item_id"]] = set()
    return {img["image_id"]: by_item.get(img["item_id"], set()) for img in images.iter_rows(named=True)}
