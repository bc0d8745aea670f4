"""A model that spans nodes: one LeaderWorkerSet group per serving copy. The leader pod runs
the Ray head and ``dsdeploy serve`` (the gateway in front of vLLM, which places its
pipeline stages on the group's nodes through Ray); each worker pod joins the leader's Ray
cluster with its node's GPUs. The group lives and restarts as one."""

from __future__ import annotations

from typing import Any

from dsdeploy.deploy.k8s_pod import NAME, gateway_container, labels, pod_spec, resources
from dsdeploy.deploy.spec import DeploySpec

RAY_PORT = 6379
LEADER = {"leaderworkerset.sigs.k8s.io/worker-index": "0"}
"""The label LeaderWorkerSet puts on each group's leader: the Service selects it."""


def leader_container(spec: DeploySpec) -> dict[str, Any]:
    gpus = spec.serving.gpus_per_node
    script = (
        f"ray start --head --port={RAY_PORT} --num-gpus={gpus} --disable-usage-stats "
        f"&& exec dsdeploy serve {spec.model}"
    )
    container = gateway_container(spec, ["/bin/bash", "-c", script])
    container["env"] += [
        {"name": "DSDEPLOY_NODES", "value": str(spec.serving.nodes)},
        {"name": "RAY_ADDRESS", "value": f"127.0.0.1:{RAY_PORT}"},
    ]
    return container


def worker_container(spec: DeploySpec) -> dict[str, Any]:
    gpus = spec.serving.gpus_per_node
    script = (
        f"ray start --address=$(LWS_LEADER_ADDRESS):{RAY_PORT} --num-gpus={gpus} "
        "--disable-usage-stats --block"
    )
    container = gateway_container(spec, ["/bin/bash", "-c", script])
    for key in ("ports", "startupProbe", "livenessProbe", "readinessProbe", "lifecycle"):
        del container[key]
    container["name"] = "ray-worker"
    container["env"] = [{"name": "HOME", "value": "/tmp"}]
    container["resources"] = resources(spec)
    return container


def leader_worker_set(spec: DeploySpec) -> tuple[dict[str, Any], dict[str, str]]:
    pod_labels = labels(spec)
    group = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": NAME, "labels": pod_labels},
        "spec": {
            "replicas": 1,
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "leaderWorkerTemplate": {
                "size": spec.serving.nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": {
                    "metadata": {"labels": pod_labels | {"role": "leader"}},
                    "spec": pod_spec(spec, [leader_container(spec)], pull=True),
                },
                "workerTemplate": {
                    "metadata": {"labels": pod_labels | {"role": "worker"}},
                    "spec": pod_spec(spec, [worker_container(spec)], pull=False),
                },
            },
        },
    }
    return group, pod_labels | LEADER
