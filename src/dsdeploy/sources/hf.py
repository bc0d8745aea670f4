"""``hf:ORG/REPO[@REVISION][:PATH]`` — a model repo on Hugging Face or a mirror of it.

huggingface_hub lists the repo (``HfApi.model_info`` with ``files_metadata``: each file's
size, its LFS sha256, or for small files its git blob id) and names the file URLs
(``hf_hub_url``, pinned to the commit the listing resolved, so every file comes from one
revision). The bytes come through ``fetch.download`` rather than ``hf_hub_download``:
that one keeps its own cache layout and does not check the bytes against the LFS sha256,
and we want resume and the hash in one pass straight into the store.
"""

from __future__ import annotations

import httpx2
from huggingface_hub import HfApi, hf_hub_url
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from dsdeploy.errors import AccessDenied, RemoteNotFound, SourceError
from dsdeploy.progress import ProgressHook
from dsdeploy.settings import HubSettings
from dsdeploy.sources.fetch import RemoteFile, download
from dsdeploy.sources.select import PullOptions, choose
from dsdeploy.store import Store, StoredFile, safe_relative_path


def parse_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``org/repo@rev:path`` -> (repo, revision, path)."""
    repo_rev, _, member = ref.partition(":")
    repo, _, revision = repo_rev.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise SourceError(f"hf source {ref!r} must look like hf:ORG/REPO[@REVISION][:PATH]")
    if member:
        safe_relative_path(member)
    return repo, revision or None, member or None


class HfSource:
    def __init__(self, ref: str, options: PullOptions, hub: HubSettings) -> None:
        self.repo, self.revision, member = parse_ref(ref)
        self.options = (
            options
            if member is None
            else PullOptions(
                include=(member,), allow_pickle=options.allow_pickle, sha256=options.sha256
            )
        )
        self.endpoint = hub.hf_endpoint.rstrip("/")
        token: str | bool = hub.hf_token.get_secret_value() if hub.hf_token else False
        self.api = HfApi(endpoint=self.endpoint, token=token, library_name="dsdeploy")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    @property
    def access_hint(self) -> str:
        return (
            f"if {self.repo} is gated or private, accept its licence at "
            f"{self.endpoint}/{self.repo} and set HF_TOKEN to a token of that account"
        )

    def files(self) -> list[RemoteFile]:
        try:
            info = self.api.model_info(self.repo, revision=self.revision, files_metadata=True)
        except GatedRepoError:
            raise AccessDenied(f"{self.repo} is gated: {self.access_hint}") from None
        except RevisionNotFoundError:
            raise RemoteNotFound(f"{self.repo} has no revision {self.revision!r}") from None
        except RepositoryNotFoundError:
            raise RemoteNotFound(
                f"no model repo {self.repo} at {self.endpoint}; check the name, or "
                f"{self.access_hint}"
            ) from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise SourceError(f"{self.endpoint} answered HTTP {status} for {self.repo}") from None
        except (OSError, httpx2.TransportError) as exc:
            raise SourceError(f"cannot reach {self.endpoint}: {exc}") from None
        listing = [
            RemoteFile(
                path=sibling.rfilename,
                url=hf_hub_url(
                    self.repo, sibling.rfilename, revision=info.sha, endpoint=self.endpoint
                ),
                size=sibling.lfs.size if sibling.lfs else sibling.size,
                sha256=sibling.lfs.sha256 if sibling.lfs else None,
                git_sha1=None if sibling.lfs else sibling.blob_id,
            )
            for sibling in info.siblings or []
        ]
        return choose(listing, self.options, self.repo)

    def fetch(self, remote: RemoteFile, store: Store, progress: ProgressHook) -> StoredFile:
        try:
            return download(remote, store, progress, self.headers)
        except AccessDenied as exc:
            raise AccessDenied(f"{exc}; {self.access_hint}") from None

    def close(self) -> None:
        """HfApi keeps no connection of ours open."""
