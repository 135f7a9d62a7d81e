// The AWS KMS master key (src/keys/aws-kms.ts) against a real KMS-compatible server,
// moto_server on loopback behind the counting proxy of scripts/lib/moto.ts, each figure
// against a baseline of the same run:
//   cold start: a new process's keyring.refresh() with 4 key versions in use against one
//     with 1, in two databases of their own; the unwraps run concurrently, so the target is
//     at most one KMS round trip more, the round trip measured alone (a single Decrypt);
//   steady state: client-mode findByPk with KMS-wrapped keys against the same table and rows
//     with the environment key's (LocalMasterKey): once loaded, KMS is not asked again.
// How moto itself answers concurrent Decrypts (1, 4 at once, 4 in a row) is measured beside
// them: the cold-start figure only means something if the server runs calls in parallel.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import postgres, { type Sql } from 'postgres';
import { pgseal } from '../../src/index.js';
import { awsKmsMasterKey, type AwsKmsMasterKey, type AwsKmsOptions } from '../../src/keys/aws-kms.js';
import type { Table } from '../../src/helpers/table.js';
import { Keyring } from '../../src/keys/keyring.js';
import { initKeys, rotateKey } from '../../src/keys/registry.js';
import { migrate } from '../../src/migrate.js';
import { motoAvailable, startMoto, type Moto } from '../lib/moto.js';
import { median, ratio, type BenchContext } from './common.js';
import { CLIENTS, def, prepareTables, throughput } from './helpers.js';

const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const region = 'us-east-1';
const STEADY_ROWS = 20_000;
const STEADY_MS = 2_000;
// a KMS call's network share from a machine in the key's region: a few milliseconds
const NETWORK_DELAY_MS = 10;

interface WrappedRow {
  wrapped_key: Buffer;
  scope: string;
  purpose: string;
  version: number;
  database: string;
}

const round = (x: number, places = 2): number => Math.round(x * 10 ** places) / 10 ** places;

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** The calls of one run as counted by the proxy; every run alike collapses to one. */
function sameOrAll(counts: Array<Record<string, number>>): Record<string, number> | Array<Record<string, number>> {
  return new Set(counts.map((c) => JSON.stringify(c))).size === 1 ? counts[0]! : counts;
}

const snapshot = (moto: Moto): Record<string, number> => Object.fromEntries([...moto.counts].sort(([a], [b]) => a.localeCompare(b)));

