// The SQL expressions that read, write, search and re-encrypt one protected column through
// pgseal's SQL functions (sql/40_envelope.sql, sql/60_search.sql, sql/90_reencrypt.sql).
// Built once here as expression trees; the typed helpers and the re-encryption batches
// render them as statement text, the rewriter as parse-tree nodes.

import { array, call, cast, integer, text, type Expr, type SqlType } from '../statement/expr.js';
import { columnContext, contextExpr, type RowSource } from './context.js';
import type { ProtectedColumn } from './model.js';
import { textForm, VALUE_TYPES } from './values.js';

export type { RowSource };

/**
 * How keys reach the statement: in the transaction's settings (pgseal.use_keys), or as
 * bound arguments of the calls themselves: a keyset of data keys, the active one first, for
 * decrypting; and, for statements that write or look up with a key chosen per scope in SQL
 * (rewritten SQL), a key payload (crypto/wire.ts encodeKeyPayload) read by
 * pgseal._material_in / _index_keys_in (sql/65_key_arguments.sql).
 */
export type KeyRoute<O> = { readonly via: 'transaction' } | { readonly via: 'argument'; readonly keyset: Expr<O>; readonly payload?: Expr<O> };

const TRANSACTION = { via: 'transaction' } as const;

/** The scope a write seals with: the column's fixed scope, or the row's scope column. */
export function scopeExpr<O>(c: ProtectedColumn, row: RowSource<O>): Expr<O> {
  return c.scope !== null ? text(c.scope) : cast(row.scopeValue(), 'text');
}

/**
 * A stored value decrypted. 'value': typed as the column's type (text, bytea, jsonb,
 * numeric); 'plaintext': as sealed (text, or bytea for bytea columns), for the application
 * to decode (values.ts).
 */
export function decryptExpr<O>(c: ProtectedColumn, ciphertext: Expr<O>, row: RowSource<O>, keys: KeyRoute<O> = TRANSACTION, as: 'value' | 'plaintext' = 'value'): Expr<O> {
  const { plaintext, sqlType } = VALUE_TYPES[c.valueType];
  const context = contextExpr(c, row);
  const opened = keys.via === 'argument'
    ? call(plaintext === 'bytea' ? 'decrypt_bytea_with' : 'decrypt_text_with', [ciphertext, context, cast(keys.keyset, 'bytea')], plaintext)
    : call(plaintext === 'bytea' ? 'decrypt_bytea' : 'decrypt_text', [ciphertext, context], plaintext);
  return as === 'value' ? asValueType(opened, sqlType) : opened;
}

/**
 * A decrypted plaintext as the column's type. numeric and jsonb through pgseal.value_*
 * (sql/40_envelope.sql): a plain cast's error would quote the plaintext, into the server log.
 */
function asValueType<O>(opened: Expr<O>, sqlType: SqlType): Expr<O> {
  if (sqlType === 'numeric') return call('value_numeric', [opened], 'numeric');
  if (sqlType === 'jsonb') return call('value_jsonb', [opened], 'jsonb');
  return cast(opened, sqlType);
}

/** The plaintext as the text that was sealed (bytea as its text form), for comparisons. */
export function plaintextText<O>(c: ProtectedColumn, ciphertext: Expr<O>, row: RowSource<O>, keys: KeyRoute<O> = TRANSACTION): Expr<O> {
  return cast(decryptExpr(c, ciphertext, row, keys, 'plaintext'), 'text');
}

/** The key payload argument of a route that chooses keys per scope in SQL. */
function payloadOf<O>(keys: KeyRoute<O>): Expr<O> | undefined {
  if (keys.via === 'transaction') return undefined;
  if (!keys.payload) throw new TypeError('this statement writes or looks up by scope: its key route needs the key payload');
  return cast(keys.payload, 'bytea');
}

/** An SQL value sealed for the column: with the scope's active key from the payload argument, or from the transaction (views). */
export function encryptExpr<O>(c: ProtectedColumn, value: Expr<O>, row: RowSource<O>, keys: KeyRoute<O> = TRANSACTION): Expr<O> {
  const context = contextExpr(c, row);
  const scope = scopeExpr(c, row);
  const payload = payloadOf(keys);
  if (payload) {
    const material = call('_material_in', [payload, scope], 'bytea');
    if (c.valueType === 'bytea') return call('encrypt_bytea_with', [cast(value, 'bytea'), context, material], 'bytea');
    return call('encrypt_text_with', [textForm(c, value), context, material], 'bytea');
  }
  if (c.valueType === 'bytea') return call('encrypt_bytea', [cast(value, 'bytea'), context, scope], 'bytea');
  return call('encrypt_text', [textForm(c, value), context, scope], 'bytea');
}

