"""The command line as real processes: `serve` on its own embedded PostgreSQL (data survives a restart),
`clients create` and `migrate` against the test database."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.helpers import TEST_DATA_KEY, seed_customer

STARTUP_SECONDS = 120
SHUTDOWN_SECONDS = 60
COMMAND_SECONDS = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DATABASE_URL",
            "CANOPY_SVC_DATA_KEY",
            "CANOPY_SVC_JWT_SECRET",
            "XDG_RUNTIME_DIR",
            "CANOPY_SVC_DATA_DIR",
            "TEST_DATABASE_URL",
        )
    }
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canopy_svc", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """postgres processes serving `pgdata` (matched on their command line or working directory)."""
    found = []
    target = str(pgdata)
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            if "postgres" not in (process.info["name"] or "") and not any(
                "postgres" in part for part in (process.info["cmdline"] or [])[:1]
            ):
                continue
            cmdline = " ".join(process.info["cmdline"] or [])
            if target in cmdline or process.cwd() == target:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def wait_until(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") + "\n--- stderr ---\n" + self.stderr.read_text(errors="replace")


def start_server(data_dir: Path, run: int) -> Server:
    port = free_port()
    stdout, stderr = data_dir.parent / f"serve-{run}.out", data_dir.parent / f"serve-{run}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "canopy_svc",
                "serve",
                "--dev",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--data-dir",
                str(data_dir),
                "--graceful-timeout",
                "5",
            ],
            env=base_env(),
            stdout=out,
            stderr=err,
            cwd=data_dir.parent,
        )
    server = Server(process, f"http://127.0.0.1:{port}", data_dir, stdout, stderr)

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}:\n{server.output()}")
        try:
            return httpx.get(f"{server.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, STARTUP_SECONDS, "/healthz of canopy-svc serve")
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: Server) -> int:
    """SIGTERM, and a bounded wait; SIGKILL (of our own process, by pid) only if it hangs."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=SHUTDOWN_SECONDS)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
        raise AssertionError(f"serve did not stop on SIGTERM:\n{server.output()}") from None


def stop_leftover_postgres(pgdata: Path) -> None:
    """Cleanup after a failure: the postgres that our serve started for `pgdata`, by its pid."""
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            if any(p.pid == pid for p in postgres_processes(pgdata)):
                os.kill(pid, signal.SIGTERM)
        except (ValueError, IndexError, ProcessLookupError):
            pass


@pytest.fixture
def data_dir(embedded_data_dir: Path) -> Iterator[Path]:
    path = (embedded_data_dir / "canopy-data").resolve()
    yield path
    stop_leftover_postgres(path / "pg")


def token_for(server: Server, client: dict[str, Any]) -> str:
    response = httpx.post(
        f"{server.base_url}/auth/token",
        timeout=30,
        json={"client_id": client["client_id"], "client_secret": client["client_secret"]},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_serve_embedded_database_survives_restart(data_dir: Path) -> None:
    server = start_server(data_dir, 1)
    try:
        client = json.loads((data_dir / "dev-client.json").read_text())
        assert client["client_id"] in server.stdout.read_text()
        token = token_for(server, client)
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{server.base_url}/customers", json=seed_customer(), headers=auth, timeout=30)
        assert created.status_code == 200, created.text
        fetched = httpx.get(f"{server.base_url}/customers/0x1234", headers=auth, timeout=30)
        assert fetched.status_code == 200 and fetched.json() == created.json()
        assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200
        assert httpx.get(f"{server.base_url}/customers/0x1234", timeout=10).status_code == 401
        pgdata = data_dir / "pg"
        assert postgres_processes(pgdata), "the embedded postgres should be running"
    finally:
        code = stop_server(server)
    assert code == 0, server.output()
    wait_until(lambda: not postgres_processes(pgdata), SHUTDOWN_SECONDS, "the embedded postgres to stop")

    # the access log went to stderr as JSON lines, and holds no secrets or personal data
    stderr = server.stderr.read_text(errors="replace")
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "canopy_svc.access"]
    posts = [line for line in access if line["method"] == "POST" and line["path"] == "/customers"]
    assert len(posts) == 1 and posts[0]["status"] == 200 and posts[0]["client_id"] == client["client_id"]
    assert {"request_id", "duration_ms"} <= set(posts[0])
    for needle in (client["client_secret"], token, "888888888", "marissa@protonmail.com", "Trevino"):
        assert needle not in stderr, needle

    # the same data folder again: same client, same customer
    server = start_server(data_dir, 2)
    try:
        assert json.loads((data_dir / "dev-client.json").read_text())["client_id"] == client["client_id"]
        token = token_for(server, client)
        fetched_again = httpx.get(
            f"{server.base_url}/customers/0x1234", timeout=30, headers={"Authorization": f"Bearer {token}"}
        )
        assert fetched_again.status_code == 200, fetched_again.text
        again = fetched_again.json()
        assert again == created.json()
        assert again["ssn"] == "888888888"
    finally:
        code = stop_server(server)
    assert code == 0, server.output()
    wait_until(lambda: not postgres_processes(pgdata), SHUTDOWN_SECONDS, "the embedded postgres to stop")


