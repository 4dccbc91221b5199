"""/accounts/{account_id}/customers/{customer_id}/cards: the cards of an account's customer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api import examples
from canopy_svc.api.card_waits import answer_when_issued
from canopy_svc.api.phased_writes import Phases, write_in_phases
from canopy_svc.api.requests import cipher, pool, principal, resources
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import Parse, write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.issuers.card_issuer import IssuedCard
from canopy_svc.issuers.gateway import CardGateway
from canopy_svc.rules import cards
from canopy_svc.wire import models
from canopy_svc.wire.models import CardCreate, CardDetails, CardReissue, CardRenewal, CardUpdate

Payload = TypeVar("Payload")


async def issue_card(request: Request) -> Response:
    org_id = principal(request).org_id
    account_id, customer_id = request.path_params["account_id"], request.path_params["customer_id"]
    data_cipher = cipher(request)

    # Canopy answers this route with an array of card items, so its clients read one.
    async def work(conn: Conn, card: CardCreate) -> list[CardDetails]:
        return [await cards.issue_card(conn, org_id, account_id, customer_id, card, data_cipher)]

    # Answered ISSUED when the worker issues it in time (api/card_waits.py).
    return await answer_when_issued(request, lambda: write(request, cards.parse_card_create, work), cards.cards_by_ids)


def _change_at_lithic(
    request: Request,
    parse: Parse[Payload],
    begin: Callable[[Conn, Payload, CardGateway, float], Awaitable[cards.CardChange]],
) -> Awaitable[Response]:
    """A change of an issued card at Lithic, in phases (api/phased_writes.py): no lock is held across
    the call, which is paced as the worker's calls are (one schedule per organization's Lithic key)."""
    shared = resources(request)
    lease_seconds = shared.settings.card_lease_seconds

    async def call(change: cards.CardChange) -> IssuedCard:
        await cards.pace_card_change(
            pool(request), change, interval_seconds=shared.settings.lithic_min_interval_ms / 1000
        )
        return await cards.send_card_change(change)

    return write_in_phases(
        request,
        Phases(
            parse=parse,
            begin=lambda conn, payload: begin(conn, payload, shared.card_gateway, lease_seconds),
            done=lambda change: change.done,
            call=call,
            finish=cards.finish_card_change,
            abandon=cards.abandon_card_change,
            lease_seconds=lease_seconds,
        ),
    )


async def update_card(request: Request) -> Response:
    org_id = principal(request).org_id
    account_id, customer_id = request.path_params["account_id"], request.path_params["customer_id"]

    async def begin(conn: Conn, change: CardUpdate, gateway: CardGateway, lease: float) -> cards.CardChange:
        return await cards.begin_card_change(
            conn, org_id, account_id, customer_id, change, gateway, lease_seconds=lease
        )

    return await _change_at_lithic(request, cards.parse_card_update, begin)


async def _renew_or_reissue(request: Request, parse: Parse[CardRenewal | CardReissue]) -> Response:
    org_id, params = principal(request).org_id, request.path_params
    account_id, customer_id, token = params["account_id"], params["customer_id"], params["card_token"]

    async def begin(
        conn: Conn, body: CardRenewal | CardReissue, gateway: CardGateway, lease: float
    ) -> cards.CardChange:
        return await cards.begin_card_renewal(
            conn, org_id, account_id, customer_id, token, body, gateway, lease_seconds=lease
        )

    return await _change_at_lithic(request, parse, begin)


async def renew_card(request: Request) -> Response:
    """Lithic's renew: a new expiry and CVV for the same card (same token and number)."""
    return await _renew_or_reissue(request, cards.parse_card_renewal)


async def reissue_card(request: Request) -> Response:
    """Lithic's reissue: a duplicate PHYSICAL card (same number and expiry) made and sent."""
    return await _renew_or_reissue(request, cards.parse_card_reissue)


async def replace_card(request: Request) -> Response:
    """A new card for a lost or stolen one (Lithic's replacement_for), issued as POST .../cards issues."""
    org_id, data_cipher = principal(request).org_id, cipher(request)
    params = request.path_params
    account_id, customer_id, token = params["account_id"], params["customer_id"], params["card_token"]

    async def work(conn: Conn, card: CardCreate) -> list[CardDetails]:
        return [await cards.replace_card(conn, org_id, account_id, customer_id, token, card, data_cipher)]

    return await answer_when_issued(request, lambda: write(request, cards.parse_card_create, work), cards.cards_by_ids)


async def list_cards(request: Request) -> Response:
    account_id, customer_id = request.path_params["account_id"], request.path_params["customer_id"]
    async with pool(request).acquire() as conn:
        return JSONResponse(await cards.list_cards(conn, principal(request).org_id, account_id, customer_id))


async def get_card(request: Request) -> Response:
    params = request.path_params
    async with pool(request).acquire() as conn:
        card = await cards.get_card(
            conn, principal(request).org_id, params["account_id"], params["customer_id"], params["card_token"]
        )
    return JSONResponse(card)


_PATH = "/accounts/{account_id}/customers/{customer_id}/cards"

endpoints = [
    Endpoint(
        "POST",
        _PATH,
        issue_card,
        "Issue a card for a customer on an account",
        list[models.CardDetails],
        models.CardCreate,
        errors=(401, 403, 404, 429, 500, 503),
        example=examples.CARD,
    ),
    Endpoint(
        "PUT",
        _PATH,
        update_card,
        "Change the state or spend limit of a card of the link at Lithic (card_token; default: the newest)",
        models.CardDetails,
        models.CardUpdate,
        errors=(401, 403, 404, 409, 429, 500, 503),
        example=examples.CARD_UPDATE,
    ),
    Endpoint(
        "GET",
        _PATH,
        list_cards,
        "List the cards of a customer on an account, newest first",
        list[models.CardDetails],
        errors=(401, 403, 404, 429, 500, 503),
    ),
    Endpoint(
        "GET",
        _PATH + "/{card_token}",
        get_card,
        "Get one card of a customer on an account, by its Lithic token",
        models.CardDetails,
        errors=(401, 403, 404, 429, 500, 503),
    ),
    Endpoint(
        "POST",
        _PATH + "/{card_token}/replace",
        replace_card,
        "Replace a lost or stolen PHYSICAL or VIRTUAL card with a new one of its type (Lithic's replacement_for)",
        list[models.CardDetails],
        models.CardCreate,
        errors=(401, 403, 404, 409, 429, 500, 503),
        example={"spend_limit": 100000},
    ),
    Endpoint(
        "POST",
        _PATH + "/{card_token}/renew",
        renew_card,
        "Renew an expiring PHYSICAL or VIRTUAL card: same token and number, a new expiry (Lithic's renew)",
        models.CardDetails,
        models.CardRenewal,
        errors=(401, 403, 404, 409, 422, 429, 500, 503),
        example={"exp_month": "06", "exp_year": "2032"},
    ),
    Endpoint(
        "POST",
        _PATH + "/{card_token}/reissue",
        reissue_card,
        "Reissue a damaged PHYSICAL card: a duplicate with the same number and expiry (Lithic's reissue)",
        models.CardDetails,
        models.CardReissue,
        errors=(401, 403, 404, 409, 422, 429, 500, 503),
        example={"shipping_method": "STANDARD"},
    ),
]
