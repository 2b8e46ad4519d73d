"""The Dagster layer: definitions load, and one in-process materialization of the whole graph."""

from __future__ import annotations

import os
import subprocess
import sys

import dagster as dg
import polars as pl

from medtrinity_core.config import load_sources
from medtrinity_core.pipeline import REGISTRY
from medtrinity_core.quarantine import read_quarantine
from medtrinity_core.storage import read_parquet
from medtrinity_dagster.build import build_definitions

from .conftest import EXAMPLES, REPO

STAGES = REGISTRY.names()


def test_definitions_load_for_every_example_source(tmp_path):
    sources = load_sources(EXAMPLES / "sources.yaml")
    defs = build_definitions(sources, str(tmp_path))
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert "knowledge_base" in keys
    for src in sources.sources:
        for stage in STAGES:
            assert f"{src.name}/{stage}" in keys
        # each source's context depends on the shared knowledge base
        assert dg.AssetKey("knowledge_base") in graph.get(dg.AssetKey([src.name, "context"])).parent_keys
    assert len(keys) == 2 + 6 * len(sources.sources) and "exports" in keys
    groups = {graph.get(dg.AssetKey(["kvasir-seg", "raw"])).group_name}
    assert groups == {"kvasir_seg"}
    # the generator each source's descriptions use is shown on the asset itself
    meta = graph.get(dg.AssetKey(["kvasir-seg", "descriptions"])).metadata
    assert meta["generator"] == "grounded" and meta["prompt_version"].startswith("grounded-v")
    assert len(list(defs.asset_checks)) == 7 * len(sources.sources)


def test_workspace_module_loads_from_environment(tmp_path):
    env = {**os.environ, "MEDTRINITY_SOURCES": str(EXAMPLES / "sources.yaml"), "MEDTRINITY_WORKDIR": str(tmp_path)}
    code = "from medtrinity_dagster.definitions import defs; print(len(list(defs.resolve_asset_graph().get_all_asset_keys())))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "62"  # knowledge_base, exports and six stages for each of the ten sources


def test_whole_graph_materializes_and_keeps_good_items(pipeline):
    assert pipeline["kb"].success
    assert pipeline["result"].success
    wd, src, shard = pipeline["workdir"], pipeline["source"], pipeline["shard"]
    raw = read_parquet(wd.manifest_path(src.name, "raw", shard))
    assert raw.height == 5  # 3 real images + 2 planted bad ones
    triplets = read_parquet(wd.manifest_path(src.name, "triplets", shard))
    assert triplets.height == 3
    assert sorted(triplets["provenance"].struct.field("source_relpath").to_list()) == sorted(
        f"images/{n}.jpg" for n in ("cju0qkwl35piu0993l0dewei2", "cju0roawvklrq0799vmjorwfv", "cju0rx1idathl0835detmsp84")
    )


def test_bad_input_is_quarantined_with_reasons(pipeline):
    q = read_quarantine(pipeline["workdir"], pipeline["source"].name, pipeline["shard"])
    reasons = dict(zip(q["relpath"].to_list(), q["reason"].to_list()))
    assert reasons == {"images/broken.jpg": "not_an_image", "images/mismatch.jpg": "mask_shape_mismatch"}
    detail = q.filter(pl.col("relpath") == "images/mismatch.jpg")["detail"][0]
    assert "32x32" in detail and "48x64" in detail


def test_every_check_ran_per_partition_and_passed(pipeline):
    evaluations = pipeline["result"].get_asset_check_evaluations()
    names = sorted(e.check_name for e in evaluations)
    assert names == sorted(["normalized_suite", "rois_suite", "faithfulness", "descriptions_suite", "triplets_suite", "lineage_audit", "quarantine_share"])
    failed = {e.check_name for e in evaluations if not e.passed}
    # 2 of 5 items quarantined is over the default 25 % share: reported as a warning, nothing else fails
    assert failed == {"quarantine_share"}
    share = next(e for e in evaluations if e.check_name == "quarantine_share")
    assert share.severity == dg.AssetCheckSeverity.WARN
    assert share.metadata["quarantined"].value == 2


def test_materialization_metadata_is_in_the_event_log(pipeline):
    instance, src, shard = pipeline["instance"], pipeline["source"], pipeline["shard"]
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey([src.name, "normalized"]), asset_partitions=[shard]), limit=1).records
    meta = records[0].asset_materialization.metadata
    assert meta["rows"].value == 3
    assert meta["quarantined"].value == 2
    assert (meta["exact_duplicates"].value, meta["near_duplicates"].value, meta["benchmark_matches"].value) == (0, 0, 0)
    # every stage accounts for what it read: items at raw and normalized, images from rois on
    assert (meta["items_in"].value, meta["items_out"].value, meta["items_quarantined"].value) == (5, 3, 2)
    for stage, expected in (("raw", (5, 5, 0)), ("triplets", (3, 3, 0))):
        record = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey([src.name, stage]), asset_partitions=[shard]), limit=1).records[0]
        unit = "item" if stage == "raw" else "image"
        m = record.asset_materialization.metadata
        assert (m[f"{unit}s_in"].value, m[f"{unit}s_out"].value, m[f"{unit}s_quarantined"].value) == expected
    context = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey([src.name, "context"]), asset_partitions=[shard]), limit=1).records
    assert context[0].asset_materialization.metadata["unmapped_labels"].value == []  # "polyp" is in the canonical vocabulary
    kb = instance.fetch_materializations(dg.AssetKey("knowledge_base"), limit=1).records[0].asset_materialization.metadata
    assert kb["passages"].value > 10 and len(kb["kb_version"].value) == 16


