// The Drizzle adapter (pgseal/drizzle) against a real table, through the real drizzle-orm
// postgres-js driver: every value type round-trips typed; what is stored is an envelope;
// equality and IN on a searchable column go through the blind index and are re-checked;
// updates and deletes; rows written here open in SQL and through the typed helpers, and the
// reverse; a tampered value fails with its code and is audited; the access log names the
// rows; a key rotated elsewhere reloads; per-tenant and row-bound contexts; nothing it sends
// (as drizzle's logger and the server's log_statement see it) holds a plaintext, a searched
// value or a key.

import { randomBytes } from 'node:crypto';
import { and, eq, sql as raw } from 'drizzle-orm';
import { alias, integer, pgTable, text } from 'drizzle-orm/pg-core';
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import type { Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encrypted, inScope, match, pgsealDrizzle, verifyTable } from '../../src/adapters/drizzle.js';
import { column, defineTable, ErrorCodes, initKeys, LocalMasterKey, pgseal, protectColumn, rotateKey, type Pgseal } from '../../src/index.js';
import { connectQuiet, createDatabase, type TestDatabase } from '../support/db.js';
import { serverLog } from '../support/server-log.js';

let db: TestDatabase;
let app: Sql; // the application's client, shared by pgseal and drizzle as an application would
let seal: Pgseal;
let d: PostgresJsDatabase;
const masterBytes = randomBytes(32);
const master = () => new LocalMasterKey(Buffer.from(masterBytes));

const customers = pgTable('customers', {
  id: integer('id').primaryKey(),
  name: text('name').notNull(),
  email: encrypted.text('email', { searchable: true, normalize: 'email' }),
  emailBidx: encrypted.blindIndex('email_bidx'),
  phone: encrypted.text('phone', { searchable: true, normalize: 'phone' }),
  phoneBidx: encrypted.blindIndex('phone_bidx'),
  notes: encrypted.text('notes', { context: 'row' }),
  profile: encrypted.jsonb<{ city: string; tags: string[] }>('profile'),
  balance: encrypted.numeric('balance'),
  photo: encrypted.bytea('photo'),
});

const tenantNotes = pgTable('tenant_notes', {
  id: integer('id').primaryKey(),
  tenant: text('tenant').notNull(),
  body: encrypted.text('body', { searchable: true, normalize: 'trim', scopeColumn: 'tenant' }),
  bodyBidx: encrypted.blindIndex('body_bidx'),
});

// the same tables for the typed helpers
const customersDef = defineTable({
  name: 'customers',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    name: column.plain<string>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    phone: column.text({ searchable: true, normalize: 'phone' }),
    notes: column.text({ context: 'row' }),
    profile: column.jsonb<{ city: string; tags: string[] }>(),
    balance: column.numeric(),
    photo: column.bytea(),
  },
});

const mario = {
  id: 1,
  name: 'Mario Rossi',
  email: 'Mario.Rossi@Example.it',
  phone: '+39 347 123 4567',
  notes: 'cliente dal 2019',
  profile: { city: 'Forlì', tags: ['vip'] },
  balance: '12345678901234567890.123456789',
  photo: Buffer.from([0, 255, 1, 254, 0x80, 0xc3, 0x28]),
};

/** mario as the adapter reads him back: every column, the blind indexes as stored. */
const read = (row: Record<string, unknown>) => {
  const { emailBidx, phoneBidx, ...rest } = row;
  expect(Buffer.isBuffer(emailBidx) && Buffer.isBuffer(phoneBidx)).toBe(true);
  return rest;
};

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  for (const scope of ['default', 't1', 't2']) await initKeys(db.sql, master(), scope);
  await db.sql`create table customers (id int primary key, name text not null)`;
  await db.sql`create table tenant_notes (id int primary key, tenant text not null)`;
  for (const [c, o] of [
    ['email', { searchable: true, normalizer: 'email' }],
    ['phone', { searchable: true, normalizer: 'phone' }],
    ['notes', { context: 'row' }],
    ['profile', { valueType: 'jsonb' }],
    ['balance', { valueType: 'numeric' }],
    ['photo', { valueType: 'bytea' }],
  ] as const) {
    await protectColumn(db.sql, { table: 'customers', column: c, ...o });
  }
  await protectColumn(db.sql, { table: 'tenant_notes', column: 'body', searchable: true, normalizer: 'trim', scopeColumn: 'tenant' });
  app = connectQuiet(db.url);
  seal = pgseal({ sql: app, masterKey: master() });
  d = await pgsealDrizzle(seal, drizzle(app));
});

