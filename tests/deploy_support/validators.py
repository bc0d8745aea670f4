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
