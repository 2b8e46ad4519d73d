"""One chain of stage assets per source, from the stage registry: `<source>/raw` ... `<source>/triplets`.

Every asset has one body: read the upstream manifests (Dagster's IO manager), run the stage through the
core's runner (medtrinity_core/contract.py: takedown, accounting, quarantine rows), and return the
manifest with its metadata. Its key, inputs, code version, pool, automation and description come from
the stage record (medtrinity_core/pipeline.py). The stages' image libraries are imported by the stage
bodies that use them, so every process that loads the Definitions pays only for Dagster and the sources
file.
"""

import json
from collections import Counter

import dagster as dg
import polars as pl

from medtrinity_core.contract import FilePath, Markdown, Registry, Stage, StageContext, run_stage
from medtrinity_core.dataset.lineage import audit
from medtrinity_core.knowledge.vocabulary import source_vocabulary
from medtrinity_core.pipeline import REGISTRY
from medtrinity_core.quality import checks, suites
from medtrinity_core.quality.names import patient_name_tokens
from medtrinity_core.quarantine import defects, items_in, read_quarantine
from medtrinity_core.sources.drops import for_shard
from medtrinity_core.sources.identity import SourcePaths
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir, read_parquet
from medtrinity_dagster.k8s import gpu_op_tags
from medtrinity_dagster.knowledge import KNOWLEDGE_KEY
from medtrinity_dagster.partitions import SHARDS
from medtrinity_dagster.resources import LandingResource, WorkdirResource

# A partition's stage runs once its upstream partition is newly materialized and every blocking check on
# that upstream passed, and (for `context`) once the knowledge base exists. A knowledge-base rebuild alone
# re-runs nothing (`medtrinity run` re-runs the context built on an older knowledge base), unless the
# sources file sets `retrieval: {rerun_contexts: true}`: then `context` follows the knowledge base too.
_CHECKED = dg.AutomationCondition.all_deps_blocking_checks_passed() & ~dg.AutomationCondition.any_deps_missing()
FOLLOW = (dg.AutomationCondition.eager().ignore(dg.AssetSelection.assets(KNOWLEDGE_KEY)) & _CHECKED).with_label("follows its upstream partition")
_KNOWLEDGE_CHANGED = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed()).allow(dg.AssetSelection.assets(KNOWLEDGE_KEY))
FOLLOW_WITH_KNOWLEDGE = (FOLLOW | (_KNOWLEDGE_CHANGED.since_last_handled() & ~dg.AutomationCondition.in_progress()
                                   & ~dg.AutomationCondition.any_deps_in_progress() & _CHECKED)).with_label("follows its upstream partition and the knowledge base's content")
RESOURCES = {"workdir", "landing", "progress", "knowledge", "generator"}


def asset_key(src: SourceConfig, stage: str) -> dg.AssetKey:
    return dg.AssetKey([src.name, stage])


def _input(name: str) -> str:
    return "context_" if name == "context" else name  # `context` is Dagster's execution-context argument


class _Services:
    """The stage contract's services from the run's resources."""

    def __init__(self, resources):
        self.resources = resources

    def knowledge_config(self):
        return self.resources.knowledge.config()

    def embedder(self):
        return self.resources.knowledge.embedder()

    def generator(self, spec):
        return self.resources.generator.get(spec)


def _metadata(meta: dict) -> dict:
    """The runner's plain metadata as Dagster values."""
    out = {}
    for key, value in meta.items():
        if isinstance(value, Markdown):
            value = dg.MetadataValue.md(value.text)
        elif isinstance(value, FilePath):
            value = dg.MetadataValue.path(value.path)
        elif isinstance(value, (dict, list)):
            value = dg.MetadataValue.json(value)
        out[key] = value
    return out


