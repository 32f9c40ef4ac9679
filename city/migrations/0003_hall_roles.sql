-- Per-hall credentials: each hall's shipper logs in as its own role, which may write only
-- its own hall's rows and cursor. `hallq city add-hall` makes the role and its row here.
--
-- hallq_shipper is the group every hall role belongs to: it may read the migrations (the
-- shipper checks the schema is current), read and move its own hall's cursor in `halls`
-- (row-level security), COPY into `events` (a statement trigger refuses a batch holding
-- another hall's row: COPY FROM cannot go through row-level security, and one check a
-- batch costs far less than one a row) and make a day's partition through
-- hallq_ensure_day, which runs as the schema's owner.
--
-- Also: identities leave the city database. The shipper strips ID hashes from payloads
-- before shipping (city.ship.strip_identities); rows shipped before this migration are
-- scrubbed here.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hallq_shipper') THEN
        CREATE ROLE hallq_shipper NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- roles are the server's, not the database's: another database made it
END;
$$;

CREATE TABLE hall_roles (
    role    name PRIMARY KEY,
    hall_id text NOT NULL UNIQUE
);

-- The hall of the role that logged in (session_user: inside a SECURITY DEFINER function
-- current_user is the owner); NULL for anyone else.
CREATE FUNCTION hallq_my_hall() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
AS $$ SELECT hall_id FROM hall_roles WHERE role = session_user $$;

ALTER FUNCTION hallq_ensure_day(date) SECURITY DEFINER;
ALTER FUNCTION hallq_ensure_day(date) SET search_path = public;

GRANT SELECT ON schema_migrations TO hallq_shipper;
GRANT SELECT, INSERT, UPDATE ON halls TO hallq_shipper;
GRANT INSERT ON events TO hallq_shipper;
GRANT EXECUTE ON FUNCTION hallq_ensure_day(date), hallq_my_hall() TO hallq_shipper;

ALTER TABLE halls ENABLE ROW LEVEL SECURITY;
-- the owner (migrations, rollups) is not subject to it; other readers see every cursor
CREATE POLICY hall_reads ON halls FOR SELECT USING (true);
CREATE POLICY own_hall_inserts ON halls FOR INSERT TO hallq_shipper
    WITH CHECK (hall_id = hallq_my_hall());
CREATE POLICY own_hall_moves ON halls FOR UPDATE TO hallq_shipper
    USING (hall_id = hallq_my_hall()) WITH CHECK (hall_id = hallq_my_hall());

CREATE FUNCTION hallq_check_hall_rows() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
AS $$
DECLARE
    mine  text;
    other text;
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_auth_members m
        JOIN pg_roles g ON g.oid = m.roleid AND g.rolname = 'hallq_shipper'
        JOIN pg_roles u ON u.oid = m.member AND u.rolname = session_user
    ) THEN
        RETURN NULL;  -- the owner, a rollup, a restore: not a hall's shipper
    END IF;
    mine := hallq_my_hall();
    SELECT hall_id INTO other FROM added WHERE hall_id IS DISTINCT FROM mine LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'role % may write only the rows of hall %, not of hall %',
            session_user, coalesce(mine, '(none: not in hall_roles)'), other
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_own_hall_only AFTER INSERT ON events
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION hallq_check_hall_rows();

-- identities shipped before the shipper stripped them
UPDATE events SET payload = payload - 'identity' WHERE payload ? 'identity';
UPDATE events
SET payload = jsonb_set(
    payload, '{carried}',
    (SELECT coalesce(jsonb_agg(c - 'identity'), '[]'::jsonb)
     FROM jsonb_array_elements(payload -> 'carried') AS c))
WHERE kind = 'day_open' AND jsonb_typeof(payload -> 'carried') = 'array';
