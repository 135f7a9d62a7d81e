// SQL generation for the typed helpers. Identifiers are always quoted; values are always
// bound parameters. Contexts ('schema.table.column', from the table definition, never
// from user input) are escaped literals so the planner folds them once per statement.

import type { ColumnDef, EncryptedColumn } from './define.js';

export const ident = (name: string): string => '"' + name.replace(/"/g, '""') + '"';
/**
 * A string literal. One holding a backslash is written as an E'' literal, which reads the
 * same whatever standard_conforming_strings says (a plain '' literal would not when it is off).
 */
export const literal = (text: string): string =>
  text.includes('\\') ? "E'" + text.replace(/\\/g, '\\\\').replace(/'/g, "''") + "'" : "'" + text.replace(/'/g, "''") + "'";

/** Collects bound parameters and hands out their placeholders. */
export class Params {
  readonly values: unknown[] = [];
  /** buffers pgseal made (keys, plaintext copies): zeroed after the statement; never the caller's */
  readonly secrets: Buffer[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
  addSecret(value: Buffer): string {
    this.secrets.push(value);
    return this.add(value);
  }
}

/**
 * A value as the text the database stores for it: typed like the column first, so '07'
 * written to an integer key gives '7', the same text the row yields when it is read.
 */
export function storedText(placeholder: string, target: string, columnName: string): string {
  return `(COALESCE(${placeholder}, (NULL::${target}).${ident(columnName)}))::text`;
}

/** How keys reach the statement: as one bound argument (one statement, one round trip), or per transaction. */
/**
 * How keys reach the statement: as one bound argument (one statement, one round trip), or
 * per transaction (more key versions than a keyset holds).
 */
export type KeyPath = { kind: 'argument'; keyset: string } | { kind: 'transaction' };

export interface ColumnSql {
  name: string;
  def: ColumnDef;
  /** 'schema.table.column' */
  context: string;
  blindIndexColumn: string | undefined;
}

/** The context a stored value was bound to, as an SQL expression over the row. */
function readContext(c: ColumnSql & { def: EncryptedColumn<unknown, boolean> }, primaryKey: string): string {
  let ctx = literal(c.context);
  if (c.def.scopeColumn) ctx = `pgseal.scope_context(${ctx}, ${ident(c.def.scopeColumn)}::text)`;
  if (c.def.context === 'row') ctx = `pgseal.row_context(${ctx}, ${ident(primaryKey)}::text)`;
  return ctx;
}

// Values are written as bytes (text as UTF-8, JSON as its text): the envelope is the one
// encrypt_text would make, so SQL, views and the rewriter read it with decrypt_text.

/** The select-list entry that reads a column. */
export function readExpression(c: ColumnSql, primaryKey: string, keys: KeyPath): string {
  if (c.def.kind === 'plain') return ident(c.name);
  const enc = c as ColumnSql & { def: EncryptedColumn<unknown, boolean> };
  const ctx = readContext(enc, primaryKey);
  const bytes = enc.def.valueType === 'bytea';
  const fn = keys.kind === 'argument' ? (bytes ? 'decrypt_bytea_with' : 'decrypt_text_with') : bytes ? 'decrypt_bytea' : 'decrypt_text';
  const call = keys.kind === 'argument' ? `pgseal.${fn}(${ident(c.name)}, ${ctx}, ${keys.keyset})` : `pgseal.${fn}(${ident(c.name)}, ${ctx})`;
  return `${call} AS ${ident(c.name)}`;
}

/** The value expression that writes an encrypted column; `value` is a bytea parameter. */
export function writeExpression(value: string, context: string, key: string, keys: KeyPath['kind']): string {
  return keys !== 'transaction'
    ? `pgseal.encrypt_bytea_with(${value}::bytea, ${context}, ${key}::bytea)`
    : `pgseal.encrypt_bytea(${value}::bytea, ${context}, ${key}::text)`;
}

export function selectList(columns: readonly ColumnSql[], primaryKey: string, keys: KeyPath): string {
  return columns.map((c) => readExpression(c, primaryKey, keys)).join(', ');
}
