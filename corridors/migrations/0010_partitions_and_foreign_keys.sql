-- Storage for years (issue 15, item 2): quotes and raw responses partitioned by month, with
-- their foreign keys back; the bodies' size kept, so a body dropped by retention still says
-- what it was (docs/storage.md).
--
-- 1. quotes is partitioned by RANGE (collected_at), raw_responses by RANGE (fetched_at): one
--    partition a month (<table>_pYYYY_MM, bounds at UTC midnight), and a default partition
--    (<table>_default) for rows no month partition takes (a survey's 2011 dates imported into
--    a fresh database, say). sendcost_month_partition() below makes a month's partition; the
--    store calls it for this month and [storage] partitions_ahead_months ahead at every
--    start and daily in serve (corridors.store.Store.ensure_partitions). Keys that must be
--    unique include the partition key: quotes (id, collected_at), raw_responses
--    (id, fetched_at); quotes' exactly-once key already held collected_at.
-- 2. The foreign keys migrations 2-4 dropped come back: quotes -> services, collection_runs,
--    imports and raw_responses; services -> corridors, firms. A foreign key into
--    raw_responses must name its whole key, so quotes, reference_rates and quarantined_quotes
--    carry the response's fetch time beside its id (raw_fetched_at; MATCH FULL: both or
--    neither). The append-only triggers of migration 4, which stood in for these keys (an id
--    once read could not disappear), go: a referenced row can no longer be deleted.
-- 3. Rows already stored move in this migration's transaction (all of them or none).

-- The month partition of ``parent`` (quotes or raw_responses) holding ``month``, created
-- unless it exists; returns its name, or NULL when it was there already or when the
-- default partition holds rows of that month (PostgreSQL would refuse the new partition:
-- they stay where they are, and a notice says so).
CREATE FUNCTION sendcost_month_partition(parent text, month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := date_trunc('month', month::timestamp) AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', month::timestamp) + interval '1 month')
                      AT TIME ZONE 'UTC';
    name text := format('%s_p%s', parent, to_char(month, 'YYYY_MM'));
    col text;
    stray boolean;
BEGIN
    col := CASE parent WHEN 'quotes' THEN 'collected_at' WHEN 'raw_responses' THEN 'fetched_at'
           END;
    IF col IS NULL THEN
        RAISE EXCEPTION 'sendcost_month_partition: % is not partitioned by month', parent;
    END IF;
    IF to_regclass(name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= $1 AND %I < $2)',
                   parent || '_default', col, col) INTO stray USING lo, hi;
    IF stray THEN
        RAISE NOTICE '% keeps its rows of % in %_default: no partition made for that month',
            parent, to_char(month, 'YYYY-MM'), parent;
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   name, parent, lo, hi);
    RETURN name;
END
$$;

-- What reads the tables goes first; it is made again below.
DROP VIEW quote_frame;

-- Foreign keys into raw_responses(id) name a key the partitioned table cannot have.
ALTER TABLE reference_rates DROP CONSTRAINT reference_rates_raw_response_id_fkey;
ALTER TABLE quarantined_quotes DROP CONSTRAINT quarantined_quotes_raw_response_id_fkey;

-- The unpartitioned tables stay, without their key names, until their rows have moved.
ALTER TABLE quotes RENAME TO quotes_before_0010;
ALTER TABLE quotes_before_0010 DROP CONSTRAINT quotes_pkey,
    DROP CONSTRAINT quotes_source_service_id_amount_usd_send_amount_collected_a_key;
DROP INDEX quotes_period;
ALTER SEQUENCE quotes_id_seq OWNED BY NONE;
ALTER TABLE raw_responses RENAME TO raw_responses_before_0010;
ALTER TABLE raw_responses_before_0010 DROP CONSTRAINT raw_responses_pkey;
DROP INDEX raw_responses_run;
ALTER SEQUENCE raw_responses_id_seq OWNED BY NONE;

