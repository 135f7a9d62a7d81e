// Blind indexes in Node: HMAC-SHA-256 under the scope's index key over the normalised
// value and the column context, truncated; equal to pgseal.blind_index in SQL. Computing
// it here lets a lookup send only the index, never the searched value.

import { createHmac } from 'node:crypto';
import { contextBytes } from '../crypto/envelope.js';
import type { Normalizer } from './model.js';
import { normalize } from './normalize.js';

// a blind index's context is its column's: few, and used on every lookup
const contexts = new Map<string, Buffer>();
function columnContextBytes(context: string): Buffer {
  let bytes = contexts.get(context);
  if (bytes === undefined) {
    bytes = contextBytes(context);
    if (contexts.size < 10_000) contexts.set(context, bytes);
  }
  return bytes;
}

export function blindIndex(indexKey: Buffer, value: string, normalizer: Normalizer, context: string, bytes = 16): Buffer {
  return blindIndexOfNormalized(indexKey, normalize(value, normalizer), context, bytes);
}

/** The same, for a value already normalised (a lookup compares rows against it too). */
export function blindIndexOfNormalized(indexKey: Buffer, normalized: string, context: string, bytes = 16): Buffer {
  return createHmac('sha256', indexKey).update(normalized, 'utf8').update(columnContextBytes(context)).digest().subarray(0, bytes);
}
