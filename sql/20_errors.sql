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
--   PS014  a value written with a compromised key version (after an emergency rotation)
--   PS015  no log key (or a log key version not handed in): the logs cannot be signed
--   PS016  a log chain head that does not verify: the logs' chains were edited by hand
--   PS017  a decrypted value that is not valid for its column's type (written bypassing pgseal's checks)
--   PS020  key versions revoked since the caller loaded its keys (pgseal.guard, sql/35_guard.sql)
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
-- the version's state on the failure path only (pgseal._key_state, sql/30_keyring.sql: a
-- caller who may not call it gets PS002 instead). No EXCEPTION block: a subtransaction
-- cannot start in a parallel worker, and this runs in them.
CREATE FUNCTION pgseal._fail_key_state(version integer) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  state text;
BEGIN
  IF pg_catalog.has_function_privilege('pgseal._key_state(integer)', 'EXECUTE') THEN
    state := pgseal._key_state(version);
  END IF;
  IF state = 'retired' THEN
    RAISE EXCEPTION USING ERRCODE = 'PS012', MESSAGE = format('pgseal: key version %s is retired', version),
      HINT = 'This value was not re-encrypted before its key version was retired; it can no longer be read.';
  ELSIF state = 'destroyed' THEN
    RAISE EXCEPTION USING ERRCODE = 'PS013', MESSAGE = format('pgseal: key version %s was destroyed (crypto-shredded)', version),
      HINT = 'The keys of this scope were destroyed on purpose; the value can never be read again.';
  END IF;
END
$$;

-- PS001 unless pgseal.use_keys() ran in this transaction: its hand-off setting names this
-- transaction's start (sql/30_keyring.sql); one preset on the connection, or left by an
-- earlier transaction, does not.
CREATE FUNCTION pgseal._fail_if_no_keys() RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF pg_catalog.left(COALESCE(pg_catalog.current_setting('pgseal.handoff', true), ''), 16)
       IS DISTINCT FROM pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()), 'hex')
     OR pg_catalog.length(pg_catalog.current_setting('pgseal.handoff', true)) <> 48 THEN
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
    'The value was altered or truncated, was copied from another column or row (context mismatch), or was written under a different key; or its column or table was renamed after it was protected, and it opens only under the context it was sealed with (schema.table.column as protected). Otherwise it cannot be read as it is: restore it from a backup.');
  RETURN NULL;
END
$$;

-- The failure branch of decrypt_bytea: keys come from the transaction's settings.
CREATE FUNCTION pgseal._fail_open(ciphertext bytea, context text) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN pgseal._fail_envelope(ciphertext, context,
    -- handed in = a MAC key of this transaction's hand-off (one preset on the connection is not)
    pgseal._mac_key_for(ciphertext) IS NOT NULL,
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
