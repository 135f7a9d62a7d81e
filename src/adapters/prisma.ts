// The Prisma adapter (pgseal/prisma): a Prisma Client extension that seals the values of
// protected columns in this process before a query reaches Prisma's engine and opens them
// after it returns, through the client-side crypto core (src/exec/client-side.ts), so no
// data key, index key, plaintext or searched value reaches the database.
//
// `await pgsealPrisma(seal, { models })` loads the keyring and checks each model's table
// definition (defineTable, the typed helpers' columns) against pgseal.columns; the returned
// extension goes to `prisma.$extends(...)`, which checks the definitions against the client's
// data model (table and column names, Bytes fields, the blind-index fields). Its query hook
// ($allModels.$allOperations, async) then, per operation:
// - writes (create, createMany[AndReturn], update, updateMany[AndReturn], upsert): every value
//   given for an encrypted field is plaintext; it is sealed (ClientCrypto.seal) and its blind
//   index set (ClientCrypto.index). Contexts that bind the row's key or tenant take them from
//   the values written, else from the where's equality on them, spelt as the database spells
//   them (canonicalTexts); without them the write is refused.
// - reads (and the rows writes and deletes return, nested includes too): the values are
//   opened (ClientCrypto.openAll: reloads once on a key version it lacks) under the row's
//   key and tenant, selected for the purpose and removed afterwards when the query did not
//   ask for them; a value that does not open is audited (data.decrypt_failed) and thrown.
// - `field: value`, `{ equals }` and `{ in }` on a searchable field, as a top-level AND
//   condition of a find, become a match on its blind index under every index key of the
//   scope; the rows found are re-checked (ClientCrypto.matches), so a truncated-index
//   collision never comes back, and take/skip count true matches only.
// - anything else that would compare, sort or group ciphertext is refused with
//   PGSEAL_UNSUPPORTED_ON_CIPHERTEXT before anything is sent.
// - accesses are logged through the executor (logAccess) with the rows' primary keys.

import type { Bytes, Types } from '@prisma/client/runtime/client';
import type { Sql } from 'postgres';
import type { AccessType } from '../audit/access-log.js';
import { columnContext } from '../columns/context.js';
import { protectedColumn, type ProtectedColumn } from '../columns/model.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import { canonicalTexts, type Canonical, type ClientCrypto, type ReadScopes, type RowTexts } from '../exec/client-side.js';
import type { KeyedExecutor } from '../exec/executor.js';
import type { ColumnDef, EncryptedColumn, Row, TableDefinition } from '../helpers/define.js';
import type { Keyring } from '../keys/keyring.js';
import { keyGeneration } from '../keys/unwrap.js';
import { loadRegistry } from '../registry/load.js';
import { verifyDefinition } from '../registry/verify.js';

type AnyTable = TableDefinition<Record<string, ColumnDef>, string>;

/** What the extension needs of a pgseal() instance (structural: adapters sit below src/index.ts). */
export interface PgsealForPrisma {
  readonly sql: Sql;
  readonly keyring: Keyring;
  readonly executor: KeyedExecutor;
  readonly crypto: ClientCrypto;
}

/** One Prisma model whose table has protected columns. */
export interface PrismaModelConfig<T extends AnyTable = AnyTable> {
  /** the table as the typed helpers define it: schema, name, primary key, encrypted columns */
  readonly table: T;
  /**
   * Prisma field -> column, for fields whose name differs from their column (`@map`): the
   * extension reads the mapping from the client's data model and checks it against this; the
   * types of the decrypted results use it.
   */
  readonly fields?: { readonly [field: string]: string };
}

export interface PgsealPrismaOptions<M extends Record<string, PrismaModelConfig>> {
  /** by Prisma model name (`Contact`, or its client property `contact`) */
  readonly models: M;
  /** compare each definition with pgseal.columns at start (default true) */
  readonly verify?: boolean;
  /** the schema of models without @@schema (default 'public'; PrismaPg's `schema` option when set) */
  readonly schema?: string;
}

type EncryptedColumns<T extends AnyTable> = { [K in keyof T['columns']]: T['columns'][K] extends EncryptedColumn<unknown, boolean> ? K : never }[keyof T['columns']] & string;
type MappedField<F, C extends string> = F extends { readonly [field: string]: string } ? { [P in keyof F]: F[P] extends C ? P : never }[keyof F] : never;
type FieldOf<M extends PrismaModelConfig, C extends string> = [MappedField<M['fields'], C>] extends [never] ? C : MappedField<M['fields'], C> & string;

/** The result fields the extension types: each encrypted field as its decrypted type (`string | null` for column.text()). */
export type PgsealPrismaResult<M extends Record<string, PrismaModelConfig>> = {
  [K in keyof M & string as Uncapitalize<K>]: {
    [C in EncryptedColumns<M[K]['table']> as FieldOf<M[K], C>]: {
      needs: { [F in FieldOf<M[K], C>]: true };
      compute: (data: Record<string, unknown>) => Row<M[K]['table']>[C];
    };
  };
};

/** What `prisma.$extends()` takes: the same shape as `Prisma.defineExtension(...)` returns. */
export type PgsealPrismaExtension<M extends Record<string, PrismaModelConfig>> = (client: any) => {
  $extends: { extArgs: Types.Extensions.InternalArgs<PgsealPrismaResult<M>, {}, {}, {}> };
};

declare const plaintextBrand: unique symbol;
/** A plaintext given where Prisma's types say Bytes: the extension seals it before Prisma sees it. */
export type Plaintext<T> = Bytes & { readonly [plaintextBrand]?: T };

/**
 * Types a plaintext for an encrypted field, which Prisma's generated types declare as Bytes:
 * `data: { email: plaintext('mario@example.it') }`, `where: { email: plaintext(x) }`. Only
 * a cast: the value itself goes to the extension, which seals it (or looks it up by its blind
 * index). Every value an encrypted field is given through the extended client is plaintext,
 * with or without this.
 */
export function plaintext<T extends string | number | bigint | boolean | Buffer | object>(value: T): Plaintext<T> {
  return value as unknown as Plaintext<T>;
}

// ---------------------------------------------------------------------------------------------
// Configuration: definitions checked against pgseal.columns (factory) and the data model ($extends)

interface Configured {
  def: AnyTable;
  qualified: string;
  audit: { schema: string; table: string };
  /** by the definition's column names */
  columns: Map<string, ProtectedColumn>;
  canonical: Canonical | undefined;
  fields: Readonly<Record<string, string>> | undefined;
}

