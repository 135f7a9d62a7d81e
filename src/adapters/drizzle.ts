// pgseal for Drizzle ORM (drizzle-orm/postgres-js): encrypted column types for pg-core
// tables, and a drizzle db whose statements seal and open those columns in this process
// through ClientCrypto (src/exec/client-side.ts), so the database receives ciphertext and
// blind indexes only: no key, no plaintext, no searched value.
//
// How a statement flows. `pgsealDrizzle(seal, drizzle(sql))` returns a drizzle db of the same
// type over a session of its own (SealedSession), in front of the postgres-js one:
// - writes: `insert().values()`, `update().set()` and `onConflictDoUpdate({ set })` replace
//   each encrypted value with a SealCell (and add one for its `<column>_bidx`), which the
//   column type hands on as the statement's parameter; the session seals them when the
//   statement runs, where it can await the keyring and the catalog (row and tenant contexts).
//   A write carrying sealed values runs behind pgseal.guard(), as the helpers' client mode.
// - reads: a column type's fromDriver is synchronous and sees no row, so the session hands
//   drizzle the selected fields with each encrypted column read as its stored bytes; after
//   the driver returned, it opens them with the row's key and tenant (ClientCrypto.openAll: a
//   key version another process rotated in reloads the keyring, not the statement),
//   re-checks blind-index matches, and logs the access.
// - outside that db (the plain drizzle db, `eq(t.email, 'x')`, `.mapWith()`), an encrypted
//   column refuses plain values and refuses to be read: nothing is sent in clear, nothing is
//   decrypted unlogged.

import { inspect } from 'node:util';
import {
  and, Column, DrizzleQueryError, entityKind, eq, getTableColumns, getTableName, getTableUniqueName, is, Placeholder, SQL, sql,
  type Query,
} from 'drizzle-orm';
import {
  getTableConfig, PgCustomColumn, PgCustomColumnBuilder, PgDatabase, PgPreparedQuery, PgSession, PgTransaction,
  type ConvertCustomConfig, type PgColumn, type PgDialect, type PgQueryResultHKT, type PgTable, type PgTransactionConfig,
  type PreparedQueryConfig, type SelectedFieldsOrdered,
} from 'drizzle-orm/pg-core';
import { PostgresJsSession } from 'drizzle-orm/postgres-js';
import type { Sql } from 'postgres';
import type { AccessType } from '../audit/access-log.js';
import { columnContext } from '../columns/context.js';
import { protectedColumn, type ColumnSpec, type ProtectedColumn } from '../columns/model.js';
import { ErrorCodes, PgsealError, toPgsealError } from '../errors.js';
import { canonicalTexts, type Canonical, type ClientCrypto, type RowTexts } from '../exec/client-side.js';
import type { KeyedExecutor } from '../exec/executor.js';
import { column as define, type EncryptedOptions } from '../helpers/define.js';
import { Table as HelperTable } from '../helpers/table.js';
import type { Keyring } from '../keys/keyring.js';

/** What the adapter needs of a pgseal instance (`pgseal()` returns one). */
export interface PgsealForDrizzle {
  readonly sql: Sql;
  readonly keyring: Keyring;
  readonly executor: KeyedExecutor;
  readonly crypto: ClientCrypto;
}

export interface DrizzleOptions {
  /**
   * Run statements as prepared statements (default true). drizzle's postgres-js session
   * sends unnamed ones, which postgres.js describes before binding: two round trips each.
   * A client created with `prepare: false` (transaction-mode poolers) still wins.
   */
  prepare?: boolean;
}

declare const bytes: unique symbol;
/** An encrypted column's stored value (bytea): only the adapter writes it. */
export type Ciphertext = Buffer & { readonly [bytes]: 'sealed' };
/** A searchable encrypted column's stored value: match() takes these columns. */
export type SearchableCiphertext = Buffer & { readonly [bytes]: 'searchable' };
/** A blind index as stored (`<column>_bidx`), computed by the adapter. */
export type BlindIndex = Buffer & { readonly [bytes]: 'index' };

type Builder<TData, TDriver> = PgCustomColumnBuilder<ConvertCustomConfig<string, { data: TData; driverData: TDriver }>>;
type Sealed<TData, S extends boolean> = Builder<TData, [S] extends [true] ? SearchableCiphertext : Ciphertext>;
type FixedOptions = Omit<EncryptedOptions<false>, 'searchable' | 'normalize'>;

interface TextColumnType<TData> {
  <const S extends boolean = false>(name: string, options?: EncryptedOptions<S>): Sealed<TData, S>;
  <const S extends boolean = false>(options?: EncryptedOptions<S>): Sealed<TData, S>;
}

// ---------------------------------------------------------------------------------------------
// Values in flight: never plaintext on the wire, never plaintext in a log line.

const REDACTED = '[pgseal: sealed when the statement runs]';

abstract class Pending {
  /** drizzle inlines a parameter with toString(): a plaintext must never become SQL text */
  toString(): string {
    throw new PgsealError(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT, 'a value of an encrypted column cannot be inlined into SQL text', {
      hint: 'it is bound as a parameter when the statement runs through the db pgsealDrizzle() returned (no inlineParams(), no toSQL() text run elsewhere)',
    });
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}

/** A value (or its blind index) to seal when the statement runs, with what its context needs of the row. */
class SealCell extends Pending {
  readonly #value: unknown;
  constructor(readonly column: ValueColumn, readonly what: 'value' | 'index', value: unknown, readonly key: unknown, readonly scope: unknown) {
    super();
    this.#value = value;
  }

  value(): unknown {
    return this.#value;
  }
}

/** The values a match() looks for: their blind indexes under every index key of the scope when the statement runs. */
class LookupCell extends Pending {
  readonly #values: readonly unknown[];
  constructor(readonly column: ValueColumn, readonly table: string, values: readonly unknown[], readonly scope: string) {
    super();
    this.#values = values;
  }

