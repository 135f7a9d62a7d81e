// Table definitions for the typed helpers: which columns are plain and which are
// encrypted (with their options). Row types are inferred from the definition, so a wrong
// column name or value type is a compile error.

import type { ColumnSpec, ContextMode, Normalizer, ValueType } from '../columns/model.js';
import type { PlainKind, PlainKinds } from '../registry/verify.js';

export type { PlainKind, PlainKinds };

export interface PlainColumn<T> {
  readonly kind: 'plain';
  /** declared with column.plain('number') and the like; absent for column.plain<T>() */
  readonly reads?: PlainKind;
  /** type carrier only */
  readonly __type?: T;
}

/**
 * `column.plain('number')`: the type follows the declaration, and `verify()` checks it against
 * what the connection reads the column's PostgreSQL type as (a bigint reads as a string
 * unless postgres.js is given `types: { bigint: postgres.BigInt }`). `column.plain<T>()`:
 * a type of your own, unchecked.
 */
function plain<T>(): PlainColumn<T>;
function plain<K extends PlainKind>(reads: K): PlainColumn<PlainKinds[K]>;
function plain(reads?: PlainKind): PlainColumn<unknown> {
  return reads === undefined ? { kind: 'plain' } : { kind: 'plain', reads };
}

export interface EncryptedOptions<S extends boolean> {
  /** searchable through a blind index (equality and IN) */
  searchable?: S;
  normalize?: Normalizer;
  /** 'row' binds each value to its row's primary key as well as to its column */
  context?: ContextMode;
  /** fixed key scope (default 'default') */
  scope?: string;
  /** column holding each row's key scope (per-tenant keys) */
  scopeColumn?: string;
  /** bytes of HMAC kept in the blind index (default 16) */
  blindIndexBytes?: number;
  /** blind-index column name (default <column>_bidx) */
  blindIndexColumn?: string;
}

/** An encrypted column of a definition: how it is protected (the column model's spec, src/columns/model.ts). */
export interface EncryptedColumn<T, S extends boolean> extends Readonly<ColumnSpec> {
  readonly kind: 'encrypted';
  readonly searchable: S;
  readonly __type?: T;
}

export type ColumnDef = PlainColumn<unknown> | EncryptedColumn<unknown, boolean>;

function encrypted<T, S extends boolean>(valueType: ValueType, o: EncryptedOptions<S>): EncryptedColumn<T, S> {
  return {
    kind: 'encrypted',
    valueType,
    searchable: (o.searchable ?? false) as S,
    normalizer: o.normalize ?? 'none',
    contextMode: o.context ?? 'column',
    scope: o.scopeColumn ? null : (o.scope ?? 'default'),
    scopeColumn: o.scopeColumn ?? null,
    blindIndexBytes: o.blindIndexBytes ?? 16,
    // the model names it <column>_bidx when it is not given
    blindIndexColumn: o.searchable ? (o.blindIndexColumn ?? null) : null,
  };
}

export const column = {
  plain,
  text: <const S extends boolean = false>(o: EncryptedOptions<S> = {}) => encrypted<string, S>('text', o),
  bytea: <const S extends boolean = false>(o: EncryptedOptions<S> = {}) => encrypted<Buffer, S>('bytea', o),
  jsonb: <T = unknown>(o: Omit<EncryptedOptions<false>, 'searchable' | 'normalize'> = {}) => encrypted<T, false>('jsonb', o),
  /** numeric values travel as strings, so no precision is lost */
  numeric: (o: Omit<EncryptedOptions<false>, 'searchable' | 'normalize'> = {}) => encrypted<string, false>('numeric', o),
};

export interface TableDefinition<C extends Record<string, ColumnDef>, PK extends keyof C & string> {
  readonly schema: string;
  readonly name: string;
  readonly primaryKey: PK;
  readonly columns: C;
}

export function defineTable<const C extends Record<string, ColumnDef>, PK extends keyof C & string>(d: {
  schema?: string;
  name: string;
  primaryKey: PK;
  columns: C;
}): TableDefinition<C, PK> {
  return { schema: d.schema ?? 'public', name: d.name, primaryKey: d.primaryKey, columns: d.columns };
}

type ValueOf<D> = D extends PlainColumn<infer T> ? T : D extends EncryptedColumn<infer T, boolean> ? T | null : never;

/** A row as read back: encrypted columns decrypted. */
export type Row<T extends TableDefinition<Record<string, ColumnDef>, string>> = { [K in keyof T['columns']]: ValueOf<T['columns'][K]> };

/** What insert and update take: any subset of the columns. */
export type Values<T extends TableDefinition<Record<string, ColumnDef>, string>> = Partial<Row<T>>;

/** Columns findBy can use: plain columns and searchable encrypted ones. */
export type SearchableKey<T extends TableDefinition<Record<string, ColumnDef>, string>> = {
  [K in keyof T['columns']]: T['columns'][K] extends EncryptedColumn<unknown, infer S> ? ([S] extends [true] ? K : never) : K;
}[keyof T['columns']] &
  string;

export type PrimaryKeyValue<T extends TableDefinition<Record<string, ColumnDef>, string>> = Row<T>[T['primaryKey']];
