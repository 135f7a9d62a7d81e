// The context rule: what a protected value is bound to, so that a value copied to another
// column, row or tenant does not open. 'schema.table.column', then '@<scope>' for a
// per-tenant column, then '#<primary key>' in row mode (both: 'schema.table.column@s#k').
// The one place in TypeScript; the SQL side spells it in pgseal.scope_context,
// pgseal.row_context and pgseal._context_expr (sql/60_search.sql, sql/70_views.sql), and a
// test checks that both agree.

import { call, cast, text, type Expr } from '../statement/expr.js';
import type { ProtectedColumn } from './model.js';

/** 'schema.table.column': the context of a column-mode value, and of every blind index. */
export function columnContext(c: Pick<ProtectedColumn, 'schema' | 'table' | 'column'>): string {
  let context = CONTEXTS.get(c);
  if (context === undefined) CONTEXTS.set(c, (context = `${c.schema}.${c.table}.${c.column}`));
  return context;
}

// every client-side open asks for it: once per column model (models are not changed after they are made)
const CONTEXTS = new WeakMap<object, string>();

/**
 * Where a row's values come from for a column's context and scope: at a read, columns of
 * the row (`c.id`, `c.tenant`); at a write, the values written in the same row. Called only
 * when the column needs them.
 */
export interface RowSource<O> {
  /** the primary key value (row-context columns) */
  key(): Expr<O>;
  /** the scope column's value (per-tenant columns) */
  scopeValue(): Expr<O>;
}

/** The context as an SQL expression over the row. */
export function contextExpr<O>(c: ProtectedColumn, row: RowSource<O>): Expr<O> {
  let context = text<O>(columnContext(c));
  if (c.scopeColumn !== null) context = call('scope_context', [context, cast(row.scopeValue(), 'text')], 'text');
  if (c.contextMode === 'row') context = call('row_context', [context, cast(row.key(), 'text')], 'text');
  return context;
}

/** The same context as a string, from the row's scope and key as the database prints them as text. */
export function contextOf(c: ProtectedColumn, row: { scope?: string | undefined; key?: string | undefined } = {}): string {
  let context = columnContext(c);
  if (c.scopeColumn !== null) {
    if (row.scope === undefined) throw new TypeError(`${context} is keyed per ${c.scopeColumn}: its context needs the row's scope`);
    context += '@' + row.scope;
  }
  if (c.contextMode === 'row') {
    if (row.key === undefined) throw new TypeError(`${columnContext(c)} is bound to its row: its context needs the row's key`);
    context += '#' + row.key;
  }
  return context;
}
