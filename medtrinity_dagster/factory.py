"""One chain of stage assets per source, from the sources file: `<source>/raw` ... `<source>/triplets`.

Each asset body reads its upstream manifest, calls medtrinity_core, and returns the downstream
manifest with metadata; quarantined items are written beside it. The stages' image libraries (Pillow,
SimpleITK, pydicom, scipy, scikit-image) are imported by the asset bodies that use them, so every
process that loads the Definitions (the daemon's runs, each step of the multiprocess executor) pays
only for Dagster and the sources file.
"""


import json
from collections import Counter

import dagster as dg
import polars as pl

from medtrinity_core.accounting import account_images
from medtrinity_core.dataset.lineage import audit
from medtrinity_core.describe.stage import describe, prompt_version_of
from medtrinity_core.knowledge.store import fetch_passages, open_collection, version_of
from medtrinity_core.knowledge.vocabulary import source_vocabulary
from medtrinity_core.quality import checks, suites
from medtrinity_core.quality.names import patient_name_tokens
from medtrinity_core.quarantine import (
    defects,
    items_in,
    read_quarantine,
    write_quarantine,
)
from medtrinity_core.records import QUARANTINE, frame
from medtrinity_core.sources.drops import for_shard
from medtrinity_core.sources.identity import SourcePaths
from medtrinity_core.sources.inventory import raw_stage
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.sources.shards import planned_shard
from medtrinity_core.storage import Workdir, read_parquet, write_parquet
from medtrinity_dagster.k8s import gpu_op_tags
from medtrinity_dagster.knowledge import KNOWLEDGE_KEY
from medtrinity_dagster.resources import (
    GeneratorResource,
    KnowledgeResource,
    LandingResource,
    Progress,
    WorkdirResource,
)

STAGES = ("raw", "normalized", "rois", "context", "descriptions", "triplets")


# A partition's stage runs once its upstream partition is newly materialized and every blocking check on
# that upstream passed, and (for `context`) once the knowledge base exists. A knowledge-base rebuild alone
# re-runs nothing (`medtrinity run` re-runs the context built on an older knowledge base), unless the
# sources file sets `retrieval: {rerun_contexts: true}`: then `context` follows the knowledge base too.
_CHECKED = dg.AutomationCondition.all_deps_blocking_checks_passed() & ~dg.AutomationCondition.any_deps_missing()
FOLLOW = (dg.AutomationCondition.eager().ignore(dg.AssetSelection.assets(KNOWLEDGE_KEY)) & _CHECKED).with_label("follows its upstream partition")
_KNOWLEDGE_CHANGED = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed()).allow(dg.AssetSelection.assets(KNOWLEDGE_KEY))
FOLLOW_WITH_KNOWLEDGE = (FOLLOW | (_KNOWLEDGE_CHANGED.since_last_handled() & ~dg.AutomationCondition.in_progress()
                                   & ~dg.AutomationCondition.any_deps_in_progress() & _CHECKED)).with_label("follows its upstream partition and the knowledge base's content")


def partitions_name(source: SourceConfig) -> str:
    return f"{source.slug}__shards"


def _finish(context, progress, wd: Workdir, src: SourceConfig, stage: str, df: pl.DataFrame, quarantined: pl.DataFrame, **extra) -> dg.Output:
    shard = context.partition_key
    write_quarantine(wd, src.name, stage, shard, quarantined)
    progress.advance(src.name, stage, df.height)
    reasons = Counter(quarantined["reason"].to_list())
    return dg.Output(
        df,
        metadata={
            "rows": df.height,
            "quarantined": quarantined.height,
            "quarantine_reasons": dg.MetadataValue.json(dict(sorted(reasons.items()))),
            "manifest": str(wd.manifest_path(src.name, stage, shard)),
            **extra,
        },
    )


def _no_quarantine() -> pl.DataFrame:
    return frame([], QUARANTINE)


