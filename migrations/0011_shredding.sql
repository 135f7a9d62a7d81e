-- pgseal 0011 (sql/30_keyring.sql, sql/80_lifecycle.sql): shredding that holds.
-- * retire_key erases the wrapped key of the version it retires (forced or not): a retired
--   version is never used again, and before this a forced retire left its material behind,
--   so setting the row back to decrypt-only by hand revived it;
-- * the constraint keys_wrapped_unless_destroyed becomes keys_wrapped_while_usable (a
--   wrapped key exactly while active or decrypt-only); versions retired before this
--   migration lose their wrapped key here;
-- * the trigger keys_no_revival refuses every UPDATE that would give an erased version its
--   material back or move a retired or destroyed version back to a usable state.
-- Released: never edit; sources in sql/.

-- Up Migration
ALTER TABLE pgseal.keys DROP CONSTRAINT keys_wrapped_unless_destroyed;
UPDATE pgseal.keys SET wrapped_key = NULL WHERE state = 'retired' AND wrapped_key IS NOT NULL;
ALTER TABLE pgseal.keys ADD CONSTRAINT keys_wrapped_while_usable CHECK ((state IN ('active', 'decrypt-only')) = (wrapped_key IS NOT NULL));
COMMENT ON COLUMN pgseal.keys.kek_ref IS 'which key wrapped wrapped_key (the master key, or a scope key kept outside the database): a reference, never the key';

CREATE OR REPLACE FUNCTION pgseal.retire_key(p_version integer, p_force boolean DEFAULT false) RETURNS void
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

REVOKE ALL ON FUNCTION pgseal._keys_no_revival() FROM PUBLIC;

-- Down Migration
DROP TRIGGER keys_no_revival ON pgseal.keys;
DROP FUNCTION pgseal._keys_no_revival();

CREATE OR REPLACE FUNCTION pgseal.retire_key(p_version integer, p_force boolean DEFAULT false) RETURNS void
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
  UPDATE pgseal.keys SET state = 'retired', retired_at = now() WHERE version = p_version;
END
$$;

-- the material erased by a retire cannot come back: under the previous constraint a version
-- without it is destroyed
ALTER TABLE pgseal.keys DROP CONSTRAINT keys_wrapped_while_usable;
UPDATE pgseal.keys SET state = 'destroyed', destroyed_at = COALESCE(destroyed_at, retired_at, now())
 WHERE state = 'retired' AND wrapped_key IS NULL;
ALTER TABLE pgseal.keys ADD CONSTRAINT keys_wrapped_unless_destroyed CHECK ((state = 'destroyed') = (wrapped_key IS NULL));
COMMENT ON COLUMN pgseal.keys.kek_ref IS 'which master key wrapped wrapped_key: a reference, never the key';
