"""Unit tests of the field rules (rules/fields.py) and their checking (rules/validation.py), no HTTP.

Every rule of CONTRACT section 4 gets a good and a bad value; the 422 details are AJV-shaped.
"""

from __future__ import annotations

import datetime
import json
import random
import re
from typing import Any

import email_validator
import msgspec
import pytest

from canopy_svc.rules import validation
from canopy_svc.rules.validation import BodyDecoder, decode_customer, meaning_problems
from canopy_svc.wire import fields
from canopy_svc.wire.errors import BadRequest, InvalidInput
from canopy_svc.wire.models import CustomerCreate, CustomerUpdate
from tests.helpers import SEED_ASSIGNMENT, minimal_customer, seed_customer

CREATE = BodyDecoder(CustomerCreate)
UPDATE = BodyDecoder(CustomerUpdate)


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def create(body: dict[str, Any]) -> CustomerCreate:
    return decode_customer(encode(body), CREATE, with_meaning=True)


def problems(
    body: dict[str, Any], decoder: BodyDecoder[Any] = CREATE, *, with_meaning: bool = True
) -> list[dict[str, Any]]:
    """The 422 details for `body` as plain dicts, or [] when it is valid."""
    try:
        decode_customer(encode(body), decoder, with_meaning=with_meaning)
    except InvalidInput as exc:
        assert exc.status == 422 and exc.code == "invalid_input"
        return [msgspec.to_builtins(d) for d in exc.details]
    return []


def assert_valid(body: dict[str, Any]) -> None:
    assert problems(body) == []


def assert_refused(body: dict[str, Any], path: str, keyword: str | None = None) -> dict[str, Any]:
    found = problems(body)
    assert found, f"expected a problem at {path!r}, the body was accepted"
    at_path = [d for d in found if d["instancePath"] == path]
    assert at_path, f"no problem at {path!r}: {found}"
    if keyword is not None:
        assert at_path[0]["keyword"] == keyword, at_path
    return at_path[0]


def assignment(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"account_id": "acc_1"}
    item.update(overrides)
    return item


# --- the seed ------------------------------------------------------------------------------------


def test_seed_example_without_accounts_is_valid() -> None:
    payload = create(seed_customer())
    assert payload.customer_id == "0x1234"
    assert payload.date_of_birth == datetime.date(1985, 6, 20)
    assert payload.business_details is not None
    assert payload.business_details.business_legal_name == "Umbrella Corporation"
    assert payload.business_details.business_ein == "888-88-8888"
    assert payload.assign_to_accounts is None


def test_seed_example_with_its_accounts_is_valid() -> None:
    payload = create(seed_customer(assign_to_accounts=[SEED_ASSIGNMENT]))
    assert payload.assign_to_accounts is not None
    (item,) = payload.assign_to_accounts
    assert item.account_id == "31mNprzLd2bKl6koVna68ARM"
    assert item.customer_account_role == "PRIMARY"
    config = item.customer_account_issuer_processor_config
    assert config is not None and config.spend_limit == 8000000
    assert config.lithic is not None and config.lithic.type == "MERCHANT_LOCKED"


def test_minimal_body_is_valid_and_optional_fields_default_to_none() -> None:
    payload = create(minimal_customer())
    assert payload.customer_id is None
    assert payload.address_country_code is None
    assert payload.ssn is None
    assert payload.business_details is None


def test_unknown_fields_are_ignored() -> None:
    payload = create(minimal_customer(favourite_colour="green", nested={"a": [1, 2]}))
    assert payload.name_first == "Ada"
    assert not hasattr(payload, "favourite_colour")


# --- customer_id ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0x1234", "a", "x" * 255, "my_can_id", "CAN_upper", "émile-42", "a b"])
def test_customer_id_good(value: str) -> None:
    assert create(minimal_customer(customer_id=value)).customer_id == value


@pytest.mark.parametrize(
    ("value", "keyword"),
    [
        ("", "minLength"),
        ("x" * 256, "maxLength"),
        ("can_123", "pattern"),
        ("can_", "pattern"),
        ("abc\x00def", "pattern"),
        ("abc\tdef", "pattern"),
        ("abc\x7f", "pattern"),
        ("abc\n", "pattern"),  # Python's $ also matches before a final newline: must still be refused
        ("\nabc", "pattern"),
        (123, "type"),
    ],
)
def test_customer_id_bad(value: Any, keyword: str) -> None:
    assert_refused(minimal_customer(customer_id=value), "/customer_id", keyword)


def test_customer_id_null_means_absent() -> None:
    assert create(minimal_customer(customer_id=None)).customer_id is None


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["name_first", "name_last"])
def test_required_names(name: str) -> None:
    detail = assert_refused(minimal_customer(**{name: ...}), "", "required")
    missing = [d for d in problems(minimal_customer(**{name: ...})) if d["keyword"] == "required"]
    assert [d["params"] for d in missing] == [{"missingProperty": name}]
    assert detail["message"] == f"must have required property {name}"
    assert_refused(minimal_customer(**{name: ""}), f"/{name}", "minLength")
    assert_refused(minimal_customer(**{name: "   "}), f"/{name}", "pattern")
    assert_refused(minimal_customer(**{name: "\t\n"}), f"/{name}")
    assert_refused(minimal_customer(**{name: "x" * 256}), f"/{name}", "maxLength")
    assert_refused(minimal_customer(**{name: None}), f"/{name}", "type")
    assert_refused(minimal_customer(**{name: 7}), f"/{name}", "type")
    assert_valid(minimal_customer(**{name: "x" * 255}))
    assert_valid(minimal_customer(**{name: " O'Brien-Smith "}))


@pytest.mark.parametrize(
    "name", ["name_prefix", "name_middle", "name_suffix", "international_customer_id", "address_line_two"]
)
def test_optional_text_fields(name: str) -> None:
    assert_valid(minimal_customer(**{name: "x" * 255}))
    assert_valid(minimal_customer(**{name: None}))
    assert_refused(minimal_customer(**{name: "x" * 256}), f"/{name}", "maxLength")
    assert_refused(minimal_customer(**{name: ["x"]}), f"/{name}", "type")


