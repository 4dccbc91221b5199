-- canopy-svc schema: the single source of truth. Applied at every start and by `canopy-svc migrate`,
-- so every statement is idempotent. Data changes that DDL cannot express live in
-- canopy_svc/store/migrations.py, keyed by the version recorded in schema_version.

CREATE TABLE IF NOT EXISTS schema_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
-- The digest of the schema.sql last applied: a start with the same file and version skips the DDL.
ALTER TABLE schema_version ADD COLUMN IF NOT EXISTS schema_sha256 text;

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
    -- The SSN only AES-GCM encrypted (context "ssn"), and an HMAC of its digits for equality lookups.
    ssn_encrypted             bytea,
    ssn_hash                  bytea,
    international_customer_id text CHECK (char_length(international_customer_id) <= 255),
    email                     text NOT NULL CHECK (char_length(email) <= 254),
    date_of_birth             date NOT NULL,
    business_legal_name       text CHECK (char_length(business_legal_name) <= 255),
    doing_business_as         text CHECK (char_length(doing_business_as) <= 255),
    business_ein              text CHECK (char_length(business_ein) <= 17),
    created_at                timestamptz(0) NOT NULL DEFAULT now(),
    updated_at                timestamptz(0) NOT NULL DEFAULT now(),
    -- Words searched by GET /customers?search_parameters= (prefix match, see store/customers.py and
    -- customer_search_terms below). The embedded PostgreSQL has no pg_trgm; the built-in 'simple'
    -- text search config lowercases and does no stemming, which is what matching names at their
    -- start needs.
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

