"""The example bodies, written once: /docs shows them (and schemathesis sends them first), the CLI's dev
banner and the README use the customer, and the tests start from them."""

from __future__ import annotations

from typing import Any

# The example body of Canopy's create-customer page (seed 003), without assign_to_accounts.
CUSTOMER: dict[str, Any] = {
    "customer_id": "0x1234", "name_prefix": "Dr.", "name_first": "Miriam", "name_middle": "Louise",
    "name_last": "Trevino", "name_suffix": "Jr", "phone_number": "+14105556789",
    "address_line_one": "12 Strawberry Road", "address_line_two": "Suite 101", "address_city": "Atlanta",
    "address_state": "GA", "address_zip": "99999-1000", "address_country_code": "US", "ssn": "888888888",
    "international_customer_id": "9999999999", "email": "marissa@protonmail.com", "date_of_birth": "1985-06-20",
    "business_details": {"business_legal_name": "Umbrella Corporation", "doing_business_as": "Umbrella",
                         "business_ein": "888-88-8888"},
}  # fmt: skip
CUSTOMER_UPDATE: dict[str, Any] = {"email": "miriam@example.com", "address_line_two": None}
# With Canopy's policies, so /docs shows them and schemathesis stores one first.
PRODUCT: dict[str, Any] = {
    "product_id": "prod-1", "external_product_id": "ext-prod-1",
    "product_overview": {"product_name": "Card", "product_type": "REVOLVING", "product_color": "#0000FF"},
    "product_lifecycle_policies": {
        "billing_cycle_policies": {"cycle_interval": "1 month", "cycle_due_interval": "25 days",
                                   "product_time_zone": "America/New_York"},
        "default_attributes": {"default_credit_limit_cents": 300000, "default_late_fee_cents": 2500},
    },
    "promotional_policies": {"promo_len": 6, "promo_min_pay_type": "PERCENT_PRINCIPAL",
                             "promo_default_interest_rate_percent": 0, "promo_min_pay_percent": 2},
    "post_promotional_policies": {"post_promo_len": 12, "post_promo_default_interest_rate_percent": 19.99},
}  # fmt: skip
# The customer above on the product above.
ACCOUNT: dict[str, Any] = {
    "account_id": "acc-1", "product_id": PRODUCT["product_id"], "summary": {"credit_limit_cents": 500000},
    "assign_customers": [{"customer_id": CUSTOMER["customer_id"], "customer_account_role": "PRIMARY"}],
}  # fmt: skip
CARD: dict[str, Any] = {"spend_limit": 100000, "lithic": {"type": "SINGLE_USE", "memo": "One-off"}}
CARD_UPDATE: dict[str, Any] = {"state": "PAUSED"}
ACCOUNT_STATUS: dict[str, Any] = {"account_status": "SUSPENDED", "account_substatus": "DELINQUENT"}
ORGANIZATION_SETTINGS: dict[str, Any] = {"duplicate_customer_policy": "warn"}
# An owner of the customer above's business.
BENEFICIAL_OWNER: dict[str, Any] = {
    "beneficial_owner_id": "bo-1", "name_first": "Alice", "name_last": "Trevino", "phone_number": "+14105556790",
    "address_line_one": "14 Strawberry Road", "address_city": "Atlanta", "address_state": "GA",
    "address_zip": "99999", "address_country_code": "US", "ssn": "777-77-7777", "email": "alice@protonmail.com",
    "date_of_birth": "1960-03-01",
}  # fmt: skip

# The ids in paths /docs shows: those of the bodies above, so its requests reach what they create.
PATH_IDS = {
    "customer_id": CUSTOMER["customer_id"], "account_id": ACCOUNT["account_id"], "product_id": PRODUCT["product_id"],
    "beneficial_owner_id": BENEFICIAL_OWNER["beneficial_owner_id"],
    # Made by the server (sub_ and evt_ with 24 base62): these stand for one.
    "subscription_id": "sub_4Xq1mJ0bR7cT2vN8kP5sL3wZ", "event_id": "evt_9Hd2pL6qW1zK8mR3tY0nB5vC",
    "card_token": "7ef7d65c-9023-4da3-b113-3b8583fd7951",
    # The LoanPro face's: a customer's integer id (seed 002's), and one of its navigations.
    "loanpro_id": "751", "navigation": "Phones",
}  # fmt: skip
