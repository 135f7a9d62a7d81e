-- Online re-encryption after a data-key rotation, and the emergency guard.
--
-- The engine (src/reencrypt/) rewrites, inside the database, every value still on an older
-- key version: one UPDATE per batch of primary keys that decrypts with the old key and
-- encrypts with the active one, and records its checkpoint in the same statement, so a
-- run killed at any instant resumes exactly where its last committed batch ended.

-- One run: the columns it covers are its progress rows. A run is resumed only while the
-- active versions are the ones it started with (a later rotation supersedes it).
CREATE TABLE pgseal.reencrypt_runs (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  -- 'data': values move onto the active data key; 'index': blind indexes are recomputed
  -- under the active index key
  kind            text NOT NULL DEFAULT 'data',
  state           text NOT NULL DEFAULT 'running',
  -- what was asked: NULL means every protected column / every scope
  table_filter    text,
  column_filter   name,
  scope_filter    text,
  -- the key versions (of the run's kind) that were active when it started, and the older ones it moves off
  target_versions integer[] NOT NULL,
  stale_versions  integer[] NOT NULL,
  actor           text NOT NULL,
  reason          text,
  emergency       boolean NOT NULL DEFAULT false,
  batch_size      integer NOT NULL,
  parts           integer NOT NULL,
  started_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  updated_at      timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  finished_at     timestamptz,
  error           text,
  CONSTRAINT reencrypt_runs_kind_known CHECK (kind IN ('data', 'index')),
  CONSTRAINT reencrypt_runs_state_known CHECK (state IN ('running', 'stopped', 'failed', 'done', 'superseded')),
  CONSTRAINT reencrypt_runs_batch_size CHECK (batch_size > 0),
  CONSTRAINT reencrypt_runs_parts CHECK (parts BETWEEN 1 AND 64)
);
COMMENT ON TABLE pgseal.reencrypt_runs IS 'pgseal: re-encryption runs (pgseal reencrypt), resumable while their target versions stay active';

-- One primary-key range of one column in one run. Checkpoint: every row of the range with a
-- key <= last_key that was on a stale version when its batch ran has been re-encrypted.
CREATE TABLE pgseal.reencrypt_progress (
  run_id       bigint NOT NULL REFERENCES pgseal.reencrypt_runs (id) ON DELETE CASCADE,
  table_schema name NOT NULL,
  table_name   name NOT NULL,
  column_name  name NOT NULL,
  part         integer NOT NULL,
  -- range of the primary key, as text: (lower_key, upper_key]; NULL is open-ended
  lower_key    text,
  upper_key    text,
  last_key     text,
  rows_total   bigint NOT NULL DEFAULT 0,
  rows_done    bigint NOT NULL DEFAULT 0,
  batches      integer NOT NULL DEFAULT 0,
  -- passes over the range: a row written meanwhile with a stale key (a process that had not
  -- reloaded its keys) behind the checkpoint is caught by the next pass
  pass         integer NOT NULL DEFAULT 1,
  done         boolean NOT NULL DEFAULT false,
  updated_at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  PRIMARY KEY (run_id, table_schema, table_name, column_name, part)
);
COMMENT ON TABLE pgseal.reencrypt_progress IS 'pgseal: checkpoints of re-encryption runs, written in the same statement as each batch';

-- Emergency rotation marks the versions it moves off as compromised (pgseal.keys.compromised_at):
-- nothing new may be written with them, even by a process whose cached keys predate the rotation.

CREATE FUNCTION pgseal._refuse_compromised_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'PS014',
    MESSAGE = format('pgseal: %I.%I.%I: refusing a value written with a compromised key version', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]),
    HINT = 'An emergency rotation replaced that key: reload the keys in the writing process (a new pgseal keyring, or keyring.refresh()) and retry.';
END
$$;

-- (Re)creates, on every protected column, the triggers refusing writes under a compromised
-- version; removes them where none is compromised. The versions are literals in the
-- trigger's WHEN clause: rows written with other versions pay one cheap comparison.
CREATE FUNCTION pgseal.refresh_compromise_guards() RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  bad integer[];
  c record;
  n integer := 0;
