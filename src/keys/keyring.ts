// The keyring: loads wrapped data keys from pgseal.keys, unwraps them with the master key
// (this is the one place a data key is unwrapped: unwrapKeyRow), caches the derived
// envelope, blind-index and log keys for a TTL, and zeroes every buffer when it expires or
// the keyring closes.

import type { Sql } from 'postgres';
import { ErrorCodes, PgsealError, withPgsealErrors } from '../errors.js';
import type { VersionedKeys } from '../envelope.js';
import { deriveEnvelopeKeys, deriveIndexKey, deriveLogKey, fingerprint, wrapContext, type EnvelopeKeys } from './derive.js';
import type { MasterKeyProvider } from './master-key.js';

export type KeyState = 'active' | 'decrypt-only' | 'retired' | 'destroyed';

export interface KeyRow {
  version: number;
  scope: string;
  purpose: 'data' | 'index' | 'log';
  state: KeyState;
  wrapped_key: Buffer | null;
  kek_ref: string;
  fingerprint: string;
}

interface CachedKey extends VersionedKeys {
  scope: string;
  purpose: string;
  state: KeyState;
  wrapped: Buffer;
}

export interface KeyringOptions {
  /** How long unwrapped keys stay in memory before they are zeroed and reloaded (ms). */
  ttlMs?: number;
}

/** The rows of pgseal.keys still in use (active, decrypt-only), oldest first; of one purpose or scope if asked. */
export function usableKeyRows(sql: Sql, only: { purpose?: KeyRow['purpose']; scope?: string } = {}): Promise<KeyRow[]> {
  return withPgsealErrors(() => sql<KeyRow[]>`
    select version, scope, purpose, state, wrapped_key, kek_ref, fingerprint
      from pgseal.keys
     where state in ('active', 'decrypt-only')
       ${only.purpose ? sql`and purpose = ${only.purpose}` : sql``} ${only.scope ? sql`and scope = ${only.scope}` : sql``}
     order by version`);
}

/** Unwraps one key row and checks it against its stored fingerprint. The caller zeroes the result. */
export async function unwrapKeyRow(provider: MasterKeyProvider, row: KeyRow): Promise<Buffer> {
  if (!row.wrapped_key) {
    throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, `key version ${row.version} (scope ${row.scope}) is ${row.state} and has no key material`);
  }
  if (row.kek_ref !== provider.ref) {
    throw new PgsealError(
      ErrorCodes.MASTER_KEY_MISMATCH,
      `key version ${row.version} (scope ${row.scope}) was wrapped by master key ${row.kek_ref}, but the configured master key is ${provider.ref}`,
      { hint: 'set PGSEAL_MASTER_KEY (or --master-key-file) to the master key this database was initialised with' },
    );
  }
  const dek = await provider.unwrap(row.wrapped_key, wrapContext(row.scope, row.purpose, row.version));
  if (fingerprint(dek) !== row.fingerprint) {
    dek.fill(0);
    throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, `key version ${row.version} (scope ${row.scope}) does not match its fingerprint`, {
      hint: 'the row in pgseal.keys was altered; restore pgseal.keys from a backup',
    });
  }
  return dek;
}

const ENTRY_FIXED_BYTES = 1 + 4 + 1 + 64;

export interface PayloadEntry extends VersionedKeys {
  scope: string;
  /** the key new values of this scope are written with */
  active: boolean;
  /** a blind-index key (in encKey) rather than a data key */
  index?: boolean;
}

/** The flags byte of a payload entry (see pgseal.use_keys). */
function entryFlags(key: PayloadEntry): number {
  if (key.index) return key.active ? 2 : 4;
  return key.active ? 1 : 0;
}

/** Layout read by pgseal.use_keys (sql/30_keyring.sql). */
export function encodeKeyPayload(entries: readonly PayloadEntry[]): Buffer {
  const size = entries.reduce((n, k) => n + ENTRY_FIXED_BYTES + Buffer.byteLength(k.scope), 0);
  const out = Buffer.alloc(size);
  let at = 0;
  for (const key of entries) {
    at = out.writeUInt8(entryFlags(key), at);
    at = out.writeUInt32BE(key.version, at);
    at = out.writeUInt8(Buffer.byteLength(key.scope), at);
    at += out.write(key.scope, at, 'utf8');
    at += key.encKey.copy(out, at);
    at += key.macKey.copy(out, at);
  }
  return out;
}

