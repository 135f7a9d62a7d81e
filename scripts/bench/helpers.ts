// Typed helpers against a plaintext copy of the same table, same driver, same run:
// primary-key lookups (8 concurrent clients), lookups by a searchable column, and a
// 100,000-row listing, each with three encrypted columns; in client mode (the default:
// opened in Node) and in database mode (opened in SQL, keys as arguments).
//
// Two references, measured the same way, show what in-database decryption can reach here:
// the lookup with md5() of each value (about the cheapest function one could call per value)
// and bare pgcrypto (per value one hmac() and one decrypt_iv(), the two calls authenticated
// decryption cannot do without, with no envelope checks around them).

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import postgres from 'postgres';
import { column, defineTable } from '../../src/helpers/define.js';
import { Table } from '../../src/helpers/table.js';
import { KeyedExecutor } from '../../src/exec/executor.js';
import { Keyring } from '../../src/keys/keyring.js';
import { blindIndex } from '../../src/columns/blind-index.js';
import { protectColumn } from '../../src/registry/protect.js';
import { withKeys } from '../../src/exec/transaction.js';
import { median, ratio, type BenchContext } from './common.js';

export const def = defineTable({
  name: 'bench_enc',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    name: column.plain<string>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    phone: column.text(),
    tax_code: column.text(),
  },
});

export const CLIENTS = 8;

/** Runs `op` from CLIENTS concurrent loops for `ms`; returns operations per second. */
export async function throughput(op: (i: number) => Promise<unknown>, ms: number): Promise<number> {
  let done = 0;
  const end = performance.now() + ms;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, c) => {
      let i = c;
      while (performance.now() < end) {
        await op(i);
        i += CLIENTS;
        done++;
      }
    }),
  );
  return done / ((performance.now() - t0) / 1000);
}

/**
 * The CPU time (user + system, µs) the server processes have used so far, when they run on
 * this machine (Linux /proc); undefined otherwise. The lookups' share of the server shows
 * apart from the client, which shares this machine's cores.
 */
function serverCpu(pids: readonly number[]): (() => number) | undefined {
  const tick = 1_000_000 / 100; // USER_HZ: 100 on Linux
  const read = (pid: number): number => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * tick;
  };
  try {
    if (!pids.every((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('postgres'))) return undefined;
    return () => pids.reduce((sum, pid) => sum + read(pid), 0);
  } catch {
    return undefined; // another machine's server, or no /proc
  }
}

/** bench_plain and bench_enc: the same rows, plaintext and with three encrypted columns. */
export async function prepareTables(sql: BenchContext['sql'], master: BenchContext['master'], rows: number, log: BenchContext['log']): Promise<void> {
  log(`preparing ${rows.toLocaleString('en')} rows twice (plaintext copy and encrypted)...`);
  await sql`drop table if exists bench_plain`;
  // a second suite prepares them again: the registry must forget the dropped table (protect is idempotent)
  await sql`delete from pgseal.columns where table_schema = 'public' and table_name = 'bench_enc'`;
  await sql`drop table if exists bench_enc`;
  await sql`create table bench_plain as select i as id, 'Cliente ' || i as name, 'utente' || i || '@example.it' as email,
            '+39 347 ' || lpad(i::text, 7, '0') as phone, 'RSSMRA85T10A' || lpad((i % 1000)::text, 3, '0') || 'S' as tax_code
            from generate_series(1, ${rows}::int) i`;
  await sql`alter table bench_plain add primary key (id)`;
  await sql`create index on bench_plain (email)`;
  await sql`create table bench_enc (id int primary key, name text)`;
  for (const [c, o] of [['email', { searchable: true, normalizer: 'email' as const }], ['phone', {}], ['tax_code', {}]] as const) {
    await protectColumn(sql, { table: 'bench_enc', column: c, ...o });
  }
  const setupRing = new Keyring(sql, master);
  await withKeys(sql, setupRing, (tx) => tx`
    insert into bench_enc (id, name, email, email_bidx, phone, tax_code)
    select id, name, pgseal.encrypt_text(email, 'public.bench_enc.email'), pgseal.blind_index(email, 'email', 'public.bench_enc.email'),
           pgseal.encrypt_text(phone, 'public.bench_enc.phone'), pgseal.encrypt_text(tax_code, 'public.bench_enc.tax_code')
      from bench_plain`);
  setupRing.close();
  await sql`vacuum analyze bench_plain`;
  await sql`vacuum analyze bench_enc`;
}

