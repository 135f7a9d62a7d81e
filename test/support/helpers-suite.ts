// The typed helpers against a real table: every operation, values that try injection,
// blind-index lookups (normalised, IN, collisions re-checked), per-tenant keys, row
// context, and the at-rest property of what they write.

// Shared by helpers.test.ts (client mode) and helpers-database.test.ts: both modes must
// behave the same, on their own database.

import { createHash, createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { column, defineTable, ErrorCodes, initKeys, LocalMasterKey, pgseal, protectColumn, rotateKey, type CryptoMode, type Pgseal, type Row } from '../../src/index.js';
import postgres from 'postgres';
import { connectQuiet, createDatabase, type TestDatabase } from './db.js';

export function helpersSuite(mode: CryptoMode): void {
  let db: TestDatabase;
  let seal: Pgseal;
  const masterBytes = randomBytes(32);
  const master = new LocalMasterKey(Buffer.from(masterBytes));

  const customers = defineTable({
    name: 'customers',
    primaryKey: 'id',
    columns: {
      id: column.plain<number>(),
      name: column.plain<string>(),
      email: column.text({ searchable: true, normalize: 'email' }),
      phone: column.text({ searchable: true, normalize: 'phone' }),
      tax_code: column.text({ searchable: true, normalize: 'upper' }),
      notes: column.text({ context: 'row' }),
      profile: column.jsonb<{ city: string; tags: string[] }>(),
      balance: column.numeric(),
      photo: column.bytea(),
    },
  });

  const tenantNotes = defineTable({
    name: 'tenant_notes',
    primaryKey: 'id',
    columns: {
      id: column.plain<number>(),
      tenant: column.plain<string>(),
      body: column.text({ searchable: true, normalize: 'trim', scopeColumn: 'tenant' }),
    },
  });

  beforeAll(async () => {
    db = await createDatabase({ migrated: true });
    await initKeys(db.sql, master);
    await initKeys(db.sql, master, 't1');
    await initKeys(db.sql, master, 't2');
    await db.sql`create table customers (id int primary key, name text not null)`;
    await db.sql`create table tenant_notes (id int primary key, tenant text not null)`;
    for (const [c, o] of [
      ['email', { searchable: true, normalizer: 'email' }],
      ['phone', { searchable: true, normalizer: 'phone' }],
      ['tax_code', { searchable: true, normalizer: 'upper' }],
      ['notes', { context: 'row' }],
      ['profile', { valueType: 'jsonb' }],
      ['balance', { valueType: 'numeric' }],
      ['photo', { valueType: 'bytea' }],
    ] as const) {
      await protectColumn(db.sql, { table: 'customers', column: c, ...o });
    }
    await protectColumn(db.sql, { table: 'tenant_notes', column: 'body', searchable: true, normalizer: 'trim', scopeColumn: 'tenant' });
    seal = pgseal({ sql: db.sql, masterKey: master, crypto: mode });
  });
  afterAll(async () => {
    seal?.close();
    await db?.drop();
  });

  const mario = {
    id: 1,
    name: 'Mario Rossi',
    email: 'Mario.Rossi@Example.it',
    phone: '+39 347 123 4567',
    tax_code: 'rssmra85t10a562s',
    notes: 'cliente dal 2019',
    profile: { city: 'Forlì', tags: ['vip'] },
    balance: '12345678901234567890.123456789',
    photo: Buffer.from([0, 255, 1, 254, 0x80, 0xc3, 0x28]),
  };

  describe('typed helpers', () => {
    it('insert and findByPk round-trip every type, typed', async () => {
      const t = seal.table(customers);
      const inserted = await t.insert(mario);
      expect(inserted).toEqual(mario);
      const found = await t.findByPk(1);
      expect(found).toEqual(mario);
      const email: string | null | undefined = found?.email;
      const city: string | undefined = found?.profile?.city;
      expect([email, city]).toEqual([mario.email, 'Forlì']);
      // @ts-expect-error: no such column in the definition
      await t.findBy('emial', 'x').catch(() => undefined);
      // @ts-expect-error: notes is encrypted and not searchable
      await t.findBy('notes', 'x').catch(() => undefined);
    });

    it('stores ciphertext only: no plaintext bytes, blind index is keyed', async () => {
      const [raw] = await db.sql<Record<string, Buffer>[]>`select * from customers where id = 1`;
      for (const col of ['email', 'phone', 'tax_code', 'notes', 'profile', 'balance', 'photo']) {
        expect(raw![col]![0], col).toBe(1);
        for (const needle of ['Mario.Rossi', 'mario.rossi', '3471234567', 'rssmra85', 'RSSMRA85', 'cliente', 'Forl', '12345678901234567890']) {
          expect(raw![col]!.includes(Buffer.from(needle)), `${col} holds ${needle}`).toBe(false);
        }
      }
      const bidx = raw!.email_bidx!;
      expect(bidx).toHaveLength(16);
      const normalized = 'mario.rossi@example.it';
      for (const unkeyed of [createHash('sha256').update(normalized).digest(), createHash('md5').update(normalized).digest(), createHmac('sha256', '').update(normalized).digest()]) {
        expect(bidx.equals(unkeyed.subarray(0, 16))).toBe(false);
      }
      // the SQL blind index of the same value under the same key is the same bytes
      const [sqlIndex] = await seal.begin((tx) => tx<{ b: Buffer }[]>`select pgseal.blind_index(${mario.email}, 'email', 'public.customers.email', 'default', 16) as b`);
      expect(sqlIndex!.b.equals(bidx)).toBe(true);
    });

    it('findBy: normalised equality, IN lists, plain columns', async () => {
      const t = seal.table(customers);
      await t.insert({ id: 2, name: 'Giulia Bianchi', email: 'giulia@example.it', phone: '06 1234 5678', tax_code: 'BNCGLI90A41H501X' });
      expect((await t.findBy('email', '  MARIO.ROSSI@EXAMPLE.IT ')).map((r) => r.id)).toEqual([1]);
      expect((await t.findBy('phone', '0039 347 1234567')).map((r) => r.id)).toEqual([1]);
      expect((await t.findBy('tax_code', 'RSSMRA85T10A562S')).map((r) => r.id)).toEqual([1]);
      expect((await t.findBy('email', ['giulia@example.it', 'mario.rossi@example.it', 'nobody@example.it'])).map((r) => r.id).sort()).toEqual([1, 2]);
      expect((await t.findBy('name', 'Giulia Bianchi')).map((r) => r.id)).toEqual([2]);
      expect((await t.findBy('id', [1, 2])).length).toBe(2);
      expect(await t.findBy('email', 'nobody@example.it')).toEqual([]);
    });

    it('re-checks the decrypted value, so a blind-index collision never returns a wrong row', async () => {
      await db.sql`update customers set email_bidx = (select email_bidx from customers where id = 1) where id = 2`;
      const rows = await seal.table(customers).findBy('email', 'mario.rossi@example.it');
      expect(rows.map((r) => r.id)).toEqual([1]);
      await seal.table(customers).update(2, { email: 'giulia@example.it' });
    });

    it('update, delete, and keyset-paged list', async () => {
      const t = seal.table(customers);
      const updated = await t.update(2, { email: 'g.bianchi@example.it', balance: '-0.5', notes: null });
      expect(updated).toMatchObject({ id: 2, email: 'g.bianchi@example.it', balance: '-0.5', notes: null });
      expect((await t.findBy('email', 'g.bianchi@example.it')).map((r) => r.id)).toEqual([2]);
      const rows = Array.from({ length: 23 }, (_, i) => ({ id: 100 + i, name: `n${i}`, email: `u${i}@example.it`, notes: `nota ${i}` }));
      expect(await t.insertMany(rows, { batchSize: 10 })).toBe(23);
      const seen: number[] = [];
      let after: number | undefined;
      for (;;) {
        const page = await t.list({ limit: 10, ...(after === undefined ? {} : { after }) });
        seen.push(...page.rows.map((r) => r.id));
        if (page.next === undefined) break;
        after = page.next;
      }
      expect(seen).toEqual([1, 2, ...rows.map((r) => r.id)]);
      expect((await t.findByPk(110))?.notes).toBe('nota 10');
      expect(await t.delete(110)).toBe(true);
      expect(await t.delete(110)).toBe(false);
      expect(await t.findByPk(110)).toBeUndefined();
    });

    it('stores values that try injection exactly as given', async () => {
      const t = seal.table(customers);
      const nasty = [
        "O'Brien'); drop table customers; --",
        '$$; select pg_sleep(10); $$',
        '/* comment */ -- trailing',
        '\\x0101 not a ciphertext',
        'x'.repeat(1_000_000),
        'emoji 🇮🇹 and combining é',
      ];
      for (const [i, value] of nasty.entries()) {
        const id = 1000 + i;
        // name is a plain text column: PostgreSQL's text cannot hold NUL, encrypted columns can
        const plain = value.replace(/\u0000/g, '');
        await t.insert({ id, name: plain, email: value, notes: value, photo: Buffer.from([0xff, 0xfe, 0x00, 0xc0, 0xaf]) });
        const back = await t.findByPk(id);
        expect(back?.email, `value ${i}`).toBe(value);
        expect(back?.name).toBe(plain);
        expect(back?.notes).toBe(value);
        expect(back?.photo?.equals(Buffer.from([0xff, 0xfe, 0x00, 0xc0, 0xaf]))).toBe(true);
        if (value.length < 1000) expect((await t.findBy('email', value)).map((r) => r.id)).toEqual([id]);
      }
      const [exists] = await db.sql<{ n: number }[]>`select count(*)::int as n from customers`;
      expect(exists!.n).toBeGreaterThan(20);
      // NUL: not in text (as in PostgreSQL's own text type), exact in bytea
      await expect(t.insert({ id: 1999, name: 'nul', email: 'nul \u0000 inside' })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
      expect(await t.findByPk(1999)).toBeUndefined();
      const nul = Buffer.from('a\u0000b\u0000\u0000c', 'latin1');
      await t.insert({ id: 1998, name: 'nul bytes', photo: nul });
      expect((await t.findByPk(1998))?.photo?.equals(nul)).toBe(true);
      const listed = await t.list({ after: 999, limit: 2000 });
      expect(listed.rows.find((r) => r.id === 1998)?.photo?.equals(nul)).toBe(true);
      expect(listed.rows.find((r) => r.id === 1000)?.email).toBe(nasty[0]);
    });

    it('a row-context value copied to another row fails authentication', async () => {
      await db.sql`update customers set notes = (select notes from customers where id = 1) where id = 2`;
      await expect(seal.table(customers).findByPk(2)).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED, sqlstate: 'PS003' });
      await seal.table(customers).update(2, { notes: 'restored' });
    });

    it('refuses to move a row\'s key or tenant without writing the values bound to it', async () => {
      await expect(seal.table(customers).update(2, { id: 777 })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
      await expect(seal.table(tenantNotes).update(1, { tenant: 't2' })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
      expect((await seal.table(customers).findByPk(2))?.notes).toBe('restored');
    });

    it('checks the definition against pgseal.columns', async () => {
      await expect(seal.table(customers).verify()).resolves.toBeUndefined();
      const wrong = defineTable({ name: 'customers', primaryKey: 'id', columns: { id: column.plain<number>(), email: column.text({ searchable: true, normalize: 'trim' }) } });
      await expect(seal.table(wrong).verify()).rejects.toMatchObject({ code: ErrorCodes.REGISTRY_MISMATCH });
    });

    it('checks plain columns: what the definition says a column reads as is what this connection reads it as', async () => {
      await db.sql`create table ledgers (id bigint primary key, amount numeric, opened date, note text)`;
      await protectColumn(db.sql, { table: 'ledgers', column: 'secret' });
      const columns = { amount: column.plain('string'), opened: column.plain('date'), note: column.plain('string'), secret: column.text() };
      // the trap: a bigint typed as a number reads as a string
      const lie = defineTable({ name: 'ledgers', primaryKey: 'id', columns: { ...columns, id: column.plain<number>() } });
      await expect(seal.table(lie).verify()).rejects.toMatchObject({
        code: ErrorCodes.REGISTRY_MISMATCH, message: expect.stringContaining("id is bigint, which reads as a string on this connection: declare it column.plain('string')"),
      });
      const wrongKind = defineTable({ name: 'ledgers', primaryKey: 'id', columns: { ...columns, id: column.plain('number'), note: column.plain('number'), gone: column.plain('string') } });
      const refused = seal.table(wrongKind).verify();
      await expect(refused).rejects.toMatchObject({ message: expect.stringContaining("id is declared column.plain('number') but reads as a string on this connection (bigint: declare 'string'") });
      await expect(refused).rejects.toMatchObject({ message: expect.stringContaining("note is declared column.plain('number') but reads as a string") });
      await expect(refused).rejects.toMatchObject({ message: expect.stringContaining('gone is not a column of the table') });
      const ledgers = defineTable({ name: 'ledgers', primaryKey: 'id', columns: { ...columns, id: column.plain('string') } });
      await expect(seal.table(ledgers).verify()).resolves.toBeUndefined();
      const t = seal.table(ledgers);
      await t.insert({ id: '9007199254740993', amount: '1.50', opened: new Date('2026-01-02T00:00:00Z'), note: 'n', secret: 's' });
      const row = await t.findByPk('9007199254740993');
      expect(row).toMatchObject({ id: '9007199254740993', amount: '1.50', note: 'n', secret: 's' });
      expect(row!.opened).toBeInstanceOf(Date);
      // with postgres.BigInt a bigint reads as a bigint, and that is the declaration verify accepts
      const bigSql = connectQuiet(db.url, { types: { bigint: postgres.BigInt } });
      const bigSeal = pgseal({ sql: bigSql, masterKey: new LocalMasterKey(Buffer.from(masterBytes)), crypto: mode });
      try {
        const asBigint = defineTable({ name: 'ledgers', primaryKey: 'id', columns: { ...columns, id: column.plain('bigint') } });
        await expect(bigSeal.table(asBigint).verify()).resolves.toBeUndefined();
        await expect(bigSeal.table(ledgers).verify()).rejects.toMatchObject({ message: expect.stringContaining("id is declared column.plain('string') but reads as a bigint") });
        expect((await bigSeal.table(asBigint).findByPk(9007199254740993n))?.id).toBe(9007199254740993n);
      } finally {
        await bigSeal.close();
        await bigSql.end();
      }
      await db.sql`delete from pgseal.columns where table_name = 'ledgers'`;
      await db.sql`drop table ledgers`;
    });
  });

  describe('per-tenant keys', () => {
    it('keys each row by its tenant; one tenant cannot read another\'s rows', async () => {
      const t = seal.table(tenantNotes);
      await t.insert({ id: 1, tenant: 't1', body: 'segreto di t1' });
      await t.insert({ id: 2, tenant: 't2', body: 'segreto di t2' });
      const versions = await db.sql<{ id: number; v: number; scope: string }[]>`
        select n.id, pgseal.key_version_of(n.body) as v, k.scope from tenant_notes n join pgseal.keys k on k.version = pgseal.key_version_of(n.body) order by n.id`;
      expect(versions.map((r) => r.scope)).toEqual(['t1', 't2']);
      expect((await t.findByPk(1, { scope: 't1' }))?.body).toBe('segreto di t1');
      await expect(t.findByPk(2, { scope: 't1' })).rejects.toMatchObject({ code: ErrorCodes.UNKNOWN_KEY_VERSION });
      expect((await t.findBy('body', ' segreto di t2 ', { scope: 't2' })).map((r) => r.id)).toEqual([2]);
      expect((await t.list({ scope: 't1' })).rows.map((r) => r.id)).toEqual([1]);
      expect(await t.findBy('body', 'segreto di t2', { scope: 't1' })).toEqual([]);
    });

    it('a value copied into another tenant\'s row fails authentication, even with every key loaded', async () => {
      await db.sql`insert into tenant_notes (id, tenant, body) select 3, 't2', body from tenant_notes where id = 1`;
      await expect(seal.table(tenantNotes).findByPk(3)).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
      await expect(seal.begin((tx) => tx`select pgseal.decrypt_text(body, pgseal.scope_context('public.tenant_notes.body', tenant)) from tenant_notes where id = 3`)).rejects.toMatchObject({
        code: ErrorCodes.AUTHENTICATION_FAILED,
      });
    });

    it('a value copied into another column fails authentication', async () => {
      await db.sql`update customers set phone = email where id = 1`;
      await expect(seal.table(customers).findByPk(1)).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
      await seal.table(customers).update(1, { phone: mario.phone });
    });
  });

  describe('keys written in another spelling', () => {
    it('bind contexts to the stored text of the key: an upper-case uuid reads back, insertMany too', async () => {
      await db.sql`create table documents (id uuid primary key, raw bytea)`;
      await protectColumn(db.sql, { table: 'documents', column: 'body', context: 'row' });
      const documents = defineTable({ name: 'documents', primaryKey: 'id', columns: { id: column.plain<string>(), raw: column.plain<Buffer>(), body: column.text({ context: 'row' }) } });
      const t = seal.table(documents);
      const upper = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11';
      const mine = Buffer.from('caller owned');
      await t.insert({ id: upper, raw: mine, body: 'uno' });
      expect(mine.toString()).toBe('caller owned'); // pgseal zeroes its own buffers, never the caller's
      await t.insertMany([{ id: upper.replace('A11', 'A12'), body: 'due' }]);
      expect((await t.findByPk(upper.toLowerCase()))?.body).toBe('uno');
      expect((await t.findByPk(upper.replace('A11', 'A12').toLowerCase()))?.body).toBe('due');
      const probe = Buffer.from('caller owned');
      expect((await t.findBy('raw', probe)).map((r) => r.body)).toEqual(['uno']);
      expect(probe.toString()).toBe('caller owned');
    });
  });

  describe('many key versions', () => {
    it('reads values of more than 8 live versions through the one keyset argument (keys never in the transaction\'s settings)', async () => {
      const t = seal.table(customers);
      for (let i = 0; i < 9; i++) {
        await rotateKey(db.sql, master);
        await seal.keyring.refresh();
        await t.insert({ id: 5000 + i, name: `v${i}`, email: `v${i}@example.it` });
      }
      const [live] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.keys where scope = 'default' and purpose = 'data'`;
      expect(live!.n).toBeGreaterThan(8);
      const rows: Row<typeof customers>[] = [];
      for (let i = 0; i < 9; i++) rows.push((await t.findByPk(5000 + i))!);
      expect(rows.map((r) => r.email)).toEqual(Array.from({ length: 9 }, (_, i) => `v${i}@example.it`));
      expect((await t.findByPk(1))?.email).toBe(mario.email);
    });
  });
}
