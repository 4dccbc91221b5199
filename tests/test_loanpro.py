"""The LoanPro face (issue 14): LoanPro's Customers API over the same customers, rules and store.

Through the ASGI app, against a real PostgreSQL.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import httpx
import pytest

from canopy_svc.rules import loanpro as loanpro_rules
from canopy_svc.store import api_clients
from tests.helpers import ApiClient, account, linked_customer, minimal_customer

BASE = "/api/public/api/1/odata.svc"
CUSTOMERS = f"{BASE}/Customers"
EVERY_NAV = "PrimaryAddress,MailAddress,Phones,Employer,References,CreditScore,PaymentAccounts"

# Seed 000's create body, verbatim but for a real email and an SSN the rules accept.
SEED_000: dict[str, Any] = {
    "status": "Active",
    "customerType": "customer.type.individual",
    "customerIdType": "customer.idType.ssn",
    "firstName": "John",
    "lastName": "Doe",
    "birthDate": "1970-01-15",
    "ssn": "123453333",
    "gender": "customer.gender.male",
    "generationCode": "customer.generationCode.none",
    "accessUserName": "johndoeapiuser",
    "email": "john.doe@example.com",
    "__ignoreWarnings": True,
    "PaymentAccounts": {
        "results": [
            {
                "active": 1,
                "isPrimary": 0,
                "isSecondary": 1,
                "title": "Checking Account",
                "type": "paymentAccount.type.checking",
                "CheckingAccount": {"accountType": "bankacct.type.checking", "token": "QVFJREFIalVqRl..."},
                "CreditCard": {},
            }
        ]
    },
    "Employer": {
        "phone": "8642543322",
        "payDate": "2020-01-30",
        "Address": {
            "address1": "9 Michigan Ave",
            "city": "Chicago",
            "state": "geo.state.IL",
            "zipcode": "60602",
            "country": "company.country.usa",
        },
        "hireDate": "2015-01-15",
        "incomeFrequency": "customerEmployer.incomeFrequency.annually",
        "payDateFrequency": "customerEmployer.payDateFrequency.biWeekly",
        "income": 75000,
        "companyName": "Chicago Dawgs Stands",
        "title": "Owner",
    },
    "References": {
        "results": [
            {
                "name": "Tony Doe",
                "relation": "customerReference.relation.brother",
                "Address": {
                    "country": "company.country.usa",
                    "address1": "2600 Sheridan Road",
                    "zipcode": "60201",
                    "city": "Evanston",
                    "state": "geo.state.IL",
                },
                "primaryPhone": "2024456655",
            }
        ]
    },
    "Phones": {
        "results": [
            {
                "phone": "3125550100",
                "isPrimary": "1",
                "isSecondary": "0",
                "type": "customer.phoneType.cell",
                "carrierVerified": 1,
                "isLandLine": 0,
                "__ignoreWarnings": True,
            }
        ]
    },
    "PrimaryAddress": {
        "address1": "201 E Randolph St",
        "city": "Chicago",
        "state": "geo.state.IL",
        "zipcode": "60602",
        "country": "company.country.usa",
        "geoLat": "41.882648",
        "geoLon": "-87.623102",
        "verify": True,
    },
    "CreditScore": {"equifaxScore": 711, "transunionScore": 692, "experianScore": 698},
    "MailAddress": {
        "address1": "201 E Randolph St",
        "city": "Chicago",
        "state": "geo.state.IL",
        "zipcode": "60602",
        "country": "company.country.usa",
        "geoLat": "41.882648",
        "geoLon": "-87.623102",
        "verify": True,
    },
}


def seed_body(**overrides: Any) -> dict[str, Any]:
    body = copy.deepcopy(SEED_000)
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


async def headers_for(api: ApiClient, pool: Any) -> dict[str, str]:
    return {"Autopal-Instance-ID": str(await loanpro_rules.instance_id(pool, api.org_id))}


@pytest.fixture
async def lp(api: ApiClient, pool: Any) -> httpx.AsyncClient:
    """The acme client with its instance id."""
    api.http.headers.update(await headers_for(api, pool))
    return api.http


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def customer_number(body: dict[str, Any]) -> int:
    number: int = body["d"]["id"]
    return number


def loanpro_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"]["type"] == kind and body["error"]["code"] == status, body
    assert isinstance(body["error"]["message"], str)
    return body


# --- create and read: seed 000 round-trips, seed 002's shapes ---------------------------------------


async def test_seed_000_is_accepted_and_every_field_it_sent_reads_back(lp: httpx.AsyncClient) -> None:
    created = ok(await lp.post(CUSTOMERS, json=seed_body()))["d"]
    number = created["id"]
    assert isinstance(number, int) and number > 0
    assert created["__metadata"] == {
        "uri": f"http://loanpro.simnang.com/api/public/api/1/odata.svc/Customers(id={number})",
        "type": "Entity.Customer",
    }
    assert created["PrimaryAddress"] == {"__deferred": {"uri": f"Customers(id={number})/PrimaryAddress"}}
    assert created["ssn"] == "XXXXX3333"
    assert created["birthDate"] == "/Date(1209600)/"  # 1970-01-15 UTC
    assert re.fullmatch(r"/Date\(\d+\)/", created["created"])

    shown = ok(await lp.get(f"{CUSTOMERS}({number})", params={"$expand": EVERY_NAV + ",Employer/Address"}))["d"]
    for field in ("status", "customerType", "customerIdType", "firstName", "lastName", "gender", "generationCode",
                  "accessUserName", "email"):  # fmt: skip
        assert shown[field] == SEED_000[field], field
    sent_address = {k: v for k, v in SEED_000["PrimaryAddress"].items()}
    assert {k: shown["PrimaryAddress"][k] for k in sent_address} == sent_address
    assert {k: shown["MailAddress"][k] for k in SEED_000["MailAddress"]} == SEED_000["MailAddress"]
    assert shown["MailAddress"]["__metadata"]["type"] == "Entity.Address"
    [phone] = shown["Phones"]["results"]
    sent_phone = {k: v for k, v in SEED_000["Phones"]["results"][0].items() if k not in ("__ignoreWarnings",)}
    assert {k: phone[k] for k in sent_phone if k != "isPrimary"} == {
        k: v for k, v in sent_phone.items() if k != "isPrimary"
    }
    assert phone["isPrimary"] == 1 and phone["id"] == number
    employer = shown["Employer"]
    assert employer["companyName"] == "Chicago Dawgs Stands" and employer["income"] == 75000
    assert employer["hireDate"] == "/Date(1421280000)/" and employer["payDate"] == "/Date(1580342400)/"
    assert employer["Address"] == SEED_000["Employer"]["Address"]
    [reference] = shown["References"]["results"]
    assert reference["name"] == "Tony Doe" and reference["primaryPhone"] == "2024456655"
    assert reference["Address"] == {"__deferred": {"uri": f"References(id={reference['id']})/Address"}}
    assert {k: shown["CreditScore"][k] for k in SEED_000["CreditScore"]} == SEED_000["CreditScore"]
    [account] = shown["PaymentAccounts"]["results"]
    assert account["title"] == "Checking Account"
    assert "__deferred" in account["CheckingAccount"]  # the token is kept, never shown
    assert shown["Loans"] == {"results": []} if "Loans" in shown and "__deferred" not in shown["Loans"] else True


async def test_a_customer_made_through_loanpro_reads_through_canopy_and_back(
    lp: httpx.AsyncClient, api: ApiClient
) -> None:
    created = ok(
        await lp.post(CUSTOMERS, json=seed_body(customId="john-1", generationCode="customer.generationCode.jr"))
    )
    canopy = ok(await api.http.get("/customers/john-1"))
    assert canopy["phone_number"] == "+13125550100"
    assert canopy["name_suffix"] == "Jr"
    assert canopy["address_state"] == "IL" and canopy["address_country_code"] == "US"
    assert canopy["ssn"] is not None and canopy["ssn"].replace("-", "").endswith("3333")
    # Updated through Canopy, read through LoanPro.
    ok(await api.http.patch("/customers/john-1", json={"name_first": "Johnny", "phone_number": "+13125550199"}))
    number = customer_number(created)
    shown = ok(await lp.get(f"{CUSTOMERS}({number})", params={"$expand": "Phones"}))["d"]
    assert shown["firstName"] == "Johnny"
    assert shown["Phones"]["results"][0]["phone"] == "3125550199"
    assert shown["generationCode"] == "customer.generationCode.jr"


async def test_a_customer_made_through_canopy_reads_updates_and_lists_through_loanpro(
    lp: httpx.AsyncClient, api: ApiClient
) -> None:
    ok(await api.http.post("/customers", json=minimal_customer(customer_id="ada", name_suffix="III")))
    listed = ok(await lp.get(CUSTOMERS))["d"]
    assert listed["summary"] == {"start": 0, "pageSize": 50, "total": 1}
    [shown] = listed["results"]
    assert shown["customId"] == "ada" and shown["generationCode"] == "customer.generationCode.iii"
    assert shown["birthDate"] == "/Date(660787200)/"  # 1990-12-10
    number = shown["id"]
    one = ok(await lp.get(f"{CUSTOMERS}(id={number})", params={"$expand": "PrimaryAddress,Phones"}))["d"]
    assert one["PrimaryAddress"]["address1"] == "1 Main St"
    assert one["PrimaryAddress"]["state"] == "geo.state.IL"
    assert one["Phones"]["results"][0]["phone"] == "4155550123"
    updated = ok(await lp.put(f"{CUSTOMERS}({number})", json={"lastName": "Byron", "birthDate": "1990-12-11"}))
    assert updated["d"]["lastName"] == "Byron"
    canopy = ok(await api.http.get("/customers/ada"))
    assert canopy["name_last"] == "Byron" and canopy["date_of_birth"] == "1990-12-11"


async def test_list_pages_with_top_and_skip_and_nopaging(lp: httpx.AsyncClient, api: ApiClient) -> None:
    for n in range(3):
        ok(await api.http.post("/customers", json=minimal_customer(customer_id=f"c{n}", email=f"c{n}@example.com")))
    page = ok(await lp.get(CUSTOMERS, params={"$top": "2", "$skip": "1"}))["d"]
    assert [c["customId"] for c in page["results"]] == ["c1", "c2"]
    assert page["summary"] == {"start": 1, "pageSize": 2, "total": 3}
    whole = ok(await lp.get(CUSTOMERS, params={"$top": "1", "nopaging": "true"}))["d"]
    assert len(whole["results"]) == 3 and whole["summary"]["pageSize"] == 1
    loanpro_error(await lp.get(CUSTOMERS, params={"$top": "-1"}), 409, "ValidationException")


# --- nested writes ------------------------------------------------------------------------------------


async def test_nested_items_are_added_edited_by_id_and_destroyed(lp: httpx.AsyncClient) -> None:
    number = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body())))
    url = f"{CUSTOMERS}({number})"
    added = {"phone": "3125550142", "type": "customer.phoneType.home", "isPrimary": 0}
    ok(await lp.put(url, json={"Phones": {"results": [added]}}))
    phones = ok(await lp.get(f"{url}/Phones"))["d"]["results"]
    assert [p["phone"] for p in phones] == ["3125550100", "3125550142"]
    second = phones[1]["id"]
    assert second != number
    ok(await lp.put(url, json={"Phones": {"results": [{"__id": second, "__update": True, "dndEnabled": 1}]}}))
    phones = ok(await lp.get(f"{url}/Phones"))["d"]["results"]
    assert phones[1]["dndEnabled"] == 1 and phones[1]["type"] == "customer.phoneType.home"
    ok(await lp.put(url, json={"Phones": {"results": [{"__id": second, "__destroy": True}]}}))
    assert [p["phone"] for p in ok(await lp.get(f"{url}/Phones"))["d"]["results"]] == ["3125550100"]
    # The primary phone, edited by its id (the customer's): the Canopy column follows.
    ok(await lp.put(url, json={"Phones": {"results": [{"__id": number, "__update": True, "phone": "3125550177"}]}}))
    assert ok(await lp.get(f"{url}/Phones"))["d"]["results"][0]["phone"] == "3125550177"
    # A single-valued one is edited in place, keeping its id.
    before = ok(await lp.get(f"{url}/Employer"))["d"]
    ok(await lp.put(url, json={"Employer": {"title": "Chef"}}))
    after = ok(await lp.get(f"{url}/Employer"))["d"]
    assert after["id"] == before["id"] and after["title"] == "Chef" and after["companyName"] == "Chicago Dawgs Stands"


async def test_a_failed_nested_write_changes_nothing(lp: httpx.AsyncClient) -> None:
    number = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body())))
    url = f"{CUSTOMERS}({number})"
    before = ok(await lp.get(url, params={"$expand": EVERY_NAV}))["d"]
    refused = await lp.put(
        url,
        json={
            "firstName": "Changed",
            "Phones": {"results": [{"phone": "3125550142"}]},
            "References": {"results": [{"__id": 12345, "__update": True, "name": "Nobody"}]},
        },
    )
    body = loanpro_error(refused, 409, "ValidationException")
    assert "12345" in body["error"]["message"]
    after = ok(await lp.get(url, params={"$expand": EVERY_NAV}))["d"]
    assert {k: v for k, v in after.items() if k != "lastUpdate"} == {
        k: v for k, v in before.items() if k != "lastUpdate"
    }


async def test_payment_accounts_hold_processor_tokens_only(lp: httpx.AsyncClient) -> None:
    card = {"type": "paymentAccount.type.credit", "CreditCard": {"token": "tok", "cardNumber": "4111111111111111"}}
    refused = await lp.post(CUSTOMERS, json=seed_body(PaymentAccounts={"results": [card]}))
    body = loanpro_error(refused, 409, "ValidationException")
    assert "4111" not in refused.text and "token" in body["error"]["message"]
    assert ok(await lp.get(CUSTOMERS))["d"]["summary"]["total"] == 0


# --- validation and transaction warnings ---------------------------------------------------------------


async def test_validation_failures_are_loanpro_409s(lp: httpx.AsyncClient) -> None:
    for body in (
        seed_body(email=...),
        seed_body(email="not-an-email"),
        seed_body(birthDate="01/15/1970"),
        seed_body(PrimaryAddress={"address1": "1 Main", "city": "Chicago"}),
        seed_body(Phones={"results": [{"phone": "12"}]}),
        seed_body(generationCode="customer.generationCode.xx"),
    ):
        loanpro_error(await lp.post(CUSTOMERS, json=body), 409, "ValidationException")
    loanpro_error(await lp.post(CUSTOMERS, content=b"[1]", headers={"content-type": "application/json"}), 409,
                  "ValidationException")  # fmt: skip
    assert ok(await lp.get(CUSTOMERS))["d"]["summary"]["total"] == 0


async def block(api: ApiClient) -> None:
    ok(await api.http.put("/organization/settings", json={"duplicate_customer_policy": "block"}))


def other_person(**overrides: Any) -> dict[str, Any]:
    """Shares nothing compared with seed_body() but what the overrides set."""
    body = seed_body(
        firstName="Jane",
        email="jane@example.com",
        ssn="987651234" if "ssn" not in overrides else overrides.pop("ssn"),
        birthDate="1980-02-02",
        Phones={"results": [{"phone": "3125550111", "isPrimary": 1}]},
        PrimaryAddress={
            "address1": "1 Other St", "city": "Chicago", "state": "geo.state.IL", "zipcode": "60601",
            "country": "company.country.usa",
        },
        MailAddress={
            "address1": "2 Other St", "city": "Chicago", "state": "geo.state.IL", "zipcode": "60601",
            "country": "company.country.usa",
        },
    )  # fmt: skip
    body.pop("__ignoreWarnings")
    body.update(overrides)
    return body


@pytest.mark.parametrize(
    ("overrides", "text", "nested"),
    [
        ({"email": "john.doe@example.com"}, "Email already exists in the system", None),
        ({"ssn": "123453333"}, "SSN already found in the system", None),
        (
            {"Phones": {"results": [{"phone": "3125550100", "isPrimary": 1}]}},
            "(Phones) Phone already found in the system",
            ("Phones",),
        ),
        (  # another customer's primary phone as this one's other phone (the primary is the marked one)
            {"Phones": {"results": [{"phone": "3125550100", "isPrimary": 0}, {"phone": "3125550999", "isPrimary": 1}]}},
            "(Phones) Phone already found in the system",
            ("Phones",),
        ),
        (
            {"PrimaryAddress": copy.deepcopy(SEED_000["PrimaryAddress"])},
            "(PrimaryAddress) Address already found in the system",
            ("PrimaryAddress",),
        ),
        (
            {"MailAddress": {**SEED_000["MailAddress"], "address1": "201  e randolph st"}},  # the same, respelled
            "(MailAddress) Address already found in the system",
            ("MailAddress",),
        ),
    ],
)
async def test_each_duplicate_is_a_transaction_warning_waived_at_the_root_or_on_its_object(
    lp: httpx.AsyncClient, api: ApiClient, overrides: dict[str, Any], text: str, nested: tuple[str] | None
) -> None:
    await block(api)
    first = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body())))
    refused = await lp.post(CUSTOMERS, json=other_person(**copy.deepcopy(overrides)))
    body = loanpro_error(refused, 409, "TransactionWarningException")
    assert body["error"]["message"] == "Transaction warnings found."
    assert body["warnings"] == [f"{text} (Customer ID {first})."]
    if nested is not None:  # on the nested object that caused it
        waived = other_person(**copy.deepcopy(overrides))
        target = waived[nested[0]]
        (target["results"][0] if "results" in target else target)["__ignoreWarnings"] = True
        ok(await lp.post(CUSTOMERS, json=waived))
    else:  # a root field: only the root waives it; a nested flag does not
        nested_only = other_person(**copy.deepcopy(overrides))
        nested_only["PrimaryAddress"]["__ignoreWarnings"] = True
        loanpro_error(await lp.post(CUSTOMERS, json=nested_only), 409, "TransactionWarningException")
        ok(await lp.post(CUSTOMERS, json=other_person(__ignoreWarnings=True, **copy.deepcopy(overrides))))


# Each nested kind of duplicate (overrides of other_person()), and the warning it raises.
NESTED_DUPLICATES = {
    "an other phone as another's primary": (
        {"Phones": {"results": [{"phone": "3125550100", "isPrimary": 0}, {"phone": "3125550999", "isPrimary": 1}]}},
        "(Phones) Phone already found in the system",
    ),
    "an other phone as another's other phone": (
        {"Phones": {"results": [{"phone": "3125550188", "isPrimary": 1}, {"phone": "3125550177", "isPrimary": 0}]}},
        "(Phones) Phone already found in the system",
    ),
    "a mail address": (
        {"MailAddress": {**SEED_000["MailAddress"], "address1": "201  e randolph st"}},
        "(MailAddress) Address already found in the system",
    ),
}


@pytest.mark.parametrize("policy", ["warn", "off"])
@pytest.mark.parametrize(("overrides", "text"), NESTED_DUPLICATES.values(), ids=NESTED_DUPLICATES.keys())
async def test_a_nested_duplicate_is_told_under_warn_and_not_under_off(
    lp: httpx.AsyncClient, api: ApiClient, policy: str, overrides: dict[str, Any], text: str
) -> None:
    ok(await api.http.put("/organization/settings", json={"duplicate_customer_policy": policy}))
    phones = {"results": [{"phone": "3125550100", "isPrimary": 1}, {"phone": "3125550177", "isPrimary": 0}]}
    first = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body(Phones=phones))))
    answer = ok(await lp.post(CUSTOMERS, json=other_person(**copy.deepcopy(overrides))))
    expected = [f"{text} (Customer ID {first})."] if policy == "warn" else None
    assert answer.get("warnings") == expected
    assert ok(await lp.get(CUSTOMERS))["d"]["summary"]["total"] == 2  # made, under either policy


async def test_an_other_phone_is_compared_with_every_customers_phones_both_ways(
    lp: httpx.AsyncClient, api: ApiClient
) -> None:
    """Phones beyond the primary are kept encrypted beside the row: found by a keyed hash, whichever
    face or field holds the other copy, on create, on an added item and on an item's __update."""
    await block(api)
    two_phones = {"results": [{"phone": "3125550100", "isPrimary": 1}, {"phone": "3125550177", "isPrimary": 0}]}
    first = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body(Phones=copy.deepcopy(two_phones)))))
    expected = [f"(Phones) Phone already found in the system (Customer ID {first})."]

    # Its other phone as a new customer's primary, then as a new customer's other phone.
    as_primary = other_person(Phones={"results": [{"phone": "3125550177", "isPrimary": 1}]})
    assert (
        loanpro_error(await lp.post(CUSTOMERS, json=as_primary), 409, "TransactionWarningException")["warnings"]
        == expected
    )
    as_other = other_person(
        Phones={"results": [{"phone": "3125550188", "isPrimary": 1}, {"phone": "+13125550177", "isPrimary": 0}]}
    )
    assert (
        loanpro_error(await lp.post(CUSTOMERS, json=as_other), 409, "TransactionWarningException")["warnings"]
        == expected
    )
    assert ok(await lp.get(CUSTOMERS))["d"]["summary"]["total"] == 1  # nothing half-written

    # An existing customer's other phone, added and edited into a taken number, is refused; nothing changes.
    second = customer_number(
        ok(await lp.post(CUSTOMERS, json=other_person(Phones={"results": [{"phone": "3125550188", "isPrimary": 1}]})))
    )
    added = {"Phones": {"results": [{"phone": "3125550177", "isPrimary": 0}]}}
    assert (
        loanpro_error(await lp.put(f"{CUSTOMERS}({second})", json=added), 409, "TransactionWarningException")[
            "warnings"
        ]
        == expected
    )
    ok(await lp.put(f"{CUSTOMERS}({second})", json={"Phones": {"results": [{"phone": "3125550199", "isPrimary": 0}]}}))
    phones = ok(await lp.get(f"{CUSTOMERS}({second})/Phones"))["d"]["results"]
    (other,) = [p for p in phones if p["phone"] == "3125550199"]
    edit = {"Phones": {"results": [{"__id": other["id"], "__update": True, "phone": "3125550100"}]}}
    assert (
        loanpro_error(await lp.put(f"{CUSTOMERS}({second})", json=edit), 409, "TransactionWarningException")["warnings"]
        == expected
    )
    after = ok(await lp.get(f"{CUSTOMERS}({second})/Phones"))["d"]["results"]
    assert sorted(p["phone"] for p in after) == ["3125550188", "3125550199"]
    # Waived on the phone itself.
    edit["Phones"]["results"][0]["__ignoreWarnings"] = True
    ok(await lp.put(f"{CUSTOMERS}({second})", json=edit))


