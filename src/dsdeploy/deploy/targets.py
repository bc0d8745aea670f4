"""The deploy targets by name, each a function from the spec to files, and how the files
are written (the Secret manifest readable by its owner only)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.deploy.docker import compose_files, docker_files
from dsdeploy.deploy.k8s import k8s_files
from dsdeploy.deploy.spec import DeploySpec
from dsdeploy.deploy.systemd import DEFAULT_BIN, systemd_files
from dsdeploy.errors import ConfigError
from dsdeploy.planner.memory import GIB
from dsdeploy.settings import Settings

PRIVATE_FILES = {"secret.yaml"}
STORE_HEADROOM = 1.5
"""The model volume holds the weights, an update pulled beside them, and the engine's own
caches (vLLM's compiled graphs)."""


@dataclass(frozen=True)
class Options:
    settings: Settings
    bin_path: Path = DEFAULT_BIN


def one_machine(name: str, spec: DeploySpec) -> None:
    if spec.serving.nodes > 1:
        raise ConfigError(
            f"{spec.model} needs {spec.serving.nodes} nodes ({spec.serving.summary}); "
            f"`deploy {name}` runs on one machine: use `dsdeploy deploy k8s` (LeaderWorkerSet)"
        )


def render_docker(spec: DeploySpec, options: Options) -> dict[str, str]:
    one_machine("docker", spec)
    return docker_files(spec)


def render_compose(spec: DeploySpec, options: Options) -> dict[str, str]:
    one_machine("compose", spec)
    return compose_files(spec)


def render_systemd(spec: DeploySpec, options: Options) -> dict[str, str]:
    one_machine("systemd", spec)
    return systemd_files(spec, options.bin_path)


def render_k8s(spec: DeploySpec, options: Options) -> dict[str, str]:
    store_gib = math.ceil(spec.serving.weights_bytes * STORE_HEADROOM / GIB)
    return k8s_files(spec, options.settings, max(store_gib, 10))


TARGETS: dict[str, Callable[[DeploySpec, Options], dict[str, str]]] = {
    "docker": render_docker,
    "compose": render_compose,
    "systemd": render_systemd,
    "k8s": render_k8s,
}


def renderer(target: str) -> Callable[[DeploySpec, Options], dict[str, str]]:
    try:
        return TARGETS[target]
    except KeyError:
        raise ConfigError(
            f"unknown deploy target {target!r}; choose one of {', '.join(TARGETS)}"
        ) from None


def write_files(out: Path, rendered: dict[str, str]) -> list[Path]:
    """Each file replaced whole; a secret is created 0600 before a byte is written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        return [
            write_file(out / name, text, name in PRIVATE_FILES) for name, text in rendered.items()
        ]
    except OSError as exc:
        raise ConfigError(f"cannot write to {out}: {exc.strerror}; choose another --out") from None


def write_file(path: Path, text: str, private: bool) -> Path:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path
