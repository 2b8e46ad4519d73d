"""The sources file, discovery and shard plans."""

from __future__ import annotations

import os
import shutil
import textwrap

import pytest

from medtrinity_core.config import load_sources
from medtrinity_core.errors import SourcesFileError
from medtrinity_core.sources.discover import discover, fill_template, list_files
from medtrinity_core.sources.inventory import inventory, shard_items
from medtrinity_core.sources.shards import (
    extend_plan,
    planned_shard,
    read_plan,
    update_plan,
)
from medtrinity_core.storage import Workdir

from .conftest import EXAMPLES

GOOD = """\
version: 1
sources:
  - name: demo
    modality: ct
    body_region: abdomen
    license: CC-BY-4.0
    root: data
    layout: image_masks
    images: 'images/(?P<id>[^/]+)\\.png'
    masks:
      - pattern: 'masks/{id}_(?P<label>[a-z_]+)\\.png'
        label_words: {"_": " "}
"""


def write(tmp_path, text: str):
    (tmp_path / "data" / "images").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "masks").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    return path


def test_examples_cover_all_ten_modalities_and_every_layout():
    sources = load_sources(EXAMPLES / "sources.yaml")
    assert {s.modality for s in sources.sources} == {"ct", "mri", "xray", "ultrasound", "dermoscopy", "endoscopy", "fundus", "histopathology", "pet", "microscopy"}
    assert {s.layout for s in sources.sources} >= {"image_masks", "volume_labels", "labeled_images"}
    assert [(c.name, c.format) for c in sources.corpora] == [("medquad-subset", "medquad")]
    ct = sources.source("sam-med2d-ct")
    assert ct.window == "abdomen" and ct.root == (EXAMPLES / "ct" / "sam_med2d").resolve()


