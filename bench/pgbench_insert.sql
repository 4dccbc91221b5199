-- The INSERT of POST /customers (canopy_svc/store/customers.py `_INSERT`): same table, same 22 columns
-- bound as parameters (-M prepared), same RETURNING list. One autocommit transaction per row.
-- :org_id comes from -D; :n is per-client state (-D n=0, incremented here), so customer_id
-- (= :tag * 10^12 + :client_id * 10^9 + :n) is unique per transaction and never one of the loaded ids.
\set n :n + 1
\set cid :tag * 1000000000000 + :client_id * 1000000000 + :n
\set phone 2000000 + (:client_id * 1000000 + :n) % 8000000
INSERT INTO customers (org_id, customer_id, name_prefix, name_first, name_middle, name_last, name_suffix,
    phone_number, address_line_one, address_line_two, address_city, address_state, address_zip,
    address_country_code, ssn_encrypted, ssn_hash, international_customer_id, email, date_of_birth,
    doing_business_as, business_ein, business_legal_name)
  VALUES (:org_id, :cid, NULL, 'Pat', NULL, 'Bench', NULL,
    '+1' || :area || :phone, :cid || ' Bench Street', NULL, 'Springfield', 'IL', '62704',
    'US', NULL, NULL, NULL, 'p' || :cid || '@bench.example.com', '1985-06-20',
    NULL, NULL, NULL)
  RETURNING id, customer_id, name_prefix, name_first, name_middle, name_last, name_suffix, phone_number,
    address_line_one, address_line_two, address_city, address_state, address_zip, address_country_code,
    ssn_encrypted, ssn_hash, international_customer_id, email, date_of_birth, doing_business_as,
    business_ein, business_legal_name, created_at, updated_at;