async def test_the_same_ssn_and_birth_date_is_never_waived(lp: httpx.AsyncClient, api: ApiClient) -> None:
    await block(api)
    ok(await lp.post(CUSTOMERS, json=seed_body()))
    twin = other_person(ssn="123453333", birthDate="1970-01-15", __ignoreWarnings=True)
    body = loanpro_error(await lp.post(CUSTOMERS, json=twin), 409, "ValidationException")
    assert body["warnings"] and "SSN" in body["warnings"][0]
    assert ok(await lp.get(CUSTOMERS))["d"]["summary"]["total"] == 1


async def test_warn_policy_tells_warnings_beside_d(lp: httpx.AsyncClient) -> None:
    first = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body())))
    answer = ok(await lp.post(CUSTOMERS, json=other_person(email="john.doe@example.com")))
    assert answer["warnings"] == [f"Email already exists in the system (Customer ID {first})."]


# --- who: instance id, token, isolation, idempotency, events ---------------------------------------------


async def test_a_wrong_or_missing_instance_id_or_token_is_loanpros_401(
    lp: httpx.AsyncClient, api: ApiClient, other_api: ApiClient, pool: Any, anonymous: httpx.AsyncClient
) -> None:
    number = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body())))
    theirs = await headers_for(other_api, pool)
    for headers in ({"Autopal-Instance-ID": "1"}, theirs, {"Autopal-Instance-ID": ""}):
        loanpro_error(await lp.get(CUSTOMERS, headers=headers), 401, "UnauthorizedException")
    loanpro_error(await anonymous.get(f"{CUSTOMERS}({number})"), 401, "UnauthorizedException")
    loanpro_error(
        await anonymous.get(CUSTOMERS, headers={"Authorization": "Bearer x", **theirs}), 401, "UnauthorizedException"
    )


