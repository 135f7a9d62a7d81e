// Statements: SELECT (FROM, select list, WHERE, GROUP BY, HAVING, DISTINCT, ORDER BY, set
// operations, VALUES), INSERT (VALUES and SELECT, ON CONFLICT), UPDATE, DELETE, WITH
// (including data-modifying CTEs) and RETURNING. The tree is rewritten in place.

import type {
  Alias,
  DeleteStmt,
  InsertStmt,
  JoinExpr,
  Node,
  OnConflictClause,
  RangeVar,
  ResTarget,
  ReturningClause,
  SelectStmt,
  UpdateStmt,
  WithClause,
} from '@pgsql/types';
import type { ProtectedColumn, Registry, TableInfo } from '../registry/types.js';
import { clone, colRef, dataOf, figureColname, funcCall, isNode, names, refFields, resTarget, str } from './ast.js';
import { refusal, registryDrift, unsupported, type SourceText } from './errors.js';
import {
  findProtected,
  positionOf,
  primaryKeyOf,
  qualifierOf,
  readRow,
  rewriteCondition,
  rewriteExpr,
  touch,
  type ExprContext,
} from './expressions.js';
import { derivedRelation, isBlindIndexColumn, plaintextColumns, Scope, tableRelation, type Relation } from './scope.js';
import { blindIndexExpr, decryptExpr, encryptExpr, typedLike, type RowSource } from './sealed.js';

/** One output column of a query: its name, and the protected column it reads, if any. */
interface TargetInfo {
  name: string;
  /** an unexpanded `*` of unknown width */
  star?: boolean;
  protectedColumn?: ProtectedColumn;
  protectedPosition?: number;
  /** the rewritten expression (select lists), for ORDER BY <output name> */
  val?: Node;
}

interface Output {
  targets: TargetInfo[];
}

/** A `*` expanded: the select-list entries, and the output columns they stand for. */
interface Expansion {
  nodes: Node[];
  infos: TargetInfo[];
}

const NO_OUTPUT: Output = { targets: [] };

const outputNames = (out: Output): string[] | null => (out.targets.some((t) => t.star) ? null : out.targets.map((t) => t.name));

const SOURCE_ALIAS = 'pgseal_source';

/** The output names pgseal adds for the access log, and that a statement may not use itself. */
export const ROW_ID_PREFIX = 'pgseal$row$';

/**
 * Where the access log finds the rows a statement read or changed: a hidden output column
 * holding the primary key of each row of `table` (an array of them per output row when the
 * query aggregates), added by pgseal, never a column the caller names.
 */
export interface RowAttribution {
  /** 'schema.table' */
  table: string;
  /** the hidden output column */
  output: string;
  /** the protected columns read or written through that table */
  columns: string[];
  aggregated: boolean;
}

type Top =
  | { kind: 'select'; stmt: SelectStmt; scope: Scope }
  | { kind: 'write'; stmt: InsertStmt | UpdateStmt | DeleteStmt; target: Relation; scope: Scope };

export class StatementRewriter implements ExprContext {
  changed = false;
  readonly touched = new Set<string>();
  readonly readBy = new Map<Relation, Set<string>>();
  /** the first top-level statement, and where its rows come from */
  #topNode: Node | undefined;
  #top: Top | undefined;

  constructor(
    private readonly registry: Registry,
    readonly allowDecryptScan: boolean,
    readonly source: SourceText,
  ) {}

  rewriteSubquery(subselect: Node, parent: Scope): void {
    this.statement(subselect, parent);
  }

  /** A top-level statement. Statements other than queries and DML pass through unchanged. */
  topLevel(node: Node): void {
    this.#topNode ??= node;
    if ('ExplainStmt' in node) {
      if (node.ExplainStmt.query) this.topLevel(node.ExplainStmt.query);
    } else if ('PrepareStmt' in node) {
      if (node.PrepareStmt.query) this.topLevel(node.PrepareStmt.query);
    } else if ('DeclareCursorStmt' in node) {
      if (node.DeclareCursorStmt.query) this.topLevel(node.DeclareCursorStmt.query);
    } else if ('SelectStmt' in node && node.SelectStmt.intoClause) {
      // SELECT INTO is CREATE TABLE AS: DDL, passed through like it.
    } else {
      this.statement(node, null);
    }
  }

  private statement(node: Node, parent: Scope | null): Output {
    if ('SelectStmt' in node) return this.select(node.SelectStmt, parent);
    if ('InsertStmt' in node) return this.insert(node.InsertStmt, parent);
    if ('UpdateStmt' in node) return this.update(node.UpdateStmt, parent);
    if ('DeleteStmt' in node) return this.delete(node.DeleteStmt, parent);
    if ('MergeStmt' in node) {
      const t = this.anyProtectedTable(node);
      if (t) throw unsupported(`MERGE on statements that name ${t.schema}.${t.table}, a table with encrypted columns`, 'use INSERT ... ON CONFLICT, UPDATE or DELETE');
    }
    return NO_OUTPUT;
  }

