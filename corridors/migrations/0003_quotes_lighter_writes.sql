-- Writing quotes, lighter; reading them, from one view.
--
-- 1. quotes_service_latest served no query: every read of quotes goes by period (the
--    quote_frame view, the API snapshot) or by raw response (a re-parse). It was a fourth
--    index to maintain on every row written.
DROP INDEX IF EXISTS quotes_service_latest;

-- 2. The service a quote prices is checked once per batch, set-based, by the one writer
--    (corridors.store.Store.store_quotes: every service id of the batch must be in services,
--    or the batch is refused before it is written), instead of row by row by a foreign-key
--    trigger. Services are never updated or deleted. On a 5,000-quote batch the trigger was
--    about a quarter of the write (bench/collect.py).
ALTER TABLE quotes DROP CONSTRAINT IF EXISTS quotes_service_id_fkey;

-- 3. The quote frame view also carries what the API shows of each quote (its id, the time of
--    its reference rate, how its fee is charged), so there is one query for quotes, not two.
CREATE OR REPLACE VIEW quote_frame AS
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
       q.fee_deducted
FROM quotes q
JOIN services s ON s.id = q.service_id
JOIN corridors c ON c.id = s.corridor_id
JOIN firms f ON f.id = s.firm_id;