  values(): readonly unknown[] {
    return this.#values;
  }
}

/** A tenant a read is limited to: its rows' values open under that tenant's keys only. */
class ScopeCell extends Pending {
  constructor(readonly table: string, readonly scope: string) {
    super();
  }
}

// ---------------------------------------------------------------------------------------------
// Column types

const where = (c: ProtectedColumn) => `${c.table}.${c.column}`;

function refused(c: ProtectedColumn): PgsealError {
  return new PgsealError(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT, `${columnContext(c)} is encrypted: it takes values only through the db pgsealDrizzle() returned (the value is not shown)`, {
    hint: 'write it with db.insert().values() / db.update().set() of that db; compare a searchable column with match(column, value), not eq()',
  });
}

/** An encrypted column of a pg-core table: bytea in the database, its value type in TypeScript. */
export class ValueColumn extends PgCustomColumn<any> {
  static override readonly [entityKind]: string = 'PgsealValueColumn';
  /** the column model: where it lives, how it is sealed and searched */
  readonly pgseal: ProtectedColumn;
  /** the table it was built for (an alias's columns forward here) */
  readonly base: PgTable;

  constructor(table: PgTable, config: any) {
    super(table, config);
    const unique = getTableUniqueName(table);
    const dot = unique.indexOf('.');
    // the model refuses names holding a context separator, so the first dot splits
    this.pgseal = protectedColumn(unique.slice(0, dot), unique.slice(dot + 1), config.name, config.fieldConfig.spec as ColumnSpec);
    this.base = table;
  }

  override mapToDriverValue(value: unknown): unknown {
    if (value instanceof SealCell) return value;
    throw refused(this.pgseal);
  }

  /** Reached only outside the adapter's session, which reads these columns through raw() */
  override mapFromDriverValue(): unknown {
    throw new PgsealError(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT, `${columnContext(this.pgseal)} is encrypted: it is read only as a selected column, through the db pgsealDrizzle() returned`, {
      hint: 'select it with db.select() / returning() of that db (it opens the values and logs the access); relational queries (db.query) and mapWith() do not open it',
    });
  }
}

const RAW = new WeakMap<object, PgColumn>();
const asStored = (value: unknown) => value;

/** The column as the session's statements read it: its stored bytes, opened afterwards. */
function raw(c: ValueColumn): PgColumn {
  let r = RAW.get(c);
  if (!r) RAW.set(c, (r = Object.create(c, { mapFromDriverValue: { value: asStored } }) as PgColumn));
  return r;
}

/** The blind-index column of a searchable encrypted column: written by the adapter only. */
export class IndexColumn extends PgCustomColumn<any> {
  static override readonly [entityKind]: string = 'PgsealIndexColumn';

  override mapToDriverValue(value: unknown): unknown {
    if (value instanceof SealCell) return value;
    throw new PgsealError(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT, `${this.name} is a blind index: pgseal computes it when its column is written`, {
      hint: 'write the encrypted column through the db pgsealDrizzle() returned; look rows up with match(column, value)',
    });
  }
}

class SealedBuilder extends PgCustomColumnBuilder<any> {
  static override readonly [entityKind]: string = 'PgsealColumnBuilder';

  /** drizzle's (internal) hook that makes the column of a table */
  build(table: PgTable): PgColumn {
    const config = (this as any).config;
    return config.fieldConfig.spec ? new ValueColumn(table, config) : new IndexColumn(table, config);
  }
}

const BYTEA = { dataType: () => 'bytea' };

function builder(name: string, spec: ColumnSpec | undefined): any {
  return new SealedBuilder(name, { spec }, BYTEA);
}

function valueColumn(make: (o: any) => ColumnSpec) {
  return (a?: string | object, b?: object): any => (typeof a === 'string' ? builder(a, make(b ?? {})) : builder('', make(a ?? {})));
}

/**
 * Encrypted column types, with the typed helpers' options (column.text() etc.): declare them
 * as pgseal protect registered them. A searchable column needs its blind index declared too.
 *
 *   email: encrypted.text('email', { searchable: true, normalize: 'email' }),
 *   emailBidx: encrypted.blindIndex('email_bidx'),
 */
export const encrypted = {
  text: valueColumn((o) => define.text(o)) as TextColumnType<string>,
  /** Buffers */
  bytea: valueColumn((o) => define.bytea(o)) as TextColumnType<Buffer>,
  jsonb: valueColumn((o) => define.jsonb(o)) as {
    <T = unknown>(name: string, options?: FixedOptions): Sealed<T, false>;
    <T = unknown>(options?: FixedOptions): Sealed<T, false>;
  },
  /** strings, so no precision is lost */
  numeric: valueColumn((o) => define.numeric(o)) as {
    (name: string, options?: FixedOptions): Sealed<string, false>;
    (options?: FixedOptions): Sealed<string, false>;
  },
  /** the `<column>_bidx` column of a searchable column (read back as the index bytes) */
  blindIndex: (name = ''): Builder<Buffer, BlindIndex> => builder(name, undefined),
};

// ---------------------------------------------------------------------------------------------
// Conditions

/** The column as a drizzle column (an alias's columns are proxies of the table's). */
function valueColumnOf(c: unknown, what: string): ValueColumn {
  if (!(c instanceof ValueColumn)) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${what} takes an encrypted column (encrypted.text() etc.)`);
  return c;
}

/** A column of the same table (or alias) by its database name. */
function sibling(c: ValueColumn, name: string): PgColumn | undefined {
  return Object.values(getTableColumns(c.table)).find((x) => x.name === name) as PgColumn | undefined;
}

/**
 * Equality (one value) or IN (an array) on a searchable encrypted column, through its blind
 * index: the indexes are computed in Node when the statement runs, under every index key of
 * the scope, so the searched value never reaches the database. Rows read back are re-checked
 * against the decrypted value (a truncated index can collide), when the column is selected.
 * A per-tenant column needs `{ scope }`: only that tenant's rows match, and open.
 */
export function match<TColumn extends Column & { _: { driverParam: SearchableCiphertext } }>(
  column: TColumn, value: TColumn['_']['data'] | readonly TColumn['_']['data'][] | Placeholder, options: { scope?: string } = {},
): SQL {
  const c = valueColumnOf(column, 'match()');
  const model = c.pgseal;
  if (!model.blindIndexColumn) {
    throw new PgsealError(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT, `${columnContext(model)} is encrypted and not searchable`, { hint: 'protect it with searchable: true to look rows up by it' });
  }
  const index = sibling(c, model.blindIndexColumn);
  if (!index) throw undeclaredIndex(model);
  const scope = model.scopeColumn ? options.scope : (model.scope ?? 'default');
  if (scope === undefined) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(model)} is keyed per ${model.scopeColumn}: pass { scope }`);
  const values = Array.isArray(value) ? [...(value as unknown[])] : [value];
  const table = getTableName(c.table);
  // `= ANY($n::pg_catalog.bytea[])` becomes `= $n::pg_catalog.bytea` for one index (SealedQuery#text)
  const found = sql`${index} OPERATOR(pg_catalog.=) ANY(${sql.param(new LookupCell(c, table, values, scope))}::pg_catalog.bytea[])`;
  if (!model.scopeColumn) return found;
  return sql`(${found} AND ${scopeCondition(c, model.scopeColumn, table, scope)})`;
}

