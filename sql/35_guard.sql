-- The guard every statement that carries keys runs behind, in the same transaction and
-- before the keys arrive (src/exec/transaction.ts). It does two things:
--
-- * It pins, transaction-locally, every setting a role may set for itself that could copy
--   a key or a plaintext out of the statements that follow: plan and parse-tree dumps
--   (debug_print_*, which print bound keys as constants in a custom plan), bound parameters
--   in the log of a failing statement (log_parameter_max_length_on_error), and messages of
--   level LOG or below sent to the client (client_min_messages). `ALTER ROLE app SET ...`,
--   a session-level SET left on a pooled connection, or a function of the role's that ran
--   earlier on the connection all stay without effect while the keys are there.
-- * It refuses the transaction when the keys of this process are older than the last
--   revocation (a key retired, destroyed or marked compromised since the process loaded its
--   keys): the pipelined keyed statement then never runs, the process reloads its keys and
--   runs it again, so a destroyed scope is unreadable in every running process from the next
--   call on, not when a cache expires.
--
-- Settings only a superuser can change (log_statement, log_min_duration_statement,
-- log_parameter_max_length, auto_explain.*) cannot be pinned by the application's role; they
-- are for `pgseal doctor` to report.

-- One row: bumped by every revocation, in the revoking transaction (so a process that reads
-- it sees the revocation's effects on pgseal.keys in the same snapshot).
CREATE TABLE pgseal.key_generation (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  generation bigint NOT NULL DEFAULT 1,
  changed_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE pgseal.key_generation IS 'pgseal: bumped when a key version is retired, destroyed, erased or marked compromised';
INSERT INTO pgseal.key_generation DEFAULT VALUES;

-- SECURITY DEFINER: the administrator's role that retires or destroys a key may not write
-- this table itself.
CREATE FUNCTION pgseal._bump_key_generation() RETURNS trigger
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE pgseal.key_generation SET generation = generation + 1, changed_at = pg_catalog.now();
  RETURN NULL;
END
$$;

CREATE TRIGGER keys_revoked AFTER UPDATE ON pgseal.keys
FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM OLD.state AND NEW.state IN ('retired', 'destroyed')
                   OR (OLD.wrapped_key IS NOT NULL AND NEW.wrapped_key IS NULL)
                   OR (OLD.compromised_at IS NULL AND NEW.compromised_at IS NOT NULL))
EXECUTE FUNCTION pgseal._bump_key_generation();

CREATE TRIGGER keys_deleted AFTER DELETE ON pgseal.keys
FOR EACH STATEMENT EXECUTE FUNCTION pgseal._bump_key_generation();

-- The generation a keyring records when it loads its keys. SECURITY DEFINER: the
-- application's role reads no pgseal table; a number is no secret.
CREATE FUNCTION pgseal.key_generation() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN (SELECT g.generation FROM pgseal.key_generation g);

-- Pins the settings above for the rest of the transaction (client_min_messages to notice,
-- its default), then checks the caller's keys are not older than the last revocation
-- (PS020). Call it as the transaction's first statement, before any statement that carries
-- a key; outside a transaction block its pins would end with the statement. SECURITY
-- DEFINER to read pgseal.key_generation in the same call: one call, prepared once per
-- connection, is what every keyed statement pays (about 7 us on PostgreSQL 15).
CREATE FUNCTION pgseal.guard(p_generation bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  current bigint;
BEGIN
  PERFORM set_config('debug_print_parse', 'off', true), set_config('debug_print_rewritten', 'off', true),
          set_config('debug_print_plan', 'off', true), set_config('log_parameter_max_length_on_error', '0', true),
          set_config('client_min_messages', 'notice', true);
  SELECT g.generation INTO current FROM pgseal.key_generation g;
  IF p_generation IS NULL OR p_generation < current THEN
    RAISE EXCEPTION USING ERRCODE = 'PS020', MESSAGE = 'pgseal: key versions were revoked since this process loaded its keys',
      HINT = 'The pgseal library reloads its keys and runs the statement again; a caller of pgseal.guard() must reload with pgseal.key_generation().';
  END IF;
  RETURN current;
END
$$;

-- owner only until granted on purpose (sql/99_privileges.sql)
REVOKE ALL ON TABLE pgseal.key_generation FROM PUBLIC;
REVOKE ALL ON FUNCTION pgseal._bump_key_generation(), pgseal.key_generation(), pgseal.guard(bigint) FROM PUBLIC;
