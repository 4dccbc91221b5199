"""Bulk import of customers (`canopy-svc customers import FILE --org ORG`): a lender's existing book.

Each row is what a POST /customers body would be, and is checked by the same code: the body is
decoded by rules/customers.parse_create (shape, then phone, email, country, ZIP and state, SSN,
dates, NUL), its columns made by the store's STORAGE.row (SSN and passports encrypted, the SSN's
lookup hash), its duplicates found by the store's own comparisons and decided by
rules/duplicates.decide under the organization's policy, against the table and against the earlier
rows of the file. A row that POST would refuse is written to the reject file with the error body the
API would answer (codes, messages and AJV details: never the values sent), beside its line number.

Rows go in batches: decoded and encrypted in worker processes (the CPU-bound part), then, per batch,
one transaction on one connection: COPY into a staging table, the comparisons, INSERT ... SELECT
into customers (so the search-term trigger and every constraint apply as to any insert), one
customer_created event per customer (with its webhook deliveries), and the import's position in
customer_imports. A run killed anywhere resumes after the last committed batch (the import is keyed
by the organization and the file's SHA-256), so no row is created twice and none is skipped.

Formats:
- JSON lines: one POST /customers body per line; blank lines are skipped.
- CSV: a header row of field names; a nested field is its path with dots (`business_details.doing_business_as`,
  `business_details.controller.name_first`, `passport.number`); an empty cell is an absent field;
  `__ignoreWarnings` (or `ignore_warnings`) takes true/false. assign_to_accounts has no column.

Not supported in an import: assign_to_accounts (link customers to accounts after, with PUT
/customers/{customer_id}): a row with it is rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime
import hashlib
import json
import os
import types
import typing
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
import msgspec

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn
from canopy_svc.rules import duplicates, events
from canopy_svc.rules.customers import customer_from_record, parse_create
from canopy_svc.rules.ids import new_customer_id
from canopy_svc.store import customer_import as store
from canopy_svc.store.conflicts import UNIQUE_CONFLICTS
from canopy_svc.store.customer_columns import STORAGE, struct_in
from canopy_svc.store.customers import WRITABLE
from canopy_svc.wire.errors import ApiError, BadRequest, Conflict, InvalidInput, NotFound, PayloadTooLarge, detail
from canopy_svc.wire.models import CustomerCreate

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
DEFAULT_BATCH_ROWS = 2000
# POST /customers refuses a body over 1 MiB (413): so does the import, for a row.
MAX_ROW_BYTES = 1024 * 1024
_CUSTOMER_ID_TAKEN = UNIQUE_CONFLICTS["customers_org_customer_id_key"]
_WRITABLE_INDEX = {name: i for i, name in enumerate(WRITABLE)}


class UnreadableFile(Exception):
    """A file the import cannot read at all (unknown format, a CSV header naming no field)."""


def format_of(path: Path, given: str | None) -> Format:
    if given is not None:
        if given not in FORMATS:
            raise UnreadableFile(f"unknown format {given!r}: csv or jsonl")
        return given
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise UnreadableFile(f"cannot tell the format of {path.name} by its extension: give --format csv or jsonl")
    return found


# --- CSV columns ---------------------------------------------------------------------------------


def _field_paths(model: type[msgspec.Struct], prefix: str = "") -> dict[str, bool]:
    """Every CSV column of a customer: the body's field paths (by their JSON names), each with whether
    it takes a boolean. Lists (assign_to_accounts) have no column."""
    paths: dict[str, bool] = {}
    for info in msgspec.structs.fields(model):
        name = prefix + info.encode_name
        nested = struct_in(info.type)
        if nested is not None:
            paths.update(_field_paths(nested, name + "."))
        elif list in {typing.get_origin(base) or base for base in _base_types(info.type)}:
            continue
        else:
            paths[name] = bool in _base_types(info.type)
    return paths


def _base_types(annotation: Any) -> set[Any]:
    """The types a field takes, its union spelled out and Annotated taken off (list[X] stays list[X])."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        return {base for arg in typing.get_args(annotation) for base in _base_types(arg)}
    return {annotation}


CSV_COLUMNS = _field_paths(CustomerCreate)


def check_header(header: Sequence[str]) -> list[str]:
    """The header's columns; an unknown or repeated one stops the import before any row (a typo there
    would silently drop a field from every row)."""
    columns = [name.strip() for name in header]
    unknown = [name for name in columns if name not in CSV_COLUMNS]
    if unknown:
        raise UnreadableFile(
            f"unknown CSV columns {unknown}: a column is a field of POST /customers, a nested one by its path"
        )
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise UnreadableFile(f"CSV columns named twice: {repeated}")
    return columns


