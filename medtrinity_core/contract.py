"""The stage contract and its runner (the registry of stages: medtrinity_core/pipeline.py).

A `Stage` is a record: its name, the manifests it reads, whether it applies to a source, the settings it
reads (its configuration, hashed into its code version with its implementation version and the version
of the stage before it), its output schema, the side outputs it writes, its Dagster pool, and
`run(ctx, inputs) -> StageResult`. A `StageResult` carries the rows, the rejections (quarantine rows with
reasons), named exclusions and metadata.

The runner (`run_stage`), not the stages, withdraws what a takedown covers, checks the accounting rule
(every key in = an output, a quarantine row, or a named exclusion) and writes the quarantine rows, for
every stage alike. Dagster's assets (medtrinity_dagster/factory.py) loop over `REGISTRY`; `run_chain`
runs the same chain in plain Python (tests, a notebook), as MONAI's `execute_compose(start, end)` runs
part of a `Compose`. A stage may stand in for another (`stands_for`): its manifest has that stage's schema
and every later stage reads it instead, which is how a stage is inserted mid-chain for some sources only.

Heavy imports (image libraries, Chroma, models) stay inside the stage bodies that need them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from medtrinity_core.accounting import account, account_images
from medtrinity_core.errors import MedtrinityError
from medtrinity_core.quarantine import read_quarantine, write_quarantine
from medtrinity_core.records import QUARANTINE, frame
from medtrinity_core.storage import Workdir

UNITS = {"item": "item_id", "image": "image_id", "path": "relpath"}  # what a stage's accounting counts, and the column naming it


@dataclass(frozen=True)
class Markdown:
    """A metadata value shown as Markdown (a preview image inline in the UI)."""

    text: str


@dataclass(frozen=True)
class FilePath:
    """A metadata value that is a file's path."""

    path: str


class Services(Protocol):
    """What stages borrow from their deployment: the knowledge base's settings and embedder, and the
    generator for a `GeneratorSpec` (Dagster resources in a run, `LocalServices` in plain Python)."""

    def knowledge_config(self): ...

    def embedder(self): ...

    def generator(self, spec): ...


@dataclass
class StageContext:
    """One stage on one shard: `source` as configured, `shard_source` as this shard reads it (a
    landing-zone drop's shard reads its drop's folder), the work folder, the source's chain of stages and
    the services."""

    source: Any
    shard_source: Any
    shard: str
    workdir: Workdir
    chain: tuple[Stage, ...]
    services: Services | None = None
    stage: str = ""

    @cached_property
    def upstream_quarantine(self) -> pl.DataFrame:
        """This shard's quarantine rows written by the stages before this one in the chain (read once per
        stage: the triplets stage and its accounting both ask)."""
        names = [s.name for s in self.chain[: [s.name for s in self.chain].index(self.stage)]] if self.stage else []
        q = read_quarantine(self.workdir, self.source.name, self.shard)
        return q.filter(pl.col("stage").is_in(names))


