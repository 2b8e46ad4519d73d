"""DICOM series: sorting by position, a CT series with its DICOM-SEG, a PET series with its RTSTRUCT,
broken series, and no patient identifier anywhere in what the pipeline writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtrinity_core.storage import Workdir

from .conftest import through_normalized
from .dicom_factory import LESION, dicom_source, write_rtstruct, write_seg, write_series


def run(src, wd):
    items, rejected, _, images, quarantined = through_normalized(src, wd)
    return items, rejected, images, quarantined


def source(root, modality="ct"):
    return dicom_source(root, modality, negatives=1)


@pytest.mark.parametrize("fractional", [False, True])
def test_ct_series_with_dicom_seg_gives_aligned_masks(tmp_path, fractional):
    series = write_series(tmp_path / "ct")
    write_seg(tmp_path / "ct" / "seg.dcm", series, fractional=fractional)
    wd = Workdir.at(tmp_path / "wd")
    items, rejected, df, q = run(source(tmp_path / "ct"), wd)
    assert rejected == [] and len(items) == 1  # eight slices and their SEG are one item
    assert q.height == 0
    fg = df.filter(df["masks"].list.len() > 0).sort("slice_index")
    assert fg["slice_index"].to_list() == [3, 4, 5] and df.height == 4
    row = fg.row(1, named=True)
    assert row["masks"][0]["label"] == "liver"  # SegmentLabel "Liver" through the label map
    mask = wd.read_png(row["masks"][0]["uri"]) > 127
    truth = np.zeros((32, 32), bool)
    truth[LESION[1], LESION[2]] = True
    assert np.array_equal(mask, truth)
    pixels = wd.read_png(row["image_uri"])
    assert pixels[truth].min() > pixels[~truth].max()  # 300 HU lesion on 40 HU tissue, windowed
    assert row["image_left"] == "R" and row["image_top"] == "A"
    assert row["spacing_x"] == pytest.approx(0.8) and row["label_volumes"][0]["volume_ml"] == pytest.approx(3 * 49 * 0.8 * 0.8 * 2.5 / 1000)
    assert row["patient_key"] and len(row["patient_key"]) == 32 and row["patient_key"] != "MRN-77341925"


@pytest.mark.parametrize("with_references", [True, False])
def test_pet_series_with_rtstruct_is_rasterized_in_suv(tmp_path, with_references):
    series = write_series(tmp_path / "pet", modality="PT")
    write_rtstruct(tmp_path / "pet" / "rt.dcm", series, with_references=with_references)
    wd = Workdir.at(tmp_path / "wd")
    items, rejected, df, q = run(source(tmp_path / "pet", modality="pet"), wd)
    assert q.height == 0 and rejected == [] and len(items) == 1
    fg = df.filter(df["masks"].list.len() > 0).sort("slice_index")
    assert fg["slice_index"].to_list() == [3, 4, 5]
    row = fg.row(0, named=True)
    assert row["masks"][0]["label"] == "GTV"
    mask = wd.read_png(row["masks"][0]["uri"]) > 127
    assert mask[8:16, 4:12].all() and mask.sum() == 64  # the square, on the patient's right
    norm = json.loads(row["normalization"])["intensity"]
    assert norm["suv"] == "bw" and not any("factor" in k or "weight" in k for k in norm)


def test_missing_and_duplicated_slice_positions_are_quarantined(tmp_path):
    write_series(tmp_path / "gap", drop=4)
    write_series(tmp_path / "dup", duplicate=5)
    for name, reason in (("gap", "missing_slices"), ("dup", "duplicate_slice_positions")):
        _, _, df, q = run(source(tmp_path / name), Workdir.at(tmp_path / "wd"))
        assert df.height == 0 and q["reason"].to_list() == [reason]


def test_seg_without_its_series_is_reported(tmp_path):
    series = write_series(tmp_path / "a")
    write_seg(tmp_path / "a" / "seg.dcm", series)
    folder = tmp_path / "only-seg"
    folder.mkdir()
    (tmp_path / "a" / "seg.dcm").rename(folder / "seg.dcm")
    items, rejected, _, _ = run(source(folder), Workdir.at(tmp_path / "wd"))
    assert items == [] and [(r.relpath, r.reason) for r in rejected] == [("seg.dcm", "unreferenced_annotation")]
