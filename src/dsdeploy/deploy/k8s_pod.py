"""The pod parts every Kubernetes rendering shares: labels, the gateway container with its
probes and drain-aware stop, the model pull before it, security contexts, volumes."""

from __future__ import annotations

from typing import Any

from dsdeploy.deploy.docker import UID
from dsdeploy.deploy.probes import stop_grace_s
from dsdeploy.deploy.spec import CREDENTIALS_DIR, DATA_DIR, DeploySpec
from dsdeploy.security.weights_key import CREDENTIAL

NAME = "dsdeploy"
SECRET = "dsdeploy-secrets"
PVC = "dsdeploy-models"
PRESTOP_S = 10
"""Seconds a stopping pod keeps serving while the endpoints controller and every node's
proxy drop it from the Service (two readiness periods), before SIGTERM starts the drain."""
READINESS_PERIOD_S = 5


def labels(spec: DeploySpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": spec.model}


def grace_period_s(spec: DeploySpec) -> int:
    """Pod termination: the preStop wait, then the gateway's drain, then the engine's stop."""
    return PRESTOP_S + stop_grace_s(spec)


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(spec: DeploySpec) -> dict[str, Any]:
    memory = f"{spec.memory_mib}Mi"
    requests: dict[str, Any] = {"memory": memory, "cpu": "1"}
    limits: dict[str, Any] = {"memory": memory}
    if spec.serving.gpus_per_node:
        requests["nvidia.com/gpu"] = spec.serving.gpus_per_node
        limits["nvidia.com/gpu"] = spec.serving.gpus_per_node
    return {"requests": requests, "limits": limits}


def secret_env(name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key}}}


def gateway_env(spec: DeploySpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "DSDEPLOY_HOME", "value": DATA_DIR},
        {"name": "DSDEPLOY_HOST", "value": "0.0.0.0"},
        {"name": "DSDEPLOY_PORT", "value": str(spec.port)},
        {"name": "DSDEPLOY_ENGINE_KIND", "value": spec.serving.engine},
        {"name": "DSDEPLOY_REQUIRE_KEYS", "value": "true"},
        {"name": "DSDEPLOY_DRAIN_TIMEOUT_S", "value": str(spec.drain_timeout_s)},
        secret_env("DSDEPLOY_METRICS_TOKEN", "metrics-token"),
    ]
    if spec.db_url:
        env.append(secret_env("DSDEPLOY_DB_URL", "db-url"))
    if spec.redis_url:
        env.append(secret_env("DSDEPLOY_REDIS_URL", "redis-url"))
    if spec.weights_key is not None:
        env.append({"name": "CREDENTIALS_DIRECTORY", "value": CREDENTIALS_DIR})
    return env


def probe(spec: DeploySpec, path: str, period: int, failures: int) -> dict[str, Any]:
    get = {"path": path, "port": "http", "scheme": spec.scheme.upper()}
    return {"httpGet": get, "periodSeconds": period, "failureThreshold": failures}


def mounts(spec: DeploySpec) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if spec.weights_key is not None:
        found.append({"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True})
    return found


def gateway_container(spec: DeploySpec, command: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "gateway",
        "image": spec.image,
        "args": ["serve", spec.model],
        "ports": [{"name": "http", "containerPort": spec.port}],
        "env": gateway_env(spec),
        "startupProbe": probe(spec, "/health/live", 10, 90),  # 15 minutes to load
        "livenessProbe": probe(spec, "/health/live", 10, 3),
        # 503 at once while draining: the pod leaves the Service before it stops answering.
        "readinessProbe": probe(spec, "/health/ready", READINESS_PERIOD_S, 1),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_S}}},
        "resources": resources(spec),
        "securityContext": container_security(),
        "volumeMounts": mounts(spec),
    }
    if command is not None:
        container["command"] = command
        del container["args"]
    return container


def pull_container(spec: DeploySpec) -> dict[str, Any]:
    """Brings the weights into the volume (verified by hash) before the gateway starts."""
    args = ["pull", spec.model]
    if spec.serving.engine == "llama.cpp":
        args += ["--quant", spec.serving.weights]
    return {
        "name": "pull",
        "image": spec.image,
        "args": args,
        "env": [{"name": "DSDEPLOY_HOME", "value": DATA_DIR}],
        "resources": {"requests": {"memory": "512Mi", "cpu": "500m"}, "limits": {"memory": "1Gi"}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR}],
    }


def volumes(spec: DeploySpec) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": PVC}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if spec.weights_key is not None:
        items = [{"key": "weights-key", "path": CREDENTIAL}]
        secret = {"secretName": SECRET, "items": items, "defaultMode": 0o400}
        found.append({"name": "credentials", "secret": secret})
    return found


def pod_spec(spec: DeploySpec, containers: list[dict[str, Any]], *, pull: bool) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": grace_period_s(spec),
        "securityContext": pod_security(),
        "containers": containers,
        "volumes": volumes(spec),
    }
    if pull:
        pod["initContainers"] = [pull_container(spec)]
    if spec.serving.gpus_per_node > 1:  # NCCL moves tensors between GPUs through /dev/shm
        shm = {"medium": "Memory", "sizeLimit": "16Gi"}
        pod["volumes"].append({"name": "shm", "emptyDir": shm})
        for container in containers:
            container["volumeMounts"].append({"name": "shm", "mountPath": "/dev/shm"})
    return pod
