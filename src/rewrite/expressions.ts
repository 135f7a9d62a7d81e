// Expressions. In a value position (select list, RETURNING, values written) a protected
// column becomes its decrypted value. In a condition (WHERE, JOIN ON, HAVING, FILTER)
// equality, IN and = ANY on a searchable column go through the blind index with a
// re-check of the decrypted value; anything else that would read ciphertext is refused,
// or decrypted row by row when the caller allows a decrypting scan.

import type { A_Expr, Node, SubLink } from '@pgsql/types';
import { columnContext } from '../columns/context.js';
import type { ProtectedColumn, TableInfo } from '../registry/types.js';
import { and, arraySubLink, clone, colRef, dataOf, inList, isNode, kindOf, location, names, not, op, or, refFields, type NodeData } from './ast.js';
import { refusal, unsupported, type SourceText } from './errors.js';
import type { Relation, Resolved, Scope } from './scope.js';
import { blindIndexArrayExpr, blindIndexExpr, decryptExpr, lookupIndexesExpr, normalizedArray, normalizedPlaintext, normalizedValue, type RowSource } from './sealed.js';

export interface ExprContext {
  readonly allowDecryptScan: boolean;
  readonly source: SourceText;
  /** protected columns the statement touches, 'schema.table.column' */
  readonly touched: Set<string>;
  /** set when the tree differs from the parsed one */
  changed: boolean;
  /** rewrites a subquery (a SubLink's SELECT) whose outer scope is `parent` */
  rewriteSubquery(subselect: Node, parent: Scope): void;
  /** the protected columns read through each relation (access-log row attribution) */
  readonly readBy?: Map<Relation, Set<string>>;
}

/** A column reference that reads a protected column. */
export type ProtectedRef = Extract<Resolved, { kind: 'protected' }> & { node: Node };

export const positionOf = (ctx: ExprContext, node: Node | undefined): number | undefined => ctx.source.position(location(node));

/** How a query level qualifies a relation's columns in generated references (c.id, c.email_bidx). */
export function qualifierOf(rel: Relation, scope: Scope, column: ProtectedColumn | undefined, position: number | undefined): string[] {
  if (rel.refName !== null && scope.findRelation([rel.refName]) === rel) return [rel.refName];
  if (rel.schemaName !== null && rel.relName !== null && scope.findRelation([rel.schemaName, rel.relName]) === rel) {
    return [rel.schemaName, rel.relName];
  }
  throw unsupported('a reference to a table whose name is hidden by another table here', 'give the tables distinct aliases', column, position);
}

export function primaryKeyOf(table: TableInfo | null, column: ProtectedColumn, position: number | undefined): string {
  const pk = table?.primaryKey ?? [];
  if (pk.length !== 1 || pk[0] === undefined) {
    throw unsupported('a row-context column on a table without a single-column primary key', 'give the table a single-column primary key', column, position);
  }
  return pk[0];
}

/** The row a read of `rel` sees: its own primary key and scope column. */
export function readRow(rel: Relation, scope: Scope, column: ProtectedColumn, position: number | undefined): RowSource {
  return {
    key: () => colRef([...qualifierOf(rel, scope, column, position), primaryKeyOf(rel.table, column, position)]),
    scopeValue: () => colRef([...qualifierOf(rel, scope, column, position), column.scopeColumn ?? '']),
  };
}

export function touch(ctx: ExprContext, column: ProtectedColumn, rel?: Relation): void {
  ctx.touched.add(columnContext(column));
  if (rel && ctx.readBy) {
    const columns = ctx.readBy.get(rel) ?? new Set<string>();
    columns.add(column.column);
    ctx.readBy.set(rel, columns);
  }
}

function bareProtected(node: Node | undefined, scope: Scope): ProtectedRef | undefined {
  if (!node || !('ColumnRef' in node)) return undefined;
  const r = scope.resolve(refFields(node.ColumnRef.fields));
  return r.kind === 'protected' ? { ...r, node } : undefined;
}

/** The first protected column an expression reads outside its subqueries. */
export function findProtected(node: Node | undefined, scope: Scope): ProtectedRef | undefined {
  if (!node) return undefined;
  if ('ColumnRef' in node) return bareProtected(node, scope);
  if ('SubLink' in node) return findProtected(node.SubLink.testexpr, scope);
  let found: ProtectedRef | undefined;
  forEachChild(dataOf(node), (child) => {
    found ??= findProtected(child, scope);
  });
  return found;
}

