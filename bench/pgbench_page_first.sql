-- Diagnostic: the SQL of GET /customers?limit=12 (canopy_svc/store/customers.py `page`): 13 rows, the
-- 13th only says has_more (:lim = 13, bound like the service binds it).
SELECT id, customer_id, name_prefix, name_first, name_middle, name_last, name_suffix, phone_number,
    address_line_one, address_line_two, address_city, address_state, address_zip, address_country_code,
    ssn_encrypted, ssn_hash, international_customer_id, email, date_of_birth, doing_business_as,
    business_ein, business_legal_name, business_type, business_classification_id, website,
    controller_name_prefix, controller_name_first, controller_name_middle, controller_name_last,
    controller_name_suffix, controller_title, controller_phone_number, controller_address_line_one,
    controller_address_line_two, controller_address_city, controller_address_state,
    controller_address_zip, controller_address_country_code, controller_ssn_encrypted,
    controller_passport_number_encrypted, controller_passport_country, customer_type,
    verification_status, title, passport_number_encrypted, passport_country, customer_parent_id,
    created_at, updated_at
  FROM customers WHERE org_id = :org_id ORDER BY id ASC LIMIT :lim;
