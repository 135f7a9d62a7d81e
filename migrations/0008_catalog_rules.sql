-- pgseal 0008: SQL held to the rules the catalog test checks (src/catalog/lint.ts, sql/README.md).
-- * pgseal._column_context: the context rule's first part, named once for the views (sql/70).
-- * One search_path convention: SET search_path = pg_catalog, pg_temp (add_key, use_keys,
--   protect_column, unprotect_column, create_view and its trigger functions, drop_view had '').
-- * No IMMUTABLE function reads a table: decrypt_bytea_with, _open_with_keyset and
--   _fail_open_with are STABLE (their failure path reads the key's state); _fail_key_state
--   reads it through pgseal._key_state, without an EXCEPTION block (a subtransaction cannot
--   start in a parallel worker); key_usage is VOLATILE (dynamic SQL) and SECURITY DEFINER.
-- * _check_key_material refuses version 0 and all-zero keys.
-- * SECURITY DEFINER functions read caller-writable settings through pgseal._setting_int:
--   append_log_link ignores a pgseal.log_head_* that is not a chain number.
-- * Privileges: nobody but the owner keeps anything in schema pgseal (PUBLIC included: what
--   other roles held is revoked, each named in a NOTICE); two sets (app, admin) granted to the
--   roles pgseal_app and pgseal_admin, created where the installing role may (not with
--   pgseal.roles = off), or to roles named with pgseal.grant_api (`pgseal grant`); the keyring
--   reads pgseal.usable_keys().
-- Released: never edit; sources in sql/ (20, 30, 45, 50, 60, 70, 80, 97, 99).

-- Up Migration
ALTER FUNCTION pgseal.add_key(integer, text, text, bytea, text, text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pgseal.use_keys(bytea) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pgseal.protect_column(regclass, name, text, boolean, text, text, text, name, integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pgseal.unprotect_column(regclass, name, boolean) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION pgseal.drop_view(regclass) SET search_path = pg_catalog, pg_temp;

-- the context rule's first part named once (sql/70); the decrypted views' trigger functions pin the same search_path
-- The SQL side of the context rule (src/columns/context.ts is the TypeScript side; a test
-- checks both agree): 'schema.table.column', then '@' || the row's scope for a per-tenant
-- column, then '#' || its primary key in row mode, through pgseal.scope_context and
-- pgseal.row_context. _column_context is the first part, and every blind index's context.
CREATE FUNCTION pgseal._column_context(c pgseal.columns) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN c.table_schema || '.' || c.table_name || '.' || c.column_name;

CREATE OR REPLACE FUNCTION pgseal._context_expr(c pgseal.columns, row_ref text, pk name) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT CASE c.context_mode WHEN 'row' THEN pg_catalog.format('pgseal.row_context(%s, %s.%I::text)', base, row_ref, pk) ELSE base END
          FROM (SELECT CASE WHEN c.scope_column IS NOT NULL
                            THEN pg_catalog.format('pgseal.scope_context(%L, %s.%I::text)', pgseal._column_context(c), row_ref, c.scope_column)
                            ELSE pg_catalog.quote_literal(pgseal._column_context(c)) END AS base) AS b);

-- (Re)creates the decrypted view of one protected table; returns its qualified name.
CREATE OR REPLACE FUNCTION pgseal.create_view(p_table regclass) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t_schema name;
  t_name name;
  v_name name;
  f_name name;
  pk name;
  pk_count integer;
  a record;
  c pgseal.columns;
  select_list text[] := '{}';
  insert_cols text[] := '{}';
  insert_vals text[] := '{}';
  update_sets text[] := '{}';
  write_expr text;
  unchanged text;
  options text := CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 150000
                       THEN ' WITH (security_invoker = true)' ELSE '' END;
BEGIN
  SELECT n.nspname, cl.relname INTO t_schema, t_name
    FROM pg_catalog.pg_class cl JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = p_table;
  IF NOT EXISTS (SELECT 1 FROM pgseal.columns r WHERE r.table_schema = t_schema AND r.table_name = t_name) THEN
    RAISE EXCEPTION USING ERRCODE = 'PS010', MESSAGE = pg_catalog.format('pgseal: %I.%I has no protected column', t_schema, t_name),
      HINT = 'Protect a column first: pgseal protect --table ... --column ...';
  END IF;
  SELECT i.indnkeyatts, (SELECT att.attname FROM pg_catalog.pg_attribute att WHERE att.attrelid = i.indrelid AND att.attnum = i.indkey[0])
    INTO pk_count, pk
    FROM pg_catalog.pg_index i WHERE i.indrelid = p_table AND i.indisprimary;
  IF pk_count IS DISTINCT FROM 1 THEN
    RAISE EXCEPTION USING ERRCODE = 'PS009', MESSAGE = pg_catalog.format('pgseal: a writable view needs a single-column primary key on %I.%I', t_schema, t_name),
      HINT = 'Add a primary key to the table.';
  END IF;
  v_name := pg_catalog.left(t_name || '_decrypted', 63);
  f_name := pg_catalog.left(t_name || '_decrypted_write', 63);

  FOR a IN
    SELECT att.attname, att.attidentity, att.attgenerated
      FROM pg_catalog.pg_attribute att
     WHERE att.attrelid = p_table AND att.attnum > 0 AND NOT att.attisdropped
       AND att.attname NOT IN (SELECT r.blind_index_column FROM pgseal.columns r
                                WHERE r.table_schema = t_schema AND r.table_name = t_name AND r.blind_index_column IS NOT NULL)
     ORDER BY att.attnum
  LOOP
    SELECT * INTO c FROM pgseal.columns r WHERE r.table_schema = t_schema AND r.table_name = t_name AND r.column_name = a.attname;
    IF FOUND THEN
      select_list := select_list || (pgseal._read_expr(c, 't', pk) || ' AS ' || pg_catalog.quote_ident(a.attname));
      write_expr := pg_catalog.format(
        CASE c.value_type WHEN 'bytea' THEN 'pgseal.encrypt_bytea(NEW.%I, %s, %s)' ELSE 'pgseal.encrypt_text(NEW.%I::text, %s, %s)' END,
        a.attname, pgseal._context_expr(c, 'NEW', pk), pgseal._scope_expr(c, 'NEW'));
      insert_cols := insert_cols || pg_catalog.quote_ident(a.attname);
      insert_vals := insert_vals || write_expr;
      -- keep the stored ciphertext when neither the value nor what it is bound to changed
      unchanged := pg_catalog.format('NEW.%I IS NOT DISTINCT FROM OLD.%I', a.attname, a.attname)
        || CASE WHEN c.context_mode = 'row' THEN pg_catalog.format(' AND NEW.%I IS NOT DISTINCT FROM OLD.%I', pk, pk) ELSE '' END
        || CASE WHEN c.scope_column IS NOT NULL THEN pg_catalog.format(' AND NEW.%I IS NOT DISTINCT FROM OLD.%I', c.scope_column, c.scope_column) ELSE '' END;
      update_sets := update_sets || pg_catalog.format('%I = CASE WHEN %s THEN t.%I ELSE %s END', a.attname, unchanged, a.attname, write_expr);
      IF c.searchable THEN
        write_expr := pg_catalog.format('pgseal.blind_index(NEW.%I::text, %L, %L, %s, %s)', a.attname, c.normalizer,
                                        pgseal._column_context(c), pgseal._scope_expr(c, 'NEW'), c.blind_index_bytes);
        insert_cols := insert_cols || pg_catalog.quote_ident(c.blind_index_column);
        insert_vals := insert_vals || write_expr;
        update_sets := update_sets || pg_catalog.format('%I = CASE WHEN %s THEN t.%I ELSE %s END',
                                                        c.blind_index_column, unchanged, c.blind_index_column, write_expr);
      END IF;
    ELSE
      select_list := select_list || ('t.' || pg_catalog.quote_ident(a.attname));
      IF a.attidentity = 'a' OR a.attgenerated <> '' THEN
        CONTINUE; -- the table computes it
      END IF;
      insert_cols := insert_cols || pg_catalog.quote_ident(a.attname);
      insert_vals := insert_vals || pg_catalog.format('NEW.%I', a.attname);
      update_sets := update_sets || pg_catalog.format('%I = NEW.%I', a.attname, a.attname);
    END IF;
  END LOOP;

  EXECUTE pg_catalog.format('CREATE OR REPLACE VIEW %I.%I%s AS SELECT %s FROM %I.%I AS t',
                            t_schema, v_name, options, pg_catalog.array_to_string(select_list, ', '), t_schema, t_name);
  -- An insert through the view that leaves a column out gets the table's default.
  FOR a IN
    SELECT att.attname,
           CASE WHEN att.attidentity = 'd'
                THEN pg_catalog.format('pg_catalog.nextval(%L::regclass)', pg_catalog.pg_get_serial_sequence(
                       pg_catalog.quote_ident(t_schema) || '.' || pg_catalog.quote_ident(t_name), att.attname))
                ELSE pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS default_expr
      FROM pg_catalog.pg_attribute att
      JOIN pg_catalog.pg_attrdef d ON d.adrelid = att.attrelid AND d.adnum = att.attnum
     WHERE att.attrelid = p_table AND att.attnum > 0 AND NOT att.attisdropped AND att.attgenerated = ''
    UNION ALL
    SELECT att.attname, pg_catalog.format('pg_catalog.nextval(%L::regclass)', pg_catalog.pg_get_serial_sequence(
             pg_catalog.quote_ident(t_schema) || '.' || pg_catalog.quote_ident(t_name), att.attname))
      FROM pg_catalog.pg_attribute att
     WHERE att.attrelid = p_table AND att.attidentity = 'd' AND NOT att.attisdropped
  LOOP
    EXECUTE pg_catalog.format('ALTER VIEW %I.%I ALTER COLUMN %I SET DEFAULT %s', t_schema, v_name, a.attname, a.default_expr);
  END LOOP;
  EXECUTE pg_catalog.format($f$
    CREATE OR REPLACE FUNCTION %I.%I() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO %I.%I AS t (%s) VALUES (%s) RETURNING * INTO NEW;
        SELECT v.* INTO NEW FROM %I.%I AS v WHERE v.%I = NEW.%I;
        RETURN NEW;
      ELSIF TG_OP = 'UPDATE' THEN
        UPDATE %I.%I AS t SET %s WHERE t.%I = OLD.%I;
        RETURN NEW;
      ELSE
        DELETE FROM %I.%I AS t WHERE t.%I = OLD.%I;
        RETURN OLD;
      END IF;
    END
    $body$ $f$,
    t_schema, f_name,
    t_schema, t_name, pg_catalog.array_to_string(insert_cols, ', '), pg_catalog.array_to_string(insert_vals, ', '),
    t_schema, v_name, pk, pk,
    t_schema, t_name, pg_catalog.array_to_string(update_sets, ', '), pk, pk,
    t_schema, t_name, pk, pk);
  EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgseal_write ON %I.%I', t_schema, v_name);
  EXECUTE pg_catalog.format('CREATE TRIGGER pgseal_write INSTEAD OF INSERT OR UPDATE OR DELETE ON %I.%I FOR EACH ROW EXECUTE FUNCTION %I.%I()',
                            t_schema, v_name, t_schema, f_name);
  RETURN pg_catalog.quote_ident(t_schema) || '.' || pg_catalog.quote_ident(v_name);
END
$$;

-- the keyring's source, and a version's state for the failure path (sql/30)
-- The keys a keyring loads: the wrapped form of every usable version (active or
-- decrypt-only), of one purpose or scope if asked. SECURITY DEFINER so that the
-- application's role (pgseal_app) needs no privilege on pgseal.keys itself: it sees
-- neither the key history nor retired or destroyed rows. A wrapped key opens only with the
-- master key, which never reaches the database.
CREATE FUNCTION pgseal.usable_keys(p_purpose text DEFAULT NULL, p_scope text DEFAULT NULL)
RETURNS TABLE (version integer, scope text, purpose text, state text, wrapped_key bytea, kek_ref text, fingerprint text)
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
  SELECT k.version, k.scope, k.purpose, k.state, k.wrapped_key, k.kek_ref, k.fingerprint
    FROM pgseal.keys k
   WHERE k.state IN ('active', 'decrypt-only')
     AND (p_purpose IS NULL OR k.purpose = p_purpose) AND (p_scope IS NULL OR k.scope = p_scope)
   ORDER BY k.version;
END;

-- The state of one key version, for the failure path of decryption (PS012 retired, PS013
-- destroyed): a state is no secret. SECURITY DEFINER for the same reason as usable_keys.
CREATE FUNCTION pgseal._key_state(p_version integer) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN (SELECT k.state FROM pgseal.keys k WHERE k.version = p_version);

-- the state through _key_state, no subtransaction (sql/20)
-- A version missing from the transaction's keys may be retired or destroyed: say so. Reads
-- the version's state on the failure path only (pgseal._key_state, sql/30_keyring.sql: a
-- caller who may not call it gets PS002 instead). No EXCEPTION block: a subtransaction
-- cannot start in a parallel worker, and this runs in them.
CREATE OR REPLACE FUNCTION pgseal._fail_key_state(version integer) RETURNS void
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

-- their failure path reads the key's state (sql/60)
ALTER FUNCTION pgseal._fail_open_with(bytea, text, bytea) STABLE;
ALTER FUNCTION pgseal._open_with_keyset(bytea, text, bytea) STABLE;
ALTER FUNCTION pgseal.decrypt_bytea_with(bytea, text, bytea) STABLE;

-- dynamic SQL; counts rows for a key administrator without reading the tables itself (sql/80)
ALTER FUNCTION pgseal.key_usage(integer) VOLATILE SECURITY DEFINER;

-- settings a SECURITY DEFINER function reads, validated (sql/97)
-- A setting as a whole number from lo to hi, or NULL when it is missing or anything else: a
-- SECURITY DEFINER function reads the settings its caller can write through this only.
CREATE FUNCTION pgseal._setting_int(name text, lo integer, hi integer) RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT CASE WHEN s.v ~ '^[0-9]{1,9}$' AND s.v::integer BETWEEN lo AND hi THEN s.v::integer END
          FROM (SELECT pg_catalog.current_setting(name, true) AS v) AS s);

