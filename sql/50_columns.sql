-- The registry of protected columns: which columns hold pgseal ciphertext, of what type,
-- under which key scope and context, and whether (and how) they are searchable. The
-- typed helpers, the SQL rewriter and the decrypted views all read it.

CREATE TABLE pgseal.columns (
  table_schema       name NOT NULL,
  table_name         name NOT NULL,
  column_name        name NOT NULL,
  value_type         text NOT NULL DEFAULT 'text',
  scope              text DEFAULT 'default',
  scope_column       name,
  context_mode       text NOT NULL DEFAULT 'column',
  searchable         boolean NOT NULL DEFAULT false,
  normalizer         text NOT NULL DEFAULT 'none',
  blind_index_column name,
  blind_index_bytes  smallint NOT NULL DEFAULT 16,
  created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
  created_by         text NOT NULL DEFAULT CURRENT_USER,
  -- the table and column as the catalog numbers them when protected: a rename is then found
  -- (the names above are the values' context and stay as they were)
  table_oid          oid,
  attnum             smallint,
  PRIMARY KEY (table_schema, table_name, column_name),
  CONSTRAINT columns_value_type_known CHECK (value_type IN ('text', 'bytea', 'jsonb', 'numeric')),
  CONSTRAINT columns_one_scope_source CHECK ((scope IS NULL) <> (scope_column IS NULL)),
  CONSTRAINT columns_scope_format CHECK (scope ~ '^[a-z0-9_-]{1,63}$'),
  CONSTRAINT columns_context_mode_known CHECK (context_mode IN ('column', 'row')),
  CONSTRAINT columns_normalizer_known CHECK (normalizer IN ('none', 'trim', 'email', 'phone', 'upper')),
  CONSTRAINT columns_searchable_has_index CHECK (searchable = (blind_index_column IS NOT NULL)),
  CONSTRAINT columns_index_bytes CHECK (blind_index_bytes BETWEEN 8 AND 32)
);
COMMENT ON TABLE pgseal.columns IS 'pgseal: protected columns (ciphertext), their key scope, context and blind index';

-- Registers a bytea column (adding it when missing) and, when searchable, its blind-index
-- column and index. Idempotent for identical settings. Converting existing plaintext is a
-- separate step: a column of another type is refused.
CREATE FUNCTION pgseal.protect_column(
  p_table regclass, p_column name, p_value_type text DEFAULT 'text', p_searchable boolean DEFAULT false,
  p_normalizer text DEFAULT 'none', p_context_mode text DEFAULT 'column', p_scope text DEFAULT 'default',
  p_scope_column name DEFAULT NULL, p_blind_index_bytes integer DEFAULT 16
) RETURNS pgseal.columns
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t_schema name;
  t_name name;
  col_type text;
  pk_count integer;
  bidx name := CASE WHEN p_searchable THEN pg_catalog.left(p_column || '_bidx', 63)::name END;
  existing pgseal.columns;
  result pgseal.columns;
BEGIN
  SELECT n.nspname, c.relname INTO t_schema, t_name
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table;
  SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) INTO col_type
    FROM pg_catalog.pg_attribute a WHERE a.attrelid = p_table AND a.attname = p_column AND NOT a.attisdropped AND a.attnum > 0;
  -- contexts join schema, table and column with '.', then '@scope' and '#key': names
  -- holding those characters could make two columns share a context
  IF t_schema ~ '[.@#]' OR t_name ~ '[.@#]' OR p_column ~ '[.@#]' THEN
    RAISE EXCEPTION USING ERRCODE = 'PS009',
      MESSAGE = pg_catalog.format('pgseal: %I.%I.%I: a protected column''s schema, table and column names cannot contain ".", "@" or "#"', t_schema, t_name, p_column),
      HINT = 'Rename the column (or table) before protecting it.';
  END IF;
  IF p_blind_index_bytes NOT BETWEEN 8 AND 32 THEN
    RAISE EXCEPTION USING ERRCODE = 'PS009', MESSAGE = 'pgseal: a blind index keeps 8 to 32 bytes',
      HINT = 'Pass --index-bytes between 8 and 32 (16 by default).';
  END IF;
  IF col_type IS NULL THEN
    EXECUTE pg_catalog.format('ALTER TABLE %I.%I ADD COLUMN %I bytea', t_schema, t_name, p_column);
  ELSIF col_type <> 'bytea' THEN
    RAISE EXCEPTION USING ERRCODE = 'PS009',
      MESSAGE = pg_catalog.format('pgseal: %I.%I.%I is %s, not bytea', t_schema, t_name, p_column, col_type),
      HINT = 'A protected column holds ciphertext (bytea). Protect a new column and copy the data into it encrypted, or convert the column first.';
  END IF;
  IF p_context_mode = 'row' THEN
    SELECT i.indnkeyatts INTO pk_count FROM pg_catalog.pg_index i WHERE i.indrelid = p_table AND i.indisprimary;
    IF pk_count IS DISTINCT FROM 1 THEN
      RAISE EXCEPTION USING ERRCODE = 'PS009',
        MESSAGE = pg_catalog.format('pgseal: row context needs a single-column primary key on %I.%I', t_schema, t_name),
        HINT = 'Use --context column, or give the table a single-column primary key.';
    END IF;
  END IF;
  IF p_scope_column IS NOT NULL AND NOT EXISTS (
       SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = p_table AND a.attname = p_scope_column AND NOT a.attisdropped AND a.attnum > 0) THEN
    RAISE EXCEPTION USING ERRCODE = 'PS009',
      MESSAGE = pg_catalog.format('pgseal: scope column %I does not exist on %I.%I', p_scope_column, t_schema, t_name),
      HINT = 'Name the column that holds each row''s key scope (tenant), or use --scope.';
  END IF;
  SELECT * INTO existing FROM pgseal.columns c
   WHERE c.table_schema = t_schema AND c.table_name = t_name AND c.column_name = p_column;
  IF FOUND THEN
    IF (existing.value_type, existing.searchable, existing.normalizer, existing.context_mode, existing.scope, existing.scope_column, existing.blind_index_bytes)
       IS NOT DISTINCT FROM (p_value_type, p_searchable, p_normalizer, p_context_mode,
                             CASE WHEN p_scope_column IS NULL THEN p_scope END, p_scope_column, p_blind_index_bytes::smallint) THEN
      RETURN existing;
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'PS009',
      MESSAGE = pg_catalog.format('pgseal: %I.%I.%I is already protected with other settings', t_schema, t_name, p_column),
      HINT = 'Changing how a column is protected means re-encrypting it; unprotect it first only if it holds no data.';
  END IF;
  IF p_searchable THEN
    -- an existing column of that name is used only if it is bytea and no other column's index
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = p_table AND a.attname = bidx AND NOT a.attisdropped AND a.attnum > 0
                  AND a.atttypid <> 'pg_catalog.bytea'::pg_catalog.regtype)
       OR EXISTS (SELECT 1 FROM pgseal.columns r WHERE r.table_schema = t_schema AND r.table_name = t_name AND r.blind_index_column = bidx) THEN
      RAISE EXCEPTION USING ERRCODE = 'PS009',
        MESSAGE = pg_catalog.format('pgseal: %I.%I already has a column %I that cannot hold this blind index', t_schema, t_name, bidx),
        HINT = 'Rename or drop that column first.';
    END IF;
    EXECUTE pg_catalog.format('ALTER TABLE %I.%I ADD COLUMN IF NOT EXISTS %I bytea', t_schema, t_name, bidx);
    EXECUTE pg_catalog.format('CREATE INDEX IF NOT EXISTS %I ON %I.%I (%I)',
                              pg_catalog.left(t_name || '_' || bidx || '_idx', 63), t_schema, t_name, bidx);
  END IF;
  INSERT INTO pgseal.columns (table_schema, table_name, column_name, value_type, scope, scope_column,
                              context_mode, searchable, normalizer, blind_index_column, blind_index_bytes, table_oid, attnum)
  VALUES (t_schema, t_name, p_column, p_value_type, CASE WHEN p_scope_column IS NULL THEN p_scope END, p_scope_column,
          p_context_mode, p_searchable, p_normalizer, bidx, p_blind_index_bytes, p_table,
          (SELECT a.attnum FROM pg_catalog.pg_attribute a WHERE a.attrelid = p_table AND a.attname = p_column AND NOT a.attisdropped))
  RETURNING * INTO result;
  RETURN result;
