-- Who may use what, granted on purpose. PUBLIC gets nothing in schema pgseal (45). Two sets
-- of privileges, listed once, here, and in docs/privileges.md (a catalog test keeps them
-- equal):
--   app    read and write protected data (typed helpers, rewritten SQL, decrypted views,
--          the functions of the SQL API), load the keyring (pgseal.usable_keys), write the
--          access and audit logs (INSERT only; the hash chains through append_log_link).
--          Not: pgseal.keys itself, any key operation, pgseal.seal(..., iv), the chains.
--   admin  the app set, and the key operations: keys init (of a new scope), rotate, list,
--          retire, destroy, rewrap.
-- They go to the roles pgseal_app and pgseal_admin, created here where the installing role
-- may create roles, and to any role named with `pgseal grant --app R` / `--admin R`
-- (pgseal.grant_api). Owner only, as before: migrations, protect, views, re-encryption,
-- retention, emergency rotation, and the first `keys init` (it starts the logs' chains).

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
    pgseal._open_with_keyset(bytea, text, bytea), pgseal._check_key_material(bytea), pgseal.value_numeric(text), pgseal.value_jsonb(text), pgseal._is_json(text),
    pgseal.guard(bigint), pgseal.key_generation(), pgseal.installation_id(), pgseal._payload_entry(bytea, text, integer, integer), pgseal._material_in(bytea, text),
    pgseal._index_keys_in(bytea, text), pgseal.blind_index_with(text, text, text, bytea[], integer),
    pgseal.blind_index_array_with(text[], text, text, bytea[], integer), pgseal._not_distinct(text, text), pgseal._not_distinct(bytea, bytea)';
  admin_functions text := 'pgseal.add_key(integer, text, text, bytea, text, text), pgseal.retire_key(integer, boolean),
    pgseal.destroy_scope_keys(text), pgseal.key_usage(integer), pgseal.envelope_census(integer, boolean)';
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
