"""Where dsdeploy keeps its files: XDG base directories, or everything under one home."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dirs:
    """The three roots; every other path is derived from them."""

    data: Path
    cache: Path
    config: Path

    @property
    def models(self) -> Path:
        return self.data / "models"

    @property
    def logs(self) -> Path:
        return self.data / "logs"

    @property
    def model_checks(self) -> Path:
        """Verdicts of the model file checks, by file identity: redone when a file changes."""
        return self.cache / "model-checks"

    @property
    def engines(self) -> Path:
        """Engine builds are keyed by version and machine, so they live in the cache."""
        return self.cache / "engines"


def resolve_dirs(
    *,
    home: Path | None,
    cache: Path | None,
    xdg_data_home: Path | None,
    xdg_cache_home: Path | None,
    xdg_config_home: Path | None,
) -> Dirs:
    """``home`` puts everything under one folder (handy for tests and portable installs);
    ``cache`` alone moves the cache, so engine builds can be shared between homes."""
    if home is not None:
        data, default_cache, config = home / "data", home / "cache", home / "config"
    else:
        user = Path.home()
        data = (xdg_data_home or user / ".local" / "share") / "dsdeploy"
        default_cache = (xdg_cache_home or user / ".cache") / "dsdeploy"
        config = (xdg_config_home or user / ".config") / "dsdeploy"
    return Dirs(data=data, cache=cache or default_cache, config=config)