afterAll(async () => {
  await seal?.close();
  await app?.end({ timeout: 5 });
  await db?.drop();
});

describe('drizzle adapter: reads and writes', () => {
  it('checks the drizzle tables against pgseal.columns', async () => {
    await verifyTable(seal, customers);
    await verifyTable(seal, tenantNotes);
    const wrong = pgTable('customers', { id: integer('id').primaryKey(), notes: encrypted.text('notes') });
    await expect(verifyTable(seal, wrong)).rejects.toMatchObject({ code: ErrorCodes.REGISTRY_MISMATCH, message: expect.stringContaining('notes.contextMode') });
  });

  it('insert and select by primary key round-trip every type, typed', async () => {
    const [inserted] = await d.insert(customers).values(mario).returning();
    expect(read(inserted!)).toEqual(mario);
    const [found] = await d.select().from(customers).where(eq(customers.id, 1));
    expect(read(found!)).toEqual(mario);
    const email: string | null = found!.email;
    const city: string | undefined = found!.profile?.city;
    expect([email, city]).toEqual([mario.email, 'Forlì']);
    // partial selections and joins place the values where the fields say
    const [some] = await d.select({ mail: customers.email, key: customers.id }).from(customers).where(eq(customers.id, 1));
    expect(some).toEqual({ mail: mario.email, key: 1 });
    const other = alias(customers, 'other');
    const [joined] = await d.select({ a: customers.email, b: other.notes, key: other.id }).from(customers).innerJoin(other, eq(other.id, customers.id)).where(eq(customers.id, 1));
    expect(joined).toEqual({ a: mario.email, b: mario.notes, key: 1 });
    // a left join's missing side is null, not an object of nulls
    const [lonely] = await d.select().from(customers).leftJoin(other, eq(other.id, 999)).where(eq(customers.id, 1));
    expect([lonely!.customers.email, lonely!.other]).toEqual([mario.email, null]);
    // a row-bound value opens only with its row's key: it must be selected too
    await expect(d.select({ b: other.notes }).from(other).where(eq(other.id, 1))).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringContaining('select id') });
    const [both] = await d.select().from(customers).innerJoin(other, eq(other.id, customers.id)).where(eq(customers.id, 1));
    expect([both!.customers.notes, both!.other.notes, both!.other.phone]).toEqual([mario.notes, mario.notes, mario.phone]);
  });

  it('stores envelopes only: no plaintext, a key version, the blind index SQL computes', async () => {
    const [r] = await db.sql<Record<string, Buffer>[]>`select *, pgseal.key_version_of(email) as v from customers where id = 1`;
    expect(r!.v).not.toBeNull();
    for (const c of ['email', 'phone', 'notes', 'profile', 'balance', 'photo']) {
      expect(r![c]!.subarray(0, 2).toString('hex'), c).toBe('0101');
      for (const needle of ['Mario.Rossi', 'mario.rossi', '3471234567', 'cliente', 'Forl', '12345678901234567890']) {
        expect(r![c]!.includes(Buffer.from(needle)), `${c} holds ${needle}`).toBe(false);
      }
    }
    const [s] = await seal.begin((tx) => tx<{ b: Buffer }[]>`select pgseal.blind_index(${mario.email}, 'email', 'public.customers.email', 'default', 16) as b`);
    expect(s!.b.equals(r!.email_bidx!)).toBe(true);
  });

  it('match(): normalised equality and IN through the blind index, collisions re-checked', async () => {
    await d.insert(customers).values({ id: 2, name: 'Giulia Bianchi', email: 'giulia@example.it', phone: '06 1234 5678' });
    const ids = async (w: ReturnType<typeof match>) => (await d.select().from(customers).where(w)).map((r) => r.id).sort();
    expect(await ids(match(customers.email, '  MARIO.ROSSI@EXAMPLE.IT '))).toEqual([1]);
    expect(await ids(match(customers.phone, '0039 347 1234567'))).toEqual([1]);
    expect(await ids(match(customers.email, ['giulia@example.it', 'mario.rossi@example.it', 'nobody@example.it']))).toEqual([1, 2]);
    expect(await ids(match(customers.email, []))).toEqual([]);
    expect(await ids(and(match(customers.email, ['giulia@example.it', 'mario.rossi@example.it']), eq(customers.name, 'Giulia Bianchi'))!)).toEqual([2]);
    // a truncated-index collision: Giulia's row given Mario's index; the decrypted value says no
    await db.sql`update customers set email_bidx = (select email_bidx from customers where id = 1) where id = 2`;
    expect(await ids(match(customers.email, 'mario.rossi@example.it'))).toEqual([1]);
    await d.update(customers).set({ email: 'giulia@example.it' }).where(eq(customers.id, 2));
    expect(await ids(match(customers.email, 'giulia@example.it'))).toEqual([2]);
  });

  it('refuses what would send a plaintext or decrypt unlogged', async () => {
    // a comparison with a plaintext, and a blind index written by hand
    await expect(d.select().from(customers).where(eq(customers.email, 'x'))).rejects.toMatchObject({ code: ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT });
    expect(() => d.insert(customers).values({ id: 9, name: 'x', email: 'x', emailBidx: Buffer.alloc(16) })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
    // not searchable
    // @ts-expect-error notes is encrypted and not searchable
    expect(() => match(customers.notes, 'x')).toThrow(expect.objectContaining({ code: ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT }));
    // the plain drizzle db: neither writes nor reads of encrypted columns
    const plain = drizzle(app);
    await expect(plain.insert(customers).values({ id: 9, name: 'x', email: 'x' })).rejects.toMatchObject({ code: ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT });
    await expect(plain.select().from(customers)).rejects.toMatchObject({ code: ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT });
    expect(await plain.select({ id: customers.id }).from(customers).where(eq(customers.id, 1))).toEqual([{ id: 1 }]);
    // an encrypted column read through an expression is not placed, so not opened
    await expect(d.select({ e: raw<string>`${customers.email}`.mapWith(customers.email) }).from(customers)).rejects.toMatchObject({ code: ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT });
    expect(await db.sql`select id from customers where id = 9`).toHaveLength(0);
  });

  it('update and delete; a row-bound value needs its key, and the update is held to that row', async () => {
    const [updated] = await d.update(customers).set({ phone: '+39 06 000 0000', balance: '-0.50', profile: null }).where(eq(customers.id, 2)).returning({ id: customers.id, phone: customers.phone, balance: customers.balance, profile: customers.profile });
    expect(updated).toEqual({ id: 2, phone: '+39 06 000 0000', balance: '-0.50', profile: null });
    expect((await d.select({ id: customers.id }).from(customers).where(match(customers.phone, '0039060000000'))).map((r) => r.id)).toEqual([2]);
    expect(await d.select().from(customers).where(match(customers.phone, '06 1234 5678'))).toEqual([]);
    // row context: the key must be in the set (the row's own)...
    expect(() => d.update(customers).set({ notes: 'x' })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringContaining('primary key id') }));
    // ...and the update reaches no other row whatever its where says
    await d.update(customers).set({ id: 2, notes: 'richiamare' }).where(eq(customers.name, 'Mario Rossi'));
    expect(await notesOf(1)).toBe(mario.notes);
    await d.update(customers).set({ id: 2, notes: 'richiamare' }).where(eq(customers.id, 2));
    expect(await notesOf(2)).toBe('richiamare');
    // changing the key alone would leave the note unreadable
    expect(() => d.update(customers).set({ id: 3 })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
    // an upsert cannot seal a row-bound value for the row that conflicts; column-bound ones it can
    expect(() => d.insert(customers).values({ id: 2, name: 'G' }).onConflictDoUpdate({ target: customers.id, set: { notes: 'y' } })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
    await d.insert(customers).values({ id: 2, name: 'G', email: 'giulia.b@example.it' }).onConflictDoUpdate({ target: customers.id, set: { email: 'giulia.b@example.it', name: 'Giulia B.' } });
    expect((await d.select({ id: customers.id, name: customers.name }).from(customers).where(match(customers.email, 'Giulia.B@example.it')))).toEqual([{ id: 2, name: 'Giulia B.' }]);
    const gone = await d.delete(customers).where(eq(customers.id, 2)).returning({ id: customers.id });
    expect(gone).toEqual([{ id: 2 }]);
    expect(await d.select().from(customers).where(eq(customers.id, 2))).toEqual([]);
  });

  it('prepared statements: placeholders for keys, searched values and values written', async () => {
    const byEmail = d.select({ id: customers.id, email: customers.email }).from(customers).where(match(customers.email, raw.placeholder('email'))).prepare('by_email');
    expect(await byEmail.execute({ email: 'MARIO.ROSSI@example.it' })).toEqual([{ id: 1, email: mario.email }]);
    expect(await byEmail.execute({ email: ['nobody@example.it', 'mario.rossi@example.it'] })).toEqual([{ id: 1, email: mario.email }]);
    expect(await byEmail.execute({ email: 'nobody@example.it' })).toEqual([]);
    const byPk = d.select().from(customers).where(eq(customers.id, raw.placeholder('id'))).prepare('by_pk');
    expect(read((await byPk.execute({ id: 1 }))[0]!)).toEqual(mario);
    const add = d.insert(customers).values({ id: raw.placeholder('id'), name: 'P', email: raw.placeholder('email'), notes: raw.placeholder('notes') }).prepare('add');
    await add.execute({ id: 7, email: 'p7@example.it', notes: 'seven' });
    await add.execute({ id: 8, email: 'p8@example.it', notes: 'eight' });
    const [a, b] = await db.sql<{ email: Buffer }[]>`select email from customers where id in (7, 8) order by id`;
    expect(a!.email.equals(b!.email)).toBe(false);
    expect((await byEmail.execute({ email: 'p8@example.it' }))).toEqual([{ id: 8, email: 'p8@example.it' }]);
    expect(await notesOf(7)).toBe('seven');
    await d.delete(customers).where(raw`${customers.id} in (7, 8)`);
  });

  it('relational queries do not open encrypted columns (refused before anything is decrypted)', async () => {
    const rd = await pgsealDrizzle(seal, drizzle(app, { schema: { customers } }));
    await expect(rd.query.customers.findFirst({ where: eq(customers.id, 1) })).rejects.toMatchObject({ code: ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT });
    expect(await rd.query.customers.findFirst({ columns: { id: true, name: true }, where: eq(customers.id, 1) })).toEqual({ id: 1, name: mario.name });
  });

  it('transactions: the same sealing and opening, and a rollback keeps nothing', async () => {
    const found = await d.transaction(async (tx) => {
      await tx.insert(customers).values({ id: 5, name: 'Tx', email: 'tx@example.it', notes: 'nested' });
      await tx.transaction(async (inner) => {
        await inner.update(customers).set({ id: 5, notes: 'savepoint' }).where(eq(customers.id, 5));
      });
      return tx.select().from(customers).where(match(customers.email, 'TX@example.it'));
    });
    expect(found.map((r) => [r.id, r.notes])).toEqual([[5, 'savepoint']]);
    await expect(d.transaction(async (tx) => {
      await tx.insert(customers).values({ id: 6, name: 'Gone', email: 'gone@example.it' });
      tx.rollback();
    })).rejects.toThrow();
    expect(await db.sql`select id from customers where id = 6`).toHaveLength(0);
    await d.delete(customers).where(eq(customers.id, 5));
  });
});

