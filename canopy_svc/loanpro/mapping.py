"""LoanPro's customer <-> the Canopy customer: one customer, two faces.

The values both faces show live in the Canopy columns: names, email, birth date, SSN, the primary
address (PrimaryAddress) and the primary phone (in E.164 there, LoanPro's 10 digits here),
generationCode as name_suffix, a company's name and EIN as business_details. What only LoanPro has
(status, gender, the phone's type, MailAddress, Employer, ...) is kept in loanpro_entities, encrypted.
The primary phone and PrimaryAddress have the customer's own LoanPro id as theirs.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import msgspec

from canopy_svc.rules.loanpro import COLLECTIONS, SINGLE, Account, NestedWrite
from canopy_svc.wire import loanpro as lp
from canopy_svc.wire.errors import ErrorDetail
from canopy_svc.wire.models import Customer

# The customer's own fields kept beside the Canopy columns (nav "Customer"); accessPassword is
# write-only in LoanPro (null on read) and is not kept at all.
EXTRA_FIELDS = (
    "status", "gender", "customerIdType", "driverLicense", "contactName", "accessUserName", "creditLimit", "mcId",
)  # fmt: skip
CANOPY_FIELDS = {
    "firstName": "name_first", "lastName": "name_last", "middleName": "name_middle", "email": "email",
    "customId": "customer_id",
}  # fmt: skip
# Where a Canopy field's problem is told, in LoanPro's names.
LOANPRO_NAMES = {
    "name_first": "firstName", "name_last": "lastName", "name_middle": "middleName", "name_suffix": "generationCode",
    "email": "email", "date_of_birth": "birthDate", "ssn": "ssn", "customer_id": "customId",
    "phone_number": "(Phones) phone", "address_line_one": "(PrimaryAddress) address1",
    "address_line_two": "(PrimaryAddress) address2", "address_city": "(PrimaryAddress) city",
    "address_state": "(PrimaryAddress) state", "address_zip": "(PrimaryAddress) zipcode",
    "address_country_code": "(PrimaryAddress) country", "business_details": "companyName",
}  # fmt: skip
ALL_NAVS = (
    "PrimaryAddress", "MailAddress", "Employer", "References", "PaymentAccounts", "Phones", "CustomFieldValues",
    "Documents", "CreditScore", "Loans", "LineOfCredits", "SocialProfiles", "Notes",
)  # fmt: skip
NAV_TYPES = {
    "PrimaryAddress": "Entity.Address", "MailAddress": "Entity.Address", "Employer": "Entity.Employer",
    "References": "Entity.Reference", "PaymentAccounts": "Entity.PaymentAccount", "Phones": "Entity.Phone",
    "CreditScore": "Entity.CreditScore",
}  # fmt: skip
ENTITY_SETS = {
    "PrimaryAddress": "Address", "MailAddress": "Address", "Employer": "Employers", "References": "References",
    "PaymentAccounts": "PaymentAccounts", "Phones": "Phones", "CreditScore": "CreditScores",
}  # fmt: skip
# Nested navigations inside a nested item, deferred unless expanded (`Employer/Address`).
INNER_NAVS = {
    "Employer": ("Address",),
    "References": ("Address",),
    "PaymentAccounts": ("CheckingAccount", "CreditCard"),
}
# A payment account holds processor tokens only (Secure Payments'): never a card or account number.
TOKEN_ONLY = {"CheckingAccount": {"accountType", "token"}, "CreditCard": {"token", "cardType"}}
DATE_FIELDS = frozenset({"hireDate", "payDate"})
_TEN_DIGITS = re.compile(r"^[0-9]{10}$")
_CONTROL_KEYS = frozenset({"__id", "__update", "__destroy", "__ignoreWarnings", "__delete"})
_UI_KEYS = frozenset({"delete", "_index", "__isDirty", "__lookupInProgress", "__metadata"})


def document(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or LoanPro's 409."""
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise lp.invalid("The body is not valid JSON") from None
    if not isinstance(value, dict):
        raise lp.invalid("The body must be a JSON object")
    return value


def _truthy(value: object) -> bool:
    return value in (True, 1, "1", "true")


