// Online re-encryption: every value moves onto the active key inside the database, in
// checkpointed batches; resumable after SIGKILL; safe beside a concurrent writer; refused
// with a clear error (and nothing changed) for bad input; emergency rotation.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  column, defineTable, ErrorCodes, initKeys, LocalMasterKey, pgseal, protectColumn, reencrypt, reencryptDryRun, reencryptStatus,
  retireKey, rotateKey, type Pgseal,
} from '../../src/index.js';
import { Keyring } from '../../src/keys/keyring.js';
import { runCli } from '../support/cli.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
const masterText = randomBytes(32).toString('base64');
const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'));
const env = () => ({ DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });

const people = defineTable({
  name: 'people',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    tenant: column.plain<string>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    note: column.text({ scopeColumn: 'tenant' }),
    secret: column.text({ context: 'row' }),
  },
});

let seal: Pgseal;

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  for (const scope of ['default', 'acme', 'globex']) await initKeys(db.sql, master(), scope);
  seal = pgseal({ sql: db.sql, masterKey: master() });
});
afterAll(async () => {
  seal?.close();
  await db?.drop();
});

/** Every stored value of a column, decrypted in SQL with the keys of one transaction. */
async function decrypted(table: string, col: string, ctx: string): Promise<Map<number, string>> {
  const rows = await seal.begin((tx) => tx.unsafe<{ id: number; v: string }[]>(`select id, pgseal.decrypt_text(${col}, ${ctx}) as v from ${table} order by id`));
  return new Map(rows.map((r) => [r.id, r.v]));
}

async function versions(table: string, col: string): Promise<Record<string, number>> {
  const rows = await db.sql.unsafe<{ v: number | null; n: number }[]>(`select pgseal.key_version_of(${col}) as v, count(*)::int as n from ${table} where ${col} is not null group by 1`);
  return Object.fromEntries(rows.map((r) => [String(r.v), r.n]));
}

/** A table with one protected text column holding '<prefix><id>' for ids 1..n, written under the active key. */
async function seedTable(name: string, n: number, prefix: string, pkType = 'int'): Promise<void> {
  await db.sql.unsafe(`create table ${name} (id ${pkType} primary key, v bytea)`);
  await protectColumn(db.sql, { table: name, column: 'v' });
  await seal.begin((tx) => tx.unsafe(`insert into ${name} select g, pgseal.encrypt_text($1 || g, 'public.${name}.v') from generate_series(1, ${n}) g`, [prefix]));
}

async function activeVersion(scope: string): Promise<number> {
  const [k] = await db.sql<{ version: number }[]>`select version from pgseal.keys where scope = ${scope} and purpose = 'data' and state = 'active'`;
  return k!.version;
}

