-- pgcrypto bindings.
--
-- pgcrypto may live in any schema (public, extensions, ...). Every pgseal function calls it
-- through these one-line wrappers, created here with pgcrypto's schema named explicitly,
-- so no call depends on the caller's search_path. Each wrapper is a single-expression SQL
-- function with pgcrypto's own volatility, strictness and parallel safety, so the planner
-- inlines it and the call costs exactly what pgcrypto costs.
--
-- pgcrypto is a trusted extension: a database owner without superuser can create it. When
-- it is missing it is created in schema public, named here (`pgseal migrate` also runs the
-- released 0001_core, which does not name it, with search_path = public).
DO $bindings$
DECLARE
  crypto_schema name;
BEGIN
  SELECT n.nspname INTO crypto_schema
    FROM pg_catalog.pg_extension e
    JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname = 'pgcrypto';
  IF crypto_schema IS NULL THEN
    CREATE EXTENSION pgcrypto WITH SCHEMA public;
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
