"""The secret files of the data folder: `jwt-secret`, `data-key` and the sandbox's `dev-client.json`.

Each is made once, mode 0600, for the sandbox; production sets CANOPY_SVC_JWT_SECRET and
CANOPY_SVC_DATA_KEY instead (canopy_svc/core/settings.py), so no secret sits on disk.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from canopy_svc.core.crypto import decode_key, generate_key_text

log = logging.getLogger("canopy_svc.core.crypto")

JWT_SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name, not a secret)
DATA_KEY_FILE = "data-key"
DEV_CLIENT_FILE = "dev-client.json"


def jwt_secret(data_dir: Path) -> str:
    """The token signing secret of the data folder, made on first use."""
    return load_or_create_secret(data_dir, JWT_SECRET_FILE)


def data_key(data_dir: Path) -> bytes:
    """The 32-byte data key of the data folder, made on first use."""
    path = data_dir / DATA_KEY_FILE
    if not path.exists():
        publish_secret_file(path, generate_key_text())
    if path.stat().st_mode & 0o077:
        log.warning("data key file is readable by other users", extra={"path": str(path)})
    return decode_key(path.read_text(), source=f"data key file {path}")


def read_dev_client(data_dir: Path) -> dict[str, Any] | None:
    """The sandbox's dev client (its id and secret) as saved, or None."""
    path = data_dir / DEV_CLIENT_FILE
    if not path.exists():
        return None
    saved: dict[str, Any] = json.loads(path.read_text())
    return saved


def write_dev_client(data_dir: Path, client: dict[str, Any]) -> None:
    """Saves the dev client in place of any earlier one."""
    path = data_dir / DEV_CLIENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(client, handle)


def load_or_create_secret(data_dir: Path, name: str, nbytes: int = 32) -> str:
    """A random secret made once and kept in the data folder."""
    path = data_dir / name
    if not path.exists():
        value = base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode().rstrip("=")
        publish_secret_file(path, value)
    return path.read_text().strip()


def publish_secret_file(path: Path, text: str) -> None:
    """Publish a complete secret file atomically; whoever links first wins, others use theirs.

    A plain O_EXCL create on the final name would let a concurrent starter (another worker) read
    the file while it is still empty, so it is written to an O_EXCL temp file and hard-linked into
    place (link fails if the name exists, exactly like O_EXCL, but the content is already complete).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its secret
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
