"""A response leaves the worker in one write (canopy_svc/core/http_protocol.py, issue 9 item 5): uvicorn writes
the head and the body apart, which cost a second system call and TCP segment per answer. Driven
in-process on a transport that records each write, so what is counted is exactly what the socket gets."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from canopy_svc.core.http_protocol import LimitedHttpToolsProtocol

BOUND_SECONDS = 10.0


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.eof = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return 0


async def answer_json(scope: Any, receive: Any, send: Any) -> None:
    if scope["path"] == "/stream":  # head now, body once something else has run: a streamed answer
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


def connected() -> tuple[LimitedHttpToolsProtocol, RecordingTransport]:
    config = Config(app=answer_json, lifespan="off", http="httptools", access_log=False, log_config=None)
    protocol = LimitedHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = RecordingTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


async def until(predicate: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND_SECONDS
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


def answers(transport: RecordingTransport) -> int:
    return b"".join(transport.writes).count(b"HTTP/1.1 200 OK")


async def test_head_and_body_of_an_answer_are_one_write() -> None:
    protocol, transport = connected()
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await until(lambda: answers(transport) == 1 and transport.writes[-1].endswith(b'{"status":"ok"}'), "the answer")
    assert len(transport.writes) == 1, transport.writes
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b'{"status":"ok"}'
    protocol.connection_lost(None)


async def test_keep_alive_answers_each_go_out_whole_and_in_order() -> None:
    protocol, transport = connected()
    for n in range(3):
        protocol.data_received(f"GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await until(lambda n=n: answers(transport) == n + 1, f"answer {n}")
    assert len(transport.writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK") and w.endswith(b'{"status":"ok"}') for w in transport.writes)
    protocol.connection_lost(None)


async def test_a_streamed_answer_is_not_held_back_and_close_sends_what_is_pending() -> None:
    protocol, transport = connected()
    protocol.data_received(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await until(lambda: transport.closed, "the close after the answer")
    data = b"".join(transport.writes)
    assert data.startswith(b"HTTP/1.1 200 OK") and b"part" in data and data.endswith(b"0\r\n\r\n")  # chunked end
    assert len(transport.writes) >= 2  # the head went out before the body existed
    protocol.connection_lost(None)


async def test_a_refusal_is_written_before_the_half_close() -> None:
    protocol, transport = connected()
    protocol.data_received(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (protocol.limits.max_header_bytes + 10))
    assert transport.eof  # write_eof sent what was pending first
    assert b"".join(transport.writes).startswith(b"HTTP/1.1 431 ")
    protocol.connection_lost(None)
