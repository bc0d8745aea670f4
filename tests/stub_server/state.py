"""What the stub is told to do (its command line) and what it remembers while it runs."""

from __future__ import annotations

import argparse
import json
import os
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from aiohttp import web


@dataclass(frozen=True)
class Behaviour:
    """Each field is one command-line option (``load_delay_s``: ``--load-delay-s``),
    declared once here for the server's parser and for the engine adapter's argv."""

    record: Path | None = field(
        default=None, metadata={"help": "append one JSON line per request (and cancel) here"}
    )
    load_delay_s: float = field(default=0.0, metadata={"help": "seconds of 503 'Loading model'"})
    token_delay_s: float = field(default=0.0, metadata={"help": "seconds per generated token"})
    ctx_size: int = field(default=4096, metadata={"help": "context tokens per request"})
    eos_after: int | None = field(
        default=None, metadata={"help": "end every reply after N tokens, as a model's EOS does"}
    )
    fail_after: int | None = field(
        default=None, metadata={"help": "answer N requests (probes aside), fail at the next"}
    )
    fail_with: str = field(
        default="1", metadata={"help": "how to fail: an exit code, a signal name, or 'hang'"}
    )
    load_error: str | None = field(
        default=None, metadata={"help": "log this line and exit 1 instead of loading"}
    )
    spawn_child: bool = field(
        default=False, metadata={"help": "start a child process in the stub's process group"}
    )
    echo: bool = field(
        default=False,
        metadata={"help": "chat replies write the last message's text back, then end"},
    )
    piece_chars: int = field(default=4, metadata={"help": "characters per token of --echo"})
    reasoning_field: str | None = field(
        default=None,
        metadata={"help": "cut <think>…</think> out of --echo into this field, as a parser"},
    )
    tool_calls: str | None = field(
        default=None,
        metadata={
            "help": "for chat requests with tools: 'empty' ends with finish_reason tool_calls "
            "and an empty list (DeepSeek-V3#944); 'stop' calls the first tool and says stop"
        },
    )
    grow_mib: int = field(
        default=0, metadata={"help": "keep N MiB more resident with every request (a leak)"}
    )

    def flags(self) -> list[str]:
        """The command-line options that give this behaviour (defaults left out)."""
        given: list[str] = []
        for option in fields(Behaviour):
            value = getattr(self, option.name)
            if value != option.default:
                given += [flag(option.name)] if value is True else [flag(option.name), str(value)]
        return given


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_command_line(argv: list[str]) -> tuple[Path, Behaviour]:
    """The socket to listen on, and the behaviour."""
    parser = argparse.ArgumentParser(prog="python -m tests.stub_server")
    parser.add_argument("--socket", type=Path, required=True, help="Unix socket to listen on")
    hints = typing.get_type_hints(Behaviour)
    for option in fields(Behaviour):
        help_text = option.metadata["help"]
        if hints[option.name] is bool:
            parser.add_argument(flag(option.name), action="store_true", help=help_text)
            continue
        kinds = [kind for kind in typing.get_args(hints[option.name]) if kind is not type(None)]
        kind = kinds[0] if kinds else hints[option.name]
        parser.add_argument(flag(option.name), type=kind, default=option.default, help=help_text)
    args = parser.parse_args(argv)
    return args.socket, Behaviour(**{f.name: getattr(args, f.name) for f in fields(Behaviour)})


@dataclass
class Stub:
    behaviour: Behaviour
    ready: bool = False
    requests: int = 0
    processing: int = 0
    """Requests being answered now (llama-server's ``requests_processing``)."""
    exit_code: int = 0
    grown: list[bytes] = field(default_factory=list)
    """Memory kept by ``--grow-mib``, each block written so that it is resident."""

    def record(self, event: str, **details: object) -> None:
        """One JSON line per event, written at once: the test reads it while we run."""
        if self.behaviour.record is None:
            return
        line = json.dumps({"event": event, "pid": os.getpid(), **details})
        with self.behaviour.record.open("a") as sink:
            sink.write(line + "\n")


STUB = web.AppKey("stub", Stub)
