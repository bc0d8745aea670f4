"""What a deployment needs, decided once from the plan and the settings: engine, image
variant, GPUs per node, nodes, tensor × pipeline parallel sizes, memory to reserve, the
secrets to hand over. Every renderer (Docker, systemd, Kubernetes) reads only this.

One machine is enough when the planner's plan fits it. When it does not and the machine
has GPUs, the deployment spreads vLLM over the fewest nodes of that machine that hold the
model (``planner.launch_vllm``: tensor parallel = a node's GPUs, pipeline parallel = nodes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dsdeploy import __version__
from dsdeploy.catalog import CatalogEntry
from dsdeploy.errors import ConfigError
from dsdeploy.planner.launch_vllm import plan_vllm_serving
from dsdeploy.planner.memory import GIB, MIB
from dsdeploy.planner.placement import Machine
from dsdeploy.planner.plan import Plan
from dsdeploy.settings import Settings

MAX_NODES = 16
"""The most nodes a deployment is searched over before it is called impossible."""
GATEWAY_BYTES = GIB
"""Host memory for the gateway itself (Python, uvicorn, keys and limits): measured RSS
stays under 300 MiB; the rest is headroom for bursts of large request bodies."""
VLLM_HOST_BYTES_PER_GPU = 6 * GIB
"""Host memory per GPU worker under vLLM: its default 4 GiB CPU swap space for preempted
sequences plus about 2 GiB of Python, torch and CUDA runtime per worker process."""
DATA_DIR = "/var/lib/dsdeploy"
CREDENTIALS_DIR = "/run/credentials/dsdeploy"
"""Where containers find the weights key, named as systemd's LoadCredential= names it."""


@dataclass(frozen=True)
class Serving:
    """How the model runs on each node."""

    engine: str
    """llama.cpp or vllm."""
    weights: str
    """The weight format the plan chose (GGUF quant or vLLM format)."""
    context: int
    gpus_per_node: int
    nodes: int
    tensor_parallel: int
    pipeline_parallel: int
    memory_bytes: int
    """Host memory one node's container or unit may use (the plan's RAM + the gateway)."""
    weights_bytes: int
    summary: str


@dataclass(frozen=True)
class DeploySpec:
    model: str
    serving: Serving
    port: int
    drain_timeout_s: float
    weights_key: Path | None
    tls_files: tuple[Path, Path] | None
    """The certificate and its key, when the gateway serves HTTPS."""
    db_url: bool
    redis_url: bool
    metrics_token: bool
    version: str = __version__

    @property
    def variant(self) -> str:
        """The image: llama.cpp on CPU, llama.cpp with CUDA, or vLLM."""
        if self.serving.engine == "vllm":
            return "vllm"
        return "cuda" if self.serving.gpus_per_node else "cpu"

    @property
    def image(self) -> str:
        return f"dsdeploy:{self.version}-{self.variant}"

    @property
    def memory_mib(self) -> int:
        return -(-self.serving.memory_bytes // MIB)

    @property
    def tls(self) -> bool:
        return self.tls_files is not None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"


def llama_serving(plan: Plan, machine: Machine) -> Serving:
    layout = plan.llama
    assert layout is not None
    gpus = machine.gpu_count if layout.gpu_layers else 0
    on_gpus = f", {layout.gpu_layers} layers on {gpus} × {machine.gpu_name}" if gpus else ""
    return Serving(
        engine="llama.cpp",
        weights=layout.quant.name,
        context=layout.ctx_per_slot,
        gpus_per_node=gpus,
        nodes=1,
        tensor_parallel=1,
        pipeline_parallel=1,
        memory_bytes=layout.ram_bytes + GATEWAY_BYTES,
        weights_bytes=layout.breakdown["weights"],
        summary=f"llama.cpp {layout.quant.name}, {layout.slots} slots × {layout.ctx_per_slot} "
        f"tokens{on_gpus}",
    )


def vllm_serving(entry: CatalogEntry, machine: Machine, nodes: int) -> Serving:
    launch, plan = plan_vllm_serving(entry, machine, nodes=nodes)
    assert plan.vllm is not None
    return Serving(
        engine="vllm",
        weights=plan.vllm.weights.name,
        context=launch.ctx_per_slot,
        gpus_per_node=machine.gpu_count,
        nodes=nodes,
        tensor_parallel=launch.tensor_parallel,
        pipeline_parallel=launch.pipeline_parallel,
        memory_bytes=machine.gpu_count * VLLM_HOST_BYTES_PER_GPU + GATEWAY_BYTES,
        weights_bytes=plan.memory["weights"],
        summary=f"vLLM {plan.vllm.weights.name} on {nodes} node(s) × {machine.gpu_count} × "
        f"{machine.gpu_name}, tensor parallel {launch.tensor_parallel} × pipeline parallel "
        f"{launch.pipeline_parallel}, up to {launch.ctx_per_slot} tokens per request",
    )


def fewest_nodes(entry: CatalogEntry, machine: Machine, plan: Plan) -> int:
    """Nodes of this machine vLLM needs, or a ConfigError that says what would run it."""
    if machine.gpu_count:
        for nodes in range(2, MAX_NODES + 1):
            try:
                plan_vllm_serving(entry, machine, nodes=nodes)
            except ConfigError:
                continue
            return nodes
    raise ConfigError(
        f"{entry.name} does not fit this machine (short by {plan.shortfall / GIB:.1f} GiB) "
        f"and no deployment of at most {MAX_NODES} nodes holds it; what would run it: "
        f"{plan.scale_out or 'a machine with more memory'} (see `dsdeploy plan`)"
    )


def deploy_spec(
    entry: CatalogEntry,
    machine: Machine,
    plan: Plan,
    settings: Settings,
    *,
    nodes: int | None = None,
    weights_key: Path | None = None,
) -> DeploySpec:
    """The deployment of ``plan`` (made for ``machine``); ``nodes`` forces a spread."""
    if weights_key is not None and not weights_key.is_file():
        raise ConfigError(
            f"--weights-key {weights_key} is not a file; make one with `dsdeploy "
            "keygen-weights --weights-key-file PATH` or leave the option out"
        )
    if nodes is not None and nodes > 1:
        serving = vllm_serving(entry, machine, nodes)
    elif plan.fits and plan.engine == "vllm":
        serving = vllm_serving(entry, machine, 1)
    elif plan.fits:
        serving = llama_serving(plan, machine)
    else:
        serving = vllm_serving(entry, machine, fewest_nodes(entry, machine, plan))
    security = settings.security
    return DeploySpec(
        model=entry.name,
        serving=serving,
        port=settings.gateway.port,
        drain_timeout_s=settings.gateway.drain_timeout_s,
        weights_key=weights_key,
        tls_files=(security.tls_cert, security.tls_key)
        if security.tls_cert and security.tls_key
        else None,
        db_url=security.db_url is not None,
        redis_url=security.redis_url is not None,
        metrics_token=security.metrics_token is not None,
    )
