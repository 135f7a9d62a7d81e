// The ciphertext envelope in Node: byte for byte what sql/40_envelope.sql writes and reads
// (docs/format.md). Lets an application encrypt or decrypt client-side, so keys never
// leave it, and still read what SQL wrote, and the reverse.
//
// Short values dominate (emails, phone numbers), so per-call work is kept to what the
// primitives need: the cipher and MAC state is prepared once per key (prepare() below) and
// reused, context bytes are cached, IVs come from a pooled CSPRNG read. The tests compare
// every path with node:crypto's aes-256-cbc and HMAC used directly.

import * as nodeCrypto from 'node:crypto';
import { createCipheriv, createDecipheriv, createHash, createHmac, randomFillSync, timingSafeEqual, type Cipher, type Decipher } from 'node:crypto';
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

// A column's context is the same on every call; bounded, since row contexts (`#<pk>`) are not.
const contexts = new Map<string, Buffer>();
function cachedContextBytes(context: string): Buffer {
  let bytes = contexts.get(context);
  if (bytes === undefined) {
    bytes = contextBytes(context);
    if (contexts.size < 10_000) contexts.set(context, bytes);
  }
  return bytes;
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

// ---- state prepared once per key ----------------------------------------------------------

const HMAC_BLOCK = 64;
/** MAC inputs up to this size (the body of a value up to about 380 bytes, and a column's context) are hashed from a scratch buffer; longer ones go through createHmac. */
const SHORT_MAC_INPUT = 448;
// crypto.hash (Node >= 20.12) hashes one buffer without a Hash object: HMAC as two such
// calls, over K^ipad || message and K^opad || inner digest, measured about 0.7 µs against
// createHmac's 2.2 µs for short inputs. Its digest as a 'binary' (latin1) string, written
// back into a buffer, costs a fifth of its 'buffer' output here. Read off the namespace: an
// older Node has no such export.
const oneShot = typeof nodeCrypto.hash === 'function' ? nodeCrypto.hash : undefined;

interface Prepared {
  /**
   * Both keys' bytes when prepared: a key refilled in place, zeroed, or given another MAC
   * buffer must not meet stale state. Compared on every call (two 32-byte compares, what the
   * zero check cost before).
   */
  encCopy: Buffer;
  macCopy: Buffer;
  /**
   * One CBC cipher and decipher per key, never finalised. CBC carries its last ciphertext
   * block into the next update(), so each call cancels that block and applies its own IV on
   * the first block (encChain / decChain track it): the whole value is then one update(),
   * with no key schedule or context setup per value.
   */
  cipher: Cipher;
  encChain: Buffer;
  decipher: Decipher;
  decChain: Buffer;
  /** K^ipad, then room for a short MAC input */
  inner: Buffer;
  /** views of inner's first 64 + n bytes, by n: made once, not per call */
  innerViews: Buffer[];
  /** K^opad, then the inner digest */
  outer: Buffer;
  /** the expected tag of the value being opened */
  tag: Buffer;
  /** everything above that holds key material or chaining state, in one allocation of its own (not Node's shared pool) */
  memory: Buffer;
}

// Keyed by the encryption key's Buffer, so the state goes when the key does, and a key object
// rebuilt around the same buffers (a spread copy) still finds it.
const preparedKeys = new WeakMap<Buffer, Prepared>();

function prepared(keys: EnvelopeKeys): Prepared {
  const p = preparedKeys.get(keys.encKey);
  // the same bytes as when prepared, which were not zero then: still live, and this state is theirs
  if (p !== undefined && keys.encKey.equals(p.encCopy) && keys.macKey.equals(p.macCopy)) return p;
  // replaced, refilled or zeroed since: drop the old state now, then check and prepare as new
  if (p !== undefined) forget(keys.encKey, p);
  live(keys);
  const fresh = prepare(keys);
  preparedKeys.set(keys.encKey, fresh);
  return fresh;
}

function prepare(keys: EnvelopeKeys): Prepared {
  const zeroIv = Buffer.alloc(IV_BYTES);
  const cipher = createCipheriv('aes-256-cbc', keys.encKey, zeroIv).setAutoPadding(false);
  const decipher = createDecipheriv('aes-256-cbc', keys.encKey, zeroIv).setAutoPadding(false);
  const memory = Buffer.alloc(keys.encKey.length + keys.macKey.length + 2 * IV_BYTES + HMAC_BLOCK + SHORT_MAC_INPUT + HMAC_BLOCK + 32 + TAG_BYTES);
  let at = 0;
  const take = (n: number) => memory.subarray(at, (at += n));
  const p: Prepared = {
    encCopy: take(keys.encKey.length),
    macCopy: take(keys.macKey.length),
    cipher,
    encChain: take(IV_BYTES), // both ciphers start from the zero IV
    decipher,
    decChain: take(IV_BYTES),
    inner: take(HMAC_BLOCK + SHORT_MAC_INPUT),
    innerViews: [],
    outer: take(HMAC_BLOCK + 32),
    tag: take(TAG_BYTES),
    memory,
  };
  keys.encKey.copy(p.encCopy);
  keys.macKey.copy(p.macCopy);
  // RFC 2104: a key longer than the block is hashed first, a shorter one padded with zeros
  const k = keys.macKey.length > HMAC_BLOCK ? createHash('sha256').update(keys.macKey).digest() : keys.macKey;
  for (let i = 0; i < HMAC_BLOCK; i++) {
    p.inner[i] = (k[i] ?? 0) ^ 0x36;
    p.outer[i] = (k[i] ?? 0) ^ 0x5c;
  }
  return p;
}

/** Drops a key's state and wipes what it held; final() frees OpenSSL's contexts (key schedules) now rather than at GC. */
function forget(encKey: Buffer, p: Prepared): void {
  if (preparedKeys.get(encKey) === p) preparedKeys.delete(encKey);
  p.memory.fill(0);
  for (const c of [p.cipher, p.decipher]) {
    try {
      c.final();
    } catch {
      // already unusable: nothing left to free
    }
  }
}

/** Wipes the state prepared for a key now (the keyring calls it as it zeroes the key; otherwise it goes at the key's next use or collection). */
export function forgetPrepared(keys: EnvelopeKeys): void {
  const p = preparedKeys.get(keys.encKey);
  if (p !== undefined) forget(keys.encKey, p);
}

/** HMAC-SHA-256 under the prepared key over the first `length` bytes of src || ctx, written into out at `at`. */
function tagInto(p: Prepared, src: Buffer, length: number, ctx: Buffer, out: Buffer, at: number): void {
  const n = length + ctx.length;
  if (oneShot !== undefined && n <= SHORT_MAC_INPUT) {
    src.copy(p.inner, HMAC_BLOCK, 0, length);
    p.inner.set(ctx, HMAC_BLOCK + length);
    const input = (p.innerViews[n] ??= p.inner.subarray(0, HMAC_BLOCK + n));
    p.outer.write(oneShot('sha256', input, 'binary'), HMAC_BLOCK, 'binary');
    out.write(oneShot('sha256', p.outer, 'binary'), at, 'binary');
    return;
  }
  createHmac('sha256', p.macCopy).update(src.subarray(0, length)).update(ctx).digest().copy(out, at);
}

/** AES-256-CBC with PKCS#7 of plaintext under iv, written into out at `at` (16·k bytes). */
function encryptInto(encKey: Buffer, p: Prepared, plaintext: Uint8Array, iv: Uint8Array, out: Buffer, at: number): void {
  const n = plaintext.length;
  const padded = n - (n % 16) + 16;
  const block = Buffer.allocUnsafe(padded);
  block.set(plaintext);
  block.fill(padded - n, n);
  const chain = p.encChain;
  for (let i = 0; i < 16; i++) block[i]! ^= chain[i]! ^ iv[i]!;
  let ciphertext: Buffer;
  try {
    ciphertext = p.cipher.update(block);
  } catch (error) {
    forget(encKey, p); // its chaining state is unknown now
    throw error;
  } finally {
    block.fill(0); // a copy of the plaintext, in Node's shared buffer pool
  }
  // 16-byte copies as loops: Buffer.copy makes a view per call
  for (let i = 0; i < 16; i++) chain[i] = ciphertext[padded - 16 + i]!;
  out.set(ciphertext, at);
}

/** The padded plaintext of the envelope's ciphertext (bytes 22 to bodyLength). */
function decrypt(encKey: Buffer, p: Prepared, envelope: Buffer, bodyLength: number): Buffer {
  const start = HEADER_BYTES + IV_BYTES;
  let plain: Buffer;
  try {
    plain = p.decipher.update(envelope.subarray(start, bodyLength));
  } catch (error) {
    forget(encKey, p);
    throw error;
  }
  // the first block came out XORed with the previous value's last ciphertext block, not this IV
  const chain = p.decChain;
  for (let i = 0; i < 16; i++) {
    plain[i]! ^= chain[i]! ^ envelope[HEADER_BYTES + i]!;
    chain[i] = envelope[bodyLength - 16 + i]!;
  }
  return plain;
}

/**
 * PKCS#7 removed, or undefined when it is not valid. Only ever run after the tag verified, so
 * how long it takes tells nothing (no padding oracle); a valid tag with bad padding means the
 * value was sealed with bad padding under the right key, which §5 says cannot happen.
 */
function unpadded(plain: Buffer): Buffer | undefined {
  const pad = plain.length === 0 ? 0 : plain[plain.length - 1]!;
  if (pad < 1 || pad > 16) return undefined;
  for (let i = plain.length - pad; i < plain.length - 1; i++) if (plain[i] !== pad) return undefined;
  return plain.subarray(0, plain.length - pad);
}

// randomBytes(16) costs about 4 µs a call here, most of a seal; one randomFillSync for 256 IVs
// about 8 µs. Each IV is handed out once. Refilled in a new process too (a startup snapshot
// restored twice must not replay the same IVs).
const ivPool = Buffer.alloc(IV_BYTES * 256);
let ivAt = ivPool.length;
let ivPid = 0;
function freshIv(): Buffer {
  if (ivAt === ivPool.length || ivPid !== process.pid) {
    randomFillSync(ivPool);
    ivAt = 0;
    ivPid = process.pid;
  }
  return ivPool.subarray(ivAt, (ivAt += IV_BYTES));
}

// ---- the envelope -------------------------------------------------------------------------

export function seal(plaintext: Buffer, context: string, key: VersionedKeys, iv: Buffer = freshIv()): Buffer {
  if (iv.length !== IV_BYTES) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `the IV must be ${IV_BYTES} bytes`);
  const p = prepared(key);
  // untyped callers: cipher.update() used to take a string as UTF-8, block.set() would not
  const bytes: Uint8Array = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
  const bodyLength = HEADER_BYTES + IV_BYTES + bytes.length - (bytes.length % 16) + 16;
  const out = Buffer.allocUnsafe(bodyLength + TAG_BYTES); // every byte is written below
  out[0] = FORMAT_VERSION;
  out[1] = ALG_AES256CBC_HMACSHA256;
  out.writeUInt32BE(key.version, 2);
  out.set(iv, HEADER_BYTES);
  encryptInto(key.encKey, p, bytes, iv, out, HEADER_BYTES + IV_BYTES);
  tagInto(p, out, bodyLength, cachedContextBytes(context), out, bodyLength);
  return out;
}

