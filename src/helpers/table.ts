// The typed helpers: insert, insertMany, update, delete, findByPk, findBy (equality and IN
// on plain or searchable encrypted columns), keyset-paged list. Each call is one statement
// with the keys as a bound argument, so a primary-key lookup costs one round trip. Blind
// indexes are computed here, so a lookup sends only the index, never the searched value,
// and the decrypted values are re-checked so a truncation collision never returns a row.

import type { Sql, TransactionSql } from 'postgres';
import { accessEntries, accessor, withAccessLog, type AccessLogBuffer, type AccessLogOptions, type AccessType, type Accessed } from '../audit/access-log.js';
import { recordFailure } from '../audit/record.js';
import { ErrorCodes, PgsealError, toPgsealError, withPgsealErrors } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import { loadRegistry } from '../registry/load.js';
import { blindIndex, blindIndexOfNormalized } from '../columns/blind-index.js';
import { normalize } from '../columns/normalize.js';
import { withKeys } from '../transaction.js';
import type { ColumnDef, EncryptedColumn, PrimaryKeyValue, Row, SearchableKey, TableDefinition, Values } from './define.js';
import { ident, literal, Params, selectList, storedText, writeExpression, type ColumnSql, type KeyPath } from './sql.js';

type AnyTable = TableDefinition<Record<string, ColumnDef>, string>;
type Enc = EncryptedColumn<unknown, boolean>;

/** Values that do not open. */
const UNREADABLE = new Set<string>([ErrorCodes.AUTHENTICATION_FAILED, ErrorCodes.MALFORMED_ENVELOPE, ErrorCodes.KEY_RETIRED, ErrorCodes.KEY_DESTROYED]);

/** Failures that mean "your cached keys are older than the database's": reload, then retry once. */
// LOG_KEY_MISSING: another process rotated the log key and signed a chain head with it
const RELOAD_AND_RETRY = new Set<string>([ErrorCodes.UNKNOWN_KEY_VERSION, ErrorCodes.KEY_COMPROMISED, ErrorCodes.NO_ACTIVE_KEY, ErrorCodes.LOG_KEY_MISSING]);

export interface ScopeOption {
  /** the key scope (tenant) of the rows, for tables whose scope is a column */
  scope?: string;
}

export class Table<T extends AnyTable> {
  readonly #sql: Sql;
  readonly #keyring: Keyring;
  readonly def: T;
  readonly #columns: ColumnSql[];
  readonly #target: string;

  readonly #accessLog: AccessLogOptions;
  readonly #accessBuffer: AccessLogBuffer | undefined;
  /** select lists by key path: the same text on every call, built once */
  readonly #selectLists = new Map<string, string>();

