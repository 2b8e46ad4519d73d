"""Builds small, complete DICOM series (CT, PET) with planted identifiers, plus a DICOM-SEG (highdicom)
and an RT structure set referencing them: fixtures pydicom does not ship."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
IDENTIFIERS = {
    "PatientName": "DOE^JOHNATHAN",
    "PatientID": "MRN-77341925",
    "PatientBirthDate": "19310412",
    "PatientAddress": "12 Elm Street Springfield",
    "InstitutionName": "Saint Example General Hospital",
    "AccessionNumber": "ACC-55120398",
    "DeviceSerialNumber": "SN-99812734",
    "ReferringPhysicianName": "HOUSE^GREGORY",
}
PRIVATE_VALUE = "PRIVATE-SECRET-4471"
ROWS = COLS = 32
SPACING = (0.8, 0.8)  # row, column spacing in mm
SLICE_MM = 2.5
LESION = (slice(3, 6), slice(10, 17), slice(20, 27))  # z, rows, cols: columns 20-26 lie on the patient's left


def dicom_source(root: Path, modality: str = "ct", negatives: int = 0, **kw):
    """A `dicom` layout source over a folder of these fixtures (segment "Liver" named "liver")."""
    from medtrinity_core.sources.schema import SourceConfig

    return SourceConfig(name="hosp", modality=modality, license="LicenseRef-test", root=root, layout="dicom", images=r".+\.dcm",
                        label_map=(("Liver", "liver"),), negatives_per_volume=negatives, **kw)


def _base(modality: str, sop_class: str, series_uid: str, study_uid: str, frame_uid: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in IDENTIFIERS.items():
        setattr(ds, key, value)
    ds.PatientSex, ds.PatientAge = "M", "093Y"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber = "20240102", "101500", "S1", 1
    ds.Modality, ds.Manufacturer = modality, "medtrinity-tests"
    ds.add_new((0x0011, 0x0010), "LO", "ACME PRIVATE")
    ds.add_new((0x0011, 0x1010), "LO", PRIVATE_VALUE)
    return ds


def volume_values(modality: str) -> np.ndarray:
    base = np.full((8, ROWS, COLS), 40.0 if modality == "CT" else 1000.0, np.float32)
    base[LESION] = 300.0 if modality == "CT" else 20000.0
    return base


def write_series(folder: Path, modality: str = "CT", drop: int | None = None, duplicate: int | None = None) -> list[Dataset]:
    """Eight axial slices; file names and InstanceNumber run against the slice order, so only
    ImagePositionPatient sorts them right."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    values = volume_values(modality)
    datasets = []
    for z in range(values.shape[0]):
        if z == drop:
            continue
        ds = _base(modality, CT_STORAGE if modality == "CT" else PET_STORAGE, series_uid, study_uid, frame_uid)
        ds.InstanceNumber = 8 - z
        ds.ImagePositionPatient = [-12.0, -12.0, (z if z != duplicate else z - 1) * SLICE_MM]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = list(SPACING), SLICE_MM
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if modality == "CT":
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            stored = values[z] + 1024
        else:
            ds.RescaleSlope, ds.RescaleIntercept, ds.Units = 1, 0, "BQML"
            ds.PatientWeight, ds.SeriesTime = 80.0, "110000"
            info = Dataset()
            info.RadionuclideTotalDose, info.RadionuclideHalfLife, info.RadiopharmaceuticalStartTime = 300e6, 6586.2, "100000"
            ds.RadiopharmaceuticalInformationSequence = Sequence([info])
            stored = values[z]
        ds.PixelData = stored.astype(np.int16).tobytes()
        ds.save_as(folder / f"img_{7 - z:03d}.dcm", enforce_file_format=True)
        datasets.append(ds)
    return datasets


def write_seg(path: Path, series: list[Dataset], fractional: bool = False, label: str = "Liver") -> None:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    ordered = sorted(series, key=lambda d: float(d.ImagePositionPatient[2]))
    mask = np.zeros((len(ordered), ROWS, COLS), np.float32 if fractional else bool)
    mask[LESION] = 0.9 if fractional else True
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label, segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Liver, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=ordered, pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL if fractional else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=2,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="medtrinity-tests",
        manufacturer_model_name="tests", software_versions="0", device_serial_number="0",
    )
    seg.save_as(path)


def _contour(points: list[float], ref: Dataset | None) -> Dataset:
    contour = Dataset()
    contour.ContourGeometricType, contour.NumberOfContourPoints, contour.ContourData = "CLOSED_PLANAR", len(points) // 3, points
    if ref is not None:
        image = Dataset()
        image.ReferencedSOPClassUID, image.ReferencedSOPInstanceUID = ref.SOPClassUID, ref.SOPInstanceUID
        contour.ContourImageSequence = Sequence([image])
    return contour