function forEachChild(data: NodeData, visit: (child: Node) => void): void {
  for (const key in data) {
    const value = data[key];
    if (typeof value !== 'object' || value === null) continue;
    if (Array.isArray(value)) {
      for (const item of value) if (isNode(item)) visit(item);
    } else if (isNode(value)) {
      visit(value);
    } else {
      forEachChild(value as NodeData, visit);
    }
  }
}

function mapChildren(data: NodeData, rewrite: (child: Node) => Node, skip?: unknown): void {
  for (const key in data) {
    const value = data[key];
    if (typeof value !== 'object' || value === null || value === skip) continue;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const item: unknown = value[i];
        if (isNode(item)) value[i] = rewrite(item);
      }
    } else if (isNode(value)) {
      data[key] = rewrite(value);
    } else {
      mapChildren(value as NodeData, rewrite);
    }
  }
}

/**
 * Rewrites an expression. 'value': protected columns are decrypted. 'operand': the
 * expression is part of a condition, ORDER BY or GROUP BY, where reading a protected
 * column means reading every row's plaintext: refused, naming the innermost construct
 * (or `construct` throughout when sticky), unless the caller allows a decrypting scan.
 */
export function rewriteExpr(node: Node, scope: Scope, ctx: ExprContext, mode: 'value' | 'operand', construct = 'expression', sticky = false): Node {
  if ('ColumnRef' in node) return rewriteColumnRef(node, scope, ctx, mode, construct);
  if ('SubLink' in node) {
    const s = node.SubLink;
    if (s.subselect) ctx.rewriteSubquery(s.subselect, scope);
    if (s.testexpr) s.testexpr = rewriteExpr(s.testexpr, scope, ctx, mode, mode === 'operand' && !sticky ? subLinkConstruct(s) : construct, sticky);
    return node;
  }
  if ('NullTest' in node) {
    // IS [NOT] NULL reads the ciphertext column as it is: NULL in, NULL out.
    const hit = bareProtected(node.NullTest.arg, scope);
    if (hit) {
      touch(ctx, hit.column, hit.rel);
      return node;
    }
  }
  if ('FuncCall' in node && node.FuncCall.args?.length === 1) {
    // pgseal.key_version_of(col) reads the envelope's header: the ciphertext as it is
    const name = (node.FuncCall.funcname ?? []).map((n) => ('String' in n ? n.String.sval : ''));
    if (name.length === 2 && name[0] === 'pgseal' && name[1] === 'key_version_of' && bareProtected(node.FuncCall.args[0], scope)) return node;
  }
  const label = mode === 'operand' && !sticky ? (constructOf(node) ?? construct) : construct;
  // FILTER (WHERE ...) is a condition.
  const filter = 'FuncCall' in node ? node.FuncCall.agg_filter : undefined;
  mapChildren(dataOf(node), (child) => rewriteExpr(child, scope, ctx, mode, label, sticky), filter);
  if (filter && 'FuncCall' in node) node.FuncCall.agg_filter = rewriteCondition(filter, scope, ctx);
  return node;
}

function rewriteColumnRef(node: Node & { ColumnRef: unknown }, scope: Scope, ctx: ExprContext, mode: 'value' | 'operand', construct: string): Node {
  const fields = refFields((node.ColumnRef as { fields?: Node[] }).fields);
  const r = scope.resolve(fields);
  if (r.kind === 'wholerow') {
    const t = r.rel.table;
    throw unsupported(
      `a whole-row reference to ${t ? `${t.schema}.${t.table}` : 'a table'}, a table with encrypted columns`,
      'name the columns you need (a top-level `*` or `t.*` in a select list is expanded and decrypted)',
      undefined,
      positionOf(ctx, node),
    );
  }
  if (r.kind !== 'protected') return node;
  touch(ctx, r.column, r.rel);
  const position = positionOf(ctx, node);
  if (mode === 'operand' && !ctx.allowDecryptScan) throw refusal(r.column, construct, position);
  ctx.changed = true;
  return decryptExpr(node, r.column, readRow(r.rel, scope, r.column, position));
}

