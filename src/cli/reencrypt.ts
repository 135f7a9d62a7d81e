// pgseal reencrypt [status]: moves every value on an older data-key version onto the active
// one, inside the database (src/reencrypt/run.ts does the work; this is the terminal side).

import type { Argv, CommandModule } from 'yargs';
import { connect } from '../connect.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import { Keyring } from '../keys/keyring.js';
import { describeCounts } from '../keys/lifecycle.js';
import type { MasterKeyProvider } from '../keys/master-key.js';
import { reencrypt, type ReencryptProgress, type ReencryptResult } from '../reencrypt/run.js';
import { reencryptDryRun, reencryptStatus, type DryRunReport } from '../reencrypt/status.js';
import { by, withAttribution, type AttributionArgs } from './attribution.js';
import { databaseUrl, masterKey, usingDatabase, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';
import { jsonReplacer, table, toJsonLine } from './output.js';
import { progressSink } from './progress.js';

export interface RunArgs extends DatabaseArgs, MasterKeyArgs, AttributionArgs {
  table?: string | undefined;
  column?: string | undefined;
  scope?: string | undefined;
  'batch-size': number;
  workers: number;
  'max-rows-per-second'?: number | undefined;
  'dry-run'?: boolean | undefined;
  'blind-index'?: boolean | undefined;
  'index-grace-seconds'?: number | undefined;
  json?: boolean | undefined;
}

/** The run options shared with `keys rotate --emergency`. */
export function withRunOptions<T>(y: Argv<T>): Argv<T & RunArgs> {
  return withAttribution(withMasterKey(withDatabase(y)))
    .option('batch-size', { type: 'number', default: 5000, describe: 'rows per batch: one statement, one short transaction' })
    .option('workers', { type: 'number', default: 1, describe: 'parallel connections, each on its own primary-key range' })
    .option('max-rows-per-second', { type: 'number', describe: 'throttle, over all workers' })
    .option('json', { type: 'boolean', describe: 'JSON lines (the default when stderr is not a terminal)' }) as unknown as Argv<T & RunArgs>;
}

export interface RunContext {
  sql: ReturnType<typeof connect>;
  keyring: Keyring;
  /** the master key the keyring uses */
  provider: MasterKeyProvider;
  /** aborted by SIGINT / SIGTERM */
  signal: AbortSignal;
  /** the progress bar (terminal) or JSON lines, stopped before `work`'s caller prints */
  onProgress: (p: ReencryptProgress) => void;
}

/**
 * Runs `work` with a connection pool sized for the workers, a keyring and a progress sink;
 * stops cleanly on SIGINT / SIGTERM. Returns `work`'s value and the signal that stopped it.
 */
export async function withRunContext<T>(args: RunArgs, json: boolean, work: (ctx: RunContext) => Promise<T>): Promise<{ value: T; stoppedBy: string | undefined }> {
  const provider = masterKey(args);
  const sql = connect(databaseUrl(args), { max: Math.max(2, Math.min(args.workers, 64) + 1) });
  const keyring = new Keyring(sql, provider);
  const sink = progressSink(json);
  const stop = new AbortController();
  let signalName: string | undefined;
  const onSignal = (name: NodeJS.Signals) => {
    if (signalName) process.exit(1); // a second signal: leave now (the last committed batch is the checkpoint)
    signalName = name;
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const value = await work({ sql, keyring, provider, signal: stop.signal, onProgress: (p) => sink.update(p) });
    return { value, stoppedBy: signalName };
  } finally {
    sink.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    keyring.close();
    provider.close();
    await sql.end({ timeout: 5 });
  }
}

export function printResult(result: ReencryptResult, json: boolean, stoppedBy: string | undefined): void {
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;
  const notMoved = result.notMoved;
  if (json) {
    console.log(toJsonLine({
      event: result.state, run: result.runId, resumed: result.resumed, rows: result.rows, values: result.rows, seconds: Math.round(result.seconds * 1000) / 1000, peak_rss_bytes: peakRssBytes, columns: result.columns,
      ...(notMoved ? { not_moved: notMoved.counts, unreadable: notMoved.unreadable } : {}),
    }));
  } else if (result.state === 'done') {
    console.log(`pgseal: run ${result.runId}${result.resumed ? ' (resumed)' : ''}: re-encrypted ${result.rows} values (${result.columns.map((c) => `${c.column}: ${c.rowsDone} rows`).join(', ') || 'no protected column'}) in ${result.seconds.toFixed(1)} s; every value of ${result.columns.length} protected column(s) is on the active key`);
  }
  // what a run cannot move: values sealed by hand into columns pgseal does not manage
  if (notMoved && notMoved.counts.length > 0) {
    const n = notMoved.counts.reduce((sum, c) => sum + c.values, 0);
    console.error(`pgseal: not moved: ${n} values on older key versions in columns that are not protected: ${describeCounts(notMoved.counts)}`);
    console.error('pgseal: protect them (pgseal protect --table T --column C) and run pgseal reencrypt again; until then `pgseal keys retire` refuses their versions');
  }
  if (notMoved && notMoved.unreadable.length > 0) {
    console.error(`pgseal: not checked (pgseal's owner may not read them): ${notMoved.unreadable.join(', ')}`);
  }
  if (result.state === 'stopped') {
    throw new PgsealError(ErrorCodes.REENCRYPT_STOPPED, `run ${result.runId} stopped${stoppedBy ? ` by ${stoppedBy}` : ''} after ${result.rows} values`, {
      hint: 'run `pgseal reencrypt` again with the same options to resume from the last committed batch',
    });
  }
}

async function runReencrypt(args: RunArgs): Promise<void> {
  const json = args.json ?? !process.stderr.isTTY;
  const filter = { table: args.table, column: args.column, scope: args.scope };
  if (args['dry-run']) {
    const { value: report } = await withRunContext(args, json, ({ sql, keyring }) =>
      reencryptDryRun(sql, keyring, { ...filter, batchSize: args['batch-size'], workers: args.workers, blindIndex: args['blind-index'], actor: args.actor }));
    printDryRun(report, args);
    return;
  }
  const { value: result, stoppedBy } = await withRunContext(args, json, ({ sql, keyring, signal, onProgress }) =>
    reencrypt(sql, keyring, {
      ...filter, ...by(args), blindIndex: args['blind-index'], indexGraceSeconds: args['index-grace-seconds'], batchSize: args['batch-size'],
      workers: args.workers, maxRowsPerSecond: args['max-rows-per-second'], signal, onProgress,
    }));
  printResult(result, json, stoppedBy);
}

function printDryRun(report: DryRunReport, args: RunArgs): void {
  if (args.json) {
    console.log(JSON.stringify(report, jsonReplacer, 2));
    return;
  }
  const rows = report.columns.flatMap((c) => c.versions.map((v) => ({ column: c.column, version: v.version ?? '(not pgseal)', state: v.state, rows: v.rows })));
  console.log(table(['column', 'version', 'state', 'rows'], rows));
  for (const c of report.columns) {
    console.log(`${c.column}: ${c.stale} rows to re-encrypt${c.sampleRowsPerSecond ? `, about ${Math.round(c.sampleRowsPerSecond)} rows/s (sample batch, rolled back)` : ''}`);
  }
  console.log(`pgseal: dry run: ${report.stale} rows to re-encrypt${report.estimatedSeconds !== null ? `, about ${Math.ceil(report.estimatedSeconds)} s with ${args.workers} worker(s)` : ''}; nothing was changed`);
}

interface StatusArgs extends DatabaseArgs {
  json?: boolean | undefined;
  run?: number | undefined;
}

async function runStatus(args: StatusArgs): Promise<void> {
  const status = await usingDatabase(args, (sql) => reencryptStatus(sql, args.run));
  if (args.json) {
    console.log(JSON.stringify(status, jsonReplacer, 2));
    return;
  }
  if (!status) {
    console.log('pgseal: no re-encryption has run on this database');
    return;
  }
  console.log(`run ${status.runId} (${status.kind === 'index' ? 'blind indexes' : 'data'}): ${status.state}${status.emergency ? ' (emergency)' : ''}, by ${status.actor}, started ${status.startedAt.toISOString()}${status.error ? `, error ${status.error}` : ''}`);
  console.log(`moving versions ${status.staleVersions.join(', ') || '(none)'} onto ${status.targetVersions.join(', ')}`);
  console.log(table(['column', 'done', 'remaining', 'rows_per_second', 'eta_seconds', 'pass'], status.columns.map((c) => ({
    column: c.column, done: c.rowsDone, remaining: c.remaining, rows_per_second: c.rate === null ? '' : Math.round(c.rate), eta_seconds: c.etaSeconds === null ? '' : Math.ceil(c.etaSeconds), pass: c.pass,
  }))));
}

const statusCommand: CommandModule<object, StatusArgs> = {
  command: 'status',
  describe: 'the latest run: done, remaining, rate and ETA per column',
  builder: (y: Argv) =>
    withDatabase(y)
      .option('json', { type: 'boolean', describe: 'print JSON' })
      .option('run', { type: 'number', describe: 'a given run id (default: the latest)' }) as unknown as Argv<StatusArgs>,
  handler: runStatus,
};

const runCommand: CommandModule<object, RunArgs> = {
  command: '$0',
  describe: 're-encrypt every value on an older key version (resumes a stopped run)',
  builder: (y: Argv) =>
    withRunOptions(y)
      .option('table', { type: 'string', describe: 'only this table (schema.table)' })
      .option('column', { type: 'string', describe: 'only this column (needs --table)' })
      .option('scope', { type: 'string', describe: 'only values of this key scope' })
      .option('dry-run', { type: 'boolean', describe: 'count rows per version per column and estimate the time; change nothing' })
      .option('blind-index', { type: 'boolean', describe: 'recompute blind indexes under the active index key (after `keys rotate --purpose index`)' })
      .option('index-grace-seconds', { type: 'number', describe: 'with --blind-index: start only this long after the index key rotated (default 300, the keyring TTL)' }) as unknown as Argv<RunArgs>,
  handler: runReencrypt,
};

export const reencryptCommand: CommandModule = {
  command: 'reencrypt',
  describe: 'move values on older key versions onto the active key, inside the database; `reencrypt status` shows progress',
  builder: (y) => y.command(statusCommand as unknown as CommandModule).command(runCommand as unknown as CommandModule),
  handler: () => {},
};
