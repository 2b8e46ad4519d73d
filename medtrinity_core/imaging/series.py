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
from medtrinity_core.imaging.readers import MAX_VOXELS, pick_volumes, read_dicom
from medtrinity_core.reasons import DUPLICATE_SLICE_POSITIONS, INCONSISTENT_SERIES, MISSING_GEOMETRY, MISSING_SLICES, UNSUPPORTED_SERIES
from medtrinity_core.sources.paths import inside

GAP_TOLERANCE = 1.5  # a step this many times the median spacing means a slice is missing


@dataclass
class Series:
    image: sitk.Image  # stored values through the Modality LUT, LPS geometry from the headers
    first: pydicom.Dataset  # first slice's dataset (for tags such as Units, window, photometric)
    sop_uids: list[str]  # in slice order (z index)


def normal_of(ds: pydicom.Dataset) -> np.ndarray:
    iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(iop[:3], iop[3:])


def _read_slices(root: Path, relpaths: list[str], allow_burned_in: bool, max_voxels: int = MAX_VOXELS) -> list[tuple[pydicom.Dataset, np.ndarray, str]]:
    """Each slice decoded. Every file's declared size is checked before it is decoded, and the slices
    left may not declare more than what remains of the series' `max_voxels`."""
    slices, total = [], 0
    for rel in relpaths:
        values, ds = read_dicom(inside(root, rel), allow_burned_in, max_voxels - total)
        total += values.size
        if values.ndim != 2:
            raise ItemError(UNSUPPORTED_SERIES, f"{rel} is not a single-frame greyscale slice")
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            raise ItemError(MISSING_GEOMETRY, f"{rel} has no ImagePositionPatient/ImageOrientationPatient")
        slices.append((ds, values, rel))
    return slices


def _stack(slices: list[tuple[pydicom.Dataset, np.ndarray, str]]) -> Series:
    first = slices[0][0]
    normal = normal_of(first)
    shape = slices[0][1].shape
    for ds, values, rel in slices:
        if values.shape != shape or not np.allclose(normal_of(ds), normal, atol=1e-3):
            raise ItemError(INCONSISTENT_SERIES, f"{rel} differs in size or orientation from the rest of its series")
    slices = sorted(slices, key=lambda s: float(np.dot([float(v) for v in s[0].ImagePositionPatient], normal)))
    positions = np.array([np.dot([float(v) for v in s[0].ImagePositionPatient], normal) for s in slices])
    steps = np.diff(positions)
    if np.any(np.abs(steps) < 1e-3):
        dup = [slices[i + 1][2] for i in np.flatnonzero(np.abs(steps) < 1e-3)]
        raise ItemError(DUPLICATE_SLICE_POSITIONS, f"{len(dup)} slice(s) repeat a position, e.g. {dup[0]}")
    spacing_z = float(np.median(steps)) if steps.size else float(first.get("SliceThickness", 1.0) or 1.0)
    if steps.size and np.any(steps > GAP_TOLERANCE * spacing_z):
        gap = int(np.argmax(steps))
        raise ItemError(MISSING_SLICES, f"gap of {steps[gap]:.2f} mm after {slices[gap][2]} where slices are {spacing_z:.2f} mm apart")
    image = sitk.GetImageFromArray(np.stack([v for _, v, _ in slices]).astype(np.float32))
    row_mm, col_mm = (float(v) for v in first.get("PixelSpacing", [1.0, 1.0]))
    image.SetSpacing((col_mm, row_mm, spacing_z))
    image.SetOrigin(tuple(float(v) for v in slices[0][0].ImagePositionPatient))
    iop = [float(v) for v in first.ImageOrientationPatient]
    row, col = iop[:3], iop[3:]
    image.SetDirection((row[0], col[0], normal[0], row[1], col[1], normal[1], row[2], col[2], normal[2]))
    return Series(image, first, [str(s[0].SOPInstanceUID) for s in slices])


def assemble(root: Path, relpaths: list[str], allow_burned_in: bool = False) -> Series:
    """One 3D series: its slices sorted along the normal, checked, stacked with their geometry."""
    return _stack(_read_slices(root, relpaths, allow_burned_in))


TEMPORAL_TAGS = ("TemporalPositionIdentifier", "TriggerTime", "AcquisitionNumber")  # what tells a 4D series' volumes apart


