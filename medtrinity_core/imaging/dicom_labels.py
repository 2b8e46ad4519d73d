"""Label volumes from DICOM-SEG (binary and fractional) and RTSTRUCT (contours rasterized) on a series' grid.

Each reader says how it matched the annotation to the series (`MATCHES`):
- `source_frames`: by the SOP instances the annotation references (the series it was drawn on);
- `geometry`: by plane positions in patient space, on the series it references (a SEG whose source
  references do not state `SpatialLocationsPreserved`, or reference instances the source lacks;
  contours without image references);
- `frame_of_reference`: the annotation references another series (contours drawn on the CT of a
  PET/CT study) and is put on this one through the frame of reference they share, by geometry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pydicom
from skimage.draw import polygon

from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.series import Series
from medtrinity_core.reasons import BAD_ANNOTATION, MASK_GEOMETRY_MISMATCH

FRACTIONAL_CUT = 0.5
DATE_TAGS = ("PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "StructureSetDate")


class LabelVolume(NamedTuple):
    labels: np.ndarray  # label numbers on the series' grid
    names: dict[int, str]
    match: str  # one of MATCHES
    withheld: int  # free-text names replaced because they held a patient identifier


def _identifiers(datasets: list[pydicom.Dataset]) -> tuple[set[str], set[str]]:
    """(name parts, id and date strings) of the patient in these files: read to compare, never written."""
    words, strings = set(), set()
    for ds in datasets:
        for part in re.split(r"[\^\s,]+", str(ds.get("PatientName", "") or "")):
            if len(part) >= 3:
                words.add(part.lower())
        for tag in ("PatientID", "OtherPatientIDs"):
            value = str(ds.get(tag, "") or "").strip()
            if len(value) >= 3:
                strings.add(value.lower())
        for tag in DATE_TAGS:
            value = str(ds.get(tag, "") or "").strip()
            if re.fullmatch(r"\d{8}", value):
                y, m, d = value[:4], value[4:6], value[6:]
                strings.update({value, f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}"})
    return words, strings


def withhold_identifying(names: dict[int, str], datasets: list[pydicom.Dataset], neutral: str) -> tuple[dict[int, str], int]:
    """Free-text label names (SegmentLabel, ROIName) that contain a token of the files' own patient name,
    id or dates are replaced by `<neutral> <number>`; returns the names and how many were replaced."""
    words, strings = _identifiers(datasets)
    out, withheld = {}, 0
    for number, name in names.items():
        lower = name.lower()
        hit = any(s in lower for s in strings) or any(re.search(rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])", lower) for w in words)
        out[number] = f"{neutral} {number}" if hit else name
        withheld += hit
    return out, withheld
MATCHES = ("source_frames", "geometry", "frame_of_reference")
PLANE_TOLERANCE = 0.25  # a SEG frame lies on a slice when it is within this fraction of the slice spacing
PARALLEL = 1e-3


class Grid:
    """A series' voxel grid in patient space (LPS, mm): where each slice and pixel lies."""

    def __init__(self, series: Series):
        image = series.image
        self.size = image.GetSize()  # (cols, rows, slices)
        direction = np.asarray(image.GetDirection()).reshape(3, 3)
        self.row_dir, self.col_dir, self.normal = direction[:, 0], direction[:, 1], direction[:, 2]
        self.origin = np.asarray(image.GetOrigin())
        self.sx, self.sy, self.sz = image.GetSpacing()
        self.frame_of_reference = str(series.first.get("FrameOfReferenceUID", "")) or None

    def empty(self) -> np.ndarray:
        return np.zeros((self.size[2], self.size[1], self.size[0]), dtype=np.int64)

    def slice_of(self, point: np.ndarray, tolerance_mm: float) -> int | None:
        """The slice whose plane is nearest a point, if within the tolerance."""
        z = float(np.dot(point - self.origin, self.normal)) / self.sz
        k = round(z)
        return k if 0 <= k < self.size[2] and abs(z - k) * self.sz <= tolerance_mm else None

    def depth(self, k: int) -> float:
        return float(np.dot(self.origin, self.normal)) + k * self.sz

    def plane_coords(self, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of patient points on slice k, in pixels."""
        offset = points - (self.origin + k * self.sz * self.normal)
        return offset @ self.col_dir / self.sy, offset @ self.row_dir / self.sx


def _check_frame(grid: Grid, frame_of_reference: str | None, name: str) -> None:
    if grid.frame_of_reference and frame_of_reference and frame_of_reference != grid.frame_of_reference:
        raise ItemError(BAD_ANNOTATION, f"{name} lies on frame of reference {frame_of_reference}, not its series'")


def _segment_names(ds: pydicom.Dataset) -> dict[int, str]:
    names = {}
    for item in ds.SegmentSequence:
        label = str(item.get("SegmentLabel") or "")
        if not label and "SegmentedPropertyTypeCodeSequence" in item:
            label = str(item.SegmentedPropertyTypeCodeSequence[0].CodeMeaning)
        names[int(item.SegmentNumber)] = label or f"segment {int(item.SegmentNumber)}"
    return names


def _frame_sources(ds: pydicom.Dataset) -> list[set[str]]:
    """The source instances each SEG frame says it was derived from."""
    return [
        {str(src.ReferencedSOPInstanceUID) for d in f.get("DerivationImageSequence") or [] for src in d.get("SourceImageSequence") or []}
        for f in ds.get("PerFrameFunctionalGroupsSequence") or []
    ]


def _seg_by_source_frames(path: Path, ds: pydicom.Dataset, series: Series, names: dict[int, str], grid: Grid) -> np.ndarray | None:
    """Through highdicom's index of referenced source instances; None when a frame references no
    instance of the series, or highdicom refuses (no `SpatialLocationsPreserved`)."""
    import highdicom as hd

    present = set(series.sop_uids)
    sources = _frame_sources(ds)
    if not sources or not all(refs & present for refs in sources):
        return None
    referenced = set().union(*sources)
    uids = [u for u in series.sop_uids if u in referenced]
    try:
        seg = hd.seg.segread(str(path))
        pixels = np.asarray(seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=False, skip_overlap_checks=True))
    except Exception:  # noqa: BLE001 - highdicom refuses many real-world SEGs; geometry decides then
        return None
    if pixels.dtype.kind == "f":
        pixels = pixels > FRACTIONAL_CUT
    labels = grid.empty()
    for k, uid in enumerate(uids):
        z = series.sop_uids.index(uid)
        for channel, number in enumerate(sorted(names)):
            labels[z][pixels[k, :, :, channel] > 0] = number
    return labels


def _frame_geometry(ds: pydicom.Dataset, functional: pydicom.Dataset, shared: pydicom.Dataset | None, tag: str, attr: str):
    for group in (functional, shared):
        if group is not None and tag in group:
            return group[tag][0].get(attr)
    return None


def _seg_by_geometry(ds: pydicom.Dataset, grid: Grid, name: str) -> tuple[np.ndarray, int]:
    """Each SEG frame onto the slice whose plane it lies on (same orientation, within a fraction of the
    slice spacing), resampled onto that slice's pixels (nearest); (labels, frames placed)."""
    frames = np.asarray(ds.pixel_array)
    if frames.ndim == 2:
        frames = frames[None]
    if str(ds.get("SegmentationType", "BINARY")).upper() == "FRACTIONAL":
        frames = frames > FRACTIONAL_CUT * float(ds.get("MaximumFractionalValue", 255) or 255)
    else:
        frames = frames > 0
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    if len(per_frame) != frames.shape[0]:
        raise ItemError(BAD_ANNOTATION, f"{name}: {len(per_frame)} per-frame descriptions for {frames.shape[0]} frames")
    labels = grid.empty()
    rows, cols = np.mgrid[0 : grid.size[1], 0 : grid.size[0]]
    placed = 0
    for index, functional in enumerate(per_frame):
        number = _frame_geometry(ds, functional, shared, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        position = _frame_geometry(ds, functional, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _frame_geometry(ds, functional, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _frame_geometry(ds, functional, shared, "PixelMeasuresSequence", "PixelSpacing")
        if number is None or position is None or orientation is None or spacing is None:
            continue
        iop = np.asarray([float(v) for v in orientation])
        if abs(abs(float(np.dot(np.cross(iop[:3], iop[3:]), grid.normal))) - 1) > PARALLEL:
            continue  # a frame in another plane cannot be put on these slices without reslicing
        ipp = np.asarray([float(v) for v in position])
        k = grid.slice_of(ipp, PLANE_TOLERANCE * grid.sz)
        if k is None:
            continue
        centres = grid.origin + k * grid.sz * grid.normal + cols[..., None] * grid.sx * grid.row_dir + rows[..., None] * grid.sy * grid.col_dir
        u = np.rint((centres - ipp) @ iop[:3] / float(spacing[1])).astype(int)
        v = np.rint((centres - ipp) @ iop[3:] / float(spacing[0])).astype(int)
        inside = (u >= 0) & (v >= 0) & (u < frames.shape[2]) & (v < frames.shape[1])
        hit = np.zeros(inside.shape, bool)
        hit[inside] = frames[index][v[inside], u[inside]]
        labels[k][hit] = int(number)
        placed += 1
    return labels, placed


def seg_labels(path: Path, series: Series, via_frame_of_reference: bool = False) -> LabelVolume:
    """Segment numbers on the series' slices, names from SegmentLabel (else the segmented property's
    meaning), and how the frames were matched (see `MATCHES`)."""
    try:
        ds = pydicom.dcmread(path)
        names = _segment_names(ds)
    except Exception as exc:  # noqa: BLE001
        raise ItemError(BAD_ANNOTATION, f"{path.name}: not a readable DICOM-SEG ({exc})") from None
    grid = Grid(series)
    _check_frame(grid, str(ds.get("FrameOfReferenceUID", "")) or None, path.name)
    shown, withheld = withhold_identifying(names, [ds, series.first], "segment")
    if not via_frame_of_reference:
        labels = _seg_by_source_frames(path, ds, series, names, grid)
        if labels is not None:
            return LabelVolume(labels, shown, "source_frames", withheld)
    try:
        labels, placed = _seg_by_geometry(ds, grid, path.name)
    except ItemError:
        raise
    except Exception as exc:  # noqa: BLE001 - pixel data or functional groups that do not parse
        raise ItemError(BAD_ANNOTATION, f"{path.name}: SEG frames cannot be read ({type(exc).__name__}: {exc})"[:300]) from None
    if not placed:
        raise ItemError(BAD_ANNOTATION, f"{path.name}: no SEG frame matches a slice of its series, by referenced instance or by plane position")
    return LabelVolume(labels, shown, "frame_of_reference" if via_frame_of_reference else "geometry", withheld)


def _fill(grid: Grid, polygons: list[np.ndarray], k: int) -> np.ndarray:
    """Closed planar contours of one ROI on one slice; even-odd, so an inner contour is a hole."""
    filled = np.zeros((grid.size[1], grid.size[0]), dtype=bool)
    for points in polygons:
        rows, cols = grid.plane_coords(points, k)
        rr, cc = polygon(rows, cols, shape=filled.shape)
        hit = np.zeros_like(filled)
        hit[rr, cc] = True
        filled ^= hit
    return filled


def _planes_by_position(grid: Grid, contours: list[np.ndarray]) -> dict[int, list[np.ndarray]]:
    """Contours without a usable image reference, onto slices by position: each slice takes the
    contour plane nearest it, within half the larger of the slice spacing and the contour spacing
    (so a coarser or finer grid than the one drawn on is filled throughout the structure)."""
    depth = {}
    for points in contours:
        depth.setdefault(round(float(np.dot(points.mean(axis=0), grid.normal)), 3), []).append(points)
    planes = np.array(sorted(depth))
    step = float(np.median(np.diff(planes))) if planes.size > 1 else grid.sz
    tolerance = max(grid.sz, step) / 2
    out = {}
    for k in range(grid.size[2]):
        nearest = planes[int(np.argmin(np.abs(planes - grid.depth(k))))]
        if abs(nearest - grid.depth(k)) <= tolerance + 1e-6:
            out[k] = depth[nearest]
    return out


def rtstruct_labels(path: Path, series: Series, via_frame_of_reference: bool = False) -> LabelVolume:
    """Each ROI's closed planar contours filled on the slices they lie on: matched by referenced SOP
    instance, else by position along the normal (also when the structure set was drawn on another
    series of the same frame of reference); inner contours are holes; later ROIs overwrite earlier
    ones where they overlap."""
    try:
        ds = pydicom.dcmread(path, force=True)
        names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
        rois = [(int(roi.ReferencedROINumber), list(roi.get("ContourSequence") or [])) for roi in ds.ROIContourSequence]
        frame = next((str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence") or [] if "FrameOfReferenceUID" in f), None)
    except Exception as exc:  # noqa: BLE001
        raise ItemError(BAD_ANNOTATION, f"{path.name}: not a readable RT structure set ({exc})") from None
    grid = Grid(series)
    _check_frame(grid, frame, path.name)
    labels = grid.empty()
    by_reference = by_position = 0
    for number, contours in rois:
        planes: dict[int, list[np.ndarray]] = {}
        loose = []
        for contour in contours:
            try:
                points = np.asarray([float(v) for v in contour.ContourData]).reshape(-1, 3)
            except Exception as exc:  # noqa: BLE001
                raise ItemError(BAD_ANNOTATION, f"{path.name}: ROI {number} has contour data that is not x, y, z triples ({exc})") from None
            refs = [str(i.ReferencedSOPInstanceUID) for i in contour.get("ContourImageSequence") or []]
            z = next((series.sop_uids.index(u) for u in refs if u in series.sop_uids), None) if not via_frame_of_reference else None
            if z is not None:
                planes.setdefault(z, []).append(points)
                by_reference += 1
            elif len(points) >= 3:
                loose.append(points)
        if loose:
            for k, polygons in _planes_by_position(grid, loose).items():
                planes.setdefault(k, []).extend(polygons)
                by_position += 1
        for k, polygons in planes.items():
            labels[k][_fill(grid, polygons, k)] = number
    if any(contours for _, contours in rois) and not (by_reference or by_position):
        raise ItemError(MASK_GEOMETRY_MISMATCH, f"{path.name}: no contour lies on a slice of its series")
    shown, withheld = withhold_identifying(names, [ds, series.first], "structure")
    match = "frame_of_reference" if via_frame_of_reference else ("geometry" if by_position else "source_frames")
    return LabelVolume(labels, shown, match, withheld)
