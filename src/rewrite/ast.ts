// Small helpers over the pgsql-parser AST: node kinds, builders that produce exactly the
// shapes the parser produces (so the round-trip check in parser.ts can compare trees), and
// PostgreSQL's rule for the implicit name of a select-list column.

import type { Node, TypeName } from '@pgsql/types';
import type { Expr } from '../statement/expr.js';

/** A node's data, loosely typed: the rewriter walks many node kinds generically. */
export type NodeData = Record<string, unknown>;

export function kindOf(node: Node): string {
  for (const k in node) return k;
  return '';
}

export function dataOf(node: Node): NodeData {
  for (const k in node) return (node as unknown as Record<string, NodeData>)[k] as NodeData;
  return {};
}

/** A wrapped node ({ Kind: {...} }), as opposed to an inline struct such as TypeName. */
export function isNode(value: unknown): value is Node {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  let kind: string | undefined;
  for (const k in value) {
    if (kind !== undefined) return false;
    kind = k;
  }
  if (kind === undefined) return false;
  const c = kind.charCodeAt(0);
  return c >= 65 && c <= 90;
}

export function clone<T>(node: T): T {
  return structuredClone(node);
}

export const str = (sval: string): Node => ({ String: { sval } });

export function names(list: Node[] | undefined): string[] {
  const out: string[] = [];
  for (const n of list ?? []) {
    if ('String' in n) out.push(n.String.sval ?? '');
  }
  return out;
}

export const colRef = (fields: string[]): Node => ({ ColumnRef: { fields: fields.map(str) } });
export const textConst = (sval: string): Node => ({ A_Const: { sval: { sval } } });
export const intConst = (ival: number): Node => ({ A_Const: { ival: ival === 0 ? {} : { ival } } });

export function funcCall(name: string[], args: Node[]): Node {
  return { FuncCall: { funcname: name.map(str), args, funcformat: 'COERCE_EXPLICIT_CALL' } };
}

// as the parser spells them: keyword types (numeric, integer) come out of the grammar qualified
// and every other name pgseal adds qualified too: a role may put its own types (a domain
// named bytea with a CHECK calling its function would see the key argument) first on its
// search_path
const TYPE_NAMES: Record<string, string[]> = {
  text: ['pg_catalog', 'text'],
  bytea: ['pg_catalog', 'bytea'],
  jsonb: ['pg_catalog', 'jsonb'],
  numeric: ['pg_catalog', 'numeric'],
  integer: ['pg_catalog', 'int4'],
};

function typeName(type: string, array: boolean): TypeName {
  const t: TypeName = { names: (TYPE_NAMES[type] ?? [type]).map(str), typemod: -1 };
  if (array) t.arrayBounds = [{ Integer: { ival: -1 } }];
  return t;
}

function isCastTo(node: Node, type: string, array: boolean): boolean {
  if (!('TypeCast' in node)) return false;
  const t = node.TypeCast.typeName;
  const n = names(t?.names);
  const last = n[n.length - 1];
  return last === type && (n.length === 1 || n[0] === 'pg_catalog') && (t?.arrayBounds?.length ?? 0) === (array ? 1 : 0) && !t?.typmods;
}

/** `node::type`, unless node already is exactly that cast. */
export function cast(node: Node, type: string, array = false): Node {
  if (isCastTo(node, type, array)) return node;
  const t = typeName(type, array);
  return { TypeCast: { arg: node, typeName: t } };
}

export const and = (args: Node[]): Node => ({ BoolExpr: { boolop: 'AND_EXPR', args } });
export const or = (args: Node[]): Node => ({ BoolExpr: { boolop: 'OR_EXPR', args } });
export const not = (arg: Node): Node => ({ BoolExpr: { boolop: 'NOT_EXPR', args: [arg] } });

/**
 * A comparison pgseal adds, with pg_catalog's operator: OPERATOR(pg_catalog.=), never a bare
 * `=` that the caller's search_path could resolve to a role's own operator. IS [NOT] DISTINCT
 * FROM cannot name its operator's schema, so it becomes pgseal._not_distinct (its `=` bound
 * when the function was created).
 */
export function op(kind: 'AEXPR_OP' | 'AEXPR_OP_ANY' | 'AEXPR_OP_ALL' | 'AEXPR_DISTINCT' | 'AEXPR_NOT_DISTINCT', name: string, lexpr: Node, rexpr: Node): Node {
  if (kind === 'AEXPR_NOT_DISTINCT') return funcCall(['pgseal', '_not_distinct'], [lexpr, rexpr]);
  if (kind === 'AEXPR_DISTINCT') return not(funcCall(['pgseal', '_not_distinct'], [lexpr, rexpr]));
  return { A_Expr: { kind, name: [str('pg_catalog'), str(name)], lexpr, rexpr } };
}

/** `x IN (a, b)` as `x OPERATOR(pg_catalog.=) ANY (ARRAY[a, b])` (IN cannot name its operator's schema). */
export function inList(lexpr: Node, items: Node[], negated: boolean): Node {
  return op(negated ? 'AEXPR_OP_ALL' : 'AEXPR_OP_ANY', negated ? '<>' : '=', lexpr, { A_ArrayExpr: { elements: items } });
}