/** A condition: boolean structure, then the comparisons a blind index can answer. */
export function rewriteCondition(node: Node, scope: Scope, ctx: ExprContext): Node {
  if ('BoolExpr' in node) {
    const boolop = node.BoolExpr.boolop;
    // `x AND (bidx = .. AND ..)` flattened, as PostgreSQL's parser would: the printed
    // statement then parses back to the same tree and prints the same text.
    node.BoolExpr.args = (node.BoolExpr.args ?? []).flatMap((a) => {
      const r = rewriteCondition(a, scope, ctx);
      return boolop !== 'NOT_EXPR' && 'BoolExpr' in r && r.BoolExpr.boolop === boolop ? (r.BoolExpr.args ?? []) : [r];
    });
    return node;
  }
  if ('BooleanTest' in node && node.BooleanTest.arg) {
    node.BooleanTest.arg = rewriteCondition(node.BooleanTest.arg, scope, ctx);
    return node;
  }
  if ('NullTest' in node && node.NullTest.arg) {
    const hit = bareProtected(node.NullTest.arg, scope);
    if (hit) {
      touch(ctx, hit.column, hit.rel);
      return node;
    }
    node.NullTest.arg = rewriteCondition(node.NullTest.arg, scope, ctx);
    return node;
  }
  if ('A_Expr' in node) {
    const rewritten = rewriteComparison(node.A_Expr, scope, ctx);
    if (rewritten) return rewritten;
  }
  if ('SubLink' in node) {
    const rewritten = rewriteSubLinkComparison(node.SubLink, scope, ctx);
    if (rewritten) return rewritten;
  }
  return rewriteExpr(node, scope, ctx, 'operand', constructOf(node) ?? 'expression');
}

type Variant = 'eq' | 'ne' | 'distinct' | 'not distinct';

/** `=` or `<>` written plainly or as OPERATOR(pg_catalog.=). */
function plainOperator(name: Node[] | undefined): string | undefined {
  const n = names(name);
  if (n.length === 1 || (n.length === 2 && n[0] === 'pg_catalog')) return n[n.length - 1];
  return undefined;
}

function rewriteComparison(e: A_Expr, scope: Scope, ctx: ExprContext): Node | undefined {
  const name = plainOperator(e.name);
  switch (e.kind) {
    case 'AEXPR_OP':
      if (name === '=') return equality(e, 'eq', scope, ctx);
      if (name === '<>' || name === '!=') return equality(e, 'ne', scope, ctx);
      return undefined;
    case 'AEXPR_DISTINCT':
      return equality(e, 'distinct', scope, ctx);
    case 'AEXPR_NOT_DISTINCT':
      return equality(e, 'not distinct', scope, ctx);
    case 'AEXPR_IN':
      return inComparison(e, name === '<>', scope, ctx);
    case 'AEXPR_OP_ANY':
      return name === '=' ? arrayComparison(e.lexpr, e.rexpr, true, '= ANY', scope, ctx) : undefined;
    case 'AEXPR_OP_ALL':
      return name === '<>' || name === '!=' ? arrayComparison(e.lexpr, e.rexpr, false, '<> ALL', scope, ctx) : undefined;
    default:
      return undefined;
  }
}

const VARIANT_LABEL: Record<Variant, string> = { eq: '=', ne: '<>', distinct: 'IS DISTINCT FROM', 'not distinct': 'IS NOT DISTINCT FROM' };

/**
 * Checks that a comparison of `hit` with `others` can use the blind index. Returns false
 * when it cannot but a decrypting scan is allowed (the caller then decrypts), throws when
 * it is refused.
 */
function searchableComparison(hit: ProtectedRef, colNode: Node, others: (Node | undefined)[], label: string, scope: Scope, ctx: ExprContext): boolean {
  touch(ctx, hit.column, hit.rel);
  const position = positionOf(ctx, colNode);
  for (const other of others) {
    if (findProtected(other, scope)) {
      if (ctx.allowDecryptScan) return false;
      throw refusal(hit.column, `comparison of two encrypted columns (${label})`, position);
    }
  }
  if (!hit.column.searchable || !hit.column.blindIndexColumn) {
    if (ctx.allowDecryptScan) return false;
    throw refusal(hit.column, label, position, 'the column is not searchable: it has no blind index');
  }
  return true;
}

interface SearchParts {
  bidx: Node;
  row: RowSource;
  column: ProtectedColumn;
  colNode: Node;
}

function searchParts(hit: ProtectedRef, colNode: Node, scope: Scope, ctx: ExprContext): SearchParts {
  const position = positionOf(ctx, colNode);
  const row = readRow(hit.rel, scope, hit.column, position);
  const bidx = colRef([...qualifierOf(hit.rel, scope, hit.column, position), hit.column.blindIndexColumn ?? '']);
  ctx.changed = true;
  return { bidx, row, column: hit.column, colNode };
}

