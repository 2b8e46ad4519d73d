"""The rows of an export: every source's triplets from the work folder, filtered by licence group,
licence ids, faithfulness and source, each given its split. Sorted by triplet id, so an export of
unchanged triplets is the same bytes.

The pipeline's gates hold here too (gates.py): a partition a blocking check failed on, or whose checks
never ran on its current manifests, is left out whole, and so is any row in which the export's own
patient-data scan finds something — unless `include_failed_checks` (a person reviewed them). Either way
each such partition is one `Gate` in the collection, which the command prints and the card records."""

from __future__ import annotations

import io
import math
from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from medtrinity_core.errors import MedtrinityError, UsageError
from medtrinity_core.ids import sha256_bytes
from medtrinity_core.quarantine import read_quarantine
from medtrinity_core.release.gates import Gate, partition_gates, row_findings
from medtrinity_core.release.licenses import GROUPS, allowed
from medtrinity_core.release.splits import (
    DEFAULT_FRACTIONS,
    check_fractions,
    split_key,
    split_of,
)
from medtrinity_core.storage import Workdir, read_parquet
from medtrinity_core.takedown import load as load_takedowns


@dataclass(frozen=True)
class Filters:
    license_group: str = "all"
    licenses: tuple[str, ...] = ()  # explicit SPDX ids; empty: any in the group
    min_faithfulness: float | None = None
    min_completeness: float | None = None
    sources: tuple[str, ...] = ()  # empty: every source in the sources file
    fractions: tuple[tuple[str, float], ...] = DEFAULT_FRACTIONS
    include_failed_checks: bool = False  # export rows the checks or the export's scan flagged (a person reviewed them)

    def __post_init__(self):
        if self.license_group not in GROUPS:
            raise MedtrinityError(f"licence group {self.license_group!r} is not one of {', '.join(GROUPS)}")
        for what, m in (("faithfulness", self.min_faithfulness), ("completeness", self.min_completeness)):
            if m is not None and (isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or not 0.0 <= m <= 1.0):
                raise UsageError(f"min {what} (--min-{what}) must be a number from 0 to 1, not {m}")
        try:
            check_fractions(self.fractions)
        except ValueError as exc:
            raise UsageError(str(exc)) from None


