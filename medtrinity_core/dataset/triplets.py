"""The triplets stage: image + ROIs + description joined into one row per image, with full provenance."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from medtrinity_core import __version__
from medtrinity_core.ids import stable_id
from medtrinity_core.knowledge.vocabulary import SourceVocabulary, source_vocabulary
from medtrinity_core.records import LINEAGE, TRIPLETS, frame
from medtrinity_core.sources.identity import SourcePaths
from medtrinity_core.sources.schema import SourceConfig


def _roi_brief(roi: dict, vocabulary: SourceVocabulary) -> dict:
    term = vocabulary.term(roi["label"])
    return {
        "roi_id": roi["roi_id"],
        "label": roi["label"],
        "term": term.term if term else None,
        "category": vocabulary.category(roi["label"]),
        "method": roi["method"],
        "confidence": roi["confidence"],
        "bbox": [roi["x0"], roi["y0"], roi["x1"], roi["y1"]],
        "area_ratio": roi["area_ratio"],
        "location": roi["location"],
        "rle_counts": roi["rle_counts"],
    }


def exclusion(source: SourceConfig, description: dict) -> str | None:
    """Why a description does not become a triplet: `contradiction` (faithfulness under the source's
    `min_faithfulness`: with the default 1.0, any contradiction), `incomplete` (completeness under
    `min_completeness`), or None."""
    if (description.get("faithfulness") or 0.0) < source.min_faithfulness:
        return "contradiction"
    if (description.get("completeness") or 0.0) < source.min_completeness:
        return "incomplete"
    return None


def exclusions(source: SourceConfig, descriptions: pl.DataFrame) -> dict[str, list[str]]:
    """Image ids per exclusion (the triplets stage's accounting)."""
    out: dict[str, list[str]] = {"contradiction": [], "incomplete": []}
    for d in descriptions.select("image_id", "faithfulness", "completeness").iter_rows(named=True):
        why = exclusion(source, d)
        if why:
            out[why].append(d["image_id"])
    return out


def _cited(refs: list[dict], cited: list[str]) -> list[dict]:
    """The context's passage references (finding, score, corpus, licence, citation) the description cites,
    in the order it cites them."""
    by_id = {ref["passage_id"]: ref for ref in refs}
    return [by_id.get(pid) or {"passage_id": pid} for pid in cited]


def build_triplets(
    source: SourceConfig,
    shard: str,
    images: Iterable[dict],
    rois: pl.DataFrame,
    context: pl.DataFrame,
    descriptions: pl.DataFrame,
    paths: SourcePaths,
    excluded_items: set[str] = frozenset(),
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(triplets, lineage index rows). Images of items quarantined downstream of normalization are left
    out, and so are descriptions a contradiction or too little of their facts excludes (`exclusion`).
    Image rows carry public paths (salted hashes where paths identify patients); the private
    lineage index holds the path itself."""
    rois_by_image: dict[str, list[dict]] = {}
    for roi in rois.sort(["image_id", "area_px", "roi_id"], descending=[False, True, False]).iter_rows(named=True):
        rois_by_image.setdefault(roi["image_id"], []).append(roi)
    ctx = {c["image_id"]: c for c in context.iter_rows(named=True)}
    desc = {d["image_id"]: d for d in descriptions.iter_rows(named=True)}
    vocabulary = source_vocabulary(source)
    rows, lineage = [], []
    for img in images:
        if img["item_id"] in excluded_items or img["image_id"] not in desc or exclusion(source, desc[img["image_id"]]):
            continue
        d, c = desc[img["image_id"]], ctx.get(img["image_id"], {})
        image_rois = rois_by_image.get(img["image_id"], [])
        triplet_id = stable_id("trp", img["image_id"], d["template_version"], d["generator"])
        rows.append(
            {
                "triplet_id": triplet_id,
                "image_id": img["image_id"],
                "source": source.name,
                "modality": source.modality,
                "image_uri": img["image_uri"],
                "image_sha256": img["image_sha256"],
                "width": img["width"],
                "height": img["height"],
                "rois": [_roi_brief(r, vocabulary) for r in image_rois],
                "coarse_caption": c.get("coarse_caption"),
                "description": d["text"],
                "facets": d["facets"],
                "faithfulness": d["faithfulness"],
                "completeness": d["completeness"],
                "contradictions": d["contradictions"] or [],
                "license": source.license,
                "provenance": {
                    "source": source.name,
                    "license": source.license,
                    "citation": source.citation,
                    "source_relpath": img["relpath"],
                    "source_path_hashed": source.paths_identify_patients,
                    "source_sha256": img["source_sha256"],
                    "item_id": img["item_id"],
                    "patient_key": img.get("patient_key"),
                    "slice_axis": img["slice_axis"],
                    "slice_index": img["slice_index"],
                    "volume_index": img.get("volume_index"),
                    "annotation_matches": img.get("annotation_matches") or [],
                    "normalization": img["normalization"],
                    "roi_methods": sorted({r["method"] for r in image_rois}),
                    "roi_model": ", ".join(sorted({r["model_id"] for r in image_rois if r["model_id"]})) or None,
                    "kb_version": c.get("kb_version"),
                    "passages": _cited(c.get("passages") or [], d["cited_passages"]),
                    "template_version": d["template_version"],
                    "generator": d["generator"],
                    "generator_model": d["generator_model"],
                    "generator_params": d["generator_params"],
                    "scorer_version": d.get("scorer_version"),
                    "package_version": __version__,
                },
            }
        )
        lineage.append(
            {
                "triplet_id": triplet_id,
                "image_id": img["image_id"],
                "item_id": img["item_id"],
                "source": source.name,
                "shard": shard,
                "source_root": str(source.root),
                "source_relpath": paths.private(img["relpath"]),
            }
        )
    return frame(rows, TRIPLETS), frame(lineage, LINEAGE)