/**
 * The extension for the given models, once the keyring is loaded (kept fresh from now on)
 * and the definitions are checked against pgseal.columns.
 */
export async function pgsealPrisma<const M extends Record<string, PrismaModelConfig>>(seal: PgsealForPrisma, options: PgsealPrismaOptions<M>): Promise<PgsealPrismaExtension<M>> {
  await seal.crypto.ready();
  seal.keyring.keepFresh();
  const registry = await loadRegistry(seal.sql);
  const configured = new Map<string, Configured>();
  for (const [model, config] of Object.entries(options.models)) {
    const def = config.table;
    const qualified = `${def.schema}.${def.name}`;
    const pk = def.columns[def.primaryKey];
    if (!pk || pk.kind !== 'plain') throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${qualified}: the primary key ${def.primaryKey} must be a plain column of the definition`);
    const columns = new Map<string, ProtectedColumn>();
    for (const [name, d] of Object.entries(def.columns)) {
      if (d.kind !== 'encrypted') continue;
      const c = protectedColumn(def.schema, def.name, name, d);
      if (c.scopeColumn && def.columns[c.scopeColumn]?.kind !== 'plain') {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${qualified}.${name} is keyed by ${c.scopeColumn}: add it to the definition as a plain column`);
      }
      columns.set(name, c);
    }
    if (options.verify ?? true) verifyDefinition(qualified, columns, def.primaryKey, registry.get(qualified));
    const bound = [...columns.values()].some((c) => c.contextMode === 'row' || c.scopeColumn);
    const canonical = bound ? await canonicalTexts(seal.sql, def.schema, def.name) : undefined;
    configured.set(lowerFirst(model), { def, qualified, audit: { schema: def.schema, table: def.name }, columns, canonical, fields: config.fields });
  }
  const protectedTables = new Set(registry.keys());
  const result: Record<string, Record<string, { needs: Record<string, true>; compute: (data: Record<string, unknown>) => unknown }>> = {};
  const extension = (client: any) => {
    const models = dataModel(client, configured, protectedTables, options.schema ?? 'public');
    for (const m of models.values()) {
      if (!m.configured) continue;
      const fields: (typeof result)[string] = {};
      // identity: the query hook opened the value already; this types it
      for (const f of m.configured.encrypted.keys()) fields[f] = { needs: { [f]: true }, compute: (data) => data[f] };
      result[m.prop] = fields;
    }
    const globalOmit = (client as { _globalOmit?: Record<string, Record<string, boolean>> })._globalOmit;
    const hook = new Hook(seal, models, globalOmit);
    return client.$extends({
      name: 'pgseal',
      result,
      query: {
        $allModels: {
          $allOperations: ({ model, operation, args, query }: { model: string; operation: string; args: unknown; query: (args: unknown) => Promise<unknown> }) => hook.run(model, operation, args, query),
        },
      },
    });
  };
  return extension as unknown as PgsealPrismaExtension<M>;
}

interface FieldInfo {
  name: string;
  kind: string;
  /** the scalar type, or the related model of a relation field */
  type: string;
  column: string;
}

interface ModelConfig {
  qualified: string;
  audit: { schema: string; table: string };
  canonical: Canonical | undefined;
  pkField: string;
  pkColumn: string;
  /** Prisma field -> column model */
  encrypted: Map<string, ProtectedColumn>;
  /** encrypted field -> its blind-index field */
  indexField: Map<string, string>;
  /** blind-index field -> the column it indexes */
  indexes: Map<string, ProtectedColumn>;
  /** scope column -> its field */
  scopeField: Map<string, string>;
  /** the fixed scopes of its columns; tenant: whether a column is keyed per row */
  fixedScopes: Set<string>;
  tenant: boolean;
}

interface ModelInfo {
  name: string;
  prop: string;
  fields: Map<string, FieldInfo>;
  configured: ModelConfig | undefined;
  /** a protected table this extension was not given */
  unconfigured: string | undefined;
  /** whether a query on it can reach a protected table (itself or through relations) */
  touches: boolean;
}

interface RuntimeDataModel {
  models: Record<string, { dbName: string | null; schema?: string | null; fields: Array<{ name: string; kind: string; type: string; dbName?: string | null }> }>;
}

/** The client's data model with the configuration laid over it (checked: names, types, blind-index fields). */
function dataModel(client: unknown, configured: ReadonlyMap<string, Configured>, protectedTables: ReadonlySet<string>, defaultSchema: string): Map<string, ModelInfo> {
  const dm = (client as { _runtimeDataModel?: RuntimeDataModel })._runtimeDataModel;
  if (!dm || typeof dm.models !== 'object') {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'this Prisma Client does not expose its data model', { hint: 'pgseal/prisma supports Prisma ORM 7 (prisma-client generator); pass the extension to prisma.$extends()' });
  }
  const models = new Map<string, ModelInfo>();
  for (const [name, model] of Object.entries(dm.models)) {
    const fields = new Map(model.fields.map((f) => [f.name, { name: f.name, kind: f.kind, type: f.type, column: f.dbName ?? f.name }]));
    const qualified = `${model.schema ?? defaultSchema}.${model.dbName ?? name}`;
    const config = configured.get(lowerFirst(name));
    models.set(name, {
      name, prop: lowerFirst(name), fields,
      configured: config ? modelConfig(name, qualified, fields, config) : undefined,
      unconfigured: !config && protectedTables.has(qualified) ? qualified : undefined,
      touches: false,
    });
  }
  for (const key of configured.keys()) {
    if (![...models.values()].some((m) => m.prop === key)) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `pgsealPrisma: the Prisma schema has no model ${key}`, { hint: 'key models by their name in schema.prisma' });
  }
  // a model touches protected data when one is reachable through its relations
  const sensitive = (m: ModelInfo) => m.configured !== undefined || m.unconfigured !== undefined;
  for (const m of models.values()) {
    const seen = new Set<string>([m.name]);
    const queue = [m];
    while (queue.length > 0 && !m.touches) {
      const at = queue.shift()!;
      if (sensitive(at)) m.touches = true;
      for (const f of at.fields.values()) {
        if (f.kind !== 'object' || seen.has(f.type)) continue;
        seen.add(f.type);
        const next = models.get(f.type);
        if (next) queue.push(next);
      }
    }
  }
  return models;
}