# --- phone ---------------------------------------------------------------------------------------


# Possible, not necessarily assigned (the contract: is_possible_number): fictional and test ranges too.
@pytest.mark.parametrize(
    "phone",
    ["+14105556789", "+442079460958", "+33142685300", "+14155550123", "+15555555555", "+10000000000", "+80012345678"],
)
def test_phone_good(phone: str) -> None:
    assert create(minimal_customer(phone_number=phone)).phone_number == phone


@pytest.mark.parametrize("phone", ["4105556789", "+1 410 555 6789", "(410) 555-6789", "+1-410-555-6789"])
def test_phone_not_e164_suggests_the_e164_form(phone: str) -> None:
    detail = assert_refused(minimal_customer(phone_number=phone), "/phone_number", "format")
    assert "+14105556789" in detail["message"]


# +15555555: a local-only length (7 digits in the US) is no whole E.164 number; +999...: no such code.
@pytest.mark.parametrize(
    "phone",
    ["+1555", "+15555555", "+141055567890", "+999999999999", "12", "phone", "", "+14105556789\n", "+1410555678٩"],
)
def test_phone_bad(phone: str) -> None:
    assert_refused(minimal_customer(phone_number=phone), "/phone_number")


def test_phone_missing_is_required() -> None:
    found = problems(minimal_customer(phone_number=...))
    assert {
        "instancePath": "",
        "keyword": "required",
        "params": {"missingProperty": "phone_number"},
        "message": "must have required property phone_number",
    } in found


def test_phone_invalid_number_in_e164_shape_is_format() -> None:
    detail = assert_refused(minimal_customer(phone_number="+1555"), "/phone_number", "format")
    assert "E.164" in detail["message"]


# --- address -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["address_line_one", "address_city", "address_state", "address_zip"])
def test_required_address_fields(name: str) -> None:
    assert_refused(minimal_customer(**{name: ...}), "", "required")
    assert_refused(minimal_customer(**{name: ""}), f"/{name}")
    assert_refused(minimal_customer(**{name: "   "}), f"/{name}")
    assert_refused(minimal_customer(**{name: "x" * 256}), f"/{name}", "maxLength")
    assert_refused(minimal_customer(**{name: None}), f"/{name}", "type")


def test_address_line_one_and_city_up_to_255() -> None:
    assert_valid(minimal_customer(address_line_one="x" * 255, address_city="y" * 255))


@pytest.mark.parametrize("code", ["US", "GB", "CA", "DE", "AN", "AX", "PR", "ZW", "SS", "FR"])
def test_country_code_good(code: str) -> None:
    body = minimal_customer(address_country_code=code)
    if code not in fields.US_RULES_COUNTRIES:
        body.update(address_state="Somewhere", address_zip="AB1 2CD")
    assert create(body).address_country_code == code


@pytest.mark.parametrize("code", ["us", "Us", "USA", "XX", "ZZ", "U", "", "840", 840])
def test_country_code_bad(code: Any) -> None:
    detail = assert_refused(minimal_customer(address_country_code=code), "/address_country_code")
    assert detail["keyword"] in ("enum", "type")
    if isinstance(code, str):
        assert detail["keyword"] == "enum"
        assert "US" in detail["params"]["allowedValues"] and "AN" in detail["params"]["allowedValues"]


def test_country_codes_are_pycountry_plus_an() -> None:
    import pycountry

    assert set(fields.COUNTRY_CODES) == {c.alpha_2 for c in pycountry.countries} | {"AN"}


def test_country_absent_applies_us_rules() -> None:
    assert_refused(minimal_customer(address_zip="SW1A 1AA"), "/address_zip", "pattern")
    assert_refused(minimal_customer(address_state="Georgia"), "/address_state", "enum")


@pytest.mark.parametrize("country", [None, "US", "PR", "GU", "VI", "AS", "MP", "UM"])
@pytest.mark.parametrize("zip_code", ["99999", "99999-1000", "999991000", "00501"])
def test_us_zip_good(country: str | None, zip_code: str) -> None:
    body = minimal_customer(address_zip=zip_code, address_country_code=country)
    assert create(body).address_zip == zip_code


@pytest.mark.parametrize("country", [None, "US", "PR", "GU", "VI", "AS", "MP", "UM"])
@pytest.mark.parametrize(
    "zip_code",
    ["9999", "ABCDE", "999999", "99999-100", "99999 1000", "9999-91000", "99999-10000", "12345\n", "1234\u0665"],
)
def test_us_zip_bad(country: str | None, zip_code: str) -> None:
    body = minimal_customer(address_zip=zip_code, address_country_code=country)
    assert_refused(body, "/address_zip", "pattern")


@pytest.mark.parametrize("zip_code", ["SW1A 1AA", "10115", "H0H 0H0", "1", "A" * 16, "123-4567"])
def test_foreign_postal_code_good(zip_code: str) -> None:
    body = minimal_customer(address_country_code="GB", address_state="Greater London", address_zip=zip_code)
    assert create(body).address_zip == zip_code


@pytest.mark.parametrize("zip_code", ["A" * 17, "SW1A 1AA 12345678", "SW1A_1AA", "SW1A#1AA", "SW1A 1AA\n"])
def test_foreign_postal_code_bad(zip_code: str) -> None:
    body = minimal_customer(address_country_code="GB", address_state="Greater London", address_zip=zip_code)
    assert_refused(body, "/address_zip", "pattern")


@pytest.mark.parametrize("state", ["GA", "IL", "DC", "PR", "GU", "VI", "AS", "MP", "AA", "AE", "AP", "WY"])
def test_us_state_good(state: str) -> None:
    assert create(minimal_customer(address_state=state)).address_state == state
    assert create(minimal_customer(address_state=state, address_country_code="US")).address_state == state


@pytest.mark.parametrize("state", ["Georgia", "ga", "XX", "G", "GAA", "Illinois"])
def test_us_state_bad(state: str) -> None:
    detail = assert_refused(minimal_customer(address_state=state), "/address_state", "enum")
    assert "GA" in detail["params"]["allowedValues"] and "DC" in detail["params"]["allowedValues"]
    assert_refused(minimal_customer(address_state=state, address_country_code="PR"), "/address_state", "enum")


