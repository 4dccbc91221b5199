"""A real webhook receiver on loopback (http.server in a thread, on a free port), and the Standard
Webhooks verification written here independently of canopy_svc, as a tenant's backend would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOUND_SECONDS = 30.0
TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    peer_port: int = 0  # the sender's local port: which process sent it (tests/test_webhook_faults.py)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0  # seconds before answering: longer than the client's timeout is a timeout
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """Answers each POST with the next scripted Reply (then `default`), and keeps what it received.

    With `hold_after` set, every POST after that many is held unanswered (`held`) until release(): a
    test sees exactly what each sender has in flight at once."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.hold_after: int | None = None
        self.held: list[Received] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                got = Received(self.path, headers, body, time.monotonic(), self.client_address[1])
                with receiver._lock:
                    receiver.received.append(got)
                    reply = receiver.script.popleft() if receiver.script else receiver.default
                    hold = receiver.hold_after is not None and len(receiver.received) > receiver.hold_after
                    if hold:
                        receiver.held.append(got)
                if hold:
                    receiver._released.wait(BOUND_SECONDS)  # bounded: a test that never releases ends anyway
                    with receiver._lock:
                        receiver.held.remove(got)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up (a timeout): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def holding(self) -> list[Received]:
        """The POSTs held unanswered right now."""
        with self._lock:
            return list(self.held)

    def release(self) -> None:
        """Answers what is held, and holds nothing after."""
        with self._lock:
            self.hold_after = None
        self._released.set()


async def wait_for(predicate: Callable[[], bool], what: str, bound: float = BOUND_SECONDS) -> None:
    import asyncio

    deadline = time.monotonic() + bound
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {bound}s waiting for {what}"
        await asyncio.sleep(0.01)


class VerificationFailed(Exception):
    pass


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None) -> None:
    """Standard Webhooks: the key is the base64 after whsec_; the signed content is
    `{webhook-id}.{webhook-timestamp}.{body}`; the header holds space-separated `v1,<base64>` entries;
    a timestamp more than TOLERANCE_SECONDS away is refused (a replay)."""
    key = base64.b64decode(secret.split("_", 1)[1])
    webhook_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE_SECONDS:
        raise VerificationFailed("timestamp too old or too new")
    expected = base64.b64encode(hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    for entry in headers["webhook-signature"].split(" "):
        version, _, given = entry.partition(",")
        if version == "v1" and hmac.compare_digest(given.encode(), expected):
            return
    raise VerificationFailed("no matching signature")


def canopy_signature_holds(secret: str, body: bytes) -> bool:
    """Canopy's hmac_signature: HMAC-SHA256 of `data` as serialized (compact JSON, keys as sent)."""
    payload = json.loads(body)
    data = json.dumps(payload["data"], separators=(",", ":"), ensure_ascii=False).encode()
    key = base64.b64decode(secret.split("_", 1)[1])
    expected = base64.b64encode(hmac.new(key, data, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, payload["hmac_signature"])