/**
 * Limits a read to one tenant of a table whose encrypted columns are keyed per tenant: its
 * rows only, and their values open under that tenant's keys only (a value copied in from
 * another tenant's row is refused, PS002).
 */
export function inScope(table: PgTable, scope: string): SQL {
  const tenant = Object.values(getTableColumns(table)).find((c): c is ValueColumn => c instanceof ValueColumn && c.pgseal.scopeColumn !== null);
  if (!tenant) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${getTableName(table)} has no encrypted column keyed per tenant (scopeColumn)`);
  return scopeCondition(tenant, tenant.pgseal.scopeColumn!, getTableName(table), scope);
}

function scopeCondition(c: ValueColumn, scopeColumn: string, table: string, scope: string): SQL {
  const column = sibling(c, scopeColumn);
  if (!column) throw undeclared(c.pgseal, scopeColumn, 'its tenant');
  return sql`${column}::pg_catalog.text OPERATOR(pg_catalog.=) ${sql.param(new ScopeCell(table, scope))}`;
}

function undeclaredIndex(c: ProtectedColumn): PgsealError {
  return new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} is searchable: declare its blind index ${c.blindIndexColumn} in the drizzle table`, {
    hint: `add  ${c.blindIndexColumn}: encrypted.blindIndex('${c.blindIndexColumn}')  next to it`,
  });
}

function undeclared(c: ProtectedColumn, name: string, what: string): PgsealError {
  return new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} is bound to ${what}: declare ${name} in the drizzle table`, {
    hint: `pgseal needs ${name} in the statement to build the value's context`,
  });
}

// ---------------------------------------------------------------------------------------------
// What the adapter knows of a table

interface TableInfo {
  schema: string;
  name: string;
  /** 'schema.table', as the access log names it */
  qualified: string;
  /** the single-column primary key, when there is one */
  pk: { prop: string; column: PgColumn } | undefined;
  encrypted: Array<{ prop: string; column: ValueColumn }>;
  /** property of each declared column, by database name */
  props: Map<string, string>;
  columns: Record<string, PgColumn>;
  /** scopes of the fixed-scope columns (what a read may open with) */
  fixedScopes: string[];
  tenant: boolean;
  rowContext: boolean;
}

const KEY_TEXT = 'pgseal$key';
const SCOPE_TEXT = 'pgseal$scope$';

const rowTexts = (row: Record<string, unknown>, c: ProtectedColumn): RowTexts => ({
  key: row[KEY_TEXT] as string | undefined,
  scope: c.scopeColumn ? (row[SCOPE_TEXT + c.scopeColumn] as string | undefined) : undefined,
});

/** The driver's error under drizzle's wrapper (whose message lists the statement's parameters). */
function driverError(error: unknown): unknown {
  return error instanceof DrizzleQueryError ? error.cause : error;
}

class Core {
  readonly #infos = new WeakMap<PgTable, TableInfo>();
  readonly prepare: boolean;

  constructor(readonly seal: PgsealForDrizzle, readonly dialect: PgDialect, readonly schema: any, options: DrizzleOptions) {
    this.prepare = options.prepare ?? true;
  }