def stage_asset(src: SourceConfig, stage: Stage, registry: Registry, rerun_contexts: bool = False) -> dg.AssetsDefinition:
    """The asset of one stage of one source: the one generic body."""
    chain = registry.chain(src)
    ins = {_input(name): dg.AssetIn(key=asset_key(src, registry.provider(src, stage, name).name)) for name in stage.reads}
    pool = stage.pool(src)
    follow = None if stage is chain[0] else FOLLOW_WITH_KNOWLEDGE if stage.knowledge and rerun_contexts else FOLLOW

    @dg.asset(key=asset_key(src, stage.name), ins=ins, deps=[KNOWLEDGE_KEY] if stage.knowledge else None, partitions_def=SHARDS.of(src), group_name=src.slug,
              io_manager_key="manifest_io", kinds={"polars"}, tags={"medtrinity/source": src.name}, code_version=registry.code_version(src, stage),
              automation_condition=follow, description=stage.describe(src), metadata=stage.asset_metadata(src) if stage.asset_metadata else None,
              pool=pool, op_tags=gpu_op_tags(pool), required_resource_keys=RESOURCES)
    def body(context: dg.AssetExecutionContext, **inputs: pl.DataFrame) -> dg.Output:
        res, shard = context.resources, context.partition_key
        wd = res.workdir.get()
        ctx = StageContext(src, for_shard(src, shard, res.landing.path()), shard, wd, chain, _Services(res))
        result = run_stage(stage, ctx, {name: inputs[_input(name)] for name in stage.reads})
        res.progress.advance(src.name, stage.name, result.rows.height)
        return dg.Output(result.rows, metadata=_metadata({**result.metadata, "manifest": str(wd.manifest_path(src.name, stage.name, shard))}))

    return body


def source_assets(src: SourceConfig, rerun_contexts: bool = False, registry: Registry | None = None) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """Every stage of the source's chain as an asset, and their checks."""
    registry = registry or REGISTRY
    assets = [stage_asset(src, stage, registry, rerun_contexts) for stage in registry.chain(src)]
    return assets, _source_checks(src, SHARDS.of(src), lambda stage: asset_key(src, stage), [s.name for s in registry.chain(src)])


def _result(passed: bool, metadata: dict, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, severity=severity, metadata={k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v for k, v in metadata.items()})


def _suite_result(result) -> dg.AssetCheckResult:
    """An error-severity failure fails the blocking check (downstream stages do not run); warnings alone
    fail it with WARN severity, which blocks nothing."""
    severity = dg.AssetCheckSeverity.ERROR if result.errors else dg.AssetCheckSeverity.WARN
    return _result(not result.errors and not result.warnings, result.metadata(), severity)


