-- leadflow's tables. Every table carries org_id, and every reference between
-- records is a composite (org_id, id) foreign key, so that a row can never
-- point into another org. Normalized duplicate-check values are stored beside
-- each record with the "C" collation, so that exact and first_n rules are
-- btree lookups (= and LIKE 'prefix%') and last_n rules use the reverse()
-- indexes.

CREATE TABLE org_settings (
    org_id     text PRIMARY KEY,
    settings   jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leads (
    org_id             text NOT NULL,
    id                 text NOT NULL,
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'qualified', 'disqualified')),
    process_stage      text NOT NULL DEFAULT 'qualify' CHECK (process_stage IN ('qualify', 'develop')),
    topic              text,
    first_name         text,
    last_name          text,
    company            text,
    job_title          text,
    email              text,
    business_phone     text,
    mobile_phone       text,
    website            text,
    street1            text,
    street2            text,
    street3            text,
    city               text,
    state_province     text,
    postal_code        text,
    country            text,
    description        text,
    source             text,
    budget_amount      numeric,
    purchase_timeframe text,
    owner_id           text,
    custom             jsonb NOT NULL DEFAULT '{}',
    customer_type      text,
    account_id         uuid,
    contact_id         uuid,
    opportunity_ids    uuid[] NOT NULL DEFAULT '{}',
    conversion         jsonb,
    disqualify_reason  text,
    qualified_at       timestamptz,
    disqualified_at    timestamptz,
    reactivated_at     timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

CREATE TABLE accounts (
    org_id         text NOT NULL,
    id             uuid NOT NULL,
    lead_id        text,
    name           text,
    website        text,
    phone          text,
    street1        text,
    street2        text,
    street3        text,
    city           text,
    state_province text,
    postal_code    text,
    country        text,
    owner_id       text,
    custom         jsonb NOT NULL DEFAULT '{}',
    name_norm      text COLLATE "C" NOT NULL DEFAULT '',
    website_norm   text COLLATE "C" NOT NULL DEFAULT '',
    phone_norm     text COLLATE "C" NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, lead_id) REFERENCES leads (org_id, id)
);
CREATE INDEX accounts_name_norm ON accounts (org_id, name_norm);
CREATE INDEX accounts_website_norm ON accounts (org_id, website_norm);
CREATE INDEX accounts_phone_norm ON accounts (org_id, phone_norm);
CREATE INDEX accounts_name_norm_rev ON accounts (org_id, reverse(name_norm));
CREATE INDEX accounts_website_norm_rev ON accounts (org_id, reverse(website_norm));
CREATE INDEX accounts_phone_norm_rev ON accounts (org_id, reverse(phone_norm));

CREATE TABLE contacts (
    org_id              text NOT NULL,
    id                  uuid NOT NULL,
    lead_id             text,
    account_id          uuid,
    first_name          text,
    last_name           text,
    job_title           text,
    email               text,
    business_phone      text,
    mobile_phone        text,
    street1             text,
    street2             text,
    street3             text,
    city                text,
    state_province      text,
    postal_code         text,
    country             text,
    owner_id            text,
    custom              jsonb NOT NULL DEFAULT '{}',
    email_norm          text COLLATE "C" NOT NULL DEFAULT '',
    business_phone_norm text COLLATE "C" NOT NULL DEFAULT '',
    mobile_phone_norm   text COLLATE "C" NOT NULL DEFAULT '',
    first_name_norm     text COLLATE "C" NOT NULL DEFAULT '',
    last_name_norm      text COLLATE "C" NOT NULL DEFAULT '',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, lead_id) REFERENCES leads (org_id, id),
    FOREIGN KEY (org_id, account_id) REFERENCES accounts (org_id, id)
);
CREATE INDEX contacts_account ON contacts (org_id, account_id);
CREATE INDEX contacts_email_norm ON contacts (org_id, email_norm);
CREATE INDEX contacts_business_phone_norm ON contacts (org_id, business_phone_norm);
CREATE INDEX contacts_mobile_phone_norm ON contacts (org_id, mobile_phone_norm);
CREATE INDEX contacts_first_name_norm ON contacts (org_id, first_name_norm);
CREATE INDEX contacts_last_name_norm ON contacts (org_id, last_name_norm);
CREATE INDEX contacts_email_norm_rev ON contacts (org_id, reverse(email_norm));
CREATE INDEX contacts_business_phone_norm_rev ON contacts (org_id, reverse(business_phone_norm));
CREATE INDEX contacts_mobile_phone_norm_rev ON contacts (org_id, reverse(mobile_phone_norm));
CREATE INDEX contacts_first_name_norm_rev ON contacts (org_id, reverse(first_name_norm));
CREATE INDEX contacts_last_name_norm_rev ON contacts (org_id, reverse(last_name_norm));

