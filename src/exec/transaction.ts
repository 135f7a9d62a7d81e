// Keys per transaction: the caller's work runs in a transaction whose first statement,
// pgseal.use_keys($1), hands the keys over as one bound parameter. postgres.js pipelines
// it with the caller's first statement (same round trip once the statement is prepared on
// the connection), and the settings it makes are transaction-local, so nothing stays on
// the connection after COMMIT or ROLLBACK.

import type { Sql, TransactionSql } from 'postgres';
import { ErrorCodes, isNetworkCode, PgsealError, toPgsealError } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';

export interface WithKeysOptions {
  /** Only these key scopes are handed to the database (default: every loaded scope). */
  scopes?: readonly string[];
}

type Work<T> = (tx: TransactionSql) => T | Promise<T>;

export async function withKeys<T>(sql: Sql, keyring: Keyring, work: Work<T>, options: WithKeysOptions = {}): Promise<T> {
  const payload = await keyring.payload(options.scopes);
  try {
    return (await sql.begin(async (tx) => {
      const handoff = tx`select pgseal.use_keys(${payload})`.execute();
      // Settle it without a rejection escaping; its error is the root cause if it failed.
      const handedOff = handoff.then(
        () => undefined,
        (error: unknown) => error,
      );
      let result: unknown;
      let workError: unknown;
      let failed = false;
      try {
        const value = work(tx);
        result = await (Array.isArray(value) ? Promise.all(value) : value);
      } catch (error) {
        failed = true;
        workError = error;
      }
      const handoffError = await handedOff;
      if (handoffError !== undefined) throw new HandoffError(handoffError);
      if (failed) throw workError;
      return result;
    })) as T;
  } catch (error) {
    const surfaced = error instanceof HandoffError ? toPgsealError(error.original) : surfaceable(error);
    // A version or scope this keyring does not know: another process rotated. Reload
    // before the next transaction (this one cannot be replayed safely).
    if (surfaced instanceof PgsealError && (surfaced.code === ErrorCodes.UNKNOWN_KEY_VERSION || surfaced.code === ErrorCodes.NO_ACTIVE_KEY)) keyring.invalidate();
    throw surfaced;
  } finally {
    payload.fill(0);
  }
}

/** Marks the hand-off's own failure; never leaves this module (its original holds the keys). */
class HandoffError {
  constructor(readonly original: unknown) {}
}

/**
 * Database errors become typed PgsealErrors (a driver error keeps the statement's bound
 * parameters, which may be plaintext); the caller's own thrown errors pass through.
 */
function surfaceable(error: unknown): unknown {
  if (error instanceof PgsealError) return error;
  const e = error as { code?: unknown; severity?: unknown } | null;
  if (typeof e?.code === 'string' && (typeof e.severity === 'string' || isNetworkCode(e.code))) return toPgsealError(error);
  return error;
}
