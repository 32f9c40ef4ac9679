-- The city's copy of every hall's event log, and each hall's shipping cursor.
--
-- One row per event-log entry, keyed (hall_id, day, seq): seq is the hall's own log
-- sequence, so the key is the event's id and a second copy of it cannot be stored.
-- Partitioned by the hall's business day, so a month's KPIs read a month's partitions
-- and old days are dropped whole. The columns the bureau groups by (service, window,
-- what happened) are pulled out of the payload at shipping time; the payload and the
-- result stay as JSON for anything else.

CREATE TABLE halls (
    hall_id     text PRIMARY KEY,
    -- the last log entry committed here: the shipper's durable cursor, moved in the same
    -- transaction as the rows, so a batch is in with its cursor or not at all
    shipped_seq bigint NOT NULL DEFAULT 0,
    shipped_at  timestamptz,            -- hall time of that entry
    updated     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    hall_id   text        NOT NULL,
    seq       bigint      NOT NULL,
    day       date        NOT NULL,     -- the hall's business day
    at        timestamptz NOT NULL,     -- when the coordinator applied it
    kind      text        NOT NULL,     -- day_open | ticket | window
    op        text,                     -- issue, lease, void, call_next, finish, rate, ...
    service   text,                     -- from the command or from the ticket it touched
    window_no smallint,
    ticket    text,
    ok        boolean,                  -- NULL for day_open
    source    text        NOT NULL,     -- role/client (a device or supervisor/<user>)
    cmd_id    text,
    payload   jsonb       NOT NULL,
    result    jsonb,
    PRIMARY KEY (hall_id, day, seq)
) PARTITION BY RANGE (day);

-- per-service and per-hour questions across halls; per-hall ones use the primary key
CREATE INDEX events_service_at ON events (service, at);
CREATE INDEX events_hall_at ON events (hall_id, at);

-- A day's partition, created on first use. Shippers call it outside their COPY
-- transaction (creating a partition locks the parent briefly); two creating the same day
-- at once is harmless.
CREATE FUNCTION hallq_ensure_day(d date) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    part text := 'events_' || to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                   part, d, d + 1);
EXCEPTION
    WHEN duplicate_table OR invalid_object_definition OR unique_violation THEN
        NULL;
END;
$$;