async function notesOf(id: number): Promise<string | null | undefined> {
  const [r] = await d.select({ notes: customers.notes, id: customers.id }).from(customers).where(eq(customers.id, id));
  return r?.notes;
}

describe('drizzle adapter: interoperability', () => {
  it('rows written here open in SQL (pgseal.decrypt_text) and through the typed helpers, both modes', async () => {
    const [r] = await seal.begin((tx) => tx<{ email: string; notes: string; balance: string; profile: string }[]>`
      select pgseal.decrypt_text(email, 'public.customers.email') as email, pgseal.decrypt_text(notes, pgseal.row_context('public.customers.notes', id::text)) as notes,
             pgseal.decrypt_text(balance, 'public.customers.balance') as balance, pgseal.decrypt_text(profile, 'public.customers.profile') as profile
        from customers where id = 1`);
    expect(r).toEqual({ email: mario.email, notes: mario.notes, balance: mario.balance, profile: JSON.stringify(mario.profile) });
    for (const crypto of ['database', 'client'] as const) {
      const t = seal.table(customersDef, { crypto });
      expect(await t.findByPk(1), crypto).toEqual(mario);
      expect((await t.findBy('email', 'mario.rossi@example.it')).map((x) => x.id), crypto).toEqual([1]);
    }
  });

  it('rows written by the helpers and by SQL open here, and their blind indexes match', async () => {
    for (const [crypto, id] of [['database', 10], ['client', 11]] as const) {
      await seal.table(customersDef, { crypto }).insert({ ...mario, id, email: `h${id}@example.it`, phone: `+39 0${id}` });
      const [row] = await d.select().from(customers).where(match(customers.email, `H${id}@example.it`));
      expect(read(row!), crypto).toEqual({ ...mario, id, email: `h${id}@example.it`, phone: `+39 0${id}` });
    }
    await seal.begin((tx) => tx`
      insert into customers (id, name, email, email_bidx, notes)
      values (12, 'SQL', pgseal.encrypt_text('sql@example.it', 'public.customers.email'), pgseal.blind_index('sql@example.it', 'email', 'public.customers.email'),
              pgseal.encrypt_text('from sql', pgseal.row_context('public.customers.notes', '12')))`);
    const [fromSql] = await d.select({ id: customers.id, email: customers.email, notes: customers.notes }).from(customers).where(match(customers.email, 'sql@example.it'));
    expect(fromSql).toEqual({ id: 12, email: 'sql@example.it', notes: 'from sql' });
    await d.delete(customers).where(raw`${customers.id} between 10 and 12`);
  });
});

