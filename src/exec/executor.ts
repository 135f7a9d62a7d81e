// The keyed executor: the one place that decides, for every statement that needs keys,
// how the keys travel, what happens when they are stale, how the access is logged and
// whether a value that does not open is audited. The typed helpers, rewritten SQL
// (seal.query, pgseal query), seal.begin and the re-encryption engine all run through it.
//
// - Keys travel as bound arguments of pgseal's schema-qualified functions, never in the
//   transaction's settings, for every statement pgseal builds or rewrites: a function,
//   operator, cast or trigger of the caller's role that runs in the same statement sees only
//   its own operands. Only seal.begin (the caller's own SQL and the decrypted views) hands
//   keys into the transaction (pgseal.use_keys). Every key buffer is a secret of the
//   statement that carries it, zeroed when the statement settles.
// - Every statement or transaction that carries a key (or the log key) runs behind
//   pgseal.guard() (transaction.ts): leak-prone settings pinned, revoked keys refused.
// - Stale keys (a version, scope, compromise or log key this process has not loaded yet):
//   a unit pgseal built itself failed as a whole and is run once more after a reload; the
//   caller's own transaction (seal.begin) cannot be replayed, so the keyring reloads before
//   the next one (transaction.ts), unless the key was compromised: whether the process
//   may go on writing is then the caller's decision.
// - Access log: 'sync' in the statement (or transaction) of the access itself, 'async'
//   buffered after it committed, 'off'.
// - A value that does not open (tampered, wrong key, retired, shredded) is recorded in the
//   encryption audit log as data.decrypt_failed, whichever door it came through.

import type { Sql, TransactionSql } from 'postgres';
import {
  AccessLogBuffer, accessEntries, accessLogValues, accessor, insertAccessEntries, withAccessLog,
  type AccessEntry, type AccessLogOptions, type AccessLogStats, type Accessed,
} from '../audit/access-log.js';
import { recordFailure, withLogKeyset } from '../audit/record.js';
import type { KeyRoute, SealKey } from '../columns/expressions.js';
import { ErrorCodes, PgsealError, toPgsealError } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import { decryptFailed, ranStatement } from '../metrics.js';
import { operand } from '../statement/expr.js';
import { compile, secret, slot, type Compiled, type Fragment } from '../statement/sql.js';
import { guardedStatement, withKeys, type WithKeysOptions } from './transaction.js';

/** Values that do not open: the failure is audited. */
const UNREADABLE = new Set<string>([ErrorCodes.AUTHENTICATION_FAILED, ErrorCodes.MALFORMED_ENVELOPE, ErrorCodes.KEY_RETIRED, ErrorCodes.KEY_DESTROYED]);

/**
 * "Your cached keys are older than the database's": a rotation elsewhere (PS002, PS005), an
 * emergency rotation (PS014), a log key rotated and used by another process (PS015).
 */
const STALE_KEYS = new Set<string>([ErrorCodes.UNKNOWN_KEY_VERSION, ErrorCodes.NO_ACTIVE_KEY, ErrorCodes.KEY_COMPROMISED, ErrorCodes.LOG_KEY_MISSING, ErrorCodes.KEYS_REVOKED]);

export type WriteKey = SealKey<Fragment>;

/** How a unit's statement gets its keys, for its builder. */
export interface Route {
  readonly via: 'argument' | 'none';
  /** for decrypting expressions (columns/expressions.ts); a unit that needs no key has none */
  readonly keys: KeyRoute<Fragment>;
  /** the key a write to `scope` seals with (PGSEAL_NO_ACTIVE_KEY when the scope has none) */
  writeKey(scope: string): Promise<WriteKey>;
  /** a buffer the builder made (a copy of a plaintext): zeroed when the unit settles, even if the build fails */
  own(buffer: Buffer): Buffer;
}

