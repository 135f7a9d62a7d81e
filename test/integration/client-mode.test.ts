// The typed helpers in client mode against every other door: rows they write open through
// pgseal.decrypt_text in SQL, the decrypted view and rewritten SQL, and rows written there
// open here; blind indexes agree; contexts of row-bound and per-tenant columns are spelled
// as the database spells keys and tenants; another tenant's or row's value is refused; a
// key rotated elsewhere reloads; nothing keyed is sent (what the server receives is read off
// pg_stat_activity's own records in attack-client-logs.test.ts).

import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blindIndex, column, createView, defineTable, ErrorCodes, initKeys, LocalMasterKey, pgseal, protectColumn, rotateKey, type Pgseal,
} from '../../src/index.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let seal: Pgseal;
let sqlSide: Pgseal;
const masterBytes = randomBytes(32);
const master = () => new LocalMasterKey(Buffer.from(masterBytes));

const people = defineTable({
  name: 'people',
  primaryKey: 'id',
  columns: {
    id: column.plain<string>(),
    tenant: column.plain<number>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    notes: column.text({ context: 'row' }),
    secret: column.text({ scopeColumn: 'tenant', context: 'row' }),
    profile: column.jsonb<{ city: string }>(),
    amount: column.numeric(),
    photo: column.bytea(),
  },
});

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master());
  for (const t of ['1', '2']) await initKeys(db.sql, master(), t);
  await db.sql`create table people (id uuid primary key, tenant int not null)`;
  for (const [c, o] of [
    ['email', { searchable: true, normalizer: 'email' }],
    ['notes', { context: 'row' }],
    ['secret', { scopeColumn: 'tenant', context: 'row' }],
    ['profile', { valueType: 'jsonb' }],
    ['amount', { valueType: 'numeric' }],
    ['photo', { valueType: 'bytea' }],
  ] as const) {
    await protectColumn(db.sql, { table: 'people', column: c, ...o });
  }
  await createView(db.sql, 'people');
  seal = pgseal({ sql: db.sql, masterKey: master(), crypto: 'client' });
  sqlSide = pgseal({ sql: db.sql, masterKey: master(), crypto: 'database' });
});

afterAll(async () => {
  await seal?.close();
  await sqlSide?.close();
  await db?.drop();
});

const upperUuid = () => randomUUID().toUpperCase();
const row = (id: string, tenant: number) => ({
  id, tenant, email: `Anna.${tenant}@Example.IT`, notes: `note of ${id}`, secret: `secret of ${tenant}`, profile: { city: 'Forlì' }, amount: '0012.50', photo: Buffer.from([0, 1, 254, 255]),
});

