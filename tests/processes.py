"""Real `canopy-svc serve` processes for end-to-end tests, on free loopback ports."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.helpers import TEST_DATA_KEY, TEST_JWT_SECRET, TEST_LITHIC_HOSTS


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
            "CANOPY_SVC_LITHIC_ALLOWED_HOSTS": " ".join(TEST_LITHIC_HOSTS),  # the fake Lithic, on loopback
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "canopy_svc",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--data-dir",
                str(self.data_dir),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
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
    answer = httpx.post(
        f"{server.base_url}/auth/token", json={"client_id": client_id, "client_secret": client_secret}, timeout=10
    )
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


# --- `serve` on an embedded PostgreSQL of its own (no DATABASE_URL) -----------------------------------


class EmbeddedServerProcess(ServerProcess):
    """`canopy-svc serve` that starts (and supervises) its own embedded PostgreSQL in `data_dir/pg`."""

    def __init__(self, data_dir: Path, *, workers: int = 1, **env: str) -> None:
        super().__init__("", data_dir, workers=workers, **env)
        for name in ("DATABASE_URL", "XDG_RUNTIME_DIR", "CANOPY_SVC_DATA_DIR", "TEST_DATABASE_URL"):
            self.env.pop(name, None)  # the test session's server, runtime dir and folder are not this one's

    @property
    def pgdata(self) -> Path:
        return self.data_dir.resolve() / "pg"


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid on the first line of `pgdata/postmaster.pid`, if the file is there."""
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def embedded_dsn(pgdata: Path) -> str:
    """The DSN of the embedded PostgreSQL running on `pgdata` (its socket dir is in postmaster.pid)."""
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    assert info is not None, f"no postmaster.pid in {pgdata}"
    uri: str = info.get_uri()
    return uri


def stop_leftover_postgres(pgdata: Path) -> None:
    """Cleanup after a failure: pg_ctl runs the postmaster in a session of its own, so killing the
    server's process group leaves it running. Stops it by its pid file (fast shutdown), within a bound."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    try:
        process = psutil.Process(pid)
        if "postgres" in process.name():
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh folder for an embedded PostgreSQL, outside pytest's tmp_path: run as root, PostgreSQL runs
    as user `pgserver`, and any pytest session starting meanwhile resets /tmp/pytest-of-root to 0700."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
