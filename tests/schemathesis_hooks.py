"""What /openapi.json cannot say, for schemathesis (schemathesis.toml loads this; so does
tests/test_schemathesis.py). Everything else the server enforces is in the document itself.

Three rules depend on something no JSON Schema can see. A schema-valid request refused for one of them
is not a disagreement between the document and the server, so that refusal, and only it, is dropped:

- A paging cursor is valid only from the listing that issued it: an HMAC binds the organization, the
  listing and the position (rules/cursors.py). The document states its shape; a generated cursor of
  that shape is a forged one, which the contract answers with 400.
- An assignment list names no account (customer) twice. JSON Schema's uniqueItems compares whole items,
  so two items with one id and different roles satisfy it: the server still refuses them (422).
- An update is checked merged with the stored customer: without address_country_code in the body the
  stored country decides the zip and state rules, and a new country is checked against the stored zip
  and state. The document states what holds for every customer.

A stateful sequence that creates a customer and then updates it with an assignment to an account that
does not exist gets the contract's 404 for the referenced id ("No account found ..."): schemathesis reads
any 404 after a create as the created resource gone (ST302). That 404, naming an id the body references,
and only it, is dropped too; a 404 for the customer itself is still a failure.

And one outside the server: with an organization's Lithic key set (a generated PUT
/organization/issuer_processors does that), a card is changed at Lithic, and when Lithic cannot be reached
the contract's answer is 503 `unavailable` with Retry-After (tests/test_schemathesis.py has no network to
Lithic at all: its app issues cards with the simulator).

A card request is checked against what the body does not hold: the link's stored card type (when
the body names none) and, for a PHYSICAL card sent to its customer, the customer's name and state;
and a shipping address's first_name and last_name together (Lithic prints 25 characters), which no
JSON Schema can sum. Those refusals (`_card_rule_unseen`) are dropped too.
And one the server enforces in a way ECMA-262 patterns cannot spell: `search_parameters` has at most
ten words, counted as runs of Unicode letters and digits after lower-casing (400).

One generated request is none a client can send: a listing's query is one form-exploded object
(`?limit=5&starting_after=...`, the only way OpenAPI can say the cursors exclude each other), whose name
never travels; made a non-object, it goes out as an unknown `listing=` parameter, which the server ignores
as it ignores every unknown one. Such cases are not generated.
"""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis
from schemathesis.core.failures import ServerError
from schemathesis.openapi.checks import EnsureResourceAvailability, RejectedPositiveData

LISTINGS = {
    "/customers",
    "/customers/accounts",
    "/customers/{customer_id}/accounts",
    "/products",
    "/accounts",
    "/organization/subscriptions",
    "/events",
    "/customers/{customer_id}/beneficial_owners",
}
_STATE_UNSEEN_400 = re.compile(r"Invalid (starting_after|ending_before) cursor|search_parameters may have at most")
_ASSIGNMENT_LISTS = {"/assign_to_accounts": "account_id", "/assign_customers": "customer_id"}
_ADDRESS = {"/address_zip", "/address_state"}
CARDS = "/accounts/{account_id}/customers/{customer_id}/cards"
_REFERENCED_404 = re.compile(
    r"No (account|customer|product) found with the provided (?:account|customer|product)_id: (.*)", re.DOTALL
)


def _error(response: Any) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except (ValueError, TypeError):
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _only_id_duplicates(details: list[dict[str, Any]], body: Any) -> bool:
    """Every detail is a uniqueItems one, about a list whose items repeat an id without being equal."""
    for item in details:
        key = _ASSIGNMENT_LISTS.get(item.get("instancePath", ""))
        if item.get("keyword") != "uniqueItems" or key is None or not isinstance(body, dict):
            return False
        items = body.get(item["instancePath"][1:])
        i, j = item.get("params", {}).get("i"), item.get("params", {}).get("j")
        if not (isinstance(items, list) and isinstance(i, int) and isinstance(j, int) and max(i, j) < len(items)):
            return False
        first, second = items[i], items[j]
        if not (isinstance(first, dict) and isinstance(second, dict) and first.get(key) == second.get(key)):
            return False
        if json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True):
            return False  # equal items: the document's uniqueItems refuses them too
    return bool(details)