@pytest.mark.parametrize("state", ["Georgia", "Île-de-France", "Greater London", "x" * 255, "ga"])
def test_foreign_state_is_free_text(state: str) -> None:
    body = minimal_customer(address_country_code="FR", address_state=state, address_zip="75001")
    assert create(body).address_state == state


def test_foreign_state_limits_still_apply() -> None:
    body = minimal_customer(address_country_code="FR", address_zip="75001")
    assert_refused({**body, "address_state": "x" * 256}, "/address_state", "maxLength")
    assert_refused({**body, "address_state": "  "}, "/address_state")


def test_bad_country_does_not_add_zip_or_state_noise() -> None:
    found = problems(
        minimal_customer(address_country_code="us", address_state="Greater London", address_zip="SW1A 1AA")
    )
    assert [d["instancePath"] for d in found] == ["/address_country_code"]


# --- ssn -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ssn", ["123456789", "123-45-6789", "888888888", "001-01-0001"])
def test_ssn_good(ssn: str) -> None:
    assert create(minimal_customer(ssn=ssn)).ssn == ssn


@pytest.mark.parametrize(
    ("ssn", "keyword"),
    [
        ("12-345-6789", "pattern"),
        ("12345678", "pattern"),
        ("1234567890", "pattern"),
        ("123-456789", "pattern"),
        ("12345-6789", "pattern"),
        ("123 45 6789", "pattern"),
        ("abcdefghi", "pattern"),
        ("123456789\n", "pattern"),
        ("١٢٣٤٥٦٧٨٩", "pattern"),  # nine digits, but not ASCII ones
        ("000-12-3456", "format"),
        ("000123456", "format"),
        ("123-00-4567", "format"),
        ("123-45-0000", "format"),
        ("123450000", "format"),
        (123456789, "type"),
    ],
)
def test_ssn_bad(ssn: Any, keyword: str) -> None:
    assert_refused(minimal_customer(ssn=ssn), "/ssn", keyword)


def test_ssn_null_is_absent() -> None:
    assert create(minimal_customer(ssn=None)).ssn is None


# --- email ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "email", ["marissa@protonmail.com", "a.b+c@example.co.uk", "x@sub.example.org", "o'brien@example.com"]
)
def test_email_good(email: str) -> None:
    assert create(minimal_customer(email=email)).email == email


def test_email_at_254_chars_is_good() -> None:
    local = "a" * 64
    domain = ".".join(["b" * 63, "c" * 63, "d" * 50]) + ".com"
    email = f"{local}@{domain}"
    assert len(email) <= 254
    assert create(minimal_customer(email=email)).email == email


@pytest.mark.parametrize(
    "email", ["nope", "a@", "@example.com", "a b@example.com", "a@@example.com", "ada@example.com\n", "a@example..com"]
)
def test_email_bad_syntax(email: str) -> None:
    detail = assert_refused(minimal_customer(email=email), "/email", "format")
    assert detail["params"] == {"format": "email"}


def test_email_too_long() -> None:
    email = "a" * 243 + "@example.com"
    assert len(email) == 255
    assert_refused(minimal_customer(email=email), "/email", "maxLength")


def test_email_required() -> None:
    assert_refused(minimal_customer(email=...), "", "required")
    assert_refused(minimal_customer(email=None), "/email", "type")


# --- date_of_birth -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1900-01-01", "1985-06-20", "2000-02-29", "2024-02-29"])
def test_date_of_birth_good(value: str) -> None:
    assert create(minimal_customer(date_of_birth=value)).date_of_birth == datetime.date.fromisoformat(value)


def test_date_of_birth_today_is_good() -> None:
    today = datetime.datetime.now(datetime.UTC).date()
    assert create(minimal_customer(date_of_birth=today.isoformat())).date_of_birth == today


@pytest.mark.parametrize(
    "value",
    [
        "2020-02-30",
        "2023-02-29",
        "1985-13-01",
        "1985-00-10",
        "1985/06/20",
        "20-06-1985",
        "1985-6-20",
        "June 20 1985",
        "",
        "1985-06-20T00:00:00",
        "1899-12-31",
        "1000-01-01",
        "9999-12-31",
    ],
)
def test_date_of_birth_bad(value: str) -> None:
    detail = assert_refused(minimal_customer(date_of_birth=value), "/date_of_birth", "format")
    assert detail["params"] == {"format": "date"}


def test_date_of_birth_in_the_future_is_refused() -> None:
    tomorrow = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=2)
    assert_refused(minimal_customer(date_of_birth=tomorrow.isoformat()), "/date_of_birth", "format")


def test_date_of_birth_required_and_a_string() -> None:
    assert_refused(minimal_customer(date_of_birth=...), "", "required")
    assert_refused(minimal_customer(date_of_birth=19850620), "/date_of_birth", "type")


# --- business_details ----------------------------------------------------------------------------


@pytest.mark.parametrize("ein", ["12-3456789", "123456789", "888-88-8888", "1-2-3-4-5-6-7-8-9"])
def test_ein_good(ein: str) -> None:
    body = minimal_customer(business_details={"doing_business_as": "Umbrella", "business_ein": ein})
    payload = create(body)
    assert payload.business_details is not None and payload.business_details.business_ein == ein


@pytest.mark.parametrize(
    "ein",
    ["12345678", "1234567890", "12--3456789", "-123456789", "123456789-", "12-345678a", "", "123456789\n", "١٢٣٤٥٦٧٨٩"],
)
def test_ein_bad(ein: str) -> None:
    body = minimal_customer(business_details={"doing_business_as": "Umbrella", "business_ein": ein})
    assert_refused(body, "/business_details/business_ein", "pattern")


def test_business_details_required_members() -> None:
    found = problems(minimal_customer(business_details={"business_legal_name": "Umbrella Corporation"}))
    required = sorted((d["instancePath"], d["params"]["missingProperty"]) for d in found)
    assert required == [("/business_details", "business_ein"), ("/business_details", "doing_business_as")]
    assert all(d["keyword"] == "required" for d in found)