CREATE TABLE opportunities (
    org_id             text NOT NULL,
    id                 uuid NOT NULL,
    lead_id            text,
    account_id         uuid,
    contact_id         uuid,
    name               text,
    estimated_value    numeric,
    currency           text,
    close_date         date,
    budget_amount      numeric,
    purchase_timeframe text,
    stage              text NOT NULL,
    description        text,
    owner_id           text,
    custom             jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, lead_id) REFERENCES leads (org_id, id),
    FOREIGN KEY (org_id, account_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id)
);

-- A lead points at the records created from it, and they point back at the
-- lead: the lead's side is checked at commit, so that one transaction can
-- write both.
ALTER TABLE leads
    ADD FOREIGN KEY (org_id, account_id) REFERENCES accounts (org_id, id) DEFERRABLE INITIALLY DEFERRED,
    ADD FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) DEFERRABLE INITIALLY DEFERRED;

-- Notes and attachments belong to a lead and, once it is qualified, to the
-- record they were carried to. upstream_id is the id the upstream system gave
-- them; the summary note written at qualification has none.
CREATE TABLE notes (
    org_id         text NOT NULL,
    id             uuid NOT NULL,
    lead_id        text NOT NULL,
    upstream_id    text,
    kind           text NOT NULL DEFAULT 'note' CHECK (kind IN ('note', 'summary')),
    account_id     uuid,
    contact_id     uuid,
    opportunity_id uuid,
    title          text,
    body           text,
    created_at     timestamptz,
    inserted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, lead_id) REFERENCES leads (org_id, id),
    FOREIGN KEY (org_id, account_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id),
    FOREIGN KEY (org_id, opportunity_id) REFERENCES opportunities (org_id, id)
);
CREATE UNIQUE INDEX notes_upstream ON notes (org_id, lead_id, upstream_id);

CREATE TABLE attachments (
    org_id         text NOT NULL,
    id             uuid NOT NULL,
    lead_id        text NOT NULL,
    upstream_id    text NOT NULL,
    account_id     uuid,
    contact_id     uuid,
    opportunity_id uuid,
    file_name      text NOT NULL,
    mime_type      text,
    size_bytes     bigint,
    url            text,
    inserted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, lead_id) REFERENCES leads (org_id, id),
    FOREIGN KEY (org_id, account_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id),
    FOREIGN KEY (org_id, opportunity_id) REFERENCES opportunities (org_id, id)
);
CREATE UNIQUE INDEX attachments_upstream ON attachments (org_id, lead_id, upstream_id);

-- One row per (org, idempotency key): the hash of the request it was first
-- used with and the terminal event it produced, replayed for a repeat.
CREATE TABLE idempotency_keys (
    org_id        text NOT NULL,
    key           text NOT NULL,
    subject       text NOT NULL,
    request_hash  bytea NOT NULL,
    outcome       text,
    event_subject text,
    event         bytea,
    event_id      uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key)
);

-- Events committed with the transaction that caused them, published by the
-- relay in seq order and deleted once JetStream acknowledged them. org_id is
-- null for the rejection of a request too broken to name its org.
CREATE TABLE outbox (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     text,
    event_id   uuid NOT NULL,
    subject    text NOT NULL,
    payload    bytea NOT NULL,
    headers    jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