describe('reencrypt (library)', () => {
  it('moves every protected column (fixed scope, per-tenant scope, row context) onto the active keys; values unchanged; a re-run is a no-op', async () => {
    await db.sql`create table people (id int primary key, tenant text not null)`;
    for (const [c, o] of [['email', { searchable: true, normalizer: 'email' as const }], ['note', { scopeColumn: 'tenant' }], ['secret', { context: 'row' as const }]] as const) {
      await protectColumn(db.sql, { table: 'people', column: c, ...o });
    }
    await seal.reloadRegistry();
    const t = seal.table(people);
    const rows = Array.from({ length: 1200 }, (_, i) => ({ id: i + 1, tenant: i % 3 ? 'acme' : 'globex', email: `User${i}@Example.com`, note: `note ${i} 'quoted' $$`, secret: i % 7 ? `s${i}` : null }));
    await t.insertMany(rows as never);
    const before = { email: await decrypted('people', 'email', "'public.people.email'"), note: await decrypted('people', 'note', "pgseal.scope_context('public.people.note', tenant)"), secret: await decrypted('people', 'secret', "pgseal.row_context('public.people.secret', id::text)") };
    const old = { default: await activeVersion('default'), acme: await activeVersion('acme'), globex: await activeVersion('globex') };
    for (const scope of ['default', 'acme', 'globex']) await rotateKey(db.sql, master(), scope, { actor: 'alice', reason: 'quarterly' });
    const now = { default: await activeVersion('default'), acme: await activeVersion('acme'), globex: await activeVersion('globex') };

    const dry = await reencryptDryRun(db.sql, seal.keyring, { table: 'people', batchSize: 100 });
    expect(dry.stale).toBe(1200 + 1200 + rows.filter((r) => r.secret !== null).length);
    expect(dry.columns.find((c) => c.column === 'public.people.note')!.versions).toEqual([
      { version: old.acme, state: 'decrypt-only', rows: 800 },
      { version: old.globex, state: 'decrypt-only', rows: 400 },
    ]);
    expect(dry.estimatedSeconds).toBeGreaterThan(0);
    expect(await versions('people', 'email')).toEqual({ [old.default]: 1200 }); // the dry run's sample batch was rolled back

    const progress: number[] = [];
    const result = await reencrypt(db.sql, seal.keyring, { batchSize: 250, workers: 2, actor: 'alice', reason: 'quarterly', onProgress: (p) => progress.push(p.rowsDone) });
    expect(result.state).toBe('done');
    expect(result.rows).toBe(dry.stale);
    expect(progress.length).toBeGreaterThan(10);
    expect(progress.at(-1)).toBe(dry.stale);
    expect(await versions('people', 'email')).toEqual({ [now.default]: 1200 });
    expect(await versions('people', 'note')).toEqual({ [now.acme]: 800, [now.globex]: 400 });
    expect(await versions('people', 'secret')).toEqual({ [now.default]: before.secret.size - [...before.secret.values()].filter((v) => v === null).length });
    expect(await decrypted('people', 'email', "'public.people.email'")).toEqual(before.email);
    expect(await decrypted('people', 'note', "pgseal.scope_context('public.people.note', tenant)")).toEqual(before.note);
    expect(await decrypted('people', 'secret', "pgseal.row_context('public.people.secret', id::text)")).toEqual(before.secret);
    // blind indexes untouched by a data-key rotation, and lookups still work
    expect((await t.findBy('email', 'user5@example.com', { scope: 'acme' }))[0]?.id).toBe(6);

    const again = await reencrypt(db.sql, seal.keyring, { batchSize: 250 });
    expect(again.rows).toBe(0);
    expect(again.state).toBe('done');

    const status = await reencryptStatus(db.sql);
    expect(status!.state).toBe('done');
    const [audit] = await db.sql<{ actor: string; reason: string; details: { rows: number } }[]>`
      select actor, reason, details from pgseal.encryption_audit_log where operation = 'reencrypt.finish' order by id limit 1`;
    expect(audit).toMatchObject({ actor: 'alice', reason: 'quarterly', details: { rows: dry.stale } });
    const rotations = await db.sql`select key_scope, actor, reason from pgseal.encryption_audit_log where operation = 'key.rotate' order by id`;
    expect(rotations.map((r) => r.key_scope)).toEqual(['default', 'acme', 'globex']);
    // the old versions are unused now: retiring them is accepted
    for (const v of Object.values(old)) await retireKey(db.sql, seal.keyring, v, { actor: 'alice' });
  });

  it('stops on an AbortSignal after the batch in flight and resumes from its checkpoint', async () => {
    await seedTable('orders', 3000, 'card ', 'bigint');
    await rotateKey(db.sql, master(), 'default');
    const stop = new AbortController();
    const first = await reencrypt(db.sql, seal.keyring, { table: 'orders', batchSize: 200, signal: stop.signal, onProgress: (p) => p.rowsDone >= 600 && stop.abort() });
    expect(first.state).toBe('stopped');
    expect(first.rows).toBe(600);
    const status = await reencryptStatus(db.sql);
    expect(status).toMatchObject({ state: 'stopped', runId: first.runId });
    expect(status!.columns[0]).toMatchObject({ column: 'public.orders.v', rowsDone: 600, remaining: 2400 });
    const second = await reencrypt(db.sql, seal.keyring, { table: 'orders', batchSize: 200 });
    expect(second).toMatchObject({ state: 'done', resumed: true, runId: first.runId, rows: 2400 });
    const [counted] = await db.sql<{ batches: number }[]>`select sum(batches)::int as batches from pgseal.reencrypt_progress where run_id = ${first.runId}`;
    expect(counted!.batches).toBe(3 + 12 + 1); // no range walked twice: 600 rows, then 2400 more, then the empty batch that ends the range
    const values = await decrypted('orders', 'v', "'public.orders.v'");
    expect([...values.values()].every((v, i) => v === `card ${i + 1}`)).toBe(true);
  });

  it('walks integer, text and uuid primary keys in their own order: one pass, every row once, with 3 workers', async () => {
    for (const [name, type] of [['k_int', 'int'], ['k_text', 'text'], ['k_uuid', 'uuid']] as const) {
      await db.sql.unsafe(`create table ${name} (id ${type} primary key, v bytea)`);
      await protectColumn(db.sql, { table: name, column: 'v' });
      const key = type === 'int' ? 'g' : type === 'text' ? "'key ' || g" : "md5(g::text)::uuid";
      await seal.begin((tx) => tx.unsafe(`insert into ${name} select ${key}, pgseal.encrypt_text('v' || g, 'public.${name}.v') from generate_series(1, 2000) g`));
    }
    await rotateKey(db.sql, master(), 'default');
    for (const name of ['k_int', 'k_text', 'k_uuid']) {
      const result = await reencrypt(db.sql, seal.keyring, { table: name, batchSize: 37, workers: 3 });
      expect(result.rows).toBe(2000);
      expect(result.columns[0]!.pass).toBe(1);
      const parts = await db.sql<{ batches: number; rows_done: number }[]>`select batches, rows_done::int from pgseal.reencrypt_progress where run_id = ${result.runId} order by part`;
      expect(parts).toHaveLength(3);
      // each range walked once: ceil(rows / 37) batches, plus at most one that finds the range empty
      for (const p of parts) expect(p.batches - Math.ceil(p.rows_done / 37)).toBeLessThanOrEqual(1);
      expect(parts.reduce((n, p) => n + p.rows_done, 0)).toBe(2000);
      expect(await versions(name, 'v')).toEqual({ [await activeVersion('default')]: 2000 });
    }
  });

  it('a failing onProgress callback stops every worker before the run gives up its lock; the run then resumes', async () => {
    await seedTable('callbacks', 2000, 'c');
    await rotateKey(db.sql, master(), 'default');
    const failing = reencrypt(db.sql, seal.keyring, {
      table: 'callbacks', batchSize: 50, workers: 2,
      onProgress: (p) => {
        if (p.rowsDone >= 200) throw new Error('dashboard is down');
      },
    });
    await expect(failing).rejects.toThrow('dashboard is down');
    const [run] = await db.sql<{ state: string; id: string }[]>`select id, state from pgseal.reencrypt_runs order by id desc limit 1`;
    expect(run!.state).toBe('failed');
    const done = await db.sql<{ n: number }[]>`select sum(rows_done)::int as n from pgseal.reencrypt_progress where run_id = ${run!.id}`;
    // nothing was committed after the failure was seen: a moment later the count is the same
    await new Promise((r) => setTimeout(r, 300));
    const later = await db.sql<{ n: number }[]>`select sum(rows_done)::int as n from pgseal.reencrypt_progress where run_id = ${run!.id}`;
    expect(later[0]!.n).toBe(done[0]!.n);
    const resumed = await reencrypt(db.sql, seal.keyring, { table: 'callbacks', batchSize: 50, workers: 2 });
    expect(resumed).toMatchObject({ state: 'done', resumed: true });
    expect(resumed.rows + done[0]!.n).toBe(2000);
    expect(await versions('callbacks', 'v')).toEqual({ [await activeVersion('default')]: 2000 });
  });

  it('catches, with another pass, a row written with a stale key behind the checkpoint', async () => {
    await seedTable('tickets', 1000, 't');
    const stale = pgseal({ sql: db.sql, masterKey: master() }); // keys cached before the rotation
    const tickets = defineTable({ name: 'tickets', primaryKey: 'id', columns: { id: column.plain<number>(), v: column.text() } });
    await stale.table(tickets).findByPk(1);
    const oldVersion = await activeVersion('default');
    await rotateKey(db.sql, master(), 'default');
    let injected: Promise<unknown> | undefined;
    const result = await reencrypt(db.sql, seal.keyring, {
      // throttled so the write below lands long before the last batch
      table: 'tickets', batchSize: 50, maxRowsPerSecond: 1000,
      onProgress: (p) => {
        // after the first batch: row 10 is behind the checkpoint, 19 batches are still to run
        if (p.rowsDone >= 50 && !injected) injected = stale.table(tickets).update(10, { v: 'written late with the old key' });
      },
    });
    await injected;
    expect(result.columns[0]!.pass).toBe(2);
    expect(await versions('tickets', 'v')).toEqual({ [await activeVersion('default')]: 1000 });
    expect((await seal.table(tickets).findByPk(10))?.v).toBe('written late with the old key');
    expect(oldVersion).not.toBe(await activeVersion('default'));
    stale.close();
  });
});

