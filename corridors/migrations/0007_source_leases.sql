-- One collector per source at a time, on one machine or several (corridors/leases.py): a
-- run holds its source's lease, which names its holder (host, pid, run) and expires unless
-- its holder renews it. A lease whose process was killed, or whose machine stopped, is
-- taken over once it expires (at once on its own host, where the dead pid is seen). A row,
-- not an advisory lock: it says who holds a source, works through a transaction-pooling
-- proxy (PgBouncer), and holds no connection for a run's length.
CREATE TABLE IF NOT EXISTS source_leases (
    source       text PRIMARY KEY,
    holder       uuid NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    run_id       bigint,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
