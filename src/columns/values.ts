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
      if (c.valueType === 'numeric' && !NUMERIC.test(text)) {
        // checked before sealing: read back, it could not be cast (and its error would quote it)
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where(c)} takes a numeric (the value given is not one; it is not shown)`, {
          hint: 'pass a number, or a string in numeric\'s syntax such as "12.50"',
        });
      }
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

/** numeric's input syntax as PostgreSQL 15 takes it (the domain pgseal.numeric_text, sql/40_envelope.sql). */
const NUMERIC = /^[ \t\n\r\f\v]*(?:[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?0*(?:[0-9]{1,3}|1000))?|nan|[+-]?(?:inf|infinity))[ \t\n\r\f\v]*$/i;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A stored value that opened but is not valid for its type (written bypassing pgseal's
 * checks). The message names the column and the type, never the value: JSON.parse's and
 * TextDecoder's own errors quote the bytes.
 */
function invalidStored(c: ProtectedColumn, what: string): PgsealError {
  return new PgsealError(ErrorCodes.INVALID_STORED_VALUE, `${where(c)} holds a value that is not ${what} (the value is not shown)`, {
    hint: 'it was written bypassing pgseal\'s checks: rewrite it with a valid value',
  });
}

/**
 * What the database returned for a decrypted plaintext (text or bytea) as the application's
 * value. Text arriving as bytes (client-side decryption) must be UTF-8; jsonb must parse and
 * numeric must be numeric's syntax: otherwise a PgsealError that shows no part of the value.
 */
export function decodeValue(c: ProtectedColumn, wire: unknown): unknown {
  if (wire === null || wire === undefined || c.valueType === 'bytea') return wire;
  let text: unknown = wire;
  if (Buffer.isBuffer(wire)) {
    try {
      text = UTF8.decode(wire);
    } catch {
      throw invalidStored(c, 'valid UTF-8 text');
    }
  }
  if (typeof text !== 'string') return wire;
  if (c.valueType === 'jsonb') {
    try {
      return JSON.parse(text);
    } catch {
      throw invalidStored(c, 'valid JSON');
    }
  }
  if (c.valueType === 'numeric' && !NUMERIC.test(text)) throw invalidStored(c, 'a valid numeric');
  return text;
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
