"""The network guard on a real listening gateway: the client address (X-Forwarded-For only
through trusted proxies), the IP allowlist, the Host check and CORS, each refusal in the
called API's error shape."""

from __future__ import annotations

import ipaddress
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dsdeploy.gateway.auth import AuthConfig
from dsdeploy.gateway.context import RequestContext, Usage
from dsdeploy.gateway.hooks import Hook
from dsdeploy.gateway.network import NetworkPolicy, client_address, parse_network
from dsdeploy.security.db import open_database, sqlite_url
from dsdeploy.security.key_cache import KeyCache
from dsdeploy.security.keys import KeyStore
from dsdeploy.settings import GatewaySettings, SecuritySettings
from tests.conftest import run_cli
from tests.gateway_server import MODEL, running_gateway

MESSAGES = {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


class Decisions(Hook):
    """What the audit will see of each request."""

    def __init__(self) -> None:
        self.seen: list[RequestContext] = []

    async def after(self, ctx: RequestContext, usage: Usage | None) -> None:
        self.seen.append(ctx)

    def wait(self, count: int) -> list[RequestContext]:
        """``after`` runs once the answer is sent: the client may read it first."""
        deadline = time.monotonic() + 5
        while len(self.seen) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.seen


@pytest.fixture
def decisions() -> Decisions:
    return Decisions()


@pytest.fixture
def only_10_net(tmp_path: Path, decisions: Decisions) -> Iterator[str]:
    """Allowlist 10.0.0.0/8 and 2001:db8::/32; the test client (127.0.0.1) is outside."""
    security = SecuritySettings(allow_ips=["10.0.0.0/8", "2001:db8::/32"])
    with running_gateway(tmp_path, security, hooks=[decisions]) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def behind_local_proxy(tmp_path: Path, decisions: Decisions) -> Iterator[str]:
    """As above, with a reverse proxy on 127.0.0.1 trusted to name the client."""
    security = SecuritySettings(allow_ips=["10.0.0.0/8"], trusted_proxies=["127.0.0.0/8"])
    with running_gateway(tmp_path, security, hooks=[decisions]) as port:
        yield f"http://127.0.0.1:{port}"


def spoofed_headers(rng: random.Random) -> list[tuple[str, str]]:
    """Forwarding headers a client outside the allowlist might try."""
    inside = [
        f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
        f"::ffff:10.{rng.randrange(256)}.0.1",
        f"[::ffff:10.0.0.{rng.randrange(256)}]:443",
        f"10.0.0.{rng.randrange(256)}:8080",
        f"2001:db8::{rng.randrange(65536):x}",
        "10.0.0.1",
    ]
    garbage = ["unknown", "", "unknown, ,", "10.0.0.0/8", "0x0a000001", "a" * 300]
    pick = rng.choice((inside, garbage))
    hops = [rng.choice(pick) for _ in range(rng.randrange(1, 5))]
    headers = [("x-forwarded-for", ", ".join(hops).strip())]
    if rng.random() < 0.3:
        headers.append(("x-forwarded-for", rng.choice(inside)))
    if rng.random() < 0.3:
        headers += [("x-real-ip", rng.choice(inside)), ("forwarded", f"for={rng.choice(inside)}")]
    return headers


def test_spoofed_forwarded_for_from_an_untrusted_peer_never_passes_the_allowlist(
    only_10_net: str, decisions: Decisions
) -> None:
    rng = random.Random(20261201)
    bypasses = []
    with httpx.Client(base_url=only_10_net) as client:
        for _ in range(100):
            headers = spoofed_headers(rng)
            reply = client.post("/v1/chat/completions", json=MESSAGES, headers=headers)
            code = reply.json().get("error", {}).get("code")
            if (reply.status_code, code) != (403, "ip_not_allowed"):
                bypasses.append((headers, reply.status_code))
    assert bypasses == []
    assert {(ctx.decision, ctx.client_ip, ctx.status) for ctx in decisions.wait(100)} == {
        ("forbidden_ip", "127.0.0.1", 403)
    }


def test_a_trusted_proxy_cannot_be_used_to_smuggle_an_allowed_address(
    behind_local_proxy: str,
) -> None:
    """The proxy appends the address it saw; what the client wrote before it is ignored."""
    rng = random.Random(7)
    with httpx.Client(base_url=behind_local_proxy) as client:
        for _ in range(100):
            (_, written), *_ = spoofed_headers(rng)
            seen_by_proxy = f"192.0.2.{rng.randrange(256)}"
            chain = f"{written}, {seen_by_proxy}" if written else seen_by_proxy
            reply = client.get("/health", headers={"x-forwarded-for": chain})
            assert reply.status_code == 403, chain


def test_through_a_trusted_proxy_the_forwarded_address_decides(
    behind_local_proxy: str, decisions: Decisions
) -> None:
    with httpx.Client(base_url=behind_local_proxy) as client:
        allowed = client.get("/v1/models", headers={"x-forwarded-for": "192.0.2.1, 10.9.8.7"})
        via_two_proxies = client.get("/health", headers={"x-forwarded-for": "10.1.1.1, 127.0.0.2"})
        outside = client.get("/v1/models", headers={"x-forwarded-for": "192.0.2.1"})
        the_proxy_itself = client.get("/v1/models")
    assert allowed.status_code == 200
    assert via_two_proxies.status_code == 200
    assert outside.status_code == 403
    assert the_proxy_itself.status_code == 403
    refused = [(ctx.client_ip, ctx.decision) for ctx in decisions.wait(2)]
    assert refused == [("192.0.2.1", "forbidden_ip"), ("127.0.0.1", "forbidden_ip")]


def test_refusals_take_the_called_apis_error_shape(only_10_net: str) -> None:
    anthropic = httpx.post(only_10_net + "/v1/messages", json=MESSAGES)
    assert anthropic.status_code == 403
    body = anthropic.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "permission_error"
    assert body["request_id"] == anthropic.headers["x-request-id"]
    openai = httpx.get(only_10_net + "/health")
    assert openai.status_code == 403
    assert openai.json()["error"]["type"] == "permission_error"


def test_ipv4_mapped_addresses_count_as_ipv4() -> None:
    trusted = [parse_network("10.0.0.0/8")]
    assert client_address("::ffff:10.0.0.1", [], []) == ipaddress.ip_address("10.0.0.1")
    assert client_address("::ffff:10.0.0.1", ["::ffff:192.0.2.5"], trusted) == (
        ipaddress.ip_address("192.0.2.5")
    )
    assert parse_network("::ffff:10.0.0.0/104") == ipaddress.ip_network("10.0.0.0/8")


def test_a_dual_stack_listener_sees_ipv4_clients_as_ipv4(tmp_path: Path) -> None:
    security = SecuritySettings(allow_ips=["127.0.0.1"])
    with running_gateway(tmp_path, security, host="::") as port:
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    security = SecuritySettings(allow_ips=["::ffff:10.0.0.0/104"])
    with running_gateway(tmp_path, security, host="::") as port:
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 403


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_clients_are_matched_against_ipv6_networks(tmp_path: Path) -> None:
    with running_gateway(tmp_path, SecuritySettings(allow_ips=["::1/128"]), host="::1") as port:
        assert httpx.get(f"http://[::1]:{port}/health").status_code == 200
    outside = SecuritySettings(allow_ips=["2001:db8::/32", "127.0.0.1"])
    with running_gateway(tmp_path, outside, host="::1") as port:
        assert httpx.get(f"http://[::1]:{port}/health").status_code == 403


@pytest.fixture
def local_gateway(tmp_path: Path, decisions: Decisions) -> Iterator[int]:
    with running_gateway(tmp_path, SecuritySettings(), hooks=[decisions]) as port:
        yield port


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:{port}", "127.0.0.1:{port}", "[::1]:{port}", "LocalHost."]
)
def test_the_servers_own_names_pass_the_host_check(local_gateway: int, host: str) -> None:
    reply = httpx.get(
        f"http://127.0.0.1:{local_gateway}/health",
        headers={"host": host.format(port=local_gateway)},
    )
    assert reply.status_code == 200