function modelConfig(model: string, qualified: string, fields: ReadonlyMap<string, FieldInfo>, config: Configured): ModelConfig {
  const def = config.def;
  const mismatch = (what: string, hint: string) => new PgsealError(ErrorCodes.REGISTRY_MISMATCH, `Prisma model ${model}: ${what}`, { hint });
  if (qualified !== config.qualified) throw mismatch(`it maps to ${qualified}, its definition to ${config.qualified}`, 'set @@map / @@schema in schema.prisma, or the extension\'s schema option, to the table the definition names');
  const byColumn = new Map<string, FieldInfo>();
  for (const f of fields.values()) if (f.kind !== 'object') byColumn.set(f.column, f);
  for (const [field, column] of Object.entries(config.fields ?? {})) {
    const f = fields.get(field);
    if (!f || f.column !== column) throw mismatch(`fields maps ${field} to ${column}, the Prisma schema ${f ? `to ${f.column}` : 'has no such field'}`, `declare it in schema.prisma as ${field} ... @map("${column}")`);
  }
  const fieldOf = (column: string, what: string, type?: string): string => {
    const f = byColumn.get(column);
    if (!f) throw mismatch(`no field maps to the column ${column} (${what})`, `add it to the model, e.g. ${column} ${type ?? 'Int'}${type === 'Bytes' ? '?' : ''}`);
    if (type && f.type !== type) throw mismatch(`${f.name} (${what}) is ${f.type}`, `declare it ${f.name} Bytes? in schema.prisma: it holds ciphertext`);
    return f.name;
  };
  const encrypted = new Map<string, ProtectedColumn>();
  const indexField = new Map<string, string>();
  const indexes = new Map<string, ProtectedColumn>();
  const scopeField = new Map<string, string>();
  const fixedScopes = new Set<string>();
  let tenant = false;
  for (const c of config.columns.values()) {
    const f = fieldOf(c.column, 'an encrypted column', 'Bytes');
    encrypted.set(f, c);
    if (c.blindIndexColumn) {
      const b = fieldOf(c.blindIndexColumn, `the blind index of ${c.column}`, 'Bytes');
      indexField.set(f, b);
      indexes.set(b, c);
    }
    if (c.scopeColumn) {
      scopeField.set(c.scopeColumn, fieldOf(c.scopeColumn, `the tenant of ${c.column}`));
      tenant = true;
    } else fixedScopes.add(c.scope ?? 'default');
  }
  const pkField = fieldOf(def.primaryKey, 'the primary key');
  return { qualified, audit: config.audit, canonical: config.canonical, pkField, pkColumn: def.primaryKey, encrypted, indexField, indexes, scopeField, fixedScopes, tenant };
}

const lowerFirst = (s: string) => s.charAt(0).toLowerCase() + s.slice(1);

// ---------------------------------------------------------------------------------------------
// The query hook

function refuse(message: string, hint: string): PgsealError {
  return new PgsealError(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT, message, { hint });
}

type Obj = Record<string, unknown>;
type Query = (args: unknown) => Promise<unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) && !(v instanceof Date);
/** A filter or an update operation ({ equals }, { set }), as opposed to a value: a Decimal, a Date or a Buffer is a value. */
const isPlain = (v: unknown): v is Obj => isObj(v) && (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);
const oneOrMany = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);
const mapOneOrMany = (v: unknown, f: (x: unknown) => unknown): unknown => (Array.isArray(v) ? v.map(f) : f(v));
const isPrimitive = (v: unknown): boolean => typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean';

const READS = new Set(['findUnique', 'findUniqueOrThrow', 'findFirst', 'findFirstOrThrow', 'findMany']);
const AGGREGATES = new Set(['count', 'aggregate', 'groupBy']);
const WRITES = new Set(['create', 'createMany', 'createManyAndReturn', 'update', 'updateMany', 'updateManyAndReturn', 'upsert', 'delete', 'deleteMany']);
/** the keys of a filter through a relation (`orders: { some: ... }`) */
const RELATION_FILTERS = new Set(['some', 'every', 'none', 'is', 'isNot']);

/** What a query's result must get: its rows opened, re-checked, logged and cleaned, per level of its selection. */
interface Selection {
  model: ModelInfo;
  /** fields the extension selected for itself */
  strip: string[];
  relations: Map<string, Selection>;
}

interface Check {
  field: string;
  column: ProtectedColumn;
  targets: ReadonlySet<string>;
}

interface WhereContext {
  /** 'find': equality on a searchable field becomes a blind-index lookup at the top level; else refused */
  lookups: boolean;
  what: string;
  checks: Check[];
  facts: ReadonlyMap<string, unknown>;
}

class Hook {
  readonly #seal: PgsealForPrisma;
  readonly #models: ReadonlyMap<string, ModelInfo>;
  readonly #globalOmit: Readonly<Record<string, Readonly<Record<string, boolean>>>> | undefined;

  constructor(seal: PgsealForPrisma, models: ReadonlyMap<string, ModelInfo>, globalOmit: Record<string, Record<string, boolean>> | undefined) {
    this.#seal = seal;
    this.#models = models;
    this.#globalOmit = globalOmit;
  }

  async run(modelName: string, operation: string, args: unknown, query: Query): Promise<unknown> {
    const model = this.#models.get(modelName);
    if (!model || !model.touches) return query(args);
    this.#assertConfigured(model);
    return new Operation(this.#seal, this, model, operation, isObj(args) ? args : {}, query).run();
  }

  model(name: string): ModelInfo | undefined {
    return this.#models.get(name);
  }

  globalOmit(m: ModelInfo): Readonly<Record<string, boolean>> | undefined {
    return this.#globalOmit?.[m.prop];
  }

  #assertConfigured(m: ModelInfo): void {
    if (m.unconfigured) throw notConfigured(m);
  }
}

function notConfigured(m: ModelInfo): PgsealError {
  return refuse(`${m.unconfigured} (Prisma model ${m.name}) has protected columns (pgseal.columns) but is not among the extension's models`, `add it to pgsealPrisma(seal, { models: { ${m.name}: { table: <its defineTable definition> } } })`);
}

class Operation {
  readonly #seal: PgsealForPrisma;
  readonly #hook: Hook;
  readonly #model: ModelInfo;
  readonly #op: string;
  /** the caller's args (as Prisma cloned them), and the copy the query runs with */
  readonly #given: Obj;
  readonly #args: Obj;
  readonly #query: Query;
  #keysChecked: Promise<void> | undefined;

  constructor(seal: PgsealForPrisma, hook: Hook, model: ModelInfo, op: string, args: Obj, query: Query) {
    this.#seal = seal;
    this.#hook = hook;
    this.#model = model;
    this.#op = op;
    this.#given = args;
    this.#args = { ...args };
    this.#query = query;
  }

