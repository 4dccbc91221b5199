"""Log lines: one JSON object each (for a collector), or one readable line each (for a person at a
terminal), by CANOPY_SVC_LOG_FORMAT; unset, text on a terminal and JSON otherwise. Nothing here ever
formats a request body, token or secret, nor an exception's text (it can carry row values).

Neither format lets a terminal escape code through: uvicorn's `color_message` extra (its message
again, with ANSI colors) is dropped, and escape sequences are stripped from every field, so a JSON
line is the same read by a person or by `jq -r`. The text format also escapes control characters
(a path may hold a decoded %0A): one event is one line.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, TextIO

import msgspec

_encoder = msgspec.json.Encoder()
# `color_message`: uvicorn's message again, with ANSI colors (uvicorn/server.py, uvicorn/config.py).
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "color_message"}
# ANSI/ECMA-48 sequences: CSI (ESC [ ... final, or the 8-bit CSI), OSC (ESC ] ... BEL or ESC \), and
# any other ESC with the character after it; then a lone ESC or CSI left over.
_ESCAPES = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?|\x9b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
LOG_FORMATS = ("json", "text")


def strip_escapes(value: Any) -> Any:
    """`value` without terminal escape sequences, in strings at any depth of lists, tuples and dicts."""
    if isinstance(value, str):
        return _ESCAPES.sub("", value) if ("\x1b" in value or "\x9b" in value) else value
    if isinstance(value, list | tuple):
        return [strip_escapes(item) for item in value]
    if isinstance(value, dict):
        return {strip_escapes(key): strip_escapes(item) for key, item in value.items()}
    return value


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra` fields, in the order given."""
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    # (second, its "YYYY-MM-DDTHH:MM:SS"): strftime once a second, not once a line (the access log
    # writes one per request). One tuple, swapped whole, so a thread never pairs a second with another's text.
    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        line: dict[str, Any] = {
            "ts": f"{cached[1]}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": strip_escapes(record.getMessage()),
        }
        for key, value in _extras(record).items():
            line[key] = strip_escapes(value)
        return _encoder.encode(line).decode()


def _printable(value: Any) -> str:
    """A value as one line: escape sequences gone, other control characters shown escaped."""
    text = strip_escapes(value if isinstance(value, str) else str(value))
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text) if _CONTROL.search(text) else text


class TextFormatter(logging.Formatter):
    """One readable line per event, local time:
    `14:03:07.412 INFO  GET /customers/c-1 200 3.1ms client=cli_x request_id=…` for a request, and
    `14:03:07.412 WARN  canopy_svc.core.db: database available again down_s=2.5` for anything else."""

    _LEVELS = {"WARNING": "WARN", "CRITICAL": "CRIT"}
    _NAMES = {"uvicorn.error": "uvicorn"}  # uvicorn's logger for all its lines, errors or not

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = self._LEVELS.get(record.levelname, record.levelname)
        extras = _extras(record)
        if record.name == "canopy_svc.access" and {"method", "path", "status"} <= extras.keys():
            head = (
                f"{_printable(extras.pop('method'))} {_printable(extras.pop('path'))} "
                f"{extras.pop('status')} {extras.pop('duration_ms', '?')}ms"
            )
        else:
            head = f"{self._NAMES.get(record.name, record.name)}: {_printable(record.getMessage())}"
        fields = "".join(f" {key}={_printable(value)}" for key, value in extras.items() if value is not None)
        return f"{clock}.{int(record.msecs):03d} {level:<5} {head}{fields}"


def formatter_for(log_format: str, stream: TextIO) -> logging.Formatter:
    """The formatter `log_format` names; "" chooses by the stream: text on a terminal, JSON otherwise."""
    if not log_format:
        isatty = getattr(stream, "isatty", None)
        log_format = "text" if isatty is not None and isatty() else "json"
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be json or text, not {log_format!r}")
    return TextFormatter() if log_format == "text" else JsonFormatter()


def _not_a_closed_gate(record: logging.LogRecord) -> bool:
    """asyncpg's pool retries its minimum connections during an outage, logging each failed try; those
    the closed gate refused are the outage the gate logged once as it closed (canopy_svc/core/db.py)."""
    from canopy_svc.core.db import DatabaseUnavailable

    return not (record.exc_info and isinstance(record.exc_info[1], DatabaseUnavailable))


def configure_logging(level: str = "INFO", log_format: str = "", stream: TextIO | None = None) -> None:
    # A line per request: skip what our lines never show (the caller's file and line, found by
    # walking the stack; thread and process names).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(log_format, stream))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # its INFO lines are whole command outputs
    pool_log = logging.getLogger("asyncpg.pool")
    if _not_a_closed_gate not in pool_log.filters:
        pool_log.addFilter(_not_a_closed_gate)
    # Our access log replaces uvicorn's (which would log query strings, where search terms live).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
