"""Folders of symbolic links that give blobs back the names a model was published with.

Engines find files by name: llama.cpp opens the parts of a split GGUF next to the first,
transformers and vLLM read ``config.json`` and the shards from one folder. Blobs named by
their hash have no such names, so each model gets a folder of relative links over them, as
Hugging Face's cache has ``snapshots/<commit>/`` over ``blobs/``. Relative links keep
working when the whole store is moved.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath


def publish(folder: Path, links: Mapping[PurePosixPath, Path]) -> None:
    """Make ``folder`` hold these links (name inside the folder -> blob).

    A new folder is built under a hidden name and renamed into place, so whoever sees the
    folder sees all of it; when another process renames its copy in first, ours is dropped
    (the name says what is inside, so both are the same). A link removed by hand is put
    back; on a whole folder that pass only reads the links.
    """
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            staging.chmod(0o755)  # mkdtemp's 0700 would hide the model from other readers
            place_links(staging, links)
            os.rename(staging, folder)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when the rename won
    place_links(folder, links)


def place_links(folder: Path, links: Mapping[PurePosixPath, Path]) -> None:
    for name, blob in links.items():
        link = folder / name
        target = os.path.relpath(blob, link.parent)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        fresh = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
        fresh.symlink_to(target)
        os.replace(fresh, link)  # atomic: a reader sees the old link or the new, never none


def remove_folder(path: Path) -> None:
    """Remove a model folder: its links, never what they point to."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
