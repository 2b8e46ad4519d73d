"""Expert outputs as the tools write them (TotalSegmentator, Cellpose, HoVer-Net, CheXmask, label maps),
read through the pipeline from planning to ROIs, with a confidence on every expert ROI."""

from __future__ import annotations

import pickle
import re
import textwrap
import zlib

import numpy as np
import polars as pl
import pytest
from PIL import Image

from medtrinity_core.config import load_sources
from medtrinity_core.describe.facts import image_facts
from medtrinity_core.describe.grounded import location_facet
from medtrinity_core.errors import SourcesFileError
from medtrinity_core.knowledge.retrieve import coarse_caption
from medtrinity_core.pipeline import run_chain
from medtrinity_core.roi.extract import dataset_rois
from medtrinity_core.sources.shards import update_plan
from medtrinity_core.storage import Workdir, read_parquet

from . import expert_outputs_factory as fx


def _source(tmp_path, body):
    """The one source of a sources file: YAML text, or a mapping written as YAML."""
    import yaml

    path = tmp_path / "sources.yaml"
    if isinstance(body, dict):
        path.write_text(yaml.safe_dump({"version": 1, "sources": [body]}, sort_keys=False))
    else:
        path.write_text("version: 1\nsources:\n" + textwrap.indent(textwrap.dedent(body), "  "))
    return load_sources(path).sources[0]


def _run(tmp_path, src, end="rois"):
    """Plan the source and run its one shard to `end`; (results, all quarantine rows of the shard)."""
    wd = Workdir.at(tmp_path / "wd")
    shard = min(update_plan(wd, src))
    out = run_chain(src, shard, wd, end=end)
    quarantined = pl.concat([r.rejected for r in out.values()])
    return out, quarantined, wd


def _ct_source(tmp_path, expert: dict, **extra) -> object:
    return _source(tmp_path, {"name": "ts", "modality": "ct", "license": "CC0-1.0", "root": "data", "layout": "volume_labels",
                              "images": r"img/(?P<id>[^/]+)\.nii\.gz", "window": "abdomen", "negatives_per_volume": 0, "expert": expert, **extra})


# --- TotalSegmentator ---------------------------------------------------------------------------------

def test_totalsegmentator_case_folder_gives_one_label_per_structure_file_on_the_patients_side(tmp_path):
    ct, structures = fx.ct_case()
    affine = fx.ras_affine()
    fx.write_nifti(tmp_path / "data/img/case1.nii.gz", ct, affine)
    fx.totalsegmentator_folder(tmp_path / "data/seg/case1", structures, affine)
    (tmp_path / "data/seg/case1/statistics.json").write_text("{}")  # TotalSegmentator's --statistics file: no structure
    src = _ct_source(tmp_path, {'kind': 'precomputed', 'format': 'totalsegmentator', 'pattern': 'seg/{id}', 'model_version': '2.4.0'})
    out, quarantined, _ = _run(tmp_path, src)
    assert quarantined.is_empty(), quarantined.to_dicts()
    raw = out["raw"].rows.row(0, named=True)
    assert sorted(a["label"] for a in raw["annotations"]) == ["kidney_left", "liver", "spleen"]
    rois = out["rois"].rows
    assert set(rois["label"]) == {"liver", "kidney_left"}  # the all-zero spleen file is a structure not in view
    assert set(rois["method"]) == {"expert_model"} and set(rois["model_id"]) == {"TotalSegmentator 2.4.0"}
    assert rois["confidence"].null_count() == rois.height and not rois["low_confidence"].any()  # the tool writes no confidence: null is not floored
    by_label = {r["label"]: r for r in rois.sort("area_px", descending=True).iter_rows(named=True)}
    assert "right" in by_label["liver"]["location"] and "left" not in by_label["liver"]["location"].replace("the patient's right", "")
    assert "patient's left" in by_label["kidney_left"]["location"]
    # volumes in ml as for ground truth: 18 x 24 x 8 voxels of 1 x 1 x 2 mm
    assert by_label["liver"]["volume_ml"] == pytest.approx(18 * 24 * 8 * 2 / 1000)
    images = out["normalized"].rows
    assert {m["model"] for row in images["masks"].to_list() for m in row} == {"TotalSegmentator 2.4.0"}
    assert images.height == 8  # the slices holding a structure (k 2..9), chosen as for a ground-truth label volume