export async function benchKms({ sql, url, master, runs, log: out }: BenchContext) {
  // the SDK warns about Node 20 on every client otherwise
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const log = (line: string) => out(`kms: ${line}`);
  const available = motoAvailable();
  if (available !== true) {
    log(`skipped: ${available.reason}`);
    return { skipped: available.reason };
  }
  const R = Math.max(runs, 7);
  const moto = await startMoto();
  const admin = postgres(withDatabase(url, 'postgres'), { max: 1, onnotice: () => {} });
  const suffix = randomBytes(4).toString('hex');
  const names = { one: `pgseal_bench_kms1_${suffix}`, four: `pgseal_bench_kms4_${suffix}` };
  const created: string[] = [];
  const pools: Sql[] = [];
  const providers: AwsKmsMasterKey[] = [];
  const closers: Array<() => unknown> = [];
  let mainTables = false;
  try {
    const kms = new KMSClient({ region, credentials, endpoint: moto.direct });
    const made = await kms.send(new CreateKeyCommand({ Description: 'pgseal bench' })).finally(() => kms.destroy());
    const keyId = made.KeyMetadata!.Arn!;
    const provider = (extra: Partial<AwsKmsOptions> = {}): AwsKmsMasterKey => {
      const p = awsKmsMasterKey({ keyId, endpoint: moto.endpoint, region, credentials, ...extra });
      providers.push(p);
      return p;
    };
    const pool = (database: string, max: number): Sql => {
      const p = postgres(withDatabase(url, database), { max, onnotice: () => {} });
      pools.push(p);
      return p;
    };
    const usable = async (s: Sql): Promise<number> => (await s<{ n: number }[]>`select count(*)::int as n from pgseal.usable_keys()`)[0]!.n;

    log(`databases ${names.one} and ${names.four}, keys wrapped by ${keyId}...`);
    for (const name of [names.one, names.four]) {
      await admin.unsafe(`create database ${name}`);
      created.push(name);
      await migrate({ databaseUrl: withDatabase(url, name), direction: 'up' });
    }
    const one = pool(names.one, 2);
    const four = pool(names.four, 2);
    const setup = provider();
    await initKeys(one, setup);
    await initKeys(four, setup);
    // bench-only state: one usable version left (a real database keeps its log and index keys)
    await one`delete from pgseal.keys where purpose <> 'data'`;
    await rotateKey(four, setup);
    const counts = { one: await usable(one), four: await usable(four) };
    if (counts.one !== 1 || counts.four !== 4) throw new Error(`kms bench: ${counts.one} and ${counts.four} usable key versions, not 1 and 4`);

    // cold start at two network latencies: loopback (moto answers concurrent calls about one at a
    // time, GIL-bound) and with a fixed delay per call at the proxy, as a network adds, under
    // which the server's own serialisation is small beside the round trip (KMS itself answers
    // concurrent calls in parallel)
    const measure = async (delayMs: number) => {
      moto.setDelay(delayMs);
      try {
        // the KMS round trip, and how the server answers concurrent calls: every unwrap asks KMS (no cache)
        const wrapped = await four<WrappedRow[]>`
          select wrapped_key, scope, purpose, version, pgseal.installation_id()::text as database
            from pgseal.keys where state in ('active', 'decrypt-only') order by version`;
        const probe = provider({ cacheMaxUses: 0 });
        await probe.prepare();
        const unwrapAll = async (rows: WrappedRow[]): Promise<void> => {
          const keys = await Promise.all(rows.map((r) => probe.unwrap(r.wrapped_key, { scope: r.scope, purpose: r.purpose, version: r.version, database: r.database })));
          for (const k of keys) k.fill(0);
        };
        const timed = async (work: () => Promise<void>): Promise<number> => {
          const t0 = performance.now();
          await work();
          return performance.now() - t0;
        };
        const rt = { single: [] as number[], concurrent4: [] as number[], sequential4: [] as number[] };
        for (let i = 0; i < 5; i++) await unwrapAll(wrapped); // warm-up: sockets open, moto's code paths hot
        moto.reset();
        const samples = 3 * R;
        for (let i = 0; i < samples; i++) {
          rt.single.push(await timed(() => unwrapAll([wrapped[i % 4]!])));
          rt.concurrent4.push(await timed(() => unwrapAll(wrapped)));
          rt.sequential4.push(await timed(async () => {
            for (const r of wrapped) await unwrapAll([r]);
          }));
        }
        if (moto.count('Decrypt') !== samples * 9) throw new Error(`kms bench: ${moto.count('Decrypt')} Decrypts for ${samples * 9} uncached unwraps`);
        const kmsRoundTripMs = median(rt.single);
        const server = {
          samples,
          oneDecryptMs: round(kmsRoundTripMs),
          fourConcurrentDecryptsMs: round(median(rt.concurrent4)),
          fourSequentialDecryptsMs: round(median(rt.sequential4)),
          // 1: four concurrent calls take one call's time; 4: the server runs them one after another
          concurrentInRoundTrips: round(median(rt.concurrent4) / kmsRoundTripMs),
        };
        log(`[+${delayMs} ms a call] Decrypt ${server.oneDecryptMs} ms; 4 concurrent ${server.fourConcurrentDecryptsMs} ms (${server.concurrentInRoundTrips} round trips); 4 in a row ${server.fourSequentialDecryptsMs} ms`);
  
        // cold start: a new provider (no cache, DescribeKey included) and keyring per run, on a pool kept open
        const cold = async (s: Sql): Promise<{ ms: number; calls: Record<string, number> }> => {
          const p = awsKmsMasterKey({ keyId, endpoint: moto.endpoint, region, credentials });
          const ring = new Keyring(s, p);
          moto.reset();
          try {
            const t0 = performance.now();
            await ring.refresh();
            return { ms: performance.now() - t0, calls: snapshot(moto) };
          } finally {
            ring.close();
            p.close();
          }
        };
        const c = { one: [] as number[], four: [] as number[], oneCalls: [] as Array<Record<string, number>>, fourCalls: [] as Array<Record<string, number>> };
        for (let run = -2; run < R; run++) {
          // alternate which goes first; the two warm-up runs (run < 0) are discarded
          const order: Array<'one' | 'four'> = run % 2 === 0 ? ['one', 'four'] : ['four', 'one'];
          for (const which of order) {
            const r = await cold(which === 'one' ? one : four);
            if (run < 0) continue;
            c[which].push(r.ms);
            c[which === 'one' ? 'oneCalls' : 'fourCalls'].push(r.calls);
          }
          if (run >= 0) log(`[+${delayMs} ms a call] cold run ${run + 1}/${R}: 1 version ${c.one.at(-1)!.toFixed(2)} ms, 4 versions ${c.four.at(-1)!.toFixed(2)} ms`);
        }
        const oneVersionMs = median(c.one);
        const fourVersionsMs = median(c.four);
        const extraMs = fourVersionsMs - oneVersionMs;
        const coldStart = {
          runs: R,
          oneVersionMs: round(oneVersionMs),
          fourVersionsMs: round(fourVersionsMs),
          extraMs: round(extraMs),
          kmsRoundTripMs: round(kmsRoundTripMs),
          extraRoundTrips: round(extraMs / kmsRoundTripMs),
          // each run's two cold starts ran back to back: less moved by load that drifts over the suite
          extraMsMedianOfRuns: round(median(c.four.map((f, run) => f - c.one[run]!))),
          target: '<= 1',
          pass: extraMs / kmsRoundTripMs <= 1,
          decryptsPerColdRun: { oneVersion: sameOrAll(c.oneCalls.map((x) => ({ Decrypt: x.Decrypt ?? 0 }))), fourVersions: sameOrAll(c.fourCalls.map((x) => ({ Decrypt: x.Decrypt ?? 0 }))) },
          kmsCallsPerColdRun: { oneVersion: sameOrAll(c.oneCalls), fourVersions: sameOrAll(c.fourCalls) },
        };
        return { server, coldStart };
      } finally {
        moto.setDelay(0);
      }
    };
    const loopback = await measure(0);
    const delayed = await measure(NETWORK_DELAY_MS);

    // steady state: the same table and rows in the main database (environment key) and the 4-version one (KMS)
    mainTables = true;
    await prepareTables(sql, master, STEADY_ROWS, (line) => log(`env: ${line}`));
    await prepareTables(four, setup, STEADY_ROWS, (line) => log(`kms: ${line}`));
    const envPool = postgres(url, { max: CLIENTS + 1, onnotice: () => {} });
    pools.push(envPool);
    const kmsPool = pool(names.four, CLIENTS + 1);
    const envSeal = pgseal({ sql: envPool, masterKey: master });
    closers.push(() => envSeal.keyring.close()); // not close(): ctx.master is the bench's own
    const kmsSeal = pgseal({ sql: kmsPool, masterKey: awsKmsMasterKey({ keyId, endpoint: moto.endpoint, region, credentials }) });
    closers.push(() => kmsSeal.close()); // closes its provider too
    const sides: Array<['env' | 'kms', Table<typeof def>]> = [['env', envSeal.table(def)], ['kms', kmsSeal.table(def)]];
    const id = (i: number) => 1 + ((i * 7919) % STEADY_ROWS);
    const [expected] = await envPool`select id, name, email, phone, tax_code from bench_plain where id = 4242`;
    for (const [name, table] of sides) {
      if (JSON.stringify(await table.findByPk(4242)) !== JSON.stringify(expected)) throw new Error(`kms bench: the ${name} side returned another row`);
    }
    for (let k = 0; k < 2; k++) for (const [, table] of sides) await throughput((i) => table.findByPk(id(i)), 300);
    moto.reset();
    const s = { env: [] as number[], kms: [] as number[] };
    for (let run = 0; run < R; run++) {
      for (const [name, table] of run % 2 === 0 ? sides : [...sides].reverse()) s[name].push(await throughput((i) => table.findByPk(id(i)), STEADY_MS));
      log(`steady run ${run + 1}/${R}: env ${s.env.at(-1)!.toFixed(0)}, kms ${s.kms.at(-1)!.toFixed(0)} reads/s`);
    }
    const envReadsPerSec = median(s.env);
    const kmsReadsPerSec = median(s.kms);
    const steadyState = {
      rows: STEADY_ROWS,
      clients: CLIENTS,
      runs: R,
      envReadsPerSec: Math.round(envReadsPerSec),
      kmsReadsPerSec: Math.round(kmsReadsPerSec),
      ratio: ratio(kmsReadsPerSec, envReadsPerSec),
      // each run's two sides ran back to back: less moved by load that drifts over the suite
      medianOfRunRatios: ratio(median(s.kms.map((k, run) => k / s.env[run]!)), 1),
      target: '>= 0.98',
      pass: kmsReadsPerSec / envReadsPerSec >= 0.98,
      decryptsDuringSteadyState: moto.count('Decrypt'),
      kmsCallsDuringSteadyState: snapshot(moto),
    };
    return { loopback, networkDelay: { delayMsPerCall: NETWORK_DELAY_MS, ...delayed }, steadyState };
  } finally {
    for (const close of closers) await close();
    for (const p of providers) p.close();
    for (const p of pools) await p.end({ timeout: 5 });
    if (mainTables) {
      await sql`drop table if exists bench_plain`;
      await sql`drop table if exists bench_enc`;
    }
    for (const name of created) await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end({ timeout: 5 });
    await moto.stop();
  }
}
