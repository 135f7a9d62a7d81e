// The Drizzle adapter against the typed helpers in client mode, same run, same pool, same
// table (bench_enc: email searchable, phone and tax_code encrypted): primary-key lookups and
// lookups by the searchable column from 8 concurrent clients. Both seal and open in Node
// with the same ClientCrypto; what differs is the statement: drizzle's query builder renders
// its SQL on every call (the helpers compile theirs once), which a prepared drizzle query
// (`.prepare()` with placeholders) does once. Both forms are measured.

import { eq, sql as placeholders } from 'drizzle-orm';
import { customType, integer, pgTable, text } from 'drizzle-orm/pg-core';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { encrypted, match, pgsealDrizzle } from '../../src/adapters/drizzle.js';
import { ClientCrypto } from '../../src/exec/client-side.js';
import { KeyedExecutor } from '../../src/exec/executor.js';
import { Table } from '../../src/helpers/table.js';
import { Keyring } from '../../src/keys/keyring.js';
import { median, ratio, type BenchContext } from './common.js';
import { CLIENTS, def, prepareTables, throughput } from './helpers.js';

const benchEnc = pgTable('bench_enc', {
  id: integer('id').primaryKey(),
  name: text('name'),
  email: encrypted.text('email', { searchable: true, normalize: 'email' }),
  emailBidx: encrypted.blindIndex('email_bidx'),
  phone: encrypted.text('phone'),
  taxCode: encrypted.text('tax_code'),
});

// the reference: the same table for drizzle without pgseal, the stored bytes as they are
const bytes = customType<{ data: Buffer }>({ dataType: () => 'bytea' });
const benchBytes = pgTable('bench_enc', { id: integer('id').primaryKey(), name: text('name'), email: bytes('email'), phone: bytes('phone'), taxCode: bytes('tax_code') });
const bytesColumns = { id: benchBytes.id, name: benchBytes.name, email: benchBytes.email, phone: benchBytes.phone, tax_code: benchBytes.taxCode };

// the columns the helpers return (drizzle's select() would add the blind index)
const columns = { id: benchEnc.id, name: benchEnc.name, email: benchEnc.email, phone: benchEnc.phone, tax_code: benchEnc.taxCode };