def test_totalsegmentator_multilabel_names_come_from_the_caret_extension(tmp_path):
    ct, structures = fx.ct_case()
    affine = fx.ras_affine()
    fx.write_nifti(tmp_path / "data/img/case1.nii.gz", ct, affine)
    fx.totalsegmentator_multilabel(tmp_path / "data/seg/case1.nii.gz", {"kidney_left": structures["kidney_left"], "liver": structures["liver"]}, affine)
    src = _ct_source(tmp_path, {'kind': 'precomputed', 'format': 'totalsegmentator', 'pattern': r'seg/{id}\.nii\.gz'})
    out, quarantined, _ = _run(tmp_path, src)
    assert quarantined.is_empty(), quarantined.to_dicts()
    rois = out["rois"].rows
    assert set(rois["label"]) == {"liver", "kidney_left"}
    assert set(rois["model_id"]) == {"TotalSegmentator"}
    kidney = rois.filter(pl.col("label") == "kidney_left").row(0, named=True)
    assert "patient's left" in kidney["location"]


def test_an_expert_output_on_another_grid_is_refused_naming_both_files(tmp_path):
    ct, structures = fx.ct_case()
    fx.write_nifti(tmp_path / "data/img/case1.nii.gz", ct, fx.ras_affine())
    fx.totalsegmentator_folder(tmp_path / "data/seg/case1", {"liver": structures["liver"]}, fx.ras_affine(origin=(-30.0, -32.0, -10.0)))  # shifted 2 mm
    fx.write_nifti(tmp_path / "data/img/case2.nii.gz", ct, fx.ras_affine())
    fx.totalsegmentator_folder(tmp_path / "data/seg/case2", {"liver": structures["liver"][:, :, :10]}, fx.ras_affine())  # cropped: another shape
    src = _ct_source(tmp_path, {'kind': 'precomputed', 'format': 'totalsegmentator', 'pattern': 'seg/{id}'})
    out, quarantined, _ = _run(tmp_path, src)
    assert out["normalized"].rows.height == 0
    rows = {r["relpath"]: r for r in quarantined.iter_rows(named=True)}
    assert {r["reason"] for r in rows.values()} == {"bad_annotation"}
    shifted = rows["img/case1.nii.gz"]["detail"]
    origins = re.findall(r"origin \(([^)]*)\)", shifted)
    assert "seg/case1/liver.nii.gz" in shifted and "img/case1.nii.gz" in shifted and len(origins) == 2 and origins[0] != origins[1]
    assert "64x64x10" in rows["img/case2.nii.gz"]["detail"] and "64x64x12" in rows["img/case2.nii.gz"]["detail"]


def test_a_volume_without_its_expert_output_is_missing_annotation_when_planned(tmp_path):
    ct, structures = fx.ct_case()
    fx.write_nifti(tmp_path / "data/img/case1.nii.gz", ct, fx.ras_affine())
    fx.write_nifti(tmp_path / "data/img/case2.nii.gz", ct, fx.ras_affine())
    fx.totalsegmentator_folder(tmp_path / "data/seg/case1", {"liver": structures["liver"]}, fx.ras_affine())
    src = _ct_source(tmp_path, {'kind': 'precomputed', 'format': 'totalsegmentator', 'pattern': 'seg/{id}'})
    out, quarantined, _ = _run(tmp_path, src, end="raw")
    assert out["raw"].rows["relpath"].to_list() == ["img/case1.nii.gz"]
    row = quarantined.row(0, named=True)
    assert (row["relpath"], row["stage"], row["reason"]) == ("img/case2.nii.gz", "raw", "missing_annotation")
    assert "seg/{id}" in row["detail"]


