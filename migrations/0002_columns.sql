-- pgseal 0002: protected-column registry, normalisers and blind indexes, the keyset path
-- (keys as one bound argument), decrypted views. Released: never edit; sources in sql/.

-- Up Migration

-- ==== sql/50_columns.sql ====
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
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
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

-- Removes a column from the registry (its data stays as it is: ciphertext) and drops the
-- blind-index column pgseal added, unless told to keep it.
CREATE FUNCTION pgseal.unprotect_column(p_table regclass, p_column name, p_drop_blind_index boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
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

-- Which columns are protected is not secret, and every reader needs it.
REVOKE ALL ON pgseal.columns FROM PUBLIC;
GRANT SELECT ON pgseal.columns TO PUBLIC;
REVOKE ALL ON FUNCTION pgseal.protect_column(regclass, name, text, boolean, text, text, text, name, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION pgseal.unprotect_column(regclass, name, boolean) FROM PUBLIC;

-- ==== sql/60_search.sql ====
-- Searching encrypted columns, and the keyset path.
--
-- Normalisers make equal values equal before they are indexed (ASCII-only case folding,
-- so SQL and Node agree byte for byte). A blind index is HMAC-SHA-256 under the scope's
-- index key (a separate key family, so rotating data keys leaves indexes valid) over the
-- normalised value and the column context, truncated: equal values in one column match,
-- the same value in two columns does not, and without the key nothing can be guessed.
-- Truncation makes collisions possible on purpose; every equality lookup re-checks the
-- decrypted value.

CREATE FUNCTION pgseal._bad_normalizer(normalizer text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- not echoed: swapped arguments would put the value itself in the message
  RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'pgseal: unknown normalizer',
    HINT = 'Use one of none, trim, email, phone, upper (the second argument of pgseal.normalize, pgseal.blind_index).';
END
$$;

CREATE FUNCTION pgseal.normalize(value text, normalizer text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE normalizer
  WHEN 'none' THEN value
  WHEN 'trim' THEN pg_catalog.btrim(value, E' \t\n\r')
  WHEN 'email' THEN pg_catalog.lower(pg_catalog.btrim(value, E' \t\n\r') COLLATE "C")
  WHEN 'upper' THEN pg_catalog.upper(pg_catalog.btrim(value, E' \t\n\r') COLLATE "C")
  -- E.164-like: digits only, a leading '+' kept, a leading international '00' becomes '+'
  WHEN 'phone' THEN CASE
    WHEN pg_catalog.btrim(value, E' \t\n\r') LIKE '+%' THEN '+' || pg_catalog.regexp_replace(value, '[^0-9]', '', 'g')
    WHEN pg_catalog.regexp_replace(value, '[^0-9]', '', 'g') LIKE '00%'
      THEN '+' || pg_catalog.substr(pg_catalog.regexp_replace(value, '[^0-9]', '', 'g'), 3)
    ELSE pg_catalog.regexp_replace(value, '[^0-9]', '', 'g')
  END
  ELSE pgseal._bad_normalizer(normalizer)
END;

CREATE FUNCTION pgseal.normalize_array(value_list text[], normalizer text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN value_list IS NOT NULL THEN ARRAY(SELECT pgseal.normalize(v, normalizer) FROM pg_catalog.unnest(value_list) AS v) END;

-- Contexts beyond 'schema.table.column': a per-tenant column binds each value to its scope
-- too ('...@<scope>'), so a value copied into another tenant's row fails authentication
-- even when both tenants' keys are loaded; a row-context column binds it to its primary
-- key ('...#<key>'). Both: 'schema.table.column@<scope>#<key>'.
CREATE FUNCTION pgseal.scope_context(column_context text, scope text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN column_context || '@' || scope;

CREATE FUNCTION pgseal.row_context(column_context text, row_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN column_context || '#' || row_key;

CREATE FUNCTION pgseal._fail_no_index_key(scope text) RETURNS bytea
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pgseal._fail_if_no_keys();
  PERFORM pgseal._raise('PS008', pg_catalog.format('pgseal: no blind-index key for scope %L in this transaction', scope),
    'Create the scope''s keys with `pgseal keys init` (it creates a data key and an index key), and load that scope in the transaction.');
  RETURN NULL;
END
$$;

CREATE FUNCTION pgseal._index_key(scope text) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN NULLIF(pg_catalog.decode(pg_catalog.current_setting('pgseal.index_' || pg_catalog.translate(scope, '-', '$'), true), 'hex'), ''::bytea);

CREATE FUNCTION pgseal.blind_index(value text, normalizer text, context text, scope text DEFAULT 'default', bytes integer DEFAULT 16)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN value IS NOT NULL THEN
  pg_catalog.substr(pgseal._hmac_sha256(
    pg_catalog.convert_to(pgseal.normalize(value, normalizer), 'UTF8') || pgseal._context_bytes(context),
    COALESCE(pgseal._index_key(scope), pgseal._fail_no_index_key(scope))), 1, bytes)
END;

CREATE FUNCTION pgseal.blind_index_array(value_list text[], normalizer text, context text, scope text DEFAULT 'default', bytes integer DEFAULT 16)
RETURNS bytea[]
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN value_list IS NOT NULL THEN ARRAY(SELECT pgseal.blind_index(v, normalizer, context, scope, bytes) FROM pg_catalog.unnest(value_list) AS v) END;

-- The keyset path: keys as one bound argument of the statement itself, for one statement
-- and one round trip without a transaction (the typed helpers use it). No settings are
-- read per row: the version in the header is matched against the keyset's entries.
--   keyset: entries of version u32 BE | encryption key (32) | MAC key (32), the active key first
--   key_material (writes): version u32 BE | encryption key (32) | MAC key (32)
-- Only the first entry is matched inline: the expression stays small (a generic plan
-- re-initialises it on every execution) and most rows are on the active key; other
-- versions are looked up by _keyset_find.
CREATE FUNCTION pgseal._keyset_find(ciphertext bytea, keyset bytea) RETURNS integer
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  version bytea := pg_catalog.substr(ciphertext, 3, 4);
  at integer := 1;
BEGIN
  -- operators qualified: a SET search_path clause would cost every call
  WHILE at OPERATOR(pg_catalog.<) pg_catalog.octet_length(keyset) LOOP
    IF pg_catalog.substr(keyset, at, 4) OPERATOR(pg_catalog.=) version THEN
      RETURN at OPERATOR(pg_catalog.+) 4;
    END IF;
    at := at OPERATOR(pg_catalog.+) 68;
  END LOOP;
  RETURN NULL;
END
$$;

CREATE FUNCTION pgseal._keyset_offset(ciphertext bytea, keyset bytea) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN pg_catalog.substr(ciphertext, 3, 4) = pg_catalog.substr(keyset, 1, 4) THEN 5
            ELSE pgseal._keyset_find(ciphertext, keyset) END;

-- The failure branch of decrypt_bytea_with: keys come as the keyset argument. Declared
-- IMMUTABLE, and opaque (PL/pgSQL), so the IMMUTABLE functions calling it still inline; it
-- runs only when a value does not open.
CREATE FUNCTION pgseal._fail_open_with(ciphertext bytea, context text, keyset bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN pgseal._fail_envelope(ciphertext, context, pgseal._keyset_offset(ciphertext, keyset) IS NOT NULL, false);
END
$$;

CREATE FUNCTION pgseal.decrypt_bytea_with(ciphertext bytea, context text, keyset bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
  WHEN ciphertext IS NULL THEN NULL
  WHEN pg_catalog.octet_length(ciphertext) >= 70
   AND (pg_catalog.octet_length(ciphertext) - 54) % 16 = 0
   AND pg_catalog.substr(ciphertext, 1, 2) = '\x0101'::bytea
   AND pgseal._hmac_sha256(
         pg_catalog.substr(ciphertext, 1, pg_catalog.octet_length(ciphertext) - 32) || pgseal._context_bytes(context),
         pg_catalog.substr(keyset, pgseal._keyset_offset(ciphertext, keyset) + 32, 32))
       = pg_catalog.substr(ciphertext, pg_catalog.octet_length(ciphertext) - 31)
  THEN pgseal._aes_cbc_decrypt(
         pg_catalog.substr(ciphertext, 23, pg_catalog.octet_length(ciphertext) - 54),
         pg_catalog.substr(keyset, pgseal._keyset_offset(ciphertext, keyset), 32),
         pg_catalog.substr(ciphertext, 7, 16))
  ELSE pgseal._fail_open_with(ciphertext, context, keyset)
END;

-- STABLE, not IMMUTABLE, only because convert_from is: an IMMUTABLE wrapper would not inline.
CREATE FUNCTION pgseal.decrypt_text_with(ciphertext bytea, context text, keyset bytea) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.convert_from(pgseal.decrypt_bytea_with(ciphertext, context, keyset), 'UTF8');

CREATE FUNCTION pgseal._check_key_material(key_material bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  IF pg_catalog.octet_length(key_material) OPERATOR(pg_catalog.<>) 68 OR key_material IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = 'PS006', MESSAGE = 'pgseal: invalid key material',
      HINT = 'The key argument is built by the pgseal library (version and keys, 68 bytes); do not build it by hand.';
  END IF;
  RETURN key_material;
END
$$;

CREATE FUNCTION pgseal.encrypt_bytea_with(plaintext bytea, context text, key_material bytea) RETURNS bytea
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN CASE WHEN plaintext IS NOT NULL THEN
  pgseal._seal(plaintext,
               COALESCE(pgseal._context_bytes(context), pgseal._raise('22004', 'pgseal: the context argument must not be NULL',
                 'Pass the context to bind the value to, by default ''schema.table.column''.')),
               pgseal._check_key_material(key_material),
               pgseal._random_bytes(16))
END;

CREATE FUNCTION pgseal.encrypt_text_with(plaintext text, context text, key_material bytea) RETURNS bytea
LANGUAGE sql VOLATILE PARALLEL SAFE
RETURN pgseal.encrypt_bytea_with(pg_catalog.convert_to(plaintext, 'UTF8'), context, key_material);

REVOKE ALL ON FUNCTION
  pgseal._bad_normalizer(text), pgseal.normalize(text, text), pgseal.normalize_array(text[], text),
  pgseal.scope_context(text, text), pgseal.row_context(text, text), pgseal._fail_no_index_key(text), pgseal._index_key(text),
  pgseal.blind_index(text, text, text, text, integer), pgseal.blind_index_array(text[], text, text, text, integer),
  pgseal._keyset_find(bytea, bytea), pgseal._keyset_offset(bytea, bytea), pgseal._fail_open_with(bytea, text, bytea),
  pgseal.decrypt_bytea_with(bytea, text, bytea), pgseal.decrypt_text_with(bytea, text, bytea),
  pgseal._check_key_material(bytea), pgseal.encrypt_bytea_with(bytea, text, bytea), pgseal.encrypt_text_with(text, text, bytea)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  pgseal._bad_normalizer(text), pgseal.normalize(text, text), pgseal.normalize_array(text[], text),
  pgseal.scope_context(text, text), pgseal.row_context(text, text), pgseal._fail_no_index_key(text), pgseal._index_key(text),
  pgseal.blind_index(text, text, text, text, integer), pgseal.blind_index_array(text[], text, text, text, integer),
  pgseal._keyset_find(bytea, bytea), pgseal._keyset_offset(bytea, bytea), pgseal._fail_open_with(bytea, text, bytea),
  pgseal.decrypt_bytea_with(bytea, text, bytea), pgseal.decrypt_text_with(bytea, text, bytea),
  pgseal._check_key_material(bytea), pgseal.encrypt_bytea_with(bytea, text, bytea), pgseal.encrypt_text_with(text, text, bytea)
TO PUBLIC;


-- ==== sql/70_views.sql ====
-- Decrypted views for ORMs and psql: one view per protected table, <table>_decrypted, that
-- decrypts with the keys of the current transaction (pgseal.use_keys), and INSTEAD OF
-- triggers that encrypt what is inserted or updated and keep blind indexes current.
-- The view runs with the caller's rights (security_invoker, PostgreSQL 15+), so it grants
-- nothing the caller did not already have on the table.

CREATE FUNCTION pgseal._context_expr(c pgseal.columns, row_ref text, pk name) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT CASE c.context_mode WHEN 'row' THEN pg_catalog.format('pgseal.row_context(%s, %s.%I::text)', base, row_ref, pk) ELSE base END
          FROM (SELECT CASE WHEN c.scope_column IS NOT NULL
                            THEN pg_catalog.format('pgseal.scope_context(%L, %s.%I::text)',
                                                   c.table_schema || '.' || c.table_name || '.' || c.column_name, row_ref, c.scope_column)
                            ELSE pg_catalog.quote_literal(c.table_schema || '.' || c.table_name || '.' || c.column_name) END AS base) AS b);

-- The SQL expression that reads a protected column, given the registry row.
CREATE FUNCTION pgseal._read_expr(c pgseal.columns, row_ref text, pk name) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.format(
  CASE c.value_type WHEN 'bytea' THEN 'pgseal.decrypt_bytea(%s.%I, %s)'
                    WHEN 'jsonb' THEN 'pgseal.decrypt_text(%s.%I, %s)::jsonb'
                    WHEN 'numeric' THEN 'pgseal.decrypt_text(%s.%I, %s)::numeric'
                    ELSE 'pgseal.decrypt_text(%s.%I, %s)' END,
  row_ref, c.column_name, pgseal._context_expr(c, row_ref, pk));

CREATE FUNCTION pgseal._scope_expr(c pgseal.columns, row_ref text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN c.scope_column IS NOT NULL THEN pg_catalog.format('%s.%I::text', row_ref, c.scope_column)
            ELSE pg_catalog.quote_literal(c.scope) END;

-- (Re)creates the decrypted view of one protected table; returns its qualified name.
CREATE FUNCTION pgseal.create_view(p_table regclass) RETURNS text
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

CREATE FUNCTION pgseal.drop_view(p_table regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = '' AS $$
DECLARE
  t_schema name;
  t_name name;
BEGIN
  SELECT n.nspname, cl.relname INTO t_schema, t_name
    FROM pg_catalog.pg_class cl JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace WHERE cl.oid = p_table;
  EXECUTE pg_catalog.format('DROP VIEW IF EXISTS %I.%I', t_schema, pg_catalog.left(t_name || '_decrypted', 63));
  EXECUTE pg_catalog.format('DROP FUNCTION IF EXISTS %I.%I()', t_schema, pg_catalog.left(t_name || '_decrypted_write', 63));
END
$$;

REVOKE ALL ON FUNCTION pgseal._read_expr(pgseal.columns, text, name), pgseal._context_expr(pgseal.columns, text, name),
  pgseal._scope_expr(pgseal.columns, text), pgseal.create_view(regclass), pgseal.drop_view(regclass) FROM PUBLIC;

-- Down Migration
-- Objects of this migration, one by one and without CASCADE: a decrypted view created by
-- `pgseal views create` depends on them and must be dropped first (pgseal views drop).
DROP FUNCTION pgseal.drop_view(regclass);
DROP FUNCTION pgseal.create_view(regclass);
DROP FUNCTION pgseal._scope_expr(pgseal.columns, text);
DROP FUNCTION pgseal._read_expr(pgseal.columns, text, name);
DROP FUNCTION pgseal._context_expr(pgseal.columns, text, name);
DROP FUNCTION pgseal.encrypt_text_with(text, text, bytea);
DROP FUNCTION pgseal.encrypt_bytea_with(bytea, text, bytea);
DROP FUNCTION pgseal._check_key_material(bytea);
DROP FUNCTION pgseal.decrypt_text_with(bytea, text, bytea);
DROP FUNCTION pgseal.decrypt_bytea_with(bytea, text, bytea);
DROP FUNCTION pgseal._fail_open_with(bytea, text, bytea);
DROP FUNCTION pgseal._keyset_offset(bytea, bytea);
DROP FUNCTION pgseal._keyset_find(bytea, bytea);
DROP FUNCTION pgseal.blind_index_array(text[], text, text, text, integer);
DROP FUNCTION pgseal.blind_index(text, text, text, text, integer);
DROP FUNCTION pgseal._index_key(text);
DROP FUNCTION pgseal._fail_no_index_key(text);
DROP FUNCTION pgseal.row_context(text, text);
DROP FUNCTION pgseal.scope_context(text, text);
DROP FUNCTION pgseal.normalize_array(text[], text);
DROP FUNCTION pgseal.normalize(text, text);
DROP FUNCTION pgseal._bad_normalizer(text);
DROP FUNCTION pgseal.unprotect_column(regclass, name, boolean);
DROP FUNCTION pgseal.protect_column(regclass, name, text, boolean, text, text, text, name, integer);
DROP TABLE pgseal.columns;
