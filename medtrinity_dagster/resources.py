"""Resources: the work folder, the embedder, and an optional progress reporter (the CLI's bars)."""

from __future__ import annotations

from typing import Protocol

import dagster as dg

from medtrinity_core.knowledge.embed import LocalEmbedder
from medtrinity_core.storage import Workdir


class WorkdirResource(dg.ConfigurableResource):
    """The deployment's work folder (`--workdir`); manifests, images, Chroma and quarantine live under it."""

    root: str

    def get(self) -> Workdir:
        return Workdir.at(self.root)


class EmbedderResource(dg.ConfigurableResource):
    """A local sentence-transformers directory; empty means the bundled all-MiniLM-L6-v2."""

    model_dir: str = ""

    def get(self) -> LocalEmbedder:
        return LocalEmbedder(self.model_dir or None)


class Progress(Protocol):
    def advance(self, source: str, stage: str, items: int) -> None: ...


class NoProgress:
    """Runs launched from the UI report progress through Dagster's own events."""

    def advance(self, source: str, stage: str, items: int) -> None:
        return None
