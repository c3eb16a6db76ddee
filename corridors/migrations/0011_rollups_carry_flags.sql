-- The rollup of the quotes (service_periods, migration 8) carries the quotes' flags, so that
-- what the API serves from it knows a comparison feed's estimate, a price for paying by bank
-- transfer only or an approximate amount as the quotes do (issue 11). Before this, a
-- snapshot built from the rollup knew an estimate only by its data kind: the sandbox's
-- comparison feed, whose quotes are of kind 'emulated' and flagged 'estimate', could be
-- named a corridor's cheapest under ?include=emulated.
--
-- flags: every flag any of the row's quotes carries, each once, sorted (a service carries a
-- caveat when any of its quotes does, as metrics.kinds.service_caveats says).

ALTER TABLE service_periods ADD COLUMN IF NOT EXISTS flags text[] NOT NULL DEFAULT '{}';

-- Bounded by the quotes' collection times (since ... until), so that in the table migration
-- 10 partitions by month only the months written are read (corridors.store passes the
-- batch's times); rollup_quotes(ids), below, reads every month.
CREATE OR REPLACE FUNCTION rollup_quotes(ids bigint[], since timestamptz, until timestamptz)
RETURNS void
LANGUAGE sql AS $$
    WITH q AS (
        SELECT id, period, amount_usd, service_id, data_kind, source, collected_at, flags,
               'reference_stale' = ANY (flags) AS reference_stale, transparent,
               ieee_div(fee::float8, send_amount::float8) * 100 AS fee_pct,
               CASE WHEN transparent THEN coalesce(fx_margin_reported::float8,
                   ieee_div(reference_rate::float8 - applied_rate::float8,
                            reference_rate::float8) * 100) END AS margin_pct,
               received_amount::float8 AS received, send_amount::float8 AS send,
               reference_rate::float8 AS ref, total_cost_reported::float8 AS total_reported
        FROM quotes WHERE id = ANY (ids) AND collected_at BETWEEN since AND until
    ), c AS (
        SELECT *, CASE WHEN transparent THEN coalesce(total_reported, fee_pct + margin_pct)
                  END AS total_pct,
               CASE WHEN transparent THEN (1 - ieee_div(received, send * ref)) * 100
                  END AS exact_pct
        FROM q
    ), flagged AS (
        SELECT period, amount_usd, service_id, data_kind, source, reference_stale,
               array_agg(DISTINCT f ORDER BY f) AS flags
        FROM c CROSS JOIN LATERAL unnest(c.flags) AS f
        GROUP BY 1, 2, 3, 4, 5, 6
    ), sums AS (
        SELECT period, amount_usd, service_id, data_kind, source, reference_stale,
               count(*) AS quotes, bool_or(transparent) AS transparent,
               sum(fee_pct) AS fee_sum, count(fee_pct) AS fee_n,
               sum(margin_pct) AS margin_sum, count(margin_pct) AS margin_n,
               sum(total_pct) AS total_sum, count(total_pct) AS total_n,
               sum(exact_pct) AS exact_sum, count(exact_pct) AS exact_n,
               min(collected_at) AS first_collected, max(collected_at) AS last_collected,
               max(id) AS last_quote_id
        FROM c GROUP BY 1, 2, 3, 4, 5, 6
    ), grouped AS (
        SELECT s.*, coalesce(f.flags, '{}') AS flags
        FROM sums s LEFT JOIN flagged f
            USING (period, amount_usd, service_id, data_kind, source, reference_stale)
    ), rolled AS (
        INSERT INTO service_periods AS sp
            (period, amount_usd, service_id, data_kind, source, reference_stale, quotes,
             transparent, fee_sum, fee_n, margin_sum, margin_n, total_sum, total_n,
             exact_sum, exact_n, first_collected, last_collected, last_quote_id, flags)
        SELECT period, amount_usd, service_id, data_kind, source, reference_stale, quotes,
               transparent, fee_sum, fee_n, margin_sum, margin_n, total_sum, total_n,
               exact_sum, exact_n, first_collected, last_collected, last_quote_id, flags
        FROM grouped
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
            flags = ARRAY(SELECT DISTINCT f FROM unnest(sp.flags || excluded.flags) AS f
                          ORDER BY f),
            changed_by = pg_current_xact_id()
        RETURNING 1
    )
    INSERT INTO latest_prices AS lp
    SELECT DISTINCT ON (period, service_id, send_amount, data_kind)
           period, service_id, send_amount, data_kind, id, collected_at
    FROM quotes WHERE id = ANY (ids) AND collected_at BETWEEN since AND until
    ORDER BY period, service_id, send_amount, data_kind, collected_at DESC, id DESC
    ON CONFLICT (period, service_id, send_amount, data_kind) DO UPDATE
        SET quote_id = excluded.quote_id, collected_at = excluded.collected_at,
            changed_by = pg_current_xact_id()
        WHERE (excluded.collected_at, excluded.quote_id) > (lp.collected_at, lp.quote_id)
$$;

CREATE OR REPLACE FUNCTION rollup_quotes(ids bigint[]) RETURNS void
LANGUAGE sql AS $$
    SELECT rollup_quotes(ids, '-infinity', 'infinity')
$$;

-- The rows rolled up before this migration get the flags of their quotes, once; marked as
-- changed, so that a running service reads them again.
UPDATE service_periods sp
SET flags = f.flags, changed_by = pg_current_xact_id()
FROM (
    SELECT q.period, q.amount_usd, q.service_id, q.data_kind, q.source,
           'reference_stale' = ANY (q.flags) AS reference_stale,
           array_agg(DISTINCT x ORDER BY x) AS flags
    FROM quotes q CROSS JOIN LATERAL unnest(q.flags) AS x
    GROUP BY 1, 2, 3, 4, 5, 6
) f
WHERE (sp.period, sp.amount_usd, sp.service_id, sp.data_kind, sp.source, sp.reference_stale)
    = (f.period, f.amount_usd, f.service_id, f.data_kind, f.source, f.reference_stale);
