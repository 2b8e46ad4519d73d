"""DICOM files: compressed transfer syntaxes, windows from the file, PET SUVbw, broken files."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from medtrinity_core.imaging.dicom import dicom_to_uint8, suv_factor
from medtrinity_core.imaging.normalize import normalize
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir

BUNDLED = ["JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "MR_small.dcm", "JPEG-lossy.dcm", "MR_truncated.dcm",
           "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm"]


def run(tmp_path, names, modality="mri"):
    root = tmp_path / "dicom"
    root.mkdir(exist_ok=True)
    for name in names:  # pydicom's files share series UIDs across encodings: one series each here
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.SeriesInstanceUID = generate_uid()
        ds.save_as(root / name)
    src = SourceConfig(name="d", modality=modality, license="LicenseRef-test", root=root, layout="dicom", images=r".+\.dcm")
    wd = Workdir.at(tmp_path / "wd")
    items, _ = discover(src)
    raw, _q = inventory(src, items)
    df, nq = normalize(src, raw.iter_rows(named=True), wd)
    return wd, df, nq


def test_compressed_transfer_syntaxes_decode(tmp_path):
    wd, df, q = run(tmp_path, BUNDLED)
    by_name = {r["relpath"]: r for r in df.iter_rows(named=True)}
    assert set(by_name) == {"JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "MR_small.dcm",
                            "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm"}
    # colour JPEG (YBR_FULL) and RLE (RGB) come out as RGB: the first stripe is red
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm"):
        pixel = wd.read_png(by_name[name]["image_uri"])[0, 0]
        assert by_name[name]["channels"] == 3 and pixel[0] > 240 and pixel[1] < 15 and pixel[2] < 15
    # the lossless copies of MR_small (RLE, JPEG-LS, JPEG 2000) decode to the uncompressed file's pixels
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        assert by_name[name]["image_sha256"] == by_name["MR_small.dcm"]["image_sha256"], name
    assert json.loads(by_name["MR_small.dcm"]["normalization"])["intensity"] == {"method": "dicom_window", "level": 600.0, "width": 1600.0}
    reasons = dict(zip(q["relpath"].to_list(), q["reason"].to_list()))
    assert reasons == {"JPEG-lossy.dcm": "unsupported_transfer_syntax", "MR_truncated.dcm": "truncated"}
    assert df.height + q.height == len(BUNDLED)  # nothing lost


def pet_dataset(weight=70.0) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Modality, ds.Units, ds.SeriesTime = "PT", "BQML", "110000"
    if weight:
        ds.PatientWeight = weight
    info = Dataset()
    info.RadionuclideTotalDose, info.RadionuclideHalfLife, info.RadiopharmaceuticalStartTime = 370e6, 6586.2, "100000"
    ds.RadiopharmaceuticalInformationSequence = [info]
    return ds


def test_pet_bq_per_ml_becomes_suvbw_when_the_tags_allow():
    factor, how = suv_factor(pet_dataset())
    decayed = 370e6 * 2 ** (-3600 / 6586.2)
    assert how == "SUVbw" and factor == pytest.approx(70000 / decayed)
    values = np.array([[0.0, 10000.0]], np.float32)
    _, params = dicom_to_uint8(values, pet_dataset(), "pet", None)
    assert params["suv"] == "bw" and "suv_factor" not in params  # weight over dose: it would reveal the patient's weight
    factor, why = suv_factor(pet_dataset(weight=0))
    assert factor is None and "weight" in why
    _, params = dicom_to_uint8(values, pet_dataset(weight=0), "pet", None)
    assert params["suv"] is None and "weight" in params["suv_flag"]


def test_monochrome1_is_inverted():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    values = np.array([[-1000.0, 1000.0]], np.float32)
    pixels, params = dicom_to_uint8(values, ds, "ct", "soft_tissue")
    assert pixels.tolist() == [[255, 0]] and params["inverted"] is True


def test_multi_frame_objects_become_volumes_or_frames(tmp_path):
    _wd, df, q = run(tmp_path, ["rtdose.dcm", "examples_ybr_color.dcm", "SC_rgb_rle_2frame.dcm"], modality="ct")
    assert q.height == 0
    dose = df.filter(df["relpath"] == "rtdose.dcm")
    assert set(dose["slice_axis"].to_list()) == {"axial"} and dose.height == 2  # a 15-frame grid sliced as a volume (2 negatives)
    assert dose["spacing_x"][0] is not None and dose["image_left"][0] is not None
    cine = df.filter(df["relpath"] == "examples_ybr_color.dcm")
    assert cine["slice_axis"].to_list() == ["frame"] * 3 and sorted(cine["slice_index"].to_list()) == [0, 14, 29]  # first, middle, last
    assert cine["channels"].to_list() == [3, 3, 3]
    two = df.filter(df["relpath"] == "SC_rgb_rle_2frame.dcm")
    assert sorted(two["slice_index"].to_list()) == [0, 1]
