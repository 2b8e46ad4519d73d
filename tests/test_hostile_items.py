"""Hostile items: one bad item is quarantined with a specific reason and never stops its neighbours.

Volumes with NaN or infinite voxels, written exactly as nibabel and SimpleITK write them, are
`non_finite_voxels`; an image whose mask is empty, repeated or of another shape is quarantined by the
normalized stage itself (`empty_mask`, `duplicate_mask`, `mask_shape_mismatch`) before the blocking
normalized suite runs, so the shard's other items go on to the triplets.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pytest
import SimpleITK as sitk
from PIL import Image

from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.readers import read_raster, read_volumes
from medtrinity_core.pipeline import run_one
from medtrinity_core.quality import suites
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.sources.schema import MaskSpec, SourceConfig
from medtrinity_core.storage import Workdir

from .conftest import KVASIR, materialize_source, with_tiny_knowledge


def run_normalized(src: SourceConfig, wd: Workdir):
    """Discovery, raw and the normalized stage in-process: (raw, images, quarantined, counts)."""
    items, rejected = discover(src)
    assert not rejected
    raw, q = inventory(src, items)
    assert q.height == 0
    result = run_one("normalized", src, "base-0000", wd, {"raw": raw})  # through the runner: withdrawn, accounted
    return raw, result.rows, result.rejected, result.metadata


def reasons(quarantined: pl.DataFrame) -> dict[str, str]:
    return dict(zip(quarantined["relpath"].to_list(), quarantined["reason"].to_list()))


# -- non-finite voxels ------------------------------------------------------------------------------------

AFFINE = np.diag([0.5, 0.5, 2.0, 1.0])  # nibabel's (x, y, z) voxel axes, 0.5 x 0.5 x 2 mm


def _volume(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) on nibabel's (x, y, z) axes: a textured volume with a bright lesion on two slices."""
    image = np.random.default_rng(seed).uniform(80, 120, (30, 20, 8)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[22:27, 4:8, 3:5] = 1
    image[labels == 1] += 300
    return image, labels


def _nibabel_pair(root: Path, case: str, image: np.ndarray, labels: np.ndarray, ext: str) -> None:
    nib.Nifti1Image(image, AFFINE).to_filename(root / f"{case}_img.{ext}")
    nib.Nifti1Image(labels, AFFINE).to_filename(root / f"{case}_lab.{ext}")


def _sitk_pair(root: Path, case: str, image: np.ndarray, labels: np.ndarray, ext: str) -> None:
    for array, suffix in ((image, "img"), (labels, "lab")):
        volume = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))  # SimpleITK's arrays are (z, y, x)
        volume.SetSpacing((0.5, 0.5, 2.0))
        sitk.WriteImage(volume, str(root / f"{case}_{suffix}.{ext}"))


def _volume_source(root: Path, **kw) -> SourceConfig:
    return SourceConfig(name="vol", modality="mri", license="CC0-1.0", root=root, layout="volume_labels", body_region="brain",
                        images=r"(?P<case>c\w+)_img\.(nii\.gz|nii|nrrd|mha)", labels=r"{case}_lab\.(nii\.gz|nii|nrrd|mha)",
                        label_map=((1, "lesion"),), **kw)