  #recordWrite(stmt: InsertStmt | UpdateStmt | DeleteStmt, target: Relation, scope: Scope): void {
    const top = this.#topNode;
    if (top && (('InsertStmt' in top && top.InsertStmt === stmt) || ('UpdateStmt' in top && top.UpdateStmt === stmt) || ('DeleteStmt' in top && top.DeleteStmt === stmt))) {
      this.#top = { kind: 'write', stmt, target, scope };
    }
  }

  /**
   * Adds to the first top-level statement the hidden outputs the access log reads row ids
   * from: each protected table's primary key in the select list (aggregated into an array
   * when the query aggregates), or in RETURNING for INSERT, UPDATE and DELETE. Not for
   * DISTINCT, set operations, VALUES and tables without a single-column primary key: their
   * rows are logged without ids.
   */
  attachRowIds(): RowAttribution[] {
    const top = this.#top;
    if (!top || (top.kind === 'select' && top.stmt.distinctClause?.length)) return [];
    const out: RowAttribution[] = [];
    const sources = top.kind === 'select' ? top.scope.relations : [top.target];
    const aggregated = top.kind === 'select' && aggregates(top.stmt);
    const added: Node[] = [];
    for (const rel of sources) {
      const read = this.readBy.get(rel);
      const pk = rel.table?.primaryKey;
      if (!rel.table || !read?.size || pk?.length !== 1) continue;
      const ref = colRef([...qualifierOf(rel, top.scope, undefined, undefined), pk[0]!]);
      const output = `${ROW_ID_PREFIX}${out.length}`;
      added.push(resTarget(aggregated ? funcCall(['pg_catalog', 'array_agg'], [ref]) : ref, output));
      out.push({ table: `${rel.table.schema}.${rel.table.table}`, output, columns: [...read], aggregated });
    }
    if (added.length === 0) return [];
    if (top.kind === 'select') top.stmt.targetList = [...(top.stmt.targetList ?? []), ...added];
    else top.stmt.returningClause = { ...top.stmt.returningClause, exprs: [...(top.stmt.returningClause?.exprs ?? []), ...added] };
    this.changed = true;
    return out;
  }

  // ---- WITH ------------------------------------------------------------------------

  private withClause(w: WithClause, parent: Scope | null): Scope {
    const scope = new Scope(parent);
    for (const item of w.ctes ?? []) {
      if (!('CommonTableExpr' in item)) continue;
      const cte = item.CommonTableExpr;
      const name = cte.ctename ?? '';
      const aliased = cte.aliascolnames?.length ? names(cte.aliascolnames) : null;
      // A recursive CTE sees itself; a plain one only the CTEs before it.
      if (w.recursive) scope.ctes.set(name, { columns: aliased ? new Set(aliased) : null, starColumns: aliased });
      const out = cte.ctequery ? this.statement(cte.ctequery, scope) : NO_OUTPUT;
      const columns = aliasColumns(aliased, outputNames(out));
      scope.ctes.set(name, { columns: columns ? new Set(columns) : null, starColumns: columns });
    }
    return scope;
  }

  // ---- SELECT ----------------------------------------------------------------------

  private select(stmt: SelectStmt, parent: Scope | null): Output {
    const base = stmt.withClause ? this.withClause(stmt.withClause, parent) : parent;
    if (stmt.op && stmt.op !== 'SETOP_NONE') {
      const left = stmt.larg ? this.select(stmt.larg, base) : NO_OUTPUT;
      if (stmt.rarg) this.select(stmt.rarg, base);
      // ORDER BY of a set operation names its output columns, which are plaintext already.
      const outer = new Scope(base);
      this.orderBy(stmt.sortClause, outer, left.targets.map((t) => ({ ...t, val: undefined })), 'ORDER BY', 'order');
      this.limits(stmt, outer);
      return left;
    }
    if (stmt.valuesLists) {
      const scope = new Scope(base);
      let width = 0;
      for (const list of stmt.valuesLists) {
        if (!('List' in list)) continue;
        const items = list.List.items ?? [];
        width = items.length;
        list.List.items = items.map((item) => rewriteExpr(item, scope, this, 'value'));
      }
      this.orderBy(stmt.sortClause, scope, [], 'ORDER BY', 'order');
      this.limits(stmt, scope);
      return { targets: Array.from({ length: width }, (_, i) => ({ name: `column${i + 1}` })) };
    }
    const scope = new Scope(base);
    if (this.#topNode && 'SelectStmt' in this.#topNode && this.#topNode.SelectStmt === stmt) this.#top = { kind: 'select', stmt, scope };
    this.from(stmt.fromClause, scope);
    const targets = this.targets(stmt.targetList, scope);
    if (stmt.whereClause) stmt.whereClause = rewriteCondition(stmt.whereClause, scope, this);
    this.groupBy(stmt.groupClause, scope, targets);
    if (stmt.havingClause) stmt.havingClause = rewriteCondition(stmt.havingClause, scope, this);
    for (const w of stmt.windowClause ?? []) rewriteExpr(w, scope, this, 'value');
    this.distinct(stmt, scope, targets);
    this.orderBy(stmt.sortClause, scope, targets, 'ORDER BY', 'order');
    this.limits(stmt, scope);
    return { targets };
  }

  private limits(stmt: SelectStmt, scope: Scope): void {
    if (stmt.limitCount) stmt.limitCount = rewriteExpr(stmt.limitCount, scope, this, 'value');
    if (stmt.limitOffset) stmt.limitOffset = rewriteExpr(stmt.limitOffset, scope, this, 'value');
  }

  /** Select list or RETURNING: `*` expanded over protected tables, reads decrypted, output names kept. */
  private targets(list: Node[] | undefined, scope: Scope): TargetInfo[] {
    if (!list) return [];
    const out: Node[] = [];
    const infos: TargetInfo[] = [];
    for (const item of list) {
      if (!('ResTarget' in item)) {
        out.push(item);
        continue;
      }
      const rt = item.ResTarget;
      const val = rt.val;
      if (val && 'ColumnRef' in val && refFields(val.ColumnRef.fields).at(-1) === '*') {
        const expanded = this.expandStar(val, scope);
        if (expanded) {
          out.push(...expanded.nodes);
          infos.push(...expanded.infos);
          this.changed = true;
        } else {
          out.push(item);
          infos.push({ name: '*', star: true });
        }
        continue;
      }
      const name = rt.name ?? figureColname(val);
      if (name.startsWith(ROW_ID_PREFIX)) throw unsupported(`an output column named ${name}`, `pick another name: ${ROW_ID_PREFIX}... is pgseal's, for the access log`);
      const hit = findProtected(val, scope);
      if (val) rt.val = rewriteExpr(val, scope, this, 'value');
      if (rt.name === undefined && rt.val && figureColname(rt.val) !== name) rt.name = name;
      out.push(item);
      infos.push({
        name,
        protectedColumn: hit?.column,
        protectedPosition: hit ? positionOf(this, hit.node) : undefined,
        val: rt.val,
      });
    }
    list.splice(0, list.length, ...out);
    return infos;
  }

  private expandStar(ref: Node & { ColumnRef: unknown }, scope: Scope): Expansion | undefined {
    const fields = refFields((ref.ColumnRef as { fields?: Node[] }).fields);
    const position = positionOf(this, ref);
    if (fields.length > 1) {
      const rel = scope.findRelation(fields.slice(-3, -1));
      return rel?.table ? this.expandRelation(rel, scope, position) : undefined;
    }
    const rels = scope.relations.filter((r) => !r.qualifiedOnly);
    if (!rels.some((r) => r.table)) return undefined;
    const result: Expansion = { nodes: [], infos: [] };
    for (const rel of rels) {
      if (rel.mergedJoin) {
        throw unsupported('`*` over JOIN ... USING or NATURAL JOIN next to a table with encrypted columns', 'list the columns you need', undefined, position);
      }
      if (rel.table) {
        const e = this.expandRelation(rel, scope, position);
        result.nodes.push(...e.nodes);
        result.infos.push(...e.infos);
      } else if (rel.refName === null) {
        throw unsupported('`*` over an unaliased subquery next to a table with encrypted columns', 'give the subquery an alias', undefined, position);
      } else {
        result.nodes.push(resTarget({ ColumnRef: { fields: [str(rel.refName), { A_Star: {} }] } }));
        result.infos.push(...(rel.starColumns ? rel.starColumns.map((name) => ({ name })) : [{ name: '*', star: true }]));
      }
    }
    return result;
  }

  private expandRelation(rel: Relation, scope: Scope, position: number | undefined): Expansion {
    const table = rel.table as TableInfo;
    const qualifier = qualifierOf(rel, scope, undefined, position);
    const result: Expansion = { nodes: [], infos: [] };
    for (const name of plaintextColumns(table)) {
      const column = table.protected.get(name);
      const ref = colRef([...qualifier, name]);
      if (!column) {
        result.nodes.push(resTarget(ref));
        result.infos.push({ name });
        continue;
      }
      touch(this, column, rel);
      const val = decryptExpr(ref, column, readRow(rel, scope, column, position));
      result.nodes.push(resTarget(val, name));
      result.infos.push({ name, protectedColumn: column, protectedPosition: position, val });
    }
    return result;
  }

  // ---- FROM ------------------------------------------------------------------------

  private from(items: Node[] | undefined, scope: Scope): void {
    const joins: JoinExpr[] = [];
    for (const item of items ?? []) this.fromItem(item, scope, joins);
    // ON conditions see every FROM item of the level (PostgreSQL rejects the ones out of reach).
    for (const j of joins) if (j.quals) j.quals = rewriteCondition(j.quals, scope, this);
  }

  private fromItem(node: Node, scope: Scope, joins: JoinExpr[]): Relation[] {
    if ('RangeVar' in node) {
      const rel = this.rangeVar(node.RangeVar, scope);
      scope.relations.push(rel);
      return [rel];
    }
    if ('RangeSubselect' in node) {
      const r = node.RangeSubselect;
      // Only a LATERAL subquery sees the FROM items before it.
      const out = r.subquery ? this.statement(r.subquery, r.lateral ? scope : scope.parent) : NO_OUTPUT;
      const rel = derivedRelation(r.alias?.aliasname ?? null, aliasColumns(r.alias?.colnames ? names(r.alias.colnames) : null, outputNames(out)));
      scope.relations.push(rel);
      return [rel];
    }
    if ('JoinExpr' in node) {
      const j = node.JoinExpr;
      const before = scope.relations.length;
      const inner = [...(j.larg ? this.fromItem(j.larg, scope, joins) : []), ...(j.rarg ? this.fromItem(j.rarg, scope, joins) : [])];
      const protectedRel = inner.find((r) => r.table);
      if (j.isNatural || j.usingClause?.length) {
        if (protectedRel && j.isNatural) {
          throw unsupported('NATURAL JOIN with a table that has encrypted columns', 'join with ON or USING on plaintext columns');
        }
        for (const name of names(j.usingClause)) {
          for (const r of inner) {
            const column = r.table ? (r.table.protected.get(name) ?? isBlindIndexColumn(r.table, name)) : undefined;
            if (column) throw unsupported('JOIN ... USING an encrypted column', 'join with ON on plaintext columns', column);
          }
        }
        for (const r of inner) r.mergedJoin = true;
      }
      if (j.alias) {
        if (protectedRel) throw unsupported('an aliased JOIN over a table with encrypted columns', 'alias the tables inside the join instead');
        // Its ON condition sees the tables the alias hides from the rest of the query.
        if (j.quals) j.quals = rewriteCondition(j.quals, scope, this);
        scope.relations.splice(before);
        const rel = derivedRelation(j.alias.aliasname ?? null, null);
        scope.relations.push(rel);
        return [rel];
      }
      if (j.quals) joins.push(j);
      return inner;
    }
    if ('RangeTableSample' in node) {
      const r = node.RangeTableSample;
      const rels = r.relation ? this.fromItem(r.relation, scope, joins) : [];
      for (const a of r.args ?? []) rewriteExpr(a, scope, this, 'value');
      return rels;
    }
    if ('RangeFunction' in node) {
      const r = node.RangeFunction;
      // Function arguments may read the FROM items before them.
      for (const f of r.functions ?? []) rewriteExpr(f, scope, this, 'value');
      const fnName = functionRefName(node);
      const rel = derivedRelation(r.alias?.aliasname ?? fnName, null);
      scope.relations.push(rel);
      return [rel];
    }
    // XMLTABLE, JSON_TABLE, ...: columns unknown; their expressions may read earlier items.
    rewriteExpr(node, scope, this, 'value');
    const alias = (Object.values(node)[0] as { alias?: Alias }).alias;
    const rel = derivedRelation(alias?.aliasname ?? null, null);
    scope.relations.push(rel);
    return [rel];
  }

  private rangeVar(rv: RangeVar, scope: Scope): Relation {
    const relname = rv.relname ?? '';
    const alias = rv.alias?.aliasname;
    const aliasNames = rv.alias?.colnames ? names(rv.alias.colnames) : null;
    if (!rv.schemaname) {
      const cte = scope.findCte(relname);
      if (cte) return derivedRelation(alias ?? relname, aliasColumns(aliasNames, cte.starColumns));
    }
    const table = this.tableOf(rv);
    if (table && aliasNames) {
      throw unsupported(`column aliases on ${table.schema}.${table.table}, a table with encrypted columns`, 'alias the columns in the select list instead');
    }
    if (alias) return tableRelation(table, alias, null, null);
    return tableRelation(table, relname, rv.schemaname ?? (table ? table.schema : null), relname);
  }

  private tableOf(rv: RangeVar): TableInfo | null {
    const table = this.registry.get(`${rv.schemaname ?? 'public'}.${rv.relname ?? ''}`) ?? null;
    // renamed since a column was protected: its ciphertext must not pass as a plaintext column
    if (table?.drift) throw registryDrift(table);
    return table;
  }

  /** Any protected table named anywhere in a statement (CTE names ignored: a cautious answer). */
  private anyProtectedTable(node: unknown): TableInfo | undefined {
    if (typeof node !== 'object' || node === null) return undefined;
    if (Array.isArray(node)) {
      for (const item of node) {
        const t = this.anyProtectedTable(item);
        if (t) return t;
      }
      return undefined;
    }
    const record = node as Record<string, unknown>;
    if ('RangeVar' in record) {
      const t = this.tableOf(record.RangeVar as RangeVar);
      if (t) return t;
    }
    for (const key in record) {
      const t = this.anyProtectedTable(record[key]);
      if (t) return t;
    }
    return undefined;
  }

  // ---- GROUP BY, DISTINCT, ORDER BY ----------------------------------------------------

  /**
   * Which output column an ORDER BY / GROUP BY / DISTINCT ON item names, if any: a
   * position, or a bare name (ORDER BY and DISTINCT ON prefer output names; GROUP BY
   * prefers columns of the FROM items, as PostgreSQL does).
   */
  private outputIndex(node: Node, scope: Scope, targets: TargetInfo[], mode: 'order' | 'group'): number | undefined {
    if ('A_Const' in node && node.A_Const.ival !== undefined) {
      const index = (node.A_Const.ival.ival ?? 0) - 1;
      if (index < 0 || index >= targets.length || targets.slice(0, index + 1).some((t) => t.star)) return undefined;
      return index;
    }
    if (!('ColumnRef' in node)) return undefined;
    const fields = refFields(node.ColumnRef.fields);
    const name = fields[0];
    if (fields.length !== 1 || name === undefined || name === '*') return undefined;
    if (mode === 'group' && scope.relations.some((r) => r.columns?.has(name))) return undefined;
    const index = targets.findIndex((t) => t.name === name && !t.star);
    return index >= 0 ? index : undefined;
  }

  private orderItem(node: Node, scope: Scope, targets: TargetInfo[], construct: string, mode: 'order' | 'group'): Node {
    const index = this.outputIndex(node, scope, targets, mode);
    if (index === undefined) return rewriteExpr(node, scope, this, 'operand', construct, true);
    const target = targets[index] as TargetInfo;
    if (!target.protectedColumn) return node;
    touch(this, target.protectedColumn);
    if (!this.allowDecryptScan) throw refusal(target.protectedColumn, construct, positionOf(this, node));
    // The output column is the decrypted value already; ORDER BY <name> spells it out.
    if (mode === 'order' && 'ColumnRef' in node && target.val) {
      this.changed = true;
      return clone(target.val);
    }
    return node;
  }

  private orderBy(items: Node[] | undefined, scope: Scope, targets: TargetInfo[], construct: string, mode: 'order' | 'group'): void {
    for (const item of items ?? []) {
      if ('SortBy' in item && item.SortBy.node) item.SortBy.node = this.orderItem(item.SortBy.node, scope, targets, construct, mode);
    }
  }

  private groupBy(items: Node[] | undefined, scope: Scope, targets: TargetInfo[]): void {
    if (!items) return;
    const visit = (list: Node[]) => {
      for (let i = 0; i < list.length; i++) {
        const item = list[i] as Node;
        if ('GroupingSet' in item) visit(item.GroupingSet.content ?? []);
        else if ('RowExpr' in item) visit(item.RowExpr.args ?? []);
        else if ('List' in item) visit(item.List.items ?? []);
        else list[i] = this.orderItem(item, scope, targets, 'GROUP BY', 'group');
      }
    };
    visit(items);
  }

  private distinct(stmt: SelectStmt, scope: Scope, targets: TargetInfo[]): void {
    const items = stmt.distinctClause;
    if (!items?.length) return;
    const on = items.filter((i) => Object.keys(i).length > 0);
    if (on.length === 0) {
      // Plain DISTINCT compares whole output rows.
      const hit = targets.find((t) => t.protectedColumn);
      if (hit?.protectedColumn) {
        touch(this, hit.protectedColumn);
        if (!this.allowDecryptScan) throw refusal(hit.protectedColumn, 'DISTINCT', hit.protectedPosition);
      }
      return;
    }
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as Node;
      if (Object.keys(item).length > 0) items[i] = this.orderItem(item, scope, targets, 'DISTINCT ON', 'order');
    }
  }

  // ---- INSERT ----------------------------------------------------------------------

  private insert(stmt: InsertStmt, parent: Scope | null): Output {
    const base = stmt.withClause ? this.withClause(stmt.withClause, parent) : parent;
    const rv = stmt.relation as RangeVar;
    const table = this.tableOf(rv);
    const target = rv.alias?.aliasname
      ? tableRelation(table, rv.alias.aliasname, null, null)
      : tableRelation(table, rv.relname ?? '', rv.schemaname ?? (table ? table.schema : null), rv.relname ?? '');
    if (table) this.insertValues(stmt, table, base, target);
    else if (stmt.selectStmt) this.statement(stmt.selectStmt, base);
    if (stmt.onConflictClause) this.onConflict(stmt.onConflictClause, table, target, base);
    const scope = new Scope(base);
    scope.relations.push(target);
    this.#recordWrite(stmt, target, scope);
    return this.returning(stmt.returningClause, scope, target);
  }

  private insertValues(stmt: InsertStmt, table: TableInfo, base: Scope | null, target: Relation): void {
    const given = (stmt.cols ?? []).map((c) => ('ResTarget' in c ? c.ResTarget : {}));
    for (const c of given) {
      const name = c.name ?? '';
      const bidx = isBlindIndexColumn(table, name);
      if (bidx) throw unsupported('writing a blind-index column directly', 'write the encrypted column: its blind index is written with it', bidx, positionOf(this, { ResTarget: c }));
      const column = table.protected.get(name);
      if (column && c.indirection?.length) throw unsupported('writing part of an encrypted column', 'write the whole value', column, positionOf(this, { ResTarget: c }));
    }
    const sel = stmt.selectStmt && 'SelectStmt' in stmt.selectStmt ? stmt.selectStmt.SelectStmt : undefined;
    if (!sel) return; // DEFAULT VALUES
    const plainValues =
      sel.valuesLists && !sel.sortClause && !sel.limitCount && !sel.limitOffset && !sel.withClause && !sel.lockingClause;
    let width: number | null;
    if (plainValues) {
      const scope = new Scope(base);
      for (const list of sel.valuesLists ?? []) {
        if ('List' in list) list.List.items = (list.List.items ?? []).map((item) => rewriteExpr(item, scope, this, 'value'));
      }
      const first = sel.valuesLists?.[0];
      width = first && 'List' in first ? (first.List.items?.length ?? 0) : 0;
    } else {
      width = outputNames(this.statement({ SelectStmt: sel }, base))?.length ?? null;
    }
    let columns: string[];
    if (given.length > 0) {
      columns = given.map((c) => c.name ?? '');
    } else {
      // Without a column list, values go to the table's columns in order, as the statement
      // author sees them: the blind-index columns do not exist for them.
      if (width === null) {
        throw unsupported(`INSERT into ${table.schema}.${table.table} without a column list from a SELECT of unknown width`, 'list the columns to insert into');
      }
      columns = plaintextColumns(table).slice(0, width);
    }
    const written = columns.map((name) => table.protected.get(name));
    if (!written.some(Boolean)) {
      if (given.length === 0 && columns.some((name, i) => table.columns[i] !== name)) {
        stmt.cols = columns.map((name) => ({ ResTarget: { name } }));
        this.changed = true;
      }
      return;
    }
    const columnNodes: Node[] = given.length > 0 ? (stmt.cols ?? []) : columns.map((name) => ({ ResTarget: { name } }));
    this.changed = true;
    if (plainValues) {
      for (const list of sel.valuesLists ?? []) {
        if (!('List' in list)) continue;
        const items = list.List.items ?? [];
        if (items.length < columns.length) throw unsupported('a VALUES row with fewer values than columns', 'give a value for every column listed');
        list.List.items = [...this.sealRow(table, columns, items, target), ...items.slice(columns.length)];
      }
    } else {
      let select = sel;
      if (!inPlace(sel)) {
        if (given.some((c) => c.indirection?.length)) {
          throw unsupported('INSERT ... SELECT into subscripted columns next to encrypted columns', 'insert into whole columns');
        }
        select = wrapSelect(sel, columns);
        stmt.selectStmt = { SelectStmt: select };
      }
      const targets = select.targetList ?? [];
      if (targets.length !== columns.length) throw unsupported('INSERT ... SELECT whose select list does not match the column list', 'select one value per column listed');
      const values = targets.map((t) => ('ResTarget' in t && t.ResTarget.val ? t.ResTarget.val : ({ A_Const: { isnull: true } } as Node)));
      const sealed = this.sealRow(table, columns, values, target);
      select.targetList = sealed.map((val) => resTarget(val));
    }
    stmt.cols = this.sealColumns(table, columns, columnNodes);
  }

  /** The column list with each searchable column's blind index after it. */
  private sealColumns(table: TableInfo, columns: string[], nodes: Node[]): Node[] {
    const out: Node[] = [];
    for (const [i, name] of columns.entries()) {
      out.push(nodes[i] ?? { ResTarget: { name } });
      const column = table.protected.get(name);
      if (column?.searchable && column.blindIndexColumn) out.push({ ResTarget: { name: column.blindIndexColumn } });
    }
    return out;
  }

  /** One row's values (already rewritten for reads), encrypted and indexed for `columns`. */
  private sealRow(table: TableInfo, columns: string[], values: Node[], target: Relation): Node[] {
    const out: Node[] = [];
    const valueOf = (name: string, column: ProtectedColumn, why: string): Node => {
      const index = columns.indexOf(name);
      const value = values[index];
      if (index < 0 || !value) throw unsupported(`writing ${why} without giving ${name} in the same row`, `include ${name} in the column list`, column);
      if ('SetToDefault' in value) throw unsupported(`writing ${why} with DEFAULT for ${name}`, `give ${name} a value`, column);
      return typedLike(clone(value), table.schema, table.table, name);
    };
    columns.forEach((name, i) => {
      const value = values[i] as Node;
      const column = table.protected.get(name);
      if (!column) {
        out.push(value);
        return;
      }
      touch(this, column, target);
      if ('SetToDefault' in value) throw unsupported('DEFAULT for an encrypted column', 'write NULL or a value', column, positionOf(this, value));
      const row: RowSource = {
        key: () => valueOf(primaryKeyOf(table, column, undefined), column, 'a row-context column'),
        scopeValue: () => valueOf(column.scopeColumn ?? '', column, 'a column whose key scope is another column'),
      };
      out.push(encryptExpr(value, column, row));
      if (column.searchable && column.blindIndexColumn) out.push(blindIndexExpr(clone(value), column, row));
    });
    return out;
  }

  private onConflict(oc: OnConflictClause, table: TableInfo | null, target: Relation, base: Scope | null): void {
    const scope = new Scope(base);
    scope.relations.push(target);
    // As in PostgreSQL, an unqualified column here is ambiguous between the two.
    const excluded = tableRelation(table, 'excluded', null, null);
    scope.relations.push(excluded);
    const conflictColumns = new Set<string>();
    for (const e of oc.infer?.indexElems ?? []) {
      if (!('IndexElem' in e)) continue;
      const name = e.IndexElem.name;
      if (name !== undefined) {
        conflictColumns.add(name);
        const column = table ? (table.protected.get(name) ?? isBlindIndexColumn(table, name)) : undefined;
        if (column) throw unsupported('ON CONFLICT on an encrypted column', 'conflict on a plaintext unique key, such as the primary key', column);
      }
      const hit = findProtected(e.IndexElem.expr, scope);
      if (hit) throw unsupported('ON CONFLICT on an expression over an encrypted column', 'conflict on a plaintext unique key, such as the primary key', hit.column);
    }
    if (oc.infer?.whereClause) oc.infer.whereClause = rewriteCondition(oc.infer.whereClause, scope, this);
    const pk = table?.primaryKey ?? [];
    const onPrimaryKey = !oc.infer?.conname && pk.length > 0 && pk.length === conflictColumns.size && pk.every((c) => conflictColumns.has(c));
    if (oc.action === 'ONCONFLICT_UPDATE') {
      this.assignments(oc.targetList, table, target, scope, { excluded, columns: conflictColumns, onPrimaryKey });
      if (oc.whereClause) oc.whereClause = rewriteCondition(oc.whereClause, scope, this);
    }
  }

  // ---- UPDATE, DELETE, RETURNING -----------------------------------------------------

  private update(stmt: UpdateStmt, parent: Scope | null): Output {
    const base = stmt.withClause ? this.withClause(stmt.withClause, parent) : parent;
    const scope = new Scope(base);
    const rv = stmt.relation as RangeVar;
    const target = this.rangeVar(rv, new Scope(null));
    scope.relations.push(target);
    this.from(stmt.fromClause, scope);
    this.assignments(stmt.targetList, target.table, target, scope);
    if (stmt.whereClause) stmt.whereClause = rewriteCondition(stmt.whereClause, scope, this);
    this.#recordWrite(stmt, target, scope);
    return this.returning(stmt.returningClause, scope, target);
  }

  private delete(stmt: DeleteStmt, parent: Scope | null): Output {
    const base = stmt.withClause ? this.withClause(stmt.withClause, parent) : parent;
    const scope = new Scope(base);
    const target = this.rangeVar(stmt.relation as RangeVar, new Scope(null));
    scope.relations.push(target);
    this.from(stmt.usingClause, scope);
    if (stmt.whereClause) stmt.whereClause = rewriteCondition(stmt.whereClause, scope, this);
    // a delete takes every protected value of its rows away
    if (target.table) for (const column of target.table.protected.values()) touch(this, column, target);
    this.#recordWrite(stmt, target, scope);
    return this.returning(stmt.returningClause, scope, target);
  }

  private returning(rc: ReturningClause | undefined, scope: Scope, target: Relation): Output {
    if (!rc?.exprs?.length) return NO_OUTPUT;
    if (rc.options?.length && target.table) {
      throw unsupported(`RETURNING WITH (OLD/NEW AS ...) on ${target.table.schema}.${target.table.table}`, 'use the default old/new names');
    }
    // PostgreSQL 18 lets RETURNING name the row before and after as old and new.
    const returning = new Scope(scope.parent);
    returning.relations.push(...scope.relations);
    if (target.table) {
      for (const name of ['old', 'new']) {
        if (!scope.findRelation([name])) returning.relations.push({ ...target, refName: name, schemaName: null, relName: null, qualifiedOnly: true });
      }
    }
    return { targets: this.targets(rc.exprs, returning) };
  }

  /** SET lists of UPDATE and ON CONFLICT DO UPDATE. */
  private assignments(
    list: Node[] | undefined,
    table: TableInfo | null,
    rel: Relation,
    scope: Scope,
    conflict?: { excluded: Relation; columns: Set<string>; onPrimaryKey: boolean },
  ): void {
    if (!list) return;
    const sets: ResTarget[] = list.map((item) => ('ResTarget' in item ? item.ResTarget : {}));
    if (!table) {
      for (const rt of sets) if (rt.val) rt.val = rewriteExpr(rt.val, scope, this, 'value');
      return;
    }
    const byName = new Map<string, ResTarget>();
    for (const rt of sets) {
      const name = rt.name ?? '';
      const position = positionOf(this, { ResTarget: rt });
      const bidx = isBlindIndexColumn(table, name);
      if (bidx) throw unsupported('writing a blind-index column directly', 'write the encrypted column: its blind index is written with it', bidx, position);
      const column = table.protected.get(name);
      if (column) {
        if (rt.indirection?.length) throw unsupported('writing part of an encrypted column', 'write the whole value', column, position);
        if (rt.val && 'MultiAssignRef' in rt.val) throw unsupported('a multiple-column assignment to an encrypted column', 'assign it on its own: SET column = value', column, position);
        if (rt.val && 'SetToDefault' in rt.val) throw unsupported('DEFAULT for an encrypted column', 'write NULL or a value', column, position);
      }
      byName.set(name, rt);
    }
    const pk = table.primaryKey.length === 1 ? table.primaryKey[0] : undefined;
    for (const column of table.protected.values()) {
      if (byName.has(column.column)) continue;
      if (column.scopeColumn && byName.has(column.scopeColumn)) {
        throw unsupported(`changing ${column.scopeColumn}, the key scope of an encrypted column, without writing the column`, `set ${column.column} in the same statement, so it is encrypted and indexed under the new scope`, column);
      }
      if (column.contextMode === 'row' && pk !== undefined && byName.has(pk)) {
        throw unsupported('changing the primary key of a row with a row-context column without writing the column', `set ${column.column} in the same statement, so it is encrypted for the new key`, column);
      }
    }
    // Plaintext columns first: a protected column's context or scope may use their new values.
    for (const rt of sets) {
      if (rt.val && !table.protected.has(rt.name ?? '')) rt.val = rewriteExpr(rt.val, scope, this, 'value');
    }
    const newValue = (name: string, column: ProtectedColumn): Node | undefined => {
      const rt = byName.get(name);
      if (!rt?.val) return undefined;
      if ('MultiAssignRef' in rt.val || 'SetToDefault' in rt.val) {
        throw unsupported(`setting ${name} with DEFAULT or a multiple-column assignment while writing an encrypted column that depends on it`, `set ${name} with a plain expression`, column);
      }
      return typedLike(clone(rt.val), table.schema, table.table, name);
    };
    const out: Node[] = [];
    list.forEach((item, i) => {
      out.push(item);
      const rt = sets[i] as ResTarget;
      const column = table.protected.get(rt.name ?? '');
      if (!column || !rt.val) return;
      touch(this, column, rel);
      this.changed = true;
      const position = positionOf(this, item);
      if (conflict && isColumnOf(rt.val, 'excluded', column.column)) {
        // The proposed row's ciphertext and blind index, copied as they are: valid only if
        // they were made for this row's context and scope.
        if (column.contextMode === 'row' && !conflict.onPrimaryKey) {
          throw unsupported('copying a row-context column from EXCLUDED when the conflict target is not the primary key', 'use ON CONFLICT (primary key)', column, position);
        }
        if (column.scopeColumn && !conflict.columns.has(column.scopeColumn) && !isColumnOf(byName.get(column.scopeColumn)?.val, 'excluded', column.scopeColumn)) {
          throw unsupported(`copying a column from EXCLUDED whose key scope (${column.scopeColumn}) may differ`, `add ${column.scopeColumn} to the conflict target, or SET ${column.scopeColumn} = EXCLUDED.${column.scopeColumn}`, column, position);
        }
        if (column.searchable && column.blindIndexColumn) {
          out.push({ ResTarget: { name: column.blindIndexColumn, val: colRef(['excluded', column.blindIndexColumn]) } });
        }
        return;
      }
      if (conflict && column.contextMode === 'row' && !conflict.onPrimaryKey) {
        throw unsupported('writing a row-context column in ON CONFLICT DO UPDATE when the conflict target is not the primary key', 'use ON CONFLICT (primary key)', column, position);
      }
      const value = rewriteExpr(rt.val, scope, this, 'value');
      const row: RowSource = {
        key: () => newValue(primaryKeyOf(table, column, position), column) ?? readRow(rel, scope, column, position).key(),
        scopeValue: () => newValue(column.scopeColumn ?? '', column) ?? readRow(rel, scope, column, position).scopeValue(),
      };
      rt.val = encryptExpr(value, column, row);
      if (column.searchable && column.blindIndexColumn) {
        out.push({ ResTarget: { name: column.blindIndexColumn, val: blindIndexExpr(clone(value), column, row) } });
      }
    });
    list.splice(0, list.length, ...out);
  }
}

