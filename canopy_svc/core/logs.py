"""One JSON object per log line. Nothing here ever formats a request body, token or secret."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


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
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():  # the `extra` fields, in the order given
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        return _encoder.encode(line).decode()


def _not_a_closed_gate(record: logging.LogRecord) -> bool:
    """asyncpg's pool retries its minimum connections during an outage, logging each failed try; those
    the closed gate refused are the outage the gate logged once as it closed (canopy_svc/core/db.py)."""
    from canopy_svc.core.db import DatabaseUnavailable

    return not (record.exc_info and isinstance(record.exc_info[1], DatabaseUnavailable))


def configure_logging(level: str = "INFO") -> None:
    # A line per request: skip what our lines never show (the caller's file and line, found by
    # walking the stack; thread and process names).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
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