-- Appends one link for p_rows log rows written by the calling statement and returns its id
-- (the rows' link_id; their link_pos run 0 .. p_rows - 1). SECURITY DEFINER so that an
-- application role needs only EXECUTE here and INSERT on the logs, never write access to
-- the chains; it cannot forge a link without the log key either.
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

-- all-zero key material refused (sql/60)
-- Version 0 and all-zero keys are refused too: a buffer the application zeroed while a
-- statement still held it must not seal values anyone could open.
CREATE OR REPLACE FUNCTION pgseal._check_key_material(key_material bytea) RETURNS bytea
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

-- PUBLIC gets nothing (sql/45)
REVOKE ALL ON SCHEMA pgseal FROM PUBLIC;

-- the privilege sets and the roles (sql/99)
-- Roles given a set, so a later migration can grant them what it adds (pgseal._regrant). By
-- oid: a role dropped and another created under its name later inherits nothing.
CREATE TABLE pgseal.api_grants (
  role_oid   oid PRIMARY KEY,
  role_name  name NOT NULL,
  api        text NOT NULL,
  granted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  granted_by text NOT NULL DEFAULT CURRENT_USER,
  CONSTRAINT api_grants_api_known CHECK (api IN ('app', 'admin'))
);
COMMENT ON TABLE pgseal.api_grants IS 'pgseal: roles granted the application (app) or key administration (admin) privileges';

-- The role a set may be given to or taken from: it exists, is not a superuser (every
-- privilege already), and is neither the owner of schema pgseal nor a member of it (revoking
-- would lock the installer out of its own objects). Returns its oid.
CREATE FUNCTION pgseal._grantee(p_role name) RETURNS oid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r pg_roles;
  owner oid := (SELECT s.nspowner FROM pg_namespace s WHERE s.nspname = 'pgseal');
BEGIN
  SELECT * INTO r FROM pg_roles x WHERE x.rolname = p_role;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = '42704', MESSAGE = format('pgseal: there is no role %I', p_role),
      HINT = 'Create the role first (CREATE ROLE ... LOGIN), then grant it pgseal''s privileges.';
  END IF;
  IF r.rolsuper OR r.oid = owner OR pg_has_role(r.oid, owner, 'MEMBER') THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = format('pgseal: %I is a superuser or owns schema pgseal (or is a member of its owner): it holds every privilege already', p_role),
      HINT = 'Name the application''s or the administrator''s own role, one that owns nothing of pgseal''s.';
  END IF;
  RETURN r.oid;
END
$$;

-- Grants a role exactly one set (what it held on pgseal's objects before is revoked first),
-- and records it.
CREATE FUNCTION pgseal.grant_api(p_role name, p_api text) RETURNS void
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

-- Takes a role's set away (what grant_api gave it), and forgets it.
CREATE FUNCTION pgseal.revoke_api(p_role name) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_oid oid := pgseal._grantee(p_role);
BEGIN
  EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgseal FROM %I', p_role);
  EXECUTE format('REVOKE ALL ON SCHEMA pgseal FROM %I', p_role);
  DELETE FROM pgseal.api_grants g WHERE g.role_oid = v_oid;
END
$$;

-- Grants every recorded role its set again: the last step of each migration, so roles get
-- what the migration added. Roles dropped since are forgotten.
CREATE FUNCTION pgseal._regrant() RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  g record;
  n integer := 0;
BEGIN
  DELETE FROM pgseal.api_grants a WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.oid = a.role_oid);
  FOR g IN SELECT r.rolname, a.api FROM pgseal.api_grants a JOIN pg_roles r ON r.oid = a.role_oid ORDER BY 1 LOOP
    PERFORM pgseal.grant_api(g.rolname, g.api);
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;

-- Start from nothing: whatever roles other than the owner held on pgseal's objects goes (an
-- application role given SELECT on pgseal.keys by an older set-up, an auditor's SELECT on the
-- logs); they get their set again from the roles below or `pgseal grant`. Named in a NOTICE.
DO $nothing$
DECLARE
  g record;
