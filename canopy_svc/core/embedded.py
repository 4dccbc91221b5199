"""The embedded PostgreSQL (pgserver) that `canopy-svc serve` runs when no DATABASE_URL is given."""

from __future__ import annotations

import logging
import os
import random
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("canopy_svc.core.embedded")

# pg_ctl's own wait for a start (crash recovery included), and ours for pg_ctl itself.
START_WAIT_SECONDS = 60
START_COMMAND_SECONDS = START_WAIT_SECONDS + 30


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `<data_dir>/pg` and survives restarts.

    With `supervise`, a server this process started is restarted whenever its postmaster dies (a crash,
    a kill, an OOM kill, a `pg_ctl stop` from outside), until `stop()`. A thread waits for the
    postmaster named in postmaster.pid to exit (on a pidfd, which the kernel wakes, so an idle server
    spends nothing on it; where there are none, a check every `check_seconds`) and restarts it with
    `pg_ctl start` and the options pgserver gave it, so the socket and DSN stay the same and the
    processes holding that DSN reconnect by themselves (their database gates close, then reopen). A
    server another process started on the same folder is that process's to supervise, and is left
    alone: its death looks like an external one.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        supervise: bool = False,
        check_seconds: float = 0.5,
        recheck_seconds: float = 60.0,
        first_backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.supervise = supervise
        self.check_seconds = check_seconds
        self.recheck_seconds = recheck_seconds  # with a pidfd: the pid file is read again this often anyway
        self.first_backoff_seconds = first_backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._server: Any = None
        self._started_here = False
        self._socket_dir: Path | None = None
        self._pid: int | None = None  # the postmaster we last saw running
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None  # a pipe: stop() writes to it to end the supervisor's wait

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver keeps its lock file in the runtime dir; give it a private one beside the data.
        runtime_dir = self.data_dir / "run"
        runtime_dir.mkdir(mode=0o700, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime_dir))
        import pgserver  # imported here: only the embedded mode needs it
        from pgserver.utils import PostmasterInfo

        pgdata = self.data_dir / "pg"
        running = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
        # A server already running on this folder (`make run` in another shell) is shared, not stopped.
        self._started_here = running is None or not running.is_running()
        # cleanup_mode=None: we stop it ourselves, once, when the owning process exits.
        self._server = pgserver.get_server(pgdata, cleanup_mode=None)
        info = self._server.get_postmaster_info()
        self._socket_dir, self._pid = info.socket_dir, info.pid
        uri: str = self._server.get_uri()
        log.info("embedded postgres ready", extra={"data_dir": str(self.data_dir), "shared": not self._started_here})
        if self.supervise and self._started_here and self._socket_dir is not None:
            self._stopping.clear()
            self._wake = os.pipe()
            self._supervisor = threading.Thread(target=self._supervise, name="embedded-postgres", daemon=True)
            self._supervisor.start()
        return uri

    def stop(self) -> None:
        self._stopping.set()  # first, so the supervisor does not restart what we stop
        if self._wake is not None:
            os.write(self._wake[1], b"x")
        if self._supervisor is not None:
            self._supervisor.join(timeout=START_COMMAND_SECONDS + 5)  # it may be in the middle of a start
            self._supervisor = None
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        if self._server is None or not self._started_here:
            self._server = None
            return
        # pgserver makes its command wrappers with setattr at import time, so its types cannot see them.
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)
        except Exception:  # already stopped
            log.warning("embedded postgres was not running at stop")
        self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- supervision ------------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            if (pid := self._running_pid()) is not None:
                self._wait_for_exit(pid)
                continue
            died_at = time.monotonic()
            log.error("embedded postgres died, restarting it", extra={"pid": self._pid})
            attempts = self._restart()
            if attempts:
                log.warning(
                    "embedded postgres restarted",
                    extra={"pid": self._pid, "attempts": attempts, "down_s": round(time.monotonic() - died_at, 2)},
                )

    def _restart(self) -> int:
        """Starts the postmaster again, with capped exponential backoff between failed attempts; the
        number of attempts made (0: stopped meanwhile)."""
        import psutil

        attempts, backoff = 0, self.first_backoff_seconds
        while not self._stopping.is_set():
            if (pid := self._running_pid()) is not None:  # started meanwhile (by us before a timeout, or by hand)
                self._pid = pid
                return max(attempts, 1)
            # Until the old postmaster is reaped, postgres takes its pid file for a live server and
            # refuses to start: wait for that (not an attempt). Never delete postmaster.pid ourselves:
            # it names the old shared memory, whose check keeps a second server off the same data
            # while the dead one's backends are still running (they exit on their own within seconds).
            old = self._pid_in_file() or self._pid
            if old is not None and psutil.pid_exists(old) and _is_zombie(old):
                self._stopping.wait(0.1)
                continue
            attempts += 1
            try:
                self._pg_ctl_start()
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                delay = backoff * random.uniform(0.5, 1.0)
                log.warning(
                    "embedded postgres did not start, retrying (its reason is in the log file)",
                    extra={
                        "attempt": attempts,
                        "error_type": type(exc).__name__,
                        "retry_in_s": round(delay, 2),
                        "log_file": str(self._server.log),
                    },
                )
                self._stopping.wait(delay)
                backoff = min(backoff * 2, self.max_backoff_seconds)
        return 0

    def _wait_for_exit(self, pid: int) -> None:
        """Returns when `pid` exits, stop() is called, or recheck_seconds pass. Reading the pid file
        twice a second cost an idle server a tenth of a percent of a core; a pidfd costs nothing
        until the kernel says the process is gone."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return  # gone already: the caller sees it
        except (AttributeError, OSError):  # no pidfds here (Linux < 5.3, another system)
            self._stopping.wait(self.check_seconds)
            return
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if self._wake is not None:
                poller.register(self._wake[0], select.POLLIN)
            poller.poll(self.recheck_seconds * 1000)
        finally:
            os.close(pidfd)

    def _pg_ctl_start(self) -> None:
        """`pg_ctl start` with the options pgserver starts it with: no TCP, the same socket dir. Run
        directly, not through pgserver's helper, which logs every failure with whole command outputs.
        No pipes: the postmaster would inherit them and they would never close."""
        from pgserver._commands import POSTGRES_BIN_PATH

        subprocess.run(  # noqa: S603 (pgserver's own pg_ctl, our paths)
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                "-D",
                str(self._server.pgdata),
                "-w",
                "-t",
                str(START_WAIT_SECONDS),
                "-o",
                '-h ""',
                "-o",
                f"-k {self._socket_dir}",
                "-l",
                str(self._server.log),
                "start",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=self._server.system_user,
            timeout=START_COMMAND_SECONDS,
        )

    def _pid_in_file(self) -> int | None:
        try:
            return int((self._server.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, IndexError, ValueError):
            return None

    def _running_pid(self) -> int | None:
        """The postmaster's pid if it is running (a zombie is not): the pid in its pid file, or,
        while that file is gone (a shutdown, a start), the last one seen, until it exits."""
        import psutil

        pid = self._pid_in_file() or self._pid
        if pid is None:
            return None
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE or "postgres" not in process.name():
                return None
        except psutil.NoSuchProcess:
            return None
        return pid


def _is_zombie(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
