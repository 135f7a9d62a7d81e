// The keyring: the unwrapped keys of one process, cached for a TTL and zeroed when they
// expire or the keyring closes. It loads pgseal.keys and unwraps through unwrap.ts, and
// hands keys out in the wire formats of src/crypto/wire.ts, each a fresh buffer the caller
// zeroes (the keyed executor does, src/exec/).

import type { Sql } from 'postgres';
import type { LogKeys } from '../audit/record.js';
import { deriveEnvelopeKeys, deriveIndexKey, deriveLogKey, type EnvelopeKeys } from '../crypto/derive.js';
import { forgetPrepared, type VersionedKeys } from '../crypto/envelope.js';
import { encodeKeyMaterial, encodeKeyPayload, encodeKeyset } from '../crypto/wire.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import { keyringLoad, keyringUse } from '../metrics.js';
import type { MasterKeyProvider } from './master-key.js';
import { activeFirst, keyGeneration, logKeysetOf, unwrapKeyRow, usableKeyRows, type KeyPurpose, type KeyState } from './unwrap.js';

export type { KeyState };

interface CachedKey extends VersionedKeys {
  scope: string;
  purpose: KeyPurpose;
  state: KeyState;
  /** of the data key: a re-wrap (new master key) keeps it, so the cached keys stay, unzeroed */
  fingerprint: string;
}

export interface KeyringOptions {
  /** How long unwrapped keys stay in memory before they are zeroed and reloaded (ms). */
  ttlMs?: number;
}

export class Keyring implements LogKeys {
  readonly #sql: Sql;
  readonly #provider: MasterKeyProvider;
  readonly #ttlMs: number;
  #keys = new Map<number, CachedKey>();
  #loadedAt = 0;
  /** pgseal.key_generation() when the keys were loaded: pgseal.guard() refuses keys older than the last revocation */
  #generation = 0;
  #loading: Promise<void> | undefined;
  /** bumped when the keys in memory are zeroed (expiry): a load that reused them must not install them */
  #epoch = 0;
  #expiry: NodeJS.Timeout | undefined;
  #keeper: NodeJS.Timeout | undefined;
  /** keys are in memory (invalidate() marks them stale but keeps them; expiry zeroes them) */
  #loaded = false;
  #closed = false;
  /** versions whose scope key is gone (shredded scope): not loaded, and why */
  #unopened = new Map<number, PgsealError>();

  constructor(sql: Sql, provider: MasterKeyProvider, options: KeyringOptions = {}) {
    this.#sql = sql;
    this.#provider = provider;
    this.#ttlMs = options.ttlMs ?? 5 * 60_000;
  }

