"""A real Prometheus (Debian's package) scrapes the gateway every second with the metrics
token, as an operator would set it up, and PromQL through its HTTP API gives back the
requests made and a TTFT quantile; a job without the token is refused."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.stub_engine import StubEngine
from tests.threaded_gateway import StubGateway, free_port, stub_gateway

PROMETHEUS = shutil.which("prometheus")
TOKEN = "scrape-token-5d1c"
TTFT_MEDIAN = "histogram_quantile(0.5, sum(rate(dsdeploy_ttft_seconds_bucket[1m])) by (le))"


def scrape_config(target: str, token_file: Path) -> str:
    return f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: dsdeploy
    authorization:
      type: Bearer
      credentials_file: {token_file}
    static_configs:
      - targets: ["{target}"]
  - job_name: dsdeploy-without-token
    static_configs:
      - targets: ["{target}"]
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[StubGateway]:
    engine = StubEngine(token_delay_s=0.01)
    with stub_gateway(tmp_path / "engines", metrics_token=TOKEN, engine=engine) as running:
        yield running


@pytest.fixture
def prometheus(tmp_path: Path, gateway: StubGateway) -> Iterator[str]:
    assert PROMETHEUS, "needs Prometheus on PATH: apt-get install prometheus (.ci/run does)"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config(gateway.base_url.removeprefix("http://"), token_file))
    url = f"http://127.0.0.1:{free_port()}"
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        until(lambda: ready(url), "Prometheus did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def ready(url: str) -> bool:
    try:
        return httpx.get(url + "/-/ready").status_code == 200
    except httpx.TransportError:
        return False


def until(check: Any, failure: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, failure
        time.sleep(0.25)


def query(url: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(url + "/api/v1/query", params={"query": promql}).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def scalar(url: str, promql: str) -> float | None:
    result = query(url, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_requests_and_ttft_with_the_token(
    gateway: StubGateway, prometheus: str
) -> None:
    until(lambda: scalar(prometheus, 'up{job="dsdeploy"}') == 1, "no scrape with the token")
    refused = 'up{job="dsdeploy-without-token"}'
    until(lambda: scalar(prometheus, refused) == 0, "a scrape without the token was not refused")
    body = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6}
    stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.Client(base_url=gateway.base_url + "/v1", timeout=30) as client:
        for _ in range(4):
            with client.stream("POST", "/chat/completions", json=stream) as answer:
                assert answer.status_code == 200
                answer.read()
        assert client.post("/chat/completions", json=body).status_code == 200
        assert client.post("/chat/completions", json={**body, "model": "x"}).status_code == 404

    # API requests only: refusals before routing (the tokenless scrapes' 401s) have no route.
    api = 'dsdeploy_requests_total{job="dsdeploy",route!=""}'
    until(lambda: scalar(prometheus, f"sum({api})") == 6, "Prometheus did not see the 6 requests")
    by_status = query(prometheus, f"sum by (status) ({api})")
    assert {row["metric"]["status"]: row["value"][1] for row in by_status} == {
        "200": "5",
        "404": "1",
    }
    until(lambda: ttft_median(prometheus) is not None, "no TTFT quantile")
    median = ttft_median(prometheus)
    assert median is not None and 0 < median < 1.0
    tokens = 'sum(dsdeploy_completion_tokens_total{job="dsdeploy"})'
    assert scalar(prometheus, tokens) == 5 * 6


def ttft_median(url: str) -> float | None:
    found = scalar(url, TTFT_MEDIAN)
    return None if found is None or math.isnan(found) else found