async def test_every_loanpro_route_is_isolated(lp: httpx.AsyncClient, other_api: ApiClient, pool: Any) -> None:
    """Another organization, with its own token and instance id, sees none of ours: 404 on every route."""
    from canopy_svc.loanpro.customers import endpoints

    number = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body())))
    other_api.http.headers.update(await headers_for(other_api, pool))
    for endpoint in endpoints:
        url = endpoint.path.format(loanpro_id=number, navigation="Phones")
        if endpoint.path.endswith("Autopal.Search()"):  # their search finds none of ours
            found = ok(await other_api.http.post(url, json={"query": {"query_string": {"query": "John"}}}))
            assert number not in [c["id"] for c in found["d"]["results"]]
        elif endpoint.method == "GET" and "{" not in endpoint.path:  # the list: theirs, without ours
            assert number not in [c["id"] for c in ok(await other_api.http.get(url))["d"]["results"]]
        elif endpoint.method == "POST":  # a create makes their own customer, with an id of their own
            theirs = customer_number(ok(await other_api.http.post(url, json=seed_body())))
            assert ok(await lp.get(CUSTOMERS))["d"]["summary"]["total"] == 1
            loanpro_error(await lp.get(f"{CUSTOMERS}({theirs})"), 404, "ODataException")
        else:
            answer = await other_api.http.request(endpoint.method, url, json={} if endpoint.method != "GET" else None)
            loanpro_error(answer, 404, "ODataException")


