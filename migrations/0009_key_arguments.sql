-- pgseal 0009: keys that reach only pgseal's functions.
-- * pgseal.guard(generation): the first statement of every transaction that carries keys;
--   pins the settings a role may set for itself that would copy keys or plaintext into a plan
--   dump, the server log or the client's messages, and refuses keys older than the last
--   revocation (pgseal.key_generation, bumped by a trigger on pgseal.keys).
-- * Keys as arguments for rewritten SQL: lookups in a bound key payload (_material_in,
--   _index_keys_in), blind indexes under explicit keys, IS [NOT] DISTINCT FROM with
--   pg_catalog's operators bound at creation.
-- Released: never edit; sources in sql/ (35, 65, 99).

-- Up Migration
-- The guard every statement that carries keys runs behind, in the same transaction and
-- before the keys arrive (src/exec/transaction.ts). It does two things:
--
-- * It pins, transaction-locally, every setting a role may set for itself that could copy
--   a key or a plaintext out of the statements that follow: plan and parse-tree dumps
--   (debug_print_*, which print bound keys as constants in a custom plan), bound parameters
--   in the log of a failing statement (log_parameter_max_length_on_error), and messages of
--   level LOG or below sent to the client (client_min_messages). `ALTER ROLE app SET ...`,
--   a session-level SET left on a pooled connection, or a function of the role's that ran
--   earlier on the connection all stay without effect while the keys are there.
-- * It refuses the transaction when the keys of this process are older than the last
--   revocation (a key retired, destroyed or marked compromised since the process loaded its
--   keys): the pipelined keyed statement then never runs, the process reloads its keys and
--   runs it again, so a destroyed scope is unreadable in every running process from the next
--   call on, not when a cache expires.
--
-- Settings only a superuser can change (log_statement, log_min_duration_statement,
-- log_parameter_max_length, auto_explain.*) cannot be pinned by the application's role; they
-- are for `pgseal doctor` to report.

