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
PRODUCT: dict[str, Any] = {
    "product_id": "prod-1", "product_overview": {"product_name": "Card", "product_type": "REVOLVING"},
}  # fmt: skip
# The customer above on the product above.
ACCOUNT: dict[str, Any] = {
    "account_id": "acc-1", "product_id": PRODUCT["product_id"], "summary": {"credit_limit_cents": 500000},
    "assign_customers": [{"customer_id": CUSTOMER["customer_id"], "customer_account_role": "PRIMARY"}],
}  # fmt: skip
CARD: dict[str, Any] = {"spend_limit": 100000, "lithic": {"type": "SINGLE_USE", "memo": "One-off"}}
CARD_UPDATE: dict[str, Any] = {"state": "PAUSED"}
ORGANIZATION_SETTINGS: dict[str, Any] = {"duplicate_customer_policy": "warn"}

# The ids in paths /docs shows: those of the bodies above, so its requests reach what they create.
PATH_IDS = {
    "customer_id": CUSTOMER["customer_id"], "account_id": ACCOUNT["account_id"], "product_id": PRODUCT["product_id"],
    # Made by the server (sub_ and evt_ with 24 base62): these stand for one.
    "subscription_id": "sub_4Xq1mJ0bR7cT2vN8kP5sL3wZ", "event_id": "evt_9Hd2pL6qW1zK8mR3tY0nB5vC",
}  # fmt: skip
