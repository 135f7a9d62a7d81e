// Registering and unregistering protected columns (pgseal.protect_column / unprotect_column).

import type { Sql } from 'postgres';
import { ErrorCodes, PgsealError, withPgsealErrors as guard } from '../errors.js';
import { toProtectedColumn } from './load.js';
import type { ContextMode, Normalizer, ProtectedColumn, ValueType } from './types.js';

export interface ProtectOptions {
  /** 'table' or 'schema.table' (quote identifiers that need it, as in SQL) */
  table: string;
  column: string;
  valueType?: ValueType;
  searchable?: boolean;
  normalizer?: Normalizer;
  context?: ContextMode;
  scope?: string;
  scopeColumn?: string;
  blindIndexBytes?: number;
}

export function protectColumn(sql: Sql, o: ProtectOptions): Promise<ProtectedColumn> {
  if (o.scope && o.scopeColumn) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'give either a scope or a scope column, not both');
  }
  return guard(async () => {
    const [row] = await sql`
      select (c).* from (select pgseal.protect_column(
        ${o.table}::regclass, ${o.column}, ${o.valueType ?? 'text'}, ${o.searchable ?? false}, ${o.normalizer ?? 'none'},
        ${o.context ?? 'column'}, ${o.scope ?? 'default'}, ${o.scopeColumn ?? null}, ${o.blindIndexBytes ?? 16}) as c) s`;
    return toProtectedColumn(row as never);
  });
}

export function unprotectColumn(sql: Sql, table: string, column: string, dropBlindIndex = true): Promise<void> {
  return guard(async () => {
    await sql`select pgseal.unprotect_column(${table}::regclass, ${column}, ${dropBlindIndex})`;
  });
}

export function createView(sql: Sql, table: string): Promise<string> {
  return guard(async () => {
    const [row] = await sql<{ v: string }[]>`select pgseal.create_view(${table}::regclass) as v`;
    return row!.v;
  });
}

export function dropView(sql: Sql, table: string): Promise<void> {
  return guard(async () => {
    await sql`select pgseal.drop_view(${table}::regclass)`;
  });
}