def _temporal_groups(slices: list[tuple[pydicom.Dataset, np.ndarray, str]]) -> list[list] | None:
    """A series whose positions repeat, split into volumes by the first temporal tag that makes each
    volume hold every position once (cine MR, DCE, multi-phase CT); None when positions do not repeat
    or no tag splits them cleanly (then the duplicates are quarantined)."""
    normal = normal_of(slices[0][0])
    depth = [round(float(np.dot([float(v) for v in s[0].ImagePositionPatient], normal)), 3) for s in slices]
    if len(set(depth)) == len(depth):
        return None
    for tag in TEMPORAL_TAGS:
        keys = [s[0].get(tag) for s in slices]
        if any(k is None or str(k).strip() == "" for k in keys):
            continue
        groups: dict[float, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(float(key), []).append(index)
        members = [groups[k] for k in sorted(groups)]
        if len(members) > 1 and all(sorted(depth[i] for i in g) == sorted(set(depth)) for g in members):
            return [[slices[i] for i in g] for g in members]
    return None


def assemble_volumes(root: Path, relpaths: list[str], allow_burned_in: bool = False, volume_index: str | int | None = None,
                     max_voxels: int = MAX_VOXELS) -> list[tuple[int | None, Series]]:
    """The series as one volume (index None), or, for a 4D series, the volumes `volume_index` picks."""
    slices = _read_slices(root, relpaths, allow_burned_in, max_voxels)
    groups = _temporal_groups(slices)
    if groups is None:
        return [(None, _stack(slices))]
    return [(t, _stack(groups[t])) for t in pick_volumes(len(groups), volume_index, f"series of {relpaths[0]}")]


def _frame_positions(ds: pydicom.Dataset, frames: int) -> tuple[list[float], list[float], list[np.ndarray], tuple[float, float]] | None:
    """(row, col, per-frame positions, pixel spacing) of an enhanced multi-frame object or an RT dose
    grid; None when the object carries no per-frame geometry (a cine loop)."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    iop = ds.get("ImageOrientationPatient")
    spacing = ds.get("PixelSpacing")
    if shared is not None:
        if "PlaneOrientationSequence" in shared:
            iop = shared.PlaneOrientationSequence[0].ImageOrientationPatient
        if "PixelMeasuresSequence" in shared:
            spacing = shared.PixelMeasuresSequence[0].get("PixelSpacing", spacing)
    if iop is None or spacing is None:
        return None
    if per_frame is not None and len(per_frame) == frames and all("PlanePositionSequence" in f for f in per_frame):
        positions = [np.asarray([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]) for f in per_frame]
    elif "GridFrameOffsetVector" in ds and "ImagePositionPatient" in ds:
        origin = np.asarray([float(v) for v in ds.ImagePositionPatient])
        normal = np.cross([float(v) for v in iop[:3]], [float(v) for v in iop[3:]])
        positions = [origin + float(off) * normal for off in ds.GridFrameOffsetVector]
    else:
        return None
    return [float(v) for v in iop[:3]], [float(v) for v in iop[3:]], positions, (float(spacing[0]), float(spacing[1]))


def frames_volume(values: np.ndarray, ds: pydicom.Dataset, name: str) -> sitk.Image | None:
    """A multi-frame object with per-frame geometry as a volume, frames sorted along the normal."""
    geometry = _frame_positions(ds, values.shape[0])
    if geometry is None:
        return None
    row, col, positions, (row_mm, col_mm) = geometry
    if len(positions) != values.shape[0]:
        raise ItemError(INCONSISTENT_SERIES, f"{name}: {values.shape[0]} frames but {len(positions)} frame positions")
    normal = np.cross(row, col)
    depth = np.array([float(np.dot(p, normal)) for p in positions])
    order = np.argsort(depth)
    steps = np.diff(depth[order])
    if np.any(np.abs(steps) < 1e-3):
        raise ItemError(DUPLICATE_SLICE_POSITIONS, f"{name}: frames repeat a position")
    spacing_z = float(np.median(steps)) if steps.size else 1.0
    if steps.size and np.any(steps > GAP_TOLERANCE * spacing_z):
        raise ItemError(MISSING_SLICES, f"{name}: frame positions have a gap of {steps.max():.2f} mm where frames are {spacing_z:.2f} mm apart")
    image = sitk.GetImageFromArray(values[order].astype(np.float32))
    image.SetSpacing((col_mm, row_mm, spacing_z))
    image.SetOrigin(tuple(float(v) for v in positions[order[0]]))
    image.SetDirection((row[0], col[0], normal[0], row[1], col[1], normal[1], row[2], col[2], normal[2]))
    return image