class NothingToExport(MedtrinityError):
    """No row is left to export. `lines` are the lines of every gate that held rows back (the command
    prints each before the error, which names the first)."""

    def __init__(self, message: str, lines: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        self.lines = list(lines)


@dataclass
class Collection:
    rows: list[dict]
    dropped: Counter = field(default_factory=Counter)  # why rows were left out (licence, faithfulness, completeness)
    quarantine: dict = field(default_factory=dict)  # reason -> items, over the exported sources
    decontaminated: dict = field(default_factory=dict)  # source -> images removed as benchmark duplicates
    gates: list[Gate] = field(default_factory=list)  # partitions (or rows) the checks or the scan did not vouch for
    included_failed: bool = False  # True: those rows are in the export (include_failed_checks)

    def gate_lines(self) -> list[str]:
        return [g.line(self.included_failed) for g in self.gates]


def _filtered(row: dict, filters: Filters) -> str | None:
    """Why the user's filters leave a row out; None when they keep it."""
    if not allowed(row["license"], filters.license_group):
        return f"licence group {filters.license_group}"
    if filters.licenses and row["license"] not in filters.licenses:
        return "licence not listed"
    if filters.min_faithfulness is not None and (row["faithfulness"] or 0.0) < filters.min_faithfulness:
        return "under min_faithfulness"
    if filters.min_completeness is not None and (row.get("completeness") or 0.0) < filters.min_completeness:
        return "under min_completeness"
    return None


def _scan_gate(name: str, shard: str, flagged: list[tuple[dict, list[str]]]) -> Gate:
    """The export's patient-data scan over one partition: how many rows it flagged, the first finding."""
    row, found = flagged[0]
    more = sum(len(f) for _, f in flagged) - 1
    detail = f"{found[0]}{f' and {more} more' if more else ''} ({len(flagged)} row(s), e.g. {row['triplet_id']})"
    return Gate(name, shard, "patient_data_scan", "found", detail, rows=len(flagged), examples=[r["triplet_id"] for r, _ in flagged])


def _readable(path) -> pl.DataFrame | None:
    """A normalized manifest for the card's counts; a damaged one counts nothing (its triplets say more)."""
    try:
        return read_parquet(path)
    except (OSError, pl.exceptions.PolarsError):
        return None


def collect(workdir: Workdir, source_names: list[str], filters: Filters) -> Collection:
    names = [n for n in source_names if not filters.sources or n in filters.sources]
    unknown = sorted(set(filters.sources) - set(source_names))
    if unknown:
        raise MedtrinityError(f"--source {unknown[0]} is not a source of the sources file")
    rows, dropped, decontaminated, gates = [], Counter(), {}, []
    include = filters.include_failed_checks
    for name in names:
        taken = load_takedowns(workdir, name)
        for path in workdir.shard_manifests(name, "triplets"):
            shard = path.name[: -len(".parquet")]
            try:
                data = path.read_bytes()  # the bytes read are the bytes whose digest the triplets check must have judged
                table = pl.read_parquet(io.BytesIO(data))
                if "provenance" not in table.columns:
                    raise ValueError("it is not a triplets manifest (no provenance column)")
            except (OSError, ValueError, pl.exceptions.PolarsError) as exc:  # one damaged shard leaves itself out, not the export
                gates.append(Gate(name, shard, "manifest", "unreadable", f"{type(exc).__name__}: {exc}".splitlines()[0][:200]))
                dropped["unreadable manifest"] += 1
                continue
            partition = []
            for row in table.iter_rows(named=True):
                if taken.why(row["provenance"]["item_id"], row["provenance"]["source_relpath"], patient_key=row["provenance"].get("patient_key")):
                    dropped["taken down"] += 1
                else:
                    partition.append(row)
            if not partition:
                continue
            held = partition_gates(workdir, name, shard, sha256_bytes(data))
            if held and not include:
                dropped["blocking check failed" if any(g.status == "failed" for g in held) else "checks not run on the current manifests"] += len(partition)
                for g in held:
                    g.rows = len(partition)
                gates += held
                continue
            kept, flagged = [], []
            for row in partition:
                reason = _filtered(row, filters)
                if reason:
                    dropped[reason] += 1
                    continue
                found = row_findings(row)
                if found:
                    flagged.append((row, found))
                    if not include:
                        dropped["patient data found at export"] += 1
                        continue
                kept.append({**row, "split": split_of(split_key(row["provenance"]), filters.fractions)})
            for g in held:  # included: the rows of this partition that the filters kept
                g.rows = len(kept)
            gates += held
            if flagged:
                gates.append(_scan_gate(name, shard, flagged))
            rows += kept
        normalized = [df for p in workdir.shard_manifests(name, "normalized") if (df := _readable(p)) is not None]
        if normalized:
            decontaminated[name] = int(pl.concat(normalized, how="vertical_relaxed").filter(pl.col("duplicate_kind") == "benchmark").height)
    if not rows:
        held, lines = "", []
        if gates and not include:
            lines = [g.line(False) for g in gates]
            held = f"; {lines[0]}{f' (and {len(lines) - 1} more)' if len(lines) > 1 else ''}; --include-failed-checks exports reviewed ones"
        raise NothingToExport(f"no triplets to export under {workdir.root} for {', '.join(names) or 'no source'} with these filters"
                              + (f" ({dict(dropped)})" if dropped else "") + held + ": run `medtrinity run` first", lines)
    quarantine = read_quarantine(workdir)
    quarantine = quarantine.filter(pl.col("source").is_in(names))
    reasons = dict(sorted(Counter(quarantine.unique(["item_id", "reason"])["reason"].to_list()).items()))
    return Collection(sorted(rows, key=lambda r: r["triplet_id"]), dropped, reasons, decontaminated, gates, include)