  get #crypto(): ClientCrypto {
    return this.#seal.crypto;
  }

  get #logging(): boolean {
    return this.#seal.executor.logging;
  }

  #where(m: ModelInfo, where: unknown, ctx: WhereContext, top: boolean): unknown {
    if (!isObj(where)) return where;
    const cfg = m.configured;
    const out: Obj = {};
    for (const [k, v] of Object.entries(where)) {
      if (k === 'AND') {
        out[k] = mapOneOrMany(v, (x) => this.#where(m, x, ctx, top));
        continue;
      }
      if (k === 'OR' || k === 'NOT') {
        out[k] = mapOneOrMany(v, (x) => this.#where(m, x, ctx, false));
        continue;
      }
      const f = m.fields.get(k);
      if (!f) {
        // a compound unique (tenant_id: { tenant, id }): its parts are plain or refused as fields
        if (isObj(v) && Object.keys(v).length > 0 && Object.keys(v).every((p) => m.fields.has(p))) {
          this.#where(m, v, { ...ctx, lookups: false }, false);
        }
        out[k] = v;
        continue;
      }
      if (f.kind === 'object') {
        out[k] = this.#relationFilter(f, v, ctx);
        continue;
      }
      if (cfg?.indexes.has(k)) {
        throw refuse(`${m.name}.${k} is the blind index of ${columnContext(cfg.indexes.get(k)!)}: pgseal computes it`, `filter on ${fieldOfColumn(cfg, cfg.indexes.get(k)!)} with the plaintext (equality or in) instead`);
      }
      const c = cfg?.encrypted.get(k);
      if (!c) {
        out[k] = v;
        continue;
      }
      if (v === undefined || isNullFilter(v)) {
        out[k] = v;
        continue;
      }
      const where = `${m.name}.${k} (${columnContext(c)})`;
      if (!c.searchable) throw refuse(`${where} is encrypted and not searchable: ${ctx.what} cannot compare it`, 'protect it with searchable: true (a blind index: equality and in), or filter in the application after reading');
      const values = equalityValues(v);
      if (!values) throw refuse(`${where}: ${operatorsOf(v)} cannot run on ciphertext`, 'only equality and in run on a searchable field (through its blind index): filter in the application after reading');
      if (!ctx.lookups) throw refuse(`${where}: ${ctx.what} cannot match a blind index`, lookupHint(ctx.what, m));
      if (!top) throw refuse(`${where}: equality under OR or NOT cannot run on a blind index (a truncated index collides)`, 'put the equality at the top level of the where (AND), or run one query per alternative');
      const scope = this.#lookupScope(m, c, ctx.facts);
      const { indexes, targets } = this.#crypto.lookup(c, values.map((x) => (c.valueType === 'bytea' ? asBuffer(x) : x)), scope);
      ctx.checks.push({ field: k, column: c, targets });
      out[cfg!.indexField.get(k)!] = { in: indexes };
    }
    return out;
  }

  /** The scope whose index keys a lookup uses: the column's fixed one, or the tenant the where names. */
  #lookupScope(m: ModelInfo, c: ProtectedColumn, facts: ReadonlyMap<string, unknown>): string {
    if (!c.scopeColumn) return c.scope ?? 'default';
    const cfg = m.configured!;
    const field = cfg.scopeField.get(c.scopeColumn)!;
    const v = facts.get(field);
    if (v === undefined || v === null) {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(c)} is keyed by ${c.scopeColumn}: a lookup must name the tenant`, { hint: `add ${field}: <tenant> to the top level of the where` });
    }
    return cfg.canonical!(c.scopeColumn, v);
  }

  /** A filter through a relation: the related model's fields checked, no lookup (its rows are not the result's). */
  #relationFilter(f: FieldInfo, v: unknown, ctx: WhereContext): unknown {
    const target = this.#hook.model(f.type);
    if (!target || !target.touches) return v;
    if (target.unconfigured) throw notConfigured(target);
    const nested: WhereContext = { ...ctx, lookups: false, what: `a filter through ${f.name}`, facts: new Map() };
    if (!isObj(v)) return v;
    if (Object.keys(v).every((k) => RELATION_FILTERS.has(k))) {
      const out: Obj = {};
      for (const [k, x] of Object.entries(v)) out[k] = this.#where(target, x, nested, false);
      return out;
    }
    return this.#where(target, v, nested, false);
  }

  /** ORDER BY, cursor, distinct, group by: nothing of ciphertext. */
  #orderBy(m: ModelInfo, v: unknown, what = 'orderBy'): void {
    for (const item of oneOrMany(v)) {
      if (!isObj(item)) continue;
      for (const [k, x] of Object.entries(item)) {
        if (k === '_relevance' && isObj(x)) {
          for (const f of oneOrMany(x.fields)) if (typeof f === 'string') this.#plainOnly(m, f, what);
          continue;
        }
        const f = m.fields.get(k);
        if (!f) continue;
        if (f.kind === 'object') {
          const target = this.#hook.model(f.type);
          if (target?.touches) {
            if (target.unconfigured) throw notConfigured(target);
            this.#orderBy(target, x, what);
          }
          continue;
        }
        this.#plainOnly(m, k, what);
      }
    }
  }

  #plainOnly(m: ModelInfo, field: string, what: string): void {
    const cfg = m.configured;
    const c = cfg?.encrypted.get(field) ?? cfg?.indexes.get(field);
    if (!c) return;
    const hint = what === 'orderBy' ? 'sort the rows in the application after reading, or order by a plain field'
      : what === 'cursor' ? 'page with a cursor on the primary key or another plain unique field'
        : what === 'distinct' || what === 'groupBy' ? 'group in the application after reading, or by a plain field'
          : 'select the field itself (pgseal opens it in this process) and compute in the application';
    throw refuse(`${m.name}.${field} (${columnContext(c)}) holds ${cfg!.indexes.has(field) ? 'a blind index' : 'ciphertext'}: ${what} on it cannot run`, hint);
  }

  /** Nested writes into a protected model: only those that carry none of its encrypted values (connect, disconnect, plain fields). */
  #nestedWrite(m: ModelInfo, value: unknown, relation: string): void {
    if (!m.touches) return;
    if (m.unconfigured) throw notConfigured(m);
    const visit = (v: unknown): void => {
      if (Array.isArray(v)) {
        v.forEach(visit);
        return;
      }
      if (!isObj(v)) return;
      for (const [k, x] of Object.entries(v)) {
        const f = m.fields.get(k);
        if (!f) {
          visit(x); // create, connectOrCreate, where, data, update, ...: the same model's values
          continue;
        }
        if (f.kind === 'object') {
          const target = this.#hook.model(f.type);
          if (target) this.#nestedWrite(target, x, `${relation}.${k}`);
          continue;
        }
        const c = m.configured?.encrypted.get(k) ?? m.configured?.indexes.get(k);
        if (c && x !== undefined && !isNullFilter(x)) {
          throw refuse(`a nested write through ${relation} gives ${m.name}.${k} (${columnContext(c)}): pgseal seals values of the model written, not of nested writes`, `write the ${m.name} row with its own prisma.${m.prop}.create / update call`);
        }
      }
    };
    visit(value);
  }

  // ---- selection

  /**
   * The selection of one level (select / include / omit) made to return what the extension
   * needs (the primary key, the tenant, a field a lookup re-checks), and the levels below.
   */
  #selection(m: ModelInfo, args: Obj, needed: readonly string[] = []): Selection {
    if (m.unconfigured) throw notConfigured(m);
    const sel: Selection = { model: m, strip: [], relations: new Map() };
    const cfg = m.configured;
    const present = new Set<string>();
    const nestedArgs = (f: FieldInfo, v: unknown): unknown => {
      const target = this.#hook.model(f.type);
      if (!target || !target.touches) return v;
      const a: Obj = isObj(v) ? { ...v } : {};
      this.#nestedQueryArgs(target, a);
      sel.relations.set(f.name, this.#selection(target, a));
      return Object.keys(a).length === 0 && v === true ? true : a;
    };
    const countArgs = (v: unknown): void => {
      if (!isObj(v) || !isObj(v.select)) return;
      for (const [k, x] of Object.entries(v.select)) {
        const f = m.fields.get(k);
        const target = f?.kind === 'object' ? this.#hook.model(f.type) : undefined;
        if (target?.touches && isObj(x)) this.#nestedQueryArgs(target, { where: x.where });
      }
    };
    if (isObj(args.select)) {
      const select: Obj = { ...args.select };
      for (const [k, v] of Object.entries(select)) {
        if (!v) continue;
        if (k === '_count') countArgs(v);
        const f = m.fields.get(k);
        if (!f) continue;
        if (f.kind === 'object') select[k] = nestedArgs(f, v);
        else if (cfg?.encrypted.has(k)) present.add(k);
      }
      for (const f of needed) present.add(f);
      for (const f of this.#needs(m, present)) {
        if (select[f]) continue;
        select[f] = true;
        sel.strip.push(f);
      }
      args.select = select;
      return sel;
    }
    if (isObj(args.include)) {
      const include: Obj = { ...args.include };
      for (const [k, v] of Object.entries(include)) {
        if (!v) continue;
        if (k === '_count') countArgs(v);
        const f = m.fields.get(k);
        if (f?.kind === 'object') include[k] = nestedArgs(f, v);
      }
      args.include = include;
    }
    if (!cfg) return sel;
    const omit: Obj = isObj(args.omit) ? { ...args.omit } : {};
    const global = this.#hook.globalOmit(m);
    const omitted = (f: string) => omit[f] === true || (global?.[f] === true && omit[f] !== false);
    for (const f of cfg.encrypted.keys()) if (!omitted(f)) present.add(f);
    for (const f of needed) present.add(f);
    let changed = false;
    for (const f of this.#needs(m, present)) {
      if (!omitted(f)) continue;
      omit[f] = false;
      sel.strip.push(f);
      changed = true;
    }
    if (changed || isObj(args.omit)) args.omit = omit;
    return sel;
  }

  /** The fields the extension needs beside the encrypted ones returned: their rows' key (contexts, log) and tenant. */
  #needs(m: ModelInfo, present: ReadonlySet<string>): string[] {
    const cfg = m.configured;
    if (!cfg || present.size === 0) return [...present];
    const out = new Set(present);
    for (const f of present) {
      const c = cfg.encrypted.get(f);
      if (!c) continue;
      if (c.contextMode === 'row') out.add(cfg.pkField);
      if (c.scopeColumn) out.add(cfg.scopeField.get(c.scopeColumn)!);
    }
    if (this.#logging) out.add(cfg.pkField);
    return [...out];
  }

  /** A relation's own where / orderBy / cursor / distinct, in a select or include. */
  #nestedQueryArgs(target: ModelInfo, a: Obj): void {
    if (target.unconfigured) throw notConfigured(target);
    if (a.where !== undefined) a.where = this.#where(target, a.where, { lookups: false, what: 'a nested where', checks: [], facts: new Map() }, false);
    if (a.orderBy !== undefined) this.#orderBy(target, a.orderBy);
    if (isObj(a.cursor)) for (const k of Object.keys(a.cursor)) this.#plainOnly(target, k, 'cursor');
    for (const d of a.distinct === undefined ? [] : oneOrMany(a.distinct)) if (typeof d === 'string') this.#plainOnly(target, d, 'distinct');
  }

  // ---- results

  /** Rows of each level of a result, by selection. */
  #collect(sel: Selection, value: unknown, groups: Map<Selection, Obj[]>): void {
    if (value === null || value === undefined) return;
    if (Array.isArray(value)) {
      for (const v of value) this.#collect(sel, v, groups);
      return;
    }
    if (!isObj(value)) return;
    if (sel.model.configured) {
      let rows = groups.get(sel);
      if (!rows) groups.set(sel, (rows = []));
      rows.push(value);
    }
    for (const [field, child] of sel.relations) this.#collect(child, value[field], groups);
  }

  /** Every protected value of a result opened in place (under `scopes` at the top level). */
  async #openResult(sel: Selection, value: unknown, scopes: ReadScopes): Promise<void> {
    const groups = new Map<Selection, Obj[]>();
    this.#collect(sel, value, groups);
    for (const [s, rows] of groups) await this.#open(s.model, rows, s === sel ? scopes : readScopes(s.model.configured!, undefined));
  }

  async #open(m: ModelInfo, rows: Obj[], scopes: ReadScopes): Promise<void> {
    const cfg = m.configured!;
    const fields = [...cfg.encrypted.keys()].filter((f) => rows.some((r) => f in r && r[f] !== null && r[f] !== undefined));
    if (fields.length === 0) return;
    const columns = fields.map((f) => cfg.encrypted.get(f)!);
    const texts = new WeakMap<Obj, Map<string, RowTexts>>();
    const synthetic = rows.map((r) => {
      const s: Obj = {};
      const t = new Map<string, RowTexts>();
      fields.forEach((f, i) => {
        const v = r[f];
        if (v === undefined) return;
        const c = columns[i]!;
        s[c.column] = v === null ? null : asBuffer(v);
        if (v !== null) t.set(c.column, this.#rowTexts(m, c, (field) => r[field], 'read'));
      });
      texts.set(s, t);
      return s;
    });
    try {
      await this.#crypto.openAll(this.#seal.sql, synthetic, columns, (s, c) => texts.get(s)?.get(c.column) ?? {}, scopes);
    } catch (error) {
      await this.#seal.executor.auditFailure(cfg.audit, error);
      throw error;
    }
    rows.forEach((r, i) => {
      const s = synthetic[i]!;
      fields.forEach((f, j) => {
        if (columns[j]!.column in s) r[f] = s[columns[j]!.column];
      });
    });
  }

  /** The key and tenant texts of a value's context, from a row's (or a write's) values, as the database spells them. */
  #rowTexts(m: ModelInfo, c: ProtectedColumn, valueOf: (field: string) => unknown, what: 'read' | 'create' | 'update'): RowTexts {
    const cfg = m.configured!;
    const texts: RowTexts = {};
    if (c.scopeColumn) {
      const field = cfg.scopeField.get(c.scopeColumn)!;
      const v = valueOf(field);
      if (v === null || v === undefined) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(c)} is keyed by ${c.scopeColumn}: the ${what} must give its value`, {
          hint: what === 'create' ? `include ${field} in data (as the scalar field, not through a relation connect)` : what === 'update' ? `add ${field}: <tenant> to the where, or set it in data, in the same update` : `select ${field}`,
        });
      }
      texts.scope = cfg.canonical!(c.scopeColumn, v);
    }
    if (c.contextMode === 'row') {
      const v = valueOf(cfg.pkField);
      if (v === null || v === undefined) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(c)} is bound to its row: the ${what} must give the primary key ${cfg.pkField}`, {
          hint: what === 'create' ? `include ${cfg.pkField} in data (a key the database generates is not known before the row is written)` : what === 'update' ? `update one row by its primary key: where: { ${cfg.pkField}: key }` : `select ${cfg.pkField}`,
        });
      }
      texts.key = cfg.canonical!(cfg.pkColumn, v);
    }
    return texts;
  }

  /** Removes what the extension selected for itself. */
  #strip(sel: Selection, value: unknown): void {
    if (value === null || value === undefined) return;
    if (Array.isArray(value)) {
      for (const v of value) this.#strip(sel, v);
      return;
    }
    if (!isObj(value)) return;
    for (const f of sel.strip) delete value[f];
    for (const [field, child] of sel.relations) this.#strip(child, value[field]);
  }

  /** Logs each level's rows: the top level as `type` for the columns written (read for the others), nested levels as read. */
  async #log(sel: Selection, value: unknown, top?: { type: AccessType; written: readonly string[] }): Promise<void> {
    if (!this.#logging) return;
    const groups = new Map<Selection, Obj[]>();
    this.#collect(sel, value, groups);
    for (const [s, rows] of groups) {
      const cfg = s.model.configured!;
      const keyed = rows.filter((r) => r[cfg.pkField] !== null && r[cfg.pkField] !== undefined);
      const returned = [...cfg.encrypted.keys()].filter((f) => rows.some((r) => f in r)).map((f) => cfg.encrypted.get(f)!.column);
      const written = s === sel && top ? top.written : [];
      const read = returned.filter((c) => !written.includes(c));
      const table = cfg.qualified;
      if (written.length > 0) await this.#seal.executor.logAccess({ table, primaryKey: cfg.pkField, columns: written, type: top!.type }, keyed);
      if (read.length > 0) await this.#seal.executor.logAccess({ table, primaryKey: cfg.pkField, columns: read, type: 'read' }, keyed);
    }
  }

  /** Keys revoked elsewhere stop opening values here within revocationCheckMs (as the helpers' reads). */
  #revocationCheck(): Promise<string | number | undefined> | undefined {
    if (!this.#crypto.revocationCheckDue()) return undefined;
    const check = keyGeneration(this.#seal.sql);
    check.catch(() => undefined); // awaited after the query; not unhandled if the query fails first
    return check;
  }

  /** Before a seal: the keys loaded, and none revoked since (a write always checks, as the helpers' guard). */
  #beforeSeal(): Promise<void> {
    return (this.#keysChecked ??= (async () => {
      await this.#crypto.ready();
      await this.#crypto.revocationSeen(await keyGeneration(this.#seal.sql));
    })());
  }

  // ---- writes

  /** One row of data (create) or one update's data: encrypted values sealed, their blind indexes set. */
  async #sealData(m: ModelInfo, data: unknown, what: 'create' | 'update', facts: ReadonlyMap<string, unknown>, written: Set<string>): Promise<unknown> {
    if (!isObj(data)) return data;
    const cfg = m.configured;
    const out: Obj = { ...data };
    const given = (field: string): unknown => {
      let v = data[field];
      if (what === 'update' && isPlain(v) && Object.keys(v).length === 1 && 'set' in v) v = v.set;
      return v === undefined ? facts.get(field) : v;
    };
    for (const [k, v] of Object.entries(data)) {
      const f = m.fields.get(k);
      if (f?.kind === 'object') {
        const target = this.#hook.model(f.type);
        if (target) this.#nestedWrite(target, v, `${m.name}.${k}`);
        continue;
      }
      if (!cfg) continue;
      if (cfg.indexes.has(k)) throw refuse(`${m.name}.${k} is the blind index of ${columnContext(cfg.indexes.get(k)!)}: pgseal writes it`, `set ${fieldOfColumn(cfg, cfg.indexes.get(k)!)} only`);
      const c = cfg.encrypted.get(k);
      if (!c || v === undefined) continue;
      let value: unknown = v;
      if (what === 'update' && isPlain(v) && Object.keys(v).length === 1 && 'set' in v) value = v.set;
      else if (what === 'update' && c.valueType !== 'jsonb' && isPlain(v)) throw refuse(`${m.name}.${k} (${columnContext(c)}): ${Object.keys(v).join(', ')} cannot run on ciphertext`, 'set the new value ({ set: value } or the value itself)');
      written.add(c.column);
      const index = cfg.indexField.get(k);
      if (value === null) {
        out[k] = null;
        if (index) out[index] = null;
        continue;
      }
      await this.#beforeSeal();
      if (c.valueType === 'bytea') value = asBuffer(value);
      const texts = this.#rowTexts(m, c, given, what);
      out[k] = this.#crypto.seal(c, value, texts);
      if (index) out[index] = this.#crypto.index(c, value, texts);
    }
    if (cfg && what === 'update') {
      // a value bound to the row's key or tenant would no longer open if they changed alone
      for (const [f, c] of cfg.encrypted) {
        const bound = [c.contextMode === 'row' ? cfg.pkField : undefined, c.scopeColumn ? cfg.scopeField.get(c.scopeColumn) : undefined].filter((x): x is string => x !== undefined);
        const moved = bound.filter((b) => data[b] !== undefined);
        if (moved.length > 0 && data[f] === undefined) {
          throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(c)} is bound to ${moved.join(' and ')}: changing it means writing ${f} again`, { hint: `set ${f} in the same update (read it first)` });
        }
      }
    }
    return out;
  }

  /** Seals a write's values; a scope whose key this process has not loaded yet reloads the keyring once. */
  async #sealAll<T>(seal: () => Promise<T>): Promise<T> {
    try {
      return await seal();
    } catch (error) {
      if (!(error instanceof PgsealError) || (error.code !== ErrorCodes.NO_ACTIVE_KEY && error.code !== ErrorCodes.NO_INDEX_KEY)) throw error;
      await this.#seal.keyring.refresh();
      return seal();
    }
  }

  // ---- operations

  async run(): Promise<unknown> {
    if (READS.has(this.#op)) return this.#read();
    if (AGGREGATES.has(this.#op)) return this.#aggregate();
    if (WRITES.has(this.#op)) return this.#write();
    throw refuse(`prisma.${this.#model.prop}.${this.#op}() on a model with protected data is not supported by pgseal/prisma`, 'use find*, create*, update*, upsert, delete*, count, aggregate or groupBy; or seal.query / seal.table for this access');
  }

  #context(what: string, lookups: boolean): WhereContext {
    const m = this.#model;
    return { lookups, what, checks: [], facts: facts(m, this.#args.where) };
  }

  #queryParts(ctx: WhereContext): void {
    const m = this.#model;
    const a = this.#args;
    if (a.where !== undefined) a.where = this.#where(m, a.where, ctx, true);
    if (a.orderBy !== undefined) this.#orderBy(m, a.orderBy);
    if (isObj(a.cursor)) for (const k of Object.keys(a.cursor)) this.#plainOnly(m, k, 'cursor');
    for (const d of a.distinct === undefined ? [] : oneOrMany(a.distinct)) if (typeof d === 'string') this.#plainOnly(m, d, 'distinct');
  }

  async #read(): Promise<unknown> {
    const m = this.#model;
    const a = this.#args;
    const ctx = this.#context(`prisma.${m.prop}.${this.#op}()`, true);
    this.#queryParts(ctx);
    const checks = ctx.checks;
    if (checks.length > 0) {
      if (a.distinct !== undefined) throw refuse(`${m.name}: distinct with a lookup on an encrypted field cannot be kept exact (a truncated blind index collides)`, 'drop distinct and de-duplicate in the application');
      if (typeof a.take === 'number' && a.take < 0) throw refuse(`${m.name}: a negative take with a lookup on an encrypted field`, 'reverse the orderBy and take a positive number');
    }
    const sel = this.#selection(m, a, checks.map((c) => c.field));
    const generation = this.#revocationCheck();
    const scopes = m.configured ? readScopes(m.configured, ctx.facts) : undefined;
    let seen = false;
    // fetched rows opened and re-checked: what a lookup really matched
    const settle = async (value: unknown): Promise<Obj[]> => {
      if (generation && !seen) {
        seen = true;
        await this.#crypto.revocationSeen(await generation);
      }
      await this.#openResult(sel, value, scopes);
      const rows = (Array.isArray(value) ? value : value === null || value === undefined ? [] : [value]) as Obj[];
      return checks.length === 0 ? rows : rows.filter((r) => checks.every((ch) => this.#crypto.matches(ch.column, r[ch.field], ch.targets)));
    };
    let result: unknown;
    if (this.#op === 'findMany') {
      result = checks.length === 0 ? await settle(await this.#query(a)) : await this.#findManyExact(a, settle);
    } else if (this.#op === 'findFirst' || this.#op === 'findFirstOrThrow') {
      result = checks.length === 0 ? (await settle(await this.#query(a)))[0] ?? null : await this.#findFirstExact(a, settle);
    } else {
      const [row] = await settle(await this.#query(a));
      result = row ?? null;
      if (row === undefined && checks.length > 0 && this.#op === 'findUniqueOrThrow') {
        // the only row found was a blind-index collision: Prisma's own not-found error (P2025), from a where that matches nothing
        const where = a.where as Obj;
        await this.#query({ ...a, where: { ...where, AND: [...oneOrMany(where.AND ?? []), { [m.configured!.pkField]: { in: [] } }] } });
        result = null;
      }
    }
    await this.#log(sel, result);
    this.#strip(sel, result);
    return result;
  }

  /** findMany with a lookup: take and skip count rows that really match (a collision is dropped, not counted). */
  async #findManyExact(a: Obj, settle: (value: unknown) => Promise<Obj[]>): Promise<Obj[]> {
    const skip = typeof a.skip === 'number' ? a.skip : 0;
    const take = typeof a.take === 'number' ? a.take : undefined;
    const all: Obj = { ...a };
    delete all.skip;
    delete all.take;
    if (take !== undefined) {
      // the first skip + take candidates; when none of them collided they are the answer
      const fetched = (await this.#query({ ...all, take: skip + take })) as Obj[];
      const kept = await settle(fetched);
      if (kept.length === fetched.length) return kept.slice(skip, skip + take);
    }
    return (await settle(await this.#query(all))).slice(skip, take === undefined ? undefined : skip + take);
  }

  /** findFirst with a lookup: candidates one at a time until one really matches (skip counts true matches). */
  async #findFirstExact(a: Obj, settle: (value: unknown) => Promise<Obj[]>): Promise<Obj | null> {
    const skip = typeof a.skip === 'number' ? a.skip : 0;
    let matched = 0;
    for (let offset = 0; ; offset++) {
      // findFirstOrThrow throws Prisma's own P2025 when no candidate is left
      const row = await this.#query({ ...a, skip: offset });
      if (row === null || row === undefined) return null;
      const [kept] = await settle(row);
      if (kept && matched++ === skip) return kept;
    }
  }

  async #aggregate(): Promise<unknown> {
    const m = this.#model;
    const a = this.#args;
    const ctx = this.#context(`prisma.${m.prop}.${this.#op}()`, false);
    this.#queryParts(ctx);
    if (this.#op === 'groupBy') {
      for (const b of oneOrMany(a.by)) if (typeof b === 'string') this.#plainOnly(m, b, 'groupBy');
      if (a.having !== undefined) a.having = this.#where(m, a.having, { ...ctx, what: 'having' }, false);
    }
    for (const agg of ['_min', '_max', '_avg', '_sum']) {
      if (isObj(a[agg])) for (const [k, v] of Object.entries(a[agg] as Obj)) if (v) this.#plainOnly(m, k, agg);
    }
    return this.#query(a);
  }

  async #write(): Promise<unknown> {
    const m = this.#model;
    const a = this.#args;
    const op = this.#op;
    const ctx = this.#context(`prisma.${m.prop}.${op}()`, false);
    this.#queryParts(ctx);
    const written = new Set<string>();
    const given = this.#given;
    // sealed from the caller's values each time: a retry after a reload seals them again
    await this.#sealAll(async () => {
      written.clear();
      if (op === 'create') a.data = await this.#sealData(m, given.data, 'create', new Map(), written);
      else if (op === 'createMany' || op === 'createManyAndReturn') {
        a.data = Array.isArray(given.data)
          ? await Promise.all(given.data.map((d) => this.#sealData(m, d, 'create', new Map(), written)))
          : await this.#sealData(m, given.data, 'create', new Map(), written);
      } else if (op === 'update' || op === 'updateMany' || op === 'updateManyAndReturn') {
        a.data = await this.#sealData(m, given.data, 'update', ctx.facts, written);
      } else if (op === 'upsert') {
        a.create = await this.#sealData(m, given.create, 'create', new Map(), written);
        a.update = await this.#sealData(m, given.update, 'update', ctx.facts, written);
      }
    });
    const cfg = m.configured;
    const type: AccessType = op === 'delete' || op === 'deleteMany' ? 'delete' : 'write';
    const logged = type === 'delete' ? [...(cfg?.encrypted.values() ?? [])].map((c) => c.column) : [...written];
    if (op === 'createMany' || op === 'updateMany' || op === 'deleteMany') {
      const result = (await this.#query(a)) as { count?: number } | undefined;
      if (this.#logging && cfg && logged.length > 0) {
        // no rows come back: the keys written (createMany: every row given, so with skipDuplicates
        // the skipped ones too), the key the where names, else row_id null for each row counted
        const key = ctx.facts.get(cfg.pkField);
        const rows = op === 'createMany'
          ? (result?.count ?? 0) > 0 ? oneOrMany(given.data).map((d) => ({ [cfg.pkField]: isObj(d) ? d[cfg.pkField] : undefined })) : []
          : Array.from({ length: result?.count ?? 0 }, () => ({ [cfg.pkField]: key }));
        await this.#seal.executor.logAccess({ table: cfg.qualified, primaryKey: cfg.pkField, columns: logged, type }, rows);
      }
      return result;
    }
    // the primary key of the rows written comes back for the log, even when the select leaves it out
    const sel = this.#selection(m, a, this.#logging && cfg && logged.length > 0 ? [cfg.pkField] : []);
    const result = await this.#query(a);
    await this.#openResult(sel, result, cfg ? readScopes(cfg, ctx.facts) : undefined);
    await this.#log(sel, result, { type, written: logged });
    this.#strip(sel, result);
    return result;
  }

}

/** The field a protected column is read through. */
function fieldOfColumn(cfg: ModelConfig, c: ProtectedColumn): string {
  for (const [f, x] of cfg.encrypted) if (x === c) return f;
  return c.column;
}

/** The scopes a read may open: fixed ones, plus the tenant the where names; undefined (every loaded one) for a tenant not named. */
function readScopes(cfg: ModelConfig, known: ReadonlyMap<string, unknown> | undefined): ReadScopes {
  if (!cfg.tenant) return cfg.fixedScopes;
  const scopes = new Set(cfg.fixedScopes);
  for (const [column, field] of cfg.scopeField) {
    const v = known?.get(field);
    if (v === undefined || v === null) return undefined;
    scopes.add(cfg.canonical!(column, v));
  }
  return scopes;
}

/** Plain-field equalities at the top level of a where (AND included): what a context or lookup may take a key or tenant from. */
function facts(m: ModelInfo, where: unknown, out = new Map<string, unknown>()): Map<string, unknown> {
  if (!isObj(where)) return out;
  for (const [k, v] of Object.entries(where)) {
    if (k === 'AND') {
      for (const x of oneOrMany(v)) facts(m, x, out);
      continue;
    }
    const f = m.fields.get(k);
    if (!f) {
      if (isObj(v) && Object.keys(v).length > 0 && Object.keys(v).every((p) => m.fields.get(p)?.kind === 'scalar')) facts(m, v, out);
      continue;
    }
    if (f.kind !== 'scalar' || m.configured?.encrypted.has(k) || m.configured?.indexes.has(k)) continue;
    if (isPrimitive(v)) out.set(k, v);
    else if (isObj(v) && Object.keys(v).length === 1 && isPrimitive(v.equals)) out.set(k, v.equals);
  }
  return out;
}

function isNullFilter(v: unknown): boolean {
  if (v === null) return true;
  if (!isPlain(v)) return false;
  const keys = Object.keys(v);
  return keys.length === 1 && (keys[0] === 'equals' || keys[0] === 'not') && v[keys[0]!] === null;
}

/** The values of `field: v`, `{ equals: v }` or `{ in: [...] }`; undefined for any other filter (a field reference included). */
function equalityValues(v: unknown): unknown[] | undefined {
  const value = (x: unknown) => isPrimitive(x) || ArrayBuffer.isView(x);
  if (value(v)) return [v];
  if (!isPlain(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length !== 1) return undefined;
  if (keys[0] === 'equals' && value(v.equals)) return [v.equals];
  if (keys[0] === 'in' && Array.isArray(v.in) && v.in.every(value)) return v.in;
  return undefined;
}

function operatorsOf(v: unknown): string {
  return isObj(v) ? Object.keys(v).join(', ') || 'an empty filter' : 'this filter';
}

function lookupHint(what: string, m: ModelInfo): string {
  if (/count|aggregate|groupBy/.test(what)) return `find the rows with prisma.${m.prop}.findMany({ where, select: { ${m.configured?.pkField ?? 'id'}: true } }) and count them in the application`;
  if (what.includes('nested') || what.includes('through')) return `query prisma.${m.prop} itself by that field, then join in the application`;
  return `find the rows first (prisma.${m.prop}.findMany({ where })), then write or delete them by primary key`;
}

/** A Bytes value as Prisma returns it (Uint8Array) or a plaintext for a bytea column, as a Buffer over the same bytes. */
function asBuffer(v: unknown): unknown {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return v;
}
