"""Shard plans: which items belong to which partition, stable across re-runs and new files.

A plan is fixed once written: items already planned keep their shard, new items fill new shards,
so a shard's contents (and its outputs) never shift under a re-run.
"""

from __future__ import annotations

import json

from medtrinity_core.storage import Workdir, atomic_write_bytes

DEFAULT_DROP = "base"


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


def plan_path(workdir: Workdir, source: str):
    return workdir.plans / f"{source}.json"


def read_plan(workdir: Workdir, source: str) -> dict[str, list[str]]:
    path = plan_path(workdir, source)
    return json.loads(path.read_text()) if path.exists() else {}


def write_plan(workdir: Workdir, source: str, plan: dict[str, list[str]]) -> None:
    atomic_write_bytes(plan_path(workdir, source), json.dumps(plan, indent=1, sort_keys=True).encode())


def update_plan(workdir: Workdir, source) -> dict[str, list[str]]:
    """Plan every file the source's pattern selects under its own root (drop `base`; rejected files too:
    their shard quarantines them). The whole plan is returned."""
    from medtrinity_core.sources.drops import plan_drop

    plan_drop(workdir, source)
    return read_plan(workdir, source.name)
