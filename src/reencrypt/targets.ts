// Which protected columns a re-encryption covers, with what each needs: its primary key
// (name and type, for keyset pagination), and the key versions it moves off and onto.

import type { Sql } from 'postgres';
import { ErrorCodes, PgsealError, withPgsealErrors as guarded } from '../errors.js';
import { listProtectedColumns } from '../registry/load.js';
import { columnContext } from '../columns/context.js';
import type { ProtectedColumn } from '../registry/types.js';

export interface Filter {
  /** 'table' or 'schema.table' (quoted as in SQL when needed); default every protected table */
  table?: string | undefined;
  /** needs `table` */
  column?: string | undefined;
  /** only values of this key scope */
  scope?: string | undefined;
}

/** 'data': values move onto the active data key; 'index': blind indexes are recomputed under the active index key. */
export type RunKind = 'data' | 'index';

export interface Target {
  kind: RunKind;
  column: ProtectedColumn;
  /** 'schema.table.column', for people and progress events */
  name: string;
  pk: string;
  /** format_type() of the primary key: the checkpoint is stored as text and cast back */
  pkType: string;
  /** versions this column is moved off (decrypt-only versions, of the run's kind, of its scopes) */
  stale: number[];
  /** the scopes written: one fixed scope, or every scope a scope column may name */
  scopes: string[];
}

export interface KeyPlan {
  /** active data-key version by scope */
  active: Map<string, number>;
  /** decrypt-only data-key versions by scope (newest first) */
  stale: Map<string, number[]>;
}

export async function loadKeyPlan(sql: Sql, scope?: string, kind: RunKind = 'data'): Promise<KeyPlan> {
  const rows = await guarded(() => sql<{ version: number; scope: string; state: string }[]>`
    select version, scope, state from pgseal.keys
     where purpose = ${kind} and state in ('active', 'decrypt-only') ${scope ? sql`and scope = ${scope}` : sql``}
     order by version desc`);
  const plan: KeyPlan = { active: new Map(), stale: new Map() };
  for (const r of rows) {
    if (r.state === 'active') plan.active.set(r.scope, r.version);
    else plan.stale.set(r.scope, [...(plan.stale.get(r.scope) ?? []), r.version]);
  }
  return plan;
}

export async function resolveTargets(sql: Sql, filter: Filter, keys: KeyPlan, kind: RunKind = 'data'): Promise<Target[]> {
  if (filter.column && !filter.table) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'a column needs its table', { hint: 'pass --table T --column C' });
  }
  let columns = await listProtectedColumns(sql);
  const table = filter.table;
  if (table) {
    const [t] = await guarded(() => sql<{ schema: string; name: string }[]>`
      select n.nspname as schema, c.relname as name
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
       where c.oid = pg_catalog.to_regclass(${table})`);
    if (!t) {
      throw new PgsealError(ErrorCodes.TABLE_NOT_FOUND, `there is no table ${table}`, { hint: 'name an existing table, schema-qualified if it is not on the search_path' });
    }
    columns = columns.filter((c) => c.schema === t.schema && c.table === t.name && (!filter.column || c.column === filter.column));
    if (columns.length === 0) {
      const what = filter.column ? `${t.schema}.${t.name}.${filter.column} is not a protected column` : `${t.schema}.${t.name} has no protected column`;
      throw new PgsealError(ErrorCodes.NOT_PROTECTED, what, { hint: 'see `pgseal columns list`' });
    }
  }
  if (filter.scope) columns = columns.filter((c) => c.scope === null || c.scope === filter.scope);
  if (kind === 'index') {
    if (filter.column && !columns.some((c) => c.searchable)) {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${filter.table}.${filter.column} is not searchable: it has no blind index to recompute`, { hint: 'drop --blind-index, or name a searchable column' });
    }
    columns = columns.filter((c) => c.searchable);
  }
  const targets: Target[] = [];
  for (const column of columns) {
    const pk = await guarded(() => sql<{ name: string; type: string }[]>`
      select a.attname::text as name, pg_catalog.format_type(a.atttypid, a.atttypmod) as type
        from pg_catalog.pg_index i
        join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
       where i.indrelid = pg_catalog.to_regclass(pg_catalog.quote_ident(${column.schema}) || '.' || pg_catalog.quote_ident(${column.table}))
         and i.indisprimary`);
    const name = columnContext(column);
    if (pk.length !== 1) {
      throw new PgsealError(ErrorCodes.NO_PRIMARY_KEY, `${name}: re-encryption walks the table by primary key, and ${column.schema}.${column.table} has ${pk.length ? 'a composite one' : 'none'}`, {
        hint: `add a single-column primary key (or a unique identity column made primary key) to ${column.schema}.${column.table}; nothing was changed`,
      });
    }
    const scopes = column.scope !== null ? [column.scope] : [...keys.active.keys()].sort();
    const stale = scopes.flatMap((s) => keys.stale.get(s) ?? []);
    targets.push({ kind, column, name, pk: pk[0]!.name, pkType: pk[0]!.type, stale, scopes: scopes.filter((s) => keys.active.has(s)) });
  }
  return targets;
}
