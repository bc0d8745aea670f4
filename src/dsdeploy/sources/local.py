"""A local file or folder (a GGUF, or a safetensors checkpoint folder) copied into the store.

The copy is hashed as it is written; with ``--sha256`` (single files) it is also checked.
Symbolic links are not followed out of the folder, so a link cannot smuggle in another file.
"""

from __future__ import annotations

from pathlib import Path

from dsdeploy.errors import SourceError
from dsdeploy.progress import ProgressHook
from dsdeploy.settings import HubSettings
from dsdeploy.sources.fetch import RemoteFile
from dsdeploy.sources.select import PullOptions, choose
from dsdeploy.store import HashingWriter, Store, StoredFile

CHUNK = 1 << 20


class LocalSource:
    def __init__(self, ref: str, options: PullOptions, hub: HubSettings) -> None:
        del hub  # a local file needs no hub settings
        self.root = Path(ref).expanduser()
        self.options = options
        if not self.root.exists():
            raise SourceError(f"no such file or folder: {self.root}")

    def files(self) -> list[RemoteFile]:
        if self.root.is_file():
            size = self.root.stat().st_size
            listing = [RemoteFile(self.root.name, str(self.root), size, self.options.sha256)]
        else:
            listing = [
                RemoteFile(path.relative_to(self.root).as_posix(), str(path), path.stat().st_size)
                for path in sorted(self.root.rglob("*"))
                if path.is_file() and not path.is_symlink()
            ]
        return choose(listing, self.options, str(self.root))

    def fetch(self, remote: RemoteFile, store: Store, progress: ProgressHook) -> StoredFile:
        partial = store.new_partial()
        writer = HashingWriter(partial)
        with Path(remote.url).open("rb") as source:
            while chunk := source.read(CHUNK):
                writer.write(chunk)
                progress(writer.size, remote.size or 0)
        actual = writer.close()
        store.commit_blob(partial, actual, remote.sha256, remote.path)
        return StoredFile(path=remote.path, sha256=actual, size=writer.size)

    def close(self) -> None:
        """Nothing to release: files are opened per copy."""
