"""Which of a repo's files a pull takes: one GGUF quant, or a safetensors checkpoint.

Every name in a listing is checked first (a listing is outside input), then ``--include``/
``--exclude`` globs apply, then the format rules: a GGUF repo gives the files of one quant
(all parts of a split one, and nothing else); otherwise safetensors are preferred and
pickle files, which run code when loaded, are refused unless the user allows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import PurePosixPath

from dsdeploy.errors import ConfigError, SourceError
from dsdeploy.gguf_parts import one_model
from dsdeploy.sources.fetch import RemoteFile
from dsdeploy.store import safe_relative_path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
QUANT = re.compile(r"(?i)(?<![a-z0-9])(I?Q\d+(?:_[A-Z0-9]+)*|BF16|F16|F32)(?![a-z0-9])")


@dataclass(frozen=True)
class PullOptions:
    """What the user asked of one pull, beyond the source itself."""

    quant: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    allow_pickle: bool = False
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None and not SHA256_HEX.fullmatch(self.sha256.lower()):
            raise ConfigError(f"--sha256 {self.sha256!r} is not a sha256: 64 hex digits")
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())


def quant_of(path: str) -> str | None:
    """``Q4_K_M`` from ``model-Q4_K_M-00001-of-00002.gguf`` (the last quant-like token)."""
    found = QUANT.findall(PurePosixPath(path).as_posix().removesuffix(".gguf"))
    return found[-1].upper() if found else None


def included(path: str, options: PullOptions) -> bool:
    if options.include and not any(fnmatch(path, pattern) for pattern in options.include):
        return False
    return not any(fnmatch(path, pattern) for pattern in options.exclude)


def choose(listing: list[RemoteFile], options: PullOptions, repo: str) -> list[RemoteFile]:
    for remote in listing:
        safe_relative_path(remote.path)
    files = [f for f in listing if included(f.path, options)]
    ggufs = [f for f in files if f.path.endswith(".gguf") and "mmproj" not in f.path]
    if ggufs:
        return choose_gguf(ggufs, options.quant, repo)
    if options.quant:
        raise SourceError(f"{repo} has no GGUF files; --quant only picks among GGUF files")
    chosen = without_pickle(files, options.allow_pickle, repo)
    if not chosen:
        raise SourceError(f"{repo}: no files left to pull; check --include/--exclude")
    return chosen


def choose_gguf(ggufs: list[RemoteFile], quant: str | None, repo: str) -> list[RemoteFile]:
    """The files of one quant: one file, or every part of a split one (DeepSeek-V3/R1 quants
    come as ``Q2_K/DeepSeek-R1-Q2_K-00001-of-00005.gguf`` …), first part first."""
    quants = sorted({q for f in ggufs if (q := quant_of(f.path)) is not None})
    if quant is None:
        if len(quants) > 1:
            raise SourceError(
                f"{repo} has several GGUF quants; pick one with --quant: {', '.join(quants)}"
            )
        chosen, what = ggufs, f"{repo}'s GGUF"
    else:
        chosen, what = [f for f in ggufs if quant_of(f.path) == quant.upper()], f"{repo} {quant}"
    if not chosen:
        raise SourceError(
            f"{repo} has no {quant} GGUF; quants there: {', '.join(quants) or 'none'}"
        )
    by_path = {f.path: f for f in chosen}
    return [by_path[path] for path in one_model(list(by_path), what)]


def without_pickle(files: list[RemoteFile], allow_pickle: bool, repo: str) -> list[RemoteFile]:
    pickles = [f for f in files if f.path.endswith(PICKLE_SUFFIXES)]
    if any(f.path.endswith(".safetensors") for f in files):
        return [f for f in files if f not in pickles]
    if pickles and not allow_pickle:
        names = ", ".join(f.path for f in pickles[:5])
        raise SourceError(
            f"{repo} has pickle weights ({names}): loading them can run arbitrary code; use a "
            f"safetensors or GGUF repo, or pass --allow-pickle if you trust {repo}"
        )
    return files


def model_format(files: list[RemoteFile]) -> str:
    if any(f.path.endswith(".gguf") for f in files):
        return "gguf"
    if any(f.path.endswith(".safetensors") for f in files):
        return "safetensors"
    if any(f.path.endswith(PICKLE_SUFFIXES) for f in files):
        return "pickle"
    raise SourceError("the source has no model weights (.gguf or .safetensors)")