@dataclass
class StageResult:
    """What a stage produced: its rows (the manifest), rejections (quarantine rows with reasons), named
    exclusions (`accounting.EXCLUSIONS` -> unit keys) and metadata. `expected` and `produced` override
    the keys accounting reads from the input manifest and the rows (the raw stage reads a shard plan; the
    rois stage produces an image even when it finds no ROI on it)."""

    rows: pl.DataFrame
    rejected: pl.DataFrame | None = None
    excluded: dict[str, Iterable[str]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    expected: Iterable[str] | None = None
    produced: Iterable[str] | None = None


def _always(source) -> bool:
    return True


def _no_pool(source) -> str | None:
    return None


@dataclass(frozen=True)
class Stage:
    """One stage of the chain (module docstring)."""

    name: str
    reads: tuple[str, ...]  # the manifests it reads, by the stage that writes them (or one standing in for it)
    schema: Mapping[str, Any]  # its manifest's polars schema (records.py)
    unit: str  # what its accounting counts: item, image, or path (planned paths)
    run: Callable[[StageContext, dict[str, pl.DataFrame]], StageResult]
    settings: tuple[str, ...] = ()  # the source settings it reads beyond those of the stages before it
    version: str = "1"  # bumped when its code changes what it writes
    applies: Callable[[Any], bool] = _always  # a stage may exist for some sources only
    stands_for: str | None = None  # its manifest replaces that stage's for every later stage
    side_outputs: tuple[str, ...] = ()  # what it writes besides its manifest and quarantine rows
    pool: Callable[[Any], str | None] = _no_pool  # Dagster pool: "gpu" or None
    knowledge: bool = False  # depends on the knowledge base (re-runs on another knowledge base)
    held_upstream: bool = False  # items quarantined by earlier stages are accounted as held here (they never reach its rows)
    description: Callable[[Any], str] | str = ""
    asset_metadata: Callable[[Any], dict] | None = None  # metadata known before it runs (its generator)

    def describe(self, source) -> str:
        return self.description(source) if callable(self.description) else self.description

    def config(self, source) -> dict:
        """The settings it reads, as plain values: `key`, or `section.key` for one key of a section
        (descriptions hashes the faithfulness keys it acts on, not the whole section); a key the section
        has not (`expert.pattern` of a model expert) or a section the source leaves unset is null."""
        out = {}
        for key in self.settings:
            first, *rest = key.split(".")
            value = getattr(source, first)
            for part in rest:
                value = getattr(value, part, None)
            out[key] = _plain(value)
        return out


def _plain(value):
    """A setting as JSON-able plain values: models and dataclasses as mappings, paths as strings."""
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class Registry:
    """The ordered stages; a source's chain is the stages that apply to it, in this order."""

    def __init__(self, stages: Iterable[Stage]):
        self._stages = list(stages)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return tuple(self._stages)

    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._stages)

    def __getitem__(self, name: str) -> Stage:
        for stage in self._stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def register(self, stage: Stage, after: str) -> None:
        """Insert `stage` right after the stage named `after`."""
        if stage.name in self.names():
            raise ValueError(f"a stage named {stage.name} is already registered")
        if stage.stands_for and dict(stage.schema) != dict(self[stage.stands_for].schema):
            raise ValueError(f"{stage.name} stands for {stage.stands_for}, so it must write {stage.stands_for}'s schema")
        self._stages.insert(self.names().index(after) + 1, stage)

    def unregister(self, name: str) -> None:
        self._stages = [s for s in self._stages if s.name != name]

    @contextmanager
    def registered(self, stage: Stage, after: str) -> Iterator[Stage]:
        self.register(stage, after)
        try:
            yield stage
        finally:
            self.unregister(stage.name)

    def chain(self, source) -> tuple[Stage, ...]:
        return tuple(s for s in self._stages if s.applies(source))

    def provider(self, source, stage: Stage, name: str) -> Stage:
        """The stage whose manifest `stage` reads as `name`: the last one before it in the source's chain
        that is `name` or stands in for it."""
        chain = self.chain(source)
        before = chain[: chain.index(stage)]
        for candidate in reversed(before):
            if name in (candidate.name, candidate.stands_for):
                return candidate
        raise KeyError(f"{stage.name} reads {name}, which no stage before it writes for source {source.name}")

    def code_version(self, source, stage: str | Stage) -> str:
        """A hash of the stage's settings, its implementation version and the code version of the stage
        before it in the source's chain (so everything upstream), as Dagster's code version: a changed
        setting or implementation re-runs this stage and every later one, without a package bump."""
        chain = self.chain(source)
        stage = self[stage] if isinstance(stage, str) else stage
        i = chain.index(stage)
        upstream = self.code_version(source, chain[i - 1]) if i else ""
        data = {"stage": stage.name, "version": stage.version, "settings": stage.config(source), "upstream": upstream}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- the runner -----------------------------------------------------------------------------------------


