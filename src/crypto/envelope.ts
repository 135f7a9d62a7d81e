// The ciphertext envelope in Node: byte for byte what sql/40_envelope.sql writes and reads
// (docs/format.md). Lets an application encrypt or decrypt client-side, so keys never
// leave it, and still read what SQL wrote, and the reverse.

import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ErrorCodes, PgsealError } from '../errors.js';
import type { EnvelopeKeys } from './derive.js';

export const FORMAT_VERSION = 1;
export const ALG_AES256CBC_HMACSHA256 = 1;
export const HEADER_BYTES = 6;
export const IV_BYTES = 16;
export const TAG_BYTES = 32;
export const MIN_ENVELOPE_BYTES = HEADER_BYTES + IV_BYTES + 16 + TAG_BYTES; // 70

export interface VersionedKeys extends EnvelopeKeys {
  version: number;
}

/**
 * The bytes a tag covers after its message, here and in blind indexes: the context (UTF-8),
 * then its length (u32 BE), as pgseal._context_bytes writes them in SQL.
 */
export function contextBytes(context: string): Buffer {
  const utf8 = Buffer.from(context, 'utf8');
  const bytes = Buffer.alloc(utf8.length + 4);
  utf8.copy(bytes);
  bytes.writeUInt32BE(utf8.length, utf8.length);
  return bytes;
}

function tag(macKey: Buffer, authenticated: Buffer, context: string): Buffer {
  return createHmac('sha256', macKey).update(authenticated).update(contextBytes(context)).digest();
}

/**
 * Keys that are all zero were zeroed (a reload replaced them while a call held them): a value
 * sealed under them anyone could open, one opened under them anyone could have forged.
 */
const ZERO_KEY = Buffer.alloc(32);
function live(keys: EnvelopeKeys): EnvelopeKeys {
  if (keys.encKey.equals(ZERO_KEY) || keys.macKey.equals(ZERO_KEY)) {
    throw new PgsealError(ErrorCodes.UNKNOWN_KEY_VERSION, 'the key was unloaded while this call held it', { hint: 'run the call again: the keyring reloaded meanwhile' });
  }
  return keys;
}

export function seal(plaintext: Buffer, context: string, key: VersionedKeys, iv: Buffer = randomBytes(IV_BYTES)): Buffer {
  if (iv.length !== IV_BYTES) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `the IV must be ${IV_BYTES} bytes`);
  live(key);
  const header = Buffer.alloc(HEADER_BYTES);
  header[0] = FORMAT_VERSION;
  header[1] = ALG_AES256CBC_HMACSHA256;
  header.writeUInt32BE(key.version, 2);
  const cipher = createCipheriv('aes-256-cbc', key.encKey, iv);
  const body = Buffer.concat([header, iv, cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([body, tag(key.macKey, body, context)]);
}

/** The key version in an envelope's header, or undefined when it is not a pgseal envelope. */
export function keyVersionOf(envelope: Buffer): number | undefined {
  if (envelope.length < MIN_ENVELOPE_BYTES || envelope[0] !== FORMAT_VERSION || envelope[1] !== ALG_AES256CBC_HMACSHA256 || envelope[2]! >= 128) {
    return undefined;
  }
  return envelope.readUInt32BE(2);
}

const AUTH_HINT =
  'The value was altered or truncated, was copied from another column or row (context mismatch), or was written under a different key. It cannot be read as it is: restore it from a backup.';

export function open(envelope: Buffer, context: string, keyFor: (version: number) => EnvelopeKeys | undefined): Buffer {
  const version = keyVersionOf(envelope);
  if (version === undefined) {
    throw new PgsealError(ErrorCodes.MALFORMED_ENVELOPE, 'value is not a pgseal ciphertext', {
      sqlstate: 'PS004',
      hint: 'Expected a pgseal envelope (format 1, see docs/format.md). Plaintext written straight into an encrypted column looks like this.',
    });
  }
  const found = keyFor(version);
  if (!found) {
    throw new PgsealError(ErrorCodes.UNKNOWN_KEY_VERSION, `key version ${version} is not in the keyring`, {
      sqlstate: 'PS002',
      hint: 'If pgseal.keys lists this version as active or decrypt-only, reload the keyring; if it is retired or destroyed the value can no longer be read.',
    });
  }
  const keys = live(found);
  const bodyLength = envelope.length - TAG_BYTES;
  if ((envelope.length - HEADER_BYTES - IV_BYTES - TAG_BYTES) % 16 !== 0) {
    throw new PgsealError(ErrorCodes.AUTHENTICATION_FAILED, 'ciphertext failed authentication', { sqlstate: 'PS003', hint: AUTH_HINT });
  }
  const expected = tag(keys.macKey, envelope.subarray(0, bodyLength), context);
  if (!timingSafeEqual(expected, envelope.subarray(bodyLength))) {
    throw new PgsealError(ErrorCodes.AUTHENTICATION_FAILED, 'ciphertext failed authentication', { sqlstate: 'PS003', hint: AUTH_HINT });
  }
  const decipher = createDecipheriv('aes-256-cbc', keys.encKey, envelope.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES));
  return Buffer.concat([decipher.update(envelope.subarray(HEADER_BYTES + IV_BYTES, bodyLength)), decipher.final()]);
}