  /** Reloads pgseal.keys now; keys that disappeared or changed are zeroed. */
  async refresh(): Promise<void> {
    if (this.#closed) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the keyring is closed');
    this.#loading ??= keyringLoad(() => this.#load()).finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #load(): Promise<void> {
    const epoch = this.#epoch;
    // read before the keys: a revocation committed in between makes the next guard refuse, never the reverse
    // a remote provider gets ready (KMS: DescribeKey) while the database answers
    const preparing = this.#provider.prepare?.();
    preparing?.catch(() => undefined);
    const generation = await keyGeneration(this.#sql);
    const rows = await usableKeyRows(this.#sql);
    await preparing;
    const next = new Map<number, CachedKey>();
    const unopened = new Map<number, PgsealError>();
    // the rows to unwrap, concurrently: with a remote KMS, N versions cost one round trip, not N
    const settled = await Promise.allSettled(rows.map(async (row): Promise<CachedKey | undefined> => {
      const cached = this.#keys.get(row.version);
      if (cached && row.wrapped_key && cached.fingerprint === row.fingerprint && cached.scope === row.scope && cached.purpose === row.purpose) {
        cached.state = row.state;
        return cached;
      }
      const dek = await unwrapKeyRow(this.#provider, row).catch((error: unknown) => {
        // a shredded scope (its scope key destroyed) stays unreadable; the other scopes load
        if (error instanceof PgsealError && error.code === ErrorCodes.SCOPE_KEY_MISSING) return void unopened.set(row.version, error);
        throw error;
      });
      if (!dek) return undefined;
      const derived = derivedKeys(row.purpose, dek);
      dek.fill(0);
      return { version: row.version, scope: row.scope, purpose: row.purpose, state: row.state, fingerprint: row.fingerprint, ...derived };
    }));
    for (const r of settled) if (r.status === 'fulfilled' && r.value) next.set(r.value.version, r.value);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      for (const [version, key] of next) if (this.#keys.get(version) !== key) zero(key);
      throw failed.reason;
    }
    if (this.#closed || this.#epoch !== epoch) {
      // closed meanwhile, or expired meanwhile (the keys it reused are zeroed): keep nothing of it
      for (const [version, key] of next) if (this.#keys.get(version) !== key) zero(key);
      if (this.#closed) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the keyring was closed while it loaded');
      return this.#load();
    }
    for (const [version, key] of this.#keys) if (next.get(version) !== key) zero(key);
    this.#keys = next;
    this.#unopened = unopened;
    this.#generation = generation;
    this.#loadedAt = Date.now();
    this.#loaded = true;
    clearTimeout(this.#expiry);
    this.#expiry = setTimeout(() => this.#expire(), this.#ttlMs);
    this.#expiry.unref();
  }

  #expire(): void {
    this.#epoch += 1;
    for (const key of this.#keys.values()) zero(key);
    this.#keys.clear();
    this.#loadedAt = 0;
    this.#loaded = false;
  }

  /** Marks the cached list of versions stale: the next use reloads pgseal.keys. */
  invalidate(): void {
    this.#loadedAt = 0;
  }

  async #fresh(): Promise<CachedKey[]> {
    if (this.#closed) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the keyring is closed');
    if (keyringUse(this.#loadedAt === 0 || Date.now() - this.#loadedAt >= this.#ttlMs)) await this.refresh();
    return [...this.#keys.values()];
  }

  /** Loads the keys unless they are loaded and fresh: client-side crypto's synchronous calls below need it first. */
  async ready(): Promise<void> {
    if (this.#closed || this.#loadedAt === 0 || Date.now() - this.#loadedAt >= this.#ttlMs) await this.#fresh();
    else keyringUse(false);
  }

  /**
   * Reloads ahead of the TTL while the process runs, so synchronous callers (the ORM
   * adapters' column types) never meet expired keys; a failed reload is retried at the next
   * tick and the keys in hand expire at their TTL as usual. Stops when the keyring closes.
   */
  keepFresh(): void {
    if (this.#keeper || this.#closed) return;
    this.#keeper = setInterval(() => void this.refresh().catch(() => undefined), Math.max(this.#ttlMs / 2, 1000));
    this.#keeper.unref();
  }

  /**
   * The data key of a version as loaded now, for client-side open: undefined when not loaded
   * (a rotation elsewhere: reload), the shredded scope's error when its scope key is gone.
   * Synchronous: await ready() first (PGSEAL_NO_KEYS otherwise).
   */
  loadedDataKey(version: number): (VersionedKeys & { scope: string; state: KeyState }) | undefined {
    this.#assertLoaded();
    const shredded = this.#unopened.get(version);
    if (shredded) throw shredded;
    const key = this.#keys.get(version);
    return key?.purpose === 'data' ? key : undefined;
  }

  /** The active data key of a scope as loaded now, for client-side seal (synchronous: await ready() first). */
  loadedActiveKey(scope: string): VersionedKeys | undefined {
    this.#assertLoaded();
    for (const k of this.#keys.values()) if (k.scope === scope && k.purpose === 'data' && k.state === 'active') return k;
    return undefined;
  }

  /** The scope's active blind-index key as loaded now (shared with the cache: do not modify). */
  loadedIndexKey(scope: string): Buffer | undefined {
    this.#assertLoaded();
    for (const k of this.#keys.values()) if (k.scope === scope && k.purpose === 'index' && k.state === 'active') return k.encKey;
    return undefined;
  }

  /** The scope's blind-index keys as loaded now, the active one first (shared with the cache: do not modify). */
  loadedIndexKeys(scope: string): Buffer[] {
    this.#assertLoaded();
    return [...this.#keys.values()].filter((k) => k.scope === scope && k.purpose === 'index').sort(activeFirst).map((k) => k.encKey);
  }

  /** The revocation generation of the keys loaded now (client-side reads compare it with the database's). */
  get loadedGeneration(): number {
    return this.#generation;
  }

  #assertLoaded(): void {
    if (this.#closed) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the keyring is closed');
    if (!this.#loaded) {
      throw new PgsealError(ErrorCodes.NO_KEYS, 'the keyring holds no keys now (not loaded yet, or expired)', {
        hint: 'await keyring.ready() before client-side crypto, or call keyring.keepFresh() so that keys are reloaded before they expire',
      });
    }
  }

  /** The revocation generation of the loaded keys, for pgseal.guard() (loads the keys if needed). */
  async generation(): Promise<number> {
    await this.#fresh();
    return this.#generation;
  }

  /** Keys for the envelope in Node (client-side open). */
  async keysFor(version: number): Promise<EnvelopeKeys | undefined> {
    await this.#fresh();
    const shredded = this.#unopened.get(version);
    if (shredded) throw shredded;
    return this.#keys.get(version);
  }

  /** The active data key of a scope, for client-side seal. */
  async activeKey(scope = 'default'): Promise<VersionedKeys | undefined> {
    return (await this.#fresh()).find((k) => k.scope === scope && k.purpose === 'data' && k.state === 'active');
  }

  /** Loaded versions, for diagnostics: no key material. */
  async versions(): Promise<Array<{ version: number; scope: string; state: KeyState }>> {
    return (await this.#fresh()).map(({ version, scope, state }) => ({ version, scope, state }));
  }

  /** The scopes whose keys are loaded. */
  async scopes(): Promise<string[]> {
    return [...new Set((await this.#fresh()).map((k) => k.scope))];
  }

  /** The argument of pgseal.use_keys() for one transaction (data and index keys of the scopes, default every loaded one). */
  async payload(scopes?: readonly string[]): Promise<Buffer> {
    const wanted = scopes ? new Set(scopes) : undefined;
    return encodeKeyPayload(
      (await this.#fresh())
        // the log key never goes to a transaction's settings: it is an argument of the log writes only
        .filter((k) => k.purpose !== 'log' && (!wanted || wanted.has(k.scope)))
        .map((k) => ({ ...k, active: k.state === 'active', index: k.purpose === 'index' })),
    );
  }

  /**
   * The keyset argument of the *_with functions: the data keys of the given scopes, active
   * ones first. However many: keys never go to the transaction's settings for pgseal's own
   * statements (any function of the caller's role in the transaction could read them).
   */
  async keyset(scopes: readonly string[]): Promise<Buffer> {
    const wanted = new Set(scopes);
    return encodeKeyset((await this.#fresh()).filter((k) => k.purpose === 'data' && wanted.has(k.scope)).sort(activeFirst));
  }

  /** The keyset of exactly these data key versions, in this order (re-encryption: the stale versions); PS002's error for one not loaded. */
  async keysetOf(versions: readonly number[]): Promise<Buffer> {
    await this.#fresh();
    const keys = versions.map((v) => {
      const key = this.#keys.get(v);
      if (!key || key.purpose !== 'data') {
        throw new PgsealError(ErrorCodes.UNKNOWN_KEY_VERSION, `key version ${v} is not among this process's keys`, { hint: 'reload the keys (a retired or destroyed version cannot be read)' });
      }
      return key;
    });
    return encodeKeyset(keys);
  }

  /** The key material (version, encryption key, MAC key) writes of a scope use; copied before anything else runs (a reload zeroes what it replaces). */
  async keyMaterial(scope: string): Promise<Buffer | undefined> {
    const key = (await this.#fresh()).find((k) => k.scope === scope && k.purpose === 'data' && k.state === 'active');
    return key ? encodeKeyMaterial(key) : undefined;
  }

  /**
   * Every usable blind-index key of the scope, the active one first (lookups try them all
   * while indexes are recomputed under a new key). Shared with the cache: do not modify.
   */
  async indexKeys(scope: string): Promise<Buffer[]> {
    return (await this.#fresh()).filter((k) => k.scope === scope && k.purpose === 'index').sort(activeFirst).map((k) => k.encKey);
  }

  /** The scope's active blind-index key (shared with the cache: do not modify). */
  async indexKey(scope: string): Promise<Buffer | undefined> {
    return (await this.#fresh()).find((k) => k.scope === scope && k.purpose === 'index' && k.state === 'active')?.encKey;
  }

  /** The log keyset (crypto/wire.ts) of the log writers. */
  async logKeyset(): Promise<Buffer> {
    return logKeysetOf((await this.#fresh()).filter((k) => k.purpose === 'log').map((k) => ({ version: k.version, state: k.state, key: k.encKey })));
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#expiry);
    clearInterval(this.#keeper);
    this.#expire();
  }
}

/** An index key travels in the encKey slot and a log key too; their macKey slot stays zero. */
function derivedKeys(purpose: KeyPurpose, dek: Buffer): EnvelopeKeys {
  if (purpose === 'index') return { encKey: deriveIndexKey(dek), macKey: Buffer.alloc(32) };
  if (purpose === 'log') return { encKey: deriveLogKey(dek), macKey: Buffer.alloc(32) };
  return deriveEnvelopeKeys(dek);
}

function zero(key: CachedKey): void {
  forgetPrepared(key);
  key.encKey.fill(0);
  key.macKey.fill(0);
}