@schemathesis.hook
def filter_query(context: Any, query: Any) -> bool:
    return not (isinstance(query, dict) and "listing" in query and not isinstance(query["listing"], dict))


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """False (drop) for a refusal for one of the reasons above; True for anything else."""
    error = _error(response)
    if isinstance(failure, EnsureResourceAvailability):
        return not (response.status_code == 404 and _names_a_referenced_id(error, case.body))
    if isinstance(failure, ServerError):
        return not (case.operation.path == CARDS and response.status_code == 503 and error.get("code") == "unavailable")
    if not isinstance(failure, RejectedPositiveData):
        return True
    path, method = case.operation.path, case.method.upper()
    if response.status_code == 400 and method == "GET" and path in LISTINGS:
        return not _STATE_UNSEEN_400.match(str(error.get("message", "")))
    if response.status_code != 422 or error.get("code") != "invalid_input":
        return True
    details = [d for d in error.get("details", []) if isinstance(d, dict)]
    if _only_id_duplicates(details, case.body):
        return False
    if details and all(_card_rule_unseen(d, case.body) for d in details):
        return False
    if method in {"PUT", "PATCH"} and path == "/customers/{customer_id}":
        return not (details and all(_stored_customer_decides(d, case.body) for d in details))
    return True


def _card_rule_unseen(detail: dict[str, Any], body: Any) -> bool:
    """A card request refused for what no schema of the body can see (rules/card_requests.py): a
    shipping name over the 25 characters Lithic prints (first_name and last_name together), a PHYSICAL
    card whose customer's name or state does not fit Lithic's address, or a PHYSICAL-only field on a card
    whose type, absent from the body, is its link's stored type."""
    params = detail.get("params") or {}
    if detail.get("keyword") == "maxLength" and params.get("combinedWith") == "first_name":
        return True
    if detail.get("keyword") == "required" and params.get("missingProperty") == "shipping_address":
        return True
    if detail.get("keyword") != "not" or not str(detail.get("instancePath", "")).endswith(_PHYSICAL_ONLY):
        return False
    lithic = _at_pointer(body, str(detail["instancePath"]).rsplit("/", 1)[0])
    return isinstance(lithic, dict) and lithic.get("type") is None


_PHYSICAL_ONLY = ("/shipping_address", "/product_id", "/shipping_method")


def _at_pointer(document: Any, pointer: str) -> Any:
    for token in pointer.split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(document, list) and key.isdigit() and int(key) < len(document):
            document = document[int(key)]
        elif isinstance(document, dict) and key in document:
            document = document[key]
        else:
            return None
    return document


def _stored_customer_decides(detail: dict[str, Any], body: Any) -> bool:
    """A zip or state refusal no schema could foresee: the stored country decided it (the body has none),
    or the stored zip or state was checked against the body's new country (the body does not have it).
    With both in the body the document's if/then/else is the whole rule, so a refusal is a failure."""
    path = detail.get("instancePath")
    return path in _ADDRESS and isinstance(body, dict) and ("address_country_code" not in body or path[1:] not in body)


def _names_a_referenced_id(error: dict[str, Any], body: Any) -> bool:
    """A 404 whose message names an id the body refers to (an assignment's account or customer, a
    product), not the resource on the path."""
    found = _REFERENCED_404.fullmatch(str(error.get("message", "")))
    if error.get("code") != "not_found" or found is None or not isinstance(body, dict):
        return False
    kind, wanted = found.group(1), found.group(2)
    referenced = {body.get("product_id")} if kind == "product" else set()
    for list_name, key in _ASSIGNMENT_LISTS.items():
        items = body.get(list_name[1:])
        if key == f"{kind}_id" and isinstance(items, list):
            referenced |= {item.get(key) for item in items if isinstance(item, dict)}
    return wanted in {str(value) for value in referenced if value is not None}
