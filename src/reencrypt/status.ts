// What a re-encryption run has done and has left (pgseal reencrypt status), and what a run
// would do (--dry-run: rows per key version per column, and a time estimate from one
// sample batch that is rolled back).

import type { Sql } from 'postgres';
import { withPgsealErrors as guarded } from '../errors.js';
import { KeyedExecutor } from '../exec/executor.js';
import { batchKeys, checkKeysLoaded, runBatch } from './run.js';
import type { Keyring } from '../keys/keyring.js';
import { batchStatement, nextBatchStatement, versionsStatement, type BatchValues } from './batch-sql.js';
import { loadKeyPlan, resolveTargets, type Filter } from './targets.js';

export interface ColumnStatus {
  column: string;
  rowsTotal: number;
  rowsDone: number;
  remaining: number;
  pass: number;
  done: boolean;
  /** rows per second since the run started (downtime between resumes included) */
  rate: number | null;
  etaSeconds: number | null;
  updatedAt: Date;
}

export interface RunStatus {
  runId: number;
  kind: 'data' | 'index';
  state: 'running' | 'stopped' | 'failed' | 'done' | 'superseded';
  actor: string;
  reason: string | null;
  emergency: boolean;
  error: string | null;
  targetVersions: number[];
  staleVersions: number[];
  startedAt: Date;
  finishedAt: Date | null;
  columns: ColumnStatus[];
}

/** The latest run (or the given one), per column; null when none ever ran. */
export async function reencryptStatus(sql: Sql, runId?: number): Promise<RunStatus | null> {
  const [run] = await guarded(() => sql<{ id: string; kind: RunStatus['kind']; state: RunStatus['state']; actor: string; reason: string | null; emergency: boolean; error: string | null; target_versions: number[]; stale_versions: number[]; started_at: Date; finished_at: Date | null }[]>`
    select id, kind, state, actor, reason, emergency, error, target_versions, stale_versions, started_at, finished_at
      from pgseal.reencrypt_runs ${runId === undefined ? sql`` : sql`where id = ${runId}`} order by id desc limit 1`);
  if (!run) return null;
  const columns = await guarded(() => sql<{ column: string; total: string; done_rows: string; pass: number; done: boolean; updated_at: Date; seconds: number }[]>`
    select table_schema || '.' || table_name || '.' || column_name as column, sum(rows_total) as total, sum(rows_done) as done_rows,
           max(pass) as pass, bool_and(done) as done, max(updated_at) as updated_at,
           extract(epoch from max(updated_at) - ${run.started_at}::timestamptz)::float8 as seconds
      from pgseal.reencrypt_progress where run_id = ${run.id} group by table_schema, table_name, column_name order by 1`);
  return {
    runId: Number(run.id), kind: run.kind, state: run.state, actor: run.actor, reason: run.reason, emergency: run.emergency, error: run.error,
    targetVersions: run.target_versions, staleVersions: run.stale_versions, startedAt: run.started_at, finishedAt: run.finished_at,
    columns: columns.map((c) => {
      const rowsDone = Number(c.done_rows);
      const rowsTotal = Math.max(Number(c.total), rowsDone);
      const remaining = c.done ? 0 : rowsTotal - rowsDone;
      const rate = c.seconds > 0 && rowsDone > 0 ? rowsDone / c.seconds : null;
      return { column: c.column, rowsTotal, rowsDone, remaining, pass: c.pass, done: c.done, rate, etaSeconds: c.done ? 0 : rate ? remaining / rate : null, updatedAt: c.updated_at };
    }),
  };
}

export interface DryRunColumn {
  column: string;
  /** rows per key version; version null: not a pgseal envelope */
  versions: Array<{ version: number | null; state: string; rows: number }>;
  /** rows a run would re-encrypt */
  stale: number;
  /** from one sample batch, rolled back */
  sampleRowsPerSecond: number | null;
  estimatedSeconds: number | null;
}

export interface DryRunReport {
  columns: DryRunColumn[];
  stale: number;
  estimatedSeconds: number | null;
}

class Rollback extends Error {}

/** Counts and a time estimate; changes nothing (the sample batch is rolled back). */
export async function reencryptDryRun(
  sql: Sql, keyring: Keyring, options: Filter & { batchSize?: number | undefined; workers?: number | undefined; blindIndex?: boolean | undefined; actor?: string | undefined } = {},
): Promise<DryRunReport> {
  const batchSize = options.batchSize ?? 5000;
  const workers = options.workers ?? 1;
  const kind = options.blindIndex ? 'index' : 'data';
  await keyring.refresh();
  const keys = await loadKeyPlan(sql, options.scope, kind);
  const targets = await resolveTargets(sql, options, keys, kind);
  const states = new Map((await guarded(() => sql<{ version: number; state: string }[]>`select version, state from pgseal.keys`)).map((k) => [k.version, k.state]));
  const columns: DryRunColumn[] = [];
  for (const t of targets) {
    const counts = await guarded(() => versionsStatement(t).bind().run<{ version: number | null; n: string }>(sql));
    const versions = counts.map((c) => ({ version: c.version, state: c.version === null ? 'not a pgseal value' : (states.get(c.version) ?? 'unknown'), rows: Number(c.n) }));
    // an index run recomputes the index of every value
    const stale = versions.filter((v) => kind === 'index' || (v.version !== null && t.stale.includes(v.version))).reduce((n, v) => n + v.rows, 0);
    let sampleRowsPerSecond: number | null = null;
    if (stale > 0 && t.scopes.length > 0) {
      await checkKeysLoaded(keyring, keys, [t]);
      const next = nextBatchStatement(t, false, false);
      const batch = batchStatement(t, false);
      const values: BatchValues = { stale: t.stale, scopes: t.scopes, limit: Math.min(batchSize, stale), run: 0, schema: t.column.schema, table: t.column.table, column: t.column.column, part: 0 };
      try {
        await new KeyedExecutor(sql, keyring, { accessLog: { actor: options.actor } }).transaction(async (tx) => {
          const started = performance.now();
          const r = await runBatch(tx, next, batch, { ...values, ...(await batchKeys(keyring, t)) });
          sampleRowsPerSecond = r.changed / Math.max((performance.now() - started) / 1000, 1e-6);
          throw new Rollback();
        }, { scopes: t.scopes, table: { schema: t.column.schema, table: t.column.table }, settings: false });
      } catch (e) {
        if (!(e instanceof Rollback)) throw e;
      }
    }
    const estimatedSeconds = stale === 0 ? 0 : sampleRowsPerSecond ? stale / sampleRowsPerSecond / workers : null;
    columns.push({ column: t.name, versions, stale, sampleRowsPerSecond, estimatedSeconds });
  }
  const known = columns.every((c) => c.estimatedSeconds !== null);
  return { columns, stale: columns.reduce((n, c) => n + c.stale, 0), estimatedSeconds: known ? columns.reduce((n, c) => n + c.estimatedSeconds!, 0) : null };
}
