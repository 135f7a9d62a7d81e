// Transactions that carry keys. Each begins with pgseal.guard(generation) (sql/35_guard.sql),
// before any key reaches the server: it pins the settings a role may set for itself that
// would copy a key or a plaintext into a plan dump, the server log or the client's messages
// (set by ALTER ROLE, left on a pooled connection, or by a function of the role's), and it
// refuses keys older than the last revocation, so the statement that carries them never runs
// and the executor reloads (PS020).
//
// - guardedStatement: one statement pgseal built (keys as its bound arguments), pipelined
//   between BEGIN + guard and COMMIT on one connection: one round trip.
// - withKeys: the caller's work, after the guard and, for the decrypted views and SQL of the
//   caller's own (seal.begin), pgseal.use_keys($1), which hands the keys over as one bound
//   parameter into transaction-local settings, gone at COMMIT or ROLLBACK.

import type { Sql, TransactionSql } from 'postgres';
import { ErrorCodes, isNetworkCode, PgsealError, toPgsealError } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';

export interface WithKeysOptions {
  /** Only these key scopes are handed to the database (default: every loaded scope). */
  scopes?: readonly string[] | undefined;
}

interface HandOff {
  /** the keys go into the transaction's settings (pgseal.use_keys); false: the work binds its keys as arguments */
  settings: boolean;
  /**
   * The caller's own work (seal.begin) cannot be replayed: the guard and the hand-off are
   * awaited before it starts, and revoked keys reload and begin again (one round trip more).
   */
  beforeWork: boolean;
}

/**
 * One statement pgseal built, with its keys as bound arguments, in a guarded transaction:
 * BEGIN and the guard, the statement, COMMIT, pipelined on one reserved connection (one round
 * trip). `issue` must send its one statement synchronously (Statement.run does: postgres.js
 * sends queries in the order their execution starts; a query started a microtask later would
 * reach the server after COMMIT, outside the guarded transaction: the attack test saw its plan
 * dump, keys and all).
 */
export async function guardedStatement<T>(sql: Sql, keyring: Keyring, issue: (db: Sql) => Promise<T>): Promise<T> {
  const generation = await keyring.generation();
  const db = await sql.reserve();
  try {
    // the guard prepared once per connection (a text form would be parsed and planned each time)
    const opened = Promise.all([db.unsafe('begin').execute(), db`select pgseal.guard(${String(generation)}::pg_catalog.int8)`.execute()]).then(noError, isError);
    const statement = issue(db as unknown as Sql).then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
    // a failed statement (or guard) makes this a rollback
    const closed = db.unsafe('commit').execute().then(noError, isError);
    const [guardError, result, commitError] = await Promise.all([opened, statement, closed]);
    if (guardError !== undefined) throw revoked(keyring, guardError);
    if ('error' in result) throw result.error;
    if (commitError !== undefined) throw toPgsealError(commitError);
    return result.value;
  } finally {
    db.release();
  }
}

const noError = (): undefined => undefined;
const isError = (error: unknown): unknown => error;

/** The guard's own failure as a typed error; revoked keys mark the keyring stale. */
function revoked(keyring: Keyring, error: unknown): unknown {
  const surfaced = toPgsealError(error);
  if (surfaced instanceof PgsealError && surfaced.code === ErrorCodes.KEYS_REVOKED) keyring.invalidate();
  return surfaced;
}

type Work<T> = (tx: TransactionSql) => T | Promise<T>;

export async function withKeys<T>(sql: Sql, keyring: Keyring, work: Work<T>, options: WithKeysOptions = {}, handOff: HandOff = { settings: true, beforeWork: false }): Promise<T> {
  try {
    return await withKeysOnce(sql, keyring, work, options, handOff);
  } catch (error) {
    // nothing of the caller's work ran: begin again with the reloaded keys
    if (!(handOff.beforeWork && error instanceof PgsealError && error.code === ErrorCodes.KEYS_REVOKED)) throw error;
    await keyring.refresh();
    return withKeysOnce(sql, keyring, work, options, handOff);
  }
}

async function withKeysOnce<T>(sql: Sql, keyring: Keyring, work: Work<T>, options: WithKeysOptions, handOff: HandOff): Promise<T> {
  const generation = await keyring.generation();
  const payload = handOff.settings ? await keyring.payload(options.scopes) : undefined;
  try {
    return (await sql.begin(async (tx) => {
      const guard = tx`select pgseal.guard(${String(generation)}::pg_catalog.int8)`.execute();
      const handoff = payload ? tx`select pgseal.use_keys(${payload})`.execute() : undefined;
      // Settle them without a rejection escaping; their error is the root cause if they failed.
      const handedOff = Promise.all([guard, handoff]).then(
        () => undefined,
        (error: unknown) => error,
      );
      if (handOff.beforeWork) {
        const error = await handedOff;
        if (error !== undefined) throw new HandoffError(error);
      }
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
    const surfaced = error instanceof HandoffError ? revoked(keyring, error.original) : surfaceable(error);
    // A version or scope this keyring does not know: another process rotated. Reload
    // before the next transaction (this one cannot be replayed safely).
    if (surfaced instanceof PgsealError && (surfaced.code === ErrorCodes.UNKNOWN_KEY_VERSION || surfaced.code === ErrorCodes.NO_ACTIVE_KEY)) keyring.invalidate();
    throw surfaced;
  } finally {
    payload?.fill(0);
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
