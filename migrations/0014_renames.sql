-- pgseal 0014 (sql/20_errors.sql, sql/50_columns.sql): renames are found, not followed.
-- * pgseal.columns keeps the table's oid and the column's attnum from when it was protected,
--   so a table or column renamed afterwards is found by the library (which refuses to treat
--   it as plaintext) instead of passing as an unprotected column;
-- * the hint of a value that fails authentication names a rename as a cause.
-- Released: never edit; sources in sql/.

-- Up Migration
ALTER TABLE pgseal.columns ADD COLUMN table_oid oid, ADD COLUMN attnum smallint;
UPDATE pgseal.columns r SET table_oid = c.oid, attnum = a.attnum
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
 WHERE n.nspname = r.table_schema AND c.relname = r.table_name AND a.attname = r.column_name;

CREATE OR REPLACE FUNCTION pgseal.protect_column(
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

CREATE OR REPLACE FUNCTION pgseal._fail_envelope(ciphertext bytea, context text, key_handed_in boolean, keys_from_settings boolean)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF context IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgseal: the context argument must not be NULL',
      HINT = 'Pass the context the value was encrypted with, by default ''schema.table.column''.';
  END IF;
  IF pgseal.key_version_of(ciphertext) IS NULL THEN
    PERFORM pgseal._raise('PS004', 'pgseal: value is not a pgseal ciphertext',
      'Expected a pgseal envelope (format 1, see docs/format.md). Plaintext written straight into an encrypted column looks like this: write it with pgseal.encrypt_text() instead.');
  END IF;
  IF NOT key_handed_in THEN
    IF keys_from_settings THEN
      PERFORM pgseal._fail_if_no_keys();
    END IF;
    PERFORM pgseal._fail_key_state(pgseal.key_version_of(ciphertext));
    PERFORM pgseal._raise('PS002',
      pg_catalog.format('pgseal: key version %s is not among the keys handed in', pgseal.key_version_of(ciphertext)),
      'If pgseal.keys lists this version as active or decrypt-only, reload the keyring (a rotation happened elsewhere) or include its scope; if it is not listed at all, the value is damaged.');
  END IF;
  PERFORM pgseal._raise('PS003', 'pgseal: ciphertext failed authentication',
    'The value was altered or truncated, was copied from another column or row (context mismatch), or was written under a different key; or its column or table was renamed after it was protected, and it opens only under the context it was sealed with (schema.table.column as protected). Otherwise it cannot be read as it is: restore it from a backup.');
  RETURN NULL;
END
$$;

-- Down Migration
CREATE OR REPLACE FUNCTION pgseal._fail_envelope(ciphertext bytea, context text, key_handed_in boolean, keys_from_settings boolean)
RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF context IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22004', MESSAGE = 'pgseal: the context argument must not be NULL',
      HINT = 'Pass the context the value was encrypted with, by default ''schema.table.column''.';
  END IF;
  IF pgseal.key_version_of(ciphertext) IS NULL THEN
    PERFORM pgseal._raise('PS004', 'pgseal: value is not a pgseal ciphertext',
      'Expected a pgseal envelope (format 1, see docs/format.md). Plaintext written straight into an encrypted column looks like this: write it with pgseal.encrypt_text() instead.');
  END IF;
  IF NOT key_handed_in THEN
    IF keys_from_settings THEN
      PERFORM pgseal._fail_if_no_keys();
    END IF;
    PERFORM pgseal._fail_key_state(pgseal.key_version_of(ciphertext));
    PERFORM pgseal._raise('PS002',
      pg_catalog.format('pgseal: key version %s is not among the keys handed in', pgseal.key_version_of(ciphertext)),
      'If pgseal.keys lists this version as active or decrypt-only, reload the keyring (a rotation happened elsewhere) or include its scope; if it is not listed at all, the value is damaged.');
  END IF;
  PERFORM pgseal._raise('PS003', 'pgseal: ciphertext failed authentication',
    'The value was altered or truncated, was copied from another column or row (context mismatch), or was written under a different key. It cannot be read as it is: restore it from a backup.');
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION pgseal.protect_column(
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
                              context_mode, searchable, normalizer, blind_index_column, blind_index_bytes)
  VALUES (t_schema, t_name, p_column, p_value_type, CASE WHEN p_scope_column IS NULL THEN p_scope END, p_scope_column,
          p_context_mode, p_searchable, p_normalizer, bidx, p_blind_index_bytes)
  RETURNING * INTO result;
  RETURN result;
END
$$;

ALTER TABLE pgseal.columns DROP COLUMN table_oid, DROP COLUMN attnum;
