"""DICOM headers as discovery reads them: the few tags that group files into series (one item per
volume series with the SEG and RTSTRUCT objects that reference it), read without pixel data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom

from medtrinity_core.errors import ItemError
from medtrinity_core.reasons import UNREADABLE
from medtrinity_core.sources.paths import inside

HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "Rows", "NumberOfFrames",
    "ImagePositionPatient", "ImageOrientationPatient", "ReferencedSeriesSequence",
    "ReferencedFrameOfReferenceSequence", "FrameOfReferenceUID",
]
# Single-frame storage classes whose instances are slices of a volume: CT, MR, PET, NM. Everything
# else (secondary capture, VL photographic and endoscopic, CR/DX, ultrasound) is a 2D image even
# when several instances share a SeriesInstanceUID.
CROSS_SECTIONAL_SOP = {
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.128",
    "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.130",
}
CROSS_SECTIONAL_MODALITY = {"CT", "MR", "PT", "NM"}


@dataclass(frozen=True)
class Header:
    relpath: str
    modality: str
    series_uid: str | None
    referenced_series: str | None  # for SEG and RTSTRUCT
    has_pixels: bool
    frames: int
    frame_of_reference: str | None = None  # an annotation's: its own or the one it references
    is_slice: bool = False  # a cross-sectional single-frame instance with slice geometry


def _referenced_series(ds: pydicom.Dataset) -> str | None:
    for item in ds.get("ReferencedSeriesSequence") or []:
        if "SeriesInstanceUID" in item:
            return str(item.SeriesInstanceUID)
    for frame in ds.get("ReferencedFrameOfReferenceSequence") or []:
        for study in frame.get("RTReferencedStudySequence") or []:
            for series in study.get("RTReferencedSeriesSequence") or []:
                return str(series.SeriesInstanceUID)
    return None


def _frame_of_reference(ds: pydicom.Dataset) -> str | None:
    for frame in ds.get("ReferencedFrameOfReferenceSequence") or []:
        if "FrameOfReferenceUID" in frame:
            return str(frame.FrameOfReferenceUID)
    return str(ds.FrameOfReferenceUID) if "FrameOfReferenceUID" in ds else None


def read_header(root: Path, relpath: str) -> Header | None:
    """The few tags that decide grouping; None when the file is not DICOM (normalize will say why).
    A DICOM file whose header values cannot be parsed (a non-numeric integer string, say) raises
    `ItemError("unreadable")`, so discovery quarantines that file and goes on."""
    path = inside(root, relpath)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS, force=True)
    except Exception:  # noqa: BLE001 - anything unparsable is left to the decoder's specific error
        return None
    try:
        if "SOPClassUID" not in ds and "Modality" not in ds:
            return None
        modality = str(ds.get("Modality", ""))
        sop_class = str(ds.get("SOPClassUID", ""))
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        geometry = "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds
        if geometry:
            [float(v) for v in (*ds.ImagePositionPatient, *ds.ImageOrientationPatient)]
        cross_sectional = sop_class in CROSS_SECTIONAL_SOP if sop_class else modality in CROSS_SECTIONAL_MODALITY
        return Header(
            relpath=relpath,
            modality=modality,
            series_uid=str(ds.SeriesInstanceUID) if "SeriesInstanceUID" in ds else None,
            referenced_series=_referenced_series(ds),
            has_pixels="Rows" in ds,
            frames=frames,
            frame_of_reference=_frame_of_reference(ds),
            is_slice=geometry and cross_sectional and frames == 1,
        )
    except Exception as exc:  # noqa: BLE001 - pydicom converts values lazily and raises many types
        raise ItemError(UNREADABLE, f"{relpath}: header cannot be parsed ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
