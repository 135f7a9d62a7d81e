-- pgseal 0007 (sql/40_envelope.sql, sql/60_search.sql):
-- * decrypt_bytea_with, a smaller keyset decrypt: the inlined fast path checks the version
--   and the tag under the keyset's first key only; every other value goes to the new
--   _open_with_keyset, which holds the previous full expression (decrypt_text_with and
--   reseal_with inline it and need no change);
-- * _seal wrote a wrong header in a session with standard_conforming_strings off (its '\x0101'
--   literal is parsed in the caller's session): now an E'' literal; type names in the
--   PL/pgSQL bodies of _seal, _context_bytes and _keyset_find are qualified.
-- Released: never edit; sources in sql/.

-- Up Migration
-- names in PL/pgSQL bodies qualified, and the header an E'' literal (sql/40, sql/60)
CREATE OR REPLACE FUNCTION pgseal._context_bytes(context text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  -- type names qualified: PL/pgSQL resolves them through the caller's search_path
  utf8 pg_catalog.bytea := pg_catalog.convert_to(context, 'UTF8');
BEGIN
  RETURN utf8 OPERATOR(pg_catalog.||) pg_catalog.int4send(pg_catalog.octet_length(utf8));
END
$$;

CREATE OR REPLACE FUNCTION pgseal._seal(plaintext bytea, context_bytes bytea, key_material bytea, iv bytea) RETURNS bytea
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

CREATE OR REPLACE FUNCTION pgseal._keyset_find(ciphertext bytea, keyset bytea) RETURNS integer
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

-- Opens a value under whichever keyset entry its header names, checking everything on the
-- way (the failure names what is wrong): the slow path of decrypt_bytea_with, for values
-- sealed under another version than the keyset's first (while a rotation's re-encryption
-- runs) and for values that do not open. PL/pgSQL so that it stays one opaque call in the
-- caller's plan; operators qualified, since a SET search_path clause would cost every call.
CREATE FUNCTION pgseal._open_with_keyset(ciphertext bytea, context text, keyset bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
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
-- planner folds a constant argument into both branches.
CREATE OR REPLACE FUNCTION pgseal.decrypt_bytea_with(ciphertext bytea, context text, keyset bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
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

REVOKE ALL ON FUNCTION pgseal._open_with_keyset(bytea, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgseal._open_with_keyset(bytea, text, bytea) TO PUBLIC;

-- Down Migration
CREATE OR REPLACE FUNCTION pgseal.decrypt_bytea_with(ciphertext bytea, context text, keyset bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
  WHEN ciphertext IS NULL THEN NULL
  WHEN pg_catalog.octet_length(ciphertext) >= 70
   AND (pg_catalog.octet_length(ciphertext) - 54) % 16 = 0
   AND pg_catalog.substr(ciphertext, 1, 2) = '\x0101'::bytea
   AND pgseal._hmac_sha256(
         pg_catalog.substr(ciphertext, 1, pg_catalog.octet_length(ciphertext) - 32) || pgseal._context_bytes(context),
         pg_catalog.substr(keyset, pgseal._keyset_offset(ciphertext, keyset) + 32, 32))
       = pg_catalog.substr(ciphertext, pg_catalog.octet_length(ciphertext) - 31)
  THEN pgseal._aes_cbc_decrypt(
         pg_catalog.substr(ciphertext, 23, pg_catalog.octet_length(ciphertext) - 54),
         pg_catalog.substr(keyset, pgseal._keyset_offset(ciphertext, keyset), 32),
         pg_catalog.substr(ciphertext, 7, 16))
  ELSE pgseal._fail_open_with(ciphertext, context, keyset)
END;

DROP FUNCTION pgseal._open_with_keyset(bytea, text, bytea);

CREATE OR REPLACE FUNCTION pgseal._keyset_find(ciphertext bytea, keyset bytea) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  version bytea := pg_catalog.substr(ciphertext, 3, 4);
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

CREATE OR REPLACE FUNCTION pgseal._seal(plaintext bytea, context_bytes bytea, key_material bytea, iv bytea) RETURNS bytea
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

CREATE OR REPLACE FUNCTION pgseal._context_bytes(context text) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  utf8 bytea := pg_catalog.convert_to(context, 'UTF8');
BEGIN
  RETURN utf8 OPERATOR(pg_catalog.||) pg_catalog.int4send(pg_catalog.octet_length(utf8));
END
$$;
