"""The ordered registry of stages (`REGISTRY`) on the one stage contract (medtrinity_core/contract.py),
and `run_chain`: a source's chain, or part of it, on one shard in plain Python.

Each built-in stage is a record whose `run` reads its upstream manifests, calls the stage's code in its
folder (sources, imaging, roi, knowledge, describe, dataset) and returns a `StageResult`; the runner
withdraws takedowns, accounts and writes quarantine rows. The stage list, its order, each stage's
settings (hashed into its code version), pools, side outputs and implementation versions are stated here
once; Dagster's factory, the CLI, incremental planning, lineage and the sensor read them from here.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from medtrinity_core import records
from medtrinity_core.contract import FilePath, Markdown, Registry, Services, Stage, StageContext, StageResult, run_stage
from medtrinity_core.describe.faithfulness import SCORER_VERSION
from medtrinity_core.storage import Workdir, read_parquet, write_parquet

KNOWLEDGE_BASE = "knowledge_base"  # the one asset outside the sources' chains: the stages with `knowledge` read it
PREVIEWS_PER_SHARD = 2  # ROI overlays shown inline in the UI per rois partition
PREVIEW_SIDE = 384


def _raw(ctx: StageContext, inputs: dict[str, pl.DataFrame]) -> StageResult:
    from medtrinity_core.sources.inventory import raw_stage
    from medtrinity_core.sources.shards import planned_shard

    entries = planned_shard(ctx.workdir, ctx.source.name, ctx.shard)
    df, q = raw_stage(ctx.shard_source, entries, ctx.workdir)
    return StageResult(df, q, expected=entries["relpath"].to_list())


def _normalized(ctx: StageContext, inputs: dict[str, pl.DataFrame]) -> StageResult:
    from medtrinity_core.imaging.normalize import normalized_stage

    df, q, found = normalized_stage(ctx.shard_source, inputs["raw"], ctx.workdir, ctx.shard)
    return StageResult(df, q, metadata=found)


def _unique(images: pl.DataFrame) -> pl.DataFrame:
    from medtrinity_core.imaging.dedup import unique_images

    return unique_images(images)


def _dataset_rois(rois: pl.DataFrame, source) -> pl.DataFrame:
    from medtrinity_core.roi.extract import dataset_rois

    return dataset_rois(rois, source)


def _rois(ctx: StageContext, inputs: dict[str, pl.DataFrame]) -> StageResult:
    from medtrinity_core.roi.expert import load_expert
    from medtrinity_core.roi.extract import extract_rois
    from medtrinity_core.roi.preview import markdown_image, write_previews

    src = ctx.source
    expert, expert_error = load_expert(src.model_expert) if src.model_expert else (None, None)
    images = _unique(inputs["normalized"])
    df, q = extract_rois(src, images.iter_rows(named=True), ctx.workdir, expert, expert_error)
    meta: dict[str, Any] = {"images": images.height, "labels": dict(Counter(df["label"].to_list()).most_common(20)),
                            "methods": dict(sorted(Counter(df["method"].to_list()).items()))}
    if expert:
        meta["model"], meta["device"] = expert.model_id, str(expert.device)
    if src.precomputed_expert:
        meta["model"] = src.precomputed_expert.model
    if src.expert:
        meta["low_confidence"] = int(df["low_confidence"].fill_null(False).sum())
    for n, (path, png, title) in enumerate(write_previews(ctx.workdir, src.name, ctx.shard, images, df, PREVIEWS_PER_SHARD, PREVIEW_SIDE)):
        meta[f"preview_{n}"], meta[f"preview_{n}_path"] = Markdown(markdown_image(png, title)), FilePath(path)
    return StageResult(df, q, metadata=meta, produced=images["image_id"])


def _collection(ctx: StageContext):
    from medtrinity_core.knowledge.store import open_collection

    return open_collection(ctx.services.knowledge_config(), ctx.workdir.chroma)


def _context(ctx: StageContext, inputs: dict[str, pl.DataFrame]) -> StageResult:
    from medtrinity_core.knowledge.retrieve import retrieve_context
    from medtrinity_core.knowledge.store import version_of
    from medtrinity_core.knowledge.vocabulary import source_vocabulary

    src = ctx.source
    collection = _collection(ctx)
    images = _unique(inputs["normalized"])
    rois = _dataset_rois(inputs["rois"], src)
    df = retrieve_context(src, images.iter_rows(named=True), rois, collection, ctx.services.embedder())
    labels = rois["label"].to_list() + [label for labels in images["labels"].to_list() for label in labels or []]
    return StageResult(df, metadata={"kb_version": version_of(collection), "unmapped_labels": source_vocabulary(src).unmapped(labels)})


def _descriptions(ctx: StageContext, inputs: dict[str, pl.DataFrame]) -> StageResult:
    from medtrinity_core.dataset.triplets import exclusions
    from medtrinity_core.describe.stage import describe
    from medtrinity_core.knowledge.store import fetch_passages

    src, context = ctx.source, inputs["context"]
    passages = fetch_passages(_collection(ctx), [p["passage_id"] for refs in context["passages"].to_list() for p in refs])
    writer = ctx.services.generator(src.generator)
    df, q, generated = describe(src, _unique(inputs["normalized"]).iter_rows(named=True), _dataset_rois(inputs["rois"], src), context, passages, writer, ctx.workdir)
    usage = [json.loads(u) for u in df["usage"].drop_nulls().to_list()]
    meta: dict[str, Any] = {
        "generator": writer.name, "generator_model": writer.model_id or "", "prompt_version": writer.prompt_version, **generated,
        "mean_faithfulness": round(float(df["faithfulness"].mean()), 4) if df.height else None,
        "mean_completeness": round(float(df["completeness"].mean()), 4) if df.height else None,
        "scorer_version": SCORER_VERSION,
        **{f"would_exclude_{k}": len(v) for k, v in exclusions(src, df).items()},
        "with_contradictions": df.filter(pl.col("contradictions").list.len() > 0).height,
        "annotation_suspect": df.filter(pl.col("annotation_suspect").list.len() > 0).height,
        "missing_facets": df.filter(pl.col("missing_facets").list.len() > 0).height,
    }
    if usage:
        meta["tokens"] = {k: sum(u.get(k, 0) for u in usage) for k in ("prompt_tokens", "completion_tokens")}
    return StageResult(df, q, metadata=meta)


def _triplets(ctx: StageContext, inputs: dict[str, pl.DataFrame]) -> StageResult:
    from medtrinity_core.dataset.triplets import build_triplets, exclusions
    from medtrinity_core.sources.identity import SourcePaths

    src, descriptions = ctx.source, inputs["descriptions"]
    later = ctx.upstream_quarantine  # items held back after normalization (their images never become triplets)
    df, lineage = build_triplets(ctx.shard_source, ctx.shard, _unique(inputs["normalized"]).iter_rows(named=True), _dataset_rois(inputs["rois"], src),
                                 inputs["context"], descriptions, SourcePaths.of(ctx.workdir, ctx.shard_source), set(later["item_id"].to_list()))
    write_parquet(lineage, ctx.workdir.lineage_path(src.name, ctx.shard))
    return StageResult(df, excluded=exclusions(src, descriptions))


def _generator_pool(src) -> str | None:
    return "gpu" if src.generator.backend == "transformers" else None


def _generator_metadata(src) -> dict:
    from medtrinity_core.describe.stage import prompt_version_of

    spec = src.generator
    return {"generator": spec.backend, "generator_model": spec.model or "", "prompt_version": prompt_version_of(spec)}


STAGES = (
    Stage("raw", (), records.RAW, "path", _raw, version="1", side_outputs=("private path map",),
          settings=("name", "root", "layout", "images", "masks", "labels", "label_map", "label", "labels_csv", "boxes", "paths_identify_patients",
                    "shard_size", "max_voxels", "volume_index",
                    "expert.format", "expert.pattern", "expert.file", "expert.id_column"),  # where a precomputed expert's outputs lie
          description=lambda src: f"Inventory of {src.name} items ({src.layout}) under {src.root}"),
    Stage("normalized", ("raw",), records.NORMALIZED, "item", _normalized, version="2", side_outputs=("content-addressed images and masks", "dedup index"),  # 2: masks name their model; expert_output
          settings=("modality", "window", "allow_burned_in", "slice_axes", "slice_every", "min_slice_fraction", "label_windows", "max_side",
                    "negatives_per_volume", "near_distance", "benchmark_hashes", "quality",  # quality: a mask defect quarantines or drops the mask
                    "expert.labels", "expert.model_id", "expert.model_version"),  # a 3D expert output's names and model
          description="2D 8-bit PNGs and masks, content-addressed"),
    Stage("rois", ("normalized",), records.ROIS, "image", _rois, version="2", side_outputs=("ROI previews",),  # 2: low_confidence; precomputed expert outputs
          settings=("min_roi_pixels", "min_roi_fraction", "expert", "proposals", "orientation", "midline_band"),
          pool=lambda src: "gpu" if src.model_expert else None, description="Regions of interest with measured facts"),
    Stage("context", ("normalized", "rois"), records.CONTEXT, "image", _context, version="1", knowledge=True,
          settings=("body_region", "top_k", "min_score", "mmr", "terms", "findings", "vocabulary", "include_proposals", "include_low_confidence"),
          description="Knowledge passages per finding on each image"),
    Stage("descriptions", ("normalized", "rois", "context"), records.DESCRIPTIONS, "image", _descriptions, version=f"1+{SCORER_VERSION}",
          side_outputs=("generation cache",),  # the scorer's version: a new scorer rescores every row, the cache keeps the generations
          settings=("generator", "faithfulness.min_faithfulness", "faithfulness.min_completeness", "faithfulness.min_mean_completeness",
                    "faithfulness.max_contradiction_rate"), pool=_generator_pool,
          description=lambda src: f"Multigranular descriptions ({src.generator.backend} generator), each scored for faithfulness",
          asset_metadata=_generator_metadata),
    Stage("triplets", ("normalized", "rois", "context", "descriptions"), records.TRIPLETS, "image", _triplets, version="1",
          side_outputs=("private lineage index",), settings=("license", "license_note", "citation"), held_upstream=True,
          description="Image-ROI-description triplets with provenance"),
)

REGISTRY = Registry(STAGES)


@dataclass
class LocalServices:
    """Services for plain-Python runs: the sources file's retrieval settings (default: the bundled
    embedder, embedded Chroma), its embedder, and one generator per configuration."""

    retrieval: Any = None

    def knowledge_config(self):
        if self.retrieval is None:
            from medtrinity_core.sources.schema import RetrievalConfig

            self.retrieval = RetrievalConfig()
        return self.retrieval

    def embedder(self):
        from medtrinity_core.knowledge.store import embedder_for

        return embedder_for(self.knowledge_config())

    def generator(self, spec):
        from medtrinity_core.describe.stage import make_generator

        return make_generator(spec)


def context_for(source, shard: str, workdir: Workdir, services: Services | None = None, landing_root: Path | None = None,
                registry: Registry | None = None) -> StageContext:
    from medtrinity_core.sources.drops import for_shard

    registry = registry or REGISTRY
    return StageContext(source, for_shard(source, shard, landing_root), shard, workdir, registry.chain(source), services or LocalServices())


def run_one(name: str, source, shard: str, workdir: Workdir, inputs: dict[str, pl.DataFrame], services: Services | None = None,
            landing_root: Path | None = None, registry: Registry | None = None) -> StageResult:
    """One stage through the runner, on inputs given in memory (nothing but its quarantine rows and side
    outputs written)."""
    registry = registry or REGISTRY
    return run_stage(registry[name], context_for(source, shard, workdir, services, landing_root, registry), inputs)


def run_chain(source, shard: str, workdir: Workdir, start: str | None = None, end: str | None = None, *, services: Services | None = None,
              landing_root: Path | None = None, registry: Registry | None = None) -> dict[str, StageResult]:
    """Run the source's chain on one shard from `start` to `end` (inclusive; default all) in plain
    Python, each stage through the runner and its manifest written where Dagster's IO manager writes it;
    manifests of stages before `start` are read from the work folder. The shard must be planned
    (`sources.shards.update_plan`) when the chain starts at raw."""
    registry = registry or REGISTRY
    ctx = context_for(source, shard, workdir, services, landing_root, registry)
    names = [s.name for s in ctx.chain]
    first, last = names.index(start) if start else 0, names.index(end) if end else len(names) - 1
    if first > last:
        raise ValueError(f"run_chain: {start} comes after {end} in {source.name}'s chain ({', '.join(names)})")
    out: dict[str, StageResult] = {}
    for stage in ctx.chain[first : last + 1]:
        inputs = {}
        for name in stage.reads:
            provider = registry.provider(source, stage, name).name
            inputs[name] = out[provider].rows if provider in out else read_parquet(workdir.manifest_path(source.name, provider, shard))
        out[stage.name] = run_stage(stage, ctx, inputs)
        write_parquet(out[stage.name].rows, workdir.manifest_path(source.name, stage.name, shard))
    return out