  info(table: PgTable): TableInfo {
    let info = this.#infos.get(table);
    if (info) return info;
    const columns = getTableColumns(table) as Record<string, PgColumn>;
    const encrypted: TableInfo['encrypted'] = [];
    const props = new Map<string, string>();
    for (const [prop, c] of Object.entries(columns)) {
      // drizzle's casing option renames key-named columns when it builds SQL: contexts use the names given here
      if (c.keyAsName && (this.dialect as any).casing.getColumnCasing(c) !== c.name) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${getTableName(table)}.${prop}: with drizzle's casing option, give the columns of a table with encrypted columns their database names`);
      }
      props.set(c.name, prop);
      if (c instanceof ValueColumn) encrypted.push({ prop, column: c });
    }
    const declared = getTableConfig(table).primaryKeys.find((k) => k.columns.length === 1)?.columns[0];
    const pkEntry = Object.entries(columns).find(([, c]) => c.primary || c === declared);
    const first = encrypted[0]?.column.pgseal;
    const unique = getTableUniqueName(table);
    info = {
      schema: first?.schema ?? unique.slice(0, unique.indexOf('.')),
      name: first?.table ?? getTableName(table),
      qualified: first ? `${first.schema}.${first.table}` : unique,
      pk: pkEntry ? { prop: pkEntry[0], column: pkEntry[1] } : undefined,
      encrypted,
      props,
      columns,
      fixedScopes: [...new Set(encrypted.flatMap(({ column: c }) => (c.pgseal.scopeColumn ? [] : [c.pgseal.scope ?? 'default'])))],
      tenant: encrypted.some(({ column: c }) => c.pgseal.scopeColumn !== null),
      rowContext: encrypted.some(({ column: c }) => c.pgseal.contextMode === 'row'),
    };
    this.#infos.set(table, info);
    return info;
  }

  /** The texts of keys and tenants as the database prints them, when a context of the table needs them. */
  canonical(info: TableInfo): Promise<Canonical> | undefined {
    return info.tenant || info.rowContext ? canonicalTexts(this.seal.sql, info.schema, info.name) : undefined;
  }

  /** Installs the sealing writes on a drizzle db or transaction of this adapter. */
  arm<T extends PgDatabase<any, any, any>>(db: T): T {
    const d = db as any;
    const [insert, update, remove, withQueries] = [d.insert.bind(db), d.update.bind(db), d.delete.bind(db), d.with.bind(db)];
    d.insert = (table: PgTable) => this.#insert(insert(table), table);
    d.update = (table: PgTable) => this.#update(update(table), table);
    d.delete = (table: PgTable) => this.#delete(remove(table), table);
    d.with = (...queries: unknown[]) => {
      const w = withQueries(...queries);
      return {
        ...w,
        insert: (table: PgTable) => this.#insert(w.insert(table), table),
        update: (table: PgTable) => this.#update(w.update(table), table),
        delete: (table: PgTable) => this.#delete(w.delete(table), table),
      };
    };
    return db;
  }

  /** A delete's statement is told its table (the access log names its rows; drizzle passes only the SQL). */
  #delete(b: any, table: PgTable): any {
    if (this.info(table).encrypted.length > 0 && b.session instanceof SealedSession) b.session = b.session.deleting(table);
    return b;
  }

  #insert(b: any, table: PgTable): any {
    if (this.info(table).encrypted.length === 0) return b;
    const values = b.values.bind(b);
    b.values = (rows: unknown) => {
      const sealed = Array.isArray(rows) ? rows.map((r) => this.#sealRow(table, r, 'insert').row) : this.#sealRow(table, rows as Record<string, unknown>, 'insert').row;
      const inserting = values(sealed);
      const upsert = inserting.onConflictDoUpdate.bind(inserting);
      inserting.onConflictDoUpdate = (config: { set: Record<string, unknown> }) => upsert({ ...config, set: this.#sealRow(table, config.set, 'upsert').row });
      return inserting;
    };
    return b;
  }

  #update(b: any, table: PgTable): any {
    if (this.info(table).encrypted.length === 0) return b;
    const set = b.set.bind(b);
    b.set = (values: Record<string, unknown>) => {
      const { row, pins } = this.#sealRow(table, values, 'update');
      const updating = set(row);
      if (pins.length > 0) {
        // the values are bound to this row's key or tenant: the update cannot reach another
        const pin = and(...pins)!;
        const whereTo = updating.where.bind(updating);
        whereTo(pin);
        updating.where = (w: SQL | undefined) => whereTo(w === undefined ? pin : and(w, pin));
      }
      return updating;
    };
    return b;
  }

  /**
   * One row's values with each encrypted value (and its blind index) replaced by a SealCell.
   * Row-context and per-tenant values need the row's key and tenant: given in the same
   * values; an update is then pinned to them (`pins`), so they cannot change under it.
   */
  #sealRow(table: PgTable, row: Record<string, unknown>, mode: 'insert' | 'update' | 'upsert'): { row: Record<string, unknown>; pins: SQL[] } {
    const info = this.info(table);
    const pins: SQL[] = [];
    const pinned = new Set<string>();
    const written = new Set<ProtectedColumn>();
    let out: Record<string, unknown> | undefined;
    for (const { prop, column } of info.encrypted) {
      const v = row[prop];
      if (v === undefined || is(v, SQL)) continue;
      const c = column.pgseal;
      written.add(c);
      let key: unknown;
      let scope: unknown;
      if (v !== null && mode === 'upsert' && (c.contextMode === 'row' || c.scopeColumn)) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} is bound to its ${c.contextMode === 'row' ? 'row' : 'tenant'}: onConflictDoUpdate cannot seal it for the row that conflicts`, {
          hint: 'update that row with db.update().set() (give its key / tenant in the set)',
        });
      }
      if (v !== null && c.contextMode === 'row') {
        if (!info.pk) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} is bound to its row: the drizzle table needs a single-column primary key`);
        key = row[info.pk.prop];
        if (key === undefined || key === null) {
          throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} is bound to its row: give the primary key ${info.pk.column.name}`, {
            hint: mode === 'update' ? `include ${info.pk.prop} in set(): the update is then limited to that row` : `include ${info.pk.prop} in the values written`,
          });
        }
        if (mode === 'update' && !pinned.has(info.pk.prop)) {
          pinned.add(info.pk.prop);
          pins.push(eq(info.pk.column, key));
        }
      }
      if (v !== null && c.scopeColumn) {
        const scopeProp = info.props.get(c.scopeColumn);
        if (scopeProp === undefined) throw undeclared(c, c.scopeColumn, 'its tenant');
        scope = row[scopeProp];
        if (scope === undefined || scope === null) {
          throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} is keyed by ${c.scopeColumn}: give its value`, {
            hint: mode === 'update' ? `include ${scopeProp} in set(): the update is then limited to that tenant's rows` : `include ${scopeProp} in the values written`,
          });
        }
        if (mode === 'update' && !pinned.has(scopeProp)) {
          pinned.add(scopeProp);
          pins.push(eq(info.columns[scopeProp]!, scope));
        }
      }
      out ??= { ...row };
      out[prop] = new SealCell(column, 'value', v, key, scope);
      if (c.blindIndexColumn) {
        const indexProp = info.props.get(c.blindIndexColumn);
        if (indexProp === undefined) throw undeclaredIndex(c);
        if (row[indexProp] !== undefined) throw computedIndex(c);
        out[indexProp] = new SealCell(column, 'index', v, key, scope);
      }
    }
    for (const { column } of info.encrypted) {
      const c = column.pgseal;
      if (c.blindIndexColumn && !written.has(c) && row[info.props.get(c.blindIndexColumn) ?? ''] !== undefined) throw computedIndex(c);
    }
    if (mode === 'update') {
      // a key or tenant changed alone would leave the values bound to it unreadable (when pinned, it does not change)
      for (const { column } of info.encrypted) {
        const c = column.pgseal;
        const moved = [
          c.contextMode === 'row' && info.pk && !pinned.has(info.pk.prop) ? info.pk.prop : undefined,
          c.scopeColumn && !pinned.has(info.props.get(c.scopeColumn) ?? '') ? info.props.get(c.scopeColumn) : undefined,
        ].filter((p): p is string => p !== undefined && row[p] !== undefined);
        if (moved.length > 0) {
          throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} is bound to ${moved.join(' and ')}: changing it would leave ${c.column} unreadable`, {
            hint: `write ${c.column} in the same set() (the update is then limited to the row's own key and tenant), or delete and insert the row`,
          });
        }
      }
    }
    return { row: out ?? row, pins };
  }
}

