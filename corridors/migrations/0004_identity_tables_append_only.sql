-- Corridors, firms and services are append-only, enforced here; their per-row foreign keys go.
--
-- 1. A corridor, a firm or a service is the identity of what quotes price: rows are added
--    (by corridors.store.Store, the one writer) and never changed or removed. The database
--    now refuses an UPDATE, DELETE or TRUNCATE of these tables, so an id once read stays
--    valid for as long as the database lives: what the writer's id caches rely on is a
--    guarantee, not a habit.
CREATE FUNCTION sendcost_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'table % is append-only: rows are added, never changed or removed '
                    '(% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER corridors_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON corridors
    FOR EACH STATEMENT EXECUTE FUNCTION sendcost_append_only();
CREATE TRIGGER firms_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON firms
    FOR EACH STATEMENT EXECUTE FUNCTION sendcost_append_only();
CREATE TRIGGER services_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON services
    FOR EACH STATEMENT EXECUTE FUNCTION sendcost_append_only();

-- 2. A new service's corridor and firm ids are read by the writer in the transaction that
--    creates the service (Store._ensure_services), from rows that can no longer disappear,
--    so the foreign keys' row-by-row triggers check nothing the writer has not. They were
--    about 60% of creating a service (2,500 services on a first collection: 22 ms of COPY
--    with them, 8 ms without; bench/collect.py).
ALTER TABLE services DROP CONSTRAINT IF EXISTS services_corridor_id_fkey;
ALTER TABLE services DROP CONSTRAINT IF EXISTS services_firm_id_fkey;
