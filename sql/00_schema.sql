-- The pgseal schema holds the key registry and the encryption API.
CREATE SCHEMA pgseal;
COMMENT ON SCHEMA pgseal IS 'pgseal: column encryption with pgcrypto (see docs/format.md)';
