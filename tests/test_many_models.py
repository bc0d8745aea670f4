"""One gateway, several models: each loads on its first request, idle ones make room within
the memory budget least-recently-used first, a busy one is never stopped, a model too big
for the budget is refused with nothing stopped, and idle engines unload after keep-alive."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from dsdeploy.engines import llamacpp_locate
from dsdeploy.eval.quantize import quantize
from dsdeploy.settings import Settings
from dsdeploy.store import Store
from tests.conftest import SHARED_CACHE, Server, decoding_stream_body, run_cli, start_server

pytestmark = pytest.mark.engine

SMALL, LARGE = "smollm2", "smollm2-q8"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def two_models(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default model (Q4_1) and the same model requantized to Q8_0 by llama-quantize."""
    settings = Settings(home=model_home, cache_dir=SHARED_CACHE)  # module scope: no autouse env
    store = Store(settings.dirs.models)
    manifest = store.manifest(SMALL)
    engine = llamacpp_locate.locate(settings.dirs, None, "cpu")
    assert manifest is not None and engine is not None
    weights = store.materialize(manifest).entry  # named *.gguf, as a local pull needs
    out = tmp_path_factory.mktemp("q8") / "smollm2-q8_0.gguf"
    quantize(engine.binary.parent / "llama-quantize", weights, out, "Q8_0", 2)
    home = tmp_path_factory.mktemp("two-models")
    for name, source in ((SMALL, str(weights)), (LARGE, str(out))):
        done = run_cli(home, "pull", source, "--name", name)
        assert done.returncode == 0, done.stderr[-2000:]
    return home


def ps(server: Server) -> dict[str, dict[str, object]]:
    rows = httpx.get(server.base_url + "/ps").json()["models"]
    return {row["model"]: row for row in rows}


def chat(server: Server, model: str) -> httpx.Response:
    body = {"model": model, "messages": HELLO, "max_tokens": 2}
    return httpx.post(server.base_url + "/v1/chat/completions", json=body, timeout=120)


@pytest.fixture
def serving(two_models: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str) -> Server:
        server = start_server(two_models, tmp_path / f"serve{len(started)}.log", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def planned(serving: Callable[..., Server]) -> dict[str, int]:
    server = serving()
    sizes = {name: int(row["planned_bytes"]) for name, row in ps(server).items()}  # type: ignore[call-overload]
    server.stop()
    return sizes


def test_every_stored_model_is_listed_and_loads_on_its_first_request(
    serving: Callable[..., Server],
) -> None:
    server = serving()
    assert sorted(m.id for m in server.api_client.models.list()) == [SMALL, LARGE]
    assert {row["state"] for row in ps(server).values()} == {"not loaded"}
    assert chat(server, SMALL).status_code == 200
    states = {name: row["state"] for name, row in ps(server).items()}
    assert states == {SMALL: "ready", LARGE: "not loaded"}
    assert ps(server)[SMALL]["rss_bytes"]


def test_concurrent_requests_to_two_models_both_succeed(serving: Callable[..., Server]) -> None:
    server = serving()
    answers: dict[str, int] = {}

    def ask(model: str) -> None:
        answers[model] = chat(server, model).status_code

    threads = [threading.Thread(target=ask, args=(m,)) for m in (SMALL, LARGE, SMALL, LARGE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {SMALL: 200, LARGE: 200}


def test_budget_for_one_evicts_the_idle_model_but_never_the_streaming_one(
    serving: Callable[..., Server],
) -> None:
    sizes = planned(serving)
    budget = max(sizes.values()) + 2**20
    server = serving("--memory-budget", str(budget))
    results: dict[str, object] = {}

    def stream_small() -> None:
        with httpx.stream(
            "POST",
            server.base_url + "/v1/chat/completions",
            json=decoding_stream_body(400),
            timeout=120,
        ) as response:
            results["status"] = response.status_code
            results["events"] = [line for line in response.iter_lines() if line.startswith("data")]

    streaming = threading.Thread(target=stream_small)
    streaming.start()
    deadline = time.monotonic() + 60
    while ps(server)[SMALL]["in_flight"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    refused = chat(server, LARGE)
    assert refused.status_code == 503
    assert "memory budget" in refused.json()["error"]["message"]
    assert ps(server)[SMALL]["state"] == "ready"
    streaming.join()
    events: list[str] = results["events"]  # type: ignore[assignment]
    assert results["status"] == 200 and events[-1] == "data: [DONE]", events[-3:]
    assert not [event for event in events if '"error"' in event]
    assert chat(server, LARGE).status_code == 200
    states = {name: row["state"] for name, row in ps(server).items()}
    assert states == {SMALL: "not loaded", LARGE: "ready"}


def test_model_too_big_for_the_budget_is_refused_and_nothing_is_stopped(
    serving: Callable[..., Server],
) -> None:
    sizes = planned(serving)
    assert sizes[SMALL] < sizes[LARGE]
    server = serving("--memory-budget", str(sizes[SMALL] + 2**20))
    assert chat(server, SMALL).status_code == 200
    refused = chat(server, LARGE)
    assert refused.status_code == 503
    assert "more than this server's memory budget" in refused.json()["error"]["message"]
    assert ps(server)[SMALL]["state"] == "ready"


def test_idle_engine_is_unloaded_after_keep_alive(serving: Callable[..., Server]) -> None:
    server = serving("--keep-alive", "1")
    assert chat(server, SMALL).status_code == 200
    deadline = time.monotonic() + 15
    while ps(server)[SMALL]["state"] != "not loaded":
        assert time.monotonic() < deadline, ps(server)
        time.sleep(0.2)


def test_unknown_model_lists_the_served_ones_without_echoing_a_long_name(
    serving: Callable[..., Server],
) -> None:
    server = serving()
    unknown = chat(server, "x" * 250)
    assert unknown.status_code == 404
    message = unknown.json()["error"]["message"]
    assert len(message) < 300 and SMALL in message and LARGE in message
    absurd = chat(server, "x" * 100_000)
    assert absurd.status_code == 400
    assert len(absurd.text) < 1000
