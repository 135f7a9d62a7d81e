// SQL generation for the typed helpers. Identifiers are always quoted; values are always
// bound parameters. Contexts ('schema.table.column', from the table definition, never
// from user input) are escaped literals so the planner folds them once per statement.

import type { ColumnDef, EncryptedColumn } from './define.js';

export const ident = (name: string): string => '"' + name.replace(/"/g, '""') + '"';
export const literal = (text: string): string => "'" + text.replace(/'/g, "''") + "'";

/** Collects bound parameters and hands out their placeholders. */
export class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

/** How keys reach the statement: as one bound argument (one statement, one round trip), or per transaction. */
export type KeyPath = { kind: 'argument'; keyset: string } | { kind: 'transaction' };

export interface ColumnSql {
  name: string;
  def: ColumnDef;
  /** 'schema.table.column' */
  context: string;
  blindIndexColumn: string | undefined;
}

function readContext(c: ColumnSql & { def: EncryptedColumn<unknown, boolean> }, primaryKey: string): string {
  return c.def.context === 'row' ? `pgseal.row_context(${literal(c.context)}, ${ident(primaryKey)}::text)` : literal(c.context);
}

/** The select-list entry that reads a column. */
export function readExpression(c: ColumnSql, primaryKey: string, keys: KeyPath): string {
  if (c.def.kind === 'plain') return ident(c.name);
  const enc = c as ColumnSql & { def: EncryptedColumn<unknown, boolean> };
  const ctx = readContext(enc, primaryKey);
  const bytea = enc.def.valueType === 'bytea';
  const call =
    keys.kind === 'argument'
      ? `pgseal.${bytea ? 'decrypt_bytea_with' : 'decrypt_text_with'}(${ident(c.name)}, ${ctx}, ${keys.keyset})`
      : `pgseal.${bytea ? 'decrypt_bytea' : 'decrypt_text'}(${ident(c.name)}, ${ctx})`;
  return `${enc.def.valueType === 'jsonb' ? `(${call})::jsonb` : call} AS ${ident(c.name)}`;
}

/** The value expression that writes an encrypted column. */
export function writeExpression(c: ColumnSql, value: string, context: string, key: string, keys: KeyPath['kind']): string {
  const enc = c.def as EncryptedColumn<unknown, boolean>;
  const bytea = enc.valueType === 'bytea';
  const typed = bytea ? `${value}::bytea` : `${value}::text`;
  return keys === 'argument'
    ? `pgseal.${bytea ? 'encrypt_bytea_with' : 'encrypt_text_with'}(${typed}, ${context}, ${key}::bytea)`
    : `pgseal.${bytea ? 'encrypt_bytea' : 'encrypt_text'}(${typed}, ${context}, ${key}::text)`;
}

export function selectList(columns: readonly ColumnSql[], primaryKey: string, keys: KeyPath): string {
  return columns.map((c) => readExpression(c, primaryKey, keys)).join(', ');
}