def test_business_details_doing_business_as_non_blank() -> None:
    body = minimal_customer(business_details={"doing_business_as": "  ", "business_ein": "123456789"})
    assert_refused(body, "/business_details/doing_business_as")


def test_business_legal_name_optional_and_limited() -> None:
    assert_valid(minimal_customer(business_details={"doing_business_as": "U", "business_ein": "123456789"}))
    body = minimal_customer(
        business_details={"doing_business_as": "U", "business_ein": "123456789", "business_legal_name": "x" * 256}
    )
    assert_refused(body, "/business_details/business_legal_name", "maxLength")


def test_business_details_must_be_an_object_or_null() -> None:
    assert_valid(minimal_customer(business_details=None))
    assert_refused(minimal_customer(business_details="Umbrella"), "/business_details", "type")


# --- assign_to_accounts --------------------------------------------------------------------------


def test_assign_to_accounts_null_and_empty_are_valid() -> None:
    assert create(minimal_customer(assign_to_accounts=None)).assign_to_accounts is None
    assert create(minimal_customer(assign_to_accounts=[])).assign_to_accounts == []


def test_assign_to_accounts_up_to_100() -> None:
    items = [assignment(account_id=f"acc_{i}") for i in range(100)]
    payload = create(minimal_customer(assign_to_accounts=items))
    assert payload.assign_to_accounts is not None and len(payload.assign_to_accounts) == 100
    detail = assert_refused(
        minimal_customer(assign_to_accounts=[*items, assignment(account_id="acc_x")]), "/assign_to_accounts", "maxItems"
    )
    assert detail["params"] == {"limit": 100}


def test_assign_to_accounts_must_be_an_array() -> None:
    assert_refused(minimal_customer(assign_to_accounts={"account_id": "a"}), "/assign_to_accounts", "type")


def test_assignment_defaults() -> None:
    payload = create(minimal_customer(assign_to_accounts=[assignment()]))
    assert payload.assign_to_accounts is not None
    (item,) = payload.assign_to_accounts
    # Absent: PRIMARY on a new link, unchanged on an existing one (applied when linking).
    assert item.customer_account_role is None
    assert item.customer_account_external_id is None
    assert item.customer_account_issuer_processor_config is None


def test_assignment_account_id_required() -> None:
    found = problems(minimal_customer(assign_to_accounts=[{"customer_account_role": "PRIMARY"}]))
    assert found == [
        {
            "instancePath": "/assign_to_accounts/0",
            "keyword": "required",
            "params": {"missingProperty": "account_id"},
            "message": "must have required property account_id",
        }
    ]


@pytest.mark.parametrize("role", ["PRIMARY", "SECONDARY"])
def test_role_good(role: str) -> None:
    payload = create(minimal_customer(assign_to_accounts=[assignment(customer_account_role=role)]))
    assert payload.assign_to_accounts is not None
    assert payload.assign_to_accounts[0].customer_account_role == role


@pytest.mark.parametrize("role", ["OWNER", "primary", ""])
def test_role_bad(role: str) -> None:
    body = minimal_customer(assign_to_accounts=[assignment(), assignment(account_id="b", customer_account_role=role)])
    found = problems(body)
    assert found == [
        {
            "instancePath": "/assign_to_accounts/1/customer_account_role",
            "keyword": "enum",
            "params": {"allowedValues": ["PRIMARY", "SECONDARY"]},
            "message": "must be equal to one of the allowed values",
        }
    ]


def test_several_primary_on_different_accounts_are_fine() -> None:
    items = [assignment(account_id="a"), assignment(account_id="b")]
    assert_valid(minimal_customer(assign_to_accounts=items))


def test_same_account_twice_is_unique_items() -> None:
    items = [
        assignment(account_id="a"),
        assignment(account_id="b"),
        assignment(account_id="a", customer_account_role="SECONDARY"),
    ]
    found = problems(minimal_customer(assign_to_accounts=items))
    assert len(found) == 1
    assert found[0]["instancePath"] == "/assign_to_accounts"
    assert found[0]["keyword"] == "uniqueItems"
    assert found[0]["params"] == {"i": 2, "j": 0}


def test_same_account_twice_is_refused_on_update_too() -> None:
    items = [assignment(account_id="a"), assignment(account_id="a")]
    found = problems({"assign_to_accounts": items}, UPDATE, with_meaning=False)
    assert [(d["instancePath"], d["keyword"]) for d in found] == [("/assign_to_accounts", "uniqueItems")]


def test_external_id_limit() -> None:
    assert_valid(minimal_customer(assign_to_accounts=[assignment(customer_account_external_id="x" * 255)]))
    body = minimal_customer(assign_to_accounts=[assignment(customer_account_external_id="x" * 256)])
    assert_refused(body, "/assign_to_accounts/0/customer_account_external_id", "maxLength")


def config(**lithic: Any) -> dict[str, Any]:
    return {"lithic": lithic}


@pytest.mark.parametrize("card_type", ["VIRTUAL", "PHYSICAL", "SINGLE_USE", "MERCHANT_LOCKED", "UNLOCKED"])
@pytest.mark.parametrize("state", ["OPEN", "PAUSED"])
def test_lithic_good(card_type: str, state: str) -> None:
    item = assignment(
        customer_account_issuer_processor_config={
            "spend_limit": 1,
            **config(type=card_type, state=state, memo="m", card_program_token="A5E38341-CC95-4A9B-A21C-751AECA67E9C"),
        }
    )
    assert_valid(minimal_customer(assign_to_accounts=[item]))


@pytest.mark.parametrize(
    ("lithic", "path", "keyword"),
    [
        ({"type": "DIGITAL_WALLET"}, "type", "enum"),
        ({"state": "CLOSED"}, "state", "enum"),
        ({"state": "open"}, "state", "enum"),
        ({"card_program_token": "not-a-uuid"}, "card_program_token", "pattern"),
        ({"card_program_token": "a5e38341cc954a9ba21c751aeca67e9c"}, "card_program_token", "pattern"),
        ({"card_program_token": "a5e38341-cc95-4a9b-a21c-751aeca67e9"}, "card_program_token", "pattern"),
        ({"memo": "x" * 256}, "memo", "maxLength"),
    ],
)
def test_lithic_bad(lithic: dict[str, Any], path: str, keyword: str) -> None:
    item = assignment(customer_account_issuer_processor_config=config(**lithic))
    detail = assert_refused(
        minimal_customer(assign_to_accounts=[item]),
        f"/assign_to_accounts/0/customer_account_issuer_processor_config/lithic/{path}",
        keyword,
    )
    if keyword == "enum":
        assert detail["params"]["allowedValues"]