export async function benchHelpers({ sql, url, master, runs, log }: BenchContext) {
  const rows = 100_000;
  await prepareTables(sql, master, rows, (line) => log(`helpers: ${line}`));

  // 8 clients: one pool of 8 connections, shared by both sides in turn.
  const pool = postgres(url, { max: CLIENTS, onnotice: () => {} });
  const ring = new Keyring(pool, master);
  const exec = new KeyedExecutor(pool, ring);
  const table = new Table(exec, def, { crypto: 'client' });
  const tableDb = new Table(exec, def, { crypto: 'database' });
  const id = (i: number) => 1 + ((i * 7919) % rows);
  const email = (i: number) => `utente${id(i)}@example.it`;
  let keyset: Buffer | undefined;
  try {
    // correctness first: both sides return the same row
    const [p] = await pool`select id, name, email, phone, tax_code from bench_plain where id = 4242`;
    const e = await table.findByPk(4242);
    const d = await tableDb.findByPk(4242);
    if (JSON.stringify(p) !== JSON.stringify(e) || JSON.stringify(p) !== JSON.stringify(d)) throw new Error('helpers bench: encrypted and plaintext rows differ');
    // the references: the same statement shape as the helpers' (keyset as a bytea parameter)
    keyset = (await ring.keyset(['default']))!;
    const indexKey = (await ring.indexKey('default'))!;
    const pgcryptoOnly = (c: string) =>
      `CASE WHEN pgseal._hmac_sha256(${c}, pg_catalog.substr($1::bytea, 37, 32)) = $1::bytea THEN NULL ELSE pg_catalog.convert_from(pgseal._aes_cbc_decrypt(` +
      `pg_catalog.substr(${c}, 23, pg_catalog.octet_length(${c}) - 54), pg_catalog.substr($1::bytea, 5, 32), pg_catalog.substr(${c}, 7, 16)), 'UTF8') END AS ${c}`;
    const pgcryptoList = `id, name, ${pgcryptoOnly('email')}, ${pgcryptoOnly('phone')}, ${pgcryptoOnly('tax_code')}`;
    const pgcryptoByPk = (i: number) => pool.unsafe(`select ${pgcryptoList} from bench_enc where id = $2`, [keyset!, id(i)] as never[], { prepare: true });
    const pgcryptoByEmail = (i: number) =>
      pool.unsafe(`select ${pgcryptoList} from bench_enc where email_bidx = $2::bytea`, [keyset, blindIndex(indexKey, email(i), 'email', 'public.bench_enc.email')] as never[], { prepare: true });
    const md5ByPk = (i: number) =>
      pool.unsafe('select id, name, md5(email) as email, md5(phone) as phone, md5(tax_code) as tax_code from bench_enc where id = $2 and $1::bytea is not null', [keyset, id(i)] as never[], { prepare: true });
    const [f] = await pgcryptoByPk(4242 - 1);
    const [fe] = await pgcryptoByEmail(4242 - 1);
    const [p2] = await pool`select id, name, email, phone, tax_code from bench_plain where id = ${id(4242 - 1)}`;
    if (JSON.stringify(f) !== JSON.stringify(p2) || JSON.stringify(fe) !== JSON.stringify(p2)) throw new Error('helpers bench: the bare pgcrypto reference did not decrypt');
    const plainByPk = (i: number) => pool`select id, name, email, phone, tax_code from bench_plain where id = ${id(i)}`;
    const encByPk = (i: number) => table.findByPk(id(i));
    const dbByPk = (i: number) => tableDb.findByPk(id(i));
    // the ceiling of any client-side crypto: the encrypted rows fetched as stored, nothing opened (the search computing its index)
    const rawByPk = (i: number) => pool`select id, name, email, phone, tax_code from bench_enc where id = ${id(i)}`;
    const rawByEmail = (i: number) => pool`select id, name, email, phone, tax_code from bench_enc where email_bidx = ${blindIndex(indexKey, email(i), 'email', 'public.bench_enc.email')}::bytea`;
    const plainByEmail = (i: number) => pool`select id, name, email, phone, tax_code from bench_plain where email = ${email(i)}`;
    const encByEmail = (i: number) => table.findBy('email', email(i));
    const dbByEmail = (i: number) => tableDb.findBy('email', email(i));
    const seconds = 2_000;
    const t: Record<string, number[]> = {
      pk_plain: [], pk_helpers: [], pk_database: [], pk_md5: [], pk_pgcrypto: [], pk_ciphertext: [], search_plain: [], search_helpers: [], search_database: [], search_pgcrypto: [], search_ciphertext: [],
      list_plain: [], list_helpers: [], list_database: [],
    };
    const lookups: Array<[string, (i: number) => Promise<unknown>]> = [
      ['pk_plain', plainByPk], ['pk_helpers', encByPk], ['pk_database', dbByPk], ['pk_md5', md5ByPk], ['pk_pgcrypto', pgcryptoByPk], ['pk_ciphertext', rawByPk],
      ['search_plain', plainByEmail], ['search_helpers', encByEmail], ['search_database', dbByEmail], ['search_pgcrypto', pgcryptoByEmail], ['search_ciphertext', rawByEmail],
    ];
    for (const [, op] of lookups) await throughput(op, 300);
    // the pool's backends (each of 8 overlapping queries holds its own connection)
    const pids = (await Promise.all(Array.from({ length: CLIENTS }, () => pool<{ pid: number }[]>`select pg_backend_pid() as pid, pg_sleep(0.05)`))).map(([r]) => r!.pid);
    const cpu = new Set(pids).size === CLIENTS ? serverCpu(pids) : undefined;
    const serverUs: Record<string, number[]> = Object.fromEntries(lookups.map(([name]) => [name, []]));
    for (let run = 0; run < runs; run++) {
      // a phase's place in the run moves its result on this machine: rotate the order every run
      const order = lookups.map((_, k) => lookups[(k + run) % lookups.length]!);
      for (const [name, op] of order) {
        const before = cpu?.();
        const t0 = performance.now();
        const rate = await throughput(op, seconds);
        t[name]!.push(rate);
        if (cpu && before !== undefined) serverUs[name]!.push((cpu() - before) / ((rate * (performance.now() - t0)) / 1000));
      }
      let t0 = performance.now();
      const listed = await pool`select id, name, email, phone, tax_code from bench_plain order by id limit ${rows}`;
      t.list_plain!.push(performance.now() - t0);
      t0 = performance.now();
      const page = await table.list({ limit: rows });
      t.list_helpers!.push(performance.now() - t0);
      t0 = performance.now();
      const pageDb = await tableDb.list({ limit: rows });
      t.list_database!.push(performance.now() - t0);
      if (listed.length !== rows || page.rows.length !== rows || pageDb.rows.length !== rows) throw new Error('helpers bench: listing returned the wrong number of rows');
      log(`run ${run + 1}/${runs}: ` + Object.entries(t).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)}`).join(', ') + ' (ops/s; listing ms)');
    }
    const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)])) as Record<string, number>;
    const values = rows * 3;
    const extraUs = ((m.list_helpers! - m.list_plain!) * 1000) / values;
    const extraDbUs = ((m.list_database! - m.list_plain!) * 1000) / values;
    const cpuUs = cpu ? Object.fromEntries(lookups.map(([name]) => [name, median(serverUs[name]!)])) : undefined;
    const cpuRatio = cpuUs ? cpuUs.pk_helpers! / cpuUs.pk_plain! : undefined;
    return {
      clients: CLIENTS,
      ops_per_second: Object.fromEntries(lookups.map(([name]) => [name, Math.round(m[name]!)])),
      listing_ms: { plain: Math.round(m.list_plain!), helpers: Math.round(m.list_helpers!), database_mode: Math.round(m.list_database!), rows, encrypted_values: values },
      ratios: {
        // client mode, the default
        pk_lookup_vs_plain: ratio(m.pk_helpers!, m.pk_plain!),
        search_lookup_vs_plain: ratio(m.search_helpers!, m.search_plain!),
        listing_extra_us_per_value: Math.round(extraUs * 1000) / 1000,
        ...(cpuRatio !== undefined ? { pk_server_cpu_vs_plain: Math.round(cpuRatio * 1000) / 1000 } : {}),
        // database mode, beside them
        pk_lookup_database_mode_vs_plain: ratio(m.pk_database!, m.pk_plain!),
        search_lookup_database_mode_vs_plain: ratio(m.search_database!, m.search_plain!),
        listing_database_mode_extra_us_per_value: Math.round(extraDbUs * 1000) / 1000,
        ...(cpuUs ? { pk_server_cpu_database_mode_vs_plain: Math.round((cpuUs.pk_database! / cpuUs.pk_plain!) * 1000) / 1000 } : {}),
      },
      // server CPU per lookup (µs), when the server runs here: the cost apart from the client
      ...(cpuUs ? { server_cpu_us_per_lookup: Object.fromEntries(Object.entries(cpuUs).map(([name, us]) => [name, Math.round(us * 10) / 10])) } : {}),
      // what in-database decryption can reach here (see the top of this file)
      references: {
        pk_md5_vs_plain: ratio(m.pk_md5!, m.pk_plain!),
        pk_bare_pgcrypto_vs_plain: ratio(m.pk_pgcrypto!, m.pk_plain!),
        search_bare_pgcrypto_vs_plain: ratio(m.search_pgcrypto!, m.search_plain!),
        pk_helpers_vs_bare_pgcrypto: ratio(m.pk_helpers!, m.pk_pgcrypto!),
        search_helpers_vs_bare_pgcrypto: ratio(m.search_helpers!, m.search_pgcrypto!),
        // what client-side crypto can reach here: the ciphertext fetched and nothing opened
        pk_ciphertext_fetch_vs_plain: ratio(m.pk_ciphertext!, m.pk_plain!),
        search_ciphertext_fetch_vs_plain: ratio(m.search_ciphertext!, m.search_plain!),
        pk_helpers_vs_ciphertext_fetch: ratio(m.pk_helpers!, m.pk_ciphertext!),
        search_helpers_vs_ciphertext_fetch: ratio(m.search_helpers!, m.search_ciphertext!),
      },
      targets: { pk_lookup_vs_plain: '>= 0.85', search_lookup_vs_plain: '>= 0.8', listing_extra_us_per_value: '<= 2', pk_server_cpu_vs_plain: '<= 1.15' },
      pass: {
        pk_lookup_vs_plain: m.pk_helpers! / m.pk_plain! >= 0.85,
        search_lookup_vs_plain: m.search_helpers! / m.search_plain! >= 0.8,
        listing_extra_us_per_value: extraUs <= 2,
        ...(cpuRatio !== undefined ? { pk_server_cpu_vs_plain: cpuRatio <= 1.15 } : {}),
      },
    };
  } finally {
    keyset?.fill(0);
    ring.close();
    await pool.end();
    await sql`drop table if exists bench_plain`;
    await sql`drop table if exists bench_enc`;
  }
}