describe('client mode and the database read each other', () => {
  it('a row written in client mode opens in SQL, the view and rewritten SQL; its blind index is the one SQL computes', async () => {
    const id = upperUuid();
    const written = await seal.table(people).insert(row(id, 1));
    expect(written).toMatchObject({ email: 'Anna.1@Example.IT', notes: `note of ${id}`, amount: '0012.50' });
    const canonical = id.toLowerCase();
    // SQL, with the keys handed into the transaction
    const [inSql] = await seal.begin((tx) => tx<Record<string, string>[]>`
      select pgseal.decrypt_text(email, 'public.people.email') as email,
             pgseal.decrypt_text(notes, pgseal.row_context('public.people.notes', id::text)) as notes,
             pgseal.decrypt_text(secret, pgseal.row_context(pgseal.scope_context('public.people.secret', tenant::text), id::text)) as secret,
             pgseal.decrypt_text(amount, 'public.people.amount') as amount,
             email_bidx = pgseal.blind_index('Anna.1@Example.IT', 'email', 'public.people.email') as same_index
        from people where id = ${canonical}::uuid`);
    expect(inSql).toEqual({ email: 'Anna.1@Example.IT', notes: `note of ${id}`, secret: 'secret of 1', amount: '0012.50', same_index: true });
    // the decrypted view
    const [inView] = await seal.begin((tx) => tx`select email, notes, secret, profile, amount, photo from people_decrypted where id = ${canonical}::uuid`);
    expect(inView).toMatchObject({ email: 'Anna.1@Example.IT', notes: `note of ${id}`, secret: 'secret of 1', profile: { city: 'Forlì' } });
    expect(Number(inView!.amount)).toBe(12.5);
    expect(Buffer.from(inView!.photo as Buffer).equals(Buffer.from([0, 1, 254, 255]))).toBe(true);
    // rewritten SQL, searching by the plaintext
    const rewritten = await seal.query<{ id: string; notes: string }>('select id, notes from people where email = $1', ['anna.1@example.it']);
    expect(rewritten).toEqual([{ id: canonical, notes: `note of ${id}` }]);
    // and the database mode helpers
    expect(await sqlSide.table(people).findByPk(canonical)).toMatchObject({ email: 'Anna.1@Example.IT', secret: 'secret of 1' });
    // the index in Node is the index SQL writes
    const indexKey = seal.keyring.loadedIndexKey('default')!;
    const [stored] = await db.sql<{ email_bidx: Buffer }[]>`select email_bidx from people where id = ${canonical}::uuid`;
    expect(stored!.email_bidx.equals(blindIndex(indexKey, 'Anna.1@Example.IT', 'email', 'public.people.email'))).toBe(true);
  });

  it('rows written in SQL, through the view and in database mode open in client mode, and are found by their blind index', async () => {
    const a = randomUUID();
    const b = randomUUID();
    const c = randomUUID();
    await seal.begin((tx) => tx`
      insert into people (id, tenant, email, email_bidx, notes)
      values (${a}::uuid, 2, pgseal.encrypt_text('Bruno@Example.it', 'public.people.email'), pgseal.blind_index('Bruno@Example.it', 'email', 'public.people.email'),
              pgseal.encrypt_text('sql note', pgseal.row_context('public.people.notes', ${a}::uuid::text)))`);
    await seal.begin((tx) => tx`insert into people_decrypted (id, tenant, email, secret, profile) values (${b}::uuid, 2, 'carla@example.it', 'view secret', '{"city":"Roma"}')`);
    await sqlSide.table(people).insert({ ...row(c, 2), email: 'dario@example.it' });
    const t = seal.table(people);
    expect(await t.findByPk(a)).toMatchObject({ email: 'Bruno@Example.it', notes: 'sql note' });
    expect(await t.findByPk(b, { scope: '2' })).toMatchObject({ email: 'carla@example.it', secret: 'view secret', profile: { city: 'Roma' } });
    expect(await t.findByPk(c, { scope: '2' })).toMatchObject({ email: 'dario@example.it', secret: 'secret of 2', amount: '0012.50' });
    expect((await t.findBy('email', ['BRUNO@example.it', 'carla@EXAMPLE.it'], { scope: '2' })).map((r) => r.id).sort()).toEqual([a, b].sort());
  });

  it('update, insertMany and list in client mode stay readable in SQL; the raw columns hold envelopes only', async () => {
    const t = seal.table(people);
    const ids = Array.from({ length: 5 }, () => upperUuid());
    expect(await t.insertMany(ids.map((id) => row(id, 2)))).toBe(5);
    await t.update(ids[0]!, { notes: 'updated', secret: 'moved on', tenant: 2 });
    const [back] = await sqlSide.begin((tx) => tx`select notes, secret from people_decrypted where id = ${ids[0]!.toLowerCase()}::uuid`);
    expect(back).toEqual({ notes: 'updated', secret: 'moved on' });
    const page = await t.list({ limit: 100, scope: '2' });
    expect(page.rows.filter((r) => ids.map((i) => i.toLowerCase()).includes(r.id))).toHaveLength(5);
    const raw = await db.sql<{ email: Buffer; notes: Buffer; v: number }[]>`select email, notes, pgseal.key_version_of(notes) as v from people where id = any(${ids.map((i) => i.toLowerCase())}::uuid[])`;
    for (const r of raw) {
      expect(r.v).toBeGreaterThan(0);
      expect(r.email.subarray(0, 2).toString('hex')).toBe('0101');
      expect(r.email.includes(Buffer.from('Anna'))).toBe(false);
      expect(r.notes.includes(Buffer.from('note of'))).toBe(false);
    }
  });
});