function computedIndex(c: ProtectedColumn): PgsealError {
  return new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${c.table}.${c.blindIndexColumn} is computed by pgseal from ${c.column}: do not write it`, {
    hint: `write ${c.column}; its blind index follows`,
  });
}

// ---------------------------------------------------------------------------------------------
// The session: every statement of the adapter's db goes through here

class SealedSession extends PgSession<PgQueryResultHKT, any, any> {
  static override readonly [entityKind]: string = 'PgsealDrizzleSession';

  constructor(readonly core: Core, readonly inner: PgSession<any, any, any>, readonly inTransaction: boolean, readonly deletes?: PgTable) {
    super(core.dialect);
  }

  deleting(table: PgTable): SealedSession {
    return new SealedSession(this.core, this.inner, this.inTransaction, table);
  }

  override prepareQuery<T extends PreparedQueryConfig = PreparedQueryConfig>(
    query: Query, fields: SelectedFieldsOrdered | undefined, name: string | undefined, isResponseInArrayMode: boolean,
    customResultMapper?: (rows: unknown[][], mapColumnValue?: (value: unknown) => unknown) => T['execute'],
    queryMetadata?: { type: 'select' | 'update' | 'delete' | 'insert'; tables: string[] }, cacheConfig?: unknown,
  ): PgPreparedQuery<T> {
    return new SealedQuery<T>(this, query, fields, name, isResponseInArrayMode, customResultMapper, queryMetadata, cacheConfig);
  }

  override transaction<T>(work: (tx: PgTransaction<PgQueryResultHKT, any, any>) => Promise<T>, config?: PgTransactionConfig): Promise<T> {
    return this.inner.transaction((tx) => work(this.core.arm(new SealedTransaction(this.core, tx, 0))), config);
  }
}

class SealedTransaction extends PgTransaction<PgQueryResultHKT, any, any> {
  static override readonly [entityKind]: string = 'PgsealDrizzleTransaction';

  constructor(readonly core: Core, readonly innerTx: PgTransaction<any, any, any>, nestedIndex: number) {
    super(core.dialect, new SealedSession(core, innerTx._.session, true), core.schema, nestedIndex);
  }

  override transaction<T>(work: (tx: PgTransaction<PgQueryResultHKT, any, any>) => Promise<T>): Promise<T> {
    return this.innerTx.transaction((tx) => work(this.core.arm(new SealedTransaction(this.core, tx, this.nestedIndex + 1))));
  }
}

/** A row (or a joined table's part of it) holding encrypted values of one table. */
interface Holder {
  row: number;
  group: Group;
  container: Record<string, unknown>;
  info: TableInfo;
  /** the table's name in the statement (an alias's) */
  table: string;
  key: string | undefined;
  scopes: ReadonlyMap<string, string>;
  cells: Array<{ prop: string; column: ValueColumn }>;
}

/** How the selected fields place a table's encrypted columns, its key and its tenant in each row. */
interface Group {
  path: string[];
  table: string;
  info: TableInfo;
  key: string | undefined;
  scopes: Map<string, string>;
  cells: Array<{ prop: string; column: ValueColumn }>;
  /** the models of its cells, once each */
  models: ProtectedColumn[];
}

interface Plan {
  seals: Array<[number, SealCell]>;
  lookups: Array<[number, LookupCell]>;
  scopes: Array<[number, ScopeCell]>;
  /** the table a write seals values of, and the columns it writes */
  written: { info: TableInfo; columns: Set<string> } | undefined;
}

class SealedQuery<T extends PreparedQueryConfig> extends PgPreparedQuery<T> {
  #plan: Plan | undefined;
  #groups: Group[] | undefined;
  #raw: SelectedFieldsOrdered | undefined;

  constructor(
    readonly session: SealedSession, query: Query, readonly fields: SelectedFieldsOrdered | undefined, readonly name: string | undefined,
    readonly arrayMode: boolean, readonly mapper: ((rows: unknown[][], mapColumnValue?: (value: unknown) => unknown) => T['execute']) | undefined,
    readonly metadata: { type: 'select' | 'update' | 'delete' | 'insert'; tables: string[] } | undefined, readonly cacheSettings: unknown,
  ) {
    super(query, undefined, metadata, cacheSettings as never);
  }

  isResponseInArrayMode(): boolean {
    return this.arrayMode;
  }

  get #core(): Core {
    return this.session.core;
  }

  /** The statement's own parameters that pgseal fills in: values to seal, lookups, tenants. */
  #planned(): Plan {
    if (this.#plan) return this.#plan;
    const plan: Plan = { seals: [], lookups: [], scopes: [], written: undefined };
    this.query.params.forEach((p, i) => {
      if (p instanceof SealCell) {
        plan.seals.push([i, p]);
        if (p.what === 'value') {
          plan.written ??= { info: this.#core.info(p.column.base), columns: new Set() };
          plan.written.columns.add(p.column.pgseal.column);
        }
      } else if (p instanceof LookupCell) plan.lookups.push([i, p]);
      else if (p instanceof ScopeCell) plan.scopes.push([i, p]);
    });
    return (this.#plan = plan);
  }

  override async execute(placeholderValues: Record<string, unknown> = {}): Promise<T['execute']> {
    const core = this.#core;
    const plan = this.#planned();
    const type = this.metadata?.type ?? 'select';
    const targets = new Map<LookupCell, Set<string>>();
    let params = plan.seals.length + plan.lookups.length + plan.scopes.length > 0 ? await this.#resolve(plan, placeholderValues, targets) : this.query.params;
    // the table a write or delete logs; one that returns nothing returns its rows' keys for the log
    const target = core.seal.executor.logging ? this.#target(plan, type) : undefined;
    const appended = target?.pk && this.fields === undefined && this.mapper === undefined ? target.pk : undefined;
    const returning = appended ? ` returning ${core.dialect.escapeName(getTableName(appended.column.table))}.${core.dialect.escapeName(appended.column.name)}` : '';
    let text = this.#text(plan, params) + returning;
    const crypto = core.seal.crypto;
    // keys revoked elsewhere stop opening values here within revocationCheckMs (as the helpers' reads)
    const generation = type === 'select' && crypto.revocationCheckDue()
      ? core.seal.sql<Array<{ g: string }>>`select pgseal.key_generation() as g`.execute().then((r) => r[0]?.g, (e: unknown) => Promise.reject(toPgsealError(e)))
      : undefined;
    generation?.catch(() => undefined); // awaited below; not an unhandled rejection if the statement fails first
    let result: unknown;
    if (plan.seals.length === 0) {
      result = await this.#run(this.session.inner, text, params, placeholderValues);
    } else {
      // sealed client-side: behind the guard, so keys revoked elsewhere since they were loaded are refused
      for (let attempt = 0; ; attempt++) {
        try {
          result = await this.#guarded(text, params, placeholderValues);
          break;
        } catch (error) {
          const surfaced = error instanceof PgsealError ? error : toPgsealError(driverError(error));
          if (surfaced.code !== ErrorCodes.KEYS_REVOKED) throw error;
          core.seal.keyring.invalidate();
          // the caller's transaction cannot be replayed (executor.transaction does the same)
          if (this.session.inTransaction || attempt > 0) throw surfaced;
          await core.seal.keyring.refresh();
          params = await this.#resolve(plan, placeholderValues, targets);
          text = this.#text(plan, params) + returning;
        }
      }
    }
    if (generation) await crypto.revocationSeen(await generation);
    const holders = this.#holders(result);
    await this.#open(holders, plan);
    const dropped = this.#recheck(holders, plan, targets);
    if (core.seal.executor.logging) await this.#log(result, holders, plan, type, target, appended !== undefined);
    if (appended) (result as unknown[]).length = 0;
    if (dropped.size > 0) return (result as unknown[]).filter((_, i) => !dropped.has(i)) as T['execute'];
    return result as T['execute'];
  }

  /**
   * The statement's text. A lookup that came to one index (one value, the scope's one index
   * key) compares with `= $n`, as the helpers do: for `= ANY($n)` PostgreSQL finds its
   * generic plan dearer than a one-element custom plan and plans the statement every time.
   */
  #text(plan: Plan, params: readonly unknown[]): string {
    let text = this.query.sql;
    for (const [i] of plan.lookups) {
      if (Buffer.isBuffer(params[i])) text = text.replace(`ANY($${i + 1}::pg_catalog.bytea[])`, `$${i + 1}::pg_catalog.bytea`);
    }
    return text;
  }

  /** Values sealed, indexes computed, tenants given: the parameters as the driver gets them. */
  async #resolve(plan: Plan, placeholders: Record<string, unknown>, found: Map<LookupCell, Set<string>>): Promise<unknown[]> {
    const core = this.#core;
    const crypto = core.seal.crypto;
    const given = (v: unknown) => (is(v, Placeholder) ? placeholders[(v as Placeholder).name] : v);
    const canonicals = new Map<TableInfo, Canonical | undefined>();
    for (const [, cell] of plan.seals) {
      const info = core.info(cell.column.base);
      if (!canonicals.has(info)) canonicals.set(info, await core.canonical(info));
    }
    for (let attempt = 0; ; attempt++) {
      await crypto.ready();
      const params = [...this.query.params];
      try {
        for (const [i, cell] of plan.seals) {
          const value = given(cell.value());
          if (value === null || value === undefined) {
            params[i] = null;
            continue;
          }
          const c = cell.column.pgseal;
          const canonical = canonicals.get(core.info(cell.column.base));
          const texts: RowTexts = {};
          if (c.scopeColumn) texts.scope = canonical!(c.scopeColumn, given(cell.scope));
          if (c.contextMode === 'row') texts.key = canonical!(core.info(cell.column.base).pk!.column.name, given(cell.key));
          params[i] = cell.what === 'index' ? crypto.index(c, value, texts) : crypto.seal(c, value, texts);
        }
        for (const [i, cell] of plan.lookups) {
          const wanted = cell.values().flatMap((v) => (is(v, Placeholder) ? [given(v)].flat() : [v]));
          const { indexes, targets } = crypto.lookup(cell.column.pgseal, wanted, cell.scope);
          // several travel as one bytea[] literal: postgres.js has no bytea[] form for an array of Buffers
          params[i] = indexes.length === 1 ? indexes[0] : `{${indexes.map((x) => `"\\\\x${x.toString('hex')}"`).join(',')}}`;
          found.set(cell, targets);
        }
        for (const [i, cell] of plan.scopes) params[i] = cell.scope;
        return params;
      } catch (error) {
        // a scope whose keys another process created since this one loaded its own
        const stale = error instanceof PgsealError && (error.code === ErrorCodes.NO_ACTIVE_KEY || error.code === ErrorCodes.NO_INDEX_KEY);
        if (!stale || attempt > 0) throw error;
        await core.seal.keyring.refresh();
      }
    }
  }

  #run(session: PgSession<any, any, any>, text: string, params: unknown[], placeholders: Record<string, unknown>): Promise<unknown> {
    // postgres-js prepares a statement when it has a name; the name is not used otherwise
    const name = this.name ?? (this.#core.prepare ? '' : undefined);
    const query = session.prepareQuery({ sql: text, params }, this.#rawFields(), name, this.arrayMode, this.mapper, this.metadata, this.cacheSettings as never);
    // set by drizzle on the query it prepared (this one): a left join's missing side maps to null
    (query as unknown as { joinsNotNullableMap: unknown }).joinsNotNullableMap = (this as unknown as { joinsNotNullableMap: unknown }).joinsNotNullableMap;
    return query.execute(placeholders);
  }

  /** The selected fields with the encrypted columns read as stored (opened in #open). */
  #rawFields(): SelectedFieldsOrdered | undefined {
    if (!this.fields || this.#fieldGroups().length === 0) return this.fields;
    return (this.#raw ??= this.fields.map((f) => (f.field instanceof ValueColumn ? { path: f.path, field: raw(f.field) } : f)));
  }

  async #guarded(text: string, params: unknown[], placeholders: Record<string, unknown>): Promise<unknown> {
    const generation = await this.#core.seal.keyring.generation();
    const guard = this.#core.dialect.sqlToQuery(sql`select pgseal.guard(${String(generation)}::pg_catalog.int8)`);
    const guarded = async (session: PgSession<any, any, any>) => {
      await session.prepareQuery(guard, undefined, this.#core.prepare ? '' : undefined, false).execute();
      return this.#run(session, text, params, placeholders);
    };
    if (this.session.inTransaction) return guarded(this.session.inner);
    return this.session.inner.transaction((tx) => guarded(tx._.session));
  }

  /** The rows' encrypted values, where the selected fields put them. */
  #holders(result: unknown): Holder[] {
    const groups = this.#fieldGroups();
    if (groups.length === 0 || !Array.isArray(result)) return [];
    const holders: Holder[] = [];
    for (let i = 0; i < result.length; i++) {
      for (const g of groups) {
        let container: unknown = result[i];
        for (const p of g.path) container = (container as Record<string, unknown> | null | undefined)?.[p];
        // a left join's missing side
        if (container === null || typeof container !== 'object') continue;
        holders.push({ row: i, group: g, container: container as Record<string, unknown>, info: g.info, table: g.table, key: g.key, scopes: g.scopes, cells: g.cells });
      }
    }
    return holders;
  }

  #fieldGroups(): Group[] {
    if (this.#groups) return this.#groups;
    const groups = new Map<string, Group>();
    const plain = new Map<string, Map<string, string>>(); // path + table -> database name -> property
    for (const { path, field } of this.fields ?? []) {
      if (!is(field, Column)) continue;
      const c = field as PgColumn;
      const table = getTableName(c.table);
      const at = path.slice(0, -1);
      const id = `${at.join('\u0000')}\u0000${table}`;
      let names = plain.get(id);
      if (!names) plain.set(id, (names = new Map()));
      names.set(c.name, path.at(-1)!);
      if (!(c instanceof ValueColumn)) continue;
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { path: at, table, info: this.#core.info(c.base), key: undefined, scopes: new Map(), cells: [], models: [] }));
      g.cells.push({ prop: path.at(-1)!, column: c });
    }
    for (const [id, g] of groups) {
      const names = plain.get(id)!;
      g.key = g.info.pk ? names.get(g.info.pk.column.name) : undefined;
      g.models = [...new Set(g.cells.map((c) => c.column.pgseal))];
      for (const { column } of g.cells) {
        const s = column.pgseal.scopeColumn;
        if (s && names.has(s)) g.scopes.set(s, names.get(s)!);
      }
    }
    return (this.#groups = [...groups.values()]);
  }

  /** Opens every value in place, per table, with the row's key and tenant; a failure is audited. */
  async #open(holders: Holder[], plan: Plan): Promise<void> {
    if (holders.length === 0) return;
    const core = this.#core;
    const byGroup = new Map<Group, Holder[]>();
    for (const h of holders) {
      const list = byGroup.get(h.group);
      if (list) list.push(h);
      else byGroup.set(h.group, [h]);
    }
    for (const [{ info, table, models }, group] of byGroup) {
      const texts = core.canonical(info);
      const canonical = texts && (await texts);
      const synthetic = group.map((h) => {
        const row: Record<string, unknown> = {};
        for (const cell of h.cells) {
          const v = h.container[cell.prop];
          row[cell.column.pgseal.column] = v;
          if (v === null || v === undefined) continue;
          const c = cell.column.pgseal;
          if (c.contextMode === 'row' && row[KEY_TEXT] === undefined) {
            if (h.key === undefined) throw notSelected(c, info.pk?.column.name ?? 'the primary key', 'its row\'s key');
            row[KEY_TEXT] = canonical!(info.pk!.column.name, h.container[h.key]);
          }
          if (c.scopeColumn && row[SCOPE_TEXT + c.scopeColumn] === undefined) {
            const prop = h.scopes.get(c.scopeColumn);
            if (prop === undefined) throw notSelected(c, c.scopeColumn, 'its row\'s tenant');
            row[SCOPE_TEXT + c.scopeColumn] = canonical!(c.scopeColumn, h.container[prop]);
          }
        }
        return row;
      });
      try {
        await core.seal.crypto.openAll(core.seal.sql, synthetic, models, rowTexts, this.#readScopes(info, table, plan));
      } catch (error) {
        await core.seal.executor.auditFailure({ schema: info.schema, table: info.name }, error);
        throw error;
      }
      group.forEach((h, i) => {
        for (const cell of h.cells) h.container[cell.prop] = synthetic[i]![cell.column.pgseal.column];
      });
    }
  }

  /** As the helpers' reads: fixed scopes, plus the tenant the statement was limited to, or (undefined) any loaded one. */
  #readScopes(info: TableInfo, table: string, plan: Plan): ReadonlySet<string> | undefined {
    const scopes = new Set(info.fixedScopes);
    if (!info.tenant) return scopes;
    const given = plan.scopes.filter(([, s]) => s.table === table).map(([, s]) => s.scope);
    if (given.length === 0) return undefined;
    for (const s of given) scopes.add(s);
    return scopes;
  }

  /** Rows a truncated blind index matched whose value is not the one looked for. */
  #recheck(holders: Holder[], plan: Plan, targets: Map<LookupCell, Set<string>>): Set<number> {
    const dropped = new Set<number>();
    for (const [, lookup] of plan.lookups) {
      const wanted = targets.get(lookup)!;
      const c = lookup.column.pgseal;
      for (const h of holders) {
        if (h.table !== lookup.table || h.info.qualified !== `${c.schema}.${c.table}`) continue;
        for (const cell of h.cells) {
          if (cell.column.pgseal.column === c.column && !this.#core.seal.crypto.matches(c, h.container[cell.prop], wanted)) dropped.add(h.row);
        }
      }
    }
    return dropped;
  }

  /** The table a write seals values of, or a delete removes rows (and values) from. */
  #target(plan: Plan, type: string): TableInfo | undefined {
    if (type === 'delete') return this.session.deletes ? this.#core.info(this.session.deletes) : undefined;
    return type === 'select' ? undefined : plan.written?.info;
  }

  /**
   * The access log: a read of each encrypted column selected, per row; a write of each column
   * written, or a delete of every encrypted column, per row changed (rows by primary key, or
   * null when the statement does not return it); a write's returned values it did not write
   * are reads.
   */
  async #log(result: unknown, holders: Holder[], plan: Plan, type: string, target: TableInfo | undefined, appended: boolean): Promise<void> {
    const exec = this.#core.seal.executor;
    const rows = Array.isArray(result) ? (result as Record<string, unknown>[]) : [];
    let written: string[] = [];
    if (target && type !== 'select') {
      const access: AccessType = type === 'delete' ? 'delete' : 'write';
      written = access === 'delete' ? target.encrypted.map((e) => e.column.pgseal.column) : [...(plan.written?.columns ?? [])];
      const key = appended ? target.pk!.column.name : this.#topKey(target);
      const ids = rows.length > 0 || appended
        ? rows.map((r) => (key === undefined ? null : r[key]))
        : new Array<null>(Number((result as { count?: unknown } | null)?.count ?? 0)).fill(null);
      if (written.length > 0 && ids.length > 0) await exec.logAccess({ table: target.qualified, primaryKey: 'id', columns: written, type: access }, ids.map((id) => ({ id })));
      if (access === 'delete') return;
    }
    // per table and set of columns: one entry list (a join's tables apart)
    const reads = new Map<string, { table: string; columns: string[]; ids: Array<{ id: unknown }> }>();
    const ofGroup = new Map<Group, { table: string; columns: string[]; ids: Array<{ id: unknown }> } | undefined>();
    for (const h of holders) {
      let entry = ofGroup.get(h.group);
      if (entry === undefined && !ofGroup.has(h.group)) {
        const columns = h.group.models.map((m) => m.column).filter((c) => h.info !== target || !written.includes(c));
        const id = `${h.info.qualified}\u0000${columns.join(',')}`;
        entry = columns.length === 0 ? undefined : reads.get(id);
        if (columns.length > 0 && !entry) reads.set(id, (entry = { table: h.info.qualified, columns, ids: [] }));
        ofGroup.set(h.group, entry);
      }
      entry?.ids.push({ id: h.key === undefined ? null : h.container[h.key] });
    }
    for (const e of reads.values()) await exec.logAccess({ table: e.table, primaryKey: 'id', columns: e.columns, type: 'read' }, e.ids);
  }

  /** The property of a table's primary key among the top-level fields (a write's returning). */
  #topKey(info: TableInfo): string | undefined {
    if (!info.pk) return undefined;
    return this.fields?.find(({ path, field }) => path.length === 1 && is(field, Column) && (field as PgColumn).name === info.pk!.column.name)?.path[0];
  }
}

function notSelected(c: ProtectedColumn, name: string, what: string): PgsealError {
  return new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} is bound to ${what}: select ${name} along with it`, {
    hint: 'its values open only with the context they were sealed under',
  });
}