describe('drizzle adapter: values that do not open, keys rotated elsewhere', () => {
  it('a tampered value fails with PS003, a non-envelope with PS004, both audited, no plaintext in the error', async () => {
    await d.insert(customers).values({ id: 20, name: 'T', email: 'tamper@example.it', notes: 'secret words' });
    const before = await audited();
    await db.sql`update customers set email = set_byte(email, 30, get_byte(email, 30) # 1) where id = 20`;
    const error = await d.select().from(customers).where(eq(customers.id, 20)).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED, sqlstate: 'PS003' });
    // a row-bound value copied to another row
    await db.sql`update customers set email = null, notes = (select notes from customers where id = 1) where id = 20`;
    await expect(d.select().from(customers).where(eq(customers.id, 20))).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
    await db.sql`update customers set notes = convert_to('plain words', 'UTF8') where id = 20`;
    const malformed = await d.select().from(customers).where(eq(customers.id, 20)).catch((e: unknown) => e as Error);
    expect(malformed).toMatchObject({ code: ErrorCodes.MALFORMED_ENVELOPE, sqlstate: 'PS004' });
    expect(JSON.stringify(malformed) + String(malformed)).not.toContain('plain words');
    expect(await audited()).toBe(before + 3);
    await d.delete(customers).where(eq(customers.id, 20));
  });

  it('a value under a key version rotated in elsewhere reloads the keyring; a compromised key is refused by the guard', async () => {
    await seal.keyring.refresh();
    const otherClient = connectQuiet(db.url);
    const other = pgseal({ sql: otherClient, masterKey: master() });
    try {
      await rotateKey(db.sql, master());
      const od = await pgsealDrizzle(other, drizzle(otherClient)); // loads the keys with the new one
      await od.insert(customers).values({ id: 30, name: 'Rotated', email: 'rotated@example.it', notes: 'new key' });
      const [{ v }] = (await db.sql<{ v: number }[]>`select pgseal.key_version_of(email) as v from customers where id = 30`) as unknown as [{ v: number }];
      expect(seal.keyring.loadedDataKey(v)).toBeUndefined();
      const [row] = await d.select().from(customers).where(match(customers.email, 'rotated@example.it'));
      expect([row?.email, row?.notes]).toEqual(['rotated@example.it', 'new key']);
      expect(seal.keyring.loadedDataKey(v)).toBeDefined();
      // the key this process writes with marked compromised elsewhere: the guard refuses the write, the keyring reloads, it seals again
      await rotateKey(db.sql, master());
      await db.sql`update pgseal.keys set compromised_at = now() where version = ${v}`;
      await d.insert(customers).values({ id: 31, name: 'After', email: 'after@example.it' });
      const [{ w }] = (await db.sql<{ w: number }[]>`select pgseal.key_version_of(email) as w from customers where id = 31`) as unknown as [{ w: number }];
      expect(w).toBeGreaterThan(v);
      expect((await od.select({ email: customers.email }).from(customers).where(eq(customers.id, 31)))[0]?.email).toBe('after@example.it');
    } finally {
      await other.close();
      await otherClient.end({ timeout: 5 });
    }
    await d.delete(customers).where(raw`${customers.id} in (30, 31)`);
  });
});