BEGIN
  FOR g IN
    SELECT DISTINCT a.grantee FROM (
      SELECT (pg_catalog.aclexplode(s.nspacl)).grantee, s.nspowner AS owner FROM pg_catalog.pg_namespace s WHERE s.nspname = 'pgseal'
      UNION ALL
      SELECT (pg_catalog.aclexplode(p.proacl)).grantee, p.proowner FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace s ON s.oid = p.pronamespace WHERE s.nspname = 'pgseal'
      UNION ALL
      SELECT (pg_catalog.aclexplode(c.relacl)).grantee, c.relowner FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'pgseal'
      UNION ALL
      SELECT (pg_catalog.aclexplode(t.attacl)).grantee, c.relowner FROM pg_catalog.pg_attribute t JOIN pg_catalog.pg_class c ON c.oid = t.attrelid
        JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'pgseal' AND t.attacl IS NOT NULL) AS a
     WHERE a.grantee <> 0 AND a.grantee <> a.owner
  LOOP
    RAISE NOTICE 'pgseal: revoking what role % held on pgseal''s objects: give it its set again (GRANT pgseal_app, or pgseal grant)', pg_catalog.pg_get_userbyid(g.grantee);
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgseal FROM %I', pg_catalog.pg_get_userbyid(g.grantee));
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA pgseal FROM %I', pg_catalog.pg_get_userbyid(g.grantee));
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgseal FROM %I', pg_catalog.pg_get_userbyid(g.grantee));
    EXECUTE pg_catalog.format('REVOKE ALL ON SCHEMA pgseal FROM %I', pg_catalog.pg_get_userbyid(g.grantee));
  END LOOP;
