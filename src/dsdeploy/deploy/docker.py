"""``deploy docker`` and ``deploy compose``: a multi-stage Dockerfile for the plan's engine
(llama-server built by ``dsdeploy engine install`` for CPU or CUDA; vLLM on an NVIDIA CUDA
base) and a compose file with the data volume, healthcheck, weights key as a secret, and
the plan's memory (and GPUs) as resource limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dsdeploy.deploy.probes import healthcheck_code, stop_grace_s
from dsdeploy.deploy.spec import DATA_DIR, DeploySpec
from dsdeploy.deploy.templating import dump_yaml, render
from dsdeploy.security.weights_key import CREDENTIAL

UID = 10001
CUDA = "12.8.1"
VLLM_VERSION = "0.33.0"
RAY_VERSION = "2.60.0"


@dataclass(frozen=True)
class Base:
    build: str
    run: str
    run_packages: str


BASES = {
    "cpu": Base("python:3.11-slim-bookworm", "python:3.11-slim-bookworm", "libgomp1"),
    "cuda": Base(
        f"nvidia/cuda:{CUDA}-devel-ubuntu24.04",
        f"nvidia/cuda:{CUDA}-runtime-ubuntu24.04",
        "python3 libgomp1",
    ),
    # Triton compiles its small C launchers at run time: gcc and Python's headers stay.
    "vllm": Base(
        f"nvidia/cuda:{CUDA}-runtime-ubuntu24.04",
        f"nvidia/cuda:{CUDA}-runtime-ubuntu24.04",
        "python3 python3-dev gcc libgomp1",
    ),
}
DOCKERIGNORE = "# Only dsdeploy wheels travel into the build.\n*\n!*.whl\n"


def dockerfile(spec: DeploySpec) -> str:
    return render(
        "Dockerfile.j2",
        spec=spec,
        base=BASES[spec.variant],
        uid=UID,
        data_dir=DATA_DIR,
        healthcheck=healthcheck_code(spec),
        vllm_version=VLLM_VERSION,
        ray_version=RAY_VERSION,
    )


def compose_service(spec: DeploySpec) -> dict[str, Any]:
    reservations: dict[str, Any] = {"memory": f"{spec.memory_mib}M"}
    if spec.serving.gpus_per_node:
        reservations["devices"] = [
            {"driver": "nvidia", "count": spec.serving.gpus_per_node, "capabilities": ["gpu"]}
        ]
    service: dict[str, Any] = {
        "image": spec.image,
        "build": {"context": "."},
        "command": ["serve", spec.model],
        # Published on the host's loopback: a reverse proxy or an SSH tunnel goes in front.
        "ports": [f"127.0.0.1:{spec.port}:{spec.port}"],
        "volumes": [f"dsdeploy-data:{DATA_DIR}"],
        "read_only": True,
        "tmpfs": ["/tmp"],
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "restart": "on-failure",
        "stop_signal": "SIGTERM",
        "stop_grace_period": f"{stop_grace_s(spec)}s",
        "healthcheck": {
            "test": ["CMD", "python3", "-c", healthcheck_code(spec)],
            "interval": "30s",
            "timeout": "5s",
            "retries": 3,
            "start_period": "10m",
        },
        "deploy": {
            "resources": {"limits": {"memory": f"{spec.memory_mib}M"}, "reservations": reservations}
        },
    }
    if spec.weights_key is not None:
        service["environment"] = {"CREDENTIALS_DIRECTORY": "/run/secrets"}
        service["secrets"] = [{"source": "weights-key", "target": CREDENTIAL}]
    return service


def compose_file(spec: DeploySpec) -> str:
    document: dict[str, Any] = {
        "name": "dsdeploy",
        "services": {"dsdeploy": compose_service(spec)},
        "volumes": {"dsdeploy-data": {}},
    }
    if spec.weights_key is not None:
        document["secrets"] = {"weights-key": {"file": str(spec.weights_key.resolve())}}
    header = f"# dsdeploy {spec.version} for {spec.model}: {spec.serving.summary}\n"
    return header + dump_yaml(document)


def docker_files(spec: DeploySpec) -> dict[str, str]:
    return {"Dockerfile": dockerfile(spec), ".dockerignore": DOCKERIGNORE}


def compose_files(spec: DeploySpec) -> dict[str, str]:
    return docker_files(spec) | {"compose.yaml": compose_file(spec)}