def csv_body(columns: Sequence[str], cells: Sequence[str]) -> bytes:
    """A CSV row as the POST /customers body it stands for (raises BadRequest for a malformed row)."""
    if len(cells) != len(columns):
        raise BadRequest(f"the row has {len(cells)} cells, the header {len(columns)}")
    body: dict[str, Any] = {}
    for name, cell in zip(columns, cells, strict=True):
        if cell == "":
            continue
        value: Any = cell
        if CSV_COLUMNS[name] and cell.lower() in ("true", "false"):
            value = cell.lower() == "true"
        target = body
        *parents, leaf = name.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    try:
        return json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a cell that was not UTF-8 (read with surrogateescape)
        raise BadRequest("the row is not valid UTF-8") from None


# --- rows: decoded and checked as POST /customers would (in worker processes) ------------------------


@dataclass(frozen=True, slots=True)
class Checked:
    """A row that passed the body's checks: its columns in WRITABLE order, ready to stage."""

    line: int
    customer_id: str
    columns: tuple[Any, ...]
    ignore_warnings: bool
    date_of_birth: datetime.date
    parent_id: str | None


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    error: bytes  # the API's error envelope, as JSON


Outcome = Checked | Rejected
# (line, a JSON line, a CSV row's cells, or why the CSV reader could not read the row)
RawRow = tuple[int, bytes | list[str] | str]

_cipher: DataCipher | None = None
_columns: list[str] = []


def init_worker(data_key: bytes, columns: list[str]) -> None:
    """A worker process's cipher and the CSV header (ProcessPoolExecutor's initializer)."""
    global _cipher, _columns  # one per process, set once
    _cipher, _columns = DataCipher(data_key), columns


def _not_supported() -> InvalidInput:
    return InvalidInput(
        [
            detail(
                "/assign_to_accounts",
                "not",
                {},
                "is not supported by the import: link the customer with PUT /customers/{customer_id} after",
            )
        ]
    )


def check_row(line: int, raw: bytes | list[str] | str, cipher: DataCipher, columns: Sequence[str]) -> Outcome:
    try:
        if isinstance(raw, str):
            raise BadRequest(raw)
        body = raw if isinstance(raw, bytes) else csv_body(columns, raw)
        if len(body) > MAX_ROW_BYTES:
            raise PayloadTooLarge()
        payload = parse_create(body)
        if payload.assign_to_accounts:
            raise _not_supported()
    except ApiError as error:
        return Rejected(line, error.body())
    row = STORAGE.row(msgspec.structs.asdict(payload), cipher)
    return Checked(
        line=line,
        customer_id=payload.customer_id or new_customer_id(),
        columns=tuple(row.get(name) for name in WRITABLE),
        ignore_warnings=payload.ignore_warnings,
        date_of_birth=payload.date_of_birth,
        parent_id=payload.customer_parent_id,
    )


def check_rows(rows: list[RawRow]) -> list[Outcome]:
    """A batch's rows in a worker process (init_worker ran there)."""
    assert _cipher is not None
    return [check_row(line, raw, _cipher, _columns) for line, raw in rows]


# --- reading the file ------------------------------------------------------------------------------


class Reader:
    """The file's rows with their line numbers (a CSV row's first line), and how many bytes are read."""

    def __init__(self, path: Path, file_format: Format) -> None:
        self.path, self.format = path, file_format
        self.bytes_read = 0
        self.columns: list[str] = []

    def _lines(self, handle: typing.BinaryIO) -> Iterator[bytes]:
        for raw in handle:
            self.bytes_read += len(raw)
            yield raw

    def rows(self) -> Iterator[RawRow]:
        with self.path.open("rb") as handle:
            if self.format == "jsonl":
                for number, raw in enumerate(self._lines(handle), start=1):
                    text = raw.strip()
                    if text:
                        yield number, text.removeprefix(b"\xef\xbb\xbf") if number == 1 else text
                return
            # The file's own bytes, decoded as UTF-8; a cell that is not UTF-8 is refused with its row.
            texts = (raw.decode("utf-8", "surrogateescape") for raw in self._lines(handle))
            csv.field_size_limit(2 * MAX_ROW_BYTES)  # a longer cell is the row's 413, not csv's error
            reader = csv.reader(_strip_bom(texts), strict=True)
            try:
                header = next(reader)
            except StopIteration:
                return
            self.columns = check_header(header)
            start = reader.line_num + 1
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:  # an unclosed quote, a huge cell: this row only
                    yield start, f"the row is not valid CSV: {error}"
                    start = reader.line_num + 1
                    continue
                if cells:
                    yield start, cells
                start = reader.line_num + 1


def _strip_bom(lines: Iterator[str]) -> Iterator[str]:
    first = next(lines, None)
    if first is not None:
        yield first.removeprefix("\ufeff")
    yield from lines


