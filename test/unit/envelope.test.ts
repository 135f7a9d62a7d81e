import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyVersionOf, open, seal } from '../../src/crypto/envelope.js';
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
