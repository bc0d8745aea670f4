"""Pull throughput: dsdeploy's downloader (sha256 while downloading, fsync, rename into the
store) against curl writing the same file, from the same loopback server, in the same run.

Two more clients give the costs curl leaves out: curl followed by ``sync FILE`` (the
fsync that dsdeploy does before a file enters the store) and curl followed by sha256sum
(verifying after the download instead of during it). The server, a separate process,
sends the file with ``sendfile`` so that it is not the bottleneck; ``--rate-mbps`` caps
it, to compare at a realistic link speed too. The clients take turns, in reversed order
every other round, for ``--reps`` rounds; the table shows the median of each, and the
client's CPU seconds per GB (user + system, all threads, kernel writeback done on its
behalf included).

    python benchmarks/pull_throughput.py [--size-mib 1024] [--reps 5] [--rate-mbps 0]

Prints a table and writes benchmarks/results/pull_throughput.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dsdeploy.sources.fetch import RemoteFile, download
from dsdeploy.store import Store

RESULTS = Path(__file__).parent / "results" / "pull_throughput.json"
SEND_CHUNK = 4 << 20


def serve_file(path: Path, rate: float | None) -> None:
    """Run in the server process: print the port, serve until killed."""
    size = path.stat().st_size

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            del format, args

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            began, sent = time.monotonic(), 0
            with path.open("rb") as source:
                while sent < size:
                    sent += self.connection.sendfile(source, sent, min(SEND_CHUNK, size - sent))
                    if rate:
                        time.sleep(max(0.0, sent / rate - (time.monotonic() - began)))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def start_server(path: Path, rate_mbps: float) -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, __file__, "--serve", str(path), "--rate-mbps", str(rate_mbps)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def time_curl(url: str, dest: Path, *then: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of curl, and of a command run on its file after it."""
    cpu, began = cpu_seconds(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), url], check=True)
    if then:
        subprocess.run([*then, str(dest)], check=True, capture_output=True)
    elapsed = time.perf_counter() - began
    used = cpu_seconds(resource.RUSAGE_CHILDREN) - cpu
    dest.unlink()
    return elapsed, used


def time_dsdeploy(remote: RemoteFile, root: Path) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds: the downloader's threads)."""
    store = Store(root)
    cpu, began = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    stored = download(remote, store, lambda done, total: None)
    elapsed = time.perf_counter() - began
    used = cpu_seconds(resource.RUSAGE_SELF) - cpu
    assert stored.sha256 == remote.sha256
    shutil.rmtree(root)
    return elapsed, used


def make_file(path: Path, size: int) -> str:
    """Random bytes (nothing compresses or dedups them), and their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // (1 << 20)):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--rate-mbps", type=float, default=0, help="server cap, MB/s (0: none)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="64 MiB, one rep: a check it runs")
    args = parser.parse_args()
    if args.quick:
        args.size_mib, args.reps = 64, 1
    if args.serve:
        serve_file(args.serve, args.rate_mbps * 1e6 or None)
        return
    size = args.size_mib << 20
    work = Path(tempfile.mkdtemp(prefix="pull-bench-", dir=Path.home()))
    try:
        source = work / "model.bin"
        sha256 = make_file(source, size)
        server, port = start_server(source, args.rate_mbps)
        url = f"http://127.0.0.1:{port}/model.bin"
        remote = RemoteFile("model.bin", url, size, sha256)
        clients = {
            "curl": lambda: time_curl(url, work / "curl.out"),
            "dsdeploy": lambda: time_dsdeploy(remote, work / "store"),
            "curl+sync": lambda: time_curl(url, work / "curl.out", "sync"),
            "curl+sha256sum": lambda: time_curl(url, work / "curl.out", "sha256sum"),
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
        try:
            for rep in range(args.reps):
                order = list(clients) if rep % 2 == 0 else list(reversed(clients))
                for name in order:
                    runs[name].append(clients[name]())
        finally:
            server.terminate()
            server.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(runs, size, args)


def report(runs: dict[str, list[tuple[float, float]]], size: int, args: argparse.Namespace) -> None:
    speeds = {name: [size / wall / 1e6 for wall, _ in pairs] for name, pairs in runs.items()}
    cpu = {name: [used / (size / 1e9) for _, used in pairs] for name, pairs in runs.items()}
    medians = {name: statistics.median(values) for name, values in speeds.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    ratio = medians["dsdeploy"] / medians["curl"]
    cap = f"{args.rate_mbps:g} MB/s" if args.rate_mbps else "none"
    load = os.getloadavg()[0]
    print(
        f"{args.size_mib} MiB over loopback, {args.reps} alternating reps, server cap {cap}, "
        f"load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'client':<15} {'median MB/s':>12} {'CPU s/GB':>9}  each rep (MB/s)")
    for name, values in speeds.items():
        each = " ".join(f"{v:.0f}" for v in values)
        print(f"{name:<15} {medians[name]:>12.0f} {cpu_medians[name]:>9.2f}  {each}")
    print(f"dsdeploy / curl = {ratio:.2f} (sha256 and fsync included on the dsdeploy side)")
    out = RESULTS.with_suffix(".quick.json") if args.quick else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "size_mib": args.size_mib,
                "reps": args.reps,
                "rate_mbps": args.rate_mbps,
                "load_average": load,
                "mb_per_s": speeds,
                "median_mb_per_s": medians,
                "cpu_s_per_gb": cpu,
                "median_cpu_s_per_gb": cpu_medians,
                "ratio_dsdeploy_to_curl": ratio,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
