// The typed helpers: insert, insertMany, update, delete, findByPk, findBy (equality and IN
// on plain or searchable encrypted columns), keyset-paged list. Each call is one statement
// run by the keyed executor (src/exec/), keys as a bound argument, so a primary-key lookup
// costs one round trip. Blind indexes are computed here, so a lookup sends only the index,
// never the searched value, and the decrypted values are re-checked so a truncation
// collision never returns a row. Every expression comes from the column model
// (src/columns/), every statement from the statement builder (src/statement/).

import type { AccessType, Accessed } from '../audit/access-log.js';
import { columnContext } from '../columns/context.js';
import { decryptExpr, encryptBytesExpr, type RowSource } from '../columns/expressions.js';
import { protectedColumn, type ProtectedColumn } from '../columns/model.js';
import { decodeValue, encodeValue } from '../columns/values.js';
import { ErrorCodes, PgsealError, withPgsealErrors } from '../errors.js';
import { canonicalTexts, ClientCrypto, type Canonical, type RowTexts } from '../exec/client-side.js';
import type { KeyedExecutor, Route } from '../exec/executor.js';
import { loadRegistry } from '../registry/load.js';
import { verifyDefinition } from '../registry/verify.js';
import { operand, toFragment, typedLike, type Expr } from '../statement/expr.js';
import { empty, ident, join, secret, slot, sql, statement, value as bound, type Compiled, type Fragment } from '../statement/sql.js';
import type { ColumnDef, PrimaryKeyValue, Row, SearchableKey, TableDefinition, Values } from './define.js';

type AnyTable = TableDefinition<Record<string, ColumnDef>, string>;

/**
 * Where a table's values are sealed and opened. 'client': in this process (the database
 * receives ciphertext and blind indexes only, no key, no plaintext, no searched value);
 * 'database': in SQL, the keys bound as arguments of each statement.
 */
export type CryptoMode = 'client' | 'database';

export interface TableOptions {
  /** default 'client' */
  crypto?: CryptoMode | undefined;
  /** the client-side crypto to use (pgseal() shares one per instance) */
  client?: ClientCrypto | undefined;
}

/** Columns a client-mode read adds for itself (the row texts of contexts, the revocation check); never returned. */
const KEY_TEXT = 'pgseal$key';
const SCOPE_TEXT = 'pgseal$scope$';
const GENERATION = 'pgseal$generation';

/** A client-mode row's texts for one column's context (what #selectList added). */
const NO_TEXTS: RowTexts = Object.freeze({});
function rowTexts(row: Record<string, unknown>, c: ProtectedColumn): RowTexts {
  if (!c.scopeColumn && c.contextMode !== 'row') return NO_TEXTS;
  return {
    scope: c.scopeColumn ? (row[SCOPE_TEXT + c.scopeColumn] as string | undefined) : undefined,
    key: c.contextMode === 'row' ? (row[KEY_TEXT] as string | undefined) : undefined,
  };
}

export interface ScopeOption {
  /** the key scope (tenant) of the rows, for tables whose scope is a column */
  scope?: string;
}

interface TableColumn {
  name: string;
  /** the model of an encrypted column; undefined for a plain one */
  model: ProtectedColumn | undefined;
}

export class Table<T extends AnyTable> {
  readonly def: T;
  readonly #exec: KeyedExecutor;
  readonly #columns: TableColumn[];
  readonly #encrypted: ProtectedColumn[];
  readonly #target: Fragment;
  readonly #pk: string;
  /** the column holding each row's scope, when a column is keyed per tenant */
  readonly #scopeColumn: string | undefined;
  /** reads compiled once per definition (a Table may be made per request; its definition lives on) */
  readonly #compiled: Map<string, Compiled>;
  /** what the access log and the failed-decrypt audit are told, the same on every call */
  readonly #access = new Map<AccessType, Accessed>();
  readonly #where: { schema: string; table: string };
  readonly #mode: CryptoMode;
  readonly #client: ClientCrypto;
  /** client mode: the scope columns whose text some context needs, and whether one needs the primary key's */
  readonly #scopeTexts: string[];
  readonly #keyText: boolean;
  readonly #scopeSets = new Map<string, ReadonlySet<string>>();

