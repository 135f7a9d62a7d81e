// An operator (or whoever reads the server's logs) turns on everything that records what a
// statement carried: log_statement = all, log_min_duration_statement = 0 with full
// parameters, auto_explain with log_verbose and log_nested_statements, pg_stat_statements.
// An application role cannot switch these off. A client-mode workload through the typed
// helpers (writes, lookups by key and by blind index, listing, updates, deletes; fixed,
// row-bound and per-tenant columns) must leave no data key, no index key and no plaintext
// of a protected column (nor a searched value) there, in hex, base64 or as text. The same
// workload in database mode is the control: there the keys and plaintexts do reach the log,
// so the search below can find what it looks for.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { column, defineTable, initKeys, LocalMasterKey, pgseal, protectColumn, type CryptoMode, type Pgseal } from '../../src/index.js';
import { connectQuiet, createDatabase, type TestDatabase } from '../support/db.js';
import { serverLog, type ServerLog } from '../support/server-log.js';

let db: TestDatabase;
let log: ServerLog | string;
let statements: string | undefined;
const masterBytes = randomBytes(32);

const people = defineTable({
  name: 'people',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    tenant: column.plain<string>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    phone: column.text(),
    notes: column.text({ context: 'row' }),
    secret: column.text({ scopeColumn: 'tenant', searchable: true }),
  },
});

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  const master = new LocalMasterKey(Buffer.from(masterBytes));
  await initKeys(db.sql, master);
  await initKeys(db.sql, master, 'acme');
  master.close();
  await db.sql`create table people (id int primary key, tenant text not null)`;
  await protectColumn(db.sql, { table: 'people', column: 'email', searchable: true, normalizer: 'email' });
  await protectColumn(db.sql, { table: 'people', column: 'phone' });
  await protectColumn(db.sql, { table: 'people', column: 'notes', context: 'row' });
  await protectColumn(db.sql, { table: 'people', column: 'secret', scopeColumn: 'tenant', searchable: true });
  // sessions opened from now on log everything they run, with every parameter in full
  await db.sql.unsafe(`alter database "${db.name}" set log_statement = 'all'`);
  await db.sql.unsafe(`alter database "${db.name}" set log_min_duration_statement = 0`);
  await db.sql.unsafe(`alter database "${db.name}" set log_parameter_max_length = -1`);
  await db.sql.unsafe(`alter database "${db.name}" set log_parameter_max_length_on_error = -1`);
  await db.sql.unsafe(`alter database "${db.name}" set session_preload_libraries = 'auto_explain'`);
  for (const [k, v] of [['log_min_duration', '0'], ['log_verbose', 'on'], ['log_nested_statements', 'on'], ['log_analyze', 'on']]) {
    await db.sql.unsafe(`alter database "${db.name}" set auto_explain.${k} = ${v}`);
  }
  log = await serverLog(db.sql);
  const [pgss] = await db.sql<{ preloaded: boolean }[]>`select current_setting('shared_preload_libraries') like '%pg_stat_statements%' as preloaded`;
  if (pgss!.preloaded) await db.sql`create extension if not exists pg_stat_statements`;
  else statements = 'pg_stat_statements is not in shared_preload_libraries on this server: its part is skipped';
});

afterAll(async () => {
  await db?.drop();
});

/** Everything a workload could leave: its plaintexts (searched values among them) and the keys it used. */
interface Secrets {
  plaintexts: string[];
  keys: Buffer[];
}