async function audited(): Promise<number> {
  const [r] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.encryption_audit_log where operation = 'data.decrypt_failed' and table_name = 'customers'`;
  return r!.n;
}

describe('drizzle adapter: per-tenant columns', () => {
  it('seals under the row\'s tenant; match() and inScope() hold a read to one tenant; another tenant\'s value is refused', async () => {
    await d.insert(tenantNotes).values([{ id: 1, tenant: 't1', body: ' nota uno ' }, { id: 2, tenant: 't2', body: 'nota due' }]);
    expect(() => d.insert(tenantNotes).values({ id: 3, tenant: undefined as unknown as string, body: 'x' })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
    const [v1, v2] = await db.sql<{ v: number; s: string }[]>`select pgseal.key_version_of(body) as v, (select scope from pgseal.keys where version = pgseal.key_version_of(body)) as s from tenant_notes order by id`;
    expect([v1!.s, v2!.s]).toEqual(['t1', 't2']);
    // match() on a per-tenant column needs the tenant, and finds only its rows
    expect(() => match(tenantNotes.body, 'nota uno')).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
    expect((await d.select().from(tenantNotes).where(match(tenantNotes.body, 'nota uno', { scope: 't1' }))).map((r) => [r.id, r.body])).toEqual([[1, ' nota uno ']]);
    expect(await d.select().from(tenantNotes).where(match(tenantNotes.body, 'nota uno', { scope: 't2' }))).toEqual([]);
    expect((await d.select().from(tenantNotes).where(inScope(tenantNotes, 't2'))).map((r) => r.id)).toEqual([2]);
    // without a tenant given, each row opens under its own tenant
    expect((await d.select().from(tenantNotes).orderBy(tenantNotes.id)).map((r) => r.body)).toEqual([' nota uno ', 'nota due']);
    // an update of the value is held to the tenant given with it
    expect(() => d.update(tenantNotes).set({ body: 'x' })).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
    await d.update(tenantNotes).set({ tenant: 't2', body: 'nota due bis' });
    expect((await d.select().from(tenantNotes).orderBy(tenantNotes.id)).map((r) => r.body)).toEqual([' nota uno ', 'nota due bis']);
    // t2's value moved into a t1 row (and the row's tenant with it): refused under t1's keys; with every key, its context is t2's
    await db.sql`update tenant_notes set body = (select body from tenant_notes where id = 2) where id = 1`;
    await expect(d.select().from(tenantNotes).where(and(eq(tenantNotes.id, 1), inScope(tenantNotes, 't1')))).rejects.toMatchObject({ code: ErrorCodes.UNKNOWN_KEY_VERSION, sqlstate: 'PS002' });
    await expect(d.select().from(tenantNotes).where(eq(tenantNotes.id, 1))).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED, sqlstate: 'PS003' });
    // the row moved to t2 with it: no longer t1's; t2's, and it opens (column context, same tenant)
    await db.sql`update tenant_notes set tenant = 't2' where id = 1`;
    await expect(d.select().from(tenantNotes).where(and(eq(tenantNotes.id, 1), inScope(tenantNotes, 't1')))).resolves.toEqual([]);
    expect((await d.select().from(tenantNotes).where(and(eq(tenantNotes.id, 1), inScope(tenantNotes, 't2'))))[0]?.body).toBe('nota due bis');
    await d.delete(tenantNotes);
  });
});

describe('drizzle adapter: the access log', () => {
  const entries = () => db.sql<{ table_name: string; column_name: string; row_id: string | null; access_type: string; accessed_by: string }[]>`
    select table_name, column_name, row_id, access_type, accessed_by from pgseal.encrypted_data_access_log order by link_id, link_pos`;

  for (const mode of ['sync', 'async'] as const) {
    it(`${mode}: reads, writes and deletes are logged with the rows' primary keys`, async () => {
      await db.sql`truncate pgseal.encrypted_data_access_log`;
      const logged = pgseal({ sql: app, masterKey: master(), accessLog: { mode, actor: `drizzle-${mode}` } });
      try {
        const ld = await pgsealDrizzle(logged, drizzle(app));
        await ld.insert(customers).values([{ id: 40, name: 'A', email: 'a40@example.it' }, { id: 41, name: 'B', email: 'b41@example.it', notes: 'n41' }]);
        await ld.select({ id: customers.id, email: customers.email, notes: customers.notes }).from(customers).where(match(customers.email, ['a40@example.it', 'b41@example.it']));
        await ld.select({ email: customers.email }).from(customers).where(eq(customers.id, 40)); // no key selected: row id unknown
        await ld.update(customers).set({ phone: '+39 1' }).where(eq(customers.id, 41));
        await ld.update(customers).set({ name: 'plain only' }).where(eq(customers.id, 41)); // touches no encrypted column: not logged
        await ld.delete(customers).where(raw`${customers.id} in (40, 41)`);
        await logged.flushAccessLog();
        const all = (await entries()).map((e) => `${e.access_type} ${e.column_name} ${e.row_id}`);
        // a delete returns its rows in the order the server met them
        const rows = [...all.filter((e) => !e.startsWith('delete')), ...all.filter((e) => e.startsWith('delete')).sort((a, b) => a.slice(-2).localeCompare(b.slice(-2)))];
        expect(rows).toEqual([
          'write email 40', 'write notes 40', 'write email 41', 'write notes 41',
          'read email 40', 'read notes 40', 'read email 41', 'read notes 41',
          'read email null',
          'write phone 41',
          ...['40', '41'].flatMap((id) => ['email', 'phone', 'notes', 'profile', 'balance', 'photo'].map((c) => `delete ${c} ${id}`)),
        ]);
        expect(new Set((await entries()).map((e) => `${e.table_name} ${e.accessed_by}`))).toEqual(new Set([`public.customers drizzle-${mode}`]));
      } finally {
        await logged.close();
      }
    });
  }
});

