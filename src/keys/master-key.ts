// Master keys (KEKs). They wrap data keys and never reach the database. A provider is a
// small interface so that AWS KMS, Vault or another service can be added beside these.
// Per-scope wrapping keys (ScopeKeyProvider: here a directory of key files, later a KMS key
// per scope) wrap a scope's data and index keys, so that destroying one shreds the scope in
// old backups of pgseal.keys too (docs/key-providers.md).

import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { join, resolve } from 'node:path';
import { wrapAad, type WrapContext } from '../crypto/derive.js';
import { ErrorCodes, PgsealError } from '../errors.js';

export interface DataKey {
  /** the 32-byte data key; the caller zeroes it when done */
  plaintext: Buffer;
  /** the same key wrapped by this provider, as stored in pgseal.keys.wrapped_key */
  wrapped: Buffer;
}

export interface MasterKeyProvider {
  /** Reference stored beside each wrapped key (pgseal.keys.kek_ref); never the key. Final once prepare() has settled. */
  readonly ref: string;
  /**
   * Makes the provider ready (a remote one resolves its key's identity, fetches a secret);
   * called before ref is relied on, again and again, so it settles once. Optional: local keys
   * are ready when made.
   */
  prepare?(): Promise<void>;
  generateDataKey(context: WrapContext): Promise<DataKey>;
  wrap(plaintext: Buffer, context: WrapContext): Promise<Buffer>;
  unwrap(wrapped: Buffer, context: WrapContext): Promise<Buffer>;
  /**
   * Re-wraps a key wrapped by `from` without unwrapping it here (AWS KMS: ReEncrypt), for
   * `keys rewrap`; undefined where that does not fit, and the caller unwraps and wraps.
   */
  rewrapFrom?(from: MasterKeyProvider, wrapped: Buffer, context: WrapContext): Promise<Buffer | undefined>;
  /** Zeroes what the provider holds. */
  close(): void;
  /**
   * Per-scope wrapping keys, when configured: the data and index keys of a scope are then
   * wrapped by its scope key instead (log keys stay with this provider; see wrappingKeyFor).
   */
  readonly scopeKeys?: ScopeKeyProvider | undefined;
}

/**
 * Wrapping keys kept outside the database, one per scope. Small on purpose: a directory of
 * key files implements it (ScopeKeyDirectory), a KMS key per scope can too.
 */
export interface ScopeKeyProvider {
  /** Where the scope keys are, for messages (a directory, a KMS alias pattern): never secret. */
  readonly location: string;
  /**
   * The wrapping key of one scope, as a provider whose ref (stored as kek_ref) names it. The
   * caller closes it. With `create`, a scope without a key gets a new one (keys init);
   * otherwise a missing one is PGSEAL_SCOPE_KEY_MISSING.
   */
  forScope(scope: string, options?: { create?: boolean }): Promise<MasterKeyProvider>;
  /** Whether the scope has a wrapping key. */
  has(scope: string): Promise<boolean>;
  /** Destroys the scope's wrapping key for good (keys destroy); false when it had none. */
  destroy(scope: string): Promise<boolean>;
}

export interface MasterKeyOptions {
  /** Per-scope wrapping keys in a directory, one file per scope (default for the env and file loaders: $PGSEAL_SCOPE_KEY_DIR). */
  scopeKeys?: { dir: string } | undefined;
}

const SCOPED_PURPOSES = new Set(['data', 'index']);

/**
 * The provider a new key of this scope and purpose is wrapped by: the scope's key when scope
 * keys are configured (data and index keys), else the master key itself. `work` runs with it;
 * a scope key is closed (zeroed) afterwards.
 */