END
$nothing$;

REVOKE ALL ON ALL TABLES IN SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgseal FROM PUBLIC;

-- The two named roles: created where the installing role may create roles, then granted their
-- set. Roles are cluster-wide: a member of pgseal_admin holds the admin set in every database
-- where pgseal granted it, so on a cluster whose databases belong to different parties, migrate
-- with pgseal.roles = off (`pgseal migrate up --no-roles`) and grant roles of each database's
-- own with `pgseal grant --app R --admin R`.
DO $roles$
DECLARE
  r text;
  may_create boolean := (SELECT rolsuper OR rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER);
  existed boolean;
BEGIN
  IF pg_catalog.current_setting('pgseal.roles', true) = 'off' THEN
    RAISE NOTICE 'pgseal: pgseal.roles = off: pgseal_app and pgseal_admin get nothing here; grant roles of yours with `pgseal grant --app ROLE --admin ROLE`';
    RETURN;
  END IF;
  FOREACH r IN ARRAY ARRAY['pgseal_app', 'pgseal_admin'] LOOP
    existed := EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r);
    IF NOT existed AND may_create THEN
      BEGIN
        EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', r, 'pgseal: ' || CASE r WHEN 'pgseal_app' THEN 'the application set' ELSE 'the key administration set' END || ' (docs/privileges.md), in every database where pgseal granted it');
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        existed := true; -- created meanwhile by another database's migration
      END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
      PERFORM pgseal.grant_api(r::name, CASE r WHEN 'pgseal_app' THEN 'app' ELSE 'admin' END);
      IF existed THEN
        RAISE NOTICE 'pgseal: granted to the existing role %: its members now hold these privileges in this database too', r;
      END IF;
    ELSE
      RAISE NOTICE 'pgseal: role % was not created (the installing role may not create roles): grant pgseal''s privileges to roles of yours with `pgseal grant --app ROLE --admin ROLE`', r;
    END IF;
  END LOOP;