END
$$;

-- Removes a column from the registry (its data stays as it is: ciphertext) and drops the
-- blind-index column pgseal added, unless told to keep it.
CREATE FUNCTION pgseal.unprotect_column(p_table regclass, p_column name, p_drop_blind_index boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  t_schema name;
  t_name name;
  removed pgseal.columns;
BEGIN
  SELECT n.nspname, c.relname INTO t_schema, t_name
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table;
  DELETE FROM pgseal.columns c WHERE c.table_schema = t_schema AND c.table_name = t_name AND c.column_name = p_column
  RETURNING * INTO removed;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = 'PS010',
      MESSAGE = pg_catalog.format('pgseal: %I.%I.%I is not a protected column', t_schema, t_name, p_column),
      HINT = 'See `pgseal columns list`.';
  END IF;
  IF removed.blind_index_column IS NOT NULL AND p_drop_blind_index THEN
    EXECUTE pg_catalog.format('ALTER TABLE %I.%I DROP COLUMN IF EXISTS %I', t_schema, t_name, removed.blind_index_column);
  END IF;
END
$$;

-- Which columns are protected is not secret: readers get it through pgseal_app (sql/99_privileges.sql).
REVOKE ALL ON pgseal.columns FROM PUBLIC;
REVOKE ALL ON FUNCTION pgseal.protect_column(regclass, name, text, boolean, text, text, text, name, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgseal.unprotect_column(regclass, name, boolean) FROM PUBLIC;