CREATE TABLE raw_responses (
    id            bigint NOT NULL DEFAULT nextval('raw_responses_id_seq'),
    source        text NOT NULL,
    url           text NOT NULL,
    fetched_at    timestamptz NOT NULL,
    status        integer,
    content_type  text,
    headers       jsonb,
    content_hash  text NOT NULL,
    payload       bytea,
    run_id        bigint,
    licence       text,
    -- The body's length in bytes (NULL: none was kept, a 304's), kept when retention drops
    -- the body; body_dropped_at says when it did.
    body_size     integer,
    body_dropped_at timestamptz,
    CONSTRAINT raw_responses_pkey PRIMARY KEY (id, fetched_at)
) PARTITION BY RANGE (fetched_at);
ALTER SEQUENCE raw_responses_id_seq OWNED BY raw_responses.id;
CREATE INDEX raw_responses_run ON raw_responses (run_id);
CREATE TABLE raw_responses_default PARTITION OF raw_responses DEFAULT;

CREATE TABLE quotes (
    id                   bigint NOT NULL DEFAULT nextval('quotes_id_seq'),
    service_id           integer NOT NULL,
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
    raw_response_id      bigint,
    run_id               bigint,
    import_id            bigint,
    flags                text[] NOT NULL DEFAULT '{}',
    stored_at            timestamptz NOT NULL DEFAULT now(),
    data_kind            text NOT NULL CONSTRAINT quotes_data_kind_known
                         CHECK (data_kind IN ('survey', 'observed', 'estimate', 'emulated')),
    raw_fetched_at       timestamptz,
    CONSTRAINT quotes_pkey PRIMARY KEY (id, collected_at),
    -- Re-storing the same quote never creates a duplicate.
    CONSTRAINT quotes_once UNIQUE (source, service_id, amount_usd, send_amount, collected_at)
) PARTITION BY RANGE (collected_at);
ALTER SEQUENCE quotes_id_seq OWNED BY quotes.id;
CREATE INDEX quotes_period ON quotes (period, amount_usd);
CREATE TABLE quotes_default PARTITION OF quotes DEFAULT;

-- A partition for every month that holds rows, then the rows.
SELECT sendcost_month_partition('raw_responses', m::date) FROM (
    SELECT DISTINCT date_trunc('month', fetched_at AT TIME ZONE 'UTC') AS m
    FROM raw_responses_before_0010) months;
SELECT sendcost_month_partition('quotes', m::date) FROM (
    SELECT DISTINCT date_trunc('month', collected_at AT TIME ZONE 'UTC') AS m
    FROM quotes_before_0010) months;

INSERT INTO raw_responses (id, source, url, fetched_at, status, content_type, headers,
                           content_hash, payload, run_id, licence, body_size)
SELECT id, source, url, fetched_at, status, content_type, headers, content_hash, payload,
       run_id, licence, octet_length(payload)
FROM raw_responses_before_0010;

INSERT INTO quotes (id, service_id, period, amount_usd, send_amount, send_currency,
                    receive_currency, fee, applied_rate, reference_rate, reference_source,
                    reference_at, fx_margin_reported, total_cost_reported, received_amount,
                    fee_deducted, transparent, collected_at, source, raw_response_id, run_id,
                    import_id, flags, stored_at, data_kind, raw_fetched_at)
SELECT q.id, q.service_id, q.period, q.amount_usd, q.send_amount, q.send_currency,
       q.receive_currency, q.fee, q.applied_rate, q.reference_rate, q.reference_source,
       q.reference_at, q.fx_margin_reported, q.total_cost_reported, q.received_amount,
       q.fee_deducted, q.transparent, q.collected_at, q.source, q.raw_response_id, q.run_id,
       q.import_id, q.flags, q.stored_at, q.data_kind, r.fetched_at
FROM quotes_before_0010 q LEFT JOIN raw_responses_before_0010 r ON r.id = q.raw_response_id;

ALTER TABLE reference_rates ADD COLUMN raw_fetched_at timestamptz;
UPDATE reference_rates x SET raw_fetched_at = r.fetched_at
FROM raw_responses_before_0010 r WHERE r.id = x.raw_response_id;
ALTER TABLE quarantined_quotes ADD COLUMN raw_fetched_at timestamptz;
UPDATE quarantined_quotes x SET raw_fetched_at = r.fetched_at
FROM raw_responses_before_0010 r WHERE r.id = x.raw_response_id;

DROP TABLE quotes_before_0010;
DROP TABLE raw_responses_before_0010;

