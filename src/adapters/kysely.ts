// The Kysely adapter (pgseal/kysely): a plugin that seals the values of protected columns in
// this process before a query is sent and opens them after it returns, through the
// client-side crypto core (src/exec/client-side.ts), so no data key, index key, plaintext or
// searched value reaches the database.
//
// transformQuery (synchronous) rewrites the operation tree: values written are sealed and
// their blind indexes added; `col = v` and `col in (...)` on a searchable column, as a
// top-level AND condition of a SELECT, become a match on the blind index under every index
// key of the scope; the texts a context needs, the primary key the access log needs and the
// values a lookup must re-check are selected under pgseal$ names. transformResult (async)
// opens the values (reloading once on a stale key version), drops truncated-index
// collisions, logs the access and removes what it added. Whatever cannot run on ciphertext,
// or whose table cannot be told with certainty, is refused (PGSEAL_UNSUPPORTED_ON_CIPHERTEXT):
// nothing is ever sent as a comparison with ciphertext.

import {
  AliasNode, AndNode, BinaryOperationNode, CastNode, ColumnNode, ColumnUpdateNode, DataTypeNode, DefaultInsertValueNode, FunctionNode, IdentifierNode,
  OperatorNode, ParensNode, PrimitiveValueListNode, RawNode, ReferenceNode, ReturningNode, SelectionNode, TableNode, ValueListNode, ValueNode, ValuesNode, WhereNode,
  type DeleteQueryNode, type InsertQueryNode, type JoinNode, type KyselyPlugin, type OnConflictNode, type OperationNode, type PluginTransformQueryArgs,
  type PluginTransformResultArgs, type QueryResult, type RootOperationNode, type SelectQueryNode, type UnaryOperationNode, type UnknownRow, type UpdateQueryNode, type WithNode,
} from 'kysely';
import type { Sql } from 'postgres';
import type { AccessType, Accessed } from '../audit/access-log.js';
import { columnContext } from '../columns/context.js';
import { protectedColumn, type ProtectedColumn } from '../columns/model.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import { canonicalTexts, type Canonical, type ClientCrypto, type RowTexts } from '../exec/client-side.js';
import type { KeyedExecutor } from '../exec/executor.js';
import type { ColumnDef, Row, TableDefinition } from '../helpers/define.js';
import type { Keyring } from '../keys/keyring.js';
import { loadRegistry } from '../registry/load.js';
import { verifyDefinition } from '../registry/verify.js';

type AnyTable = TableDefinition<Record<string, ColumnDef>, string>;

/** What the plugin needs of a pgseal() instance (structural: adapters sit below src/index.ts). */
export interface PgsealForKysely {
  readonly sql: Sql;
  readonly keyring: Keyring;
  readonly executor: KeyedExecutor;
  readonly crypto: ClientCrypto;
}

export interface PgsealKyselyOptions {
  /** the protected tables queries may touch, as the typed helpers define them (defineTable) */
  tables: readonly AnyTable[];
  /** compare each definition with pgseal.columns at start (default true) */
  verify?: boolean;
}

/** A table of the Kysely Database interface as the application sees it: encrypted columns decrypted (T | null). */
export type KyselyTable<T extends AnyTable> = { -readonly [K in keyof Row<T>]: Row<T>[K] };

/** A Kysely Database interface from definitions keyed by the name queries use: `KyselyDatabase<{ customers: typeof customers }>`. */
export type KyselyDatabase<D extends Record<string, AnyTable>> = { -readonly [K in keyof D]: KyselyTable<D[K]> };

/** The plugin: create it with pgsealKysely(), pass it to `new Kysely({ plugins: [plugin] })`. */
export interface PgsealKyselyPlugin extends KyselyPlugin {
  readonly tables: readonly string[];
}

/**
 * The plugin, once the keyring is loaded (transformQuery is synchronous and seals with the
 * keys in hand; they are kept fresh from now on) and the definitions are checked against
 * pgseal.columns.
 */
export async function pgsealKysely(seal: PgsealForKysely, options: PgsealKyselyOptions): Promise<PgsealKyselyPlugin> {
  await seal.crypto.ready();
  seal.keyring.keepFresh();
  const registry = await loadRegistry(seal.sql);
  const models: Model[] = [];
  for (const def of options.tables) {
    const info = registry.get(`${def.schema}.${def.name}`);
    const model = modelOf(def, info?.columns);
    if (options.verify ?? true) verifyDefinition(model.qualified, model.encrypted, model.pk, info);
    if ([...model.encrypted.values()].some((c) => c.contextMode === 'row' || c.scopeColumn)) model.canonical = await canonicalTexts(seal.sql, def.schema, def.name);
    models.push(model);
  }
  const configured = new Set(models.map((m) => m.qualified));
  const unconfigured = [...registry.keys()].filter((k) => !configured.has(k));
  return new Plugin(seal, models, unconfigured);
}

interface Model {
  schema: string;
  name: string;
  qualified: string;
  pk: string;
  encrypted: Map<string, ProtectedColumn>;
  /** blind-index column -> the column it indexes */
  indexes: Map<string, ProtectedColumn>;
  /** every column of the table (the catalog's when verified): what `*` returns and unqualified names resolve to */
  columns: ReadonlySet<string>;
  /** how the database spells keys and tenants, for tables whose contexts bind them */
  canonical: Canonical | undefined;
  audit: { schema: string; table: string };
}

const HIDDEN = 'pgseal$';

