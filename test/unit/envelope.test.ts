import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyVersionOf, open, seal, type VersionedKeys } from '../../src/crypto/envelope.js';
import { ErrorCodes, PgsealError, SqlStates } from '../../src/errors.js';
import { deriveEnvelopeKeys } from '../../src/crypto/derive.js';
import { bitFlips, truncations } from '../support/mutations.js';
import { loadVectors, megabytePlaintext, plaintextOf } from '../vectors/vectors.js';

const vectors = loadVectors();
const keys = { version: vectors.version, encKey: Buffer.from(vectors.enc_key, 'hex'), macKey: Buffer.from(vectors.mac_key, 'hex') };
const keyFor = (v: number) => (v === vectors.version ? keys : undefined);

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof PgsealError) return error.code;
    return `unexpected ${String(error)}`;
  }
  return 'no error';
}

describe('envelope vectors in Node', () => {
  it('derives the vector keys from the data key', () => {
    const derived = deriveEnvelopeKeys(Buffer.from(vectors.dek, 'hex'));
    expect(derived.encKey.toString('hex')).toBe(vectors.enc_key);
    expect(derived.macKey.toString('hex')).toBe(vectors.mac_key);
    expect(vectors.enc_key).not.toBe(vectors.mac_key);
  });

  it.each(vectors.cases.map((c) => [c.name, c] as const))('seals and opens %s byte for byte', (_name, c) => {
    const envelope = seal(plaintextOf(c), c.context, keys, Buffer.from(c.iv, 'hex'));
    expect(envelope.toString('hex')).toBe(c.envelope);
    expect(open(Buffer.from(c.envelope, 'hex'), c.context, keyFor).equals(plaintextOf(c))).toBe(true);
    expect(keyVersionOf(envelope)).toBe(vectors.version);
  });

  it('seals and opens the 1 MiB vector', () => {
    const plaintext = megabytePlaintext();
    expect(createHash('sha256').update(plaintext).digest('hex')).toBe(vectors.large.plaintext_sha256);
    const envelope = seal(plaintext, vectors.large.context, keys, Buffer.from(vectors.large.iv, 'hex'));
    expect(envelope.length).toBe(vectors.large.envelope_bytes);
    expect(createHash('sha256').update(envelope).digest('hex')).toBe(vectors.large.envelope_sha256);
    expect(open(envelope, vectors.large.context, keyFor).equals(plaintext)).toBe(true);
  });

  it('uses a fresh random IV by default', () => {
    const a = seal(Buffer.from('same'), 'ctx', keys);
    const b = seal(Buffer.from('same'), 'ctx', keys);
    expect(a.equals(b)).toBe(false);
  });
});

describe('damaged envelopes in Node', () => {
  const sample = Buffer.from(vectors.cases[0]!.envelope, 'hex');
  const codeFor = (sqlstate: string) => SqlStates[sqlstate];

  it('rejects every single-bit flip with the documented error', () => {
    const flips = bitFlips(sample);
    expect(flips.length).toBe(sample.length * 8);
    const wrong = flips.filter((m) => codeOf(() => open(m.bytes, vectors.cases[0]!.context, keyFor)) !== codeFor(m.sqlstate));
    expect(wrong.map((m) => m.label)).toEqual([]);
  });

  it('rejects every truncation with the documented error', () => {
    const cuts = truncations(sample);
    const wrong = cuts.filter((m) => codeOf(() => open(m.bytes, vectors.cases[0]!.context, keyFor)) !== codeFor(m.sqlstate));
    expect(wrong.map((m) => m.label)).toEqual([]);
  });

  it('rejects a ciphertext moved to another context', () => {
    expect(codeOf(() => open(sample, 'public.customers.phone', keyFor))).toBe(ErrorCodes.AUTHENTICATION_FAILED);
    expect(codeOf(() => open(sample, vectors.cases[0]!.context + '#1', keyFor))).toBe(ErrorCodes.AUTHENTICATION_FAILED);
  });

  it('rejects the wrong key', () => {
    const other = deriveEnvelopeKeys(Buffer.alloc(32, 9));
    expect(codeOf(() => open(sample, vectors.cases[0]!.context, () => other))).toBe(ErrorCodes.AUTHENTICATION_FAILED);
  });

  it('rejects plaintext where ciphertext belongs, without echoing it', () => {
    const plaintext = Buffer.from('mario.rossi@example.it is not a ciphertext but long enough to pass 70 bytes');
    try {
      open(plaintext, 'ctx', keyFor);
      expect.unreachable();
    } catch (error) {
      expect((error as PgsealError).code).toBe(ErrorCodes.MALFORMED_ENVELOPE);
      expect(JSON.stringify(error) + String(error)).not.toContain('mario');
    }
  });
});

// ---- the prepared path (cipher and MAC state kept per key) against node:crypto used directly ----

