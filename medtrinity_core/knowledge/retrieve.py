"""The context stage: a coarse caption and a retrieval query per image, and its top-k passages."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

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


def query_text(source: SourceConfig, image_row: dict) -> str:
    parts = [", ".join(image_labels(image_row)), source.body_region or "", display_name(source.modality)]
    return " ".join(p for p in parts if p)


def retrieve_context(source: SourceConfig, normalized_rows: Iterable[dict], collection, kb_version: str) -> pl.DataFrame:
    rows = list(normalized_rows)
    queries = [query_text(source, r) for r in rows]
    unique = sorted(set(queries))
    hits: dict[str, tuple[list[str], list[float]]] = {}
    if unique and collection is not None and collection.count():
        k = min(source.top_k, collection.count())
        result = collection.query(query_texts=unique, n_results=k, include=["distances"])
        for q, ids, dists in zip(unique, result["ids"], result["distances"]):
            hits[q] = (list(ids), [round(1.0 - float(d), 4) for d in dists])
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
