-- TimescaleDB, when the extension is installed at migration time: both logs become
-- hypertables on their time column (the access log in 7-day chunks, the audit log in
-- 30-day chunks), chunks older than 30 days are compressed, and a retention policy drops
-- chunks older than pgseal.log_retention (a setting read at migration time, default
-- 400 days). Without the extension nothing here changes anything: the access log keeps its
-- native monthly partitions (95), the audit log stays a plain table (85).

-- The schema the timescaledb extension lives in, NULL without it.
CREATE FUNCTION pgseal._timescaledb_schema() RETURNS name
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'timescaledb');

-- 'timescaledb' once the access log is a hypertable, else 'partitions'.
CREATE FUNCTION pgseal.log_storage() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT CASE c.relkind WHEN 'p' THEN 'partitions' ELSE 'timescaledb' END
          FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass('pgseal.encrypted_data_access_log'));

-- The conversion itself (run once, by the block below, then dropped): the access log from
-- monthly partitions to a hypertable, rows and grants kept; the audit log's key widened.
CREATE FUNCTION pgseal._log_hypertables(ts text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  g record;
BEGIN
  ALTER TABLE pgseal.encrypted_data_access_log RENAME TO encrypted_data_access_log_monthly;
  CREATE TABLE pgseal.encrypted_data_access_log (LIKE pgseal.encrypted_data_access_log_monthly INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
  EXECUTE pg_catalog.format('SELECT %I.create_hypertable(%L::regclass, %L::name, chunk_time_interval => %L::interval)',
                            ts, 'pgseal.encrypted_data_access_log', 'accessed_at', '7 days');
  INSERT INTO pgseal.encrypted_data_access_log SELECT * FROM pgseal.encrypted_data_access_log_monthly;
  -- what was granted on the log (an application's INSERT, an auditor's SELECT) stays granted
  REVOKE ALL ON TABLE pgseal.encrypted_data_access_log FROM PUBLIC;
  FOR g IN SELECT a.privilege_type, a.grantee FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = 'pgseal.encrypted_data_access_log_monthly'::regclass AND a.grantee <> c.relowner LOOP
    EXECUTE format('GRANT %s ON TABLE pgseal.encrypted_data_access_log TO %s', g.privilege_type,
                   CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
  END LOOP;
  DROP TABLE pgseal.encrypted_data_access_log_monthly;
  CREATE INDEX encrypted_data_access_log_by_actor ON pgseal.encrypted_data_access_log (accessed_by, accessed_at);
  CREATE INDEX encrypted_data_access_log_by_row ON pgseal.encrypted_data_access_log (table_name, row_id, accessed_at);
  COMMENT ON TABLE pgseal.encrypted_data_access_log IS 'pgseal: reads, writes and deletes of protected values (TimescaleDB hypertable)';
  -- the audit log: a hypertable's unique keys include its time column
  ALTER TABLE pgseal.encryption_audit_log DROP CONSTRAINT encryption_audit_log_pkey;
  ALTER TABLE pgseal.encryption_audit_log ADD CONSTRAINT encryption_audit_log_pkey PRIMARY KEY (id, occurred_at);
  EXECUTE pg_catalog.format('SELECT %I.create_hypertable(%L::regclass, %L::name, migrate_data => true, chunk_time_interval => %L::interval)',
                            ts, 'pgseal.encryption_audit_log', 'occurred_at', '30 days');
END
$$;

DO $timescale$
DECLARE
  ts text;
  keep interval := COALESCE(NULLIF(pg_catalog.current_setting('pgseal.log_retention', true), ''), '400 days')::interval;
BEGIN
  ts := pgseal._timescaledb_schema();
  IF ts IS NULL THEN
    RETURN;
  END IF;
  IF pgseal.log_storage() = 'partitions' THEN
    PERFORM pgseal._log_hypertables(ts);
  END IF;
  -- compression of old chunks, then retention, for both (again after a down and up)
  ALTER TABLE pgseal.encrypted_data_access_log SET (timescaledb.compress, timescaledb.compress_orderby = 'accessed_at', timescaledb.compress_segmentby = 'table_name');
  -- every column of a unique index must be in the compression's ordering
  ALTER TABLE pgseal.encryption_audit_log SET (timescaledb.compress, timescaledb.compress_orderby = 'occurred_at, id');
  FOR t IN 1 .. 2 LOOP
    EXECUTE pg_catalog.format('SELECT %I.add_compression_policy(%L::regclass, %L::interval, if_not_exists => true)',
                              ts, (ARRAY['pgseal.encrypted_data_access_log', 'pgseal.encryption_audit_log'])[t], '30 days');
    EXECUTE pg_catalog.format('SELECT %I.add_retention_policy(%L::regclass, %L::interval, if_not_exists => true)',
                              ts, (ARRAY['pgseal.encrypted_data_access_log', 'pgseal.encryption_audit_log'])[t], keep);
  END LOOP;
END
$timescale$;

DROP FUNCTION pgseal._log_hypertables(text);

-- Retention on hypertables, now (`pgseal logs retention` when the logs are hypertables):
-- drops both logs' chunks older than the period; returns how many.
CREATE FUNCTION pgseal.drop_log_chunks(p_older_than interval) RETURNS integer
LANGUAGE plpgsql VOLATILE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ts text;
  n integer;
  total integer := 0;
BEGIN
  IF p_older_than < interval '1 day' THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgseal: a retention period shorter than a day would drop the current chunks',
      HINT = 'Pass a period such as 400 days.';
  END IF;
  ts := pgseal._timescaledb_schema();
  IF ts IS NULL OR pgseal.log_storage() <> 'timescaledb' THEN
    RAISE EXCEPTION USING ERRCODE = '55000', MESSAGE = 'pgseal: the logs are not TimescaleDB hypertables',
      HINT = 'Use pgseal.drop_log_partitions (pgseal logs retention picks the right one).';
  END IF;
  FOR t IN 1 .. 2 LOOP
    EXECUTE format('SELECT count(*)::integer FROM %I.drop_chunks(%L::regclass, older_than => %L::interval)',
                   ts, (ARRAY['pgseal.encrypted_data_access_log', 'pgseal.encryption_audit_log'])[t], p_older_than) INTO n;
    total := total + n;
  END LOOP;
  RETURN total;
END
$$;

REVOKE ALL ON FUNCTION pgseal.drop_log_chunks(interval) FROM PUBLIC;
