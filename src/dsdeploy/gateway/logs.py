"""How ``dsdeploy serve`` logs, configured in one place: dsdeploy's own loggers
(``dsdeploy.*``), uvicorn's, Python's warnings and other libraries' warnings, all to stderr,
as text for people or as one JSON object per line for log collectors (python-json-logger's
``JsonFormatter``).

A JSON line holds ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``; a line
written while a request is handled also names it (``request_id``, ``route``, ``key_id``, and
``model`` once the request reached an engine), from the request's context — which holds no
key, header or body — so no line carries a key, a prompt or a completion.

uvicorn's access log stays off in both formats: its line is the raw path and query string the
client typed, written before the answer's body, and cannot carry the request id. The gateway
writes its own line per request instead (``gateway.access_log``, with ``access_log`` on).
"""

from __future__ import annotations

import io
import logging
import logging.config
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

from dsdeploy.gateway.context import RequestContext, current_request
from dsdeploy.settings import GatewaySettings

LOGGERS = ("dsdeploy", "uvicorn", "py.warnings")
"""The loggers serve writes through at its log level (uvicorn.error propagates to uvicorn);
every other library's (asyncio's "Unclosed client session", aiohttp, SQLAlchemy) reaches
the same handler through the root logger, at warning and above."""
ENGINE_LOGGERS = ("dsdeploy.runtime",)
"""Their lines are about engines, which outlive the request that happened to load them: a
watchdog task started in a request's context would name that request forever."""

TEXT = {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"}
JSON = {
    "()": "pythonjsonlogger.json.JsonFormatter",
    "fmt": "{levelname}{name}{message}",
    "style": "{",
    "rename_fields": {"levelname": "level", "name": "logger"},
    "timestamp": "time",
    # uvicorn adds a copy of some messages with terminal colour codes
    "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
}


def request_fields(ctx: RequestContext) -> dict[str, object]:
    """What a log line may say about a request: its id, route and key id, and the model
    only once an engine took it (before, it is whatever name the client sent)."""
    fields = {"request_id": ctx.id, "route": ctx.route, "key_id": ctx.key_id}
    if ctx.timings.upstream_start is not None:
        fields["model"] = ctx.model
    return {name: value for name, value in fields.items() if value is not None}


class RequestFields(logging.Filter):
    """Adds the fields of the request being handled to each line written on its way."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_request.get()
        if ctx is None or record.name.startswith(ENGINE_LOGGERS):
            return True
        for name, value in request_fields(ctx).items():
            if not hasattr(record, name):  # fields the line was given win
                setattr(record, name, value)
        return True


def logging_config(settings: GatewaySettings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``settings``' format and level."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestFields}},
        "formatters": {"main": JSON if settings.log_format == "json" else TEXT},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "main",
                "filters": ["request"],
            }
        },
        "loggers": {
            name: {"handlers": ["stderr"], "level": level, "propagate": False} for name in LOGGERS
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def configure_logging(settings: GatewaySettings) -> None:
    """Before anything logs; uvicorn is then told not to configure logging itself
    (``server.uvicorn_config``)."""
    logging.config.dictConfig(logging_config(settings))
    logging.captureWarnings(True)


class LogStream(io.StringIO):
    """A text stream whose every flushed write becomes one log line: what a console prints
    (a multi-line table included) becomes one record. A message starting with ``error:`` or
    ``WARNING`` (how the CLI starts those) is logged at that level."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def flush(self) -> None:
        message = self.getvalue().strip()
        self.seek(0)
        self.truncate()
        if not message:
            return
        level = logging.INFO
        if message.startswith("error:"):
            level = logging.ERROR
        elif message.startswith("WARNING"):
            level = logging.WARNING
        self.logger.log(level, message)
