"""Resources: the work folder, the knowledge settings (embedder, chunking, store), and an optional
progress reporter (the CLI's bars)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import dagster as dg

from medtrinity_core.knowledge.embed import Embedder
from medtrinity_core.knowledge.store import embedder_for
from medtrinity_core.sources.schema import GeneratorSpec, RetrievalConfig
from medtrinity_core.storage import Workdir


class WorkdirResource(dg.ConfigurableResource):
    """The deployment's work folder (`--workdir`); manifests, images, Chroma and quarantine live under it."""

    root: str

    def get(self) -> Workdir:
        return Workdir.at(self.root)


_RETRIEVAL = RetrievalConfig()  # the defaults, stated once in the sources file's model


class KnowledgeResource(dg.ConfigurableResource):
    """The sources file's `retrieval:` settings: the embedder folder (empty: the bundled all-MiniLM-L6-v2)
    and its prefixes, passage chunking, and the Chroma server (empty: embedded in the work folder)."""

    model_dir: str = ""
    query_prefix: str = ""
    passage_prefix: str = ""
    max_tokens: int = _RETRIEVAL.max_tokens
    overlap_tokens: int = _RETRIEVAL.overlap_tokens
    server: str = ""
    token_env: str = ""
    collection: str = _RETRIEVAL.collection

    @classmethod
    def of(cls, cfg: RetrievalConfig) -> KnowledgeResource:
        return cls(model_dir=str(cfg.model_dir or ""), query_prefix=cfg.query_prefix, passage_prefix=cfg.passage_prefix, max_tokens=cfg.max_tokens,
                   overlap_tokens=cfg.overlap_tokens, server=cfg.server or "", token_env=cfg.token_env or "", collection=cfg.collection)

    def config(self) -> RetrievalConfig:
        return RetrievalConfig(
            model_dir=Path(self.model_dir) if self.model_dir else None, query_prefix=self.query_prefix, passage_prefix=self.passage_prefix,
            max_tokens=self.max_tokens, overlap_tokens=self.overlap_tokens, server=self.server or None, token_env=self.token_env or None, collection=self.collection,
        )

    def embedder(self) -> Embedder:
        return embedder_for(self.config())


class GeneratorResource(dg.ConfigurableResource):
    """Writes descriptions: the backend each source names (`generator:`), one instance per configuration
    and process, so a model loads once."""

    def get(self, spec: GeneratorSpec):
        from medtrinity_core.describe.stage import make_generator

        return make_generator(spec)


class LandingResource(dg.ConfigurableResource):
    """The landing zone: `<root>/<source>/<drop>/` folders the `landing_zone` sensor picks up once they
    hold `_READY` (default: the MEDTRINITY_LANDING environment variable; empty: no landing zone)."""

    root: str = ""

    def path(self) -> Path | None:
        from medtrinity_core.sources.drops import landing_root

        return landing_root(self.root or None)


class Progress(Protocol):
    def advance(self, source: str, stage: str, items: int) -> None: ...


class NoProgress:
    """Runs launched from the UI report progress through Dagster's own events."""

    def advance(self, source: str, stage: str, items: int) -> None:
        return None
