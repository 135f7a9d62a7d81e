-- pgseal 0012 (sql/30_keyring.sql, sql/99_privileges.sql): this database's identity.
-- * pgseal.installation holds one random id, made here and kept by a dump and its restore;
--   key providers that can bind a wrapped key to its database (AWS KMS, in the encryption
--   context) do, so a key row copied into another pgseal database does not unwrap there;
-- * pgseal.installation_id() reads it for the application's role, which loads the keys.
-- Released: never edit; sources in sql/.

-- Up Migration
CREATE TABLE pgseal.installation (
  id         uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
  created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  singleton  boolean PRIMARY KEY DEFAULT true,
  CONSTRAINT installation_one_row CHECK (singleton)
);
COMMENT ON TABLE pgseal.installation IS 'pgseal: this database''s identity, bound into what a KMS wraps (never secret)';
INSERT INTO pgseal.installation DEFAULT VALUES;
REVOKE ALL ON TABLE pgseal.installation FROM PUBLIC;

CREATE FUNCTION pgseal.installation_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN (SELECT i.id FROM pgseal.installation i);
REVOKE ALL ON FUNCTION pgseal.installation_id() FROM PUBLIC;

-- the app set gains it: grant_api's list, patched where it stands
DO $do$
DECLARE
  def text := pg_catalog.pg_get_functiondef('pgseal.grant_api(name, text)'::pg_catalog.regprocedure);
BEGIN
  IF pg_catalog.strpos(def, 'pgseal.installation_id()') = 0 THEN
    EXECUTE pg_catalog.replace(def, 'pgseal.guard(bigint), pgseal.key_generation(), ',
      'pgseal.guard(bigint), pgseal.key_generation(), pgseal.installation_id(), ');
  END IF;
END
$do$;

SELECT pgseal._regrant();

-- Down Migration
DO $do$
DECLARE
  def text := pg_catalog.pg_get_functiondef('pgseal.grant_api(name, text)'::pg_catalog.regprocedure);
BEGIN
  EXECUTE pg_catalog.replace(def, 'pgseal.installation_id(), ', '');
END
$do$;

DROP FUNCTION pgseal.installation_id();
DROP TABLE pgseal.installation;

SELECT pgseal._regrant();
