"""The default model served by the real llama-server under another model's chat template.

dsdeploy takes a model's chat template from its GGUF and has no option to replace it, so
the engine here is the real adapter with ``--chat-template-file`` added to its argv: the
engine's own template handling and output parsers then run as they would for that model,
while the tiny default model keeps the tests fast."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.engines.llamacpp import LlamaCppEngine
from dsdeploy.engines.llamacpp_install import source_tree
from dsdeploy.engines.llamacpp_locate import locate
from dsdeploy.model.thinking import Thinking
from dsdeploy.planner.launch_plan import LaunchPlan
from dsdeploy.runtime.pool import EnginePool, ModelSpec
from dsdeploy.runtime.supervisor import Supervisor
from dsdeploy.settings import Settings
from dsdeploy.store import Store
from tests.threaded_gateway import StubGateway, stub_gateway


@dataclass(frozen=True)
class TemplatedEngine(LlamaCppEngine):
    template: Path = Path()

    def argv(self, socket_path: Path) -> list[str]:
        return [*super().argv(socket_path), "--chat-template-file", str(self.template)]


def template_path(name: str) -> Path:
    """One of the real chat templates shipped in the pinned llama.cpp tree."""
    return source_tree(Settings().dirs) / "models/templates" / name


@contextmanager
def templated_gateway(
    model_home: Path,
    folder: Path,
    alias: str,
    template: str,
    thinking: Thinking | None,
    threads: int = 2,
) -> Iterator[StubGateway]:
    """A gateway in front of one such engine, started before the first request."""
    settings = Settings()
    store = Store(model_home / "data" / "models")
    manifest = store.manifest("smollm2")
    assert manifest is not None
    engine = TemplatedEngine(
        locate(settings.dirs, None, "auto").binary,
        store.weights_path(manifest),
        alias,
        LaunchPlan(threads=threads, ctx_per_slot=1024, parallel=1),
        thinking=thinking,
        template=template_path(template),
    )

    def make() -> Supervisor:
        return Supervisor(
            engine,
            alias,
            folder / "engine.log",
            ready_timeout_s=120,
            backoff_max_s=1,
            health_interval_s=5,
            health_failures=3,
            environ=os.environ,
        )

    pool = EnginePool(
        [ModelSpec(alias, make, 2**28, slots=1, pinned=True, preload=True)],
        budget_bytes=2**30,
        keep_alive_s=None,
        load_wait_s=120,
    )
    with stub_gateway(folder, pool=pool) as gateway:
        yield gateway
