// Where a data key is unwrapped: the rows of pgseal.keys still in use, opened with the
// master key and checked against their fingerprint. The keyring (keyring.ts) caches what
// comes out; key commands that hold the master key but no keyring use it directly.

import type { Sql } from 'postgres';
import type { LogKeys } from '../audit/record.js';
import { deriveLogKey, fingerprint, type WrapContext } from '../crypto/derive.js';
import { encodeLogKeyset } from '../crypto/wire.js';
import { ErrorCodes, PgsealError, withPgsealErrors } from '../errors.js';
import { isScopeKeyRef, type MasterKeyProvider } from './master-key.js';

export type KeyState = 'active' | 'decrypt-only' | 'retired' | 'destroyed';
export type KeyPurpose = 'data' | 'index' | 'log';

export interface KeyRow {
  version: number;
  scope: string;
  purpose: KeyPurpose;
  state: KeyState;
  wrapped_key: Buffer | null;
  kek_ref: string;
  fingerprint: string;
  /** pgseal.installation_id(): the database the row belongs to, part of its wrap context */
  database: string;
}

/** What a row's wrapped key is bound to (src/crypto/derive.ts spells it for each provider). */
export function wrapContextOf(row: Pick<KeyRow, 'scope' | 'purpose' | 'version' | 'database'>): WrapContext {
  return { scope: row.scope, purpose: row.purpose, version: row.version, database: row.database };
}

/** How to configure the key a kek_ref names (an identifier, never secret), for hints. */
export function configureHint(kekRef: string): string {
  if (kekRef.startsWith('kms:')) return `set PGSEAL_KMS_KEY_ID (or --kms-key-id) to ${kekRef.slice(4)}, the AWS KMS key this database's keys are wrapped by`;
  return 'set PGSEAL_MASTER_KEY (or --master-key-file, or PGSEAL_MASTER_KEY_SECRET_ID) to the master key this database was initialised with';
}

/** The rows of pgseal.keys still in use (active, decrypt-only), oldest first; of one purpose or scope if asked (pgseal.usable_keys). */
export function usableKeyRows(sql: Sql, only: { purpose?: KeyPurpose; scope?: string } = {}): Promise<KeyRow[]> {
  // through the SECURITY DEFINER function: an application role holds no privilege on pgseal.keys
  return withPgsealErrors(() => sql<KeyRow[]>`
    select version, scope, purpose, state, wrapped_key, kek_ref, fingerprint, pgseal.installation_id()::pg_catalog.text as database
      from pgseal.usable_keys(${only.purpose ?? null}::text, ${only.scope ?? null}::text)`);
}

/**
 * The key that wrapped this row, picked by its kek_ref: the master key itself, or the scope
 * key it names (PGSEAL_SCOPE_KEY_MISSING when that is gone: the scope was shredded). `work`
 * runs with it; a scope key is zeroed afterwards.
 */
async function withUnwrappingKey<T>(provider: MasterKeyProvider, row: KeyRow, work: (kek: MasterKeyProvider) => Promise<T>): Promise<T> {
  if (row.kek_ref === provider.ref) return work(provider);
  if (isScopeKeyRef(row.kek_ref)) {
    if (!provider.scopeKeys) {
      throw new PgsealError(
        ErrorCodes.MASTER_KEY_MISMATCH,
        `key version ${row.version} (scope ${row.scope}) was wrapped by scope key ${row.kek_ref}, but no scope keys are configured`,
        { hint: 'set PGSEAL_SCOPE_KEY_DIR (or --scope-key-dir, or the scopeKeys option) to the directory holding the scope key files' },
      );
    }
    const kek = await provider.scopeKeys.forScope(row.scope);
    try {
      if (kek.ref !== row.kek_ref) {
        throw new PgsealError(
          ErrorCodes.MASTER_KEY_MISMATCH,
          `key version ${row.version} (scope ${row.scope}) was wrapped by scope key ${row.kek_ref}, but the configured master key and scope key file give ${kek.ref}`,
          { hint: `${configureHint(provider.ref)}, and check ${provider.scopeKeys.location}` },
        );
      }
      return await work(kek);
    } finally {
      kek.close();
    }
  }
  throw new PgsealError(
    ErrorCodes.MASTER_KEY_MISMATCH,
    `key version ${row.version} (scope ${row.scope}) was wrapped by master key ${row.kek_ref}, but the configured master key is ${provider.ref}`,
    { hint: configureHint(row.kek_ref) },
  );
}