-- Rows that name a parent that is not there (written while the keys were off) are said,
-- all at once, before a key is added: the migration stops, and nothing of it stays.
DO $$
DECLARE
    lost text;
BEGIN
    SELECT string_agg(format('%s rows of %s name a %s that does not exist (e.g. id %s)',
                             n, tab, what, example), '; ')
    INTO lost
    FROM (
        SELECT 'quotes' AS tab, 'service' AS what, count(*) AS n, min(service_id) AS example
        FROM quotes q WHERE NOT EXISTS (SELECT 1 FROM services s WHERE s.id = q.service_id)
        UNION ALL
        SELECT 'quotes', 'raw response', count(*), min(raw_response_id) FROM quotes
        WHERE raw_response_id IS NOT NULL AND raw_fetched_at IS NULL
        UNION ALL
        SELECT 'quotes', 'collection run', count(*), min(run_id) FROM quotes q
        WHERE run_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM collection_runs c WHERE c.id = q.run_id)
        UNION ALL
        SELECT 'quotes', 'import', count(*), min(import_id) FROM quotes q
        WHERE import_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM imports i WHERE i.id = q.import_id)
        UNION ALL
        SELECT 'services', 'corridor', count(*), min(corridor_id) FROM services s
        WHERE NOT EXISTS (SELECT 1 FROM corridors c WHERE c.id = s.corridor_id)
        UNION ALL
        SELECT 'services', 'firm', count(*), min(firm_id) FROM services s
        WHERE NOT EXISTS (SELECT 1 FROM firms f WHERE f.id = s.firm_id)
    ) orphans WHERE n > 0;
    IF lost IS NOT NULL THEN
        RAISE EXCEPTION 'migration 0010 cannot restore the foreign keys: %', lost
            USING HINT = 'Repair or remove those rows, then run sendcost db migrate again.',
                  ERRCODE = 'foreign_key_violation';
    END IF;
END
$$;

ALTER TABLE quotes
    ADD CONSTRAINT quotes_service_id_fkey FOREIGN KEY (service_id) REFERENCES services (id),
    ADD CONSTRAINT quotes_raw_response_fkey FOREIGN KEY (raw_response_id, raw_fetched_at)
        REFERENCES raw_responses (id, fetched_at) MATCH FULL,
    ADD CONSTRAINT quotes_run_id_fkey FOREIGN KEY (run_id) REFERENCES collection_runs (id),
    ADD CONSTRAINT quotes_import_id_fkey FOREIGN KEY (import_id) REFERENCES imports (id);
ALTER TABLE reference_rates ADD CONSTRAINT reference_rates_raw_response_fkey
    FOREIGN KEY (raw_response_id, raw_fetched_at) REFERENCES raw_responses (id, fetched_at)
    MATCH FULL;
ALTER TABLE quarantined_quotes ADD CONSTRAINT quarantined_quotes_raw_response_fkey
    FOREIGN KEY (raw_response_id, raw_fetched_at) REFERENCES raw_responses (id, fetched_at)
    MATCH FULL;
ALTER TABLE services
    ADD CONSTRAINT services_corridor_id_fkey FOREIGN KEY (corridor_id) REFERENCES corridors (id),
    ADD CONSTRAINT services_firm_id_fkey FOREIGN KEY (firm_id) REFERENCES firms (id);

DROP TRIGGER corridors_append_only ON corridors;
DROP TRIGGER firms_append_only ON firms;
DROP TRIGGER services_append_only ON services;
DROP FUNCTION sendcost_append_only();

-- The quote frame, as migration 6 made it.
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
       q.collected_at,
       q.id,
       q.reference_at,
       q.fee_deducted,
       q.data_kind,
       array_to_string(q.flags, ' ') AS flags
FROM quotes q
JOIN services s ON s.id = q.service_id
JOIN corridors c ON c.id = s.corridor_id
JOIN firms f ON f.id = s.firm_id;

-- 4. rollup_quotes (migration 8) finds the quotes just written by id; in a table partitioned
--    by collection time that reads every month's index. Migration 11, which gives it its
--    present body, also defines rollup_quotes(ids, since, until), which reads only the
--    months between the times the writer names (corridors.store calls that one).
