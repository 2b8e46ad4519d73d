"""The work folder: its layout, atomic writes, Parquet manifests and the content-addressed image store.

Paths are `UPath`s so `file://` (default) and `s3://` work alike; local writes go to a temp file
and are renamed into place, so a reader never sees half a manifest.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from upath import UPath

from medtrinity_core.ids import sha256_bytes

PNG_COMPRESS_LEVEL = 6
DAGSTER_YAML = """\
# Written by medtrinity: the embedded default (SQLite under this folder).
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1  # the one pool is `gpu` (expert models, the transformers generator): one step at a time
  runs:
    tag_concurrency_limits:  # at most two runs of one source at once (runs carry medtrinity/source)
      - key: medtrinity/source
        value:
          applyLimitPerUniqueValue: true
        limit: 2
"""


def as_upath(path: str | os.PathLike) -> UPath:
    return path if isinstance(path, UPath) else UPath(path)


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = as_upath(path)
    if not _is_local(path):  # object stores publish a PUT whole or not at all
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    local = Path(path.path)
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, local)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(df: pl.DataFrame, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    df.write_parquet(buf, compression="zstd", statistics=False)
    atomic_write_bytes(path, buf.getvalue())


def read_parquet(path: str | os.PathLike) -> pl.DataFrame:
    path = as_upath(path)
    with path.open("rb") as fh:
        return pl.read_parquet(fh)


def encode_png(array: np.ndarray) -> bytes:
    """8-bit PNG with no text chunks (nothing but pixels leaves the pipeline)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


@dataclass(frozen=True)
class Workdir:
    """One deployment's state; every command takes `--workdir` and resolves paths through this."""

    root: UPath

    @classmethod
    def at(cls, root: str | os.PathLike) -> Workdir:
        root = as_upath(root)
        if _is_local(root):
            root = UPath(Path(root.path).resolve())
        return cls(root)

    @property
    def dagster_home(self) -> Path:
        return Path(self.root.path) / "dagster"

    @property
    def manifests(self) -> UPath:
        return self.root / "manifests"

    @property
    def images(self) -> UPath:
        return self.root / "images"

    @property
    def chroma(self) -> Path:
        return Path(self.root.path) / "chroma"

    @property
    def quarantine(self) -> UPath:
        return self.root / "quarantine"

    @property
    def lineage(self) -> UPath:
        return self.root / "lineage"

    @property
    def plans(self) -> UPath:
        return self.root / "plans"

    def manifest_path(self, source: str, stage: str, shard: str) -> UPath:
        return self.manifests / source / stage / f"{shard}.parquet"

    def shard_manifests(self, source: str, stage: str) -> list[UPath]:
        """Every shard's manifest of one stage of a source, in shard order: the one glob over a stage."""
        return sorted(self.manifests.glob(f"{source}/{stage}/*.parquet"), key=str)

    def quarantine_path(self, source: str, stage: str, shard: str) -> UPath:
        return self.quarantine / source / stage / f"{shard}.parquet"

    def lineage_path(self, source: str, shard: str) -> UPath:
        return self.lineage / source / f"{shard}.parquet"

    def resolve(self, uri: str) -> UPath:
        """Work-folder URIs in manifests are relative (`images/ab/cd/<sha>.png`), so a folder can move."""
        return self.root / uri

    def ensure(self) -> Workdir:
        home = self.dagster_home
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "dagster.yaml").exists():
            atomic_write_bytes(home / "dagster.yaml", DAGSTER_YAML.encode())
        return self

    def lock(self, name: str):
        """An inter-process lock for read-modify-write state shared by runs on this work folder (the UI
        and the command line, two launches): the salt, shard plans, the dedup index. With a Postgres
        instance (`$DAGSTER_HOME/dagster.yaml` or `DIR/dagster/dagster.yaml` naming Postgres storage) an
        advisory lock on that server, which serializes every machine that shares it; otherwise a file
        under `locks/` (for an object-store work folder, on this machine only)."""
        from filelock import FileLock

        from medtrinity_core.pglock import AdvisoryLock, postgres_params

        home = Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME") else self.dagster_home  # the chart's, on Kubernetes
        if params := postgres_params(home / "dagster.yaml") or postgres_params(self.dagster_home / "dagster.yaml"):
            return AdvisoryLock(params, str(self.root), name)
        if _is_local(self.root):
            folder = Path(self.root.path) / "locks"
        else:
            folder = Path(tempfile.gettempdir()) / "medtrinity-locks" / sha256_bytes(str(self.root).encode())[:16]
        folder.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder / f"{name}.lock"))

    def salt(self) -> str:
        """Per-deployment salt for patient-identifying values: env var, else a secret kept in the work
        folder, created once under the lock so concurrent runs agree on it."""
        if env := os.environ.get("MEDTRINITY_SALT"):
            return env
        path = self.root / "secret" / "salt"
        if not path.exists():
            with self.lock("salt"):
                if not path.exists():
                    atomic_write_bytes(path, secrets.token_hex(32).encode())
        return path.read_text().strip()

    def put_png(self, array: np.ndarray) -> tuple[str, str]:
        """Write once, content-addressed; returns (relative uri, sha256 of the PNG bytes)."""
        data = encode_png(array)
        digest = sha256_bytes(data)
        uri = f"images/{digest[:2]}/{digest[2:4]}/{digest}.png"
        target = self.resolve(uri)
        if not target.exists():
            atomic_write_bytes(target, data)
        return uri, digest

    def read_png(self, uri: str) -> np.ndarray:
        with self.resolve(uri).open("rb") as fh:
            return np.asarray(Image.open(fh))
