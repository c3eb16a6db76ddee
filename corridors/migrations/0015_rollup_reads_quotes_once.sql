-- rollup_quotes(ids, since, until), the serving rollups' upkeep that every quote write runs
-- in its transaction (migrations 8, 10 and 11), does the same with less work: the same rows
-- in service_periods and latest_prices, the same values.
--
-- 1. The written quotes are read once, not twice: latest_prices is made from the rows read
--    for service_periods (migration 11 read them again by id, and sorted them again).
-- 2. Each numeric column is converted to float8 once per quote, in a materialised CTE. The
--    expressions of migration 11 converted inside ieee_div(), an SQL function PostgreSQL
--    inlines by copying its arguments, so reference_rate::float8, say, ran up to five times
--    a quote (numeric to float8 goes through the number's text). The values are the same
--    floats, so every sum is the same.
-- 3. A service_periods row whose flags already hold the new quotes' flags keeps them as they
--    are, rather than rebuilding the sorted array (a sub-query per row).
--
-- Measured in docs/api.md ("Serving and history") and docs/collectors.md ("Benchmark").

CREATE OR REPLACE FUNCTION rollup_quotes(ids bigint[], since timestamptz, until timestamptz)
RETURNS void
LANGUAGE sql AS $$
    WITH n AS MATERIALIZED (
        SELECT id, period, amount_usd, service_id, data_kind, source, collected_at, flags,
               transparent, send_amount,
               'reference_stale' = ANY (flags) AS reference_stale,
               fee::float8 AS fee, send_amount::float8 AS send,
               reference_rate::float8 AS ref, applied_rate::float8 AS applied,
               fx_margin_reported::float8 AS margin_reported,
               received_amount::float8 AS received,
               total_cost_reported::float8 AS total_reported
        FROM quotes WHERE id = ANY (ids) AND collected_at BETWEEN since AND until
    ), q AS (
        SELECT *, ieee_div(fee, send) * 100 AS fee_pct,
               CASE WHEN transparent THEN coalesce(margin_reported,
                   ieee_div(ref - applied, ref) * 100) END AS margin_pct
        FROM n
    ), c AS MATERIALIZED (
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
            flags = CASE WHEN excluded.flags <@ sp.flags THEN sp.flags
                    ELSE ARRAY(SELECT DISTINCT f FROM unnest(sp.flags || excluded.flags) AS f
                               ORDER BY f) END,
            changed_by = pg_current_xact_id()
        RETURNING 1
    )
    INSERT INTO latest_prices AS lp
    SELECT DISTINCT ON (period, service_id, send_amount, data_kind)
           period, service_id, send_amount, data_kind, id, collected_at
    FROM c
    ORDER BY period, service_id, send_amount, data_kind, collected_at DESC, id DESC
    ON CONFLICT (period, service_id, send_amount, data_kind) DO UPDATE
        SET quote_id = excluded.quote_id, collected_at = excluded.collected_at,
            changed_by = pg_current_xact_id()
        WHERE (excluded.collected_at, excluded.quote_id) > (lp.collected_at, lp.quote_id)
$$;