/** The envelope straight from docs/format.md §2-§3: a new aes-256-cbc cipher and HMAC, PKCS#7 by OpenSSL unless `padded` is given whole. */
function reference(plaintext: Buffer, context: string, key: VersionedKeys, iv: Buffer, padded = false): Buffer {
  const header = Buffer.from([1, 1, 0, 0, 0, 0]);
  header.writeUInt32BE(key.version, 2);
  const cipher = createCipheriv('aes-256-cbc', key.encKey, iv).setAutoPadding(!padded);
  const body = Buffer.concat([header, iv, cipher.update(plaintext), cipher.final()]);
  const ctx = Buffer.from(context, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(ctx.length);
  return Buffer.concat([body, createHmac('sha256', key.macKey).update(body).update(ctx).update(length).digest()]);
}

const randomKey = (version = 3): VersionedKeys => ({ version, encKey: randomBytes(32), macKey: randomBytes(32) });

function errorOf(fn: () => unknown): PgsealError {
  try {
    fn();
  } catch (error) {
    if (error instanceof PgsealError) return error;
    throw error;
  }
  throw new Error('no error');
}

describe('the prepared envelope path', () => {
  it('gives the vectors again and again, interleaved (the kept cipher state chains across calls)', () => {
    for (let round = 0; round < 3; round++) {
      for (const c of vectors.cases) {
        expect(seal(plaintextOf(c), c.context, keys, Buffer.from(c.iv, 'hex')).toString('hex')).toBe(c.envelope);
        expect(open(Buffer.from(c.envelope, 'hex'), c.context, keyFor).equals(plaintextOf(c))).toBe(true);
        // a spread copy holds the same buffers: it shares their state and gives the same bytes
        expect(seal(plaintextOf(c), c.context, { ...keys }, Buffer.from(c.iv, 'hex')).toString('hex')).toBe(c.envelope);
      }
    }
  });

  it('equals aes-256-cbc + HMAC from node:crypto for every length 0..200, random keys and IVs, short and long contexts', () => {
    const contexts = ['public.customers.email', 'x', '', 'public.città.è#42', 'c'.repeat(300), 'é'.repeat(400)];
    const ring = [randomKey(3), randomKey(4), randomKey(2 ** 31 - 1)];
    const byVersion = (v: number) => ring.find((k) => k.version === v);
    for (let n = 0; n <= 200; n++) {
      for (const context of contexts) {
        const key = ring[n % ring.length]!;
        const plaintext = randomBytes(n);
        const iv = randomBytes(16);
        const expected = reference(plaintext, context, key, iv);
        expect(seal(plaintext, context, key, iv).equals(expected)).toBe(true);
        expect(open(expected, context, byVersion).equals(plaintext)).toBe(true);
        // a random IV of its own: opens to the same plaintext, by node:crypto too
        const sealed = seal(plaintext, context, key);
        expect(open(sealed, context, byVersion).equals(plaintext)).toBe(true);
        expect(reference(plaintext, context, key, sealed.subarray(6, 22)).equals(sealed)).toBe(true);
      }
    }
  });

  it('opens the 1 MiB vector and short values in turn (long and short MAC paths share the key state)', () => {
    const large = seal(megabytePlaintext(), vectors.large.context, keys, Buffer.from(vectors.large.iv, 'hex'));
    for (let i = 0; i < 2; i++) {
      expect(createHash('sha256').update(large).digest('hex')).toBe(vectors.large.envelope_sha256);
      expect(open(large, vectors.large.context, keyFor).equals(megabytePlaintext())).toBe(true);
      const c = vectors.cases[0]!;
      expect(open(Buffer.from(c.envelope, 'hex'), c.context, keyFor).equals(plaintextOf(c))).toBe(true);
    }
  });

  it('returns buffers of its own: a later call changes no earlier result', () => {
    const key = randomKey();
    const a = open(seal(Buffer.from('first value'), 'ctx', key), 'ctx', () => key);
    const sealed = seal(Buffer.from('second'), 'ctx', key);
    const copy = Buffer.from(sealed);
    open(seal(Buffer.from('third value, longer than a block'), 'ctx', key), 'ctx', () => key);
    expect(a.toString()).toBe('first value');
    expect(sealed.equals(copy)).toBe(true);
  });

  it('draws a distinct default IV for every value, past the pool refills', () => {
    const key = randomKey();
    const ivs = new Set<string>();
    for (let i = 0; i < 2000; i++) ivs.add(seal(Buffer.from('same'), 'ctx', key).subarray(6, 22).toString('hex'));
    expect(ivs.size).toBe(2000);
  });

  it('raises PS003 for bad PKCS#7 padding under a valid tag', () => {
    const key = randomKey();
    const iv = randomBytes(16);
    const block = (last: Buffer) => Buffer.concat([Buffer.alloc(16 - last.length, 0x41), last]);
    const bad = [
      block(Buffer.from([0])), // pad 0
      block(Buffer.from([17])), // longer than a block
      block(Buffer.from([0xff])),
      block(Buffer.from([1, 2])), // says 2, one byte is not
      Buffer.concat([Buffer.from([15]), Buffer.alloc(15, 16)]), // says 16, the first is 15
      Buffer.concat([Buffer.alloc(16, 0x41), block(Buffer.from([3, 3, 4]))]), // in the second block
    ];
    for (const padded of bad) {
      const envelope = reference(padded, 'ctx', key, iv, true);
      const error = errorOf(() => open(envelope, 'ctx', () => key));
      expect(error.code).toBe(ErrorCodes.AUTHENTICATION_FAILED);
      expect(error.sqlstate).toBe('PS003');
      expect(error.hint).toMatch(/altered or truncated/);
    }
    // good padding of the same shape opens
    expect(open(reference(block(Buffer.from([2, 2])), 'ctx', key, iv, true), 'ctx', () => key).equals(Buffer.alloc(14, 0x41))).toBe(true);
    expect(open(reference(Buffer.alloc(16, 16), 'ctx', key, iv, true), 'ctx', () => key).length).toBe(0);
  });

  it('refuses a key zeroed after its state was prepared, on seal and on open', () => {
    for (const which of ['encKey', 'macKey'] as const) {
      const key = randomKey();
      const saved = Buffer.from(key[which]);
      const envelope = seal(Buffer.from('value'), 'ctx', key);
      expect(open(envelope, 'ctx', () => key).toString()).toBe('value');
      key[which].fill(0);
      for (const call of [() => seal(Buffer.from('value'), 'ctx', key), () => open(envelope, 'ctx', () => key)]) {
        const error = errorOf(call);
        expect(error.code).toBe(ErrorCodes.UNKNOWN_KEY_VERSION);
        expect(error.message).toMatch(/unloaded/);
      }
      // still refused on the next calls (the dropped state is not brought back)
      expect(codeOf(() => open(envelope, 'ctx', () => key))).toBe(ErrorCodes.UNKNOWN_KEY_VERSION);
      // the same bytes back in place: prepared again, opens again
      saved.copy(key[which]);
      expect(open(envelope, 'ctx', () => key).toString()).toBe('value');
    }
  });

  it('uses the new keys of a key object whose buffers were refilled or replaced', () => {
    const key = randomKey();
    const before = seal(Buffer.from('under the old keys'), 'ctx', key);
    const changes: Array<(k: VersionedKeys, next: VersionedKeys) => void> = [
      (k, next) => next.encKey.copy(k.encKey), // refilled in place, one buffer
      (k, next) => next.macKey.copy(k.macKey),
      (k, next) => (next.encKey.copy(k.encKey), next.macKey.copy(k.macKey)),
      (k, next) => (k.encKey = Buffer.from(next.encKey)), // replaced
      (k, next) => (k.macKey = Buffer.from(next.macKey)),
      (k, next) => ((k.encKey = Buffer.from(next.encKey)), (k.macKey = Buffer.from(next.macKey))),
    ];
    for (const change of changes) {
      const next = randomKey();
      const old = { ...key, encKey: Buffer.from(key.encKey), macKey: Buffer.from(key.macKey) };
      const sealedOld = seal(Buffer.from('old'), 'ctx', key);
      change(key, next);
      const now: VersionedKeys = { version: key.version, encKey: Buffer.from(key.encKey), macKey: Buffer.from(key.macKey) };
      const iv = randomBytes(16);
      expect(seal(Buffer.from('a value'), 'ctx', key, iv).equals(reference(Buffer.from('a value'), 'ctx', now, iv))).toBe(true);
      expect(open(reference(Buffer.from('a value'), 'ctx', now, iv), 'ctx', () => key).toString()).toBe('a value');
      // what the old keys sealed no longer opens under the changed object
      expect(codeOf(() => open(sealedOld, 'ctx', () => key))).toBe(ErrorCodes.AUTHENTICATION_FAILED);
      expect(open(sealedOld, 'ctx', () => old).toString()).toBe('old');
    }
    expect(codeOf(() => open(before, 'ctx', () => key))).toBe(ErrorCodes.AUTHENTICATION_FAILED);
  });

  it('keeps the chaining state of different keys apart', () => {
    const a = randomKey(1);
    const b = randomKey(2);
    const keyOf = (v: number) => (v === 1 ? a : v === 2 ? b : undefined);
    for (let i = 0; i < 50; i++) {
      const k = i % 3 === 0 ? b : a;
      const plaintext = randomBytes(i * 3);
      const iv = randomBytes(16);
      expect(seal(plaintext, 'ctx', k, iv).equals(reference(plaintext, 'ctx', k, iv))).toBe(true);
      expect(open(reference(plaintext, 'ctx', k, iv), 'ctx', keyOf).equals(plaintext)).toBe(true);
    }
  });
});