def test_lithic_type_enum_lists_allowed_values() -> None:
    item = assignment(customer_account_issuer_processor_config=config(type="DIGITAL_WALLET"))
    (detail,) = problems(minimal_customer(assign_to_accounts=[item]))
    assert detail["params"] == {"allowedValues": ["VIRTUAL", "PHYSICAL", "SINGLE_USE", "MERCHANT_LOCKED", "UNLOCKED"]}


@pytest.mark.parametrize(
    ("spend_limit", "keyword"), [(0, "minimum"), (-5, "minimum"), (1.5, "type"), ("100", "type"), (True, "type")]
)
def test_spend_limit_bad(spend_limit: Any, keyword: str) -> None:
    item = assignment(customer_account_issuer_processor_config={"spend_limit": spend_limit})
    detail = assert_refused(
        minimal_customer(assign_to_accounts=[item]),
        "/assign_to_accounts/0/customer_account_issuer_processor_config/spend_limit",
        keyword,
    )
    if keyword == "minimum":
        assert detail["params"] == {"comparison": ">=", "limit": 1}
        assert detail["message"] == "must be >= 1"


@pytest.mark.parametrize("spend_limit", [1, 8000000, None])
def test_spend_limit_good(spend_limit: Any) -> None:
    item = assignment(customer_account_issuer_processor_config={"spend_limit": spend_limit})
    assert_valid(minimal_customer(assign_to_accounts=[item]))


@pytest.mark.parametrize(("raw", "cents"), [("8000000.0", 8000000), ("1e3", 1000), ("2.5E1", 25), ("1.000", 1)])
def test_a_whole_float_is_an_integer(raw: str, cents: int) -> None:
    """JSON Schema's integer is a number without a fraction (OpenAPI 3.1 clients send 5.0; Canopy's AJV
    reads it as 5): refused only by msgspec, it is read as the integer it spells."""
    item = json.dumps(assignment(customer_account_issuer_processor_config={"spend_limit": 424242}))
    body = json.dumps(minimal_customer(assign_to_accounts=["ITEM"])).replace('"ITEM"', item).replace("424242", raw)
    decoded = decode_customer(body.encode(), CREATE, with_meaning=True)
    assert decoded.assign_to_accounts is not None
    config = decoded.assign_to_accounts[0].customer_account_issuer_processor_config
    assert config is not None and config.spend_limit == cents and type(config.spend_limit) is int


@pytest.mark.parametrize(("raw", "keyword"), [("1.5", "type"), ("0.0", "minimum"), ("1e19", "format"), ('"5"', "type")])
def test_a_float_that_is_no_fitting_integer_is_still_refused(raw: str, keyword: str) -> None:
    item = json.dumps(assignment(customer_account_issuer_processor_config={"spend_limit": 424242}))
    body = (
        json.dumps(minimal_customer(assign_to_accounts=["ITEM"], name_first=""))
        .replace('"ITEM"', item)
        .replace("424242", raw)
    )
    with pytest.raises(InvalidInput) as refused:
        decode_customer(body.encode(), CREATE, with_meaning=True)
    found = {(d.instancePath, d.keyword) for d in refused.value.details}
    assert found == {
        ("/name_first", "minLength"),
        ("/assign_to_accounts/0/customer_account_issuer_processor_config/spend_limit", keyword),
    }


def test_a_whole_float_beside_another_problem_is_not_one() -> None:
    item = json.dumps(assignment(customer_account_issuer_processor_config={"spend_limit": 424242}))
    body = (
        json.dumps(minimal_customer(assign_to_accounts=["ITEM"], name_first=""))
        .replace('"ITEM"', item)
        .replace("424242", "5.0")
    )
    with pytest.raises(InvalidInput) as refused:
        decode_customer(body.encode(), CREATE, with_meaning=True)
    assert [d.instancePath for d in refused.value.details] == ["/name_first"]


# --- the 422 shape -------------------------------------------------------------------------------


def test_every_detail_has_exactly_the_ajv_keys() -> None:
    body = seed_customer(
        customer_id="can_x",
        name_first="",
        phone_number="4105556789",
        ssn="000-12-3456",
        email="nope",
        date_of_birth="2020-02-30",
        address_state="Georgia",
        address_zip="9999",
        assign_to_accounts=[assignment(customer_account_role="OWNER")],
    )
    found = problems(body)
    allowed_keywords = {
        "required",
        "type",
        "pattern",
        "format",
        "enum",
        "minimum",
        "maxItems",
        "minLength",
        "maxLength",
        "uniqueItems",
    }
    assert found
    for item in found:
        assert set(item) == {"instancePath", "keyword", "params", "message"}
        assert item["keyword"] in allowed_keywords
        assert isinstance(item["params"], dict)
        assert isinstance(item["message"], str) and item["message"]
        assert item["instancePath"] == "" or item["instancePath"].startswith("/")


def test_every_problem_is_listed_shape_and_meaning_together() -> None:
    body = minimal_customer(
        name_first="",
        phone_number="4105556789",
        ssn="123-00-4567",
        email="a@",
        date_of_birth="1899-12-31",
        address_zip="ABCDE",
        name_last=...,
    )
    found = problems(body)
    paths = sorted(d["instancePath"] for d in found)
    assert paths == sorted(["", "/name_first", "/phone_number", "/ssn", "/email", "/date_of_birth", "/address_zip"])


def test_five_bad_fields_give_five_details() -> None:
    body = minimal_customer(
        name_first=" ", address_state="Georgia", ssn="12345678", email="nope", date_of_birth="2020-02-30"
    )
    found = problems(body)
    assert sorted(d["instancePath"] for d in found) == sorted(
        ["/name_first", "/address_state", "/ssn", "/email", "/date_of_birth"]
    )


