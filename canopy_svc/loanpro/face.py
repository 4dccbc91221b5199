"""What every LoanPro route shares: the `Autopal-Instance-ID` check, LoanPro's error shapes for the
Canopy rules' errors, its ids in paths and its `$expand`."""

from __future__ import annotations

import functools
import hmac
import re

from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.requests import pool, principal
from canopy_svc.api.routing import Handler
from canopy_svc.core.dbtypes import Queryable
from canopy_svc.loanpro import mapping
from canopy_svc.rules import loanpro as rules
from canopy_svc.wire import loanpro as lp
from canopy_svc.wire.errors import ApiError, DuplicateCustomer, InvalidInput, NotFound
from canopy_svc.wire.models import DuplicateWarning

_ID = re.compile(r"^(?:id=)?([1-9][0-9]{0,15})$")
_WARNINGS = {
    "ssn": "SSN already found in the system (Customer ID {id}).",
    "email": "Email already exists in the system (Customer ID {id}).",
    "phone_number": "(Phones) Phone already found in the system (Customer ID {id}).",
    "address": "(PrimaryAddress) Address already found in the system (Customer ID {id}).",
    "mail_address": "(MailAddress) Address already found in the system (Customer ID {id}).",
}
SAME_PERSON = "A customer with the same SSN and date of birth already exists"


def loanpro_route(handler: Handler) -> Handler:
    """The instance id checked first (a wrong or missing one is LoanPro's 401, as a wrong token is:
    api/authentication.py), and any error answered in LoanPro's shape."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        try:
            await check_instance(request)
            return await handler(request)
        except ApiError as error:
            raise translated(error) from None

    return route


async def check_instance(request: Request) -> None:
    sent = request.headers.get("autopal-instance-id", "").strip()
    expected = str(await rules.instance_id(pool(request), principal(request).org_id))
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise lp.unauthorized()


def translated(error: ApiError) -> ApiError:
    """A Canopy rules' error in LoanPro's shape (LOANPRO.md section 5: validation failures are 409)."""
    if isinstance(error, lp.LoanProError):
        return error
    if isinstance(error, InvalidInput):
        return lp.invalid(mapping.problems_message(error.details))
    if isinstance(error, NotFound):
        return lp.not_found("Customer not found" if "customer" in error.message else error.message)
    return lp.reshaped(error)


async def warning_texts(conn: Queryable, org_id: int, warnings: list[DuplicateWarning]) -> list[str]:
    """The rules' duplicate warnings as LoanPro's texts, naming the other customers by LoanPro id. The
    values compared and the other customer's name are not repeated (no personal data in answers)."""
    ids = await rules.loanpro_ids(conn, org_id, [w.customer_id for w in warnings])
    return [_WARNINGS[w.field].format(id=ids.get(w.customer_id, "?")) for w in warnings]


async def duplicates_refused(conn: Queryable, org_id: int, error: DuplicateCustomer) -> lp.LoanProError:
    texts = await warning_texts(conn, org_id, list(error.warnings))
    if error.message.startswith(SAME_PERSON):  # never waived by __ignoreWarnings
        return lp.LoanProError(409, f"{SAME_PERSON}.", "ValidationException", warnings=texts)
    return lp.LoanProError(409, "Transaction warnings found.", "TransactionWarningException", warnings=texts)


def path_id(request: Request) -> int:
    """`Customers(751)` or `Customers(id=751)`; anything else names no customer (404)."""
    match = _ID.match(request.path_params["loanpro_id"])
    if match is None:
        raise lp.not_found("Customer not found")
    return int(match.group(1))


def expansions(request: Request) -> set[str]:
    """`$expand=A,B/C`: each path and each of its prefixes; an unknown navigation is a 409."""
    raw = request.query_params.get("$expand", "")
    expanded: set[str] = set()
    for path in filter(None, (part.strip() for part in raw.split(","))):
        if path.split("/", 1)[0] not in mapping.ALL_NAVS:
            raise lp.invalid(f"$expand: unknown navigation {path.split('/', 1)[0]!r}")
        parts = path.split("/")
        expanded |= {"/".join(parts[: i + 1]) for i in range(len(parts))}
    return expanded
