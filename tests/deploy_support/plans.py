"""The three deployments the snapshots cover, planned for fixed what-if machines so the
rendered files do not depend on the machine the tests run on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dsdeploy import catalog
from dsdeploy.catalog.gpus import find_gpu
from dsdeploy.deploy.spec import DeploySpec, deploy_spec
from dsdeploy.deploy.systemd import DEFAULT_BIN
from dsdeploy.deploy.targets import TARGETS, Options, renderer
from dsdeploy.planner.memory import GIB
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import make_plan
from dsdeploy.settings import Settings, settings_from

KEY_PLACEHOLDER = "/etc/dsdeploy/weights.key"
"""Where the snapshots say the weights key is (tests make it in a temporary folder)."""
TEST_KEY = "ab" * 32
METRICS_TOKEN = "metrics-token-for-tests"


@dataclass(frozen=True)
class Case:
    model: str
    gpu: str = ""
    gpus: int = 0
    ram_gib: int = 16
    nodes: int | None = None
    weights_key: bool = False

    def machine(self) -> Machine:
        if not self.gpu:
            return Machine(self.ram_gib * GIB, 8, 20e9)
        spec = find_gpu(self.gpu)
        return Machine(
            self.ram_gib * GIB, 8, 20e9, spec.name, spec.memory, self.gpus, spec.bandwidth
        )


CASES = {
    "cpu-smollm2": Case("smollm2"),
    "gpu-7b": Case("deepseek-r1-distill-qwen-7b", "RTX 4090", 1, 64, weights_key=True),
    "multinode-671b": Case("deepseek-r1", "H100", 8, 512, nodes=2, weights_key=True),
}
LINTED = CASES | {
    # llama.cpp with CUDA: 34 of 64 layers on the GPU, the rest in RAM.
    "cuda-llamacpp-32b": Case("deepseek-r1-distill-qwen-32b", "RTX 4090", 1, 128),
}
"""Snapshots cover CASES; the validators also see the CUDA llama.cpp image."""
ONE_MACHINE = [name for name, case in LINTED.items() if not case.nodes]


def settings() -> Settings:
    return settings_from({"metrics_token": METRICS_TOKEN})


def spec_for(case: Case, key_dir: Path) -> DeploySpec:
    entry = catalog.get(case.model)
    machine = case.machine()
    key = None
    if case.weights_key:
        key = key_dir / "weights.key"
        key.write_text(TEST_KEY + "\n")
        key.chmod(0o600)
    plan = make_plan(entry, machine)
    return deploy_spec(entry, machine, plan, settings(), nodes=case.nodes, weights_key=key)


def targets_for(spec: DeploySpec) -> tuple[str, ...]:
    return ("k8s",) if spec.serving.nodes > 1 else tuple(TARGETS)


def render_all(spec: DeploySpec, bin_path: Path = DEFAULT_BIN) -> dict[str, str]:
    """Every file of every target that serves this spec, named TARGET/FILE."""
    files = {}
    for target in targets_for(spec):
        rendered = renderer(target)(spec, Options(settings(), bin_path))
        files |= {f"{target}/{name}": text for name, text in rendered.items()}
    return files