def test_a_label_map_volume_keeps_ground_truth_and_expert_regions_apart(tmp_path):
    ct, structures = fx.ct_case()
    affine = fx.ras_affine()
    fx.write_nifti(tmp_path / "data/img/case1.nii.gz", ct, affine)
    lesion = np.zeros(ct.shape, np.uint8)
    lesion[44:50, 28:34, 4:7] = 1  # inside the liver
    fx.write_nifti(tmp_path / "data/lab/case1.nii.gz", lesion, affine)
    fx.write_nifti(tmp_path / "data/organs/case1.nii.gz", structures["liver"] * 3, affine)
    src = _ct_source(tmp_path, {'kind': 'precomputed', 'format': 'label_map', 'pattern': r'organs/{id}\.nii\.gz', 'labels': {3: 'liver'}, 'model_id': 'nnU-Net Task03', 'model_version': 'fold0'}, labels=r"lab/{id}\.nii\.gz", label_map={1: "liver tumor"})
    out, quarantined, _ = _run(tmp_path, src)
    assert quarantined.is_empty(), quarantined.to_dicts()
    assert out["normalized"].rows.height == 3  # slices chosen by the ground truth (k 4..6), not by the expert's liver
    rois = out["rois"].rows
    methods = dict(zip(rois["label"], rois["method"]))
    assert methods == {"liver tumor": "ground_truth_mask", "liver": "expert_model"}
    tumour = rois.filter(pl.col("label") == "liver tumor").row(0, named=True)
    assert tumour["within"] == "liver" and tumour["model_id"] is None


# --- Cellpose --------------------------------------------------------------------------------------------

def _micro_source(tmp_path, expert: dict, modality="microscopy", **extra):
    return _source(tmp_path, {"name": "cells", "modality": modality, "license": "CC0-1.0", "root": "data", "layout": "labeled_images",
                              "images": r"img/(?P<id>[^/]+)\.png", "min_roi_pixels": 4, "expert": expert, **extra})


def _image(path, shape, value=120):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))  # images differ, so none is another's duplicate
    Image.fromarray(np.clip(rng.normal(value, 10, shape), 0, 255).astype(np.uint8)).save(path)


def test_cellpose_masks_png_gives_one_roi_per_instance_even_where_cells_touch(tmp_path):
    masks = fx.cells()
    _image(tmp_path / "data/img/a.png", masks.shape)
    fx.cellpose_png(tmp_path / "data/out/a_cp_masks.png", masks)
    src = _micro_source(tmp_path, {'kind': 'precomputed', 'format': 'cellpose', 'pattern': r'out/{id}_cp_masks\.png', 'label': 'nucleus', 'model_version': 'cyto3'})
    out, quarantined, _ = _run(tmp_path, src)
    assert quarantined.is_empty(), quarantined.to_dicts()
    rois = out["rois"].rows.sort("x0")
    assert rois.height == 3 and set(rois["label"]) == {"nucleus"} and set(rois["model_id"]) == {"Cellpose cyto3"}
    assert rois["area_px"].to_list() == [400, 400, 500] and rois["confidence"].null_count() == 3
    assert set(rois["label_count"]) == {3}