  constructor(exec: KeyedExecutor, def: T, options: TableOptions = {}) {
    this.#exec = exec;
    this.#mode = options.crypto ?? 'client';
    if (this.#mode !== 'client' && this.#mode !== 'database') throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `crypto must be 'client' or 'database'`);
    this.#client = options.client ?? new ClientCrypto(exec.keyring);
    this.def = def;
    this.#pk = def.primaryKey;
    this.#target = ident(def.schema, def.name);
    this.#where = { schema: def.schema, table: def.name };
    this.#columns = Object.entries(def.columns).map(([name, d]) => ({ name, model: d.kind === 'encrypted' ? protectedColumn(def.schema, def.name, name, d) : undefined }));
    this.#encrypted = this.#columns.flatMap((c) => (c.model ? [c.model] : []));
    if (!(def.primaryKey in def.columns) || def.columns[def.primaryKey]!.kind !== 'plain') {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${def.name}: the primary key ${def.primaryKey} must be a plain column of the definition`);
    }
    for (const c of this.#encrypted) {
      if (c.scopeColumn && def.columns[c.scopeColumn]?.kind !== 'plain') {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${def.name}.${c.column} is keyed by ${c.scopeColumn}: add it to the definition as a plain column`);
      }
    }
    this.#scopeColumn = this.#encrypted.find((c) => c.scopeColumn)?.scopeColumn ?? undefined;
    this.#scopeTexts = [...new Set(this.#encrypted.flatMap((c) => (c.scopeColumn ? [c.scopeColumn] : [])))];
    this.#keyText = this.#encrypted.some((c) => c.contextMode === 'row');
    for (const name of Object.keys(def.columns)) {
      if (name.startsWith('pgseal$')) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${def.name}.${name}: column names starting pgseal$ are pgseal's own`);
    }
    let compiled = COMPILED.get(def);
    if (!compiled) COMPILED.set(def, (compiled = new Map()));
    this.#compiled = compiled;
  }

  /**
   * The select list: plain columns as they are; encrypted ones decrypted in SQL as sealed
   * (decoded in #decode), or in client mode as stored, with the texts their contexts need.
   */
  #selectList(route: Route, generation = false): Fragment {
    if (this.#mode === 'client') {
      const extra = [
        ...(this.#keyText ? [sql`${ident(this.#pk)}::pg_catalog.text AS ${ident(KEY_TEXT)}`] : []),
        ...this.#scopeTexts.map((c) => sql`${ident(c)}::pg_catalog.text AS ${ident(SCOPE_TEXT + c)}`),
        // SECURITY DEFINER, a number: the revocations since this process loaded its keys
        ...(generation ? [sql`pgseal.key_generation() AS ${ident(GENERATION)}`] : []),
      ];
      return join([...this.#columns.map((c) => ident(c.name)), ...extra]);
    }
    return join(this.#columns.map((c) => {
      if (!c.model) return ident(c.name);
      const model = c.model;
      const row: RowSource<Fragment> = { key: () => operand(ident(this.#pk)), scopeValue: () => operand(ident(model.scopeColumn!)) };
      return sql`${toFragment(decryptExpr(model, operand(ident(c.name)), row, route.keys, 'plaintext'))} AS ${ident(c.name)}`;
    }));
  }

  /** Scopes a read may meet: fixed scopes, or the one given, or (undefined) every loaded scope. */
  #readScopes(scope: string | undefined): string[] | undefined {
    const fixed = new Set<string>();
    for (const c of this.#encrypted) {
      if (c.scopeColumn) {
        if (!scope) return undefined;
        fixed.add(scope);
      } else fixed.add(c.scope ?? 'default');
    }
    return [...fixed];
  }

  #writeScopes(values: Record<string, unknown>): string[] | undefined {
    const tenant = this.#scopeColumn ? values[this.#scopeColumn] : undefined;
    return this.#readScopes(tenant === undefined || tenant === null ? undefined : String(tenant));
  }

  #accessed(type: AccessType): Accessed {
    let a = this.#access.get(type);
    if (!a) this.#access.set(type, (a = { table: `${this.def.schema}.${this.def.name}`, primaryKey: this.#pk, columns: this.#encrypted.map((c) => c.column), type }));
    return a;
  }

  /**
   * Runs one statement through the executor and decodes the rows. In client mode it carries
   * no key (writes run behind the guard, which refuses revoked keys), and the values are
   * opened here afterwards: a stale key reloads the keyring, not the statement.
   */
  async #run<R>(
    scopes: string[] | undefined | 'none', build: (route: Route, generation: boolean) => Fragment | Promise<Fragment>, access: AccessType | undefined,
    cache?: { key: string; values: Record<string, unknown> },
  ): Promise<R[] & { count: number }> {
    const client = this.#mode === 'client';
    // reads check for revocations now and then; a write's guard always does
    const generation = client && access === 'read' && this.#client.revocationCheckDue();
    const rows = await this.#exec.run({
      scopes: client ? 'none' : scopes,
      build: (route) => build(route, generation),
      values: cache?.values,
      cache: cache ? { map: this.#compiled, key: `${this.#mode}|${generation}|${cache.key}` } : undefined,
      access: access ? this.#accessed(access) : undefined,
      table: this.#where,
      guard: client && access === 'write',
    });
    if (!client) {
      for (const row of rows) this.#decode(row);
    } else if (scopes !== 'none') {
      if (generation) {
        if (rows.length === 0) this.#client.revocationCheckMissed();
        else await this.#client.revocationSeen(rows[0]![GENERATION]);
      }
      await this.#open(rows, scopes);
    }
    return rows as unknown as R[] & { count: number };
  }

  /** The same scopes as a set, made once per distinct list (a read's scopes are few: fixed ones, or a tenant's). */
  #scopeSet(scopes: string[]): ReadonlySet<string> {
    const key = scopes.join('\u0000');
    let set = this.#scopeSets.get(key);
    if (!set) {
      set = new Set(scopes);
      if (this.#scopeSets.size < 10_000) this.#scopeSets.set(key, set);
    }
    return set;
  }

  /** Client mode: the stored values opened in place, under the scopes the read may meet; the added columns dropped. */
  async #open(rows: Record<string, unknown>[], scopes: string[] | undefined): Promise<void> {
    try {
      await this.#client.openAll(this.#exec.sql, rows, this.#encrypted, rowTexts, scopes ? this.#scopeSet(scopes) : undefined);
    } catch (error) {
      await this.#exec.auditFailure(this.#where, error);
      throw error;
    }
    if (this.#keyText || this.#scopeTexts.length > 0 || GENERATION in (rows[0] ?? {})) {
      for (const row of rows) {
        delete row[KEY_TEXT];
        delete row[GENERATION];
        for (const c of this.#scopeTexts) delete row[SCOPE_TEXT + c];
      }
    }
  }

  /** Values decrypted in SQL, as sealed, back to the column's type. */
  #decode(row: Record<string, unknown>): void {
    for (const c of this.#encrypted) if (c.column in row) row[c.column] = decodeValue(c, row[c.column]);
  }

  /** A RETURNING of the primary key, for writes that return nothing else, when their rows are logged. */
  #returningKey(): Fragment {
    return this.#exec.logging ? sql` RETURNING ${ident(this.#pk)}` : empty();
  }

  #scopeOf(c: ProtectedColumn, values: Record<string, unknown>): string {
    return c.scopeColumn ? String(this.#scopeValue(c, values)) : (c.scope ?? 'default');
  }

  /** A value written to this table, typed like its column (the text it will read back as: '07' into an integer key is '7'). */
  #written(column: string, v: unknown): Expr<Fragment> {
    return typedLike(operand(bound(v)), this.def.schema, this.def.name, column);
  }

  /** Client mode: how the database spells keys and tenants, when a context of this table needs them. */
  async #canonical(): Promise<Canonical | undefined> {
    return this.#keyText || this.#scopeTexts.length > 0 ? canonicalTexts(this.#exec.sql, this.def.schema, this.def.name) : undefined;
  }

  #scopeValue(c: ProtectedColumn, values: Record<string, unknown>): unknown {
    const v = values[c.scopeColumn!];
    if (v === undefined || v === null) {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${this.def.name}.${c.column} is keyed by ${c.scopeColumn}: give its value`, {
        hint: `include ${c.scopeColumn} in the values written`,
      });
    }
    return v;
  }

  #keyValue(c: ProtectedColumn, values: Record<string, unknown>): unknown {
    const pk = values[this.#pk];
    if (pk === undefined || pk === null) {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${this.def.name}.${c.column} is bound to its row: give the primary key ${this.#pk}`);
    }
    return pk;
  }

  /**
   * One row's columns and value expressions: encrypted ones sealed and their blind indexes
   * computed, in this process (client mode: the envelope as a value) or in SQL (the key
   * material a secret of the statement; the context built from the values as stored).
   */
  async #writeRow(values: Record<string, unknown>, route: Route, skipPrimaryKey = false): Promise<Array<[string, Fragment]>> {
    const client = this.#mode === 'client';
    const canonical = client ? await this.#canonical() : undefined;
    if (client) await this.#client.ready();
    const out: Array<[string, Fragment]> = [];
    for (const c of this.#columns) {
      if (!(c.name in values) || (skipPrimaryKey && c.name === this.#pk)) continue;
      const v = values[c.name];
      if (!c.model) {
        out.push([c.name, bound(v ?? null)]);
        continue;
      }
      const model = c.model;
      if (v === null || v === undefined) {
        out.push([c.name, sql`NULL`]);
        if (model.blindIndexColumn) out.push([model.blindIndexColumn, sql`NULL`]);
        continue;
      }
      if (client) {
        const row: RowTexts = {
          scope: model.scopeColumn ? canonical!(model.scopeColumn, this.#scopeValue(model, values)) : undefined,
          key: model.contextMode === 'row' ? canonical!(this.#pk, this.#keyValue(model, values)) : undefined,
        };
        out.push([c.name, sql`${bound(this.#client.seal(model, v, row))}::pg_catalog.bytea`]);
        if (model.blindIndexColumn) out.push([model.blindIndexColumn, sql`${bound(this.#client.index(model, v, row))}::pg_catalog.bytea`]);
        continue;
      }
      const scope = this.#scopeOf(model, values);
      const row: RowSource<Fragment> = {
        key: () => this.#written(this.#pk, this.#keyValue(model, values)),
        scopeValue: () => this.#written(model.scopeColumn!, values[model.scopeColumn!]),
      };
      const sealed = encryptBytesExpr(model, operand(secret(route.own(encodeValue(model, v)))), row, await route.writeKey(scope));
      out.push([c.name, toFragment(sealed)]);
      // the blind index is computed in Node in both modes (ClientCrypto), so the value never travels for it
      if (model.blindIndexColumn) {
        await this.#client.ready();
        out.push([model.blindIndexColumn, sql`${bound(this.#client.index(model, v, { scope }))}::pg_catalog.bytea`]);
      }
    }
    return out;
  }

  async insert(values: Values<T>): Promise<Row<T>> {
    const v = values as Record<string, unknown>;
    const [row] = await this.#run<Row<T>>(this.#writeScopes(v), async (route) => {
      const cells = await this.#writeRow(v, route);
      return sql`INSERT INTO ${this.#target} (${join(cells.map(([c]) => ident(c)))}) VALUES (${join(cells.map(([, e]) => e))}) RETURNING ${this.#selectList(route)}`;
    }, 'write');
    return row!;
  }

  /** Inserts in multi-row statements of at most `batchSize` rows; returns how many. */
  async insertMany(rows: readonly Values<T>[], options: { batchSize?: number } = {}): Promise<number> {
    const batchSize = options.batchSize ?? 500;
    let inserted = 0;
    for (let at = 0; at < rows.length; at += batchSize) {
      const batch = rows.slice(at, at + batchSize) as Record<string, unknown>[];
      const names = [...new Set(batch.flatMap((r) => Object.keys(r)))];
      const scopes = [...new Set(batch.map((r) => this.#writeScopes(r) ?? []).flat())];
      const result = await this.#run<{ n: number }>(scopes.length ? scopes : undefined, async (route) => {
        const tuples: Fragment[] = [];
        let columns: string[] | undefined;
        for (const r of batch) {
          const cells = await this.#writeRow(Object.fromEntries(names.map((n) => [n, r[n] ?? null])), route);
          columns ??= cells.map(([c]) => c);
          tuples.push(sql`(${join(cells.map(([, e]) => e))})`);
        }
        return sql`INSERT INTO ${this.#target} (${join(columns!.map((c) => ident(c)))}) VALUES ${join(tuples)}${this.#returningKey()}`;
      }, 'write');
      inserted += result.count ?? batch.length;
    }
    return inserted;
  }

  async update(pk: PrimaryKeyValue<T>, values: Values<T>): Promise<Row<T> | undefined> {
    const v = { ...(values as Record<string, unknown>) };
    // Values bound to the row's key or tenant would no longer open if those changed alone.
    for (const c of this.#encrypted) {
      const bound = [c.contextMode === 'row' ? this.#pk : undefined, c.scopeColumn ?? undefined].filter((x): x is string => x !== undefined);
      const moved = bound.filter((b) => b in v && !(b === this.#pk && v[b] === pk));
      if (moved.length > 0 && !(c.column in v)) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${this.def.name}.${c.column} is bound to ${moved.join(' and ')}: changing it means writing ${c.column} again`, {
          hint: `include ${c.column} in the same update`,
        });
      }
    }
    const scoped = this.#encrypted.find((c) => c.scopeColumn && c.column in v);
    if (scoped && !(scoped.scopeColumn! in v)) {
      const read = statement(sql`SELECT ${ident(scoped.scopeColumn!)} AS s FROM ${this.#target} WHERE ${ident(this.#pk)} OPERATOR(pg_catalog.=) ${bound(pk)}`);
      const [current] = await withPgsealErrors(() => read.run<{ s: unknown }>(this.#exec.sql));
      if (!current) return undefined;
      v[scoped.scopeColumn!] = current.s;
    }
    v[this.#pk] = pk;
    const [row] = await this.#run<Row<T>>(this.#writeScopes(v), async (route) => {
      const cells = await this.#writeRow(v, route, true);
      if (cells.length === 0) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'nothing to update');
      return sql`UPDATE ${this.#target} SET ${join(cells.map(([c, e]) => sql`${ident(c)} = ${e}`))} WHERE ${ident(this.#pk)} OPERATOR(pg_catalog.=) ${bound(pk)} RETURNING ${this.#selectList(route)}`;
    }, 'write');
    return row;
  }

  async delete(pk: PrimaryKeyValue<T>): Promise<boolean> {
    const result = await this.#run(
      'none', () => sql`DELETE FROM ${this.#target} WHERE ${ident(this.#pk)} OPERATOR(pg_catalog.=) ${slot('pk')}${this.#returningKey()}`, 'delete',
      { key: `delete|${this.#exec.logging}`, values: { pk } },
    );
    return result.count > 0;
  }

  async findByPk(pk: PrimaryKeyValue<T>, options: ScopeOption = {}): Promise<Row<T> | undefined> {
    const [row] = await this.#run<Row<T>>(this.#readScopes(options.scope), (route, generation) =>
      sql`SELECT ${this.#selectList(route, generation)} FROM ${this.#target} WHERE ${ident(this.#pk)} OPERATOR(pg_catalog.=) ${slot('pk')}`, 'read', { key: 'findByPk', values: { pk } });
    return row;
  }

  /** Equality (one value) or IN (an array) on a plain or searchable encrypted column. */
  async findBy<K extends SearchableKey<T>>(name: K, value: Row<T>[K] | readonly Row<T>[K][], options: ScopeOption = {}): Promise<Row<T>[]> {
    const c = this.#columns.find((x) => x.name === name);
    if (!c) throw new PgsealError(ErrorCodes.COLUMN_NOT_FOUND, `${this.def.name} has no column ${String(name)}`);
    const many = Array.isArray(value);
    const wanted = (many ? value : [value]) as unknown[];
    if (!c.model) {
      return this.#run<Row<T>>(this.#readScopes(options.scope), (route, generation) =>
        sql`SELECT ${this.#selectList(route, generation)} FROM ${this.#target} WHERE ${ident(c.name)} ${many ? sql`OPERATOR(pg_catalog.=) ANY(${slot('wanted')})` : sql`OPERATOR(pg_catalog.=) ${slot('wanted')}`}`,
      'read', { key: `findByPlain|${c.name}|${many}`, values: { wanted: many ? wanted : wanted[0] } });
    }
    const model = c.model;
    if (!model.blindIndexColumn) {
      throw new PgsealError(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT, `${columnContext(model)} is encrypted and not searchable`, { hint: 'protect it with searchable: true to look rows up by it' });
    }
    const scope = model.scopeColumn ? options.scope : (model.scope ?? 'default');
    if (!scope) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(model)} is keyed per ${model.scopeColumn}: pass { scope }`);
    // computed here in both modes: the searched value never travels
    await this.#client.ready();
    const { indexes, targets } = this.#client.lookup(model, wanted, scope);
    if (indexes.length === 0) return [];
    const bidx = ident(model.blindIndexColumn);
    const one = indexes.length === 1;
    // the other columns' keys follow the caller's tenant, not the searched column's scope
    const rows = await this.#run<Row<T>>(this.#readScopes(options.scope), (route, generation) => {
      const tenant = model.scopeColumn ? sql` AND ${ident(model.scopeColumn)}::pg_catalog.text OPERATOR(pg_catalog.=) ${slot('tenant')}` : empty();
      // several indexes travel as hex text (an array of Buffers has no bytea[] form in the driver)
      const match = one
        ? sql`${bidx} OPERATOR(pg_catalog.=) ${slot('index')}::pg_catalog.bytea`
        : sql`${bidx} OPERATOR(pg_catalog.=) ANY(ARRAY(SELECT pg_catalog.decode(x, 'hex') FROM pg_catalog.unnest(${slot('index')}::pg_catalog.text[]) AS x))`;
      return sql`SELECT ${this.#selectList(route, generation)} FROM ${this.#target} WHERE ${match}${tenant}`;
    }, 'read', { key: `findByIndex|${c.name}|${one}`, values: { index: one ? indexes[0] : indexes.map((i) => i.toString('hex')), tenant: scope } });
    // the blind index is truncated: keep only rows whose value really matches
    return rows.filter((r) => this.#client.matches(model, (r as Record<string, unknown>)[c.name], targets));
  }

  /** Keyset pagination in primary-key order. */
  async list(options: { after?: PrimaryKeyValue<T>; limit?: number } & ScopeOption = {}): Promise<{ rows: Row<T>[]; next: PrimaryKeyValue<T> | undefined }> {
    const limit = options.limit ?? 100;
    const after = options.after !== undefined;
    const tenant = options.scope !== undefined && this.#scopeColumn !== undefined;
    const rows = await this.#run<Row<T>>(this.#readScopes(options.scope), (route, generation) => {
      const where = [after ? sql`${ident(this.#pk)} OPERATOR(pg_catalog.>) ${slot('after')}` : undefined, tenant ? sql`${ident(this.#scopeColumn!)}::pg_catalog.text OPERATOR(pg_catalog.=) ${slot('tenant')}` : undefined]
        .filter((w): w is Fragment => w !== undefined);
      return sql`SELECT ${this.#selectList(route, generation)} FROM ${this.#target}${where.length ? sql` WHERE ${join(where, ' AND ')}` : empty()} ORDER BY ${ident(this.#pk)} LIMIT ${slot('limit')}`;
    }, 'read', { key: `list|${after}|${tenant}`, values: { ...(after ? { after: options.after } : {}), ...(tenant ? { tenant: options.scope } : {}), limit } });
    const last = rows.at(-1) as Record<string, unknown> | undefined;
    return { rows, next: rows.length === limit && last ? (last[this.#pk] as PrimaryKeyValue<T>) : undefined };
  }

  /** Checks the definition against pgseal.columns; throws REGISTRY_MISMATCH listing every difference. */
  async verify(): Promise<void> {
    const registry = await loadRegistry(this.#exec.sql);
    const plain = new Map(Object.entries(this.def.columns).flatMap(([name, d]) => (d.kind === 'plain' ? [[name, d.reads] as const] : [])));
    const parsers = (this.#exec.sql.options as { parsers?: Record<number, unknown> }).parsers ?? {};
    verifyDefinition(`${this.def.schema}.${this.def.name}`, new Map(this.#encrypted.map((c) => [c.column, c])), this.#pk, registry.get(`${this.def.schema}.${this.def.name}`), { columns: plain, parsers });
  }
}

const COMPILED = new WeakMap<AnyTable, Map<string, Compiled>>();
