"""Shard plans: which items belong to which partition, stable across re-runs and new files.

A drop is discovered once, when it is planned. Each shard's plan is a Parquet file of its own,
`plans/<source>/<shard>.parquet`, written once: one row per planned file (public path) with what
discovery found for it, an item (kind, format, annotation files, labels) or a rejection (reason,
detail). A raw partition reads its own shard's file only, so its work grows with the shard, not the
source. Items already planned keep their shard; new files fill new shards.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.reasons import DISCOVERY_ERROR, MISSING
from medtrinity_core.records import PLAN, frame
from medtrinity_core.sources.drops import DEFAULT_DROP, DROP_RE, drop_of, for_drop
from medtrinity_core.sources.paths import escaped
from medtrinity_core.sources.patterns import images_pattern
from medtrinity_core.storage import Workdir, read_parquet, write_parquet


def shard_key(drop: str, number: int) -> str:
    return f"{drop}-{number:04d}"


def extend_plan(plan: dict[str, list[str]], relpaths: list[str], shard_size: int, drop: str = DEFAULT_DROP) -> dict[str, list[str]]:
    planned = {rel for rels in plan.values() for rel in rels}
    new = sorted(set(relpaths) - planned)
    out = {k: list(v) for k, v in plan.items()}
    numbers = [int(k.rsplit("-", 1)[1]) for k in out if k.startswith(f"{drop}-")]
    next_number = max(numbers, default=-1) + 1
    for start in range(0, len(new), shard_size):
        out[shard_key(drop, next_number)] = new[start : start + shard_size]
        next_number += 1
    return out


def plan_folder(workdir: Workdir, source: str):
    return workdir.plans / source


def shard_plan_path(workdir: Workdir, source: str, shard: str):
    return plan_folder(workdir, source) / f"{shard}.parquet"


def planned_shard(workdir: Workdir, source: str, shard: str) -> pl.DataFrame:
    """One shard's plan entries: all a raw partition reads of the plan."""
    path = shard_plan_path(workdir, source, shard)
    if not path.exists():
        raise MedtrinityError(f"shard {shard} of source {source} has no plan file {path}")
    return read_parquet(path)


def read_plan(workdir: Workdir, source: str) -> dict[str, list[str]]:
    """Every shard of the source with its planned (public) paths: read when planning, never by a partition."""
    folder = plan_folder(workdir, source)
    if not folder.exists():
        return {}
    plan = {}
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if path.name.endswith(".parquet"):
            with path.open("rb") as fh:
                plan[path.name[: -len(".parquet")]] = pl.read_parquet(fh, columns=["relpath"])["relpath"].to_list()
    return plan


def plan_entries(source, paths=None) -> pl.DataFrame:
    """What discovery finds under the source's (or drop's) root, as plan rows with public paths: every
    file the pattern selects, an item or a rejection (hidden files and names that are not UTF-8
    included, escaped). A discovery that fails as a whole (a labels CSV that cannot be read) rejects
    every file the image pattern selects, with its reason."""
    from medtrinity_core.errors import ItemError
    from medtrinity_core.sources.discover import Rejected, discover, source_files
    from medtrinity_core.sources.identity import SourcePaths
    from medtrinity_core.sources.paths import escaped, undecodable

    paths = paths or SourcePaths(None, source.name, False)
    try:
        items, rejected = discover(source)
    except (ItemError, OSError, ValueError, pl.exceptions.PolarsError) as exc:
        reason, detail = (exc.reason, exc.detail) if isinstance(exc, ItemError) else (DISCOVERY_ERROR, f"{type(exc).__name__}: {exc}"[:300])
        (files, rejected), items = source_files(source), []
        image_re = images_pattern(source)
        rejected += [Rejected(rel, reason, f"discovery failed: {detail}") for rel in files if image_re.fullmatch(rel) and not undecodable(rel)]
    rows = [{"relpath": paths.public(i.relpath), "kind": i.kind, "format": i.format, "labels": list(i.labels),
             "annotations": [{"relpath": paths.public(a.relpath), "label": a.label, "kind": a.kind, "threshold": a.threshold,
                              "value": a.value, "match": a.match} for a in i.annotations]} for i in items]
    # details quote exceptions and file names: escaped, so no byte that is not UTF-8 reaches Parquet
    rows += [{"relpath": paths.public(escaped(r.relpath)), "reason": r.reason,
              "detail": paths.scrub(escaped(r.detail), [escaped(r.relpath), *r.related])} for r in rejected]
    return frame(rows, PLAN)


def write_shards(workdir: Workdir, source: str, plan: dict[str, list[str]], entries: pl.DataFrame) -> None:
    """Write each shard of `plan` that has no file yet, from this planning's entries (a shard is never
    rewritten); a planned path that discovery no longer finds is planned as `missing`."""
    by_path = {row["relpath"]: row for row in entries.iter_rows(named=True)}
    for shard, tokens in plan.items():
        path = shard_plan_path(workdir, source, shard)
        if path.exists():
            continue
        rows = [by_path.get(t) or {"relpath": t, "reason": MISSING, "detail": f"{t} was planned but no longer matches a file"} for t in tokens]
        write_parquet(frame(rows, PLAN), path)


def plan_drop(workdir: Workdir, source, drop: str = DEFAULT_DROP, landing: Path | None = None) -> dict[str, list[str]]:
    """The shards of one drop, discovered once, here: each new shard's entries are written to its own
    plan file (planning again gives the same shards: items already planned keep theirs, an item is never
    split). Returns the drop's shards only."""
    from medtrinity_core.sources.identity import SourcePaths

    if drop != DEFAULT_DROP and not DROP_RE.match(drop):
        raise MedtrinityError(f"drop folder {escaped(drop)!r}: names are letters, digits, '_' and '.' (no '-': shard keys are <drop>-NNNN)")
    dropped = for_drop(source, drop, landing)
    paths = SourcePaths.of(workdir, dropped)  # plans hold public paths: <drop>/<path>, salted where paths identify patients
    entries = plan_entries(dropped, paths)
    paths.save()
    with workdir.lock(f"plan-{source.name}"):  # read-modify-write: a concurrent run must not lose shards
        earlier = read_plan(workdir, source.name)
        plan = {k: v for k, v in extend_plan(earlier, entries["relpath"].to_list(), source.shard_size, drop).items() if drop_of(k) == drop}
        write_shards(workdir, source.name, plan, entries)
    return plan


def update_plan(workdir: Workdir, source) -> dict[str, list[str]]:
    """Plan every file the source's pattern selects under its own root (drop `base`; rejected files too:
    their shard quarantines them). The whole plan is returned."""
    plan_drop(workdir, source)
    return read_plan(workdir, source.name)
