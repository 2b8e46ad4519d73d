"""The landing-zone sensor, evaluated with `build_sensor_context`: ready drops become shard partitions
and keyed run requests once; half-written drops wait; unknown sources are reported once; a drop's shard
runs with relpaths `<drop>/<path>` read from its own folder."""

from __future__ import annotations

import json
import shutil

import dagster as dg
import pytest

from medtrinity_core.config import load_sources
from medtrinity_core.pipeline import REGISTRY
from medtrinity_core.sources.shards import read_plan
from medtrinity_core.storage import Workdir, read_parquet
from medtrinity_dagster.build import build_definitions
from medtrinity_dagster.partitions import partitions_name

from .conftest import KVASIR


@pytest.fixture()
def zone(tmp_path, tiny_sources):
    landing = tmp_path / "landing"
    for drop in ("d1", "d2"):
        shutil.copytree(KVASIR, landing / "tiny-kvasir" / drop)
    (landing / "tiny-kvasir" / "d1" / "_READY").touch()  # d2 is still being written
    (landing / "unknown-source" / "x").mkdir(parents=True)
    (landing / "unknown-source" / "x" / "_READY").touch()
    sources = load_sources(tiny_sources)
    defs = build_definitions(sources, str(tmp_path / "wd"), landing=str(landing))
    return {"landing": landing, "sources": sources, "defs": defs, "wd": Workdir.at(tmp_path / "wd")}


def tick(zone, cursor=None, instance=None):
    sensor = zone["defs"].get_sensor_def("landing_zone")
    with dg.build_sensor_context(cursor=cursor, instance=instance or dg.DagsterInstance.ephemeral(), resources=zone["defs"].resources) as context:
        return sensor(context)


def test_a_ready_drop_becomes_partitions_and_keyed_runs_once(zone):
    assert zone["defs"].get_sensor_def("landing_zone").default_status == dg.DefaultSensorStatus.RUNNING
    first = tick(zone)
    assert [r.run_key for r in first.run_requests] == ["tiny-kvasir:d1-0000"] and first.run_requests[0].partition_key == "d1-0000"
    assert [(p.partitions_def_name, p.partition_keys) for p in first.dynamic_partitions_requests] == [("tiny_kvasir__shards", ["d1-0000"])]
    # no knowledge base yet: the run stops before context (automation builds the knowledge base and carries on)
    assert first.run_requests[0].asset_selection == [dg.AssetKey(["tiny-kvasir", s]) for s in ("raw", "normalized", "rois")]
    assert json.loads(first.cursor) == ["?unknown-source", "tiny-kvasir/d1"]  # the unknown folder is reported once
    again = tick(zone, first.cursor)  # a restart with the same cursor requests nothing
    assert again.run_requests == [] and json.loads(again.cursor) == json.loads(first.cursor)
    planned_twice = tick(zone)  # even without the cursor the plan is the same and the run key dedupes the run
    assert [r.run_key for r in planned_twice.run_requests] == ["tiny-kvasir:d1-0000"]
    (zone["landing"] / "tiny-kvasir" / "d2" / "_READY").touch()
    later = tick(zone, first.cursor)
    assert [r.run_key for r in later.run_requests] == ["tiny-kvasir:d2-0000"]
    plan = read_plan(zone["wd"], "tiny-kvasir")
    assert sorted(plan) == ["d1-0000", "d2-0000"] and all(p.startswith("d1/") for p in plan["d1-0000"])


def test_with_a_knowledge_base_a_drops_run_covers_every_stage(zone):
    instance = dg.DagsterInstance.ephemeral()
    defs = zone["defs"]
    dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])
    result = tick(zone, instance=instance)
    assert result.run_requests[0].asset_selection == [dg.AssetKey(["tiny-kvasir", s]) for s in REGISTRY.names()]