def test_cellpose_tif_holds_ids_past_65535(tmp_path):
    masks = fx.cells().astype(np.uint32)
    masks[masks == 3] = 70_000
    _image(tmp_path / "data/img/a.png", masks.shape)
    fx.cellpose_tif(tmp_path / "data/out/a_cp_masks.tif", masks)
    src = _micro_source(tmp_path, {'kind': 'precomputed', 'format': 'cellpose', 'pattern': r'out/{id}_cp_masks\.tif'})
    out, quarantined, _ = _run(tmp_path, src)
    assert quarantined.is_empty(), quarantined.to_dicts()
    assert out["rois"].rows.height == 3 and set(out["rois"].rows["label"]) == {"cell"}


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_cellpose_seg_npy_is_read_through_an_allow_list_and_a_code_pickle_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    masks = fx.cells()
    for name in ("a", "b"):
        _image(tmp_path / f"data/img/{name}.png", masks.shape)
    fx.cellpose_seg_npy(tmp_path / "data/out/a_seg.npy", masks, "img/a.png")
    np.save(tmp_path / "data/out/b_seg.npy", {"masks": masks, "evil": _Boom()}, allow_pickle=True)
    src = _micro_source(tmp_path, {'kind': 'precomputed', 'format': 'cellpose', 'pattern': r'out/{id}_seg\.npy', 'label': 'nucleus'})
    out, quarantined, _ = _run(tmp_path, src)
    assert not (tmp_path / "PWNED").exists()
    assert out["rois"].rows.height == 3
    row = quarantined.row(0, named=True)
    assert (row["relpath"], row["stage"], row["reason"]) == ("img/b.png", "rois", "bad_annotation")
    assert "posix.system" in row["detail"] or "os.system" in row["detail"]
    assert "trust_code" in row["detail"]


def test_a_2d_output_of_another_size_is_refused_naming_both(tmp_path):
    masks = fx.cells()
    _image(tmp_path / "data/img/a.png", (masks.shape[0] + 4, masks.shape[1]))
    fx.cellpose_png(tmp_path / "data/out/a_cp_masks.png", masks)
    src = _micro_source(tmp_path, {'kind': 'precomputed', 'format': 'cellpose', 'pattern': r'out/{id}_cp_masks\.png'})
    out, quarantined, _ = _run(tmp_path, src)
    row = quarantined.row(0, named=True)
    assert row["reason"] == "bad_annotation" and "128x96" in row["detail"] and "128x100" in row["detail"] and "out/a_cp_masks.png" in row["detail"]


# --- HoVer-Net -------------------------------------------------------------------------------------------

def test_hovernet_json_nuclei_are_rasterized_from_xy_contours_with_type_names_and_probabilities(tmp_path):
    shape = (64, 160)
    _image(tmp_path / "data/img/tile.png", shape, 200)
    nuclei = {1: fx.nucleus(120, 20, 6, 1, 0.92), 2: fx.nucleus(30, 40, 5, 2, 0.35), 5: fx.nucleus(80, 30, 5, 0, 0.99), 7: fx.nucleus(60, 50, 4, None, None)}
    fx.hovernet_json(tmp_path / "data/json/tile.json", nuclei)
    fx.type_info(tmp_path / "data/type_info.json")
    src = _micro_source(tmp_path, {'kind': 'precomputed', 'format': 'hovernet', 'pattern': r'json/{id}\.json', 'type_info': 'type_info.json', 'model_version': 'pannuke'}, modality="histopathology")
    out, quarantined, _ = _run(tmp_path, src)
    assert quarantined.is_empty(), quarantined.to_dicts()
    rois = {r["label"]: r for r in out["rois"].rows.iter_rows(named=True)}
    assert set(rois) == {"neopla", "inflam", "nucleus"}  # type 0 (nolabe) is no ROI; a null type is a nucleus
    neo = rois["neopla"]
    assert neo["centroid_x"] == pytest.approx(120, abs=1) and neo["centroid_y"] == pytest.approx(20, abs=1)  # x/y, not row/column
    assert neo["confidence"] == pytest.approx(0.92) and not neo["low_confidence"]
    assert rois["inflam"]["low_confidence"] and rois["nucleus"]["confidence"] is None
    kept = dataset_rois(out["rois"].rows, src)
    assert set(kept["label"]) == {"neopla", "nucleus"}
    assert set(dataset_rois(out["rois"].rows, src.model_copy(update={"include_low_confidence": True}))["label"]) == {"neopla", "inflam", "nucleus"}
    from medtrinity_core.knowledge.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    assert vocabulary.lookup("neopla").term == "neoplastic cells" and vocabulary.lookup("no-neo").term == "epithelial cells"


