"""The one table from schema.sql's unique constraints to the contract's 409 messages.

Constraint names are the schema's, so the table lives with the SQL; the messages name only ids the
caller sent. A unique violation of a constraint not listed here is a bug, and stays a 500.
"""

from __future__ import annotations

import asyncpg

from canopy_svc.wire.errors import Conflict

# constraint name -> message; the placeholders are filled from the values the statement wrote.
UNIQUE_CONFLICTS: dict[str, str] = {
    "customers_org_customer_id_key": "A customer with customer_id '{customer_id}' already exists",
    "products_org_product_id_key": "A product with product_id '{product_id}' already exists",
    "products_org_external_product_id_key":
        "A product with external_product_id '{external_product_id}' already exists",
    "accounts_org_account_id_key": "An account with account_id '{account_id}' already exists",
    "accounts_org_external_account_id_key":
        "An account with external_account_id '{external_account_id}' already exists",
    "links_account_external_id_key":
        "customer_account_external_id '{customer_account_external_id}' is already used on this account",
    "beneficial_owners_customer_owner_id_key":
        "A beneficial owner with beneficial_owner_id '{beneficial_owner_id}' already exists for this customer",
}  # fmt: skip


def conflict_for(exc: asyncpg.UniqueViolationError, **values: object) -> Exception:
    """The contract's 409 for the constraint `exc` names, or `exc` itself when the table lacks it."""
    message = UNIQUE_CONFLICTS.get(exc.constraint_name or "")
    if message is None:
        return exc
    return Conflict(message.format(**values))
