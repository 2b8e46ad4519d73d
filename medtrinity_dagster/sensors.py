"""The landing-zone sensor: a ready drop (`<landing>/<source>/<drop>/_READY`) is planned into shard
partitions `<drop>-NNNN`, which are added, and one run is requested per shard with a run key, so a drop
is processed once even when the sensor or the daemon restarts. The cursor records whole drops."""

from __future__ import annotations

import json
import os

import dagster as dg

from medtrinity_core.pipeline import REGISTRY
from medtrinity_core.sources.drops import scan
from medtrinity_core.sources.schema import SourcesFile
from medtrinity_core.sources.shards import plan_drop
from medtrinity_dagster.knowledge import KNOWLEDGE_KEY
from medtrinity_dagster.partitions import SHARDS
from medtrinity_dagster.resources import LandingResource, WorkdirResource

DROPS_PER_TICK = 20
INTERVAL_ENV = "MEDTRINITY_SENSOR_INTERVAL"


def sensor_interval() -> int:
    """Seconds between the daemon's evaluations of the landing-zone and automation sensors: 30, or
    MEDTRINITY_SENSOR_INTERVAL (the daemon-and-webserver test uses 5)."""
    return max(1, int(os.environ.get(INTERVAL_ENV, "30")))


def _requested(chain, has_knowledge: bool) -> list[str]:
    """The stages a drop's run materializes: its source's whole chain, or (until the knowledge base
    exists) the stages before the first that needs it; automation carries each shard on from there."""
    names = [s.name for s in chain]
    first = next((i for i, s in enumerate(chain) if s.knowledge), len(chain))
    return names if has_knowledge else names[:first]


def build_landing_sensor(sources: SourcesFile, registry=REGISTRY) -> dg.SensorDefinition:
    by_name = {s.name: s for s in sources.sources}
    selection = dg.AssetSelection.assets(*[dg.AssetKey([s.name, stage.name]) for s in sources.sources for stage in registry.chain(s)])

    @dg.sensor(name="landing_zone", asset_selection=selection, minimum_interval_seconds=sensor_interval(), default_status=dg.DefaultSensorStatus.RUNNING,
               description="Plans each ready drop of the landing zone into shard partitions and requests their runs")
    def landing_zone(context: dg.SensorEvaluationContext, workdir: WorkdirResource, landing: LandingResource):
        root = landing.path()
        if root is None or not root.is_dir():
            return dg.SkipReason(f"no landing zone (set MEDTRINITY_LANDING); looked at {root}")
        seen = set(json.loads(context.cursor or "[]"))
        drops, problems = scan(root, set(by_name), seen, DROPS_PER_TICK)
        wd = workdir.get()
        # Until the knowledge base exists (automation builds it when missing), a drop's run stops before
        # `context`, and automation carries each shard on from there once it is built.
        has_knowledge = context.instance.get_latest_materialization_event(KNOWLEDGE_KEY) is not None
        requests, partitions = [], []
        for name, drop in drops:
            src = by_name[name]
            try:
                shards = sorted(plan_drop(wd, src, drop, root))
            except Exception as exc:  # noqa: BLE001 - one bad drop is reported, the others go on
                context.log.warning(f"drop {name}/{drop} could not be planned: {exc}")
                seen.add(f"{name}/{drop}")
                continue
            seen.add(f"{name}/{drop}")
            if not shards:
                context.log.warning(f"drop {name}/{drop} holds no file matching the source's patterns: nothing to run")
                continue
            partitions.append(SHARDS.of(src).build_add_request(shards))
            keys = [dg.AssetKey([name, stage]) for stage in _requested(registry.chain(src), has_knowledge)]
            requests += [dg.RunRequest(run_key=f"{name}:{shard}", partition_key=shard, asset_selection=keys, tags={"medtrinity/source": name})
                         for shard in shards]
        for problem in problems:
            what = f"folder {problem[1:]} names no source of the sources file" if problem.startswith("?") else f"drop {problem}: a drop name is letters, digits, '_' and '.'"
            context.log.warning(f"landing zone: {what}; not retried")
            seen.add(problem)
        return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=partitions, cursor=json.dumps(sorted(seen)))

    return landing_zone
