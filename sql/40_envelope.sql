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
  -- type names qualified: PL/pgSQL resolves them through the caller's search_path
  utf8 pg_catalog.bytea := pg_catalog.convert_to(context, 'UTF8');
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
  body pg_catalog.bytea;
BEGIN
  -- names qualified: a SET search_path clause would cost every call. The header is an E''
  -- literal: PL/pgSQL parses its body in the caller's session, and with
  -- standard_conforming_strings off a plain '\x0101' is three other bytes.
  body := pg_catalog.byteacat(pg_catalog.byteacat(pg_catalog.byteacat(E'\\x0101'::pg_catalog.bytea, pg_catalog.substr(key_material, 1, 4)), iv),
                              pgseal._aes_cbc_encrypt(plaintext, pg_catalog.substr(key_material, 5, 32), iv));
  RETURN pg_catalog.byteacat(body, pgseal._hmac_sha256(pg_catalog.byteacat(body, context_bytes), pg_catalog.substr(key_material, 37, 32)));
END
$$;

-- Seals with explicit key material and IV: what the test vectors check.
CREATE FUNCTION pgseal.seal(plaintext bytea, context text, key_material bytea, iv bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN pgseal._seal(plaintext, pgseal._context_bytes(context), key_material, iv);

-- The active key of a scope in this transaction (68 bytes), or NULL. A key value is taken
-- only when it ends with the nonce of this transaction's hand-off (pgseal.use_keys, which
-- explains why): one preset on the connection is NULL here, so nothing is sealed under it.
CREATE FUNCTION pgseal._active_key(scope text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN pg_catalog.current_setting('pgseal.handoff', true)
                 = pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()) || pg_catalog.substr(pg_catalog.decode(
                     pg_catalog.current_setting('pgseal.active_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), 69), 'hex')
  THEN pg_catalog.substr(pg_catalog.decode(
         pg_catalog.current_setting('pgseal.active_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), 1, 68) END;

-- The MAC and encryption keys a ciphertext names, from this transaction's keys; NULL when
-- absent (the tag check then fails and _fail_open says why). The MAC key is taken only
-- from this transaction's hand-off (its nonce, as in _active_key): a value preset on the
-- connection, a setting a finished transaction left defined as '', or a value cut short
-- never acts as a key (an HMAC under an empty key is one anyone can compute).
CREATE FUNCTION pgseal._mac_key_for(ciphertext bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN pg_catalog.current_setting('pgseal.handoff', true)
                 = pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()) || pg_catalog.substr(pg_catalog.decode(pg_catalog.current_setting(
                     'pgseal.mac_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), 'hex'), 33), 'hex')
  THEN pg_catalog.substr(pg_catalog.decode(pg_catalog.current_setting(
         'pgseal.mac_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), 'hex'), 1, 32) END;

-- The encryption key is not checked, to keep one check per value: decrypt_bytea uses it
-- only after the tag verified under _mac_key_for, i.e. under a MAC key of this
-- transaction's hand-off for the same version; use_keys writes a version's two keys
-- together, transaction-locally (a savepoint rolled back takes both), so a fresh MAC key
-- means the encryption key beside it is this hand-off's too.
CREATE FUNCTION pgseal._enc_key_for(ciphertext bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.substr(pg_catalog.decode(pg_catalog.current_setting(
  'pgseal.enc_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), 'hex'), 1, 32);

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

-- A decrypted plaintext as its column's value type (src/columns/values.ts VALUE_TYPES; the
-- decrypted views and src/columns/expressions.ts read numeric and jsonb columns through
-- these). A plain cast's error quotes its input ('invalid input syntax for type numeric:
-- "..."'), into the client's error and the server log at default settings: a value that is
-- not valid for the type (it was written bypassing pgseal's checks) raises PS017 instead,
-- which names the type only. The check is a domain's, so the plaintext is referenced once
-- and the calls inline, and there is no EXCEPTION block: the read stays PARALLEL SAFE.

-- Whether a text is JSON that jsonb accepts, without parsing it as jsonb (whose errors quote
-- it). Strings, then literals and numbers, become one placeholder character each; then
-- innermost arrays and objects are folded into a placeholder until nothing changes: valid
-- JSON leaves one value. Strings as jsonb takes them: no raw control characters, JSON's
-- escapes, no \u0000, surrogates only in pairs (the database is UTF8); numbers with an
-- exponent numeric accepts. It costs: about 20 us for a 60-character document on PostgreSQL 15
-- (its jsonb cast about 1 us), on jsonb columns only (PostgreSQL 16 has pg_input_is_valid).
-- E'' literals: PL/pgSQL parses its body in the caller's session (standard_conforming_strings).
CREATE FUNCTION pgseal._is_json(plaintext text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  s pg_catalog.text;
  folded pg_catalog.text;
BEGIN
  -- the placeholders are control characters, never valid raw in JSON
  IF pg_catalog.strpos(plaintext, E'\x01') OPERATOR(pg_catalog.>) 0 OR pg_catalog.strpos(plaintext, E'\x02') OPERATOR(pg_catalog.>) 0 THEN
    RETURN false;
  END IF;
  s := pg_catalog.regexp_replace(plaintext,
    E'"(?:[^"\\\\\\x01-\\x1f]|\\\\["\\\\/bfnrt]|\\\\u(?!0000|[dD][89a-fA-F])[0-9a-fA-F]{4}|\\\\u[dD][89abAB][0-9a-fA-F]{2}\\\\u[dD][c-fC-F][0-9a-fA-F]{2})*"',
    E'\x02', 'g');
  s := pg_catalog.regexp_replace(s, E'true|false|null|-?(?:0|[1-9][0-9]*)(?:\\.[0-9]+)?(?:[eE][+-]?0*(?:[0-9]{1,3}|1000)(?![0-9]))?', E'\x01', 'g');
  s := pg_catalog.translate(s, E' \t\n\r', '');
  IF s OPERATOR(pg_catalog.~) E'[^][{}:,\\x01\\x02]' THEN
    RETURN false;
  END IF;
  LOOP
    folded := pg_catalog.regexp_replace(s,
      E'\\[(?:[\\x01\\x02](?:,[\\x01\\x02])*)?\\]|\\{(?:\\x02:[\\x01\\x02](?:,\\x02:[\\x01\\x02])*)?\\}', E'\x01', 'g');
    EXIT WHEN folded OPERATOR(pg_catalog.=) s;
    s := folded;
  END LOOP;
  RETURN s OPERATOR(pg_catalog.=) E'\x01' OR s OPERATOR(pg_catalog.=) E'\x02';
END
$$;

-- numeric's input syntax (PostgreSQL 15: no underscores, no 0x; an exponent up to 1000)
CREATE DOMAIN pgseal.numeric_text AS text CHECK (VALUE IS NULL
  OR VALUE ~ '^[ \t\n\r\f\v]*([+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?0*([0-9]{1,3}|1000))?|[Nn][Aa][Nn]|[+-]?([Ii][Nn][Ff]|[Ii][Nn][Ff][Ii][Nn][Ii][Tt][Yy]))[ \t\n\r\f\v]*$'
  OR pgseal._raise('PS017', 'pgseal: the column holds a value that is not a valid numeric',
       'It was written bypassing pgseal''s checks (the value is not shown): rewrite it with a valid numeric.') IS NULL);
CREATE DOMAIN pgseal.jsonb_text AS text CHECK (VALUE IS NULL OR pgseal._is_json(VALUE)
  OR pgseal._raise('PS017', 'pgseal: the column holds a value that is not a valid jsonb',
       'It was written bypassing pgseal''s checks (the value is not shown): rewrite it with valid JSON.') IS NULL);

CREATE FUNCTION pgseal.value_numeric(plaintext text) RETURNS numeric
LANGUAGE sql STABLE PARALLEL SAFE
RETURN plaintext::pgseal.numeric_text::numeric;

CREATE FUNCTION pgseal.value_jsonb(plaintext text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN plaintext::pgseal.jsonb_text::jsonb;

REVOKE ALL ON FUNCTION pgseal._is_json(text), pgseal.value_numeric(text), pgseal.value_jsonb(text) FROM PUBLIC;
REVOKE ALL ON DOMAIN pgseal.numeric_text, pgseal.jsonb_text FROM PUBLIC;
