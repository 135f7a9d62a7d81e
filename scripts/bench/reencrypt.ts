// Re-encryption throughput: the engine (batched, checkpointed, in-database) against a plain
// `UPDATE t SET c = c` over the same rows (the baseline: the cost of rewriting every row),
// with one and two workers; and the CLI's peak memory at N and 2N rows (it must not grow
// with the table: no row travels to the client).

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Sql } from 'postgres';
import { protectColumn } from '../../src/registry/protect.js';
import { rotateKey } from '../../src/keys/registry.js';
import { reencrypt } from '../../src/reencrypt/run.js';
import { withKeys } from '../../src/exec/transaction.js';
import { median, ratio, type BenchContext } from './common.js';

const TABLE = 'pgseal_bench_reencrypt';
const BIN = fileURLToPath(new URL('../../bin/pgseal.js', import.meta.url));

async function fill(ctx: BenchContext, rows: number): Promise<void> {
  const { sql, keyring } = ctx;
  await sql.unsafe(`drop table if exists ${TABLE}`);
  await sql.unsafe(`delete from pgseal.columns where table_name = '${TABLE}'`);
  await sql.unsafe(`create table ${TABLE} (id int primary key, email bytea)`);
  await protectColumn(sql, { table: TABLE, column: 'email' });
  await withKeys(sql, keyring, (tx) => tx.unsafe(`
    insert into ${TABLE} select i, pgseal.encrypt_text('utente' || i || '@example.it', 'public.${TABLE}.email')
      from generate_series(1, ${rows}) as i`));
  await sql.unsafe(`vacuum analyze ${TABLE}`);
}

/** Time of `work` after a VACUUM, so every measurement starts from the same table state. */
async function timed(sql: Sql, work: () => Promise<unknown>): Promise<number> {
  await sql.unsafe(`vacuum ${TABLE}`);
  await sql.unsafe('checkpoint');
  const t0 = performance.now();
  await work();
  return performance.now() - t0;
}

/** Runs the CLI to completion and returns the peak RSS it reports. */
function cliPeakRss(url: string, masterKey: string, workers: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'reencrypt', '--table', TABLE, '--workers', String(workers), '--json'], {
      env: { PATH: process.env.PATH, DATABASE_URL: url, PGSEAL_MASTER_KEY: masterKey },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`pgseal reencrypt exited ${code}`));
      const last = JSON.parse(out.trim().split('\n').at(-1)!) as { peak_rss_bytes: number };
      resolve(last.peak_rss_bytes);
    });
  });
}

export async function benchReencrypt(ctx: BenchContext & { masterKeyText: string }) {
  const { sql, keyring, master, rows, runs, log, url } = ctx;
  log(`preparing ${rows.toLocaleString('en')} rows...`);
  await fill(ctx, rows);
  const times: Record<string, number[]> = { plain_update: [], single_statement: [], workers_1: [], workers_2: [] };
  const rotate = async () => {
    await rotateKey(sql, master);
    await keyring.refresh();
  };
  for (let run = 0; run < runs; run++) {
    times.plain_update!.push(await timed(sql, () => sql.unsafe(`update ${TABLE} set email = email`)));
    // the whole table in one statement: no batches, no checkpoints (what the engine improves on for safety)
    await rotate();
    const [{ v }] = (await sql`select max(version) as v from pgseal.keys where scope = 'default' and purpose = 'data' and state = 'decrypt-only'`) as unknown as [{ v: number }];
    times.single_statement!.push(await timed(sql, () => withKeys(sql, keyring, (tx) => tx.unsafe(
      `update ${TABLE} set email = pgseal.reseal_with(email, 'public.${TABLE}.email', k.keyset, k.material)
         from (select pgseal._keyset_of(array[$1::int]) as keyset, pgseal._active_material('default') as material offset 0) as k
        where pgseal.key_version_of(email) = $1`, [v]))));
    for (const workers of [1, 2]) {
      await rotate();
      const ms = await timed(sql, () => reencrypt(sql, keyring, { table: TABLE, workers }));
      times[`workers_${workers}`]!.push(ms);
    }
    log(`run ${run + 1}: ${Object.entries(times).map(([k, v]) => `${k} ${(v.at(-1)! / 1000).toFixed(2)} s`).join(', ')}`);
  }
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  log('measuring the CLI\'s peak memory at N and 2N rows...');
  await rotate();
  const rssN = await cliPeakRss(url, ctx.masterKeyText, 2);
  await fill(ctx, rows * 2);
  await rotate();
  const rss2N = await cliPeakRss(url, ctx.masterKeyText, 2);
  await sql.unsafe(`drop table ${TABLE}`);
  await sql.unsafe(`delete from pgseal.columns where table_name = '${TABLE}'`);
  return {
    rows,
    seconds: Object.fromEntries(Object.entries(m).map(([k, v]) => [k, Math.round(v) / 1000])),
    ratio_vs_plain_update: {
      single_statement: ratio(m.single_statement!, m.plain_update!),
      workers_1: ratio(m.workers_1!, m.plain_update!),
      workers_2: ratio(m.workers_2!, m.plain_update!),
    },
    workers_2_speedup: ratio(m.workers_1!, m.workers_2!),
    cli_peak_rss_mib: { [rows]: Math.round(rssN / 2 ** 20), [rows * 2]: Math.round(rss2N / 2 ** 20) },
    cli_peak_rss_ratio_2n_vs_n: ratio(rss2N, rssN),
  };
}