def source_assets(src: SourceConfig, rerun_contexts: bool = False) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    parts = dg.DynamicPartitionsDefinition(name=partitions_name(src))
    base = {"partitions_def": parts, "group_name": src.slug, "io_manager_key": "manifest_io", "kinds": {"polars"}, "tags": {"medtrinity/source": src.name}}

    def common(stage: str) -> dict:
        """Each stage's code version hashes only the configuration it (and its upstream) reads; every
        stage after raw follows its upstream partition by declarative automation (raw is requested by the
        landing-zone sensor or a person)."""
        follow = FOLLOW_WITH_KNOWLEDGE if stage == "context" and rerun_contexts else FOLLOW
        return {**base, "code_version": src.fingerprint(stage), **({"automation_condition": follow} if stage != "raw" else {})}

    def key(stage: str) -> dg.AssetKey:
        return dg.AssetKey([src.name, stage])

    def ins(*stages: str) -> dict:
        # `context` is Dagster's execution-context argument, so that input is named `context_`.
        return {("context_" if s == "context" else s): dg.AssetIn(key=key(s)) for s in stages}

    @dg.asset(key=key("raw"), description=f"Inventory of {src.name} items ({src.layout}) under {src.root}", **common("raw"))
    def raw(context: dg.AssetExecutionContext, workdir: WorkdirResource, landing: LandingResource, progress: dg.ResourceParam[Progress]) -> dg.Output:
        wd = workdir.get()
        shard_src = for_shard(src, context.partition_key, landing.path())  # a landing-zone drop's shard reads its drop's folder only
        df, q, counts = raw_stage(shard_src, planned_shard(wd, src.name, context.partition_key), wd)
        return _finish(context, progress, wd, src, "raw", df, q, **counts)

    @dg.asset(key=key("normalized"), ins=ins("raw"), description="2D 8-bit PNGs and masks, content-addressed", **common("normalized"))
    def normalized(context: dg.AssetExecutionContext, workdir: WorkdirResource, landing: LandingResource, progress: dg.ResourceParam[Progress], raw: pl.DataFrame) -> dg.Output:
        from medtrinity_core.imaging.normalize import normalized_stage

        wd = workdir.get()
        df, q, counts = normalized_stage(for_shard(src, context.partition_key, landing.path()), raw, wd, context.partition_key)
        return _finish(context, progress, wd, src, "normalized", df, q, **counts)

    rois_pool = "gpu" if src.expert else None

    @dg.asset(
        key=key("rois"), ins=ins("normalized"), description="Regions of interest with measured facts",
        pool=rois_pool, op_tags=gpu_op_tags(rois_pool), **common("rois"),
    )
    def rois(context: dg.AssetExecutionContext, workdir: WorkdirResource, progress: dg.ResourceParam[Progress], normalized: pl.DataFrame) -> dg.Output:
        from medtrinity_core.imaging.dedup import unique_images
        from medtrinity_core.roi.expert import load_expert
        from medtrinity_core.roi.extract import extract_rois

        wd = workdir.get()
        expert, expert_error = load_expert(src.expert) if src.expert else (None, None)
        everything, normalized = normalized, unique_images(normalized)
        df, q = extract_rois(src, normalized.iter_rows(named=True), wd, expert, expert_error)
        counts = account_images("rois", everything, normalized["image_id"], q)
        labels = Counter(df["label"].to_list())
        methods = Counter(df["method"].to_list())
        extra = {"images": normalized.height, "labels": dg.MetadataValue.json(dict(labels.most_common(20))), "methods": dg.MetadataValue.json(dict(sorted(methods.items())))}
        if expert:
            extra["model"], extra["device"] = expert.model_id, str(expert.device)
        extra.update(_previews(wd, src, context.partition_key, normalized, df))
        return _finish(context, progress, wd, src, "rois", df, q, **extra, **counts)

    @dg.asset(key=key("context"), ins=ins("normalized", "rois"), deps=[KNOWLEDGE_KEY], description="Knowledge passages per finding on each image", **common("context"))
    def context_(context: dg.AssetExecutionContext, workdir: WorkdirResource, progress: dg.ResourceParam[Progress], knowledge: KnowledgeResource, normalized: pl.DataFrame, rois: pl.DataFrame) -> dg.Output:
        from medtrinity_core.imaging.dedup import unique_images
        from medtrinity_core.knowledge.retrieve import retrieve_context
        from medtrinity_core.roi.extract import dataset_rois

        wd = workdir.get()
        collection = open_collection(knowledge.config(), wd.chroma)
        images = unique_images(normalized)
        rois = dataset_rois(rois, src)
        df = retrieve_context(src, images.iter_rows(named=True), rois, collection, knowledge.embedder())
        counts = account_images("context", normalized, df["image_id"], _no_quarantine())
        labels = rois["label"].to_list() + [label for labels in images["labels"].to_list() for label in labels or []]
        unmapped = source_vocabulary(src).unmapped(labels)
        return _finish(context, progress, wd, src, "context", df, _no_quarantine(), kb_version=version_of(collection),
                       unmapped_labels=dg.MetadataValue.json(unmapped), **counts)

    spec = src.generator
    generator_meta = {"generator": spec.backend, "generator_model": spec.model or "", "prompt_version": prompt_version_of(spec)}
    describe_pool = "gpu" if spec.backend == "transformers" else None

    @dg.asset(key=key("descriptions"), ins=ins("normalized", "rois", "context"), description=f"Multigranular descriptions ({spec.backend} generator), each scored for faithfulness",
              metadata=generator_meta, pool=describe_pool, op_tags=gpu_op_tags(describe_pool), **common("descriptions"))
    def descriptions(context: dg.AssetExecutionContext, workdir: WorkdirResource, progress: dg.ResourceParam[Progress], knowledge: KnowledgeResource,
                     generator: GeneratorResource, normalized: pl.DataFrame, rois: pl.DataFrame, context_: pl.DataFrame) -> dg.Output:
        from medtrinity_core.imaging.dedup import unique_images
        from medtrinity_core.roi.extract import dataset_rois

        wd = workdir.get()
        collection = open_collection(knowledge.config(), wd.chroma)
        passages = fetch_passages(collection, [p["passage_id"] for refs in context_["passages"].to_list() for p in refs])
        writer = generator.get(src.generator)
        df, q, generated = describe(src, unique_images(normalized).iter_rows(named=True), dataset_rois(rois, src), context_, passages, writer, wd)
        counts = account_images("descriptions", normalized, df["image_id"], q)
        low = df.filter(pl.col("faithfulness") < src.min_faithfulness).height
        usage = [json.loads(u) for u in df["usage"].drop_nulls().to_list()]
        extra = {
            "generator": writer.name, "generator_model": writer.model_id or "", "prompt_version": writer.prompt_version, **generated,
            "mean_faithfulness": round(float(df["faithfulness"].mean()), 4) if df.height else None, "low_faithfulness": low,
            "with_contradictions": df.filter(pl.col("contradictions").list.len() > 0).height,
            "annotation_suspect": df.filter(pl.col("annotation_suspect").list.len() > 0).height,
            "missing_facets": df.filter(pl.col("missing_facets").list.len() > 0).height,
        }
        if usage:
            extra["tokens"] = dg.MetadataValue.json({k: sum(u.get(k, 0) for u in usage) for k in ("prompt_tokens", "completion_tokens")})
        return _finish(context, progress, wd, src, "descriptions", df, q, **extra, **counts)

    @dg.asset(key=key("triplets"), ins=ins("normalized", "rois", "context", "descriptions"), description="Image-ROI-description triplets with provenance", **common("triplets"))
    def triplets(context: dg.AssetExecutionContext, workdir: WorkdirResource, landing: LandingResource, progress: dg.ResourceParam[Progress], normalized: pl.DataFrame, rois: pl.DataFrame, context_: pl.DataFrame, descriptions: pl.DataFrame) -> dg.Output:
        from medtrinity_core.dataset.triplets import build_triplets
        from medtrinity_core.imaging.dedup import unique_images
        from medtrinity_core.roi.extract import dataset_rois

        wd = workdir.get()
        shard = context.partition_key
        later = read_quarantine(wd, src.name, shard).filter(pl.col("stage").is_in(["rois", "context", "descriptions"]))
        shard_src = for_shard(src, shard, landing.path())
        df, lineage = build_triplets(shard_src, shard, unique_images(normalized).iter_rows(named=True), dataset_rois(rois, src), context_, descriptions,
                                     SourcePaths.of(wd, shard_src), set(later["item_id"].to_list()))
        write_parquet(lineage, wd.lineage_path(src.name, shard))
        low = descriptions.filter(pl.col("faithfulness") < src.min_faithfulness)["image_id"]
        counts = account_images("triplets", normalized, df["image_id"], later, {"low_faithfulness": low})
        return _finish(context, progress, wd, src, "triplets", df, _no_quarantine(), **counts)

    assets = [raw, normalized, rois, context_, descriptions, triplets]
    return assets, _source_checks(src, parts, key)