def test_hovernet_json_without_nuc_or_with_an_unnamed_type_is_a_specific_refusal(tmp_path):
    shape = (40, 40)
    for name in ("a", "b"):
        _image(tmp_path / f"data/img/{name}.png", shape)
    (tmp_path / "data/json").mkdir(parents=True)
    (tmp_path / "data/json/a.json").write_text('{"mag": 40, "nuclei": {}}')
    fx.hovernet_json(tmp_path / "data/json/b.json", {1: fx.nucleus(20, 20, 4, 9, 0.8)})
    src = _micro_source(tmp_path, {'kind': 'precomputed', 'format': 'hovernet', 'pattern': r'json/{id}\.json', 'labels': {1: 'neopla'}}, modality="histopathology")
    _, quarantined, _ = _run(tmp_path, src)
    details = dict(zip(quarantined["relpath"], quarantined["detail"]))
    assert set(quarantined["reason"]) == {"bad_annotation"}
    assert "no `nuc` mapping" in details["img/a.png"] and "nuclei" in details["img/a.png"]
    assert "type 9" in details["img/b.png"]


# --- CheXmask ---------------------------------------------------------------------------------------------

def _cxr_source(tmp_path, expert: dict, **extra):
    return _source(tmp_path, {"name": "cxr", "modality": "xray", "license": "CC0-1.0", "root": "data", "layout": "labeled_images",
                              "images": r"img/(?P<id>[^/]+)\.png", "expert": expert, **extra})


def test_chexmask_rle_rows_give_both_lungs_on_the_patients_sides_with_the_rca_dice_as_confidence(tmp_path):
    image, masks = fx.chest()
    (tmp_path / "data/img").mkdir(parents=True)
    Image.fromarray(image).save(tmp_path / "data/img/p1_frontal.png")
    image[0, 0] = 0  # another film (exact duplicates are measured once)
    Image.fromarray(image).save(tmp_path / "data/img/p2_frontal.png")
    fx.chexmask_csv(tmp_path / "data/chexmask.csv.gz", [{"id": "p1_frontal.png", **masks, "dice_mean": 0.87},
                                                          {"id": "p2_frontal", **masks, "dice_mean": 0.41}], id_column="Image Index")
    src = _cxr_source(tmp_path, {"kind": "precomputed", "format": "chexmask", "file": "chexmask.csv.gz", "id_column": "Image Index"},
                      orientation="chest_pa", near_distance=0)
    out, quarantined, _ = _run(tmp_path, src)
    assert quarantined.is_empty(), quarantined.to_dicts()
    rois = out["rois"].rows
    first = {r["label"]: r for r in rois.filter(pl.col("image_id") == out["normalized"].rows.sort("relpath")["image_id"][0]).iter_rows(named=True)}
    assert set(first) == {"left lung", "right lung", "heart"}
    assert "patient's left" in first["left lung"]["location"] and "patient's right" in first["right lung"]["location"]
    assert first["left lung"]["area_px"] == int(masks["left"].sum()) and first["left lung"]["centroid_x"] > 50
    assert {r["confidence"] for r in first.values()} == {0.87} and set(rois["model_id"]) == {"CheXmask"}
    second = rois.filter(pl.col("confidence") == 0.41)
    assert second.height == 3 and second["low_confidence"].all()  # under min_confidence 0.5: flagged, kept out of the dataset
    assert dataset_rois(rois, src)["confidence"].to_list() == [0.87] * 3


def test_a_chexmask_csv_without_the_id_column_names_the_columns_it_has(tmp_path):
    image, masks = fx.chest()
    (tmp_path / "data/img").mkdir(parents=True)
    Image.fromarray(image).save(tmp_path / "data/img/p1.png")
    fx.chexmask_csv(tmp_path / "data/chexmask.csv.gz", [{"id": "p1.png", **masks, "dice_mean": 0.9}], id_column="dicom_id")
    src = _cxr_source(tmp_path, {"kind": "precomputed", "format": "chexmask", "file": "chexmask.csv.gz"})
    _, quarantined, _ = _run(tmp_path, src, end="raw")
    row = quarantined.row(0, named=True)
    assert row["reason"] == "bad_annotation" and "'Image ID'" in row["detail"] and "dicom_id" in row["detail"] and "id_column" in row["detail"]


