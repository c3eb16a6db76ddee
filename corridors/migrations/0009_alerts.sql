-- Alerts that come to the reader (issue 16, item 2): the events a collection, an import or a
-- bulletin gives rise to, once each; the figures they were measured against; webhook
-- subscriptions and the queue of their deliveries (corridors/alerts.py).

-- Each event once, whichever replica saw it first and however often it restarted: the
-- event_key says what moved and at which snapshot (the highest quote id), and the detection
-- that writes it holds alert_cursor's row (FOR UPDATE), so two replicas take turns.
CREATE TABLE alert_events (
    id                bigserial PRIMARY KEY,
    event_key         text NOT NULL UNIQUE,
    kind              text NOT NULL CHECK (kind IN ('corridor_crossed', 'global_crossed',
                          'fee_changed', 'fx_margin_changed', 'new_cheapest',
                          'new_bulletin')),
    title             text NOT NULL,
    summary           text NOT NULL,
    source_code       text,
    destination_code  text,
    provider          text,
    provider_slug     text,
    period            text,
    amount_usd        smallint,
    -- What moved: measure, threshold, direction, before, after (kind by kind, docs/alerts.md).
    details           jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- The figures (an API path) and the archived responses behind them.
    figures_path      text NOT NULL,
    raw_response_ids  bigint[] NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_corridor ON alert_events (source_code, destination_code, id DESC);
CREATE INDEX alert_events_receiving ON alert_events (destination_code, id DESC);
CREATE INDEX alert_events_provider ON alert_events (provider_slug, id DESC);

-- The snapshot (highest quote id) the figures below were last seen at: a replica whose
-- snapshot is older waits its turn rather than undoing what a newer one saw.
CREATE TABLE alert_cursor (
    id          smallint PRIMARY KEY CHECK (id = 1),
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO alert_cursor (id, version) VALUES (1, -1);

-- Each corridor's figures of its latest period at each price point, as last seen.
CREATE TABLE alert_corridor_figures (
    source_code          text NOT NULL,
    destination_code     text NOT NULL,
    amount_usd           smallint NOT NULL,
    period               text NOT NULL,
    average              float8,
    smart                float8,
    cheapest_firm        text,
    cheapest_total_cost  float8,
    PRIMARY KEY (source_code, destination_code, amount_usd)
);

-- Each service's fee and FX margin (%) of its latest period at each price point, as last seen.
CREATE TABLE alert_service_figures (
    service_id        text NOT NULL,
    amount_usd        smallint NOT NULL,
    period            text NOT NULL,
    firm              text NOT NULL,
    source_code       text NOT NULL,
    destination_code  text NOT NULL,
    fee_pct           float8,
    fx_margin_pct     float8,
    PRIMARY KEY (service_id, amount_usd)
);

-- The global figures (average, SmaRT) of the latest period that has them, per price point,
-- as last seen.
CREATE TABLE alert_global_figures (
    amount_usd  smallint PRIMARY KEY,
    period      text NOT NULL,
    average     float8,
    smart       float8,
    corridors   integer NOT NULL
);

-- Who is told: a URL, what it watches, and the secret its payloads are signed with.
CREATE TABLE webhook_subscriptions (
    id          bigserial PRIMARY KEY,
    url         text NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('global', 'corridor', 'sending', 'receiving',
                                                'provider')),
    scope_value text,
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'global') = (scope_value IS NULL))
);

-- The queue: one row per event and subscription, taken FOR UPDATE SKIP LOCKED by whichever
-- process delivers, retried with exponential backoff, dead after the last attempt.
CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    subscription_id  bigint NOT NULL REFERENCES webhook_subscriptions(id) ON DELETE CASCADE,
    event_id         bigint NOT NULL REFERENCES alert_events(id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