def _flag(value: object) -> int:
    return 1 if _truthy(value) else 0


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """An item's own fields: without LoanPro's control keys and the UI's."""
    return {k: v for k, v in item.items() if k not in _CONTROL_KEYS and k not in _UI_KEYS}


def _object(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise lp.invalid(f"{name} must be an object")
    return value


def _results(doc: dict[str, Any], name: str) -> list[dict[str, Any]] | None:
    value = doc.get(name)
    if value is None:
        return None
    items = value.get("results") if isinstance(value, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise lp.invalid(f'{name} must be {{"results": [objects]}}')
    return items


def phone_in(value: object, where: str = "(Phones) phone") -> str:
    """LoanPro's 10 digits as E.164 (a +1 number); an E.164 number as it is."""
    if isinstance(value, str) and _TEN_DIGITS.match(value):
        return "+1" + value
    if isinstance(value, str) and value.startswith("+"):
        return value
    raise lp.invalid(f"{where} must be 10 digits")


def phone_out(e164: str) -> str:
    return e164[2:] if e164.startswith("+1") and len(e164) == 12 else e164


def _address_in(address: dict[str, Any], name: str) -> dict[str, Any]:
    """PrimaryAddress as Canopy's address fields (LoanPro requires country, state, city, address1)."""
    for required in ("address1", "city", "state", "country"):
        if not address.get(required):
            raise lp.invalid(f"({name}) {required} is required")
    country, state = address["country"], address["state"]
    if not isinstance(country, str) or country.removeprefix("company.country.") not in lp.COUNTRIES:
        raise lp.invalid(f"({name}) country must be one of " + ", ".join(lp.COUNTRY_OUT.values()))
    if not isinstance(state, str) or not state.startswith(lp.STATE_PREFIX):
        raise lp.invalid(f"({name}) state must be geo.state.<code>")
    return {
        "address_line_one": address["address1"],
        "address_line_two": address.get("address2") or None,
        "address_city": address["city"],
        "address_state": state.removeprefix(lp.STATE_PREFIX),
        "address_zip": address.get("zipcode"),
        "address_country_code": lp.COUNTRIES[country.removeprefix("company.country.")],
    }


_ADDRESS_KEYS = frozenset({"address1", "address2", "city", "state", "zipcode", "country"})


def _scalars_in(doc: dict[str, Any], canopy: dict[str, Any], creating: bool) -> None:
    for theirs, ours in CANOPY_FIELDS.items():
        if theirs in doc:
            canopy[ours] = doc[theirs]
    if "birthDate" in doc:
        birth = lp.date_in(doc["birthDate"])
        if birth is None:
            raise lp.invalid("birthDate must be YYYY-MM-DD")
        canopy["date_of_birth"] = birth
    if "ssn" in doc:
        canopy["ssn"] = doc["ssn"] or None
    if "generationCode" in doc:
        if not isinstance(doc["generationCode"], str) or doc["generationCode"] not in lp.GENERATION_CODES:
            raise lp.invalid("generationCode must be one of " + ", ".join(lp.GENERATION_CODES))
        canopy["name_suffix"] = lp.GENERATION_CODES[doc["generationCode"]]
    kind = doc.get("customerType", "customer.type.individual" if creating else None)
    if kind is not None:
        if not isinstance(kind, str) or kind not in lp.CUSTOMER_TYPES:
            raise lp.invalid("customerType must be one of " + ", ".join(lp.CUSTOMER_TYPES))
        canopy["customer_type"] = lp.CUSTOMER_TYPES[kind]
        if kind == "customer.type.company":
            # Canopy's business needs a name and an EIN: LoanPro's companyName and customerId.
            canopy["business_details"] = {
                "doing_business_as": doc.get("companyName"),
                "business_legal_name": doc.get("companyName"),
                "business_ein": doc.get("customerId"),
            }
        elif not creating:
            canopy["business_details"] = None


def _payment_account(item: dict[str, Any]) -> None:
    for name, allowed in TOKEN_ONLY.items():
        inner = item.get(name)
        if inner is None:
            continue
        if not isinstance(inner, dict) or set(inner) - allowed - _CONTROL_KEYS:
            raise lp.invalid(f"(PaymentAccounts) {name} holds a processor token only: " + ", ".join(sorted(allowed)))


class Mapped(msgspec.Struct):
    canopy: dict[str, Any]
    nested: list[NestedWrite]
    waived: frozenset[str]


class Current(msgspec.Struct):
    """What an update's mapping needs of the stored customer: its primary phone, and its id."""

    loanpro_id: int
    phone: str
    phone_extra: dict[str, Any]


def from_loanpro(doc: dict[str, Any], *, creating: bool, current: Current | None = None) -> Mapped:
    """A LoanPro body as a Canopy body (checked by the Canopy rules next) and the nested writes."""
    canopy: dict[str, Any] = {}
    nested: list[NestedWrite] = []
    waived: set[str] = set()
    if _truthy(doc.get("__ignoreWarnings")):
        canopy["__ignoreWarnings"] = True
    _scalars_in(doc, canopy, creating)
    extra = {name: doc[name] for name in EXTRA_FIELDS if name in doc}
    if extra:
        nested.append(NestedWrite("Customer", "replace", fields=extra))
    address = _object(doc, "PrimaryAddress")
    if address is not None:
        canopy |= _address_in(address, "PrimaryAddress")
        if _truthy(address.get("__ignoreWarnings")):
            waived.add("address")
        nested.append(NestedWrite("PrimaryAddress", "replace", fields=_plain(address)))
    elif creating:
        raise lp.invalid("PrimaryAddress is required")
    _phones_in(doc, canopy, nested, waived, current)
    for nav in sorted(SINGLE - {"Customer", "PrimaryAddress", "PrimaryPhone"}):
        value = _object(doc, nav)
        if value is None:
            continue
        if nav == "MailAddress":
            _address_in(value, nav)  # checked as PrimaryAddress is, kept as LoanPro sent it
            if _truthy(value.get("__ignoreWarnings")):
                waived.add("mail_address")
        if _truthy(value.get("__destroy")):
            nested.append(NestedWrite(nav, "destroy"))
        else:
            nested.append(NestedWrite(nav, "replace", fields=_plain(value)))
    for nav in sorted(COLLECTIONS - {"Phones"}):
        for item in _results(doc, nav) or []:
            if nav == "PaymentAccounts":
                _payment_account(item)
            nested.append(_item_write(nav, item))
    return Mapped(canopy, nested, frozenset(waived))


def _item_write(nav: str, item: dict[str, Any]) -> NestedWrite:
    item_id = item.get("__id")
    if item_id is None:
        return NestedWrite(nav, "add", fields=_plain(item))
    if not isinstance(item_id, int) or isinstance(item_id, bool):
        raise lp.invalid(f"({nav}) __id must be an integer")
    if _truthy(item.get("__destroy")) or _truthy(item.get("__delete")):
        return NestedWrite(nav, "destroy", item_id)
    if _truthy(item.get("__update")):
        return NestedWrite(nav, "update", item_id, _plain(item))
    raise lp.invalid(f"({nav}) an item with __id needs __update or __destroy")


def _phones_in(
    doc: dict[str, Any],
    canopy: dict[str, Any],
    nested: list[NestedWrite],
    waived: set[str],
    current: Current | None,
) -> None:
    """The primary phone is Canopy's phone_number (its other fields: nav PrimaryPhone); the others are
    kept as Phones items. On create the primary is the one marked isPrimary, else the first."""
    creating, primary_id = current is None, None if current is None else current.loanpro_id
    items = _results(doc, "Phones")
    if items is None:
        if creating:
            raise lp.invalid("Phones is required: at least one phone")
        return
    if creating:
        if not items:
            raise lp.invalid("Phones is required: at least one phone")
        marked = [item for item in items if _truthy(item.get("isPrimary"))]
        primary: dict[str, Any] | None = (marked or items)[0]
    else:
        primary = next((item for item in items if item.get("__id") is None and _truthy(item.get("isPrimary"))), None)
        if primary is not None and current is not None:  # a new primary: the old one stays as another phone
            demoted = current.phone_extra | {"phone": phone_out(current.phone), "isPrimary": 0}
            nested.append(NestedWrite("Phones", "add", fields=demoted))
    for item in items:
        if item is primary or (item.get("__id") == primary_id and primary_id is not None):
            if _truthy(item.get("__destroy")):
                raise lp.invalid("(Phones) The primary phone cannot be removed: add another with isPrimary 1 first")
            if "phone" in item or creating:
                canopy["phone_number"] = phone_in(item.get("phone"))
            if _truthy(item.get("__ignoreWarnings")):
                waived.add("phone_number")
            fields = {k: v for k, v in _plain(item).items() if k != "phone"}
            nested.append(NestedWrite("PrimaryPhone", "replace", fields=fields | {"isPrimary": 1}))
            continue
        if "phone" in item:
            phone_in(item["phone"])
        if _truthy(item.get("__ignoreWarnings")):
            waived.add("phones")  # an other phone's warnings, waived on the phone itself
        if item.get("__id") is not None and "isPrimary" in item and _truthy(item["isPrimary"]):
            raise lp.invalid("(Phones) To change the primary phone, add it without __id and with isPrimary 1")
        write = _item_write("Phones", item)
        if write.op != "destroy":
            write = NestedWrite("Phones", write.op, write.item_id, write.fields | {"isPrimary": 0})
        nested.append(write)


def problems_message(details: list[ErrorDetail]) -> str:
    """Canopy's validation details in LoanPro's names, as one message."""
    parts = []
    for problem in details:
        field = problem.instancePath.lstrip("/").split("/", 1)[0] or str(problem.params.get("missingProperty", ""))
        parts.append(f"{LOANPRO_NAMES.get(field, field)}: {problem.message}")
    return "; ".join(parts) or "Invalid input"


# --- out --------------------------------------------------------------------------------------------


def _metadata(entity_set: str, item_id: int, kind: str) -> dict[str, str]:
    return {"uri": f"{lp.URI_BASE}{entity_set}(id={item_id})", "type": kind}


def _deferred(uri: str) -> dict[str, Any]:
    return {"__deferred": {"uri": uri}}


def _nested_out(nav: str, item_id: int, fields: dict[str, Any], expand: set[str], base: str) -> dict[str, Any]:
    out: dict[str, Any] = {"__metadata": _metadata(ENTITY_SETS[nav], item_id, NAV_TYPES[nav])}
    inner = INNER_NAVS.get(nav, ())
    for name in inner:
        if f"{nav}/{name}" in expand and isinstance(fields.get(name), dict):
            value = {k: v for k, v in fields[name].items() if k != "token"}  # a processor token is not shown
            out[name] = value
        else:
            out[name] = _deferred(f"{ENTITY_SETS[nav]}(id={item_id})/{name}")
    out["id"] = item_id
    for key, value in fields.items():
        if key in inner:
            continue
        out[key] = lp.date_out(_iso_date(value)) if key in DATE_FIELDS and isinstance(value, str) else value
    return out


def _iso_date(value: str) -> datetime.date | None:
    text = lp.date_in(value)
    return datetime.date.fromisoformat(text) if text else None


def primary_address_out(customer: Customer, loanpro_id: int, extra: dict[str, Any]) -> dict[str, Any]:
    fields = extra | {
        "address1": customer.address_line_one,
        "address2": customer.address_line_two,
        "city": customer.address_city,
        "state": lp.STATE_PREFIX + customer.address_state,
        "zipcode": customer.address_zip,
        "country": lp.COUNTRY_OUT.get(customer.address_country_code or "US", customer.address_country_code),
    }
    return _nested_out("PrimaryAddress", loanpro_id, fields, set(), "")


def phones_out(
    customer: Customer, loanpro_id: int, primary_extra: dict[str, Any], others: list[tuple[int, dict[str, Any]]]
) -> list[dict[str, Any]]:
    base = {"type": "customer.phoneType.cell", "isSecondary": 0, "entityType": "Entity.Customer", "active": 1}
    primary = base | primary_extra | {"phone": phone_out(customer.phone_number), "isPrimary": 1}
    shown = [_nested_out("Phones", loanpro_id, primary | {"entityId": loanpro_id}, set(), "")]
    for item_id, fields in others:
        shown.append(_nested_out("Phones", item_id, base | fields | {"entityId": loanpro_id}, set(), ""))
    return shown


def customer_out(
    customer: Customer,
    loanpro_id: int,
    entities: dict[str, list[tuple[int, dict[str, Any]]]],
    expand: set[str],
    on_accounts: list[Account] | None = None,
) -> dict[str, Any]:
    """Entity.Customer in LoanPro's key order: navigations first (deferred unless expanded), then scalars."""
    own = f"Customers(id={loanpro_id})"
    accounts = accounts_out(on_accounts or [])
    single = {nav: items[0][1] for nav, items in entities.items() if nav in SINGLE and items}
    out: dict[str, Any] = {"__metadata": {"uri": f"{lp.URI_BASE}{own}", "type": "Entity.Customer"}}
    for nav in ALL_NAVS:
        if nav not in expand:
            out[nav] = _deferred(f"{own}/{nav}")
        elif nav == "PrimaryAddress":
            out[nav] = primary_address_out(customer, loanpro_id, single.get("PrimaryAddress", {}))
        elif nav == "Phones":
            shown = phones_out(customer, loanpro_id, single.get("PrimaryPhone", {}), entities.get("Phones", []))
            out[nav] = {"results": shown}
        elif nav in SINGLE:
            items = entities.get(nav, [])
            out[nav] = _nested_out(nav, items[0][0], items[0][1], expand, own) if items else None
        elif nav in COLLECTIONS:
            out[nav] = {"results": [_nested_out(nav, i, f, expand, own) for i, f in entities.get(nav, [])]}
        elif nav in accounts:
            out[nav] = {"results": accounts[nav]}
        else:  # kept nowhere by this service: always empty
            out[nav] = {"results": []}
    extra = single.get("Customer", {})
    business = customer.business_details
    suffix = (customer.name_suffix or "").lower()
    out |= {
        "id": loanpro_id,
        "customId": customer.customer_id,
        "customerType": lp.CUSTOMER_TYPE_OUT[customer.customer_type],
        "status": extra.get("status", "Active"),
        "firstName": customer.name_first,
        "lastName": customer.name_last,
        "middleName": customer.name_middle,
        "birthDate": lp.date_out(customer.date_of_birth),
        "gender": extra.get("gender", "customer.gender.unknown"),
        # A suffix Canopy holds that LoanPro has no code for is answered as none (the Canopy face shows it).
        "generationCode": lp.GENERATION_CODE_OUT.get(suffix, "customer.generationCode.none"),
        "email": customer.email,
        "ssn": lp.mask_ssn(customer.ssn),
        "driverLicense": extra.get("driverLicense"),
        "companyName": business.doing_business_as if business else None,
        "contactName": extra.get("contactName"),
        "customerIdType": extra.get(
            "customerIdType", "customer.idType.employerNumber" if business else "customer.idType.ssn"
        ),
        "customerId": business.business_ein if business else None,
        "creditLimit": extra.get("creditLimit", 0),
        "accessUserName": extra.get("accessUserName"),
        "accessPassword": None,
        "active": 1,
        "created": lp.date_out(customer.created_at),
        "lastUpdate": lp.date_out(customer.updated_at),
    }
    return out


_ACCOUNT_STATUS = {"ACTIVE": "Active", "SUSPENDED": "Suspended", "CLOSED": "Closed"}


def accounts_out(accounts: list[Account]) -> dict[str, list[dict[str, Any]]]:
    """Seed 002's portal calls: REVOLVING products' accounts as LineOfCredits, the others as Loans. Their
    ids, display ids (Canopy's account_id), product and status; no ledger figures, which are kept nowhere."""
    shown: dict[str, list[dict[str, Any]]] = {"Loans": [], "LineOfCredits": []}
    for account in accounts:
        nav, entity = ("LineOfCredits", "LineOfCredit") if account.product_type == "REVOLVING" else ("Loans", "Loan")
        shown[nav].append(
            {
                "__metadata": _metadata(nav, account.loanpro_id, f"Entity.{entity}"),
                "id": account.loanpro_id,
                "displayId": account.account_id,
                "title": account.product_name,
                "productType": account.product_type,
                "statusText": _ACCOUNT_STATUS.get(account.status, account.status),
                "active": 0 if account.status == "CLOSED" else 1,
                "loanRole": f"loan.customerRole.{account.role.lower()}",
                "created": lp.date_out(account.created_at),
            }
        )
    return shown
