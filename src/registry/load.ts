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
  // where each protected column is now: by its name, else by the table oid and attnum it was
  // protected with, so that a table or column renamed since is found under its new name
  const places = await withPgsealErrors(() => sql<{ table_schema: string; table_name: string; column_name: string; now_oid: string | null; now_schema: string | null; now_table: string | null; now_column: string | null }[]>`
      select r.table_schema, r.table_name, r.column_name, c.oid::pg_catalog.text as now_oid, n.nspname as now_schema, c.relname as now_table, a.attname as now_column
        from pgseal.columns r
        left join pg_catalog.pg_class c
          on c.oid = coalesce(pg_catalog.to_regclass(pg_catalog.quote_ident(r.table_schema) || '.' || pg_catalog.quote_ident(r.table_name))::pg_catalog.oid, r.table_oid)
        left join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        left join lateral (
          select x.attname from pg_catalog.pg_attribute x
           where x.attrelid = c.oid and x.attnum > 0 and not x.attisdropped and (x.attname = r.column_name or x.attnum = r.attnum)
           order by x.attname = r.column_name desc limit 1) a on true`);
  const drift = new Map<string, string[]>();
  const nowOf = new Map<string, string>();
  const oids: string[] = [];
  for (const p of places) {
    const registered = `${p.table_schema}.${p.table_name}`;
    if (p.now_oid === null) continue; // dropped, or renamed where nothing traces it: no statement can name it as it was
    const now = `${p.now_schema}.${p.now_table}`;
    nowOf.set(registered, now);
    oids.push(p.now_oid);
    const problems: string[] = [];
    if (now !== registered) problems.push(`table ${registered} was renamed to ${now} after its column ${p.column_name} was protected`);
    if (p.now_column === null) problems.push(`${registered}.${p.column_name} is protected but ${now} has no such column any more`);
    else if (p.now_column !== p.column_name) problems.push(`column ${p.column_name} was renamed to ${p.now_column} after it was protected`);
    if (problems.length > 0) drift.set(now, [...(drift.get(now) ?? []), ...problems]);
  }
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
       where c.oid = any(${[...new Set(oids)]}::pg_catalog.oid[])`);
  for (const s of shapes) {
    const name = `${s.table_schema}.${s.table_name}`;
    const info: TableInfo = {
      schema: s.table_schema, table: s.table_name, columns: s.columns, primaryKey: s.primary_key ?? [], protected: new Map(),
      typeOids: new Map(s.columns.map((column, i) => [column, s.type_oids[i]!])),
      ...(drift.has(name) ? { drift: drift.get(name)! } : {}),
    };
    registry.set(name, info);
  }
  // a protected column stays under the names it was protected with (its context)
  for (const c of columns) registry.get(nowOf.get(`${c.schema}.${c.table}`) ?? '')?.protected.set(c.column, c);
  return registry;
}