/** One statement pgseal builds (the typed helpers): replayable, since it fails as a whole. */
export interface Unit {
  /** key scopes it may open or seal; undefined: every loaded scope; 'none': it needs no key (a delete) */
  scopes: readonly string[] | undefined | 'none';
  /** the statement for a route; its named slots get `values` (names starting pgseal_ or log_ are the executor's) */
  build(route: Route): Fragment | Promise<Fragment>;
  values?: Readonly<Record<string, unknown>> | undefined;
  /**
   * A statement whose text depends on the route only, compiled once: the caller's map (it
   * lives as long as what the statement is for) and a key for the statement. Its values
   * must all be slots.
   */
  cache?: { map: Map<string, Compiled>; key: string } | undefined;
  /** what it reads, writes or deletes, for the access log (its rows return the primary key) */
  access?: Accessed | undefined;
  /** the table, for the audit of a value that does not open */
  table?: { schema: string; table: string } | undefined;
  /**
   * Run behind pgseal.guard() though it carries no key: a write sealed client-side, so that
   * keys revoked (compromised) since this process loaded them are refused (PS020) and the
   * unit is built again with the keys reloaded.
   */
  guard?: boolean | undefined;
}

/** A statement written by the caller and rewritten by pgseal (seal.query): keys as its first arguments. */
export interface Rewritten {
  text: string;
  params: readonly unknown[];
  /** the key arguments the text takes before the caller's parameters (rewrite/index.ts RewriteResult.keys) */
  keys: ReadonlyArray<'keyset' | 'payload'>;
  /**
   * The caller's text itself calls pgseal's functions that read the transaction's keys
   * (pgseal.encrypt_text(...) written by hand): those keys are handed into the transaction
   * too, with what that exposes (docs/threat-model.md, as seal.begin).
   */
  settings?: boolean | undefined;
  scopes?: readonly string[] | undefined;
  /** the log entries of its result (audit/access-log.ts statementEntries) */
  entries?: ((result: Record<string, unknown>[] & { count?: number | null; columns?: ReadonlyArray<{ name: string }> }) => AccessEntry[]) | undefined;
  table?: { schema: string; table: string } | undefined;
}

export interface ExecutorOptions {
  /** the access log; its `actor` is also who a failed decryption is recorded against */
  accessLog?: AccessLogOptions | undefined;
}

type Table = { schema: string; table: string };

type Rows = Record<string, unknown>[] & { count: number; columns?: ReadonlyArray<{ name: string }> };

const KEYSET = 'pgseal_keyset';

export class KeyedExecutor {
  readonly accessLog: AccessLogOptions;
  readonly #buffer: AccessLogBuffer | undefined;

  constructor(
    readonly sql: Sql,
    readonly keyring: Keyring,
    options: ExecutorOptions = {},
  ) {
    this.accessLog = options.accessLog ?? {};
    this.#buffer = this.accessLog.mode === 'async' ? new AccessLogBuffer(sql, keyring, this.accessLog) : undefined;
  }

  /** Whether accesses are logged (writes then return their primary key for the log). */
  get logging(): boolean {
    return this.accessLog.mode === 'sync' || this.accessLog.mode === 'async';
  }