export const arraySubLink = (subselect: Node): Node => ({ SubLink: { subLinkType: 'ARRAY_SUBLINK', subselect } });

export function resTarget(val: Node, name?: string): Node {
  return name === undefined ? { ResTarget: { val } } : { ResTarget: { name, val } };
}

/** The string fields of a ColumnRef; '*' for A_Star. */
export function refFields(fields: Node[] | undefined): string[] {
  return (fields ?? []).map((f) => ('String' in f ? (f.String.sval ?? '') : '*'));
}

export function location(node: Node | undefined): number | undefined {
  if (!node) return undefined;
  const loc = dataOf(node).location;
  return typeof loc === 'number' && loc >= 0 ? loc : undefined;
}

/**
 * PostgreSQL's FigureColname: the output name a select-list expression gets without AS.
 * A rewrite that changes it (email -> pgseal.decrypt_text(...)) adds an explicit AS.
 */
export function figureColname(node: Node | undefined): string {
  return figure(node)[0];
}

function figure(node: Node | undefined): [string, number] {
  if (!node) return ['?column?', 0];
  if ('ColumnRef' in node) {
    const f = refFields(node.ColumnRef.fields);
    const last = f[f.length - 1];
    return last && last !== '*' ? [last, 2] : ['?column?', 0];
  }
  if ('A_Indirection' in node) {
    const field = names(node.A_Indirection.indirection).pop();
    return field !== undefined ? [field, 2] : figure(node.A_Indirection.arg);
  }
  if ('FuncCall' in node) {
    const n = names(node.FuncCall.funcname);
    return [n[n.length - 1] ?? '?column?', 2];
  }
  if ('A_Expr' in node) {
    if (node.A_Expr.kind === 'AEXPR_NULLIF') return ['nullif', 2];
    return ['?column?', 0];
  }
  if ('TypeCast' in node) {
    const inner = figure(node.TypeCast.arg);
    if (inner[1] > 1) return inner;
    const n = names(node.TypeCast.typeName?.names);
    const last = n[n.length - 1];
    return last ? [last, 1] : inner;
  }
  if ('CollateClause' in node) return figure(node.CollateClause.arg);
  if ('GroupingFunc' in node) return ['grouping', 2];
  if ('MergeSupportFunc' in node) return ['merge_action', 2];
  if ('SubLink' in node) {
    const s = node.SubLink;
    if (s.subLinkType === 'EXISTS_SUBLINK') return ['exists', 2];
    if (s.subLinkType === 'ARRAY_SUBLINK') return ['array', 2];
    if (s.subLinkType === 'EXPR_SUBLINK' && s.subselect && 'SelectStmt' in s.subselect) {
      const first = s.subselect.SelectStmt.targetList?.[0];
      if (first && 'ResTarget' in first) {
        if (first.ResTarget.name) return [first.ResTarget.name, 2];
        return figure(first.ResTarget.val);
      }
    }
    return ['?column?', 0];
  }
  if ('CaseExpr' in node) {
    const inner = figure(node.CaseExpr.defresult);
    return inner[1] > 1 ? inner : ['case', 1];
  }
  if ('A_ArrayExpr' in node) return ['array', 2];
  if ('RowExpr' in node) return ['row', 2];
  if ('CoalesceExpr' in node) return ['coalesce', 2];
  if ('MinMaxExpr' in node) return [node.MinMaxExpr.op === 'IS_GREATEST' ? 'greatest' : 'least', 2];
  if ('SQLValueFunction' in node) return [sqlValueFunctionName(String(node.SQLValueFunction.op ?? '')), 2];
  if ('XmlExpr' in node) return ['xml', 1];
  if ('XmlSerialize' in node) return ['xmlserialize', 2];
  return ['?column?', 0];
}

function sqlValueFunctionName(op: string): string {
  // SVFOP_CURRENT_DATE -> current_date, SVFOP_CURRENT_TIME_N -> current_time, ...
  return op.replace(/^SVFOP_/, '').replace(/_N$/, '').toLowerCase();
}

/** An expression of the protected-column model (src/statement/expr.ts) as parse-tree nodes; operands are the rewriter's own nodes. */
export function toNode(e: Expr<Node>): Node {
  switch (e.k) {
    case 'operand':
      return e.operand;
    case 'text':
      return textConst(e.value);
    case 'int':
      return intConst(e.value);
    case 'call':
      return funcCall(['pgseal', e.fn], e.args.map(toNode));
    case 'cast':
      return cast(toNode(e.arg), e.type, e.array);
    case 'array':
      return { A_ArrayExpr: { elements: e.items.map(toNode) } };
    case 'typed-like': {
      const typedNull: Node = {
        A_Indirection: {
          arg: { TypeCast: { arg: { A_Const: { isnull: true } }, typeName: { names: [str(e.schema), str(e.table)], typemod: -1 } } },
          indirection: [str(e.column)],
        },
      };
      return { CoalesceExpr: { args: [toNode(e.value), typedNull] } };
    }
  }
}
