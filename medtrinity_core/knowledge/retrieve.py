"""The context stage: a coarse caption and a retrieval query per image, and its top-k passages."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from medtrinity_core.knowledge.vocabulary import load_vocabulary, normal_form
from medtrinity_core.modalities import display_name
from medtrinity_core.records import CONTEXT, frame
from medtrinity_core.sources.schema import SourceConfig


def image_labels(image_row: dict) -> list[str]:
    """Mask labels, else the source's image-level labels; sorted, without repeats."""
    labels = {m["label"] for m in image_row["masks"] or []} or set(image_row["labels"] or [])
    return sorted(label for label in labels if label)


def coarse_caption(source: SourceConfig, image_row: dict) -> str:
    what = f"{display_name(source.modality)} image"
    if image_row.get("slice_axis"):
        what = f"{image_row['slice_axis']} {display_name(source.modality)} slice"
    region = f" of the {source.body_region}" if source.body_region else ""
    labels = image_labels(image_row)
    if image_row["masks"]:
        tail = f" with annotated {', '.join(labels)}" if labels else " with no annotated region on this slice"
    else:
        tail = f", labelled {', '.join(labels)} by the source" if labels else ""
    return f"{what}{region}{tail}."


def compose_query(labels: list[str], body_region: str | None, modality: str | None) -> str:
    """Labels, organ and modality, in that order: what the knowledge base is asked."""
    parts = [", ".join(labels), body_region or "", display_name(modality) if modality else ""]
    return " ".join(p for p in parts if p)


def search_terms(labels: list[str]) -> list[str]:
    """Each label as the canonical vocabulary has it (term and written-out synonyms), or, unmapped, in
    normal form (`pleural_effusion` -> `pleural effusion`)."""
    vocabulary = load_vocabulary()
    out = []
    for label in labels:
        found = vocabulary.lookup(label)
        out.extend(found.words() if found else [normal_form(label)])
    return list(dict.fromkeys(out))


def unmapped_labels(labels: Iterable[str]) -> list[str]:
    """Labels the vocabulary does not know: passed through as written, listed for the user."""
    vocabulary = load_vocabulary()
    return sorted({label for label in labels if label and vocabulary.lookup(label) is None})


def query_text(source: SourceConfig, image_row: dict) -> str:
    return compose_query(search_terms(image_labels(image_row)), source.body_region, source.modality)


def retrieve_context(source: SourceConfig, normalized_rows: Iterable[dict], collection, kb_version: str) -> pl.DataFrame:
    """Top-k passages per distinct query, those under the source's cosine floor (`min_score`) left out."""
    rows = list(normalized_rows)
    queries = [query_text(source, r) for r in rows]
    unique = sorted(set(queries))
    hits: dict[str, tuple[list[str], list[float]]] = {}
    if unique and collection is not None and collection.count():
        k = min(source.top_k, collection.count())
        result = collection.query(query_texts=unique, n_results=k, include=["distances"])
        for q, ids, dists in zip(unique, result["ids"], result["distances"]):
            kept = [(pid, round(1.0 - float(d), 4)) for pid, d in zip(ids, dists) if 1.0 - float(d) >= source.min_score]
            hits[q] = ([pid for pid, _ in kept], [score for _, score in kept])  # under the floor nothing is cited
    out = []
    for row, q in zip(rows, queries):
        ids, scores = hits.get(q, ([], []))
        out.append(
            {
                "image_id": row["image_id"],
                "source": source.name,
                "coarse_caption": coarse_caption(source, row),
                "query": q,
                "passage_ids": ids,
                "scores": scores,
                "kb_version": kb_version,
            }
        )
    return frame(out, CONTEXT)


def query_passages(collection, label: str, modality: str | None = None, body_region: str | None = None, k: int = 5) -> tuple[str, list[dict]]:
    """The query the context stage would build for an image with this label, and its top-k passages:
    `{passage_id, corpus, focus, title, score, text}`, best first."""
    query = compose_query(search_terms([label]), body_region, modality)
    if collection is None or not collection.count():
        return query, []
    result = collection.query(query_texts=[query], n_results=min(k, collection.count()), include=["documents", "metadatas", "distances"])
    return query, [
        {"passage_id": pid, "corpus": (meta or {}).get("corpus", ""), "focus": (meta or {}).get("focus", ""), "title": (meta or {}).get("question", ""),
         "score": round(1.0 - float(d), 4), "text": doc}
        for pid, doc, meta, d in zip(result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0])
    ]