  /** Runs one statement pgseal built, retried once after a reload when the keys were stale. */
  async run(unit: Unit): Promise<Rows> {
    // the hot path of every helper call: written out, no closures
    const started = performance.now(); // metrics: database mode, timed per statement
    try {
      try {
        return ranStatement(unit, await this.#runOnce(unit), started);
      } catch (error) {
        if (!(error instanceof PgsealError) || !STALE_KEYS.has(error.code)) throw error;
        await this.keyring.refresh();
        return ranStatement(unit, await this.#runOnce(unit), started);
      }
    } catch (error) {
      await this.#auditFailure(unit.table, error);
      throw error;
    }
  }

  /** Runs a rewritten statement with its keys as arguments, in a guarded transaction, logging what it touched. */
  async rewritten(r: Rewritten): Promise<Rows> {
    return this.#audited(r.table, () => this.#replayable(async () => {
      const mode = r.entries ? (this.accessLog.mode ?? 'off') : 'off';
      let buffered: AccessEntry[] = [];
      // the key arguments made before the transaction opens, zeroed when it is over
      const scopes = r.scopes ?? (await this.keyring.scopes());
      const keys: Buffer[] = [];
      for (const k of r.keys) keys.push(k === 'keyset' ? await this.keyring.keyset(scopes) : await this.keyring.payload(scopes));
      let rows: Rows;
      try {
        rows = await withKeys(this.sql, this.keyring, async (tx) => {
          const result = (await tx.unsafe(r.text, [...keys, ...r.params] as never[])) as unknown as Rows;
          if (mode === 'off') return result;
          const entries = r.entries!(result);
          if (mode === 'async') buffered = entries;
          else await this.#logInTransaction(tx, entries);
          return result;
        }, { scopes: r.scopes }, { settings: r.settings ?? false, beforeWork: false });
      } finally {
        for (const b of keys) b.fill(0);
      }
      // async: only what committed is logged
      if (buffered.length > 0) this.#buffer?.add(buffered);
      return rows;
    }));
  }

  /**
   * The caller's own work in a transaction holding the keys (seal.begin). It cannot be
   * replayed: when it met stale keys the keyring reloads before the next transaction.
   */
  async transaction<T>(work: (tx: TransactionSql) => T | Promise<T>, options: WithKeysOptions & { table?: Table | undefined; settings?: boolean } = {}): Promise<T> {
    // withKeys marks the keyring stale when the database named keys this process lacks
    // (PS002, PS005); a compromised key (PS014) is the caller's to act on (keyring.refresh()).
    // settings: false for pgseal's own work that binds its keys as arguments (re-encryption).
    return this.#audited(options.table, () => withKeys(this.sql, this.keyring, work, { scopes: options.scopes }, { settings: options.settings ?? true, beforeWork: true }));
  }

  /** Async access log: counts of entries buffered, written, dropped (undefined unless mode is 'async'). */
  stats(): AccessLogStats | undefined {
    return this.#buffer?.stats;
  }

  async flush(): Promise<void> {
    await this.#buffer?.flush();
  }

  /** Writes the buffered access log; rejects when entries could not be written. */
  async close(): Promise<void> {
    await this.#buffer?.close();
  }

  async #replayable<T>(once: () => Promise<T>): Promise<T> {
    try {
      return await once();
    } catch (error) {
      if (!(error instanceof PgsealError) || !STALE_KEYS.has(error.code)) throw error;
      await this.keyring.refresh();
      return await once();
    }
  }

  async #audited<T>(table: Table | undefined, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      await this.#auditFailure(table, error);
      throw error;
    }
  }

  /**
   * Logs accesses made outside a unit (the ORM adapters' queries, which pgseal does not run):
   * 'async' buffers them as any access; 'sync' writes them at once in their own signed
   * statement, after the access (not atomic with it); 'off' does nothing.
   */
  async logAccess(accessed: Accessed, rows: readonly Record<string, unknown>[]): Promise<void> {
    const mode = this.accessLog.mode ?? 'off';
    if (mode === 'off' || rows.length === 0) return;
    const entries = accessEntries(rows, accessed, accessor(this.accessLog));
    if (mode === 'async') return this.#buffer?.add(entries);
    const generation = await this.keyring.generation();
    await withLogKeyset(this.keyring, (keyset) => this.sql.begin(async (tx) => {
      // behind the guard, as every statement carrying a key
      await tx`select pgseal.guard(${String(generation)}::pg_catalog.int8)`;
      await insertAccessEntries(tx, keyset, entries);
    }).catch((error: unknown) => {
      throw toPgsealError(error);
    }));
  }

  /** A value that does not open, met outside a unit (client-side crypto): audited as data.decrypt_failed. */
  auditFailure(table: Table | undefined, error: unknown): Promise<void> {
    return this.#auditFailure(table, error);
  }

  /** A value that does not open: tampering, a wrong key, or shredded data; auditors want to know. */
  async #auditFailure(table: Table | undefined, error: unknown): Promise<void> {
    if (error instanceof PgsealError && UNREADABLE.has(error.code)) {
      decryptFailed(error);
      await recordFailure(this.sql, this.keyring, { operation: 'data.decrypt_failed', actor: accessor(this.accessLog).actor, table }, error);
    }
  }

  async #logInTransaction(tx: TransactionSql, entries: AccessEntry[]): Promise<void> {
    await withLogKeyset(this.keyring, (keyset) => insertAccessEntries(tx, keyset, entries));
  }

  async #runOnce(unit: Unit): Promise<Rows> {
    const named: Record<string, unknown> = {};
    for (const name in unit.values) {
      if (name.startsWith('pgseal_') || name.startsWith('log_')) throw new TypeError(`slot ${name} is the executor's`);
      named[name] = unit.values[name];
    }
    const owned: Buffer[] = [];
    const logged = unit.access !== undefined && this.accessLog.mode === 'sync';
    try {
      const scopes = unit.scopes;
      const keyed = scopes !== 'none';
      if (scopes !== 'none') owned.push((named[KEYSET] = await this.keyring.keyset(scopes ?? (await this.keyring.scopes()))));
      if (logged) {
        Object.assign(named, accessLogValues(unit.access!, accessor(this.accessLog)));
        owned.push((named.log_keyset = await this.keyring.logKeyset()));
      }
      // built before the guarded transaction opens: its statement must be sent at once, in order
      const statement = (await this.#compiled(unit, keyed, logged, owned)).bind(named);
      const rows = (keyed || logged || unit.guard
        ? await guardedStatement(this.sql, this.keyring, (db) => statement.run(db))
        : await statement.run(this.sql)) as Rows;
      // async: only what committed is logged
      if (unit.access && this.accessLog.mode === 'async' && this.#buffer) this.#buffer.add(accessEntries(rows, unit.access, accessor(this.accessLog)));
      return rows;
    } catch (error) {
      throw toPgsealError(error);
    } finally {
      for (const b of owned) b.fill(0);
    }
  }

  async #compiled(unit: Unit, keyed: boolean, logged: boolean, owned: Buffer[]): Promise<Compiled> {
    const key = unit.cache && `${unit.cache.key}|${keyed}|${logged}`;
    let compiled = key === undefined ? undefined : unit.cache!.map.get(key);
    if (!compiled) {
      // only a statement built now needs its route
      const route = keyed ? this.#argumentRoute(owned) : noKeysRoute(owned);
      const built = await unit.build(route);
      compiled = compile(logged ? withAccessLog(built, unit.access!.primaryKey) : built);
      if (key !== undefined) {
        // a value bound at build time would be sent again to the next caller (and a secret, zeroed)
        if (compiled.fixedValues > 0) throw new TypeError(`${unit.cache!.key}: a statement compiled once takes its values through slots only`);
        unit.cache!.map.set(key, compiled);
      }
    }
    return compiled;
  }

  /** Keys as arguments: the keyset slot for decrypting, each written scope's key material once, a secret of the statement. */
  #argumentRoute(owned: Buffer[]): Route {
    const materials = new Map<string, WriteKey>();
    return {
      via: 'argument',
      keys: ARGUMENT_KEYS,
      own: ownInto(owned),
      writeKey: async (scope) => {
        let key = materials.get(scope);
        if (!key) {
          const material = await this.keyring.keyMaterial(scope);
          if (material === undefined) {
            throw new PgsealError(ErrorCodes.NO_ACTIVE_KEY, `no active key for scope ${scope}`, { hint: `create it with \`pgseal keys init --scope ${scope}\`` });
          }
          owned.push(material);
          materials.set(scope, (key = { via: 'argument', material: operand(secret(material)) }));
        }
        return key;
      },
    };
  }
}

const ARGUMENT_KEYS: KeyRoute<Fragment> = { via: 'argument', keyset: operand(slot(KEYSET, { secret: true })) };

function noKeysRoute(owned: Buffer[]): Route {
  return {
    via: 'none',
    get keys(): KeyRoute<Fragment> {
      throw new TypeError('a unit with scopes \'none\' cannot decrypt');
    },
    own: ownInto(owned),
    writeKey: async () => {
      throw new TypeError('a unit with scopes \'none\' cannot encrypt');
    },
  };
}

const ownInto = (owned: Buffer[]) => (buffer: Buffer): Buffer => {
  owned.push(buffer);
  return buffer;
};