/** pgseal.key_generation(): bumped by every revocation (retire, destroy, compromise; sql/35_guard.sql). */
export async function keyGeneration(sql: Sql): Promise<number> {
  const [row] = await withPgsealErrors(() => sql<Array<{ g: string }>>`select pgseal.key_generation()::pg_catalog.text as g`);
  return Number(row!.g);
}

/** Unwraps one key row and checks it against its stored fingerprint. The caller zeroes the result. */
export async function unwrapKeyRow(provider: MasterKeyProvider, row: KeyRow): Promise<Buffer> {
  const wrapped = row.wrapped_key;
  if (!wrapped) {
    throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, `key version ${row.version} (scope ${row.scope}) is ${row.state} and has no key material`);
  }
  await provider.prepare?.();
  const dek = await withUnwrappingKey(provider, row, (kek) => kek.unwrap(wrapped, wrapContextOf(row)));
  if (fingerprint(dek) !== row.fingerprint) {
    dek.fill(0);
    throw new PgsealError(ErrorCodes.KEY_UNWRAP_FAILED, `key version ${row.version} (scope ${row.scope}) does not match its fingerprint`, {
      hint: 'the row in pgseal.keys was altered; restore pgseal.keys from a backup',
    });
  }
  return dek;
}

/**
 * Tries every row with the master key, concurrently (with a remote KMS, N keys cost one round
 * trip, not N), zeroing each key it opens at once: the rows that did not open, with why.
 */
export async function rowsThatDoNotOpen(provider: MasterKeyProvider, rows: readonly KeyRow[]): Promise<Array<{ row: KeyRow; error: unknown }>> {
  const settled = await Promise.allSettled(rows.map((row) => unwrapKeyRow(provider, row)));
  for (const s of settled) if (s.status === 'fulfilled') s.value.fill(0);
  return rows.flatMap((row, i) => {
    const s = settled[i]!;
    return s.status === 'rejected' ? [{ row, error: s.reason as unknown }] : [];
  });
}

/** The active key first, then the newest: the order lookups try keys in, and the order of every keyset. */
export function activeFirst(a: { state: KeyState; version: number }, b: { state: KeyState; version: number }): number {
  return Number(b.state === 'active') - Number(a.state === 'active') || b.version - a.version;
}

/** The log keyset from usable log keys (the keyring's, or usableKeyRows'): active first; PS015's error without an active one. */
export function logKeysetOf(keys: ReadonlyArray<{ version: number; state: KeyState; key: Buffer }>): Buffer {
  const sorted = [...keys].sort(activeFirst);
  if (sorted[0]?.state !== 'active') {
    throw new PgsealError(ErrorCodes.LOG_KEY_MISSING, 'there is no log key: the audit and access logs cannot be signed', {
      hint: 'run `pgseal keys init` as the owner: it creates the log key and starts the logs\' hash chains',
    });
  }
  return encodeLogKeyset(sorted);
}

/**
 * The log keys unwrapped straight from pgseal.keys, for commands that hold the master key
 * but no keyring (key lifecycle, retention, verify). Every buffer but the result is zeroed.
 */
export function masterLogKeys(sql: Sql, provider: MasterKeyProvider): LogKeys {
  return {
    async logKeyset() {
      const rows = await usableKeyRows(sql, { purpose: 'log' });
      const keys: Array<{ version: number; state: KeyState; key: Buffer }> = [];
      try {
        for (const row of rows) {
          const dek = await unwrapKeyRow(provider, row);
          try {
            keys.push({ version: row.version, state: row.state, key: deriveLogKey(dek) });
          } finally {
            dek.fill(0);
          }
        }
        return logKeysetOf(keys);
      } finally {
        for (const k of keys) k.key.fill(0);
      }
    },
  };
}
