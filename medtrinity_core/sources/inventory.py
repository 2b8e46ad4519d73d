"""The raw stage: an inventory of a shard's items (path, size, hash, format, annotations, labels, licence)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from medtrinity_core.errors import ItemError
from medtrinity_core.ids import sha256_file, stable_id
from medtrinity_core.reasons import EMPTY_FILE, MISSING, MISSING_ANNOTATION, UNREADABLE
from medtrinity_core.records import QUARANTINE, RAW, frame, quarantine_row
from medtrinity_core.sources.discover import Annotation, Item
from medtrinity_core.sources.identity import SourcePaths
from medtrinity_core.sources.paths import escaped, inside
from medtrinity_core.sources.patterns import images_pattern
from medtrinity_core.sources.schema import SourceConfig

STAGE = "raw"


def shard_items(source: SourceConfig, entries: pl.DataFrame, paths: SourcePaths | None = None) -> tuple[list[Item], list[dict]]:
    """The shard's items from its plan entries (discovery is not run again: the raw stage's work grows
    with the shard, not the source), plus quarantine rows for planned files that were rejected when
    planned, or that are gone or no longer match the source's pattern; quarantine rows carry public
    paths and scrubbed details."""
    paths = paths or SourcePaths(None, source.name, False)
    image_re = images_pattern(source)

    def held(token: str, reason: str, detail: str, rel: str | None) -> dict:
        return quarantine_row(stable_id("item", source.name, token), source.name, token, STAGE, reason, paths.scrub(detail and escaped(detail), [rel] if rel else []))

    wanted, quarantined = [], []
    for row in entries.iter_rows(named=True):
        token = row["relpath"]
        try:
            rel = paths.private(token)
            annotations = tuple(Annotation(paths.private(a["relpath"]), a["label"], a["kind"], a["threshold"], a["value"], a["match"])
                                for a in row["annotations"] or [])
        except KeyError as exc:
            quarantined.append(held(token, MISSING, str(exc.args[0]), None))
            continue
        if row["reason"]:
            quarantined.append(held(token, row["reason"], row["detail"], rel))
        elif not image_re.fullmatch(rel) or not os.path.lexists(Path(source.root) / rel):
            quarantined.append(held(token, MISSING, f"{rel} is in the shard plan but no longer matches a file under {source.root}", rel))
        else:
            wanted.append(Item(stable_id("item", source.name, rel), source.name, rel, row["kind"], row["format"], annotations, tuple(row["labels"] or ())))
    return wanted, quarantined


def _annotation_hash(source: SourceConfig, relpath: str, hashes: dict[str, str]) -> str:
    if relpath not in hashes:
        try:
            hashes[relpath] = sha256_file(inside(source.root, relpath))
        except OSError as exc:
            raise ItemError(MISSING_ANNOTATION, f"annotation {relpath} cannot be read ({exc.strerror or exc})") from None
    return hashes[relpath]


def inventory(source: SourceConfig, items: list[Item], paths: SourcePaths | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One row per item with its size and hash and its annotation files' hashes; an item whose file or
    an annotation file is empty, unreadable, missing or outside the root is quarantined instead. Paths
    and ids are public (`paths`): salted hashes for sources whose paths identify patients."""
    paths = paths or SourcePaths(None, source.name, False)
    rows, quarantined = [], []
    hashes: dict[str, str] = {}  # one COCO or CSV file serves many items: hash it once
    for item in items:
        public = paths.public(item.relpath)
        item_id = stable_id("item", source.name, public)
        try:
            path = inside(source.root, item.relpath)
            size = path.stat().st_size
            if size == 0:
                raise ItemError(EMPTY_FILE, f"{item.relpath} has zero bytes")
            digest = sha256_file(path)
            annotations = [
                {"relpath": paths.public(a.relpath), "label": a.label, "kind": a.kind, "threshold": a.threshold, "value": a.value, "match": a.match,
                 "sha256": _annotation_hash(source, a.relpath, hashes)}
                for a in item.annotations
            ]
        except (OSError, ItemError) as exc:  # empty, outside the root (itself or a data file its header names), a missing annotation
            reason, detail = (exc.reason, exc.detail) if isinstance(exc, ItemError) else (UNREADABLE, f"{item.relpath}: {exc.strerror or exc}")
            related = [item.relpath, *(a.relpath for a in item.annotations)]
            quarantined.append(quarantine_row(item_id, source.name, public, STAGE, reason, paths.scrub(escaped(detail), related)))  # an OS error may quote a resolved path
            continue
        rows.append(
            {
                "item_id": item_id,
                "source": source.name,
                "relpath": public,
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


def raw_stage(source: SourceConfig, entries: pl.DataFrame, workdir) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The raw stage of one shard: its plan entries to an inventory and quarantine rows (the private
    path map gains what it learned). The runner (medtrinity_core/contract.py) withdraws what a takedown
    covers and accounts for every planned path."""
    paths = SourcePaths.of(workdir, source)
    items, missing = shard_items(source, entries, paths)
    df, q = inventory(source, items, paths)
    paths.save()
    return df, pl.concat([frame(missing, QUARANTINE), q])
