-- Key lifecycle beyond rotation: which rows use which key version, retiring a version no
-- row uses any more, and destroying a scope's keys (crypto-shredding). SQLSTATEs PS011 to
-- PS013 are in 20_errors.sql.

-- Every envelope in the database, counted per column and key version: every bytea column
-- (or domain over bytea) of every table and materialized view outside the system schemas
-- and pgseal's own, protected or not, since a value sealed by hand into a column never
-- protected is lost just the same when its version is retired. p_registered: NULL every
-- column, true only protected ones (the registry), false only the others. A column the
-- owner may not read, or whose table's row-level security would hide rows from it, comes
-- back once with readable = false and no counts: nobody knows what it holds. Partitions are
-- counted through their partitioned table, inheritance children each on their own (ONLY).
-- SECURITY DEFINER, so that a key administrator can count without reading the tables; it
-- returns counts only. A table's policies are never run as the owner (such tables are
-- reported unreadable instead). VOLATILE: its queries are dynamic SQL.
CREATE FUNCTION pgseal.envelope_census(p_version integer DEFAULT NULL, p_registered boolean DEFAULT NULL)
RETURNS TABLE (table_schema name, table_name name, column_name name, registered boolean, readable boolean, version integer, row_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c record;
  bypass boolean := (SELECT r.rolsuper OR r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user);
BEGIN
  FOR c IN
    SELECT n.nspname, cl.relname, a.attname, cl.relkind,
           EXISTS (
             WITH RECURSIVE up(oid) AS (
               SELECT cl.oid UNION SELECT i.inhparent FROM pg_inherits i JOIN up ON i.inhrelid = up.oid)
             SELECT 1 FROM up JOIN pg_class pc ON pc.oid = up.oid JOIN pg_namespace pn ON pn.oid = pc.relnamespace
               JOIN pgseal.columns r ON r.table_schema = pn.nspname AND r.table_name = pc.relname AND r.column_name = a.attname) AS registered,
           has_column_privilege(cl.oid, a.attnum, 'SELECT')
             AND NOT (cl.relrowsecurity AND NOT bypass AND (cl.relforcerowsecurity OR NOT pg_has_role(cl.relowner, 'USAGE'))) AS readable
      FROM pg_class cl
      JOIN pg_namespace n ON n.oid = cl.relnamespace
      JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
      JOIN pg_type t ON t.oid = a.atttypid
     WHERE cl.relkind IN ('r', 'p', 'm') AND NOT cl.relispartition
       AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgseal', 'pg_toast')
       AND n.nspname !~ '^pg_(toast_)?temp_'
       AND (t.oid = 'bytea'::regtype OR (t.typtype = 'd' AND t.typbasetype = 'bytea'::regtype))
     ORDER BY 1, 2, 3
  LOOP
    CONTINUE WHEN p_registered IS NOT NULL AND c.registered <> p_registered;
    IF NOT c.readable THEN
      RETURN QUERY SELECT c.nspname, c.relname, c.attname, c.registered, false, NULL::integer, NULL::bigint;
      CONTINUE;
    END IF;
    RETURN QUERY EXECUTE format(
      'SELECT %L::name, %L::name, %L::name, %L::boolean, true, pgseal.key_version_of(%I), count(*) FROM %s %I.%I WHERE %I IS NOT NULL %s GROUP BY 6 ORDER BY 6',
      c.nspname, c.relname, c.attname, c.registered, c.attname, CASE WHEN c.relkind = 'r' THEN 'ONLY' ELSE '' END, c.nspname, c.relname, c.attname,
      CASE WHEN p_version IS NULL THEN '' ELSE format('AND pgseal.key_version_of(%I) = %s', c.attname, p_version) END);
  END LOOP;
END
$$;

-- Rows per key version and protected column (the census of the registered columns; rows
-- that hold no envelope come back with version NULL).
CREATE FUNCTION pgseal.key_usage(p_version integer DEFAULT NULL)
RETURNS TABLE (table_schema name, table_name name, column_name name, version integer, row_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN QUERY SELECT u.table_schema, u.table_name, u.column_name, u.version, u.row_count
    FROM pgseal.envelope_census(p_version, true) u WHERE u.readable;
END
$$;

-- Retires a decrypt-only version: refused while any value in the database is sealed under
-- it (protected column or not, envelope_census), or a column pgseal's owner may not read
-- could hold one, unless forced (its rows then fail with PS012). Either way its wrapped key is erased: a
-- retired version is never used again, so nothing, not even setting the state back by
-- hand, may revive it (keys_no_revival below).
CREATE FUNCTION pgseal.retire_key(p_version integer, p_force boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  k pgseal.keys;
  n_values numeric;
  places text;
  unprotected boolean;
  unreadable text;
  census_owner name := (SELECT pg_get_userbyid(p.proowner) FROM pg_proc p WHERE p.oid = 'pgseal.envelope_census(integer, boolean)'::regprocedure);
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
  -- every envelope of the version anywhere in the database, protected column or not
  IF NOT p_force AND k.purpose = 'data' THEN
    SELECT pg_catalog.sum(u.row_count),
           pg_catalog.string_agg(format('%s in %I.%I.%I%s', u.row_count, u.table_schema, u.table_name, u.column_name,
                                        CASE WHEN u.registered THEN '' ELSE ' (not a protected column)' END), ', ') FILTER (WHERE u.readable),
           COALESCE(pg_catalog.bool_or(u.readable AND NOT u.registered), false),
           pg_catalog.string_agg(format('%I.%I.%I', u.table_schema, u.table_name, u.column_name), ', ') FILTER (WHERE NOT u.readable)
      INTO n_values, places, unprotected, unreadable
      FROM pgseal.envelope_census(p_version) u;
    IF n_values IS NOT NULL THEN
      RAISE EXCEPTION USING ERRCODE = 'PS011',
        MESSAGE = format('pgseal: key version %s still seals %s values: %s', p_version, n_values, places),
        HINT = CASE WHEN unprotected
          THEN 'Protect those columns (pgseal protect --table T --column C; a value opens only under the context it was sealed with) and run pgseal reencrypt; retiring now would make them unreadable.'
          ELSE 'Re-encrypt those rows under the active version first (pgseal reencrypt); retiring now would make them unreadable.' END;
    END IF;
    IF unreadable IS NOT NULL THEN
      RAISE EXCEPTION USING ERRCODE = 'PS011',
        MESSAGE = format('pgseal: cannot tell whether key version %s still seals values in %s: pgseal''s owner (%I) may not read all their rows', p_version, unreadable, census_owner),
        HINT = format('Grant SELECT on those tables to %I (row-level security hides rows from it too), or retire with --force once you know they hold no value of this version.', census_owner);
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
REVOKE ALL ON FUNCTION pgseal.envelope_census(integer, boolean), pgseal.key_usage(integer), pgseal.retire_key(integer, boolean), pgseal.destroy_scope_keys(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgseal._keys_no_revival() FROM PUBLIC;
