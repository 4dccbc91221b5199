"""odata.svc/Customers: LoanPro's customer routes over rules/customers.py and rules/loanpro.py."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from canopy_svc.api.body import read_json_body
from canopy_svc.api.requests import cipher, pool, principal
from canopy_svc.api.responses import JSONResponse
from canopy_svc.api.routing import Endpoint
from canopy_svc.api.writes import write
from canopy_svc.core.dbtypes import Conn
from canopy_svc.loanpro import face, mapping
from canopy_svc.rules import customers
from canopy_svc.rules import loanpro as rules
from canopy_svc.wire import loanpro as lp
from canopy_svc.wire.errors import ApiError, DuplicateCustomer, InvalidInput

DEFAULT_PAGE_SIZE = 50  # LoanPro's OData default (LOANPRO.md section 3)
CUSTOMERS = f"{lp.ODATA}/Customers"
ONE = f"{CUSTOMERS}({{loanpro_id}})"


def _canopy_create(mapped: mapping.Mapped) -> Any:
    try:
        return customers.parse_create(msgspec.json.encode(mapped.canopy))
    except InvalidInput as error:
        raise face.translated(error) from None


def parse_create(body: bytes) -> tuple[mapping.Mapped, Any]:
    """Checked before a connection is taken (api/writes.py): LoanPro's mapping, then Canopy's rules."""
    mapped = mapping.from_loanpro(mapping.document(body), creating=True)
    return mapped, _canopy_create(mapped)


def _shown(shown: rules.LoanProCustomer, expand: set[str]) -> dict[str, Any]:
    return mapping.customer_out(shown.customer, shown.loanpro_id, shown.entities, expand, shown.accounts)


async def _answer(conn: Conn, org_id: int, shown: rules.LoanProCustomer, expand: set[str]) -> dict[str, Any]:
    answer: dict[str, Any] = {"d": _shown(shown, expand)}
    if shown.customer.warnings:  # the `warn` policy: told beside `d`, the customer made
        answer["warnings"] = await face.warning_texts(conn, org_id, list(shown.customer.warnings))
    return answer


@face.loanpro_route
async def create_customer(request: Request) -> Response:
    org_id, data_cipher = principal(request).org_id, cipher(request)

    async def work(conn: Conn, parsed: tuple[mapping.Mapped, Any]) -> dict[str, Any]:
        mapped, payload = parsed
        try:
            created = await rules.create(conn, org_id, payload, mapped.nested, data_cipher, waived=mapped.waived)
        except DuplicateCustomer as error:
            raise await face.duplicates_refused(conn, org_id, error) from None
        except ApiError as error:  # in LoanPro's shape here, so that an Idempotency-Key keeps that one
            raise face.translated(error) from None
        return await _answer(conn, org_id, created, set())

    return await write(request, parse_create, work)


@face.loanpro_route
async def update_customer(request: Request) -> Response:
    org_id, data_cipher, loanpro_id = principal(request).org_id, cipher(request), face.path_id(request)

    async def work(conn: Conn, doc: dict[str, Any]) -> dict[str, Any]:
        customer_id = await rules.customer_id_of(conn, org_id, loanpro_id)
        if customer_id is None:
            raise lp.not_found("Customer not found")
        stored = await rules.read(conn, org_id, customer_id, data_cipher)
        extra = dict(stored.entities.get("PrimaryPhone", [(0, {})])[0][1])
        current = mapping.Current(loanpro_id, stored.customer.phone_number, extra)
        mapped = mapping.from_loanpro(doc, creating=False, current=current)
        try:
            patch = customers.parse_update(msgspec.json.encode(mapped.canopy))
            updated = await rules.update(
                conn, org_id, customer_id, patch, mapped.nested, data_cipher, waived=mapped.waived
            )
        except DuplicateCustomer as error:
            raise await face.duplicates_refused(conn, org_id, error) from None
        except rules.NestedRefused as refused:
            raise lp.invalid(str(refused)) from None
        except ApiError as error:
            raise face.translated(error) from None
        return await _answer(conn, org_id, updated, set())

    return await write(request, mapping.document, work)


@face.loanpro_route
async def delete_customer(request: Request) -> Response:
    """A soft delete, refused while the customer is on an account (LoanPro: "only if not linked to any loan")."""
    org_id, loanpro_id = principal(request).org_id, face.path_id(request)

    async def work(conn: Conn, _: bytes) -> dict[str, Any]:
        outcome = await rules.soft_delete(conn, org_id, loanpro_id)
        if outcome == "missing":
            raise lp.not_found("Customer not found")
        if outcome == "linked":
            raise lp.invalid("The customer is linked to an account and cannot be deleted")
        return {"d": {"success": True}}

    return await write(request, lambda body: body, work, bodyless=True)


async def _read(request: Request) -> rules.LoanProCustomer:
    org_id, loanpro_id = principal(request).org_id, face.path_id(request)
    customer_id = await rules.customer_id_of(pool(request), org_id, loanpro_id)
    if customer_id is None:
        raise lp.not_found("Customer not found")
    return await rules.read(pool(request), org_id, customer_id, cipher(request))


@face.loanpro_route
async def get_customer(request: Request) -> Response:
    expand = face.expansions(request)
    shown = await _read(request)
    return JSONResponse({"d": _shown(shown, expand)})


@face.loanpro_route
async def get_navigation(request: Request) -> Response:
    """`Customers(id)/Phones` and the like: the navigation as `$expand` would show it, under `d`."""
    navigation = request.path_params["navigation"]
    if navigation not in mapping.ALL_NAVS:
        raise lp.not_found("Resource not found")
    shown = await _read(request)
    expand = {navigation, *(f"{navigation}/{inner}" for inner in mapping.INNER_NAVS.get(navigation, ()))}
    whole = _shown(shown, expand)
    return JSONResponse({"d": whole[navigation]})


def _count(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise lp.invalid(f"{name} must be a non-negative integer")
    return int(raw)


@face.loanpro_route
async def list_customers(request: Request) -> Response:
    """`$top` (default 50), `$skip`, `nopaging` (no cap; `summary.pageSize` stays what it was)."""
    expand = face.expansions(request)
    top, skip = _count(request, "$top", DEFAULT_PAGE_SIZE), _count(request, "$skip", 0)
    nopaging = request.query_params.get("nopaging", "false").lower() not in ("false", "0")
    org_id, data_cipher = principal(request).org_id, cipher(request)
    shown, total = await rules.page(
        pool(request), org_id, offset=skip, limit=None if nopaging else top, cipher=data_cipher
    )
    if expand:  # nested entities: one read per customer shown
        results = []
        for customer, _ in shown:
            one = await rules.read(pool(request), org_id, customer.customer_id, data_cipher)
            results.append(_shown(one, expand))
    else:
        results = [mapping.customer_out(customer, loanpro_id, {}, set()) for customer, loanpro_id in shown]
    summary = {"start": skip, "pageSize": top, "total": total}
    return JSONResponse({"d": {"results": results, "summary": summary}})


SEARCH_PAGE_SIZE = 10  # LoanPro's search default (LOANPRO.md section 3)
# The keys of a search query that are options, not text searched.
_QUERY_OPTIONS = frozenset({"fields", "default_operator", "analyze_wildcard", "type", "boost", "operator"})


def _query_text(value: Any, key: str = "") -> list[str]:
    """Every text an Elasticsearch-style `query` holds (query_string.query, match values, ...)."""
    if key in _QUERY_OPTIONS:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for k, v in value.items() for text in _query_text(v, k)]
    if isinstance(value, list):
        return [text for v in value for text in _query_text(v, key)]
    return []


def parse_search(body: bytes) -> list[str]:
    doc = mapping.document(body) if body.strip() else {}
    try:
        return customers.search_words(" ".join(_query_text(doc.get("query", {}))))
    except ApiError:
        raise lp.invalid(f"query may have at most {customers.MAX_SEARCH_WORDS} words") from None


def search_document(customer: Any, loanpro_id: int) -> dict[str, Any]:
    """A search hit, flat as LoanPro's index documents are."""
    return {
        "id": loanpro_id,
        "customId": customer.customer_id,
        "customerType": lp.CUSTOMER_TYPE_OUT[customer.customer_type],
        "customerName": " ".join(filter(None, (customer.name_first, customer.name_middle, customer.name_last))),
        "firstName": customer.name_first,
        "lastName": customer.name_last,
        "companyName": customer.business_details.doing_business_as if customer.business_details else None,
        "email": customer.email,
        "primaryPhone": mapping.phone_out(customer.phone_number),
        "ssn": lp.mask_ssn(customer.ssn),
        "birthDate": lp.date_out(customer.date_of_birth),
        "created": lp.date_out(customer.created_at),
    }