def test_triplets_join_description_rois_and_provenance(pipeline):
    wd, src, shard = pipeline["workdir"], pipeline["source"], pipeline["shard"]
    triplets = read_parquet(wd.manifest_path(src.name, "triplets", shard))
    rois = read_parquet(wd.manifest_path(src.name, "rois", shard))
    row = triplets.row(0, named=True)
    prov = row["provenance"]
    assert prov["license"] == "LicenseRef-research-only"
    assert prov["generator"] == "grounded" and prov["template_version"] == "grounded-v5" and prov["scorer_version"].startswith("claims-v2+")
    assert row["faithfulness"] == 1.0 and row["completeness"] >= 0.6 and row["contradictions"] == []
    assert prov["roi_methods"] == ["ground_truth_mask"]
    assert {(r["label"], r["term"], r["category"]) for r in row["rois"]} == {("polyp", "colonic polyp", "finding")}  # canonical term on each ROI
    assert prov["passages"] and all(p["passage_id"] in row["description"] for p in prov["passages"])
    # each cited passage names the finding it answers and its corpus's licence and citation
    assert {(p["finding"], p["corpus"], p["license"]) for p in prov["passages"]} == {("colonic polyp", "medquad-tiny", "CC-BY-4.0")}
    assert len(prov["source_sha256"]) == 64
    assert {r["roi_id"] for r in row["rois"]} == set(rois.filter(pl.col("image_id") == row["image_id"])["roi_id"].to_list())
    assert wd.resolve(row["image_uri"]).exists()
    assert "endoscopy" in row["description"] and "colon" in row["description"] and "polyp" in row["description"]


def test_rois_materialization_shows_overlay_previews(pipeline):
    from pathlib import Path

    from PIL import Image

    instance, src, shard = pipeline["instance"], pipeline["source"], pipeline["shard"]
    meta = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey([src.name, "rois"]), asset_partitions=[shard]), limit=1).records[0].asset_materialization.metadata
    assert "data:image/png;base64," in meta["preview_0"].value and "preview_1" in meta
    path = Path(meta["preview_0_path"].value)
    with Image.open(path) as img:
        assert img.mode == "RGB" and max(img.size) <= 384
    assert meta["methods"].value == {"ground_truth_mask": meta["rows"].value}


def test_sources_with_an_expert_model_run_their_rois_in_the_gpu_pool(tmp_path):

    from medtrinity_core.sources.schema import ExpertSpec
    from medtrinity_dagster.factory import source_assets

    src = load_sources(EXAMPLES / "sources.yaml").source("busi")
    assets, _ = source_assets(src.model_copy(update={"expert": ExpertSpec(kind="torchscript", path=tmp_path / "m.ts", labels=((1, "lesion"),))}))
    pools = {a.key.path[-1]: a.op.pool for a in assets}
    assert pools["rois"] == "gpu" and pools["normalized"] is None


def test_each_stage_has_its_own_code_version_so_a_new_prompt_marks_only_descriptions_and_triplets_stale(tmp_path):

    from medtrinity_core.config import load_sources
    from medtrinity_dagster.build import build_definitions

    from .conftest import EXAMPLES

    sources = load_sources(EXAMPLES / "sources.yaml")
    src = sources.source("kvasir-seg")
    prompt = tmp_path / "my-prompt.txt"
    prompt.write_text("Describe {modality} of the {organ}. Facts: {facts}")
    changed = sources.model_copy(update={"sources": (src.model_copy(update={"generator": src.generator.model_copy(update={"prompt": str(prompt)})}),)})

    def versions(file):
        defs = build_definitions(file, str(tmp_path / "wd"))
        graph = defs.resolve_asset_graph()
        return {stage: graph.get(dg.AssetKey(["kvasir-seg", stage])).code_version for stage in ("raw", "normalized", "rois", "context", "descriptions", "triplets")}

    before, after = versions(sources.model_copy(update={"sources": (src,)})), versions(changed)
    assert [stage for stage in before if before[stage] != after[stage]] == ["descriptions", "triplets"]
    assert len(set(before.values())) == 6  # every stage its own version


def test_loading_the_definitions_imports_no_heavy_library():
    """Every run and step loads the code location: torch, MONAI, transformers, Chroma, sentence-transformers,
    Great Expectations, the release libraries, the image libraries and dagster-k8s are imported only where
    they are used."""
    env = {**os.environ, "MEDTRINITY_SOURCES": str(EXAMPLES / "sources.yaml")}
    code = ("import sys, time; t = time.time(); from medtrinity_dagster.definitions import defs; defs.resolve_asset_graph(); "
            "heavy = ('torch', 'monai', 'transformers', 'chromadb', 'sentence_transformers', 'great_expectations', 'mlcroissant', 'matplotlib', 'pyarrow', "
            "'scipy', 'skimage', 'SimpleITK', 'pydicom', 'nibabel', 'highdicom', 'dagster_k8s'); "
            "print(sorted(m for m in heavy if m in sys.modules)); print(f'definitions load in {time.time() - t:.2f} s')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-2] == "[]", lines
    print(lines[-1])


def test_the_instance_the_project_writes_limits_the_gpu_pool_and_runs_per_source(tmp_path):
    from medtrinity_core.storage import Workdir

    home = Workdir.at(tmp_path).ensure().dagster_home
    with dg.DagsterInstance.from_config(str(home)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert config.run_queue_config.tag_concurrency_limits == [{"key": "medtrinity/source", "value": {"applyLimitPerUniqueValue": True}, "limit": 2}]
    defs = build_definitions(load_sources(EXAMPLES / "sources.yaml"), str(tmp_path))
    raw = next(a for a in defs.assets if a.key == dg.AssetKey(["kvasir-seg", "raw"]))
    assert raw.tags_by_key[raw.key]["medtrinity/source"] == "kvasir-seg"
