// The protected-column model's expressions (src/columns/expressions.ts) as parse-tree
// nodes: the rewriter hands its own nodes in as operands and gets nodes back. No rule of
// its own lives here.

import type { Node } from '@pgsql/types';
import * as columns from '../columns/expressions.js';
import type { ProtectedColumn } from '../registry/types.js';
import { operand, typedLike as typedLikeExpr, type Expr } from '../statement/expr.js';
import { clone, toNode } from './ast.js';

/**
 * Where the row's values come from for a column's context and scope: at a read, columns of
 * the row (`c.id`, `c.tenant`); at a write, the values written in the same row.
 */
export interface RowSource {
  /** the primary key value (row-context columns only) */
  key(): Node;
  /** the scope column's value (scope-column columns only) */
  scopeValue(): Node;
}

const row = (r: RowSource): columns.RowSource<Node> => ({ key: () => operand(r.key()), scopeValue: () => operand(r.scopeValue()) });
const n = (node: Node): Expr<Node> => operand(node);

/**
 * Keys travel as bound arguments (never the transaction's settings, which any function of
 * the caller's role running in the transaction could read): the keyset for decrypting and
 * the key payload for writes and lookups. Placeholders here; index.ts numbers them $1 and
 * $2 (those the statement uses) and moves the statement's own parameters after them.
 */
export const KEY_PARAMS = { keyset: -1, payload: -2 } as const;
// fresh nodes for every expression: index.ts renumbers them in place
const keys = (): columns.KeyRoute<Node> => ({
  via: 'argument',
  keyset: operand({ ParamRef: { number: KEY_PARAMS.keyset } }),
  payload: operand({ ParamRef: { number: KEY_PARAMS.payload } }),
});

export const decryptExpr = (ciphertext: Node, c: ProtectedColumn, r: RowSource): Node => toNode(columns.decryptExpr(c, n(ciphertext), row(r), keys()));
export const encryptExpr = (value: Node, c: ProtectedColumn, r: RowSource): Node => toNode(columns.encryptExpr(c, n(value), row(r), keys()));
export const blindIndexExpr = (value: Node, c: ProtectedColumn, r: RowSource): Node => toNode(columns.blindIndexExpr(c, n(value), row(r), keys()));
export const blindIndexArrayExpr = (values: Node, c: ProtectedColumn, r: RowSource): Node => toNode(columns.blindIndexArrayExpr(c, n(values), row(r), keys()));
export const lookupIndexesExpr = (values: Node[], c: ProtectedColumn, r: RowSource): Node => toNode(columns.lookupIndexesExpr(c, values.map(n), row(r), keys()));
export const normalizedValue = (value: Node, c: ProtectedColumn): Node => toNode(columns.normalizedValue(c, n(value)));
export const normalizedArray = (values: Node, c: ProtectedColumn): Node => toNode(columns.normalizedArray(c, n(values)));
export const normalizedPlaintext = (ciphertext: Node, c: ProtectedColumn, r: RowSource): Node => toNode(columns.normalizedPlaintext(c, n(clone(ciphertext)), row(r), keys()));

/**
 * A value written to `table.column`, for use a second time as text (row key, scope): typed
 * like the column it goes to, so its text is what the stored value yields when read back
 * ('07' written to an integer key binds '#7', not '#07'), and a bare parameter gets the
 * column's type instead of clashing with it ("inconsistent types deduced for parameter").
 */
export const typedLike = (value: Node, schema: string, table: string, column: string): Node => toNode(typedLikeExpr(n(value), schema, table, column));
