import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, PgsealError } from '../../src/errors.js';
import { envMasterKey, fileMasterKey, generateMasterKey, LocalMasterKey, parseMasterKey } from '../../src/keys/master-key.js';

function failure(fn: () => unknown): PgsealError {
  try {
    fn();
  } catch (error) {
    if (error instanceof PgsealError) return error;
    throw error;
  }
  throw new Error('expected a PgsealError');
}

describe('master key text', () => {
  const raw = randomBytes(32);

  it.each([
    ['base64 with padding (44 chars)', raw.toString('base64')],
    ['base64 without padding', raw.toString('base64').replace(/=+$/, '')],
    ['base64url (Fernet style, 44 chars)', raw.toString('base64url') + '='],
    ['base64url without padding', raw.toString('base64url')],
    ['surrounded by whitespace', `  ${raw.toString('base64')}\n`],
  ])('accepts %s', (_label, text) => {
    expect(parseMasterKey(text, 'PGSEAL_MASTER_KEY').equals(raw)).toBe(true);
  });

  it.each([
    ['16 bytes', randomBytes(16).toString('base64'), 'decodes to 16 bytes'],
    ['64 hex characters', randomBytes(32).toString('hex'), 'decodes to 48 bytes'],
    ['not base64', 'this is not a key!', 'not base64'],
    ['empty', '   ', 'is empty'],
  ])('rejects %s with a clear message that does not echo it', (_label, text, says) => {
    const error = failure(() => parseMasterKey(text, 'PGSEAL_MASTER_KEY'));
    expect(error.code).toBe(ErrorCodes.MASTER_KEY_MALFORMED);
    expect(error.message).toContain(says);
    expect(error.hint).toContain('generate-master-key');
    if (text.trim()) expect(error.toLine()).not.toContain(text.trim().slice(0, 12));
  });

  it('generates distinct 32-byte keys that parse back', () => {
    const a = generateMasterKey();
    const b = generateMasterKey();
    expect(a).not.toBe(b);
    expect(a).toHaveLength(44);
    expect(parseMasterKey(a, 'x')).toHaveLength(32);
  });

  it('reports a missing environment variable', () => {
    const error = failure(() => envMasterKey('PGSEAL_MASTER_KEY', {}));
    expect(error.code).toBe(ErrorCodes.MASTER_KEY_MISSING);
    expect(error.message).toContain('PGSEAL_MASTER_KEY');
  });

  it('reads a key file in base64 or raw bytes, and reports a missing file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgseal-key-'));
    writeFileSync(join(dir, 'b64'), raw.toString('base64') + '\n');
    writeFileSync(join(dir, 'raw'), raw);
    expect(fileMasterKey(join(dir, 'b64')).ref).toBe(new LocalMasterKey(Buffer.from(raw)).ref);
    expect(fileMasterKey(join(dir, 'raw')).ref).toBe(new LocalMasterKey(Buffer.from(raw)).ref);
    expect(failure(() => fileMasterKey(join(dir, 'nope'))).code).toBe(ErrorCodes.MASTER_KEY_MISSING);
  });
});

describe('wrapping data keys', () => {
  const context = Buffer.from('pgseal/v1/dek\u0000default\u0000data\u00001');

  it('round-trips and binds the wrap to its context', async () => {
    const kek = new LocalMasterKey(randomBytes(32));
    const { plaintext, wrapped } = await kek.generateDataKey(context);
    expect(wrapped).toHaveLength(61);
    expect(wrapped.includes(plaintext)).toBe(false);
    expect((await kek.unwrap(wrapped, context)).equals(plaintext)).toBe(true);
    await expect(kek.unwrap(wrapped, Buffer.from('pgseal/v1/dek\u0000default\u0000data\u00002'))).rejects.toMatchObject({ code: ErrorCodes.KEY_UNWRAP_FAILED });
  });

  it('refuses another master key, and a closed one', async () => {
    const kek = new LocalMasterKey(randomBytes(32));
    const other = new LocalMasterKey(randomBytes(32));
    expect(other.ref).not.toBe(kek.ref);
    const { wrapped } = await kek.generateDataKey(context);
    await expect(other.unwrap(wrapped, context)).rejects.toMatchObject({ code: ErrorCodes.KEY_UNWRAP_FAILED });
    kek.close();
    await expect(kek.unwrap(wrapped, context)).rejects.toMatchObject({ code: ErrorCodes.KEY_UNWRAP_FAILED });
  });

  it('zeroes the key it holds on close', () => {
    const key = randomBytes(32);
    const kek = new LocalMasterKey(key);
    kek.close();
    expect(key.equals(Buffer.alloc(32))).toBe(true);
  });
});
