// The re-encryption engine: moves every value still on an older data-key version onto the
// active one, inside the database, in checkpointed primary-key batches (batch-sql.ts),
// with N workers over disjoint key ranges, a throttle, and an AbortSignal. A run killed
// at any instant resumes from its last committed batch; a re-run with nothing stale is a
// no-op. The CLI (src/cli/reencrypt.ts) is a thin wrapper around reencrypt().

import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql, TransactionSql } from 'postgres';
import { defaultActor, recordEvent, recordFailure, type Attribution } from '../audit/record.js';
import { ErrorCodes, PgsealError, toPgsealError, withPgsealErrors as guarded } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import { envelopeCensus, type Census } from '../keys/lifecycle.js';
import { reencryptBatch, reencryptLeft } from '../metrics.js';
import { batchStatement, boundsStatement, nextBatchStatement, countStatement, staleIndexStatement, type BatchValues } from './batch-sql.js';
import type { Compiled } from '../statement/sql.js';
import { KeyedExecutor } from '../exec/executor.js';
import { loadKeyPlan, resolveTargets, type Filter, type KeyPlan, type RunKind, type Target } from './targets.js';

export interface ReencryptOptions extends Filter, Attribution {
  /** rows per batch (one statement, one short transaction); default 5000 */
  batchSize?: number | undefined;
  /** parallel connections, each on its own primary-key range; default 1 */
  workers?: number | undefined;
  /** throttle over all workers (rows re-encrypted per second) */
  maxRowsPerSecond?: number | undefined;
  /**
   * Recompute blind indexes under each scope's active index key (after `keys rotate
   * --purpose index`), instead of moving values onto the active data key.
   */
  blindIndex?: boolean | undefined;
  /**
   * An index run starts only this long after the index key rotated (default 300: the
   * keyring's TTL), so that every running process looks values up with the new key too.
   */
  indexGraceSeconds?: number | undefined;
  /** an emergency rotation's run (recorded as such) */
  emergency?: boolean | undefined;
  /** stops after the batches in flight; the run resumes on the next call */
  signal?: AbortSignal | undefined;
  onProgress?: ((progress: ReencryptProgress) => void) | undefined;
  /**
   * Passes over each range at most. A row written meanwhile by a process still using a
   * stale key, behind the checkpoint, is caught by the next pass; default 3.
   */
  maxPasses?: number | undefined;
}

export interface ColumnProgress {
  /** 'schema.table.column' */
  column: string;
  rowsTotal: number;
  rowsDone: number;
  batches: number;
  pass: number;
  done: boolean;
}

export interface ReencryptProgress {
  runId: number;
  /** the column of the batch that just committed */
  column: string;
  rowsDone: number;
  rowsTotal: number;
  /** rows per second in this process */
  rate: number;
  /** seconds left at this rate; null before the first batch */
  etaSeconds: number | null;
  columns: ColumnProgress[];
}

export interface ReencryptResult {
  runId: number;
  state: 'done' | 'stopped';
  /** a previous run was picked up where it stopped */
  resumed: boolean;
  /** rows re-encrypted by this call */
  rows: number;
  seconds: number;
  columns: ColumnProgress[];
  /**
   * Values still sealed under the older versions in columns pgseal does not manage (sealed by
   * hand), which a run cannot move: after a finished data run over every table. Absent when
   * not looked for (a table filter, an index run, a role without the admin set).
   */
  notMoved?: Census;
}

interface Part {
  target: Target;
  part: number;
  lower: string | null;
  upper: string | null;
  last: string | null;
  done: boolean;
  pass: number;
}

interface RunRow {
  id: number;
  table_filter: string | null;
  column_filter: string | null;
  scope_filter: string | null;
  target_versions: number[];
  parts: number;
}

/** One run at a time per database: a session advisory lock on this pair of keys. */
const LOCK = ['pgseal', 'reencrypt'] as const;

