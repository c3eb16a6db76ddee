-- What kind of figure each quote is (corridors.types.DataKind): survey (an RPW import),
-- observed (a provider's own quote), estimate (a comparison feed's figure for another
-- provider) or emulated (the sandbox's invented prices). Emulated quotes are left out of
-- every indicator, bulletin, export and default API answer; the column is what tells them.
ALTER TABLE quotes ADD COLUMN IF NOT EXISTS data_kind text;

-- Quotes stored before the column: their kind by where they came from. An import's rows are
-- the survey's; anything fetched from the sandbox's address (127.0.0.1:8765, the shipped
-- profile) or by a source of the shipped sandbox profile ("sandbox-…") is emulated — when in
-- doubt, emulated, so that no invented price passes for a real one; a comparison feed's
-- rows (flagged comparison_feed or estimate by the collector) are estimates; the rest are
-- providers' own quotes.
UPDATE quotes q SET data_kind = CASE
    WHEN q.import_id IS NOT NULL OR q.source = 'rpw' THEN 'survey'
    WHEN q.source LIKE 'sandbox-%' OR EXISTS (
        SELECT 1 FROM raw_responses r WHERE r.id = q.raw_response_id
        AND r.url ~* '^https?://(127\.0\.0\.1|localhost|\[::1\]):8765(/|$)') THEN 'emulated'
    WHEN 'comparison_feed' = ANY (q.flags) OR 'estimate' = ANY (q.flags) THEN 'estimate'
    ELSE 'observed'
END
WHERE q.data_kind IS NULL;

ALTER TABLE quotes ALTER COLUMN data_kind SET NOT NULL;
ALTER TABLE quotes ADD CONSTRAINT quotes_data_kind_known
    CHECK (data_kind IN ('survey', 'observed', 'estimate', 'emulated'));

-- The quote frame carries the kind and the quote's flags (caveats a reader must see:
-- estimate, negative_margin, bank_transfer_only, reference_stale, …).
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
       array_to_string(q.flags, ' ') AS flags
FROM quotes q
JOIN services s ON s.id = q.service_id
JOIN corridors c ON c.id = s.corridor_id
JOIN firms f ON f.id = s.firm_id;