-- One row: bumped by every revocation, in the revoking transaction (so a process that reads
-- it sees the revocation's effects on pgseal.keys in the same snapshot).
CREATE TABLE pgseal.key_generation (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  generation bigint NOT NULL DEFAULT 1,
  changed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE pgseal.key_generation IS 'pgseal: bumped when a key version is retired, destroyed, erased or marked compromised';
INSERT INTO pgseal.key_generation DEFAULT VALUES;

-- SECURITY DEFINER: the administrator's role that retires or destroys a key may not write
-- this table itself.
CREATE FUNCTION pgseal._bump_key_generation() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE pgseal.key_generation SET generation = generation + 1, changed_at = pg_catalog.now();
  RETURN NULL;
END
$$;

CREATE TRIGGER keys_revoked AFTER UPDATE ON pgseal.keys
FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM OLD.state AND NEW.state IN ('retired', 'destroyed')
                   OR (OLD.wrapped_key IS NOT NULL AND NEW.wrapped_key IS NULL)
                   OR (OLD.compromised_at IS NULL AND NEW.compromised_at IS NOT NULL))
EXECUTE FUNCTION pgseal._bump_key_generation();

CREATE TRIGGER keys_deleted AFTER DELETE ON pgseal.keys
FOR EACH STATEMENT EXECUTE FUNCTION pgseal._bump_key_generation();

-- The generation a keyring records when it loads its keys. SECURITY DEFINER: the
-- application's role reads no pgseal table; a number is no secret.
CREATE FUNCTION pgseal.key_generation() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN (SELECT g.generation FROM pgseal.key_generation g);

-- Pins the settings above for the rest of the transaction (client_min_messages to notice,
-- its default), then checks the caller's keys are not older than the last revocation
-- (PS020). Call it as the transaction's first statement, before any statement that carries
-- a key; outside a transaction block its pins would end with the statement. SECURITY
-- DEFINER to read pgseal.key_generation in the same call: one call, prepared once per
-- connection, is what every keyed statement pays (about 7 us on PostgreSQL 15).
CREATE FUNCTION pgseal.guard(p_generation bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  current bigint;
BEGIN
  PERFORM set_config('debug_print_parse', 'off', true), set_config('debug_print_rewritten', 'off', true),
          set_config('debug_print_plan', 'off', true), set_config('log_parameter_max_length_on_error', '0', true),
          set_config('client_min_messages', 'notice', true);
  SELECT g.generation INTO current FROM pgseal.key_generation g;
  IF p_generation IS NULL OR p_generation < current THEN
    RAISE EXCEPTION USING ERRCODE = 'PS020', MESSAGE = 'pgseal: key versions were revoked since this process loaded its keys',
      HINT = 'The pgseal library reloads its keys and runs the statement again; a caller of pgseal.guard() must reload with pgseal.key_generation().';
  END IF;
  RETURN current;
END
$$;

-- owner only until granted on purpose (sql/99_privileges.sql)
REVOKE ALL ON TABLE pgseal.key_generation FROM PUBLIC;
REVOKE ALL ON FUNCTION pgseal._bump_key_generation(), pgseal.key_generation(), pgseal.guard(bigint) FROM PUBLIC;

-- Keys as arguments for statements whose writes and lookups pick a key per scope
-- (rewritten SQL, pgseal query): the payload of pgseal.use_keys (src/crypto/wire.ts
-- encodeKeyPayload: entries of flags u8 | version u32 BE | scope length u8 | scope | key
-- material (64)) bound as one argument of the statement, never a setting. Any function or
-- operator of the application's role that runs in the same statement or transaction sees
-- only its own operands: a key reaches only these functions, called schema-qualified.
-- Decryption takes the keyset argument of sql/60_search.sql as the typed helpers do.
--
-- With a constant scope (the usual case) the planner folds these lookups once per
-- statement; with a scope column they run once per row.

-- The 0-based offset of the first entry of `scope` whose flags have any bit of `flags`, or
-- NULL. PL/pgSQL on the hot path: every name qualified (sql/README.md).
CREATE FUNCTION pgseal._payload_entry(payload bytea, scope text, flags integer, skip integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  at integer := 0;
  total integer := pg_catalog.octet_length(payload);
  wanted pg_catalog.bytea := pg_catalog.convert_to(scope, 'UTF8');
  len integer;
  seen integer := 0;
BEGIN
  WHILE at OPERATOR(pg_catalog.+) 6 OPERATOR(pg_catalog.<=) total LOOP
    len := pg_catalog.get_byte(payload, at OPERATOR(pg_catalog.+) 5);
    IF at OPERATOR(pg_catalog.+) 70 OPERATOR(pg_catalog.+) len OPERATOR(pg_catalog.>) total THEN
      PERFORM pgseal._raise('PS006', 'pgseal: invalid key payload',
        'The key argument is built by the pgseal library; do not build it by hand.');
    END IF;
    IF (pg_catalog.get_byte(payload, at) OPERATOR(pg_catalog.&) flags) OPERATOR(pg_catalog.<>) 0
       AND pg_catalog.substr(payload, at OPERATOR(pg_catalog.+) 7, len) OPERATOR(pg_catalog.=) wanted THEN
      IF seen OPERATOR(pg_catalog.=) skip THEN
        RETURN at;
      END IF;
      seen := seen OPERATOR(pg_catalog.+) 1;
    END IF;
    at := at OPERATOR(pg_catalog.+) 70 OPERATOR(pg_catalog.+) len;
  END LOOP;
  RETURN NULL;
END
$$;

-- The scope's active data key material (version || encryption key || MAC key, 68 bytes)
-- from a key payload argument; PS005 without one.
CREATE FUNCTION pgseal._material_in(payload bytea, scope text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  at integer := pgseal._payload_entry(payload, scope, 1, 0);
BEGIN
  IF at IS NULL THEN
    PERFORM pgseal._raise('PS005', pg_catalog.format('pgseal: no active key for scope %L among the keys handed in', scope),
      'Create the scope''s keys with `pgseal keys init --scope <scope>`, and load that scope.');
  END IF;
  RETURN pg_catalog.substr(payload, at OPERATOR(pg_catalog.+) 2, 4)
    OPERATOR(pg_catalog.||) pg_catalog.substr(payload, at OPERATOR(pg_catalog.+) 7 OPERATOR(pg_catalog.+) pg_catalog.get_byte(payload, at OPERATOR(pg_catalog.+) 5), 64);
END
$$;

-- The scope's blind-index keys (32 bytes each) from a key payload argument, the active one
-- first, then older ones (lookups try them all while indexes are recomputed); PS008
-- without an active one.
CREATE FUNCTION pgseal._index_keys_in(payload bytea, scope text) RETURNS bytea[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  at integer := pgseal._payload_entry(payload, scope, 2, 0);
  out pg_catalog.bytea[];
  i integer := 0;
BEGIN
  IF at IS NULL THEN
    PERFORM pgseal._raise('PS008', pg_catalog.format('pgseal: no blind-index key for scope %L among the keys handed in', scope),
      'Create the scope''s keys with `pgseal keys init` (it creates a data key and an index key), and load that scope.');
  END IF;
  out := ARRAY[pg_catalog.substr(payload, at OPERATOR(pg_catalog.+) 7 OPERATOR(pg_catalog.+) pg_catalog.get_byte(payload, at OPERATOR(pg_catalog.+) 5), 32)];
  LOOP
    at := pgseal._payload_entry(payload, scope, 4, i);
    EXIT WHEN at IS NULL;
    out := out OPERATOR(pg_catalog.||) pg_catalog.substr(payload, at OPERATOR(pg_catalog.+) 7 OPERATOR(pg_catalog.+) pg_catalog.get_byte(payload, at OPERATOR(pg_catalog.+) 5), 32);
    i := i OPERATOR(pg_catalog.+) 1;
  END LOOP;
  RETURN out;
END
$$;

-- A blind index under the first (the active) of the given index keys: what blind_index
-- computes with the transaction's key.
CREATE FUNCTION pgseal.blind_index_with(value text, normalizer text, context text, index_keys bytea[], bytes integer DEFAULT 16)
RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value IS NOT NULL THEN
  pg_catalog.substr(pgseal._hmac_sha256(
    pg_catalog.convert_to(pgseal.normalize(value, normalizer), 'UTF8') || pgseal._context_bytes(context), index_keys[1]), 1, bytes)
END;

-- The blind indexes to look values up by: each value under every given index key.
CREATE FUNCTION pgseal.blind_index_array_with(value_list text[], normalizer text, context text, index_keys bytea[], bytes integer DEFAULT 16)
RETURNS bytea[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value_list IS NOT NULL THEN ARRAY(
  SELECT pg_catalog.substr(pgseal._hmac_sha256(
           pg_catalog.convert_to(pgseal.normalize(v, normalizer), 'UTF8') || pgseal._context_bytes(context), k), 1, bytes)
    FROM pg_catalog.unnest(value_list) AS v,
         pg_catalog.unnest(index_keys) AS k) END;

-- IS [NOT] DISTINCT FROM with pg_catalog's operators bound at creation: the grammar's form
-- resolves `=` through the caller's search_path, where a role's own operator may come first.
CREATE FUNCTION pgseal._not_distinct(a text, b text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN a IS NOT DISTINCT FROM b;

CREATE FUNCTION pgseal._not_distinct(a bytea, b bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN a IS NOT DISTINCT FROM b;

-- owner only until granted on purpose (sql/99_privileges.sql)
REVOKE ALL ON FUNCTION
  pgseal._payload_entry(bytea, text, integer, integer), pgseal._material_in(bytea, text), pgseal._index_keys_in(bytea, text),
  pgseal.blind_index_with(text, text, text, bytea[], integer), pgseal.blind_index_array_with(text[], text, text, bytea[], integer),
  pgseal._not_distinct(text, text), pgseal._not_distinct(bytea, bytea)
FROM PUBLIC;

-- the app and admin sets gain the functions above (sql/99_privileges.sql)
CREATE OR REPLACE FUNCTION pgseal.grant_api(p_role name, p_api text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  app_functions text := 'pgseal.use_keys(bytea), pgseal.usable_keys(text, text), pgseal.key_version_of(bytea),
    pgseal.encrypt_text(text, text, text), pgseal.encrypt_bytea(bytea, text, text), pgseal.decrypt_text(bytea, text), pgseal.decrypt_bytea(bytea, text),
    pgseal.encrypt_text_with(text, text, bytea), pgseal.encrypt_bytea_with(bytea, text, bytea),
    pgseal.decrypt_text_with(bytea, text, bytea), pgseal.decrypt_bytea_with(bytea, text, bytea),
    pgseal.normalize(text, text), pgseal.normalize_array(text[], text), pgseal.scope_context(text, text), pgseal.row_context(text, text),
    pgseal.blind_index(text, text, text, text, integer), pgseal.blind_index_array(text[], text, text, text, integer),
    pgseal.append_log_link(text, integer, timestamptz, timestamptz, bytea), pgseal._log_key(bytea, integer), pgseal._log_key_version(bytea),
    pgseal.access_log_row_mac(bytea, bigint, integer, timestamptz, text, name, text, text, text, inet),
    pgseal.audit_log_row_mac(bytea, bigint, integer, timestamptz, text, text, text, name, name, name, text, integer, boolean, text, jsonb),
    pgseal._seal(bytea, bytea, bytea, bytea), pgseal._context_bytes(text), pgseal._active_key(text), pgseal._mac_key_for(bytea), pgseal._enc_key_for(bytea),
    pgseal._hmac_sha256(bytea, bytea), pgseal._aes_cbc_encrypt(bytea, bytea, bytea), pgseal._aes_cbc_decrypt(bytea, bytea, bytea), pgseal._random_bytes(integer),
    pgseal._raise(text, text, text), pgseal._key_state(integer), pgseal._fail_key_state(integer), pgseal._fail_if_no_keys(),
    pgseal._fail_envelope(bytea, text, boolean, boolean), pgseal._fail_open(bytea, text), pgseal._fail_no_active_key(text),
    pgseal._bad_normalizer(text), pgseal._fail_no_index_key(text), pgseal._index_key(text), pgseal._index_keys(text),
    pgseal._keyset_find(bytea, bytea), pgseal._keyset_offset(bytea, bytea), pgseal._fail_open_with(bytea, text, bytea),
    pgseal._open_with_keyset(bytea, text, bytea), pgseal._check_key_material(bytea),
    pgseal.guard(bigint), pgseal.key_generation(), pgseal._payload_entry(bytea, text, integer, integer), pgseal._material_in(bytea, text),
    pgseal._index_keys_in(bytea, text), pgseal.blind_index_with(text, text, text, bytea[], integer),
    pgseal.blind_index_array_with(text[], text, text, bytea[], integer), pgseal._not_distinct(text, text), pgseal._not_distinct(bytea, bytea)';
  admin_functions text := 'pgseal.add_key(integer, text, text, bytea, text, text), pgseal.retire_key(integer, boolean),
    pgseal.destroy_scope_keys(text), pgseal.key_usage(integer)';
  v_oid oid;
BEGIN
  IF p_api IS NULL OR p_api NOT IN ('app', 'admin') THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgseal: the privilege set is app or admin';
  END IF;
  v_oid := pgseal._grantee(p_role);
  -- exactly one set: what the role held on pgseal's objects before goes
  EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('REVOKE ALL ON SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('GRANT USAGE ON SCHEMA pgseal TO %I', p_role);
  EXECUTE format('GRANT SELECT ON TABLE pgseal.columns TO %I', p_role);
  EXECUTE format('GRANT INSERT ON TABLE pgseal.encrypted_data_access_log, pgseal.encryption_audit_log TO %I', p_role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', app_functions, p_role);
  IF p_api = 'admin' THEN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON TABLE pgseal.keys TO %I', p_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE pgseal.keys_version_seq TO %I', p_role);
    EXECUTE format('GRANT SELECT ON TABLE pgseal.reencrypt_runs TO %I', p_role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', admin_functions, p_role);
  END IF;
  INSERT INTO pgseal.api_grants (role_oid, role_name, api) VALUES (v_oid, p_role, p_api)
  ON CONFLICT (role_oid) DO UPDATE SET role_name = EXCLUDED.role_name, api = EXCLUDED.api, granted_at = pg_catalog.now(), granted_by = CURRENT_USER;
END
$$;

SELECT pgseal._regrant();

-- Down Migration
CREATE OR REPLACE FUNCTION pgseal.grant_api(p_role name, p_api text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  app_functions text := 'pgseal.use_keys(bytea), pgseal.usable_keys(text, text), pgseal.key_version_of(bytea),
    pgseal.encrypt_text(text, text, text), pgseal.encrypt_bytea(bytea, text, text), pgseal.decrypt_text(bytea, text), pgseal.decrypt_bytea(bytea, text),
    pgseal.encrypt_text_with(text, text, bytea), pgseal.encrypt_bytea_with(bytea, text, bytea),
    pgseal.decrypt_text_with(bytea, text, bytea), pgseal.decrypt_bytea_with(bytea, text, bytea),
    pgseal.normalize(text, text), pgseal.normalize_array(text[], text), pgseal.scope_context(text, text), pgseal.row_context(text, text),
    pgseal.blind_index(text, text, text, text, integer), pgseal.blind_index_array(text[], text, text, text, integer),
    pgseal.append_log_link(text, integer, timestamptz, timestamptz, bytea), pgseal._log_key(bytea, integer), pgseal._log_key_version(bytea),
    pgseal.access_log_row_mac(bytea, bigint, integer, timestamptz, text, name, text, text, text, inet),
    pgseal.audit_log_row_mac(bytea, bigint, integer, timestamptz, text, text, text, name, name, name, text, integer, boolean, text, jsonb),
    pgseal._seal(bytea, bytea, bytea, bytea), pgseal._context_bytes(text), pgseal._active_key(text), pgseal._mac_key_for(bytea), pgseal._enc_key_for(bytea),
    pgseal._hmac_sha256(bytea, bytea), pgseal._aes_cbc_encrypt(bytea, bytea, bytea), pgseal._aes_cbc_decrypt(bytea, bytea, bytea), pgseal._random_bytes(integer),
    pgseal._raise(text, text, text), pgseal._key_state(integer), pgseal._fail_key_state(integer), pgseal._fail_if_no_keys(),
    pgseal._fail_envelope(bytea, text, boolean, boolean), pgseal._fail_open(bytea, text), pgseal._fail_no_active_key(text),
    pgseal._bad_normalizer(text), pgseal._fail_no_index_key(text), pgseal._index_key(text), pgseal._index_keys(text),
    pgseal._keyset_find(bytea, bytea), pgseal._keyset_offset(bytea, bytea), pgseal._fail_open_with(bytea, text, bytea),
    pgseal._open_with_keyset(bytea, text, bytea), pgseal._check_key_material(bytea)';
  admin_functions text := 'pgseal.add_key(integer, text, text, bytea, text, text), pgseal.retire_key(integer, boolean),
    pgseal.destroy_scope_keys(text), pgseal.key_usage(integer)';
  v_oid oid;
BEGIN
  IF p_api IS NULL OR p_api NOT IN ('app', 'admin') THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgseal: the privilege set is app or admin';
  END IF;
  v_oid := pgseal._grantee(p_role);
  -- exactly one set: what the role held on pgseal's objects before goes
  EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('REVOKE ALL ON SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('GRANT USAGE ON SCHEMA pgseal TO %I', p_role);
  EXECUTE format('GRANT SELECT ON TABLE pgseal.columns TO %I', p_role);
  EXECUTE format('GRANT INSERT ON TABLE pgseal.encrypted_data_access_log, pgseal.encryption_audit_log TO %I', p_role);
  EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', app_functions, p_role);
  IF p_api = 'admin' THEN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON TABLE pgseal.keys TO %I', p_role);
    EXECUTE format('GRANT USAGE ON SEQUENCE pgseal.keys_version_seq TO %I', p_role);
    EXECUTE format('GRANT SELECT ON TABLE pgseal.reencrypt_runs TO %I', p_role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', admin_functions, p_role);
  END IF;
  INSERT INTO pgseal.api_grants (role_oid, role_name, api) VALUES (v_oid, p_role, p_api)
  ON CONFLICT (role_oid) DO UPDATE SET role_name = EXCLUDED.role_name, api = EXCLUDED.api, granted_at = pg_catalog.now(), granted_by = CURRENT_USER;
END
$$;

SELECT pgseal._regrant();

DROP FUNCTION pgseal._not_distinct(bytea, bytea);
DROP FUNCTION pgseal._not_distinct(text, text);
DROP FUNCTION pgseal.blind_index_array_with(text[], text, text, bytea[], integer);
DROP FUNCTION pgseal.blind_index_with(text, text, text, bytea[], integer);
DROP FUNCTION pgseal._index_keys_in(bytea, text);
DROP FUNCTION pgseal._material_in(bytea, text);
DROP FUNCTION pgseal._payload_entry(bytea, text, integer, integer);
DROP FUNCTION pgseal.guard(bigint);
DROP FUNCTION pgseal.key_generation();
DROP TRIGGER keys_deleted ON pgseal.keys;
DROP TRIGGER keys_revoked ON pgseal.keys;
DROP FUNCTION pgseal._bump_key_generation();
DROP TABLE pgseal.key_generation;