def _save_structure_set(path: Path, series: list[Dataset], name: str, contours: list[Dataset]) -> None:
    """One ROI with its contours, referencing `series` (its frame of reference, study and series)."""
    first = series[0]
    ds = _base("RTSTRUCT", RTSTRUCT_STORAGE, generate_uid(), first.StudyInstanceUID, first.FrameOfReferenceUID)
    ds.StructureSetLabel = name
    roi = Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 1, name, first.FrameOfReferenceUID
    ds.StructureSetROISequence = Sequence([roi])
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber, roi_contour.ContourSequence = 1, Sequence(contours)
    ds.ROIContourSequence = Sequence([roi_contour])
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    study_ref = Dataset()
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.save_as(path, enforce_file_format=True)


def write_rtstruct(path: Path, series: list[Dataset], with_references: bool = True, name: str = "GTV") -> None:
    """One ROI, GTV, drawn as a square on each lesion slice (patient's right: columns 4-11, rows 8-15)."""
    contours = []
    by_z = {round(float(d.ImagePositionPatient[2]) / SLICE_MM): d for d in series}
    for z in range(LESION[0].start, LESION[0].stop):
        d = by_z[z]
        x0, y0, zz = (float(v) for v in d.ImagePositionPatient)
        c0, c1, r0, r1 = 4, 11, 8, 15  # pixel centres of the square's corners
        corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1)]
        points = [v for c, r in corners for v in (x0 + c * SPACING[1], y0 + r * SPACING[0], zz)]
        contours.append(_contour(points, d if with_references else None))
    _save_structure_set(path, series, name, contours)


MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_grid_series(folder: Path, modality: str, frame_uid: str, study_uid: str, shape: tuple[int, int, int],
                      spacing: tuple[float, float], slice_mm: float, origin: tuple[float, float, float], value: float = 100.0,
                      series_uid: str | None = None, temporal: int | None = None) -> list[Dataset]:
    """An axial series of `shape` (slices, rows, cols) on a given frame of reference and grid: for
    series of one study that share a frame of reference but not a grid (PET/CT); `temporal` makes it
    one time point (TemporalPositionIdentifier) of a 4D series sharing `series_uid`."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    sop_class = {"CT": CT_STORAGE, "MR": MR_STORAGE}.get(modality, PET_STORAGE)
    datasets = []
    for z in range(shape[0]):
        ds = _base(modality, sop_class, series_uid, study_uid, frame_uid)
        if temporal is not None:
            ds.TemporalPositionIdentifier = temporal
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + z * slice_mm]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = list(spacing), slice_mm
        ds.Rows, ds.Columns = shape[1], shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        if modality == "PT":
            ds.Units = "CNTS"
        ds.PixelData = np.full(shape[1:], value, np.int16).tobytes()
        ds.save_as(folder / f"{modality.lower()}_{'' if temporal is None else f't{temporal}_'}{z:03d}.dcm", enforce_file_format=True)
        datasets.append(ds)
    return datasets


def write_disc_rtstruct(path: Path, series: list[Dataset], centre: tuple[float, float], radius: float, planes: list[float], name: str = "GTV") -> None:
    """One ROI drawn as a 64-point circle on each given plane (z in mm), referencing `series` only."""
    by_z = {round(float(d.ImagePositionPatient[2]), 3): d for d in series}
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    contours = []
    for z in planes:
        points = [round(float(v), 4) for a in angles for v in (centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a), z)]
        contours.append(_contour(points, by_z[round(z, 3)]))
    _save_structure_set(path, series, name, contours)


def strip_spatial_locations(path: Path, drop_references: bool = False) -> None:
    """A SEG as older converters write it: source-image references without SpatialLocationsPreserved
    (or, with `drop_references`, pointing at instances that are not in the series)."""
    import pydicom

    ds = pydicom.dcmread(path)
    for functional in ds.PerFrameFunctionalGroupsSequence:
        for derivation in functional.get("DerivationImageSequence") or []:
            for source in derivation.get("SourceImageSequence") or []:
                if "SpatialLocationsPreserved" in source:
                    del source.SpatialLocationsPreserved
                if drop_references:
                    source.ReferencedSOPInstanceUID = generate_uid()
    ds.save_as(path)


def write_colour_captures(folder: Path, count: int = 3, sop_class: str = "1.2.840.10008.5.1.4.1.1.7") -> None:
    """Secondary-capture (or VL photographic) RGB images sharing one SeriesInstanceUID, without slice
    geometry: how dermoscopy, endoscopy and clinical photographs arrive as DICOM."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    for k in range(count):
        ds = _base("XC", sop_class, series_uid, study_uid, frame_uid)
        del ds.FrameOfReferenceUID
        ds.InstanceNumber = k + 1
        ds.Rows, ds.Columns = 24, 40
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        pixels = np.zeros((24, 40, 3), np.uint8)
        pixels[..., 0], pixels[..., 1], pixels[..., 2] = 200, 60 + 40 * k, 30
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"photo_{k}.dcm", enforce_file_format=True)
