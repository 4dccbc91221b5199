"""Log lines for a person at a terminal or for a collector (issue 15, item 3): CANOPY_SVC_LOG_FORMAT
json|text, text by default on a terminal; one readable line per request in text; never a terminal
escape code in the JSON (uvicorn's `color_message` extra carries ANSI colors), uvicorn's own startup
lines included."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from canopy_svc.core.logs import JsonFormatter, TextFormatter, configure_logging, formatter_for
from canopy_svc.core.settings import Settings
from tests.helpers import ApiClient

BOUND_SECONDS = 30.0
ESCAPES = ("\x1b", "\\u001b", "\x9b", "\\u009b")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure_logging changes the process's loggers: put them back for the tests after this one."""
    root = logging.getLogger()
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "pgserver", "asyncpg.pool")
    saved = [(name, logging.getLogger(name)) for name in names]
    state = {name: (lg.handlers[:], lg.propagate, lg.disabled, lg.level, lg.filters[:]) for name, lg in saved}
    root_state = (root.handlers[:], root.level)
    try:
        yield
    finally:
        root.handlers[:], level = root_state
        root.setLevel(level)
        for name, lg in saved:
            lg.handlers[:], lg.propagate, lg.disabled, level, lg.filters[:] = state[name]
            lg.setLevel(level)


