-- pgseal 0010: settings hardening (sql/20, 30, 40, 60, 70, 90, 97).
-- * Only keys handed over in this transaction open anything: pgseal.use_keys writes a
--   hand-off (this transaction's start and a fresh random nonce) and ends every key value
--   with the nonce; the readers (_mac_key_for, _active_key, _index_key, _index_keys,
--   _keyset_of, and the failure paths _fail_open, _fail_if_no_keys) take a value only with
--   the nonce of a hand-off made in this transaction, so keys preset on a pooled connection
--   (SET pgseal.mac_... session-level) are never used.
-- * Decrypted numeric and jsonb values are read through pgseal.value_numeric / value_jsonb
--   (domains checking the syntax first): a value invalid for its type raises PS017, which
--   quotes no part of it, where a plain cast's error put the plaintext in the server log.
--   The decrypted views' read expression (_read_expr) uses them; views created before are
--   re-created by pgseal.create_view.
-- * A crafted pgseal.log_head_* setting is only a hint (taken with SKIP LOCKED); a wrong log
--   key is reported as one (PS015), not as an altered chain (PS016); the log-chain functions
--   of 0006 are revoked from PUBLIC again in their own file (0008 revoked them already).
-- Released: never edit; sources in sql/.

-- Up Migration
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

CREATE OR REPLACE FUNCTION pgseal._fail_if_no_keys() RETURNS void
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

CREATE OR REPLACE FUNCTION pgseal._fail_open(ciphertext bytea, context text) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN pgseal._fail_envelope(ciphertext, context,
    -- handed in = a MAC key of this transaction's hand-off (one preset on the connection is not)
    pgseal._mac_key_for(ciphertext) IS NOT NULL,
    true);
END
$$;

CREATE OR REPLACE FUNCTION pgseal.use_keys(payload bytea) RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pos integer := 0;
  total integer := pg_catalog.octet_length(payload);
  n integer := 0;
  flags integer;
  scope_len integer;
  scope text;
  version_bytes bytea;
  material bytea;
  nonce text := pg_catalog.encode(pgseal._random_bytes(16), 'hex');
  older text;
BEGIN
  IF payload IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'PS006', MESSAGE = 'pgseal: invalid key payload',
      HINT = 'pgseal.use_keys() takes the payload built by the pgseal library; do not call it by hand.';
  END IF;
  PERFORM pg_catalog.set_config('pgseal.handoff', pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()), 'hex') || nonce, true);
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
    IF flags & 4 = 4 THEN
      -- appended to the older keys of this hand-off only: one preset on the connection is dropped
      older := pg_catalog.current_setting('pgseal.index_old_' || pg_catalog.translate(scope, '-', '$'), true);
      older := CASE WHEN pg_catalog.right(older, 32) = nonce THEN pg_catalog.left(older, -32) ELSE '' END;
      PERFORM pg_catalog.set_config('pgseal.index_old_' || pg_catalog.translate(scope, '-', '$'),
                                    older || pg_catalog.encode(pg_catalog.substr(material, 1, 32), 'hex') || nonce, true);
      n := n + 1;
      pos := pos + 6 + scope_len + 64;
      CONTINUE;
    END IF;
    IF flags & 2 = 2 THEN
      PERFORM pg_catalog.set_config('pgseal.index_' || pg_catalog.translate(scope, '-', '$'),
                                    pg_catalog.encode(pg_catalog.substr(material, 1, 32), 'hex') || nonce, true);
      n := n + 1;
      pos := pos + 6 + scope_len + 64;
      CONTINUE;
    END IF;
    PERFORM pg_catalog.set_config('pgseal.enc_' || pg_catalog.encode(version_bytes, 'hex'),
                                  pg_catalog.encode(pg_catalog.substr(material, 1, 32), 'hex') || nonce, true);
    PERFORM pg_catalog.set_config('pgseal.mac_' || pg_catalog.encode(version_bytes, 'hex'),
                                  pg_catalog.encode(pg_catalog.substr(material, 33, 32), 'hex') || nonce, true);
    IF flags & 1 = 1 THEN
      PERFORM pg_catalog.set_config('pgseal.active_' || pg_catalog.translate(scope, '-', '$'),
                                    pg_catalog.encode(version_bytes || material, 'hex') || nonce, true);
    END IF;
    n := n + 1;
    pos := pos + 6 + scope_len + 64;
  END LOOP;
  PERFORM pg_catalog.set_config('pgseal.keys_loaded', n::text, true);
  RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION pgseal._active_key(scope text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN pg_catalog.current_setting('pgseal.handoff', true)
                 = pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()) || pg_catalog.substr(pg_catalog.decode(
                     pg_catalog.current_setting('pgseal.active_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), 69), 'hex')
  THEN pg_catalog.substr(pg_catalog.decode(
         pg_catalog.current_setting('pgseal.active_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), 1, 68) END;

CREATE OR REPLACE FUNCTION pgseal._mac_key_for(ciphertext bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN pg_catalog.current_setting('pgseal.handoff', true)
                 = pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()) || pg_catalog.substr(pg_catalog.decode(pg_catalog.current_setting(
                     'pgseal.mac_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), 'hex'), 33), 'hex')
  THEN pg_catalog.substr(pg_catalog.decode(pg_catalog.current_setting(
         'pgseal.mac_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), 'hex'), 1, 32) END;

CREATE OR REPLACE FUNCTION pgseal._enc_key_for(ciphertext bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.substr(pg_catalog.decode(pg_catalog.current_setting(
  'pgseal.enc_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), 'hex'), 1, 32);

CREATE OR REPLACE FUNCTION pgseal._index_key(scope text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN pg_catalog.current_setting('pgseal.handoff', true)
                 = pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()) || pg_catalog.substr(pg_catalog.decode(
                     pg_catalog.current_setting('pgseal.index_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), 33), 'hex')
  THEN pg_catalog.substr(pg_catalog.decode(
         pg_catalog.current_setting('pgseal.index_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), 1, 32) END;

CREATE OR REPLACE FUNCTION pgseal._index_keys(scope text) RETURNS bytea[]
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

CREATE OR REPLACE FUNCTION pgseal._read_expr(c pgseal.columns, row_ref text, pk name) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.format(
  CASE c.value_type WHEN 'bytea' THEN 'pgseal.decrypt_bytea(%s.%I, %s)'
                    WHEN 'jsonb' THEN 'pgseal.value_jsonb(pgseal.decrypt_text(%s.%I, %s))'
                    WHEN 'numeric' THEN 'pgseal.value_numeric(pgseal.decrypt_text(%s.%I, %s))'
                    ELSE 'pgseal.decrypt_text(%s.%I, %s)' END,
  row_ref, c.column_name, pgseal._context_expr(c, row_ref, pk));

CREATE OR REPLACE FUNCTION pgseal._keyset_of(versions integer[]) RETURNS bytea
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

CREATE OR REPLACE FUNCTION pgseal._check_log_head(h pgseal.log_chains, keyset bytea) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF h.head_mac IS NULL OR h.key_version IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'PS015', MESSAGE = format('pgseal: the %s log has no log key yet', h.log),
      HINT = 'Run `pgseal keys init` (as the owner): it creates the log key and starts the logs'' hash chains.';
  END IF;
  IF h.head_mac IS DISTINCT FROM pgseal._log_head_mac(pgseal._log_key(keyset, h.key_version), h) THEN
    -- a wrong key fails every head and every link it signed; an edit fails what was edited
    -- only (the chains' last links are checked too, so editing every head is still tampering)
    IF NOT EXISTS (SELECT 1 FROM pgseal.log_chains c
                    WHERE c.key_version = h.key_version AND c.head_mac = pgseal._log_head_mac(pgseal._log_key(keyset, h.key_version), c))
       AND NOT EXISTS (SELECT 1
                         FROM (SELECT DISTINCT ON (l.log, l.chain) l.* FROM pgseal.log_links l ORDER BY l.log, l.chain, l.seq DESC) AS t
                         JOIN pgseal.log_chains c ON c.log = t.log AND c.chain = t.chain
                         LEFT JOIN pgseal.log_links p ON p.log = t.log AND p.chain = t.chain AND p.seq = t.seq - 1
                        WHERE t.key_version = h.key_version
                          AND t.mac = pgseal._log_link_mac(pgseal._log_key(keyset, h.key_version), t.log, t.chain, t.seq, t.id, t.created_at,
                                                           t.row_count, t.first_at, t.last_at, t.key_version, COALESCE(p.mac, c.first_prev_mac))) THEN
      RAISE EXCEPTION USING ERRCODE = 'PS015', MESSAGE = format('pgseal: the log key version %s handed in verifies no chain head signed with it: a wrong log key', h.key_version),
        HINT = 'Check the master key the process unwrapped the log keys with (or every chain head was edited: run `pgseal audit verify`).';
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'PS016', MESSAGE = format('pgseal: chain %s of the %s log was altered', h.chain, h.log),
      HINT = 'Someone edited pgseal.log_chains or pgseal.log_links by hand: run `pgseal audit verify` and keep its report.';
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION pgseal.append_log_link(p_log text, p_rows integer, p_first_at timestamptz, p_last_at timestamptz, p_keyset bytea)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v integer := pgseal._log_key_version(p_keyset);
  k bytea := pgseal._log_key(p_keyset, v);
  h pgseal.log_chains;
  held smallint;
  link bigint;
  at timestamptz := clock_timestamp();
  m bytea;
BEGIN
  IF p_rows IS NULL OR p_rows < 1 OR p_first_at IS NULL OR p_last_at IS NULL OR p_log IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgseal: a log link needs a log, a positive row count and its time range';
  END IF;
  -- the head this transaction already holds (so it never holds two, nor waits for a second);
  -- else any head no other transaction holds; when all are held, wait for one
  -- a caller-writable setting: anything but a chain number is ignored, and a chain number is
  -- only a hint (taken without waiting: a head this transaction holds is never skipped, one
  -- another transaction holds is, so a crafted value neither blocks nor misleads a writer)
  held := pgseal._setting_int('pgseal.log_head_' || p_log, 0, 15)::smallint;
  IF held IS NOT NULL THEN
    SELECT * INTO h FROM pgseal.log_chains c WHERE c.log = p_log AND c.chain = held FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
      held := NULL;
    END IF;
  END IF;
  IF held IS NULL THEN
    SELECT * INTO h FROM pgseal.log_chains c WHERE c.log = p_log ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED;
  END IF;
  IF h.chain IS NULL THEN
    held := COALESCE(held, floor(random() * 16)::smallint);
    SELECT * INTO h FROM pgseal.log_chains c WHERE c.log = p_log AND c.chain = held FOR UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = 'PS016', MESSAGE = format('pgseal: a chain head of the %s log is missing', p_log),
        HINT = 'Someone deleted rows of pgseal.log_chains: run `pgseal audit verify` and keep its report.';
    END IF;
  END IF;
  PERFORM pgseal._check_log_head(h, p_keyset);
  PERFORM set_config('pgseal.log_head_' || p_log, h.chain::text, true);
  link := nextval(pg_get_serial_sequence('pgseal.log_links', 'id'));
  m := pgseal._log_link_mac(k, p_log, h.chain, h.seq + 1, link, at, p_rows, p_first_at, p_last_at, v, COALESCE(h.last_mac, h.first_prev_mac));
  INSERT INTO pgseal.log_links (id, log, chain, seq, created_at, row_count, first_at, last_at, key_version, mac)
  VALUES (link, p_log, h.chain, h.seq + 1, at, p_rows, p_first_at, p_last_at, v, m);
  h.seq := h.seq + 1;
  h.last_mac := m;
  h.key_version := v;
  UPDATE pgseal.log_chains c SET seq = h.seq, last_mac = m, key_version = v, head_mac = pgseal._log_head_mac(k, h)
   WHERE c.log = p_log AND c.chain = h.chain;
  RETURN link;
END
$$;

-- 0006's functions that stayed executable by PUBLIC until 0008 (98's two included)
REVOKE ALL ON FUNCTION pgseal._log_key(bytea, integer), pgseal._log_key_version(bytea),
  pgseal.access_log_row_mac(bytea, bigint, integer, timestamptz, text, name, text, text, text, inet),
  pgseal.audit_log_row_mac(bytea, bigint, integer, timestamptz, text, text, text, name, name, name, text, integer, boolean, text, jsonb),
  pgseal._log_link_mac(bytea, text, smallint, bigint, bigint, timestamptz, integer, timestamptz, timestamptz, integer, bytea),
  pgseal._log_head_mac(bytea, pgseal.log_chains), pgseal._check_log_head(pgseal.log_chains, bytea), pgseal._setting_int(text, integer, integer),
  pgseal._timescaledb_schema(), pgseal.log_storage() FROM PUBLIC;

-- the app set gains the value readers: grant_api's list, patched where it stands (this
-- migration does not depend on what else changed grant_api)
DO $do$
DECLARE
  def text := pg_catalog.pg_get_functiondef('pgseal.grant_api(name, text)'::pg_catalog.regprocedure);
BEGIN
  IF pg_catalog.strpos(def, 'pgseal.value_numeric(text)') = 0 THEN
    EXECUTE pg_catalog.replace(def, 'pgseal._check_key_material(bytea)',
      'pgseal._check_key_material(bytea), pgseal.value_numeric(text), pgseal.value_jsonb(text), pgseal._is_json(text)');
  END IF;
END
$do$;

SELECT pgseal._regrant();

-- Down Migration
CREATE OR REPLACE FUNCTION pgseal._fail_if_no_keys() RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NULLIF(pg_catalog.current_setting('pgseal.keys_loaded', true), '') IS NULL THEN
    PERFORM pgseal._raise('PS001', 'pgseal: no keys in this transaction',
      'Run the statement through the pgseal library or `pgseal query`: they hand the keys to pgseal.use_keys() in the same transaction.');
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION pgseal._fail_open(ciphertext bytea, context text) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN pgseal._fail_envelope(ciphertext, context,
    NULLIF(pg_catalog.current_setting('pgseal.enc_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), '') IS NOT NULL,
    true);
END
$$;

CREATE OR REPLACE FUNCTION pgseal.use_keys(payload bytea) RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
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
    IF flags & 4 = 4 THEN
      PERFORM pg_catalog.set_config('pgseal.index_old_' || pg_catalog.translate(scope, '-', '$'),
                                    COALESCE(NULLIF(pg_catalog.current_setting('pgseal.index_old_' || pg_catalog.translate(scope, '-', '$'), true), ''), '')
                                      || pg_catalog.encode(pg_catalog.substr(material, 1, 32), 'hex'), true);
      n := n + 1;
      pos := pos + 6 + scope_len + 64;
      CONTINUE;
    END IF;
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

CREATE OR REPLACE FUNCTION pgseal._active_key(scope text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.decode(NULLIF(
  pg_catalog.current_setting('pgseal.active_' || pg_catalog.translate(scope, '-', '$'), true), ''), 'hex');

CREATE OR REPLACE FUNCTION pgseal._mac_key_for(ciphertext bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.decode(NULLIF(pg_catalog.current_setting(
  'pgseal.mac_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), ''), 'hex');

CREATE OR REPLACE FUNCTION pgseal._enc_key_for(ciphertext bytea) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.decode(NULLIF(pg_catalog.current_setting(
  'pgseal.enc_' || pg_catalog.encode(pg_catalog.substr(ciphertext, 3, 4), 'hex'), true), ''), 'hex');

CREATE OR REPLACE FUNCTION pgseal._index_key(scope text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN NULLIF(pg_catalog.decode(pg_catalog.current_setting('pgseal.index_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), ''::bytea);

CREATE OR REPLACE FUNCTION pgseal._index_keys(scope text) RETURNS bytea[]
LANGUAGE sql STABLE PARALLEL SAFE
RETURN ARRAY(
  SELECT COALESCE(pgseal._index_key(scope), pgseal._fail_no_index_key(scope))
  UNION ALL
  SELECT pg_catalog.substr(old.keys, i * 32 + 1, 32)
    FROM (SELECT pg_catalog.decode(pg_catalog.current_setting('pgseal.index_old_' || pg_catalog.translate(scope, '-', '$'), true), 'hex') AS keys) AS old,
         pg_catalog.generate_series(0, COALESCE(pg_catalog.octet_length(old.keys) / 32, 0) - 1) AS i);

CREATE OR REPLACE FUNCTION pgseal._read_expr(c pgseal.columns, row_ref text, pk name) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.format(
  CASE c.value_type WHEN 'bytea' THEN 'pgseal.decrypt_bytea(%s.%I, %s)'
                    WHEN 'jsonb' THEN 'pgseal.decrypt_text(%s.%I, %s)::jsonb'
                    WHEN 'numeric' THEN 'pgseal.decrypt_text(%s.%I, %s)::numeric'
                    ELSE 'pgseal.decrypt_text(%s.%I, %s)' END,
  row_ref, c.column_name, pgseal._context_expr(c, row_ref, pk));

CREATE OR REPLACE FUNCTION pgseal._keyset_of(versions integer[]) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  out bytea := '';
  v integer;
  hex text;
BEGIN
  PERFORM pgseal._fail_if_no_keys();
  FOREACH v IN ARRAY versions LOOP
    hex := lpad(to_hex(v), 8, '0');
    IF NULLIF(current_setting('pgseal.enc_' || hex, true), '') IS NULL THEN
      PERFORM pgseal._raise('PS002', format('pgseal: key version %s is not among the keys handed in', v),
        'Load that version''s scope in the transaction; a retired or destroyed version cannot be read.');
    END IF;
    out := out || int4send(v) || decode(current_setting('pgseal.enc_' || hex), 'hex') || decode(current_setting('pgseal.mac_' || hex), 'hex');
  END LOOP;
  RETURN out;
END
$$;

CREATE OR REPLACE FUNCTION pgseal._check_log_head(h pgseal.log_chains, keyset bytea) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF h.head_mac IS NULL OR h.key_version IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'PS015', MESSAGE = format('pgseal: the %s log has no log key yet', h.log),
      HINT = 'Run `pgseal keys init` (as the owner): it creates the log key and starts the logs'' hash chains.';
  END IF;
  IF h.head_mac IS DISTINCT FROM pgseal._log_head_mac(pgseal._log_key(keyset, h.key_version), h) THEN
    RAISE EXCEPTION USING ERRCODE = 'PS016', MESSAGE = format('pgseal: chain %s of the %s log was altered', h.chain, h.log),
      HINT = 'Someone edited pgseal.log_chains or pgseal.log_links by hand: run `pgseal audit verify` and keep its report.';
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION pgseal.append_log_link(p_log text, p_rows integer, p_first_at timestamptz, p_last_at timestamptz, p_keyset bytea)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v integer := pgseal._log_key_version(p_keyset);
  k bytea := pgseal._log_key(p_keyset, v);
  h pgseal.log_chains;
  held smallint;
  link bigint;
  at timestamptz := clock_timestamp();
  m bytea;
BEGIN
  IF p_rows IS NULL OR p_rows < 1 OR p_first_at IS NULL OR p_last_at IS NULL OR p_log IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgseal: a log link needs a log, a positive row count and its time range';
  END IF;
  -- the head this transaction already holds (so it never holds two, nor waits for a second);
  -- else any head no other transaction holds; when all are held, wait for one
  -- a caller-writable setting: anything but a chain number is ignored
  held := pgseal._setting_int('pgseal.log_head_' || p_log, 0, 15)::smallint;
  IF held IS NULL THEN
    SELECT * INTO h FROM pgseal.log_chains c WHERE c.log = p_log ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED;
  END IF;
  IF held IS NOT NULL OR NOT FOUND THEN
    held := COALESCE(held, floor(random() * 16)::smallint);
    SELECT * INTO h FROM pgseal.log_chains c WHERE c.log = p_log AND c.chain = held FOR UPDATE;
    IF NOT FOUND THEN
      RAISE EXCEPTION USING ERRCODE = 'PS016', MESSAGE = format('pgseal: a chain head of the %s log is missing', p_log),
        HINT = 'Someone deleted rows of pgseal.log_chains: run `pgseal audit verify` and keep its report.';
    END IF;
  END IF;
  PERFORM pgseal._check_log_head(h, p_keyset);
  PERFORM set_config('pgseal.log_head_' || p_log, h.chain::text, true);
  link := nextval(pg_get_serial_sequence('pgseal.log_links', 'id'));
  m := pgseal._log_link_mac(k, p_log, h.chain, h.seq + 1, link, at, p_rows, p_first_at, p_last_at, v, COALESCE(h.last_mac, h.first_prev_mac));
  INSERT INTO pgseal.log_links (id, log, chain, seq, created_at, row_count, first_at, last_at, key_version, mac)
  VALUES (link, p_log, h.chain, h.seq + 1, at, p_rows, p_first_at, p_last_at, v, m);
  h.seq := h.seq + 1;
  h.last_mac := m;
  h.key_version := v;
  UPDATE pgseal.log_chains c SET seq = h.seq, last_mac = m, key_version = v, head_mac = pgseal._log_head_mac(k, h)
   WHERE c.log = p_log AND c.chain = h.chain;
  RETURN link;
END
$$;

DO $do$
DECLARE
  def text := pg_catalog.pg_get_functiondef('pgseal.grant_api(name, text)'::pg_catalog.regprocedure);
BEGIN
  EXECUTE pg_catalog.replace(def, ', pgseal.value_numeric(text), pgseal.value_jsonb(text), pgseal._is_json(text)', '');
END
$do$;

DROP FUNCTION pgseal.value_numeric(text);
DROP FUNCTION pgseal.value_jsonb(text);
DROP DOMAIN pgseal.numeric_text;
DROP DOMAIN pgseal.jsonb_text;
DROP FUNCTION pgseal._is_json(text);

SELECT pgseal._regrant();
