"""uvicorn's httptools protocol with the limits it lacks: header size, header and body time, connections.

httptools has no header limit, and it joins the pieces of a header with `bytes +=`, so one 64 MiB
header costs seconds of CPU in which the worker serves nothing (not even the database probe). uvicorn
has no timeout for a request that arrives slowly either: its keep-alive timer is reset by every byte.
So bytes are counted here, before the parser sees them, and each phase of a request has a deadline:

- the request line and headers (from the connection's start, or from the end of the previous
  response on keep-alive) may be at most `max_header_bytes` long (else 431) and must arrive within
  `header_timeout_seconds` (else 408, or a plain close if nothing of a request came);
- the body must arrive within `body_timeout_seconds` of the end of the headers (else 408 and
  close); bytes in the body phase that are not body (chunk framing, trailers, which httptools also
  joins with `bytes +=`) count against `max_header_bytes`;
- a worker keeps at most `max_connections` connections; one more is answered 503 and closed at once
  instead of waiting in the accept queue behind slow ones.

A response goes out in one system call: uvicorn writes its head and its body separately, two
`write()`s (and on loopback two trips through the TCP stack, two wake-ups of the client), about a tenth
of a worker's time on small answers. The transport uvicorn is given joins the writes made in one step
of the event loop and sends them as the step ends (_CoalescingTransport).

A refused connection is closed gracefully: the answer is written, the write side shut, and what the
client still sends is dropped for up to LINGER_SECONDS, so it can read the answer instead of a reset.
Limits come from the environment (canopy_svc.core.settings.HttpLimits), read once per worker process.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from canopy_svc.core.settings import HttpLimits

LIMITS = HttpLimits.from_env()  # at import: a bad value stops `serve` before it listens
LINGER_SECONDS = 1.0
REFUSALS_LOG_SECONDS = 10.0

log = logging.getLogger("canopy_svc.http")


class _Refusals:
    """Counts refused connections and logs them at most once per interval: an attack must not flood the log."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.flush_scheduled = False

    def add(self, loop: asyncio.AbstractEventLoop, reason: str) -> None:
        self.counts[reason] += 1
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_later(REFUSALS_LOG_SECONDS, self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.counts:
            log.warning("connections refused", extra={"refused": dict(self.counts), "seconds": REFUSALS_LOG_SECONDS})
            self.counts.clear()


_refusals = _Refusals()


class _CoalescingTransport:
    """The connection's transport, with the writes of one event-loop step sent together when it ends.

    Every write of the connection goes through here (uvicorn's and ours), so their order is kept;
    closing, half-closing and aborting send or drop what is pending first. A response whose body comes
    later (a stream) has its head sent at the end of the step, as before, only not apart from a body
    written in the same step."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            self._transport.write(data)  # after a close, uvloop drops it as asyncio does

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause_reading...
        return getattr(self._transport, name)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits = LIMITS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True  # the parser is before the end of a request's headers
        self._header_bytes = 0  # bytes of the current header section (or non-body bytes of a body)
        self._body_seen = False
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "unavailable", "Too many connections", "connections", retry_after=True)
            return
        self._set_deadline(self.limits.header_timeout_seconds, self._header_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: drop the rest
        while data and not self._refused and not self.transport.is_closing() and self.transport.get_protocol() is self:
            if not self._awaiting_headers:
                self._feed_body(data)
                return
            # Feed no more than the limit allows, so the parser never holds more than max_header_bytes.
            room = self.limits.max_header_bytes - self._header_bytes
            piece, data = data[:room], data[room:]
            self._header_bytes += len(piece)
            super().data_received(piece)
            if data and self._awaiting_headers and not self.transport.is_closing():
                self._refuse(431, "headers_too_large", "Request headers too large", "headers_too_large")

    def _feed_body(self, data: bytes) -> None:
        self._body_seen = False
        super().data_received(data)
        if self._awaiting_headers or self.transport.is_closing():
            return  # the message ended in this piece (what follows of a pipelined request is not counted)
        if self._body_seen:
            self._header_bytes = 0
        else:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(431, "headers_too_large", "Request trailers too large", "headers_too_large")

    # Parser callbacks (and uvicorn's end of a response)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        self._set_deadline(self.limits.body_timeout_seconds, self._body_deadline)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._awaiting_headers = True
        self._header_bytes = 0
        self._clear_deadline()  # the next request's headers are timed from the end of this response
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._awaiting_headers and self._deadline is None and not self.transport.is_closing():
            self._set_deadline(self.limits.header_timeout_seconds, self._header_deadline)

    # Deadlines

    def _set_deadline(self, seconds: float, callback: Callable[[], None]) -> None:
        self._clear_deadline()
        self._deadline = self.loop.call_later(seconds, callback)

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _header_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or not self._awaiting_headers:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is still being made (pipelining): its end sets the next deadline
        if self._header_bytes:
            self._refuse(408, "request_timeout", "Request headers not received in time", "header_timeout")
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def _body_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._awaiting_headers:
            return
        if self.cycle is not None and not self.cycle.response_started:
            self._refuse(408, "request_timeout", "Request body not received in time", "body_timeout")
        else:  # answered already, the rest of the body is never read: nothing more to say
            _refusals.add(self.loop, "body_timeout")
            self.transport.close()

    # Refusal

    def _refuse(self, status: int, code: str, message: str, reason: str, *, retry_after: bool = False) -> None:
        """Answer in the contract's envelope, close, and drop what the client still sends."""
        self._refused = True
        self._clear_deadline()
        _refusals.add(self.loop, reason)
        self.connections.discard(self)  # no longer counts against max_connections
        if self.cycle is not None:  # the app's receive() sees a disconnect; its answer is dropped
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        body = msgspec.json.encode({"error": {"code": code, "message": message}})
        head = [STATUS_LINE[status]]
        for name, value in [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *([(b"retry-after", b"1")] if retry_after else []),
        ]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", body]))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)  # or sooner, on the client's EOF
        else:
            self.transport.close()
