"""Idempotency-Key rules: a write sent with a key is done once, and its answer given to every repeat.

A key is scoped to the organization. Claiming it takes a transaction-level advisory lock: held, it
means the first request still runs (409); it goes away with that transaction however it ends, crash
included, so a key is never stuck "in progress". The answer, errors included but not a 5xx or 429, is
stored (encrypted: it may hold an SSN) in the same transaction as the work: a crash leaves both or
neither. A repeat with the same method, path and body gets the stored answer back; another request
under the key is a 422.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn
from canopy_svc.store import idempotency as store
from canopy_svc.wire.errors import ApiError, BadRequest, IdempotencyInProgress, IdempotencyKeyReused

_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")  # 1-255 printable ASCII characters

IN_PROGRESS = 0  # the status of a placeholder answer (api/phased_writes.py): the request is still running


def keepable(error: ApiError) -> bool:
    """Whether an error is an answer to remember under the key: a 5xx or 429 says "try again"."""
    return error.status < 500 and error.status != 429


@dataclass(frozen=True)
class Answer:
    """An answer stored under a key, to give back to a repeat."""

    status: int
    body: bytes


@dataclass(frozen=True)
class IdempotencyKey:
    """A write sent with an Idempotency-Key: claimed, then answered, in the caller's transactions."""

    org_id: int
    key: str
    fingerprint: bytes
    cipher: DataCipher

    @classmethod
    def of(cls, org_id: int, key: str, method: str, path: str, body: bytes, cipher: DataCipher) -> IdempotencyKey:
        """The key of this request; a malformed one is a 400."""
        if not _KEY.match(key):
            raise BadRequest("Idempotency-Key must be 1-255 printable characters")
        return cls(org_id, key, store.fingerprint(cipher, method, path, body), cipher)

    async def claim(self, conn: Conn, *, lease_seconds: float | None = None) -> Answer | None:
        """Takes the key for this transaction: the stored answer to replay, or None to do the work.

        A request still running under the key is a 409; so is an in-progress placeholder younger than
        `lease_seconds` (older, its request died between phases and this one takes it over)."""
        if not await store.try_lock(conn, self.org_id, self.key):
            raise IdempotencyInProgress()
        stored = await store.fetch(conn, self.org_id, self.key, cipher=self.cipher)
        if stored is None:
            return None
        if stored["request_hash"] != self.fingerprint:
            raise IdempotencyKeyReused()
        if stored["status"] == IN_PROGRESS:
            if lease_seconds is None or stored["age_seconds"] < lease_seconds:
                raise IdempotencyInProgress()
            return None
        return Answer(stored["status"], stored["body"])

    async def remember(self, conn: Conn, status: int, answer: bytes) -> None:
        await store.store(conn, self.org_id, self.key, self.fingerprint, status, answer, cipher=self.cipher)

    async def forget(self, conn: Conn) -> None:
        await store.forget(conn, self.org_id, self.key)


async def purge_expired(pool: asyncpg.Pool) -> int:
    """Deletes a batch of answers kept past their retention (the lifespan runs it every few minutes)."""
    return await store.purge_expired(pool)
