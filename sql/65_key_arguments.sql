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