def test_a_missing_knowledge_base_is_built_by_automation_and_context_waits_for_it(zone):
    instance = dg.DagsterInstance.ephemeral()
    src, defs = zone["sources"].sources[0], zone["defs"]
    instance.add_dynamic_partitions(partitions_name(src), tick(zone, instance=instance).dynamic_partitions_requests[0].partition_keys)
    everything = [*defs.assets, *defs.asset_checks]
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)  # the daemon's first tick, on a fresh deployment
    assert first.get_requested_partitions(dg.AssetKey("knowledge_base")) == {None}
    dg.materialize(everything, resources=defs.resources, instance=instance, partition_key="d1-0000",  # the drop's run, before context
                   selection=[dg.AssetKey([src.name, s]) for s in ("raw", "normalized", "rois")])
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_requested_partitions(dg.AssetKey([src.name, "context"])) == set()  # waits for the knowledge base
    dg.materialize(everything, resources=defs.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.get_requested_partitions(dg.AssetKey([src.name, "context"])) == {"d1-0000"}
    assert third.get_requested_partitions(dg.AssetKey("knowledge_base")) == set()  # built: not requested again


def test_a_drop_whose_files_match_nothing_is_reported_and_not_retried(zone):
    empty = zone["landing"] / "tiny-kvasir" / "d3"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    (empty / "_READY").touch()
    result = tick(zone)
    assert [r.run_key for r in result.run_requests] == ["tiny-kvasir:d1-0000"] and "tiny-kvasir/d3" in json.loads(result.cursor)
    assert tick(zone, result.cursor).run_requests == []


def test_a_drops_shard_runs_from_its_own_folder_with_drop_relpaths(zone):
    instance = dg.DagsterInstance.ephemeral()
    result = tick(zone, instance=instance)
    src = zone["sources"].sources[0]
    instance.add_dynamic_partitions(partitions_name(src), result.dynamic_partitions_requests[0].partition_keys)
    defs = zone["defs"]
    run = dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance, partition_key="d1-0000",
                         selection=dg.AssetSelection.assets(*[dg.AssetKey([src.name, s]) for s in REGISTRY.names()]), raise_on_error=False)
    assert run.success
    raw = read_parquet(zone["wd"].manifest_path(src.name, "raw", "d1-0000"))
    assert raw.height == 3 and all(r.startswith("d1/images/") for r in raw["relpath"].to_list())
    triplets = read_parquet(zone["wd"].manifest_path(src.name, "triplets", "d1-0000"))
    assert triplets.height == 3 and {t["provenance"]["source_relpath"].split("/")[0] for t in triplets.iter_rows(named=True)} == {"d1"}
    lineage = read_parquet(zone["wd"].lineage_path(src.name, "d1-0000"))
    assert set(lineage["source_root"].to_list()) == {str((zone["landing"] / "tiny-kvasir" / "d1").resolve())}
    # the lineage audit (a check a user can run from the UI) traces each triplet to a file whose hash still matches
    audit = next(e for e in run.get_asset_check_evaluations() if e.check_name == "lineage_audit")
    assert audit.passed and audit.metadata["checked"].value == 3
    from medtrinity_core.dataset.lineage import audit as audit_shard

    images = sorted((zone["landing"] / "tiny-kvasir" / "d1" / "images").glob("*.jpg"))
    images[0].write_bytes(images[0].read_bytes() + b"edited")
    images[1].unlink()
    checked, problems = audit_shard(zone["wd"], src.name, "d1-0000", REGISTRY.names())
    assert checked == 3 and len(problems) == 2
    assert any(f"images/{images[0].name} changed since it was read" in p for p in problems) and any(f"images/{images[1].name} has vanished" in p for p in problems)