describe('client mode refuses what database mode refuses', () => {
  it('another tenant\'s value (PS002 under the wrong scope, PS003 with every key) and another row\'s value (PS003)', async () => {
    const t = seal.table(people);
    const [x, y] = [randomUUID(), randomUUID()];
    await t.insert(row(x, 1));
    await t.insert(row(y, 2));
    // tenant 1's row read as tenant 2: its key is not among the keys this read may use
    await expect(t.findByPk(x, { scope: '2' })).rejects.toMatchObject({ code: ErrorCodes.UNKNOWN_KEY_VERSION, sqlstate: 'PS002' });
    await expect(sqlSide.table(people).findByPk(x, { scope: '2' })).rejects.toMatchObject({ code: ErrorCodes.UNKNOWN_KEY_VERSION });
    // tenant 1's secret copied into tenant 2's row: with every key loaded it fails authentication
    await db.sql`update people set secret = (select secret from people where id = ${x}::uuid) where id = ${y}::uuid`;
    await expect(t.findByPk(y)).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED, sqlstate: 'PS003' });
    await expect(sqlSide.table(people).findByPk(y)).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
    // a row-bound note copied to another row
    await db.sql`update people set secret = null, notes = (select notes from people where id = ${x}::uuid) where id = ${y}::uuid`;
    await expect(t.findByPk(y)).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED, sqlstate: 'PS003' });
    // plaintext where ciphertext belongs, and the audit of both
    await db.sql`update people set notes = convert_to('plain words', 'UTF8') where id = ${y}::uuid`;
    const error = await t.findByPk(y).catch((e: unknown) => e as Error);
    expect(error).toMatchObject({ code: ErrorCodes.MALFORMED_ENVELOPE, sqlstate: 'PS004' });
    expect(JSON.stringify(error) + String(error)).not.toContain('plain words');
    const [audited] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.encryption_audit_log where operation = 'data.decrypt_failed' and table_name = 'people'`;
    expect(audited!.n).toBeGreaterThanOrEqual(4);
  });

  it('a key or tenant written in a type the client cannot spell is refused before anything is sent', async () => {
    await db.sql`create table stamped (id timestamptz primary key)`;
    await protectColumn(db.sql, { table: 'stamped', column: 'v', context: 'row' });
    const stamped = defineTable({ name: 'stamped', primaryKey: 'id', columns: { id: column.plain<string>(), v: column.text({ context: 'row' }) } });
    await expect(seal.table(stamped).insert({ id: '2026-12-03 10:00:00+00', v: 'x' })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringContaining('timestamp with time zone') });
    expect(await db.sql`select * from stamped`).toHaveLength(0);
    // database mode builds such contexts in SQL
    await sqlSide.table(stamped).insert({ id: '2026-12-03 10:00:00+00', v: 'x' });
    expect((await sqlSide.table(stamped).findByPk('2026-12-03 10:00:00+00'))?.v).toBe('x');
  });
});

describe('client mode and keys rotated elsewhere', () => {
  it('a value on a version this process has not loaded reloads the keyring; writes after a compromise use the new key', async () => {
    const t = seal.table(people);
    await seal.keyring.refresh();
    const other = pgseal({ sql: db.sql, masterKey: master(), crypto: 'client' });
    try {
      await rotateKey(db.sql, master());
      const id = randomUUID();
      await other.table(people).insert(row(id, 1));
      const [{ v }] = (await db.sql<{ v: number }[]>`select pgseal.key_version_of(email) as v from people where id = ${id}::uuid`) as unknown as [{ v: number }];
      expect(seal.keyring.loadedDataKey(v)).toBeUndefined();
      expect((await t.findByPk(id))?.email).toBe('Anna.1@Example.IT');
      expect(seal.keyring.loadedDataKey(v)).toBeDefined();
      // elsewhere: a new key, and the one this process still writes with marked compromised;
      // the guard refuses its write, the keyring reloads, the value is sealed with the new key
      await seal.keyring.refresh();
      await rotateKey(db.sql, master());
      await db.sql`update pgseal.keys set compromised_at = now() where version = ${v}`;
      const next = randomUUID();
      await t.insert(row(next, 1));
      const [{ w }] = (await db.sql<{ w: number }[]>`select pgseal.key_version_of(email) as w from people where id = ${next}::uuid`) as unknown as [{ w: number }];
      expect(w).toBeGreaterThan(v);
    } finally {
      await other.close();
    }
  });
});
