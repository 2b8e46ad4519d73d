"""Every item accounted for and every read confined to the source root: files swapped for symlinks after
discovery, headers naming data files outside the root, box and label files outside it, the cases that
used to vanish without a row, a size limit from headers, and one test per quarantine reason, each from
a real file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image

from medtrinity_core.accounting import UnaccountedError, account
from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.series import assemble
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import shard_items
from medtrinity_core.sources.schema import BoxSpec, LabelsCsv, MaskSpec, SourceConfig
from medtrinity_core.sources.shards import plan_entries
from medtrinity_core.storage import Workdir

from .conftest import through_normalized
from .dicom_factory import dicom_source, write_grid_series, write_series

LICENSE = "LicenseRef-test"


def reasons(src, wd) -> dict[str, str]:
    """relpath -> reason for every rejected or quarantined item of a source run to normalized."""
    _items, _rejected, _raw, _images, q = through_normalized(src, wd)
    wanted, raw_q = shard_items(src, plan_entries(src))
    from medtrinity_core.sources.inventory import inventory

    _, inv_q = inventory(src, wanted)
    out = {r["relpath"]: r["reason"] for r in raw_q}
    out.update(dict(zip(inv_q["relpath"], inv_q["reason"])))
    out.update(dict(zip(q["relpath"], q["reason"])))
    return out


def png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def masks_source(root: Path, **kw) -> SourceConfig:
    return SourceConfig(name="m", modality="dermoscopy", license=LICENSE, root=root, layout="image_masks", images=r"images/(?P<id>[^/]+)\.png",
                        masks=(MaskSpec(r"masks/{id}\.png", label="lesion"),), **kw)


def test_an_image_swapped_for_a_symlink_after_discovery_is_refused_at_read_time(tmp_path):
    root = tmp_path / "src"
    for name in ("a", "b"):
        png(root / "images" / f"{name}.png", np.full((8, 8), 100, np.uint8))
        png(root / "masks" / f"{name}.png", np.full((8, 8), 255, np.uint8))
    png(tmp_path / "outside.png", np.zeros((8, 8), np.uint8))
    src = masks_source(root)
    items, rejected = discover(src)
    assert len(items) == 2 and rejected == []
    (root / "images" / "a.png").unlink()
    (root / "images" / "a.png").symlink_to(tmp_path / "outside.png")  # swapped in after discovery
    (root / "masks" / "b.png").unlink()
    (root / "masks" / "b.png").symlink_to(tmp_path / "outside.png")
    from medtrinity_core.sources.inventory import inventory

    raw, q = inventory(src, items)
    assert raw.height == 0 and dict(zip(q["relpath"], q["reason"])) == {"images/a.png": "outside_root", "images/b.png": "outside_root"}


@pytest.mark.parametrize(("name", "header"), [
    ("ct.mhd", "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\nElementDataFile = ../secret.raw\n"),
    ("ct.nhdr", "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: {outside}\n"),
    ("ct.mha", "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\nElementDataFile = LIST\n../secret.raw\n"),
])
def test_a_header_naming_a_data_file_outside_the_root_is_refused(tmp_path, name, header):
    root = tmp_path / "src"
    root.mkdir()
    (tmp_path / "secret.raw").write_bytes(bytes(64))
    (root / name).write_text(header.format(outside=tmp_path / "secret.raw"))
    src = SourceConfig(name="v", modality="ct", license=LICENSE, root=root, layout="volume_labels", images=r"ct\.(mhd|nhdr|mha)", labels=r"(?!)")
    assert reasons(src, Workdir.at(tmp_path / "wd")) == {name: "outside_root"}


def test_a_header_naming_its_own_data_file_reads(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "ct.raw").write_bytes(bytes(range(64)))
    (root / "ct.mhd").write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\nElementDataFile = ct.raw\n")
    src = SourceConfig(name="v", modality="ct", license=LICENSE, root=root, layout="volume_labels", images=r"ct\.mhd", labels=r"(?!)", negatives_per_volume=1)
    _, _, _, images, q = through_normalized(src, Workdir.at(tmp_path / "wd"))
    assert q.height == 0 and images.height == 1


def boxes_source(root: Path, file: str) -> SourceConfig:
    return SourceConfig(name="b", modality="xray", license=LICENSE, root=root, layout="image_boxes", images=r"(?P<id>[a-z]+)\.png",
                        boxes=BoxSpec(format="coco", file=file))


def test_box_files_outside_the_root_or_missing_are_reasons_not_silence(tmp_path):
    root = tmp_path / "src"
    png(root / "a.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "boxes.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert reasons(boxes_source(root, "../boxes.json"), Workdir.at(tmp_path / "wd")) == {"a.png": "outside_root"}
    assert reasons(boxes_source(root, "boxes.json"), Workdir.at(tmp_path / "wd")) == {"a.png": "missing_annotation"}


def test_a_labels_csv_outside_the_root_quarantines_the_shard_with_the_reason(tmp_path):
    root = tmp_path / "src"
    png(root / "a.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "labels.csv").write_text("image,label\na.png,benign\n")
    src = SourceConfig(name="l", modality="ultrasound", license=LICENSE, root=root, layout="labeled_images", images=r".+\.png",
                       labels_csv=LabelsCsv("../labels.csv", "image", "label"))
    items, q = shard_items(src, plan_entries(src))
    assert items == [] and [(r["relpath"], r["reason"]) for r in q] == [("a.png", "outside_root")]


def test_cases_that_used_to_vanish_each_get_a_reason(tmp_path):
    # an image whose mask pattern matches nothing
    root = tmp_path / "masks"
    png(root / "images" / "a.png", np.zeros((8, 8), np.uint8))
    assert reasons(masks_source(root), Workdir.at(tmp_path / "wd")) == {"images/a.png": "no_mask"}
    # several YOLO files for one image
    root = tmp_path / "yolo"
    png(root / "a.png", np.zeros((8, 8), np.uint8))
    for name in ("labels/a.txt", "labels2/a.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("0 0.5 0.5 0.5 0.5\n")
    src = SourceConfig(name="y", modality="xray", license=LICENSE, root=root, layout="image_boxes", images=r"(?P<id>a)\.png",
                       boxes=BoxSpec(format="yolo", pattern=r"labels2?/{id}\.txt", classes=("nodule",)))
    assert reasons(src, Workdir.at(tmp_path / "wd")) == {"a.png": "ambiguous_annotation"}
    # several label volumes for one volume; a volume with no foreground and no negatives asked for
    root = tmp_path / "vol"
    root.mkdir()
    data = np.zeros((6, 6, 4), np.int16)
    for name in ("ct.nii.gz", "empty.nii.gz", "ct_seg.nii.gz", "ct_seg2.nii.gz", "empty_seg.nii.gz"):
        nib.save(nib.Nifti1Image(data, np.eye(4)), root / name)
    src = SourceConfig(name="v", modality="ct", license=LICENSE, root=root, layout="volume_labels", images=r"(?P<id>ct|empty)\.nii\.gz",
                       labels=r"{id}_seg2?\.nii\.gz", negatives_per_volume=0)
    assert reasons(src, Workdir.at(tmp_path / "wd")) == {"ct.nii.gz": "ambiguous_annotation", "empty.nii.gz": "no_foreground"}


def test_voxel_counts_are_checked_from_headers_before_decoding(tmp_path):
    root = tmp_path / "vol"
    root.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.int16), np.eye(4)), root / "ct.nii.gz")
    src = SourceConfig(name="v", modality="ct", license=LICENSE, root=root, layout="volume_labels", images=r"ct\.nii\.gz", labels=r"(?!)",
                       negatives_per_volume=1, max_voxels=7999)
    assert reasons(src, Workdir.at(tmp_path / "wd")) == {"ct.nii.gz": "decompression_bomb"}
    assert reasons(src.model_copy(update={"max_voxels": 8000}), Workdir.at(tmp_path / "wd")) == {}
    write_series(tmp_path / "ct")  # 8 slices of 32 x 32
    assert set(reasons(dicom_source(tmp_path / "ct", negatives=1, max_voxels=8 * 32 * 32 - 1), Workdir.at(tmp_path / "wd")).values()) == {"decompression_bomb"}
    # a real file whose header claims 65535 x 65535 pixels: refused before any decoder allocates them
    ds = pydicom.dcmread(tmp_path / "ct" / "img_000.dcm")
    ds.Rows = ds.Columns = 65535
    (tmp_path / "bomb").mkdir()
    ds.save_as(tmp_path / "bomb" / "bomb.dcm")
    assert reasons(dicom_source(tmp_path / "bomb"), Workdir.at(tmp_path / "wd")) == {"bomb.dcm": "decompression_bomb"}


def test_accounting_fails_the_stage_on_a_lost_row_and_counts_the_rest():
    counts = account("rois", "image", ["a", "b", "c", "d"], ["a"], ["b"], {"duplicate": ["c", "d"]})
    assert counts == {"images_in": 4, "images_out": 1, "images_quarantined": 1, "excluded_duplicate": 2}
    with pytest.raises(UnaccountedError, match="1 of 3 images have no output row, quarantine row or named exclusion .first: c."):
        account("rois", "image", ["a", "b", "c"], ["a"], ["b"])
    with pytest.raises(UnaccountedError, match="unknown exclusion 'lost'"):
        account("rois", "image", ["a"], ["a"], [], {"lost": []})


# One test per quarantine reason, each from a real file.

def test_reason_no_pixel_data_from_pydicoms_rt_plan(tmp_path):
    root = tmp_path / "rt"
    root.mkdir()
    (root / "plan.dcm").write_bytes((Path(pydicom.data.__file__).parent / "test_files" / "rtplan.dcm").read_bytes())
    assert reasons(dicom_source(root), Workdir.at(tmp_path / "wd")) == {"plan.dcm": "no_pixel_data"}


def test_reason_empty_file(tmp_path):
    png(tmp_path / "src" / "images" / "a.png", np.zeros((8, 8), np.uint8))
    png(tmp_path / "src" / "masks" / "a.png", np.full((8, 8), 255, np.uint8))
    (tmp_path / "src" / "images" / "b.png").write_bytes(b"")
    png(tmp_path / "src" / "masks" / "b.png", np.zeros((8, 8), np.uint8))
    assert reasons(masks_source(tmp_path / "src"), Workdir.at(tmp_path / "wd")) == {"images/b.png": "empty_file"}


def test_reason_decode_error_from_a_complex_valued_nifti(tmp_path):
    root = tmp_path / "vol"
    root.mkdir()
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.complex64), np.eye(4)), root / "kspace.nii.gz")  # raw k-space, not an image
    src = SourceConfig(name="k", modality="mri", license=LICENSE, root=root, layout="volume_labels", images=r".+\.nii\.gz", labels=r"(?!)")
    _, _, _, images, q = through_normalized(src, Workdir.at(tmp_path / "wd"))
    assert images.height == 0 and q["reason"].to_list() == ["decode_error"] and "complex" in q["detail"][0]


def test_reason_inconsistent_series_from_an_rt_dose_grid_missing_a_frame_offset(tmp_path):
    ds = pydicom.dcmread(Path(pydicom.data.__file__).parent / "test_files" / "rtdose.dcm")
    ds.GridFrameOffsetVector = list(ds.GridFrameOffsetVector)[:-1]  # 15 frames, 14 offsets: no frame may be dropped silently
    (tmp_path / "dose").mkdir()
    ds.save_as(tmp_path / "dose" / "dose.dcm")
    assert reasons(dicom_source(tmp_path / "dose", negatives=1), Workdir.at(tmp_path / "wd")) == {"dose.dcm": "inconsistent_series"}


def test_reason_inconsistent_series_from_a_slice_of_another_size(tmp_path):
    from pydicom.uid import generate_uid

    frame, study, series = generate_uid(), generate_uid(), generate_uid()
    write_grid_series(tmp_path / "s", "CT", frame, study, (4, 16, 16), (1.0, 1.0), 2.0, (0.0, 0.0, 0.0), series_uid=series)
    write_grid_series(tmp_path / "s2", "CT", frame, study, (5, 20, 20), (1.0, 1.0), 2.0, (0.0, 0.0, 0.0), series_uid=series)
    (tmp_path / "s2" / "ct_004.dcm").rename(tmp_path / "s" / "ct_z.dcm")  # position 8 mm, 20 x 20 pixels
    assert set(reasons(dicom_source(tmp_path / "s", negatives=1), Workdir.at(tmp_path / "wd")).values()) == {"inconsistent_series"}


def test_reason_missing_geometry_when_a_series_is_assembled_from_a_slice_without_position(tmp_path):
    write_series(tmp_path / "ct")
    ds = pydicom.dcmread(tmp_path / "ct" / "img_003.dcm")
    del ds.ImagePositionPatient
    ds.save_as(tmp_path / "ct" / "img_003.dcm")
    with pytest.raises(ItemError) as err:
        assemble(tmp_path / "ct", sorted(p.name for p in (tmp_path / "ct").glob("*.dcm")))
    assert err.value.reason == "missing_geometry" and "img_003.dcm" in err.value.detail
    # discovery keeps such a slice as a 2D image of its own, so the rest of the series still reads
    items, rejected = discover(dicom_source(tmp_path / "ct"))
    assert sorted(i.relpath for i in items) == ["img_000.dcm", "img_003.dcm"] and rejected == []


def test_reason_unsupported_series_from_a_colour_slice_in_a_ct_series(tmp_path):
    write_series(tmp_path / "ct")
    ds = pydicom.dcmread(tmp_path / "ct" / "img_004.dcm")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.zeros((32, 32, 3), np.uint8).tobytes()
    for tag in ("RescaleSlope", "RescaleIntercept"):
        delattr(ds, tag)
    ds.save_as(tmp_path / "ct" / "img_004.dcm")
    assert set(reasons(dicom_source(tmp_path / "ct", negatives=1), Workdir.at(tmp_path / "wd")).values()) == {"unsupported_series"}


def test_reason_unsupported_pixel_type_from_a_vector_volume(tmp_path):
    root = tmp_path / "vol"
    root.mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 6, 6, 3), np.float32), isVector=True), str(root / "flow.mha"))
    src = SourceConfig(name="v", modality="mri", license=LICENSE, root=root, layout="volume_labels", images=r"flow\.mha", labels=r"(?!)")
    assert reasons(src, Workdir.at(tmp_path / "wd")) == {"flow.mha": "unsupported_pixel_type"}


def test_reason_non_finite_pixels_from_a_float_tiff(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    values = np.ones((8, 8), np.float32)
    values[2, 2] = np.nan
    Image.fromarray(values, mode="F").save(root / "map.tif")
    src = SourceConfig(name="t", modality="microscopy", license=LICENSE, root=root, layout="labeled_images", images=r".+\.tif", label="cells")
    assert reasons(src, Workdir.at(tmp_path / "wd")) == {"map.tif": "non_finite_pixels"}


def test_reason_unsupported_format_from_a_file_the_pattern_selects(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "scan.webm").write_bytes(b"\x1a\x45\xdf\xa3 not an image format we read")
    src = SourceConfig(name="t", modality="endoscopy", license=LICENSE, root=root, layout="labeled_images", images=r".+", label="video")
    assert reasons(src, Workdir.at(tmp_path / "wd")) == {"scan.webm": "unsupported_format"}


def test_honest_labels_for_dicom_decode_failures():
    data = Path(pydicom.data.__file__).parent / "test_files"
    src = SourceConfig(name="p", modality="ct", license="MIT", root=data, layout="dicom", images=r"(MR_truncated|nested_priv_SQ)\.dcm")
    assert reasons(src, Workdir.at(Path(os.environ.get("TMPDIR", "/tmp")) / "honest-wd")) == {"MR_truncated.dcm": "truncated", "nested_priv_SQ.dcm": "incomplete_header"}
