-- A ticket whose key press was issued offline instead (the offline issue's payload names
-- the online request in offline.supersedes) was never held by anybody: the hall voids it,
-- and a call it had already got is withdrawn (issue 15). It stays issued, as the hall
-- counts it, but its call, its finish and its wait are nobody's: they are left out here,
-- as the hall's own KPIs leave them out.

CREATE OR REPLACE FUNCTION hallq_rollup_day(d date, tz text DEFAULT 'Asia/Shanghai')
RETURNS integer
LANGUAGE sql AS $$
    DELETE FROM kpi_hourly WHERE day = d;
    WITH issued AS (
        SELECT hall_id, ticket, service, at, cmd_id FROM events
        WHERE day = d AND op = 'issue' AND ok AND ticket IS NOT NULL
    ), superseded AS (
        SELECT i.hall_id, i.ticket FROM issued i
        JOIN events o ON o.hall_id = i.hall_id AND o.day = d AND o.op = 'issue' AND o.ok
            AND o.payload -> 'offline' ->> 'supersedes' = i.cmd_id
    ), called AS (
        SELECT hall_id, ticket, min(at) AS at FROM events
        WHERE day = d AND op IN ('call', 'call_ticket') AND ok AND ticket IS NOT NULL
            AND (hall_id, ticket) NOT IN (SELECT hall_id, ticket FROM superseded)
        GROUP BY hall_id, ticket
    ), finished AS (
        SELECT DISTINCT hall_id, ticket FROM events
        WHERE day = d AND op = 'finish' AND ok AND ticket IS NOT NULL
            AND (hall_id, ticket) NOT IN (SELECT hall_id, ticket FROM superseded)
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