/** The key version in an envelope's header, or undefined when it is not a pgseal envelope. */
export function keyVersionOf(envelope: Buffer): number | undefined {
  if (envelope.length < MIN_ENVELOPE_BYTES || envelope[0] !== FORMAT_VERSION || envelope[1] !== ALG_AES256CBC_HMACSHA256 || envelope[2]! >= 128) {
    return undefined;
  }
  return envelope.readUInt32BE(2);
}

const AUTH_HINT =
  'The value was altered or truncated, was copied from another column or row (context mismatch), or was written under a different key; or its column or table was renamed after it was protected, and it opens only under the context it was sealed with (schema.table.column as protected). Otherwise it cannot be read as it is: restore it from a backup.';

function authenticationFailed(): PgsealError {
  return new PgsealError(ErrorCodes.AUTHENTICATION_FAILED, 'ciphertext failed authentication', { sqlstate: 'PS003', hint: AUTH_HINT });
}

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
  const p = prepared(found);
  const bodyLength = envelope.length - TAG_BYTES;
  if ((envelope.length - HEADER_BYTES - IV_BYTES - TAG_BYTES) % 16 !== 0) throw authenticationFailed();
  // the tag and the ciphertext are read in place (views), never copied out of the envelope
  tagInto(p, envelope, bodyLength, cachedContextBytes(context), p.tag, 0);
  if (!timingSafeEqual(p.tag, envelope.subarray(bodyLength))) throw authenticationFailed();
  const plain = decrypt(found.encKey, p, envelope, bodyLength);
  const plaintext = unpadded(plain);
  if (plaintext === undefined) {
    plain.fill(0);
    throw authenticationFailed();
  }
  return plaintext;
}
