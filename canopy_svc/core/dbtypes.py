"""The types of what runs a query, for signatures: asyncpg's stubs type a pooled connection
(PoolConnectionProxy) apart from a connection, though it forwards every call to one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# One connection: opened by hand (the CLI, the gate's probe) or borrowed from the pool (every request).
Conn = asyncpg.Connection | PoolConnectionProxy
# Anything that runs a statement: a connection, or the pool for a read that needs no transaction.
Queryable = Conn | asyncpg.Pool
# A row as read (asyncpg's Record is no Mapping in its stubs) or as built by code.
Row = Mapping[str, Any] | asyncpg.Record