def test_volumes_with_nan_or_infinite_voxels_are_quarantined_and_the_good_volumes_reach_the_manifest(tmp_path):
    root = tmp_path / "vol"
    root.mkdir()
    image, labels = _volume(0)
    _nibabel_pair(root, "cgood", image, labels, "nii.gz")
    _sitk_pair(root, "cgoodmha", *_volume(1), "mha")
    nan = image.copy()
    nan[3, 3, 3] = np.nan
    _nibabel_pair(root, "cnan", nan, labels, "nii.gz")  # SimpleITK reads this NaN as 0
    inf = image.copy()
    inf[5, 5, 1] = np.inf
    inf[6, 5, 1] = np.inf
    _nibabel_pair(root, "cinf", inf, labels, "nii")
    _sitk_pair(root, "cnanmha", nan, labels, "mha")
    neg = image.copy()
    neg[0, 0, 0] = -np.inf
    _sitk_pair(root, "cinfnrrd", neg, labels, "nrrd")
    raw, images, quarantined, counts = run_normalized(_volume_source(root), Workdir.at(tmp_path / "wd"))
    assert raw.height == 6
    assert sorted(set(images["relpath"].to_list())) == ["cgood_img.nii.gz", "cgoodmha_img.mha"]
    assert reasons(quarantined) == {"cnan_img.nii.gz": "non_finite_voxels", "cinf_img.nii": "non_finite_voxels",
                                    "cnanmha_img.mha": "non_finite_voxels", "cinfnrrd_img.nrrd": "non_finite_voxels"}
    details = dict(zip(quarantined["relpath"].to_list(), quarantined["detail"].to_list()))
    assert details["cnan_img.nii.gz"] == "cnan_img.nii.gz: 1 of 4,800 voxels are non-finite (1 NaN)"
    assert details["cinf_img.nii"] == "cinf_img.nii: 2 of 4,800 voxels are non-finite (2 +inf)"
    assert details["cinfnrrd_img.nrrd"] == "cinfnrrd_img.nrrd: 1 of 4,800 voxels are non-finite (1 -inf)"
    assert (counts["items_in"], counts["items_out"], counts["items_quarantined"]) == (6, 2, 4)


def test_a_label_volume_with_nan_voxels_quarantines_its_item_naming_the_label_file(tmp_path):
    root = tmp_path / "vol"
    root.mkdir()
    image, labels = _volume(0)
    nib.Nifti1Image(image, AFFINE).to_filename(root / "cbad_img.nii.gz")
    float_labels = labels.astype(np.float32)
    float_labels[1, 1, 1] = np.nan
    nib.Nifti1Image(float_labels, AFFINE).to_filename(root / "cbad_lab.nii.gz")
    _, images, quarantined, _ = run_normalized(_volume_source(root), Workdir.at(tmp_path / "wd"))
    assert images.height == 0 and reasons(quarantined) == {"cbad_img.nii.gz": "non_finite_voxels"}
    assert quarantined["detail"][0].startswith("cbad_lab.nii.gz: 1 of")


def test_a_4d_nifti_is_checked_in_the_volumes_it_gives(tmp_path):
    image, _ = _volume(0)
    series = np.stack([image, image], axis=3)
    series[2, 2, 2, 1] = np.nan  # only the second volume holds a NaN
    nib.Nifti1Image(series, AFFINE).to_filename(tmp_path / "t.nii.gz")
    assert [t for t, _ in read_volumes(tmp_path / "t.nii.gz", 0)] == [0]
    with pytest.raises(ItemError) as err:
        read_volumes(tmp_path / "t.nii.gz", "all")
    assert err.value.reason == "non_finite_voxels" and err.value.detail == "t.nii.gz volume 1: 1 of 4,800 voxels are non-finite (1 NaN)"


def test_a_float_tiff_with_nan_is_still_non_finite_pixels(tmp_path):
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    values[2, 2] = np.nan
    Image.fromarray(values).save(tmp_path / "f.tif")
    with pytest.raises(ItemError) as err:
        read_raster(tmp_path / "f.tif")
    assert err.value.reason == "non_finite_pixels"


# -- annotation defects in an image_masks source ----------------------------------------------------------

GOOD = {"good1": "cju0qkwl35piu0993l0dewei2", "good2": "cju0roawvklrq0799vmjorwfv"}
DEFECTS = {"images/empty.png": "empty_mask", "images/dup.png": "duplicate_mask", "images/shape.png": "mask_shape_mismatch"}


