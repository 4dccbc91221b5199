"""A webhook receiver for the bench (bench/run.py's webhook part), in a process of its own so it
never shares a core's GIL with the bench: HTTP/1.1 keep-alive on loopback, 200 to every POST at once,
and for each the webhook-id and the wall-clock time of its arrival (time.time(): the bench and the
database read the same clock).

    python bench/webhook_receiver.py <port file> <arrivals file>

It writes its port to <port file> once listening, and "<webhook-id> <arrival>" lines to <arrivals
file> when it gets SIGTERM (kept in memory until then: no disk write on the measured path).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
arrivals: list[tuple[bytes, float]] = []


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            at = time.time()  # the whole head is here: the delivery has arrived
            length, webhook_id = 0, b"?"
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"webhook-id":
                    webhook_id = value.strip()
            await reader.readexactly(length)
            arrivals.append((webhook_id, at))
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve(port_file: Path) -> None:
    """Until SIGTERM."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await asyncio.to_thread(port_file.write_text, str(server.sockets[0].getsockname()[1]))
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
    Path(sys.argv[2]).write_text("".join(f"{webhook_id.decode()} {at:.6f}\n" for webhook_id, at in arrivals))