END
$roles$;
SELECT pgseal._regrant();

-- Down Migration
-- every role given a set loses it (the roles themselves stay: they are cluster-wide); what
-- roles held before 0008 (SELECT on pgseal.keys for a keyring, say) is not given back: grant
-- it again by hand after reverting
DO $revoke$
DECLARE
  r name;
BEGIN
  FOR r IN SELECT x.rolname FROM pgseal.api_grants g JOIN pg_catalog.pg_roles x ON x.oid = g.role_oid LOOP
    PERFORM pgseal.revoke_api(r);
  END LOOP;
END
$revoke$;
DROP FUNCTION pgseal._regrant();
DROP FUNCTION pgseal.revoke_api(name);
DROP FUNCTION pgseal.grant_api(name, text);
DROP FUNCTION pgseal._grantee(name);
DROP TABLE pgseal.api_grants;

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
GRANT EXECUTE ON FUNCTION
  pgseal._bad_normalizer(text), pgseal.normalize(text, text), pgseal.normalize_array(text[], text),
  pgseal.scope_context(text, text), pgseal.row_context(text, text), pgseal._fail_no_index_key(text), pgseal._index_key(text),
  pgseal._index_keys(text), pgseal.blind_index(text, text, text, text, integer), pgseal.blind_index_array(text[], text, text, text, integer),
  pgseal._keyset_find(bytea, bytea), pgseal._keyset_offset(bytea, bytea), pgseal._fail_open_with(bytea, text, bytea), pgseal._open_with_keyset(bytea, text, bytea),
  pgseal.decrypt_bytea_with(bytea, text, bytea), pgseal.decrypt_text_with(bytea, text, bytea),
  pgseal._check_key_material(bytea), pgseal.encrypt_bytea_with(bytea, text, bytea), pgseal.encrypt_text_with(text, text, bytea)
