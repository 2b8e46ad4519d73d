"""The UI-only workflow, as a user runs it: `dagster-daemon` and `dagster-webserver` as real processes on
127.0.0.1 over their own work folder; a drop with `_READY` copied into the landing zone; no `medtrinity`
command. The GraphQL API is polled until the drop's triplets are materialized and their checks have run.
Then `make ui-check`'s pages (asset graph, partition view, ROI preview) are rendered in headless Chromium
from the same webserver."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tools import ui_check as ui

from .conftest import KVASIR

SOURCE, DROP, SHARD = "tiny-kvasir", "d1", "d1-0000"
DEADLINE_S = 330

MATERIALIZED = """query($path: [String!]!, $partition: String!) { assetOrError(assetKey: {path: $path}) { __typename
  ... on Asset { assetMaterializations(partitions: [$partition]) { partition runId } } } }"""
CHECKS = """query($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { __typename
  ... on AssetNode { assetChecksOrError { __typename ... on AssetChecks { checks { name } } } } } }"""
EXECUTIONS = """query($path: [String!]!, $check: String!, $partition: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, partition: $partition, limit: 1) { status runId } }"""
RUNS = """{ runsOrError { __typename ... on Runs { results { runId status tags { key value } } } } }"""


def materialized(port: int, stage: str) -> bool:
    asset = ui.graphql(port, MATERIALIZED, {"path": [SOURCE, stage], "partition": SHARD})["assetOrError"]
    return asset["__typename"] == "Asset" and any(m["partition"] == SHARD for m in asset["assetMaterializations"])


def check_statuses(port: int, stage: str) -> dict[str, str | None]:
    node = ui.graphql(port, CHECKS, {"path": [SOURCE, stage]})["assetNodeOrError"]
    names = [c["name"] for c in node["assetChecksOrError"]["checks"]]
    out = {}
    for name in names:
        runs = ui.graphql(port, EXECUTIONS, {"path": [SOURCE, stage], "check": name, "partition": SHARD})["assetCheckExecutions"]
        out[name] = runs[0]["status"] if runs else None
    return out


@pytest.fixture()
def deployment(tmp_path, tiny_sources):
    ui.chromium()  # fails here, clearly, when Chromium is missing (`make test` installs it)
    wd, landing = tmp_path / "wd", tmp_path / "landing"
    (landing / SOURCE).mkdir(parents=True)
    env = {**os.environ, "DAGSTER_HOME": str(wd / "dagster"), "MEDTRINITY_WORKDIR": str(wd), "MEDTRINITY_SOURCES": str(tiny_sources),
           "MEDTRINITY_LANDING": str(landing), "MEDTRINITY_SENSOR_INTERVAL": "5", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "ANONYMIZED_TELEMETRY": "False"}
    from medtrinity_core.storage import Workdir
    from medtrinity_dagster.cli import init_instance

    init_instance(Workdir.at(wd))  # what `make ui` does through `medtrinity init`: configuration and storage
    port = ui.free_port()
    with ui.daemon(env, tmp_path / "daemon.log"), ui.webserver(port, env, tmp_path / "webserver.log") as web:
        yield {"port": port, "web": web, "landing": landing, "wd": wd, "tmp": tmp_path}


def test_a_drop_flows_to_triplets_with_its_checks_through_the_daemon_with_no_command_typed(deployment):
    port, start = deployment["port"], time.monotonic()
    assert ui.wait_for_locations(port, deployment["web"]) == []
    drop = deployment["landing"] / SOURCE / DROP
    shutil.copytree(KVASIR, drop)  # a person copies a folder in ...
    assert not materialized(port, "raw")
    (drop / "_READY").touch()  # ... and marks it complete
    statuses: dict = {}
    while time.monotonic() - start < DEADLINE_S:
        if materialized(port, "triplets"):
            statuses = check_statuses(port, "triplets")
            if statuses and all(s not in (None, "PLANNED", "IN_PROGRESS") for s in statuses.values()):
                break
        time.sleep(3)
    logs = "\n".join((deployment["tmp"] / f).read_text()[-3000:] for f in ("daemon.log", "webserver.log"))
    assert materialized(port, "triplets"), f"the drop's triplets were not materialized within {DEADLINE_S} s\n{logs}"
    assert statuses and set(statuses.values()) == {"SUCCEEDED"}, statuses
    for stage in ("raw", "normalized", "rois", "context", "descriptions"):
        assert materialized(port, stage), stage
        assert set(check_statuses(port, stage).values()) <= {"SUCCEEDED"}, stage
    while True:  # the last run finishes its bookkeeping after its final step
        runs = ui.graphql(port, RUNS)["runsOrError"]["results"]
        if all(r["status"] not in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED") for r in runs) or time.monotonic() - start > DEADLINE_S + 30:
            break
        time.sleep(2)
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in runs]
    assert any(t.get("dagster/run_key") == f"{SOURCE}:{SHARD}" for t in tags)  # the landing-zone sensor's run
    assert any(t.get("dagster/sensor_name") == "medtrinity_automation" or t.get("dagster/from_automation_condition") for t in tags)  # automation's
    assert all(r["status"] == "SUCCESS" for r in runs), [(r["runId"], r["status"]) for r in runs]
    from medtrinity_core.storage import Workdir, read_parquet

    triplets = read_parquet(Workdir.at(deployment["wd"]).manifest_path(SOURCE, "triplets", SHARD))
    assert triplets.height == 3
    # the UI a person opens on that deployment: graph, partitions and a preview render (what `make ui-check` checks)
    assert ui.check_pages(port, SOURCE, SHARD, deployment["tmp"] / "screens") == []
    for name in ("asset-graph", "partitions", "roi-preview"):
        assert (deployment["tmp"] / "screens" / f"{name}.png").stat().st_size > 10_000, name