@face.loanpro_route
async def search_customers(request: Request) -> Response:
    """`Customers/Autopal.Search()`: the words of the body's `query` matched as the Canopy search
    matches them (each at the start of a name), `$top` (default 10) from `$start`."""
    words = parse_search(await read_json_body(request))
    top, start = _count(request, "$top", SEARCH_PAGE_SIZE), _count(request, "$start", 0)
    found, total = await rules.search(
        pool(request), principal(request).org_id, words, offset=start, limit=top, cipher=cipher(request)
    )
    results = [search_document(customer, loanpro_id) for customer, loanpro_id in found]
    return JSONResponse({"d": {"results": results, "summary": {"start": start, "pageSize": top, "total": total}}})


_ERRORS = (401, 404, 409, 429, 500, 503)
_EXPAND = {
    "$expand": {
        "type": "string",
        "description": "Comma list of navigations, nested paths with / (e.g. PrimaryAddress,Phones,Employer/Address)",
    }
}


def _declared(endpoint: Endpoint) -> Endpoint:
    """Every LoanPro route: its errors in LoanPro's shape, and the instance id it requires."""
    return dataclasses.replace(endpoint, error_body=lp.LoanProErrorBody, headers=("Autopal-Instance-ID",))


endpoints = [
    Endpoint(
        "POST",
        CUSTOMERS,
        create_customer,
        "LoanPro: create a customer",
        lp.CustomerEnvelope,
        lp.CustomerIn,
        errors=_ERRORS,
    ),
    Endpoint(
        "GET",
        CUSTOMERS,
        list_customers,
        "LoanPro: list customers, oldest first ($top, $skip, nopaging)",
        lp.CustomerListEnvelope,
        query={
            "type": "object",
            "properties": {
                **_EXPAND,
                "$top": {"type": "integer", "minimum": 0, "default": DEFAULT_PAGE_SIZE},
                "$skip": {"type": "integer", "minimum": 0, "default": 0},
                "nopaging": {"type": "boolean"},
            },
        },
        errors=_ERRORS,
    ),
    Endpoint(
        "GET",
        ONE,
        get_customer,
        "LoanPro: get a customer",
        lp.CustomerEnvelope,
        query={"type": "object", "properties": _EXPAND},
        errors=_ERRORS,
    ),
    Endpoint(
        "PUT",
        ONE,
        update_customer,
        "LoanPro: update a customer and its nested entities (__id with __update or __destroy)",
        lp.CustomerEnvelope,
        lp.CustomerIn,
        errors=_ERRORS,
    ),
    Endpoint(
        "POST",
        f"{lp.PREFIX}/Customers/Autopal.Search()",
        search_customers,
        "LoanPro: search customers (the words of `query`, each at the start of a name; $top, $start)",
        lp.SearchEnvelope,
        lp.SearchIn,
        query={
            "type": "object",
            "properties": {
                "$top": {"type": "integer", "minimum": 0, "default": SEARCH_PAGE_SIZE},
                "$start": {"type": "integer", "minimum": 0, "default": 0},
            },
        },
        errors=_ERRORS,
    ),
    Endpoint(
        "DELETE",
        ONE,
        delete_customer,
        "LoanPro: delete a customer (soft; refused while it is on an account)",
        lp.SuccessEnvelope,
        errors=_ERRORS,
    ),
    Endpoint(
        "GET",
        f"{ONE}/{{navigation}}",
        get_navigation,
        "LoanPro: one navigation of a customer (Phones, PrimaryAddress, Employer, ...)",
        lp.NavigationEnvelope,
        errors=_ERRORS,
    ),
]
endpoints = [_declared(endpoint) for endpoint in endpoints]