function modelOf(def: AnyTable, catalog: readonly string[] | undefined): Model {
  const where = `${def.schema}.${def.name}`;
  const pk = def.columns[def.primaryKey];
  if (!pk || pk.kind !== 'plain') throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where}: the primary key ${def.primaryKey} must be a plain column of the definition`);
  const encrypted = new Map<string, ProtectedColumn>();
  const indexes = new Map<string, ProtectedColumn>();
  for (const [name, d] of Object.entries(def.columns)) {
    if (name.startsWith(HIDDEN)) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where}.${name}: column names starting ${HIDDEN} are pgseal's own`);
    if (d.kind !== 'encrypted') continue;
    const c = protectedColumn(def.schema, def.name, name, d);
    if (c.scopeColumn && def.columns[c.scopeColumn]?.kind !== 'plain') {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where}.${name} is keyed by ${c.scopeColumn}: add it to the definition as a plain column`);
    }
    encrypted.set(name, c);
    if (c.blindIndexColumn) indexes.set(c.blindIndexColumn, c);
  }
  const columns = new Set(catalog ?? [...Object.keys(def.columns), ...indexes.keys()]);
  return { schema: def.schema, name: def.name, qualified: where, pk: def.primaryKey, encrypted, indexes, columns, canonical: undefined, audit: { schema: def.schema, table: def.name } };
}

function refuse(message: string, hint: string): PgsealError {
  return new PgsealError(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT, message, { hint });
}

/** A table, alias, subquery or CTE of a query's FROM, JOIN, USING or target. */
interface Source {
  /** the name references qualify with ('' for an unnamed one) */
  name: string;
  /** the schema written before an unaliased table */
  schema: string | undefined;
  /** a configured table; undefined: columns unknown (another table, a subquery, a CTE, a function) */
  model: Model | undefined;
  id: number;
}

type Resolved =
  | { kind: 'encrypted'; source: Source; column: ProtectedColumn }
  | { kind: 'index'; source: Source; column: ProtectedColumn }
  | { kind: 'ambiguous'; name: string }
  | { kind: 'plain'; source: Source | undefined; name: string };

type Scopes = readonly (readonly Source[])[];

/** An encrypted value of the result and where it lives in each row. */
interface Opened {
  field: string;
  column: ProtectedColumn;
  source: number;
}

interface SourcePlan {
  model: Model;
  /** the field holding the primary key as text (row contexts, the access log) */
  key: string | undefined;
  /** scope column -> the field holding its text */
  scopes: Map<string, string>;
  /** the key scopes its values may open under (undefined: every loaded scope) */
  read: Set<string> | undefined;
}

interface Plan {
  opened: Opened[];
  sources: Map<number, SourcePlan>;
  checks: Array<{ field: string; column: ProtectedColumn; targets: ReadonlySet<string> }>;
  /** fields dropped from every row: what the plugin selected, and blind indexes `*` returned */
  strip: Set<string>;
  generation: string | undefined;
  logs: Array<{ accessed: Accessed; key: string }>;
}

const TEXTS = Symbol('pgseal.row');
const NO_TEXTS: RowTexts = Object.freeze({});
const NO_NAMES: ReadonlySet<string> = new Set();
type Wrapped = Record<string, unknown> & { [TEXTS]?: Record<string, unknown> };

const isRef = (n: OperationNode | undefined): n is ReferenceNode | ColumnNode => n !== undefined && (n.kind === 'ReferenceNode' || n.kind === 'ColumnNode');
const starOf = (n: OperationNode): ReferenceNode | undefined => (n.kind === 'ReferenceNode' && (n as ReferenceNode).column.kind === 'SelectAllNode' ? (n as ReferenceNode) : undefined);
const refName = (n: ReferenceNode | ColumnNode): string => (n.kind === 'ColumnNode' ? n.column.name : (n.column as ColumnNode).column.name);
const text = (n: OperationNode): CastNode => CastNode.create(n, DataTypeNode.create('text'));
const selection = (n: OperationNode, field: string): SelectionNode => SelectionNode.create(AliasNode.create(n, IdentifierNode.create(field)));
const qualifier = (s: Source): TableNode => (s.schema ? TableNode.createWithSchema(s.schema, s.name) : TableNode.create(s.name));
const columnOf = (s: Source, column: string): ReferenceNode => ReferenceNode.create(ColumnNode.create(column), qualifier(s));
const operatorOf = (n: BinaryOperationNode): string | undefined => (n.operator.kind === 'OperatorNode' ? (n.operator as OperatorNode).operator : undefined);

/** Values a comparison gives (a value, a list of values); undefined for anything else. */
function valuesOf(n: OperationNode): unknown[] | undefined {
  if (n.kind === 'ValueNode') return [(n as ValueNode).value];
  if (n.kind === 'PrimitiveValueListNode') return [...(n as PrimitiveValueListNode).values];
  if (n.kind === 'ValueListNode') {
    const items = (n as ValueListNode).values;
    return items.every((v) => v.kind === 'ValueNode') ? items.map((v) => (v as ValueNode).value) : undefined;
  }
  return undefined;
}

/** The top-level AND conditions of a WHERE. */
function conjuncts(n: OperationNode): OperationNode[] {
  if (n.kind === 'AndNode') return [...conjuncts((n as AndNode).left), ...conjuncts((n as AndNode).right)];
  if (ParensNode.is(n) && n.node.kind === 'AndNode') return conjuncts(n.node);
  return [n];
}

function children(n: OperationNode): OperationNode[] {
  const out: OperationNode[] = [];
  const fields = n as unknown as Record<string, unknown>;
  for (const k in fields) {
    if (k === 'kind') continue;
    const v = fields[k];
    if (Array.isArray(v)) {
      for (const x of v) if (isNode(x)) out.push(x);
    } else if (isNode(v)) out.push(v);
  }
  return out;
}

/** Whether a node of this kind is in the tree (values and plain references not entered). */
function contains(n: OperationNode, kind: string): boolean {
  if (n.kind === kind) return true;
  switch (n.kind) {
    case 'ValueNode':
    case 'PrimitiveValueListNode':
    case 'ReferenceNode':
    case 'ColumnNode':
    case 'IdentifierNode':
      return false;
    case 'SelectionNode':
      return contains((n as SelectionNode).selection, kind);
    case 'AliasNode':
      return contains((n as AliasNode).node, kind);
  }
  return children(n).some((c) => contains(c, kind));
}

const isNode = (v: unknown): v is OperationNode => typeof v === 'object' && v !== null && typeof (v as { kind?: unknown }).kind === 'string';

class Plugin implements PgsealKyselyPlugin {
  readonly tables: readonly string[];
  readonly #seal: PgsealForKysely;
  readonly #models: Map<string, Model>;
  readonly #byName = new Map<string, Model[]>();
  /** protected tables (pgseal.columns) this plugin was not given, by name */
  readonly #unconfigured = new Map<string, string[]>();
  readonly #plans = new WeakMap<object, Plan>();

  constructor(seal: PgsealForKysely, models: Model[], unconfigured: string[]) {
    this.#seal = seal;
    this.#models = new Map(models.map((m) => [m.qualified, m]));
    this.tables = models.map((m) => m.qualified);
    for (const m of models) this.#byName.set(m.name, [...(this.#byName.get(m.name) ?? []), m]);
    for (const q of unconfigured) {
      const name = q.slice(q.indexOf('.') + 1);
      this.#unconfigured.set(name, [...(this.#unconfigured.get(name) ?? []), q]);
    }
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    const query = new QueryRewrite(this.#seal, this.#models, this.#byName, this.#unconfigured);
    const node = query.root(args.node);
    if (query.plan) this.#plans.set(args.queryId, query.plan);
    else this.#plans.delete(args.queryId);
    return node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    const plan = this.#plans.get(args.queryId);
    if (!plan) return args.result;
    const crypto = this.#seal.crypto;
    let rows = args.result.rows as Record<string, unknown>[];
    if (plan.generation !== undefined) {
      if (rows.length === 0) crypto.revocationCheckMissed();
      else await crypto.revocationSeen(rows[0]![plan.generation]);
    }
    for (const [id, source] of plan.sources) {
      const opened = plan.opened.filter((o) => o.source === id);
      if (opened.length > 0) await this.#open(rows, opened, source);
    }
    // the blind index is truncated: keep only the rows whose value really matches
    if (plan.checks.length > 0) rows = rows.filter((r) => plan.checks.every((ch) => crypto.matches(ch.column, r[ch.field], ch.targets)));
    for (const log of plan.logs) await this.#seal.executor.logAccess(log.accessed, rows.filter((r) => r[log.key] !== null && r[log.key] !== undefined));
    if (plan.strip.size > 0) for (const r of rows) for (const f of plan.strip) delete r[f];
    return { ...args.result, rows };
  }

  /** One table's values opened in place; a value that does not open is audited and thrown. */
  async #open(rows: Record<string, unknown>[], opened: Opened[], source: SourcePlan): Promise<void> {
    // openAll reads each value under its column's name: one pass per set of distinct names
    const batches: Opened[][] = [];
    for (const o of opened) {
      const batch = batches.find((b) => !b.some((x) => x.column.column === o.column.column));
      if (batch) batch.push(o);
      else batches.push([o]);
    }
    const textsInPlace = (r: Record<string, unknown>, c: ProtectedColumn): RowTexts => {
      if (source.key === undefined && !c.scopeColumn) return NO_TEXTS;
      const key = source.key === undefined ? undefined : r[source.key];
      const scope = c.scopeColumn ? r[source.scopes.get(c.scopeColumn)!] : undefined;
      return { key: typeof key === 'string' ? key : undefined, scope: typeof scope === 'string' ? scope : undefined };
    };
    const texts = (w: Wrapped, c: ProtectedColumn): RowTexts => textsInPlace(w[TEXTS]!, c);
    for (const batch of batches) {
      // the common case opens the rows in place; aliases and repeated names go through a copy keyed by column
      const inPlace = batch.every((o) => o.field === o.column.column);
      const wrapped = inPlace ? rows : rows.map((r) => {
        const w: Wrapped = { [TEXTS]: r };
        for (const o of batch) w[o.column.column] = r[o.field];
        return w;
      });
      try {
        await this.#seal.crypto.openAll(this.#seal.sql, wrapped, batch.map((o) => o.column), inPlace ? textsInPlace : texts, source.read);
      } catch (error) {
        await this.#seal.executor.auditFailure(source.model.audit, error);
        throw error;
      }
      if (inPlace) continue;
      rows.forEach((r, i) => {
        for (const o of batch) r[o.field] = wrapped[i]![o.column.column];
      });
    }
  }
}

interface CheckContext {
  scopes: Scopes;
  /** what the expression is, for the message: 'where', 'order by', ... */
  where: string;
  /** names of encrypted values this query selects (ORDER BY and GROUP BY may name them) */
  outputs?: ReadonlySet<string> | undefined;
  /** in an UPDATE or DELETE: equality is not rewritten there */
  write?: boolean;
}

/** One query's rewrite (transformQuery): the node out and what transformResult must do. */
class QueryRewrite {
  plan: Plan | undefined;
  #ids = 0;
  #fields = 0;
  readonly #crypto: ClientCrypto;
  readonly #logging: boolean;

  constructor(
    seal: PgsealForKysely,
    readonly models: ReadonlyMap<string, Model>,
    readonly byName: ReadonlyMap<string, Model[]>,
    readonly unconfigured: ReadonlyMap<string, string[]>,
  ) {
    this.#crypto = seal.crypto;
    this.#logging = seal.executor.logging;
  }

  root(node: RootOperationNode): RootOperationNode {
    switch (node.kind) {
      case 'SelectQueryNode':
        return this.#select(node);
      case 'InsertQueryNode':
        return this.#insert(node);
      case 'UpdateQueryNode':
        return this.#update(node);
      case 'DeleteQueryNode':
        return this.#delete(node);
      case 'MergeQueryNode':
        this.#check(node, { scopes: [], where: 'MERGE' });
        return node;
      default:
        // raw SQL (sql`...`.execute(db)) and schema statements pass as written: use seal.query for SQL over protected columns
        return node;
    }
  }

  #newPlan(): Plan {
    return (this.plan ??= { opened: [], sources: new Map(), checks: [], strip: new Set(), generation: undefined, logs: [] });
  }

  #field(kind: string): string {
    return `${HIDDEN}${kind}${this.#fields++}`;
  }

  // ---- sources and names

  #model(schema: string | undefined, name: string): Model | undefined {
    if (schema !== undefined) {
      const m = this.models.get(`${schema}.${name}`);
      if (m) return m;
      if (this.unconfigured.get(name)?.includes(`${schema}.${name}`)) throw this.#notConfigured(`${schema}.${name}`);
      return undefined;
    }
    const found = this.byName.get(name) ?? [];
    const others = this.unconfigured.get(name) ?? [];
    if (found.length === 1 && others.length === 0) return found[0];
    if (found.length === 0 && others.length === 0) return undefined;
    if (found.length === 0 && others.length === 1) throw this.#notConfigured(others[0]!);
    throw refuse(`${name} names protected tables in more than one schema (${[...found.map((m) => m.qualified), ...others].join(', ')})`, 'qualify the table with its schema, e.g. selectFrom(\'public.customers\')');
  }

  #notConfigured(qualified: string): PgsealError {
    return refuse(`${qualified} has protected columns (pgseal.columns) but is not among the Kysely plugin's tables`, 'add its defineTable(...) definition to pgsealKysely(seal, { tables })');
  }

  #source(item: OperationNode, ctes: ReadonlySet<string>, outer: Scopes): Source {
    let node = item;
    let alias: string | undefined;
    if (AliasNode.is(item)) {
      node = item.node;
      alias = IdentifierNode.is(item.alias) ? item.alias.name : undefined;
    }
    if (TableNode.is(node)) {
      const schema = node.table.schema?.name;
      const name = node.table.identifier.name;
      const model = schema === undefined && ctes.has(name) ? undefined : this.#model(schema, name);
      return { name: alias ?? name, schema: alias === undefined ? schema : undefined, model, id: this.#ids++ };
    }
    // a subquery, a function, raw SQL: checked as nested (a table named inside must not be a protected one), its columns unknown here
    this.#check(node, { scopes: outer, where: 'a subquery in FROM' });
    return { name: alias ?? '', schema: undefined, model: undefined, id: this.#ids++ };
  }

  #sources(items: readonly OperationNode[], joins: readonly JoinNode[] | undefined, withNode: WithNode | undefined, outer: Scopes): Source[] {
    const ctes = withNode ? new Set<string>() : NO_NAMES;
    for (const cte of withNode?.expressions ?? []) {
      (ctes as Set<string>).add(cte.name.table.table.identifier.name);
      // a CTE's values are not what the outer query opens: none may be encrypted
      this.#check(cte.expression, { scopes: outer, where: 'a common table expression' });
    }
    const out: Source[] = [];
    for (const item of items) out.push(this.#source(item, ctes, outer));
    for (const j of joins ?? []) out.push(this.#source(j.table, ctes, outer));
    return out;
  }

  #resolve(ref: ReferenceNode | ColumnNode, scopes: Scopes): Resolved {
    const name = refName(ref);
    const table = ref.kind === 'ReferenceNode' ? ref.table : undefined;
    if (table) {
      const schema = table.table.schema?.name;
      const t = table.table.identifier.name;
      for (const scope of scopes) {
        const source = scope.find((s) => s.name === t && (schema === undefined || (s.schema ?? s.model?.schema) === schema));
        if (source) return classify(source, name);
      }
      return { kind: 'plain', source: undefined, name };
    }
    for (let i = 0; i < scopes.length; i++) {
      const scope = scopes[i]!;
      let known: Source | undefined;
      let many = false;
      let opaque = false;
      for (const s of scope) {
        if (!s.model) opaque = true;
        else if (s.model.columns.has(name)) {
          many ||= known !== undefined;
          known = s;
        }
      }
      if (many) return scope.some((s) => s.model?.columns.has(name) && sensitive(s.model, name)) ? { kind: 'ambiguous', name } : { kind: 'plain', source: undefined, name };
      if (known) return classify(known, name);
      if (opaque) {
        // a source of unknown columns may hold the name; if an outer one would make it encrypted, which one is meant is a guess
        return scopes.slice(i + 1).some((sc) => sc.some((s) => s.model && sensitive(s.model, name))) ? { kind: 'ambiguous', name } : { kind: 'plain', source: undefined, name };
      }
    }
    return { kind: 'plain', source: undefined, name };
  }

  // ---- the refusal walk: every reference to an encrypted or blind-index column not handled explicitly

  #check(node: OperationNode | undefined, ctx: CheckContext): void {
    if (!node) return;
    switch (node.kind) {
      case 'ReferenceNode':
      case 'ColumnNode':
        return this.#checkRef(node as ReferenceNode | ColumnNode, ctx, undefined, undefined);
      case 'BinaryOperationNode': {
        const b = node as BinaryOperationNode;
        const op = operatorOf(b);
        // NULL is sealed as NULL: IS [NOT] NULL means the same on ciphertext
        if ((op === 'is' || op === 'is not') && ValueNode.is(b.rightOperand) && b.rightOperand.value === null && isRef(b.leftOperand)) {
          const r = this.#resolve(b.leftOperand, ctx.scopes);
          if (r.kind === 'encrypted') return;
        }
        for (const [side, other] of [[b.leftOperand, b.rightOperand], [b.rightOperand, b.leftOperand]] as const) {
          if (isRef(side)) this.#checkRef(side, ctx, op, other);
          else this.#check(side, ctx);
        }
        return;
      }
      case 'SelectQueryNode':
        return this.#nested(node as SelectQueryNode, ctx.scopes, false);
      case 'UnaryOperationNode': {
        const u = node as UnaryOperationNode;
        const op = u.operator.kind === 'OperatorNode' ? (u.operator as OperatorNode).operator : undefined;
        // EXISTS (SELECT * ...) returns no value
        if ((op === 'exists' || op === 'not exists') && u.operand.kind === 'SelectQueryNode') return this.#nested(u.operand as SelectQueryNode, ctx.scopes, true);
        break;
      }
      case 'InsertQueryNode':
      case 'UpdateQueryNode':
      case 'DeleteQueryNode':
      case 'MergeQueryNode':
        return this.#nestedWrite(node, ctx);
      case 'ValueNode':
      case 'PrimitiveValueListNode':
        // a value's own fields (a jsonb object) are data, never nodes
        return;
      case 'IdentifierNode':
      case 'OperatorNode':
      case 'DataTypeNode':
      case 'SelectModifierNode':
        return;
      case 'TableNode':
        return this.#tableMention(node as TableNode, ctx);
    }
    for (const c of children(node)) this.#check(c, ctx);
  }

  #checkRef(ref: ReferenceNode | ColumnNode, ctx: CheckContext, op: string | undefined, other: OperationNode | undefined): void {
    const star = starOf(ref);
    if (star) {
      const r = this.#starSource(star, ctx.scopes);
      if (r?.model && r.model.encrypted.size > 0) throw refuse(`${r.model.qualified}.* in ${ctx.where} would carry encrypted values pgseal cannot open there`, 'name the plain columns you need');
      return;
    }
    const name = refName(ref);
    if (ctx.outputs?.has(name) && !(ref.kind === 'ReferenceNode' && ref.table)) {
      throw refuse(`${ctx.where} ${name}: ${name} is an encrypted value of this query, ciphertext in the database`, hintFor(ctx.where, op));
    }
    const r = this.#resolve(ref, ctx.scopes);
    if (r.kind === 'plain') return;
    if (r.kind === 'ambiguous') throw refuse(`${name} in ${ctx.where} may be an encrypted column (more than one table of the query could hold it)`, 'qualify it with its table or alias');
    if (r.kind === 'index') throw refuse(`${name} is the blind index of ${columnContext(r.column)}: pgseal writes and matches it`, `use ${r.column.column} itself (where ${r.column.column} = value)`);
    const c = r.column;
    const what = op ? `${op} on ${columnContext(c)}` : `${columnContext(c)} in ${ctx.where}`;
    if ((op === '=' || op === 'in') && other && isRef(other)) throw refuse(`${what}: an encrypted column compared to another column would compare ciphertexts`, 'an encrypted column compares only to values (through its blind index): compare in the application after reading');
    if ((op === '=' || op === 'in') && other && valuesOf(other)) {
      if (!c.searchable) throw refuse(`${what}: ${c.column} is encrypted and not searchable`, `protect it with searchable: true (a blind index) to look rows up by it`);
      if (ctx.write) throw refuse(`${what}: a blind-index match is made in SELECT queries only, where the rows found are re-checked after decryption`, 'select the primary keys with this condition first, then update or delete by primary key');
      throw refuse(`${what} in ${ctx.where}: a blind-index match is made only as a top-level AND condition of a query's WHERE`, 'put it in the outer where joined by AND (not under OR, NOT, a join or a subquery), or run the lookup first and use its primary keys');
    }
    throw refuse(`${what} cannot run on ciphertext`, hintFor(ctx.where, op));
  }

  /** A table named where the plugin does not read it as a source (a list of targets, a raw FROM item): refused when protected. */
  #tableMention(node: TableNode, ctx: CheckContext): void {
    const m = this.#model(node.table.schema?.name, node.table.identifier.name);
    if (m && m.encrypted.size > 0) throw refuse(`${m.qualified} appears in ${ctx.where} in a form the plugin does not read`, 'name it once, as the query\'s table (selectFrom / insertInto / updateTable / deleteFrom) or a join');
  }

  #starSource(ref: ReferenceNode, scopes: Scopes): Source | undefined {
    const t = ref.table!.table;
    for (const scope of scopes) {
      const s = scope.find((x) => x.name === t.identifier.name && (t.schema === undefined || (x.schema ?? x.model?.schema) === t.schema.name));
      if (s) return s;
    }
    return undefined;
  }

  /** A SELECT inside another query: nothing of it is opened, so no encrypted column may appear in it. */
  #nested(node: SelectQueryNode, outer: Scopes, starAllowed: boolean): void {
    const scope = this.#sources(node.from?.froms ?? [], node.joins, node.with, outer);
    const scopes = [scope, ...outer];
    const ctx: CheckContext = { scopes, where: 'a subquery' };
    for (const sel of node.selections ?? []) {
      const s = sel.selection;
      if (s.kind === 'SelectAllNode') {
        const m = scope.find((x) => x.model && x.model.encrypted.size > 0);
        if (!starAllowed && m) throw refuse(`select * from ${m.model!.qualified} in a subquery would carry encrypted values pgseal cannot open there`, 'name the plain columns the subquery needs');
        continue;
      }
      const star = starOf(s);
      if (star) {
        if (!starAllowed) this.#checkRef(star, ctx, undefined, undefined);
        continue;
      }
      this.#check(s, ctx);
    }
    for (const j of node.joins ?? []) this.#check(j.on, ctx);
    for (const part of [node.where, node.groupBy, node.having, node.orderBy, node.limit, node.offset, node.fetch, node.top]) this.#check(part, ctx);
    for (const d of node.distinctOn ?? []) this.#check(d, ctx);
    for (const s of node.setOperations ?? []) this.#check(s, ctx);
  }

  #nestedWrite(node: OperationNode, ctx: CheckContext): void {
    const target = node.kind === 'InsertQueryNode' ? (node as InsertQueryNode).into : node.kind === 'DeleteQueryNode' ? (node as DeleteQueryNode).from.froms[0] : (node as { table?: OperationNode; into?: OperationNode }).table ?? (node as { into?: OperationNode }).into;
    const s = target ? this.#source(target, NO_NAMES, []) : undefined;
    if (s?.model && s.model.encrypted.size > 0) throw refuse(`a write to ${s.model.qualified} inside another statement (${ctx.where}) cannot seal its values`, 'run it as a statement of its own');
    for (const c of children(node)) this.#check(c, ctx);
  }

  // ---- WHERE: the facts (plain column = value) and the blind-index rewrite

  /** Plain `column = value` conditions of the top level, by source id and column: the tenant or key of the rows. */
  #facts(parts: readonly OperationNode[], scopes: Scopes): Map<string, unknown> {
    const facts = new Map<string, unknown>();
    for (const p of parts) {
      if (!BinaryOperationNode.is(p) || operatorOf(p) !== '=') continue;
      for (const [ref, value] of [[p.leftOperand, p.rightOperand], [p.rightOperand, p.leftOperand]] as const) {
        if (!isRef(ref) || !ValueNode.is(value) || value.value === null || value.value === undefined) continue;
        const r = this.#resolve(ref, scopes);
        if (r.kind === 'plain' && r.source) facts.set(`${r.source.id}.${r.name}`, value.value);
      }
    }
    return facts;
  }

  /** `col = v` / `col in (...)` on a searchable encrypted column, as a blind-index match; undefined when the condition is not one. */
  #lookup(p: OperationNode, scopes: Scopes, facts: ReadonlyMap<string, unknown>, found: Array<{ source: Source; column: ProtectedColumn; targets: ReadonlySet<string> }>): OperationNode | undefined {
    if (!BinaryOperationNode.is(p)) return undefined;
    const op = operatorOf(p);
    if (op !== '=' && op !== 'in') return undefined;
    for (const [ref, other] of [[p.leftOperand, p.rightOperand], [p.rightOperand, p.leftOperand]] as const) {
      if (!isRef(ref)) continue;
      const r = this.#resolve(ref, scopes);
      if (r.kind !== 'encrypted') continue;
      const values = valuesOf(other);
      const c = r.column;
      if (!values || !c.searchable || !c.blindIndexColumn) return undefined; // refused by the walk, with the reason
      if (values.some((v) => v === null || v === undefined)) throw refuse(`${op} on ${columnContext(c)} with a null value`, `use where('${c.column}', 'is', null)`);
      let scope = c.scope ?? 'default';
      if (c.scopeColumn) {
        const tenant = facts.get(`${r.source.id}.${c.scopeColumn}`);
        if (tenant === undefined) throw refuse(`${op} on ${columnContext(c)}: its blind index is keyed per ${c.scopeColumn}, and the query does not say which`, `add where('${c.scopeColumn}', '=', tenant) to the same query`);
        scope = r.source.model!.canonical!(c.scopeColumn, tenant);
      }
      const { indexes, targets } = this.#crypto.lookup(c, values, scope);
      found.push({ source: r.source, column: c, targets });
      const bidx = columnOf(r.source, c.blindIndexColumn);
      return indexes.length === 1
        ? BinaryOperationNode.create(bidx, OperatorNode.create('='), ValueNode.create(indexes[0]))
        : BinaryOperationNode.create(bidx, OperatorNode.create('in'), PrimitiveValueListNode.create(indexes));
    }
    return undefined;
  }

  // ---- selections and RETURNING

  /**
   * What a select list or RETURNING returns: the encrypted values (by field), the blind
   * indexes `*` brings (dropped), and whether any name is unknown. Refuses what it cannot map.
   */
  #outputs(selections: readonly SelectionNode[], scope: readonly Source[], scopes: Scopes, where: string): { opened: Opened[]; strip: string[] } {
    const opened: Opened[] = [];
    const strip: string[] = [];
    const names = new Map<string, number>();
    let unknownStar: string | undefined;
    // what `*` of a source returns: every column of a configured table, else names unknown
    const star = (s: Source): string | undefined => {
      if (!s.model) return s.name || 'a subquery';
      for (const name of s.model.columns) count(names, name);
      for (const [name, c] of s.model.encrypted) opened.push({ field: name, column: c, source: s.id });
      for (const name of s.model.indexes.keys()) strip.push(name);
      return undefined;
    };
    const ctx: CheckContext = { scopes, where };
    for (const sel of selections) {
      const s = sel.selection;
      if (s.kind === 'SelectAllNode') {
        if (scope.length > 1 && scope.some((x) => x.model && x.model.encrypted.size > 0)) {
          throw refuse(`select * over ${scope.length} tables, one of them with encrypted columns: which value is which table's is a guess`, 'select each table\'s columns by name (or t.* for the one protected table)');
        }
        for (const x of scope) unknownStar ??= star(x);
        continue;
      }
      const qualified = starOf(s);
      if (qualified) {
        const x = this.#starSource(qualified, scopes);
        unknownStar ??= x ? star(x) : qualified.table!.table.identifier.name;
        continue;
      }
      let node: OperationNode = s;
      let name: string | undefined;
      if (AliasNode.is(s)) {
        node = s.node;
        name = IdentifierNode.is(s.alias) ? s.alias.name : undefined;
      }
      if (isRef(node)) {
        name ??= refName(node);
        const r = this.#resolve(node, scopes);
        if (r.kind === 'encrypted') opened.push({ field: name, column: r.column, source: r.source.id });
        else if (r.kind !== 'plain') this.#checkRef(node, ctx, undefined, undefined);
      } else {
        this.#check(node, ctx);
      }
      if (name !== undefined) {
        if (name.startsWith(HIDDEN)) throw refuse(`${where} names a value ${name}: names starting ${HIDDEN} are the plugin's own`, 'choose another alias');
        count(names, name);
      }
    }
    for (const o of opened) {
      if ((names.get(o.field) ?? 0) > 1) throw refuse(`${where} returns more than one value named ${o.field}, one of them encrypted`, 'give each selected column its own name (.as(...))');
    }
    for (const f of strip) if ((names.get(f) ?? 0) > 1) throw refuse(`${where} returns more than one value named ${f}`, 'give each selected column its own name (.as(...))');
    if (unknownStar !== undefined && opened.length > 0) {
      throw refuse(`${unknownStar}.* returns columns pgseal does not know next to encrypted values: one could shadow them`, 'select that table\'s columns by name');
    }
    return { opened, strip };
  }

  /** The plan of a result's encrypted values: the texts their contexts need, the key the access log needs; returns the selections to add. */
  #planOutputs(plan: Plan, opened: Opened[], sources: readonly Source[], facts: ReadonlyMap<string, unknown>, logType: AccessType | undefined): SelectionNode[] {
    const extra: SelectionNode[] = [];
    for (const o of opened) plan.opened.push(o);
    for (const s of sources) {
      const mine = opened.filter((o) => o.source === s.id);
      if (mine.length === 0 || !s.model) continue;
      const model = s.model;
      const sp: SourcePlan = { model, key: undefined, scopes: new Map(), read: new Set() };
      if (mine.some((o) => o.column.contextMode === 'row') || (this.#logging && logType)) {
        sp.key = this.#field('k');
        extra.push(selection(text(columnOf(s, model.pk)), sp.key));
      }
      for (const o of mine) {
        const c = o.column;
        if (c.scopeColumn) {
          if (!sp.scopes.has(c.scopeColumn)) {
            const f = this.#field('s');
            sp.scopes.set(c.scopeColumn, f);
            extra.push(selection(text(columnOf(s, c.scopeColumn)), f));
          }
          // one tenant named by the query: only its keys open (another tenant's value is refused)
          const tenant = facts.get(`${s.id}.${c.scopeColumn}`);
          if (tenant === undefined) sp.read = undefined;
          else sp.read?.add(model.canonical!(c.scopeColumn, tenant));
        } else sp.read?.add(c.scope ?? 'default');
      }
      plan.sources.set(s.id, sp);
      if (this.#logging && logType) {
        const columns = [...new Set(mine.map((o) => o.column.column))];
        plan.logs.push({ accessed: { table: model.qualified, primaryKey: sp.key!, columns, type: logType }, key: sp.key! });
      }
    }
    for (const e of extra) plan.strip.add(((e.selection as AliasNode).alias as IdentifierNode).name);
    return extra;
  }

  // ---- SELECT

  #select(node: SelectQueryNode): SelectQueryNode {
    const scope = this.#sources(node.from?.froms ?? [], node.joins, node.with, []);
    const scopes = [scope];
    const parts = node.where ? conjuncts(node.where.where) : [];
    const facts = this.#facts(parts, scopes);
    const found: Array<{ source: Source; column: ProtectedColumn; targets: ReadonlySet<string> }> = [];
    const ctx: CheckContext = { scopes, where: 'where' };
    const rewritten: OperationNode[] = [];
    for (const p of parts) {
      const match = this.#lookup(p, scopes, facts, found);
      if (!match) this.#check(p, ctx);
      rewritten.push(match ?? p);
    }
    const { opened, strip } = this.#outputs(node.selections ?? [], scope, scopes, 'the select list');
    const encryptedNames = node.orderBy || node.groupBy || node.distinctOn ? new Set(opened.map((o) => o.field)) : NO_NAMES;
    for (const j of node.joins ?? []) this.#check(j.on, { scopes, where: 'a join condition' });
    if (node.orderBy) this.#check(node.orderBy, { scopes, where: 'order by', outputs: encryptedNames });
    if (node.groupBy) this.#check(node.groupBy, { scopes, where: 'group by', outputs: encryptedNames });
    for (const d of node.distinctOn ?? []) this.#check(d, { scopes, where: 'distinct on', outputs: encryptedNames });
    if (node.having) this.#check(node.having, { scopes, where: 'having' });
    if (node.limit || node.offset || node.fetch || node.top) for (const part of [node.limit, node.offset, node.fetch, node.top]) this.#check(part, { scopes, where: 'limit' });
    for (const s of node.setOperations ?? []) this.#check(s, { scopes: [], where: 'a union, intersect or except' });
    if (opened.length === 0 && found.length === 0) return node;
    if (found.length > 0 && (node.groupBy || node.having || (node.selections ?? []).some((x) => contains(x, 'AggregateFunctionNode')))) {
      throw refuse(`an aggregate over a blind-index match of ${columnContext(found[0]!.column)} would count truncated-index collisions (the rows cannot be re-checked)`, 'select the rows (the plugin re-checks them) and aggregate in the application');
    }
    if (node.frontModifiers?.some((m) => m.modifier === 'Distinct') || node.distinctOn) {
      throw refuse('distinct over encrypted values would compare ciphertexts (each is unique)', 'select distinct plain columns only, or de-duplicate in the application');
    }
    if (node.setOperations?.length) throw refuse('union, intersect or except with encrypted values cannot be opened per branch', 'run the queries apart');
    // the WHERE rebuilt only when a condition became a blind-index match
    const where = found.length > 0 ? { where: WhereNode.create(rewritten.reduce((a, b) => AndNode.create(a, b))) } : {};
    if (node.explain) return { ...node, ...where };
    const plan = this.#newPlan();
    for (const f of strip) plan.strip.add(f);
    const extra: SelectionNode[] = [];
    // a lookup re-checks the value it searched: selected under a name of its own if the query does not select it
    for (const f of found) {
      let o = opened.find((x) => x.source === f.source.id && x.column === f.column);
      if (!o) {
        o = { field: this.#field('c'), column: f.column, source: f.source.id };
        opened.push(o);
        plan.strip.add(o.field);
        extra.push(selection(columnOf(f.source, f.column.column), o.field));
      }
      plan.checks.push({ field: o.field, column: f.column, targets: f.targets });
    }
    extra.push(...this.#planOutputs(plan, opened, scope, facts, 'read'));
    if (this.#crypto.revocationCheckDue()) {
      // SECURITY DEFINER, a number: keys revoked elsewhere since this process loaded its own stop opening here
      plan.generation = this.#field('g');
      plan.strip.add(plan.generation);
      extra.push(selection(FunctionNode.create('pgseal.key_generation', []), plan.generation));
    }
    return { ...node, ...where, selections: [...(node.selections ?? []), ...extra] };
  }

  // ---- INSERT

  #insert(node: InsertQueryNode): InsertQueryNode {
    const target = node.into ? this.#source(node.into, NO_NAMES, []) : undefined;
    const model = target?.model;
    if (!target || !model || model.encrypted.size === 0) {
      for (const c of children(node)) if (c !== node.into) this.#check(c, { scopes: target ? [[target]] : [], where: 'an insert' });
      return node;
    }
    const columns = (node.columns ?? []).map((c) => c.column.name);
    for (const name of columns) if (model.indexes.has(name)) throw refuse(`${name} is the blind index of ${columnContext(model.indexes.get(name)!)}: pgseal writes it`, `write ${model.indexes.get(name)!.column} only`);
    const written = columns.filter((n) => model.encrypted.has(n));
    const scopes = [[target]];
    let values = node.values;
    if (values && written.length > 0) {
      if (!ValuesNode.is(values)) throw refuse(`insert into ${model.qualified} from a query: its encrypted values (${written.join(', ')}) cannot be sealed in the database`, 'read the rows through the plugin and insert their values');
      values = ValuesNode.create(values.values.map((row) => this.#sealRow(model, columns, row, scopes)));
    } else if (values) {
      this.#check(values, { scopes: [], where: 'an insert' });
    }
    const added = written.flatMap((n) => (model.encrypted.get(n)!.blindIndexColumn ? [ColumnNode.create(model.encrypted.get(n)!.blindIndexColumn!)] : []));
    const excluded: Source = { name: 'excluded', schema: undefined, model, id: this.#ids++ };
    const onConflict = node.onConflict ? this.#onConflict(node.onConflict, model, [[target, excluded]]) : undefined;
    return {
      ...node,
      columns: [...(node.columns ?? []), ...added],
      ...(values ? { values } : {}),
      ...(onConflict ? { onConflict } : {}),
      ...this.#returning(node, target, [target], new Map(), written, 'write'),
    };
  }

  /** One row of VALUES: encrypted values sealed with their contexts, their blind indexes appended. */
  #sealRow(model: Model, columns: readonly string[], row: OperationNode, scopes: Scopes): ValueListNode | PrimitiveValueListNode {
    const cells: Array<{ value: unknown } | { default: true } | { expr: OperationNode }> = PrimitiveValueListNode.is(row)
      ? row.values.map((value) => ({ value }))
      : (row as ValueListNode).values.map((n) => (ValueNode.is(n) ? { value: n.value } : DefaultInsertValueNode.is(n) ? { default: true as const } : { expr: n }));
    const valueOf = (name: string): unknown => {
      const cell = cells[columns.indexOf(name)];
      return cell && 'value' in cell ? cell.value : undefined;
    };
    const out: OperationNode[] = [];
    const indexes: OperationNode[] = [];
    columns.forEach((name, i) => {
      const cell = cells[i]!;
      const c = model.encrypted.get(name);
      if (!c) {
        if ('expr' in cell) this.#check(cell.expr, { scopes, where: 'a value inserted' });
        out.push(PrimitiveValueListNode.is(row) ? ValueNode.create(row.values[i]) : (row as ValueListNode).values[i]!);
        return;
      }
      if ('expr' in cell) throw refuse(`${columnContext(c)} takes a value: an expression cannot be sealed before it runs`, 'compute the value in the application and insert it');
      if ('default' in cell || cell.value === null || cell.value === undefined) {
        out.push('default' in cell ? DefaultInsertValueNode.create() : ValueNode.create(null));
        if (c.blindIndexColumn) indexes.push('default' in cell ? DefaultInsertValueNode.create() : ValueNode.create(null));
        return;
      }
      const texts = this.#texts(model, c, valueOf, 'insert');
      out.push(ValueNode.create(this.#crypto.seal(c, cell.value, texts)));
      if (c.blindIndexColumn) indexes.push(ValueNode.create(this.#crypto.index(c, cell.value, texts)));
    });
    return ValueListNode.create([...out, ...indexes]);
  }

  /** The key and tenant texts a value's context needs, from the values written in the same row (or the WHERE of an update). */
  #texts(model: Model, c: ProtectedColumn, valueOf: (column: string) => unknown, what: 'insert' | 'update'): RowTexts {
    const texts: RowTexts = {};
    if (c.scopeColumn) {
      const v = valueOf(c.scopeColumn);
      if (v === null || v === undefined) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(c)} is keyed by ${c.scopeColumn}: the ${what} must give its value`, {
          hint: what === 'insert' ? `include ${c.scopeColumn} in the values inserted` : `add where('${c.scopeColumn}', '=', tenant) (or set ${c.scopeColumn}) in the same update`,
        });
      }
      texts.scope = model.canonical!(c.scopeColumn, v);
    }
    if (c.contextMode === 'row') {
      const v = valueOf(model.pk);
      if (v === null || v === undefined) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(c)} is bound to its row: the ${what} must give the primary key ${model.pk}`, {
          hint: what === 'insert' ? `include ${model.pk} in the values inserted (a key the database generates is not known before the row is written)` : `update one row: where('${model.pk}', '=', key)`,
        });
      }
      texts.key = model.canonical!(model.pk, v);
    }
    return texts;
  }

  /** ON CONFLICT DO UPDATE: values of column-bound, fixed-scope encrypted columns sealed, `excluded.col` carried with its blind index. */
  #onConflict(node: OnConflictNode, model: Model, scopes: Scopes): OnConflictNode {
    for (const c of node.columns ?? []) if (model.encrypted.has(c.column.name)) throw refuse(`on conflict (${c.column.name}): a conflict on ciphertext never happens`, 'use the primary key or a unique plain column as the conflict target');
    const ctx: CheckContext = { scopes, where: 'on conflict', write: true };
    this.#check(node.indexExpression, ctx);
    this.#check(node.indexWhere, ctx);
    this.#check(node.updateWhere, ctx);
    if (!node.updates) return node;
    // the conflicting row's values bound to its key or tenant would no longer open
    for (const u of node.updates) {
      const name = ColumnNode.is(u.column) ? u.column.column.name : undefined;
      const bound = [...model.encrypted.values()].find((c) => (c.contextMode === 'row' && name === model.pk) || (c.scopeColumn !== null && name === c.scopeColumn));
      if (bound) throw refuse(`on conflict do update of ${name}: ${columnContext(bound)} is bound to it`, 'change a row\'s key or tenant with an update that writes its bound values again');
    }
    const updates: ColumnUpdateNode[] = [];
    for (const u of node.updates) {
      const name = ColumnNode.is(u.column) ? u.column.column.name : undefined;
      const c = name === undefined ? undefined : model.encrypted.get(name);
      if (name !== undefined && model.indexes.has(name)) throw refuse(`${name} is the blind index of ${columnContext(model.indexes.get(name)!)}: pgseal writes it`, `set ${model.indexes.get(name)!.column} only`);
      if (!c) {
        this.#check(u.value, ctx);
        updates.push(u);
        continue;
      }
      if (c.contextMode === 'row' || c.scopeColumn) throw refuse(`on conflict do update of ${columnContext(c)}: its context binds the row's key or tenant, which the conflicting row decides`, 'update it in a statement of its own, by primary key');
      const v = u.value;
      if (ReferenceNode.is(v) && v.table?.table.identifier.name === 'excluded' && ColumnNode.is(v.column) && v.column.column.name === name) {
        updates.push(u);
        if (c.blindIndexColumn) updates.push(ColumnUpdateNode.create(ColumnNode.create(c.blindIndexColumn), ReferenceNode.create(ColumnNode.create(c.blindIndexColumn), TableNode.create('excluded'))));
        continue;
      }
      updates.push(...this.#sealUpdate(c, v, {}));
    }
    return { ...node, updates };
  }

  /** SET col = value: sealed, with its blind index. */
  #sealUpdate(c: ProtectedColumn, v: OperationNode, texts: RowTexts): ColumnUpdateNode[] {
    if (!ValueNode.is(v)) throw refuse(`${columnContext(c)} takes a value: an expression cannot be sealed before it runs`, 'compute the value in the application and set it');
    const sealed = v.value === null || v.value === undefined ? null : this.#crypto.seal(c, v.value, texts);
    const out = [ColumnUpdateNode.create(ColumnNode.create(c.column), ValueNode.create(sealed))];
    if (c.blindIndexColumn) out.push(ColumnUpdateNode.create(ColumnNode.create(c.blindIndexColumn), ValueNode.create(sealed === null ? null : this.#crypto.index(c, v.value, texts))));
    return out;
  }

  /**
   * RETURNING: its encrypted values opened; the primary key added when the access log records
   * the write. A statement written without RETURNING gets the key through an end modifier
   * instead: Kysely picks InsertResult / UpdateResult / DeleteResult from the node's
   * `returning`, which stays unset.
   */
  #returning<N extends InsertQueryNode | UpdateQueryNode | DeleteQueryNode>(node: N, target: Source, scope: readonly Source[], facts: ReadonlyMap<string, unknown>, written: readonly string[], type: AccessType): Partial<N> {
    const { opened, strip } = node.returning ? this.#outputs(node.returning.selections, scope, [scope], 'returning') : { opened: [], strip: [] };
    const logWrite = this.#logging && written.length > 0;
    if (opened.length === 0 && !logWrite) return {};
    const plan = this.#newPlan();
    for (const f of strip) plan.strip.add(f);
    // returned values are read; the written ones are logged as the write
    const extra = this.#planOutputs(plan, opened, scope, facts, undefined);
    if (this.#logging) {
      const read = (s: Source) => [...new Set(opened.filter((o) => o.source === s.id && !(s === target && written.includes(o.column.column))).map((o) => o.column.column))];
      let key = plan.sources.get(target.id)?.key;
      if (!key) {
        key = this.#field('k');
        extra.push(selection(text(columnOf(target, target.model!.pk)), key));
        plan.strip.add(key);
        const sp = plan.sources.get(target.id);
        if (sp) sp.key = key;
      }
      if (written.length > 0) plan.logs.push({ accessed: { table: target.model!.qualified, primaryKey: key, columns: written, type }, key });
      for (const s of scope) {
        const columns = s.model ? read(s) : [];
        const k = s === target ? key : plan.sources.get(s.id)?.key;
        if (columns.length > 0 && k) plan.logs.push({ accessed: { table: s.model!.qualified, primaryKey: k, columns, type: 'read' }, key: k });
      }
    }
    if (node.returning) return { returning: ReturningNode.create([...node.returning.selections, ...extra]) } as Partial<N>;
    const fragments = ['returning ', ...extra.slice(1).map(() => ', '), ''];
    return { endModifiers: [RawNode.create(fragments, extra), ...(node.endModifiers ?? [])] } as unknown as Partial<N>;
  }

  // ---- UPDATE

  #update(node: UpdateQueryNode): UpdateQueryNode {
    const target = node.table ? this.#source(node.table, NO_NAMES, []) : undefined;
    const scope = [...(target ? [target] : []), ...this.#sources(node.from?.froms ?? [], node.joins, node.with, [])];
    const scopes = [scope];
    const ctx: CheckContext = { scopes, where: 'where', write: true };
    const parts = node.where ? conjuncts(node.where.where) : [];
    for (const p of parts) this.#check(p, ctx);
    for (const j of node.joins ?? []) this.#check(j.on, { ...ctx, where: 'a join condition' });
    for (const part of [node.limit, node.orderBy, node.top]) this.#check(part, { ...ctx, where: 'order by' });
    const model = target?.model;
    if (!target || !model || model.encrypted.size === 0) {
      for (const u of node.updates ?? []) this.#check(u.value, { ...ctx, where: 'a value set' });
      return node;
    }
    const facts = this.#facts(parts, scopes);
    const set = new Map<string, ColumnUpdateNode>();
    for (const u of node.updates ?? []) if (ColumnNode.is(u.column)) set.set(u.column.column.name, u);
    // a value bound to the row's key or tenant would no longer open if those changed alone
    for (const c of model.encrypted.values()) {
      const bound = [c.contextMode === 'row' ? model.pk : undefined, c.scopeColumn ?? undefined].filter((x): x is string => x !== undefined);
      const moved = bound.filter((b) => set.has(b));
      if (moved.length > 0 && !set.has(c.column)) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(c)} is bound to ${moved.join(' and ')}: changing it means writing ${c.column} again`, { hint: `set ${c.column} in the same update` });
      }
    }
    const valueOf = (column: string): unknown => {
      const u = set.get(column);
      if (u) return ValueNode.is(u.value) ? u.value.value : undefined;
      return facts.get(`${target.id}.${column}`);
    };
    const updates: ColumnUpdateNode[] = [];
    const written: string[] = [];
    for (const u of node.updates ?? []) {
      const name = ColumnNode.is(u.column) ? u.column.column.name : undefined;
      if (name !== undefined && model.indexes.has(name)) throw refuse(`${name} is the blind index of ${columnContext(model.indexes.get(name)!)}: pgseal writes it`, `set ${model.indexes.get(name)!.column} only`);
      const c = name === undefined ? undefined : model.encrypted.get(name);
      if (!c) {
        this.#check(u.value, { ...ctx, where: 'a value set' });
        updates.push(u);
        continue;
      }
      written.push(c.column);
      const v = ValueNode.is(u.value) ? u.value.value : undefined;
      updates.push(...this.#sealUpdate(c, u.value, v === null || v === undefined ? {} : this.#texts(model, c, valueOf, 'update')));
    }
    return { ...node, updates, ...this.#returning(node, target, scope, facts, written, 'write') };
  }

  // ---- DELETE

  #delete(node: DeleteQueryNode): DeleteQueryNode {
    const froms = node.from.froms;
    const targets = froms.map((f) => this.#source(f, NO_NAMES, []));
    const scope = [...targets, ...this.#sources((node.using as { tables?: OperationNode[] } | undefined)?.tables ?? [], node.joins, node.with, [])];
    const scopes = [scope];
    const ctx: CheckContext = { scopes, where: 'where', write: true };
    this.#check(node.where, ctx);
    for (const j of node.joins ?? []) this.#check(j.on, { ...ctx, where: 'a join condition' });
    for (const part of [node.limit, node.orderBy, node.top]) this.#check(part, { ...ctx, where: 'order by' });
    const target = targets.find((t) => t.model && t.model.encrypted.size > 0);
    if (!target) return node;
    if (targets.length > 1) throw refuse('a delete from more than one table, one with encrypted columns', 'delete from one table per statement');
    const model = target.model!;
    return { ...node, ...this.#returning(node, target, scope, new Map(), [...model.encrypted.keys()], 'delete') };
  }
}

function classify(source: Source, name: string): Resolved {
  const enc = source.model?.encrypted.get(name);
  if (enc) return { kind: 'encrypted', source, column: enc };
  const idx = source.model?.indexes.get(name);
  if (idx) return { kind: 'index', source, column: idx };
  return { kind: 'plain', source, name };
}

function count(names: Map<string, number>, name: string): void {
  names.set(name, (names.get(name) ?? 0) + 1);
}

const sensitive = (m: Model, name: string): boolean => m.encrypted.has(name) || m.indexes.has(name);

function hintFor(where: string, op: string | undefined): string {
  if (where === 'order by' || where === 'distinct on') return 'sort the rows in the application after reading, or order by a plain column';
  if (where === 'group by') return 'group in the application after reading, or group by a plain column';
  if (op && ['like', 'not like', 'ilike', 'not ilike', '<', '<=', '>', '>=', 'between', '~', '~*', '!~', '!~*', '@>', '<@', '&&'].includes(op)) {
    return 'only = and in on a searchable column run on ciphertext (through its blind index): filter in the application after reading';
  }
  if (op === '!=' || op === '<>' || op === 'not in' || op === 'is distinct from' || op === 'is not distinct from') {
    return 'a blind index cannot exclude values (a truncated index collides): select with = or in and filter in the application';
  }
  return 'select the column itself (pgseal opens it in this process) and compute in the application';
}
