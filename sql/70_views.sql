-- Decrypted views for ORMs and psql: one view per protected table, <table>_decrypted, that
-- decrypts with the keys of the current transaction (pgseal.use_keys), and INSTEAD OF
-- triggers that encrypt what is inserted or updated and keep blind indexes current.
-- The view runs with the caller's rights (security_invoker, PostgreSQL 15+), so it grants
-- nothing the caller did not already have on the table.

-- The SQL side of the context rule (src/columns/context.ts is the TypeScript side; a test
-- checks both agree): 'schema.table.column', then '@' || the row's scope for a per-tenant
-- column, then '#' || its primary key in row mode, through pgseal.scope_context and
-- pgseal.row_context. _column_context is the first part, and every blind index's context.
CREATE FUNCTION pgseal._column_context(c pgseal.columns) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN c.table_schema || '.' || c.table_name || '.' || c.column_name;

CREATE FUNCTION pgseal._context_expr(c pgseal.columns, row_ref text, pk name) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT CASE c.context_mode WHEN 'row' THEN pg_catalog.format('pgseal.row_context(%s, %s.%I::text)', base, row_ref, pk) ELSE base END
          FROM (SELECT CASE WHEN c.scope_column IS NOT NULL
                            THEN pg_catalog.format('pgseal.scope_context(%L, %s.%I::text)', pgseal._column_context(c), row_ref, c.scope_column)
                            ELSE pg_catalog.quote_literal(pgseal._column_context(c)) END AS base) AS b);

-- The SQL expression that reads a protected column, given the registry row. numeric and
-- jsonb through pgseal.value_* (sql/40_envelope.sql): a plain cast's error would quote the plaintext.
CREATE FUNCTION pgseal._read_expr(c pgseal.columns, row_ref text, pk name) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN pg_catalog.format(
  CASE c.value_type WHEN 'bytea' THEN 'pgseal.decrypt_bytea(%s.%I, %s)'
                    WHEN 'jsonb' THEN 'pgseal.value_jsonb(pgseal.decrypt_text(%s.%I, %s))'
                    WHEN 'numeric' THEN 'pgseal.value_numeric(pgseal.decrypt_text(%s.%I, %s))'
                    ELSE 'pgseal.decrypt_text(%s.%I, %s)' END,
  row_ref, c.column_name, pgseal._context_expr(c, row_ref, pk));

CREATE FUNCTION pgseal._scope_expr(c pgseal.columns, row_ref text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN c.scope_column IS NOT NULL THEN pg_catalog.format('%s.%I::text', row_ref, c.scope_column)
            ELSE pg_catalog.quote_literal(c.scope) END;

-- (Re)creates the decrypted view of one protected table; returns its qualified name.
CREATE FUNCTION pgseal.create_view(p_table regclass) RETURNS text
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

CREATE FUNCTION pgseal.drop_view(p_table regclass) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
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

REVOKE ALL ON FUNCTION pgseal._column_context(pgseal.columns), pgseal._read_expr(pgseal.columns, text, name), pgseal._context_expr(pgseal.columns, text, name),
  pgseal._scope_expr(pgseal.columns, text), pgseal.create_view(regclass), pgseal.drop_view(regclass) FROM PUBLIC;