function checkOptions(o: ReencryptOptions): { batchSize: number; workers: number; maxPasses: number } {
  const batchSize = o.batchSize ?? 5000;
  const workers = o.workers ?? 1;
  const maxPasses = o.maxPasses ?? 3;
  const bad = (what: string, hint: string) => new PgsealError(ErrorCodes.INVALID_ARGUMENT, what, { hint });
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1_000_000) throw bad('the batch size must be a whole number from 1 to 1,000,000', 'batches of a few thousand rows keep row locks short');
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw bad('workers must be a whole number from 1 to 64', 'one worker per spare CPU core of the database server');
  if (o.maxRowsPerSecond !== undefined && !(o.maxRowsPerSecond > 0)) throw bad('the throttle must be a positive number of rows per second', 'omit --max-rows-per-second for no limit');
  if (!Number.isInteger(maxPasses) || maxPasses < 1) throw bad('maxPasses must be a whole number of at least 1', 'the default is 3');
  return { batchSize, workers, maxPasses };
}

/** Every version a target moves off or onto must be in the keyring (unwrapped by this master key). */
export async function checkKeysLoaded(keyring: Keyring, keys: KeyPlan, targets: readonly Target[]): Promise<void> {
  const loaded = new Set((await keyring.versions()).map((k) => k.version));
  for (const t of targets) {
    for (const version of [...t.stale, ...t.scopes.map((s) => keys.active.get(s)!)]) {
      if (!loaded.has(version)) {
        throw new PgsealError(ErrorCodes.UNKNOWN_KEY_VERSION, `${t.name}: data key version ${version} could not be loaded`, {
          hint: 'see `pgseal keys list`; a retired or destroyed version cannot be read',
        });
      }
    }
  }
}

export async function reencrypt(sql: Sql, keyring: Keyring, options: ReencryptOptions = {}): Promise<ReencryptResult> {
  const { batchSize, workers, maxPasses } = checkOptions(options);
  const actor = options.actor ?? defaultActor();
  const lock = await guarded(() => sql.reserve());
  try {
    const [got] = await guarded(() => lock<{ ok: boolean }[]>`select pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext(${LOCK[0]}), pg_catalog.hashtext(${LOCK[1]})) as ok`);
    if (!got!.ok) {
      throw new PgsealError(ErrorCodes.REENCRYPT_RUNNING, 'another re-encryption is running on this database', {
        hint: 'wait for it (`pgseal reencrypt status`), or stop it; a stopped run resumes where it ended',
      });
    }
    await keyring.refresh();
    const kind: RunKind = options.blindIndex ? 'index' : 'data';
    const keys = await loadKeyPlan(sql, options.scope, kind);
    const targets = (await resolveTargets(sql, options, keys, kind)).filter((t) => t.scopes.length > 0);
    // every key was unwrapped (refresh) before anything is written: a wrong master key changes nothing
    await checkKeysLoaded(keyring, keys, targets);
    if (kind === 'index') await checkIndexGrace(sql, keys, options.indexGraceSeconds ?? 300);
    const targetVersions = [...keys.active.values()].sort((a, b) => a - b);
    const { run, resumed, parts } = await openRun(sql, kind, options, targets, targetVersions, workers, batchSize, actor);
    await recordEvent(sql, keyring, {
      operation: resumed ? 'reencrypt.resume' : 'reencrypt.start', success: true, actor, reason: options.reason, scope: options.scope,
      details: { run: run.id, kind, columns: targets.map((t) => t.name), stale_versions: [...new Set(targets.flatMap((t) => t.stale))], target_versions: targetVersions, batch_size: batchSize, workers, emergency: options.emergency ?? false },
    });
    const engine = new Engine(sql, keyring, Number(run.id), batchSize, workers, options, parts);
    try {
      await engine.run(maxPasses);
    } catch (error) {
      const e = error instanceof PgsealError ? error : toPgsealError(error);
      await guarded(() => sql`update pgseal.reencrypt_runs set state = 'failed', error = ${e.code}, updated_at = clock_timestamp() where id = ${run.id}`).catch(() => undefined);
      await recordFailure(sql, keyring, { operation: 'reencrypt.fail', actor, reason: options.reason, details: { run: run.id, rows: engine.rowsThisCall, columns: engine.columns() } }, e);
      throw e;
    }
    const state = engine.stopped ? 'stopped' : 'done';
    await guarded(() => sql`
      update pgseal.reencrypt_runs set state = ${state}, updated_at = clock_timestamp(),
             finished_at = ${state === 'done' ? sql`clock_timestamp()` : sql`null`}
       where id = ${run.id}`);
    const seconds = engine.seconds();
    const notMoved = state === 'done' && kind === 'data' && !options.table ? await unmanagedEnvelopes(sql, keys) : undefined;
    await recordEvent(sql, keyring, {
      operation: state === 'done' ? 'reencrypt.finish' : 'reencrypt.stop', success: true, actor, reason: options.reason, scope: options.scope,
      details: {
        run: run.id, rows: engine.rowsThisCall, seconds: Math.round(seconds * 1000) / 1000, columns: engine.columns(),
        ...(notMoved && (notMoved.counts.length > 0 || notMoved.unreadable.length > 0) ? { not_moved: notMoved.counts, unreadable: notMoved.unreadable } : {}),
      },
    });
    return { runId: Number(run.id), state, resumed, rows: engine.rowsThisCall, seconds, columns: engine.columns(), ...(notMoved ? { notMoved } : {}) };
  } finally {
    await lock`select pg_catalog.pg_advisory_unlock(pg_catalog.hashtext(${LOCK[0]}), pg_catalog.hashtext(${LOCK[1]}))`.catch(() => undefined);
    lock.release();
  }
}

