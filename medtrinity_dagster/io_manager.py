"""One IO manager for every manifest: Parquet through polars on a UPath (`file://` or `s3://`).

Paths follow the work-folder layout: `<base>/<source>/<stage>/<shard>.parquet`.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
from upath import UPath

from medtrinity_core.storage import read_parquet, write_parquet


class ParquetManifestIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pl.DataFrame, path: UPath) -> None:
        write_parquet(obj, path)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pl.DataFrame:
        if not path.exists():
            raise FileNotFoundError(f"upstream manifest {path} does not exist: materialize {'/'.join(context.asset_key.path)} for this shard first")
        return read_parquet(path)


class ManifestIOManager(dg.ConfigurableIOManagerFactory):
    base_dir: str

    def create_io_manager(self, context) -> ParquetManifestIOManager:
        return ParquetManifestIOManager(base_path=UPath(self.base_dir))
