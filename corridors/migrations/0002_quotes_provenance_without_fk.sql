-- Quotes keep their provenance ids (raw response, collection run, import) without foreign
-- keys. Those parents are append-only and their ids come from the same writer moments
-- before (store.archive_raw, store.start_run, the importer), so a per-row check adds no
-- safety; it did halve the write rate (PostgreSQL checks a foreign key row by row: on a
-- 5,000-quote batch, 95 ms against 47 ms without). The service a quote prices keeps its key.
ALTER TABLE quotes DROP CONSTRAINT IF EXISTS quotes_raw_response_id_fkey;
ALTER TABLE quotes DROP CONSTRAINT IF EXISTS quotes_run_id_fkey;
ALTER TABLE quotes DROP CONSTRAINT IF EXISTS quotes_import_id_fkey;