def file_digest(path: Path) -> tuple[bytes, int]:
    """The file's SHA-256 (the import's key) and its size."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.digest(), size


# --- the import ------------------------------------------------------------------------------------


@dataclass
class Progress:
    """What the import has done so far (resumed counts included)."""

    lines_done: int = 0
    created: int = 0
    rejected: int = 0
    warned: int = 0
    rows_this_run: int = 0
    bytes_read: int = 0
    total_bytes: int = 0
    resumed_from_line: int = 0
    already_finished: bool = False
    finished: bool = False


class RejectFile:
    """FILE.rejects.jsonl: one line per refused row, `{"line": N, "error": {...}}` (plus `warnings` for a
    duplicate under `block`), as the API's error body. Each batch's lines are on disk (fsync) before
    the batch commits; a resumed import first drops the lines of batches that never committed."""

    def __init__(self, path: Path, keep_through_line: int) -> None:
        self.path = path
        kept: list[bytes] = []
        if keep_through_line and path.exists():
            for raw in path.read_bytes().splitlines():
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    if json.loads(raw)["line"] <= keep_through_line:
                        kept.append(raw)
        self.handle = path.open("wb")
        if kept:
            self.handle.write(b"\n".join(kept) + b"\n")
            self.sync()

    def write(self, rejected: list[Rejected]) -> None:
        for item in sorted(rejected, key=lambda r: r.line):
            self.handle.write(b'{"line":%d,' % item.line + item.error[1:] + b"\n")

    def position(self) -> int:
        return self.handle.tell()

    def rewind(self, position: int) -> None:
        """Drops what a batch that did not commit wrote."""
        self.handle.seek(position)
        self.handle.truncate()
        self.sync()

    def sync(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


async def apply_batch(
    conn: Conn, org_id: int, outcomes: list[Outcome], cipher: DataCipher
) -> tuple[list[Rejected], int, int]:
    """One batch in the caller's transaction: the checked rows staged, compared and inserted with
    their events. Returns (the batch's rejects, customers created, of those how many with warnings)."""
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    checked = sorted((o for o in outcomes if isinstance(o, Checked)), key=lambda c: c.line)
    if not checked:
        return rejected, 0, 0
    await store.stage(conn, [(c.line, c.customer_id, *c.columns) for c in checked])
    policy = await store.duplicate_policy(conn, org_id)
    if policy == "block":
        await store.lock_staged_values(conn, org_id)
    taken = {r["line"]: (r["id_taken"], r["parent_known"]) for r in await store.taken_ids(conn, org_id)}
    in_table: dict[int, list[tuple[str, str, datetime.date]]] = defaultdict(list)
    groups_of: dict[int, list[tuple[str, int]]] = defaultdict(list)
    if policy != "off":
        for match in await store.table_matches(conn, org_id):
            in_table[match["line"]].append((match["code"], match["customer_id"], match["date_of_birth"]))
        for member in await store.batch_groups(conn):
            groups_of[member["line"]].append((member["code"], member["grp"]))
    # In line order, as POSTs of the rows one after another: a row is compared with the earlier rows
    # that were accepted (five of each kind, oldest first, as the table's matches are).
    accepted_ids: set[str] = set()
    accepted_in_group: dict[int, list[tuple[str, datetime.date]]] = defaultdict(list)
    accepted: list[int] = []
    warned = 0
    for row in checked:
        id_taken, parent_known = taken[row.line]
        try:
            if id_taken or row.customer_id in accepted_ids:
                raise Conflict(_CUSTOMER_ID_TAKEN.format(customer_id=row.customer_id))
            if not parent_known and row.parent_id not in accepted_ids:
                raise NotFound(f"No customer found with the provided customer_parent_id: {row.parent_id}")
            matches = list(in_table.get(row.line, ()))
            for code, group in groups_of.get(row.line, ()):
                matches += [(code, customer_id, born) for customer_id, born in accepted_in_group[group][:5]]
            warnings = duplicates.decide(policy, matches, row.date_of_birth, ignore_warnings=row.ignore_warnings)
        except ApiError as error:  # DuplicateCustomer included
            rejected.append(Rejected(row.line, error.body()))
            continue
        warned += bool(warnings)
        accepted.append(row.line)
        accepted_ids.add(row.customer_id)
        for _, group in groups_of.get(row.line, ()):
            accepted_in_group[group].append((row.customer_id, row.date_of_birth))
    records = await store.insert_staged(conn, org_id, accepted)
    await events.record_events(conn, org_id, "customer_created", [customer_from_record(r, cipher) for r in records])
    return rejected, len(records), warned


@contextlib.contextmanager
def _executor(jobs: int, data_key: bytes, columns: list[str]) -> Iterator[Executor | None]:
    """Worker processes (spawned: the parent holds a database connection and an event loop), or None
    for jobs 0 (checked in this process: tests, tiny files)."""
    if jobs <= 0:
        yield None
        return
    import multiprocessing

    pool = ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker, initargs=(data_key, columns)
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _batches(rows: Iterator[RawRow], size: int) -> Iterator[list[RawRow]]:
    batch: list[RawRow] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _checked_batches(
    batches: Iterator[list[RawRow]], executor: Executor | None, jobs: int, cipher: DataCipher, columns: list[str]
) -> AsyncIterator[tuple[int, list[Outcome]]]:
    """(the batch's last line, its outcomes), in file order; with workers, a batch ahead per worker."""
    if executor is None:
        for batch in batches:
            yield batch[-1][0], [check_row(line, raw, cipher, columns) for line, raw in batch]
        return
    ahead = jobs + 1
    pending: list[tuple[int, Future[list[Outcome]]]] = []
    for batch in batches:
        pending.append((batch[-1][0], executor.submit(check_rows, batch)))
        if len(pending) >= ahead:
            last, future = pending.pop(0)
            yield last, await asyncio.wrap_future(future)
    for last, future in pending:
        yield last, await asyncio.wrap_future(future)


# A batch whose insert meets a customer_id created meanwhile (by the API, between the check and the
# insert) is checked again: the second time the row is refused as taken.
_BATCH_ATTEMPTS = 3


async def _commit_batch(
    conn: asyncpg.Connection,
    org_id: int,
    digest: bytes,
    outcomes: list[Outcome],
    cipher: DataCipher,
    rejects: RejectFile,
    progress: Progress,
    last_line: int,
) -> tuple[list[Rejected], int, int]:
    for attempt in range(1, _BATCH_ATTEMPTS + 1):
        mark = rejects.position()
        try:
            async with conn.transaction():
                batch_rejects, created, warned = await apply_batch(conn, org_id, outcomes, cipher)
                rejects.write(batch_rejects)
                rejects.sync()  # on disk before the batch commits: a resumed run keeps exactly these
                await store.record_progress(
                    conn,
                    org_id,
                    digest,
                    lines_done=last_line,
                    created=progress.created + created,
                    rejected=progress.rejected + len(batch_rejects),
                    warned=progress.warned + warned,
                    finished=False,
                )
            return batch_rejects, created, warned
        except asyncpg.UniqueViolationError:
            rejects.rewind(mark)
            if attempt == _BATCH_ATTEMPTS:
                raise
        except BaseException:
            rejects.rewind(mark)
            raise
    raise AssertionError("unreachable")


async def run_import(
    conn: asyncpg.Connection,
    org_id: int,
    path: Path,
    file_format: Format,
    data_key: bytes,
    *,
    rejects_path: Path,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    jobs: int = 0,
    on_progress: Callable[[Progress], None] = lambda _: None,
) -> Progress:
    """Imports the file into the organization, resuming where an earlier run of the same file stopped."""
    cipher = DataCipher(data_key)
    digest, size = file_digest(path)
    progress = Progress(total_bytes=size)
    before = await store.progress(conn, org_id, digest)
    if before is not None:
        progress.lines_done, progress.created = before["lines_done"], before["created"]
        progress.rejected, progress.warned = before["rejected"], before["warned"]
        progress.resumed_from_line = before["lines_done"]
        if before["finished_at"] is not None:
            progress.already_finished = progress.finished = True
            return progress
    await store.create_stage(conn)
    reader = Reader(path, file_format)
    rows = reader.rows()
    first = next(rows, None)  # reads the header (a bad one stops here, before any write)
    if first is None:
        async with conn.transaction():
            await store.record_progress(
                conn, org_id, digest, lines_done=0, created=0, rejected=0, warned=0, finished=True
            )
        progress.finished = True
        return progress

    def remaining() -> Iterator[RawRow]:
        assert first is not None
        yield first
        yield from rows

    resume_after = progress.lines_done
    todo = (row for row in remaining() if row[0] > resume_after)
    rejects = RejectFile(rejects_path, resume_after)
    try:
        with _executor(jobs, data_key, reader.columns) as executor:
            async for last_line, outcomes in _checked_batches(
                _batches(todo, batch_rows), executor, jobs, cipher, reader.columns
            ):
                batch_rejects, created, warned = await _commit_batch(
                    conn, org_id, digest, outcomes, cipher, rejects, progress, last_line
                )
                progress.lines_done = last_line
                progress.created += created
                progress.rejected += len(batch_rejects)
                progress.warned += warned
                progress.rows_this_run += len(outcomes)
                progress.bytes_read = reader.bytes_read
                on_progress(progress)
        async with conn.transaction():
            await store.record_progress(
                conn,
                org_id,
                digest,
                lines_done=progress.lines_done,
                created=progress.created,
                rejected=progress.rejected,
                warned=progress.warned,
                finished=True,
            )
        progress.finished = True
        progress.bytes_read = progress.total_bytes
        on_progress(progress)
    finally:
        rejects.close()
    return progress