TO PUBLIC;
-- 0006 left these with the default privileges
GRANT EXECUTE ON FUNCTION
  pgseal._log_key(bytea, integer), pgseal._log_key_version(bytea),
  pgseal.access_log_row_mac(bytea, bigint, integer, timestamptz, text, name, text, text, text, inet),
  pgseal.audit_log_row_mac(bytea, bigint, integer, timestamptz, text, text, text, name, name, name, text, integer, boolean, text, jsonb),
  pgseal._log_link_mac(bytea, text, smallint, bigint, bigint, timestamptz, integer, timestamptz, timestamptz, integer, bytea),
  pgseal._log_head_mac(bytea, pgseal.log_chains), pgseal._check_log_head(pgseal.log_chains, bytea),
  pgseal._timescaledb_schema(), pgseal.log_storage()
TO PUBLIC;
GRANT SELECT ON pgseal.columns TO PUBLIC;

-- Appends one link for p_rows log rows written by the calling statement and returns its id
-- (the rows' link_id; their link_pos run 0 .. p_rows - 1). SECURITY DEFINER so that an
-- application role needs only EXECUTE here and INSERT on the logs, never write access to
-- the chains; it cannot forge a link without the log key either.
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
  held := NULLIF(current_setting('pgseal.log_head_' || p_log, true), '')::smallint;
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
DROP FUNCTION pgseal._setting_int(text, integer, integer);

CREATE OR REPLACE FUNCTION pgseal._check_key_material(key_material bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  IF pg_catalog.octet_length(key_material) OPERATOR(pg_catalog.<>) 68 OR key_material IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'PS006', MESSAGE = 'pgseal: invalid key material',
      HINT = 'The key argument is built by the pgseal library (version and keys, 68 bytes); do not build it by hand.';
  END IF;
  RETURN key_material;
END
$$;

ALTER FUNCTION pgseal.key_usage(integer) STABLE SECURITY INVOKER;
ALTER FUNCTION pgseal.decrypt_bytea_with(bytea, text, bytea) IMMUTABLE;
ALTER FUNCTION pgseal._open_with_keyset(bytea, text, bytea) IMMUTABLE;
ALTER FUNCTION pgseal._fail_open_with(bytea, text, bytea) IMMUTABLE;

-- A version missing from the transaction's keys may be retired or destroyed: say so. Reads
-- pgseal.keys on the failure path only; a caller who may not read it gets PS002 instead.
CREATE OR REPLACE FUNCTION pgseal._fail_key_state(version integer) RETURNS void
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
DROP FUNCTION pgseal._key_state(integer);
DROP FUNCTION pgseal.usable_keys(text, text);

-- (Re)creates the decrypted view of one protected table; returns its qualified name.
CREATE OR REPLACE FUNCTION pgseal.create_view(p_table regclass) RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  t_schema name;
  t_name name;
  v_name name;
  f_name name;
  pk name;
  pk_count integer;
  a record;
  c pgseal.columns;
  select_list text[] := '{}';
  insert_cols text[] := '{}';
  insert_vals text[] := '{}';
  update_sets text[] := '{}';
  write_expr text;
  unchanged text;
  options text := CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 150000
                       THEN ' WITH (security_invoker = true)' ELSE '' END;
BEGIN
  SELECT n.nspname, cl.relname INTO t_schema, t_name
    FROM pg_catalog.pg_class cl JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = p_table;
  IF NOT EXISTS (SELECT 1 FROM pgseal.columns r WHERE r.table_schema = t_schema AND r.table_name = t_name) THEN
    RAISE EXCEPTION USING ERRCODE = 'PS010', MESSAGE = pg_catalog.format('pgseal: %I.%I has no protected column', t_schema, t_name),
      HINT = 'Protect a column first: pgseal protect --table ... --column ...';
  END IF;
  SELECT i.indnkeyatts, (SELECT att.attname FROM pg_catalog.pg_attribute att WHERE att.attrelid = i.indrelid AND att.attnum = i.indkey[0])
    INTO pk_count, pk
    FROM pg_catalog.pg_index i WHERE i.indrelid = p_table AND i.indisprimary;
  IF pk_count IS DISTINCT FROM 1 THEN
    RAISE EXCEPTION USING ERRCODE = 'PS009', MESSAGE = pg_catalog.format('pgseal: a writable view needs a single-column primary key on %I.%I', t_schema, t_name),
      HINT = 'Add a primary key to the table.';
  END IF;
  v_name := pg_catalog.left(t_name || '_decrypted', 63);
  f_name := pg_catalog.left(t_name || '_decrypted_write', 63);

  FOR a IN
    SELECT att.attname, att.attidentity, att.attgenerated
      FROM pg_catalog.pg_attribute att
     WHERE att.attrelid = p_table AND att.attnum > 0 AND NOT att.attisdropped
       AND att.attname NOT IN (SELECT r.blind_index_column FROM pgseal.columns r
                                WHERE r.table_schema = t_schema AND r.table_name = t_name AND r.blind_index_column IS NOT NULL)
     ORDER BY att.attnum
  LOOP
    SELECT * INTO c FROM pgseal.columns r WHERE r.table_schema = t_schema AND r.table_name = t_name AND r.column_name = a.attname;
    IF FOUND THEN
      select_list := select_list || (pgseal._read_expr(c, 't', pk) || ' AS ' || pg_catalog.quote_ident(a.attname));
      write_expr := pg_catalog.format(
        CASE c.value_type WHEN 'bytea' THEN 'pgseal.encrypt_bytea(NEW.%I, %s, %s)' ELSE 'pgseal.encrypt_text(NEW.%I::text, %s, %s)' END,
        a.attname, pgseal._context_expr(c, 'NEW', pk), pgseal._scope_expr(c, 'NEW'));
      insert_cols := insert_cols || pg_catalog.quote_ident(a.attname);
      insert_vals := insert_vals || write_expr;
      -- keep the stored ciphertext when neither the value nor what it is bound to changed
      unchanged := pg_catalog.format('NEW.%I IS NOT DISTINCT FROM OLD.%I', a.attname, a.attname)
        || CASE WHEN c.context_mode = 'row' THEN pg_catalog.format(' AND NEW.%I IS NOT DISTINCT FROM OLD.%I', pk, pk) ELSE '' END
        || CASE WHEN c.scope_column IS NOT NULL THEN pg_catalog.format(' AND NEW.%I IS NOT DISTINCT FROM OLD.%I', c.scope_column, c.scope_column) ELSE '' END;
      update_sets := update_sets || pg_catalog.format('%I = CASE WHEN %s THEN t.%I ELSE %s END', a.attname, unchanged, a.attname, write_expr);
      IF c.searchable THEN
        write_expr := pg_catalog.format('pgseal.blind_index(NEW.%I::text, %L, %L, %s, %s)', a.attname, c.normalizer,
                                        c.table_schema || '.' || c.table_name || '.' || c.column_name, pgseal._scope_expr(c, 'NEW'), c.blind_index_bytes);
        insert_cols := insert_cols || pg_catalog.quote_ident(c.blind_index_column);
        insert_vals := insert_vals || write_expr;
        update_sets := update_sets || pg_catalog.format('%I = CASE WHEN %s THEN t.%I ELSE %s END',
                                                        c.blind_index_column, unchanged, c.blind_index_column, write_expr);
      END IF;
    ELSE
      select_list := select_list || ('t.' || pg_catalog.quote_ident(a.attname));
      IF a.attidentity = 'a' OR a.attgenerated <> '' THEN
        CONTINUE; -- the table computes it
      END IF;
      insert_cols := insert_cols || pg_catalog.quote_ident(a.attname);
      insert_vals := insert_vals || pg_catalog.format('NEW.%I', a.attname);
      update_sets := update_sets || pg_catalog.format('%I = NEW.%I', a.attname, a.attname);
    END IF;
  END LOOP;

  EXECUTE pg_catalog.format('CREATE OR REPLACE VIEW %I.%I%s AS SELECT %s FROM %I.%I AS t',
                            t_schema, v_name, options, pg_catalog.array_to_string(select_list, ', '), t_schema, t_name);
  -- An insert through the view that leaves a column out gets the table's default.
  FOR a IN
    SELECT att.attname,
           CASE WHEN att.attidentity = 'd'
                THEN pg_catalog.format('pg_catalog.nextval(%L::regclass)', pg_catalog.pg_get_serial_sequence(
                       pg_catalog.quote_ident(t_schema) || '.' || pg_catalog.quote_ident(t_name), att.attname))
                ELSE pg_catalog.pg_get_expr(d.adbin, d.adrelid) END AS default_expr
      FROM pg_catalog.pg_attribute att
      JOIN pg_catalog.pg_attrdef d ON d.adrelid = att.attrelid AND d.adnum = att.attnum
     WHERE att.attrelid = p_table AND att.attnum > 0 AND NOT att.attisdropped AND att.attgenerated = ''
    UNION ALL
    SELECT att.attname, pg_catalog.format('pg_catalog.nextval(%L::regclass)', pg_catalog.pg_get_serial_sequence(
             pg_catalog.quote_ident(t_schema) || '.' || pg_catalog.quote_ident(t_name), att.attname))
      FROM pg_catalog.pg_attribute att
     WHERE att.attrelid = p_table AND att.attidentity = 'd' AND NOT att.attisdropped
  LOOP
    EXECUTE pg_catalog.format('ALTER VIEW %I.%I ALTER COLUMN %I SET DEFAULT %s', t_schema, v_name, a.attname, a.default_expr);
  END LOOP;
  EXECUTE pg_catalog.format($f$
    CREATE OR REPLACE FUNCTION %I.%I() RETURNS trigger LANGUAGE plpgsql SET search_path = '' AS $body$
    BEGIN
      IF TG_OP = 'INSERT' THEN
        INSERT INTO %I.%I AS t (%s) VALUES (%s) RETURNING * INTO NEW;
        SELECT v.* INTO NEW FROM %I.%I AS v WHERE v.%I = NEW.%I;
        RETURN NEW;
      ELSIF TG_OP = 'UPDATE' THEN
        UPDATE %I.%I AS t SET %s WHERE t.%I = OLD.%I;
        RETURN NEW;
      ELSE
        DELETE FROM %I.%I AS t WHERE t.%I = OLD.%I;
        RETURN OLD;
      END IF;
    END
    $body$ $f$,
    t_schema, f_name,
    t_schema, t_name, pg_catalog.array_to_string(insert_cols, ', '), pg_catalog.array_to_string(insert_vals, ', '),
    t_schema, v_name, pk, pk,
    t_schema, t_name, pg_catalog.array_to_string(update_sets, ', '), pk, pk,
    t_schema, t_name, pk, pk);
  EXECUTE pg_catalog.format('DROP TRIGGER IF EXISTS pgseal_write ON %I.%I', t_schema, v_name);
  EXECUTE pg_catalog.format('CREATE TRIGGER pgseal_write INSTEAD OF INSERT OR UPDATE OR DELETE ON %I.%I FOR EACH ROW EXECUTE FUNCTION %I.%I()',
                            t_schema, v_name, t_schema, f_name);
  RETURN pg_catalog.quote_ident(t_schema) || '.' || pg_catalog.quote_ident(v_name);
END
$$;

CREATE OR REPLACE FUNCTION pgseal._context_expr(c pgseal.columns, row_ref text, pk name) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT CASE c.context_mode WHEN 'row' THEN pg_catalog.format('pgseal.row_context(%s, %s.%I::text)', base, row_ref, pk) ELSE base END
          FROM (SELECT CASE WHEN c.scope_column IS NOT NULL
                            THEN pg_catalog.format('pgseal.scope_context(%L, %s.%I::text)',
                                                   c.table_schema || '.' || c.table_name || '.' || c.column_name, row_ref, c.scope_column)
                            ELSE pg_catalog.quote_literal(c.table_schema || '.' || c.table_name || '.' || c.column_name) END AS base) AS b);
DROP FUNCTION pgseal._column_context(pgseal.columns);

ALTER FUNCTION pgseal.drop_view(regclass) SET search_path = '';
ALTER FUNCTION pgseal.unprotect_column(regclass, name, boolean) SET search_path = '';
ALTER FUNCTION pgseal.protect_column(regclass, name, text, boolean, text, text, text, name, integer) SET search_path = '';
ALTER FUNCTION pgseal.use_keys(bytea) SET search_path = '';
ALTER FUNCTION pgseal.add_key(integer, text, text, bytea, text, text) SET search_path = '';