// aggregates by name, and any call with an aggregate's syntax (DISTINCT, ORDER BY, WITHIN GROUP, FILTER, *)
const AGGREGATES = new Set([
  'count', 'sum', 'avg', 'min', 'max', 'array_agg', 'string_agg', 'bool_and', 'bool_or', 'every', 'json_agg', 'jsonb_agg',
  'json_object_agg', 'jsonb_object_agg', 'bit_and', 'bit_or', 'bit_xor', 'xmlagg', 'stddev', 'stddev_pop', 'stddev_samp', 'variance',
  'var_pop', 'var_samp', 'corr', 'covar_pop', 'covar_samp', 'regr_avgx', 'regr_avgy', 'regr_count', 'regr_intercept', 'regr_r2',
  'regr_slope', 'regr_sxx', 'regr_sxy', 'regr_syy', 'percentile_cont', 'percentile_disc', 'mode', 'any_value', 'range_agg', 'range_intersect_agg',
]);

/** Whether a SELECT returns groups rather than rows: GROUP BY, HAVING, or an aggregate call in its select list. */
function aggregates(stmt: SelectStmt): boolean {
  if (stmt.groupClause?.length || stmt.havingClause) return true;
  const visit = (value: unknown): boolean => {
    if (Array.isArray(value)) return value.some(visit);
    if (!isNode(value)) return typeof value === 'object' && value !== null && Object.values(value).some(visit);
    if ('SubLink' in value) return false; // a subquery's aggregates are its own
    if ('FuncCall' in value) {
      const f = value.FuncCall;
      if (!f.over && (f.agg_star || f.agg_distinct || f.agg_order?.length || f.agg_within_group || f.agg_filter || AGGREGATES.has(names(f.funcname).at(-1) ?? ''))) return true;
    }
    return Object.values(dataOf(value)).some(visit);
  };
  return (stmt.targetList ?? []).some(visit);
}