async def test_ids_reveal_nothing_of_other_organizations(pool: Any) -> None:
    """Random, not a shared sequence: two organizations' first customers are not neighbours."""
    rows = await pool.fetch("SELECT loanpro_random_id() AS id FROM generate_series(1, 50)")
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == 50 and all(0 < i < 2**53 for i in ids)
    assert max(ids) - min(ids) > 2**40


async def test_idempotency_keys_and_events_work_on_loanpro_writes(lp: httpx.AsyncClient, api: ApiClient) -> None:
    key = {"Idempotency-Key": "lp-create-1"}
    first = await lp.post(CUSTOMERS, json=seed_body(), headers=key)
    again = await lp.post(CUSTOMERS, json=seed_body(), headers=key)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == first.json()
    refused = await lp.post(CUSTOMERS, json=seed_body(email=...), headers={"Idempotency-Key": "lp-bad"})
    replayed = await lp.post(CUSTOMERS, json=seed_body(email=...), headers={"Idempotency-Key": "lp-bad"})
    assert refused.status_code == replayed.status_code == 409 and replayed.json() == refused.json()
    assert replayed.json()["error"]["type"] == "ValidationException"
    assert ok(await lp.get(CUSTOMERS))["d"]["summary"]["total"] == 1
    events = ok(await api.http.get("/events"))
    assert [e["type"] for e in events["results"]].count("customer_created") == 1