// ---------------------------------------------------------------------------------------------
// Entry points

/**
 * A drizzle db (the same type as `db`) whose statements seal and open the encrypted columns
 * client-side and log accesses. Loads the keyring first and keeps it loaded, since the
 * column types run synchronously.
 */
export async function pgsealDrizzle<TDb extends PgDatabase<any, any, any>>(seal: PgsealForDrizzle, db: TDb, options: DrizzleOptions = {}): Promise<TDb> {
  const session = db._.session;
  if (session instanceof SealedSession) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'this drizzle db is already one pgsealDrizzle() returned');
  if (!is(session, PostgresJsSession)) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'pgseal/drizzle runs on drizzle-orm/postgres-js', { hint: 'create the db with drizzle(sql) from drizzle-orm/postgres-js' });
  }
  if ((db as any).$client === seal.sql) shareClient(seal.sql);
  await seal.crypto.ready();
  seal.keyring.keepFresh();
  const dialect = (db as any).dialect as PgDialect;
  const schema = db._.schema ? { fullSchema: db._.fullSchema, schema: db._.schema, tableNamesMap: db._.tableNamesMap } : undefined;
  const core = new Core(seal, dialect, schema, options);
  const sealed = new (db.constructor as new (...args: unknown[]) => TDb)(dialect, new SealedSession(core, session, false), schema);
  Object.assign(sealed, { $client: (db as any).$client, $cache: (db as any).$cache });
  return core.arm(sealed);
}

