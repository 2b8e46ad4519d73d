"""The `medtrinity` command line, run as a user runs it (a subprocess) on sources files in temp folders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from medtrinity_core.storage import read_parquet

from .conftest import REPO, write_tiny_source


def medtrinity(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MEDTRINITY_SALT": "cli-test-salt"}
    return subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", *args], cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def clean_source(tmp_path_factory) -> Path:
    """The tiny source without its planted bad files."""
    sources = write_tiny_source(tmp_path_factory.mktemp("clean"))
    for name in ("images/broken.jpg", "masks/broken.jpg", "images/mismatch.jpg", "masks/mismatch.jpg"):
        (sources.parent / "kvasir" / name).unlink()
    return sources


def test_validate_reports_ok_and_errors_with_file_line_key(tmp_path, tiny_sources):
    ok = medtrinity("sources", "validate", str(tiny_sources))
    assert ok.returncode == 0 and "OK: 1 sources: tiny-kvasir (endoscopy, image_masks)" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_sources.read_text().replace("modality: endoscopy", "modality: colonoscopy"))
    out = medtrinity("sources", "validate", str(bad))
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {bad}:10: sources[0].modality: 'colonoscopy' is not one of ct, mri, xray, ultrasound, dermoscopy, endoscopy, fundus, histopathology, pet, microscopy"
    missing = medtrinity("sources", "validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "cannot be read" in missing.stderr


def test_run_writes_triplets_and_is_reproducible(tmp_path, clean_source):
    workdir = tmp_path / "wd"
    first = medtrinity("run", "--workdir", str(workdir), "--sources", str(clean_source))
    assert first.returncode == 0, first.stderr
    assert re.search(r"tiny-kvasir\s+endoscopy\s+3\s+3\s+\d+\s+3\s+0", first.stdout), first.stdout
    path = workdir / "manifests" / "tiny-kvasir" / "triplets" / "base-0000.parquet"
    triplets = read_parquet(path)
    assert triplets.height == 3 and triplets["triplet_id"].n_unique() == 3
    assert all("endoscopy" in d and "colon" in d for d in triplets["description"].to_list())
    before = path.read_bytes()
    second = medtrinity("run", "--workdir", str(workdir), "--sources", str(clean_source), "--select", "normalized", "rois", "context", "descriptions", "triplets")
    assert second.returncode == 0, second.stderr
    assert path.read_bytes() == before  # same ids, byte-identical rows
    assert (workdir / "dagster" / "dagster.yaml").exists()
    import dagster as dg

    with dg.DagsterInstance.from_config(str(workdir / "dagster")) as instance:
        runs = instance.fetch_materializations(dg.AssetKey(["tiny-kvasir", "descriptions"]), limit=2).records
        assert [r.asset_materialization.metadata["generated"].value for r in runs] == [0, 3]  # the second run generated nothing
        assert runs[0].asset_materialization.metadata["cached"].value == 3

    tid = triplets.sort("triplet_id")["triplet_id"][0]
    lineage = medtrinity("lineage", tid, "--workdir", str(workdir))
    assert lineage.returncode == 0, lineage.stderr
    stages = re.findall(r"<- (\w+)", lineage.stdout)
    assert stages == ["triplets", "descriptions", "context", "rois", "normalized", "raw", "source"]
    relpath = triplets.filter(pl.col("triplet_id") == tid)["provenance"].struct.field("source_relpath")[0]
    assert f"source file {clean_source.parent / 'kvasir' / relpath}" in lineage.stdout
    assert len(re.findall(r"dagster run [0-9a-f]{8}-[0-9a-f]{4}-", lineage.stdout)) == 6

    image_id = triplets.filter(pl.col("triplet_id") == tid)["image_id"][0]
    out_png = tmp_path / "preview.png"
    preview = medtrinity("preview", image_id, "--out", str(out_png), "--workdir", str(workdir))
    assert preview.returncode == 0, preview.stderr
    assert "ROI(s): polyp" in preview.stdout
    from PIL import Image

    with Image.open(out_png) as img:
        assert img.mode == "RGB" and img.size == (triplets.filter(pl.col("image_id") == image_id)["width"][0], triplets.filter(pl.col("image_id") == image_id)["height"][0])

    unknown = medtrinity("lineage", "trp-does-not-exist", "--workdir", str(workdir))
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: triplet trp-does-not-exist is not in the lineage index")


def test_run_exits_1_when_too_many_items_are_quarantined(tmp_path, tiny_sources):
    out = medtrinity("run", "--workdir", str(tmp_path / "wd"), "--sources", str(tiny_sources), "--no-progress")
    assert out.returncode == 1
    assert re.search(r"tiny-kvasir\s+endoscopy\s+5\s+3\s+\d+\s+3\s+2", out.stdout), out.stdout
    assert "error: tiny-kvasir: 2 of 5 items quarantined, more than max_quarantine_share 0.25" in out.stderr
    assert "Traceback" not in out.stderr
    q = pl.concat([read_parquet(p) for p in (tmp_path / "wd" / "quarantine" / "tiny-kvasir").glob("*/*.parquet")])
    assert sorted(q["reason"].to_list()) == ["mask_shape_mismatch", "not_an_image"]


def test_selecting_a_stage_without_its_upstream_is_one_clear_line(tmp_path, clean_source):
    out = medtrinity("run", "--workdir", str(tmp_path / "wd"), "--sources", str(clean_source), "--select", "rois")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "upstream manifest" in out.stderr and "tiny-kvasir/normalized" in out.stderr


def test_bad_usage_exits_2():
    out = medtrinity("run", "--select", "everything")
    assert out.returncode == 2


def test_a_source_that_matches_nothing_fails_the_run_and_warns_on_validate(tmp_path, clean_source):
    typo = clean_source.parent / "typo.yaml"
    typo.write_text(clean_source.read_text().replace("images: 'images/(?P<id>", "images: 'imgs/(?P<id>"))
    out = medtrinity("run", "--workdir", str(tmp_path / "wd"), "--sources", str(typo), "--no-progress", "--select", "raw")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "error: tiny-kvasir: `images` 'imgs/(?P<id>[^/]+)\\\\.jpg' matches none of the 6 files under" in out.stderr
    validate = medtrinity("sources", "validate", str(typo))
    assert validate.returncode == 0 and "warning: tiny-kvasir: `images`" in validate.stderr
    (tmp_path / "empty").mkdir()
    empty = clean_source.parent / "empty.yaml"
    empty.write_text(clean_source.read_text().replace("root: kvasir", f"root: {tmp_path / 'empty'}"))
    out = medtrinity("run", "--workdir", str(tmp_path / "wd2"), "--sources", str(empty), "--no-progress", "--select", "raw")
    assert out.returncode == 1 and f"error: tiny-kvasir: root {tmp_path / 'empty'} holds no files" in out.stderr


def test_review_writes_a_page_that_a_browser_renders_with_every_image(tmp_path, clean_source):
    """Opened in headless Chromium: one card per sampled image, each image loaded (non-zero natural width)."""
    import shutil

    workdir = tmp_path / "wd"
    assert medtrinity("run", "--workdir", str(workdir), "--sources", str(clean_source)).returncode == 0
    out = tmp_path / "review"
    review = medtrinity("review", "--sources", str(clean_source), "--source", "tiny-kvasir", "--sample", "2", "--out", str(out), "--workdir", str(workdir))
    assert review.returncode == 0, review.stderr
    assert review.stdout.strip() == f"{out / 'index.html'}: 2 image(s) of tiny-kvasir, flagged first"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: `make test` installs it (apt-get install chromium)"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--dump-dom", (out / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120, check=False).stdout
    cards = re.findall(r'<div class="card[^"]*" data-image-id="(img-[0-9a-f]+)"', dom)
    widths = re.findall(r'<img [^>]*data-natural-width="(\d+)"', dom)
    assert len(cards) == 2 and len(set(cards)) == 2
    assert len(widths) == 2 and all(int(w) > 0 for w in widths)
    assert "faithfulness 1.00 · completeness 1.00" in dom
    missing = medtrinity("review", "--sources", str(clean_source), "--source", "nope", "--out", str(out), "--workdir", str(workdir))
    assert missing.returncode == 1 and missing.stderr.strip() == f"error: {clean_source} has no source named nope"


def test_a_second_run_does_no_work_and_a_changed_setting_reruns_only_what_reads_it(tmp_path, clean_source):
    import dagster as dg

    second = ("  - name: tiny-two\n    modality: endoscopy\n    license: CC0-1.0\n    root: kvasir\n    layout: image_masks\n"
              "    images: 'images/(?P<id>[^/]+)\\.jpg'\n    masks:\n      - pattern: 'masks/{id}\\.jpg'\n        label: polyp\n        threshold: 128\n")
    two = clean_source.read_text() + second
    sources = clean_source.parent / "two-sources.yaml"
    sources.write_text(two)
    workdir = tmp_path / "wd"
    assert medtrinity("run", "--workdir", str(workdir), "--sources", str(sources)).returncode == 0

    def counts() -> dict:
        with dg.DagsterInstance.from_config(str(workdir / "dagster")) as instance:
            return {(s, stage): len(instance.fetch_materializations(dg.AssetKey([s, stage]), limit=100).records)
                    for s in ("tiny-kvasir", "tiny-two") for stage in ("raw", "normalized", "triplets")}

    before = counts()
    again = medtrinity("run", "--workdir", str(workdir), "--sources", str(sources))
    assert again.returncode == 0 and "skipped 3 partition(s) already up to date" in again.stdout  # two shards and the knowledge base
    assert counts() == before
    sources.write_text(two + "    max_side: 256\n")  # the second source's normalization changes
    changed = medtrinity("run", "--workdir", str(workdir), "--sources", str(sources))
    assert changed.returncode == 0, changed.stderr
    after = counts()
    delta = {k: after[k] - before[k] for k in after}
    assert delta == {("tiny-kvasir", "raw"): 0, ("tiny-kvasir", "normalized"): 0, ("tiny-kvasir", "triplets"): 0,
                     ("tiny-two", "raw"): 0, ("tiny-two", "normalized"): 1, ("tiny-two", "triplets"): 1}
    forced = medtrinity("run", "--workdir", str(workdir), "--sources", str(sources), "--source", "tiny-two", "--force")
    assert forced.returncode == 0 and counts()[("tiny-two", "raw")] == after[("tiny-two", "raw")] + 1


def test_new_files_fill_a_new_shard_and_only_that_shard_runs(tmp_path, clean_source):
    import shutil

    import dagster as dg
    import numpy as np
    from PIL import Image

    shutil.copytree(clean_source.parent, tmp_path / "src", ignore=shutil.ignore_patterns("*.yaml"))
    sources = tmp_path / "src" / "sources.yaml"
    sources.write_text(clean_source.read_text())
    workdir = tmp_path / "wd"
    assert medtrinity("run", "--workdir", str(workdir), "--sources", str(sources)).returncode == 0
    pixels = np.random.default_rng(3).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "src" / "kvasir" / "images" / "arrived.jpg")
    mask = np.zeros((96, 96), np.uint8)
    mask[30:60, 20:70] = 255
    Image.fromarray(mask).save(tmp_path / "src" / "kvasir" / "masks" / "arrived.jpg")
    with dg.DagsterInstance.from_config(str(workdir / "dagster")) as instance:
        first = instance.get_runs()
    grown = medtrinity("run", "--workdir", str(workdir), "--sources", str(sources))
    assert grown.returncode == 0, grown.stderr
    assert "skipped 2 partition(s) already up to date" in grown.stdout  # the first shard and the knowledge base
    with dg.DagsterInstance.from_config(str(workdir / "dagster")) as instance:
        new = [r for r in instance.get_runs() if r.run_id not in {f.run_id for f in first}]
        assert [r.tags.get("dagster/partition") for r in new] == ["base-0001"]
        for stage in ("raw", "normalized", "rois", "context", "descriptions", "triplets"):
            records = instance.fetch_materializations(dg.AssetKey(["tiny-kvasir", stage]), limit=10).records
            assert sorted(r.partition_key for r in records) == ["base-0000", "base-0001"], stage
    plan = (workdir / "plans" / "tiny-kvasir" / "base-0001.parquet")
    import polars as pl

    assert pl.read_parquet(plan)["relpath"].to_list() == ["images/arrived.jpg"]


def test_score_writes_each_caption_with_both_numbers_and_refuses_a_malformed_line_naming_file_and_line(tmp_path, tiny_sources):
    import json

    lines = [
        {"id": "ok", "facts": {"modality": "ct", "body_region": "abdomen", "labels": [{"label": "liver lesion", "count": 1, "side": "right", "size_class": "small"}]},
         "text": "small hypodense focus, right lobe of liver, on this axial CT of the abdomen", "model": "someone-else-v2"},
        {"id": "wrong side", "facts": {"modality": "xray", "body_region": "chest", "labels": [{"label": "pneumothorax", "side": "right", "size_class": "small"}]},
         "text": "CXR: small left-sided pneumothorax."},
    ]
    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    out = medtrinity("score", str(captions))
    assert out.returncode == 0, out.stderr
    first, second = [json.loads(line) for line in out.stdout.splitlines()]
    assert (first["id"], first["model"], first["faithfulness"], first["completeness"], first["accepted"]) == ("ok", "someone-else-v2", 1.0, 1.0, True)
    assert second["accepted"] is False and [(c["type"], c["claim"]) for c in second["contradictions"]] == [("side", "left-sided")]
    assert "2 scored, 1 accepted" in out.stderr and "contradictions: side 1" in out.stderr

    written = tmp_path / "scored.jsonl"
    lenient = tiny_sources.parent / "lenient.yaml"  # beside it: its root is relative
    lenient.write_text(tiny_sources.read_text() + "    faithfulness: {min_faithfulness: 0.5}\n")
    out = medtrinity("score", str(captions), "--out", str(written), "--sources", str(lenient), "--source", "tiny-kvasir")
    assert out.returncode == 0 and out.stdout == "" and [json.loads(line)["accepted"] for line in written.read_text().splitlines()] == [True, True]

    captions.write_text(json.dumps(lines[0]) + "\n" + json.dumps({"id": "x", "facts": {"modality": "cat", "labels": []}, "text": "t"}) + "\n")
    bad = medtrinity("score", str(captions), "--out", str(tmp_path / "never.jsonl"))
    assert bad.returncode == 2 and bad.stderr.strip() == f"error: {captions}:2: facts.modality: must be one of ct, mri, xray, ultrasound, dermoscopy, endoscopy, fundus, histopathology, pet, microscopy, not 'cat'"
    assert not (tmp_path / "never.jsonl").exists()  # nothing written when a line is malformed
    captions.write_text('{"id": 1,\n')
    assert medtrinity("score", str(captions)).stderr.startswith(f"error: {captions}:1: not JSON")
    odd = dict(lines[1], id="line\u2028separator")  # JSON allows U+2028 raw in a string; a BOM starts the file
    captions.write_bytes(b"\xef\xbb\xbf" + (json.dumps(odd, ensure_ascii=False) + "\r\n").encode())
    again = medtrinity("score", str(captions))
    assert again.returncode == 0 and len(again.stdout.splitlines()) == 1 and json.loads(again.stdout)["id"] == "line\u2028separator"
    assert medtrinity("score", str(captions), "--out", str(tmp_path)).stderr.strip() == f"error: --out {tmp_path}: not a file in an existing folder"
