// npm run bench [-- --suite all|envelope|helpers|rewrite|reencrypt|access-log|node-envelope|drizzle|kysely|kms --rows N --runs R --set name=value --json --out FILE]
//
// Every figure is a ratio against a baseline measured in the same run:
//   envelope: decrypt_text / encrypt_text against pgcrypto's primitives composed inline
//             (the floor), with md5() and a plain read for scale (scripts/bench/envelope.ts);
//   helpers:  typed-helper lookups and listing against a plaintext copy of the table with
//             the same driver (scripts/bench/helpers.ts);
//   rewrite:  the SQL rewriter's cost per cached call (scripts/bench/rewrite.ts);
//   reencrypt: the re-encryption engine against a plain `UPDATE t SET c = c`, with 1 and 2
//             workers, and the CLI's peak memory at N and 2N rows (scripts/bench/reencrypt.ts);
//   access-log: primary-key reads through the helpers with the async and the sync access log
//             against the same reads without one (scripts/bench/access-log.ts);
//   node-envelope: seal / open in Node against @47ng/cloak's encrypt / decrypt on the same
//             short values, no database (scripts/bench/node-envelope.ts);
//   drizzle, kysely: the ORM adapters' lookups against the typed helpers in client mode on
//             the same table and pool (scripts/bench/drizzle.ts, scripts/bench/kysely.ts);
//   kms:      the AWS KMS master key against moto_server on loopback: a cold start with 4 key
//             versions against one with 1 (in KMS round trips), and helper reads against the
//             same reads with the environment key (scripts/bench/kms.ts; skipped without moto).
// Each measurement runs R times, interleaved; the median counts. Writes the figures to
// bench-results.json (or --out) and prints them; --json prints only the JSON object.
// Uses PGSEAL_BENCH_DATABASE_URL when set (the bench creates and drops its own table
// there; kms also two databases of its own on that server, so the role needs CREATEDB),
// otherwise an embedded PostgreSQL.

import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import postgres, { type Sql } from 'postgres';
import { LocalMasterKey } from '../src/keys/master-key.js';
import { initKeys } from '../src/keys/registry.js';
import { Keyring } from '../src/keys/keyring.js';
import { migrate } from '../src/migrate.js';
import { startPostgres, type RunningPostgres } from './lib/embedded-postgres.js';
import { benchEnvelope } from './bench/envelope.js';
import { benchHelpers } from './bench/helpers.js';
import { benchRewrite } from './bench/rewrite.js';
import { benchReencrypt } from './bench/reencrypt.js';
import { benchAccessLog } from './bench/access-log.js';
import { benchNodeEnvelope } from './bench/node-envelope.js';
import { benchDrizzle } from './bench/drizzle.js';
import { benchKysely } from './bench/kysely.js';
import { benchKms } from './bench/kms.js';

interface Args {
  suite: 'all' | 'envelope' | 'helpers' | 'rewrite' | 'reencrypt' | 'access-log' | 'node-envelope' | 'drizzle' | 'kysely' | 'kms';
  settings: Record<string, string>;
  rows: number;
  runs: number;
  json: boolean;
  out: string;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { suite: 'all', rows: 1_000_000, runs: 5, json: false, out: 'bench-results.json', settings: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--rows') args.rows = Number(argv[++i]);
    else if (a === '--runs') args.runs = Number(argv[++i]);
    else if (a === '--out') args.out = String(argv[++i]);
    else if (a === '--json') args.json = true;
    else if (a === '--suite') args.suite = String(argv[++i]) as Args['suite'];
    else if (a === '--set') {
      const [k, v] = String(argv[++i]).split('=');
      args.settings[k!] = v ?? '';
    }
    else throw new Error(`unknown argument ${a} (use --suite all|envelope|helpers|rewrite|reencrypt|access-log|node-envelope|drizzle|kysely|kms --rows N --runs R --set name=value --json --out FILE)`);
  }
  return args;
}


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
  const sql: Sql = postgres(url, { onnotice: () => {}, max: 4, connection: args.settings });
  const masterKeyText = randomBytes(32).toString('base64');
  const master = new LocalMasterKey(Buffer.from(masterKeyText, 'base64'));
  const keyring = new Keyring(sql, master);
  try {
    await migrate({ databaseUrl: url, direction: 'up' });
    const [{ n }] = (await sql`select count(*)::int as n from pgseal.keys where scope = 'default' and state = 'active'`) as unknown as [{ n: number }];
    if (n > 0) throw new Error('the bench database already has pgseal keys: point PGSEAL_BENCH_DATABASE_URL at an empty database');
    await initKeys(sql, master);
    const [{ server_version }] = (await sql`show server_version`) as unknown as [{ server_version: string }];
    const [{ jit }] = (await sql`select current_setting('jit') as jit`) as unknown as [{ jit: string }];
    log(`PostgreSQL ${server_version}; ${args.rows.toLocaleString('en')} emails; ${args.runs} runs each, median; jit=${jit}`);

    const ctx = { sql, url, keyring, master, rows: args.rows, runs: args.runs, log };
    const result: Record<string, unknown> = { postgres: server_version, jit, settings: args.settings, rows: args.rows, runs: args.runs };
    if (args.suite === 'all' || args.suite === 'envelope') {
      log('== envelope');
      result.envelope = await benchEnvelope(ctx);
    }
    if (args.suite === 'all' || args.suite === 'helpers') {
      log('== helpers');
      result.helpers = await benchHelpers(ctx);
    }
    if (args.suite === 'all' || args.suite === 'rewrite') {
      log('== rewrite');
      result.rewrite = await benchRewrite(ctx);
    }
    if (args.suite === 'all' || args.suite === 'reencrypt') {
      log('== reencrypt');
      result.reencrypt = await benchReencrypt({ ...ctx, masterKeyText });
    }
    if (args.suite === 'all' || args.suite === 'access-log') {
      log('== access log');
      result.accessLog = await benchAccessLog(ctx);
    }
    if (args.suite === 'all' || args.suite === 'node-envelope') {
      log('== node envelope');
      result.nodeEnvelope = await benchNodeEnvelope(ctx);
    }
    if (args.suite === 'all' || args.suite === 'drizzle') {
      log('== drizzle adapter');
      result.drizzle = await benchDrizzle(ctx);
    }
    if (args.suite === 'all' || args.suite === 'kysely') {
      log('== kysely adapter');
      result.kysely = await benchKysely(ctx);
    }
    // last: it starts moto_server and creates two databases of its own
    if (args.suite === 'all' || args.suite === 'kms') {
      log('== kms master key');
      result.kms = await benchKms(ctx);
    }
    writeFileSync(args.out, JSON.stringify(result, null, 2) + '\n');
    if (args.json) {
      console.log(JSON.stringify(result));
    } else {
      console.log('\n' + JSON.stringify(result, null, 2));
      console.log(`written to ${args.out}`);
    }
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