async function workload(mode: CryptoMode, base: number): Promise<Secrets> {
  // its own connections: they start with the database's logging settings
  const sql = connectQuiet(db.url, { max: 3 });
  const seal: Pgseal = pgseal({ sql, masterKey: new LocalMasterKey(Buffer.from(masterBytes)), crypto: mode, accessLog: { mode: 'off' } });
  const tag = randomBytes(4).toString('hex');
  const value = (what: string, i: number) => `${what}-${tag}-${i}-marker`;
  const plaintexts: string[] = [];
  const keep = <T extends string>(v: T) => (plaintexts.push(v), v);
  try {
    const t = seal.table(people);
    for (let i = 0; i < 5; i++) {
      await t.insert({ id: base + i, tenant: 'acme', email: keep(`${value('mail', i)}@example.it`), phone: keep(value('phone', i)), notes: keep(value('notes', i)), secret: keep(value('secret', i)) });
    }
    await t.insertMany(Array.from({ length: 5 }, (_, k) => ({ id: base + 10 + k, tenant: 'acme', email: keep(`${value('bulk', k)}@example.it`), notes: keep(value('bulknote', k)), secret: keep(value('bulksecret', k)) })));
    expect((await t.findByPk(base + 1, { scope: 'acme' }))?.notes).toBe(value('notes', 1));
    expect(await t.findBy('email', `${value('mail', 2)}@example.it`, { scope: 'acme' })).toHaveLength(1);
    expect(await t.findBy('email', [`${value('mail', 3)}@example.it`, `${value('bulk', 1)}@example.it`], { scope: 'acme' })).toHaveLength(2);
    expect(await t.findBy('secret', value('secret', 4), { scope: 'acme' })).toHaveLength(1);
    expect((await t.list({ scope: 'acme', limit: 50 })).rows.length).toBeGreaterThanOrEqual(10);
    await t.update(base + 2, { phone: keep(value('newphone', 2)), notes: keep(value('newnotes', 2)) });
    expect(await t.delete(base + 3)).toBe(true);
    // every key this workload could have used, as the keyring holds them
    await seal.keyring.ready();
    const keys: Buffer[] = [];
    for (const { version, scope } of await seal.keyring.versions()) {
      const k = seal.keyring.loadedDataKey(version);
      if (k) keys.push(Buffer.from(k.encKey), Buffer.from(k.macKey));
      for (const ik of seal.keyring.loadedIndexKeys(scope)) keys.push(Buffer.from(ik));
    }
    return { plaintexts, keys };
  } finally {
    await seal.close();
    await sql.end({ timeout: 5 });
  }
}

/** The forms a value can take in a log line or a statement's text. */
function forms(bytes: Buffer): string[] {
  return [bytes.toString('hex'), bytes.toString('base64'), bytes.toString('base64').replace(/=+$/, '')];
}

function leaks(text: string, secrets: Secrets): string[] {
  const lower = text.toLowerCase();
  const found: string[] = [];
  for (const p of secrets.plaintexts) {
    if (text.includes(p) || lower.includes(p.toLowerCase())) found.push(`plaintext ${p}`);
    for (const f of forms(Buffer.from(p, 'utf8'))) if (text.includes(f) || lower.includes(f.toLowerCase())) found.push(`plaintext ${p} as ${f.slice(0, 12)}…`);
  }
  secrets.keys.forEach((k, i) => {
    for (const f of forms(k)) if (text.includes(f) || lower.includes(f.toLowerCase())) found.push(`key #${i} as ${f.slice(0, 8)}…`);
  });
  return found;
}

async function recorded(mark: number): Promise<{ serverLog: string; statements: string }> {
  const text = await (log as ServerLog).since(mark);
  const rows = statements ? [] : await db.sql<{ query: string }[]>`select query from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())`;
  return { serverLog: text, statements: rows.map((r) => r.query).join('\n') };
}

describe('a client-mode workload under full statement logging', () => {
  it('leaves no data key, index key or plaintext in the server log or pg_stat_statements', async (ctx) => {
    if (typeof log === 'string') return ctx.skip(log);
    if (!statements) await db.sql`select pg_stat_statements_reset()`;
    const mark = await log.mark();
    const secrets = await workload('client', 1000);
    const seen = await recorded(mark);
    // the logging was on: statements with their parameters, auto_explain's plans, statistics
    expect(seen.serverLog).toMatch(/statement: |execute [^:]*:/);
    expect(seen.serverLog).toContain('parameters: $1');
    expect(seen.serverLog).toMatch(/Query Text:|duration: [\d.]+ ms {2}plan:/);
    if (!statements) expect(seen.statements).toContain('"people"');
    expect(secrets.plaintexts.length).toBeGreaterThan(30);
    expect(secrets.keys.length).toBeGreaterThanOrEqual(4);
    expect(leaks(seen.serverLog, secrets)).toEqual([]);
    expect(leaks(seen.statements, secrets)).toEqual([]);
    // and at rest: envelopes
    const raw = await db.sql<{ email: Buffer }[]>`select email from people where id between 1000 and 1099`;
    expect(raw.length).toBeGreaterThan(5);
    for (const r of raw) expect(r.email.subarray(0, 2).toString('hex')).toBe('0101');
    if (statements) ctx.annotate(statements);
  });

  it('control: the same workload in database mode does put keys and plaintexts in the log, so the search above can fail', async (ctx) => {
    if (typeof log === 'string') return ctx.skip(log);
    const mark = await log.mark();
    const secrets = await workload('database', 2000);
    const found = leaks((await recorded(mark)).serverLog, secrets);
    expect(found.some((f) => f.startsWith('key'))).toBe(true);
    expect(found.some((f) => f.startsWith('plaintext'))).toBe(true);
  });
});
