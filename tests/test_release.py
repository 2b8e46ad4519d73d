"""Exports read back by each format's own ecosystem, splits by patient, licence groups, checksums and
verify, the dataset card and its Croissant file, and the decontamination list builder."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.release.checksums import verify
from medtrinity_core.release.collect import Filters, collect
from medtrinity_core.release.export import export
from medtrinity_core.release.licenses import allowed, group_of, obligations
from medtrinity_core.release.splits import parse_fractions, split_key, split_of
from medtrinity_core.roi.rle import decode
from medtrinity_core.storage import read_parquet

from .conftest import REPO


@pytest.fixture(scope="module")
def exported(pipeline, tmp_path_factory):
    """The tiny source's triplets exported once in every format."""
    base = tmp_path_factory.mktemp("exports")
    out = {}
    for fmt in ("hf", "medtrinity", "webdataset", "llava", "coco"):
        out[fmt] = base / fmt
        export(pipeline["workdir"], pipeline["sources"], out[fmt], fmt, Filters())
    return out


def stored(pipeline):
    """triplet id -> (the normalized image PNG's pixels, {label: the stored mask PNG})"""
    wd, src, shard = pipeline["workdir"], pipeline["source"], pipeline["shard"]
    triplets = read_parquet(wd.manifest_path(src.name, "triplets", shard))
    images = {r["image_id"]: r for r in read_parquet(wd.manifest_path(src.name, "normalized", shard)).iter_rows(named=True)}
    out = {}
    for t in triplets.iter_rows(named=True):
        image = images[t["image_id"]]
        with Image.open(wd.resolve(image["image_uri"])) as img:
            pixels = np.asarray(img)
        masks = {}
        for m in image["masks"]:
            with Image.open(wd.resolve(m["uri"])) as mask:
                masks[m["label"]] = np.asarray(mask) > 0
        out[t["triplet_id"]] = (pixels, masks)
    return out


def test_hf_parquet_loads_with_datasets_and_decodes_to_the_stored_pngs(exported, pipeline):
    from datasets import load_dataset

    files = sorted(str(p) for p in (exported["hf"] / "data").glob("*.parquet"))
    ds = load_dataset("parquet", data_files=files, split="train")
    assert len(ds) == 3 and set(ds.column_names) >= {"id", "image", "caption", "rois", "facets", "faithfulness", "split", "license", "provenance", "passage_ids"}
    truth = stored(pipeline)
    for row in ds:
        pixels, masks = truth[row["id"]]
        assert np.array_equal(np.asarray(row["image"]), pixels)  # decoded by datasets' Image feature
        union = np.zeros(pixels.shape[:2], bool)
        for roi in row["rois"]:
            mask = decode(roi["mask"]["counts"], *roi["mask"]["size"])
            assert mask.shape == pixels.shape[:2] and roi["mask"]["size"] == [row["height"], row["width"]]
            union |= mask
        assert not (union & ~masks["polyp"]).any() and union.sum() >= 0.99 * masks["polyp"].sum()  # the ROIs are the stored mask's components
        assert json.loads(row["provenance"])["source"] == "tiny-kvasir" and row["license"] == "LicenseRef-research-only"


def test_medtrinity_rows_have_the_released_shape(exported):
    from datasets import load_dataset

    ds = load_dataset("parquet", data_files=sorted(str(p) for p in (exported["medtrinity"] / "data").glob("*.parquet")), split="train")
    assert ds.column_names[:3] == ["id", "image", "caption"] and "rois" in ds.column_names
    assert ds[0]["image"].size[0] > 0 and "endoscopy" in ds[0]["caption"]


