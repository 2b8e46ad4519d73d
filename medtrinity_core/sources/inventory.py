"""The raw stage: an inventory of a shard's items (path, size, hash, format, annotations, labels, licence)."""

from __future__ import annotations

import polars as pl

from medtrinity_core.ids import sha256_file, stable_id
from medtrinity_core.records import QUARANTINE, RAW, frame, quarantine_row
from medtrinity_core.sources.discover import Item, Rejected, discover
from medtrinity_core.sources.schema import SourceConfig

STAGE = "raw"


def shard_items(source: SourceConfig, relpaths: list[str]) -> tuple[list[Item], list[dict]]:
    """The shard's items, plus quarantine rows for planned files that are gone or were rejected."""
    items, rejected = discover(source)
    by_rel = {item.relpath: item for item in items}
    rejected_by_rel = {r.relpath: r for r in rejected}
    wanted, quarantined = [], []
    for rel in relpaths:
        if rel in by_rel:
            wanted.append(by_rel[rel])
            continue
        r = rejected_by_rel.get(rel) or Rejected(rel, "missing", f"{rel} is in the shard plan but no longer matches a file under {source.root}")
        quarantined.append(quarantine_row(stable_id("item", source.name, rel), source.name, rel, STAGE, r.reason, r.detail))
    return wanted, quarantined


def inventory(source: SourceConfig, items: list[Item]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, quarantined = [], []
    hashes: dict[str, str] = {}  # one COCO or CSV file serves many items: hash it once
    for item in items:
        path = source.root / item.relpath
        try:
            size = path.stat().st_size
            if size == 0:
                quarantined.append(quarantine_row(item.item_id, source.name, item.relpath, STAGE, "empty_file", f"{item.relpath} has zero bytes"))
                continue
            digest = sha256_file(path)
            annotations = []
            for a in item.annotations:
                annotations.append({"relpath": a.relpath, "label": a.label, "kind": a.kind, "threshold": a.threshold, "value": a.value, "match": a.match, "sha256": hashes.get(a.relpath) or hashes.setdefault(a.relpath, sha256_file(source.root / a.relpath))})
        except OSError as exc:
            quarantined.append(quarantine_row(item.item_id, source.name, item.relpath, STAGE, "unreadable", f"{item.relpath}: {exc.strerror or exc}"))
            continue
        rows.append(
            {
                "item_id": item.item_id,
                "source": source.name,
                "relpath": item.relpath,
                "kind": item.kind,
                "format": item.format,
                "size_bytes": size,
                "sha256": digest,
                "annotations": annotations,
                "labels": list(item.labels),
                "license": source.license,
            }
        )
    return frame(rows, RAW), frame(quarantined, QUARANTINE)