/** The key a write seals with: the scope's active key material as an argument, or the scope, whose key is in the transaction. */
export type SealKey<O> = { readonly via: 'argument'; readonly material: Expr<O> } | { readonly via: 'transaction'; readonly scope: Expr<O> };

/**
 * Plaintext bytes the application encoded (values.ts) sealed for the column: with the
 * scope's active key material as a bound argument, or with the transaction's keys.
 */
export function encryptBytesExpr<O>(c: ProtectedColumn, bytes: Expr<O>, row: RowSource<O>, key: SealKey<O>): Expr<O> {
  const context = contextExpr(c, row);
  return key.via === 'argument'
    ? call('encrypt_bytea_with', [cast(bytes, 'bytea'), context, cast(key.material, 'bytea')], 'bytea')
    : call('encrypt_bytea', [cast(bytes, 'bytea'), context, cast(key.scope, 'text')], 'bytea');
}

/** The blind index of an SQL value, under the scope's active index key (what a write stores). */
export function blindIndexExpr<O>(c: ProtectedColumn, value: Expr<O>, row: RowSource<O>, keys: KeyRoute<O> = TRANSACTION): Expr<O> {
  const payload = payloadOf(keys);
  if (payload) {
    const indexKeys = call('_index_keys_in', [payload, scopeExpr(c, row)]);
    return call('blind_index_with', [textForm(c, value), text(c.normalizer), text(columnContext(c)), indexKeys, integer(c.blindIndexBytes)], 'bytea');
  }
  return call('blind_index', [textForm(c, value), text(c.normalizer), text(columnContext(c)), scopeExpr(c, row), integer(c.blindIndexBytes)], 'bytea');
}

/** The blind indexes of an array of values, under every index key of the scope (lookups). */
export function blindIndexArrayExpr<O>(c: ProtectedColumn, values: Expr<O>, row: RowSource<O>, keys: KeyRoute<O> = TRANSACTION): Expr<O> {
  const payload = payloadOf(keys);
  if (payload) {
    const indexKeys = call('_index_keys_in', [payload, scopeExpr(c, row)]);
    return call('blind_index_array_with', [cast(values, 'text', true), text(c.normalizer), text(columnContext(c)), indexKeys, integer(c.blindIndexBytes)]);
  }
  return call('blind_index_array', [cast(values, 'text', true), text(c.normalizer), text(columnContext(c)), scopeExpr(c, row), integer(c.blindIndexBytes)]);
}

/** The indexes to look the given values up by: each under every index key of the scope (rows may carry an older one until re-indexed). */
export function lookupIndexesExpr<O>(c: ProtectedColumn, values: readonly Expr<O>[], row: RowSource<O>, keys: KeyRoute<O> = TRANSACTION): Expr<O> {
  return blindIndexArrayExpr(c, array(values.map((v) => textForm(c, v))), row, keys);
}

/** A value normalised as the blind index normalises it. */
export function normalizedValue<O>(c: ProtectedColumn, value: Expr<O>): Expr<O> {
  return call('normalize', [textForm(c, value), text(c.normalizer)], 'text');
}

export function normalizedArray<O>(c: ProtectedColumn, values: Expr<O>): Expr<O> {
  return call('normalize_array', [cast(values, 'text', true), text(c.normalizer)]);
}

/** A stored value decrypted and normalised: the re-check of a blind-index match. */
export function normalizedPlaintext<O>(c: ProtectedColumn, ciphertext: Expr<O>, row: RowSource<O>, keys: KeyRoute<O> = TRANSACTION): Expr<O> {
  return call('normalize', [plaintextText(c, ciphertext, row, keys), text(c.normalizer)], 'text');
}

/** The blind index a stored value should carry: its plaintext indexed under the active index key (re-indexing). */
export function storedIndexExpr<O>(c: ProtectedColumn, ciphertext: Expr<O>, row: RowSource<O>, keys: KeyRoute<O> = TRANSACTION): Expr<O> {
  return blindIndexExpr(c, decryptExpr(c, ciphertext, row, keys), row, keys);
}

/** A stored value opened with the old keys (a keyset) and sealed again with the active key material, inside the database. */
export function resealExpr<O>(c: ProtectedColumn, ciphertext: Expr<O>, row: RowSource<O>, keyset: Expr<O>, material: Expr<O>): Expr<O> {
  return call('reseal_with', [ciphertext, contextExpr(c, row), keyset, material], 'bytea');
}
