"""Takedown: a data subject's or a source's request to remove items from the dataset.

A request (`medtrinity takedown`) names a source path (or folder), a path's salted hash, or a patient
key. It is recorded in `takedown/<source>.jsonl` (public values only: a path of a source whose paths
identify patients is stored as its salted hash) with the items it resolved to. From then on the raw
stage quarantines those items (and any later file under the path) as `taken_down`, and the normalized
stage any image of that patient; `remove` deletes what was derived from them — image and mask PNGs,
previews, cached generations — and reports each derived row, so a re-materialization of the affected
partitions leaves nothing of them in the work folder. Exports skip them as well."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.storage import Workdir, read_parquet

KINDS = ("path", "path_hash", "patient_key")


@dataclass
class Takedowns:
    items: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)  # public relpaths or folders
    patient_keys: set[str] = field(default_factory=set)

    def covers(self, item_id: str | None, public_relpath: str | None, private_relpath: str | None = None) -> bool:
        if item_id in self.items:
            return True
        for path in (public_relpath, private_relpath):
            if path and any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.paths):
                return True
        return False

    def why(self, item_id: str | None, public_relpath: str | None, private_relpath: str | None = None, patient_key: str | None = None) -> str | None:
        """Why a request covers this item (the detail of its quarantine row), or None: its id or path, or
        its patient. Every takedown filter (the stage runner's, the export's) asks this."""
        if self.covers(item_id, public_relpath, private_relpath):
            return "a takedown request covers this item (takedown/)"
        if patient_key is not None and patient_key in self.patient_keys:
            return "a takedown request names this item's patient"
        return None

    def withdraw(self, rows: pl.DataFrame, source: str, stage: str, private=None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(kept, withdrawn): rows this request set covers (by item id, public path, `private(path)` for a
        source whose paths identify patients, or patient key where the rows carry one) leave as
        `taken_down` quarantine rows of `stage`. The one place takedown filtering is written: the stage
        runner applies it to every stage's output, and the stages that learn an item's identity (raw: its
        path; normalized: its patient) before anything is derived from it."""
        from medtrinity_core.reasons import TAKEN_DOWN
        from medtrinity_core.records import QUARANTINE, frame, quarantine_row

        down: dict[str, tuple[str, str]] = {}
        if (self.items or self.paths or self.patient_keys) and "item_id" in rows.columns:
            for row in rows.iter_rows(named=True):
                relpath = row.get("relpath")
                why = self.why(row["item_id"], relpath, private(relpath) if private and relpath else None, row.get("patient_key"))
                if why:
                    down.setdefault(row["item_id"], (relpath or "", why))
        withdrawn = frame([quarantine_row(i, source, rel, stage, TAKEN_DOWN, detail) for i, (rel, detail) in sorted(down.items())], QUARANTINE)
        return (rows.filter(~pl.col("item_id").is_in(sorted(down))) if down else rows), withdrawn


def record_path(workdir: Workdir, source: str):
    return workdir.root / "takedown" / f"{source}.jsonl"


def load(workdir: Workdir, source: str) -> Takedowns:
    td = Takedowns()
    path = record_path(workdir, source)
    if not path.exists():
        return td
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        td.items.update(rec.get("items") or [])
        if rec["kind"] == "patient_key":
            td.patient_keys.add(rec["value"])
        else:
            td.paths.add(rec["value"])
    return td


def _manifests(workdir: Workdir, source: str, stage: str) -> dict[str, pl.DataFrame]:
    return {p.stem: read_parquet(p) for p in workdir.shard_manifests(source, stage)}


def request(workdir: Workdir, source, kind: str, value: str, paths) -> dict:
    """Records the request and returns it with the items it resolves to now (possibly none: the record
    still stops the path or patient from entering later)."""
    if kind not in KINDS:
        raise MedtrinityError(f"takedown kind {kind!r} is not one of {', '.join(KINDS)}")
    public = paths.public(value.strip("/")) if kind == "path" else value
    td = Takedowns(paths={public} if kind != "patient_key" else set(), patient_keys={value} if kind == "patient_key" else set())
    if kind == "path" and paths.identifying:
        td.paths.add(value.strip("/"))  # a folder of a hashed source: matched against private paths below
    items = set()
    for raw in _manifests(workdir, source.name, "raw").values():
        for row in raw.iter_rows(named=True):
            private = paths.private(row["relpath"]) if paths.identifying else row["relpath"]
            if td.covers(None, row["relpath"], private):
                items.add(row["item_id"])
    for normalized in _manifests(workdir, source.name, "normalized").values():
        if td.patient_keys:
            items |= set(normalized.filter(pl.col("patient_key").is_in(sorted(td.patient_keys)))["item_id"].to_list())
    rec = {"kind": kind, "value": public, "items": sorted(items)}
    path = record_path(workdir, source.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(rec, sort_keys=True) + "\n")
    return rec


def _delete(path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def remove(workdir: Workdir, source: str, items: set[str]) -> tuple[list[str], set[str]]:
    """Deletes the files derived from `items` (images, masks, previews, cached generations) and returns
    (one line per derived row or file removed — the reverse lineage —, the shards to re-materialize)."""
    report, shards = [], set()
    normalized = _manifests(workdir, source, "normalized")
    affected = {shard: df.filter(pl.col("item_id").is_in(sorted(items))) for shard, df in normalized.items()}
    affected = {shard: df for shard, df in affected.items() if df.height}
    kept_uris = {uri for shard, df in normalized.items() for row in df.filter(~pl.col("item_id").is_in(sorted(items))).iter_rows(named=True)
                 for uri in [row["image_uri"], *(m["uri"] for m in row["masks"] or [])]}
    image_hashes = set()
    for shard, df in affected.items():
        shards.add(shard)
        image_ids = set(df["image_id"].to_list())
        for stage, column in (("triplets", "triplet_id"), ("descriptions", "image_id"), ("context", "image_id"), ("rois", "roi_id")):
            path = workdir.manifest_path(source, stage, shard)
            if path.exists():
                rows = read_parquet(path).filter(pl.col("image_id").is_in(sorted(image_ids)))
                report += [f"{stage} {shard}: {value}" for value in rows[column].to_list()]
        for row in df.iter_rows(named=True):
            report.append(f"normalized {shard}: image {row['image_id']} (item {row['item_id']})")
            image_hashes.add(row["image_sha256"])
            for uri in [row["image_uri"], *(m["uri"] for m in row["masks"] or [])]:
                if uri not in kept_uris and _delete(workdir.resolve(uri)):
                    report.append(f"file {uri}")
            for preview in workdir.root.glob(f"previews/{source}/*/{row['image_id']}.png"):
                preview.unlink()
                report.append(f"file {preview.relative_to(workdir.root)}")
    raw = _manifests(workdir, source, "raw")
    shards |= {shard for shard, df in raw.items() if df.filter(pl.col("item_id").is_in(sorted(items))).height}
    cache = workdir.root / "cache" / "generations"
    for path in sorted(cache.rglob("*.json")) if cache.exists() else []:
        if json.loads(path.read_text()).get("image_sha256") in image_hashes:
            path.unlink()
            report.append(f"file {path.relative_to(workdir.root)} (cached generation)")
    return report, shards
