"""The landing zone: `<landing>/<source>/<drop>/` folders, each a root for its source's patterns, picked
up once a `_READY` marker says the drop is complete. A drop is planned once into shards
`<drop>-NNNN` (`shards.plan_drop`) by the same function the command line uses for the source's own root
(drop `base`). This module names drops and finds them; it imports nothing of the planning."""

from __future__ import annotations

import os
import re
from pathlib import Path

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.sources.paths import escaped

DEFAULT_DROP = "base"  # the drop of the files under the source's own root
READY = "_READY"
DROP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]{0,62}\Z")  # no "-": shard keys are <drop>-NNNN
LANDING_ENV = "MEDTRINITY_LANDING"


def landing_root(value: str | None = None) -> Path | None:
    root = value or os.environ.get(LANDING_ENV)
    return Path(root) if root else None


def drop_of(shard: str) -> str:
    return shard.rsplit("-", 1)[0]


def for_drop(source, drop: str, landing: Path | None):
    """The source as one drop sees it: its patterns rooted at the drop's folder (reads stay inside it)."""
    if drop == DEFAULT_DROP:
        return source
    if landing is None:
        raise MedtrinityError(f"shard of drop {drop} of source {source.name}: no landing zone is configured ({LANDING_ENV})")
    return source.model_copy(update={"root": (landing / source.name / drop).resolve(), "drop": drop})


def for_shard(source, shard: str, landing: Path | None):
    return for_drop(source, drop_of(shard), landing)


def ready_drops(landing: Path, source: str) -> list[str]:
    """Drops of a source whose `_READY` marker exists, by name; half-written ones wait."""
    folder = landing / source
    if not folder.is_dir():
        return []
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and os.path.exists(os.path.join(e.path, READY)))


def scan(landing: Path, source_names: set[str], seen: set[str], limit: int) -> tuple[list[tuple[str, str]], list[str]]:
    """(new ready drops as (source, drop), up to `limit` of them; problems to report once): folders of
    unknown sources and badly named drops are reported, never planned. `seen` holds `source/drop` keys
    (and `?name` keys of folders already reported) of earlier ticks. Names that are not UTF-8 are
    escaped in keys (cursors and logs hold text); no such name is a source or a valid drop."""
    drops, problems = [], []
    for entry in sorted(os.scandir(landing), key=lambda e: e.name) if landing.is_dir() else []:
        if not entry.is_dir():
            continue
        if entry.name not in source_names:
            if f"?{escaped(entry.name)}" not in seen:
                problems.append(f"?{escaped(entry.name)}")
            continue
        for drop in ready_drops(landing, entry.name):
            key = f"{entry.name}/{escaped(drop)}"
            if key in seen:
                continue
            if not DROP_RE.match(drop):
                problems.append(key)
                continue
            drops.append((entry.name, drop))
            if len(drops) == limit:
                return drops, problems
    return drops, problems