describe('blind-index key rotation', () => {
  it('lookups find rows under the old and the new index key until the indexes are recomputed; retire waits for that', async () => {
    const contacts = defineTable({ name: 'contacts', primaryKey: 'id', columns: { id: column.plain<number>(), email: column.text({ searchable: true, normalize: 'email' }) } });
    await db.sql`create table contacts (id int primary key)`;
    await protectColumn(db.sql, { table: 'contacts', column: 'email', searchable: true, normalizer: 'email' });
    await seal.reloadRegistry();
    const t = seal.table(contacts);
    await t.insertMany(Array.from({ length: 500 }, (_, i) => ({ id: i + 1, email: `Person${i + 1}@Example.org` })));
    const bidx = async () => (await db.sql`select email_bidx from contacts order by id`).map((r) => (r.email_bidx as Buffer).toString('hex'));
    const before = await bidx();
    const [oldIndex] = await db.sql<{ version: number }[]>`select version from pgseal.keys where scope = 'default' and purpose = 'index' and state = 'active'`;
    const { version: newIndex } = await rotateKey(db.sql, master(), 'default', { purpose: 'index', actor: 'alice', reason: 'yearly' });
    await seal.keyring.refresh();

    // every lookup path still finds rows indexed under the old key, and new rows under the new one
    await t.insert({ id: 501, email: 'late@example.org' });
    expect((await t.findBy('email', 'person7@example.org')).map((r) => r.id)).toEqual([7]);
    expect((await t.findBy('email', ['PERSON8@example.org', 'late@example.org'])).map((r) => r.id).sort()).toEqual([501, 8]);
    expect(await t.findBy('email', [])).toEqual([]);
    expect(await seal.query('select id from contacts where email = $1', ['person9@example.org'])).toEqual([{ id: 9 }]);
    expect(await seal.query('select id from contacts where email in ($1, $2) order by id', ['person10@example.org', 'late@example.org'])).toEqual([{ id: 10 }, { id: 501 }]);
    expect(await seal.query('select count(*)::int as n from contacts where email <> $1', ['person11@example.org'])).toEqual([{ n: 500 }]);
    expect(await seal.query('select count(*)::int as n from contacts where email is distinct from $1', ['person12@example.org'])).toEqual([{ n: 500 }]);

    await expect(retireKey(db.sql, seal.keyring, oldIndex!.version)).rejects.toMatchObject({ code: ErrorCodes.KEY_IN_USE, message: expect.stringContaining('blind-index key') });
    await expect(reencrypt(db.sql, seal.keyring, { blindIndex: true })).rejects.toMatchObject({ code: ErrorCodes.REINDEX_TOO_EARLY });
    const result = await reencrypt(db.sql, seal.keyring, { blindIndex: true, indexGraceSeconds: 0, batchSize: 64, workers: 2, actor: 'alice' });
    // every searchable column of the scope: contacts.email, and people.email from the first test
    expect(result.state).toBe('done');
    expect(result.columns.map((c) => [c.column, c.rowsDone])).toEqual([['public.contacts.email', 500], ['public.people.email', 1200]]);
    const after = await bidx();
    expect(after.slice(0, 500).every((h, i) => h !== before[i])).toBe(true);
    const [stale] = await seal.begin((tx) => tx<{ n: number }[]>`
      select count(*)::int as n from contacts
       where email_bidx is distinct from pgseal.blind_index(pgseal.decrypt_text(email, 'public.contacts.email'), 'email', 'public.contacts.email', 'default', 16)`);
    expect(stale!.n).toBe(0);
    expect((await reencrypt(db.sql, seal.keyring, { blindIndex: true, indexGraceSeconds: 0 })).rows).toBe(0);

    await retireKey(db.sql, seal.keyring, oldIndex!.version, { actor: 'alice' });
    await seal.keyring.refresh();
    expect((await t.findBy('email', 'person7@example.org')).map((r) => r.id)).toEqual([7]);
    expect(await seal.query('select id from contacts where email = $1', ['late@example.org'])).toEqual([{ id: 501 }]);
    const [rotation] = await db.sql`select details from pgseal.encryption_audit_log where operation = 'key.rotate' and key_version = ${newIndex}`;
    expect(rotation!.details).toMatchObject({ purpose: 'index', previous: oldIndex!.version });
  });
});

