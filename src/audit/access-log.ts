// The access log. One row per row and protected column accessed.
// - sync: the statement that reads or writes protected values also inserts its log rows (a
//   data-modifying CTE), so nothing is decrypted without its log row, a rolled-back
//   statement leaves none, and a failed log write fails the access.
// - async: entries are buffered in the process and written in multi-row INSERTs, flushed by
//   size and by time and on close. The buffer is bounded; what overflows is counted and
//   reported in the encryption audit log, never silently dropped. While the database takes
//   the writes, a crash loses at most the entries of the last flush interval (and those of a
//   flush under way); while it refuses them, entries wait in the buffer (stats, onError).
// Either way each statement that writes log rows appends a link to the log's hash chain and
// signs its rows with the log key (sql/97_log_chain.sql): `pgseal audit verify` checks them.

import type { Sql, TransactionSql } from 'postgres';
import { ErrorCodes, PgsealError, toPgsealError } from '../errors.js';
import { accessLogBuffer, accessLogDropped, accessLogFlushFailed } from '../metrics.js';
import { ident, slot, sql as q, type Fragment } from '../statement/sql.js';
import { defaultActor, recordEvent, type LogKeys } from './record.js';
import { currentAccessContext, type AccessContext } from './context.js';

export type AccessType = 'read' | 'write' | 'delete';

export interface AccessLogOptions {
  /** 'sync': in the same statement as the access; 'async': buffered, batched; 'off' (default): no access log */
  mode?: 'off' | 'sync' | 'async';
  /** the actor outside any withAccessContext scope (default: $PGSEAL_ACTOR, else the OS user) */
  actor?: string;
  /** async: flush when this many entries are buffered (default 5,000) */
  flushEntries?: number;
  /** async: flush at least this often (ms, default 1,000): the most a crash can lose */
  flushIntervalMs?: number;
  /** async: the most entries buffered (default 100,000); beyond, entries are counted as dropped and reported */
  maxBuffered?: number;
  /** async: called when a flush fails (its entries stay buffered, within the bound, for the next one) */
  onError?: (error: PgsealError) => void;
}

export interface AccessEntry {
  table_name: string;
  column_name: string;
  row_id: string | null;
  accessed_by: string;
  access_type: AccessType;
  client_ip: string | null;
  accessed_at: Date;
}

export interface AccessLogStats {
  buffered: number;
  written: number;
  /** entries lost to a full buffer (each loss is also recorded in the encryption audit log) */
  dropped: number;
  failedFlushes: number;
}

/** The async writer: one per pgseal instance. */
export class AccessLogBuffer {
  readonly #sql: Sql;
  readonly #keys: LogKeys;
  readonly #flushEntries: number;
  readonly #maxBuffered: number;
  readonly #onError: ((error: PgsealError) => void) | undefined;
  #entries: AccessEntry[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();
  /** a flush is queued and has not started: later requests join it */
  #queued = false;
  /** the last flush failed: only the timer retries (no tight loop while the database refuses) */
  #failing = false;
  #droppedUnreported = 0;
  readonly stats: AccessLogStats = { buffered: 0, written: 0, dropped: 0, failedFlushes: 0 };