export async function benchDrizzle({ sql, url, master, runs, log }: BenchContext) {
  const rows = 100_000;
  await prepareTables(sql, master, rows, (line) => log(`drizzle: ${line}`));

  // one pool of 8 connections, one keyring, one ClientCrypto: shared by both sides in turn
  const pool = postgres(url, { max: CLIENTS, onnotice: () => {} });
  const ring = new Keyring(pool, master);
  const executor = new KeyedExecutor(pool, ring);
  const crypto = new ClientCrypto(ring);
  const helpers = new Table(executor, def, { crypto: 'client', client: crypto });
  const id = (i: number) => 1 + ((i * 7919) % rows);
  const email = (i: number) => `utente${id(i)}@example.it`;
  try {
    const db = await pgsealDrizzle({ sql: pool, keyring: ring, executor, crypto }, drizzle(pool));
    // correctness first: both sides return the same row, by key and by email
    const h = await helpers.findByPk(4242);
    const [byPk] = await db.select(columns).from(benchEnc).where(eq(benchEnc.id, 4242));
    const [byEmail] = await db.select(columns).from(benchEnc).where(match(benchEnc.email, 'UTENTE4242@example.it'));
    if (JSON.stringify(h) !== JSON.stringify(byPk) || JSON.stringify(h) !== JSON.stringify(byEmail)) throw new Error('drizzle bench: the adapter and the helpers return different rows');

    const bare = drizzle(pool);
    const pkPrepared = db.select(columns).from(benchEnc).where(eq(benchEnc.id, placeholders.placeholder('id'))).prepare('bench_pk');
    const searchPrepared = db.select(columns).from(benchEnc).where(match(benchEnc.email, placeholders.placeholder('email'))).prepare('bench_search');
    const [prepared] = await searchPrepared.execute({ email: 'UTENTE4242@example.it' });
    if (JSON.stringify(h) !== JSON.stringify(prepared)) throw new Error('drizzle bench: the prepared lookup returns a different row');

    const lookups: Array<[string, (i: number) => Promise<unknown>]> = [
      ['pk_helpers_client', (i) => helpers.findByPk(id(i))],
      ['pk_drizzle', (i) => db.select(columns).from(benchEnc).where(eq(benchEnc.id, id(i)))],
      ['pk_drizzle_prepared', (i) => pkPrepared.execute({ id: id(i) })],
      // drizzle alone, no decryption: its SQL rendered on every call, prepared on the wire (one round trip)
      ['pk_bare_drizzle', (i) => bare.select(bytesColumns).from(benchBytes).where(eq(benchBytes.id, id(i))).prepare('bench_bare').execute()],
      ['search_helpers_client', (i) => helpers.findBy('email', email(i))],
      ['search_drizzle', (i) => db.select(columns).from(benchEnc).where(match(benchEnc.email, email(i)))],
      ['search_drizzle_prepared', (i) => searchPrepared.execute({ email: email(i) })],
    ];
    for (const [, op] of lookups) await throughput(op, 300);
    const t: Record<string, number[]> = Object.fromEntries(lookups.map(([name]) => [name, []]));
    const seconds = 2_000;
    for (let run = 0; run < runs; run++) {
      // a phase's place in the run moves its result on this machine: rotate the order every run
      const order = lookups.map((_, k) => lookups[(k + run) % lookups.length]!);
      for (const [name, op] of order) t[name]!.push(await throughput(op, seconds));
      log(`run ${run + 1}/${runs}: ` + Object.entries(t).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)}`).join(', ') + ' (ops/s)');
    }
    const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)])) as Record<string, number>;
    // one client, one call at a time: this process's CPU per lookup (µs), where the difference lies
    const cpu: Record<string, number> = {};
    for (const [name, op] of lookups) {
      const before = process.cpuUsage();
      for (let i = 0; i < 2000; i++) await op(i);
      const used = process.cpuUsage(before);
      cpu[name] = Math.round((used.user + used.system) / 2000);
    }
    const r = (a: string, b: string) => m[a]! / m[b]!;
    return {
      clients: CLIENTS,
      ops_per_second: Object.fromEntries(lookups.map(([name]) => [name, Math.round(m[name]!)])),
      node_cpu_us_per_lookup: cpu,
      ratios: {
        pk_lookup_vs_helpers_client: ratio(m.pk_drizzle!, m.pk_helpers_client!),
        search_lookup_vs_helpers_client: ratio(m.search_drizzle!, m.search_helpers_client!),
        pk_prepared_vs_helpers_client: ratio(m.pk_drizzle_prepared!, m.pk_helpers_client!),
        search_prepared_vs_helpers_client: ratio(m.search_drizzle_prepared!, m.search_helpers_client!),
      },
      // what drizzle's query builder costs by itself, and what the adapter adds to it (decryption included)
      references: {
        pk_bare_drizzle_vs_helpers_client: ratio(m.pk_bare_drizzle!, m.pk_helpers_client!),
        pk_drizzle_vs_bare_drizzle: ratio(m.pk_drizzle!, m.pk_bare_drizzle!),
      },
      targets: { pk_lookup_vs_helpers_client: '>= 0.9', search_lookup_vs_helpers_client: '>= 0.9', pk_prepared_vs_helpers_client: '>= 0.9', search_prepared_vs_helpers_client: '>= 0.9' },
      pass: {
        pk_lookup_vs_helpers_client: r('pk_drizzle', 'pk_helpers_client') >= 0.9,
        search_lookup_vs_helpers_client: r('search_drizzle', 'search_helpers_client') >= 0.9,
        pk_prepared_vs_helpers_client: r('pk_drizzle_prepared', 'pk_helpers_client') >= 0.9,
        search_prepared_vs_helpers_client: r('search_drizzle_prepared', 'search_helpers_client') >= 0.9,
      },
    };
  } finally {
    ring.close();
    await pool.end();
    await sql`drop table if exists bench_plain`;
    await sql`drop table if exists bench_enc`;
  }
}
