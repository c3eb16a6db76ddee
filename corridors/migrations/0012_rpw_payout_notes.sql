-- RPW's pay-out currency notes, kept (issue 15, item 5). RPW has no pay-out currency column:
-- about a quarter of its rows name one in free-text notes ("USD service", "This RSP sends EUR
-- and pays out USD in this corridor"). corridors.reading.rpw reads them once, the importer
-- stores the currency here, and the API (publish/receive.py) reads it from the quote frame
-- instead of having nothing but the rates to go on. Null for every other source.

ALTER TABLE quotes ADD COLUMN payout_currency_noted text;

-- The quote frame as migrations 6 and 10 made it, with the noted currency at its end.
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
       q.fee_deducted,
       q.data_kind,
       array_to_string(q.flags, ' ') AS flags,
       q.payout_currency_noted
FROM quotes q
JOIN services s ON s.id = q.service_id
JOIN corridors c ON c.id = s.corridor_id
JOIN firms f ON f.id = s.firm_id;
