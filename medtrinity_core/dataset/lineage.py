"""Walk one triplet back through every stage to its source file, using the private lineage index."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.storage import Workdir, read_parquet

KEYS = ("triplet_id", "image_id", "item_id")  # a stage's rows are found by the first of these its manifest has
MAY_BE_EMPTY = ("rois",)  # an image may have no ROI row


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


def _summary(stage: str, rows: pl.DataFrame, hit: dict) -> str:
    """One line on what a stage recorded for the triplet's image (a stage without its own line: its row count)."""
    if rows.is_empty() and stage not in MAY_BE_EMPTY:
        return "row missing"
    r = rows.row(0, named=True) if rows.height else {}
    if stage == "triplets":
        return f"triplet {hit['triplet_id']}: {r['description'][:100]}..."
    if stage == "descriptions":
        return f"generator {r['generator']} ({r['template_version']}), cites {', '.join(r['cited_passages']) or 'nothing'}"
    if stage == "context":
        queries = "; ".join(repr(q["query"]) for q in r["queries"]) or "none"
        passages = ", ".join(p["passage_id"] + " (" + p["finding"] + ")" for p in r["passages"]) or "none"
        return f"queries {queries}, knowledge base {r['kb_version']}, passages {passages}"
    if stage == "rois":
        return f"{rows.height} ROI(s): {', '.join(sorted(set(rows['label'].to_list()))) or 'none'}"
    if stage == "normalized":
        where = f"slice {r['slice_axis'] or '-'} {r['slice_index'] if r['slice_index'] is not None else ''}".rstrip()
        return f"image {hit['image_id']} -> {r['image_uri']} ({r['width']}x{r['height']}), {where}"
    if stage == "raw" or ("sha256" in r and "relpath" in r):
        return f"item {hit['item_id']}: {r['relpath']} sha256 {r['sha256'][:16]}..."
    return f"{rows.height} row(s)"


def _key(columns, hit: dict) -> str:
    return next(k for k in KEYS if k in columns and k in hit)


def trace(workdir: Workdir, triplet_id: str, chain_of) -> tuple[dict, list[Step]]:
    """The triplet's lineage row and one step per stage of its source's chain, last stage first.
    `chain_of(source name)`: that source's stage names in pipeline order (from pipeline.REGISTRY)."""
    hit = _find(workdir, triplet_id)
    src, shard = hit["source"], hit["shard"]
    steps = []
    for stage in reversed(tuple(chain_of(src))):
        path = workdir.manifest_path(src, stage, shard)
        if not path.exists():
            raise MedtrinityError(f"manifest {path} is missing: re-run `medtrinity run` for source {src}")
        df = read_parquet(path)
        key = _key(df.columns, hit)
        steps.append(Step(stage, src, shard, str(path), _summary(stage, df.filter(pl.col(key) == hit[key]), hit)))
    return hit, steps


def audit(workdir: Workdir, source: str, shard: str, chain: tuple[str, ...] | list[str], sample: int = 20) -> tuple[int, list[str]]:
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
                 for stage in chain}
    problems = []
    for row in chosen:
        for stage in reversed(tuple(chain)):
            df = manifests[stage]
            field = _key(df.columns, row) if df is not None else "item_id"
            if df is None or (stage not in MAY_BE_EMPTY and df.filter(pl.col(field) == row[field]).is_empty()):
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
