-- The bureau's KPIs by hall, day, service and hour, rolled up from the events of a day
-- (hallq_rollup_day), so a month of a hundred halls is ~200,000 small rows, not tens of
-- millions of events. A ticket's wait runs from its issue to its first call and counts
-- in the hour (hall time) it was issued. Two coarser rollups of the same rows answer the
-- dashboard's usual questions from a tenth of them: kpi_daily (no hour) and
-- kpi_hall_hour (no service, for the comfort index and the hour of day).

CREATE TABLE kpi_hourly (
    day         date        NOT NULL,
    hall_id     text        NOT NULL,
    service     text        NOT NULL,
    hour        smallint    NOT NULL,   -- 0-23, the hall's local time
    issued      integer     NOT NULL,
    called      integer     NOT NULL,   -- tickets called at least once
    finished    integer     NOT NULL,
    wait_sum_s  double precision NOT NULL,
    wait_max_s  double precision,
    PRIMARY KEY (day, hall_id, service, hour)
);
CREATE INDEX kpi_hourly_hall ON kpi_hourly (hall_id, day);
CREATE INDEX kpi_hourly_service ON kpi_hourly (service, day);

CREATE TABLE kpi_daily (
    day date NOT NULL, hall_id text NOT NULL, service text NOT NULL,
    issued integer NOT NULL, called integer NOT NULL, finished integer NOT NULL,
    wait_sum_s double precision NOT NULL, wait_max_s double precision,
    PRIMARY KEY (day, hall_id, service)
);
CREATE TABLE kpi_hall_hour (
    day date NOT NULL, hall_id text NOT NULL, hour smallint NOT NULL,
    issued integer NOT NULL, called integer NOT NULL, finished integer NOT NULL,
    wait_sum_s double precision NOT NULL, wait_max_s double precision,
    PRIMARY KEY (day, hall_id, hour)
);

-- Recompute one day (idempotent: run it again after late events arrive).
CREATE FUNCTION hallq_rollup_day(d date, tz text DEFAULT 'Asia/Shanghai') RETURNS integer
LANGUAGE sql AS $$
    DELETE FROM kpi_hourly WHERE day = d;
    WITH issued AS (
        SELECT hall_id, ticket, service, at FROM events
        WHERE day = d AND op = 'issue' AND ok AND ticket IS NOT NULL
    ), called AS (
        SELECT hall_id, ticket, min(at) AS at FROM events
        WHERE day = d AND op IN ('call', 'call_ticket') AND ok AND ticket IS NOT NULL
        GROUP BY hall_id, ticket
    ), finished AS (
        SELECT DISTINCT hall_id, ticket FROM events
        WHERE day = d AND op = 'finish' AND ok AND ticket IS NOT NULL
    )
    INSERT INTO kpi_hourly
    SELECT d, i.hall_id, i.service, extract(hour FROM i.at AT TIME ZONE tz)::smallint,
           count(*), count(c.at), count(f.ticket),
           coalesce(sum(extract(epoch FROM c.at - i.at)), 0),
           max(extract(epoch FROM c.at - i.at))
    FROM issued i
    LEFT JOIN called c USING (hall_id, ticket)
    LEFT JOIN finished f USING (hall_id, ticket)
    GROUP BY i.hall_id, i.service, 4;
    DELETE FROM kpi_daily WHERE day = d;
    INSERT INTO kpi_daily
    SELECT day, hall_id, service, sum(issued), sum(called), sum(finished), sum(wait_sum_s),
           max(wait_max_s)
    FROM kpi_hourly WHERE day = d GROUP BY day, hall_id, service;
    DELETE FROM kpi_hall_hour WHERE day = d;
    INSERT INTO kpi_hall_hour
    SELECT day, hall_id, hour, sum(issued), sum(called), sum(finished), sum(wait_sum_s),
           max(wait_max_s)
    FROM kpi_hourly WHERE day = d GROUP BY day, hall_id, hour;
    SELECT count(*)::integer FROM kpi_hourly WHERE day = d;
$$;
