// npm run bench [-- --rows N --runs R --json --out FILE]
//
// Envelope throughput against pgcrypto's own primitives composed inline in one SELECT
// (the floor), measured in the same run on the same rows, with md5() and a plain read
// for scale. Each query runs R times, interleaved; the median counts. Writes the figures
// to bench-results.json (or --out) and prints them; --json prints only the JSON object.
// Uses PGSEAL_BENCH_DATABASE_URL when set (the bench creates and drops its own table
// there), otherwise an embedded PostgreSQL.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import postgres, { type Sql, type TransactionSql } from 'postgres';
import { LocalMasterKey } from '../src/keys/master-key.js';
import { initKeys } from '../src/keys/registry.js';
import { Keyring } from '../src/keys/keyring.js';
import { migrate } from '../src/migrate.js';
import { withKeys } from '../src/transaction.js';
import { startPostgres, type RunningPostgres } from './lib/embedded-postgres.js';

interface Args {
  settings: Record<string, string>;
  rows: number;
  runs: number;
  json: boolean;
  out: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { rows: 1_000_000, runs: 5, json: false, out: 'bench-results.json', settings: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rows') args.rows = Number(argv[++i]);
    else if (a === '--runs') args.runs = Number(argv[++i]);
    else if (a === '--out') args.out = String(argv[++i]);
    else if (a === '--json') args.json = true;
    else if (a === '--set') {
      const [k, v] = String(argv[++i]).split('=');
      args.settings[k!] = v ?? '';
    }
    else throw new Error(`unknown argument ${a} (use --rows N --runs R --set name=value --json --out FILE)`);
  }
  return args;
}

