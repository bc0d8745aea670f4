"""Prometheus Operator's ServiceMonitor for the gateway's /metrics (with its bearer token:
without one /metrics answers loopback only) and the Grafana dashboard as a ConfigMap that
Grafana's dashboard sidecar picks up by its label."""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from dsdeploy.deploy.k8s_pod import NAME, SECRET, labels
from dsdeploy.deploy.spec import DeploySpec


def dashboard_json() -> str:
    """The dashboard checked against the gateway's real metric names by the tests."""
    text = files("dsdeploy.deploy").joinpath("grafana-dashboard.json").read_text()
    return json.dumps(json.loads(text), indent=1)


def service_monitor(spec: DeploySpec) -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
        "scheme": spec.scheme,
        "bearerTokenSecret": {"name": SECRET, "key": "metrics-token"},
    }
    if spec.tls:
        endpoint["tlsConfig"] = {"insecureSkipVerify": True}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": NAME, "labels": labels(spec)},
        "spec": {"selector": {"matchLabels": labels(spec)}, "endpoints": [endpoint]},
    }


def dashboard_config_map(spec: DeploySpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{NAME}-grafana-dashboard",
            "labels": labels(spec) | {"grafana_dashboard": "1"},
        },
        "data": {"dsdeploy.json": dashboard_json()},
    }


def monitoring(spec: DeploySpec) -> list[dict[str, Any]]:
    return [service_monitor(spec), dashboard_config_map(spec)]
