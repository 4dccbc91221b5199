-- The key lookup of GET /customers/{id} (canopy_svc/store/customers.py `fetch`), over the loaded rows
-- (customer_id '1' .. :rows), as a prepared statement with both values bound.
\set i random(1, :rows)
SELECT id, customer_id, name_prefix, name_first, name_middle, name_last, name_suffix, phone_number,
    address_line_one, address_line_two, address_city, address_state, address_zip, address_country_code,
    ssn_encrypted, ssn_hash, international_customer_id, email, date_of_birth, doing_business_as,
    business_ein, business_legal_name, created_at, updated_at
  FROM customers WHERE org_id = :org_id AND customer_id = :i;
