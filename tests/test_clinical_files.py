"""Clinical files as other tools write them: SEGs without SpatialLocationsPreserved, structure sets drawn
on another series of the frame of reference, malformed headers, colour captures sharing a series, and
4D volumes; and the peer corpora (pydicom's and nibabel's test data) run clean."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.dicom_labels import rtstruct_labels
from medtrinity_core.imaging.series import assemble
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir

from .conftest import through_normalized
from .dicom_factory import (
    LESION,
    dicom_source,
    strip_spatial_locations,
    write_colour_captures,
    write_disc_rtstruct,
    write_grid_series,
    write_seg,
    write_series,
)

run = through_normalized


def lesion_mask(wd, row) -> np.ndarray:
    return wd.read_png(row["masks"][0]["uri"]) > 127


@pytest.mark.parametrize("drop_references", [False, True])
def test_seg_without_spatial_locations_preserved_is_matched_by_plane_position(tmp_path, drop_references):
    series = write_series(tmp_path / "ct")
    write_seg(tmp_path / "ct" / "seg.dcm", series)
    strip_spatial_locations(tmp_path / "ct" / "seg.dcm", drop_references)
    wd = Workdir.at(tmp_path / "wd")
    items, rejected, raw, df, q = run(dicom_source(tmp_path / "ct"), wd)
    assert q.height == 0 and rejected == [] and len(items) == 1
    assert df["slice_index"].to_list() == [3, 4, 5]
    truth = np.zeros((32, 32), bool)
    truth[LESION[1], LESION[2]] = True
    for row in df.iter_rows(named=True):
        assert row["masks"][0]["label"] == "liver" and np.array_equal(lesion_mask(wd, row), truth)
    seg_sha = next(a["sha256"] for a in raw.row(0, named=True)["annotations"] if a["kind"] == "dicom_seg")
    assert df.row(0, named=True)["annotation_matches"] == [{"annotation_sha256": seg_sha, "kind": "dicom_seg", "match": "geometry"}]


def test_seg_with_intact_references_is_matched_by_source_frames(tmp_path):
    series = write_series(tmp_path / "ct")
    write_seg(tmp_path / "ct" / "seg.dcm", series)
    _, _, _, df, q = run(dicom_source(tmp_path / "ct"), Workdir.at(tmp_path / "wd"))
    assert q.height == 0 and df.row(0, named=True)["annotation_matches"][0]["match"] == "source_frames"


def test_seg_whose_frames_lie_on_no_slice_is_a_bad_annotation_naming_it(tmp_path):
    series = write_series(tmp_path / "ct")
    write_seg(tmp_path / "ct" / "seg.dcm", series)
    strip_spatial_locations(tmp_path / "ct" / "seg.dcm", drop_references=True)
    ds = pydicom.dcmread(tmp_path / "ct" / "seg.dcm")
    for functional in ds.PerFrameFunctionalGroupsSequence:  # moved 100 mm off the series
        position = functional.PlanePositionSequence[0].ImagePositionPatient
        functional.PlanePositionSequence[0].ImagePositionPatient = [position[0], position[1], float(position[2]) + 100.0]
    ds.save_as(tmp_path / "ct" / "seg.dcm")
    _, _, _, df, q = run(dicom_source(tmp_path / "ct"), Workdir.at(tmp_path / "wd"))
    assert df.height == 0 and q["reason"].to_list() == ["bad_annotation"] and "seg.dcm" in q["detail"][0]


def pet_ct(tmp_path):
    """A CT and a PET series of one study on one frame of reference, with different grids; a
    structure set drawn on the CT (a disc of radius 12 mm centred at x=5, y=-3, on 13 planes)."""
    frame_uid, study_uid = generate_uid(), generate_uid()
    ct = write_grid_series(tmp_path / "ct", "CT", frame_uid, study_uid, (24, 64, 64), (0.8, 0.8), 2.5, (-25.0, -25.0, 0.0))
    pet = write_grid_series(tmp_path / "pet", "PT", frame_uid, study_uid, (18, 30, 30), (2.0, 2.0), 3.0, (-29.0, -31.0, 0.7))
    planes = [10.0 + 2.5 * k for k in range(13)]  # 10 .. 40 mm
    write_disc_rtstruct(tmp_path / "pet" / "rt_on_ct.dcm", ct, (5.0, -3.0), 12.0, planes)
    return ct, pet, planes


def test_rtstruct_drawn_on_the_ct_is_rasterized_onto_the_pet_of_its_frame_of_reference(tmp_path):
    _ct, _pet, planes = pet_ct(tmp_path)
    src = dicom_source(tmp_path / "pet", modality="pet")
    items, rejected, raw, df, q = run(src, Workdir.at(tmp_path / "wd"))
    assert rejected == [] and q.height == 0 and len(items) == 1
    assert df.height > 0 and all(m[0]["label"] == "GTV" for m in df["masks"].to_list())
    rt_sha = next(a["sha256"] for a in raw.row(0, named=True)["annotations"] if a["kind"] == "rtstruct")
    assert df.row(0, named=True)["annotation_matches"] == [{"annotation_sha256": rt_sha, "kind": "rtstruct", "match": "frame_of_reference"}]
    # measured on the PET's own grid: centroid within one voxel, volume within 10 %
    series = assemble(tmp_path / "pet", sorted(p.name for p in (tmp_path / "pet").glob("pt_*.dcm")))
    labels, names, match, withheld = rtstruct_labels(tmp_path / "pet" / "rt_on_ct.dcm", series, via_frame_of_reference=True)
    assert names == {1: "GTV"} and match == "frame_of_reference" and withheld == 0
    z, y, x = np.nonzero(labels == 1)
    mm = np.stack([-29.0 + 2.0 * x, -31.0 + 2.0 * y, 0.7 + 3.0 * z], axis=1)
    truth_centre = np.array([5.0, -3.0, float(np.mean(planes))])
    assert np.all(np.abs(mm.mean(axis=0) - truth_centre) <= np.array([2.0, 2.0, 3.0]))
    truth_ml = np.pi * 12.0**2 * 2.5 * len(planes) / 1000.0
    assert abs(len(z) * 2.0 * 2.0 * 3.0 / 1000.0 - truth_ml) <= 0.1 * truth_ml


def test_annotation_on_a_frame_of_reference_no_series_shares_stays_unreferenced(tmp_path):
    _ct, _pet, _planes = pet_ct(tmp_path)
    for path in (tmp_path / "pet").glob("pt_*.dcm"):
        path.unlink()
    items, rejected = discover(dicom_source(tmp_path / "pet"))
    assert items == [] and [(r.relpath, r.reason) for r in rejected] == [("rt_on_ct.dcm", "unreferenced_annotation")]


def test_malformed_header_is_quarantined_and_discovery_goes_on(tmp_path):
    write_series(tmp_path / "src" / "ok")
    bad = pydicom.dcmread(next((tmp_path / "src" / "ok").glob("*.dcm")))
    bad.SeriesInstanceUID, bad.SOPInstanceUID = generate_uid(), generate_uid()
    bad.NumberOfFrames = "11"
    bad.save_as(tmp_path / "src" / "bad.dcm")
    data = (tmp_path / "src" / "bad.dcm").read_bytes()
    element = b"\x28\x00\x08\x00IS\x02\x00"  # (0028,0008) IS, two bytes: "11" becomes the non-numeric "1A"
    assert data.count(element + b"11") == 1
    (tmp_path / "src" / "bad.dcm").write_bytes(data.replace(element + b"11", element + b"1A"))
    items, rejected, _raw, df, _q = run(dicom_source(tmp_path / "src").model_copy(update={"negatives_per_volume": 2}), Workdir.at(tmp_path / "wd"))
    assert [(r.relpath, r.reason) for r in rejected] == [("bad.dcm", "unreadable")]
    assert "header cannot be parsed" in rejected[0].detail and len(items) == 1 and df.height > 0


@pytest.mark.parametrize("sop_class", ["1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.77.1.4"])
def test_colour_images_sharing_a_series_without_geometry_are_independent_2d_images(tmp_path, sop_class):
    write_colour_captures(tmp_path / "photos", 3, sop_class)
    wd = Workdir.at(tmp_path / "wd")
    items, rejected, _raw, df, q = run(dicom_source(tmp_path / "photos", modality="dermoscopy"), wd)
    assert rejected == [] and q.height == 0 and len(items) == 3
    assert df["channels"].to_list() == [3, 3, 3] and df["slice_axis"].to_list() == [None] * 3
    greens = sorted(int(wd.read_png(uri)[..., 1].mean()) for uri in df["image_uri"])
    assert greens == [60, 100, 140]  # each capture kept as itself, in colour


def write_4d(path: Path, volumes: int = 5) -> None:
    data = np.zeros((20, 16, 6, volumes), np.float32)
    for t in range(volumes):
        data[4:10, 4:10, 2:4, t] = 100.0 + 50.0 * t
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0])), path)
    labels = np.zeros((20, 16, 6), np.uint8)
    labels[4:10, 4:10, 2:4] = 1
    nib.save(nib.Nifti1Image(labels, np.diag([1.5, 1.5, 3.0, 1.0])), path.with_name("labels.nii.gz"))


def volume_source(root, **kw):
    return SourceConfig(name="dce", modality="mri", license="LicenseRef-test", root=root, layout="volume_labels", images=r"dce\.nii\.gz",
                        labels=r"labels\.nii\.gz", label_map=((1, "lesion"),), negatives_per_volume=0, **kw)


def test_4d_volume_without_volume_index_is_rejected_with_the_hint(tmp_path):
    write_4d(tmp_path / "dce.nii.gz")
    _, _, _, df, q = run(volume_source(tmp_path), Workdir.at(tmp_path / "wd"))
    assert df.height == 0 and q["reason"].to_list() == ["unsupported_dimension"] and "volume_index" in q["detail"][0]


@pytest.mark.parametrize(("volume_index", "expected"), [("first", [0]), ("middle", [2]), (3, [3]), ("all", [0, 1, 2, 3, 4])])
def test_volume_index_picks_3d_volumes_and_is_part_of_image_ids(tmp_path, volume_index, expected):
    write_4d(tmp_path / "dce.nii.gz")
    wd = Workdir.at(tmp_path / "wd")
    _, _, _, df, q = run(volume_source(tmp_path, volume_index=volume_index), wd)
    assert q.height == 0
    assert sorted(set(df["volume_index"].to_list())) == expected and df["image_id"].n_unique() == df.height == 2 * len(expected)
    for row in df.iter_rows(named=True):  # each volume's own intensities, under its lesion mask
        assert row["labels"] == ["lesion"] and lesion_mask(wd, row).sum() == 36


def test_volume_index_past_the_last_volume_is_quarantined(tmp_path):
    write_4d(tmp_path / "dce.nii.gz")
    _, _, _, df, q = run(volume_source(tmp_path, volume_index=9), Workdir.at(tmp_path / "wd"))
    assert df.height == 0 and q["reason"].to_list() == ["volume_index_out_of_range"]


def account(src, wd):
    """Every file under the root: an item with output rows or a quarantine row, or a rejection."""
    items, rejected, _raw, df, q = run(src, wd)
    done = set(df["item_id"].to_list()) | set(q["item_id"].to_list())
    assert all(i.item_id in done for i in items)
    covered = {i.relpath for i in items} | {a.relpath for i in items for a in i.annotations} | {r.relpath for r in rejected}
    return covered, [r.reason for r in rejected] + q["reason"].to_list(), df


def test_pydicom_test_files_each_yield_images_or_a_specific_reason(tmp_path):
    root = Path(pydicom.data.__file__).parent / "test_files"
    src = SourceConfig(name="pydicom", modality="ct", license="MIT", root=root, layout="dicom", images=r".+", negatives_per_volume=1)
    covered, reasons, df = account(src, Workdir.at(tmp_path / "wd"))
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert covered == files and df.height > 50
    assert "decode_error" not in reasons and "unreadable" in reasons and "no_pixel_data" in reasons


def test_nibabel_test_data_each_yield_images_or_a_specific_reason(tmp_path):
    root = Path(nib.__file__).parent / "tests" / "data"
    src = SourceConfig(name="nibabel", modality="mri", license="MIT", root=root, layout="volume_labels", images=r".+",
                       labels=r"(?!)", negatives_per_volume=1, volume_index="first")
    covered, reasons, df = account(src, Workdir.at(tmp_path / "wd"))
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert covered == files and "decode_error" not in reasons
    assert set(df["relpath"]) >= {"example4d.nii.gz", "functional.nii", "anatomical.nii"}  # 4D files give their first volume
    assert set(df.filter(df["relpath"] == "functional.nii")["volume_index"]) == {0}


def test_a_label_past_the_last_volume_of_a_4d_label_file_is_a_mismatch(tmp_path):
    write_4d(tmp_path / "dce.nii.gz", volumes=3)
    labels = np.zeros((20, 16, 6, 2), np.uint8)
    labels[4:10, 4:10, 2:4, :] = 1
    nib.save(nib.Nifti1Image(labels, np.diag([1.5, 1.5, 3.0, 1.0])), tmp_path / "labels.nii.gz")
    _, _, _, df, q = run(volume_source(tmp_path, volume_index=2), Workdir.at(tmp_path / "wd"))
    assert df.height == 0 and q["reason"].to_list() == ["mask_geometry_mismatch"]


def test_seg_on_the_frame_of_reference_of_another_series_is_matched_by_geometry(tmp_path):
    ct, _pet, _planes = pet_ct(tmp_path)
    shutil.rmtree(tmp_path / "pet")
    (tmp_path / "pet").mkdir()
    # a SEG written on the CT, read on a copy of the CT series with new series and instance UIDs
    import highdicom as hd
    from pydicom.sr.codedict import codes

    mask = np.zeros((24, 64, 64), bool)
    mask[6:10, 20:30, 30:40] = True
    seg = hd.seg.Segmentation(
        source_images=ct, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[hd.seg.SegmentDescription(1, "Liver", codes.SCT.Organ, codes.SCT.Liver, hd.seg.SegmentAlgorithmTypeValues.MANUAL)],
        series_instance_uid=generate_uid(), series_number=2, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="t", manufacturer_model_name="t", software_versions="0", device_serial_number="0",
    )
    seg.save_as(tmp_path / "pet" / "seg.dcm")
    copy_uid = generate_uid()
    for k, ds in enumerate(ct):
        ds.SeriesInstanceUID, ds.SOPInstanceUID = copy_uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(tmp_path / "pet" / f"copy_{k:03d}.dcm", enforce_file_format=True)
    wd = Workdir.at(tmp_path / "wd")
    _, rejected, _, df, q = run(dicom_source(tmp_path / "pet"), wd)
    assert rejected == [] and q.height == 0 and df["slice_index"].to_list() == [6, 7, 8, 9]
    assert df.row(0, named=True)["annotation_matches"][0]["match"] == "frame_of_reference"
    assert lesion_mask(wd, df.row(0, named=True))[20:30, 30:40].all()


def test_seg_reading_is_refused_cleanly_when_not_a_seg(tmp_path):
    from medtrinity_core.imaging.dicom_labels import seg_labels

    series = write_series(tmp_path / "ct")
    with pytest.raises(ItemError) as err:
        seg_labels(tmp_path / "ct" / "img_000.dcm", assemble(tmp_path / "ct", sorted(p.name for p in (tmp_path / "ct").glob("img_*.dcm"))))
    assert err.value.reason == "bad_annotation" and "img_000.dcm" in err.value.detail
    assert len(series) == 8


def write_cine(folder: Path) -> None:
    """An MR series of three time points over the same eight positions, told apart by TemporalPositionIdentifier."""
    frame_uid, study_uid, series_uid = generate_uid(), generate_uid(), generate_uid()
    for t in (1, 2, 3):
        write_grid_series(folder, "MR", frame_uid, study_uid, (8, 16, 16), (1.0, 1.0), 2.0, (0.0, 0.0, 0.0), 100.0 * t, series_uid, temporal=t)


def test_4d_dicom_series_is_split_by_temporal_position(tmp_path):
    write_cine(tmp_path / "cine")
    src = dicom_source(tmp_path / "cine", modality="mri").model_copy(update={"negatives_per_volume": 1})
    items, _, _, df, q = run(src, Workdir.at(tmp_path / "wd"))
    assert len(items) == 1 and df.height == 0 and q["reason"].to_list() == ["unsupported_dimension"] and "volume_index" in q["detail"][0]
    _, _, _, df, q = run(src.model_copy(update={"volume_index": "all"}), Workdir.at(tmp_path / "wd2"))
    assert q.height == 0 and sorted(df["volume_index"].to_list()) == [0, 1, 2] and df["image_id"].n_unique() == 3
    _, _, _, df, q = run(src.model_copy(update={"volume_index": 2}), Workdir.at(tmp_path / "wd3"))
    assert q.height == 0 and df["volume_index"].to_list() == [2]
