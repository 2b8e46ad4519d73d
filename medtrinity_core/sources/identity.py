"""Paths that identify patients. For a source with `paths_identify_patients: true`, every path-bearing
field the pipeline writes (manifests, quarantine rows and their details, shard plans, metadata, preview
titles) holds a salted hash of the path instead, and ids are built from that hash, so a guessed path
cannot be tested against them. The hash -> path map lives in the private `lineage/` folder and the
stages resolve paths through it. Other sources keep their paths as they are."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import polars as pl

from medtrinity_core.ids import salted_hash
from medtrinity_core.sources.paths import escaped
from medtrinity_core.storage import Workdir, read_parquet, write_parquet

MAP = {"token": pl.String, "relpath": pl.String}
PREFIX = "path-"


class SourcePaths:
    """Public tokens for a source's relative paths, and the private map back."""

    def __init__(self, workdir: Workdir | None, source: str, identifying: bool, drop: str = "base"):
        self.workdir, self.source, self.identifying, self.drop = workdir, source, identifying, drop
        self.salt = workdir.salt() if identifying and workdir is not None else None
        self._to_path = self._read_map() if identifying else {}
        self._known = len(self._to_path)

    @classmethod
    def of(cls, workdir: Workdir | None, source) -> SourcePaths:
        return cls(workdir, source.name, bool(source.paths_identify_patients), source.drop)

    def _in_source(self, relpath: str) -> str:
        """A path under the drop's folder as the source knows it: `<drop>/<path>` outside the base drop,
        so two drops holding `img001.png` never share an id."""
        return relpath if self.drop == "base" else f"{self.drop}/{relpath}"

    def _read_map(self) -> dict[str, str]:
        if not self.map_path.exists():
            return {}
        table = read_parquet(self.map_path)
        return dict(zip(table["token"].to_list(), table["relpath"].to_list()))

    @property
    def map_path(self):
        return self.workdir.lineage / self.source / "paths" / "map.parquet"

    def public(self, relpath: str) -> str:
        """What may be written: the path itself, or its salted hash (remembered for `private`); a name
        that is not UTF-8 is escaped first (discovery has rejected it: it is never read)."""
        relpath = escaped(self._in_source(relpath))
        if not self.identifying:
            return relpath
        if self.salt is None:
            raise ValueError(f"source {self.source} identifies patients by its paths: a work folder (for the salt) is required")
        token = PREFIX + salted_hash(relpath, self.salt)
        self._to_path[token] = relpath
        return token

    def private(self, token: str) -> str:
        """The path (relative to the drop's folder) a public token stands for."""
        if self.identifying:
            try:
                token = self._to_path[token]
            except KeyError:
                raise KeyError(f"{token} is not in the private path map of source {self.source}") from None
        if self.drop == "base":
            return token
        prefix = f"{self.drop}/"
        if not token.startswith(prefix):
            raise KeyError(f"{token} is not a path of drop {self.drop} of source {self.source}")
        return token[len(prefix):]

    def scrub(self, text: str | None, relpaths: list[str]) -> str | None:
        """A message with each of these paths, and its file name, replaced by its token."""
        if not self.identifying or not text:
            return text
        for rel in sorted(relpaths, key=len, reverse=True):
            token = self.public(rel)
            text = text.replace(rel, token)
            name = PurePosixPath(rel).name
            if name:
                text = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])", token, text)
        return text

    def save(self) -> None:
        """Write the map when it gained entries (under the work folder's lock: runs may race)."""
        if not self.identifying or len(self._to_path) == self._known:
            return
        with self.workdir.lock(f"paths-{self.source}"):
            current = {**self._to_path, **self._read_map()}
            rows = sorted(current.items())
            write_parquet(pl.DataFrame({"token": [t for t, _ in rows], "relpath": [r for _, r in rows]}, schema=MAP), self.map_path)
            self._to_path, self._known = current, len(current)