export async function withWrappingKey<T>(
  provider: MasterKeyProvider, scope: string, purpose: string, options: { create?: boolean }, work: (kek: MasterKeyProvider) => Promise<T>,
): Promise<T> {
  await provider.prepare?.(); // a provider read from a secret knows its scope keys once prepared
  if (!provider.scopeKeys || !SCOPED_PURPOSES.has(purpose)) return work(provider);
  const kek = await provider.scopeKeys.forScope(scope, options);
  try {
    return await work(kek);
  } finally {
    kek.close();
  }
}

/** A key reference (kek_ref) naming a scope key: `scope:<scope>:<id>`. */
export function isScopeKeyRef(ref: string): boolean {
  return ref.startsWith('scope:');
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

/** AES-256-GCM with the context as associated data. Wrapped layout: 0x01 | nonce (12) | ciphertext (32) | tag (16). */
function wrapWith(kek: Buffer, plaintext: Buffer, context: WrapContext): Buffer {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek, nonce);
  cipher.setAAD(wrapAad(context));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([WRAP_FORMAT]), nonce, body, cipher.getAuthTag()]);
}

/** Opens a wrapped key; the intermediate chunks the decipher returns are zeroed, only the result is left for the caller to zero. */
function unwrapWith(kek: Buffer, wrapped: Buffer, context: WrapContext, hint: string): Buffer {
  if (wrapped.length !== 1 + 12 + KEY_BYTES + 16 || wrapped[0] !== WRAP_FORMAT) {
    throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, 'a wrapped key in pgseal.keys has an unknown layout', {
      hint: 'the row was written by another tool or damaged; restore pgseal.keys from a backup',
    });
  }
  const decipher = createDecipheriv('aes-256-gcm', kek, wrapped.subarray(1, 13));
  decipher.setAAD(wrapAad(context));
  decipher.setAuthTag(wrapped.subarray(13 + KEY_BYTES));
  const head = decipher.update(wrapped.subarray(13, 13 + KEY_BYTES));
  let tail: Buffer;
  try {
    tail = decipher.final();
  } catch {
    head.fill(0);
    throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, 'the master key does not open a wrapped key', { hint });
  }
  if (tail.length === 0) return head;
  // not reached with GCM (update returns every byte), kept for a cipher that holds some back
  const dek = Buffer.concat([head, tail]);
  head.fill(0);
  tail.fill(0);
  return dek;
}

function kekId(key: Buffer): string {
  // a public identifier: an HMAC of the key under a fixed label, shortened
  return createHmac('sha256', key).update('pgseal/v1/kek-id').digest('hex').slice(0, 16);
}

const releases = new WeakMap<LocalMasterKey, () => void>();

/**
 * A master key held in this process (from the environment or a file). Wraps with
 * AES-256-GCM; the context (scope, purpose, version) is the associated data, so a wrapped
 * key moved to another row does not unwrap.
 * Wrapped layout: 0x01 | nonce (12) | ciphertext (32) | tag (16).
 * With `scopeKeys`, each scope's data and index keys are wrapped by a key derived from this
 * master key and the scope's own key file: either alone opens nothing.
 */
export class LocalMasterKey implements MasterKeyProvider {
  readonly ref: string;
  readonly scopeKeys: ScopeKeyProvider | undefined;
  #key: Buffer;
  #closed = false;

