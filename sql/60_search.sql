-- Searching encrypted columns, and the keyset path.
--
-- Normalisers make equal values equal before they are indexed (ASCII-only case folding,
-- so SQL and Node agree byte for byte). A blind index is HMAC-SHA-256 under the scope's
-- index key (a separate key family, so rotating data keys leaves indexes valid) over the
-- normalised value and the column context, truncated: equal values in one column match,
-- the same value in two columns does not, and without the key nothing can be guessed.
-- Truncation makes collisions possible on purpose; every equality lookup re-checks the
-- decrypted value.

CREATE FUNCTION pgseal._bad_normalizer(normalizer text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- not echoed: swapped arguments would put the value itself in the message
  RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgseal: unknown normalizer',
    HINT = 'Use one of none, trim, email, phone, upper (the second argument of pgseal.normalize, pgseal.blind_index).';
END
$$;

CREATE FUNCTION pgseal.normalize(value text, normalizer text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE normalizer
  WHEN 'none' THEN value
  WHEN 'trim' THEN pg_catalog.btrim(value, E' \t\n\r')
  WHEN 'email' THEN pg_catalog.lower(pg_catalog.btrim(value, E' \t\n\r') COLLATE "C")
  WHEN 'upper' THEN pg_catalog.upper(pg_catalog.btrim(value, E' \t\n\r') COLLATE "C")
  -- E.164-like: digits only, a leading '+' kept, a leading international '00' becomes '+'
  WHEN 'phone' THEN CASE
    WHEN pg_catalog.btrim(value, E' \t\n\r') LIKE '+%' THEN '+' || pg_catalog.regexp_replace(value, '[^0-9]', '', 'g')
    WHEN pg_catalog.regexp_replace(value, '[^0-9]', '', 'g') LIKE '00%'
      THEN '+' || pg_catalog.substr(pg_catalog.regexp_replace(value, '[^0-9]', '', 'g'), 3)
    ELSE pg_catalog.regexp_replace(value, '[^0-9]', '', 'g')
  END
  ELSE pgseal._bad_normalizer(normalizer)
END;

CREATE FUNCTION pgseal.normalize_array(value_list text[], normalizer text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value_list IS NOT NULL THEN ARRAY(SELECT pgseal.normalize(v, normalizer) FROM pg_catalog.unnest(value_list) AS v) END;

-- Contexts beyond 'schema.table.column': a per-tenant column binds each value to its scope
-- too ('...@<scope>'), so a value copied into another tenant's row fails authentication
-- even when both tenants' keys are loaded; a row-context column binds it to its primary
-- key ('...#<key>'). Both: 'schema.table.column@<scope>#<key>'.
CREATE FUNCTION pgseal.scope_context(column_context text, scope text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN column_context || '@' || scope;

CREATE FUNCTION pgseal.row_context(column_context text, row_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN column_context || '#' || row_key;

CREATE FUNCTION pgseal._fail_no_index_key(scope text) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pgseal._fail_if_no_keys();
  PERFORM pgseal._raise('PS008', pg_catalog.format('pgseal: no blind-index key for scope %L in this transaction', scope),
    'Create the scope''s keys with `pgseal keys init` (it creates a data key and an index key), and load that scope in the transaction.');
  RETURN NULL;
END
$$;

-- The scope's active index key from this transaction's hand-off only (its nonce, see
-- pgseal.use_keys): one preset on the connection, empty or cut short is NULL.
CREATE FUNCTION pgseal._index_key(scope text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN pg_catalog.current_setting('pgseal.handoff', true)
                 = pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()) || pg_catalog.substr(pg_catalog.decode(
                     pg_catalog.current_setting('pgseal.index_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), 33), 'hex')
  THEN pg_catalog.substr(pg_catalog.decode(
         pg_catalog.current_setting('pgseal.index_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), 1, 32) END;

CREATE FUNCTION pgseal.blind_index(value text, normalizer text, context text, scope text DEFAULT 'default', bytes integer DEFAULT 16)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN value IS NOT NULL THEN
  pg_catalog.substr(pgseal._hmac_sha256(
    pg_catalog.convert_to(pgseal.normalize(value, normalizer), 'UTF8') || pgseal._context_bytes(context),
    COALESCE(pgseal._index_key(scope), pgseal._fail_no_index_key(scope))), 1, bytes)
END;

-- Every index key of the scope in this transaction, the active one first: while indexes are
-- recomputed under a new key (pgseal reencrypt --blind-index), a row may still carry one
-- made with an older key, so lookups try them all.
-- The older keys too only from this transaction's hand-off (a preset list is ignored).
CREATE FUNCTION pgseal._index_keys(scope text) RETURNS bytea[]
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ARRAY(
  SELECT COALESCE(pgseal._index_key(scope), pgseal._fail_no_index_key(scope))
  UNION ALL
  SELECT pg_catalog.substr(old.keys, i * 32 + 1, 32)
    FROM (SELECT CASE WHEN pg_catalog.current_setting('pgseal.handoff', true)
                             = pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()) || pg_catalog.substr(o.b, pg_catalog.octet_length(o.b) - 15), 'hex')
                       AND pg_catalog.octet_length(o.b) % 32 = 16
                      THEN pg_catalog.substr(o.b, 1, pg_catalog.octet_length(o.b) - 16) END AS keys
            FROM (SELECT pg_catalog.decode(pg_catalog.current_setting('pgseal.index_old_' || pg_catalog.translate(scope, '-', '$'), true), 'hex') AS b) AS o) AS old,
         pg_catalog.generate_series(0, COALESCE(pg_catalog.octet_length(old.keys) / 32, 0) - 1) AS i);

-- The blind indexes to look values up by: each value under every index key of the scope
-- (blind_index writes with the active key only).
CREATE FUNCTION pgseal.blind_index_array(value_list text[], normalizer text, context text, scope text DEFAULT 'default', bytes integer DEFAULT 16)
RETURNS bytea[]
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN value_list IS NOT NULL THEN ARRAY(
  SELECT pg_catalog.substr(pgseal._hmac_sha256(
           pg_catalog.convert_to(pgseal.normalize(v, normalizer), 'UTF8') || pgseal._context_bytes(context), k), 1, bytes)
    FROM pg_catalog.unnest(value_list) AS v,
         pg_catalog.unnest(pgseal._index_keys(scope)) AS k) END;

-- The keyset path: keys as one bound argument of the statement itself, for one statement
-- and one round trip without a transaction (the typed helpers use it). No settings are
-- read per row: the version in the header is matched against the keyset's entries.
--   keyset: entries of version u32 BE | encryption key (32) | MAC key (32), the active key first
--   key_material (writes): version u32 BE | encryption key (32) | MAC key (32)
-- Only the first entry is matched inline (decrypt_bytea_with): the expression stays small
-- (a generic plan re-initialises it on every execution) and most rows are on the active
-- key; other versions are looked up by _keyset_find.
CREATE FUNCTION pgseal._keyset_find(ciphertext bytea, keyset bytea) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  version pg_catalog.bytea := pg_catalog.substr(ciphertext, 3, 4);
  at integer := 1;
BEGIN
  -- operators qualified: a SET search_path clause would cost every call
  WHILE at OPERATOR(pg_catalog.<) pg_catalog.octet_length(keyset) LOOP
    IF pg_catalog.substr(keyset, at, 4) OPERATOR(pg_catalog.=) version THEN
      RETURN at OPERATOR(pg_catalog.+) 4;
    END IF;
    at := at OPERATOR(pg_catalog.+) 68;
  END LOOP;
  RETURN NULL;
END
$$;

CREATE FUNCTION pgseal._keyset_offset(ciphertext bytea, keyset bytea) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN pg_catalog.substr(ciphertext, 3, 4) = pg_catalog.substr(keyset, 1, 4) THEN 5
            ELSE pgseal._keyset_find(ciphertext, keyset) END;

-- The failure branch of decrypt_bytea_with: keys come as the keyset argument. STABLE, not
-- IMMUTABLE: saying why a value does not open reads the key's state (_fail_key_state). It
-- runs only when a value does not open.
CREATE FUNCTION pgseal._fail_open_with(ciphertext bytea, context text, keyset bytea) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN pgseal._fail_envelope(ciphertext, context, pgseal._keyset_offset(ciphertext, keyset) IS NOT NULL, false);
END
$$;

-- Opens a value under whichever keyset entry its header names, checking everything on the
-- way (the failure names what is wrong): the slow path of decrypt_bytea_with, for values
-- sealed under another version than the keyset's first (while a rotation's re-encryption
-- runs) and for values that do not open. PL/pgSQL so that it stays one opaque call in the
-- caller's plan; every name qualified instead of a SET search_path clause, which would cost
-- every call (sql/README.md). STABLE: its failure path reads the key's state.
CREATE FUNCTION pgseal._open_with_keyset(ciphertext bytea, context text, keyset bytea) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
  -- a cut entry would hand a short or empty key to hmac(), and a tag under it anyone can compute
  IF pg_catalog.octet_length(keyset) OPERATOR(pg_catalog.%) 68 OPERATOR(pg_catalog.<>) 0 THEN
    PERFORM pgseal._raise('PS006', 'pgseal: invalid keyset',
      'The keyset argument is built by the pgseal library (entries of version and keys, 68 bytes each); do not build it by hand.');
  END IF;
  RETURN CASE
    WHEN pg_catalog.octet_length(ciphertext) OPERATOR(pg_catalog.>=) 70
     AND (pg_catalog.octet_length(ciphertext) OPERATOR(pg_catalog.-) 54) OPERATOR(pg_catalog.%) 16 OPERATOR(pg_catalog.=) 0
     AND pg_catalog.substr(ciphertext, 1, 2) OPERATOR(pg_catalog.=) E'\\x0101'::pg_catalog.bytea
     AND pgseal._hmac_sha256(
           pg_catalog.substr(ciphertext, 1, pg_catalog.octet_length(ciphertext) OPERATOR(pg_catalog.-) 32)
             OPERATOR(pg_catalog.||) pgseal._context_bytes(context),
           pg_catalog.substr(keyset, pgseal._keyset_offset(ciphertext, keyset) OPERATOR(pg_catalog.+) 32, 32))
         OPERATOR(pg_catalog.=) pg_catalog.substr(ciphertext, pg_catalog.octet_length(ciphertext) OPERATOR(pg_catalog.-) 31)
    THEN pgseal._aes_cbc_decrypt(
           pg_catalog.substr(ciphertext, 23, pg_catalog.octet_length(ciphertext) OPERATOR(pg_catalog.-) 54),
           pg_catalog.substr(keyset, pgseal._keyset_offset(ciphertext, keyset), 32),
           pg_catalog.substr(ciphertext, 7, 16))
    ELSE pgseal._fail_open_with(ciphertext, context, keyset)
  END;
END
$$;

-- The fast path checks that the value names the keyset's first version and that its tag
-- verifies under that entry, and nothing else: a tag that verifies proves the envelope's
-- header and length (authenticated), and anything else goes to _open_with_keyset. The
-- version test keeps the rule that a value opens only under the key its header names
-- (emergency rotation's guard and re-encryption count on it). The expression is kept small
-- because a prepared statement's generic plan re-initialises it on every execution: for a
-- one-row lookup that set-up cost about as much as pgcrypto's own calls (docs/format.md §5).
-- The keyset's length is checked first: substr() of a shorter one would give a short or
-- empty key, and a tag under an empty key is one anyone can compute. abs(): a value too
-- short for its tag or body must reach the slow path, not fail in substr, also when the
-- planner folds a constant argument into both branches. STABLE: the slow path says why a
-- value does not open, which reads the key's state.
CREATE FUNCTION pgseal.decrypt_bytea_with(ciphertext bytea, context text, keyset bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE
  WHEN ciphertext IS NULL THEN NULL
  WHEN pg_catalog.octet_length(keyset) >= 68
   AND pg_catalog.substr(ciphertext, 3, 4) = pg_catalog.substr(keyset, 1, 4)
   AND pgseal._hmac_sha256(
         pg_catalog.substr(ciphertext, 1, pg_catalog.abs(pg_catalog.octet_length(ciphertext) - 32)) || pgseal._context_bytes(context),
         pg_catalog.substr(keyset, 37, 32))
       = pg_catalog.substr(ciphertext, pg_catalog.octet_length(ciphertext) - 31)
  THEN pgseal._aes_cbc_decrypt(
         pg_catalog.substr(ciphertext, 23, pg_catalog.abs(pg_catalog.octet_length(ciphertext) - 54)),
         pg_catalog.substr(keyset, 5, 32),
         pg_catalog.substr(ciphertext, 7, 16))
  ELSE pgseal._open_with_keyset(ciphertext, context, keyset)
END;

CREATE FUNCTION pgseal.decrypt_text_with(ciphertext bytea, context text, keyset bytea) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.convert_from(pgseal.decrypt_bytea_with(ciphertext, context, keyset), 'UTF8');

-- Version 0 and all-zero keys are refused too: a buffer the application zeroed while a
-- statement still held it must not seal values anyone could open.
CREATE FUNCTION pgseal._check_key_material(key_material bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  IF pg_catalog.octet_length(key_material) OPERATOR(pg_catalog.<>) 68 OR key_material IS NULL
     OR pg_catalog.substr(key_material, 1, 4) OPERATOR(pg_catalog.=) E'\\x00000000'::pg_catalog.bytea
     OR pg_catalog.substr(key_material, 5, 32) OPERATOR(pg_catalog.=) E'\\x0000000000000000000000000000000000000000000000000000000000000000'::pg_catalog.bytea
     OR pg_catalog.substr(key_material, 37, 32) OPERATOR(pg_catalog.=) E'\\x0000000000000000000000000000000000000000000000000000000000000000'::pg_catalog.bytea THEN
    RAISE EXCEPTION USING ERRCODE = 'PS006', MESSAGE = 'pgseal: invalid key material',
      HINT = 'The key argument is built by the pgseal library (version and keys, 68 bytes); do not build it by hand.';
  END IF;
  RETURN key_material;
END
$$;

CREATE FUNCTION pgseal.encrypt_bytea_with(plaintext bytea, context text, key_material bytea) RETURNS bytea
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN CASE WHEN plaintext IS NOT NULL THEN
  pgseal._seal(plaintext,
               COALESCE(pgseal._context_bytes(context), pgseal._raise('22004', 'pgseal: the context argument must not be NULL',
                 'Pass the context to bind the value to, by default ''schema.table.column''.')),
               pgseal._check_key_material(key_material),
               pgseal._random_bytes(16))
END;

CREATE FUNCTION pgseal.encrypt_text_with(plaintext text, context text, key_material bytea) RETURNS bytea
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN pgseal.encrypt_bytea_with(pg_catalog.convert_to(plaintext, 'UTF8'), context, key_material);

-- owner only until granted on purpose (sql/99_privileges.sql)
REVOKE ALL ON FUNCTION
  pgseal._bad_normalizer(text), pgseal.normalize(text, text), pgseal.normalize_array(text[], text),
  pgseal.scope_context(text, text), pgseal.row_context(text, text), pgseal._fail_no_index_key(text), pgseal._index_key(text),
  pgseal._index_keys(text), pgseal.blind_index(text, text, text, text, integer), pgseal.blind_index_array(text[], text, text, text, integer),
  pgseal._keyset_find(bytea, bytea), pgseal._keyset_offset(bytea, bytea), pgseal._fail_open_with(bytea, text, bytea), pgseal._open_with_keyset(bytea, text, bytea),
  pgseal.decrypt_bytea_with(bytea, text, bytea), pgseal.decrypt_text_with(bytea, text, bytea),
  pgseal._check_key_material(bytea), pgseal.encrypt_bytea_with(bytea, text, bytea), pgseal.encrypt_text_with(text, text, bytea)
FROM PUBLIC;
