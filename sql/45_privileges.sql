-- Privileges, granted on purpose. Start from nothing: PUBLIC gets nothing in schema pgseal.
-- What an application role and a key administrator may use is granted to the roles
-- pgseal_app and pgseal_admin (or to roles you name) in sql/99_privileges.sql, the last
-- file, once every object exists; docs/privileges.md lists it, and a catalog test keeps
-- the two equal.
REVOKE ALL ON SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgseal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgseal FROM PUBLIC;
