"""Per-source counts across all shards: what `medtrinity run` prints at the end."""

from __future__ import annotations

import polars as pl

from medtrinity_core.quarantine import defects, items_in, read_quarantine
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir, read_parquet


def _count(workdir: Workdir, source: str, stage: str) -> int:
    folder = workdir.manifests / source / stage
    return sum(read_parquet(p).height for p in folder.glob("*.parquet")) if folder.exists() else 0


def summarize(workdir: Workdir, sources: list[SourceConfig]) -> pl.DataFrame:
    rows = []
    for src in sources:
        q = defects(read_quarantine(workdir, src.name))  # taken-down items are gone from the dataset, not defects
        rows.append(
            {
                "source": src.name,
                "modality": src.modality,
                "items": items_in(_count(workdir, src.name, "raw"), q),
                "images_2d": _count(workdir, src.name, "normalized"),
                "rois": _count(workdir, src.name, "rois"),
                "triplets": _count(workdir, src.name, "triplets"),
                "quarantined": q["item_id"].n_unique(),
                "triplets_path": str(workdir.manifests / src.name / "triplets"),
            }
        )
    return pl.DataFrame(rows)