BAD_VALUES: list[Any] = [None, 5, "", ["a"], {"results": "x"}, "\u0000"]


def field_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field of a body, nested objects and results lists included."""
    paths = []
    if isinstance(value, dict):
        for key, inner in value.items():
            paths.append((*path, key))
            paths += field_paths(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            paths += field_paths(inner, (*path, index))
    return paths


def replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


async def test_every_field_of_seed_000_given_a_bad_value_is_taken_or_a_409_never_a_500(
    api: ApiClient, pool: Any
) -> None:
    """The create body and the same body as an update: each field, one bad value after another. A refused
    create writes nothing; nothing answers a 5xx or the Canopy envelope."""
    # Generous limits before the first request (the limiter caches them): many requests, none throttled.
    await api_clients.set_limits(pool, api.client_id, rate=1_000_000.0, burst=1_000_000)
    api.http.headers.update(await headers_for(api, pool))
    lp = api.http
    number = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body(email="base@example.com"))))
    made = 1
    for path in field_paths(SEED_000):
        for value in BAD_VALUES:
            body = replaced(seed_body(), path, value)
            for method, url in (("POST", CUSTOMERS), ("PUT", f"{CUSTOMERS}({number})")):
                answer = await lp.request(method, url, json=body)
                assert answer.status_code in (200, 409), (method, path, value, answer.text)
                if answer.status_code == 409:
                    assert set(answer.json()) <= {"error", "warnings"} and "type" in answer.json()["error"]
                elif method == "POST":
                    made += 1
    assert ok(await lp.get(CUSTOMERS, params={"nopaging": "true"}))["d"]["summary"]["total"] == made


async def test_clients_create_and_the_dev_banner_show_the_instance_id(
    database_url: str, settings: Any, pool: Any
) -> None:
    from canopy_svc import cli
    from canopy_svc.core.crypto import DataCipher

    created = await cli._create_client(database_url, "initech", "read write", DataCipher(settings.data_key))
    org_id = await pool.fetchval("SELECT id FROM organizations WHERE name = 'initech'")
    assert created["loanpro_instance_id"] == await loanpro_rules.instance_id(pool, org_id)
    banner = cli.dev_banner(created, "http://127.0.0.1:8000")
    assert f"Autopal-Instance-ID: {created['loanpro_instance_id']}" in banner


# --- delete, and seed 002's portal calls ----------------------------------------------------------------


async def test_delete_is_soft_and_refused_while_on_an_account(lp: httpx.AsyncClient, api: ApiClient) -> None:
    await linked_customer(api, await account(api, "acc-1"), "on-account")
    listed = ok(await lp.get(CUSTOMERS))["d"]["results"]
    [linked] = [c["id"] for c in listed]
    refused = await lp.delete(f"{CUSTOMERS}({linked})")
    assert "linked" in loanpro_error(refused, 409, "ValidationException")["error"]["message"]
    ok(await lp.get(f"{CUSTOMERS}({linked})"))

    number = customer_number(ok(await lp.post(CUSTOMERS, json=seed_body(customId="gone"))))
    assert ok(await lp.delete(f"{CUSTOMERS}({number})")) == {"d": {"success": True}}
    loanpro_error(await lp.get(f"{CUSTOMERS}({number})"), 404, "ODataException")
    loanpro_error(await lp.delete(f"{CUSTOMERS}({number})"), 404, "ODataException")
    loanpro_error(await lp.put(f"{CUSTOMERS}({number})", json={"firstName": "X"}), 404, "ODataException")
    assert [c["id"] for c in ok(await lp.get(CUSTOMERS))["d"]["results"]] == [linked]
    assert ok(await api.http.get("/customers/gone"))["customer_id"] == "gone"  # the Canopy face has no delete


async def test_the_portal_calls_show_addresses_phones_and_accounts(lp: httpx.AsyncClient, api: ApiClient) -> None:
    """Seed 002: a customer's details with its addresses, phones and accounts in one call."""
    await linked_customer(api, await account(api, "card-1"), "portal")
    loan_product = await api.http.post(
        "/products", json={"product_overview": {"product_name": "Term loan", "product_type": "INSTALLMENT"}}
    )
    ok(await api.http.post("/accounts", json={"account_id": "loan-1", "product_id": loan_product.json()["product_id"],
                                             "assign_customers": [{"customer_id": "portal"}]}))  # fmt: skip
    [listed] = ok(await lp.get(CUSTOMERS))["d"]["results"]
    expand = "PrimaryAddress,MailAddress,Phones,Loans,LineOfCredits"
    shown = ok(await lp.get(f"{CUSTOMERS}({listed['id']})", params={"$expand": expand}))["d"]
    [line] = shown["LineOfCredits"]["results"]
    assert line["displayId"] == "card-1" and line["title"] == "Card" and line["statusText"] == "Active"
    assert line["__metadata"]["type"] == "Entity.LineOfCredit" and isinstance(line["id"], int)
    [loan] = shown["Loans"]["results"]
    assert (
        loan["displayId"] == "loan-1" and loan["title"] == "Term loan" and loan["__metadata"]["type"] == "Entity.Loan"
    )
    assert not {"principalBalance", "payoff", "amountDue"} & set(loan)  # no ledger figures
    assert shown["MailAddress"] is None and shown["Phones"]["results"][0]["phone"] == "4155550123"
    assert ok(await lp.get(f"{CUSTOMERS}({listed['id']})/Loans"))["d"]["results"] == [loan]