def _source_checks(src: SourceConfig, parts, key, chain: list[str]) -> list[dg.AssetChecksDefinition]:
    from medtrinity_core.quality.verdicts import record_verdict

    config = json.loads(src.quality) if isinstance(src.quality, str) else dict(src.quality)

    def history(wd: Workdir) -> pl.DataFrame:
        frames = [read_parquet(p).select("label", "area_ratio") for p in wd.shard_manifests(src.name, "rois")]
        return pl.concat(frames) if frames else pl.DataFrame(schema={"label": pl.String, "area_ratio": pl.Float64})

    def names(wd: Workdir, shard: str, landing_root) -> dict:
        raw, normalized = (read_parquet(wd.manifest_path(src.name, s, shard)) for s in ("raw", "normalized"))
        shard_src = for_shard(src, shard, landing_root)
        return patient_name_tokens(shard_src, raw, normalized, SourcePaths.of(wd, shard_src))

    def recorded(context: dg.AssetCheckExecutionContext, wd: Workdir, check: str, stage: str, result: dg.AssetCheckResult, metadata: dict) -> dg.AssetCheckResult:
        """A blocking check's result, its verdict also written to the work folder with the digest of the
        manifest it judged (medtrinity_core/quality/verdicts.py): exports read it, not the event log."""
        record_verdict(wd, src.name, context.partition_key, check, stage, result.passed, result.severity.value, metadata)
        return result

    def suite_verdict(context: dg.AssetCheckExecutionContext, wd: Workdir, result) -> dg.AssetCheckResult:
        return recorded(context, wd, f"{result.stage}_suite", result.stage, _suite_result(result), result.metadata())

    @dg.asset_check(asset=key("normalized"), partitions_def=parts, name="normalized_suite", blocking=True,
                    description="GX: ids non-null and unique, sizes and normalization parameters in range; masks non-empty, of their image's shape, none duplicated")
    def normalized_suite(context: dg.AssetCheckExecutionContext, normalized: pl.DataFrame, workdir: WorkdirResource) -> dg.AssetCheckResult:
        return suite_verdict(context, workdir.get(), suites.normalized_suite(normalized, workdir.get(), config))

    @dg.asset_check(asset=key("rois"), partitions_def=parts, name="rois_suite", blocking=True,
                    description="GX: ROI ids non-null and unique, labels present, boxes inside the image, 0 < area ratio <= 1; label outliers and unmapped labels warn")
    def rois_suite(context: dg.AssetCheckExecutionContext, rois: pl.DataFrame, workdir: WorkdirResource) -> dg.AssetCheckResult:
        vocabulary = source_vocabulary(src)
        return suite_verdict(context, workdir.get(), suites.rois_suite(rois, history(workdir.get()), config, lambda label: vocabulary.term(label) is not None))

    @dg.asset_check(asset=key("descriptions"), partitions_def=parts, name="faithfulness", blocking=True,
                    description=f"Mean completeness at least {src.min_mean_completeness} and descriptions with a contradiction at most "
                                f"{src.max_contradiction_rate:.0%}; a failed partition gets no triplets")
    def faithfulness(context: dg.AssetCheckExecutionContext, descriptions: pl.DataFrame, workdir: WorkdirResource) -> dg.AssetCheckResult:
        passed, metadata = checks.faithfulness(descriptions, src.min_mean_completeness, src.max_contradiction_rate)
        return recorded(context, workdir.get(), "faithfulness", "descriptions", _result(passed, metadata), metadata)

    @dg.asset_check(asset=key("descriptions"), partitions_def=parts, name="descriptions_suite", blocking=True,
                    description="GX: ids unique, length within bounds, every facet written or recorded missing, no patient data in any text")
    def descriptions_suite(context: dg.AssetCheckExecutionContext, descriptions: pl.DataFrame, workdir: WorkdirResource, landing: LandingResource) -> dg.AssetCheckResult:
        return suite_verdict(context, workdir.get(), suites.descriptions_suite(descriptions, config, names(workdir.get(), context.partition_key, landing.path())))

    @dg.asset_check(asset=key("triplets"), partitions_def=parts, name="triplets_suite", blocking=True,
                    description="GX: ids non-null and unique, allowed modalities, a licence on every row, modality and organ named, no patient data in any text field")
    def triplets_suite(context: dg.AssetCheckExecutionContext, triplets: pl.DataFrame, workdir: WorkdirResource, landing: LandingResource) -> dg.AssetCheckResult:
        return suite_verdict(context, workdir.get(), suites.triplets_suite(triplets, src.modality, src.body_region, config, names(workdir.get(), context.partition_key, landing.path())))

    @dg.asset_check(asset=key("triplets"), partitions_def=parts, name="lineage_audit",
                    description="A sample of up to 20 triplets traced through every stage to a source file whose sha256 still matches (run it from the UI any time)")
    def lineage_audit(context: dg.AssetCheckExecutionContext, workdir: WorkdirResource) -> dg.AssetCheckResult:
        checked, problems = audit(workdir.get(), src.name, context.partition_key, chain)
        return _result(not problems, {"checked": checked, "problems": problems[:20]}, dg.AssetCheckSeverity.WARN)

    @dg.asset_check(asset=key("triplets"), partitions_def=parts, name="quarantine_share", description="Share of the shard's items in quarantine, against max_quarantine_share")
    def quarantine_share(context: dg.AssetCheckExecutionContext, workdir: WorkdirResource) -> dg.AssetCheckResult:
        wd = workdir.get()
        shard = context.partition_key
        q = defects(read_quarantine(wd, src.name, shard))
        items = items_in(read_parquet(wd.manifest_path(src.name, "raw", shard)).height, q)
        passed, meta = checks.quarantine_share(q["item_id"].n_unique(), items, src.max_quarantine_share)
        meta["reasons"] = dict(sorted(Counter(q["reason"].to_list()).items()))
        return _result(passed, meta, dg.AssetCheckSeverity.WARN)

    return [normalized_suite, rois_suite, faithfulness, descriptions_suite, triplets_suite, lineage_audit, quarantine_share]
