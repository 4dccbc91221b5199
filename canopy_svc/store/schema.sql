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
-- A card issued to replace a lost or stolen one: the replaced card's Lithic token, sent to Lithic as
-- postCards' replacement_for (POST .../cards/{card_token}/replace).
ALTER TABLE cards ADD COLUMN IF NOT EXISTS replacement_for text;

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

-- Issue 11 (account search and filters): GET /customers/accounts?search_parameters= and the
-- account_status / product_type filters of the three account listings, each answered from an index
-- in row id order (store/accounts.py). What a listing filters on is copied onto the rows it pages,
-- by triggers, so every way a row is written keeps the copies (as customer_search_terms is kept):
-- an account carries its product's type, a link its account's status and type and the words it is
-- searched by (its customer's names and business name, its account's id, its product's name).
-- Old rows get the copies from the backfill at the end of this section.
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS product_type text;
ALTER TABLE customer_account_links ADD COLUMN IF NOT EXISTS account_status text;
ALTER TABLE customer_account_links ADD COLUMN IF NOT EXISTS product_type text;
ALTER TABLE customer_account_links ADD COLUMN IF NOT EXISTS search_vector tsvector;

-- A filter of statuses and types is read as one index range per (status, type) pair asked for, each
-- in row id order from the page's cursor on, merged (store/accounts.py). The range's key is one
-- number, the organization (or customer) and the pair together, compared as keyset.py compares a
-- page's group (`= ANY(ARRAY[...])`): with the owner, status and type as three columns, the planner
-- took the two equal to a value as constants, found the (org_id, id) index ordered enough, and walked
-- the organization's rows for a pair none of them had. 3 bits for the type, 2 for the status.
CREATE OR REPLACE FUNCTION canopy_listing_key(owner bigint, account_status text, product_type text)
    RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN owner * 32
           + coalesce(array_position(ARRAY['ACTIVE', 'SUSPENDED', 'CLOSED'], account_status), 0) * 8
           + coalesce(array_position(ARRAY['REVOLVING', 'INSTALLMENT', 'MIXED_RATE_INSTALLMENT',
                                           'DEFERRED_INSTALLMENT', 'FIXED_RATE_INSTALLMENT',
                                           'INVENTORY_FINANCING', 'LOGISTICS_FINANCING'], product_type), 0);
-- Live rows only, as the lists without a filter (the lifecycle section above): a deleted account's
-- rows are never read by a filtered page.
CREATE INDEX IF NOT EXISTS accounts_listing_key_id
    ON accounts (canopy_listing_key(org_id, account_status, product_type), id) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS links_org_listing_key_id
    ON customer_account_links (canopy_listing_key(org_id, account_status, product_type), id)
    WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS links_customer_listing_key_id
    ON customer_account_links (canopy_listing_key(customer_row_id, account_status, product_type), id)
    WHERE deleted_at IS NULL;

-- Punctuation is a space first: the parser's words are then the runs of letters and digits that
-- rules/customers.py's search_words makes of a query (it reads `acct-2300` as `acct` and `-2300`, a
-- signed number, and `acme.com` as one host name, which the words `2300` and `com` would not find).
-- PL/pgSQL, whose plan is kept, as canopy_search_terms is.
CREATE OR REPLACE FUNCTION canopy_link_search_vector(link_customer bigint, link_account bigint)
    RETURNS tsvector LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (SELECT to_tsvector('simple', regexp_replace(
                       c.name_first || ' ' || c.name_last || ' ' || coalesce(c.doing_business_as, '') || ' ' ||
                       a.account_id || ' ' || p.product_name, '[[:punct:][:space:][:cntrl:]]+', ' ', 'g'))
            FROM customers c, accounts a JOIN products p ON p.id = a.product_row_id
            WHERE c.id = link_customer AND a.id = link_account);
END
$$;

-- The starts of a link's words, as customer_search_terms holds a customer's, and each of them again
-- behind its account's 'STATUS/TYPE/' (upper case, which no lexeme of the lower-casing 'simple'
-- config is): a search with a filter walks one such term per (status, type) pair, so a rare status
-- among thousands of matches of a word is found in as many reads as it has matches.
CREATE TABLE IF NOT EXISTS link_search_terms (
    org_id  bigint NOT NULL,
    term    text NOT NULL,
    link_id bigint NOT NULL,
    PRIMARY KEY (org_id, term, link_id)
);