describe('drizzle adapter: what reaches the database', () => {
  it('with log_statement = all, neither drizzle\'s logger nor the server log holds a plaintext, a searched value or a key', async (ctx) => {
    const log = await serverLog(db.sql);
    await db.sql.unsafe(`alter database "${db.name}" set log_statement = 'all'`);
    await db.sql.unsafe(`alter database "${db.name}" set log_parameter_max_length = -1`);
    const client = connectQuiet(db.url); // its sessions start with the settings above
    const sent: string[] = [];
    const watched = pgseal({ sql: client, masterKey: master(), accessLog: { mode: 'sync' } });
    const mark = typeof log === 'string' ? 0 : await log.mark();
    const tag = randomBytes(4).toString('hex');
    const plaintexts = [`lookup-${tag}@example.it`, `phone-${tag}`, `note-${tag}`, `tenant-body-${tag}`, `searched-${tag}`, `city-${tag}`];
    try {
      const wd = await pgsealDrizzle(watched, drizzle(client, { logger: { logQuery: (query, params) => void sent.push(query, JSON.stringify(params)) } }));
      await wd.insert(customers).values({ id: 50, name: 'Watched', email: plaintexts[0], phone: plaintexts[1], notes: plaintexts[2], profile: { city: plaintexts[5]!, tags: [] } });
      await wd.insert(tenantNotes).values({ id: 50, tenant: 't1', body: plaintexts[3] });
      expect(await wd.select().from(customers).where(match(customers.email, plaintexts[0]!.toUpperCase()))).toHaveLength(1);
      expect(await wd.select().from(customers).where(match(customers.email, [plaintexts[4]!, plaintexts[0]!]))).toHaveLength(1);
      expect(await wd.select().from(tenantNotes).where(match(tenantNotes.body, plaintexts[3]!, { scope: 't1' }))).toHaveLength(1);
      await wd.update(customers).set({ id: 50, notes: plaintexts[2] }).where(eq(customers.id, 50));
      await wd.delete(customers).where(eq(customers.id, 50));
      await wd.delete(tenantNotes).where(eq(tenantNotes.id, 50));
    } finally {
      await watched.close();
      await client.end({ timeout: 5 });
      await db.sql.unsafe(`alter database "${db.name}" reset log_statement`);
      await db.sql.unsafe(`alter database "${db.name}" reset log_parameter_max_length`);
    }
    await seal.keyring.ready();
    const keys: Buffer[] = [];
    for (const { version, scope } of await seal.keyring.versions()) {
      const k = seal.keyring.loadedDataKey(version);
      if (k) keys.push(k.encKey, k.macKey);
      keys.push(...seal.keyring.loadedIndexKeys(scope));
    }
    const active = seal.keyring.loadedActiveKey('default')!;
    expect(keys).toContainEqual(active.encKey);
    const leaks = (text: string) => {
      const lower = text.toLowerCase();
      const found: string[] = [];
      for (const p of plaintexts) for (const f of [p, ...forms(Buffer.from(p))]) if (lower.includes(f.toLowerCase())) found.push(`plaintext ${p}`);
      for (const k of keys) for (const f of forms(k)) if (lower.includes(f.toLowerCase())) found.push(`key ${f.slice(0, 8)}`);
      return found;
    };
    const driver = sent.join('\n');
    expect(driver).toContain('insert into "customers"');
    expect(driver).toContain('pgseal.guard');
    expect(leaks(driver)).toEqual([]);
    if (typeof log === 'string') return ctx.skip(log);
    const server = await log.since(mark);
    expect(server).toMatch(/statement: |execute [^:]*:/);
    expect(server).toContain('email_bidx');
    expect(leaks(server)).toEqual([]);
  });
});

function forms(bytes: Buffer): string[] {
  return [bytes.toString('hex'), bytes.toString('base64'), bytes.toString('base64').replace(/=+$/, '')];
}
