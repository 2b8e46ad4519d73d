"""What a `medtrinity run` still has to do: for each shard partition, the first stage that is missing or
stale — never materialized, its manifest gone, written under another code version of that stage (the
configuration it reads), built on an older upstream materialization, (context) on another knowledge
base, or not judged by one of its blocking checks (no verdict on the manifest there now) — from which that partition re-runs; and whether the knowledge base's inputs changed."""

from __future__ import annotations

import dagster as dg

from medtrinity_core.pipeline import REGISTRY
from medtrinity_core.quality.verdicts import BLOCKING, judges_current, read_verdict
from medtrinity_core.storage import Workdir
from medtrinity_dagster.knowledge import KNOWLEDGE_KEY, knowledge_inputs


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None):
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None), limit=1).records
    return records[0] if records else None


def knowledge_current(instance: dg.DagsterInstance, sources) -> tuple[bool, str | None]:
    """(up to date, its kb version)."""
    record = _latest(instance, KNOWLEDGE_KEY)
    if record is None:
        return False, None
    meta = record.asset_materialization.metadata
    version = getattr(meta.get("kb_version"), "value", None)
    return getattr(meta.get("inputs"), "value", None) == knowledge_inputs(sources), version


def first_stale(instance: dg.DagsterInstance, wd: Workdir, src, shard: str, kb_version: str | None, registry=REGISTRY) -> int | None:
    """Index in the source's chain (`registry.chain(src)`) of the first stage to re-run for this
    partition; None when all are current."""
    previous = None
    for i, stage in enumerate(s.name for s in registry.chain(src)):
        record = _latest(instance, dg.AssetKey([src.name, stage]), shard)
        if record is None or not wd.manifest_path(src.name, stage, shard).exists():
            return i
        if record.asset_materialization.tags.get("dagster/code_version") != registry.code_version(src, stage):
            return i
        if previous is not None and record.timestamp < previous:
            return i  # an upstream stage was materialized after this one
        if registry[stage].knowledge and kb_version and getattr(record.asset_materialization.metadata.get("kb_version"), "value", None) != kb_version:
            return i
        if _unchecked(wd, src.name, stage, shard):
            return i  # a blocking check never judged this manifest (a run killed before it, an older work folder)
        previous = record.timestamp
    return None


def _unchecked(wd: Workdir, source: str, stage: str, shard: str) -> bool:
    """Whether a blocking check of this stage has no verdict on the manifest there now: the export would
    leave the partition out as unchecked, so the stage re-runs (and its checks with it). A failed verdict
    is a verdict: that partition waits for a person, as before."""
    checks = [check for check, of in BLOCKING.items() if of == stage]
    if not checks:
        return False
    return not all(judges_current(read_verdict(wd, source, check, shard), wd, source, stage, shard) for check in checks)
