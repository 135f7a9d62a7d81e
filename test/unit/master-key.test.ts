import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, PgsealError } from '../../src/errors.js';
import { envMasterKey, fileMasterKey, generateMasterKey, LocalMasterKey, parseMasterKey } from '../../src/keys/master-key.js';
import { unwrapKeyRow, type KeyRow } from '../../src/keys/unwrap.js';
import { fingerprint, kmsEncryptionContext, wrapAad, type WrapContext } from '../../src/crypto/derive.js';

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
    writeFileSync(join(dir, 'b64'), raw.toString('base64') + '\n', { mode: 0o600 });
    writeFileSync(join(dir, 'raw'), raw, { mode: 0o600 });
    expect(fileMasterKey(join(dir, 'b64')).ref).toBe(new LocalMasterKey(Buffer.from(raw)).ref);
    expect(fileMasterKey(join(dir, 'raw')).ref).toBe(new LocalMasterKey(Buffer.from(raw)).ref);
    expect(failure(() => fileMasterKey(join(dir, 'nope'))).code).toBe(ErrorCodes.MASTER_KEY_MISSING);
  });
});

describe('wrapping data keys', () => {
  const context: WrapContext = { scope: 'default', purpose: 'data', version: 1, database: '4b0c5a4e-0000-4000-8000-000000000001' };

  it('spells the context once per provider: the local AAD is the row (as before databases had an id), the KMS context adds the database', () => {
    expect(wrapAad(context).toString('latin1')).toBe('pgseal/v1/dek\u0000default\u0000data\u00001');
    expect(wrapAad({ ...context, database: 'another' }).equals(wrapAad(context))).toBe(true);
    expect(kmsEncryptionContext(context)).toEqual({
      'pgseal:key': 'v1/dek', 'pgseal:scope': 'default', 'pgseal:purpose': 'data', 'pgseal:version': '1', 'pgseal:database': context.database,
    });
  });

  it('round-trips and binds the wrap to its context', async () => {
    const kek = new LocalMasterKey(randomBytes(32));
    const { plaintext, wrapped } = await kek.generateDataKey(context);
    expect(wrapped).toHaveLength(61);
    expect(wrapped.includes(plaintext)).toBe(false);
    expect((await kek.unwrap(wrapped, context)).equals(plaintext)).toBe(true);
    await expect(kek.unwrap(wrapped, { ...context, version: 2 })).rejects.toMatchObject({ code: ErrorCodes.KEY_UNWRAP_FAILED });
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

describe('key hygiene (issue 12, item 6)', () => {
  const posix = process.platform !== 'win32';

  it.runIf(posix).each([
    ['readable by others', 0o644],
    ['readable by group', 0o640],
    ['writable by group', 0o620],
    ['writable by others', 0o602],
  ])('refuses a master key file %s, naming the fix', (_label, mode) => {
    const dir = mkdtempSync(join(tmpdir(), 'pgseal-key-'));
    const path = join(dir, 'master.key');
    writeFileSync(path, generateMasterKey() + '\n', { mode: 0o600 });
    chmodSync(path, mode);
    const error = failure(() => fileMasterKey(path));
    expect(error.code).toBe(ErrorCodes.KEY_FILE_PERMISSIONS);
    expect(error.hint).toContain(`chmod 600 ${path}`);
    chmodSync(path, 0o600);
    expect(fileMasterKey(path).ref).toMatch(/^local:/);
  });

  it.runIf(posix)('refuses a scope key file readable by others, naming the fix', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'pgseal-scopes-')), 'scopes');
    const kek = new LocalMasterKey(randomBytes(32), { scopeKeys: { dir } });
    (await kek.scopeKeys!.forScope('acme', { create: true })).close();
    const path = join(dir, 'acme.key');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    chmodSync(path, 0o644);
    const error = (await kek.scopeKeys!.forScope('acme').catch((e: unknown) => e)) as PgsealError;
    expect(error).toMatchObject({ code: ErrorCodes.KEY_FILE_PERMISSIONS });
    expect(error.hint).toContain(`chmod 600 ${path}`);
    kek.close();
  });

  it('removes PGSEAL_MASTER_KEY from the environment once read; a second provider still works; after the last close the key is gone', async () => {
    const env: NodeJS.ProcessEnv = { PGSEAL_MASTER_KEY: generateMasterKey() };
    const first = envMasterKey('PGSEAL_MASTER_KEY', env);
    expect(env.PGSEAL_MASTER_KEY).toBeUndefined();
    const second = envMasterKey('PGSEAL_MASTER_KEY', env); // a second pgseal() in the same process
    expect(second.ref).toBe(first.ref);
    const context: WrapContext = { scope: 'ctx', purpose: 'data', version: 1, database: 'db' };
    const { plaintext, wrapped } = await first.generateDataKey(context);
    first.close();
    expect((await second.unwrap(wrapped, context)).equals(plaintext)).toBe(true);
    second.close();
    await expect(second.unwrap(wrapped, context)).rejects.toMatchObject({ code: ErrorCodes.KEY_UNWRAP_FAILED });
    const gone = failure(() => envMasterKey('PGSEAL_MASTER_KEY', env));
    expect(gone.code).toBe(ErrorCodes.MASTER_KEY_MISSING);
    expect(env.PGSEAL_MASTER_KEY).toBeUndefined();
  });

  it('keeps the real process.env clean too: child processes do not inherit the key', async () => {
    const saved = process.env.PGSEAL_MASTER_KEY;
    process.env.PGSEAL_MASTER_KEY = generateMasterKey();
    try {
      const kek = envMasterKey();
      expect(process.env.PGSEAL_MASTER_KEY).toBeUndefined();
      const { execFileSync } = await import('node:child_process');
      const seen = execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.env.PGSEAL_MASTER_KEY))']).toString();
      expect(seen).toBe('undefined');
      kek.close();
    } finally {
      if (saved === undefined) delete process.env.PGSEAL_MASTER_KEY;
      else process.env.PGSEAL_MASTER_KEY = saved;
    }
  });

  it('zeroes the decipher output when a wrapped key does not open, and returns the unwrapped key in a buffer of its own', async () => {
    const kek = new LocalMasterKey(randomBytes(32));
    const context: WrapContext = { scope: 'ctx', purpose: 'data', version: 1, database: 'db' };
    const { plaintext, wrapped } = await kek.generateDataKey(context);
    // capture every buffer the decipher hands out, through the prototype the decipher uses
    const { createDecipheriv } = await import('node:crypto');
    const proto = Object.getPrototypeOf(createDecipheriv('aes-256-gcm', Buffer.alloc(32), Buffer.alloc(12)));
    const update = proto.update;
    const final = proto.final;
    const chunks: Buffer[] = [];
    proto.update = function (this: unknown, ...args: unknown[]) {
      const out = update.apply(this, args) as Buffer;
      chunks.push(out);
      return out;
    };
    proto.final = function (this: unknown, ...args: unknown[]) {
      const out = final.apply(this, args) as Buffer;
      chunks.push(out);
      return out;
    };
    try {
      const tampered = Buffer.from(wrapped);
      tampered[20]! ^= 1;
      await expect(kek.unwrap(tampered, context)).rejects.toMatchObject({ code: ErrorCodes.KEY_UNWRAP_FAILED });
      expect(chunks.length).toBeGreaterThan(0);
      for (const c of chunks) expect(c.equals(Buffer.alloc(c.length))).toBe(true);
      chunks.length = 0;
      const dek = await kek.unwrap(wrapped, context);
      expect(dek.equals(plaintext)).toBe(true);
      // no chunk other than the result itself still holds key bytes
      for (const c of chunks) if (c !== dek && c.length > 0) expect(c.equals(Buffer.alloc(c.length))).toBe(true);
      dek.fill(0);
      for (const c of chunks) expect(c.equals(Buffer.alloc(c.length))).toBe(true);
    } finally {
      proto.update = update;
      proto.final = final;
      kek.close();
    }
  });

  it('unwraps a row through the scope key its kek_ref names; a missing scope key file is a typed error naming the fix', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'pgseal-scopes-')), 'scopes');
    const kek = new LocalMasterKey(randomBytes(32), { scopeKeys: { dir } });
    const scoped = await kek.scopeKeys!.forScope('acme', { create: true });
    const { plaintext, wrapped } = await scoped.generateDataKey({ scope: 'acme', purpose: 'data', version: 7, database: 'db' });
    const row: KeyRow = { version: 7, scope: 'acme', purpose: 'data', state: 'active', wrapped_key: wrapped, kek_ref: scoped.ref, fingerprint: fingerprint(plaintext), database: 'db' };
    scoped.close();
    expect(row.kek_ref).toMatch(/^scope:acme:[0-9a-f]{16}$/);
    expect(row.kek_ref).not.toContain(readFileSync(join(dir, 'acme.key')).toString('hex').slice(0, 8));
    const dek = await unwrapKeyRow(kek, row);
    expect(dek.equals(plaintext)).toBe(true);
    dek.fill(0);
    // the scope key file alone, with another master key, opens nothing
    const other = new LocalMasterKey(randomBytes(32), { scopeKeys: { dir } });
    await expect(unwrapKeyRow(other, row)).rejects.toMatchObject({ code: ErrorCodes.MASTER_KEY_MISMATCH });
    other.close();
    // the master key alone neither
    const alone = new LocalMasterKey(Buffer.from(randomBytes(32)));
    await expect(unwrapKeyRow(alone, row)).rejects.toMatchObject({ code: ErrorCodes.MASTER_KEY_MISMATCH });
    expect(await kek.scopeKeys!.destroy('acme')).toBe(true);
    expect(existsSync(join(dir, 'acme.key'))).toBe(false);
    const error = (await unwrapKeyRow(kek, row).catch((e: unknown) => e)) as PgsealError;
    expect(error).toMatchObject({ code: ErrorCodes.SCOPE_KEY_MISSING });
    expect(error.hint).toMatch(/shredded.*restore the file/);
    expect(await kek.scopeKeys!.destroy('acme')).toBe(false);
    kek.close();
  });
});
