-- canopy-svc schema: the single source of truth. Applied at every start and by `canopy-svc migrate`,
-- so every statement is idempotent. Data changes that DDL cannot express live in
-- canopy_svc/migrations.py, keyed by the version recorded in schema_version.

CREATE TABLE IF NOT EXISTS schema_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- A tenant. Every other row hangs off one, and every query filters by org_id.
CREATE TABLE IF NOT EXISTS organizations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 255),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- API clients: the secret is kept only as a scrypt hash (see canopy_svc/passwords.py).
CREATE TABLE IF NOT EXISTS api_clients (
    client_id   text PRIMARY KEY CHECK (char_length(client_id) BETWEEN 1 AND 64),
    org_id      bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    secret_hash text NOT NULL,
    scopes      text NOT NULL DEFAULT 'read write',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS api_clients_org_id ON api_clients (org_id);

CREATE TABLE IF NOT EXISTS customers (
    -- Internal, monotonic: the keyset for paging ("oldest first") and the target of foreign keys.
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id                    bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    customer_id               text NOT NULL CHECK (char_length(customer_id) BETWEEN 1 AND 255),
    name_prefix               text CHECK (char_length(name_prefix) <= 255),
    name_first                text NOT NULL CHECK (char_length(name_first) BETWEEN 1 AND 255),
    name_middle               text CHECK (char_length(name_middle) <= 255),
    name_last                 text NOT NULL CHECK (char_length(name_last) BETWEEN 1 AND 255),
    name_suffix               text CHECK (char_length(name_suffix) <= 255),
    phone_number              text NOT NULL CHECK (char_length(phone_number) <= 16),
    address_line_one          text NOT NULL CHECK (char_length(address_line_one) BETWEEN 1 AND 255),
    address_line_two          text CHECK (char_length(address_line_two) <= 255),
    address_city              text NOT NULL CHECK (char_length(address_city) BETWEEN 1 AND 255),
    address_state             text NOT NULL CHECK (char_length(address_state) BETWEEN 1 AND 255),
    address_zip               text NOT NULL CHECK (char_length(address_zip) BETWEEN 1 AND 16),
    address_country_code      text CHECK (address_country_code ~ '^[A-Z]{2}$'),
    ssn                       text CHECK (char_length(ssn) <= 11),
    international_customer_id text CHECK (char_length(international_customer_id) <= 255),
    email                     text NOT NULL CHECK (char_length(email) <= 254),
    date_of_birth             date NOT NULL,
    business_legal_name       text CHECK (char_length(business_legal_name) <= 255),
    doing_business_as         text CHECK (char_length(doing_business_as) <= 255),
    business_ein              text CHECK (char_length(business_ein) <= 17),
    created_at                timestamptz(0) NOT NULL DEFAULT now(),
    updated_at                timestamptz(0) NOT NULL DEFAULT now(),
    -- Words searched by GET /customers?search_parameters= (prefix match, see store/customers.py).
    -- The embedded PostgreSQL has no pg_trgm; the built-in 'simple' text search config lowercases
    -- and does no stemming, which is what matching names at their start needs.
    search_vector             tsvector GENERATED ALWAYS AS (
        to_tsvector('simple',
            coalesce(name_first, '') || ' ' || coalesce(name_last, '') || ' ' ||
            coalesce(doing_business_as, '') || ' ' || coalesce(business_legal_name, ''))
    ) STORED,
    CONSTRAINT customers_org_customer_id_key UNIQUE (org_id, customer_id),
    CONSTRAINT customers_business_complete CHECK ((doing_business_as IS NULL) = (business_ein IS NULL))
);
-- Keyset paging within one organization: the millionth page reads what the first does.
CREATE INDEX IF NOT EXISTS customers_org_id_id ON customers (org_id, id);
CREATE INDEX IF NOT EXISTS customers_search_vector ON customers USING gin (search_vector);
