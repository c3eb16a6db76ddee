-- The alerts' retention ([alerts] keep_deliveries_days, keep_events_days; corridors/alerts.py
-- prune_alerts): dropping an event cascades to its deliveries, which PostgreSQL finds by
-- event_id; without this index each dropped event would read the whole queue.
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