function equality(e: A_Expr, variant: Variant, scope: Scope, ctx: ExprContext): Node | undefined {
  const left = bareProtected(e.lexpr, scope);
  const hit = left ?? bareProtected(e.rexpr, scope);
  if (!hit || !e.lexpr || !e.rexpr) return undefined;
  const [colNode, valueNode] = left ? [e.lexpr, e.rexpr] : [e.rexpr, e.lexpr];
  if (!searchableComparison(hit, colNode, [valueNode], VARIANT_LABEL[variant], scope, ctx)) return undefined;
  const value = rewriteExpr(valueNode, scope, ctx, 'value');
  const p = searchParts(hit, colNode, scope, ctx);
  // the index matches under one of the scope's index keys (an older one until re-indexed)
  const indexed = op('AEXPR_OP_ANY', '=', p.bidx, lookupIndexesExpr([value], p.column, p.row));
  const plain = normalizedPlaintext(p.colNode, p.column, p.row);
  const given = normalizedValue(clone(value), p.column);
  // NULL IS NOT DISTINCT FROM NULL: only the active key's index of NULL (NULL) says so
  const indexedOrNull = () => or([op('AEXPR_NOT_DISTINCT', '=', clone(p.bidx), blindIndexExpr(clone(value), p.column, p.row)), clone(indexed)]);
  switch (variant) {
    case 'eq':
      return and([indexed, op('AEXPR_OP', '=', plain, given)]);
    case 'ne':
      return or([not(indexed), op('AEXPR_OP', '<>', plain, given)]);
    case 'not distinct':
      return and([indexedOrNull(), op('AEXPR_NOT_DISTINCT', '=', plain, given)]);
    case 'distinct':
      return or([not(indexedOrNull()), op('AEXPR_DISTINCT', '=', plain, given)]);
  }
}

function inComparison(e: A_Expr, negated: boolean, scope: Scope, ctx: ExprContext): Node | undefined {
  const hit = bareProtected(e.lexpr, scope);
  if (!hit || !e.lexpr || !e.rexpr || !('List' in e.rexpr)) return undefined;
  const items = e.rexpr.List.items ?? [];
  if (!searchableComparison(hit, e.lexpr, items, negated ? 'NOT IN' : 'IN', scope, ctx)) return undefined;
  const values = items.map((item) => rewriteExpr(item, scope, ctx, 'value'));
  const p = searchParts(hit, e.lexpr, scope, ctx);
  const anyIndex = op('AEXPR_OP_ANY', '=', p.bidx, lookupIndexesExpr(values, p.column, p.row));
  const indexes = negated ? not(anyIndex) : anyIndex;
  const plain = inList(normalizedPlaintext(p.colNode, p.column, p.row), values.map((v) => normalizedValue(clone(v), p.column)), negated);
  // NOT IN is NOT (a AND b) = (NOT a) OR (NOT b), which holds in three-valued logic too.
  return negated ? or([indexes, plain]) : and([indexes, plain]);
}

function arrayComparison(lexpr: Node | undefined, array: Node | undefined, any: boolean, label: string, scope: Scope, ctx: ExprContext): Node | undefined {
  const hit = bareProtected(lexpr, scope);
  if (!hit || !lexpr || !array) return undefined;
  if (!searchableComparison(hit, lexpr, [array], label, scope, ctx)) return undefined;
  const value = rewriteExpr(array, scope, ctx, 'value');
  return arrayCondition(hit, lexpr, value, clone(value), any, scope, ctx);
}

function arrayCondition(hit: ProtectedRef, colNode: Node, array: Node, array2: Node, any: boolean, scope: Scope, ctx: ExprContext): Node {
  const p = searchParts(hit, colNode, scope, ctx);
  const kind = any ? 'AEXPR_OP_ANY' : 'AEXPR_OP_ALL';
  const name = any ? '=' : '<>';
  const indexes = op(kind, name, p.bidx, blindIndexArrayExpr(array, p.column, p.row));
  const plain = op(kind, name, normalizedPlaintext(p.colNode, p.column, p.row), normalizedArray(array2, p.column));
  return any ? and([indexes, plain]) : or([indexes, plain]);
}

