"""The card item every route answers, and every card event carries (below rules/cards.py, which
imports rules/links.py, so that links and events can build one too)."""

from __future__ import annotations

from canopy_svc.core.dbtypes import Row
from canopy_svc.wire.models import CardDetails, LithicCardDetails


def card_from_record(record: Row) -> CardDetails:
    """The card item every route answers: the flat fields and the same values nested under `lithic`."""
    return CardDetails(
        status=record["status"],
        token=record["token"],
        last_four=record["last_four"],
        state=record["state"],
        type=record["card_type"],
        memo=record["memo"],
        spend_limit=record["spend_limit"],
        error=record["error"],
        lithic=LithicCardDetails(
            type=record["card_type"],
            state=record["state"],
            token=record["token"],
            last_four=record["last_four"],
            memo=record["memo"],
            spend_limit=record["spend_limit"],
            spend_limit_duration=record["spend_limit_duration"],
            exp_month=record["exp_month"],
            exp_year=record["exp_year"],
            created=record["lithic_created"],
            hostname=record["hostname"],
        ),
        spend_limit_duration=record["spend_limit_duration"],
        exp_month=record["exp_month"],
        exp_year=record["exp_year"],
        created=record["lithic_created"],
        hostname=record["hostname"],
    )