@pytest.mark.parametrize(
    "host", ["attacker.example", "attacker.example:{port}", "127.0.0.1.nip.io", "10.0.0.1"]
)
def test_a_foreign_host_header_is_refused_with_421(
    local_gateway: int, decisions: Decisions, host: str
) -> None:
    url = f"http://127.0.0.1:{local_gateway}"
    headers = {"host": host.format(port=local_gateway)}
    openai = httpx.get(url + "/v1/models", headers=headers)
    anthropic = httpx.post(url + "/v1/messages", json=MESSAGES, headers=headers)
    assert openai.status_code == anthropic.status_code == 421
    assert openai.json()["error"]["code"] == "host_not_allowed"
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    assert [ctx.decision for ctx in decisions.wait(2)] == ["forbidden_host"] * 2


def test_a_request_without_a_host_header_is_refused(local_gateway: int) -> None:
    with socket.create_connection(("127.0.0.1", local_gateway)) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        answer = b"".join(iter(lambda: sock.recv(4096), b""))
    assert answer.startswith(b"HTTP/1.1 421 ")


def policy(host: str, allowed_hosts: list[str]) -> NetworkPolicy:
    return NetworkPolicy.from_settings(
        GatewaySettings(host=host), SecuritySettings(allowed_hosts=allowed_hosts)
    )


