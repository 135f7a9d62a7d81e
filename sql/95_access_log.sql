-- The access log: who read, wrote or deleted which protected value, when and from where.
-- Written by the typed helpers in the statement of the access itself (src/audit/access-log.ts).
-- Native monthly range partitions on accessed_at, created ahead; retention drops whole
-- partitions (pgseal logs retention), never row by row.

CREATE TABLE pgseal.encrypted_data_access_log (
  accessed_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  -- 'schema.table'
  table_name  text NOT NULL,
  column_name name NOT NULL,
  -- the row's primary key, as text
  row_id      text,
  accessed_by text NOT NULL,
  access_type text NOT NULL,
  client_ip   inet,
  -- tamper evidence (sql/97_log_chain.sql): the link of the statement that wrote the row,
  -- the row's position in it, and its HMAC under the log key
  link_id     bigint,
  link_pos    integer,
  mac         bytea,
  CONSTRAINT access_type_known CHECK (access_type IN ('read', 'write', 'delete'))
) PARTITION BY RANGE (accessed_at);
COMMENT ON TABLE pgseal.encrypted_data_access_log IS 'pgseal: reads, writes and deletes of protected values (monthly partitions)';
CREATE INDEX encrypted_data_access_log_by_actor ON pgseal.encrypted_data_access_log (accessed_by, accessed_at);
CREATE INDEX encrypted_data_access_log_by_row ON pgseal.encrypted_data_access_log (table_name, row_id, accessed_at);
-- time ranges without an actor (pgseal audit --since 1h): a BRIN index costs next to nothing
-- to maintain on an append-only log written in time order
CREATE INDEX encrypted_data_access_log_by_time ON pgseal.encrypted_data_access_log USING brin (accessed_at);
-- rows outside every monthly partition land here instead of failing the access they record
CREATE TABLE pgseal.encrypted_data_access_log_default PARTITION OF pgseal.encrypted_data_access_log DEFAULT;

-- Creates the monthly partitions (months in UTC) from p_from's month through p_months - 1
-- months later (named encrypted_data_access_log_yYYYYmMM). Rows of such a month already in the default
-- partition move into the new one. Returns how many partitions were created.
CREATE FUNCTION pgseal.create_log_partitions(p_from date DEFAULT (pg_catalog.now() AT TIME ZONE 'UTC')::date, p_months integer DEFAULT 4) RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET timezone = 'UTC' SET datestyle = 'ISO' AS $$
DECLARE
  month date;
  lower timestamptz;
  upper timestamptz;
  name text;
  n integer := 0;
BEGIN
  IF p_months NOT BETWEEN 1 AND 120 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgseal: create from 1 to 120 monthly partitions at a time';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('pgseal'), hashtext('log partitions'));
  FOR i IN 0 .. p_months - 1 LOOP
    month := (date_trunc('month', p_from) + make_interval(months => i))::date;
    name := 'encrypted_data_access_log_' || to_char(month, '"y"YYYY"m"MM');
    lower := month::timestamp AT TIME ZONE 'UTC';
    upper := (month + interval '1 month') AT TIME ZONE 'UTC';
    CONTINUE WHEN to_regclass('pgseal.' || quote_ident(name)) IS NOT NULL;
    -- no row of that month may commit into the default partition between the move and the attach
    LOCK TABLE pgseal.encrypted_data_access_log IN ACCESS EXCLUSIVE MODE;
    CREATE TEMP TABLE IF NOT EXISTS pgseal_moved_log_rows (LIKE pgseal.encrypted_data_access_log) ON COMMIT DROP;
    WITH moved AS (
      DELETE FROM pgseal.encrypted_data_access_log_default
       WHERE accessed_at >= lower AND accessed_at < upper
      RETURNING *)
    INSERT INTO pgseal_moved_log_rows SELECT * FROM moved;
    EXECUTE format('CREATE TABLE pgseal.%I PARTITION OF pgseal.encrypted_data_access_log FOR VALUES FROM (%L) TO (%L)',
                   name, lower, upper);
    INSERT INTO pgseal.encrypted_data_access_log SELECT * FROM pgseal_moved_log_rows;
    TRUNCATE pgseal_moved_log_rows;
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;

-- Retention: drops the monthly partitions whose whole month is older than p_older_than,
-- and returns their names (the default partition is never dropped).
CREATE FUNCTION pgseal.drop_log_partitions(p_older_than interval) RETURNS text[]
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp SET timezone = 'UTC' AS $$
DECLARE
  p record;
  dropped text[] := '{}';
BEGIN
  IF p_older_than < interval '1 day' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgseal: a retention period shorter than a day would drop the current month',
      HINT = 'Pass a period such as 400 days.';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('pgseal'), hashtext('log partitions'));
  FOR p IN
    SELECT c.relname, to_date(substr(c.relname, length('encrypted_data_access_log_y') + 1), 'YYYY"m"MM') AS month
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'pgseal.encrypted_data_access_log'::regclass
       AND c.relname ~ '^encrypted_data_access_log_y[0-9]{4}m[0-9]{2}$'
     ORDER BY 2
  LOOP
    CONTINUE WHEN ((p.month + interval '1 month') AT TIME ZONE 'UTC') > clock_timestamp() - p_older_than;
    -- never the current month or a later one, whatever the period says
    CONTINUE WHEN (p.month + interval '1 month') > date_trunc('month', clock_timestamp() AT TIME ZONE 'UTC');
    EXECUTE format('DROP TABLE pgseal.%I', p.relname);
    dropped := dropped || p.relname::text;
  END LOOP;
  RETURN dropped;
END
$$;

SELECT pgseal.create_log_partitions((pg_catalog.now() AT TIME ZONE 'UTC')::date);

-- owner only: writing the log is what pgseal's statements do as the table's owner or a
-- role granted INSERT on purpose; reading it is for auditors, granted on purpose too
REVOKE ALL ON TABLE pgseal.encrypted_data_access_log, pgseal.encrypted_data_access_log_default FROM PUBLIC;
REVOKE ALL ON FUNCTION pgseal.create_log_partitions(date, integer), pgseal.drop_log_partitions(interval) FROM PUBLIC;
