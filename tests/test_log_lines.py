"""The JSON log line's timestamp, now that its second is formatted once a second (canopy_svc/core/logs.py)."""

from __future__ import annotations

import json
import logging
import time

from canopy_svc.core.logs import JsonFormatter


def line_at(formatter: JsonFormatter, created: float) -> dict[str, object]:
    record = logging.LogRecord("canopy_svc.access", logging.INFO, "", 0, "request", (), None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    parsed: dict[str, object] = json.loads(formatter.format(record))
    return parsed


def test_each_line_carries_its_own_second_and_milliseconds() -> None:
    formatter = JsonFormatter()
    start = 1_700_000_000.0
    # Forwards, within a second, across seconds, and back (a clock step): never a cached second of another.
    for created in (start + 0.001, start + 0.999, start + 1.5, start + 61.25, start + 0.5, start + 86_400.75):
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(created)))
        assert line_at(formatter, created)["ts"] == f"{expected}.{int((created % 1) * 1000):03d}Z"