async def test_search_walks_the_canopy_search_index(lp: httpx.AsyncClient, api: ApiClient) -> None:
    url = "/api/public/api/1/Customers/Autopal.Search()"
    for n, (first, last) in enumerate([("John", "Doe"), ("Johanna", "Smith"), ("Ada", "Johnson")]):
        body = minimal_customer(customer_id=f"s{n}", name_first=first, name_last=last, email=f"s{n}@example.com")
        ok(await api.http.post("/customers", json=body))
    found = ok(await lp.post(url, json={"query": {"bool": {"must": [{"query_string": {"query": "*joh*"}}]}}}))["d"]
    assert [hit["customId"] for hit in found["results"]] == ["s0", "s1", "s2"]
    assert found["summary"] == {"start": 0, "pageSize": 10, "total": 3}
    assert found["results"][0]["customerName"] == "John Doe" and found["results"][0]["primaryPhone"] == "4155550123"
    both = ok(await lp.post(url, json={"query": {"query_string": {"query": "john doe"}}}))["d"]
    assert [hit["customId"] for hit in both["results"]] == ["s0"]
    paged = ok(await lp.post(url, params={"$top": "1", "$start": "1"}, json={"query": {"match": {"name": "joh"}}}))
    assert [hit["customId"] for hit in paged["d"]["results"]] == ["s1"] and paged["d"]["summary"]["total"] == 3
    everyone = ok(await lp.post(url, json={}))["d"]
    assert everyone["summary"]["total"] == 3
    too_many = {"query": {"query_string": {"query": " ".join(f"w{i}" for i in range(11))}}}
    loanpro_error(await lp.post(url, json=too_many), 409, "ValidationException")


async def test_rate_limiting_applies_and_answers_in_loanpros_shape(api: ApiClient, pool: Any) -> None:
    await api_clients.set_limits(pool, api.client_id, rate=0.001, burst=1)  # before the first request
    api.http.headers.update(await headers_for(api, pool))
    ok(await api.http.get(CUSTOMERS))
    limited = await api.http.get(CUSTOMERS)
    loanpro_error(limited, 429, "RateLimitedException")
    assert int(limited.headers["Retry-After"]) >= 1
