"""Partitions as objects: one dynamic partition set of shards per source (`<slug>__shards`), the same
object for the assets, their checks, the landing-zone sensor and the CLI."""

from __future__ import annotations

import dagster as dg


class SourceShards:
    """Each source's `DynamicPartitionsDefinition`, created once per process and shared by name."""

    def __init__(self) -> None:
        self._defs: dict[str, dg.DynamicPartitionsDefinition] = {}

    @staticmethod
    def name(source) -> str:
        return f"{source.slug}__shards"

    def of(self, source) -> dg.DynamicPartitionsDefinition:
        name = self.name(source)
        if name not in self._defs:
            self._defs[name] = dg.DynamicPartitionsDefinition(name=name)
        return self._defs[name]

    def add(self, instance: dg.DagsterInstance, source, shards) -> None:
        """Register the shards the instance does not have yet."""
        missing = [k for k in shards if not instance.has_dynamic_partition(self.name(source), k)]
        if missing:
            instance.add_dynamic_partitions(self.name(source), missing)


SHARDS = SourceShards()


partitions_name = SHARDS.name  # `<slug>__shards`, the name a source's partitions go by