@pytest.mark.parametrize(
    "old,new,line,key,words",
    [
        ("modality: ct", "modality: cat-scan", 4, "sources[0].modality", "not one of"),
        ("license: CC-BY-4.0", "license: 'free for all'", 6, "sources[0].license", "SPDX"),
        ("    root: data\n", "    root: data\n    colour: blue\n", 8, "sources[0].colour", "unknown key"),
        ("layout: image_masks", "layout: folders", 8, "sources[0].layout", "not one of"),
        ("root: data", "root: nowhere", 7, "sources[0].root", "does not exist"),
        ("images: 'images/(?P<id>[^/]+)\\.png'", "images: 'images/(unclosed'", 9, "sources[0].images", "regular expression"),
        ("    root: data\n", "    root: data\n    shard_size: 0\n", 8, "sources[0].shard_size", "at least 1"),
        ("    root: data\n", "    root: data\n    max_side: 0\n", 8, "sources[0].max_side", "at least 16"),
        ("    root: data\n", "    root: data\n    modality: mri\n", 8, "modality", "duplicate key (first at line 4)"),
        ("masks/{id}_", "masks/{case}_", 11, "sources[0].masks[0].pattern", "uses {case}, which is not a named group of `images` (named groups: id)"),
        ("    root: data\n", "    root: data\n    labels_csv: {file: ../labels.csv, image_column: a, label_column: b}\n", 8,
         "sources[0].labels_csv.file", "resolves outside the source root"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path, old, new, line, key, words):
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(SourcesFileError) as err:
        load_sources(path)
    assert err.value.line == line and err.value.key == key
    assert words in str(err.value) and str(err.value).startswith(f"{path}:{line}: {key}:")


def test_missing_required_key_and_unsafe_yaml(tmp_path):
    path = write(tmp_path, GOOD.replace("    modality: ct\n", ""))
    with pytest.raises(SourcesFileError, match=r"sources\[0\]\.modality: is required"):
        load_sources(path)
    path.write_text("version: 1\nsources: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(SourcesFileError, match="yaml"):
        load_sources(path)


def test_mask_templates_escape_the_image_fields():
    assert fill_template("masks/{id}_x\\.png", {"id": "a.b+c"}) == "masks/a\\.b\\+c_x\\.png"
    assert fill_template("{id}/masks/[0-9]{{3}}\\.png", {"id": "ab"}) == "ab/masks/[0-9]{3}\\.png"


def test_discovery_pairs_masks_and_labels_from_file_names():
    src = load_sources(EXAMPLES / "sources.yaml").source("sam-med2d-ct")
    items, rejected = discover(src)
    assert rejected == [] and len(items) == 4
    s0114 = next(i for i in items if "s0114_111" in i.relpath)
    labels = [a.label for a in s0114.annotations]
    assert len(labels) == 15 and "vertebrae T9" in labels and "rib left 9" in labels
    s0619 = next(i for i in items if "s0619_32" in i.relpath)
    assert [a.label for a in s0619.annotations].count("hip left") == 2  # two instance files, one label


def test_jpeg_masks_default_to_threshold_128(tmp_path):
    src = load_sources(EXAMPLES / "sources.yaml").source("kvasir-seg")
    items, _ = discover(src)
    assert {a.threshold for i in items for a in i.annotations} == {128}


def test_symlink_outside_root_is_rejected_not_followed(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(tmp_path / "secret.png", root / "leak.png")
    (root / "ok.png").write_bytes(b"y")
    files, rejected = list_files(root)
    assert files == ["ok.png"]
    assert [(r.relpath, r.reason) for r in rejected] == [("leak.png", "outside_root")]


def test_shard_plans_are_stable_when_files_arrive():
    plan = extend_plan({}, ["c", "a", "b"], shard_size=2)
    assert plan == {"base-0000": ["a", "b"], "base-0001": ["c"]}
    grown = extend_plan(plan, ["a", "b", "c", "d", "0"], shard_size=2)
    assert grown["base-0000"] == ["a", "b"] and grown["base-0001"] == ["c"]
    assert grown["base-0002"] == ["0", "d"]


def test_inventory_hashes_and_quarantines_missing_and_empty_files(tmp_path):
    src = load_sources(EXAMPLES / "sources.yaml").source("busi")
    shutil.copytree(src.root, tmp_path / "busi")
    (tmp_path / "busi" / "benign_9.png").write_bytes((src.root / "benign_1.png").read_bytes())
    src = src.model_copy(update={"root": tmp_path / "busi"})
    wd = Workdir.at(tmp_path / "wd")
    plan = update_plan(wd, src)
    assert read_plan(wd, "busi") == plan and "benign_9.png" in plan["base-0000"]
    (tmp_path / "busi" / "benign_9.png").unlink()  # deleted after planning
    items, missing = shard_items(src, planned_shard(wd, "busi", "base-0000"))
    assert [(m["relpath"], m["reason"]) for m in missing] == [("benign_9.png", "missing")]
    df, q = inventory(src, items)
    assert df.height == 3 and q.height == 0
    row = df.filter(df["relpath"] == "benign_1.png").row(0, named=True)
    assert row["labels"] == ["benign"] and row["license"] == "CC0-1.0" and row["size_bytes"] == 55251
    import hashlib

    assert row["sha256"] == hashlib.sha256((src.root / "benign_1.png").read_bytes()).hexdigest()


def test_a_shard_plan_is_a_parquet_file_holding_each_items_annotations(tmp_path):
    src = load_sources(EXAMPLES / "sources.yaml").source("kvasir-seg")
    wd = Workdir.at(tmp_path)
    plan = update_plan(wd, src)
    entries = planned_shard(wd, src.name, "base-0000")
    assert (wd.plans / src.name / "base-0000.parquet").exists()
    assert sorted(entries["relpath"].to_list()) == sorted(plan["base-0000"])
    items, _ = discover(src)
    by_path = {r["relpath"]: r for r in entries.iter_rows(named=True)}
    for item in items:
        assert [a["relpath"] for a in by_path[item.relpath]["annotations"]] == [a.relpath for a in item.annotations]
        assert by_path[item.relpath]["kind"] == item.kind and by_path[item.relpath]["reason"] is None


def test_a_raw_partition_reads_its_own_shard_and_never_discovers_the_source(tmp_path, monkeypatch):
    import medtrinity_core.sources.discover as discover_module
    from medtrinity_core.sources.inventory import raw_stage

    src = load_sources(EXAMPLES / "sources.yaml").source("kvasir-seg")
    wd = Workdir.at(tmp_path)
    update_plan(wd, src)
    monkeypatch.setattr(discover_module, "discover", lambda *a: pytest.fail("the raw stage ran discovery"))
    monkeypatch.setattr(discover_module, "list_files", lambda *a: pytest.fail("the raw stage listed the source"))
    df, q = raw_stage(src, planned_shard(wd, src.name, "base-0000"), wd)
    assert df.height == 3 and q.height == 0 and all(len(a) == 1 for a in df["annotations"].to_list())


def test_mask_templates_pair_by_their_plain_prefix_and_other_templates_by_a_scan():
    from medtrinity_core.sources.discover import TemplateFiles

    files = ["images/a_b.png", "masks/a_b.png", "masks/a_b_liver_000.png", "masks/a.png", "masks/ab.png", "masks/a_b_x.png"]
    one = TemplateFiles(r"masks/{id}\.png", files)
    assert one.prefix == "masks/" and [rel for rel, _ in one.matches({"id": "a_b"})] == ["masks/a_b.png"]
    assert [rel for rel, _ in one.matches({"id": "a"})] == ["masks/a.png"]
    labelled = TemplateFiles(r"masks/{id}_(?P<label>[a-z_]+?)_\d{{3}}\.png", files)  # the label group may hold '_'
    assert [m.group("label") for _, m in labelled.matches({"id": "a_b"})] == ["liver"]
    assert [m.group("label") for _, m in labelled.matches({"id": "a"})] == ["b_liver"]  # as the scan found it
    scanned = TemplateFiles(r"(masks|labels)/{id}_x\.png", files)  # a regex before the field: every file is scanned
    assert scanned.prefix is None and [rel for rel, _ in scanned.matches({"id": "a_b"})] == ["masks/a_b_x.png"]


def test_zero_byte_file_is_quarantined(tmp_path):
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "images" / "empty.png").write_bytes(b"")
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(GOOD.replace("layout: image_masks", "layout: labeled_images\n    label: x").split("    masks:")[0]))
    src = load_sources(path).sources[0]
    items, _ = discover(src)
    df, q = inventory(src, items)
    assert df.height == 0 and q["reason"].to_list() == ["empty_file"]