def test_allowed_hosts_add_names_and_a_wildcard_bind_accepts_ip_literals_only() -> None:
    named = policy("192.168.1.5", ["api.example.com"])
    assert named.host_allowed("api.example.com:8443")
    assert named.host_allowed("192.168.1.5:8000")
    assert not named.host_allowed("192.168.1.6")
    everywhere = policy("0.0.0.0", [])
    assert everywhere.host_allowed("192.168.1.6:8000")
    assert everywhere.host_allowed("[fe80::1]:8000")
    assert not everywhere.host_allowed("rebound.attacker.example")
    assert not everywhere.host_allowed("[::1")
    assert policy("0.0.0.0", ["*"]).host_allowed("anything.example")


PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization",
}


def test_cors_is_closed_by_default(local_gateway: int) -> None:
    url = f"http://127.0.0.1:{local_gateway}/v1/chat/completions"
    origin = {"origin": "https://attacker.example"}
    preflight = httpx.options(url, headers=origin | PREFLIGHT)
    simple = httpx.post(url, json=MESSAGES, headers=origin)
    for reply in (preflight, simple):
        assert not [name for name in reply.headers if name.startswith("access-control-")]


def test_cors_origins_open_the_api_to_exactly_those_origins(tmp_path: Path) -> None:
    security = SecuritySettings(cors_origins=["https://app.example"])
    with running_gateway(tmp_path, security) as port:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        granted = httpx.options(url, headers={"origin": "https://app.example"} | PREFLIGHT)
        denied = httpx.options(url, headers={"origin": "https://attacker.example"} | PREFLIGHT)
    assert granted.status_code == 200
    assert granted.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in denied.headers


def test_a_preflight_refused_by_cors_is_an_error_in_the_apis_shape(tmp_path: Path) -> None:
    """Starlette answers a refused preflight with a plain-text 400; clients and the audit
    see a 403 in the called API's shape instead, with the request id."""
    security = SecuritySettings(cors_origins=["https://app.example"])
    attacker = {"origin": "https://attacker.example"}
    with running_gateway(tmp_path, security) as port:
        base = f"http://127.0.0.1:{port}"
        openai = httpx.options(base + "/v1/chat/completions", headers=attacker | PREFLIGHT)
        anthropic = httpx.options(base + "/v1/messages", headers=attacker | PREFLIGHT)
        method = {"access-control-request-method": "DELETE"}
        bad_method = httpx.options(
            base + "/v1/models", headers={"origin": "https://app.example"} | method
        )
    assert openai.status_code == 403
    assert openai.headers["x-request-id"].startswith("req_")
    assert "access-control-allow-origin" not in openai.headers
    error = openai.json()["error"]
    assert (error["type"], error["code"]) == ("permission_error", "cors_not_allowed")
    assert "origin" in error["message"]
    assert anthropic.status_code == 403
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "permission_error"
    assert bad_method.status_code == 403
    assert "method" in bad_method.json()["error"]["message"]


def test_a_preflight_needs_no_api_key_but_the_request_does(tmp_path: Path) -> None:
    """CORS answers before auth: a browser's preflight never carries the key."""
    store = KeyStore(open_database(sqlite_url(tmp_path / "security.db")))
    _, presented = store.create("browser app")
    auth = AuthConfig(keys=KeyCache(store, ttl_s=5.0))
    security = SecuritySettings(cors_origins=["https://app.example"])
    origin = {"origin": "https://app.example"}
    with running_gateway(tmp_path, security, auth=auth) as port:
        url = f"http://127.0.0.1:{port}/v1/models"
        preflight = httpx.options(url, headers=origin | PREFLIGHT)
        without_key = httpx.get(url, headers=origin)
        with_key = httpx.get(url, headers=origin | {"authorization": f"Bearer {presented}"})
    store.close()
    assert preflight.status_code == 200
    assert without_key.status_code == 401
    assert with_key.status_code == 200
    assert with_key.headers["access-control-allow-origin"] == "https://app.example"


def test_a_bad_network_flag_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "serve", "--allow-ip", "10.0.0.300/8")
    assert result.returncode == 2
    assert "'10.0.0.300/8' is not an IP address or CIDR network" in result.stderr
    assert "Traceback" not in result.stderr
