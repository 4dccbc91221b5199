"""Real `canopy-svc serve` processes for end-to-end tests, on free loopback ports."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from conftest import TEST_DATA_KEY, TEST_JWT_SECRET


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """`python -m canopy_svc serve` against the tests' database, with the tests' keys."""

    def __init__(self, database_url: str, data_dir: Path, *, workers: int = 1, **env: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / f"server-{self.port}.log"
        self.workers = workers
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CANOPY_SVC_JWT_SECRET": TEST_JWT_SECRET,
            "CANOPY_SVC_DATA_KEY": base64.urlsafe_b64encode(TEST_DATA_KEY).decode(),
            "CANOPY_SVC_POOL_MIN": "1",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "canopy_svc", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers), "--data-dir", str(self.data_dir)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no graceful anything (a crash)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


def token_for(server: ServerProcess, client_id: str, client_secret: str) -> str:
    answer = httpx.post(f"{server.base_url}/auth/token",
                        json={"client_id": client_id, "client_secret": client_secret}, timeout=10)
    answer.raise_for_status()
    token: str = answer.json()["access_token"]
    return token


def poll(predicate: Any, *, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Calls predicate until it returns something truthy, within a bound; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
