"""The context stage: a coarse caption per image, one retrieval query per distinct finding on it, and the
passages each query finds, merged.

A finding's query is its canonical term and written-out synonyms (or, unmapped, the label in normal form),
the salient facts measured on its regions (how many, how large), and the coarse caption's organ and
modality. Anatomy labels are described by their measurements and are not queried. Passages under the
source's cosine floor (`min_score`) are not cited; with `mmr` set, each finding's passages are chosen by
maximal marginal relevance among a wider pool. Every passage is tied to the finding it was retrieved for.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import polars as pl

from medtrinity_core.knowledge.store import nearest, version_of
from medtrinity_core.knowledge.vocabulary import (
    SourceVocabulary,
    normal_form,
    source_vocabulary,
)
from medtrinity_core.modalities import display_name
from medtrinity_core.records import CONTEXT, frame

if TYPE_CHECKING:
    from medtrinity_core.knowledge.embed import Embedder
    from medtrinity_core.sources.schema import SourceConfig

MMR_POOL = 4  # with MMR, each finding's top-k is chosen from this many times k candidates


def image_labels(image_row: dict) -> list[str]:
    """Mask labels, else the source's image-level labels; sorted, without repeats."""
    labels = {m["label"] for m in image_row["masks"] or []} or set(image_row["labels"] or [])
    return sorted(label for label in labels if label)


def coarse_caption(source: SourceConfig, image_row: dict, rois: list[dict] = ()) -> str:
    """The image in one line: modality, plane, region, and what marks its regions: annotations, or an
    expert model (named with its version: its regions were found by it, never annotated)."""
    what = f"{display_name(source.modality)} image"
    if image_row.get("slice_axis"):
        what = f"{image_row['slice_axis']} {display_name(source.modality)} slice"
    region = f" of the {source.body_region}" if source.body_region else ""
    masks = image_row["masks"] or []
    annotated = sorted({m["label"] for m in masks if not m.get("model") and m["label"]})
    models = sorted({m["model"] for m in masks if m.get("model")} | {r["model_id"] for r in rois if r.get("method") == "expert_model" and r.get("model_id")})
    found = sorted({m["label"] for m in masks if m.get("model") and m["label"]} | {r["label"] for r in rois if r.get("method") == "expert_model"})
    parts = []
    if annotated:
        parts.append(f"annotated {', '.join(annotated)}")
    if found:
        parts.append(f"{', '.join(found)} found by the expert model {', '.join(models)}")
    if parts:
        tail = " with " + " and ".join(parts)
    elif masks:
        tail = " with no annotated region on this slice"
    else:
        labels = image_labels(image_row)
        tail = f", labelled {', '.join(labels)} by the source" if labels else ""
    if not found and image_row.get("expert_output") and source.precomputed_expert is not None:
        tail += f"; the expert model {source.precomputed_expert.model} found no region on it"
    return f"{what}{region}{tail}."


def compose_query(words: list[str], body_region: str | None, modality: str | None, facts: str = "") -> str:
    """Finding words, measured facts, organ and modality, in that order: what the knowledge base is asked."""
    parts = [", ".join(words), facts, body_region or "", display_name(modality) if modality else ""]
    return " ".join(p for p in parts if p)


def finding_words(vocabulary: SourceVocabulary, label: str) -> tuple[str, list[str]]:
    """(finding, search words): the canonical term and its written-out synonyms, or, unmapped, the label in
    normal form (`pleural_effusion` -> `pleural effusion`)."""
    term = vocabulary.term(label)
    return (term.term, term.words()) if term else (normal_form(label), [normal_form(label)])


def salient_facts(regions: list[dict]) -> str:
    """How many regions and how large the largest is, in words a passage would use."""
    if not regions:
        return ""
    largest = max(regions, key=lambda r: r["area_px"])
    return " ".join(w for w in ("multiple" if len(regions) > 1 else "", largest.get("size_class") or "") if w)


def finding_queries(source: SourceConfig, image_row: dict, rois: list[dict]) -> list[tuple[str, str]]:
    """(finding, query) for each distinct finding on the image: its ROIs' labels (largest region first),
    then the source's image-level labels."""
    vocabulary = source_vocabulary(source)
    regions: dict[str, list[dict]] = {}
    for roi in sorted(rois, key=lambda r: (-r["area_px"], r["roi_id"])):
        regions.setdefault(roi["label"], []).append(roi)
    labels = list(regions) + [label for label in image_labels(image_row) if label not in regions]
    out: dict[str, tuple[list[str], list[dict]]] = {}
    for label in labels:
        if not label or not vocabulary.is_finding(label):
            continue
        finding, words = finding_words(vocabulary, label)
        known_words, known_regions = out.get(finding, ([], []))
        out[finding] = (list(dict.fromkeys(known_words + words)), known_regions + regions.get(label, []))
    return [(finding, compose_query(words, source.body_region, source.modality, salient_facts(found))) for finding, (words, found) in out.items()]


