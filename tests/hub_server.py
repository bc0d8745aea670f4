"""A local model hub for tests: the endpoints huggingface_hub and ModelScope's SDK call,
answered the way those hubs answer them, with real bytes, ranges and headers.

Hugging Face: ``GET /api/models/{repo}[/revision/{rev}]?blobs=True`` lists files with their
size, git blob id and LFS sha256; ``/{repo}/resolve/{rev}/{path}`` redirects LFS files to a
CDN URL (``X-Linked-Etag``, ``X-Linked-Size``, ``X-Repo-Commit``) and serves small files
itself; gated repos answer 401 with ``X-Error-Code: GatedRepo``. ModelScope:
``/api/v1/models/{repo}/repo/files`` and ``/api/v1/models/{repo}/repo?FilePath=``. Plain
files with ``.sha256`` sidecars live under ``/files/``; ``/unsized/`` serves them without a
length. Every byte route honours ``Range``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")
CHUNK = 64 << 10


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    gated: bool = False
    token: str | None = None
    """The token that opens a gated repo."""


@dataclass
class Hub:
    repos: dict[str, Repo] = field(default_factory=dict)
    plain: dict[str, bytes] = field(default_factory=dict)
    sidecars: bool = True
    """Whether ``/files/NAME.sha256`` answers."""
    corrupt: set[str] = field(default_factory=set)
    """Paths served with one byte flipped (the listing keeps the true hash)."""
    ranges: bool = True
    """Whether ``Range`` is honoured; a server that ignores it answers 200 with everything."""
    rate: float | None = None
    """Bytes per second for file bodies; None is as fast as possible."""
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    """(method, path, Range header) of every request, in order."""
    busy: int = 0
    """File bodies still to refuse with 503 before serving them."""
    with_credentials: list[str] = field(default_factory=list)
    """Paths requested with an Authorization header."""
    cdn: str = ""
    """Base URL LFS files redirect to (another server's ``/cdn/``); empty: this server."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def blob_by_sha256(self, sha256: str) -> tuple[str, bytes] | None:
        for repo in self.repos.values():
            for path, data in repo.files.items():
                if hashlib.sha256(data).hexdigest() == sha256:
                    return path, data
        return None


class Handler(BaseHTTPRequestHandler):
    server: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        del format, args

    @property
    def hub(self) -> Hub:
        return self.server.hub

    def do_HEAD(self) -> None:
        self.route(head=True)

    def do_GET(self) -> None:
        self.route(head=False)

    def route(self, head: bool) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        with self.hub.lock:
            self.hub.requests.append((self.command, path, self.headers.get("Range", "")))
            if "Authorization" in self.headers:
                self.hub.with_credentials.append(path)
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path):
            self.hf_listing(match.group(1), match.group(2))
        elif match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            self.hf_resolve(match.group(1), match.group(3), head)
        elif match := re.fullmatch(r"/cdn/([0-9a-f]{64})", path):
            found = self.hub.blob_by_sha256(match.group(1))
            self.send_body(found[1], found[0], head) if found else self.error(404, "")
        elif match := re.fullmatch(r"/api/v1/models/([^/]+/[^/]+)/repo/files", path):
            self.ms_listing(match.group(1))
        elif match := re.fullmatch(r"/api/v1/models/([^/]+/[^/]+)/repo", path):
            self.ms_file(match.group(1), query.get("FilePath", [""])[0], head)
        elif match := re.fullmatch(r"/(files|unsized)/(.+)", path):
            self.plain_file(match.group(2), head, chunked=match.group(1) == "unsized")
        else:
            self.error(404, "")

    def error(self, status: int, code: str, message: str = "") -> None:
        body = json.dumps({"error": message or code}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message or code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def repo_or_error(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self.error(404, "RepoNotFound", "Repository not found")
        return repo

    def allowed(self, repo: Repo) -> bool:
        if not repo.gated or self.headers.get("Authorization") == f"Bearer {repo.token}":
            return True
        self.error(
            401, "GatedRepo", "Access to this model is restricted. You must be authenticated"
        )
        return False

    def hf_listing(self, repo_id: str, revision: str | None) -> None:
        repo = self.repo_or_error(repo_id)
        if repo is None:
            return
        if revision not in (None, "main", repo.commit):
            self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        siblings = []
        for path, data in repo.files.items():
            sibling: dict[str, object] = {"rfilename": path, "size": len(data)}
            sibling["blobId"] = git_blob_id(data)
            if path.endswith(LFS_SUFFIXES):
                sha256 = hashlib.sha256(data).hexdigest()
                sibling["lfs"] = {"sha256": sha256, "size": len(data), "pointerSize": 134}
            siblings.append(sibling)
        self.send_json(
            {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "siblings": siblings}
        )

    def hf_resolve(self, repo_id: str, path: str, head: bool) -> None:
        repo = self.repo_or_error(repo_id)
        if repo is None or not self.allowed(repo):
            return
        data = repo.files.get(path)
        if data is None:
            self.error(404, "EntryNotFound", f"{path} does not exist")
            return
        if path.endswith(LFS_SUFFIXES):
            sha256 = hashlib.sha256(data).hexdigest()
            self.send_response(302)
            self.send_header("Location", f"{self.hub.cdn}/cdn/{sha256}")
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("X-Linked-Etag", f'"{sha256}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{git_blob_id(data)}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_body(data, path, head, {"X-Repo-Commit": repo.commit})

    def ms_listing(self, repo_id: str) -> None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self.send_json({"Code": 10010205001, "Message": "model not found", "Success": False})
            return
        files = [
            {
                "Name": path.rsplit("/", 1)[-1],
                "Path": path,
                "Size": len(data),
                "Sha256": hashlib.sha256(data).hexdigest(),
                "Type": "blob",
                "Revision": repo.commit,
            }
            for path, data in repo.files.items()
        ]
        self.send_json({"Code": 200, "Data": {"Files": files}, "Success": True})

    def ms_file(self, repo_id: str, path: str, head: bool) -> None:
        repo = self.repo_or_error(repo_id)
        if repo is not None and self.allowed(repo):
            data = repo.files.get(path)
            self.send_body(data, path, head) if data is not None else self.error(404, "")

    def plain_file(self, name: str, head: bool, chunked: bool) -> None:
        if name.endswith(".sha256") and name.removesuffix(".sha256") in self.hub.plain:
            if not self.hub.sidecars:
                self.error(404, "")
                return
            digest = hashlib.sha256(self.hub.plain[name.removesuffix(".sha256")]).hexdigest()
            self.send_body(f"{digest}  {name.removesuffix('.sha256')}\n".encode(), name, head)
        elif name in self.hub.plain:
            self.send_body(self.hub.plain[name], name, head, chunked=chunked)
        else:
            self.error(404, "")

    def send_json(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_body(
        self,
        data: bytes,
        path: str,
        head: bool,
        extra: dict[str, str] | None = None,
        chunked: bool = False,
    ) -> None:
        if not head and self.hub.busy and not path.endswith(".sha256"):
            self.hub.busy -= 1
            self.error(503, "")
            return
        if path in self.hub.corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and self.hub.ranges and not chunked:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        if chunked:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not head:
            self.stream(memoryview(data)[start:])

    def stream(self, body: memoryview) -> None:
        began, sent = time.monotonic(), 0
        try:
            for offset in range(0, len(body), CHUNK):
                self.wfile.write(body[offset : offset + CHUNK])
                sent += min(CHUNK, len(body) - offset)
                if self.hub.rate:
                    time.sleep(max(0.0, sent / self.hub.rate - (time.monotonic() - began)))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: Hub) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hub = hub

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(hub: Hub) -> Iterator[HubServer]:
    server = HubServer(hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
