"""Fixes applied to the pinned llama.cpp tree before it is built.

Each patch replaces one exact passage of one file. A passage that is missing or found
twice stops the build with a clear error, so a llama.cpp bump cannot silently drop a fix;
the patches' digest is part of the source folder's name and of the build key, so changing
a patch rebuilds the engine everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from dsdeploy.errors import EngineBuildFailed


@dataclass(frozen=True)
class SourcePatch:
    path: str
    """File inside the llama.cpp tree."""
    old: str
    new: str
    why: str


WAIT_UNTIL_DEADLINE = SourcePatch(
    path="tools/server/server-queue.cpp",
    old="""int timeout) {
    while (true) {""",
    new="""int timeout) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    while (true) {""",
    why="A plain (not streamed) request checks whether its client left only when this wait "
    "times out; restarting a 1 s wait on every other request's result meant it never timed "
    "out while another request was generating, so an abandoned request ran to its end.",
)
WAIT_UNTIL_DEADLINE_CALL = SourcePatch(
    path="tools/server/server-queue.cpp",
    old="std::cv_status cr_res = condition_results.wait_for(lock, std::chrono::seconds(timeout));",
    new="std::cv_status cr_res = condition_results.wait_until(lock, deadline);",
    why=WAIT_UNTIL_DEADLINE.why,
)
PATCHES = (WAIT_UNTIL_DEADLINE, WAIT_UNTIL_DEADLINE_CALL)


def patches_digest(patches: tuple[SourcePatch, ...] = PATCHES) -> str:
    text = "\0".join(f"{p.path}\0{p.old}\0{p.new}" for p in patches)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def apply_patches(tree: Path, patches: tuple[SourcePatch, ...] = PATCHES) -> None:
    for patch in patches:
        target = tree / patch.path
        text = target.read_text()
        found = text.count(patch.old)
        if found != 1:
            raise EngineBuildFailed(
                f"cannot patch {patch.path}: the passage to replace occurs {found} times "
                "(the llama.cpp tree changed; update dsdeploy/engines/llamacpp_patches.py)"
            )
        target.write_text(text.replace(patch.old, patch.new))