describe('blind-index key rotation of one tenant', () => {
  it('recomputes only that tenant\'s indexes of a per-tenant column, with only its keys', async () => {
    const subjects = defineTable({
      name: 'subjects', primaryKey: 'id',
      columns: { id: column.plain<number>(), tenant: column.plain<string>(), subject: column.text({ searchable: true, normalize: 'trim', scopeColumn: 'tenant' }) },
    });
    await db.sql`create table subjects (id int primary key, tenant text not null)`;
    await protectColumn(db.sql, { table: 'subjects', column: 'subject', searchable: true, normalizer: 'trim', scopeColumn: 'tenant' });
    await seal.reloadRegistry();
    const t = seal.table(subjects);
    await t.insertMany(Array.from({ length: 300 }, (_, i) => ({ id: i + 1, tenant: i % 3 ? 'acme' : 'globex', subject: `subject ${i + 1}` })));
    const globexBefore = (await db.sql`select subject_bidx from subjects where tenant = 'globex' order by id`).map((r) => (r.subject_bidx as Buffer).toString('hex'));
    await rotateKey(db.sql, master(), 'acme', { purpose: 'index' });
    await seal.keyring.refresh();
    const result = await reencrypt(db.sql, seal.keyring, { blindIndex: true, scope: 'acme', indexGraceSeconds: 0, batchSize: 40 });
    expect(result.columns).toEqual([expect.objectContaining({ column: 'public.subjects.subject', rowsDone: 200 })]);
    const globexAfter = (await db.sql`select subject_bidx from subjects where tenant = 'globex' order by id`).map((r) => (r.subject_bidx as Buffer).toString('hex'));
    expect(globexAfter).toEqual(globexBefore);
    expect((await t.findBy('subject', ' subject 2 ', { scope: 'acme' })).map((r) => r.id)).toEqual([2]);
    expect((await t.findBy('subject', 'subject 1', { scope: 'globex' })).map((r) => r.id)).toEqual([1]);
  });
});