/** The older versions' values outside protected columns (undefined when this role may not count them). */
async function unmanagedEnvelopes(sql: Sql, keys: KeyPlan): Promise<Census | undefined> {
  const versions = [...keys.stale.values()].flat();
  if (versions.length === 0) return { counts: [], unreadable: [] };
  try {
    return await envelopeCensus(sql, { versions, registered: false });
  } catch (error) {
    if (error instanceof PgsealError && error.sqlstate === '42501') return undefined;
    throw error;
  }
}

/** An index run waits out the keyring TTL after the index rotation (see ReencryptOptions.indexGraceSeconds). */
async function checkIndexGrace(sql: Sql, keys: KeyPlan, graceSeconds: number): Promise<void> {
  const versions = [...keys.active.values()];
  const [row] = await guarded(() => sql<{ ready_at: Date | null; wait: number | null }[]>`
    select max(created_at) + make_interval(secs => ${graceSeconds}) as ready_at,
           extract(epoch from max(created_at) + make_interval(secs => ${graceSeconds}) - clock_timestamp())::float8 as wait
      from pgseal.keys where version = any(${versions}::int[])`);
  if (row?.wait && row.wait > 0) {
    throw new PgsealError(ErrorCodes.REINDEX_TOO_EARLY, `the blind-index key was rotated less than ${graceSeconds} s ago: running processes may still look values up with the previous key only`, {
      hint: `run again after ${row.ready_at!.toISOString()}, or pass --index-grace-seconds 0 once every process has reloaded its keys (restart, or keyring.refresh())`,
    });
  }
}