def write_mask_source(root: Path) -> Path:
    """Five items, images as PNGs written by Pillow: two Kvasir-SEG polyps with their masks, one whose
    only mask is an all-zero JPEG, one with two byte-identical instance masks, one whose mask has
    another size than its image."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, kvasir in GOOD.items():
        Image.open(KVASIR / "images" / f"{kvasir}.jpg").save(root / "images" / f"{name}.png")
        mask = np.asarray(Image.open(KVASIR / "masks" / f"{kvasir}.jpg").convert("L")) > 127
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{name}_1.png")
    rng = np.random.default_rng(7)
    for name in ("empty", "dup", "shape"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(root / "masks" / "empty_1.jpg")
    blob = np.zeros((48, 64), np.uint8)
    blob[10:30, 20:40] = 255
    Image.fromarray(blob).save(root / "masks" / "dup_1.png")
    shutil.copyfile(root / "masks" / "dup_1.png", root / "masks" / "dup_2.png")
    Image.fromarray(blob[:32, :32]).save(root / "masks" / "shape_1.png")
    return root


def _mask_source(root: Path, **kw) -> SourceConfig:
    return SourceConfig(name="masks", modality="endoscopy", license="CC0-1.0", root=root, layout="image_masks", body_region="colon",
                        images=r"images/(?P<id>[^/]+)\.png", masks=(MaskSpec(pattern=r"masks/{id}_\d+\.(png|jpg)", label="polyp"),), **kw)


def test_an_all_zero_mask_a_repeated_mask_and_a_mask_of_another_size_each_quarantine_only_their_item(tmp_path):
    wd = Workdir.at(tmp_path / "wd")
    raw, images, quarantined, counts = run_normalized(_mask_source(write_mask_source(tmp_path / "src")), wd)
    assert raw.height == 5
    assert sorted(images["relpath"].to_list()) == ["images/good1.png", "images/good2.png"]
    assert all(len(masks) == 1 for masks in images["masks"].to_list())
    assert reasons(quarantined) == DEFECTS and quarantined.height == 3  # one row per defective item
    details = dict(zip(quarantined["relpath"].to_list(), quarantined["detail"].to_list()))
    assert "masks/empty_1.jpg" in details["images/empty.png"] and "no foreground" in details["images/empty.png"]
    assert "masks/dup_1.png" in details["images/dup.png"] and "masks/dup_2.png" in details["images/dup.png"]
    assert "32x32" in details["images/shape.png"] and "64x48" in details["images/shape.png"]
    assert (counts["items_in"], counts["items_out"], counts["items_quarantined"]) == (5, 2, 3)
    result = suites.normalized_suite(images, wd, {})
    assert result.ok and not result.warnings  # the defects never reach the blocking suite


def test_severity_warn_keeps_the_item_without_its_empty_or_repeated_mask_and_records_it(tmp_path):
    quality = json.dumps({"severity": {"empty_mask": "warn", "duplicate_mask": "warn"}})
    wd = Workdir.at(tmp_path / "wd")
    _, images, quarantined, _ = run_normalized(_mask_source(write_mask_source(tmp_path / "src"), quality=quality), wd)
    assert reasons(quarantined) == {"images/shape.png": "mask_shape_mismatch"}  # a mask on another grid is never kept
    rows = {r["relpath"]: r for r in images.iter_rows(named=True)}
    assert rows["images/empty.png"]["masks"] == []
    assert json.loads(rows["images/empty.png"]["normalization"])["dropped_masks"] == [{"label": "polyp", "annotation": "masks/empty_1.jpg", "reason": "empty_mask"}]
    assert [m["annotation"] for m in rows["images/dup.png"]["masks"]] == ["masks/dup_1.png"]
    assert json.loads(rows["images/dup.png"]["normalization"])["dropped_masks"] == [{"label": "polyp", "annotation": "masks/dup_2.png", "reason": "duplicate_mask"}]
    assert "dropped_masks" not in json.loads(rows["images/good1.png"]["normalization"])
    assert suites.normalized_suite(images, wd, {}).ok


def test_a_label_png_without_one_of_its_values_is_no_empty_mask(tmp_path):
    root = tmp_path / "lab"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(np.full((20, 30), 80, np.uint8)).save(root / "images" / "a.png")
    values = np.zeros((20, 30), np.uint8)
    values[2:6, 2:8] = 1  # liver, no tumour on this image
    Image.fromarray(values).save(root / "labels" / "a.png")
    src = SourceConfig(name="lab", modality="ct", license="CC0-1.0", root=root, layout="image_masks", images=r"images/(?P<id>\w+)\.png",
                       masks=(MaskSpec(pattern=r"labels/{id}\.png", label_map=((1, "liver"), (2, "tumor"))),))
    _, images, quarantined, _ = run_normalized(src, Workdir.at(tmp_path / "wd"))
    assert quarantined.height == 0 and [m["label"] for m in images["masks"][0]] == ["liver"]


def test_a_mask_too_small_to_survive_the_resize_is_dropped_and_recorded_not_quarantined(tmp_path):
    root = tmp_path / "big"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (400, 400), dtype=np.uint8)).save(root / "images" / "a.png")
    dot = np.zeros((400, 400), np.uint8)
    dot[1, 1] = 255  # nearest-neighbour to 100 x 100 samples pixels 2, 6, 10, ...
    Image.fromarray(dot).save(root / "masks" / "a_1.png")
    wd = Workdir.at(tmp_path / "wd")
    _, images, quarantined, _ = run_normalized(_mask_source(root).model_copy(update={"max_side": 100}), wd)
    assert quarantined.height == 0 and images["masks"][0].to_list() == []
    assert json.loads(images["normalization"][0])["dropped_masks"] == [{"label": "polyp", "annotation": "masks/a_1.png", "reason": "lost_in_resize"}]
    assert suites.normalized_suite(images, wd, {}).ok


def test_an_all_zero_mask_quarantines_its_item_and_its_neighbours_reach_the_triplets(tmp_path):
    from medtrinity_core.dataset.summary import summarize
    from medtrinity_core.quarantine import read_quarantine
    from medtrinity_core.storage import read_parquet

    write_mask_source(tmp_path / "src")
    sources = tmp_path / "sources.yaml"
    sources.write_text(with_tiny_knowledge(tmp_path) + textwrap.dedent("""\
        sources:
          - name: hostile-masks
            modality: endoscopy
            body_region: colon
            license: LicenseRef-research-only
            root: src
            layout: image_masks
            images: 'images/(?P<id>[^/]+)\\.png'
            masks:
              - pattern: 'masks/{id}_\\d+\\.(png|jpg)'
                label: polyp
        """))
    run = materialize_source(sources, tmp_path / "wd")
    wd, src, shard = run["workdir"], run["source"], run["shard"]
    evaluations = {e.check_name: e for e in run["result"].get_asset_check_evaluations()}
    assert evaluations["normalized_suite"].passed
    triplets = read_parquet(wd.manifest_path(src.name, "triplets", shard))
    assert sorted(triplets["provenance"].struct.field("source_relpath").to_list()) == ["images/good1.png", "images/good2.png"]
    assert reasons(read_quarantine(wd, src.name, shard)) == DEFECTS
    # the defects count in the quarantine share: 3 of 5 is over 25 %, so `medtrinity run` exits 1 on this shard
    share = evaluations["quarantine_share"]
    assert not share.passed and share.metadata["quarantined"].value == 3 and share.metadata["items"].value == 5
    row = summarize(wd, [src]).row(0, named=True)
    assert (row["items"], row["quarantined"]) == (5, 3) and row["quarantined"] / row["items"] > src.max_quarantine_share


def test_hidden_files_are_listed_but_do_not_count_against_the_quarantine_share():
    """macOS' `._x.png` beside every image of a copied folder is listed (`hidden_file`), never data: it
    must not push the source over max_quarantine_share."""
    from medtrinity_core.quarantine import defects, items_in
    from medtrinity_core.records import QUARANTINE, frame, quarantine_row

    rows = [quarantine_row(f"item-{n}", "mac", f"images/._{n}.png", "raw", "hidden_file", "a hidden file") for n in range(2)]
    rows.append(quarantine_row("item-9", "mac", "images/9.png", "raw", "empty_file", "0 bytes"))
    q = defects(frame(rows, QUARANTINE))
    assert q["reason"].to_list() == ["empty_file"]
    assert items_in(2, q) == 3  # two good items and the empty one; the hidden files are no items


def test_a_box_with_an_empty_label_is_a_bad_annotation_of_its_own_item(tmp_path):
    from medtrinity_core.errors import ItemError
    from medtrinity_core.sources.boxes import read_boxes
    from medtrinity_core.sources.schema import BoxSpec

    (tmp_path / "boxes.csv").write_text("image,label,x0,y0,x1,y1\na.png,polyp,1,1,5,5\nb.png,,1,1,5,5\n")
    spec = BoxSpec(format="csv", file="boxes.csv")
    assert [b["label"] for b in read_boxes(spec, tmp_path, "boxes.csv", "a.png", 8, 8)] == ["polyp"]
    with pytest.raises(ItemError) as info:
        read_boxes(spec, tmp_path, "boxes.csv", "b.png", 8, 8)
    assert info.value.reason == "bad_annotation" and "empty label" in info.value.detail
