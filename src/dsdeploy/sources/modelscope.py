"""``ms:ORG/REPO[@REVISION]`` — a model repo on ModelScope, through its HTTP API.

The endpoints are the ones the modelscope SDK calls (``HubApi.get_model_files`` and
``model_file_download``): a recursive listing with each file's size and sha256, and a
per-file download URL. The SDK itself is not used: it pulls in a large dependency tree and
keeps its own cache, where we want resume and hash-while-downloading into the store.
"""

from __future__ import annotations

from typing import Any

import httpx

from dsdeploy.errors import AccessDenied, SourceError
from dsdeploy.progress import ProgressHook
from dsdeploy.settings import HubSettings
from dsdeploy.sources.fetch import TIMEOUT, RemoteFile, download, raise_for_status
from dsdeploy.sources.select import PullOptions, choose
from dsdeploy.store import Store, StoredFile

DEFAULT_REVISION = "master"


class ModelScopeSource:
    def __init__(self, ref: str, options: PullOptions, hub: HubSettings) -> None:
        self.repo, _, revision = ref.partition("@")
        if self.repo.count("/") != 1 or not all(self.repo.split("/")):
            raise SourceError(f"ms source {ref!r} must look like ms:ORG/REPO[@REVISION]")
        self.revision = revision or DEFAULT_REVISION
        self.options = options
        self.endpoint = hub.ms_endpoint.rstrip("/")
        token = hub.ms_token.get_secret_value() if hub.ms_token else None
        # The SDK sends its access token as this cookie (HubApi.get_cookies).
        self.headers = {"Cookie": f"m_session_id={token}"} if token else {}
        self.client = httpx.Client(headers=self.headers, follow_redirects=True, timeout=TIMEOUT)

    @property
    def api(self) -> str:
        return f"{self.endpoint}/api/v1/models/{self.repo}/repo"

    def listing(self) -> list[dict[str, Any]]:
        params = {"Revision": self.revision, "Recursive": "true"}
        try:
            response = self.client.get(f"{self.api}/files", params=params)
        except httpx.TransportError as exc:
            raise SourceError(f"cannot reach {self.endpoint}: {exc}") from None
        try:
            raise_for_status(response, f"ModelScope repo {self.repo}")
        except AccessDenied as exc:
            raise AccessDenied(f"{exc}; set DSDEPLOY_MS_TOKEN to a ModelScope token") from None
        body = response.json()
        if body.get("Code") != 200:
            message = body.get("Message") or "no message"
            raise SourceError(f"ModelScope refused {self.repo}@{self.revision}: {message}")
        files: list[dict[str, Any]] = body.get("Data", {}).get("Files", [])
        return files

    def files(self) -> list[RemoteFile]:
        listing = [
            RemoteFile(
                path=entry["Path"],
                url=str(
                    httpx.URL(
                        self.api, params={"Revision": self.revision, "FilePath": entry["Path"]}
                    )
                ),
                size=int(entry["Size"]),
                sha256=entry.get("Sha256") or None,
            )
            for entry in self.listing()
            if entry.get("Type") != "tree"
        ]
        return choose(listing, self.options, self.repo)

    def fetch(self, remote: RemoteFile, store: Store, progress: ProgressHook) -> StoredFile:
        return download(remote, store, progress, self.headers)

    def close(self) -> None:
        self.client.close()
