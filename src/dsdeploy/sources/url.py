"""``https://…`` — one file at a URL, checked against ``--sha256`` or a ``.sha256`` sidecar.

A bare URL carries no hash of its own, so one is required: the flag, or ``URL.sha256``
next to the file (the ``sha256sum`` format: the hex digest, optionally followed by a name).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx

from dsdeploy.errors import SourceError
from dsdeploy.progress import ProgressHook
from dsdeploy.settings import HubSettings
from dsdeploy.sources.fetch import TIMEOUT, RemoteFile, download, raise_for_status
from dsdeploy.sources.select import PullOptions, choose
from dsdeploy.store import Store, StoredFile

SHA256_LINE = re.compile(r"^([0-9a-fA-F]{64})\b")


class UrlSource:
    def __init__(self, url: str, options: PullOptions, hub: HubSettings) -> None:
        del hub  # a plain URL needs no hub settings
        self.url = url
        self.options = options
        self.client = httpx.Client(follow_redirects=True, timeout=TIMEOUT)

    def sidecar_sha256(self) -> str:
        sidecar = f"{self.url}.sha256"
        response = self.client.get(sidecar)
        match = SHA256_LINE.match(response.text.strip()) if response.is_success else None
        if match is None:
            raise SourceError(
                f"no sha256 for {self.url}: pass --sha256 HEX, or publish {sidecar} "
                "(the output of sha256sum)"
            )
        return match.group(1).lower()

    def files(self) -> list[RemoteFile]:
        name = unquote(httpx.URL(self.url).path.rsplit("/", 1)[-1])
        try:
            head = self.client.head(self.url)
            raise_for_status(head, self.url)
            expected = self.options.sha256 or self.sidecar_sha256()
        except httpx.TransportError as exc:
            raise SourceError(f"cannot reach {self.url}: {exc}") from None
        length = head.headers.get("Content-Length")
        remote = RemoteFile(
            path=name, url=self.url, size=int(length) if length else None, sha256=expected
        )
        return choose([remote], self.options, self.url)

    def fetch(self, remote: RemoteFile, store: Store, progress: ProgressHook) -> StoredFile:
        return download(remote, store, progress)

    def close(self) -> None:
        self.client.close()
