// The Kysely adapter against the typed helpers in client mode, same run, same pool of
// connections, same keyring: primary-key lookups and lookups by the searchable email (8
// concurrent clients) on bench_enc (email searchable, phone and tax_code encrypted, column
// context, default scope). Both seal and open in Node through one ClientCrypto; what differs
// is the query builder, the plugin's rewrite and the postgres.js dialect (a reserved
// connection per query). Kysely without the plugin, on the plaintext copy and on the
// encrypted table read as ciphertext, shows what Kysely and its dialect cost by themselves.

import { performance } from 'node:perf_hooks';
import { Kysely } from 'kysely';
import { PostgresJSDialect } from 'kysely-postgres-js';
import postgres from 'postgres';
import { pgsealKysely, type KyselyDatabase } from '../../src/adapters/kysely.js';
import { ClientCrypto } from '../../src/exec/client-side.js';
import { KeyedExecutor } from '../../src/exec/executor.js';
import { Table } from '../../src/helpers/table.js';
import { Keyring } from '../../src/keys/keyring.js';
import { median, ratio, type BenchContext } from './common.js';
import { CLIENTS, def, prepareTables, throughput } from './helpers.js';

type DB = KyselyDatabase<{ bench_enc: typeof def }> & { bench_plain: { id: number; name: string; email: string; phone: string; tax_code: string } };

const COLUMNS = ['id', 'name', 'email', 'phone', 'tax_code'] as const;

export async function benchKysely({ sql, url, master, runs, log }: BenchContext) {
  const rows = 100_000;
  await prepareTables(sql, master, rows, (line) => log(`kysely: ${line}`));
  // one pool for every side; Kysely's dialect borrows it (never destroyed here: it would end the pool)
  const pool = postgres(url, { max: CLIENTS, onnotice: () => {} });
  const ring = new Keyring(pool, master);
  const executor = new KeyedExecutor(pool, ring);
  const crypto = new ClientCrypto(ring);
  const table = new Table(executor, def, { crypto: 'client', client: crypto });
  const plugin = await pgsealKysely({ sql: pool, keyring: ring, executor, crypto }, { tables: [def] });
  const dialect = () => new PostgresJSDialect({ postgres: pool });
  const sealed = new Kysely<DB>({ dialect: dialect(), plugins: [plugin] });
  const plain = new Kysely<DB>({ dialect: dialect() });
  const id = (i: number) => 1 + ((i * 7919) % rows);
  const email = (i: number) => `utente${id(i)}@example.it`;
  try {
    // correctness first: every side returns the same row
    const expected = JSON.stringify(await table.findByPk(4242));
    const byPk = await sealed.selectFrom('bench_enc').select(COLUMNS).where('id', '=', 4242).executeTakeFirst();
    const byEmail = await sealed.selectFrom('bench_enc').select(COLUMNS).where('email', '=', 'UTENTE4242@example.it').execute();
    const helpersByEmail = await table.findBy('email', 'utente4242@example.it');
    const plainRow = await plain.selectFrom('bench_plain').select(COLUMNS).where('id', '=', 4242).executeTakeFirst();
    for (const [what, got] of [['pk', byPk], ['email', byEmail[0]], ['helpers email', helpersByEmail[0]], ['plain', plainRow]] as const) {
      if (JSON.stringify(got) !== expected) throw new Error(`kysely bench: the ${what} lookup returned another row`);
    }
    const lookups: Array<[string, (i: number) => Promise<unknown>]> = [
      ['pk_helpers_client', (i) => table.findByPk(id(i))],
      ['pk_kysely', (i) => sealed.selectFrom('bench_enc').select(COLUMNS).where('id', '=', id(i)).executeTakeFirst()],
      ['pk_kysely_plaintext_table', (i) => plain.selectFrom('bench_plain').select(COLUMNS).where('id', '=', id(i)).executeTakeFirst()],
      ['pk_kysely_ciphertext_unopened', (i) => plain.selectFrom('bench_enc').select(COLUMNS).where('id', '=', id(i)).executeTakeFirst()],
      ['search_helpers_client', (i) => table.findBy('email', email(i))],
      ['search_kysely', (i) => sealed.selectFrom('bench_enc').select(COLUMNS).where('email', '=', email(i)).execute()],
      ['search_kysely_plaintext_table', (i) => plain.selectFrom('bench_plain').select(COLUMNS).where('email', '=', email(i)).execute()],
    ];
    for (const [, op] of lookups) await throughput(op, 300);
    const t: Record<string, number[]> = Object.fromEntries(lookups.map(([name]) => [name, []]));
    const seconds = 2_000;
    for (let run = 0; run < runs; run++) {
      // a phase's place in the run moves its result on this machine: rotate the order every run
      for (let k = 0; k < lookups.length; k++) {
        const [name, op] = lookups[(k + run) % lookups.length]!;
        t[name]!.push(await throughput(op, seconds));
      }
      log(`run ${run + 1}/${runs}: ` + Object.entries(t).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)}`).join(', ') + ' (ops/s)');
    }
    const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)])) as Record<string, number>;
    const pk = m.pk_kysely! / m.pk_helpers_client!;
    const search = m.search_kysely! / m.search_helpers_client!;
    return {
      clients: CLIENTS,
      ops_per_second: Object.fromEntries(lookups.map(([name]) => [name, Math.round(m[name]!)])),
      ratios: {
        pk_lookup_vs_helpers_client: ratio(m.pk_kysely!, m.pk_helpers_client!),
        search_lookup_vs_helpers_client: ratio(m.search_kysely!, m.search_helpers_client!),
      },
      // Kysely and its dialect by themselves (no plugin: the plaintext table, and the encrypted one read as ciphertext)
      references: {
        kysely_plaintext_pk_vs_helpers_client: ratio(m.pk_kysely_plaintext_table!, m.pk_helpers_client!),
        pk_kysely_vs_kysely_ciphertext_unopened: ratio(m.pk_kysely!, m.pk_kysely_ciphertext_unopened!),
        pk_kysely_vs_kysely_plaintext: ratio(m.pk_kysely!, m.pk_kysely_plaintext_table!),
        search_kysely_vs_kysely_plaintext: ratio(m.search_kysely!, m.search_kysely_plaintext_table!),
      },
      targets: { pk_lookup_vs_helpers_client: '>= 0.9', search_lookup_vs_helpers_client: '>= 0.9' },
      pass: { pk_lookup_vs_helpers_client: pk >= 0.9, search_lookup_vs_helpers_client: search >= 0.9 },
      seconds_per_phase: seconds / 1000,
      measured_at: new Date(performance.timeOrigin).toISOString(),
    };
  } finally {
    ring.close();
    await pool.end();
    await sql`drop table if exists bench_plain`;
    await sql`drop table if exists bench_enc`;
  }
}
