"""Walk one triplet back through every stage to its source file, using the private lineage index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.storage import Workdir, read_parquet

STAGES = ("triplets", "descriptions", "context", "rois", "normalized", "raw")


@dataclass(frozen=True)
class Step:
    stage: str
    source: str
    shard: str
    manifest: str
    summary: str


def _find(workdir: Workdir, triplet_id: str) -> dict:
    for path in sorted(workdir.lineage.glob("*/*.parquet"), key=str) if workdir.lineage.exists() else []:
        hit = read_parquet(path).filter(pl.col("triplet_id") == triplet_id)
        if hit.height:
            return hit.row(0, named=True)
    raise MedtrinityError(f"triplet {triplet_id} is not in the lineage index under {workdir.root}")


def _rows(workdir: Workdir, source: str, stage: str, shard: str, column: str, value: str) -> tuple[str, pl.DataFrame]:
    path = workdir.manifest_path(source, stage, shard)
    if not path.exists():
        raise MedtrinityError(f"manifest {path} is missing: re-run `medtrinity run` for source {source}")
    return str(path), read_parquet(path).filter(pl.col(column) == value)


def trace(workdir: Workdir, triplet_id: str) -> tuple[dict, list[Step]]:
    hit = _find(workdir, triplet_id)
    src, shard, image_id, item_id = hit["source"], hit["shard"], hit["image_id"], hit["item_id"]
    steps = []
    path, t = _rows(workdir, src, "triplets", shard, "triplet_id", triplet_id)
    steps.append(Step("triplets", src, shard, path, f"triplet {triplet_id}: {t['description'][0][:100]}..." if t.height else "row missing"))
    path, d = _rows(workdir, src, "descriptions", shard, "image_id", image_id)
    steps.append(Step("descriptions", src, shard, path, f"generator {d['generator'][0]} ({d['template_version'][0]}), cites {', '.join(d['cited_passages'][0]) or 'nothing'}" if d.height else "row missing"))
    path, c = _rows(workdir, src, "context", shard, "image_id", image_id)
    steps.append(Step("context", src, shard, path, f"queries {'; '.join(repr(q['query']) for q in c['queries'][0]) or 'none'}, knowledge base {c['kb_version'][0]}, passages {', '.join(p['passage_id'] + ' (' + p['finding'] + ')' for p in c['passages'][0]) or 'none'}" if c.height else "row missing"))
    path, r = _rows(workdir, src, "rois", shard, "image_id", image_id)
    steps.append(Step("rois", src, shard, path, f"{r.height} ROI(s): {', '.join(sorted(set(r['label'].to_list()))) or 'none'}"))
    path, n = _rows(workdir, src, "normalized", shard, "image_id", image_id)
    steps.append(Step("normalized", src, shard, path, f"image {image_id} -> {n['image_uri'][0]} ({n['width'][0]}x{n['height'][0]}), slice {n['slice_axis'][0] or '-'} {n['slice_index'][0] if n['slice_index'][0] is not None else ''}".rstrip() if n.height else "row missing"))
    path, w = _rows(workdir, src, "raw", shard, "item_id", item_id)
    steps.append(Step("raw", src, shard, path, f"item {item_id}: {w['relpath'][0]} sha256 {w['sha256'][0][:16]}..." if w.height else "row missing"))
    return hit, steps


def audit(workdir: Workdir, source: str, shard: str, sample: int = 20) -> tuple[int, list[str]]:
    """(triplets checked, problems): a sample of the shard's triplets (a stable one: by hash of the id)
    each traced through every stage's manifest to its source file, whose sha256 must still be the one the
    raw stage recorded. A problem names the triplet and what broke: a missing row, a vanished file, a
    changed file."""
    import hashlib

    from medtrinity_core.ids import sha256_file

    lineage = workdir.lineage_path(source, shard)
    if not lineage.exists():
        return 0, [f"no lineage index for {source} shard {shard}"]
    index = read_parquet(lineage)
    chosen = sorted(index.iter_rows(named=True), key=lambda r: hashlib.sha256(r["triplet_id"].encode()).hexdigest())[:sample]
    manifests = {stage: read_parquet(workdir.manifest_path(source, stage, shard)) if workdir.manifest_path(source, stage, shard).exists() else None
                 for stage in STAGES}
    keys = {"triplets": ("triplet_id", "triplet_id"), "descriptions": ("image_id", "image_id"), "context": ("image_id", "image_id"),
            "rois": ("image_id", "image_id"), "normalized": ("image_id", "image_id"), "raw": ("item_id", "item_id")}
    problems = []
    for row in chosen:
        for stage, (column, field) in keys.items():
            df = manifests[stage]
            if df is None or (stage != "rois" and df.filter(pl.col(column) == row[field]).is_empty()):
                problems.append(f"{row['triplet_id']}: no {stage} row for {field} {row[field]}")
        raw = manifests["raw"].filter(pl.col("item_id") == row["item_id"]) if manifests["raw"] is not None else pl.DataFrame()
        if raw.is_empty():
            continue
        path = Path(row["source_root"]) / row["source_relpath"]
        if not path.is_file():
            problems.append(f"{row['triplet_id']}: source file {row['source_relpath']} has vanished")
        elif sha256_file(path) != raw["sha256"][0]:
            problems.append(f"{row['triplet_id']}: source file {row['source_relpath']} changed since it was read (sha256 differs)")
    return len(chosen), problems
