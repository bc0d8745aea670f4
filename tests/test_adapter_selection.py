"""Adapters over one base: llama-server loads them all switched off, and every request to
that engine names the scale of each, so a slot never keeps the previous request's adapter."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from dsdeploy.engines.llamacpp import LlamaCppEngine
from dsdeploy.gateway.adapters import AdapterSelection, adapter_selections
from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.schemas import ChatCompletionRequest
from dsdeploy.planner.launch_plan import LaunchPlan

SELECTIONS = adapter_selections({"smollm2": ("smollm2-a", "smollm2-b"), "other": ()})


def forwarded(model: str) -> dict[str, object]:
    raw = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    body = ChatCompletionRequest.model_validate(raw)
    sent = asyncio.run(
        AdapterSelection(SELECTIONS).forward(RequestContext(), body, json.dumps(raw).encode())
    )
    result: dict[str, object] = json.loads(sent)
    return result


def test_an_adapter_name_turns_on_its_own_adapter_only() -> None:
    assert forwarded("smollm2-b")["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 1.0}]


def test_the_base_name_turns_every_adapter_off_explicitly() -> None:
    assert forwarded("smollm2")["lora"] == [{"id": 0, "scale": 0.0}, {"id": 1, "scale": 0.0}]


def test_a_model_without_adapters_is_forwarded_untouched() -> None:
    assert "lora" not in forwarded("other")


def test_the_engine_loads_each_adapter_switched_off() -> None:
    adapters = (Path("/a.gguf"), Path("/b.gguf"))
    engine = LlamaCppEngine(
        Path("/bin/ls"), Path("/m.gguf"), "smollm2", LaunchPlan(2, 1024, 2), adapters=adapters
    )
    argv = engine.argv(Path("/tmp/e.sock"))
    assert argv[argv.index("--lora") : argv.index("--lora") + 4] == [
        "--lora", "/a.gguf", "--lora", "/b.gguf",
    ]  # fmt: skip
    assert "--lora-init-without-apply" in argv
    plain = LlamaCppEngine(Path("/bin/ls"), Path("/m.gguf"), "m", LaunchPlan(2, 1024, 2))
    assert "--lora" not in plain.argv(Path("/tmp/e.sock"))
