"""DICOM series: files grouped by SeriesInstanceUID, sorted by ImagePositionPatient along the slice
normal (never by file name or InstanceNumber), checked for missing and duplicated positions, and
stacked into one volume with its patient geometry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.readers import read_dicom

HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "Rows", "NumberOfFrames",
    "ImagePositionPatient", "ImageOrientationPatient", "ReferencedSeriesSequence",
    "ReferencedFrameOfReferenceSequence", "FrameOfReferenceUID",
]
GAP_TOLERANCE = 1.5  # a step this many times the median spacing means a slice is missing


@dataclass(frozen=True)
class Header:
    relpath: str
    modality: str
    series_uid: str | None
    referenced_series: str | None  # for SEG and RTSTRUCT
    has_pixels: bool
    frames: int


def _referenced_series(ds: pydicom.Dataset) -> str | None:
    for item in ds.get("ReferencedSeriesSequence") or []:
        if "SeriesInstanceUID" in item:
            return str(item.SeriesInstanceUID)
    for frame in ds.get("ReferencedFrameOfReferenceSequence") or []:
        for study in frame.get("RTReferencedStudySequence") or []:
            for series in study.get("RTReferencedSeriesSequence") or []:
                return str(series.SeriesInstanceUID)
    return None


def read_header(root: Path, relpath: str) -> Header | None:
    """The few tags that decide grouping; None when the file is not DICOM (normalize will say why)."""
    try:
        ds = pydicom.dcmread(root / relpath, stop_before_pixels=True, specific_tags=HEADER_TAGS, force=True)
    except Exception:  # noqa: BLE001 - anything unparsable is left to the decoder's specific error
        return None
    if "SOPClassUID" not in ds and "Modality" not in ds:
        return None
    return Header(
        relpath=relpath,
        modality=str(ds.get("Modality", "")),
        series_uid=str(ds.SeriesInstanceUID) if "SeriesInstanceUID" in ds else None,
        referenced_series=_referenced_series(ds),
        has_pixels="Rows" in ds,
        frames=int(ds.get("NumberOfFrames", 1) or 1),
    )


@dataclass
class Series:
    image: sitk.Image  # stored values through the Modality LUT, LPS geometry from the headers
    first: pydicom.Dataset  # first slice's dataset (for tags such as Units, window, photometric)
    sop_uids: list[str]  # in slice order (z index)


def normal_of(ds: pydicom.Dataset) -> np.ndarray:
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(iop[:3], iop[3:])


def assemble(root: Path, relpaths: list[str], allow_burned_in: bool = False) -> Series:
    slices = []
    for rel in relpaths:
        values, ds = read_dicom(root / rel, allow_burned_in)
        if values.ndim != 2:
            raise ItemError("unsupported_series", f"{rel} is not a single-frame greyscale slice")
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise ItemError("missing_geometry", f"{rel} has no ImagePositionPatient/ImageOrientationPatient")
        slices.append((ds, values, rel))
    first = slices[0][0]
    normal = normal_of(first)
    shape = slices[0][1].shape
    for ds, values, rel in slices:
        if values.shape != shape or not np.allclose(normal_of(ds), normal, atol=1e-3):
            raise ItemError("inconsistent_series", f"{rel} differs in size or orientation from the rest of its series")
    slices.sort(key=lambda s: float(np.dot([float(v) for v in s[0].ImagePositionPatient], normal)))
    positions = np.array([np.dot([float(v) for v in s[0].ImagePositionPatient], normal) for s in slices])
    steps = np.diff(positions)
    if np.any(np.abs(steps) < 1e-3):
        dup = [slices[i + 1][2] for i in np.flatnonzero(np.abs(steps) < 1e-3)]
        raise ItemError("duplicate_slice_positions", f"{len(dup)} slice(s) repeat a position, e.g. {dup[0]}")
    spacing_z = float(np.median(steps)) if steps.size else float(first.get("SliceThickness", 1.0) or 1.0)
    if steps.size and np.any(steps > GAP_TOLERANCE * spacing_z):
        gap = int(np.argmax(steps))
        raise ItemError("missing_slices", f"gap of {steps[gap]:.2f} mm after {slices[gap][2]} where slices are {spacing_z:.2f} mm apart")
    image = sitk.GetImageFromArray(np.stack([v for _, v, _ in slices]).astype(np.float32))
    row_mm, col_mm = (float(v) for v in first.get("PixelSpacing", [1.0, 1.0]))
    image.SetSpacing((col_mm, row_mm, spacing_z))
    image.SetOrigin(tuple(float(v) for v in slices[0][0].ImagePositionPatient))
    iop = [float(v) for v in first.ImageOrientationPatient]
    row, col = iop[:3], iop[3:]
    image.SetDirection((row[0], col[0], normal[0], row[1], col[1], normal[1], row[2], col[2], normal[2]))
    return Series(image, first, [str(s[0].SOPInstanceUID) for s in slices])