def _cosine(a, b) -> float:
    return float(sum(x * y for x, y in zip(a, b)))


def mmr(candidates: list[dict], k: int, weight: float) -> list[dict]:
    """Maximal marginal relevance: each pick maximizes weight x score - (1 - weight) x its highest
    similarity to a passage already picked. `candidates` carry `score` and `embedding` (unit vectors)."""
    picked, left = [], list(candidates)
    while left and len(picked) < k:
        best = max(left, key=lambda c: weight * c["score"] - (1 - weight) * max((_cosine(c["embedding"], p["embedding"]) for p in picked), default=0.0))
        picked.append(best)
        left.remove(best)
    return picked


def search(collection, embedder: Embedder, queries: list[str], k: int, floor: float, diversity: float | None = None) -> dict[str, list[dict]]:
    """The passages of each distinct query (embedded in one batch), best first, none under `floor`."""
    unique = sorted(set(queries))
    pool = k * MMR_POOL if diversity is not None else k
    results = nearest(collection, embedder.embed_queries(unique) if unique else [], pool, embeddings=diversity is not None)
    out = {}
    for query, hits in zip(unique, results):
        kept = [h for h in hits if h["score"] >= floor]  # under the floor nothing is cited
        out[query] = mmr(kept, k, diversity) if diversity is not None else kept[:k]
    return out


def _merge(per_finding: list[tuple[str, list[dict]]]) -> list[dict]:
    """Round robin over the findings by rank, so the first passages quoted cover different findings; a
    passage found for two findings stays with the first."""
    merged, seen = [], set()
    for rank in range(max((len(hits) for _, hits in per_finding), default=0)):
        for finding, hits in per_finding:
            if rank < len(hits) and hits[rank]["passage_id"] not in seen:
                hit = hits[rank]
                seen.add(hit["passage_id"])
                merged.append({"passage_id": hit["passage_id"], "finding": finding, "score": hit["score"], "focus": hit.get("focus", ""),
                               "corpus": hit.get("corpus", ""), "license": hit.get("license", ""), "citation": hit.get("citation", "")})
    return merged


def retrieve_context(source: SourceConfig, images: Iterable[dict], rois: pl.DataFrame, collection, embedder: Embedder) -> pl.DataFrame:
    """One context row per image: its queries and the merged passages they found."""
    images = list(images)
    by_image: dict[str, list[dict]] = {}
    for roi in rois.iter_rows(named=True):
        by_image.setdefault(roi["image_id"], []).append(roi)
    queries = {img["image_id"]: finding_queries(source, img, by_image.get(img["image_id"], [])) for img in images}
    found = search(collection, embedder, [q for qs in queries.values() for _, q in qs], source.top_k, source.min_score, source.mmr)
    version = version_of(collection)
    return frame([
        {
            "image_id": img["image_id"],
            "source": source.name,
            "coarse_caption": coarse_caption(source, img, by_image.get(img["image_id"], [])),
            "queries": [{"finding": f, "query": q} for f, q in queries[img["image_id"]]],
            "passages": _merge([(f, found.get(q, [])) for f, q in queries[img["image_id"]]]),
            "kb_version": version,
        }
        for img in images
    ], CONTEXT)


def query_passages(collection, embedder: Embedder, vocabulary: SourceVocabulary, label: str, modality: str | None = None,
                   body_region: str | None = None, k: int = 5) -> tuple[str, list[dict]]:
    """The query the context stage would build for an image with this one label and no measured region,
    and its top-k passages (no floor): `{passage_id, corpus, focus, title, score, text}`, best first."""
    _, words = finding_words(vocabulary, label)
    query = compose_query(words, body_region, modality)
    hits = nearest(collection, embedder.embed_queries([query]), k)[0]
    return query, [{"passage_id": h["passage_id"], "corpus": h.get("corpus", ""), "focus": h.get("focus", ""), "title": h.get("question", ""),
                    "score": h["score"], "text": h["text"]} for h in hits]
