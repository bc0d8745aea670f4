"""Who may reach the gateway over the network, checked before anything else of a request.

- The client's address is the peer's, unless the peer is a trusted proxy: then
  ``X-Forwarded-For`` is read from the right (each proxy appends the address it saw) and
  the first address that is not a trusted proxy is the client. Entries left of it were
  written by the client and prove nothing. An entry that does not parse where the client
  should be makes the client unknown. IPv4-mapped IPv6 (``::ffff:10.0.0.1``, what a
  dual-stack socket reports) counts as the IPv4 address.
- With an allowlist, a client outside it (or unknown) gets 403, ``/health`` included.
- The ``Host`` header must name this server (DNS rebinding: a web page whose name was
  re-pointed at 127.0.0.1 makes the browser send its own name as Host). Accepted:
  localhost, 127.0.0.1, ::1, the bind address and ``allowed_hosts``, any port. A server
  bound to every interface does not know its addresses, so it accepts any IP literal
  (a page cannot rebind an IP literal), names only when listed. Others get 421.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from dsdeploy.gateway.context import RequestContext
from dsdeploy.gateway.errors import ApiError, ErrorShape, error_response, shape_for_path
from dsdeploy.settings import GatewaySettings, SecuritySettings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::")
MISDIRECTED = 421
"""RFC 9110 §15.5.20: this server does not answer for the authority the request names."""


def unmapped(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_address(text: str) -> Address | None:
    """An address as peers and proxies write it: bare, ``[v6]``, or with a port."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":")[0]
    try:
        return unmapped(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_network(text: str) -> Network:
    network = ipaddress.ip_network(text, strict=False)
    mapped = network.network_address
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped and network.prefixlen >= 96:
        return ipaddress.IPv4Network((mapped.ipv4_mapped, network.prefixlen - 96))
    return network


def within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> Address | None:
    """The client's address, or None when it cannot be known."""
    address = parse_address(peer) if peer else None
    if address is None or not within(address, trusted):
        return address
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None or not within(address, trusted):
            return address
    return address  # every hop a trusted proxy: the leftmost (or the peer itself)


def host_name(header: str) -> str:
    """The Host header without its port, lower case, without brackets or a final dot."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else ""
    return header.rsplit(":", 1)[0].rstrip(".") if header.count(":") == 1 else header.rstrip(".")


def same_name(name: str) -> str:
    """IP literals compared by value (``::1`` is ``0::1``), names by text."""
    address = parse_address(name)
    return str(address) if address is not None else name


@dataclass(frozen=True)
class NetworkPolicy:
    allow: tuple[Network, ...]
    """Empty: every address."""
    trusted_proxies: tuple[Network, ...]
    hosts: frozenset[str] | None
    """Names and IP literals the server answers to; None: any."""
    any_ip_literal: bool
    """Bound to every interface: any IP literal is one of ours."""

    @classmethod
    def from_settings(cls, gateway: GatewaySettings, security: SecuritySettings) -> NetworkPolicy:
        listed = [host_name(host) for host in security.allowed_hosts]
        bind = host_name(gateway.host)
        return cls(
            allow=tuple(parse_network(text) for text in security.allow_ips),
            trusted_proxies=tuple(parse_network(text) for text in security.trusted_proxies),
            hosts=None
            if "*" in listed
            else frozenset(same_name(name) for name in (*LOCAL_NAMES, bind, *listed)),
            any_ip_literal=bind in WILDCARD_BINDS,
        )

    def address_allowed(self, address: Address | None) -> bool:
        if not self.allow:
            return True
        return address is not None and within(address, self.allow)

    def host_allowed(self, header: str | None) -> bool:
        if self.hosts is None:
            return True
        if not header:
            return False
        name = same_name(host_name(header))
        if not name:
            return False
        return name in self.hosts or (self.any_ip_literal and parse_address(name) is not None)


ANSWERS = {
    403: "this client's address is not in the server's allowlist",
    MISDIRECTED: "the Host header names a server this one does not answer for",
}
"""What the guard may answer on any path, for the API's document."""
FORBIDDEN_IP = ApiError(403, "this client's address may not use this server", code="ip_not_allowed")
FORBIDDEN_HOST = ApiError(
    MISDIRECTED,
    "the Host header names a server this one does not answer for",
    code="host_not_allowed",
)


class NetworkGuard:
    """Decides the client's address and refuses foreign clients and foreign Host names
    before the request is read; runs inside the context middleware, whose ``ctx`` it fills."""

    def __init__(
        self, app: ASGIApp, policy: NetworkPolicy, shapes: Sequence[tuple[str, ErrorShape]]
    ) -> None:
        self.app = app
        self.policy = policy
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx: RequestContext = scope["state"]["ctx"]
        headers = Headers(scope=scope)
        peer = scope.get("client")
        address = client_address(
            peer[0] if peer else None,
            headers.getlist("x-forwarded-for"),
            self.policy.trusted_proxies,
        )
        ctx.client_ip = None if address is None else str(address)
        if not self.policy.address_allowed(address):
            ctx.decision, error = "forbidden_ip", FORBIDDEN_IP
        elif not self.policy.host_allowed(headers.get("host")):
            ctx.decision, error = "forbidden_host", FORBIDDEN_HOST
        else:
            await self.app(scope, receive, send)
            return
        shape = shape_for_path(scope["path"], self.shapes)
        await error_response(shape, error, ctx.id)(scope, receive, send)
