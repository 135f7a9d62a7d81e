// How each value type becomes the plaintext bytes that are sealed, and back. One table for
// both sides: in Node (the typed helpers hand the bytes over, and decode what the database
// decrypted) and in SQL (a value written through rewritten SQL or a view goes through its
// type first, so equal values are sealed and indexed in one canonical text form).
// Text and JSON are sealed as UTF-8 text, so decrypt_text reads every type but bytea.

import { ErrorCodes, PgsealError } from '../errors.js';
import { cast, type Expr, type SqlType } from '../statement/expr.js';
import type { ProtectedColumn, ValueType } from './model.js';

interface ValueEncoding {
  /** what is sealed: UTF-8 text (decrypt_text opens it) or raw bytes (decrypt_bytea) */
  plaintext: 'text' | 'bytea';
  /** the SQL type a decrypted value is read back as */
  sqlType: SqlType;
}

export const VALUE_TYPES: Readonly<Record<ValueType, ValueEncoding>> = {
  text: { plaintext: 'text', sqlType: 'text' },
  bytea: { plaintext: 'bytea', sqlType: 'bytea' },
  jsonb: { plaintext: 'text', sqlType: 'jsonb' },
  numeric: { plaintext: 'text', sqlType: 'numeric' },
};

const where = (c: ProtectedColumn) => `${c.table}.${c.column}`;

/** A value from the application as the plaintext bytes to seal. A fresh buffer: the caller may zero it. */
export function encodeValue(c: ProtectedColumn, value: unknown): Buffer {
  switch (c.valueType) {
    case 'bytea':
      if (!Buffer.isBuffer(value)) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} takes a Buffer`);
      return Buffer.from(value); // a copy: what was sent is zeroed afterwards, the caller's buffer is not ours
    case 'jsonb':
      return Buffer.from(JSON.stringify(value), 'utf8');
    case 'text':
    case 'numeric': {
      const text = String(value);
      if (text.includes('\u0000')) {
        // as in PostgreSQL's own text type; and decrypt_text could not return it
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)}: a text value cannot contain NUL characters`, {
          hint: 'store binary data in a bytea column (column.bytea())',
        });
      }
      return Buffer.from(text, 'utf8');
    }
  }
}

/** What the database returned for a decrypted plaintext (text or bytea) as the application's value. */
export function decodeValue(c: ProtectedColumn, wire: unknown): unknown {
  if (c.valueType === 'jsonb' && typeof wire === 'string') return JSON.parse(wire);
  return wire;
}

/**
 * An SQL value as the text pgseal seals and indexes. jsonb and numeric go through their type
 * first: invalid input fails as it would on a plaintext column, and equal values are sealed
 * and indexed in one canonical form.
 */
export function textForm<O>(c: Pick<ProtectedColumn, 'valueType'>, value: Expr<O>): Expr<O> {
  if (c.valueType === 'text') return cast(value, 'text');
  return cast(cast(value, VALUE_TYPES[c.valueType].sqlType), 'text');
}
