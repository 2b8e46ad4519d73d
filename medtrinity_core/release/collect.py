"""The rows of an export: every source's triplets from the work folder, filtered by licence group,
licence ids, faithfulness and source, each given its split. Sorted by triplet id, so an export of
unchanged triplets is the same bytes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.quarantine import read_quarantine
from medtrinity_core.release.licenses import GROUPS, allowed
from medtrinity_core.release.splits import DEFAULT_FRACTIONS, split_key, split_of
from medtrinity_core.storage import Workdir, read_parquet
from medtrinity_core.takedown import load as load_takedowns


@dataclass(frozen=True)
class Filters:
    license_group: str = "all"
    licenses: tuple[str, ...] = ()  # explicit SPDX ids; empty: any in the group
    min_faithfulness: float | None = None
    sources: tuple[str, ...] = ()  # empty: every source in the sources file
    fractions: tuple[tuple[str, float], ...] = DEFAULT_FRACTIONS

    def __post_init__(self):
        if self.license_group not in GROUPS:
            raise MedtrinityError(f"licence group {self.license_group!r} is not one of {', '.join(GROUPS)}")


@dataclass
class Collection:
    rows: list[dict]
    dropped: Counter = field(default_factory=Counter)  # why rows were left out (licence, faithfulness)
    quarantine: dict = field(default_factory=dict)  # reason -> items, over the exported sources
    decontaminated: dict = field(default_factory=dict)  # source -> images removed as benchmark duplicates


def collect(workdir: Workdir, source_names: list[str], filters: Filters) -> Collection:
    names = [n for n in source_names if not filters.sources or n in filters.sources]
    unknown = sorted(set(filters.sources) - set(source_names))
    if unknown:
        raise MedtrinityError(f"--source {unknown[0]} is not a source of the sources file")
    rows, dropped, decontaminated = [], Counter(), {}
    for name in names:
        taken = load_takedowns(workdir, name)
        for path in sorted(workdir.manifests.glob(f"{name}/triplets/*.parquet"), key=str):
            for row in read_parquet(path).iter_rows(named=True):
                if taken.covers(row["provenance"]["item_id"], row["provenance"]["source_relpath"]) or row["provenance"].get("patient_key") in taken.patient_keys:
                    dropped["taken down"] += 1
                elif not allowed(row["license"], filters.license_group):
                    dropped[f"licence group {filters.license_group}"] += 1
                elif filters.licenses and row["license"] not in filters.licenses:
                    dropped["licence not listed"] += 1
                elif filters.min_faithfulness is not None and (row["faithfulness"] or 0.0) < filters.min_faithfulness:
                    dropped["under min_faithfulness"] += 1
                else:
                    rows.append({**row, "split": split_of(split_key(row["provenance"]), filters.fractions)})
        normalized = [read_parquet(p) for p in sorted(workdir.manifests.glob(f"{name}/normalized/*.parquet"), key=str)]
        if normalized:
            decontaminated[name] = int(pl.concat(normalized, how="vertical_relaxed").filter(pl.col("duplicate_kind") == "benchmark").height)
    if not rows:
        raise MedtrinityError(f"no triplets to export under {workdir.root} for {', '.join(names) or 'no source'} with these filters"
                              + (f" ({dict(dropped)})" if dropped else "") + ": run `medtrinity run` first")
    quarantine = read_quarantine(workdir)
    quarantine = quarantine.filter(pl.col("source").is_in(names))
    reasons = dict(sorted(Counter(quarantine.unique(["item_id", "reason"])["reason"].to_list()).items()))
    return Collection(sorted(rows, key=lambda r: r["triplet_id"]), dropped, reasons, decontaminated)
