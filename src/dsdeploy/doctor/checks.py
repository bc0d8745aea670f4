"""Every check, in the order a deployment meets them. Adding a check is one function here
(taking the ``Ground``) and one line in ``CHECKS``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path

import psutil

from dsdeploy.cpu_isa import CpuAnswers
from dsdeploy.doctor import (
    advisories,
    disk,
    engine,
    exposure,
    gpu,
    libraries,
    memory,
    permissions,
    ports,
    stack,
    system,
)
from dsdeploy.doctor.finding import Finding, guarded
from dsdeploy.engines.llamacpp_locate import candidate
from dsdeploy.hardware import Hardware, probe
from dsdeploy.planner.machine import machine_for
from dsdeploy.planner.placement import Machine
from dsdeploy.security.keys import DEFAULT_DB_NAME, KeyStore
from dsdeploy.settings import Settings
from dsdeploy.store import Store


@dataclass
class Ground:
    """What the checks look at; built once at the edge, each check takes what it needs."""

    settings: Settings
    cpu: CpuAnswers
    library_path: tuple[Path, ...] = ()
    """LD_LIBRARY_PATH as the engine would inherit it."""

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.dirs.models)

    @cached_property
    def hardware(self) -> Hardware:
        return probe(self.settings.dirs.data)

    @cached_property
    def engine(self) -> tuple[Path, str] | None:
        """The llama-server ``serve`` would use, and where it came from."""
        engine = self.settings.engine
        return candidate(self.settings.dirs, engine.llama_server, engine.engine_backend, self.cpu)


def folders(ground: Ground) -> list[Finding]:
    dirs = ground.settings.dirs
    return [
        *disk.check_folder("data", dirs.data),
        *disk.check_folder("config", dirs.config),
        *disk.check_folder("cache", dirs.cache),
    ]


def memory_check(ground: Ground) -> list[Finding]:
    """Bandwidth is measured (half a second, 512 MiB) only when there is a model to plan."""
    hw = ground.hardware
    if any(m.format == "gguf" for m in ground.store.manifests_all()):
        machine = machine_for(hw, gpu=None, gpus=None, ram=None)
    else:
        machine = Machine(hw.ram_available, hw.physical_cores, 0.0)
    return memory.check_memory(ground.store, machine, ground.settings.engine, *swap())


def swap() -> tuple[int, int]:
    used = psutil.swap_memory()
    return used.total, used.used


def engine_checks(ground: Ground) -> list[Finding]:
    findings = engine.check_present(ground.engine)
    if ground.engine is None or not ground.engine[0].exists():
        return findings
    binary = ground.engine[0]
    runs, version = engine.run_version(binary)
    findings.append(runs)
    info = engine.build_info(binary)
    findings += engine.check_isa(info, ground.cpu)
    if version is not None:
        source = engine.source_tree_of(binary, info)
        findings += advisories.check_advisories(version, advisories.load_advisories(), source)
    return findings


def gpu_checks(ground: Ground) -> list[Finding]:
    hw = ground.hardware
    info = gpu.DriverInfo(hw.gpus, hw.driver_version, hw.cuda_version, hw.nvml_error)
    findings = gpu.check_driver(info)
    build = stack.torch_build()
    if build is not None:
        findings += gpu.check_torch_cuda(info, build[1], build[0])
    return findings


def exposure_check(ground: Ground) -> list[Finding]:
    """Opens the key store only where one exists: doctor creates no database."""
    security, data = ground.settings.security, ground.settings.dirs.data
    has_keys = False
    if security.db_url is not None or (data / DEFAULT_DB_NAME).exists():
        keys = KeyStore.open(security, data)
        try:
            has_keys = keys.has_active_keys()
        finally:
            keys.close()
    return exposure.check_exposure(ground.settings.gateway.host, has_keys, security)


CHECKS: tuple[tuple[str, Callable[[Ground], list[Finding]]], ...] = (
    ("os", lambda g: system.check_os(*system.this_system(), g.cpu)),
    ("python", lambda g: system.check_python(*system.this_python())),
    ("folders", folders),
    ("disk", lambda g: disk.check_space(g.store, g.settings.dirs.cache)),
    ("memory", memory_check),
    ("port", lambda g: ports.check_port(g.settings.gateway.host, g.settings.gateway.port)),
    ("engine", engine_checks),
    (
        "libs",
        lambda g: libraries.check_libraries(g.engine[0] if g.engine else None, g.library_path),
    ),
    ("gpu", gpu_checks),
    ("python-stack", lambda g: stack.check_torch_pins(stack.installed())),
    ("model-types", lambda g: stack.check_model_types(stack.stored_model_types(g.store))),
    (
        "permissions",
        lambda g: permissions.check_secrets(g.settings.dirs.data, g.settings.dirs.config),
    ),
    ("weights-permissions", lambda g: permissions.check_weights(g.settings.dirs.models)),
    ("exposure", exposure_check),
)


def run_checks(ground: Ground) -> list[Finding]:
    findings: list[Finding] = []
    for name, check in CHECKS:
        findings += guarded(name, partial(check, ground))
    return findings