const CONTEXT = 'public.pgseal_bench.email';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const log = (s: string) => (args.json ? process.stderr.write(s + '\n') : console.log(s));
  let server: RunningPostgres | undefined;
  let url = process.env.PGSEAL_BENCH_DATABASE_URL;
  if (!url) {
    server = await startPostgres();
    const admin = postgres(server.url(), { onnotice: () => {}, max: 1 });
    await admin`create database pgseal_bench`;
    await admin.end();
    url = server.url('pgseal_bench');
  }
  const sql: Sql = postgres(url, { onnotice: () => {}, max: 2, connection: args.settings });
  const master = new LocalMasterKey(randomBytes(32));
  const keyring = new Keyring(sql, master);
  try {
    await migrate({ databaseUrl: url, direction: 'up' });
    const [{ n }] = (await sql`select count(*)::int as n from pgseal.keys where scope = 'default' and state = 'active'`) as unknown as [{ n: number }];
    if (n > 0) throw new Error('the bench database already has pgseal keys: point PGSEAL_BENCH_DATABASE_URL at an empty database');
    await initKeys(sql, master);
    const key = (await keyring.activeKey('default'))!;
    const [{ server_version }] = (await sql`show server_version`) as unknown as [{ server_version: string }];
    const [{ jit }] = (await sql`select current_setting('jit') as jit`) as unknown as [{ jit: string }];
    log(`PostgreSQL ${server_version}; ${args.rows.toLocaleString('en')} emails; ${args.runs} runs each, median; jit=${jit}`);

    log('preparing rows...');
    await sql`drop table if exists pgseal_bench`;
    await withKeys(sql, keyring, (tx) => tx`
      create table pgseal_bench as
      select i as id, 'utente' || i || '@example.it' as email, pgseal.encrypt_text('utente' || i || '@example.it', ${CONTEXT}) as ct
        from generate_series(1, ${args.rows}::int) as i`);
    await sql`vacuum analyze pgseal_bench`;

    const versionBytes = Buffer.alloc(4);
    versionBytes.writeUInt32BE(key.version);
    const header = Buffer.concat([Buffer.from([1, 1]), versionBytes]);
    const contextBytes = Buffer.concat([Buffer.from(CONTEXT), Buffer.from([0, 0, 0, Buffer.byteLength(CONTEXT)])]);

    // Each query runs inside a transaction that holds the keys, so all pay the same BEGIN.
    const queries: Record<string, (tx: TransactionSql) => Promise<unknown>> = {
      plain_read: (tx) => tx`select count(email) from pgseal_bench`,
      md5: (tx) => tx`select count(md5(email)) from pgseal_bench`,
      decrypt_floor: (tx) => tx`
        select count(case when hmac(substr(ct, 1, octet_length(ct) - 32) || ${contextBytes}::bytea, ${key.macKey}::bytea, 'sha256')
                               = substr(ct, octet_length(ct) - 31)
                          then convert_from(decrypt_iv(substr(ct, 23, octet_length(ct) - 54), ${key.encKey}::bytea, substr(ct, 7, 16), 'aes-cbc/pad:pkcs'), 'UTF8') end)
          from pgseal_bench`,
      decrypt_text: (tx) => tx`select count(pgseal.decrypt_text(ct, ${CONTEXT})) from pgseal_bench`,
      encrypt_floor: (tx) => tx`
        select count(hmac(${header}::bytea || iv || encrypt_iv(convert_to(email, 'UTF8'), ${key.encKey}::bytea, iv, 'aes-cbc/pad:pkcs') || ${contextBytes}::bytea,
                          ${key.macKey}::bytea, 'sha256'))
          from (select email, gen_random_bytes(16) as iv from pgseal_bench) as s`,
      encrypt_text: (tx) => tx`select count(pgseal.encrypt_text(email, ${CONTEXT})) from pgseal_bench`,
    };
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(queries).map((k) => [k, []]));
    for (const [name, q] of Object.entries(queries)) await withKeys(sql, keyring, q).catch((e: unknown) => {
      throw new Error(`${name}: ${(e as Error).message}`);
    }); // warm-up: caches, prepared statements
    for (let run = 0; run < args.runs; run++) {
      for (const [name, q] of Object.entries(queries)) {
        const t0 = performance.now();
        await withKeys(sql, keyring, q);
        times[name]!.push(performance.now() - t0);
      }
      log(`run ${run + 1}/${args.runs}: ` + Object.entries(times).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)} ms`).join(', '));
    }
    const medians = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
    const ms = (name: string): number => medians[name]!;
    const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
    const result = {
      bench: 'envelope',
      postgres: server_version,
      rows: args.rows,
      runs: args.runs,
      jit,
      settings: args.settings,
      median_ms: Object.fromEntries(Object.entries(medians).map(([k, v]) => [k, Math.round(v * 10) / 10])),
      us_per_value: Object.fromEntries(Object.entries(medians).map(([k, v]) => [k, Math.round(((v * 1000) / args.rows) * 1000) / 1000])),
      ratios: {
        decrypt_text_vs_floor: ratio(ms('decrypt_text'), ms('decrypt_floor')),
        encrypt_text_vs_floor: ratio(ms('encrypt_text'), ms('encrypt_floor')),
        decrypt_text_vs_md5: ratio(ms('decrypt_text'), ms('md5')),
        encrypt_text_vs_md5: ratio(ms('encrypt_text'), ms('md5')),
      },
      targets: { decrypt_text_vs_floor: 1.3, encrypt_text_vs_floor: 1.4 },
      pass: {
        decrypt_text_vs_floor: ms('decrypt_text') / ms('decrypt_floor') <= 1.3,
        encrypt_text_vs_floor: ms('encrypt_text') / ms('encrypt_floor') <= 1.4,
      },
    };
    writeFileSync(args.out, JSON.stringify(result, null, 2) + '\n');
    if (args.json) {
      console.log(JSON.stringify(result));
    } else {
      console.log('\nmedian ms  (us per value)');
      for (const [k, v] of Object.entries(result.median_ms)) console.log(`  ${k.padEnd(14)} ${String(v).padStart(9)}  (${result.us_per_value[k]})`);
      console.log(`\ndecrypt_text / inline floor: ${result.ratios.decrypt_text_vs_floor}x (target <= 1.3x) ${result.pass.decrypt_text_vs_floor ? 'ok' : 'MISSED'}`);
      console.log(`encrypt_text / inline floor: ${result.ratios.encrypt_text_vs_floor}x (target <= 1.4x) ${result.pass.encrypt_text_vs_floor ? 'ok' : 'MISSED'}`);
      console.log(`for scale: decrypt_text ${result.ratios.decrypt_text_vs_md5}x md5(), encrypt_text ${result.ratios.encrypt_text_vs_md5}x md5()`);
      console.log(`written to ${args.out}`);
    }
    await sql`drop table if exists pgseal_bench`;
  } finally {
    keyring.close();
    master.close();
    await sql.end({ timeout: 5 });
    await server?.stop();
  }
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${(error as Error).message}`);
  process.exitCode = 1;
});
