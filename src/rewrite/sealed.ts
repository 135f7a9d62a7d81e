// The SQL expressions that read, write and search one protected column through pgseal's
// SQL functions (sql/40_envelope.sql, sql/60_search.sql).

import type { Node } from '@pgsql/types';
import { columnContext, type ProtectedColumn } from '../registry/types.js';
import { cast, clone, funcCall, intConst, textConst } from './ast.js';

const fn = (name: string, args: Node[]) => funcCall(['pgseal', name], args);

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

/** 'schema.table.column', then '@<scope>' for per-tenant columns, then '#<key>' in row mode. */
export function contextExpr(column: ProtectedColumn, row: RowSource): Node {
  let context = textConst(columnContext(column));
  if (column.scopeColumn !== null) context = fn('scope_context', [context, cast(row.scopeValue(), 'text')]);
  if (column.contextMode === 'column') return context;
  return fn('row_context', [context, cast(row.key(), 'text')]);
}

export function scopeExpr(column: ProtectedColumn, row: RowSource): Node {
  return column.scope !== null ? textConst(column.scope) : cast(row.scopeValue(), 'text');
}

/** The plaintext value, typed as the column's value type. */
export function decryptExpr(ciphertext: Node, column: ProtectedColumn, row: RowSource): Node {
  const context = contextExpr(column, row);
  switch (column.valueType) {
    case 'bytea':
      return fn('decrypt_bytea', [ciphertext, context]);
    case 'jsonb':
      return cast(fn('decrypt_text', [ciphertext, context]), 'jsonb');
    case 'numeric':
      return cast(fn('decrypt_text', [ciphertext, context]), 'numeric');
    default:
      return fn('decrypt_text', [ciphertext, context]);
  }
}

/** The plaintext as the text that was encrypted and indexed (for the equality re-check). */
function decryptedText(ciphertext: Node, column: ProtectedColumn, row: RowSource): Node {
  const context = contextExpr(column, row);
  if (column.valueType === 'bytea') return cast(fn('decrypt_bytea', [ciphertext, context]), 'text');
  return fn('decrypt_text', [ciphertext, context]);
}

/**
 * A value as the text pgseal encrypts and indexes. jsonb and numeric go through their type
 * first: invalid input fails as it would on a plaintext column, and equal values are
 * stored and indexed in one canonical form.
 */
export function textForm(value: Node, column: ProtectedColumn): Node {
  switch (column.valueType) {
    case 'jsonb':
      return cast(cast(value, 'jsonb'), 'text');
    case 'numeric':
      return cast(cast(value, 'numeric'), 'text');
    case 'bytea':
      return cast(cast(value, 'bytea'), 'text');
    default:
      return cast(value, 'text');
  }
}

export function encryptExpr(value: Node, column: ProtectedColumn, row: RowSource): Node {
  const context = contextExpr(column, row);
  const scope = scopeExpr(column, row);
  if (column.valueType === 'bytea') return fn('encrypt_bytea', [cast(value, 'bytea'), context, scope]);
  return fn('encrypt_text', [textForm(value, column), context, scope]);
}

export function blindIndexExpr(value: Node, column: ProtectedColumn, row: RowSource): Node {
  return fn('blind_index', [
    textForm(value, column),
    textConst(column.normalizer),
    textConst(columnContext(column)),
    scopeExpr(column, row),
    intConst(column.blindIndexBytes),
  ]);
}

/**
 * The indexes to look the given values up by: each under every index key of the scope in
 * the transaction (while indexes are recomputed under a new key, rows may carry either).
 */
export function lookupIndexesExpr(values: Node[], column: ProtectedColumn, row: RowSource): Node {
  return blindIndexArrayExpr({ A_ArrayExpr: { elements: values.map((v) => textForm(v, column)) } }, column, row);
}

export function blindIndexArrayExpr(array: Node, column: ProtectedColumn, row: RowSource): Node {
  return fn('blind_index_array', [
    cast(array, 'text', true),
    textConst(column.normalizer),
    textConst(columnContext(column)),
    scopeExpr(column, row),
    intConst(column.blindIndexBytes),
  ]);
}

export function normalizedValue(value: Node, column: ProtectedColumn): Node {
  return fn('normalize', [textForm(value, column), textConst(column.normalizer)]);
}

export function normalizedArray(array: Node, column: ProtectedColumn): Node {
  return fn('normalize_array', [cast(array, 'text', true), textConst(column.normalizer)]);
}

export function normalizedPlaintext(ciphertext: Node, column: ProtectedColumn, row: RowSource): Node {
  return fn('normalize', [decryptedText(clone(ciphertext), column, row), textConst(column.normalizer)]);
}
