// Master keys (KEKs). They wrap data keys and never reach the database. A provider is a
// small interface so that AWS KMS, Vault or another service can be added beside these.

import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ErrorCodes, PgsealError } from '../errors.js';

export interface DataKey {
  /** the 32-byte data key; the caller zeroes it when done */
  plaintext: Buffer;
  /** the same key wrapped by this provider, as stored in pgseal.keys.wrapped_key */
  wrapped: Buffer;
}

export interface MasterKeyProvider {
  /** Reference stored beside each wrapped key (pgseal.keys.kek_ref); never the key. */
  readonly ref: string;
  generateDataKey(context: Buffer): Promise<DataKey>;
  wrap(plaintext: Buffer, context: Buffer): Promise<Buffer>;
  unwrap(wrapped: Buffer, context: Buffer): Promise<Buffer>;
  /** Zeroes what the provider holds. */
  close(): void;
}

const KEY_BYTES = 32;
const WRAP_FORMAT = 1;

/**
 * Parses a master key: 32 bytes as base64 or base64url, padded or not (a 44-character
 * Fernet key is base64url). The error never echoes the input.
 */
export function parseMasterKey(text: string, source: string): Buffer {
  const trimmed = text.trim();
  const fix = 'generate one with `pgseal keys generate-master-key`';
  if (trimmed === '') {
    throw new PgsealError(ErrorCodes.MASTER_KEY_MALFORMED, `${source} is empty`, { hint: fix });
  }
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    throw new PgsealError(ErrorCodes.MASTER_KEY_MALFORMED, `${source} is not base64 or base64url`, {
      hint: `it must be 32 random bytes in base64 (44 characters); ${fix}`,
    });
  }
  const key = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (key.length !== KEY_BYTES) {
    const n = key.length;
    key.fill(0);
    throw new PgsealError(ErrorCodes.MASTER_KEY_MALFORMED, `${source} decodes to ${n} bytes, not ${KEY_BYTES}`, {
      hint: `it must be 32 random bytes in base64 (44 characters); ${fix}`,
    });
  }
  return key;
}

/** A fresh master key from the operating system's CSPRNG, in base64. */
export function generateMasterKey(): string {
  const key = randomBytes(KEY_BYTES);
  const text = key.toString('base64');
  key.fill(0);
  return text;
}

/**
 * A master key held in this process (from the environment or a file). Wraps with
 * AES-256-GCM; the context (scope, purpose, version) is the associated data, so a wrapped
 * key moved to another row does not unwrap.
 * Wrapped layout: 0x01 | nonce (12) | ciphertext (32) | tag (16).
 */
export class LocalMasterKey implements MasterKeyProvider {
  readonly ref: string;
  #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) throw new PgsealError(ErrorCodes.MASTER_KEY_MALFORMED, `a master key is ${KEY_BYTES} bytes`);
    this.#key = key;
    // A public identifier: an HMAC of the key under a fixed label, shortened.
    this.ref = 'local:' + createHmac('sha256', key).update('pgseal/v1/kek-id').digest('hex').slice(0, 16);
  }

  async generateDataKey(context: Buffer): Promise<DataKey> {
    const plaintext = randomBytes(KEY_BYTES);
    return { plaintext, wrapped: await this.wrap(plaintext, context) };
  }

  async wrap(plaintext: Buffer, context: Buffer): Promise<Buffer> {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#live(), nonce);
    cipher.setAAD(context);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.from([WRAP_FORMAT]), nonce, body, cipher.getAuthTag()]);
  }

  async unwrap(wrapped: Buffer, context: Buffer): Promise<Buffer> {
    if (wrapped.length !== 1 + 12 + KEY_BYTES + 16 || wrapped[0] !== WRAP_FORMAT) {
      throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, 'a wrapped key in pgseal.keys has an unknown layout', {
        hint: 'the row was written by another tool or damaged; restore pgseal.keys from a backup',
      });
    }
    const decipher = createDecipheriv('aes-256-gcm', this.#live(), wrapped.subarray(1, 13));
    decipher.setAAD(context);
    decipher.setAuthTag(wrapped.subarray(13 + KEY_BYTES));
    try {
      return Buffer.concat([decipher.update(wrapped.subarray(13, 13 + KEY_BYTES)), decipher.final()]);
    } catch {
      throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, 'the master key does not open a wrapped key', {
        hint: 'the master key is not the one that wrapped it, or the row was altered; check PGSEAL_MASTER_KEY',
      });
    }
  }

  close(): void {
    this.#key.fill(0);
  }

  #live(): Buffer {
    return this.#key;
  }
}

/** The master key from an environment variable (default PGSEAL_MASTER_KEY). */
export function envMasterKey(variable = 'PGSEAL_MASTER_KEY', env: NodeJS.ProcessEnv = process.env): LocalMasterKey {
  const text = env[variable];
  if (text === undefined || text.trim() === '') {
    throw new PgsealError(ErrorCodes.MASTER_KEY_MISSING, `no master key: ${variable} is not set`, {
      hint: `set ${variable} to the base64 master key (or pass --master-key-file); a new installation can create one with \`pgseal keys generate-master-key\``,
    });
  }
  return new LocalMasterKey(parseMasterKey(text, variable));
}

/** The master key from a file holding it in base64 (or as 32 raw bytes). */
export function fileMasterKey(path: string): LocalMasterKey {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (error) {
    const code = (error as { code?: string }).code ?? 'error';
    throw new PgsealError(ErrorCodes.MASTER_KEY_MISSING, `cannot read the master key file ${path} (${code})`, {
      hint: 'check the path given to --master-key-file or PGSEAL_MASTER_KEY_FILE',
    });
  }
  if (raw.length === KEY_BYTES && !/^[A-Za-z0-9+/_=\s-]+$/.test(raw.toString('latin1'))) return new LocalMasterKey(raw);
  const text = raw.toString('utf8');
  raw.fill(0);
  return new LocalMasterKey(parseMasterKey(text, `the master key file ${path}`));
}
