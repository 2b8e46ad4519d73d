"""Definitions from a sources file and a work folder: the knowledge base plus one asset chain per source."""

from __future__ import annotations

import warnings

import dagster as dg

from medtrinity_core.contract import Registry
from medtrinity_core.pipeline import REGISTRY
from medtrinity_core.sources.schema import SourcesFile
from medtrinity_core.storage import Workdir
from medtrinity_dagster.factory import source_assets
from medtrinity_dagster.io_manager import ManifestIOManager
from medtrinity_dagster.k8s import executor
from medtrinity_dagster.knowledge import build_knowledge_asset
from medtrinity_dagster.release import build_exports_asset
from medtrinity_dagster.resources import (
    GeneratorResource,
    KnowledgeResource,
    LandingResource,
    NoProgress,
    WorkdirResource,
)
from medtrinity_dagster.sensors import build_landing_sensor, sensor_interval

# The daemon's automation sensor, on by default: downstream stages follow a materialized raw shard.
AUTOMATION = dg.AutomationConditionSensorDefinition("medtrinity_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
                                                    minimum_interval_seconds=sensor_interval())

# Partitioned asset checks are a preview feature in Dagster 1.13; the design relies on them (checks run per shard).
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def build_definitions(sources: SourcesFile, workdir: str, progress: object | None = None, landing: str | None = None, registry: Registry | None = None) -> dg.Definitions:
    """The Definitions of a sources file on a work folder; `registry`: the stages (default REGISTRY)."""
    wd = Workdir.at(workdir)
    registry = registry or REGISTRY
    assets: list = [build_knowledge_asset(sources), build_exports_asset(sources)]
    asset_checks: list = []
    for src in sources.sources:
        stage_assets, stage_checks = source_assets(src, sources.retrieval.rerun_contexts, registry)
        assets += stage_assets
        asset_checks += stage_checks
    resources = {
        "workdir": WorkdirResource(root=str(wd.root)),
        "knowledge": KnowledgeResource.of(sources.retrieval),
        "generator": GeneratorResource(),
        "landing": LandingResource(root=landing or ""),
        "manifest_io": ManifestIOManager(base_dir=str(wd.manifests)),
        "progress": progress or NoProgress(),
    }
    return dg.Definitions(assets=assets, asset_checks=asset_checks, resources=resources, sensors=[build_landing_sensor(sources, registry), AUTOMATION],
                          executor=executor())
