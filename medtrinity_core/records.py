"""Manifest schemas: one explicit polars schema per stage, so empty shards keep their columns."""

from __future__ import annotations

import polars as pl

ANNOTATION = pl.Struct({"relpath": pl.String, "label": pl.String, "kind": pl.String, "threshold": pl.Int64, "value": pl.Int64, "match": pl.String, "sha256": pl.String})
# how a DICOM-SEG, RTSTRUCT or label volume was put on an image: by its referenced source frames, by
# geometry (plane positions in patient space), or through a frame of reference shared with another series
ANNOTATION_MATCH = pl.Struct({"annotation_sha256": pl.String, "kind": pl.String, "match": pl.String})
# `model`: the expert model whose output the mask is (id and version); null for ground truth
MASK = pl.Struct({"label": pl.String, "uri": pl.String, "sha256": pl.String, "annotation": pl.String, "model": pl.String})
BOX = pl.Struct({"label": pl.String, "x0": pl.Float64, "y0": pl.Float64, "x1": pl.Float64, "y1": pl.Float64})
# the patient's body on the image, in its (resized) pixels: box and centre, measured before windowing
BODY = pl.Struct({"x0": pl.Float64, "y0": pl.Float64, "x1": pl.Float64, "y1": pl.Float64, "cx": pl.Float64, "cy": pl.Float64})
LABEL_VOLUME = pl.Struct({"label": pl.String, "volume_ml": pl.Float64})

# A shard plan's rows (plans/<source>/<shard>.parquet): each planned file with what discovery found.
PLAN_ANNOTATION = pl.Struct({"relpath": pl.String, "label": pl.String, "kind": pl.String, "threshold": pl.Int64, "value": pl.Int64, "match": pl.String})
PLAN = {
    "relpath": pl.String,  # public path: `<drop>/<path>` outside the base drop, salted where paths identify patients
    "kind": pl.String,  # null for a rejected file
    "format": pl.String,
    "annotations": pl.List(PLAN_ANNOTATION),
    "labels": pl.List(pl.String),
    "reason": pl.String,  # set for a rejected file: its shard quarantines it
    "detail": pl.String,
}

QUARANTINE = {
    "item_id": pl.String,
    "source": pl.String,
    "relpath": pl.String,
    "stage": pl.String,
    "reason": pl.String,
    "detail": pl.String,
}

RAW = {
    "item_id": pl.String,
    "source": pl.String,
    "relpath": pl.String,
    "kind": pl.String,
    "format": pl.String,
    "size_bytes": pl.Int64,
    "sha256": pl.String,
    "annotations": pl.List(ANNOTATION),
    "labels": pl.List(pl.String),
    "license": pl.String,
}

NORMALIZED = {
    "image_id": pl.String,
    "item_id": pl.String,
    "source": pl.String,
    "relpath": pl.String,
    "source_sha256": pl.String,
    "slice_axis": pl.String,
    "slice_index": pl.Int64,
    "volume_index": pl.Int64,
    "image_uri": pl.String,
    "image_sha256": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "channels": pl.Int64,
    "orig_width": pl.Int64,
    "orig_height": pl.Int64,
    "spacing_x": pl.Float64,
    "spacing_y": pl.Float64,
    "image_left": pl.String,
    "image_top": pl.String,
    "body": BODY,
    "patient_key": pl.String,
    "study_key": pl.String,
    "pixel_sha256": pl.String,
    "phash": pl.String,
    "duplicate_of": pl.String,
    "duplicate_kind": pl.String,
    "normalization": pl.String,
    "masks": pl.List(MASK),
    "boxes": pl.List(BOX),
    "label_volumes": pl.List(LABEL_VOLUME),
    "annotation_matches": pl.List(ANNOTATION_MATCH),
    "labels": pl.List(pl.String),
    "expert_output": pl.String,  # a 2D image's precomputed expert output (public path), read by the rois stage
}

RELATION = pl.Struct({"other_roi_id": pl.String, "other_label": pl.String, "relation": pl.String, "distance_pct": pl.Float64, "distance_mm": pl.Float64})

ROIS = {
    "roi_id": pl.String,
    "image_id": pl.String,
    "source": pl.String,
    "label": pl.String,
    "method": pl.String,
    "confidence": pl.Float64,  # an expert's or proposal's; null for ground truth and for tools that write none
    "low_confidence": pl.Boolean,  # an expert ROI under the expert's min_confidence: kept out of the dataset unless include_low_confidence
    "model_id": pl.String,
    "mask_sha256": pl.String,
    "component": pl.Int64,
    "x0": pl.Int64,
    "y0": pl.Int64,
    "x1": pl.Int64,
    "y1": pl.Int64,
    "img_w": pl.Int64,
    "img_h": pl.Int64,
    "area_px": pl.Int64,
    "area_ratio": pl.Float64,
    "area_mm2": pl.Float64,
    "size_class": pl.String,
    "volume_ml": pl.Float64,
    "label_count": pl.Int64,
    "centroid_x": pl.Float64,
    "centroid_y": pl.Float64,
    "location": pl.String,
    "within": pl.String,
    "within_location": pl.String,
    "circularity": pl.Float64,
    "solidity": pl.Float64,
    "eccentricity": pl.Float64,
    "orientation_deg": pl.Float64,
    "shape": pl.String,
    "margin": pl.String,
    "roi_mean": pl.Float64,
    "ring_mean": pl.Float64,
    "roi_cv": pl.Float64,
    "contrast": pl.String,
    "texture": pl.String,
    "colour": pl.String,
    "relations": pl.List(RELATION),
    "rle_counts": pl.List(pl.Int64),
}

