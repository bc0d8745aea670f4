"""What an engine's death by a signal means and what to do about it.

A process killed by a signal leaves little or nothing in its own log, so the signal is
the one clue: SIGILL is a CPU instruction the machine does not allow (a build for another
CPU, or AMX the kernel does not enable), SIGKILL while loading is almost always the
kernel's out-of-memory killer, SIGBUS a model file that changed under its memory map.
"""

from __future__ import annotations

import signal

import psutil


def signal_name(returncode: int) -> str | None:
    """'SIGILL' for a process that a signal ended (negative return code), else None."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def memory_hint(planned_bytes: int | None) -> str:
    available = psutil.virtual_memory().available / 2**30
    if planned_bytes is None:
        return f"{available:.1f} GiB of memory is available now"
    return f"the plan needs {planned_bytes / 2**30:.2f} GiB; {available:.1f} GiB is available now"


ADVICE = {
    "SIGILL": "it was killed by SIGILL: the engine uses a CPU instruction this machine does not "
    "allow; run `dsdeploy engine install --rebuild`",
    "SIGBUS": "it was killed by SIGBUS: the model file changed or shrank while mapped; run "
    "`dsdeploy models verify`",
    "SIGSEGV": "it crashed (SIGSEGV): check the model with `dsdeploy models verify`; if it is "
    "intact, the engine build is at fault: run `dsdeploy engine install --rebuild`",
}


def explain_signal(returncode: int, *, loading: bool, planned_bytes: int | None = None) -> str:
    """One sentence naming the signal, its likely cause and the command that fixes it."""
    name = signal_name(returncode)
    if name is None:
        return f"it exited with code {returncode}"
    if name == "SIGKILL" and loading:
        return (
            "it was killed by SIGKILL while loading, most likely by the out-of-memory killer "
            f"({memory_hint(planned_bytes)}); lower --ctx-size or --parallel, free memory, or "
            "pull a smaller quantization"
        )
    if name == "SIGKILL":
        return "it was killed by SIGKILL (the out-of-memory killer, or someone on this machine)"
    return ADVICE.get(name, f"it was killed by {name}")
