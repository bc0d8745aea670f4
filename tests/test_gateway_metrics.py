"""/metrics tells an operator what requests, engines and GPUs do, without ever holding a
key, a client address or a prompt, without letting clients invent label values, and only
for whoever holds the metrics token; the health probes say whether to send traffic.

The gateway runs as ``serve`` runs it, on stub engines (``tests/stub_gateway.py``). The GPU
collector is fed an object with NVML's functions (``tests/fake_nvml.py``), as no GPU is
present here: the one stand-in of these tests."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.datastructures import Headers

from dsdeploy.gateway.app import create_app
from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.metrics_collectors import GpuCollector
from dsdeploy.hardware import probe_gpus
from dsdeploy.settings import GatewaySettings
from tests.conftest import Server
from tests.fake_nvml import FakeNvml
from tests.stub_engine import StubEngine
from tests.threaded_gateway import StubGateway, stub_gateway, stub_pool

TOKEN = "metrics-token-7f3a"
BEARER = {"authorization": f"Bearer {TOKEN}"}
API_KEY = "sk-live-0123456789abcdef"
CLIENT_IP = "203.0.113.77"
PROMPT = "the secret recipe is forty-two"


def chat(model: str = "stub", *, stream: bool = False, tokens: int = 5) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
    }
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(
        found
        for (sample, have), found in samples(text).items()
        if sample == name and set(labels.items()) <= have
    )


def scrape(gateway: StubGateway) -> str:
    response = httpx.get(gateway.base_url + "/metrics", headers=BEARER)
    response.raise_for_status()
    return response.text


class KeyedClient(Hook):
    """What the key and address checks note on a request: a key id and the client's IP."""

    async def admit(self, ctx: RequestContext, headers: Headers) -> None:
        ctx.key_id = "key_4Fz9"
        ctx.client_ip = CLIENT_IP


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[StubGateway]:
    engine = StubEngine(token_delay_s=0.005)
    with stub_gateway(tmp_path, engine=engine, metrics_token=TOKEN, hooks=[KeyedClient()]) as gw:
        yield gw


def test_requests_tokens_and_stream_timings_are_counted(gateway: StubGateway) -> None:
    with httpx.Client(base_url=gateway.base_url + "/v1", timeout=30) as client:
        assert client.post("/chat/completions", json=chat()).status_code == 200
        with client.stream("POST", "/chat/completions", json=chat(stream=True, tokens=8)) as r:
            assert r.status_code == 200
            r.read()
    text = scrape(gateway)
    requests = "dsdeploy_requests_total"
    assert value(text, requests, route="chat.completions", model="stub", status="200") == 2
    assert value(text, "dsdeploy_completion_tokens_total", model="stub") == 5 + 8
    assert value(text, "dsdeploy_prompt_tokens_total", model="stub") > 0
    assert value(text, "dsdeploy_ttft_seconds_count", model="stub") == 1
    before_engine = "dsdeploy_gateway_before_engine_seconds"
    assert value(text, before_engine + "_count", model="stub") == 2  # streamed and not
    assert value(text, before_engine + "_sum", model="stub") > 0  # the first waited for the load
    assert value(text, "dsdeploy_inter_token_latency_seconds_count", model="stub") == 1
    mean_gap = value(text, "dsdeploy_inter_token_latency_seconds_sum", model="stub")
    assert 0.004 < mean_gap < 0.5  # the stub waits 5 ms per token
    assert value(text, "dsdeploy_request_duration_seconds_count", model="stub") == 2
    assert value(text, "dsdeploy_model_load_seconds_count", model="stub") == 1
    assert value(text, "dsdeploy_model_loaded", model="stub") == 1
    assert value(text, "dsdeploy_engine_up", model="stub") == 1
    assert value(text, "dsdeploy_engine_resident_memory_bytes", model="stub") > 10 * 2**20
    assert value(text, "dsdeploy_engine_slots_busy", model="stub") == 0  # engine's own count
    assert 'dsdeploy_engine_sequence_tokens_max{model="stub"}' in text  # a counter there
    assert value(text, "process_resident_memory_bytes") > 0  # the gateway itself


def test_anthropic_streams_count_prompt_and_completion_tokens(gateway: StubGateway) -> None:
    body = {**chat(tokens=7), "stream": True}
    with httpx.stream("POST", gateway.base_url + "/v1/messages", json=body, timeout=30) as r:
        assert r.status_code == 200
        r.read()
    text = scrape(gateway)
    assert value(text, "dsdeploy_completion_tokens_total", model="stub") == 7  # message_delta
    assert value(text, "dsdeploy_prompt_tokens_total", model="stub") > 0  # message_start
    assert value(text, "dsdeploy_inter_token_latency_seconds_count", model="stub") == 1


def test_labels_hold_no_key_address_or_prompt(gateway: StubGateway) -> None:
    headers = {"authorization": f"Bearer {API_KEY}", "x-forwarded-for": CLIENT_IP}
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions", json=chat(), headers=headers, timeout=30
    )
    assert response.status_code == 200
    text = scrape(gateway)
    assert value(text, "dsdeploy_requests_total", key_id="key_4Fz9", model="stub") == 1
    for secret in (API_KEY, CLIENT_IP, PROMPT, "forty-two"):
        assert secret not in text


def test_an_unknown_model_name_makes_no_new_label_value(gateway: StubGateway) -> None:
    made_up = [f"no-such-model-{index}" for index in range(3)]
    for name in made_up:
        answer = httpx.post(gateway.base_url + "/v1/chat/completions", json=chat(name))
        assert answer.status_code == 404
    text = scrape(gateway)
    assert value(text, "dsdeploy_requests_total", model="unknown", status="404") == 3
    models = {dict(labels).get("model") for _, labels in samples(text)}
    assert models <= {None, "stub", "unknown"}
    assert all(name not in text for name in made_up)


