// Blind indexes in Node: HMAC-SHA-256 under the scope's index key over the normalised
// value and the column context, truncated; equal to pgseal.blind_index in SQL. Computing
// it here lets a lookup send only the index, never the searched value.

import { createHmac } from 'node:crypto';
import type { Normalizer } from '../registry/types.js';
import { normalize } from './normalize.js';

function contextBytes(context: string): Buffer {
  const utf8 = Buffer.from(context, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(utf8.length);
  return Buffer.concat([utf8, length]);
}

export function blindIndex(indexKey: Buffer, value: string, normalizer: Normalizer, context: string, bytes = 16): Buffer {
  return createHmac('sha256', indexKey)
    .update(Buffer.from(normalize(value, normalizer), 'utf8'))
    .update(contextBytes(context))
    .digest()
    .subarray(0, bytes);
}
