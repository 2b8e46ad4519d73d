"""Label volumes from DICOM-SEG (binary and fractional) and RTSTRUCT (contours rasterized) on a series' grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from skimage.draw import polygon

from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.series import Series

FRACTIONAL_CUT = 0.5


def seg_labels(path: Path, series: Series) -> tuple[np.ndarray, dict[int, str]]:
    """Segment numbers on the series' slices, matched by referenced SOP instance; names from SegmentLabel
    (else the segmented property's meaning)."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001
        raise ItemError("bad_annotation", f"{path.name}: not a readable DICOM-SEG ({exc})") from None
    names = {}
    for item in seg.SegmentSequence:
        label = str(item.get("SegmentLabel") or "")
        if not label and "SegmentedPropertyTypeCodeSequence" in item:
            label = str(item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning)
        names[int(item.SegmentNumber)] = label or f"segment {int(item.SegmentNumber)}"
    referenced = set(seg.get_source_image_uids()) if hasattr(seg, "get_source_image_uids") else None
    uids = [u for u in series.sop_uids if referenced is None or any(u == r[2] for r in referenced)]
    if not uids:
        raise ItemError("mask_geometry_mismatch", f"{path.name} references none of its series' slices")
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=False, skip_overlap_checks=True)
    pixels = np.asarray(pixels)
    if pixels.dtype.kind == "f":
        pixels = pixels > FRACTIONAL_CUT
    segments = sorted(names)
    size = series.image.GetSize()
    labels = np.zeros((size[2], size[1], size[0]), dtype=np.int64)
    for k, uid in enumerate(uids):
        z = series.sop_uids.index(uid)
        for channel, number in enumerate(segments):
            labels[z][pixels[k, :, :, channel] > 0] = number
    return labels, names


def _contour_slice(points: np.ndarray, refs: list[str], series: Series, positions: np.ndarray, spacing_z: float) -> int | None:
    for uid in refs:
        if uid in series.sop_uids:
            return series.sop_uids.index(uid)
    d = float(np.dot(points[0], series_normal(series)))
    nearest = int(np.argmin(np.abs(positions - d)))
    return nearest if abs(positions[nearest] - d) <= spacing_z / 2 else None


def series_normal(series: Series) -> np.ndarray:
    return np.asarray(series.image.GetDirection()).reshape(3, 3)[:, 2]


def rtstruct_labels(path: Path, series: Series) -> tuple[np.ndarray, dict[int, str]]:
    """Each ROI's closed planar contours filled on the slice they lie on (matched by referenced SOP
    instance, else by position along the normal); later ROIs overwrite earlier ones where they overlap."""
    try:
        ds = pydicom.dcmread(path, force=True)
        names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
        contours = ds.ROIContourSequence
    except Exception as exc:  # noqa: BLE001
        raise ItemError("bad_annotation", f"{path.name}: not a readable RT structure set ({exc})") from None
    image = series.image
    size = image.GetSize()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    row_dir, col_dir, normal = direction[:, 0], direction[:, 1], direction[:, 2]
    origin = np.asarray(image.GetOrigin())
    sx, sy, sz = image.GetSpacing()
    positions = np.array([np.dot(origin + z * sz * normal, normal) for z in range(size[2])])
    labels = np.zeros((size[2], size[1], size[0]), dtype=np.int64)
    placed = 0
    for roi in contours:
        number = int(roi.ReferencedROINumber)
        for contour in roi.get("ContourSequence") or []:
            points = np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)
            refs = [str(i.ReferencedSOPInstanceUID) for i in contour.get("ContourImageSequence") or []]
            z = _contour_slice(points, refs, series, positions, sz)
            if z is None:
                continue
            slice_origin = origin + z * sz * normal
            cols = (points - slice_origin) @ row_dir / sx
            rows = (points - slice_origin) @ col_dir / sy
            rr, cc = polygon(rows, cols, shape=(size[1], size[0]))
            labels[z, rr, cc] = number
            placed += 1
    if contours and not placed:
        raise ItemError("mask_geometry_mismatch", f"{path.name}: no contour lies on a slice of its series")
    return labels, names
