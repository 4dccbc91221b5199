-- The INSERT of POST /customers (canopy_svc/store/customers.py `_INSERT`): same table, same 45 columns
-- bound as parameters (-M prepared), same RETURNING list. One autocommit transaction per row.
-- :org_id comes from -D; :n is per-client state (-D n=0, incremented here), so customer_id
-- (= :tag * 10^12 + :client_id * 10^9 + :n) is unique per transaction and never one of the loaded ids.
\set n :n + 1
\set cid :tag * 1000000000000 + :client_id * 1000000000 + :n
\set phone 2000000 + (:client_id * 1000000 + :n) % 8000000
INSERT INTO customers (org_id, customer_id, name_prefix, name_first, name_middle, name_last,
    name_suffix, phone_number, address_line_one, address_line_two, address_city, address_state,
    address_zip, address_country_code, ssn_encrypted, ssn_hash, international_customer_id, email,
    date_of_birth, doing_business_as, business_ein, business_legal_name, business_type,
    business_classification_id, website, controller_name_prefix, controller_name_first,
    controller_name_middle, controller_name_last, controller_name_suffix, controller_title,
    controller_phone_number, controller_address_line_one, controller_address_line_two,
    controller_address_city, controller_address_state, controller_address_zip,
    controller_address_country_code, controller_ssn_encrypted, controller_passport_number_encrypted,
    controller_passport_country, customer_type, verification_status, title, passport_number_encrypted,
    passport_country, customer_parent_id)
  VALUES (:org_id, :cid, NULL, 'Pat', NULL, 'Bench', NULL,
    '+1' || :area || :phone, :cid || ' Bench Street', NULL, 'Springfield', 'IL', '62704',
    'US', NULL, NULL, NULL, 'p' || :cid || '@bench.example.com', '1985-06-20',
    NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, 'person', 'unverified', NULL, NULL, NULL, NULL)
  RETURNING id, customer_id, name_prefix, name_first, name_middle, name_last, name_suffix, phone_number,
    address_line_one, address_line_two, address_city, address_state, address_zip, address_country_code,
    ssn_encrypted, ssn_hash, international_customer_id, email, date_of_birth, doing_business_as,
    business_ein, business_legal_name, business_type, business_classification_id, website,
    controller_name_prefix, controller_name_first, controller_name_middle, controller_name_last,
    controller_name_suffix, controller_title, controller_phone_number, controller_address_line_one,
    controller_address_line_two, controller_address_city, controller_address_state,
    controller_address_zip, controller_address_country_code, controller_ssn_encrypted,
    controller_passport_number_encrypted, controller_passport_country, customer_type,
    verification_status, title, passport_number_encrypted, passport_country, customer_parent_id,
    created_at, updated_at;
