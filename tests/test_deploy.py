"""The deployment files agree with the code: docker/ (compose, images, workspace, environment), the
Helm values and the Kubernetes services, and the dagster-k8s executor and op tags validated by
dagster-k8s's own schemas. No Docker engine or cluster runs here: these are parsed and checked."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from medtrinity_core.config import load_sources
from medtrinity_core.sources.schema import ExpertSpec, GeneratorSpec
from medtrinity_core.storage import DAGSTER_YAML

from .conftest import EXAMPLES

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    lines = [line for line in (DOCKER / ".env.example").read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def instance_variables(config) -> set[str]:
    from medtrinity_core.pglock import unset_variables

    return set(unset_variables(config, {}))  # with nothing set, every `{env: NAME}` is reported


def test_compose_has_every_service_the_workspace_the_instance_and_the_environment_name(compose):
    services = compose["services"]
    assert {"postgres", "init", "user-code", "webserver", "daemon", "chroma", "vllm"} <= set(services)
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    assert grpc["host"] in services
    code = services[grpc["host"]]
    assert code["command"][code["command"].index("-p") + 1] == str(grpc["port"]) and str(grpc["port"]) in code["expose"]
    env = env_example()
    assert env["DAGSTER_PG_HOST"] in services and env["DAGSTER_PG_PORT"] == "5432"  # postgres' own port on the network
    needed = instance_variables(yaml.safe_load((DOCKER / "dagster.yaml").read_text()))
    assert needed == {"DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_DB", "DAGSTER_PG_PORT"}
    assert needed <= set(env)
    for name in ("init", "user-code", "webserver", "daemon"):
        environment = services[name]["environment"]
        assert needed <= set(environment), name
        assert environment["DAGSTER_HOME"] == "${MEDTRINITY_WORKDIR}/dagster"
        assert "workdir:/data" in services[name]["volumes"] and env["MEDTRINITY_WORKDIR"] == "/data"  # one work folder for all
    referenced = set(re.findall(r"(?<!\$)\$\{(\w+)", (DOCKER / "docker-compose.yml").read_text()))
    assert referenced <= set(env), referenced - set(env)  # every variable compose reads is in .env.example
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, (name, dep)
        if name not in ("init", "daemon"):
            assert "healthcheck" in service, name
    assert services["vllm"]["profiles"] == ["gpu"] and services["vllm"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert set(compose["volumes"]) >= {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith((".", "$", "/"))}


def test_the_instance_files_share_the_local_instances_pool_and_run_limits():
    local = yaml.safe_load(DAGSTER_YAML)["concurrency"]
    docker = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    assert docker["concurrency"]["pools"] == local["pools"]
    assert docker["concurrency"]["runs"]["tag_concurrency_limits"] == local["runs"]["tag_concurrency_limits"]
    assert docker["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2" and docker["telemetry"] == {"enabled": False}
    assert docker["run_coordinator"]["class"] == "QueuedRunCoordinator"
    values = yaml.safe_load((DOCKER / "helm" / "values.yaml").read_text())
    assert values["concurrency"]["pools"]["defaultLimit"] == local["pools"]["default_limit"]
    assert values["concurrency"]["runs"]["tagConcurrencyLimits"] == local["runs"]["tag_concurrency_limits"]


def test_the_images_commands_exist_in_the_project_and_their_files_in_the_repository(compose):
    commands = {name: s["command"] for name, s in compose["services"].items() if s.get("image") == "medtrinity:latest"}
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / dockerfile).read_text()
        for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE):
            for path in line.split()[:-1]:
                assert (REPO / path).exists(), f"{dockerfile}: COPY {path}"
        commands[dockerfile] = json.loads(re.search(r"^CMD (\[.+\])$", text, re.MULTILINE).group(1))
        commands[dockerfile + " health"] = json.loads(re.search(r"CMD (\[.+\])$", re.search(r"^HEALTHCHECK .+$", text, re.MULTILINE).group(0)).group(1))
    commands["user-code health"] = compose["services"]["user-code"]["healthcheck"]["test"][1:]
    for name, command in commands.items():
        assert (BIN / command[0]).exists(), f"{name}: {command[0]} is not a command the project installs"
        if "-m" in command:
            __import__(command[command.index("-m") + 1])  # the module the code server loads
        if "-w" in command:
            assert command[command.index("-w") + 1] == "/opt/medtrinity/docker/workspace.yaml"  # COPY docker/workspace.yaml
        if command[:2] == ["medtrinity", "init"]:
            assert command[command.index("--instance") + 1] == "/opt/medtrinity/docker/dagster.yaml"
        # the command line, as the image would run it, knows these words (sub-commands and options)
        words = [w for w in command if not w.startswith("${")][:3]
        help_args = [words[0], *[w for w in words[1:] if not w.startswith("-")], "--help"]
        result = subprocess.run([str(BIN / help_args[0]), *help_args[1:]], capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"{name}: {shlex.join(help_args)}: {result.stderr[-500:]}"


def test_the_example_deployment_sources_file_is_valid_and_names_the_compose_and_cluster_services(tmp_path, compose):
    text = (DOCKER / "sources.example.yaml").read_text()
    for folder in re.findall(r"root: (/data/\S+)", text):
        (tmp_path / folder.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (tmp_path / "example.yaml").write_text(text.replace("/data/", f"{tmp_path}/data/"))
    sources = load_sources(tmp_path / "example.yaml")  # the schema accepts it (file, line and key otherwise)
    chroma_host, chroma_port = re.match(r"http://([\w-]+):(\d+)", sources.retrieval.server).groups()
    vllm = sources.sources[0].generator
    vllm_host, vllm_port = re.match(r"http://([\w-]+):(\d+)/v1", vllm.url).groups()
    assert vllm.backend == "openai" and vllm.api_key_env == "VLM_API_KEY" and "VLM_API_KEY" in env_example()
    for host, port in ((chroma_host, chroma_port), (vllm_host, vllm_port)):
        assert port in compose["services"][host]["expose"]
    served = compose["services"]["vllm"]["command"]
    assert served[served.index("--served-model-name") + 1] == vllm.model and served[served.index("--port") + 1] == vllm_port
    k8s = [d for d in yaml.safe_load_all((DOCKER / "k8s" / "services.yaml").read_text()) if d]
    services = {d["metadata"]["name"]: d for d in k8s if d["kind"] == "Service"}
    for host, port in ((chroma_host, chroma_port), (vllm_host, vllm_port)):
        assert services[host]["spec"]["ports"][0]["port"] == int(port)
        deployment = next(d for d in k8s if d["kind"] == "Deployment" and d["metadata"]["name"] == host)
        assert deployment["spec"]["template"]["metadata"]["labels"] == services[host]["spec"]["selector"]


def test_the_k8s_executor_and_every_gpu_step_tag_validate_against_dagster_k8s_schemas(monkeypatch, tmp_path):
    from dagster._config import validate_config
    from dagster_k8s import k8s_job_executor
    from dagster_k8s.job import get_user_defined_k8s_config

    from medtrinity_dagster.build import build_definitions
    from medtrinity_dagster.k8s import (
        EXECUTOR_CONFIG,
        GPU_NODE_SELECTOR,
        K8S_CONFIG_TAG,
    )

    assert validate_config(k8s_job_executor.config_schema.config_type, EXECUTOR_CONFIG).success
    sources = load_sources(EXAMPLES / "sources.yaml")
    busi, kvasir = sources.source("busi"), sources.source("kvasir-seg")
    gpu_sources = sources.model_copy(update={"sources": (
        busi.model_copy(update={"expert": ExpertSpec(kind="torchscript", path=tmp_path / "m.ts", labels=((1, "lesion"),))}),
        kvasir.model_copy(update={"generator": GeneratorSpec(backend="transformers", model=str(tmp_path / "vlm"))}),
    )})
    monkeypatch.setenv("MEDTRINITY_GPU_IMAGE", "registry.example/medtrinity-gpu:0.1.0")
    monkeypatch.setenv("MEDTRINITY_EXECUTOR", "k8s")
    defs = build_definitions(gpu_sources, str(tmp_path / "wd"))
    assert defs.executor.name == "medtrinity_k8s_job_executor"
    tagged = {}
    for asset in defs.assets:
        if not isinstance(asset, dg.AssetsDefinition):
            continue
        tags = asset.op.tags
        if asset.op.pool == "gpu":
            tagged[asset.key.to_user_string()] = tags
            config = get_user_defined_k8s_config({K8S_CONFIG_TAG: tags[K8S_CONFIG_TAG]})  # a JSON string, as Dagster stores op tags
            assert config.container_config["resources"]["limits"]["nvidia.com/gpu"] == "1"
            assert config.container_config["image"] == "registry.example/medtrinity-gpu:0.1.0"
            assert config.pod_spec_config["node_selector"] == GPU_NODE_SELECTOR
        else:
            assert K8S_CONFIG_TAG not in tags, asset.key  # per step: only the gpu steps ask for a GPU
    assert set(tagged) == {"busi/rois", "kvasir-seg/descriptions"}
    values = yaml.safe_load((DOCKER / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["MEDTRINITY_EXECUTOR"] == "k8s" and deployment["dagsterApiGrpcArgs"] == ["-m", "medtrinity_dagster.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    pools = {a.op.pool for a in defs.assets if isinstance(a, dg.AssetsDefinition)} - {None}
    assert pools == {"gpu"} and values["concurrency"]["pools"]["defaultLimit"] == 1  # every pool the code uses is limited
    run_tags = {k for a in defs.assets if isinstance(a, dg.AssetsDefinition) for k in a.tags_by_key[a.key]}
    limited = {limit["key"] for limit in values["concurrency"]["runs"]["tagConcurrencyLimits"]}
    assert "medtrinity/source" in run_tags and {t for t in run_tags if t.startswith("medtrinity/")} <= limited
    assert values["postgresql"]["enabled"] is False and values["global"]["postgresqlSecretName"]


def test_an_unknown_executor_is_refused_by_name(monkeypatch):
    from medtrinity_core.errors import UsageError
    from medtrinity_dagster.k8s import executor

    monkeypatch.setenv("MEDTRINITY_EXECUTOR", "celery")
    with pytest.raises(UsageError, match="'default' and 'k8s'"):
        executor()