/** Resumes the unfinished run when it asked the same thing of the same active keys; else starts one. */
async function openRun(
  sql: Sql, kind: RunKind, o: ReencryptOptions, targets: Target[], targetVersions: number[], workers: number, batchSize: number, actor: string,
): Promise<{ run: RunRow; resumed: boolean; parts: Part[] }> {
  const [open] = await guarded(() => sql<RunRow[]>`
    select id, table_filter, column_filter, scope_filter, target_versions, parts
      from pgseal.reencrypt_runs where state in ('running', 'stopped', 'failed') and kind = ${kind} order by id desc limit 1`);
  const same = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
  let run: RunRow | undefined;
  if (open && open.table_filter === (o.table ?? null) && open.column_filter === (o.column ?? null) && open.scope_filter === (o.scope ?? null)
      && same([...open.target_versions].sort((a, b) => a - b), targetVersions)) {
    run = open;
    await guarded(() => sql`update pgseal.reencrypt_runs set state = 'running', error = null, updated_at = clock_timestamp() where id = ${open.id}`);
  } else if (open) {
    await guarded(() => sql`update pgseal.reencrypt_runs set state = 'superseded', updated_at = clock_timestamp() where id = ${open.id}`);
  }
  const resumed = run !== undefined;
  if (!run) {
    const stale = [...new Set(targets.flatMap((t) => t.stale))].sort((a, b) => a - b);
    [run] = await guarded(() => sql<RunRow[]>`
      insert into pgseal.reencrypt_runs (kind, table_filter, column_filter, scope_filter, target_versions, stale_versions, actor, reason, emergency, batch_size, parts)
      values (${kind}, ${o.table ?? null}, ${o.column ?? null}, ${o.scope ?? null}, ${targetVersions}, ${stale}, ${actor}, ${o.reason ?? null}, ${o.emergency ?? false}, ${batchSize}, ${workers})
      returning id, table_filter, column_filter, scope_filter, target_versions, parts`);
  }
  const saved = await guarded(() => sql<{ table_schema: string; table_name: string; column_name: string; part: number; lower_key: string | null; upper_key: string | null; last_key: string | null; done: boolean; pass: number }[]>`
    select table_schema, table_name, column_name, part, lower_key, upper_key, last_key, done, pass
      from pgseal.reencrypt_progress where run_id = ${run!.id} order by part`);
  const parts: Part[] = [];
  for (const t of targets) {
    const mine = saved.filter((p) => p.table_schema === t.column.schema && p.table_name === t.column.table && p.column_name === t.column.column);
    if (mine.length > 0) {
      for (const p of mine) parts.push({ target: t, part: p.part, lower: p.lower_key, upper: p.upper_key, last: p.last_key, done: p.done, pass: p.pass });
      continue;
    }
    parts.push(...(await planParts(sql, run!.id, t, run!.parts)));
  }
  return { run: run!, resumed, parts };
}

/** Rows a run has to do in a column (on a stale version; for an index run, every value), counted without keys. */
async function countToDo(sql: Sql, t: Target): Promise<number> {
  const [c] = await guarded(() => countStatement(t).bind({ stale: t.stale, scopes: t.scopes }).run<{ n: string }>(sql));
  return Number(c!.n);
}

/** Counts a column's stale rows and splits its primary keys into ranges of about equal work. */
async function planParts(sql: Sql, runId: number, t: Target, count: number): Promise<Part[]> {
  const total = await countToDo(sql, t);
  let bounds: string[] = [];
  if (count > 1 && total > count) {
    const [est] = await guarded(() => sql<{ n: number }[]>`
      select greatest(c.reltuples, 0)::float8 as n from pg_catalog.pg_class c
       where c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(${t.column.schema}) || '.' || pg_catalog.quote_ident(${t.column.table}))`);
    // about 100,000 sampled rows whatever the table's size (all of a small one)
    const percent = est!.n > 0 ? Math.min(100, (100_000 / est!.n) * 100) : 100;
    const fractions = Array.from({ length: count - 1 }, (_, i) => (i + 1) / count);
    const [b] = await guarded(() => boundsStatement(t).bind({ stale: t.stale, scopes: t.scopes, percent, fractions }).run<{ bounds: string[] | null }>(sql));
    bounds = [...new Set(b!.bounds ?? [])];
  }
  const edges: Array<string | null> = [null, ...bounds, null];
  const parts: Part[] = [];
  for (let i = 0; i < edges.length - 1; i++) {
    parts.push({ target: t, part: i, lower: edges[i]!, upper: edges[i + 1]!, last: null, done: total === 0, pass: 1 });
  }
  await guarded(() => sql`
    insert into pgseal.reencrypt_progress ${sql(parts.map((p) => ({
      run_id: runId, table_schema: t.column.schema, table_name: t.column.table, column_name: t.column.column,
      part: p.part, lower_key: p.lower, upper_key: p.upper, rows_total: Math.round(total / parts.length), done: p.done,
    })))}`);
  return parts;
}