export class Keyring {
  readonly #sql: Sql;
  readonly #provider: MasterKeyProvider;
  readonly #ttlMs: number;
  #keys = new Map<number, CachedKey>();
  #loadedAt = 0;
  #loading: Promise<void> | undefined;
  #expiry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(sql: Sql, provider: MasterKeyProvider, options: KeyringOptions = {}) {
    this.#sql = sql;
    this.#provider = provider;
    this.#ttlMs = options.ttlMs ?? 5 * 60_000;
  }

  /** Reloads pgseal.keys now; keys that disappeared or changed are zeroed. */
  async refresh(): Promise<void> {
    if (this.#closed) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the keyring is closed');
    this.#loading ??= this.#load().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #load(): Promise<void> {
    const rows = await usableKeyRows(this.#sql);
    const next = new Map<number, CachedKey>();
    try {
      for (const row of rows) {
        const cached = this.#keys.get(row.version);
        if (cached && row.wrapped_key && cached.wrapped.equals(row.wrapped_key)) {
          cached.state = row.state;
          next.set(row.version, cached);
          continue;
        }
        const dek = await unwrapKeyRow(this.#provider, row);
        const derived = derivedKeys(row.purpose, dek);
        dek.fill(0);
        next.set(row.version, { version: row.version, scope: row.scope, purpose: row.purpose, state: row.state, wrapped: row.wrapped_key!, ...derived });
      }
    } catch (error) {
      for (const [version, key] of next) if (this.#keys.get(version) !== key) zero(key);
      throw error;
    }
    for (const [version, key] of this.#keys) if (next.get(version) !== key) zero(key);
    this.#keys = next;
    this.#loadedAt = Date.now();
    clearTimeout(this.#expiry);
    this.#expiry = setTimeout(() => this.#expire(), this.#ttlMs);
    this.#expiry.unref();
  }

  #expire(): void {
    for (const key of this.#keys.values()) zero(key);
    this.#keys.clear();
    this.#loadedAt = 0;
  }

  /** Marks the cached list of versions stale: the next use reloads pgseal.keys. */
  invalidate(): void {
    this.#loadedAt = 0;
  }

  async #fresh(): Promise<void> {
    if (this.#closed) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the keyring is closed');
    if (this.#loadedAt === 0 || Date.now() - this.#loadedAt >= this.#ttlMs) await this.refresh();
  }

  /** Keys for the envelope in Node (client-side open). */
  async keysFor(version: number): Promise<EnvelopeKeys | undefined> {
    await this.#fresh();
    return this.#keys.get(version);
  }

  /** The active data key of a scope, for client-side seal. */
  async activeKey(scope = 'default'): Promise<VersionedKeys | undefined> {
    await this.#fresh();
    for (const key of this.#keys.values()) if (key.scope === scope && key.purpose === 'data' && key.state === 'active') return key;
    return undefined;
  }

  /** Loaded versions, for diagnostics: no key material. */
  async versions(): Promise<Array<{ version: number; scope: string; state: KeyState }>> {
    await this.#fresh();
    return [...this.#keys.values()].map(({ version, scope, state }) => ({ version, scope, state }));
  }

  /**
   * The argument of pgseal.use_keys() for one transaction. A fresh buffer each time: the
   * caller zeroes it once the statement has run.
   */
  async payload(scopes?: readonly string[]): Promise<Buffer> {
    await this.#fresh();
    const wanted = scopes ? new Set(scopes) : undefined;
    return encodeKeyPayload(
      [...this.#keys.values()]
        // the log key never goes to a transaction's settings: it is an argument of the log writes only
        .filter((k) => k.purpose !== 'log' && (!wanted || wanted.has(k.scope)))
        .map((k) => ({ ...k, active: k.state === 'active', index: k.purpose === 'index' })),
    );
  }

  /**
   * The keyset argument of the *_with functions (sql/60_search.sql): the data keys of the
   * given scopes, active ones first, at most KEYSET_MAX. Undefined when more are usable
   * (the caller then hands keys over per transaction instead). The caller zeroes it.
   */
  async keyset(scopes: readonly string[]): Promise<Buffer | undefined> {
    await this.#fresh();
    const wanted = new Set(scopes);
    const keys = [...this.#keys.values()]
      .filter((k) => k.purpose === 'data' && wanted.has(k.scope))
      .sort(activeFirst);
    if (keys.length > KEYSET_MAX) return undefined;
    const out = Buffer.alloc(keys.length * 68);
    keys.forEach((k, i) => writeKeyMaterial(k, out, i * 68));
    return out;
  }

  /** The 68-byte key material (version, encryption key, MAC key) writes of a scope use. The caller zeroes it. */
  async keyMaterial(scope: string): Promise<Buffer | undefined> {
    const key = await this.activeKey(scope);
    if (!key) return undefined;
    const out = Buffer.alloc(68);
    writeKeyMaterial(key, out, 0);
    return out;
  }

  /**
   * Every usable blind-index key of the scope, the active one first (lookups try them all
   * while indexes are recomputed under a new key). Shared with the cache: do not modify.
   */
  async indexKeys(scope: string): Promise<Buffer[]> {
    await this.#fresh();
    return [...this.#keys.values()]
      .filter((k) => k.scope === scope && k.purpose === 'index')
      .sort(activeFirst)
      .map((k) => k.encKey);
  }

  /** The scope's blind-index key (shared with the cache: do not modify). */
  async indexKey(scope: string): Promise<Buffer | undefined> {
    await this.#fresh();
    for (const key of this.#keys.values()) if (key.scope === scope && key.purpose === 'index' && key.state === 'active') return key.encKey;
    return undefined;
  }

  /** The log keyset (see logKeyset below). The caller zeroes it. */
  async logKeyset(): Promise<Buffer> {
    await this.#fresh();
    return logKeyset([...this.#keys.values()].filter((k) => k.purpose === 'log'));
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#expiry);
    this.#expire();
  }
}

/** An index key travels in the encKey slot and a log key too; their macKey slot stays zero. */
function derivedKeys(purpose: string, dek: Buffer): EnvelopeKeys {
  if (purpose === 'index') return { encKey: deriveIndexKey(dek), macKey: Buffer.alloc(32) };
  if (purpose === 'log') return { encKey: deriveLogKey(dek), macKey: Buffer.alloc(32) };
  return deriveEnvelopeKeys(dek);
}

/** Who can sign log rows: the keyring, or a key command holding the master key. */
export interface LogKeys {
  /** The log keyset argument (sql/97_log_chain.sql): version u32 | key 32, active first. The caller zeroes it. */
  logKeyset(): Promise<Buffer>;
  /** Marks cached keys stale (a log key version was missing): the next logKeyset() reloads. */
  invalidate?(): void;
}

/** From usable log keys only (the keyring's, or usableKeyRows'): active first. */
function logKeyset(keys: Array<VersionedKeys & { state: KeyState; version: number }>): Buffer {
  const sorted = [...keys].sort(activeFirst);
  if (sorted[0]?.state !== 'active') {
    throw new PgsealError(ErrorCodes.LOG_KEY_MISSING, 'there is no log key: the audit and access logs cannot be signed', {
      hint: 'run `pgseal keys init` as the owner: it creates the log key and starts the logs\' hash chains',
    });
  }
  const out = Buffer.alloc(sorted.length * 36);
  sorted.forEach((k, i) => {
    out.writeUInt32BE(k.version, i * 36);
    k.encKey.copy(out, i * 36 + 4);
  });
  return out;
}

/**
 * The log keys unwrapped straight from pgseal.keys, for commands that hold the master key
 * but no keyring (key lifecycle, retention, verify). Every buffer but the result is zeroed.
 */
export function masterLogKeys(sql: Sql, provider: MasterKeyProvider): LogKeys {
  return {
    async logKeyset() {
      const rows = await usableKeyRows(sql, { purpose: 'log' });
      const keys: Array<VersionedKeys & { state: KeyState }> = [];
      try {
        for (const row of rows) {
          const dek = await unwrapKeyRow(provider, row);
          keys.push({ version: row.version, state: row.state, encKey: deriveLogKey(dek), macKey: Buffer.alloc(32) });
          dek.fill(0);
        }
        return logKeyset(keys);
      } finally {
        for (const k of keys) k.encKey.fill(0);
      }
    },
  };
}

/** The active key first, then the newest: the order lookups try keys in. */
function activeFirst(a: { state: KeyState; version: number }, b: { state: KeyState; version: number }): number {
  return Number(b.state === 'active') - Number(a.state === 'active') || b.version - a.version;
}

/** Entries a keyset holds at most: beyond, keys go per transaction (bounds the bound argument's size). */
export const KEYSET_MAX = 64;

function writeKeyMaterial(key: VersionedKeys, out: Buffer, at: number): void {
  out.writeUInt32BE(key.version, at);
  key.encKey.copy(out, at + 4);
  key.macKey.copy(out, at + 36);
}

function zero(key: CachedKey): void {
  key.encKey.fill(0);
  key.macKey.fill(0);
}
