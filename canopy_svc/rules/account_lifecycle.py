"""An account's end: DELETE /accounts/{id} (soft: the row stays, every route answers 404) and
PUT /accounts/{id}/status. Both close the account's cards through the card outbox (rules/cards.py).

Choices where Canopy's documentation is silent:
- CLOSED is final: Lithic's CLOSED cannot be undone, so a reopened account would have only dead
  cards. Any other status after CLOSED is a 409; CLOSED again (a new substatus) is accepted.
- SUSPENDED changes no card: pausing them would need the account to remember which cards its owner
  had paused, to leave those paused on ACTIVE again; authorizations on a suspended account are the
  issuer's auth rules' to decline. Cards may still be changed, and issued, while SUSPENDED.
"""

from __future__ import annotations

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn
from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.rules import accounts, cards, events
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import accounts as account_store
from canopy_svc.wire.errors import Conflict, NotFound
from canopy_svc.wire.models import Account, AccountDeleted, AccountStatusUpdate

STATUS_DECODER = BodyDecoder(AccountStatusUpdate)
DELETED = AccountDeleted(description="Account deleted successfully.")


def parse_status_update(body: bytes) -> AccountStatusUpdate:
    return STATUS_DECODER.decode(body)


async def _live_account(conn: Conn, org_id: int, account_id: str) -> tuple[int, str]:
    """The account's row id and status, locked for this transaction: a concurrent delete, close or
    card for it waits (store/accounts.py)."""
    record = await account_store.lock_live(conn, org_id, account_id)
    if record is None:
        raise NotFound(f"No account found with the provided account_id: {account_id}")
    return record["id"], record["account_status"]


async def delete_account(
    conn: Conn, org_id: int, account_id: str, gateway: CardGateway, cipher: DataCipher
) -> AccountDeleted:
    row_id, _ = await _live_account(conn, org_id, account_id)
    await cards.close_account_cards(conn, org_id, row_id, gateway)
    # The account as it was last answered (its cards' closes pending), in the delete's transaction.
    await events.record_event(
        conn, org_id, "account_deleted", await accounts.get_account(conn, org_id, account_id, cipher)
    )
    await account_store.mark_deleted(conn, row_id)
    return DELETED


async def update_status(
    conn: Conn, org_id: int, account_id: str, change: AccountStatusUpdate, gateway: CardGateway, cipher: DataCipher
) -> Account:
    row_id, status = await _live_account(conn, org_id, account_id)
    if status == "CLOSED" and change.account_status != "CLOSED":
        raise Conflict(f"Account {account_id} is CLOSED; a closed account cannot be reopened")
    await account_store.set_status(conn, row_id, change.account_status, change.account_substatus)
    if change.account_status == "CLOSED" and status != "CLOSED":
        await cards.close_account_cards(conn, org_id, row_id, gateway)
    account = await accounts.get_account(conn, org_id, account_id, cipher)
    await events.record_event(conn, org_id, "account_updated", account)
    return account
