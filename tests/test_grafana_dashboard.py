"""The Grafana dashboard shipped in src/dsdeploy/deploy draws only metrics the gateway exports:
every metric name in its PromQL is in a real /metrics answer (GPU metrics from the
NVML stand-in, as no GPU is present here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_nvml import FakeNvml
from tests.threaded_gateway import stub_gateway

DASHBOARD = Path(__file__).resolve().parents[1] / "src/dsdeploy/deploy/grafana-dashboard.json"
METRIC_NAME = re.compile(r"\b(?:dsdeploy|process)_[a-z0-9_]+\b")
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}


def exported_names(text: str) -> set[str]:
    """Every series name the text defines, samples or not (a counter never incremented
    has no sample yet)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, [""])}
        names |= {sample.name for sample in family.samples}
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_dashboard_metric_is_exported(tmp_path: Path) -> None:
    with stub_gateway(tmp_path, nvml=FakeNvml()) as gateway:
        body = {"model": "stub", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", json=body) as r:
            r.read()
        text = httpx.get(gateway.base_url + "/metrics").text
    exported = exported_names(text)
    expressions = dashboard_expressions()
    used = {name for expr in expressions for name in METRIC_NAME.findall(expr)}
    assert len(expressions) >= 20 and len(used) >= 20
    assert sorted(used - exported) == []
    for wanted in ("dsdeploy_ttft_seconds_bucket", "dsdeploy_engine_restarts_total"):
        assert wanted in used