/** `c IN (SELECT ...)`, `c = ANY (SELECT ...)`, `c <> ALL (SELECT ...)`: compared with ARRAY(SELECT ...). */
function rewriteSubLinkComparison(s: SubLink, scope: Scope, ctx: ExprContext): Node | undefined {
  const name = s.operName ? plainOperator(s.operName) : '=';
  const any = s.subLinkType === 'ANY_SUBLINK' && name === '=';
  const all = s.subLinkType === 'ALL_SUBLINK' && (name === '<>' || name === '!=');
  if (!any && !all) return undefined;
  const hit = bareProtected(s.testexpr, scope);
  if (!hit || !s.testexpr || !s.subselect) return undefined;
  if (!searchableComparison(hit, s.testexpr, [], subLinkConstruct(s), scope, ctx)) return undefined;
  ctx.rewriteSubquery(s.subselect, scope);
  return arrayCondition(hit, s.testexpr, arraySubLink(s.subselect), arraySubLink(clone(s.subselect)), any, scope, ctx);
}

function subLinkConstruct(s: SubLink): string {
  const name = s.operName ? names(s.operName).pop() : undefined;
  switch (s.subLinkType) {
    case 'ANY_SUBLINK':
      return name ? `${name} ANY (subquery)` : 'IN (subquery)';
    case 'ALL_SUBLINK':
      return `${name ?? ''} ALL (subquery)`;
    default:
      return 'subquery comparison';
  }
}

const OPERATOR_LABELS: Record<string, string> = {
  '<': 'range comparison <',
  '>': 'range comparison >',
  '<=': 'range comparison <=',
  '>=': 'range comparison >=',
  '=': 'comparison =',
  '<>': 'comparison <>',
  '!=': 'comparison <>',
  '~~': 'LIKE',
  '!~~': 'NOT LIKE',
  '~~*': 'ILIKE',
  '!~~*': 'NOT ILIKE',
  '~': 'regular expression ~',
  '~*': 'regular expression ~*',
  '!~': 'regular expression !~',
  '!~*': 'regular expression !~*',
};

/** What a node does, for a refusal's message; undefined for nodes that only pass values through. */
export function constructOf(node: Node): string | undefined {
  switch (kindOf(node)) {
    case 'A_Expr': {
      const e = (node as { A_Expr: A_Expr }).A_Expr;
      const name = names(e.name).pop() ?? '';
      switch (e.kind) {
        case 'AEXPR_LIKE':
          return name === '!~~' ? 'NOT LIKE' : 'LIKE';
        case 'AEXPR_ILIKE':
          return name === '!~~*' ? 'NOT ILIKE' : 'ILIKE';
        case 'AEXPR_SIMILAR':
          return name === '!~' ? 'NOT SIMILAR TO' : 'SIMILAR TO';
        case 'AEXPR_BETWEEN':
          return 'BETWEEN';
        case 'AEXPR_NOT_BETWEEN':
          return 'NOT BETWEEN';
        case 'AEXPR_BETWEEN_SYM':
          return 'BETWEEN SYMMETRIC';
        case 'AEXPR_NOT_BETWEEN_SYM':
          return 'NOT BETWEEN SYMMETRIC';
        case 'AEXPR_IN':
          return name === '<>' ? 'NOT IN' : 'IN';
        case 'AEXPR_OP_ANY':
          return `${name} ANY`;
        case 'AEXPR_OP_ALL':
          return `${name} ALL`;
        case 'AEXPR_DISTINCT':
          return 'IS DISTINCT FROM';
        case 'AEXPR_NOT_DISTINCT':
          return 'IS NOT DISTINCT FROM';
        case 'AEXPR_NULLIF':
          return 'NULLIF';
        default:
          return OPERATOR_LABELS[name] ?? `operator ${name}`;
      }
    }
    case 'FuncCall': {
      const n = names((dataOf(node) as { funcname?: Node[] }).funcname);
      return `function ${n[n.length - 1] ?? ''}()`;
    }
    case 'TypeCast': {
      const n = names((dataOf(node) as { typeName?: { names?: Node[] } }).typeName?.names);
      return `cast to ${n[n.length - 1] ?? 'a type'}`;
    }
    case 'CaseExpr':
      return 'CASE';
    case 'CoalesceExpr':
      return 'COALESCE';
    case 'MinMaxExpr':
      return 'GREATEST/LEAST';
    case 'RowExpr':
      return 'row comparison';
    case 'A_ArrayExpr':
      return 'ARRAY[...]';
    case 'A_Indirection':
      return 'subscript';
    case 'CollateClause':
      return 'COLLATE';
    case 'BooleanTest':
      return 'IS TRUE/FALSE/UNKNOWN';
    case 'NullTest':
      return 'IS NULL';
    default:
      return undefined;
  }
}