describe('reencrypt: bad input changes nothing', () => {
  it('an unknown table or column, a table without a primary key, a wrong or missing master key: one clear error', async () => {
    await db.sql`create table logs (at timestamptz, line bytea)`;
    await protectColumn(db.sql, { table: 'logs', column: 'line' });
    await seal.begin((tx) => tx`insert into logs select now(), pgseal.encrypt_text('l' || g, 'public.logs.line') from generate_series(1, 10) g`);
    await rotateKey(db.sql, master(), 'default');
    const snapshot = async () => (await db.sql`select line from logs order by line`).map((r) => (r.line as Buffer).toString('hex')).join();
    const before = await snapshot();
    await expect(reencrypt(db.sql, seal.keyring, { table: 'nope' })).rejects.toMatchObject({ code: ErrorCodes.TABLE_NOT_FOUND });
    await expect(reencrypt(db.sql, seal.keyring, { table: 'logs', column: 'at' })).rejects.toMatchObject({ code: ErrorCodes.NOT_PROTECTED });
    await expect(reencrypt(db.sql, seal.keyring, { table: 'logs' })).rejects.toMatchObject({ code: ErrorCodes.NO_PRIMARY_KEY, message: expect.stringContaining('public.logs.line') });
    await expect(reencrypt(db.sql, seal.keyring, { batchSize: 0 })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });

    const wrong = await runCli(['reencrypt', '--table', 'orders'], { ...env(), PGSEAL_MASTER_KEY: randomBytes(32).toString('base64') });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr.trim().split('\n')).toHaveLength(1);
    expect(wrong.stderr).toMatch(/^pgseal: PGSEAL_MASTER_KEY_MISMATCH/);
    const missing = await runCli(['reencrypt'], { DATABASE_URL: db.url });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^pgseal: PGSEAL_MASTER_KEY_MISSING/);
    const noPk = await runCli(['reencrypt', '--table', 'logs'], env());
    expect(noPk.code).toBe(1);
    expect(noPk.stderr).toMatch(/^pgseal: PGSEAL_NO_PRIMARY_KEY.*add a single-column primary key/);
    expect(await snapshot()).toBe(before);
    await db.sql`drop table logs`;
    await db.sql`delete from pgseal.columns where table_name = 'logs'`;
  });

  it('a second run while one is in progress is refused', async () => {
    await seedTable('slow', 400, 'v');
    await rotateKey(db.sql, master(), 'default');
    const stop = new AbortController();
    const first = reencrypt(db.sql, seal.keyring, { table: 'slow', batchSize: 10, maxRowsPerSecond: 100, signal: stop.signal });
    await new Promise((r) => setTimeout(r, 300));
    const other = new Keyring(db.sql, master());
    await expect(reencrypt(db.sql, other, { table: 'slow' })).rejects.toMatchObject({ code: ErrorCodes.REENCRYPT_RUNNING });
    other.close();
    stop.abort();
    const r = await first;
    expect(r.state).toBe('stopped');
    // the throttle held: at most ~100 rows/s
    expect(r.rows / r.seconds).toBeLessThan(150);
    expect((await reencrypt(db.sql, seal.keyring, { table: 'slow' })).state).toBe('done');
  });
});
