"""The real validators the rendered files must pass: hadolint for Dockerfiles, the
compose specification (compose-spec's parser), systemd-analyze for units, and the
Kubernetes OpenAPI schemas (kubernetes-validate, offline, strict)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from compose_spec import PyCompose

K8S_VERSION = "1.33"
CRD_KINDS = {"ServiceMonitor", "LeaderWorkerSet"}
"""Custom resources: kubernetes-validate bundles only the built-in kinds' schemas."""


def tool(name: str) -> str:
    """A validator's program: on PATH, or beside this Python (a virtualenv's bin)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found, f"{name} is missing: pip install -e '.[test]' (hadolint) or apt (systemd)"
    return found


def run(argv: list[str], cwd: Path | None = None) -> str:
    """The tool's findings; an empty string when it found nothing and exited 0."""
    done = subprocess.run(argv, check=False, cwd=cwd, capture_output=True, text=True, timeout=120)
    findings = (done.stdout + done.stderr).strip()
    return findings if done.returncode or findings else ""


def hadolint(path: Path) -> str:
    return run([tool("hadolint"), "--no-color", str(path)])


def systemd_verify(path: Path) -> str:
    return run([tool("systemd-analyze"), "verify", f"./{path.name}"], cwd=path.parent)


def systemd_exposure(path: Path, threshold: int) -> str:
    """Findings when the unit's exposure score (× 10) is above ``threshold``."""
    argv = [tool("systemd-analyze"), "security", "--offline=true", f"--threshold={threshold}"]
    done = subprocess.run(
        [*argv, f"./{path.name}"],
        check=False,
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return "" if done.returncode == 0 else done.stdout.strip().splitlines()[-1]


def compose(text: str) -> str:
    try:
        PyCompose.from_yaml(text)
    except ValueError as exc:
        return str(exc)
    return ""


def pod_template(template: dict[str, Any]) -> dict[str, Any]:
    """A LeaderWorkerSet's pod template as a v1 PodTemplate, so its pods are checked
    against the core schema although the LeaderWorkerSet's own schema is not bundled."""
    meta = {"name": "template"}
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta, "template": template}


def kubernetes(document: dict[str, Any]) -> list[str]:
    """Schema errors of one object; a custom resource is checked through its pod templates."""
    if document["kind"] in CRD_KINDS:
        lws = document["spec"].get("leaderWorkerTemplate", {})
        parts = [pod_template(lws[k]) for k in ("leaderTemplate", "workerTemplate") if k in lws]
        return [error for part in parts for error in kubernetes(part)]
    try:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        return [f"{document['kind']} {where}: {exc.message}"]
    return []


def kubernetes_stream(text: str) -> list[str]:
    return [e for doc in yaml.safe_load_all(text) if doc for e in kubernetes(doc)]


Pods = list[tuple[dict[str, str], dict[str, Any]]]
Objects = dict[str, list[dict[str, Any]]]


def pod_specs(document: dict[str, Any]) -> Pods:
    """The labels and spec of each pod template an object makes."""
    if document["kind"] == "Deployment":
        template = document["spec"]["template"]
        return [(template["metadata"]["labels"], template["spec"])]
    if document["kind"] == "LeaderWorkerSet":
        # The LeaderWorkerSet controller labels each pod with its index in the group.
        lws = document["spec"]["leaderWorkerTemplate"]
        index = "leaderworkerset.sigs.k8s.io/worker-index"
        return [
            (lws[k]["metadata"]["labels"] | {index: i}, lws[k]["spec"])
            for k, i in (("leaderTemplate", "0"), ("workerTemplate", "1"))
        ]
    return []


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def secret_keys(objects: Objects) -> set[tuple[str, str]]:
    return {(s["metadata"]["name"], k) for s in objects.get("Secret", []) for k in s["stringData"]}


def secret_refs(pod: dict[str, Any]) -> list[tuple[str, str]]:
    found = [
        (item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
        for container in pod["containers"] + pod.get("initContainers", [])
        for item in container.get("env", [])
        if "valueFrom" in item
    ]
    for volume in pod["volumes"]:
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            found += [(name, item["key"]) for item in volume["secret"].get("items", [])]
    return found


def pod_problems(objects: Objects, pods: Pods) -> list[str]:
    secrets = secret_keys(objects)
    claims = {c["metadata"]["name"] for c in objects.get("PersistentVolumeClaim", [])}
    problems = [
        f"secret {ref} is not rendered"
        for _, pod in pods
        for ref in secret_refs(pod)
        if ref not in secrets
    ]
    wanted = {
        v["persistentVolumeClaim"]["claimName"]
        for _, pod in pods
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    return problems + [f"volume claim {claim} is not rendered" for claim in wanted - claims]


def service_problems(objects: Objects, pods: Pods) -> list[str]:
    problems = []
    for service in objects.get("Service", []):
        chosen = [pod for labels, pod in pods if selects(service["spec"]["selector"], labels)]
        ports = {p["name"] for pod in chosen for c in pod["containers"] for p in c.get("ports", [])}
        if not chosen or any(p["targetPort"] not in ports for p in service["spec"]["ports"]):
            problems.append(f"service {service['metadata']['name']} reaches no serving port")
    for budget in objects.get("PodDisruptionBudget", []):
        if not any(
            selects(budget["spec"]["selector"]["matchLabels"], labels) for labels, _ in pods
        ):
            problems.append("the disruption budget covers no pod")
    return problems


def monitor_problems(objects: Objects) -> list[str]:
    problems = []
    for monitor in objects.get("ServiceMonitor", []):
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in objects["Service"] if selects(selector, s["metadata"]["labels"])]
        names = {p["name"] for s in services for p in s["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint["port"] not in names:
                problems.append(f"servicemonitor scrapes no service port {endpoint['port']}")
            token = endpoint["bearerTokenSecret"]
            if (token["name"], token["key"]) not in secret_keys(objects):
                problems.append("servicemonitor's bearer token secret is not rendered")
    return problems


def dangling(documents: list[dict[str, Any]]) -> list[str]:
    """References between the objects that lead nowhere: what the API server accepts one
    object at a time but leaves a deployment that never serves or is never scraped."""
    objects: Objects = {}
    for doc in documents:
        objects.setdefault(doc["kind"], []).append(doc)
    pods = [p for doc in documents for p in pod_specs(doc)]
    return pod_problems(objects, pods) + service_problems(objects, pods) + monitor_problems(objects)
