// Metrics: one prom-client Registry of pgseal's own (never prom-client's global default, so
// pgseal's names never collide with the application's), every name prefixed pgseal_. The
// application serves metricsRegistry().metrics(), or registers pgseal's metrics into its own
// registry (registerMetrics) or merges the two (mergedRegistry).
//
// Cost: a client-mode read opens a value in a few µs, so the hot path never calls prom-client
// (a labelled inc costs ~170 ns, an observe ~300 ns, a label hash each). It adds plain numbers
// to a per-(column, mode) CryptoSite found once per statement, and prom-client reads the sums
// when scraped (collect, and the histogram below). Where latency is measured:
// - client-mode reads (ClientCrypto.openAll): once per statement, with performance.now() twice;
//   each column the statement opened gets one observation of the statement's whole decryption
//   time (a read opening three columns is observed under each of them), its count the values;
// - client-mode writes (ClientCrypto.seal) and pgseal().encrypt/decrypt: per value (about
//   0.1 µs a value, against a write's round trip of hundreds of µs);
// - database mode (KeyedExecutor.run): once per statement, its round trip, under each protected
//   column of the table as the access log counts them (rows returned or changed x columns);
// - KMS calls, keyring loads, re-encryption batches, access-log flushes: per event (rare).
// No label carries a value, a key, a row id or an actor: only column names
// (schema.table.column, or 'ad_hoc'), modes, error codes, operations and outcomes.
//
// The lowest layer (test/unit/layers.test.ts): it imports errors.ts only; higher layers call
// the hooks below.

import { Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client';
import { ErrorCodes, PgsealError } from './errors.js';

export type CryptoMode = 'client' | 'database';

/** A protected column as the hooks see it (columns/model.ts ProtectedColumn, structurally). */
export interface ColumnRef {
  readonly schema: string;
  readonly table: string;
  readonly column: string;
}

const registry = new Registry();

/** pgseal's registry: serve `await metricsRegistry().metrics()` with `metricsRegistry().contentType`. */
export function metricsRegistry(): Registry {
  return registry;
}

/**
 * Registers pgseal's metrics into the application's registry (prom-client's default one, or
 * its own), so that one scrape serves both. The metrics stay pgseal's too; calling it again
 * with the same registry does nothing new.
 */
export function registerMetrics(target: Registry): void {
  for (const m of registry.getMetricsAsArray() as unknown as Metric[]) target.registerMetric(m);
}

/** A new registry holding the application's metrics and pgseal's (prom-client Registry.merge: metrics registered later in either are not in it). */
export function mergedRegistry(app: Registry): Registry {
  return Registry.merge([app, registry]);
}

// ---------------------------------------------------------------------------------------------
// Latency tallies: a histogram the hot path adds to without prom-client, read at scrape time.

/** Seconds: 1 µs (a value sealed or opened in Node) to 100 ms (the alert threshold) and a little beyond. */
export const LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5,
]);