def record(name: str, message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord(name, logging.INFO, "", 0, message, args, None)
    made.__dict__.update(extra)
    return made


def access_record(path: str = "/customers/c-1", **overrides: Any) -> logging.LogRecord:
    extra = {
        "request_id": "r-1",
        "client_id": "cli_x",
        "method": "GET",
        "path": path,
        "status": 200,
        "duration_ms": 3.21,
        **overrides,
    }
    return record("canopy_svc.access", "request", **extra)


# --- JSON ----------------------------------------------------------------------------------------------


def test_json_drops_uvicorns_color_message_and_strips_escapes_from_every_field() -> None:
    colored = record(
        "uvicorn.error",
        "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)",
        "http",
        "127.0.0.1",
        8000,
        color_message="Uvicorn running on \x1b[1m%s://%s:%d\x1b[0m (Press CTRL+C to quit)",
        note="\x1b[31mred\x1b[0m \x1b]0;title\x07done \x9b1mcsi",
        nested=["\x1b[2Kcleared", {"\x1b[1mkey": ("\x1b[4munder",)}],
    )
    line = JsonFormatter().format(colored)
    for escape in ESCAPES:
        assert escape not in line
    parsed = json.loads(line)
    assert "color_message" not in parsed
    assert parsed["message"] == "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)"
    assert parsed["note"] == "red done csi"
    assert parsed["nested"] == ["cleared", {"key": ["under"]}]


def test_an_escape_in_a_message_or_a_request_path_does_not_reach_the_json() -> None:
    line = JsonFormatter().format(access_record(path="/customers/\x1b[2J\x1b[Hgotcha"))
    assert not any(escape in line for escape in ESCAPES)
    assert json.loads(line)["path"] == "/customers/gotcha"
    line = JsonFormatter().format(record("canopy_svc", "look: %s", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"))
    assert json.loads(line)["message"] == "look: link"


# --- text ----------------------------------------------------------------------------------------------


def test_text_is_one_readable_line_per_request() -> None:
    line = TextFormatter().format(access_record())
    clock, level, rest = line.split(" ", 2)
    assert time.strptime(clock.split(".")[0], "%H:%M:%S")
    assert level == "INFO"
    assert rest.strip() == "GET /customers/c-1 200 3.21ms request_id=r-1 client_id=cli_x"


def test_text_shows_other_events_with_their_logger_and_fields() -> None:
    line = TextFormatter().format(record("canopy_svc.core.db", "database available again", down_s=2.5))
    assert line.endswith(" canopy_svc.core.db: database available again down_s=2.5")
    warned = logging.LogRecord("canopy_svc", logging.WARNING, "", 0, "careful", (), None)
    assert " WARN  canopy_svc: careful" in TextFormatter().format(warned)


def test_text_keeps_a_line_a_line_and_lets_no_escape_through() -> None:
    line = TextFormatter().format(
        access_record(path="/customers/a\nGET /fake 200\x1b[31m", client_id=None, color_message="\x1b[1mx")
    )
    assert "\n" not in line and "\x1b" not in line and "color_message" not in line
    assert "GET /customers/a\\nGET /fake 200 200 3.21ms" in line
    assert "client_id" not in line  # nothing to show


# --- the choice ----------------------------------------------------------------------------------------


def test_the_format_defaults_to_text_on_a_terminal_and_json_otherwise() -> None:
    assert isinstance(formatter_for("", Terminal()), TextFormatter)
    assert isinstance(formatter_for("", io.StringIO()), JsonFormatter)
    assert isinstance(formatter_for("json", Terminal()), JsonFormatter)
    assert isinstance(formatter_for("text", io.StringIO()), TextFormatter)


def test_the_setting_reads_json_or_text_and_refuses_anything_else() -> None:
    secrets = {"CANOPY_SVC_JWT_SECRET": "s" * 40, "CANOPY_SVC_DATA_KEY": "A" * 43}
    assert Settings.from_env({**secrets, "CANOPY_SVC_LOG_FORMAT": "Text"}).log_format == "text"
    assert Settings.from_env(secrets).log_format == ""
    with pytest.raises(ValueError, match="CANOPY_SVC_LOG_FORMAT"):
        Settings.from_env({**secrets, "CANOPY_SVC_LOG_FORMAT": "xml"})


def test_make_run_logs_text() -> None:
    from tests.test_endpoints import REPOSITORY

    makefile = (REPOSITORY / "Makefile").read_text()
    run = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "CANOPY_SVC_LOG_FORMAT=$${CANOPY_SVC_LOG_FORMAT:-text}" in run


# --- end to end: the app's lines and uvicorn's own ------------------------------------------------------


async def test_the_apps_request_lines_in_each_format(api: ApiClient, restored_logging: None) -> None:
    for log_format, stream in (("json", io.StringIO()), ("text", Terminal())):
        configure_logging("INFO", log_format, stream=stream)
        # %1B is decoded into the path the log line shows
        assert (await api.http.get("/customers/c-%1B%5B31m1")).status_code == 404
        lines = stream.getvalue().splitlines()
        found = [line for line in lines if "/customers/c-" in line and "httpx" not in line]  # the client's own
        assert len(found) == 1, lines
        (line,) = found
        assert not any(escape in line for escape in ESCAPES)
        if log_format == "json":
            assert json.loads(line)["path"] == "/customers/c-1"
        else:
            assert " GET /customers/c-1 404 " in line


async def _uvicorn_startup_lines(log_format: str, stream: io.StringIO) -> str:
    """uvicorn's own startup and shutdown lines (its `color_message` ones) through our logging."""
    configure_logging("INFO", log_format, stream=stream)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    deadline = time.monotonic() + BOUND_SECONDS
    while not server.started:
        assert not serving.done(), serving.result()
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    (port,) = {s.getsockname()[1] for srv in server.servers for s in srv.sockets}
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{port}/")).status_code == 204
    server.should_exit = True
    await asyncio.wait_for(serving, BOUND_SECONDS)
    return stream.getvalue()


async def test_uvicorns_startup_lines_carry_no_escape_codes_in_json(restored_logging: None) -> None:
    logged = await _uvicorn_startup_lines("json", io.StringIO())
    for escape in ESCAPES:
        assert escape not in logged
    messages = [json.loads(line) for line in logged.splitlines()]
    assert all("color_message" not in line for line in messages)
    shown = [line["message"] for line in messages]
    assert any(m.startswith("Uvicorn running on http://127.0.0.1:") for m in shown), shown
    assert any(m.startswith("Started server process [") for m in shown), shown


async def test_uvicorns_startup_lines_in_text_are_plain_too(restored_logging: None) -> None:
    logged = await _uvicorn_startup_lines("text", Terminal())
    assert "\x1b" not in logged
    assert " uvicorn: Uvicorn running on http://127.0.0.1:" in logged