PREVIEWS_PER_SHARD = 2
PREVIEW_SIDE = 384


def _previews(wd: Workdir, src: SourceConfig, shard: str, images: pl.DataFrame, rois: pl.DataFrame) -> dict:
    """Overlays shown inline in the UI, with the path of each file."""
    from medtrinity_core.roi.preview import markdown_image, write_previews

    out = {}
    for n, (path, png, title) in enumerate(write_previews(wd, src.name, shard, images, rois, PREVIEWS_PER_SHARD, PREVIEW_SIDE)):
        out[f"preview_{n}"] = dg.MetadataValue.md(markdown_image(png, title))
        out[f"preview_{n}_path"] = dg.MetadataValue.path(path)
    return out


def _result(passed: bool, metadata: dict, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, severity=severity, metadata={k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v for k, v in metadata.items()})


def _suite_result(result) -> dg.AssetCheckResult:
    """An error-severity failure fails the blocking check (downstream stages do not run); warnings alone
    fail it with WARN severity, which blocks nothing."""
    severity = dg.AssetCheckSeverity.ERROR if result.errors else dg.AssetCheckSeverity.WARN
    return _result(not result.errors and not result.warnings, result.metadata(), severity)


def _source_checks(src: SourceConfig, parts, key) -> list[dg.AssetChecksDefinition]:
    from medtrinity_core.quality.verdicts import record_verdict

    config = json.loads(src.quality)

    def history(wd: Workdir) -> pl.DataFrame:
        frames = [read_parquet(p).select("label", "area_ratio") for p in sorted(wd.manifests.glob(f"{src.name}/rois/*.parquet"), key=str)]
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
                    description=f"Mean faithfulness at least {src.min_mean_faithfulness} and descriptions with a contradiction at most "
                                f"{src.max_contradiction_rate:.0%}; a failed partition gets no triplets")
    def faithfulness(context: dg.AssetCheckExecutionContext, descriptions: pl.DataFrame, workdir: WorkdirResource) -> dg.AssetCheckResult:
        passed, metadata = checks.faithfulness(descriptions, src.min_mean_faithfulness, src.max_contradiction_rate)
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
        checked, problems = audit(workdir.get(), src.name, context.partition_key)
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
