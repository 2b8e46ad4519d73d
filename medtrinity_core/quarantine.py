"""The quarantine table: every item a stage could not use, with a reason; never a silent drop."""

from __future__ import annotations

import polars as pl

from medtrinity_core.reasons import REASONS
from medtrinity_core.records import QUARANTINE
from medtrinity_core.storage import Workdir, read_parquet, write_parquet


def write_quarantine(workdir: Workdir, source: str, stage: str, shard: str, rows: pl.DataFrame) -> None:
    """Written even when empty, so a re-run that fixed an item clears its old row."""
    write_parquet(rows.select(list(QUARANTINE)), workdir.quarantine_path(source, stage, shard))


WITHDRAWN = tuple(r.name for r in REASONS.values() if r.withdrawn)  # ("taken_down",): removed on request: not a defect of the data, so outside the quarantine share
# Listed so that nothing matching `images` vanishes, but never data: macOS' `._x.png` beside every image
# of a copied folder must not push a source over its max_quarantine_share.
NOT_DATA = tuple(r.name for r in REASONS.values() if r.not_data)  # ("hidden_file",)


def defects(quarantined: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows for what was wrong with an item, without items withdrawn on request and files
    that are not data (hidden files)."""
    return quarantined.filter(~pl.col("reason").is_in([*WITHDRAWN, *NOT_DATA]))


def items_in(good_raw_rows: int, quarantined: pl.DataFrame) -> int:
    """Items a shard or source started with: inventoried ones plus those the raw stage quarantined."""
    return good_raw_rows + quarantined.filter(pl.col("stage") == "raw").height


def read_quarantine(workdir: Workdir, source: str | None = None, shard: str | None = None) -> pl.DataFrame:
    base = workdir.quarantine / source if source else workdir.quarantine
    pattern = f"**/{shard}.parquet" if shard else "**/*.parquet"
    frames = [read_parquet(p) for p in sorted(base.glob(pattern), key=str)] if base.exists() else []
    return pl.concat(frames) if frames else pl.DataFrame(schema=QUARANTINE)