BEGIN
  SELECT array_agg(version ORDER BY version) INTO bad FROM pgseal.keys WHERE compromised_at IS NOT NULL AND purpose = 'data';
  FOR c IN
    SELECT r.table_schema, r.table_name, r.column_name, a.attnum
      FROM pgseal.columns r
      JOIN pg_class t ON t.relname = r.table_name
      JOIN pg_namespace s ON s.oid = t.relnamespace AND s.nspname = r.table_schema
      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = r.column_name
     ORDER BY 1, 2, 3
  LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', 'pgseal_compromised_' || c.attnum || '_ins', c.table_schema, c.table_name);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', 'pgseal_compromised_' || c.attnum || '_upd', c.table_schema, c.table_name);
    CONTINUE WHEN bad IS NULL;
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT ON %I.%I FOR EACH ROW WHEN (pgseal.key_version_of(NEW.%I) = ANY (%L::integer[])) EXECUTE FUNCTION pgseal._refuse_compromised_write(%L)',
      'pgseal_compromised_' || c.attnum || '_ins', c.table_schema, c.table_name, c.column_name, bad, c.column_name);
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OF %I ON %I.%I FOR EACH ROW WHEN (pgseal.key_version_of(NEW.%I) = ANY (%L::integer[]) AND NEW.%I IS DISTINCT FROM OLD.%I) EXECUTE FUNCTION pgseal._refuse_compromised_write(%L)',
      'pgseal_compromised_' || c.attnum || '_upd', c.column_name, c.table_schema, c.table_name, c.column_name, bad, c.column_name, c.column_name, c.column_name);
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;

-- Marks a scope's decrypt-only data versions compromised and guards every protected column.
CREATE FUNCTION pgseal.mark_compromised(p_scope text) RETURNS integer[]
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  marked integer[];
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('pgseal.keys'), hashtext(p_scope || '/data'));
  WITH m AS (
    UPDATE pgseal.keys SET compromised_at = clock_timestamp()
     WHERE scope = p_scope AND purpose = 'data' AND state = 'decrypt-only' AND compromised_at IS NULL
    RETURNING version)
  SELECT array_agg(version ORDER BY version) INTO marked FROM m;
  PERFORM pgseal.refresh_compromise_guards();
  RETURN COALESCE(marked, '{}');
END
$$;

-- owner only: they change protected tables and the key registry
REVOKE ALL ON TABLE pgseal.reencrypt_runs, pgseal.reencrypt_progress FROM PUBLIC;
REVOKE ALL ON FUNCTION pgseal._refuse_compromised_write(), pgseal.refresh_compromise_guards(), pgseal.mark_compromised(text) FROM PUBLIC;

-- Re-encrypts one value: opened with the old keys (a keyset, as decrypt_bytea_with takes
-- them), sealed with the active key material, in one flat expression so the planner
-- inlines it. (encrypt(decrypt(...)) would not be inlined: its plaintext argument is used
-- twice and is expensive, so it would run as a SQL function call per row, doubling the
-- cost.) NULL stays NULL. The engine passes the keys as columns of a one-row subquery over
-- this transaction's settings (_keyset_of, _active_material): read once per statement,
-- never a parameter or a plan constant of this long statement, where a slow-statement log
-- or auto_explain would print them.
CREATE FUNCTION pgseal.reseal_with(ciphertext bytea, context text, keyset bytea, key_material bytea) RETURNS bytea
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN pgseal._seal(pgseal.decrypt_bytea_with(ciphertext, context, keyset), pgseal._context_bytes(context), key_material, pgseal._random_bytes(16));

-- The keyset (entries of version || encryption key || MAC key) of these versions, from this
-- transaction's keys; PS002 for a version that was not handed in. Both keys only from this
-- transaction's hand-off (their nonce, see pgseal.use_keys): one preset on the connection is not handed in.
CREATE FUNCTION pgseal._keyset_of(versions integer[]) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  out bytea := '';
  v integer;
  hex text;
  fresh text := substr(current_setting('pgseal.handoff', true), 17);
  enc text;
  mac text;
BEGIN
  PERFORM pgseal._fail_if_no_keys();
  FOREACH v IN ARRAY versions LOOP
    hex := lpad(to_hex(v), 8, '0');
    enc := current_setting('pgseal.enc_' || hex, true);
    mac := current_setting('pgseal.mac_' || hex, true);
    IF length(enc) IS DISTINCT FROM 96 OR length(mac) IS DISTINCT FROM 96 OR right(enc, 32) <> fresh OR right(mac, 32) <> fresh
       OR enc !~ '^[0-9a-f]*$' OR mac !~ '^[0-9a-f]*$' THEN
      PERFORM pgseal._raise('PS002', format('pgseal: key version %s is not among the keys handed in', v),
        'Load that version''s scope in the transaction; a retired or destroyed version cannot be read.');
    END IF;
    out := out || int4send(v) || decode(left(enc, 64), 'hex') || decode(left(mac, 64), 'hex');
  END LOOP;
  RETURN out;
END
$$;

-- The scope's active key material (version || encryption key || MAC key) in this transaction; PS005 without one.
CREATE FUNCTION pgseal._active_material(scope text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN COALESCE(pgseal._active_key(scope), pgseal._fail_no_active_key(scope));
REVOKE ALL ON FUNCTION pgseal.reseal_with(bytea, text, bytea, bytea), pgseal._keyset_of(integer[]), pgseal._active_material(text) FROM PUBLIC;
