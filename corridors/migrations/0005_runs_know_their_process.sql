-- A collection run records the process that runs it (host and pid), so that a run whose
-- process died before recording its end (killed, out of memory, the machine stopped) can be
-- told from one still under way, and marked failed instead of staying 'running' for ever
-- (corridors.store.Store.abandon_dead_runs, called when a collector starts).
ALTER TABLE collection_runs ADD COLUMN IF NOT EXISTS host text;
ALTER TABLE collection_runs ADD COLUMN IF NOT EXISTS pid integer;
CREATE INDEX IF NOT EXISTS collection_runs_running ON collection_runs (id)
    WHERE status = 'running';