# --- descriptions, configuration ---------------------------------------------------------------------

def test_descriptions_say_an_expert_model_found_the_region_never_that_it_was_annotated(tmp_path):
    masks = fx.cells(count=1)
    _image(tmp_path / "data/img/a.png", masks.shape)
    fx.cellpose_png(tmp_path / "data/out/a_cp_masks.png", masks)
    src = _micro_source(tmp_path, {'kind': 'precomputed', 'format': 'cellpose', 'pattern': r'out/{id}_cp_masks\.png', 'label': 'nucleus', 'model_version': 'cyto3'})
    out, _, _ = _run(tmp_path, src)
    image = out["normalized"].rows.row(0, named=True)
    rois = out["rois"].rows.to_dicts()
    caption = coarse_caption(src, image, rois)
    assert "found by the expert model Cellpose cyto3" in caption and "annotated" not in caption
    text = location_facet(image_facts(src, image, rois))
    assert "expert model Cellpose cyto3" in text and "annotated" not in text.replace("not annotated by hand", "")


def test_precomputed_expert_settings_are_checked_per_format_with_file_and_line(tmp_path):
    (tmp_path / "data").mkdir()
    cases = [
        ("{kind: precomputed, format: label_map, pattern: 'x/{id}'}", "labels"),
        ("{kind: precomputed, format: chexmask}", "file"),
        ("{kind: precomputed, format: cellpose, pattern: 'x/{id}', id_column: Path}", "id_column"),
        ("{kind: precomputed, format: totalsegmentator, pattern: 'x/{id}'}", "format"),
        ("{kind: precomputed, format: sat, pattern: 'x/{id}'}", "format"),
        ("{kind: precomputed, format: cellpose, pattern: 'x/{nope}'}", "pattern"),
        ("{kind: precomputed, format: cellpose, pattern: 'x/{id}', min_confidence: 1.5}", "min_confidence"),
    ]
    for expert, key in cases:
        with pytest.raises(SourcesFileError) as err:
            _source(tmp_path, f"""\
                - name: cells
                  modality: microscopy
                  license: CC0-1.0
                  root: data
                  layout: labeled_images
                  images: 'img/(?P<id>[^/]+)\\.png'
                  expert: {expert}
                """)
        assert f"expert.{key}" in str(err.value) and ":9:" in str(err.value), (expert, str(err.value))


def test_the_resolved_document_writes_a_precomputed_expert_that_loads_back_equal(tmp_path):
    import yaml

    from medtrinity_core.config import resolved_document

    ct, structures = fx.ct_case()
    fx.write_nifti(tmp_path / "data/img/case1.nii.gz", ct, fx.ras_affine())
    src = _ct_source(tmp_path, {'kind': 'precomputed', 'format': 'totalsegmentator', 'pattern': 'seg/{id}', 'model_version': '2.4.0', 'min_confidence': 0.7})
    doc = resolved_document(load_sources(tmp_path / "sources.yaml"))
    assert doc["sources"][0]["expert"] == {"kind": "precomputed", "format": "totalsegmentator", "pattern": "seg/{id}",
                                           "model_version": "2.4.0", "min_confidence": 0.7, "trust_code": False}
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(doc))
    assert load_sources(again).sources[0].expert == src.expert