const tableOf = (t: Target) => ({ schema: t.column.schema, table: t.column.table });

/** Deadlock, serialization failure, lock not available: the batch rolled back as a whole and can run again. */
const TRANSIENT = new Set(['40P01', '40001', '55P03']);

export interface BatchResult {
  scanned: number;
  changed: number;
  last_key: string | null;
  saved: number;
}

/** A batch's key arguments (batch-sql.ts): the stale versions' keyset (an index run: the scopes' data keys) and the scopes' key payload; zeroed by the statement that binds them. */
export async function batchKeys(keyring: Keyring, t: Target): Promise<{ keyset: Buffer; payload: Buffer }> {
  const keyset = t.kind === 'data' ? await keyring.keysetOf(t.stale) : await keyring.keyset(t.scopes);
  return { keyset, payload: await keyring.payload(t.scopes) };
}

/**
 * One batch, inside a guarded transaction, its keys as arguments: where the batch ends
 * (`next`), then the batch and its checkpoint in one statement (`batch`).
 */
export async function runBatch(tx: TransactionSql, next: Compiled, batch: Compiled, values: BatchValues): Promise<BatchResult> {
  const [end] = await next.bind(values).run<{ last_key: string; scanned: number }>(tx);
  const scanned = end?.scanned ?? 0;
  const last = end?.last_key ?? null;
  const [r] = await batch.bind({ ...values, last, scanned }).run<{ changed: number; saved: number }>(tx);
  return { scanned, last_key: last, changed: r!.changed, saved: r!.saved };
}

class Engine {
  rowsThisCall = 0;
  stopped = false;
  readonly #started = performance.now();
  readonly #stop = new AbortController();
  readonly #statements = new Map<string, Compiled>();
  readonly #progress = new Map<Target, ColumnProgress>();
  /** extra passes made over each column by this call */
  readonly #passes = new Map<Target, number>();
  #failure: unknown;
  /** workers running the current pass (the throttle is shared among them) */
  #running = 1;
  #unlisten: (() => void) | undefined;
  /** each batch a transaction holding its column's keys */
  readonly #exec: KeyedExecutor;

  constructor(
    private readonly sql: Sql,
    keyring: Keyring,
    private readonly runId: number,
    private readonly batchSize: number,
    private readonly workers: number,
    private readonly options: ReencryptOptions,
    private readonly parts: Part[],
  ) {
    // a value that does not open is audited against the run's actor
    this.#exec = new KeyedExecutor(sql, keyring, { accessLog: { actor: options.actor ?? defaultActor() } });
    const onAbort = () => this.#stop.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.#unlisten = () => options.signal?.removeEventListener('abort', onAbort);
    if (options.signal?.aborted) this.#stop.abort();
  }

