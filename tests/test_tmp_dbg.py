from tests.helpers import ApiClient, minimal_customer


async def test_dbg(api: ApiClient) -> None:
    await api.http.post(
        "/products", json={"product_id": "p", "product_overview": {"product_name": "P", "product_type": "REVOLVING"}}
    )
    await api.http.post("/customers", json=minimal_customer(customer_id="0"))
    r = await api.http.post(
        "/accounts",
        json={"account_id": "a", "product_id": "p", "assign_customers": [{"customer_id": "0"}, {"customer_id": 0}]},
    )
    print(r.status_code, r.text)
    r = await api.http.post(
        "/customers",
        json=minimal_customer(
            customer_id="1", assign_to_accounts=[{"account_id": "a"}, {"account_id": 5}, {"account_id": "5"}]
        ),
    )
    print(r.status_code, r.text)
