-- Key lifecycle beyond rotation: which rows use which key version, retiring a version no
-- row uses any more, and destroying a scope's keys (crypto-shredding). SQLSTATEs PS011 to
-- PS013 are in 20_errors.sql.

-- Rows per key version and protected column, counted (full scans: an index on
-- pgseal.key_version_of(col) makes them cheap). SECURITY DEFINER, so that a key
-- administrator (pgseal_admin) can count without reading the tables: it returns counts
-- only, over the columns the registry names. VOLATILE: its queries are dynamic SQL.
CREATE FUNCTION pgseal.key_usage(p_version integer DEFAULT NULL)
RETURNS TABLE (table_schema name, table_name name, column_name name, version integer, row_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
BEGIN
  FOR c IN SELECT r.table_schema, r.table_name, r.column_name FROM pgseal.columns r ORDER BY 1, 2, 3 LOOP
    RETURN QUERY EXECUTE format(
      'SELECT %L::name, %L::name, %L::name, pgseal.key_version_of(%I), count(*) FROM %I.%I WHERE %I IS NOT NULL %s GROUP BY 4 ORDER BY 4',
      c.table_schema, c.table_name, c.column_name, c.column_name, c.table_schema, c.table_name, c.column_name,
      CASE WHEN p_version IS NULL THEN '' ELSE format('AND pgseal.key_version_of(%I) = %s', c.column_name, p_version) END);
  END LOOP;
END
$$;

-- Retires a decrypt-only version: refused while any row of any protected column uses it,
-- unless forced (its rows then fail with PS012). Either way its wrapped key is erased: a
-- retired version is never used again, so nothing, not even setting the state back by
-- hand, may revive it (keys_no_revival below).
CREATE FUNCTION pgseal.retire_key(p_version integer, p_force boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  k pgseal.keys;
  used record;
BEGIN
  SELECT * INTO k FROM pgseal.keys WHERE version = p_version FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'PS002', MESSAGE = format('pgseal: there is no key version %s', p_version), HINT = 'See `pgseal keys list`.';
  END IF;
  IF k.state <> 'decrypt-only' THEN
    RAISE EXCEPTION USING ERRCODE = 'PS011', MESSAGE = format('pgseal: key version %s is %s, not decrypt-only', p_version, k.state),
      HINT = CASE WHEN k.state = 'active' THEN 'Rotate first (pgseal keys rotate), re-encrypt, then retire the old version.' ELSE 'Nothing to do.' END;
  END IF;
  -- a blind index carries no version: an older index key is unused once a run recomputed
  -- every searchable column of its scope after it stopped being active
  IF NOT p_force AND k.purpose = 'index' AND NOT EXISTS (
    SELECT 1 FROM pgseal.reencrypt_runs r
     WHERE r.kind = 'index' AND r.state = 'done' AND r.table_filter IS NULL
       AND (r.scope_filter IS NULL OR r.scope_filter = k.scope) AND r.started_at >= k.deactivated_at) THEN
    RAISE EXCEPTION USING ERRCODE = 'PS011',
      MESSAGE = format('pgseal: blind-index key version %s may still be used by indexes of scope %s', p_version, k.scope),
      HINT = 'Recompute them first: pgseal reencrypt --blind-index (every column of the scope).';
  END IF;
  IF NOT p_force THEN
    SELECT * INTO used FROM pgseal.key_usage(p_version) u LIMIT 1;
    IF FOUND THEN
      RAISE EXCEPTION USING ERRCODE = 'PS011',
        MESSAGE = format('pgseal: key version %s is still used by %s rows of %I.%I.%I', p_version, used.row_count, used.table_schema, used.table_name, used.column_name),
        HINT = 'Re-encrypt those rows under the active version first; retiring now would make them unreadable.';
    END IF;
  END IF;
  UPDATE pgseal.keys SET state = 'retired', retired_at = now(), wrapped_key = NULL WHERE version = p_version;
END
$$;

-- Crypto-shredding: the scope's keys lose their material for good, and every value encrypted
-- under them can no longer be read (GDPR erasure of a tenant or subject). An old backup of
-- pgseal.keys still holds the wrapped keys: only when the scope's keys are wrapped by a scope
-- key kept outside the database, destroyed with the scope, do backups stay closed too
-- (README, "What crypto-shredding guarantees").
CREATE FUNCTION pgseal.destroy_scope_keys(p_scope text) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  n integer;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('pgseal.keys'), hashtext(p_scope || '/data'));
  -- the log key signs the logs, it protects no data: shredding a scope leaves it
  UPDATE pgseal.keys SET state = 'destroyed', wrapped_key = NULL, destroyed_at = now()
   WHERE scope = p_scope AND state <> 'destroyed' AND purpose <> 'log';
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n = 0 AND NOT EXISTS (SELECT 1 FROM pgseal.keys WHERE scope = p_scope) THEN
    RAISE EXCEPTION USING ERRCODE = 'PS002', MESSAGE = format('pgseal: there is no key scope %L', p_scope), HINT = 'See `pgseal keys list`.';
  END IF;
  RETURN n;
END
$$;

-- A version that lost its material (retired, destroyed) never regains it and never becomes
-- usable again: no UPDATE may give it a wrapped key or move it back to active or
-- decrypt-only (retired may still become destroyed). Restoring an old dump of pgseal.keys
-- is a DBA's act outside this rule; per-scope keys are what keep such a restore closed.
CREATE FUNCTION pgseal._keys_no_revival() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF (OLD.wrapped_key IS NULL AND NEW.wrapped_key IS NOT NULL)
     OR (OLD.state = 'destroyed' AND NEW.state <> 'destroyed')
     OR (OLD.state = 'retired' AND NEW.state NOT IN ('retired', 'destroyed')) THEN
    RAISE EXCEPTION USING ERRCODE = 'check_violation', CONSTRAINT = 'keys_no_revival', TABLE = 'keys', SCHEMA = 'pgseal',
      MESSAGE = format('pgseal: key version %s is %s: its key material was erased and it cannot be used again', OLD.version, OLD.state),
      HINT = 'Create a new version instead (pgseal keys rotate, or pgseal keys init --scope for a destroyed scope).';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER keys_no_revival BEFORE UPDATE ON pgseal.keys
  FOR EACH ROW WHEN (OLD.state IN ('retired', 'destroyed') OR OLD.wrapped_key IS NULL) EXECUTE FUNCTION pgseal._keys_no_revival();

-- owner only: they change or scan every protected table
REVOKE ALL ON FUNCTION pgseal.key_usage(integer), pgseal.retire_key(integer, boolean), pgseal.destroy_scope_keys(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgseal._keys_no_revival() FROM PUBLIC;
