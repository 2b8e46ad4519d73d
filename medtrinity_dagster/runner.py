"""The incremental scheduler `medtrinity run` and `medtrinity takedown` call: plan each source's shards,
build the knowledge base when its inputs changed, and materialize, per shard partition, the stages from
the first missing or stale one (medtrinity_dagster/incremental.py) to the end of the source's chain, one
in-process materialization per shard. It reports what failed; the CLI turns the report into lines and an
exit code."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import dagster as dg

from medtrinity_core.pipeline import KNOWLEDGE_BASE, REGISTRY
from medtrinity_core.sources.discover import match_problem
from medtrinity_core.storage import Workdir

# Dagster's console logger prints every failed step with its stack trace; the commands print one line per
# failure instead (the event log keeps everything, and MEDTRINITY_DEBUG=1 shows Dagster's own lines).
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
DEBUG_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def run_config() -> dict:
    return DEBUG_RUN_CONFIG if os.environ.get("MEDTRINITY_DEBUG") else QUIET_RUN_CONFIG


def instance_for(wd: Workdir) -> dg.DagsterInstance:
    """The work folder's Dagster instance (its `dagster/` folder is DAGSTER_HOME)."""
    os.environ["DAGSTER_HOME"] = str(wd.ensure().dagster_home)
    return dg.DagsterInstance.get()


def failure_message(result) -> str | None:
    """The first failed step's error, in one line; None when every failed step is a blocking check (the
    check's own line, with its failing rows, says more)."""
    for event in result.all_events:
        if event.is_step_failure:
            err = event.event_specific_data.error
            if err is not None and err.cls_name == "DagsterAssetCheckFailedError":
                continue
            cause = err
            while cause is not None and cause.cause is not None and cause.cls_name.startswith("Dagster"):
                cause = cause.cause  # the user-code error under Dagster's wrapper
            text = (cause.message if cause else "unknown error").strip()
            return f"step {event.step_key} failed: {' '.join(text.splitlines()[-1:]) or 'unknown error'}"
    return None if any(not e.passed for e in result.get_asset_check_evaluations()) else "run failed"


@dataclass
class RunReport:
    """What a run did: partitions skipped as current, sources whose patterns matched nothing, failed
    steps (one line each), and failed checks (source, shard, check, severity, metadata)."""

    skipped: int = 0
    empty: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    failed_checks: list[tuple[str, str, str, str, dict]] = field(default_factory=list)



def plan_shards(wd: Workdir, chosen) -> tuple[dict[str, dict], list[str]]:
    """Each chosen source's shard plan (discovery, new files planned into shards), and a line for each
    source whose patterns matched nothing."""
    from medtrinity_core.sources.shards import update_plan

    plans = {src.name: update_plan(wd, src) for src in chosen}
    return plans, [f"{src.name}: {match_problem(src)}" for src in chosen if not plans[src.name]]


def run_sources(sources, wd: Workdir, chosen, select=None, force: bool = False, progress=None, registry=REGISTRY, tags=None,
                planned: tuple[dict[str, dict], list[str]] | None = None) -> RunReport:
    """Materialize the chosen sources: every missing or stale partition (everything with `force`; only
    the `select`ed stages, upstream manifests present, with `select`). `planned`: `plan_shards`' answer,
    when the caller planned already."""
    from medtrinity_dagster.build import build_definitions
    from medtrinity_dagster.incremental import first_stale, knowledge_current
    from medtrinity_dagster.knowledge import KNOWLEDGE_KEY
    from medtrinity_dagster.partitions import SHARDS
    from medtrinity_dagster.resources import NoProgress

    progress = progress or NoProgress()
    report = RunReport()
    instance = instance_for(wd)
    with_kb = not select or KNOWLEDGE_BASE in select
    plans, report.empty = planned or plan_shards(wd, chosen)
    for src in chosen:
        SHARDS.add(instance, src, plans[src.name])
    defs = build_definitions(sources, str(wd.root), progress=progress, registry=registry)
    everything = [*defs.assets, *defs.asset_checks]
    tags = {"medtrinity/command": "run", **(tags or {})}
    incremental = not force and not select  # --select names stages to run; --force runs everything

    def materialize(selection, partition=None, source=None):
        return dg.materialize(everything, resources=defs.resources, instance=instance, selection=selection, partition_key=partition, run_config=run_config(),
                              raise_on_error=False, tags={**tags, **({"medtrinity/source": source} if source else {})})

    kb_current, kb_version = knowledge_current(instance, sources) if incremental else (False, None)
    if with_kb and not kb_current:
        result = materialize([KNOWLEDGE_KEY])
        if not result.success:
            report.failures.append(f"knowledge_base: {failure_message(result) or 'run failed'}")
        kb_version = knowledge_current(instance, sources)[1]
    elif with_kb:
        report.skipped += 1
    if report.failures:
        return report
    for src in chosen:
        stages = [s.name for s in registry.chain(src) if not select or s.name in select]
        if not stages:
            continue
        for shard in sorted(plans[src.name]):
            start = first_stale(instance, wd, src, shard, kb_version, registry) if incremental else 0
            if start is None:
                report.skipped += 1
                for stage in stages:
                    progress.advance(src.name, stage, 0)
                continue
            for stage in stages[:start]:
                progress.advance(src.name, stage, 0)
            result = materialize(dg.AssetSelection.assets(*[dg.AssetKey([src.name, s]) for s in stages[start:]]), shard, src.name)
            message = None if result.success else failure_message(result)
            if message:
                report.failures.append(f"{src.name} shard {shard}: {message}")
            for ev in result.get_asset_check_evaluations():
                if not ev.passed:
                    report.failed_checks.append((src.name, shard, ev.check_name, ev.severity.value, dict(ev.metadata)))
    return report


def delete_runs(wd: Workdir, run_ids: set[str]) -> None:
    """Delete runs from the event log, and with them what a takedown must not leave on disk.

    Deleting a run through Dagster's public API (`DagsterInstance.delete_run`) leaves its asset-check
    evaluations (which name failing rows) in the `asset_check_executions` table, and deleted rows stay in
    an SQLite file's free pages until it is rebuilt. Dagster has no public API for either, and privacy
    wins: this function, and only this one, deletes those rows from the local instance's SQLite files
    directly and rebuilds every database (VACUUM). A Postgres instance's check rows are not reached
    here."""
    import sqlite3
    from pathlib import Path

    instance = instance_for(wd)
    for run_id in sorted(run_ids):
        instance.delete_run(run_id)  # their event logs held the removed rows' metadata and previews
    for db in sorted(Path(str(wd.dagster_home)).rglob("*.db")):
        conn = sqlite3.connect(db)
        try:
            if conn.execute("select 1 from sqlite_master where name = 'asset_check_executions'").fetchone():
                conn.executemany("delete from asset_check_executions where run_id = ?", [(r,) for r in sorted(run_ids)])
                conn.commit()
            conn.execute("VACUUM")
        finally:
            conn.close()


def runs_of(wd: Workdir, src, shards, registry=REGISTRY) -> set[str]:
    """The runs that materialized any stage of these shards of the source."""
    instance = instance_for(wd)
    runs = set()
    for stage in registry.chain(src):
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey([src.name, stage.name]), asset_partitions=sorted(shards)), limit=1000).records
        runs |= {r.run_id for r in records}
    return runs