-- The data key's check value: a process started with another key refuses to start instead of
-- answering garbage (see canopy_svc/core/crypto.py).
CREATE TABLE IF NOT EXISTS data_key_check (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key_check  bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The organization's Lithic account: the API key is AES-GCM encrypted (context "lithic_api_key").
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS lithic_api_key_encrypted bytea;
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS lithic_api_key_last_four text;
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS lithic_base_url text;

CREATE TABLE IF NOT EXISTS products (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id                    bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    product_id                text NOT NULL CHECK (char_length(product_id) BETWEEN 1 AND 255),
    product_name              text NOT NULL CHECK (char_length(product_name) BETWEEN 1 AND 255),
    product_type              text NOT NULL CHECK (product_type IN ('REVOLVING', 'INSTALLMENT',
                                  'MIXED_RATE_INSTALLMENT', 'DEFERRED_INSTALLMENT',
                                  'FIXED_RATE_INSTALLMENT', 'INVENTORY_FINANCING', 'LOGISTICS_FINANCING')),
    product_short_description text CHECK (char_length(product_short_description) <= 255),
    product_long_description  text CHECK (char_length(product_long_description) <= 4096),
    created_at                timestamptz(0) NOT NULL DEFAULT now(),
    CONSTRAINT products_org_product_id_key UNIQUE (org_id, product_id)
);
CREATE INDEX IF NOT EXISTS products_org_id_id ON products (org_id, id);

CREATE TABLE IF NOT EXISTS accounts (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id              bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    account_id          text NOT NULL CHECK (char_length(account_id) BETWEEN 1 AND 255),
    -- RESTRICT: a product with accounts on it is not deleted from under them.
    product_row_id      bigint NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    external_account_id text CHECK (char_length(external_account_id) <= 255),
    account_status      text NOT NULL DEFAULT 'ACTIVE'
                        CHECK (account_status IN ('ACTIVE', 'SUSPENDED', 'CLOSED')),
    credit_limit_cents  bigint CHECK (credit_limit_cents >= 0),
    effective_at        timestamptz(0) NOT NULL DEFAULT now(),
    created_at          timestamptz(0) NOT NULL DEFAULT now(),
    updated_at          timestamptz(0) NOT NULL DEFAULT now(),
    CONSTRAINT accounts_org_account_id_key UNIQUE (org_id, account_id),
    CONSTRAINT accounts_org_external_account_id_key UNIQUE (org_id, external_account_id)
);
CREATE INDEX IF NOT EXISTS accounts_org_id_id ON accounts (org_id, id);

-- A customer on an account, with its role and the card settings its cards are issued with.
CREATE TABLE IF NOT EXISTS customer_account_links (
    id                           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id                       bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    account_row_id               bigint NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    customer_row_id              bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    customer_account_role        text NOT NULL CHECK (customer_account_role IN ('PRIMARY', 'SECONDARY')),
    customer_account_external_id text NOT NULL
                                 CHECK (char_length(customer_account_external_id) BETWEEN 1 AND 255),
    spend_limit                  bigint CHECK (spend_limit >= 1),
    lithic_memo                  text,
    lithic_type                  text CHECK (lithic_type IN ('VIRTUAL', 'PHYSICAL', 'SINGLE_USE', 'MERCHANT_LOCKED',
                                                             'UNLOCKED')),
    lithic_state                 text CHECK (lithic_state IN ('OPEN', 'PAUSED')),
    lithic_card_program_token    uuid,
    has_lithic_config            boolean NOT NULL DEFAULT false,
    created_at                   timestamptz(0) NOT NULL DEFAULT now(),
    updated_at                   timestamptz(0) NOT NULL DEFAULT now(),
    CONSTRAINT links_account_customer_key UNIQUE (account_row_id, customer_row_id),
    CONSTRAINT links_account_external_id_key UNIQUE (account_row_id, customer_account_external_id)
);
CREATE INDEX IF NOT EXISTS links_customer_row_id ON customer_account_links (customer_row_id, id);
CREATE INDEX IF NOT EXISTS links_org_id_id ON customer_account_links (org_id, id);

-- Cards, and the outbox of card issuing: a PENDING row is committed with the link, and a worker
-- (any process) claims it with FOR UPDATE SKIP LOCKED and calls Lithic with idempotency_key, the
-- same key on every retry, so Lithic makes one card however often we ask.
CREATE TABLE IF NOT EXISTS cards (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id             bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    link_id            bigint NOT NULL REFERENCES customer_account_links (id) ON DELETE CASCADE,
    status             text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'ISSUED', 'FAILED')),
    idempotency_key    uuid NOT NULL UNIQUE,
    card_type          text NOT NULL CHECK (card_type IN ('VIRTUAL', 'PHYSICAL', 'SINGLE_USE', 'MERCHANT_LOCKED',
                                                          'UNLOCKED', 'DIGITAL_WALLET')),
    memo               text,
    state              text NOT NULL CHECK (state IN ('OPEN', 'PAUSED', 'CLOSED', 'PENDING_FULFILLMENT',
                                                      'PENDING_ACTIVATION')),
    spend_limit        bigint CHECK (spend_limit >= 1),
    card_program_token uuid,
    token              text,
    last_four          text CHECK (last_four ~ '^[0-9]{4}$'),
    error              text,
    attempts           integer NOT NULL DEFAULT 0,
    -- When the worker may (re)try: now for a new card, later after a failure or while leased.
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz(0) NOT NULL DEFAULT now(),
    updated_at         timestamptz(0) NOT NULL DEFAULT now(),
    CONSTRAINT cards_issued_complete CHECK (status <> 'ISSUED' OR (token IS NOT NULL AND last_four IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS cards_link_id ON cards (link_id, id);
CREATE INDEX IF NOT EXISTS cards_pending_due ON cards (next_attempt_at) WHERE status = 'PENDING';
-- A change of an issued card at Lithic runs in phases, so no row lock or pooled connection is held
-- across the call: the change is recorded here and committed, Lithic is called, the result is
-- recorded. A change left here past its lease (its process died mid-call) is finished by the next
-- request for the card or by the card worker: Lithic's PATCH sets absolute values, so sending it
-- again is safe. change_fields holds only what the caller sent ({"state"?, "spend_limit"?}).
ALTER TABLE cards ADD COLUMN IF NOT EXISTS change_id uuid;
ALTER TABLE cards ADD COLUMN IF NOT EXISTS change_fields jsonb;
ALTER TABLE cards ADD COLUMN IF NOT EXISTS change_started_at timestamptz;
CREATE INDEX IF NOT EXISTS cards_change_started ON cards (change_started_at) WHERE change_id IS NOT NULL;

-- Rate limits per API client (GCRA): sustained requests per second and burst.
ALTER TABLE api_clients ADD COLUMN IF NOT EXISTS rate_per_second double precision NOT NULL DEFAULT 100
    CHECK (rate_per_second > 0);
ALTER TABLE api_clients ADD COLUMN IF NOT EXISTS burst integer NOT NULL DEFAULT 100 CHECK (burst >= 1);

-- The shared limiter's buckets (canopy_svc/ratelimit.py). UNLOGGED: no WAL for state that may be lost
-- in a crash without harm (a bucket forgotten is a bucket refilled).
CREATE UNLOGGED TABLE IF NOT EXISTS rate_limit_buckets (
    key     text PRIMARY KEY,
    tat     double precision NOT NULL,
    allowed boolean NOT NULL
);
-- How many tokens the last decision granted (a worker may take a small batch at once; 0 is denied).
ALTER TABLE rate_limit_buckets ADD COLUMN IF NOT EXISTS granted integer NOT NULL DEFAULT 1;

-- Version 2: SSNs encrypted at rest. A version-1 database gets the columns here and has its clear
-- `ssn` column encrypted and dropped by migrations.py.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS ssn_encrypted bytea;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS ssn_hash bytea;

-- Duplicate customers (LoanPro's transaction warnings): the policy, and one index per compared field.
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS duplicate_customer_policy text NOT NULL DEFAULT 'warn'
    CHECK (duplicate_customer_policy IN ('warn', 'block', 'off'));

-- The primary address as compared: line one lowercased with runs of spaces folded, the postal code's
-- letters and digits (five for US ZIP+4), the country (absent means US).
CREATE OR REPLACE FUNCTION canopy_address_key(line_one text, zip text, country text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN lower(regexp_replace(btrim(line_one), '\s+', ' ', 'g')) || '|' ||
           CASE WHEN coalesce(country, 'US') IN ('US', 'PR', 'GU', 'VI', 'AS', 'MP', 'UM')
                THEN left(regexp_replace(zip, '[^0-9]', '', 'g'), 5)
                ELSE upper(regexp_replace(zip, '[^0-9A-Za-z]', '', 'g')) END || '|' ||
           coalesce(country, 'US');

-- One index per compared value, ending in created_at: each comparison asks for the oldest five
-- matches, `ORDER BY created_at LIMIT 5`, which only this index answers without reading every match,
-- so it reads five entries however many customers share the value, under every plan, with or
-- without statistics. (Ordering by id would let the planner walk the primary key and filter, which
-- reads the whole table when the shared value is a recent one.) Without an order, a popular value
-- (an apartment block, a family's phone) made the planner pick a seq scan or a bitmap scan, whose
-- cost grows with the table or with the number of customers sharing the value.
DROP INDEX IF EXISTS customers_dup_ssn;
DROP INDEX IF EXISTS customers_dup_email;
DROP INDEX IF EXISTS customers_dup_phone;
DROP INDEX IF EXISTS customers_dup_address;
CREATE INDEX IF NOT EXISTS customers_dup_ssn_at ON customers (org_id, ssn_hash, created_at) WHERE ssn_hash IS NOT NULL;
CREATE INDEX IF NOT EXISTS customers_dup_email_at ON customers (org_id, lower(email), created_at);
CREATE INDEX IF NOT EXISTS customers_dup_phone_at ON customers (org_id, phone_number, created_at);
CREATE INDEX IF NOT EXISTS customers_dup_address_at
    ON customers (org_id, canopy_address_key(address_line_one, address_zip, address_country_code), created_at);

-- Idempotency-Key: the first complete answer to a request, stored in the transaction of its work.
-- The answer may hold an SSN: it is kept only AES-GCM encrypted, bound to its row, and the request's
-- fingerprint is a keyed hash (canopy_svc/store/idempotency.py).
CREATE TABLE IF NOT EXISTS idempotency_keys (
    org_id         bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key            text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash   bytea NOT NULL,
    status         smallint NOT NULL,
    body_encrypted bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key)
);
-- Version 3: a version-2 database gets the column here; migrations.py seals its clear `body` answers
-- into it and drops `body`.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS body_encrypted bytea;
-- Expired keys (24 h) are deleted in batches by the maintenance task, oldest first.
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);

-- Version 4: search by the start of a word, bounded per page. One row per start (1 to 32 characters)
-- of each word of a customer's search_vector: a search reads one term's rows in customer row id
-- order, from the page's cursor on, and checks each customer's search_vector for the whole query
-- (store/customers.py). A GIN index over search_vector, which this replaces, gives matches in no
-- order: a shared last name sorted every match for each page, and a rare word was found by walking
-- the primary key through the whole organization. The words are names, already stored in clear in
-- customers; no other field is kept here. Kept by the triggers below, so every way a customer is
-- written (the API, COPY, psql) keeps its terms. No foreign keys: each inserted term would check
-- one, and an index on customer_row_id alone, which a cascade needs, would let the planner walk it
-- in row id order across every term; deleting a customer (or its organization) deletes its terms
-- through the trigger. A term left behind (a TRUNCATE of customers alone) costs a search one read,
-- never a wrong answer: every match is checked against the customer's own search_vector. A version-3 database gets its customers' terms from migrations.py, and its
-- GIN index customers_search_vector is dropped there once they are in.
CREATE TABLE IF NOT EXISTS customer_search_terms (
    org_id          bigint NOT NULL,
    term            text NOT NULL,
    customer_row_id bigint NOT NULL,
    PRIMARY KEY (org_id, term, customer_row_id)
);

-- The starts of a search_vector's words, up to 32 characters (store/customers.py's
-- SEARCH_TERM_LENGTH; a longer word is found by its first 32 and checked whole). PL/pgSQL and not SQL:
-- a SQL function with a subquery is planned again at every call, which the trigger makes per row.
CREATE OR REPLACE FUNCTION canopy_search_terms(words tsvector) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN ARRAY(SELECT DISTINCT left(word.lexeme, n)
                 FROM unnest(words) word, generate_series(1, least(length(word.lexeme), 32)) n);
END
$$;

CREATE OR REPLACE FUNCTION canopy_customer_search_terms() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_terms text[] := '{}';
    new_terms text[] := '{}';
    gone      text[];
    old_term  text;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        old_terms := canopy_search_terms(OLD.search_vector);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        new_terms := canopy_search_terms(NEW.search_vector);
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.org_id = NEW.org_id AND OLD.id = NEW.id THEN
        -- Only what changed: a new last name leaves the first name's terms where they are.
        gone := ARRAY(SELECT unnest(old_terms) EXCEPT SELECT unnest(new_terms));
        new_terms := ARRAY(SELECT unnest(new_terms) EXCEPT SELECT unnest(old_terms));
        old_terms := gone;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        -- One term at a time, by the whole key: with `term = ANY(old_terms)` a generic plan has kept
        -- the array as a filter and walked the organization's terms for the customer's row id.
        FOREACH old_term IN ARRAY old_terms LOOP
            DELETE FROM customer_search_terms
            WHERE org_id = OLD.org_id AND term = old_term AND customer_row_id = OLD.id;
        END LOOP;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        -- ON CONFLICT: a term the version-4 migration's backfill already wrote.
        INSERT INTO customer_search_terms (org_id, term, customer_row_id)
        SELECT NEW.org_id, new_term, NEW.id FROM unnest(new_terms) new_term
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER customers_search_terms_insert AFTER INSERT ON customers
    FOR EACH ROW EXECUTE FUNCTION canopy_customer_search_terms();
CREATE OR REPLACE TRIGGER customers_search_terms_update
    AFTER UPDATE OF name_first, name_last, doing_business_as, business_legal_name ON customers
    FOR EACH ROW WHEN (OLD.search_vector IS DISTINCT FROM NEW.search_vector)
    EXECUTE FUNCTION canopy_customer_search_terms();
CREATE OR REPLACE TRIGGER customers_search_terms_delete AFTER DELETE ON customers
    FOR EACH ROW EXECUTE FUNCTION canopy_customer_search_terms();

-- Issue 11 (account lifecycle: DELETE /accounts/{id}, PUT /accounts/{id}/status)
-- A deleted account keeps its row (its cards' history, and its account_id stays taken: a new account
-- under it would be confused with the old one in the caller's records), but every route answers 404
-- for it. Its links carry the same mark, so the lists of links skip them from an index.
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS account_substatus text CHECK (char_length(account_substatus) <= 255);
ALTER TABLE customer_account_links ADD COLUMN IF NOT EXISTS deleted_at timestamptz;
-- The lists page live rows only: a tenant that deleted thousands of accounts reads none of them.
-- Each list's group is `CASE WHEN deleted_at IS NULL THEN <group> END` (store/accounts.py), which
-- only these indexes answer: with `(org_id, id) WHERE deleted_at IS NULL`, a generic plan priced
-- it the same as the full (org_id, id) index beside it and took that one, reading every deleted row.
CREATE INDEX IF NOT EXISTS accounts_live_org_id_id
    ON accounts ((CASE WHEN deleted_at IS NULL THEN org_id END), id) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS links_live_org_id_id
    ON customer_account_links ((CASE WHEN deleted_at IS NULL THEN org_id END), id) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS links_live_customer_row_id
    ON customer_account_links ((CASE WHEN deleted_at IS NULL THEN customer_row_id END), id)
    WHERE deleted_at IS NULL;
-- The card outbox's closes: a card of a deleted or CLOSED account waits here for the worker to send
-- Lithic `PATCH /v1/cards/{token} {"state": "CLOSED"}`. close_due_at is when it may (re)try (NULL: no
-- close pending), pushed past a lease while a worker holds it, like next_attempt_at for issuing.
ALTER TABLE cards ADD COLUMN IF NOT EXISTS close_due_at timestamptz;
ALTER TABLE cards ADD COLUMN IF NOT EXISTS close_attempts integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS cards_close_due ON cards (close_due_at) WHERE close_due_at IS NOT NULL;

-- Issue 11 (products keep Canopy's policies; accounts answer as Canopy does)
-- The policy objects are JSONB encoded from the validated Structs (wire/models.py), so only fields
-- this service knows are kept. effective_at: null on products made before it, answered as created_at.
ALTER TABLE products ADD COLUMN IF NOT EXISTS external_product_id text
    CHECK (char_length(external_product_id) BETWEEN 1 AND 255);
ALTER TABLE products ADD COLUMN IF NOT EXISTS product_color text CHECK (char_length(product_color) <= 7);
ALTER TABLE products ADD COLUMN IF NOT EXISTS effective_at timestamptz(0);
ALTER TABLE products ADD COLUMN IF NOT EXISTS product_lifecycle_policies jsonb
    CHECK (jsonb_typeof(product_lifecycle_policies) = 'object');
ALTER TABLE products ADD COLUMN IF NOT EXISTS promotional_policies jsonb
    CHECK (jsonb_typeof(promotional_policies) = 'object');
ALTER TABLE products ADD COLUMN IF NOT EXISTS post_promotional_policies jsonb
    CHECK (jsonb_typeof(post_promotional_policies) = 'object');
-- Unique in the organization (NULLs are distinct), and how POST /accounts finds a product by it. A
-- constraint (store/conflicts.py maps it to its 409), which PostgreSQL cannot add IF NOT EXISTS.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'products_org_external_product_id_key') THEN
        ALTER TABLE products
            ADD CONSTRAINT products_org_external_product_id_key UNIQUE (org_id, external_product_id);
    END IF;
END
$$;

-- Canopy's limits and fees of an account; an absent one may come from the product's default_attributes.
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS max_approved_credit_limit_cents bigint
    CHECK (max_approved_credit_limit_cents >= 0);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS late_fee_cents bigint CHECK (late_fee_cents >= 0);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS payment_reversal_fee_cents bigint CHECK (payment_reversal_fee_cents >= 0);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS initial_principal_cents bigint CHECK (initial_principal_cents >= 0);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS origination_fee_cents bigint CHECK (origination_fee_cents >= 0);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS monthly_fee_cents bigint CHECK (monthly_fee_cents >= 0);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS annual_fee_cents bigint CHECK (annual_fee_cents >= 0);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS late_fee_cap_percent double precision
    CHECK (late_fee_cap_percent >= 0);
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS cycle_type jsonb CHECK (jsonb_typeof(cycle_type) = 'object');
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS external_fields jsonb NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(external_fields) = 'array' AND jsonb_array_length(external_fields) <= 10);
-- Lithic's account token, answered in issuer_processor_details; nothing records one yet.
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS lithic_account_token text CHECK (char_length(lithic_account_token) <= 255);
-- The accounts_org_external_account_id_key constraint's index serves GET /accounts/{id}?external=true.

-- Issue 13 (current card types; what Lithic answers is what is stored)
-- Lithic's card types (VIRTUAL, PHYSICAL; UNLOCKED and DIGITAL_WALLET are deprecated there but still
-- answered for old cards) and a PHYSICAL card's states. A database made before kept the narrower
-- checks of the CREATE TABLEs above: each is replaced once, found by what it does not yet allow.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'cards_card_type_check'
                   AND pg_get_constraintdef(oid) LIKE '%DIGITAL_WALLET%') THEN
        ALTER TABLE cards DROP CONSTRAINT IF EXISTS cards_card_type_check;
        ALTER TABLE cards ADD CONSTRAINT cards_card_type_check CHECK (card_type IN ('VIRTUAL', 'PHYSICAL',
            'SINGLE_USE', 'MERCHANT_LOCKED', 'UNLOCKED', 'DIGITAL_WALLET'));
    END IF;
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'cards_state_check'
                   AND pg_get_constraintdef(oid) LIKE '%PENDING_ACTIVATION%') THEN
        ALTER TABLE cards DROP CONSTRAINT IF EXISTS cards_state_check;
        ALTER TABLE cards ADD CONSTRAINT cards_state_check CHECK (state IN ('OPEN', 'PAUSED', 'CLOSED',
            'PENDING_FULFILLMENT', 'PENDING_ACTIVATION'));
    END IF;
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conname = 'customer_account_links_lithic_type_check'
                   AND pg_get_constraintdef(oid) LIKE '%PHYSICAL%') THEN
        ALTER TABLE customer_account_links DROP CONSTRAINT IF EXISTS customer_account_links_lithic_type_check;
        ALTER TABLE customer_account_links ADD CONSTRAINT customer_account_links_lithic_type_check
            CHECK (lithic_type IN ('VIRTUAL', 'PHYSICAL', 'SINGLE_USE', 'MERCHANT_LOCKED', 'UNLOCKED'));
    END IF;