  constructor(sql: Sql, keys: LogKeys, options: AccessLogOptions) {
    this.#sql = sql;
    this.#keys = keys;
    this.#flushEntries = options.flushEntries ?? 5000;
    this.#maxBuffered = options.maxBuffered ?? 100_000;
    this.#onError = options.onError;
    this.#timer = setInterval(() => void this.flush(), options.flushIntervalMs ?? 1000);
    this.#timer.unref();
    accessLogBuffer(this.stats, this.#maxBuffered, true);
  }

  add(entries: AccessEntry[]): void {
    this.#keep(entries, false);
    if (this.#entries.length >= this.#flushEntries && !this.#failing) void this.flush();
  }

  /** Buffers entries within the bound; what does not fit is counted as dropped. */
  #keep(entries: AccessEntry[], first: boolean): void {
    const room = Math.max(this.#maxBuffered - this.#entries.length, 0);
    if (entries.length > room) {
      this.stats.dropped += entries.length - room;
      accessLogDropped(entries.length - room);
      this.#droppedUnreported += entries.length - room;
      entries = entries.slice(0, room);
    }
    // appending is the hot path (every access): push, never copy the buffer
    if (first) this.#entries = entries.concat(this.#entries);
    else for (const e of entries) this.#entries.push(e);
    this.stats.buffered = this.#entries.length;
  }

  /** Writes everything buffered now; resolves when done (never rejects: see stats and onError). */
  flush(): Promise<void> {
    if (this.#queued) return this.#flushing;
    this.#queued = true;
    this.#flushing = this.#flushing.then(() => {
      this.#queued = false;
      return this.#write();
    });
    return this.#flushing;
  }

  async #write(): Promise<void> {
    const batch = this.#entries;
    const dropped = this.#droppedUnreported;
    if (batch.length === 0 && dropped === 0) return;
    this.#entries = [];
    this.#droppedUnreported = 0;
    this.stats.buffered = 0;
    let written = 0;
    let keyset: Buffer | undefined;
    try {
      if (batch.length > 0) keyset = await this.#keys.logKeyset();
      for (; written < batch.length; written += 5000) {
        const chunk = batch.slice(written, written + 5000);
        await insertAccessEntries(this.#sql, keyset!, chunk);
        this.stats.written += chunk.length;
      }
      if (dropped > 0) {
        try {
          await recordEvent(this.#sql, this.#keys, { operation: 'access_log.overflow', success: false, details: { dropped, max_buffered: this.#maxBuffered } });
        } catch (error) {
          this.#droppedUnreported += dropped;
          throw error;
        }
      }
      this.#failing = false;
    } catch (error) {
      // what was not written goes back to the front of the buffer (within the bound); the
      // timer tries again; the failure is counted and reported
      this.#keep(batch.slice(Math.min(written, batch.length)), true);
      this.#failing = true;
      // a log key rotated elsewhere: the next flush reloads the keys
      if (toPgsealError(error).code === ErrorCodes.LOG_KEY_MISSING) this.#keys.invalidate?.();
      this.stats.failedFlushes += 1;
      accessLogFlushFailed();
      try {
        this.#onError?.(toPgsealError(error));
      } catch {
        // the caller's handler failed: the entries are kept all the same
      }
    } finally {
      keyset?.fill(0);
    }
  }

  /**
   * Flushes and stops the timer. Rejects (PGSEAL_ACCESS_LOG_UNFLUSHED) when entries could
   * not be written or were dropped unreported: the caller decides what a shutdown may lose.
   */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    accessLogBuffer(this.stats, this.#maxBuffered, false);
    await this.flush();
    if (this.#entries.length > 0 || this.#droppedUnreported > 0) {
      throw new PgsealError(ErrorCodes.ACCESS_LOG_UNFLUSHED, `${this.#entries.length} access log entries could not be written`, {
        hint: 'check that the database is reachable and that this role may INSERT into pgseal.encrypted_data_access_log (see README, Privileges)',
      });
    }
  }
}

/**
 * Writes log entries in one statement: a link of the access log's chain, then the rows
 * signed under it. Arrays are unnested server-side, so the text stays one prepared
 * statement. The repetitive fields (table, column, actor, type, address) travel as indexes
 * into one array of their distinct values, and times as milliseconds after the first: the
 * server parses a few values instead of thousands of strings.
 */
export async function insertAccessEntries(sql: Sql | TransactionSql, keyset: Buffer, entries: readonly AccessEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const values: string[] = [];
  const index = new Map<string, number>();
  const ref = (v: string | null): number | null => {
    if (v === null) return null;
    let i = index.get(v);
    if (i === undefined) {
      i = values.push(v);
      index.set(v, i);
    }
    return i;
  };
  const n = entries.length;
  const [ms, table, column, row, actor, type, ip] = [new Array<number>(n), new Array<number | null>(n), new Array<number | null>(n), new Array<string | null>(n), new Array<number | null>(n), new Array<number | null>(n), new Array<number | null>(n)];
  const base = entries[0]!.accessed_at.getTime();
  let first = base;
  let last = base;
  entries.forEach((e, i) => {
    const t = e.accessed_at.getTime();
    if (t < first) first = t;
    if (t > last) last = t;
    ms[i] = t - base;
    table[i] = ref(e.table_name);
    column[i] = ref(e.column_name);
    row[i] = e.row_id;
    actor[i] = ref(e.accessed_by);
    type[i] = ref(e.access_type);
    ip[i] = ref(e.client_ip);
  });
  await sql`
    with k as (select ${keyset}::bytea as ks),
    d as (select ${values}::text[] as v, ${new Date(base).toISOString()}::timestamptz as base),
    l as (select pgseal.append_log_link('access', ${n}::integer, ${new Date(first).toISOString()}::timestamptz,
                                        ${new Date(last).toISOString()}::timestamptz, k.ks) as id,
                 pgseal._log_key(k.ks, pgseal._log_key_version(k.ks)) as key from k),
    r as (select d.base + x.ms * interval '1 millisecond' as accessed_at, d.v[x.t] as table_name, d.v[x.c]::name as column_name, x.row_id,
                 d.v[x.a] as accessed_by, d.v[x.ty] as access_type, d.v[x.ip]::inet as client_ip, x.n
            from d, rows from (pg_catalog.unnest(${ms}::bigint[]), pg_catalog.unnest(${table}::int[]), pg_catalog.unnest(${column}::int[]),
                               pg_catalog.unnest(${row}::text[]), pg_catalog.unnest(${actor}::int[]), pg_catalog.unnest(${type}::int[]),
                               pg_catalog.unnest(${ip}::int[]))
                 with ordinality as x(ms, t, c, row_id, a, ty, ip, n))
    insert into pgseal.encrypted_data_access_log (link_id, link_pos, accessed_at, table_name, column_name, row_id, accessed_by, access_type, client_ip, mac)
    select l.id, (r.n - 1)::integer, r.accessed_at, r.table_name, r.column_name, r.row_id, r.accessed_by, r.access_type, r.client_ip,
           pgseal.access_log_row_mac(l.key, l.id, (r.n - 1)::integer, r.accessed_at, r.table_name, r.column_name, r.row_id, r.accessed_by, r.access_type, r.client_ip)
      from l, r`;
}

/**
 * The entries of a rewritten statement: one per row and protected column, with the row's
 * primary key taken from the hidden outputs the rewriter added (`touched.rows`), never from a
 * column the caller names. Columns no hidden output covers (read in a subquery, a DISTINCT,
 * a set operation, a table without a single-column primary key) are logged once per
 * result row (or per changed row) without a row id.
 */
export function statementEntries(
  result: { readonly length: number; count?: number | null; columns?: ReadonlyArray<{ name: string }> | null } & Iterable<Record<string, unknown>>,
  touched: { columns: readonly string[]; access?: AccessType | undefined; rows?: ReadonlyArray<{ table: string; output: string; columns: readonly string[]; aggregated: boolean }> | undefined },
  who: AccessContext,
): AccessEntry[] {
  if (!touched.access || touched.columns.length === 0) return [];
  const rows = [...result];
  const at = new Date();
  const out: AccessEntry[] = [];
  const entry = (table: string, column: string, id: unknown): AccessEntry => ({
    table_name: table, column_name: column, row_id: id === null || id === undefined ? null : String(id), accessed_by: who.actor, access_type: touched.access!,
    client_ip: who.clientIp ?? null, accessed_at: at,
  });
  const attributed = new Set<string>();
  for (const r of touched.rows ?? []) {
    for (const row of rows) {
      const value = row[r.output];
      for (const id of r.aggregated ? (Array.isArray(value) ? value : []) : [value]) {
        // an outer join's missing side read nothing
        if (id === null || id === undefined) continue;
        for (const column of r.columns) out.push(entry(r.table, column, id));
      }
    }
    for (const column of r.columns) attributed.add(`${r.table}.${column}`);
  }
  const n = rows.length > 0 ? rows.length : Number(result.count ?? 0);
  for (const c of touched.columns) {
    if (attributed.has(c)) continue;
    const dot = c.lastIndexOf('.');
    for (let i = 0; i < n; i++) out.push(entry(c.slice(0, dot), c.slice(dot + 1), null));
  }
  return out;
}

/** The async log entries of rows a statement returned. */
export function accessEntries(rows: readonly Record<string, unknown>[], accessed: Accessed, who: AccessContext): AccessEntry[] {
  const at = new Date();
  return rows.flatMap((r) => accessed.columns.map((column) => ({
    table_name: accessed.table, column_name: column, row_id: r[accessed.primaryKey] === null || r[accessed.primaryKey] === undefined ? null : String(r[accessed.primaryKey]),
    accessed_by: who.actor, access_type: accessed.type, client_ip: who.clientIp ?? null, accessed_at: at,
  })));
}

export interface Accessed {
  /** 'schema.table' */
  table: string;
  /** the primary-key column, as named in the statement's output */
  primaryKey: string;
  /** protected columns accessed in each row */
  columns: readonly string[];
  type: AccessType;
}

/** Who accesses: the async scope's context, else the instance's configured actor. */
export function accessor(options: AccessLogOptions): AccessContext {
  return currentAccessContext() ?? { actor: options.actor ?? defaultActor() };
}

/** The named values of withAccessLog's slots for one access (the log keyset, a secret, is bound apart). */
export function accessLogValues(accessed: Accessed, who: AccessContext): Record<string, unknown> {
  return { log_table: accessed.table, log_columns: accessed.columns, log_actor: who.actor, log_type: accessed.type, log_ip: who.clientIp ?? null };
}

/**
 * Wraps a statement returning the accessed rows (a SELECT, or a write with RETURNING of
 * the primary key) so that it logs them in the same statement, signed and linked into the
 * access log's chain. Who and what are slots (accessLogValues), the log keyset is the
 * secret slot `log_keyset`: the wrapped text is the same for every request.
 */
export function withAccessLog(statement: Fragment, primaryKey: string): Fragment {
  const [table, actor, type, ip] = [q`${slot('log_table')}::pg_catalog.text`, q`${slot('log_actor')}::pg_catalog.text`, q`${slot('log_type')}::pg_catalog.text`, q`${slot('log_ip')}::pg_catalog.inet`];
  const keyset = q`${slot('log_keyset', { secret: true })}::pg_catalog.bytea`;
  return q`WITH pgseal_accessed AS (${statement}),
pgseal_log_rows AS (
  SELECT (pg_catalog.row_number() OVER () - 1)::pg_catalog.int4 AS pos, a.${ident(primaryKey)}::pg_catalog.text AS row_id, c.name::pg_catalog.name AS column_name
    FROM pgseal_accessed AS a CROSS JOIN pg_catalog.unnest(${slot('log_columns')}::pg_catalog.text[]) AS c(name)),
pgseal_link AS (
  SELECT pgseal.append_log_link('access', n.n, n.at, n.at, ${keyset}) AS id, n.at,
         pgseal._log_key(${keyset}, pgseal._log_key_version(${keyset})) AS key
    FROM (SELECT pg_catalog.count(*)::pg_catalog.int4 AS n, pg_catalog.clock_timestamp() AS at FROM pgseal_log_rows) AS n WHERE n.n > 0),
pgseal_logged AS (
  INSERT INTO pgseal.encrypted_data_access_log (link_id, link_pos, accessed_at, table_name, column_name, row_id, accessed_by, access_type, client_ip, mac)
  SELECT l.id, r.pos, l.at, ${table}, r.column_name, r.row_id, ${actor}, ${type}, ${ip},
         pgseal.access_log_row_mac(l.key, l.id, r.pos, l.at, ${table}, r.column_name, r.row_id, ${actor}, ${type}, ${ip})
    FROM pgseal_link AS l CROSS JOIN pgseal_log_rows AS r)
SELECT * FROM pgseal_accessed ORDER BY ${ident(primaryKey)}`;
}
