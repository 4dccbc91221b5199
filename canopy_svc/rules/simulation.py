"""The simulator's card lifecycle for organizations without Lithic (`make run`, demos): a purchase with
a card (Lithic's POST /v1/simulate/authorize), whose change at the "issuer" comes back as the
simulator's own signed webhook, through the same verification and application as Lithic's."""

from __future__ import annotations

from canopy_svc.core.crypto import DataCipher
from canopy_svc.core.dbtypes import Conn
from canopy_svc.issuers.simulator import CardSimulator
from canopy_svc.rules import lithic_sync
from canopy_svc.rules.validation import BodyDecoder
from canopy_svc.store import lithic_sync as sync_store
from canopy_svc.store import organizations as organization_store
from canopy_svc.wire.errors import Conflict, NotFound
from canopy_svc.wire.models import SimulatedAuthorization, SimulatedAuthorizationRequest

AUTHORIZATION_DECODER = BodyDecoder(SimulatedAuthorizationRequest)


async def authorize(
    conn: Conn, org_id: int, payload: SimulatedAuthorizationRequest, simulator: CardSimulator, cipher: DataCipher
) -> SimulatedAuthorization:
    card = await sync_store.issued_card_of(conn, org_id, payload.card_token)
    if card is None:
        raise NotFound(f"No issued card found with the provided card_token: {payload.card_token}")
    if (await organization_store.lithic_config(conn, org_id))["lithic_api_key_encrypted"] is not None:
        raise Conflict("The organization's cards are issued at Lithic: simulate with Lithic's sandbox instead")
    outcome = simulator.authorize(payload.card_token, payload.amount, payload.descriptor)
    if outcome is None:
        raise Conflict("This process's simulator does not hold the card (made by another process, or before a restart)")
    if outcome.webhook_body:
        headers = outcome.webhook_headers
        signed = lithic_sync.Signed(headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"])
        await lithic_sync.receive_webhook(
            conn, outcome.webhook_body, signed, cipher, simulator_secret=simulator.webhook_secret
        )
    after = await sync_store.issued_card_of(conn, org_id, payload.card_token)
    assert after is not None
    return SimulatedAuthorization(result=outcome.result, card_state=after["state"])  # type: ignore[arg-type]