class Tally {
  /** per bucket, not cumulative; the last one is +Inf */
  readonly counts = new Float64Array(LATENCY_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.counts[i]! += 1;
    this.sum += seconds;
    this.count += 1;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

/** Counts and latencies of one column in one mode: the hot path's handle, made once. */
export class CryptoSite {
  encrypted = 0;
  decrypted = 0;
  readonly encryptTime = new Tally();
  readonly decryptTime = new Tally();
  readonly labels: { readonly column: string; readonly mode: CryptoMode };

  constructor(column: string, mode: CryptoMode) {
    this.labels = Object.freeze({ column, mode });
  }
}

/** Beyond this many distinct columns (a definition made per request with new names?), sites share the label 'other'. */
const MAX_SITES = 1000;
const sites = new Map<string, CryptoSite>();
/** ClientCrypto's models, each to its site (a Table made per request makes new models: the Map below finds theirs) */
const clientSites = new WeakMap<object, CryptoSite>();
/** the executor's Accessed objects (one per Table and access type) to the sites of their columns */
const databaseSites = new WeakMap<object, CryptoSite[]>();
export const AD_HOC = 'ad_hoc';

function site(column: string, mode: CryptoMode): CryptoSite {
  const key = `${mode}|${column}`;
  let s = sites.get(key);
  if (!s) {
    if (sites.size >= MAX_SITES) return site('other', mode);
    sites.set(key, (s = new CryptoSite(column, mode)));
  }
  return s;
}

/** The client-mode site of a column (undefined: pgseal().encrypt / decrypt, column 'ad_hoc'). */
function clientSite(c: ColumnRef | undefined): CryptoSite {
  if (!c) return site(AD_HOC, 'client');
  let s = clientSites.get(c);
  if (!s) clientSites.set(c, (s = site(`${c.schema}.${c.table}.${c.column}`, 'client')));
  return s;
}

type Sample = { labels: Record<string, string | number>; value: number; metricName?: string };

/**
 * A metric whose samples are read from plain numbers at scrape time, registered as any
 * prom-client metric (the registry reads name, help, type, get() and reset()).
 */
class Collected {
  readonly aggregator = 'sum';

  constructor(
    public name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly samples: (name: string) => Sample[],
    readonly reset: () => void,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  async get() {
    return { name: this.name, help: this.help, type: this.type, values: this.samples(this.name), aggregator: this.aggregator };
  }
}

function siteCounter(name: string, help: string, pick: (s: CryptoSite) => number, zero: (s: CryptoSite) => void): void {
  new Collected(name, help, 'counter', () => [...sites.values()].map((s) => ({ labels: s.labels, value: pick(s) })), () => {
    for (const s of sites.values()) zero(s);
  });
}

function siteHistogram(name: string, help: string, pick: (s: CryptoSite) => Tally): void {
  new Collected(name, help, 'histogram', (metric) => {
    const values: Sample[] = [];
    for (const s of sites.values()) {
      const t = pick(s);
      if (t.count === 0) continue;
      let cumulative = 0;
      for (let i = 0; i < LATENCY_BUCKETS.length; i++) {
        cumulative += t.counts[i]!;
        values.push({ labels: { ...s.labels, le: LATENCY_BUCKETS[i]! }, value: cumulative, metricName: `${metric}_bucket` });
      }
      values.push({ labels: { ...s.labels, le: '+Inf' }, value: t.count, metricName: `${metric}_bucket` });
      values.push({ labels: s.labels, value: t.sum, metricName: `${metric}_sum` });
      values.push({ labels: s.labels, value: t.count, metricName: `${metric}_count` });
    }
    return values;
  }, () => {
    for (const s of sites.values()) pick(s).reset();
  });
}

siteCounter('pgseal_encryptions_total', 'Protected values encrypted, by column (schema.table.column, ad_hoc for pgseal().encrypt) and mode (client: in this process; database: in SQL, counted as the access log counts them)',
  (s) => s.encrypted, (s) => void (s.encrypted = 0));
siteCounter('pgseal_decryptions_total', 'Protected values decrypted (NULLs not counted in client mode), by column and mode',
  (s) => s.decrypted, (s) => void (s.decrypted = 0));
siteHistogram('pgseal_encrypt_duration_seconds', 'Time to encrypt: client mode per value; database mode per statement (its round trip), by column and mode', (s) => s.encryptTime);
siteHistogram('pgseal_decrypt_duration_seconds', 'Time to decrypt per statement: client mode the opening of its values, database mode its round trip; observed under each column the statement decrypted', (s) => s.decryptTime);

// ---------------------------------------------------------------------------------------------
// Hooks of the crypto paths (src/exec/).

/** ClientCrypto.seal and pgseal().encrypt: one value sealed, `started` its performance.now(). Returns the envelope. */
export function sealed<T>(c: ColumnRef | undefined, envelope: T, started: number): T {
  const s = clientSite(c);
  s.encrypted += 1;
  s.encryptTime.observe((performance.now() - started) / 1000);
  return envelope;
}

/** pgseal().decrypt: one value opened. Returns the plaintext. */
export function opened<T>(plaintext: T, started: number): T {
  const s = clientSite(undefined);
  s.decrypted += 1;
  s.decryptTime.observe((performance.now() - started) / 1000);
  return plaintext;
}

/** ClientCrypto.openAll: a statement's rows opened, once per statement (the values counted per column, NULLs not). */
export function openedAll(columns: readonly ColumnRef[], rows: readonly Record<string, unknown>[], started: number): void {
  if (rows.length === 0) return;
  const seconds = (performance.now() - started) / 1000;
  for (let i = 0; i < columns.length; i++) {
    const c = columns[i]!;
    const name = c.column;
    let n = 0;
    for (let r = 0; r < rows.length; r++) if (rows[r]![name] != null) n++;
    const s = clientSite(c);
    s.decrypted += n;
    s.decryptTime.observe(seconds);
  }
}

/** What KeyedExecutor.run is given (structurally): the unit's scopes and what it accesses. */
interface StatementRef {
  scopes: unknown;
  access?: { readonly table: string; readonly columns: readonly string[]; readonly type: string } | undefined;
}

/**
 * KeyedExecutor.run: a statement pgseal built ran. In database mode (it carried keys) its
 * reads decrypted, its writes encrypted the table's protected columns in SQL: rows returned
 * or changed times the columns, as the access log counts them. Returns the rows.
 */
export function ranStatement<R extends { length: number; count?: number | null }>(unit: StatementRef, rows: R, started: number): R {
  const access = unit.access;
  if (unit.scopes === 'none' || !access || access.type === 'delete') return rows;
  let list = databaseSites.get(access);
  if (!list) databaseSites.set(access, (list = access.columns.map((c) => site(`${access.table}.${c}`, 'database'))));
  const seconds = (performance.now() - started) / 1000;
  const n = Math.max(rows.length, rows.count ?? 0);
  const read = access.type === 'read';
  for (const s of list) {
    if (read) {
      s.decrypted += n;
      s.decryptTime.observe(seconds);
    } else {
      s.encrypted += n;
      s.encryptTime.observe(seconds);
    }
  }
  return rows;
}

/** Values that do not open, as the executor audits them (data.decrypt_failed). */
const UNREADABLE: readonly string[] = [ErrorCodes.AUTHENTICATION_FAILED, ErrorCodes.MALFORMED_ENVELOPE, ErrorCodes.KEY_RETIRED, ErrorCodes.KEY_DESTROYED];

const decryptFailures = new Counter({
  name: 'pgseal_decrypt_failures_total', help: 'Values that did not open (tampered, wrong context or key, retired, destroyed), by error code', labelNames: ['code'], registers: [registry],
});
// every code exported at 0 from the start, so that increase() sees the first failure
for (const code of UNREADABLE) decryptFailures.inc({ code }, 0);

/** A value that did not open (the executor's audit of it, pgseal().decrypt): counted when its code says so. */
export function decryptFailed(error: unknown): void {
  if (error instanceof PgsealError && UNREADABLE.includes(error.code)) decryptFailures.inc({ code: error.code });
}

// ---------------------------------------------------------------------------------------------
// Key caches: the keyring (a use served by the keys loaded vs one that (re)loads pgseal.keys),
// and the KMS provider's cache of unwrapped keys (served vs a Decrypt).

const cacheUses = { keyringHits: 0, keyringMisses: 0, kmsHits: 0, kmsMisses: 0 };

const cacheSamples = (hits: boolean) => (): Sample[] => [
  { labels: { cache: 'keyring' }, value: hits ? cacheUses.keyringHits : cacheUses.keyringMisses },
  { labels: { cache: 'kms' }, value: hits ? cacheUses.kmsHits : cacheUses.kmsMisses },
];
new Collected('pgseal_key_cache_hits_total', 'Key uses served from memory: cache="keyring" (the keys loaded, within their TTL), cache="kms" (an unwrapped key reused, no KMS Decrypt)',
  'counter', cacheSamples(true), () => void Object.assign(cacheUses, { keyringHits: 0, kmsHits: 0 }));
new Collected('pgseal_key_cache_misses_total', 'Key uses that waited for a load: cache="keyring" (pgseal.keys loaded: first use, TTL expired, marked stale), cache="kms" (a KMS Decrypt)',
  'counter', cacheSamples(false), () => void Object.assign(cacheUses, { keyringMisses: 0, kmsMisses: 0 }));

/** Keyring: one use of the keys; `miss` when it has to load them. Returns `miss`. */
export function keyringUse(miss: boolean): boolean {
  if (miss) cacheUses.keyringMisses++;
  else cacheUses.keyringHits++;
  return miss;
}

/** AwsKmsMasterKey.unwrap: one unwrap; `miss` when it asks KMS. */
export function kmsCacheUse(miss: boolean): void {
  if (miss) cacheUses.kmsMisses++;
  else cacheUses.kmsHits++;
}

const keyringLoads = new Counter({
  name: 'pgseal_keyring_loads_total', help: 'Loads of pgseal.keys (each unwrapping what changed): first use, TTL, stale keys, revocations, keepFresh; outcome ok or the error code', labelNames: ['outcome'], registers: [registry],
});
keyringLoads.inc({ outcome: 'ok' }, 0);
const keyringLoadTime = new Histogram({
  name: 'pgseal_keyring_load_duration_seconds', help: 'Time to load pgseal.keys and unwrap its keys', registers: [registry],
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
});

/** Keyring.refresh: one load of the keys, timed and counted. */
export async function keyringLoad(load: () => Promise<void>): Promise<void> {
  const started = performance.now();
  try {
    await load();
    keyringLoads.inc({ outcome: 'ok' });
  } catch (error) {
    keyringLoads.inc({ outcome: error instanceof PgsealError ? error.code : 'error' });
    throw error;
  } finally {
    keyringLoadTime.observe((performance.now() - started) / 1000);
  }
}

// ---------------------------------------------------------------------------------------------
// AWS KMS calls (src/keys/aws-kms.ts), each with its retries.

export const KMS_OPERATIONS = ['DescribeKey', 'GenerateDataKey', 'Encrypt', 'Decrypt', 'ReEncrypt'] as const;
/** A KMS call's outcome: a small fixed set, so that each series exists (at 0) before its first event. */
export type KmsOutcome = 'ok' | 'throttled' | 'denied' | 'unreachable' | 'error';
const KMS_OUTCOMES: readonly KmsOutcome[] = ['ok', 'throttled', 'denied', 'unreachable', 'error'];

const kmsRequests = new Counter({
  name: 'pgseal_kms_requests_total', help: 'AWS KMS calls (retries included in one), by operation and outcome: ok, throttled (past its retries), denied (access or credentials), unreachable (network or deadline), error (anything else: disabled or missing key, refused ciphertext)',
  labelNames: ['operation', 'outcome'], registers: [registry],
});
const kmsTime = new Histogram({
  name: 'pgseal_kms_request_duration_seconds', help: 'AWS KMS call time, retries included, by operation', labelNames: ['operation'], registers: [registry],
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
});
let kmsSeries = false;

/** A KMS provider was made: every operation's series exported at 0 (increase() then sees the first error). */
export function kmsMetricsReady(): void {
  if (kmsSeries) return;
  kmsSeries = true;
  for (const operation of KMS_OPERATIONS) for (const outcome of KMS_OUTCOMES) kmsRequests.inc({ operation, outcome }, 0);
}

function kmsOutcome(error: unknown): KmsOutcome {
  const code = error instanceof PgsealError ? error.code : undefined;
  if (code === ErrorCodes.AWS_THROTTLED) return 'throttled';
  if (code === ErrorCodes.AWS_ACCESS_DENIED || code === ErrorCodes.AWS_CREDENTIALS_MISSING) return 'denied';
  if (code === ErrorCodes.AWS_UNREACHABLE) return 'unreachable';
  return 'error';
}

/** One KMS call (awsCall), timed and counted. */
export async function kmsCall<T>(operation: string, call: () => Promise<T>): Promise<T> {
  const started = performance.now();
  let outcome: KmsOutcome = 'ok';
  try {
    return await call();
  } catch (error) {
    outcome = kmsOutcome(error);
    throw error;
  } finally {
    kmsRequests.inc({ operation, outcome });
    kmsTime.observe({ operation }, (performance.now() - started) / 1000);
  }
}

// ---------------------------------------------------------------------------------------------
// Re-encryption (src/reencrypt/run.ts): per batch.

const reencryptRows = new Counter({
  name: 'pgseal_reencrypt_rows_total', help: 'Rows re-encrypted by this process, by column and kind (data: onto the active data key; index: blind index recomputed)', labelNames: ['column', 'kind'], registers: [registry],
});
const reencryptBatches = new Counter({
  name: 'pgseal_reencrypt_batches_total', help: 'Re-encryption batches committed by this process, by column and kind', labelNames: ['column', 'kind'], registers: [registry],
});
const reencryptRemaining = new Gauge({
  name: 'pgseal_reencrypt_rows_remaining', help: 'Rows a re-encryption run of this process still has to do, by column and kind (an estimate between passes, counted at the end of each)', labelNames: ['column', 'kind'], registers: [registry],
});

/** A re-encryption batch committed `changed` rows; `remaining` left in its column. */
export function reencryptBatch(column: string, kind: string, changed: number, remaining: number): void {
  reencryptRows.inc({ column, kind }, changed);
  reencryptBatches.inc({ column, kind });
  reencryptRemaining.set({ column, kind }, Math.max(remaining, 0));
}

/** A column's rows still to do, as a run counted them. */
export function reencryptLeft(column: string, kind: string, remaining: number): void {
  reencryptRemaining.set({ column, kind }, Math.max(remaining, 0));
}

// ---------------------------------------------------------------------------------------------
// The async access log (src/audit/access-log.ts).

interface BufferStats {
  readonly buffered: number;
}
const accessLogBuffers = new Map<BufferStats, number>();

new Gauge({
  name: 'pgseal_access_log_buffered', help: 'Access-log entries buffered in this process, waiting to be written (async mode)', registers: [registry],
  collect() {
    let n = 0;
    for (const stats of accessLogBuffers.keys()) n += stats.buffered;
    this.set(n);
  },
});
new Gauge({
  name: 'pgseal_access_log_buffer_capacity', help: 'The most access-log entries this process buffers before it drops (sum of maxBuffered of the open buffers)', registers: [registry],
  collect() {
    let n = 0;
    for (const max of accessLogBuffers.values()) n += max;
    this.set(n);
  },
});
const accessLogDrops = new Counter({
  name: 'pgseal_access_log_dropped_total', help: 'Access-log entries dropped because the async buffer was full (each loss is also recorded in the encryption audit log)', registers: [registry],
});
const accessLogFailures = new Counter({
  name: 'pgseal_access_log_flush_failures_total', help: 'Async access-log flushes that failed (their entries stay buffered, within the bound)', registers: [registry],
});

/** An async access-log buffer opened (its stats read at scrape time) or closed. */
export function accessLogBuffer(stats: BufferStats, maxBuffered: number, open: boolean): void {
  if (open) accessLogBuffers.set(stats, maxBuffered);
  else accessLogBuffers.delete(stats);
}

export function accessLogDropped(n: number): void {
  accessLogDrops.inc(n);
}

export function accessLogFlushFailed(): void {
  accessLogFailures.inc();
}

// ---------------------------------------------------------------------------------------------
// pgseal doctor --prometheus (src/cli/doctor.ts).

const STATUS: Readonly<Record<string, number>> = { ok: 0, warn: 1, fail: 2, skip: -1 };

/**
 * The doctor's checks in Prometheus text format: pgseal_doctor_check_status{check, area}
 * (0 ok, 1 warn, 2 fail, -1 skip), the time of the run, and this process's metrics. For the
 * node exporter's textfile collector, or a push gateway.
 */
export async function doctorExposition(results: ReadonlyArray<{ id: string; area: string; status: string }>): Promise<string> {
  const doctor = new Registry();
  const status = new Gauge({ name: 'pgseal_doctor_check_status', help: 'pgseal doctor: each check\'s status (0 ok, 1 warn, 2 fail, -1 skip)', labelNames: ['check', 'area'], registers: [doctor] });
  for (const r of results) status.set({ check: r.id, area: r.area }, STATUS[r.status] ?? 2);
  new Gauge({ name: 'pgseal_doctor_last_run_timestamp_seconds', help: 'pgseal doctor: when these checks ran (Unix time)', registers: [doctor] }).set(Date.now() / 1000);
  return Registry.merge([doctor, registry]).metrics();
}
