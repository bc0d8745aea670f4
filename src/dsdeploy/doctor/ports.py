"""The gateway's port: free to bind, or taken by a process we can name."""

from __future__ import annotations

import errno
import socket

import psutil

from dsdeploy.doctor.finding import Finding, ok


def listener(port: int) -> str | None:
    """'nginx (pid 812)' for the process listening on ``port``, when this user may see it."""
    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return None
            try:
                return f"{psutil.Process(conn.pid).name()} (pid {conn.pid})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return None


def check_port(host: str, port: int) -> list[Finding]:
    """Bind the address the gateway will bind, and let go at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return [
                    Finding(
                        "port",
                        "fail",
                        f"cannot listen on {host}:{port}: {exc.strerror}",
                        "set DSDEPLOY_HOST to an address of this machine (127.0.0.1 keeps it "
                        "private), or pick a port above 1023: `dsdeploy serve --port 8001`",
                    )
                ]
            owner = listener(port)
            who = f"by {owner}" if owner else "by a process this user cannot see"
            stop = f"stop {owner}" if owner else "stop the process using it (`ss -ltnp`)"
            return [
                Finding(
                    "port",
                    "fail",
                    f"port {port} on {host} is taken {who}",
                    f"{stop}, or serve on another port: `dsdeploy serve --port {port + 1}`",
                )
            ]
    return [ok("port", f"{host}:{port} is free for the gateway")]