CREATE OR REPLACE FUNCTION canopy_link_search_terms(words tsvector, account_status text, product_type text)
    RETURNS text[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    plain text[] := coalesce(canopy_search_terms(words), '{}');
BEGIN
    IF account_status IS NULL OR product_type IS NULL THEN
        RETURN plain;
    END IF;
    RETURN plain || ARRAY(SELECT account_status || '/' || product_type || '/' || term FROM unnest(plain) term);
END
$$;

-- An account takes its product's type.
CREATE OR REPLACE FUNCTION canopy_account_product_type() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.product_type := (SELECT product_type FROM products WHERE id = NEW.product_row_id);
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER accounts_product_type BEFORE INSERT OR UPDATE OF product_row_id ON accounts
    FOR EACH ROW EXECUTE FUNCTION canopy_account_product_type();

-- A link takes its account's status and type and its words. FOR SHARE: an account's status changed
-- meanwhile waits for this link (and then copies itself onto it), or this link waits and reads it.
CREATE OR REPLACE FUNCTION canopy_link_listing_copies() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT a.account_status, a.product_type INTO NEW.account_status, NEW.product_type
    FROM accounts a WHERE a.id = NEW.account_row_id FOR SHARE;
    PERFORM 1 FROM customers c WHERE c.id = NEW.customer_row_id FOR SHARE;
    NEW.search_vector := canopy_link_search_vector(NEW.customer_row_id, NEW.account_row_id);
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER links_listing_copies
    BEFORE INSERT OR UPDATE OF account_row_id, customer_row_id ON customer_account_links
    FOR EACH ROW EXECUTE FUNCTION canopy_link_listing_copies();

-- A change of what a link copies reaches its links, by the indexes on their account and customer.
CREATE OR REPLACE FUNCTION canopy_account_listing_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE customer_account_links l
    SET account_status = NEW.account_status, product_type = NEW.product_type,
        search_vector = CASE WHEN OLD.account_id IS DISTINCT FROM NEW.account_id
                             THEN canopy_link_search_vector(l.customer_row_id, l.account_row_id)
                             ELSE l.search_vector END
    WHERE l.account_row_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER accounts_listing_changed
    AFTER UPDATE OF account_status, product_type, account_id ON accounts
    FOR EACH ROW WHEN ((OLD.account_status, OLD.product_type, OLD.account_id)
                       IS DISTINCT FROM (NEW.account_status, NEW.product_type, NEW.account_id))
    EXECUTE FUNCTION canopy_account_listing_changed();

CREATE OR REPLACE FUNCTION canopy_customer_links_search_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE customer_account_links l
    SET search_vector = canopy_link_search_vector(l.customer_row_id, l.account_row_id)
    WHERE l.customer_row_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER customers_links_search_changed
    AFTER UPDATE OF name_first, name_last, doing_business_as ON customers
    FOR EACH ROW WHEN ((OLD.name_first, OLD.name_last, OLD.doing_business_as)
                       IS DISTINCT FROM (NEW.name_first, NEW.name_last, NEW.doing_business_as))
    EXECUTE FUNCTION canopy_customer_links_search_changed();

-- No route changes a product; one changed by hand reaches its accounts (a scan of accounts: there is
-- no index on product_row_id, and none is worth its writes for this) and their links.
CREATE OR REPLACE FUNCTION canopy_product_listing_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET product_type = NEW.product_type WHERE product_row_id = NEW.id;
    UPDATE customer_account_links l
    SET search_vector = canopy_link_search_vector(l.customer_row_id, l.account_row_id)
    FROM accounts a WHERE a.product_row_id = NEW.id AND l.account_row_id = a.id;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER products_listing_changed
    AFTER UPDATE OF product_name, product_type ON products
    FOR EACH ROW WHEN ((OLD.product_name, OLD.product_type) IS DISTINCT FROM (NEW.product_name, NEW.product_type))
    EXECUTE FUNCTION canopy_product_listing_changed();

-- A link's terms follow its words, status and type: only what changed is deleted and written, each
-- term by its whole key (see canopy_customer_search_terms).
CREATE OR REPLACE FUNCTION canopy_link_search_terms_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_terms text[] := '{}';
    new_terms text[] := '{}';
    gone      text[];
    old_term  text;
BEGIN
    -- A deleted link (its account deleted) has no terms: a search never reads it.
    IF TG_OP <> 'INSERT' AND OLD.deleted_at IS NULL THEN
        old_terms := canopy_link_search_terms(OLD.search_vector, OLD.account_status, OLD.product_type);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.deleted_at IS NULL THEN
        new_terms := canopy_link_search_terms(NEW.search_vector, NEW.account_status, NEW.product_type);
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.org_id = NEW.org_id AND OLD.id = NEW.id THEN
        gone := ARRAY(SELECT unnest(old_terms) EXCEPT SELECT unnest(new_terms));
        new_terms := ARRAY(SELECT unnest(new_terms) EXCEPT SELECT unnest(old_terms));
        old_terms := gone;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        FOREACH old_term IN ARRAY old_terms LOOP
            DELETE FROM link_search_terms WHERE org_id = OLD.org_id AND term = old_term AND link_id = OLD.id;
        END LOOP;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO link_search_terms (org_id, term, link_id)
        SELECT NEW.org_id, new_term, NEW.id FROM unnest(new_terms) new_term
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER links_search_terms_insert AFTER INSERT ON customer_account_links
    FOR EACH ROW EXECUTE FUNCTION canopy_link_search_terms_changed();
CREATE OR REPLACE TRIGGER links_search_terms_update
    AFTER UPDATE OF account_row_id, customer_row_id, search_vector, account_status, product_type, deleted_at
    ON customer_account_links
    FOR EACH ROW WHEN ((OLD.search_vector, OLD.account_status, OLD.product_type, OLD.deleted_at IS NULL)
                       IS DISTINCT FROM (NEW.search_vector, NEW.account_status, NEW.product_type,
                                         NEW.deleted_at IS NULL))
    EXECUTE FUNCTION canopy_link_search_terms_changed();
CREATE OR REPLACE TRIGGER links_search_terms_delete AFTER DELETE ON customer_account_links
    FOR EACH ROW EXECUTE FUNCTION canopy_link_search_terms_changed();

-- Backfill of rows written before this section: a no-op once done (it reads each table once when the
-- schema is applied again; only rows without their copies are written). An account's new product type
-- reaches its links through accounts_listing_changed; `account_row_id = account_row_id` runs a link's
-- own trigger for its words.
UPDATE accounts a SET product_type = p.product_type
FROM products p WHERE p.id = a.product_row_id AND a.product_type IS NULL;
UPDATE customer_account_links SET account_row_id = account_row_id WHERE search_vector IS NULL;

-- Issue 11 (customer fields): customer_type, verification_status, title, passport, customer_parent_id,
-- and business_details' type, classification, website and controller. Old rows are people, unverified
-- (a row with business_details stays `person`: what it was before the field existed).
ALTER TABLE customers ADD COLUMN IF NOT EXISTS customer_type text NOT NULL DEFAULT 'person'
    CHECK (customer_type IN ('person', 'business'));
ALTER TABLE customers ADD COLUMN IF NOT EXISTS verification_status text NOT NULL DEFAULT 'unverified'
    CHECK (verification_status IN ('unverified', 'pending', 'retry', 'document', 'verified', 'failed', 'suspended'));
ALTER TABLE customers ADD COLUMN IF NOT EXISTS title text CHECK (char_length(title) <= 255);
-- The passport number only AES-GCM encrypted (context "passport"), as the SSN is.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS passport_number_encrypted bytea;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS passport_country text CHECK (passport_country ~ '^[A-Z]{2}$');
-- Another customer of the same organization (rules/customers.py checks it exists; customers are never
-- deleted but with their organization, so it stays so).
ALTER TABLE customers ADD COLUMN IF NOT EXISTS customer_parent_id text
    CHECK (char_length(customer_parent_id) BETWEEN 1 AND 255 AND customer_parent_id <> customer_id);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS business_type text CHECK (char_length(business_type) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS business_classification_id text
    CHECK (char_length(business_classification_id) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS website text CHECK (char_length(website) <= 2048);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_name_prefix text CHECK (char_length(controller_name_prefix) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_name_first text CHECK (char_length(controller_name_first) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_name_middle text CHECK (char_length(controller_name_middle) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_name_last text CHECK (char_length(controller_name_last) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_name_suffix text CHECK (char_length(controller_name_suffix) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_title text CHECK (char_length(controller_title) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_phone_number text CHECK (char_length(controller_phone_number) <= 16);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_address_line_one text
    CHECK (char_length(controller_address_line_one) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_address_line_two text
    CHECK (char_length(controller_address_line_two) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_address_city text CHECK (char_length(controller_address_city) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_address_state text CHECK (char_length(controller_address_state) <= 255);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_address_zip text CHECK (char_length(controller_address_zip) <= 16);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_address_country_code text
    CHECK (controller_address_country_code ~ '^[A-Z]{2}$');
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_ssn_encrypted bytea;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_passport_number_encrypted bytea;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS controller_passport_country text
    CHECK (controller_passport_country ~ '^[A-Z]{2}$');

-- Issue 11 (beneficial owners): the people who own or control a customer (a business), each with a
-- person's fields as a customer has them, the SSN only AES-GCM encrypted (context "ssn") beside a keyed
-- hash of its digits, as customers keep theirs (store/ssn.py). Deleted with their customer.
CREATE TABLE IF NOT EXISTS beneficial_owners (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id               bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    customer_row_id      bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    beneficial_owner_id  text NOT NULL CHECK (char_length(beneficial_owner_id) BETWEEN 1 AND 255),
    name_prefix          text CHECK (char_length(name_prefix) <= 255),
    name_first           text NOT NULL CHECK (char_length(name_first) BETWEEN 1 AND 255),
    name_middle          text CHECK (char_length(name_middle) <= 255),
    name_last            text NOT NULL CHECK (char_length(name_last) BETWEEN 1 AND 255),
    name_suffix          text CHECK (char_length(name_suffix) <= 255),
    phone_number         text NOT NULL CHECK (char_length(phone_number) <= 16),
    address_line_one     text NOT NULL CHECK (char_length(address_line_one) BETWEEN 1 AND 255),
    address_line_two     text CHECK (char_length(address_line_two) <= 255),
    address_city         text NOT NULL CHECK (char_length(address_city) BETWEEN 1 AND 255),
    address_state        text NOT NULL CHECK (char_length(address_state) BETWEEN 1 AND 255),
    address_zip          text NOT NULL CHECK (char_length(address_zip) BETWEEN 1 AND 16),
    address_country_code text CHECK (address_country_code ~ '^[A-Z]{2}$'),
    ssn_encrypted        bytea,
    ssn_hash             bytea,
    email                text NOT NULL CHECK (char_length(email) <= 254),
    date_of_birth        date NOT NULL,
    -- Canopy names only `unverified` (every owner starts so); what verifies an owner is not ours yet.
    verification_status  text NOT NULL DEFAULT 'unverified' CHECK (char_length(verification_status) BETWEEN 1 AND 64),
    created_at           timestamptz(0) NOT NULL DEFAULT now(),
    updated_at           timestamptz(0) NOT NULL DEFAULT now(),
    -- The caller's id is unique per customer (two businesses may share an owner's id).
    CONSTRAINT beneficial_owners_customer_owner_id_key UNIQUE (org_id, customer_row_id, beneficial_owner_id),
    CONSTRAINT beneficial_owners_ssn_complete CHECK ((ssn_encrypted IS NULL) = (ssn_hash IS NULL))
);
-- A customer's owners in row id order, oldest first: the keyset of GET .../beneficial_owners.
CREATE INDEX IF NOT EXISTS beneficial_owners_org_customer_id ON beneficial_owners (org_id, customer_row_id, id);
-- What a customer's delete (its organization's, cascading) finds its owners by: without it, every
-- customer deleted scans the table.
CREATE INDEX IF NOT EXISTS beneficial_owners_customer_row_id ON beneficial_owners (customer_row_id);

-- Issue 12 (events and webhooks)
-- An event is a fact committed in the transaction of the change it tells (rules/events.py): no change
-- without its event, none without its change. `id` orders the feed (keyset paging); `event_id` is
-- the public id, and the webhook-id of every delivery of it. `data` is the object as the API answered
-- it, with SSNs and passports taken out before it is written: nothing here needs encrypting.
CREATE TABLE IF NOT EXISTS events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    event_id   text NOT NULL CHECK (char_length(event_id) BETWEEN 1 AND 64),
    type       text NOT NULL CHECK (type ~ '^[a-z][a-z_]{0,63}$'),
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS events_org_event_id ON events (org_id, event_id);
CREATE INDEX IF NOT EXISTS events_org_id_id ON events (org_id, id);
CREATE INDEX IF NOT EXISTS events_org_type_id ON events (org_id, type, id);
-- The retention purge deletes the oldest first (CANOPY_SVC_EVENT_RETENTION_DAYS).
CREATE INDEX IF NOT EXISTS events_created_at ON events (created_at);

-- A subscription's signing secret (whsec_<base64>) is kept only AES-GCM encrypted, bound to its
-- subscription_id (rules/webhooks.py); it is answered once, by the PUT that makes it.
CREATE TABLE IF NOT EXISTS webhook_subscriptions (
    id                            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id                        bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    subscription_id               text NOT NULL CHECK (char_length(subscription_id) BETWEEN 1 AND 64),
    webhook_url                   text NOT NULL CHECK (char_length(webhook_url) BETWEEN 1 AND 2048),
    filter_events                 text[],  -- NULL: every type
    failure_notification_endpoint text CHECK (char_length(failure_notification_endpoint) <= 2048),
    secret_encrypted              bytea NOT NULL,
    active                        boolean NOT NULL DEFAULT true,
    created_at                    timestamptz NOT NULL DEFAULT now(),
    updated_at                    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS webhook_subscriptions_org_subscription_id
    ON webhook_subscriptions (org_id, subscription_id);
CREATE INDEX IF NOT EXISTS webhook_subscriptions_org_id_id ON webhook_subscriptions (org_id, id);

-- One row per (subscription, event): the outbox the delivery worker drains (workers/deliveries.py)
-- with FOR UPDATE SKIP LOCKED. A claim pushes next_attempt_at past its lease, so a worker that dies
-- mid-POST leaves the delivery to be tried again (at least once; the receiver dedups by webhook-id).
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id              bigint NOT NULL,
    subscription_row_id bigint NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_row_id        bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    state               text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_status         integer,  -- the receiver's last HTTP status; NULL: no answer (timeout, refused)
    last_error          text CHECK (char_length(last_error) <= 500),
    last_response       text CHECK (char_length(last_response) <= 4096),  -- at most 4 KB of the last answer
    failure_notified    boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,  -- delivered or failed
    UNIQUE (subscription_row_id, event_row_id)
);
-- What the worker claims and sleeps until: the due pending deliveries, oldest due first.
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
-- replay_failed_events reads an organization's failed set; the purge reads finished rows by age.
CREATE INDEX IF NOT EXISTS webhook_deliveries_org_failed ON webhook_deliveries (org_id, id) WHERE state = 'failed';
CREATE INDEX IF NOT EXISTS webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE state <> 'pending';
-- The cascade from a purged event finds its deliveries here.
CREATE INDEX IF NOT EXISTS webhook_deliveries_event ON webhook_deliveries (event_row_id);

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

-- Issue 13 item 4 (state follows Lithic: its signed webhooks, and the reconciler's read-backs)
-- Lithic's webhook signing secret (whsec_...), AES-GCM encrypted and bound to its organization
-- (rules/lithic_sync.py); NULL: webhooks naming the organization's cards are refused (401).
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS lithic_webhook_secret_encrypted bytea;
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS lithic_webhook_secret_last_four text;
-- The webhook-ids of the Lithic webhooks applied, per organization, so a retry or a replay changes
-- nothing twice; kept a week (Lithic retries a webhook for about three days).
CREATE TABLE IF NOT EXISTS lithic_webhooks_received (
    org_id      bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    webhook_id  text NOT NULL CHECK (char_length(webhook_id) BETWEEN 1 AND 255),
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, webhook_id)
);
CREATE INDEX IF NOT EXISTS lithic_webhooks_received_at ON lithic_webhooks_received (received_at);
-- When the reconciler last read the card back from Lithic (GET /v1/cards/{token}); a webhook about the
-- card sets reconcile_due_at, to read it back soon (a webhook's payload alone cannot say which of two
-- changes is the newer). Both NULL on a card never read back nor named.
ALTER TABLE cards ADD COLUMN IF NOT EXISTS reconciled_at timestamptz;
ALTER TABLE cards ADD COLUMN IF NOT EXISTS reconcile_due_at timestamptz;
CREATE INDEX IF NOT EXISTS cards_reconcile_due ON cards (reconcile_due_at) WHERE reconcile_due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS cards_token ON cards (token) WHERE token IS NOT NULL;
-- The cards whose state can change at Lithic on its own (store/lithic_sync.py RECONCILABLE): a
-- SINGLE_USE card closes after its first authorization, a MERCHANT_LOCKED one locks to its first
-- merchant, a PHYSICAL one leaves fulfillment when shipped and activated. Oldest read-back first.
CREATE INDEX IF NOT EXISTS cards_reconcilable ON cards ((coalesce(reconciled_at, '-infinity'::timestamptz)))
    WHERE status = 'ISSUED' AND ((card_type = 'SINGLE_USE' AND state = 'OPEN')
        OR (card_type = 'MERCHANT_LOCKED' AND state = 'OPEN' AND coalesce(hostname, '') = '')
        OR state IN ('PENDING_FULFILLMENT', 'PENDING_ACTIVATION'));

-- Issue 13 item 5 (Lithic account holders): the organization's enrollment setting (its Lithic config's
-- `account_holders`, as validated: wire/models.py AccountHoldersConfig), and one enrollment per customer.
-- An enrollment is the outbox of POST /v1/account_holders: its row and Idempotency-Key are committed
-- before the first call, a worker takes the call with a lease (lease_until), and a retry after a crash
-- sends the same key, so Lithic makes one account holder however often it is asked. status is Lithic's
-- answer (NULL: none yet); tokens and statuses are no PII, and nothing of the customer is copied here.
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS lithic_account_holders jsonb;
-- The same setting for the built-in simulator (simulator_config), used while the organization has no key.
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS simulator_account_holders jsonb;
CREATE TABLE IF NOT EXISTS lithic_account_holders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    customer_row_id bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    idempotency_key uuid NOT NULL UNIQUE,
    workflow        text NOT NULL CHECK (workflow IN ('KYC_BASIC', 'KYC_ADVANCED', 'KYC_EXEMPT', 'KYB_BASIC')),
    status          text CHECK (status IN ('ACCEPTED', 'PENDING_REVIEW', 'PENDING_DOCUMENT', 'PENDING_RESUBMIT',
                                           'REJECTED')),
    status_reasons  text[] NOT NULL DEFAULT '{}',
    token           uuid,
    account_token   uuid,
    attempts        integer NOT NULL DEFAULT 0,
    lease_until     timestamptz,
    created_at      timestamptz(0) NOT NULL DEFAULT now(),
    updated_at      timestamptz(0) NOT NULL DEFAULT now(),
    CONSTRAINT lithic_account_holders_customer_key UNIQUE (org_id, customer_row_id),
    CONSTRAINT lithic_account_holders_answered CHECK (status IS NULL OR token IS NOT NULL)
);
-- The account a card is sent to Lithic under, decided (and committed) before its first send: every retry
-- must be the same request under the same Idempotency-Key. NULL: not decided yet; '': none (enrollment
-- was off, or the card was sent before it was on).
ALTER TABLE cards ADD COLUMN IF NOT EXISTS sent_account_token text
    CHECK (sent_account_token = '' OR sent_account_token ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$');
-- What a customer's delete (its organization's, cascading) finds its enrollment by.
CREATE INDEX IF NOT EXISTS lithic_account_holders_customer_row_id ON lithic_account_holders (customer_row_id);

-- Issue 15 (bulk import: `canopy-svc customers import FILE --org ORG`)
-- One row per organization and file (its SHA-256): how far the import got. lines_done is written in
-- the transaction of each batch with the batch's customers and events, so a run killed anywhere
-- resumes after the last committed batch, and a row is never created twice. The counts are the
-- import's so far; finished_at is set once the file's last line is done.
CREATE TABLE IF NOT EXISTS customer_imports (
    org_id      bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    file_sha256 bytea NOT NULL CHECK (octet_length(file_sha256) = 32),
    lines_done  bigint NOT NULL DEFAULT 0,
    created     bigint NOT NULL DEFAULT 0,
    rejected    bigint NOT NULL DEFAULT 0,
    warned      bigint NOT NULL DEFAULT 0,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (org_id, file_sha256)
);

-- The LoanPro face (canopy_svc/loanpro/). Its ids are integers: drawn at random (52 bits, exact in a
-- JavaScript number) so that one organization's ids say nothing of another's or of how many there
-- are, as a shared sequence would. The instance id is what `Autopal-Instance-ID` must carry; a
-- customer's LoanPro id is unique within its organization (a repeat draw is a unique violation,
-- about one in 2^52 / customers).
CREATE OR REPLACE FUNCTION loanpro_random_id() RETURNS bigint LANGUAGE sql VOLATILE AS
$$ SELECT ('x' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 13))::bit(52)::bigint + 1 $$;
ALTER TABLE organizations ADD COLUMN IF NOT EXISTS loanpro_instance_id bigint NOT NULL DEFAULT loanpro_random_id();
CREATE UNIQUE INDEX IF NOT EXISTS organizations_loanpro_instance_id ON organizations (loanpro_instance_id);
ALTER TABLE customers ADD COLUMN IF NOT EXISTS loanpro_id bigint NOT NULL DEFAULT loanpro_random_id();
CREATE UNIQUE INDEX IF NOT EXISTS customers_org_loanpro_id ON customers (org_id, loanpro_id);
-- LoanPro's DELETE is a soft delete: the LoanPro face no longer shows the customer (the Canopy face,
-- which has no customer delete, still does).
ALTER TABLE customers ADD COLUMN IF NOT EXISTS loanpro_deleted_at timestamptz;
-- An account's LoanPro id (Loans(id) / LineOfCredits(id) in a customer's $expand).
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS loanpro_id bigint NOT NULL DEFAULT loanpro_random_id();
CREATE UNIQUE INDEX IF NOT EXISTS accounts_org_loanpro_id ON accounts (org_id, loanpro_id);
-- LoanPro's nested entities that the Canopy columns do not hold (MailAddress, ...): one row per
-- item, its LoanPro fields as JSON only AES-GCM encrypted (context "loanpro:<nav>": addresses and
-- phones are personal data), its id random like the customer's.
CREATE TABLE IF NOT EXISTS loanpro_entities (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          bigint NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    customer_row_id bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    nav             text NOT NULL CHECK (char_length(nav) BETWEEN 1 AND 64),
    item_id         bigint NOT NULL DEFAULT loanpro_random_id(),
    body_encrypted  bytea NOT NULL,
    created_at      timestamptz(0) NOT NULL DEFAULT now(),
    CONSTRAINT loanpro_entities_item_key UNIQUE (customer_row_id, nav, item_id)
);
-- A MailAddress's keyed hash (address1, zipcode, country, normalized), for the duplicate check
-- LoanPro makes on it: equal addresses found without decrypting any.
ALTER TABLE loanpro_entities ADD COLUMN IF NOT EXISTS match_hash bytea;
-- In creation order, so the check reads the first five of a value however many items share it (an
-- apartment block's mail address, a family's phone): without an order it read every one, then
-- sorted. (An order by id alone would let the planner walk the primary key and filter, as
-- customers_dup_*_at explain.)
DROP INDEX IF EXISTS loanpro_entities_match;
CREATE INDEX IF NOT EXISTS loanpro_entities_match_at ON loanpro_entities (org_id, nav, match_hash, created_at, id)
    WHERE match_hash IS NOT NULL;
