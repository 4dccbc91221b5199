"""Opaque paging cursors: the keyset position, bound to one organization and signed.

A cursor is base64url(position || HMAC(key, org || kind || position)[:12]). A forged cursor, one
from another organization or from another listing is refused with 400; the caller learns nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct

from canopy_svc.wire.errors import BadRequest

_POSITION = struct.Struct(">q")
_MAC_BYTES = 12


class CursorCodec:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, org_id: int, kind: str, position: bytes) -> bytes:
        message = _POSITION.pack(org_id) + kind.encode() + b"\x00" + position
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, org_id: int, kind: str, position: int) -> str:
        packed = _POSITION.pack(position)
        raw = packed + self._mac(org_id, kind, packed)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, org_id: int, kind: str, cursor: str, parameter: str) -> int:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == _POSITION.size + _MAC_BYTES:
            packed, mac = raw[: _POSITION.size], raw[_POSITION.size :]
            if hmac.compare_digest(mac, self._mac(org_id, kind, packed)):
                return int(_POSITION.unpack(packed)[0])
        raise BadRequest(f"Invalid {parameter} cursor")