END
$$;
-- While PENDING these hold what is asked of Lithic; once ISSUED, what Lithic answered (as card_type,
-- state, memo and spend_limit do). hostname: the merchant a MERCHANT_LOCKED card is locked to;
-- lithic_created: Lithic's `created`. Never the PAN or CVV.
ALTER TABLE cards ADD COLUMN IF NOT EXISTS spend_limit_duration text
    CHECK (spend_limit_duration IN ('TRANSACTION', 'MONTHLY', 'ANNUALLY', 'FOREVER'));
ALTER TABLE cards ADD COLUMN IF NOT EXISTS exp_month text CHECK (exp_month ~ '^(0[1-9]|1[0-2])$');
ALTER TABLE cards ADD COLUMN IF NOT EXISTS exp_year text CHECK (exp_year ~ '^[0-9]{4}$');
ALTER TABLE cards ADD COLUMN IF NOT EXISTS lithic_created timestamptz;
ALTER TABLE cards ADD COLUMN IF NOT EXISTS hostname text CHECK (char_length(hostname) <= 255);
-- A PHYSICAL card's request: Lithic's product_id and shipping_method, and the shipping address (a
-- name and a home address) only AES-GCM encrypted (bound to the card's idempotency key), and erased
-- once Lithic made the card or refused it.
ALTER TABLE cards ADD COLUMN IF NOT EXISTS product_id text CHECK (char_length(product_id) <= 255);
ALTER TABLE cards ADD COLUMN IF NOT EXISTS shipping_method text
    CHECK (shipping_method IN ('STANDARD', 'STANDARD_WITH_TRACKING', 'PRIORITY', 'EXPRESS', '2_DAY', 'EXPEDITED'));
ALTER TABLE cards ADD COLUMN IF NOT EXISTS shipping_address_encrypted bytea;
-- The card worker's pacing of Lithic calls per organization (CANOPY_SVC_LITHIC_MIN_INTERVAL_MS): the
-- earliest time its next call may go out, reserved by each call in one UPDATE, so every process paces
-- together; a 429's Retry-After pushes it too.
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS lithic_next_call_at timestamptz;
