-- pgseal 0001: core API (schema, pgcrypto bindings, errors, key registry, envelope).
-- Released: never edit this file; change the API with a new migration. The sources,
-- split by concern, are in sql/ (this up section is their concatenation at release).

-- Up Migration

-- ==== sql/00_schema.sql ====
-- The pgseal schema holds the key registry and the encryption API.
CREATE SCHEMA pgseal;
COMMENT ON SCHEMA pgseal IS 'pgseal: column encryption with pgcrypto (see docs/format.md)';

-- ==== sql/10_crypto_bindings.sql ====
-- pgcrypto bindings.
--
-- pgcrypto may live in any schema (public, extensions, ...). Every pgseal function calls it
-- through these one-line wrappers, created here with pgcrypto's schema named explicitly,
-- so no call depends on the caller's search_path. Each wrapper is a single-expression SQL
-- function with pgcrypto's own volatility, strictness and parallel safety, so the planner
-- inlines it and the call costs exactly what pgcrypto costs.
--
-- pgcrypto is a trusted extension: a database owner without superuser can create it.
DO $bindings$
DECLARE
  crypto_schema name;
BEGIN
  SELECT n.nspname INTO crypto_schema
    FROM pg_catalog.pg_extension e
    JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname = 'pgcrypto';
  IF crypto_schema IS NULL THEN
    CREATE EXTENSION pgcrypto;
    SELECT n.nspname INTO crypto_schema
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pgcrypto';
  END IF;

  EXECUTE pg_catalog.format($f$
    CREATE FUNCTION pgseal._hmac_sha256(data bytea, key bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN %I.hmac(data, key, 'sha256')$f$, crypto_schema);

  EXECUTE pg_catalog.format($f$
    CREATE FUNCTION pgseal._aes_cbc_encrypt(data bytea, key bytea, iv bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN %I.encrypt_iv(data, key, iv, 'aes-cbc/pad:pkcs')$f$, crypto_schema);

  EXECUTE pg_catalog.format($f$
    CREATE FUNCTION pgseal._aes_cbc_decrypt(data bytea, key bytea, iv bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN %I.decrypt_iv(data, key, iv, 'aes-cbc/pad:pkcs')$f$, crypto_schema);

  EXECUTE pg_catalog.format($f$
    CREATE FUNCTION pgseal._random_bytes(n integer) RETURNS bytea
    LANGUAGE sql VOLATILE STRICT PARALLEL SAFE
    RETURN %I.gen_random_bytes(n)$f$, crypto_schema);
END
$bindings$;

-- ==== sql/20_errors.sql ====
-- Stable SQLSTATEs, class PS (documented in README.md and docs/format.md).
--
--   PS001  no keys in this transaction
--   PS002  unknown key version (not among this transaction's keys)
--   PS003  authentication failed (tampered, truncated, wrong key or wrong context)
--   PS004  not a pgseal ciphertext (malformed envelope, e.g. plaintext in an encrypted column)
--   PS005  no active key for the scope being written
--   PS006  invalid key payload handed to pgseal.use_keys (or a keyset / key material argument)
--   PS007  refusing to drop a keyring that holds keys (down migration)
--   PS008  no blind-index key for the scope
--   PS009  a column that cannot be protected as asked (type, primary key, scope column)
--   PS010  not a protected column
--   PS011  key version still in use (retire refused), or not in a state that allows it
--   PS012  key version retired: its values can no longer be read
--   PS013  key destroyed (crypto-shredded): its values can never be read again
--
-- Messages name versions and scopes only: never a key, never a plaintext. The raising
-- helpers are declared STABLE (they have no side effects) so that the single-expression
-- SQL functions calling them on their failure branch can still be inlined.

CREATE FUNCTION pgseal._raise(code text, message text, hint text) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message, HINT = hint;
END
$$;

-- A version missing from the transaction's keys may be retired or destroyed: say so. Reads
-- pgseal.keys on the failure path only; a caller who may not read it gets PS002 instead.
CREATE FUNCTION pgseal._fail_key_state(version integer) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  state text;
BEGIN
  BEGIN
    SELECT k.state INTO state FROM pgseal.keys k WHERE k.version = _fail_key_state.version;
  EXCEPTION WHEN insufficient_privilege OR undefined_table THEN
    RETURN;
  END;
  IF state = 'retired' THEN
    RAISE EXCEPTION USING ERRCODE = 'PS012', MESSAGE = format('pgseal: key version %s is retired', version),
      HINT = 'This value was not re-encrypted before its key version was retired; it can no longer be read.';
  ELSIF state = 'destroyed' THEN
    RAISE EXCEPTION USING ERRCODE = 'PS013', MESSAGE = format('pgseal: key version %s was destroyed (crypto-shredded)', version),
      HINT = 'The keys of this scope were destroyed on purpose; the value can never be read again.';
  END IF;
END
$$;

-- PS001 unless pgseal.use_keys() ran in this transaction.
CREATE FUNCTION pgseal._fail_if_no_keys() RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NULLIF(pg_catalog.current_setting('pgseal.keys_loaded', true), '') IS NULL THEN
    PERFORM pgseal._raise('PS001', 'pgseal: no keys in this transaction',
      'Run the statement through the pgseal library or `pgseal query`: they hand the keys to pgseal.use_keys() in the same transaction.');
  END IF;
END
$$;

-- Why an envelope did not open, on the slow path only, for both ways keys arrive
-- (transaction settings, or a keyset argument): NULL context, not an envelope, its key
-- version not handed in (no keys at all, retired, destroyed, unknown), or authentication.
CREATE FUNCTION pgseal._fail_envelope(ciphertext bytea, context text, key_handed_in boolean, keys_from_settings boolean)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF context IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgseal: the context argument must not be NULL',
      HINT = 'Pass the context the value was encrypted with, by default ''schema.table.column''.';
  END IF;
  IF pgseal.key_version_of(ciphertext) IS NULL THEN
    PERFORM pgseal._raise('PS004', 'pgseal: value is not a pgseal ciphertext',
      'Expected a pgseal envelope (format 1, see docs/format.md). Plaintext written straight into an encrypted column looks like this: write it with pgseal.encrypt_text() instead.');
  END IF;
  IF NOT key_handed_in THEN
    IF keys_from_settings THEN
      PERFORM pgseal._fail_if_no_keys();
    END IF;
    PERFORM pgseal._fail_key_state(pgseal.key_version_of(ciphertext));
    PERFORM pgseal._raise('PS002',
      pg_catalog.format('pgseal: key version %s is not among the keys handed in', pgseal.key_version_of(ciphertext)),
      'If pgseal.keys lists this version as active or decrypt-only, reload the keyring (a rotation happened elsewhere) or include its scope; if it is not listed at all, the value is damaged.');
  END IF;
  PERFORM pgseal._raise('PS003', 'pgseal: ciphertext failed authentication',
    'The value was altered or truncated, was copied from another column or row (context mismatch), or was written under a different key. It cannot be read as it is: restore it from a backup.');
  RETURN NULL;
END
$$;

-- The failure branch of decrypt_bytea: keys come from the transaction's settings.
CREATE FUNCTION pgseal._fail_open(ciphertext bytea, context text) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN pgseal._fail_envelope(ciphertext, context,
    NULLIF(pg_catalog.current_setting('pgseal.enc_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), '') IS NOT NULL,
    true);
END
$$;

CREATE FUNCTION pgseal._fail_no_active_key(scope text) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pgseal._fail_if_no_keys();
  PERFORM pgseal._raise('PS005', pg_catalog.format('pgseal: no active key for scope %L in this transaction', scope),
    'Create one with `pgseal keys init` (or `pgseal keys rotate --scope <scope>`), and load that scope''s keys in the transaction.');
  RETURN NULL;
END
$$;

-- ==== sql/30_keyring.sql ====
-- The key registry, and the hand-off of unwrapped keys to one transaction.
--
-- Data keys (DEKs) are stored only wrapped by the master key, which never reaches the
-- database. `version` is allocated from one sequence for all scopes, so the 4-byte version
-- in a ciphertext header names both the scope and the key.

CREATE TABLE pgseal.keys (
  version        integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  scope          text NOT NULL DEFAULT 'default',
  purpose        text NOT NULL DEFAULT 'data',
  state          text NOT NULL DEFAULT 'active',
  wrapped_key    bytea,
  kek_ref        text NOT NULL,
  fingerprint    text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
  created_by     text NOT NULL DEFAULT CURRENT_USER,
  deactivated_at timestamptz,
  retired_at     timestamptz,
  destroyed_at   timestamptz,
  -- scopes become part of setting names: lower case, digits, '_' and '-'
  CONSTRAINT keys_scope_format CHECK (scope ~ '^[a-z0-9_-]{1,63}$'),
  CONSTRAINT keys_purpose_known CHECK (purpose IN ('data', 'index')),
  CONSTRAINT keys_state_known CHECK (state IN ('active', 'decrypt-only', 'retired', 'destroyed')),
  CONSTRAINT keys_wrapped_unless_destroyed CHECK ((state = 'destroyed') = (wrapped_key IS NULL)),
  CONSTRAINT keys_version_positive CHECK (version > 0)
);
COMMENT ON TABLE pgseal.keys IS 'pgseal data keys, wrapped by the master key (never stored here)';
COMMENT ON COLUMN pgseal.keys.kek_ref IS 'which master key wrapped wrapped_key: a reference, never the key';
COMMENT ON COLUMN pgseal.keys.fingerprint IS 'HMAC of the unwrapped key under a fixed label: detects a wrong unwrap';

-- Exactly one version per scope and purpose encrypts new values.
CREATE UNIQUE INDEX keys_one_active_per_scope ON pgseal.keys (scope, purpose) WHERE state = 'active';

-- Adds a new active version for its scope; the previous active one becomes decrypt-only.
-- Serialised per scope so two concurrent rotations cannot both win.
CREATE FUNCTION pgseal.add_key(
  p_version integer, p_scope text, p_purpose text, p_wrapped_key bytea, p_kek_ref text, p_fingerprint text
) RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  previous integer;
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgseal.keys'), pg_catalog.hashtext(p_scope || '/' || p_purpose));
  UPDATE pgseal.keys
     SET state = 'decrypt-only', deactivated_at = pg_catalog.now()
   WHERE scope = p_scope AND purpose = p_purpose AND state = 'active'
  RETURNING version INTO previous;
  INSERT INTO pgseal.keys (version, scope, purpose, state, wrapped_key, kek_ref, fingerprint)
  VALUES (p_version, p_scope, p_purpose, 'active', p_wrapped_key, p_kek_ref, p_fingerprint);
  RETURN previous;
END
$$;

-- Makes unwrapped keys visible to the rest of the current transaction only.
--
-- The payload arrives as one bound parameter (never SQL text, so pg_stat_activity and
-- log_statement show only "$1"); the keys become transaction-local settings, gone at
-- COMMIT or ROLLBACK, so a pooled connection cannot carry them to the next user. Keep the
-- key path in this one function: on Citus its body becomes SET LOCAL (see DESIGN.md).
--
-- Payload: repeated entries of
--   flags u8 (bit 0: the active data key of its scope; bit 1: the active blind-index key
--   of its scope) | version u32 BE | scope length u8 | scope (UTF-8) | key material (64):
--   a data key's encryption key (32) and MAC key (32); an index key (32) and 32 zero bytes
-- Settings written:
--   pgseal.enc_<version as 8 hex digits> = hex(encryption key)            (decrypt)
--   pgseal.mac_<version as 8 hex digits> = hex(MAC key)                   (decrypt)
--   pgseal.active_<scope, '-' as '$'>    = hex(version || enc key || mac key) (encrypt)
--   pgseal.index_<scope, '-' as '$'>     = hex(index key)                     (blind indexes)
--   pgseal.keys_loaded                   = number of keys
CREATE FUNCTION pgseal.use_keys(payload bytea) RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = '' AS $$
DECLARE
  pos integer := 0;
  total integer := pg_catalog.octet_length(payload);
  n integer := 0;
  flags integer;
  scope_len integer;
  scope text;
  version_bytes bytea;
  material bytea;
BEGIN
  IF payload IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'PS006', MESSAGE = 'pgseal: invalid key payload',
      HINT = 'pgseal.use_keys() takes the payload built by the pgseal library; do not call it by hand.';
  END IF;
  WHILE pos < total LOOP
    IF total - pos < 6 THEN
      RAISE EXCEPTION USING ERRCODE = 'PS006', MESSAGE = 'pgseal: invalid key payload',
        HINT = 'pgseal.use_keys() takes the payload built by the pgseal library; do not call it by hand.';
    END IF;
    flags := pg_catalog.get_byte(payload, pos);
    version_bytes := pg_catalog.substr(payload, pos + 2, 4);
    scope_len := pg_catalog.get_byte(payload, pos + 5);
    IF total - pos < 6 + scope_len + 64 THEN
      RAISE EXCEPTION USING ERRCODE = 'PS006', MESSAGE = 'pgseal: invalid key payload',
        HINT = 'pgseal.use_keys() takes the payload built by the pgseal library; do not call it by hand.';
    END IF;
    scope := pg_catalog.convert_from(pg_catalog.substr(payload, pos + 7, scope_len), 'UTF8');
    IF scope !~ '^[a-z0-9_-]{1,63}$' THEN
      RAISE EXCEPTION USING ERRCODE = 'PS006', MESSAGE = 'pgseal: invalid key payload (scope name)',
        HINT = 'Scope names are 1 to 63 characters: a-z, 0-9, _ and -.';
    END IF;
    material := pg_catalog.substr(payload, pos + 7 + scope_len, 64);
    IF flags & 2 = 2 THEN
      PERFORM pg_catalog.set_config('pgseal.index_' || pg_catalog.translate(scope, '-', '$'),
                                    pg_catalog.encode(pg_catalog.substr(material, 1, 32), 'hex'), true);
      n := n + 1;
      pos := pos + 6 + scope_len + 64;
      CONTINUE;
    END IF;
    PERFORM pg_catalog.set_config('pgseal.enc_' || pg_catalog.encode(version_bytes, 'hex'),
                                  pg_catalog.encode(pg_catalog.substr(material, 1, 32), 'hex'), true);
    PERFORM pg_catalog.set_config('pgseal.mac_' || pg_catalog.encode(version_bytes, 'hex'),
                                  pg_catalog.encode(pg_catalog.substr(material, 33, 32), 'hex'), true);
    IF flags & 1 = 1 THEN
      PERFORM pg_catalog.set_config('pgseal.active_' || pg_catalog.translate(scope, '-', '$'),
                                    pg_catalog.encode(version_bytes || material, 'hex'), true);
    END IF;
    n := n + 1;
    pos := pos + 6 + scope_len + 64;
  END LOOP;
  PERFORM pg_catalog.set_config('pgseal.keys_loaded', n::text, true);
  RETURN n;
END
$$;

-- ==== sql/40_envelope.sql ====
-- The ciphertext envelope (format 1; byte layout in docs/format.md):
--
--   0x01 | 0x01 | key version u32 BE | IV (16) | AES-256-CBC ciphertext (16*k) | tag (32)
--   tag = HMAC-SHA-256(mac key, header || IV || ciphertext || context || u32 BE len(context))
--
-- The context (UTF-8, by default 'schema.table.column') is authenticated but not stored:
-- a value copied to another column or row does not open. Encryption and MAC keys are
-- derived from the data key by the application (src/keys/derive.ts).

-- The version that sealed a value, or NULL when the value is not a pgseal envelope.
-- Cheap and IMMUTABLE: usable in indexes and in "which rows use which key" counts.
CREATE FUNCTION pgseal.key_version_of(ciphertext bytea) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
  WHEN pg_catalog.octet_length(ciphertext) >= 70
   AND pg_catalog.get_byte(ciphertext, 0) = 1
   AND pg_catalog.get_byte(ciphertext, 1) = 1
   AND pg_catalog.get_byte(ciphertext, 2) < 128
  THEN (pg_catalog.get_byte(ciphertext, 2) << 24) | (pg_catalog.get_byte(ciphertext, 3) << 16)
     | (pg_catalog.get_byte(ciphertext, 4) << 8) | pg_catalog.get_byte(ciphertext, 5)
END;

-- The bytes the tag covers after the envelope itself: the context, then its length, so no
-- two (ciphertext, context) splits authenticate the same input.
-- IMMUTABLE (the conversion to UTF-8 cannot change within a database) so a constant
-- context, the usual case, is folded once at plan time instead of once per row.
CREATE FUNCTION pgseal._context_bytes(context text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  utf8 bytea := pg_catalog.convert_to(context, 'UTF8');
BEGIN
  RETURN utf8 OPERATOR(pg_catalog.||) pg_catalog.int4send(pg_catalog.octet_length(utf8));
END
$$;

-- Builds an envelope from explicit key material (version u32 || enc key || mac key, 68
-- bytes), IV and the context's authenticated bytes. The one place an envelope is built in
-- SQL. PL/pgSQL because the body is needed twice (output and tag) and a SQL expression
-- would compute it, and its random IV, twice. The context bytes come in ready-made so a
-- constant context is folded at plan time by the inlined caller, not recomputed per row.
CREATE FUNCTION pgseal._seal(plaintext bytea, context_bytes bytea, key_material bytea, iv bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  body bytea;
BEGIN
  -- operators qualified: a SET search_path clause would cost every call
  body := pg_catalog.byteacat(pg_catalog.byteacat(pg_catalog.byteacat('\x0101'::bytea, pg_catalog.substr(key_material, 1, 4)), iv),
                              pgseal._aes_cbc_encrypt(plaintext, pg_catalog.substr(key_material, 5, 32), iv));
  RETURN pg_catalog.byteacat(body, pgseal._hmac_sha256(pg_catalog.byteacat(body, context_bytes), pg_catalog.substr(key_material, 37, 32)));
END
$$;

-- Seals with explicit key material and IV: what the test vectors check.
CREATE FUNCTION pgseal.seal(plaintext bytea, context text, key_material bytea, iv bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pgseal._seal(plaintext, pgseal._context_bytes(context), key_material, iv);

-- The active key of a scope in this transaction (68 bytes), or NULL.
CREATE FUNCTION pgseal._active_key(scope text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.decode(NULLIF(
  pg_catalog.current_setting('pgseal.active_' || pg_catalog.translate(scope, '-', '$'), true), ''), 'hex');

-- The MAC and encryption keys a ciphertext names, from this transaction's keys; NULL when
-- absent (the tag check then fails and _fail_open says why). A setting once made on a
-- connection stays defined as '' after its transaction: that must never act as a key (an
-- HMAC under an empty key is one anyone can compute).
CREATE FUNCTION pgseal._mac_key_for(ciphertext bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.decode(NULLIF(pg_catalog.current_setting(
  'pgseal.mac_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), ''), 'hex');

CREATE FUNCTION pgseal._enc_key_for(ciphertext bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.decode(NULLIF(pg_catalog.current_setting(
  'pgseal.enc_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), ''), 'hex');

CREATE FUNCTION pgseal.encrypt_bytea(plaintext bytea, context text, scope text DEFAULT 'default') RETURNS bytea
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN CASE WHEN plaintext IS NOT NULL THEN
  pgseal._seal(plaintext,
               COALESCE(pgseal._context_bytes(context), pgseal._raise('22004', 'pgseal: the context argument must not be NULL',
                 'Pass the context to bind the value to, by default ''schema.table.column''.')),
               COALESCE(pgseal._active_key(scope), pgseal._fail_no_active_key(scope)),
               pgseal._random_bytes(16))
END;

CREATE FUNCTION pgseal.encrypt_text(plaintext text, context text, scope text DEFAULT 'default') RETURNS bytea
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN pgseal.encrypt_bytea(pg_catalog.convert_to(plaintext, 'UTF8'), context, scope);

-- One flat expression so the planner inlines it: the fast path verifies the tag and
-- decrypts; anything else goes to _fail_open, which names the failure.
CREATE FUNCTION pgseal.decrypt_bytea(ciphertext bytea, context text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
  WHEN ciphertext IS NULL THEN NULL
  WHEN pg_catalog.octet_length(ciphertext) >= 70
   AND (pg_catalog.octet_length(ciphertext) - 54) % 16 = 0
   AND pg_catalog.substr(ciphertext, 1, 2) = '\x0101'::bytea
   AND pgseal._hmac_sha256(
         pg_catalog.substr(ciphertext, 1, pg_catalog.octet_length(ciphertext) - 32)
           || pgseal._context_bytes(context),
         pgseal._mac_key_for(ciphertext))
       = pg_catalog.substr(ciphertext, pg_catalog.octet_length(ciphertext) - 31)
  THEN pgseal._aes_cbc_decrypt(
         pg_catalog.substr(ciphertext, 23, pg_catalog.octet_length(ciphertext) - 54),
         pgseal._enc_key_for(ciphertext),
         pg_catalog.substr(ciphertext, 7, 16))
  ELSE pgseal._fail_open(ciphertext, context)
END;

CREATE FUNCTION pgseal.decrypt_text(ciphertext bytea, context text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.convert_from(pgseal.decrypt_bytea(ciphertext, context), 'UTF8');

-- ==== sql/45_privileges.sql ====
-- Privileges, granted on purpose. Start from nothing, then open what is safe.
REVOKE ALL ON SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgseal FROM PUBLIC;

-- Any role may call the encryption API: without keys handed in by the application it can
-- neither encrypt nor decrypt anything. Inlined functions are checked against the
-- caller's rights, so the internal helpers they call are granted too.
GRANT USAGE ON SCHEMA pgseal TO PUBLIC;
GRANT EXECUTE ON FUNCTION
  pgseal.use_keys(bytea),
  pgseal.encrypt_text(text, text, text), pgseal.encrypt_bytea(bytea, text, text),
  pgseal.decrypt_text(bytea, text), pgseal.decrypt_bytea(bytea, text),
  pgseal.key_version_of(bytea), pgseal.seal(bytea, text, bytea, bytea), pgseal._seal(bytea, bytea, bytea, bytea),
  pgseal._raise(text, text, text), pgseal._fail_key_state(integer), pgseal._fail_if_no_keys(),
  pgseal._fail_envelope(bytea, text, boolean, boolean), pgseal._fail_open(bytea, text), pgseal._fail_no_active_key(text),
  pgseal._context_bytes(text), pgseal._active_key(text), pgseal._mac_key_for(bytea), pgseal._enc_key_for(bytea),
  pgseal._hmac_sha256(bytea, bytea), pgseal._aes_cbc_encrypt(bytea, bytea, bytea),
  pgseal._aes_cbc_decrypt(bytea, bytea, bytea), pgseal._random_bytes(integer)
TO PUBLIC;

-- The key registry is not PUBLIC: wrapped keys are useless without the master key, but
-- who may read or change them is the owner's decision (README: "Privileges").
-- pgseal.add_key stays owner-only.

-- Down Migration
-- Dropping pgseal.keys makes every value encrypted under those keys unreadable for good,
-- so this refuses while any key still has material, unless the session says it means it:
--   SET pgseal.allow_drop_keys = 'on'
DO $down$
BEGIN
  IF EXISTS (SELECT 1 FROM pgseal.keys WHERE wrapped_key IS NOT NULL)
     AND pg_catalog.current_setting('pgseal.allow_drop_keys', true) IS DISTINCT FROM 'on' THEN
    RAISE EXCEPTION USING ERRCODE = 'PS007',
      MESSAGE = 'pgseal: refusing to drop pgseal.keys while it holds keys',
      HINT = 'Every value encrypted under these keys would become unreadable. Decrypt or export the data first; to drop anyway: pgseal migrate down --allow-drop-keys (it sets pgseal.allow_drop_keys = on for the migrating session).';
  END IF;
END
$down$;
-- Our own objects, one by one and without CASCADE: if something of yours depends on them
-- (an index on pgseal.key_version_of, a view calling decrypt_text), this stops and says so
-- instead of dropping it silently.
DROP FUNCTION pgseal.decrypt_text(bytea, text);
DROP FUNCTION pgseal.decrypt_bytea(bytea, text);
DROP FUNCTION pgseal.encrypt_text(text, text, text);
DROP FUNCTION pgseal.encrypt_bytea(bytea, text, text);
DROP FUNCTION pgseal._enc_key_for(bytea);
DROP FUNCTION pgseal._mac_key_for(bytea);
DROP FUNCTION pgseal._active_key(text);
DROP FUNCTION pgseal.seal(bytea, text, bytea, bytea);
DROP FUNCTION pgseal._seal(bytea, bytea, bytea, bytea);
DROP FUNCTION pgseal._context_bytes(text);
DROP FUNCTION pgseal.key_version_of(bytea);
DROP FUNCTION pgseal.use_keys(bytea);
DROP FUNCTION pgseal.add_key(integer, text, text, bytea, text, text);
DROP TABLE pgseal.keys;
DROP FUNCTION pgseal._fail_no_active_key(text);
DROP FUNCTION pgseal._fail_open(bytea, text);
DROP FUNCTION pgseal._fail_envelope(bytea, text, boolean, boolean);
DROP FUNCTION pgseal._fail_if_no_keys();
DROP FUNCTION pgseal._fail_key_state(integer);
DROP FUNCTION pgseal._raise(text, text, text);
DROP FUNCTION pgseal._random_bytes(integer);
DROP FUNCTION pgseal._aes_cbc_decrypt(bytea, bytea, bytea);
DROP FUNCTION pgseal._aes_cbc_encrypt(bytea, bytea, bytea);
DROP FUNCTION pgseal._hmac_sha256(bytea, bytea);
DROP SCHEMA pgseal;
-- pgcrypto stays installed: other code may use it.