@pytest.mark.parametrize(
    "headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}]
)
def test_metrics_without_the_token_is_401(gateway: StubGateway, headers: dict[str, str]) -> None:
    response = httpx.get(gateway.base_url + "/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_token"
    assert "dsdeploy_" not in response.text


def test_metrics_without_a_configured_token_answer_only_this_machine(tmp_path: Path) -> None:
    app = create_app(stub_pool(tmp_path, ["stub"], StubEngine()), GatewaySettings())
    with TestClient(app) as remote:  # its client address is not a loopback one
        refused = remote.get("/metrics")
    assert refused.status_code == 403
    assert "DSDEPLOY_METRICS_TOKEN" in refused.json()["error"]["message"]
    with stub_gateway(tmp_path) as local:
        assert httpx.get(local.base_url + "/metrics").status_code == 200


def test_probes_need_no_key_and_ready_reports_each_model(tmp_path: Path) -> None:
    with stub_gateway(tmp_path, ["a", "b"], metrics_token=TOKEN) as gateway:
        assert httpx.get(gateway.base_url + "/health/live").json() == {"status": "live"}
        ready = httpx.get(gateway.base_url + "/health/ready")
        assert ready.status_code == 200
        assert ready.json()["models"]["a"] == {"ready": True, "state": "not loaded"}
        one = httpx.get(gateway.base_url + "/health/ready", params={"model": "b"})
        assert (one.status_code, list(one.json()["models"])) == (200, ["b"])
        missing = httpx.get(gateway.base_url + "/health/ready", params={"model": "zzz"})
        assert missing.status_code == 404
        assert httpx.get(gateway.base_url + "/health").status_code == 200


def test_ready_is_503_at_once_when_an_engine_dies_or_the_gateway_drains(tmp_path: Path) -> None:
    with stub_gateway(tmp_path, ["a", "b"]) as gateway:
        assert httpx.post(gateway.base_url + "/v1/chat/completions", json=chat("a")).is_success
        pid = gateway.pool.running()["a"].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        deadline = time.monotonic() + 0.4  # the supervisor waits 0.5 s before a restart
        while (ready := httpx.get(gateway.base_url + "/health/ready")).status_code == 200:
            assert time.monotonic() < deadline, "readiness missed the dead engine"
        assert ready.status_code == 503
        assert ready.json()["reason"] == "the engine for a is down"
        assert ready.json()["models"]["b"]["ready"]
        restarted = time.monotonic() + 20
        while httpx.get(gateway.base_url + "/health/ready").status_code != 200:
            assert time.monotonic() < restarted, "the engine did not come back"
            time.sleep(0.1)
        scraped = scrape_open(gateway)
        assert value(scraped, "dsdeploy_engine_restarts_total", model="a") == 1
        recovery_s = value(scraped, "dsdeploy_engine_recovery_seconds", model="a")
        assert 0.5 <= recovery_s <= time.monotonic() - killed_at  # the 0.5 s backoff, at least
        models = httpx.get(gateway.base_url + "/ps").json()["models"]
        assert [row["recovery_s"] for row in models] == [recovery_s, None]
        gateway.app.state.drain.begin()  # what a stop signal does first
        draining = httpx.get(gateway.base_url + "/health/ready")
        assert (draining.status_code, draining.json()["reason"]) == (
            503,
            "the gateway is shutting down",
        )


def scrape_open(gateway: StubGateway) -> str:
    """/metrics of a gateway with no token, from this machine."""
    return httpx.get(gateway.base_url + "/metrics").text


def gpu_text(nvml: Any) -> str:
    registry = CollectorRegistry()
    registry.register(GpuCollector(nvml))
    return generate_latest(registry).decode()


def test_gpu_metrics_are_read_per_gpu_in_base_units() -> None:
    text = gpu_text(FakeNvml())
    assert value(text, "dsdeploy_gpu_memory_used_bytes", gpu="1") == 2 * 2**30
    assert value(text, "dsdeploy_gpu_memory_total_bytes", gpu="0") == 80 * 2**30
    assert value(text, "dsdeploy_gpu_utilization_ratio", gpu="0") == pytest.approx(0.37)
    assert value(text, "dsdeploy_gpu_temperature_celsius", gpu="1") == 61
    assert value(text, "dsdeploy_gpu_power_watts", gpu="0") == 312.5
    assert 'dsdeploy_gpu_power_watts{gpu="1"' not in text  # what a GPU does not report


def test_no_gpu_means_no_gpu_metrics() -> None:
    assert "dsdeploy_gpu" not in gpu_text(FakeNvml(driver=False))
    gpus, _, _, _ = probe_gpus()
    assert ("dsdeploy_gpu" in gpu_text(None)) == bool(gpus)  # the real pynvml


@pytest.mark.engine
def test_llama_server_reports_its_slots_and_sequences_through_metrics(
    shared_server: Server,
) -> None:
    reply = httpx.post(shared_server.api + "/chat/completions", json=chat("smollm2"), timeout=120)
    assert reply.status_code == 200
    text = httpx.get(shared_server.base_url + "/metrics").text  # no token: loopback only
    assert 'dsdeploy_engine_slots_busy{model="smollm2"}' in text
    assert value(text, "dsdeploy_engine_sequence_tokens_max", model="smollm2") > 0
    assert value(text, "dsdeploy_completion_tokens_total", model="smollm2") >= 1