def test_every_required_field_is_reported_when_the_body_is_empty() -> None:
    found = problems({})
    missing = sorted(d["params"]["missingProperty"] for d in found)
    assert missing == sorted(
        [
            "name_first",
            "name_last",
            "phone_number",
            "address_line_one",
            "address_city",
            "address_state",
            "address_zip",
            "email",
            "date_of_birth",
        ]
    )
    assert {d["instancePath"] for d in found} == {""}


def test_nested_pointer_paths_index_into_arrays() -> None:
    items = [
        assignment(),
        assignment(
            account_id="b", customer_account_issuer_processor_config={"spend_limit": 0, "lithic": {"state": "CLOSED"}}
        ),
    ]
    found = problems(minimal_customer(assign_to_accounts=items))
    prefix = "/assign_to_accounts/1/customer_account_issuer_processor_config"
    assert sorted(d["instancePath"] for d in found) == [f"{prefix}/lithic/state", f"{prefix}/spend_limit"]


def test_not_json_or_not_an_object_is_bad_request() -> None:
    for raw in (b"{", b"[]", b'"text"', b"null", b"42", b""):
        with pytest.raises(BadRequest):
            decode_customer(raw, CREATE, with_meaning=True)


# --- updates -------------------------------------------------------------------------------------


def test_update_decoder_accepts_partial_bodies_and_nulls_for_optional_fields() -> None:
    patch = decode_customer(encode({"name_middle": None, "ssn": "123-45-6789"}), UPDATE, with_meaning=False)
    assert patch.name_middle is None
    assert patch.ssn == "123-45-6789"
    assert patch.name_first is msgspec.UNSET


@pytest.mark.parametrize(
    "name",
    [
        "name_first",
        "name_last",
        "phone_number",
        "address_line_one",
        "address_city",
        "address_state",
        "address_zip",
        "email",
        "date_of_birth",
    ],
)
def test_update_cannot_null_a_required_field(name: str) -> None:
    found = problems({name: None}, UPDATE, with_meaning=False)
    assert [(d["instancePath"], d["keyword"]) for d in found] == [(f"/{name}", "type")]


def test_update_lists_meaning_problems_beside_shape_problems() -> None:
    found = problems({"name_first": "", "phone_number": "4105556789", "email": "nope"}, UPDATE, with_meaning=False)
    assert sorted(d["instancePath"] for d in found) == ["/email", "/name_first", "/phone_number"]


def test_meaning_problems_follow_the_country() -> None:
    values = {"address_country_code": "GB", "address_zip": "SW1A 1AA", "address_state": "London"}
    assert meaning_problems(values, ["address_zip", "address_state"]) == []
    values["address_country_code"] = "US"
    paths = sorted(d.instancePath for d in meaning_problems(values, ["address_zip", "address_state"]))
    assert paths == ["/address_state", "/address_zip"]
    # only the named fields are checked
    assert meaning_problems(values, ["address_state"])[0].instancePath == "/address_state"
    assert len(meaning_problems(values, ["address_state"])) == 1


# --- the patterns themselves ---------------------------------------------------------------------


def test_patterns_are_anchored_against_a_trailing_newline() -> None:
    for pattern, good in [
        (fields.CUSTOMER_ID_PATTERN, "abc"),
        (fields.SSN_PATTERN, "123456789"),
        (fields.EIN_PATTERN, "123456789"),
    ]:
        assert re.search(pattern, good)
        assert not re.search(pattern, good + "\n")


def pattern_fields(model: type[msgspec.Struct]) -> dict[str, str]:
    """Every top-level string field of `model` whose type carries a pattern, with it."""
    found = {}
    for field in msgspec.inspect.type_info(model).fields:
        kinds = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else (field.type,)
        for kind in kinds:
            if isinstance(kind, msgspec.inspect.Metadata):
                kind = kind.type
            if isinstance(kind, msgspec.inspect.StrType) and kind.pattern:
                found[field.encode_name] = kind.pattern
    return found


def test_a_pattern_detail_shows_the_pattern_as_the_contract_writes_it() -> None:
    """CONTRACT section 1: never Python's end-of-input guard; for every field that has a pattern."""
    declared = pattern_fields(CustomerCreate)
    assert {"customer_id", "ssn", "address_city"} <= set(declared)
    for name, pattern in declared.items():
        # A value each pattern refuses: a trailing newline (anchored ones), a blank (non-blank text), a NUL.
        found = [
            d
            for probe in ("!!\n", " ", "\u0000")
            for d in problems(minimal_customer(**{name: probe}))
            if d["instancePath"] == f"/{name}"
        ]
        assert found, name
        for detail in found:
            if detail["keyword"] == "pattern":
                assert "(?!\\n)" not in detail["params"]["pattern"] and "(?!\\n)" not in detail["message"], name
        if name in ("customer_id", "ssn"):  # refused by their declared pattern, shown as written
            assert found[0]["params"]["pattern"] == pattern.replace("$(?!\\n)", "$") != pattern, name


def test_a_missing_property_is_named_without_quotes() -> None:
    body = minimal_customer()
    del body["name_first"]
    assert {
        "instancePath": "",
        "keyword": "required",
        "params": {"missingProperty": "name_first"},
        "message": "must have required property name_first",
    } in problems(body)


# An integer account_id is valid, issue 11 item 4: a boolean is the wrong type.
@pytest.mark.parametrize("items", [["acc_1"], [None], [1, 2], [{"account_id": True}], [[]]])
def test_assignment_items_must_be_objects(items: list[Any]) -> None:
    found = problems(minimal_customer(assign_to_accounts=items))
    assert found and all(d["instancePath"].startswith("/assign_to_accounts/") for d in found)
    assert {d["keyword"] for d in found} <= {"type"}


