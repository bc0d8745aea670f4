"""The errors dsdeploy raises on purpose, each with a message that says what to do next.

    DsdeployError                 base: the CLI prints its message as one line, exit 1
    ├── ConfigError               a setting or flag has a value that cannot work
    ├── ModelNotFound             a model name the store and the catalog do not know
    ├── SourceError               a model source could not be read (pip, wheel, network)
    │   ├── AccessDenied          the hub wants a token or an accepted licence (401/403)
    │   └── RemoteNotFound        the repo, revision or file does not exist (404)
    ├── ModelFileRejected         a model file failed the structure check before any engine
    ├── UnsizedArchitecture       a model whose cache layout the planner cannot size yet
    ├── ConversionRefused         a checkpoint llama.cpp's converter cannot make loadable
    ├── StoreError                the model store refused an operation
    │   ├── IntegrityError        bytes did not match their recorded sha256
    │   └── UnsafePathError       a name from outside would escape the store
    ├── EngineError
    │   ├── EngineNotInstalled    no engine binary for this machine yet
    │   ├── EngineBuildFailed     building the engine from source failed
    │   ├── EngineUnavailable     a model's engine cannot take a request now (client-safe text)
    │   └── EngineStartFailed     the engine did not become ready
    │       └── EngineSmokeFailed an engine binary could not load and answer on this machine
    ├── WeightsCryptoError        encrypted weights cannot be read or written
    │   ├── WeightsKeyError       no usable key: missing, readable by others, or not the one
    │   └── WeightsTampered       encrypted bytes failed authentication (changed, cut, reordered)
    ├── BenchError                a benchmark target is unreachable or answered badly
    ├── ServerUnreachable         a running dsdeploy server did not answer (`ps`, `reload`)
    ├── ReloadFailed              the running server could not do the reload it was asked for
    ├── UnknownKey                no API key has this id (`dsdeploy keys revoke/rotate`)
    ├── KeyStoreUnavailable       the key database did not answer (client-safe text)
    ├── EvalError                 a quality evaluation cannot run as asked
    └── FinetuneError             a fine-tuning run cannot start or finish as asked
        ├── DataError             the training file is malformed or empty (every bad line named)
        └── TrainingDoesNotFit    the run's planned memory exceeds what is free

Only the edges translate them: the CLI to a line and an exit code, the gateway to an
OpenAI-style JSON error. Anything else is a bug and is reported without its text.
"""

from __future__ import annotations

from pathlib import Path


class DsdeployError(Exception):
    """Base of every expected failure; ``str(exc)`` is safe to show a user."""


class ConfigError(DsdeployError):
    pass


class ModelNotFound(DsdeployError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        choices = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown model {name!r}; known models: {choices}")


class SourceError(DsdeployError):
    pass


class AccessDenied(SourceError):
    pass


class RemoteNotFound(SourceError):
    pass


class ModelFileRejected(DsdeployError):
    """A model file that no engine is given: malformed, or asking to run its own code."""

    def __init__(
        self, file: str, problem: str, offset: int | None = None, advice: str = ""
    ) -> None:
        self.file = file
        self.problem = problem
        self.offset = offset
        where = "" if offset is None else f" at byte {offset}"
        advice = advice or (
            "no engine was given it; pull the model again from a source you trust, or "
            "report the file to its publisher"
        )
        super().__init__(f"refused {file}: {problem}{where} — {advice}")


class UnsizedArchitecture(DsdeployError):
    def __init__(self, model: str, architecture: str, marks: list[str]) -> None:
        self.architecture = architecture
        super().__init__(
            f"{model}: dsdeploy cannot size the KV cache of a {architecture!r} model (its "
            f"{', '.join(marks)} metadata describes a layout the planner does not model) and "
            "will not guess; plan a catalog model instead (deepseek-v3.2 and deepseek-v4-* "
            "cover DeepSeek's sparse attention)"
        )


class ConversionRefused(DsdeployError):
    """Said before the converter runs: its message names the error it would hit."""


class StoreError(DsdeployError):
    pass


class IntegrityError(StoreError):
    def __init__(self, what: str, expected: str, actual: str, quarantined: Path) -> None:
        self.expected = expected
        self.actual = actual
        self.quarantined = quarantined
        super().__init__(
            f"{what}: hash {actual} does not match the source's {expected}; the file was "
            f"not stored (moved to {quarantined}) — pull it again"
        )


class UnsafePathError(StoreError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"refused unsafe file name {name!r}: it would escape the model store")


class EngineError(DsdeployError):
    pass


class EngineNotInstalled(EngineError):
    pass


class EngineBuildFailed(EngineError):
    pass


class EngineUnavailable(EngineError):
    """Its message is shown to API clients: no paths, no log locations."""


class EngineStartFailed(EngineError):
    def __init__(self, message: str, log_tail: list[str]) -> None:
        self.log_tail = log_tail
        super().__init__(message)


class EngineSmokeFailed(EngineStartFailed):
    def __init__(self, message: str, log_tail: list[str], returncode: int | None) -> None:
        self.returncode = returncode
        """Negative for a killing signal, as ``subprocess`` reports it; None if it never ran."""
        super().__init__(message, log_tail)


class WeightsCryptoError(DsdeployError):
    pass


class WeightsKeyError(WeightsCryptoError):
    pass


class WeightsTampered(WeightsCryptoError):
    pass


class BenchError(DsdeployError):
    pass


class ServerUnreachable(DsdeployError):
    pass


class ReloadFailed(DsdeployError):
    pass


class EvalError(DsdeployError):
    pass


class FinetuneError(DsdeployError):
    pass


class DataError(FinetuneError):
    pass


class TrainingDoesNotFit(FinetuneError):
    pass


class UnknownKey(DsdeployError):
    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"no API key has the id {key_id!r}; see the ids with `dsdeploy keys list`")


class KeyStoreUnavailable(DsdeployError):
    """Its message is shown to API clients: no URL, no driver error."""
