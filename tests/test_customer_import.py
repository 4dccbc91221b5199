"""`canopy-svc customers import` (issue 15 item 5): rows checked as POST /customers checks a body,
loaded through COPY with their search terms and events, refused rows in the reject file in the API's
error shape, and a run killed with SIGKILL resumed without a row twice."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from canopy_svc.core.crypto import DataCipher
from canopy_svc.rules import customer_import
from canopy_svc.store.ssn import SSN_CONTEXT
from tests.helpers import TEST_DATA_KEY, ApiClient, minimal_customer

# The fields a POSTed and an imported copy of one body differ in: ids and timestamps.
OWN_FIELDS = ("customer_id", "created_at", "updated_at")


def person(n: int, **overrides: Any) -> dict[str, Any]:
    """A customer sharing no compared value (email, phone, address, SSN) with person(m), m != n."""
    fields: dict[str, Any] = {
        "customer_id": f"imp-{n}",
        "name_last": f"Lovelace{n}",
        "email": f"ada{n}@example.com",
        "phone_number": f"+1415{2000000 + n:07d}",
        "address_line_one": f"{n} Main St",
        "ssn": f"123-{45 + n // 9999 % 50:02d}-{n % 9999 + 1:04d}",
    }
    return minimal_customer(**(fields | overrides))


def write_jsonl(path: Path, bodies: list[Any]) -> Path:
    lines = [body if isinstance(body, str) else json.dumps(body) for body in bodies]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def rejects_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def import_file(
    database_url: str, org_id: int, path: Path, file_format: customer_import.Format = "jsonl", **options: Any
) -> customer_import.Progress:
    conn = await asyncpg.connect(database_url)
    try:
        return await customer_import.run_import(
            conn,
            org_id,
            path,
            file_format,
            TEST_DATA_KEY,
            rejects_path=options.pop("rejects_path", path.with_name(path.name + ".rejects.jsonl")),
            **options,
        )
    finally:
        await conn.close()


async def set_policy(api: ApiClient, policy: str) -> None:
    answer = await api.http.put("/organization/settings", json={"duplicate_customer_policy": policy})
    assert answer.status_code == 200, answer.text


def without(body: dict[str, Any], *names: str) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in names}


# --- good rows ------------------------------------------------------------------------------------


async def test_an_imported_row_is_stored_as_the_posted_one_with_its_search_terms_and_event(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    body = person(
        1,
        ssn="123-45-6789",
        passport={"number": "X1234567", "country": "GB"},
        business_details={"doing_business_as": "Ada Engines", "business_ein": "12-3456789"},
    )
    posted = await other_api.http.post("/customers", json=body)
    assert posted.status_code == 200, posted.text
    done = await import_file(database_url, api.org_id, write_jsonl(tmp_path / "book.jsonl", [body]))
    assert (done.created, done.rejected, done.finished) == (1, 0, True)

    imported = (await api.http.get("/customers/imp-1")).json()
    assert without(imported, *OWN_FIELDS) == without(posted.json(), *OWN_FIELDS)
    # The same derived rows: search terms from the trigger, the SSN's lookup hash, encrypted columns.
    rows = {
        r["org_id"]: r
        for r in await pool.fetch(
            """SELECT c.org_id, c.ssn_hash, c.ssn_encrypted, c.passport_number_encrypted,
                      c.search_vector::text AS words,
                      array(SELECT term FROM customer_search_terms t
                            WHERE t.customer_row_id = c.id ORDER BY term) AS terms
               FROM customers c"""
        )
    }
    mine, theirs = rows[api.org_id], rows[other_api.org_id]
    assert mine["ssn_hash"] == theirs["ssn_hash"] and mine["terms"] == theirs["terms"] and mine["terms"]
    assert mine["words"] == theirs["words"]
    assert b"6789" not in mine["ssn_encrypted"] and b"X1234567" not in mine["passport_number_encrypted"]
    assert DataCipher(TEST_DATA_KEY).decrypt(mine["ssn_encrypted"], context=SSN_CONTEXT) == "123-45-6789"
    assert (await api.http.get("/customers", params={"search_parameters": "lovel"})).json()["results"][0][
        "customer_id"
    ] == "imp-1"

    # Its event is the one a POST writes: the customer without SSN or passport.
    mine_events = (await api.http.get("/events")).json()["results"]
    their_events = (await other_api.http.get("/events")).json()["results"]
    assert [e["type"] for e in mine_events] == ["customer_created"]
    assert without(mine_events[0]["data"], *OWN_FIELDS) == without(their_events[0]["data"], *OWN_FIELDS)
    assert "ssn" not in mine_events[0]["data"] and "passport" not in mine_events[0]["data"]


async def test_csv_columns_are_field_paths_and_empty_cells_are_absent(
    api: ApiClient, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "book.csv"
    columns = [
        "customer_id", "name_first", "name_last", "phone_number", "address_line_one", "address_line_two",
        "address_city", "address_state", "address_zip", "email", "date_of_birth", "ssn",
        "business_details.doing_business_as", "business_details.business_ein",
        "business_details.controller.name_first", "business_details.controller.name_last",
        "business_details.controller.address_line_one", "business_details.controller.address_city",
        "business_details.controller.address_state", "business_details.controller.address_zip",
        "passport.number", "passport.country", "__ignoreWarnings",
    ]  # fmt: skip
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerow(
            ["c-1", "Ada", "Lovelace", "+14155550123", "1 Main St", "", "Springfield", "IL", "62701",
             "ada@example.com", "1990-12-10", "123-45-6789", "Ada, \"Engines\"\nLtd", "12-3456789",
             "Charles", "Babbage", "2 Side St", "London", "IL", "62702", "X1234567", "GB", "true"]
        )  # fmt: skip
        writer.writerow(
            ["c-2", "Alan", "Turing", "+14155550124", "3 Main St", "Apt 2", "Springfield", "IL", "62701",
             "alan@example.com", "1991-06-23", "", "", "", "", "", "", "", "", "", "", "", ""]
        )  # fmt: skip
    done = await import_file(database_url, api.org_id, path, "csv")
    assert (done.created, done.rejected) == (2, 0), rejects_of(path.with_name("book.csv.rejects.jsonl"))
    first = (await api.http.get("/customers/c-1")).json()
    assert first["business_details"]["doing_business_as"] == 'Ada, "Engines"\nLtd'
    assert first["business_details"]["controller"]["name_last"] == "Babbage"
    assert first["passport"] == {"number": "X1234567", "country": "GB"}
    assert first["ssn"] == "123-45-6789" and first["customer_type"] == "business"
    second = (await api.http.get("/customers/c-2")).json()
    assert second["address_line_two"] == "Apt 2" and second["ssn"] is None and second["business_details"] is None
    assert second["customer_type"] == "person"


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("name_first,name_lst", "name_lst"),  # a typo
        ("name_first,assign_to_accounts", "assign_to_accounts"),  # a list: no column
        ("name_first,name_first", "named twice"),
    ],
)
async def test_a_csv_header_naming_no_field_stops_before_any_row(
    api: ApiClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path, header: str, named: str
) -> None:
    path = tmp_path / "book.csv"
    path.write_text(f"{header}\nAda,Lovelace\n")
    with pytest.raises(customer_import.UnreadableFile, match=named):
        await import_file(database_url, api.org_id, path, "csv")
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0
    assert await pool.fetchval("SELECT count(*) FROM customer_imports") == 0


# --- bad rows -------------------------------------------------------------------------------------


async def test_every_class_of_bad_row_is_rejected_with_the_apis_error_and_no_value_echoed(
    api: ApiClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    bad = {
        "phone": person(2, phone_number="+1415555"),
        "country": person(3, address_country_code="XX"),
        "zip": person(4, address_zip="ABCDE"),
        "ssn": person(5, ssn="000-12-3456"),
        "nul": person(6, name_first="Ada\u0000Bob"),
        "long": person(7, name_last="L" * 300),
        "missing": without(person(8), "email", "date_of_birth"),
        "huge": person(9, title="t" * (customer_import.MAX_ROW_BYTES + 10)),
        "not_json": '{"name_first": "Ada", ',
        "not_object": "[1, 2]",
        "accounts": person(10, assign_to_accounts=[{"account_id": "acct-1"}]),
    }
    good = [person(1), person(11)]
    path = write_jsonl(tmp_path / "book.jsonl", [good[0], *bad.values(), "", good[1]])
    done = await import_file(database_url, api.org_id, path)
    assert (done.created, done.rejected) == (2, len(bad))
    assert {r["customer_id"] for r in await pool.fetch("SELECT customer_id FROM customers")} == {"imp-1", "imp-11"}

    found = {r["line"]: r for r in rejects_of(tmp_path / "book.jsonl.rejects.jsonl")}
    assert sorted(found) == list(range(2, 2 + len(bad)))  # one per bad row, by its line in the file
    by_name = dict(zip(bad, (found[line] for line in sorted(found)), strict=True))
    for name, reject in by_name.items():
        assert set(reject) == {"line", "error"}, name
        assert set(reject["error"]) == {"code", "message", "details"}, name
    paths = {name: {d["instancePath"] for d in r["error"]["details"]} for name, r in by_name.items()}
    assert "/phone_number" in paths["phone"]
    assert "/address_country_code" in paths["country"]
    assert "/address_zip" in paths["zip"]
    assert "/ssn" in paths["ssn"]
    assert "/name_first" in paths["nul"]
    assert "/name_last" in paths["long"]
    assert paths["missing"] >= {"/email", "/date_of_birth"} or {
        d["params"].get("missingProperty") for d in by_name["missing"]["error"]["details"]
    } >= {"email", "date_of_birth"}
    assert "/assign_to_accounts" in paths["accounts"]
    codes = {name: r["error"]["code"] for name, r in by_name.items()}
    assert codes["huge"] == "payload_too_large"
    assert codes["not_json"] == codes["not_object"] == "bad_request"
    assert {codes[n] for n in bad if n not in ("huge", "not_json", "not_object")} == {"invalid_input"}
    # The API's error bodies name fields, never their values: neither does the reject file.
    text = (tmp_path / "book.jsonl.rejects.jsonl").read_text()
    for value in ("+1415555", "000-12-3456", "ABCDE", "Ada\\u0000Bob", "ada5@example.com", "L" * 300):
        assert value not in text


async def test_a_csv_row_with_more_cells_than_the_header_is_rejected_alone(
    api: ApiClient, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "book.csv"
    body = person(1)
    names = list(body)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerow([body[n] for n in names] + ["extra"])
        writer.writerow([person(2)[n] for n in names])
    done = await import_file(database_url, api.org_id, path, "csv")
    assert (done.created, done.rejected) == (1, 1)
    (reject,) = rejects_of(tmp_path / "book.csv.rejects.jsonl")
    assert reject["line"] == 2 and reject["error"]["code"] == "bad_request"


async def test_csv_rows_with_a_nul_bad_utf8_or_an_unclosed_quote_are_rejected_alone(
    api: ApiClient, database_url: str, tmp_path: Path
) -> None:
    names = list(person(1))

    def line(body: dict[str, Any]) -> bytes:
        return ",".join(str(body[n]) for n in names).encode() + b"\n"

    path = tmp_path / "book.csv"
    path.write_bytes(
        b"\xef\xbb\xbf" + ",".join(names).encode() + b"\n"  # a BOM, as spreadsheets write
        + line(person(1))
        + line(person(2, name_first="Ada\x00Bob"))
        + line(person(3)).replace(b"Ada", b"Ad\xff")
        + line(person(4))
        + line(person(5)).replace(b"Ada", b'"Ada')  # a quote never closed: the rest of the file is its cell
    )  # fmt: skip
    done = await import_file(database_url, api.org_id, path, "csv")
    assert (done.created, done.rejected) == (2, 3)
    rejects = rejects_of(tmp_path / "book.csv.rejects.jsonl")
    assert [(r["line"], r["error"]["code"]) for r in rejects] == [
        (3, "invalid_input"),
        (4, "bad_request"),
        (6, "bad_request"),
    ]
    assert rejects[0]["error"]["details"][0]["instancePath"] == "/name_first"
    assert "UTF-8" in rejects[1]["error"]["message"] and "CSV" in rejects[2]["error"]["message"]


# --- duplicates and ids -----------------------------------------------------------------------------


async def test_a_customer_id_taken_in_the_table_or_earlier_in_the_file_is_a_conflict(
    api: ApiClient, database_url: str, tmp_path: Path
) -> None:
    await set_policy(api, "off")
    assert (await api.http.post("/customers", json=person(1))).status_code == 200
    path = write_jsonl(
        tmp_path / "book.jsonl", [person(1, email="x@example.com"), person(2), person(3, customer_id="imp-2")]
    )
    done = await import_file(database_url, api.org_id, path)
    assert (done.created, done.rejected) == (1, 2)
    rejects = rejects_of(tmp_path / "book.jsonl.rejects.jsonl")
    assert [(r["line"], r["error"]["code"]) for r in rejects] == [(1, "conflict"), (3, "conflict")]
    assert rejects[1]["error"]["message"] == "A customer with customer_id 'imp-2' already exists"


async def test_a_parent_must_exist_in_the_table_or_earlier_in_the_file(
    api: ApiClient, database_url: str, tmp_path: Path
) -> None:
    assert (await api.http.post("/customers", json=person(1))).status_code == 200
    rows = [
        person(2, customer_parent_id="imp-1"),
        person(3, customer_parent_id="imp-2"),
        person(4, customer_parent_id="nobody"),
    ]
    done = await import_file(database_url, api.org_id, write_jsonl(tmp_path / "book.jsonl", rows))
    assert (done.created, done.rejected) == (2, 1)
    (reject,) = rejects_of(tmp_path / "book.jsonl.rejects.jsonl")
    assert reject["line"] == 3 and reject["error"]["code"] == "not_found"
    assert (await api.http.get("/customers/imp-3")).json()["customer_parent_id"] == "imp-2"


@pytest.mark.parametrize("batch_rows", [1, 100])  # within one batch and across batches
async def test_duplicates_under_each_policy(
    api: ApiClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path, batch_rows: int
) -> None:
    assert (await api.http.post("/customers", json=person(1))).status_code == 200
    rows = [
        person(2, email="ada1@example.com"),  # the table's customer's email
        person(3),
        person(4, phone_number=person(3)["phone_number"]),  # the file's earlier row's phone
        person(5, ssn=person(3)["ssn"], date_of_birth="1985-01-01", __ignoreWarnings=True),  # another birth date
        person(6, ssn=person(3)["ssn"], date_of_birth=person(3)["date_of_birth"], __ignoreWarnings=True),
        person(7, address_line_one=" 3  MAIN st ", __ignoreWarnings=True),  # the address as compared
    ]
    outcomes: dict[str, tuple[int, list[Any]]] = {}
    for policy in ("off", "warn", "block"):
        await set_policy(api, policy)
        await pool.execute("DELETE FROM customers WHERE customer_id <> 'imp-1'")
        await pool.execute("DELETE FROM customer_imports")
        path = write_jsonl(tmp_path / f"{policy}.jsonl", rows)
        done = await import_file(database_url, api.org_id, path, batch_rows=batch_rows)
        outcomes[policy] = (done.warned, rejects_of(tmp_path / f"{policy}.jsonl.rejects.jsonl"))
        assert done.created + done.rejected == len(rows)
    assert outcomes["off"] == (0, [])
    assert outcomes["warn"][0] == 5 and outcomes["warn"][1] == []
    warned, rejects = outcomes["block"]
    assert [r["line"] for r in rejects] == [1, 3, 5]
    assert {r["error"]["code"] for r in rejects} == {"duplicate_customer"}
    assert [w["customer_id"] for w in rejects[0]["warnings"]] == ["imp-1"]
    assert [(w["field"], w["customer_id"]) for w in rejects[1]["warnings"]] == [("phone_number", "imp-3")]
    assert rejects[2]["error"]["message"] == "A customer with the same SSN and date of birth already exists"
    assert warned == 2  # lines 4 and 6: warnings ignored as asked
    created = {r["customer_id"] for r in await pool.fetch("SELECT customer_id FROM customers")}
    assert created == {"imp-1", "imp-3", "imp-5", "imp-7"}


# --- events and isolation ---------------------------------------------------------------------------


async def test_rows_go_only_to_the_named_organization_and_its_events(
    api: ApiClient, other_api: ApiClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    assert (await other_api.http.post("/customers", json=person(1))).status_code == 200
    await set_policy(api, "block")
    path = write_jsonl(tmp_path / "book.jsonl", [person(n) for n in range(1, 6)])
    done = await import_file(database_url, api.org_id, path, batch_rows=2)
    # The other organization's customer with the same id and values is no conflict nor duplicate here.
    assert (done.created, done.rejected) == (5, 0)
    assert (await other_api.http.get("/customers")).json()["results"][0]["customer_id"] == "imp-1"
    assert len((await other_api.http.get("/customers")).json()["results"]) == 1
    assert len((await other_api.http.get("/events")).json()["results"]) == 1
    mine = (await api.http.get("/events", params={"limit": 100})).json()["results"]
    assert [e["data"]["customer_id"] for e in mine] == [f"imp-{n}" for n in range(1, 6)]
    counts = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE org_id = $1) AS mine, count(*) AS every FROM customers", api.org_id
    )
    assert (counts["mine"], counts["every"]) == (5, 6)


async def test_events_bring_webhook_deliveries_as_posts_do(
    api: ApiClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    await pool.execute(
        """INSERT INTO webhook_subscriptions (org_id, subscription_id, webhook_url, secret_encrypted, filter_events)
           VALUES ($1, 'sub-1', 'https://example.com/hook', '\\x00', ARRAY['customer_created'])""",
        api.org_id,
    )
    done = await import_file(database_url, api.org_id, write_jsonl(tmp_path / "b.jsonl", [person(1), person(2)]))
    assert done.created == 2
    assert await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'") == 2


async def test_a_finished_file_is_not_imported_again(
    api: ApiClient, pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "book.jsonl", [person(1), person(2, phone_number="bad")])
    first = await import_file(database_url, api.org_id, path)
    again = await import_file(database_url, api.org_id, path)
    assert (first.created, first.rejected, again.already_finished) == (2 - 1, 1, True)
    assert (again.created, again.rejected) == (1, 1)
    assert await pool.fetchval("SELECT count(*) FROM customers") == 1
    assert len(rejects_of(tmp_path / "book.jsonl.rejects.jsonl")) == 1


# --- the command, killed and resumed ----------------------------------------------------------------


def cli_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANOPY_SVC_")}
    env.update(
        DATABASE_URL=database_url,
        CANOPY_SVC_DATA_KEY=base64.urlsafe_b64encode(TEST_DATA_KEY).decode(),
        CANOPY_SVC_JWT_SECRET="test-jwt-secret-with-enough-length-0123456789",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_command(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The command in a session of its own (its worker processes killed with it)."""
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def run_command(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def import_command(path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "canopy_svc", "customers", "import", str(path), "--org", "import-org", *extra]


async def test_an_import_killed_mid_file_resumes_with_every_valid_row_once(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        org_id = await conn.fetchval("INSERT INTO organizations (name) VALUES ('import-org') RETURNING id")
    rows: list[Any] = [person(n) if n % 50 else person(n, phone_number="nope") for n in range(1, 6001)]
    path = write_jsonl(tmp_path / "book.jsonl", rows)
    valid = {f"imp-{n}" for n in range(1, 6001) if n % 50}
    env = cli_env(database_url)
    process = start_command(import_command(path, "--batch-rows", "100", "--jobs", "0"), env)
    deadline = time.monotonic() + 120
    lines_done = 0
    while not lines_done and time.monotonic() < deadline and process.poll() is None:
        lines_done = await pool.fetchval("SELECT coalesce(max(lines_done), 0) FROM customer_imports") or 0
        if not lines_done:
            await asyncio.sleep(0.01)
    assert process.poll() is None, f"the import ended before it could be killed: {process.communicate()}"
    assert lines_done, "the import wrote no batch within 120 s"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    killed_at = await pool.fetchrow("SELECT lines_done, created, finished_at FROM customer_imports")
    assert killed_at["finished_at"] is None and killed_at["lines_done"] < len(rows)
    assert await pool.fetchval("SELECT count(*) FROM customers") == killed_at["created"]

    # The rerun (with worker processes this time) resumes after the last committed batch.
    again = run_command(import_command(path, "--batch-rows", "500", "--jobs", "2", "--json"), env)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["resumed_after_line"] == killed_at["lines_done"]
    assert (summary["created"], summary["rejected"]) == (len(valid), len(rows) - len(valid))
    ids = [r["customer_id"] for r in await pool.fetch("SELECT customer_id FROM customers WHERE org_id = $1", org_id)]
    assert len(ids) == len(set(ids)) and set(ids) == valid
    assert await pool.fetchval("SELECT count(*) FROM events WHERE type = 'customer_created'") == len(valid)
    assert await pool.fetchval("SELECT count(DISTINCT data->>'customer_id') FROM events") == len(valid)
    rejected_lines = [r["line"] for r in rejects_of(tmp_path / "book.jsonl.rejects.jsonl")]
    assert rejected_lines == [n for n in range(1, 6001) if not n % 50]  # each once, in order


def test_the_command_refuses_an_unknown_organization_and_an_unknown_format(database_url: str, tmp_path: Path) -> None:
    env = cli_env(database_url)
    path = write_jsonl(tmp_path / "book.jsonl", [person(1)])
    unknown = run_command(import_command(path), env)
    assert unknown.returncode == 1 and "no organization named 'import-org'" in unknown.stderr
    odd = tmp_path / "book.txt"
    odd.write_text("{}\n")
    refused = run_command(import_command(odd), env)
    assert refused.returncode == 2 and "--format" in refused.stderr


def run_on_terminal(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """The command with stderr on a pseudo-terminal of 120 x 40; its exit status and what it drew there."""
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    drawn = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal's other end closed: the command ended
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    return process.wait(timeout=300), drawn.decode(errors="replace")


async def test_a_progress_bar_on_a_terminal_and_only_the_summary_otherwise(
    pool: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO organizations (name) VALUES ('import-org')")
    env = cli_env(database_url)
    path = write_jsonl(tmp_path / "book.jsonl", [person(n) for n in range(1, 401)] + ["nope"])
    status, drawn = await asyncio.to_thread(
        run_on_terminal, import_command(path, "--batch-rows", "100", "--jobs", "0"), env
    )
    assert status == 0, drawn
    assert "400 created, 1 rejected" in drawn and "rows/s" in drawn and "100%|" in drawn and "left]" in drawn

    quiet = await asyncio.to_thread(
        run_command, import_command(tmp_path / "book.jsonl", "--batch-rows", "100", "--jobs", "0"), env
    )
    assert quiet.returncode == 0 and "%|" not in quiet.stderr and "rows/s" not in quiet.stderr
    assert "already imported" in quiet.stdout and "400 created, 1 rejected" in quiet.stdout