/**
 * drizzle(sql) makes the client's json and timestamp serializers pass values through (it
 * serializes those itself, to strings); pgseal's own statements on the same client bind
 * objects (an audit record's details) and Dates, which the driver then cannot send: the
 * audit of a value that does not open would be lost. Here a value that is not a string yet
 * is serialized as postgres.js would, a string passes; kept when drizzle(sql) runs again.
 */
function shareClient(client: Sql): void {
  const serializers = (client as unknown as { options: { serializers: Record<string, unknown> } }).options.serializers;
  const json = (x: unknown) => (typeof x === 'string' ? x : JSON.stringify(x));
  const date = (x: unknown) => (x instanceof Date ? x.toISOString() : x);
  for (const [oids, serialize] of [[['114', '3802'], json], [['1082', '1083', '1114', '1182', '1184', '1185'], date]] as const) {
    for (const oid of oids) Object.defineProperty(serializers, oid, { get: () => serialize, set: () => undefined, enumerable: true, configurable: true });
  }
}

/**
 * Checks a drizzle table's encrypted columns against pgseal.columns (PGSEAL_REGISTRY_MISMATCH
 * listing every difference): a context or scope declared otherwise than protected would make
 * every value fail to open.
 */
export async function verifyTable(seal: Pick<PgsealForDrizzle, 'executor'>, table: PgTable): Promise<void> {
  const columns = getTableColumns(table) as Record<string, PgColumn>;
  const encrypted = Object.values(columns).filter((c): c is ValueColumn => c instanceof ValueColumn);
  const declared = getTableConfig(table).primaryKeys.find((k) => k.columns.length === 1)?.columns[0];
  const pk = Object.values(columns).find((c) => c.primary || c === declared);
  if (!pk || encrypted.length === 0) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${getTableName(table)}: verifyTable() takes a table with a single-column primary key and encrypted columns`);
  }
  const defColumns = Object.fromEntries(Object.values(columns).map((c) => [
    c.name, c instanceof ValueColumn ? { kind: 'encrypted' as const, ...c.pgseal } : define.plain<unknown>(),
  ]));
  const { schema, table: name } = encrypted[0]!.pgseal;
  await new HelperTable(seal.executor, { schema, name, primaryKey: pk.name, columns: defColumns }).verify();
}
