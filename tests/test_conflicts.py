"""The one table from unique constraints to the contract's 409 messages (canopy_svc/store/conflicts.py)."""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

import asyncpg
import pytest

from canopy_svc.store.conflicts import UNIQUE_CONFLICTS, conflict_for
from canopy_svc.wire.errors import Conflict
from tests.helpers import ApiClient, assert_error, minimal_customer

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "canopy_svc" / "store"


def test_every_mapped_constraint_is_a_unique_constraint_of_the_schema() -> None:
    schema = (ROOT / "schema.sql").read_text()
    unique = set(re.findall(r"CONSTRAINT\s+(\w+)\s+UNIQUE", schema))
    assert set(UNIQUE_CONFLICTS) <= unique, set(UNIQUE_CONFLICTS) - unique


def test_no_store_module_maps_a_constraint_by_itself() -> None:
    """A second mapping would drift from the table: only conflicts.py names Conflict or constraint_name."""
    offenders = []
    for path in sorted(STORE.glob("*.py")):
        if path.name == "conflicts.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Name) and node.id == "Conflict") or (
                isinstance(node, ast.Attribute) and node.attr == "constraint_name"
            ):
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Constant) and node.value in UNIQUE_CONFLICTS:
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


async def test_an_unlisted_constraint_stays_the_database_error(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO organizations (name) VALUES ('twice')")
    with pytest.raises(asyncpg.UniqueViolationError) as raised:
        await pool.execute("INSERT INTO organizations (name) VALUES ('twice')")
    assert conflict_for(raised.value) is raised.value
    assert not isinstance(conflict_for(raised.value), Conflict)


async def test_each_constraint_answers_its_message(api: ApiClient) -> None:
    async def conflict(method: str, path: str, body: Mapping[str, object]) -> str:
        first = await api.http.request(method, path, json=body)
        assert first.status_code == 200, first.text
        message: str = assert_error(await api.http.request(method, path, json=body), 409, "conflict")["message"]
        return message

    product = {"product_id": "prod-1", "product_overview": {"product_name": "Card", "product_type": "REVOLVING"}}
    assert await conflict("POST", "/products", product) == "A product with product_id 'prod-1' already exists"
    assert await conflict("POST", "/accounts", {"product_id": "prod-1", "account_id": "acc-1"}) == (
        "An account with account_id 'acc-1' already exists"
    )
    answer = await api.http.post("/accounts", json={"product_id": "prod-1", "external_account_id": "ext-1"})
    assert answer.status_code == 200, answer.text
    again = await api.http.post("/accounts", json={"product_id": "prod-1", "external_account_id": "ext-1"})
    assert assert_error(again, 409, "conflict")["message"] == (
        "An account with external_account_id 'ext-1' already exists"
    )
    assert await conflict("POST", "/customers", minimal_customer(customer_id="cust-1")) == (
        "A customer with customer_id 'cust-1' already exists"
    )
    assigned = {"assign_to_accounts": [{"account_id": "acc-1", "customer_account_external_id": "shared"}]}
    answer = await api.http.post("/customers", json=minimal_customer(customer_id="cust-2", **assigned))
    assert answer.status_code == 200, answer.text
    again = await api.http.post("/customers", json=minimal_customer(customer_id="cust-3", **assigned))
    assert assert_error(again, 409, "conflict")["message"] == (
        "customer_account_external_id 'shared' is already used on this account"
    )
