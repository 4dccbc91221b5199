-- Diagnostic: the SQL of GET /customers?limit=12&starting_after=<cursor> deep in the table (:after is
-- the row id the cursor holds; :lim = 13, bound like the service binds it).
SELECT id, customer_id, name_prefix, name_first, name_middle, name_last, name_suffix, phone_number,
    address_line_one, address_line_two, address_city, address_state, address_zip, address_country_code,
    ssn_encrypted, ssn_hash, international_customer_id, email, date_of_birth, doing_business_as,
    business_ein, business_legal_name, created_at, updated_at
  FROM customers WHERE org_id = :org_id AND id > :after ORDER BY id ASC LIMIT :lim;
