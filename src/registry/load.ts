// Reads the registry (pgseal.columns) and the shape of the protected tables from the
// catalogs, into the Registry the helpers, the rewriter and the CLI share.

import type { Sql } from 'postgres';
import { withPgsealErrors } from '../errors.js';
import type { ContextMode, Normalizer, ProtectedColumn, Registry, TableInfo, ValueType } from './types.js';

interface ColumnRow {
  table_schema: string;
  table_name: string;
  column_name: string;
  value_type: ValueType;
  scope: string | null;
  scope_column: string | null;
  context_mode: ContextMode;
  searchable: boolean;
  normalizer: Normalizer;
  blind_index_column: string | null;
  blind_index_bytes: number;
}

export function toProtectedColumn(r: ColumnRow): ProtectedColumn {
  return {
    schema: r.table_schema,
    table: r.table_name,
    column: r.column_name,
    valueType: r.value_type,
    scope: r.scope,
    scopeColumn: r.scope_column,
    contextMode: r.context_mode,
    searchable: r.searchable,
    normalizer: r.normalizer,
    blindIndexColumn: r.blind_index_column,
    blindIndexBytes: r.blind_index_bytes,
  };
}

export async function listProtectedColumns(sql: Sql): Promise<ProtectedColumn[]> {
  const rows = await withPgsealErrors(() => sql<ColumnRow[]>`
    select table_schema, table_name, column_name, value_type, scope, scope_column, context_mode,
           searchable, normalizer, blind_index_column, blind_index_bytes
      from pgseal.columns order by table_schema, table_name, column_name`);
  return rows.map(toProtectedColumn);
}

export async function loadRegistry(sql: Sql): Promise<Registry> {
  const columns = await listProtectedColumns(sql);
  const registry: Registry = new Map();
  if (columns.length === 0) return registry;
  const shapes = await withPgsealErrors(() => sql<{ table_schema: string; table_name: string; columns: string[]; type_oids: number[]; primary_key: string[] | null }[]>`
      select n.nspname as table_schema, c.relname as table_name,
             array(select a.attname::pg_catalog.text from pg_catalog.pg_attribute a
                    where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped order by a.attnum) as columns,
             array(select (case when t.typtype = 'd' then t.typbasetype else t.oid end)::pg_catalog.int4
                     from pg_catalog.pg_attribute a join pg_catalog.pg_type t on t.oid = a.atttypid
                    where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped order by a.attnum) as type_oids,
             array(select a.attname::pg_catalog.text from pg_catalog.pg_index i
                     join lateral unnest(i.indkey) with ordinality as k(attnum, ord) on true
                     join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                    where i.indrelid = c.oid and i.indisprimary order by k.ord) as primary_key
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
       where (n.nspname, c.relname) in (select table_schema, table_name from pgseal.columns)`);
  for (const s of shapes) {
    const info: TableInfo = {
      schema: s.table_schema, table: s.table_name, columns: s.columns, primaryKey: s.primary_key ?? [], protected: new Map(),
      typeOids: new Map(s.columns.map((name, i) => [name, s.type_oids[i]!])),
    };
    registry.set(`${s.table_schema}.${s.table_name}`, info);
  }
  for (const c of columns) registry.get(`${c.schema}.${c.table}`)?.protected.set(c.column, c);
  return registry;
}
