"""Kubernetes without changing the pipeline: with MEDTRINITY_EXECUTOR=k8s the Definitions use
dagster-k8s's `k8s_job_executor`, so each step of a run is a Kubernetes job of its own; the steps of
the `gpu` pool (expert models, the `transformers` generator) carry a `dagster-k8s/config` op tag asking
for a GPU and a GPU node, per step rather than per run. Locally neither does anything: the tag is
read only by dagster-k8s, and the executor stays Dagster's default. dagster-k8s is imported only
when the executor is chosen, so the Definitions load fast."""

from __future__ import annotations

import os

from medtrinity_core.errors import UsageError

EXECUTOR_ENV = "MEDTRINITY_EXECUTOR"
GPU_IMAGE_ENV = "MEDTRINITY_GPU_IMAGE"  # the docker/Dockerfile.gpu image for gpu steps; unset: the run's image
K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}  # the label NVIDIA's GPU feature discovery puts on GPU nodes

# Each step's job: requests sized for a shard of a few thousand images; the executor runs at most 8 steps at once.
EXECUTOR_CONFIG = {
    "max_concurrent": 8,
    "step_k8s_config": {"container_config": {"resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}}},
}


def gpu_step_config() -> dict:
    """The `dagster-k8s/config` of a gpu-pool step: one GPU, a GPU node, the toleration GPU nodes' taint asks for."""
    container = {"resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"nvidia.com/gpu": "1", "memory": "32Gi"}}}
    if image := os.environ.get(GPU_IMAGE_ENV):
        container["image"] = image
    return {
        "container_config": container,
        "pod_spec_config": {"node_selector": dict(GPU_NODE_SELECTOR),
                            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    }


def gpu_op_tags(pool: str | None) -> dict:
    return {K8S_CONFIG_TAG: gpu_step_config()} if pool == "gpu" else {}


def executor():
    """The executor MEDTRINITY_EXECUTOR names: unset (Dagster's default, multiprocess) or `k8s`."""
    kind = os.environ.get(EXECUTOR_ENV, "")
    if kind in ("", "default"):
        return None
    if kind == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(EXECUTOR_CONFIG, name="medtrinity_k8s_job_executor")
    raise UsageError(f"{EXECUTOR_ENV}={kind!r}: the executors are 'default' and 'k8s'")
