-- sendcost schema, version 1: reference data, the quote store, provenance of every fetch.

CREATE TABLE countries (
    alpha3        text PRIMARY KEY CHECK (alpha3 ~ '^[A-Z]{3}$'),
    alpha2        text NOT NULL,
    name          text NOT NULL,
    region        text,
    income_group  text,
    g8            boolean NOT NULL DEFAULT false,
    g20           boolean NOT NULL DEFAULT false,
    currency      text
);

CREATE TABLE currencies (
    code     text PRIMARY KEY CHECK (code ~ '^[A-Z]{3}$'),
    name     text NOT NULL,
    numeric  text
);

CREATE TABLE corridors (
    id                serial PRIMARY KEY,
    source_code       text NOT NULL,
    destination_code  text NOT NULL,
    UNIQUE (source_code, destination_code)
);

CREATE TABLE firms (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    firm_type  text NOT NULL,
    UNIQUE (name, firm_type)
);

CREATE TABLE services (
    id            serial PRIMARY KEY,
    service_key   text NOT NULL UNIQUE,
    corridor_id   integer NOT NULL REFERENCES corridors(id),
    firm_id       integer NOT NULL REFERENCES firms(id),
    product       text NOT NULL DEFAULT '',
    pay_in        text,
    pay_out       text,
    access_point  text,
    speed         text
);
CREATE INDEX services_corridor ON services (corridor_id);

-- Every fetch from an upstream, kept before parsing: a parser fix is a re-parse.
CREATE TABLE raw_responses (
    id            bigserial PRIMARY KEY,
    source        text NOT NULL,
    url           text NOT NULL,
    fetched_at    timestamptz NOT NULL,
    status        integer,
    content_type  text,
    headers       jsonb,
    content_hash  text NOT NULL,
    payload       bytea,
    run_id        bigint,
    licence       text
);
CREATE INDEX raw_responses_run ON raw_responses (run_id);

CREATE TABLE collection_runs (
    id                  bigserial PRIMARY KEY,
    source              text NOT NULL,
    started_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    status              text NOT NULL DEFAULT 'running'
                        CHECK (status IN ('running', 'ok', 'partial', 'failed')),
    requests            integer NOT NULL DEFAULT 0,
    quotes_stored       integer NOT NULL DEFAULT 0,
    quotes_quarantined  integer NOT NULL DEFAULT 0,
    errors              jsonb NOT NULL DEFAULT '{}'::jsonb,
    message             text,
    reparse_of          bigint REFERENCES collection_runs(id)
);
CREATE INDEX collection_runs_source ON collection_runs (source, started_at DESC);

CREATE TABLE imports (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,
    path          text NOT NULL,
    file_hash     text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'ok', 'failed')),
    rows_read     integer NOT NULL DEFAULT 0,
    quotes_stored integer NOT NULL DEFAULT 0,
    rejected      jsonb NOT NULL DEFAULT '[]'::jsonb,
    summary       jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE quotes (
    id                   bigserial PRIMARY KEY,
    service_id           integer NOT NULL REFERENCES services(id),
    period               text NOT NULL,
    amount_usd           smallint NOT NULL,
    send_amount          numeric NOT NULL,
    send_currency        text NOT NULL,
    receive_currency     text,
    fee                  numeric,
    applied_rate         numeric,
    reference_rate       numeric,
    reference_source     text,
    reference_at         timestamptz,
    fx_margin_reported   numeric,
    total_cost_reported  numeric,
    received_amount      numeric,
    fee_deducted         boolean,
    transparent          boolean NOT NULL,
    collected_at         timestamptz NOT NULL,
    source               text NOT NULL,
    raw_response_id      bigint REFERENCES raw_responses(id),
    run_id               bigint REFERENCES collection_runs(id),
    import_id            bigint REFERENCES imports(id),
    flags                text[] NOT NULL DEFAULT '{}',
    stored_at            timestamptz NOT NULL DEFAULT now(),
    -- Re-storing the same quote never creates a duplicate.
    UNIQUE (source, service_id, amount_usd, send_amount, collected_at)
);
-- "All quotes of a period" and "latest quotes of a service/corridor".
CREATE INDEX quotes_period ON quotes (period, amount_usd);
CREATE INDEX quotes_service_latest ON quotes (service_id, collected_at DESC);

CREATE TABLE reference_rates (
    id               bigserial PRIMARY KEY,
    source           text NOT NULL,
    base             text NOT NULL,
    quote            text NOT NULL,
    rate             numeric NOT NULL CHECK (rate > 0),
    as_of            timestamptz NOT NULL,
    fetched_at       timestamptz NOT NULL DEFAULT now(),
    raw_response_id  bigint REFERENCES raw_responses(id),
    UNIQUE (source, base, quote, as_of)
);
CREATE INDEX reference_rates_latest ON reference_rates (base, quote, as_of DESC);

-- Quotes that failed plausibility: kept with the reason, never stored as good.
CREATE TABLE quarantined_quotes (
    id               bigserial PRIMARY KEY,
    source           text NOT NULL,
    run_id           bigint REFERENCES collection_runs(id),
    raw_response_id  bigint REFERENCES raw_responses(id),
    reason           text NOT NULL,
    field            text,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantined_quotes_run ON quarantined_quotes (run_id);

-- The quote frame (corridors/frame.py) as SQL: what metrics read from the store.
CREATE VIEW quote_frame AS
SELECT q.period,
       c.source_code,
       c.destination_code,
       f.name AS firm,
       f.firm_type,
       s.product,
       s.service_key AS service_id,
       s.speed,
       s.pay_in,
       s.pay_out,
       s.access_point,
       q.amount_usd::integer AS amount_usd,
       q.send_amount::float8 AS send_amount,
       q.send_currency,
       q.receive_currency,
       q.fee::float8 AS fee,
       q.applied_rate::float8 AS applied_rate,
       q.reference_rate::float8 AS reference_rate,
       q.reference_source,
       q.fx_margin_reported::float8 AS fx_margin_reported,
       q.total_cost_reported::float8 AS total_cost_reported,
       q.received_amount::float8 AS received_amount,
       q.transparent,
       ('reference_stale' = ANY (q.flags)) AS reference_stale,
       q.source,
       q.collected_at
FROM quotes q
JOIN services s ON s.id = q.service_id
JOIN corridors c ON c.id = s.corridor_id
JOIN firms f ON f.id = s.firm_id;