  constructor(key: Buffer, options: MasterKeyOptions = {}) {
    if (key.length !== KEY_BYTES) throw new PgsealError(ErrorCodes.MASTER_KEY_MALFORMED, `a master key is ${KEY_BYTES} bytes`);
    this.#key = key;
    this.ref = 'local:' + kekId(key);
    this.scopeKeys = options.scopeKeys ? new ScopeKeyDirectory(options.scopeKeys.dir, () => this.#live()) : undefined;
  }

  async generateDataKey(context: WrapContext): Promise<DataKey> {
    const plaintext = randomBytes(KEY_BYTES);
    return { plaintext, wrapped: await this.wrap(plaintext, context) };
  }

  async wrap(plaintext: Buffer, context: WrapContext): Promise<Buffer> {
    return wrapWith(this.#live(), plaintext, context);
  }

  async unwrap(wrapped: Buffer, context: WrapContext): Promise<Buffer> {
    return unwrapWith(this.#live(), wrapped, context, 'the master key is not the one that wrapped it, or the row was altered; check PGSEAL_MASTER_KEY');
  }

  close(): void {
    this.#closed = true;
    this.#key.fill(0);
    releases.get(this)?.();
    releases.delete(this);
  }

  #live(): Buffer {
    if (this.#closed) throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, 'the master key was closed', { hint: 'create a new provider (envMasterKey, fileMasterKey) after close()' });
    return this.#key;
  }
}

/** One scope's wrapping key: HKDF of the scope's key file, salted with the master key. */
class ScopeWrappingKey implements MasterKeyProvider {
  readonly ref: string;
  #key: Buffer;

  constructor(scope: string, key: Buffer) {
    this.#key = key;
    this.ref = `scope:${scope}:${kekId(key)}`;
  }

  async generateDataKey(context: WrapContext): Promise<DataKey> {
    const plaintext = randomBytes(KEY_BYTES);
    return { plaintext, wrapped: await this.wrap(plaintext, context) };
  }

  async wrap(plaintext: Buffer, context: WrapContext): Promise<Buffer> {
    return wrapWith(this.#key, plaintext, context);
  }

  async unwrap(wrapped: Buffer, context: WrapContext): Promise<Buffer> {
    return unwrapWith(this.#key, wrapped, context, 'the scope key file or the master key is not the one that wrapped it, or the row was altered');
  }

  close(): void {
    this.#key.fill(0);
  }
}

const SCOPE_NAME = /^[a-z0-9_-]{1,63}$/;

/** Refuses a key file that group or others may read or write (not checked on Windows, which has no such mode bits). */
function checkKeyFileMode(stat: Stats, path: string, what: string): void {
  if (process.platform === 'win32') return;
  if (!stat.isFile()) {
    throw new PgsealError(ErrorCodes.MASTER_KEY_MISSING, `${what} ${path} is not a regular file`, { hint: 'point it at the file holding the key' });
  }
  if ((stat.mode & 0o077) !== 0) {
    const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
    throw new PgsealError(ErrorCodes.KEY_FILE_PERMISSIONS, `${what} ${path} may be read or written by group or others (mode ${mode}): refusing to use it`, {
      hint: `chmod 600 ${path} (and check no one else copied it meanwhile)`,
    });
  }
}

/** Reads a whole key file through one descriptor, its mode checked on that descriptor. The caller zeroes the result. */
function readKeyFile(path: string, what: string, missing: (code: string) => PgsealError): Buffer {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (error) {
    throw missing((error as { code?: string }).code ?? 'error');
  }
  try {
    const stat = fstatSync(fd);
    checkKeyFileMode(stat, path, what);
    const raw = Buffer.alloc(Math.min(stat.size, 4096));
    let n = 0;
    while (n < raw.length) {
      const got = readSync(fd, raw, n, raw.length - n, n);
      if (got === 0) break;
      n += got;
    }
    if (n === raw.length) return raw;
    const short = Buffer.from(raw.subarray(0, n));
    raw.fill(0);
    return short;
  } finally {
    closeSync(fd);
  }
}

/** Key bytes from a key file's content: 32 raw bytes, or base64 / base64url text. Zeroes `raw`. */
function keyFromFileContent(raw: Buffer, source: string): Buffer {
  if (raw.length === KEY_BYTES && !/^[A-Za-z0-9+/_=\s-]+$/.test(raw.toString('latin1'))) return raw;
  const text = raw.toString('utf8');
  raw.fill(0);
  return parseMasterKey(text, source);
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // some platforms cannot fsync a directory; the file itself was synced
  }
}

/**
 * Scope keys as files: `<dir>/<scope>.key`, 32 random bytes, mode 0600, created by
 * `keys init --scope S` and overwritten then deleted by `keys destroy --scope S`. A scope's
 * wrapping key is derived from its file and the master key, so neither opens anything alone.
 */
export class ScopeKeyDirectory implements ScopeKeyProvider {
  readonly location: string;
  readonly #master: () => Buffer;

  constructor(dir: string, master: () => Buffer) {
    this.location = resolve(dir);
    this.#master = master;
  }

  #path(scope: string): string {
    if (!SCOPE_NAME.test(scope)) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `invalid scope name ${JSON.stringify(scope)}`, { hint: 'a scope is 1 to 63 characters: a-z, 0-9, _ and -' });
    return join(this.location, `${scope}.key`);
  }

  #checkDir(create: boolean): void {
    let stat: Stats;
    try {
      stat = statSync(this.location);
    } catch (error) {
      if (!create || (error as { code?: string }).code !== 'ENOENT') {
        throw new PgsealError(ErrorCodes.SCOPE_KEY_MISSING, `the scope key directory ${this.location} cannot be read (${(error as { code?: string }).code ?? 'error'})`, {
          hint: 'check PGSEAL_SCOPE_KEY_DIR (or --scope-key-dir): it must name the directory holding the scope key files',
        });
      }
      mkdirSync(this.location, { recursive: true, mode: 0o700 });
      return;
    }
    if (process.platform !== 'win32' && (stat.mode & 0o022) !== 0) {
      throw new PgsealError(ErrorCodes.KEY_FILE_PERMISSIONS, `the scope key directory ${this.location} may be written by group or others: refusing to use it`, {
        hint: `chmod 700 ${this.location}`,
      });
    }
  }

  async has(scope: string): Promise<boolean> {
    const path = this.#path(scope);
    try {
      statSync(path);
      return true;
    } catch {
      return false;
    }
  }

  async forScope(scope: string, options: { create?: boolean } = {}): Promise<MasterKeyProvider> {
    const path = this.#path(scope);
    this.#checkDir(options.create ?? false);
    if (options.create) this.#create(path);
    const raw = readKeyFile(path, `the scope key file of scope ${scope}`, (code) =>
      code === 'ENOENT'
        ? new PgsealError(ErrorCodes.SCOPE_KEY_MISSING, `scope ${scope} has no scope key: ${path} does not exist`, {
            hint: `the scope was shredded (\`pgseal keys destroy --scope ${scope}\`), so its values can never be read again; if it was not, restore the file from where you keep scope keys, or point PGSEAL_SCOPE_KEY_DIR (--scope-key-dir) at the directory that holds it`,
          })
        : new PgsealError(ErrorCodes.SCOPE_KEY_MISSING, `cannot read the scope key file ${path} (${code})`, { hint: 'check its owner and that this process may read it' }));
    const fileKey = keyFromFileContent(raw, `the scope key file ${path}`);
    try {
      const derived = Buffer.from(hkdfSync('sha256', fileKey, this.#master(), `pgseal/v1/scope-kek\0${scope}`, KEY_BYTES));
      return new ScopeWrappingKey(scope, derived);
    } finally {
      fileKey.fill(0);
    }
  }

  #create(path: string): void {
    let fd: number;
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (error) {
      if ((error as { code?: string }).code === 'EEXIST') return;
      throw new PgsealError(ErrorCodes.SCOPE_KEY_MISSING, `cannot create the scope key file ${path} (${(error as { code?: string }).code ?? 'error'})`, {
        hint: `check that ${this.location} exists and this process may write it`,
      });
    }
    const key = randomBytes(KEY_BYTES);
    try {
      writeSync(fd, key);
      fsyncSync(fd);
    } finally {
      key.fill(0);
      closeSync(fd);
    }
    fsyncDir(this.location);
  }

  async destroy(scope: string): Promise<boolean> {
    const path = this.#path(scope);
    let fd: number;
    try {
      fd = openSync(path, 'r+');
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return false;
      throw new PgsealError(ErrorCodes.SCOPE_KEY_MISSING, `cannot open the scope key file ${path} to destroy it (${(error as { code?: string }).code ?? 'error'})`, {
        hint: `delete it by hand (shred -u ${path}): until it is gone, an old backup of pgseal.keys still opens the scope`,
      });
    }
    try {
      // overwritten in place before the unlink; on copy-on-write or journaling file systems
      // and SSDs the old blocks may survive: docs/key-providers.md
      const size = fstatSync(fd).size;
      writeSync(fd, randomBytes(Math.max(size, KEY_BYTES)), 0, Math.max(size, KEY_BYTES), 0);
      fsyncSync(fd);
      writeSync(fd, Buffer.alloc(Math.max(size, KEY_BYTES)), 0, Math.max(size, KEY_BYTES), 0);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    unlinkSync(path);
    fsyncDir(this.location);
    return true;
  }
}

interface HeldKey {
  key: Buffer;
  users: number;
}
/** Keys taken out of an environment (removed from it once read), while a provider made from them is open. */
const heldFromEnv = new WeakMap<NodeJS.ProcessEnv, Map<string, HeldKey>>();

function scopeKeysDefault(options: MasterKeyOptions, env: NodeJS.ProcessEnv): MasterKeyOptions {
  if ('scopeKeys' in options) return options;
  const dir = env.PGSEAL_SCOPE_KEY_DIR?.trim();
  return dir ? { scopeKeys: { dir } } : {};
}

/**
 * The master key from an environment variable (default PGSEAL_MASTER_KEY). The variable is
 * removed from the environment once read, so child processes do not inherit it; the key
 * stays in this process only while a provider made from it is open (a second envMasterKey()
 * meanwhile gets its own copy), and is zeroed when the last one closes.
 */
export function envMasterKey(variable = 'PGSEAL_MASTER_KEY', env: NodeJS.ProcessEnv = process.env, options: MasterKeyOptions = {}): LocalMasterKey {
  const text = env[variable];
  let held = heldFromEnv.get(env)?.get(variable);
  if (text !== undefined && text.trim() !== '') {
    const key = parseMasterKey(text, variable);
    delete env[variable];
    if (held) {
      held.key.fill(0);
      held.key = key;
    } else {
      held = { key, users: 0 };
      if (!heldFromEnv.has(env)) heldFromEnv.set(env, new Map());
      heldFromEnv.get(env)!.set(variable, held);
    }
  } else if (text !== undefined) {
    delete env[variable];
  }
  if (!held) {
    throw new PgsealError(ErrorCodes.MASTER_KEY_MISSING, `no master key: ${variable} is not set`, {
      hint: `set ${variable} to the base64 master key (or pass --master-key-file); a new installation can create one with \`pgseal keys generate-master-key\` (pgseal removes it from the environment once read: a process that closed every master key made from it must be given it again)`,
    });
  }
  const provider = new LocalMasterKey(Buffer.from(held.key), scopeKeysDefault(options, env));
  held.users += 1;
  const entry = held;
  releases.set(provider, () => {
    entry.users -= 1;
    if (entry.users > 0) return;
    entry.key.fill(0);
    const map = heldFromEnv.get(env);
    if (map?.get(variable) === entry) map.delete(variable);
  });
  return provider;
}

/** The master key from a file holding it in base64 (or as 32 raw bytes); refused if group or others may read or write it. */
export function fileMasterKey(path: string, options: MasterKeyOptions = {}): LocalMasterKey {
  const raw = readKeyFile(path, 'the master key file', (code) =>
    new PgsealError(ErrorCodes.MASTER_KEY_MISSING, `cannot read the master key file ${path} (${code})`, {
      hint: 'check the path given to --master-key-file or PGSEAL_MASTER_KEY_FILE',
    }));
  return new LocalMasterKey(keyFromFileContent(raw, `the master key file ${path}`), scopeKeysDefault(options, process.env));
}