def test_the_seg_npy_allow_list_reads_numpy_arrays_and_refuses_other_globals(tmp_path):
    from medtrinity_core.errors import ItemError
    from medtrinity_core.roi.precomputed import read_seg_npy

    good = fx.cellpose_seg_npy(tmp_path / "a_seg.npy", fx.cells(), "a.png")
    data = read_seg_npy(good, "a_seg.npy", trust_code=False)
    assert data["masks"].dtype == np.uint16 and int(data["masks"].max()) == 3 and data["est_diam"] == 30.0
    bad = tmp_path / "b_seg.npy"
    np.save(bad, {"masks": fx.cells(), "x": pickle.loads(pickle.dumps(slice(1)))}, allow_pickle=True)
    assert read_seg_npy(bad, "b_seg.npy", trust_code=False)["x"] == slice(1)
    worse = tmp_path / "c_seg.npy"
    np.save(worse, {"masks": fx.cells(), "evil": _Boom()}, allow_pickle=True)
    with pytest.raises(ItemError) as err:
        read_seg_npy(worse, "c_seg.npy", trust_code=False)
    assert err.value.reason == "bad_annotation"


def test_normalized_manifests_record_the_2d_output_that_rois_read(tmp_path):
    masks = fx.cells()
    _image(tmp_path / "data/img/a.png", masks.shape)
    fx.cellpose_png(tmp_path / "data/out/a_cp_masks.png", masks)
    src = _micro_source(tmp_path, {'kind': 'precomputed', 'format': 'cellpose', 'pattern': r'out/{id}_cp_masks\.png'})
    out, _, wd = _run(tmp_path, src, end="normalized")
    manifest = read_parquet(wd.manifest_path(src.name, "normalized", min(update_plan(wd, src))))
    assert manifest["expert_output"].to_list() == ["out/a_cp_masks.png"] and manifest["masks"].to_list() == [[]]


def test_tool_files_that_are_subtly_wrong_get_a_reason_and_never_stop_the_shard(tmp_path):
    """A --ml value its table does not name, a ragged CheXmask CSV, HoVer-Net ids far apart, a fractional type."""
    ct, structures = fx.ct_case()
    affine = fx.ras_affine()
    fx.write_nifti(tmp_path / "data/img/case1.nii.gz", ct, affine)
    fx.write_nifti(tmp_path / "data/seg/case1.nii.gz", (structures["liver"] * 5).astype(np.uint8), affine, fx.caret_xml({1: "liver"}))
    src = _ct_source(tmp_path, {"kind": "precomputed", "format": "totalsegmentator", "pattern": r"seg/{id}\.nii\.gz"})
    _, quarantined, _ = _run(tmp_path, src)
    row = quarantined.row(0, named=True)
    assert row["reason"] == "bad_annotation" and "label values 5" in row["detail"]

    other = tmp_path / "cxr"
    image, masks = fx.chest()
    (other / "data/img").mkdir(parents=True)
    Image.fromarray(image).save(other / "data/img/p1.png")
    (other / "data/chexmask.csv").write_text('Image ID,Height\np1.png,"80\nx,1,2,3\n')
    src = _cxr_source(other, {"kind": "precomputed", "format": "chexmask", "file": "chexmask.csv"})
    _, quarantined, _ = _run(other, src, end="raw")
    assert quarantined["reason"].to_list() == ["bad_annotation"] and "cannot be read as a CheXmask CSV" in quarantined["detail"][0]

    hv = tmp_path / "hv"
    _image(hv / "data/img/a.png", (40, 60))
    _image(hv / "data/img/b.png", (40, 60))
    fx.hovernet_json(hv / "data/json/a.json", {3: fx.nucleus(15, 15, 5, 1, 0.9), 2_000_000_000: fx.nucleus(40, 20, 5, 1, 0.8)})
    fx.hovernet_json(hv / "data/json/b.json", {1: fx.nucleus(15, 15, 5, 1.5, 0.9)})
    src = _micro_source(hv, {"kind": "precomputed", "format": "hovernet", "pattern": r"json/{id}\.json", "labels": {1: "neopla"}}, modality="histopathology")
    out, quarantined, _ = _run(hv, src)
    assert out["rois"].rows.height == 2  # two nuclei, whatever their ids
    assert quarantined["relpath"].to_list() == ["img/b.png"] and "whole number" in quarantined["detail"][0]