  constructor(sql: Sql, keyring: Keyring, def: T, options: { accessLog?: AccessLogOptions | undefined; accessBuffer?: AccessLogBuffer | undefined } = {}) {
    this.#sql = sql;
    this.#keyring = keyring;
    this.#accessLog = options.accessLog ?? {};
    this.#accessBuffer = options.accessBuffer;
    this.def = def;
    this.#target = `${ident(def.schema)}.${ident(def.name)}`;
    this.#columns = Object.entries(def.columns).map(([name, d]) => ({
      name,
      def: d,
      context: `${def.schema}.${def.name}.${name}`,
      blindIndexColumn: d.kind === 'encrypted' && d.searchable ? (d.blindIndexColumn ?? `${name}_bidx`) : undefined,
    }));
    if (!(def.primaryKey in def.columns) || def.columns[def.primaryKey]!.kind !== 'plain') {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${def.name}: the primary key ${def.primaryKey} must be a plain column of the definition`);
    }
    for (const c of this.#encrypted()) {
      if (c.def.scopeColumn && def.columns[c.def.scopeColumn]?.kind !== 'plain') {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${def.name}.${c.name} is keyed by ${c.def.scopeColumn}: add it to the definition as a plain column`);
      }
    }
  }

  get #pk(): string {
    return this.def.primaryKey;
  }

  #select(keys: KeyPath): string {
    const key = keys.kind === 'argument' ? keys.keyset : keys.kind;
    let list = this.#selectLists.get(key);
    if (list === undefined) this.#selectLists.set(key, (list = selectList(this.#columns, this.#pk, keys)));
    return list;
  }

  #encrypted(): Array<ColumnSql & { def: Enc }> {
    return this.#columns.filter((c): c is ColumnSql & { def: Enc } => c.def.kind === 'encrypted');
  }

  /** Scopes a read may meet: fixed scopes, or the one given, or every loaded scope. */
  #readScopes(scope: string | undefined): string[] | undefined {
    const fixed = new Set<string>();
    for (const c of this.#encrypted()) {
      if (c.def.scopeColumn) {
        if (!scope) return undefined;
        fixed.add(scope);
      } else fixed.add(c.def.scope ?? 'default');
    }
    return [...fixed];
  }

  /**
   * Runs one statement, with the keys as an argument when they fit, else per transaction.
   * When another process rotated (a version this keyring does not know yet, or a key an
   * emergency rotation marked compromised), the keys are reloaded and the statement is run
   * once more: it failed as a whole, so nothing was read or written the first time.
   */
  async #run<R>(
    scopes: string[] | undefined,
    build: (keys: KeyPath, params: Params, tx: Sql | TransactionSql) => Promise<string | undefined>,
    access?: AccessType,
  ): Promise<R[]> {
    try {
      try {
        return await this.#runOnce<R>(scopes, build, access);
      } catch (error) {
        if (!(error instanceof PgsealError) || !RELOAD_AND_RETRY.has(error.code)) throw error;
        await this.#keyring.refresh();
        return await this.#runOnce<R>(scopes, build, access);
      }
    } catch (error) {
      if (error instanceof PgsealError && UNREADABLE.has(error.code)) {
        // a value that does not open: tampering, a wrong key, or shredded data; auditors want to know
        await recordFailure(this.#sql, this.#keyring, { operation: 'data.decrypt_failed', actor: accessor(this.#accessLog).actor, table: { schema: this.def.schema, table: this.def.name } }, error);
      }
      throw error;
    }
  }

  #accessed(type: AccessType): Accessed {
    return { table: `${this.def.schema}.${this.def.name}`, primaryKey: this.#pk, columns: this.#encrypted().map((c) => c.name), type };
  }

  /** The statement as run: with its access-log rows inserted by the same statement in sync mode. */
  #logged(text: string, params: Params, access: AccessType | undefined, logKeyset: Buffer | undefined): string {
    if (!access || !logKeyset) return text;
    return withAccessLog(text, this.#accessed(access), accessor(this.#accessLog), (v) => params.add(v), params.addSecret(logKeyset));
  }

  /** Async mode: the rows a statement returned, buffered for the access log. */
  #buffer(rows: readonly Record<string, unknown>[], access: AccessType | undefined): void {
    if (!access || this.#accessLog.mode !== 'async' || !this.#accessBuffer) return;
    this.#accessBuffer.add(accessEntries(rows, this.#accessed(access), accessor(this.#accessLog)));
  }

  /** A RETURNING of the primary key, for writes that return nothing else, when their rows are logged. */
  #returningKey(): string {
    return this.#accessLog.mode === 'sync' || this.#accessLog.mode === 'async' ? ` RETURNING ${ident(this.#pk)}` : '';
  }

  async #runOnce<R>(
    scopes: string[] | undefined,
    build: (keys: KeyPath, params: Params, tx: Sql | TransactionSql) => Promise<string | undefined>,
    access: AccessType | undefined,
  ): Promise<R[]> {    const allScopes = scopes ?? [...new Set((await this.#keyring.versions()).map((v) => v.scope))];
    const keyset = await this.#keyring.keyset(allScopes);
    const buffers: Buffer[] = keyset ? [keyset] : [];
    // sync access log: the statement signs its own log rows
    const logKeyset = access && this.#accessLog.mode === 'sync' ? await this.#keyring.logKeyset() : undefined;
    if (logKeyset) buffers.push(logKeyset);
    try {
      const exec = async (db: Sql | TransactionSql, keys: KeyPath, params: Params): Promise<R[]> => {
        const built = await build(keys, params, db);
        buffers.push(...params.secrets);
        if (built === undefined) return [];
        const text = this.#logged(built, params, access, logKeyset);
        const rows = (await db.unsafe(text, params.values as never[], { prepare: true })) as unknown as R[];
        for (const row of rows) this.#decode(row as Record<string, unknown>);
        this.#buffer(rows as unknown as Record<string, unknown>[], access);
        return rows;
      };
      if (keyset) {
        const params = new Params();
        const keys: KeyPath = { kind: 'argument', keyset: params.addSecret(keyset) + '::bytea' };
        return await exec(this.#sql, keys, params);
      }
      return await withKeys(this.#sql, this.#keyring, (tx) => exec(tx, { kind: 'transaction' }, new Params()), { scopes: allScopes });
    } catch (error) {
      throw toPgsealError(error);
    } finally {
      for (const b of buffers) if (b !== undefined) b.fill(0);
    }
  }

  async #scopeOf(c: ColumnSql & { def: Enc }, values: Record<string, unknown>): Promise<string> {
    if (!c.def.scopeColumn) return c.def.scope ?? 'default';
    const v = values[c.def.scopeColumn];
    if (v === undefined || v === null) {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${this.def.name}.${c.name} is keyed by ${c.def.scopeColumn}: give its value`, {
        hint: `include ${c.def.scopeColumn} in the values written`,
      });
    }
    return String(v);
  }

  /** Value expressions for one row's columns (encrypted ones wrapped, blind indexes added). */
  async #writeRow(values: Record<string, unknown>, params: Params, keys: KeyPath['kind'], materials: Map<string, string>, skipPrimaryKey = false): Promise<Array<[string, string]>> {
    const out: Array<[string, string]> = [];
    for (const c of this.#columns) {
      if (!(c.name in values) || (skipPrimaryKey && c.name === this.#pk)) continue;
      const value = values[c.name];
      if (c.def.kind === 'plain') {
        out.push([c.name, params.add(value ?? null)]);
        continue;
      }
      const enc = c as ColumnSql & { def: Enc };
      const scope = await this.#scopeOf(enc, values);
      if (value === null || value === undefined) {
        out.push([c.name, 'NULL']);
        if (c.blindIndexColumn) out.push([c.blindIndexColumn, 'NULL']);
        continue;
      }
      let key = materials.get(scope);
      if (!key) {
        if (keys === 'transaction') key = params.add(scope);
        else {
          const material = await this.#keyring.keyMaterial(scope);
          if (material === undefined) {
            throw new PgsealError(ErrorCodes.NO_ACTIVE_KEY, `no active key for scope ${scope}`, { hint: `create it with \`pgseal keys init --scope ${scope}\`` });
          }
          key = params.addSecret(material);
        }
        materials.set(scope, key);
      }
      // the context is built in SQL from the values as stored (see storedText)
      let context = literal(c.context);
      if (enc.def.scopeColumn) {
        context = `pgseal.scope_context(${context}, ${storedText(params.add(values[enc.def.scopeColumn]), this.#target, enc.def.scopeColumn)})`;
      }
      if (enc.def.context === 'row') {
        const pk = values[this.#pk];
        if (pk === undefined || pk === null) {
          throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${this.def.name}.${c.name} is bound to its row: give the primary key ${this.#pk}`);
        }
        context = `pgseal.row_context(${context}, ${storedText(params.add(pk), this.#target, this.#pk)})`;
      }
      out.push([c.name, writeExpression(params.addSecret(this.#bytesOf(enc, value)), context, key, keys)]);
      if (c.blindIndexColumn) {
        const indexKey = await this.#keyring.indexKey(scope);
        if (!indexKey) throw new PgsealError(ErrorCodes.NO_INDEX_KEY, `no blind-index key for scope ${scope}`, { hint: `run \`pgseal keys init --scope ${scope}\`` });
        out.push([c.blindIndexColumn, params.add(blindIndex(indexKey, String(value), enc.def.normalize, c.context, enc.def.blindIndexBytes)) + '::bytea']);
      }
    }
    return out;
  }

  #bytesOf(c: ColumnSql & { def: Enc }, value: unknown): Buffer {
    switch (c.def.valueType) {
      case 'bytea':
        if (!Buffer.isBuffer(value)) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${this.def.name}.${c.name} takes a Buffer`);
        return Buffer.from(value); // a copy: what was sent is zeroed afterwards, the caller's buffer is not ours
      case 'jsonb':
        return Buffer.from(JSON.stringify(value), 'utf8');
      default: {
        const text = String(value);
        if (text.includes('\u0000')) {
          // as in PostgreSQL's own text type; and decrypt_text could not return it
          throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${this.def.name}.${c.name}: a text value cannot contain NUL characters`, {
            hint: 'store binary data in a bytea column (column.bytea())',
          });
        }
        return Buffer.from(text, 'utf8');
      }
    }
  }

  /** Values decrypted in SQL (as text) back to the column's type. */
  #decode(row: Record<string, unknown>): void {
    for (const c of this.#encrypted()) {
      const v = row[c.name];
      if (c.def.valueType === 'jsonb' && typeof v === 'string') row[c.name] = JSON.parse(v);
    }
  }

  #writeScopes(values: Record<string, unknown>): string[] | undefined {
    const scoped = this.#encrypted().find((c) => c.def.scopeColumn);
    const tenant = scoped ? values[scoped.def.scopeColumn!] : undefined;
    return this.#readScopes(tenant === undefined || tenant === null ? undefined : String(tenant));
  }

  async insert(values: Values<T>): Promise<Row<T>> {
    const v = values as Record<string, unknown>;
    const [row] = await this.#run<Row<T>>(this.#writeScopes(v), async (keys, params) => {
      const cells = await this.#writeRow(v, params, keys.kind, new Map());
      return `INSERT INTO ${this.#target} (${cells.map(([c]) => ident(c)).join(', ')}) VALUES (${cells.map(([, e]) => e).join(', ')}) RETURNING ${this.#select(keys)}`;
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
      const result = await this.#run<{ n: number }>(scopes.length ? scopes : undefined, async (keys, params) => {
        const materials = new Map<string, string>();
        const tuples: string[] = [];
        let columns: string[] | undefined;
        for (const r of batch) {
          const full = Object.fromEntries(names.map((n) => [n, r[n] ?? null]));
          const cells = await this.#writeRow(full, params, keys.kind, materials);
          columns ??= cells.map(([c]) => c);
          tuples.push(`(${cells.map(([, e]) => e).join(', ')})`);
        }
        return `INSERT INTO ${this.#target} (${columns!.map(ident).join(', ')}) VALUES ${tuples.join(', ')}${this.#returningKey()}`;
      }, 'write');
      inserted += (result as unknown as { count: number }).count ?? batch.length;
    }
    return inserted;
  }

  async update(pk: PrimaryKeyValue<T>, values: Values<T>): Promise<Row<T> | undefined> {
    const v = { ...(values as Record<string, unknown>) };
    // Values bound to the row's key or tenant would no longer open if those changed alone.
    for (const c of this.#encrypted()) {
      const bound = [c.def.context === 'row' ? this.#pk : undefined, c.def.scopeColumn].filter((x): x is string => x !== undefined);
      const moved = bound.filter((b) => b in v && !(b === this.#pk && v[b] === pk));
      if (moved.length > 0 && !(c.name in v)) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${this.def.name}.${c.name} is bound to ${moved.join(' and ')}: changing it means writing ${c.name} again`, {
          hint: `include ${c.name} in the same update`,
        });
      }
    }
    const scoped = this.#encrypted().find((c) => c.def.scopeColumn && c.name in v);
    if (scoped && !(scoped.def.scopeColumn! in v)) {
      const [current] = await withPgsealErrors(() =>
        this.#sql.unsafe(`SELECT ${ident(scoped.def.scopeColumn!)} AS s FROM ${this.#target} WHERE ${ident(this.#pk)} = $1`, [pk as never]),
      );
      if (!current) return undefined;
      v[scoped.def.scopeColumn!] = current.s;
    }
    v[this.#pk] = pk;
    const [row] = await this.#run<Row<T>>(this.#writeScopes(v), async (keys, params) => {
      const cells = await this.#writeRow(v, params, keys.kind, new Map(), true);
      const sets = cells.map(([c, e]) => `${ident(c)} = ${e}`);
      if (sets.length === 0) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'nothing to update');
      return `UPDATE ${this.#target} SET ${sets.join(', ')} WHERE ${ident(this.#pk)} = ${params.add(pk)} RETURNING ${this.#select(keys)}`;
    }, 'write');
    return row;
  }

  async delete(pk: PrimaryKeyValue<T>): Promise<boolean> {
    const params = new Params();
    const logKeyset = this.#accessLog.mode === 'sync' ? await this.#keyring.logKeyset() : undefined;
    try {
      const text = this.#logged(`DELETE FROM ${this.#target} WHERE ${ident(this.#pk)} = ${params.add(pk)}${this.#returningKey()}`, params, 'delete', logKeyset);
      const result = await withPgsealErrors(() => this.#sql.unsafe(text, params.values as never[], { prepare: true }));
      this.#buffer(result as unknown as Record<string, unknown>[], 'delete');
      return result.count > 0;
    } finally {
      logKeyset?.fill(0);
    }
  }

  async findByPk(pk: PrimaryKeyValue<T>, options: ScopeOption = {}): Promise<Row<T> | undefined> {
    const [row] = await this.#run<Row<T>>(this.#readScopes(options.scope), async (keys, params) => {
      return `SELECT ${this.#select(keys)} FROM ${this.#target} WHERE ${ident(this.#pk)} = ${params.add(pk)}`;
    }, 'read');
    return row;
  }

  /** Equality (one value) or IN (an array) on a plain or searchable encrypted column. */
  async findBy<K extends SearchableKey<T>>(name: K, value: Row<T>[K] | readonly Row<T>[K][], options: ScopeOption = {}): Promise<Row<T>[]> {
    const c = this.#columns.find((x) => x.name === name);
    if (!c) throw new PgsealError(ErrorCodes.COLUMN_NOT_FOUND, `${this.def.name} has no column ${String(name)}`);
    const many = Array.isArray(value);
    const wanted = (many ? value : [value]) as unknown[];
    if (c.def.kind === 'plain') {
      return this.#run<Row<T>>(this.#readScopes(options.scope), async (keys, params) =>
        `SELECT ${this.#select(keys)} FROM ${this.#target} WHERE ${ident(c.name)} ${many ? `= ANY(${params.add(wanted)})` : `= ${params.add(wanted[0])}`}`,
      'read');
    }
    const enc = c as ColumnSql & { def: Enc };
    if (!c.blindIndexColumn) {
      throw new PgsealError(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT, `${c.context} is encrypted and not searchable`, { hint: 'protect it with searchable: true to look rows up by it' });
    }
    const scope = enc.def.scopeColumn ? options.scope : (enc.def.scope ?? 'default');
    if (!scope) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${c.context} is keyed per ${enc.def.scopeColumn}: pass { scope }`);
    // every index key of the scope: rows not yet re-indexed under the active one still match
    const indexKeys = await this.#keyring.indexKeys(scope);
    if (indexKeys.length === 0) throw new PgsealError(ErrorCodes.NO_INDEX_KEY, `no blind-index key for scope ${scope}`, { hint: `run \`pgseal keys init --scope ${scope}\`` });
    const targets = new Set(wanted.map((w) => normalize(String(w), enc.def.normalize)));
    const indexes = [...targets].flatMap((w) => indexKeys.map((k) => blindIndexOfNormalized(k, w, c.context, enc.def.blindIndexBytes)));
    if (indexes.length === 0) return [];
    // the other columns' keys follow the caller's tenant, not the searched column's scope
    const rows = await this.#run<Row<T>>(this.#readScopes(options.scope), async (keys, params) => {
      const tenant = enc.def.scopeColumn ? ` AND ${ident(enc.def.scopeColumn)}::text = ${params.add(scope)}` : '';
      const match = indexes.length > 1
        ? `${ident(c.blindIndexColumn!)} = ANY(ARRAY(SELECT pg_catalog.decode(x, 'hex') FROM pg_catalog.unnest(${params.add(indexes.map((i) => i.toString('hex')))}::text[]) AS x))`
        : `${ident(c.blindIndexColumn!)} = ${params.add(indexes[0])}::bytea`;
      return `SELECT ${this.#select(keys)} FROM ${this.#target} WHERE ${match}${tenant}`;
    }, 'read');
    // the blind index is truncated: keep only rows whose value really matches
    return rows.filter((r) => {
      const v = (r as Record<string, unknown>)[c.name];
      return v !== null && v !== undefined && targets.has(normalize(String(v), enc.def.normalize));
    });
  }

  /** Keyset pagination in primary-key order. */
  async list(options: { after?: PrimaryKeyValue<T>; limit?: number } & ScopeOption = {}): Promise<{ rows: Row<T>[]; next: PrimaryKeyValue<T> | undefined }> {
    const limit = options.limit ?? 100;
    const rows = await this.#run<Row<T>>(this.#readScopes(options.scope), async (keys, params) => {
      const where: string[] = [];
      if (options.after !== undefined) where.push(`${ident(this.#pk)} > ${params.add(options.after)}`);
      const scopeColumn = this.#encrypted().find((c) => c.def.scopeColumn)?.def.scopeColumn;
      if (options.scope !== undefined && scopeColumn) where.push(`${ident(scopeColumn)}::text = ${params.add(options.scope)}`);
      const filter = where.length ? ` WHERE ${where.join(' AND ')}` : '';
      return `SELECT ${this.#select(keys)} FROM ${this.#target}${filter} ORDER BY ${ident(this.#pk)} LIMIT ${params.add(limit)}`;
    }, 'read');
    const last = rows.at(-1) as Record<string, unknown> | undefined;
    return { rows, next: rows.length === limit && last ? (last[this.#pk] as PrimaryKeyValue<T>) : undefined };
  }

  /** Checks the definition against pgseal.columns; throws REGISTRY_MISMATCH listing every difference. */
  async verify(): Promise<void> {
    const registry = await loadRegistry(this.#sql);
    const info = registry.get(`${this.def.schema}.${this.def.name}`);
    const problems: string[] = [];
    for (const c of this.#columns) {
      const r = info?.protected.get(c.name);
      if (c.def.kind === 'plain') {
        if (r) problems.push(`${c.name} is protected in the database but plain in the definition`);
        continue;
      }
      const d = c.def as Enc;
      if (!r) {
        problems.push(`${c.name} is encrypted in the definition but not registered (pgseal protect)`);
        continue;
      }
      const expect = {
        valueType: d.valueType,
        searchable: d.searchable,
        normalizer: d.normalize,
        contextMode: d.context,
        scope: d.scope ?? null,
        scopeColumn: d.scopeColumn ?? null,
        blindIndexColumn: c.blindIndexColumn ?? null,
        ...(d.searchable ? { blindIndexBytes: d.blindIndexBytes } : {}),
      };
      for (const [k, v] of Object.entries(expect)) {
        const actual = (r as unknown as Record<string, unknown>)[k];
        if (actual !== v) problems.push(`${c.name}.${k}: definition ${JSON.stringify(v)}, database ${JSON.stringify(actual)}`);
      }
    }
    for (const name of info?.protected.keys() ?? []) if (!(name in this.def.columns)) problems.push(`${name} is protected in the database but missing from the definition`);
    if (problems.length) {
      throw new PgsealError(ErrorCodes.REGISTRY_MISMATCH, `${this.def.schema}.${this.def.name} differs from pgseal.columns: ${problems.join('; ')}`, {
        hint: 'align the table definition with `pgseal columns list`',
      });
    }
  }
}