QUERY = pl.Struct({"finding": pl.String, "query": pl.String})

PASSAGE_REF = pl.Struct(
    {
        "passage_id": pl.String,
        "finding": pl.String,  # the finding (canonical term, else the label) it was retrieved for
        "score": pl.Float64,  # cosine similarity to that finding's query
        "focus": pl.String,
        "corpus": pl.String,
        "license": pl.String,  # the corpus's licence and citation, carried to every triplet citing it
        "citation": pl.String,
    }
)

CONTEXT = {
    "image_id": pl.String,
    "source": pl.String,
    "coarse_caption": pl.String,
    "queries": pl.List(QUERY),  # one per distinct finding on the image
    "passages": pl.List(PASSAGE_REF),  # merged across findings, at or above the cosine floor
    "kb_version": pl.String,
}

# The facets of a multigranular description, in the order a description reads them: named here once.
FACET_NAMES = ("modality", "organ_tissue", "roi_location", "colour_texture", "relationships", "knowledge")
FACETS = pl.Struct({name: pl.String for name in FACET_NAMES})

# One claim of a description the facts contradict: its type (describe/faithfulness TYPES), the facet it belongs to, the words,
# the fact, where in the text ([start, end) in code points) and who found it (rule; a model judge later).
CONTRADICTION = pl.Struct({"type": pl.String, "facet": pl.String, "claim": pl.String, "fact": pl.String, "span": pl.List(pl.Int64), "by": pl.String})
SUSPECT = pl.Struct({"label": pl.String, "expected": pl.String, "measured": pl.String})

DESCRIPTIONS = {
    "image_id": pl.String,
    "source": pl.String,
    "text": pl.String,
    "facets": FACETS,
    "cited_passages": pl.List(pl.String),
    "generator": pl.String,  # the backend: grounded | transformers | openai
    "generator_model": pl.String,
    "generator_params": pl.String,
    "template_version": pl.String,  # the template or prompt, with its content hash
    "missing_facets": pl.List(pl.String),  # facets a model's answer lacked (recorded, never filled in)
    "faithfulness": pl.Float64,  # 1 - contradicted claims / claims made (1.0: nothing it says is contradicted)
    "completeness": pl.Float64,  # covered required facts / required facts (modality, organ, each finding, its side and size)
    "contradictions": pl.List(CONTRADICTION),
    "scorer_version": pl.String,
    "annotation_suspect": pl.List(SUSPECT),  # a finding whose measured contrast contradicts its expected appearance
    "usage": pl.String,  # JSON: a model's token counts; null for grounded
}

ROI_BRIEF = pl.Struct(
    {
        "roi_id": pl.String,
        "label": pl.String,
        "term": pl.String,  # the canonical vocabulary's term, null when the label is unmapped
        "category": pl.String,  # finding | anatomy, null when unmapped
        "method": pl.String,
        "confidence": pl.Float64,
        "bbox": pl.List(pl.Int64),
        "area_ratio": pl.Float64,
        "location": pl.String,
        "rle_counts": pl.List(pl.Int64),
    }
)

PROVENANCE = pl.Struct(
    {
        "source": pl.String,
        "license": pl.String,
        "citation": pl.String,
        "source_relpath": pl.String,
        "source_path_hashed": pl.Boolean,
        "source_sha256": pl.String,
        "item_id": pl.String,
        "patient_key": pl.String,  # salted hash of the patient id where the source has one (DICOM): splits keep a patient whole
        "slice_axis": pl.String,
        "slice_index": pl.Int64,
        "volume_index": pl.Int64,
        "annotation_matches": pl.List(ANNOTATION_MATCH),
        "normalization": pl.String,
        "roi_methods": pl.List(pl.String),
        "roi_model": pl.String,
        "kb_version": pl.String,
        "passages": pl.List(PASSAGE_REF),  # the passages the description cites
        "template_version": pl.String,
        "generator": pl.String,
        "generator_model": pl.String,
        "generator_params": pl.String,
        "scorer_version": pl.String,
        "package_version": pl.String,
    }
)

TRIPLETS = {
    "triplet_id": pl.String,
    "image_id": pl.String,
    "source": pl.String,
    "modality": pl.String,
    "image_uri": pl.String,
    "image_sha256": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "rois": pl.List(ROI_BRIEF),
    "coarse_caption": pl.String,
    "description": pl.String,
    "facets": FACETS,
    "faithfulness": pl.Float64,
    "completeness": pl.Float64,
    "contradictions": pl.List(CONTRADICTION),  # empty unless a source's min_faithfulness lets contradicted rows through
    "license": pl.String,
    "provenance": PROVENANCE,
}

LINEAGE = {
    "triplet_id": pl.String,
    "image_id": pl.String,
    "item_id": pl.String,
    "source": pl.String,
    "shard": pl.String,
    "source_root": pl.String,
    "source_relpath": pl.String,
}


def frame(rows: list[dict], schema: dict) -> pl.DataFrame:
    """Rows to a frame in schema order; extra keys are an error, missing keys are null."""
    return pl.DataFrame([{k: row.get(k) for k in schema} for row in rows], schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def quarantine_row(item_id: str, source: str, relpath: str, stage: str, reason: str, detail: str) -> dict:
    """A quarantine row; `reason` must be in `medtrinity_core.reasons.REASONS` (ValueError naming it otherwise)."""
    from medtrinity_core.reasons import reason as known_reason

    return {"item_id": item_id, "source": source, "relpath": relpath, "stage": stage, "reason": known_reason(reason), "detail": detail}