def test_downstream_stages_follow_a_materialized_raw_shard_by_automation(zone):
    instance = dg.DagsterInstance.ephemeral()
    result = tick(zone, instance=instance)
    src, defs = zone["sources"].sources[0], zone["defs"]
    instance.add_dynamic_partitions(partitions_name(src), result.dynamic_partitions_requests[0].partition_keys)
    everything = [*defs.assets, *defs.asset_checks]
    dg.materialize(everything, resources=defs.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # nothing upstream has happened yet
    dg.materialize(everything, resources=defs.resources, instance=instance, partition_key="d1-0000", selection=[dg.AssetKey([src.name, "raw"])])
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_requested_partitions(dg.AssetKey([src.name, "normalized"])) == {"d1-0000"}
    assert second.total_requested == 1  # one stage at a time: normalized, then what follows it


def test_a_changed_knowledge_base_marks_the_contexts_built_on_it_stale(zone, tiny_sources, tmp_path):
    from dagster._core.definitions.data_version import (
        CachingStaleStatusResolver,
        StaleStatus,
    )
    from dagster._core.loader import LoadingContextForTest

    instance = dg.DagsterInstance.ephemeral()
    src, defs = zone["sources"].sources[0], zone["defs"]
    result = tick(zone, instance=instance)
    instance.add_dynamic_partitions(partitions_name(src), result.dynamic_partitions_requests[0].partition_keys)
    everything = [*defs.assets, *defs.asset_checks]
    dg.materialize(everything, resources=defs.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])
    dg.materialize(everything, resources=defs.resources, instance=instance, partition_key="d1-0000", selection=[dg.AssetKey([src.name, s]) for s in REGISTRY.names()])
    context_key = dg.AssetKey([src.name, "context"])

    def status(graph_defs):
        resolver = CachingStaleStatusResolver(instance, graph_defs.resolve_asset_graph(), LoadingContextForTest(instance))  # what the UI asks
        return resolver.get_status(context_key, "d1-0000")

    assert status(defs) == StaleStatus.FRESH
    dg.materialize(everything, resources=defs.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])  # same corpus: same data version
    assert status(defs) == StaleStatus.FRESH

    sources = load_sources(tiny_sources)
    fewer = sources.model_copy(update={"corpora": (sources.corpora[0].model_copy(update={"include": ("*/0000218.xml",)}),)})  # another corpus: other passages
    changed = build_definitions(fewer, str(zone["wd"].root), landing=str(zone["landing"]))
    dg.materialize([*changed.assets, *changed.asset_checks], resources=changed.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])
    assert status(changed) == StaleStatus.STALE


def test_with_rerun_contexts_a_changed_knowledge_base_reruns_the_contexts_built_on_it_and_an_unchanged_one_nothing(zone, tiny_sources):

    instance = dg.DagsterInstance.ephemeral()
    src = zone["sources"].sources[0]
    base = load_sources(tiny_sources)
    rerun = base.model_copy(update={"retrieval": base.retrieval.model_copy(update={"rerun_contexts": True})})
    defs = build_definitions(rerun, str(zone["wd"].root), landing=str(zone["landing"]))
    everything = [*defs.assets, *defs.asset_checks]
    instance.add_dynamic_partitions(partitions_name(src), tick(zone, instance=instance).dynamic_partitions_requests[0].partition_keys)
    dg.materialize(everything, resources=defs.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])
    dg.materialize(everything, resources=defs.resources, instance=instance, partition_key="d1-0000", selection=[dg.AssetKey([src.name, s]) for s in REGISTRY.names()])
    context_key = dg.AssetKey([src.name, "context"])
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.get_requested_partitions(context_key) == set()
    dg.materialize(everything, resources=defs.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])  # the same corpus
    same = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert same.get_requested_partitions(context_key) == set()  # an unchanged corpus causes nothing
    plain_before = dg.evaluate_automation_conditions(defs=build_definitions(base, str(zone["wd"].root), landing=str(zone["landing"])), instance=instance)
    fewer = rerun.model_copy(update={"corpora": (rerun.corpora[0].model_copy(update={"include": ("*/0000218.xml",)}),)})
    changed = build_definitions(fewer, str(zone["wd"].root), landing=str(zone["landing"]))
    dg.materialize([*changed.assets, *changed.asset_checks], resources=changed.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])
    after = dg.evaluate_automation_conditions(defs=changed, instance=instance, cursor=same.cursor)
    assert after.get_requested_partitions(context_key) == {"d1-0000"}
    assert after.get_requested_partitions(dg.AssetKey([src.name, "rois"])) == set()  # only what reads the knowledge base
    # without the setting, the same change re-runs nothing (medtrinity run does it)
    plain = build_definitions(fewer.model_copy(update={"retrieval": base.retrieval}), str(zone["wd"].root), landing=str(zone["landing"]))
    plain_after = dg.evaluate_automation_conditions(defs=plain, instance=instance, cursor=plain_before.cursor)
    assert plain_after.get_requested_partitions(context_key) == set()
