-- pgseal 0007: a smaller keyset decrypt (sql/60_search.sql). decrypt_bytea_with checks the
-- tag under the keyset's first key only; every other value goes to the new
-- _open_with_keyset, which holds the previous full expression. decrypt_text_with and
-- reseal_with inline it and need no change.
-- Released: never edit; sources in sql/.

-- Up Migration
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
     AND pg_catalog.substr(ciphertext, 1, 2) OPERATOR(pg_catalog.=) '\x0101'::bytea
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

-- The fast path checks the tag under the keyset's first entry only, and nothing else: a tag
-- that verifies proves the envelope's header, length and key version (all authenticated),
-- and one that does not sends the value to _open_with_keyset. The expression is kept small
-- because a prepared statement's generic plan re-initialises it on every execution: for a
-- one-row lookup that set-up, not pgcrypto, was most of the cost (docs/format.md §5).
-- The keyset's length is checked first: substr() of a shorter one would give a short or
-- empty key, and a tag under an empty key is one anyone can compute. abs(): a value shorter
-- than its tag must reach the slow path, not fail in substr.
CREATE OR REPLACE FUNCTION pgseal.decrypt_bytea_with(ciphertext bytea, context text, keyset bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
  WHEN ciphertext IS NULL THEN NULL
  WHEN pg_catalog.octet_length(keyset) >= 68
   AND pgseal._hmac_sha256(
         pg_catalog.substr(ciphertext, 1, pg_catalog.abs(pg_catalog.octet_length(ciphertext) - 32)) || pgseal._context_bytes(context),
         pg_catalog.substr(keyset, 37, 32))
       = pg_catalog.substr(ciphertext, pg_catalog.octet_length(ciphertext) - 31)
  THEN pgseal._aes_cbc_decrypt(
         pg_catalog.substr(ciphertext, 23, pg_catalog.octet_length(ciphertext) - 54),
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