def withdraw(ctx: StageContext, rows: pl.DataFrame, normalized: pl.DataFrame | None = None, taken=None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(kept, withdrawn): the rows a takedown request covers leave as `taken_down` quarantine rows
    (`takedown.Takedowns.withdraw`, the one place that filtering is written). Rows that name an image but
    not its item (rois, context, descriptions, triplets) are matched through `normalized`'s item, path
    and patient key of each image."""
    from medtrinity_core.sources.identity import SourcePaths
    from medtrinity_core.takedown import load

    empty = frame([], QUARANTINE)
    taken = taken if taken is not None else load(ctx.workdir, ctx.source.name)
    if rows.is_empty() or not (taken.items or taken.paths or taken.patient_keys):
        return rows, empty
    paths = SourcePaths.of(ctx.workdir, ctx.shard_source) if taken.paths else None
    private = paths.private if paths is not None and paths.identifying else None
    if "item_id" in rows.columns:
        return taken.withdraw(rows, ctx.source.name, ctx.stage, private)
    if "image_id" not in rows.columns or normalized is None:
        return rows, empty
    identity = [c for c in ("image_id", "item_id", "relpath", "patient_key") if c in normalized.columns]
    images = rows.select("image_id").unique(maintain_order=True).join(normalized.select(identity).unique("image_id"), on="image_id", how="inner")
    kept, withdrawn = taken.withdraw(images, ctx.source.name, ctx.stage, private)
    gone = set(images["image_id"].to_list()) - set(kept["image_id"].to_list())
    return (rows.filter(~pl.col("image_id").is_in(sorted(gone))) if gone else rows), withdrawn


def _accounted(stage: Stage, ctx: StageContext, inputs: dict[str, pl.DataFrame], result: StageResult, rejected: pl.DataFrame) -> dict[str, int]:
    """The accounting rule, for every stage alike (medtrinity_core/accounting.py)."""
    key = UNITS[stage.unit]
    produced = result.produced if result.produced is not None else result.rows[key]
    if stage.unit == "image":
        if "normalized" not in inputs:
            raise ValueError(f"stage {stage.name} counts images, so it must read the normalized manifest")
        normalized = inputs["normalized"]
        held = pl.concat([rejected, ctx.upstream_quarantine.select(list(QUARANTINE))]) if stage.held_upstream else rejected
        return account_images(stage.name, normalized, produced, held, result.excluded)
    expected = result.expected if result.expected is not None else inputs[stage.reads[0]][key]
    return account(stage.name, "item", expected, produced, rejected[key], result.excluded)


class SchemaMismatch(MedtrinityError):
    """A stage wrote rows of another shape than its record states: a bug in the stage, not bad data."""


def _check_schema(stage: Stage, rows: pl.DataFrame) -> None:
    """The rows have exactly the columns and types of the stage's output schema (records.py)."""
    got, want = dict(rows.schema), dict(stage.schema)
    if got != want:
        diff = sorted({*got, *want} - {k for k in got if want.get(k) == got[k]})
        shown = ", ".join(f"{k} ({got.get(k, 'missing')} vs {want.get(k, 'not in the schema')})" for k in diff[:5])
        raise SchemaMismatch(f"{stage.name}: its rows do not have its output schema: {shown}")


def run_stage(stage: Stage, ctx: StageContext, inputs: dict[str, pl.DataFrame]) -> StageResult:
    """Run one stage on one shard: what a takedown covers withdrawn from its inputs (so nothing of it
    reaches the stage's side outputs) and from its rows, the rest accounted against the inputs as read,
    its quarantine rows written (even when none, so a fixed item's old row is cleared), accounting and
    quarantine counts in its metadata. Raises `SchemaMismatch` when its rows are not of its schema and
    `UnaccountedError` when a key is lost (nothing written either way)."""
    from medtrinity_core.takedown import load

    ctx = dataclasses.replace(ctx, stage=stage.name)
    taken = load(ctx.workdir, ctx.source.name)  # read once per stage and shard
    normalized = inputs.get("normalized")
    kept, withdrawn = {}, []
    for name, rows in inputs.items():
        kept[name], q = withdraw(ctx, rows, normalized, taken)
        withdrawn.append(q)
    result = stage.run(ctx, kept)
    _check_schema(stage, result.rows)
    rows, q = withdraw(ctx, result.rows, normalized, taken)
    withdrawn = pl.concat([*withdrawn, q]).unique("item_id", keep="first", maintain_order=True)
    rejected = result.rejected.select(list(QUARANTINE)).cast(QUARANTINE) if result.rejected is not None else frame([], QUARANTINE)
    rejected = pl.concat([rejected, withdrawn]) if withdrawn.height else rejected
    if result.produced is not None and withdrawn.height:  # a withdrawn item is held, not produced
        gone = set(withdrawn["item_id"].to_list())
        if stage.unit == "image" and normalized is not None:
            gone = set(normalized.filter(pl.col("item_id").is_in(sorted(gone)))["image_id"].to_list())
        elif stage.unit == "path":
            gone = set(withdrawn["relpath"].to_list())
        result = dataclasses.replace(result, produced=[k for k in result.produced if k not in gone])
    result = dataclasses.replace(result, rows=rows, rejected=rejected)
    counts = _accounted(stage, ctx, inputs, result, rejected)
    write_quarantine(ctx.workdir, ctx.source.name, stage.name, ctx.shard, rejected)
    reasons = Counter(rejected["reason"].to_list())
    result.metadata = {"rows": rows.height, "quarantined": rejected.height, "quarantine_reasons": dict(sorted(reasons.items())), **result.metadata, **counts}
    return result
