-- The encryption audit log: what happened to the keys and to the protected data (key
-- create, rotate, rewrap, retire, destroy, compromise; re-encryption runs and their
-- totals), who did it and why. Never a key, never a plaintext: only names, versions,
-- counts. Tamper evidence: sql/97_log_chain.sql.

CREATE TABLE pgseal.encryption_audit_log (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  -- who, as the application names them (--actor, default the operating-system user)
  actor        text NOT NULL,
  -- who, as PostgreSQL knows them
  db_user      text NOT NULL DEFAULT SESSION_USER,
  operation    text NOT NULL,
  table_schema name,
  table_name   name,
  column_name  name,
  key_scope    text,
  key_version  integer,
  success      boolean NOT NULL,
  reason       text,
  details      jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- tamper evidence (sql/97_log_chain.sql): the link of the statement that wrote the row,
  -- the row's position in it, and its HMAC under the log key
  link_id      bigint,
  link_pos     integer,
  mac          bytea,
  CONSTRAINT audit_operation_format CHECK (operation ~ '^[a-z_]+\.[a-z_]+$')
);
COMMENT ON TABLE pgseal.encryption_audit_log IS 'pgseal: key and data operations, with actor and reason (no keys, no plaintext)';
CREATE INDEX encryption_audit_log_time ON pgseal.encryption_audit_log (occurred_at);

-- Owner only: pgseal's commands write it; grant SELECT to an auditor role on purpose.
REVOKE ALL ON TABLE pgseal.encryption_audit_log FROM PUBLIC;