@pytest.mark.parametrize(
    "name",
    ["name_first", "name_prefix", "address_line_one", "address_line_two", "address_zip", "international_customer_id"],
)
def test_nul_is_refused_in_text_fields(name: str) -> None:
    """PostgreSQL text cannot hold NUL: it must be a 422, never reach an INSERT."""
    detail = assert_refused(minimal_customer(**{name: "Ab\u0000c"}), f"/{name}", "pattern")
    assert detail["params"]["pattern"]
    assert_refused(minimal_customer(**{name: "\u0000"}), f"/{name}", "pattern")


def test_non_blank_still_admits_inner_spaces_and_unicode() -> None:
    for value in ["a", " a ", "Ærøskøbing", "日本", "x\ty", "a\nb"]:
        assert create(minimal_customer(address_city=value)).address_city == value


# --- the plain-email fast path ---------------------------------------------------------------------


def generated_addresses(count: int, seed: int = 20261122) -> list[str]:
    """Near-misses around the fast path's edges: dots, hyphens, long parts, numeric and reserved TLDs."""
    rng = random.Random(seed)
    tlds = ["com", "io", "Co", "x", "c0m", "123", "test", "localhost", "invalid", "onion", "arpa", "local", "museum"]

    def part(alphabet: str, longest: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 3, 8, 20, longest])))

    addresses = []
    for _ in range(count):
        local = part(rng.choice(["ab0Z_+-.", "ab0Z_+-"]), rng.choice([10, 64, 65, 70]))
        labels = [part(rng.choice(["ab0-Z", "ab0Z"]), rng.choice([5, 63, 64])) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.1:
            labels.append("xn--" + part("ab0", 6))
        domain = ".".join([*labels, rng.choice(tlds)])
        addresses.append(f"{local}@{domain}" if rng.random() < 0.97 else f"{local}@@{domain}")
    return addresses


def test_the_plain_email_fast_path_accepts_only_what_email_validator_accepts() -> None:
    accepted = 0
    for address in generated_addresses(50_000):
        if validation.is_plain_email(address):
            accepted += 1
            email_validator.validate_email(address, check_deliverability=False)  # raises if it disagrees
    assert accepted > 1_500  # the fast path is exercised, not vacuous


@pytest.mark.parametrize("address", ["marissa@protonmail.com", "a.b+c@x-y.co.uk", "UP_per-1@Example.ORG"])
def test_everyday_addresses_take_the_fast_path(address: str) -> None:
    assert validation.is_plain_email(address)


@pytest.mark.parametrize(
    "address",
    [
        "a" * 64 + "@" + ("b" * 63 + ".") * 3 + "com",  # 260 characters: too long in all
        "a@" + "b" * 64 + ".com",  # a label over 63
        "a@b.test",
        "a@mail.localhost",
        "a@x.onion",
        "a@xn--abc.com",
        "a@ab--c.com",
        "a@b.123",
        "a.@b.com",
    ],
)
def test_near_misses_are_left_to_email_validator(address: str) -> None:
    with pytest.raises(email_validator.EmailNotValidError):
        email_validator.validate_email(address, check_deliverability=False)
    assert not validation.is_plain_email(address)


# --- every body: nesting depth and NUL (issue 8, item 9) ------------------------------------------


def parser_depth(body: bytes) -> int:
    """How deep a JSON parser reading `body` left to right gets before it finishes or fails."""
    depth = deepest = i = 0
    while i < len(body):
        c = body[i]
        if c == ord('"'):
            i += 1
            while i < len(body) and body[i] != ord('"'):
                i += 2 if body[i] == ord("\\") else 1
        elif c == ord("\\"):
            return deepest  # outside a string: the parser stops here
        elif c in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in b"]}":
            depth -= 1
            if depth < 0:
                return deepest
        i += 1
    return deepest


def nested_json(depth: int) -> bytes:
    text = json.dumps('[{]}\\"') if depth % 3 else "1"  # brackets and escapes in strings are not structure
    for level in range(depth):
        text = f'[{text}, "]]"]' if level % 2 else f'{{"k{{": {text}}}'
    return text.encode()


@pytest.mark.parametrize(
    "depth",
    [1, 2, 5, validation.MAX_JSON_DEPTH - 1, validation.MAX_JSON_DEPTH, validation.MAX_JSON_DEPTH + 1, 200, 5000],
)
def test_depth_limit_is_exact(depth: int) -> None:
    body = nested_json(depth)
    assert parser_depth(body) == depth
    assert validation.json_depth_exceeds(body) == (depth > validation.MAX_JSON_DEPTH)


@pytest.mark.parametrize(
    "body",
    [
        b"[]" * 300_000,  # many brackets, all flat
        json.dumps({"x": [{"a": "[[[[[[[[", "b": [1, [2]]}] * 5_000}).encode(),
        json.dumps({"x": '\\"' + "[" * 100_000}).encode(),
    ],
)
def test_wide_bodies_are_not_deep(body: bytes) -> None:
    assert not validation.json_depth_exceeds(body)


@pytest.mark.parametrize(
    "depth", [validation.MAX_JSON_DEPTH - 1, validation.MAX_JSON_DEPTH, validation.MAX_JSON_DEPTH + 1]
)
@pytest.mark.parametrize("shape", ["arrays", "mixed", "zigzag"])
def test_depth_limit_is_exact_in_a_megabyte_of_nests(depth: int, shape: str) -> None:
    """Thousands of nests side by side, each just under, at or just over the limit: the costliest
    bodies for the check (every round of it takes little off), and still exact."""
    inner = depth - 1  # each nest, inside the one array that holds them all
    if shape == "zigzag":  # every level opens a sibling before going deeper
        nest = b"[[]," * (inner - 1) + b"[]" + b"]" * (inner - 1)
    else:
        nest = nested_json(inner) if shape == "mixed" else b"[" * inner + b"]" * inner
    body = b"[" + b",".join([nest] * ((1 << 20) // len(nest))) + b"]"
    assert parser_depth(body) == depth
    assert validation.json_depth_exceeds(body) == (depth > validation.MAX_JSON_DEPTH)


def test_depth_check_never_says_less_than_a_parser_would_reach() -> None:
    """On arbitrary (mostly malformed) text, it may refuse more than needed, never less."""
    rng = random.Random(8)
    alphabet = ["[", "]", "{", "}", '"', "\\", "a", ",", ":", "\\\\", '\\"']
    for _ in range(5_000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(10, 200))).encode()
        for limit in (2, 4, 8):
            if parser_depth(body) > limit:
                assert validation.json_depth_exceeds(body, limit), body


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"name_first":' + b"[" * 100_000,
        json.dumps({"extra": json.loads(nested_json(100))}).encode(),
    ],
)
def test_deep_bodies_are_400_before_any_parser_recurses(body: bytes) -> None:
    with pytest.raises(BadRequest, match="levels deep"):
        CREATE.decode(body)
    with pytest.raises(BadRequest, match="levels deep"):
        validation.parse_object(body)


