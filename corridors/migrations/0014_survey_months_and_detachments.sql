-- Every quote in a month partition, so that any month can be detached, and detaching that
-- leaves nothing of what the API serves pointing at quotes gone (issue 15, item 2;
-- docs/storage.md).
--
-- 1. sendcost_month_partition(parent, month) made no partition for a month whose rows sat
--    in the default partition already (PostgreSQL refuses a partition whose rows the
--    default holds), and those rows stayed there for good: a survey imported into a fresh
--    database (its dates years before any partition) could never be detached. For quotes
--    it now moves them into the month's new partition, in its transaction. Nothing names a
--    quote by its key but latest_prices, by (quote_id, collected_at), which a move keeps.
--    Raw responses stay as before: the foreign keys that name them (quotes,
--    reference_rates, quarantined_quotes) would refuse their leaving for one statement.
-- 2. The quotes the default partition holds now go to partitions of their months.
-- 3. detachments: each partition detached (corridors.partitions.detach_before), when, and
--    how many latest prices went with it. A serving process reads what changed by
--    transaction (migration 8), which cannot see rows that went: one that finds a
--    detachment it has not seen reads its rollups and latest prices again, whole.

CREATE OR REPLACE FUNCTION sendcost_month_partition(parent text, month date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := date_trunc('month', month::timestamp) AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', month::timestamp) + interval '1 month')
                      AT TIME ZONE 'UTC';
    name text := format('%s_p%s', parent, to_char(month, 'YYYY_MM'));
    col text;
    stray boolean;
    moved bigint;
BEGIN
    col := CASE parent WHEN 'quotes' THEN 'collected_at' WHEN 'raw_responses' THEN 'fetched_at'
           END;
    IF col IS NULL THEN
        RAISE EXCEPTION 'sendcost_month_partition: % is not partitioned by month', parent;
    END IF;
    -- A detached partition keeps its name as a table of its own: the month gets no other
    -- (what arrives for it stays in the default partition).
    IF to_regclass(name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= $1 AND %I < $2)',
                   parent || '_default', col, col) INTO stray USING lo, hi;
    IF stray AND parent <> 'quotes' THEN
        RAISE NOTICE '% keeps its rows of % in %_default: no partition made for that month',
            parent, to_char(month, 'YYYY-MM'), parent;
        RETURN NULL;
    END IF;
    IF stray THEN
        -- Dynamic SQL throughout: a plan kept by this function must not outlive the table.
        EXECUTE 'CREATE TEMP TABLE IF NOT EXISTS _sendcost_moving_quotes (LIKE quotes)';
        EXECUTE 'WITH gone AS (DELETE FROM quotes_default WHERE collected_at >= $1 '
                'AND collected_at < $2 RETURNING *) '
                'INSERT INTO _sendcost_moving_quotes SELECT * FROM gone' USING lo, hi;
        GET DIAGNOSTICS moved = ROW_COUNT;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   name, parent, lo, hi);
    IF stray THEN
        EXECUTE format('INSERT INTO %I SELECT * FROM _sendcost_moving_quotes', name);
        EXECUTE 'DROP TABLE _sendcost_moving_quotes';
        RAISE NOTICE 'moved % quotes of % from quotes_default into %', moved,
            to_char(month, 'YYYY-MM'), name;
    END IF;
    RETURN name;
END
$$;

-- All at once rather than month by month (each of which would read the default partition
-- three times): out of the default partition, a partition for each month, back in.
CREATE TEMP TABLE _quotes_in_default (LIKE quotes);
WITH gone AS (DELETE FROM quotes_default RETURNING *)
INSERT INTO _quotes_in_default SELECT * FROM gone;
SELECT sendcost_month_partition('quotes', m::date) FROM (
    SELECT DISTINCT date_trunc('month', collected_at AT TIME ZONE 'UTC') AS m
    FROM _quotes_in_default) months;
INSERT INTO quotes SELECT * FROM _quotes_in_default;
DROP TABLE _quotes_in_default;

CREATE TABLE detachments (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent                text NOT NULL,
    partition             text NOT NULL,
    month                 date NOT NULL,
    detached_at           timestamptz NOT NULL DEFAULT now(),
    -- The latest prices whose quote left with the partition (quotes only; 0 for raw
    -- responses), removed in the detaching transaction.
    latest_prices_removed integer NOT NULL DEFAULT 0
);
