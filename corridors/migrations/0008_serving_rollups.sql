-- What the API serves, kept up to date as quotes arrive, so that serving reads rows bounded
-- by services × periods, never the whole history of quotes (issue 15, item 1).
--
-- service_periods: one row per period × price point × service × data kind × source × whether
-- the reference rate was stale, with the sums the services frame needs (metrics.services:
-- a service's costs are the means of its quotes' costs in the period), counts of the quotes
-- behind each sum, and when they were collected. A quarter's services are its own rows and
-- its months' rows, summed.
-- latest_prices: the latest quote (by collection time, then id) of each service at each
-- send amount in a period, per data kind: what /v1/compare ranks.
-- Both are written in the transaction that writes the quotes (corridors.store), by
-- rollup_quotes(ids) below, and carry the transaction that last changed them (changed_by), by
-- which a running service reads only the rows changed since it last looked: those of the
-- transactions begun since (pg_snapshot_xmax) or under way then (pg_snapshot_xip), so that a
-- write that commits late, whatever quote ids it drew, is read all the same.

-- IEEE division, as Polars does it: a zero divisor gives ±Infinity or NaN, not an error that
-- would refuse a whole batch of quotes.
CREATE OR REPLACE FUNCTION ieee_div(a float8, b float8) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN b <> 0 OR a IS NULL OR b IS NULL THEN a / b
                WHEN a > 0 THEN 'Infinity'::float8
                WHEN a < 0 THEN '-Infinity'::float8
                ELSE 'NaN'::float8 END
$$;

CREATE TABLE service_periods (
    period          text NOT NULL,
    amount_usd      smallint NOT NULL,
    service_id      integer NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    data_kind       text NOT NULL,
    source          text NOT NULL,
    reference_stale boolean NOT NULL,
    quotes          bigint NOT NULL,
    transparent     boolean NOT NULL,  -- any of the quotes was
    fee_sum         float8, fee_n bigint NOT NULL,
    margin_sum      float8, margin_n bigint NOT NULL,
    total_sum       float8, total_n bigint NOT NULL,
    exact_sum       float8, exact_n bigint NOT NULL,
    first_collected timestamptz NOT NULL,
    last_collected  timestamptz NOT NULL,
    last_quote_id   bigint NOT NULL,
    changed_by      xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (period, amount_usd, service_id, data_kind, source, reference_stale)
);
CREATE INDEX service_periods_changed ON service_periods (changed_by);

CREATE TABLE latest_prices (
    period       text NOT NULL,
    service_id   integer NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    send_amount  numeric NOT NULL,
    data_kind    text NOT NULL,
    quote_id     bigint NOT NULL,
    collected_at timestamptz NOT NULL,
    changed_by   xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (period, service_id, send_amount, data_kind)
);
CREATE INDEX latest_prices_changed ON latest_prices (changed_by);

-- Adds the quotes of ``ids`` (just written, each once) to both tables. The per-quote costs
-- are metrics/cost.py's, in the same float8 operations in the same order.
CREATE OR REPLACE FUNCTION rollup_quotes(ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    WITH q AS (
        SELECT id, period, amount_usd, service_id, data_kind, source, collected_at,
               'reference_stale' = ANY (flags) AS reference_stale, transparent,
               ieee_div(fee::float8, send_amount::float8) * 100 AS fee_pct,
               CASE WHEN transparent THEN coalesce(fx_margin_reported::float8,
                   ieee_div(reference_rate::float8 - applied_rate::float8,
                            reference_rate::float8) * 100) END AS margin_pct,
               received_amount::float8 AS received, send_amount::float8 AS send,
               reference_rate::float8 AS ref, total_cost_reported::float8 AS total_reported
        FROM quotes WHERE id = ANY (ids)
    ), c AS (
        SELECT *, CASE WHEN transparent THEN coalesce(total_reported, fee_pct + margin_pct)
                  END AS total_pct,
               CASE WHEN transparent THEN (1 - ieee_div(received, send * ref)) * 100
                  END AS exact_pct
        FROM q
    ), grouped AS (
        SELECT period, amount_usd, service_id, data_kind, source, reference_stale,
               count(*) AS quotes, bool_or(transparent) AS transparent,
               sum(fee_pct) AS fee_sum, count(fee_pct) AS fee_n,
               sum(margin_pct) AS margin_sum, count(margin_pct) AS margin_n,
               sum(total_pct) AS total_sum, count(total_pct) AS total_n,
               sum(exact_pct) AS exact_sum, count(exact_pct) AS exact_n,
               min(collected_at) AS first_collected, max(collected_at) AS last_collected,
               max(id) AS last_quote_id
        FROM c GROUP BY 1, 2, 3, 4, 5, 6
    ), rolled AS (
        INSERT INTO service_periods AS sp SELECT * FROM grouped
        ON CONFLICT (period, amount_usd, service_id, data_kind, source, reference_stale)
        DO UPDATE SET
            quotes = sp.quotes + excluded.quotes,
            transparent = sp.transparent OR excluded.transparent,
            fee_sum = CASE WHEN excluded.fee_n = 0 THEN sp.fee_sum WHEN sp.fee_n = 0
                      THEN excluded.fee_sum ELSE sp.fee_sum + excluded.fee_sum END,
            fee_n = sp.fee_n + excluded.fee_n,
            margin_sum = CASE WHEN excluded.margin_n = 0 THEN sp.margin_sum WHEN sp.margin_n = 0
                         THEN excluded.margin_sum ELSE sp.margin_sum + excluded.margin_sum END,
            margin_n = sp.margin_n + excluded.margin_n,
            total_sum = CASE WHEN excluded.total_n = 0 THEN sp.total_sum WHEN sp.total_n = 0
                        THEN excluded.total_sum ELSE sp.total_sum + excluded.total_sum END,
            total_n = sp.total_n + excluded.total_n,
            exact_sum = CASE WHEN excluded.exact_n = 0 THEN sp.exact_sum WHEN sp.exact_n = 0
                        THEN excluded.exact_sum ELSE sp.exact_sum + excluded.exact_sum END,
            exact_n = sp.exact_n + excluded.exact_n,
            first_collected = least(sp.first_collected, excluded.first_collected),
            last_collected = greatest(sp.last_collected, excluded.last_collected),
            last_quote_id = greatest(sp.last_quote_id, excluded.last_quote_id),
            changed_by = pg_current_xact_id()
        RETURNING 1
    )
    INSERT INTO latest_prices AS lp
    SELECT DISTINCT ON (period, service_id, send_amount, data_kind)
           period, service_id, send_amount, data_kind, id, collected_at
    FROM quotes WHERE id = ANY (ids)
    ORDER BY period, service_id, send_amount, data_kind, collected_at DESC, id DESC
    ON CONFLICT (period, service_id, send_amount, data_kind) DO UPDATE
        SET quote_id = excluded.quote_id, collected_at = excluded.collected_at,
            changed_by = pg_current_xact_id()
        WHERE (excluded.collected_at, excluded.quote_id) > (lp.collected_at, lp.quote_id)
$$;

-- Every quote stored before this migration, once.
SELECT rollup_quotes(coalesce((SELECT array_agg(id) FROM quotes), '{}'));