function isColumnOf(node: Node | undefined, qualifier: string, name: string): boolean {
  if (!node || !('ColumnRef' in node)) return false;
  const f = refFields(node.ColumnRef.fields);
  return f.length === 2 && f[0] === qualifier && f[1] === name;
}

/** Column aliases (`AS s(a, b)`) rename the first columns; unknown when the rest are unknown. */
function aliasColumns(aliased: string[] | null, columns: string[] | null): string[] | null {
  if (!aliased) return columns;
  if (!columns) return null;
  return [...aliased, ...columns.slice(aliased.length)];
}

function functionRefName(node: Node & { RangeFunction: unknown }): string | null {
  const functions = (node.RangeFunction as { functions?: Node[] }).functions ?? [];
  if (functions.length !== 1) return null;
  const first = functions[0];
  const call = first && 'List' in first ? first.List.items?.[0] : undefined;
  if (!call || !('FuncCall' in call)) return null;
  return names(call.FuncCall.funcname).pop() ?? null;
}

/** A SELECT whose output expressions can be encrypted where they stand. */
function inPlace(sel: SelectStmt): boolean {
  return (
    (!sel.op || sel.op === 'SETOP_NONE') &&
    !sel.valuesLists &&
    !sel.distinctClause?.length &&
    !sel.groupClause?.length &&
    !sel.sortClause?.length &&
    !(sel.targetList ?? []).some((t) => 'ResTarget' in t && t.ResTarget.val && 'ColumnRef' in t.ResTarget.val && refFields(t.ResTarget.val.ColumnRef.fields).at(-1) === '*')
  );
}

/**
 * INSERT ... SELECT with DISTINCT, GROUP BY, ORDER BY or a set operation: encrypting its
 * outputs in place would change what they group or compare (encryption is randomised),
 * so the SELECT becomes a subquery and the encryption happens outside it.
 */
function wrapSelect(sel: SelectStmt, columns: string[]): SelectStmt {
  return {
    targetList: columns.map((name) => resTarget(colRef([SOURCE_ALIAS, name]))),
    fromClause: [{ RangeSubselect: { subquery: { SelectStmt: sel }, alias: { aliasname: SOURCE_ALIAS, colnames: columns.map(str) } } }],
    limitOption: 'LIMIT_OPTION_DEFAULT',
    op: 'SETOP_NONE',
  };
}