  seconds(): number {
    return (performance.now() - this.#started) / 1000;
  }

  columns(): ColumnProgress[] {
    return [...this.#progress.values()].map((c) => ({ ...c }));
  }

  async run(maxPasses: number): Promise<void> {
    try {
      await this.#passesUntilDone(maxPasses);
    } finally {
      this.#unlisten?.();
    }
  }

  async #passesUntilDone(maxPasses: number): Promise<void> {
    await this.#loadProgress();
    let queue = this.parts.filter((p) => !p.done);
    for (;;) {
      await this.#drain(queue);
      if (this.#failure) throw this.#failure;
      if (this.#stop.signal.aborted) {
        this.stopped = true;
        return;
      }
      // every range is done: a row written meanwhile with a stale key behind a checkpoint
      // needs another pass over its column
      queue = [];
      for (const t of new Set(this.parts.map((p) => p.target))) {
        const progress = this.#progress.get(t)!;
        const c = await this.#remaining(t);
        reencryptLeft(t.name, t.kind, c);
        if (c === 0) {
          progress.done = true;
          continue;
        }
        const mine = this.parts.filter((p) => p.target === t);
        const pass = Math.max(...mine.map((p) => p.pass)) + 1;
        // the budget counts this call's passes: a run resumed after REENCRYPT_INCOMPLETE gets a fresh one
        const passesHere = (this.#passes.get(t) ?? 0) + 1;
        this.#passes.set(t, passesHere);
        if (passesHere >= maxPasses) {
          throw new PgsealError(ErrorCodes.REENCRYPT_INCOMPLETE, `${t.name}: ${c} rows were written with a stale key again after ${maxPasses} passes`, {
            hint: 'a process still writes with an old key: reload its keys (keyring.refresh(), or restart it), or use `pgseal keys rotate --emergency` to refuse such writes; then run `pgseal reencrypt` again',
          });
        }
        await guarded(() => this.sql`
          update pgseal.reencrypt_progress set pass = ${pass}, last_key = null, done = false, updated_at = clock_timestamp()
           where run_id = ${this.runId} and table_schema = ${t.column.schema} and table_name = ${t.column.table} and column_name = ${t.column.column}`);
        for (const p of mine) Object.assign(p, { pass, last: null, done: false });
        progress.pass = pass;
        queue.push(...mine);
      }
      if (queue.length === 0) return;
    }
  }

  /** Rows still to do after a pass: on a stale version; for an index run, with an index not the active key's. */
  async #remaining(t: Target): Promise<number> {
    if (t.kind === 'index') {
      const statement = staleIndexStatement(t);
      const [c] = await this.#exec.transaction(async (tx) => statement.bind({ scopes: t.scopes, ...(await batchKeys(this.#exec.keyring, t)) }).run<{ n: string }>(tx), { scopes: t.scopes, table: tableOf(t), settings: false });
      return Number(c!.n);
    }
    return countToDo(this.sql, t);
  }

  async #loadProgress(): Promise<void> {
    const rows = await guarded(() => this.sql<{ table_schema: string; table_name: string; column_name: string; total: string; done_rows: string; batches: number; pass: number; done: boolean }[]>`
      select table_schema, table_name, column_name, sum(rows_total) as total, sum(rows_done) as done_rows,
             sum(batches)::int as batches, max(pass) as pass, bool_and(done) as done
        from pgseal.reencrypt_progress where run_id = ${this.runId} group by 1, 2, 3`);
    for (const t of new Set(this.parts.map((p) => p.target))) {
      const r = rows.find((x) => x.table_schema === t.column.schema && x.table_name === t.column.table && x.column_name === t.column.column);
      this.#progress.set(t, { column: t.name, rowsTotal: Number(r?.total ?? 0), rowsDone: Number(r?.done_rows ?? 0), batches: r?.batches ?? 0, pass: r?.pass ?? 1, done: false });
      reencryptLeft(t.name, t.kind, Number(r?.total ?? 0) - Number(r?.done_rows ?? 0));
    }
  }

  async #drain(queue: Part[]): Promise<void> {
    const next = [...queue];
    const worker = async (index: number) => {
      const started = performance.now();
      let rows = 0;
      while (!this.#stop.signal.aborted) {
        const part = next.shift();
        if (!part) return;
        rows = await this.#runPart(part, index, started, rows);
      }
    };
    this.#running = Math.min(this.workers, Math.max(next.length, 1));
    await Promise.all(Array.from({ length: this.#running }, (_, i) => worker(i)));
  }

  /** Batches over one range until it is exhausted or the run stops; returns the worker's row count. */
  async #runPart(part: Part, _worker: number, started: number, rows: number): Promise<number> {
    const t = part.target;
    const share = this.options.maxRowsPerSecond ? this.options.maxRowsPerSecond / this.#running : undefined;
    while (!this.#stop.signal.aborted) {
      const after = part.last ?? part.lower;
      const next = this.#statement('next', t, after !== null, part.upper !== null);
      const values: BatchValues = {
        stale: t.stale, scopes: t.scopes, limit: this.batchSize, run: this.runId, schema: t.column.schema, table: t.column.table, column: t.column.column, part: part.part, after, until: part.upper,
      };
      let result: BatchResult;
      try {
        result = await this.#batchWithRetry(t, next, after, values);
      } catch (error) {
        const e = toPgsealError(error);
        this.#failure ??= new PgsealError(e.code, `${t.name}: ${e.message}`, {
          sqlstate: e.sqlstate,
          hint: e.hint ?? 'nothing of this batch was written; fix the cause and run again: the run resumes from its last checkpoint',
        });
        this.#stop.abort();
        return rows;
      }
      if (result.saved !== 1) {
        this.#failure ??= new PgsealError(ErrorCodes.DB_ERROR, `${t.name}: the checkpoint row of run ${this.runId} is missing`, { hint: 'do not edit pgseal.reencrypt_progress by hand; run again to start a new run' });
        this.#stop.abort();
        return rows;
      }
      part.last = result.last_key ?? part.last;
      rows += result.changed;
      this.rowsThisCall += result.changed;
      const progress = this.#progress.get(t)!;
      progress.rowsDone += result.changed;
      progress.batches += 1;
      progress.rowsTotal = Math.max(progress.rowsTotal, progress.rowsDone);
      reencryptBatch(t.name, t.kind, result.changed, progress.rowsTotal - progress.rowsDone);
      this.#report(t);
      if (result.scanned < this.batchSize) {
        part.done = true;
        return rows;
      }
      if (share) {
        const wait = (rows / share) * 1000 - (performance.now() - started);
        if (wait > 0) await sleep(wait, undefined, { signal: this.#stop.signal }).catch(() => undefined);
      }
    }
    return rows;
  }

  /**
   * One batch, in one short transaction: the keys of the column's scopes (pipelined), where
   * the batch ends, then the batch and its checkpoint in one statement. A deadlock, a
   * serialization failure or a lock timeout rolled the whole batch back: it is tried again.
   */
  async #batchWithRetry(t: Target, next: Compiled, after: string | null, values: BatchValues): Promise<BatchResult> {
    const batch = this.#statement('batch', t, after !== null, false);
    for (let attempt = 1; ; attempt++) {
      try {
        // keys made per attempt: a statement zeroes its secrets when it settles
        return await this.#exec.transaction(async (tx) => runBatch(tx, next, batch, { ...values, ...(await batchKeys(this.#exec.keyring, t)) }), { scopes: t.scopes, table: tableOf(t), settings: false });
      } catch (error) {
        const sqlstate = (error as { sqlstate?: unknown }).sqlstate;
        if (attempt >= 5 || typeof sqlstate !== 'string' || !TRANSIENT.has(sqlstate) || this.#stop.signal.aborted) throw error;
        await sleep(50 * 2 ** attempt, undefined, { signal: this.#stop.signal }).catch(() => undefined);
      }
    }
  }

  #statement(which: 'next' | 'batch', t: Target, after: boolean, until: boolean): Compiled {
    // by the parts, not t.name: 's."a.b".c' and '"s.a".b.c' print alike
    const id = JSON.stringify([which, t.kind, t.column.schema, t.column.table, t.column.column, after, until]);
    let s = this.#statements.get(id);
    if (!s) this.#statements.set(id, (s = which === 'next' ? nextBatchStatement(t, after, until) : batchStatement(t, after)));
    return s;
  }

  #report(t: Target): void {
    if (!this.options.onProgress) return;
    try {
      this.#callOnProgress(t);
    } catch (error) {
      // the caller's callback failed: stop the run cleanly (no worker may outlive the lock)
      this.#failure ??= error;
      this.#stop.abort();
    }
  }

  #callOnProgress(t: Target): void {
    if (!this.options.onProgress) return;
    const columns = this.columns();
    const rowsDone = columns.reduce((n, c) => n + c.rowsDone, 0);
    const rowsTotal = columns.reduce((n, c) => n + Math.max(c.rowsTotal, c.rowsDone), 0);
    const rate = this.rowsThisCall / Math.max(this.seconds(), 1e-3);
    this.options.onProgress({
      runId: this.runId, column: t.name, rowsDone, rowsTotal, rate,
      etaSeconds: rate > 0 ? Math.max(rowsTotal - rowsDone, 0) / rate : null, columns,
    });
  }
}
