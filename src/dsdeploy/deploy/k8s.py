"""``deploy k8s``: the model store on a volume, the gateway as a Deployment (a
LeaderWorkerSet when the plan spans nodes), its Service, a disruption budget, a network
policy, the Secret, and monitoring (ServiceMonitor, Grafana dashboard ConfigMap).

An upgrade drops no request: a new pod is added before an old one goes (maxSurge 1,
maxUnavailable 0), and an old pod leaves the Service (preStop wait, readiness 503 while
draining) before its gateway drains the requests in flight."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from dsdeploy.deploy.k8s_lws import leader_worker_set
from dsdeploy.deploy.k8s_monitoring import monitoring
from dsdeploy.deploy.k8s_pod import NAME, PVC, SECRET, gateway_container, labels, pod_spec
from dsdeploy.deploy.spec import DeploySpec
from dsdeploy.deploy.templating import dump_yaml
from dsdeploy.errors import ConfigError
from dsdeploy.settings import Settings

DNS_AND_HTTPS = [
    {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
    # The pull reaches the model hub; PostgreSQL and Redis when the keys and limits are shared.
    {"ports": [{"protocol": "TCP", "port": 443}]},
]


def meta(spec: DeploySpec, name: str = NAME) -> dict[str, Any]:
    return {"name": name, "labels": labels(spec)}


def volume_claim(spec: DeploySpec, size_gib: int) -> dict[str, Any]:
    """Read by every pod of a multi-node group and by the surge pod of an upgrade."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta(spec, PVC),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": f"{size_gib}Gi"}},
        },
    }


def deployment(spec: DeploySpec) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(spec),
        "spec": {
            "replicas": 1,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "selector": {"matchLabels": labels(spec)},
            "template": {
                "metadata": {"labels": labels(spec)},
                "spec": pod_spec(spec, [gateway_container(spec)], pull=True),
            },
        },
    }


def service(spec: DeploySpec, selector: dict[str, str]) -> dict[str, Any]:
    port = {"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(spec),
        "spec": {"type": "ClusterIP", "selector": selector, "ports": [port]},
    }


def disruption_budget(spec: DeploySpec) -> dict[str, Any]:
    """A voluntary eviction (node drain) waits while it would leave no copy serving."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(spec),
        "spec": {"minAvailable": spec.serving.nodes, "selector": {"matchLabels": labels(spec)}},
    }


def network_policy(spec: DeploySpec) -> dict[str, Any]:
    """Clients reach the API port only; a multi-node group talks among itself (Ray, NCCL)."""
    ingress: list[dict[str, Any]] = [{"ports": [{"protocol": "TCP", "port": spec.port}]}]
    egress: list[dict[str, Any]] = list(DNS_AND_HTTPS)
    if spec.db_url:
        egress.append({"ports": [{"protocol": "TCP", "port": 5432}]})
    if spec.redis_url:
        egress.append({"ports": [{"protocol": "TCP", "port": 6379}]})
    if spec.serving.nodes > 1:
        group = [{"podSelector": {"matchLabels": labels(spec)}}]
        ingress.append({"from": group})
        egress.append({"to": group})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(spec),
        "spec": {
            "podSelector": {"matchLabels": labels(spec)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def read_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read --weights-key {path}: {exc.strerror}") from None


def secret(spec: DeploySpec, settings: Settings) -> dict[str, Any]:
    """Written to its own file (mode 0600), to keep out of version control."""
    security = settings.security
    token = security.metrics_token
    data = {"metrics-token": token.get_secret_value() if token else secrets.token_urlsafe(32)}
    if spec.weights_key is not None:
        data["weights-key"] = read_key(spec.weights_key)
    if security.db_url:
        data["db-url"] = security.db_url
    if security.redis_url:
        data["redis-url"] = security.redis_url
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(spec, SECRET),
        "type": "Opaque",
        "stringData": data,
    }


def workload(spec: DeploySpec) -> tuple[dict[str, Any], dict[str, str]]:
    """The serving workload and the labels of the pods the Service sends requests to."""
    if spec.serving.nodes > 1:
        return leader_worker_set(spec)
    return deployment(spec), labels(spec)


def k8s_files(spec: DeploySpec, settings: Settings, store_gib: int) -> dict[str, str]:
    work, selector = workload(spec)
    header = f"# dsdeploy {spec.version} for {spec.model}: {spec.serving.summary}\n"
    objects = [
        volume_claim(spec, store_gib),
        work,
        service(spec, selector),
        disruption_budget(spec),
        network_policy(spec),
    ]
    return {
        "dsdeploy.yaml": header + dump_yaml(*objects),
        "monitoring.yaml": header + dump_yaml(*monitoring(spec)),
        "secret.yaml": dump_yaml(secret(spec, settings)),
    }
