"""Decoding, intensity, orientation, slicing and the normalized stage."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.data import get_testdata_file

from medtrinity_core.config import load_sources
from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.intensity import scale_percentile, window_ct
from medtrinity_core.imaging.normalize import normalize, pick_slices
from medtrinity_core.imaging.readers import read_mask, read_raster, side_letters
from medtrinity_core.imaging.resize import target_size
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir, encode_png

from .conftest import EXAMPLES


def run_stage(src: SourceConfig, wd: Workdir):
    items, _ = discover(src)
    raw, q = inventory(src, items)
    assert q.height == 0
    return normalize(src, raw.iter_rows(named=True), wd)


def test_ct_window_maps_level_to_mid_grey():
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    out, params = window_ct(hu, "abdomen")
    assert out.tolist() == [0, 0, 128, 255, 255]
    assert params == {"method": "ct_window", "preset": "abdomen", "level": 40.0, "width": 400.0}


def test_percentile_scaling_clips_outliers():
    values = np.arange(1000, dtype=np.float32)
    out, params = scale_percentile(values, 10.0, 110.0)
    assert out[10] == 0 and out[60] == 128 and out[110] == 255 and out[500] == 255
    assert params["lo"] == 10.0 and params["hi"] == 110.0


def test_rgba_grey_16bit_and_palette_rasters(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    r = read_raster(tmp_path / "rgba.png")
    assert r.pixels.shape == (4, 5, 3) and r.pixels[0, 0].tolist() == [200, 0, 0]
    grey = np.stack([np.arange(20, dtype=np.uint8).reshape(4, 5)] * 3, axis=2)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert read_raster(tmp_path / "grey.png").pixels.shape == (4, 5)
    sixteen = (np.arange(100, dtype=np.uint16) * 600).reshape(10, 10)
    Image.fromarray(sixteen).save(tmp_path / "16.png")
    r16 = read_raster(tmp_path / "16.png")
    assert r16.pixels.dtype == np.uint8 and r16.pixels.min() == 0 and r16.pixels.max() == 255
    assert r16.intensity["method"] == "percentile"
    pal = Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "pal.png")
    assert read_mask(tmp_path / "pal.png", None).tolist() == [[False, True], [True, False]]
    assert read_raster(tmp_path / "pal.png").pixels[0, 1].tolist() == [255, 0, 0]


def test_rgba_mask_uses_colour_channels_not_alpha(tmp_path):
    mask = np.zeros((3, 3, 4), np.uint8)
    mask[..., 3] = 255  # opaque everywhere
    mask[1, 1, :3] = 255
    Image.fromarray(mask, "RGBA").save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", 127).sum() == 1


def test_not_an_image_and_decompression_bomb(tmp_path, monkeypatch):
    (tmp_path / "x.png").write_bytes(b"GIF89a but not really")
    with pytest.raises(ItemError) as err:
        read_raster(tmp_path / "x.png")
    assert err.value.reason == "not_an_image"
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ItemError) as err:
        read_raster(tmp_path / "big.png")
    assert err.value.reason == "decompression_bomb"


def test_resize_keeps_aspect_and_makes_pixels_square():
    assert target_size(2048, 1024, 1024, None) == (1024, 512)
    assert target_size(300, 200, 1024, None) == (300, 200)
    assert target_size(100, 50, 1024, (1.0, 2.0)) == (100, 100)


def test_png_is_deterministic_and_has_no_text_chunks():
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    data = encode_png(pixels)
    assert data == encode_png(pixels.copy())
    assert b"tEXt" not in data and b"iTXt" not in data and b"zTXt" not in data
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)


def test_side_letters_follow_direction_cosines():
    assert side_letters([1, 0, 0], [0, 1, 0]) == ("R", "A")  # standard axial: radiological view
    assert side_letters([-1, 0, 0], [0, 1, 0]) == ("L", "A")
    assert side_letters([0, 1, 0], [0, 0, -1]) == ("A", "S")  # sagittal


def test_pick_slices_keeps_foreground_and_spread_negatives():
    fg = np.array([False, False, True, True, False, False, False, False, False, False])
    assert pick_slices(fg, 0) == [2, 3]
    picked = pick_slices(fg, 2)
    assert [2, 3] == [s for s in picked if fg[s]] and len(picked) == 4
    assert all(not fg[s] for s in picked if s not in (2, 3))


def _volume_source(root: Path, **kw) -> SourceConfig:
    return SourceConfig(name="vol", modality=kw.pop("modality", "mri"), license="CC0-1.0", root=root, layout="volume_labels",
                        images=r"(?P<case>c\d)_img\.(nii\.gz|mha)", labels=r"{case}_lab\.(nii\.gz|mha)", label_map=((1, "lesion"),), body_region="brain", **kw)


def _write_pair(root: Path, image: np.ndarray, labels: np.ndarray, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(0, 0, 0), spacing=(0.5, 0.5, 2.0), name="c1", ext="nii.gz"):
    root.mkdir(parents=True, exist_ok=True)
    for arr, suffix in ((image, "img"), (labels, "lab")):
        img = sitk.GetImageFromArray(arr)
        img.SetDirection(direction)
        img.SetOrigin(origin)
        img.SetSpacing(spacing)
        sitk.WriteImage(img, str(root / f"{name}_{suffix}.{ext}"))


def _lesion_volume():
    image = np.zeros((8, 20, 30), np.float32)
    image[:, :, :] = 100
    labels = np.zeros(image.shape, np.uint8)
    labels[3:5, 4:8, 22:27] = 1  # high x index: toward the patient's left in LPS
    image[labels == 1] = 400
    return image, labels


def test_volume_is_sliced_to_foreground_plus_negatives(tmp_path):
    image, labels = _lesion_volume()
    _write_pair(tmp_path / "a", image, labels)
    wd = Workdir.at(tmp_path / "wd")
    df, q = run_stage(_volume_source(tmp_path / "a", negatives_per_volume=2), wd)
    assert q.height == 0
    fg = df.filter(df["masks"].list.len() > 0)
    assert sorted(fg["slice_index"].to_list()) == [3, 4] and df.height == 4
    row = fg.row(0, named=True)
    assert row["masks"][0]["label"] == "lesion" and row["labels"] == ["lesion"]
    assert row["image_left"] == "R" and row["image_top"] == "A" and row["slice_axis"] == "axial"
    assert row["spacing_x"] == 0.5 and row["spacing_y"] == 0.5
    negatives = df.filter(df["masks"].list.len() == 0)
    assert negatives["labels"].to_list() == [[], []]  # a negative slice is not labelled with the lesion
    pixels = wd.read_png(row["image_uri"])
    mask = wd.read_png(row["masks"][0]["uri"]) > 127
    assert mask[:, 22:27].all(axis=1)[4:8].all() and pixels[mask].min() > pixels[~mask].max()
    assert json.loads(row["normalization"])["intensity"]["method"] == "percentile"


def test_flipped_direction_matrix_gives_the_same_patient_view(tmp_path):
    """The stated side must follow the patient, not the array."""
    image, labels = _lesion_volume()
    _write_pair(tmp_path / "lps", image, labels)
    # same physical volume stored with the x axis reversed: column 0 is now the patient's left
    nx = image.shape[2]
    _write_pair(tmp_path / "flip", image[:, :, ::-1].copy(), labels[:, :, ::-1].copy(), direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1), origin=((nx - 1) * 0.5, 0, 0))
    wd = Workdir.at(tmp_path / "wd")
    a, _ = run_stage(_volume_source(tmp_path / "lps"), wd)
    b, _ = run_stage(_volume_source(tmp_path / "flip"), wd)
    ra = a.filter(a["slice_index"] == 3).row(0, named=True)
    rb = b.filter(b["slice_index"] == 3).row(0, named=True)
    assert ra["image_sha256"] == rb["image_sha256"] and ra["masks"][0]["sha256"] == rb["masks"][0]["sha256"]
    mask = wd.read_png(rb["masks"][0]["uri"]) > 127
    assert np.nonzero(mask)[1].mean() > mask.shape[1] / 2  # patient's left shows on the image's right


def test_label_volume_on_a_coarser_grid_is_resampled(tmp_path):
    image, labels = _lesion_volume()
    _write_pair(tmp_path / "v", image, labels)
    coarse = sitk.GetImageFromArray(labels[:, ::2, ::2].copy())
    coarse.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(coarse, str(tmp_path / "v" / "c1_lab.nii.gz"))
    df, q = run_stage(_volume_source(tmp_path / "v"), Workdir.at(tmp_path / "wd"))
    assert q.height == 0 and sorted(df.filter(df["masks"].list.len() > 0)["slice_index"].to_list()) == [3, 4]


def test_label_volume_elsewhere_in_space_and_nan_voxels_are_quarantined(tmp_path):
    image, labels = _lesion_volume()
    _write_pair(tmp_path / "v", image, labels)
    far = sitk.GetImageFromArray(labels)
    far.SetOrigin((500.0, 500.0, 500.0))
    far.SetSpacing((0.5, 0.5, 2.0))
    sitk.WriteImage(far, str(tmp_path / "v" / "c1_lab.nii.gz"))
    nan = image.copy()
    nan[0, 0, 0] = np.nan
    _write_pair(tmp_path / "v", nan, labels, name="c2", ext="mha")  # NIfTI I/O in SimpleITK zeroes NaN
    df, q = run_stage(_volume_source(tmp_path / "v"), Workdir.at(tmp_path / "wd"))
    assert df.height == 0
    assert dict(zip(q["relpath"].to_list(), q["reason"].to_list())) == {"c1_img.nii.gz": "mask_geometry_mismatch", "c2_img.mha": "non_finite_voxels"}


def test_ct_volume_is_windowed_from_the_preset(tmp_path):
    image, labels = _lesion_volume()
    _write_pair(tmp_path / "ct", image - 60, labels)  # 40 HU background, 340 HU lesion
    df, _ = run_stage(_volume_source(tmp_path / "ct", modality="ct", window="abdomen"), Workdir.at(tmp_path / "wd"))
    norm = json.loads(df["normalization"][0])
    assert norm["intensity"]["preset"] == "abdomen"
    pixels = Workdir.at(tmp_path / "wd").read_png(df["image_uri"][0])
    assert pixels[0, 0] == 128  # 40 HU is the abdomen window's level


def test_dicom_ct_file_through_modality_lut_and_window(tmp_path):
    root = tmp_path / "dicom"
    root.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "ct.dcm")
    src = SourceConfig(name="dcm", modality="ct", license="LicenseRef-test", root=root, layout="dicom", images=r".+\.dcm", window="bone")
    wd = Workdir.at(tmp_path / "wd")
    df, q = run_stage(src, wd)
    assert q.height == 0 and df.height == 1
    row = df.row(0, named=True)
    assert (row["width"], row["height"], row["channels"]) == (128, 128, 1)
    assert row["spacing_x"] == pytest.approx(0.661468) and (row["image_left"], row["image_top"]) == ("R", "A")
    ds = pydicom.dcmread(root / "ct.dcm")
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected, _ = window_ct(hu, "bone")
    assert np.array_equal(wd.read_png(row["image_uri"]), expected)


def test_dicom_without_pixels_and_burned_in_text_are_quarantined(tmp_path):
    root = tmp_path / "dicom"
    root.mkdir()
    shutil.copy(get_testdata_file("rtstruct.dcm"), root / "rt.dcm")
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.BurnedInAnnotation = "YES"
    ds.save_as(root / "burned.dcm")
    (root / "junk.dcm").write_bytes(b"\x00" * 300)
    src = SourceConfig(name="dcm", modality="ct", license="LicenseRef-test", root=root, layout="dicom", images=r".+\.dcm")
    _, rejected = discover(src)
    assert [(r.relpath, r.reason) for r in rejected] == [("rt.dcm", "unreferenced_annotation")]  # its CT series is not here
    (root / "rt.dcm").unlink()
    df, q = run_stage(src, Workdir.at(tmp_path / "wd"))
    assert df.height == 0
    assert dict(zip(q["relpath"].to_list(), q["reason"].to_list())) == {"burned.dcm": "burned_in_annotation", "junk.dcm": "unreadable"}


def test_bundled_examples_normalize_rgba_jpeg_gif_tiff(tmp_path):
    sources = load_sources(EXAMPLES / "sources.yaml")
    wd = Workdir.at(tmp_path)
    xray, _ = run_stage(sources.source("biomedparse-xray"), wd)
    assert xray.row(0, named=True)["channels"] == 1  # RGBA grey demo image collapsed to one channel
    drive, _ = run_stage(sources.source("drive").model_copy(update={"max_side": 256}), wd)
    row = drive.row(0, named=True)
    assert (row["orig_width"], row["orig_height"]) == (565, 584) and max(row["width"], row["height"]) == 256
    assert row["channels"] == 3 and row["masks"][0]["label"] == "retinal vessels"


def test_coronal_and_sagittal_planes_keep_the_head_up_and_the_sides_right(tmp_path):
    image, labels = _lesion_volume()
    labels[:] = 0
    labels[1, 4:8, 22:27] = 1  # one inferior slice (z 1 of 0-7), on the patient's left (high x)
    _write_pair(tmp_path / "v", image, labels)
    df, q = run_stage(_volume_source(tmp_path / "v", slice_axes=("axial", "coronal", "sagittal"), negatives_per_volume=0), Workdir.at(tmp_path / "wd"))
    assert q.height == 0
    counts = dict(df.group_by("slice_axis").len().iter_rows())
    assert counts == {"axial": 1, "coronal": 4, "sagittal": 5}
    wd = Workdir.at(tmp_path / "wd")
    coronal = df.filter(df["slice_axis"] == "coronal").row(0, named=True)
    assert (coronal["image_left"], coronal["image_top"]) == ("R", "S")
    mask = wd.read_png(coronal["masks"][0]["uri"]) > 127
    rows, cols = np.nonzero(mask)
    assert mask.shape == (8 * 4, 30)  # square pixels: 2 mm slices over 0.5 mm pixels
    assert cols.min() == 22 and cols.max() == 26  # patient's left on the image's right
    assert rows.min() == (7 - 1) * 4 and rows.max() == (7 - 1) * 4 + 3  # inferior at the bottom once the head is up
    sagittal = df.filter(df["slice_axis"] == "sagittal").row(0, named=True)
    assert (sagittal["image_left"], sagittal["image_top"]) == ("A", "S")


def test_every_nth_slice_and_minimum_slice_fraction(tmp_path):
    image = np.full((10, 20, 20), 100, np.float32)
    labels = np.zeros(image.shape, np.uint8)
    for z, half in zip(range(2, 8), (1, 3, 5, 5, 3, 1)):  # a lesion small at its ends
        labels[z, 10 - half : 10 + half, 10 - half : 10 + half] = 1
    _write_pair(tmp_path / "v", image, labels)
    wd = Workdir.at(tmp_path / "wd")
    every, _ = run_stage(_volume_source(tmp_path / "v", slice_every=2, negatives_per_volume=0), wd)
    assert sorted(every["slice_index"].to_list()) == [2, 4, 6]
    big, _ = run_stage(_volume_source(tmp_path / "v", min_slice_fraction=0.3, negatives_per_volume=0), wd)
    assert sorted(big["slice_index"].to_list()) == [3, 4, 5, 6]  # 36/100 and 100/100 pass, 4/100 does not


def test_label_png_values_become_one_mask_per_label(tmp_path):
    from medtrinity_core.sources.schema import MaskSpec

    root = tmp_path / "lab"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(np.full((20, 30), 80, np.uint8)).save(root / "images" / "a.png")
    values = np.zeros((20, 30), np.uint8)
    values[2:6, 2:8], values[10:15, 20:28] = 1, 2
    Image.fromarray(values).save(root / "labels" / "a.png")
    src = SourceConfig(name="lab", modality="ct", license="CC0-1.0", root=root, layout="image_masks", images=r"images/(?P<id>\w+)\.png",
                       masks=(MaskSpec(pattern=r"labels/{id}\.png", label_map=((1, "liver"), (2, "tumor"))),))
    wd = Workdir.at(tmp_path / "wd")
    df, _q = run_stage(src, wd)
    masks = {m["label"]: wd.read_png(m["uri"]) > 127 for m in df.row(0, named=True)["masks"]}
    assert set(masks) == {"liver", "tumor"}
    assert np.array_equal(masks["liver"], values == 1) and np.array_equal(masks["tumor"], values == 2)


def test_ct_window_per_label(tmp_path):
    image, labels = _lesion_volume()
    _write_pair(tmp_path / "ct", image - 60, labels)  # 40 HU background, 340 HU lesion
    src = _volume_source(tmp_path / "ct", modality="ct", window="abdomen", label_windows=(("lesion", "bone"),), negatives_per_volume=1)
    df, _ = run_stage(src, Workdir.at(tmp_path / "wd"))
    presets = {r["slice_index"]: json.loads(r["normalization"])["intensity"]["preset"] for r in df.iter_rows(named=True)}
    assert presets == {2: "abdomen", 3: "bone", 4: "bone"}  # the negative slice keeps the source's window


def test_truncated_raster_is_quarantined_as_truncated(tmp_path):
    data = encode_png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ItemError) as err:
        read_raster(tmp_path / "cut.png")
    assert err.value.reason == "truncated"