@pytest.mark.parametrize(
    "field",
    ["name_first", "name_middle", "email", "phone_number", "ssn", "customer_id", "address_zip", "date_of_birth"],
)
def test_nul_in_any_field_is_a_pattern_problem(field: str) -> None:
    body = encode(minimal_customer(**{field: "a\u0000b"}))
    assert b"\\u0000" in body
    with pytest.raises(InvalidInput) as refused:
        CREATE.decode(body)
    (found,) = [msgspec.to_builtins(d) for d in refused.value.details]
    assert found["instancePath"] == f"/{field}"
    assert found["keyword"] in ("pattern", "format")


def test_nul_where_the_field_has_no_pattern_of_its_own() -> None:
    """TokenRequest's fields and product_long_description had no NUL rule: the walk has one for all."""
    from canopy_svc.wire.models import ProductCreate, TokenRequest

    with pytest.raises(InvalidInput) as refused:
        BodyDecoder(TokenRequest).decode(b'{"client_id": "cli_\\u0000", "client_secret": "s"}')
    assert [msgspec.to_builtins(d) for d in refused.value.details] == [
        {
            "instancePath": "/client_id",
            "keyword": "pattern",
            "params": {"pattern": fields.NO_NUL},
            "message": "must not contain NUL (\\u0000)",
        }
    ]
    body = {
        "product_overview": {"product_name": "P", "product_type": "REVOLVING", "product_long_description": "x\u0000"}
    }
    with pytest.raises(InvalidInput) as refused:
        BodyDecoder(ProductCreate).decode(encode(body))
    assert refused.value.details[0].instancePath == "/product_overview/product_long_description"
    # An escaped backslash before "u0000" is text, not a NUL.
    decoded = BodyDecoder(TokenRequest).decode(b'{"client_id": "a\\\\u0000", "client_secret": "s"}')
    assert decoded.client_id == "a\\u0000"


@pytest.mark.parametrize("raw", [r'"\ud800"', r'"x\udfff"', r'"\ud800A"', r'"\udc00\ud800"'])
def test_lone_surrogates_are_malformed_json(raw: str) -> None:
    """msgspec refuses them (UTF-8 cannot hold them); this pins that it still does."""
    with pytest.raises(BadRequest):
        CREATE.decode(json.dumps(minimal_customer(name_first="PLACE")).replace('"PLACE"', raw).encode())
    assert CREATE.decode(encode(minimal_customer(name_first="\U0001f600"))).name_first == "\U0001f600"


@pytest.mark.parametrize("raw", ["1e400", "-1e400", "1" + "0" * 400])
def test_numbers_no_column_holds_are_named_at_their_field(raw: str) -> None:
    body = json.dumps(minimal_customer(name_first="PLACE")).replace('"PLACE"', raw).encode()
    with pytest.raises(InvalidInput) as refused:
        CREATE.decode(body)
    assert [d.instancePath for d in refused.value.details] == ["/name_first"]


def required_paths(
    schema: dict[str, Any], components: dict[str, Any], body: dict[str, Any], at: str = ""
) -> list[tuple[str, str, dict[str, Any]]]:
    """(parent pointer, property, body without it) for every required property of `schema` that `body`
    holds, nested objects included."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    found = []
    for name in schema.get("required", []):
        if name not in body:
            continue
        without = {k: v for k, v in body.items() if k != name}
        found.append((at, name, without))
    for name, value in body.items():
        inner = schema.get("properties", {}).get(name, {})
        options = inner.get("anyOf", [inner])
        for option in options:
            if isinstance(value, dict) and ("$ref" in option or "properties" in option):
                for parent, missing, nested in required_paths(option, components, value, f"{at}/{name}"):
                    found.append((parent, missing, {**body, name: nested}))
    return found


@pytest.mark.parametrize("model_name", ["CustomerCreate", "ProductCreate", "AccountCreate", "TokenRequest"])
def test_every_missing_required_property_has_canopys_exact_message(model_name: str) -> None:
    """CONTRACT section 1: `must have required property <name>`, for every required property of every
    body, at every depth the example reaches."""
    from canopy_svc.api import examples
    from canopy_svc.wire import models

    model = getattr(models, model_name)
    valid = {
        "CustomerCreate": examples.CUSTOMER,
        "ProductCreate": examples.PRODUCT,
        "AccountCreate": examples.ACCOUNT,
        "TokenRequest": {"client_id": "cli_x", "client_secret": "s"},
    }[model_name]
    (schema,), components = msgspec.json.schema_components([model], ref_template="#/components/schemas/{name}")
    cases = required_paths(schema, components, dict(valid))
    decode = BodyDecoder(model).decode
    if model_name == "AccountCreate":
        # product_id is required unless external_product_id names the product: said by the rules.
        from canopy_svc.rules.accounts import parse_account

        decode = parse_account
        cases.append(("", "product_id", {k: v for k, v in valid.items() if k != "product_id"}))
        with_customer = dict(valid) | {"assign_customers": [{"customer_id": "c-1"}]}
        cases += required_paths(schema, components, with_customer)
    assert cases, model_name
    for parent, name, body in cases:
        try:
            decode(encode(body))
        except InvalidInput as exc:
            details = [msgspec.to_builtins(d) for d in exc.details]
        else:
            details = []
        assert {
            "instancePath": parent,
            "keyword": "required",
            "params": {"missingProperty": name},
            "message": f"must have required property {name}",
        } in details, (model_name, parent, name, details)