def cli_env(database_url: str) -> dict[str, str]:
    key = base64.urlsafe_b64encode(TEST_DATA_KEY).decode().rstrip("=")
    return base_env(DATABASE_URL=database_url, CANOPY_SVC_DATA_KEY=key)


async def test_clients_create_prints_a_working_secret_once(
    database_url: str, tmp_path: Path, anonymous: httpx.AsyncClient, pool: Any
) -> None:
    result = run_cli(
        "clients", "create", "--org", "acme", "--json", "--data-dir", str(tmp_path), env=cli_env(database_url)
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    created = json.loads(lines[0])
    assert {"org", "client_id", "client_secret"} <= set(created)
    assert created["org"] == "acme"
    assert created["client_secret"] not in result.stderr
    stored = await pool.fetchval("SELECT secret_hash FROM api_clients WHERE client_id = $1", created["client_id"])
    assert stored.startswith("scrypt$") and created["client_secret"] not in stored
    assert (
        await pool.fetchval(
            "SELECT o.name FROM api_clients c JOIN organizations o ON o.id = c.org_id WHERE c.client_id = $1",
            created["client_id"],
        )
        == "acme"
    )
    response = await anonymous.post(
        "/auth/token", json={"client_id": created["client_id"], "client_secret": created["client_secret"]}
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    listing = await anonymous.get("/customers", headers={"Authorization": f"Bearer {token}"})
    assert listing.status_code == 200


async def test_clients_create_without_json_prints_the_secret(
    database_url: str, tmp_path: Path, anonymous: httpx.AsyncClient
) -> None:
    result = run_cli("clients", "create", "--org", "initech", "--data-dir", str(tmp_path), env=cli_env(database_url))
    assert result.returncode == 0, result.stderr
    client_id = re.search(r"client_id:\s+(\S+)", result.stdout)
    secret = re.search(r"client_secret:\s+(\S+)", result.stdout)
    assert client_id and secret, result.stdout
    response = await anonymous.post(
        "/auth/token", json={"client_id": client_id.group(1), "client_secret": secret.group(1)}
    )
    assert response.status_code == 200, response.text


async def test_migrate_is_idempotent(database_url: str, tmp_path: Path, pool: Any) -> None:
    await pool.execute("INSERT INTO organizations (name) VALUES ('keepme')")
    outputs = []
    for _ in range(2):
        result = run_cli("migrate", "--data-dir", str(tmp_path), env=cli_env(database_url))
        assert result.returncode == 0, result.stderr
        match = re.search(r"schema at version (\d+)", result.stdout)
        assert match, result.stdout
        outputs.append(int(match.group(1)))
    assert outputs[0] == outputs[1] >= 1
    assert await pool.fetchval("SELECT version FROM schema_version") == outputs[0]
    assert await pool.fetchval("SELECT count(*) FROM organizations WHERE name = 'keepme'") == 1