def test_webdataset_shards_read_back_with_webdataset_and_carry_masks(exported):
    import webdataset as wds

    tars = sorted(str(p) for p in exported["webdataset"].glob("*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False).decode("pil"))
    assert len(samples) == 3
    for sample in samples:
        meta = sample["json"]
        assert sample["png"].size == (meta["width"], meta["height"])
        masks = [k for k in sample if k.startswith("mask_")]
        assert len(masks) == len(meta["rois"]) >= 1
        assert np.array_equal(np.asarray(sample["mask_0.png"].convert("L")) > 0, decode(meta["rois"][0]["mask"]["counts"], meta["height"], meta["width"]))
    with tarfile.open(tars[0]) as tar:
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in tar.getmembers())


def test_llava_conversations_point_at_images_and_answer_from_the_facts(exported, pipeline):
    wd, src, shard = pipeline["workdir"], pipeline["source"], pipeline["shard"]
    rois = read_parquet(wd.manifest_path(src.name, "rois", shard))
    records = [r for f in sorted((exported["llava"] / "llava").glob("*.json")) for r in json.loads(f.read_text())]
    assert len(records) == 3
    for rec in records:
        assert (exported["llava"] / "llava" / rec["image"]).is_file()
        turns = rec["conversations"]
        assert turns[0]["value"].startswith("<image>\n") and turns[1]["from"] == "gpt"
        qa = {turns[i]["value"]: turns[i + 1]["value"] for i in range(2, len(turns), 2)}
        image_id = Path(rec["image"]).stem
        mine = rois.filter(rois["image_id"] == image_id).sort(["area_px", "roi_id"], descending=[True, False]).to_dicts()
        top = mine[0]
        assert qa["Where is the polyp?"] == f"In the {top['location']}."
        assert qa["How many polyp regions are there?"] == f"{len(mine)}."
        box = json.loads(qa["Give the bounding box of the largest polyp region as [x0, y0, x1, y1] in 0-1."])
        assert box == [round(top["x0"] / top["img_w"], 3), round(top["y0"] / top["img_h"], 3), round(top["x1"] / top["img_w"], 3), round(top["y1"] / top["img_h"], 3)]
        assert f"{100 * top['area_ratio']:.1f}% of the image" in qa["How large is the polyp?"]


def test_coco_instances_read_back_with_pycocotools(exported):
    from pycocotools.coco import COCO

    for path in sorted((exported["coco"] / "coco").glob("*.json")):
        coco = COCO(str(path))
        for ann in coco.loadAnns(coco.getAnnIds()):
            img = coco.loadImgs(ann["image_id"])[0]
            assert (exported["coco"] / "coco" / img["file_name"]).is_file()
            assert np.array_equal(coco.annToMask(ann).astype(bool), decode(ann["segmentation"]["counts"], img["height"], img["width"]))
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x + w <= img["width"] and y + h <= img["height"]


def test_an_export_of_unchanged_triplets_is_byte_identical(exported, pipeline, tmp_path):
    for fmt in ("hf", "webdataset"):
        again = tmp_path / fmt
        export(pipeline["workdir"], pipeline["sources"], again, fmt, Filters())
        assert (again / "SHA256SUMS").read_text() == (exported[fmt] / "SHA256SUMS").read_text()
    export(pipeline["workdir"], pipeline["sources"], again, "webdataset", Filters())  # an earlier export is replaced whole
    assert (again / "SHA256SUMS").read_text() == (exported["webdataset"] / "SHA256SUMS").read_text()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(MedtrinityError, match="is not empty and holds no export"):
        export(pipeline["workdir"], pipeline["sources"], tmp_path / "other", "hf", Filters())


def test_verify_names_a_corrupted_byte_and_a_deleted_file(exported, tmp_path):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(exported["llava"], damaged)
    assert verify(damaged) == []
    image = min((damaged / "llava" / "images").glob("*.png"))
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF
    image.write_bytes(bytes(data))
    (damaged / "plots" / "faithfulness.png").unlink()
    out = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "verify", str(damaged)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 1
    assert f"{image.relative_to(damaged)}: checksum mismatch" in out.stderr and "plots/faithfulness.png: listed in SHA256SUMS but missing" in out.stderr


def test_the_card_has_its_header_plots_and_a_croissant_file_mlcroissant_loads(exported):
    import mlcroissant as mlc

    card = (exported["hf"] / "README.md").read_text()
    assert card.startswith("---\nlicense: ") and "task_categories:" in card and "  - split: " in card and "size_categories:" in card
    for section in ("## Intended use and known limitations", "## Sources", "| tiny-kvasir | endoscopy | LicenseRef-research-only |", "## Counts",
                    "| colonic polyp | 4 |", "## Plots", "![faithfulness](plots/faithfulness.png)", "![completeness](plots/completeness.png)", "## Versions",
                    "- prompt: grounded-v5", "## Faithfulness", "contradictions in the exported rows, by type: none"):
        assert section in card, section
    for plot in ("modality", "roi_area_ratio", "description_length", "faithfulness", "completeness"):
        with Image.open(exported["hf"] / "plots" / f"{plot}.png") as img:
            assert img.width >= 400 and "Software" not in img.info
    records = list(mlc.Dataset(jsonld=str(exported["hf"] / "croissant.json")).records("records"))
    assert len(records) == 3 and {r["records/source"] for r in records} == {b"tiny-kvasir"}
    summary = json.loads((exported["hf"] / "export.json").read_text())
    assert sum(summary["counts"]["split"].values()) == 3 and summary["counts"]["roi_method"] == {"ground_truth_mask": 4}


def test_licence_groups_and_filters(pipeline):
    assert [group_of(x) for x in ("CC0-1.0", "CC-BY-SA-4.0", "BSD-3-Clause", "CC-BY-NC-4.0", "LicenseRef-research-only")] == [
        "commercial", "commercial", "commercial", "noncommercial", "other"]
    assert allowed("CC-BY-NC-4.0", "noncommercial") and not allowed("CC-BY-NC-4.0", "commercial") and allowed("LicenseRef-x", "all")
    assert obligations("CC-BY-NC-SA-4.0") == ["attribution", "share-alike", "non-commercial use only"] and obligations("CC0-1.0") == ["none (public domain dedication)"]
    names = [s.name for s in pipeline["sources"].sources]
    with pytest.raises(MedtrinityError, match=r"no triplets to export .*licence group commercial"):
        collect(pipeline["workdir"], names, Filters(license_group="commercial"))  # research-only rows stay out
    assert len(collect(pipeline["workdir"], names, Filters(min_faithfulness=0.99)).rows) == 3
    with pytest.raises(MedtrinityError, match="--source nope is not a source"):
        collect(pipeline["workdir"], names, Filters(sources=("nope",)))


def test_splits_keep_a_patient_whole_and_never_move_an_item():
    rows = [{"patient_key": f"p{n % 40}", "source": "s", "item_id": f"i{n}"} for n in range(400)]
    by_patient: dict[str, set] = {}
    for row in rows:
        by_patient.setdefault(row["patient_key"], set()).add(split_of(split_key(row)))
    assert all(len(s) == 1 for s in by_patient.values())  # no patient spans two splits
    items = [{"patient_key": None, "source": "s", "item_id": f"i{n}"} for n in range(2000)]
    before = [split_of(split_key(r)) for r in items[:1000]]
    assert [split_of(split_key(r)) for r in items][:1000] == before  # adding items moves none
    shares = {s: sum(split_of(split_key(r)) == s for r in items) / len(items) for s in ("train", "validation", "test")}
    assert abs(shares["train"] - 0.8) < 0.04 and abs(shares["test"] - 0.1) < 0.03
    assert parse_fractions("train=0.9,test=0.1") == (("train", 0.9), ("test", 0.1))
    with pytest.raises(ValueError, match="sum to 1"):
        parse_fractions("train=0.9,test=0.2")


def test_decontam_build_hashes_images_as_the_normalized_stage_does(pipeline, tmp_path):
    wd, src, shard = pipeline["workdir"], pipeline["source"], pipeline["shard"]
    images = src.root / "images"
    out = tmp_path / "bench.txt"
    run = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "decontam", "build", "--images", str(images), "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=REPO, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{out}: 4 benchmark image(s) hashed; 1 file(s) could not be read")  # three good images, the planted mismatch, one broken
    hashes = {line.split()[0] for line in out.read_text().splitlines() if not line.startswith("#")}
    normalized = read_parquet(wd.manifest_path(src.name, "normalized", shard))
    assert set(normalized["pixel_sha256"].to_list()) <= hashes and set(normalized["phash"].to_list()) <= hashes


def test_the_exports_asset_writes_the_configured_formats_with_the_cards_figures_as_metadata(pipeline, tmp_path):
    import dagster as dg

    from medtrinity_dagster.build import build_definitions

    defs = build_definitions(pipeline["sources"], str(pipeline["workdir"].root))
    graph = defs.resolve_asset_graph()
    assert dg.AssetKey(["tiny-kvasir", "triplets"]) in graph.get(dg.AssetKey("exports")).parent_keys
    result = dg.materialize([*defs.assets], resources=defs.resources, instance=pipeline["instance"], selection=[dg.AssetKey("exports")],
                            run_config={"ops": {"exports": {"config": {"formats": ["hf", "coco"], "out": str(tmp_path)}}}})
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows"].value == 3 and meta["count_modality"].value == {"endoscopy": 3}
    assert meta["plot_faithfulness"].value.startswith("**faithfulness**") and "data:image/png;base64," in meta["plot_faithfulness"].value
    assert verify(tmp_path / "hf") == [] and verify(tmp_path / "coco") == []
