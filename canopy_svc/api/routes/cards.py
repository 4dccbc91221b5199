"""/accounts/{account_id}/customers/{customer_id}/cards: the cards of an account's customer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api import examples
from canopy_svc.api.card_waits import answer_when_issued
from canopy_svc.api.phased_writes import Phases, write_in_phases
from canopy_svc.api.requests import cipher, pool, principal, resources
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.issuers.card_issuer import IssuedCard
from canopy_svc.rules import cards
from canopy_svc.wire import models
from canopy_svc.wire.models import CardCreate, CardDetails, CardUpdate


async def issue_card(request: Request) -> Response:
    org_id = principal(request).org_id
    account_id, customer_id = request.path_params["account_id"], request.path_params["customer_id"]
    data_cipher = cipher(request)

    # Canopy answers this route with an array of card items, so its clients read one.
    async def work(conn: Conn, card: CardCreate) -> list[CardDetails]:
        return [await cards.issue_card(conn, org_id, account_id, customer_id, card, data_cipher)]

    # Answered ISSUED when the worker issues it in time (api/card_waits.py).
    return await answer_when_issued(request, lambda: write(request, cards.parse_card_create, work), cards.cards_by_ids)


async def update_card(request: Request) -> Response:
    """Changes the card at Lithic in phases (api/phased_writes.py): no lock is held across the call."""
    org_id = principal(request).org_id
    account_id, customer_id = request.path_params["account_id"], request.path_params["customer_id"]
    shared = resources(request)
    lease_seconds = shared.settings.card_lease_seconds

    async def begin(conn: Conn, change: CardUpdate) -> cards.CardChange:
        return await cards.begin_card_change(
            conn, org_id, account_id, customer_id, change, shared.card_gateway, lease_seconds=lease_seconds
        )

    async def call(change: cards.CardChange) -> IssuedCard:
        # Paced as the worker's calls are: one schedule per organization's Lithic key.
        await cards.pace_card_change(
            pool(request), change, interval_seconds=shared.settings.lithic_min_interval_ms / 1000
        )
        return await cards.send_card_change(change)

    return await write_in_phases(
        request,
        Phases(
            parse=cards.parse_card_update,
            begin=begin,
            done=lambda change: change.done,
            call=call,
            finish=cards.finish_card_change,
            abandon=cards.abandon_card_change,
            lease_seconds=lease_seconds,
        ),
    )


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
]
