"""The embedded PostgreSQL (pgserver) that `canopy-svc serve` runs when no DATABASE_URL is given."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("canopy_svc.embedded")


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in `<data_dir>/pg` and survives restarts."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None
        self._started_here = False

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
        uri: str = self._server.get_uri()
        log.info("embedded postgres ready", extra={"data_dir": str(self.data_dir)})
        return uri

    def stop(self) -> None:
        if self._server is None or not self._started_here:
            self._server = None
            return
        from pgserver._commands import pg_ctl

        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)
        except Exception:  # already stopped
            log.warning("embedded postgres was not running at stop")
        self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
