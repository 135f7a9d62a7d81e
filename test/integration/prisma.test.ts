// The Prisma adapter (pgseal/prisma) with the real Prisma Client 7 and @prisma/adapter-pg:
// the client of test/prisma/schema.prisma is generated here, offline (its time is measured);
// tables are made with SQL and protected with pgseal. Writes are sealed and reads opened in
// this process, lookups go through the blind index and are re-checked, rows interoperate
// with SQL and the typed helpers both ways, what cannot run on ciphertext is refused before
// anything is sent, accesses are logged with their rows' keys, and what Prisma sends (its
// query events: text and parameters) holds no plaintext, searched value or key.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PrismaPg } from '@prisma/adapter-pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pgsealPrisma, plaintext } from '../../src/adapters/prisma.js';
import { column, defineTable, ErrorCodes, initKeys, LocalMasterKey, pgseal, PgsealError, protectColumn, rotateKey, type Pgseal } from '../../src/index.js';
import { createDatabase, type TestDatabase } from '../support/db.js';
import { GENERATED_CLIENT, generatePrismaClient } from '../support/prisma-generate.js';

const generated = await generatePrismaClient();
if (!generated.ok) console.warn(`pgseal/prisma tests skipped: ${generated.reason}`);

/**
 * What the extension's types claim, checked by tsc against the generated client (so not part
 * of `npm run typecheck`, which must pass without generated files): written next to the
 * client, compiled while the other tests run.
 */
const TYPES_CHECK = `// written by test/integration/prisma.test.ts: the extension's types against this generated client
import { PrismaPg } from '@prisma/adapter-pg';
import { expectTypeOf } from 'vitest';
import { pgsealPrisma, plaintext } from '../../../src/adapters/prisma.js';
import { column, defineTable, type Pgseal } from '../../../src/index.js';
import { PrismaClient } from './client.js';

declare const seal: Pgseal;
const contacts = defineTable({
  name: 'contacts',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(), tenant: column.plain<number>(), name: column.plain<string>(),
    email: column.text({ searchable: true, normalize: 'email' }), phone: column.text({ searchable: true, normalize: 'phone' }),
    notes: column.text({ context: 'row' }), secret: column.text({ scopeColumn: 'tenant', context: 'row' }),
    profile: column.jsonb<{ city: string }>(), amount: column.numeric(), photo: column.bytea(),
  },
});

export async function check(): Promise<void> {
  const extension = await pgsealPrisma(seal, { models: { Contact: { table: contacts, fields: { mobile: 'phone', mobileIndex: 'phone_bidx' } } } });
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: 'postgres://x' }) }).$extends(extension);
  const row = await prisma.contact.findUniqueOrThrow({ where: { id: 1 }, select: { id: true, email: true, mobile: true, profile: true, amount: true, photo: true, email_bidx: true } });
  expectTypeOf(row).toEqualTypeOf<{ id: number; email: string | null; mobile: string | null; profile: { city: string } | null; amount: string | null; photo: Buffer | null; email_bidx: Uint8Array<ArrayBuffer> | null }>();
  const created = await prisma.contact.create({ data: { id: 1, tenant: 1, name: 'n', email: plaintext('a@example.it'), profile: plaintext({ city: 'Forlì' }), photo: Buffer.from('x') } });
  expectTypeOf(created.email).toEqualTypeOf<string | null>();
  expectTypeOf(created.notes).toEqualTypeOf<string | null>();
  const orders = await prisma.order.findMany({ include: { contact: true } });
  expectTypeOf(orders[0]!.contact.secret).toEqualTypeOf<string | null>();
  const found = await prisma.contact.findMany({ where: { email: { in: [plaintext('a@example.it')] }, mobile: plaintext('+39 333') } });
  expectTypeOf(found[0]!.mobile).toEqualTypeOf<string | null>();
  // @ts-expect-error: Prisma's input type for an encrypted field is Bytes: a plaintext goes through plaintext()
  await prisma.contact.create({ data: { id: 2, tenant: 1, name: 'n', email: 'a@example.it' } });
  // without the extension the field is the stored Bytes
  const raw = await new PrismaClient({ adapter: new PrismaPg({ connectionString: 'postgres://x' }) }).contact.findFirstOrThrow();
  expectTypeOf(raw.email).toEqualTypeOf<Uint8Array<ArrayBuffer> | null>();
}
`;

function typecheckGenerated(): Promise<{ ok: boolean; output: string; ms: number }> {
  const dir = dirname(GENERATED_CLIENT);
  writeFileSync(join(dir, 'pgseal-types.ts'), TYPES_CHECK);
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../../../tsconfig.json', compilerOptions: { noEmit: true, rootDir: '../../..' }, files: ['pgseal-types.ts'], include: [] }));
  const started = performance.now();
  return new Promise((done) => {
    execFile(join(dir, '../../../node_modules/.bin/tsc'), ['-p', join(dir, 'tsconfig.json')], { timeout: 60_000 }, (error, stdout, stderr) => {
      done({ ok: !error, output: `${stdout}${stderr}`.trim(), ms: Math.round(performance.now() - started) });
    });
  });
}

const typesChecked = generated.ok ? typecheckGenerated() : undefined;

const contacts = defineTable({
  name: 'contacts',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    tenant: column.plain<number>(),
    name: column.plain<string>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    phone: column.text({ searchable: true, normalize: 'phone' }),
    notes: column.text({ context: 'row' }),
    secret: column.text({ scopeColumn: 'tenant', context: 'row' }),
    profile: column.jsonb<{ city: string }>(),
    amount: column.numeric(),
    photo: column.bytea(),
  },
});

const tenantNotes = defineTable({
  name: 'tenant_notes',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    tenant: column.plain<number>(),
    body: column.text({ searchable: true, normalize: 'trim', scopeColumn: 'tenant' }),
  },
});

let db: TestDatabase;
let seal: Pgseal;
// the generated client is loaded at run time: the typecheck does not depend on generated files
let base: any;
let prisma: any;
let extension: unknown;
let newClient: (options?: object) => any;
const masterBytes = randomBytes(32);
const master = new LocalMasterKey(Buffer.from(masterBytes));
const sent: Array<{ query: string; params: string }> = [];

const logRows = () => db.sql<{ table_name: string; column_name: string; row_id: string | null; access_type: string }[]>`
  select table_name, column_name, row_id, access_type from pgseal.encrypted_data_access_log order by link_id, link_pos`;
const failures = async () => (await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.encryption_audit_log where operation = 'data.decrypt_failed' and table_name = 'contacts'`)[0]!.n;

/** Every plaintext this file writes or searches for, and its normalised forms. */
const SECRETS = ['Mario.Rossi@Example.IT', 'mario.rossi@example.it', '+39 333 1234567', '393331234567', 'note of one', 'tenant secret', 'Forl', '1234.50', 'Bruno@Example.it', 'bruno@example.it', 'helper note', 'sql note', 'Carla@Example.it', 'carla@example.it', 'Dario@Example.it', 'dario@example.it', 'collide@example.it'];

function contact(id: number, tenant = 1): Record<string, unknown> {
  return {
    id, tenant, name: `contact ${id}`,
    email: plaintext(id === 1 ? 'Mario.Rossi@Example.IT' : `c${id}@example.it`),
    mobile: plaintext('+39 333 1234567'),
    notes: plaintext(id === 1 ? 'note of one' : `note ${id}`),
    secret: plaintext('tenant secret'),
    profile: plaintext({ city: 'Forlì' }),
    amount: plaintext('1234.50'),
    photo: Buffer.from([0, 1, 254, 255]),
  };
}

beforeAll(async () => {
  if (!generated.ok) return;
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master);
  for (const t of ['1', '2']) await initKeys(db.sql, master, t);
  await db.sql`create table contacts (id int primary key, tenant int not null, name text not null)`;
  await db.sql`create table orders (id int primary key, contact_id int not null references contacts (id) on delete cascade, item text not null)`;
  await db.sql`create table secrets (id int primary key)`;
  await db.sql`create table tenant_notes (id int primary key, tenant int not null)`;
  await protectColumn(db.sql, { table: 'tenant_notes', column: 'body', searchable: true, normalizer: 'trim', scopeColumn: 'tenant' });
  for (const [c, o] of [
    ['email', { searchable: true, normalizer: 'email' }],
    ['phone', { searchable: true, normalizer: 'phone' }],
    ['notes', { context: 'row' }],
    ['secret', { scopeColumn: 'tenant', context: 'row' }],
    ['profile', { valueType: 'jsonb' }],
    ['amount', { valueType: 'numeric' }],
    ['photo', { valueType: 'bytea' }],
  ] as const) {
    await protectColumn(db.sql, { table: 'contacts', column: c, ...o });
  }
  await protectColumn(db.sql, { table: 'secrets', column: 'code' });
  seal = pgseal({ sql: db.sql, masterKey: master, accessLog: { mode: 'sync', actor: 'prisma-test' } });
  const { PrismaClient } = await import(/* @vite-ignore */ pathToFileURL(GENERATED_CLIENT).href);
  newClient = (options = {}) => new PrismaClient({ adapter: new PrismaPg({ connectionString: db.url, max: 2 }), ...options });
  base = newClient({ log: [{ emit: 'event', level: 'query' }] });
  base.$on('query', (e: { query: string; params: string }) => sent.push({ query: e.query, params: e.params }));
  extension = await pgsealPrisma(seal, {
    models: { Contact: { table: contacts, fields: { mobile: 'phone', mobileIndex: 'phone_bidx' } }, Note: { table: tenantNotes } },
  });
  prisma = base.$extends(extension);
});

afterAll(async () => {
  await base?.$disconnect();
  await seal?.close();
  await db?.drop();
});

beforeEach(() => {
  sent.length = 0;
});

/** What Prisma sent: its query texts and parameters, bytes parameters (base64 in the event) decoded. */
function wire(): { texts: string[]; bytes: Buffer[] } {
  const texts: string[] = [];
  const bytes: Buffer[] = [];
  for (const s of sent) {
    texts.push(s.query, s.params);
    for (const p of JSON.parse(s.params) as unknown[]) {
      if (typeof p === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(p) && p.length % 4 === 0) bytes.push(Buffer.from(p, 'base64'));
      if (typeof p === 'string') bytes.push(Buffer.from(p, 'utf8'));
    }
  }
  return { texts, bytes };
}

/** A result as plain data: Prisma's result extensions add a symbol-keyed inspect function to each row. */
function own(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(own);
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v) || v instanceof Date) return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, own(x)]));
}

const refused = async (promise: Promise<unknown>, code: string = ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT) => {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(PgsealError);
  expect(error).toMatchObject({ code });
  expect((error as PgsealError).hint).toBeTruthy();
  return error as PgsealError;
};

it('prisma generate runs offline (the client these tests use)', (ctx) => {
  if (!generated.ok) return ctx.skip(generated.reason);
  console.info(`prisma generate: ${generated.ms} ms`);
  expect(generated.ms).toBeLessThan(30_000);
});

describe.skipIf(!generated.ok)('pgseal/prisma', () => {
  it('the types: decrypted results, plaintext() inputs (tsc against the generated client)', async () => {
    const result = await typesChecked!;
    console.info(`tsc on the generated client: ${result.ms} ms`);
    expect(result.output).toBe('');
    expect(result.ok).toBe(true);
  });


  it('create seals every encrypted field and returns it decrypted; the stored columns hold envelopes', async () => {
    const created = await prisma.contact.create({ data: contact(1) });
    expect(created).toMatchObject({
      id: 1, tenant: 1, name: 'contact 1', email: 'Mario.Rossi@Example.IT', mobile: '+39 333 1234567', notes: 'note of one', secret: 'tenant secret',
      profile: { city: 'Forlì' }, amount: '1234.50',
    });
    expect(Buffer.from(created.photo).equals(Buffer.from([0, 1, 254, 255]))).toBe(true);
    const [raw] = await db.sql<Record<string, Buffer | number | null>[]>`
      select email, phone, notes, secret, profile, amount, photo, email_bidx,
             pgseal.key_version_of(email) as ve, pgseal.key_version_of(notes) as vn, pgseal.key_version_of(secret) as vs, pgseal.key_version_of(photo) as vp
        from contacts where id = 1`;
    for (const v of ['ve', 'vn', 'vs', 'vp']) expect(raw![v]).toBeGreaterThan(0);
    for (const c of ['email', 'phone', 'notes', 'secret', 'profile', 'amount', 'photo']) {
      const stored = raw![c] as Buffer;
      expect(stored.subarray(0, 2).toString('hex')).toBe('0101');
      for (const s of SECRETS) expect(stored.includes(Buffer.from(s))).toBe(false);
    }
    // the index in Node is the one SQL computes
    const [same] = await seal.begin((tx) => tx<{ ok: boolean }[]>`select email_bidx = pgseal.blind_index('MARIO.ROSSI@example.it', 'email', 'public.contacts.email') as ok from contacts where id = 1`);
    expect(same!.ok).toBe(true);
  });

  it('findUnique by id, findMany by a searchable field (=, equals, in, normalised), a mapped field, update, delete', async () => {
    await prisma.contact.create({ data: contact(2) });
    await prisma.contact.create({ data: contact(3, 2) });
    expect(await prisma.contact.findUnique({ where: { id: 2 } })).toMatchObject({ email: 'c2@example.it', notes: 'note 2', secret: 'tenant secret' });
    const byEmail = await prisma.contact.findMany({ where: { email: plaintext('mario.rossi@EXAMPLE.it') }, select: { name: true, email: true } });
    expect(own(byEmail)).toEqual([{ name: 'contact 1', email: 'Mario.Rossi@Example.IT' }]);
    expect(own((await prisma.contact.findMany({ where: { email: { equals: plaintext('C2@example.it') } } })).map((r: { id: number }) => r.id))).toEqual([2]);
    const byIn = await prisma.contact.findMany({ where: { email: { in: [plaintext('c2@example.it'), plaintext('c3@example.it'), plaintext('nobody@example.it')] } }, orderBy: { id: 'asc' } });
    expect(byIn.map((r: { id: number; secret: string }) => [r.id, r.secret])).toEqual([[2, 'tenant secret'], [3, 'tenant secret']]);
    // the field is mobile in Prisma, the column phone in the database (context public.contacts.phone)
    expect(own((await prisma.contact.findMany({ where: { mobile: plaintext('+39 (333) 123-4567'), tenant: 2 } })).map((r: { id: number }) => r.id))).toEqual([3]);
    expect(own(await prisma.contact.findFirst({ where: { email: plaintext('c3@example.it') }, select: { id: true } }))).toEqual({ id: 3 });
    expect(await prisma.contact.count({ where: { tenant: 2 } })).toBe(1);

    const updated = await prisma.contact.update({ where: { id: 2 }, data: { email: plaintext('Bruno@Example.it'), notes: { set: plaintext('updated note') }, secret: plaintext('moved on'), tenant: 2 } });
    expect(updated).toMatchObject({ email: 'Bruno@Example.it', notes: 'updated note', secret: 'moved on', tenant: 2 });
    expect(own((await prisma.contact.findMany({ where: { email: plaintext('bruno@example.it') } })).map((r: { id: number }) => r.id))).toEqual([2]);
    expect(own(await prisma.contact.findMany({ where: { email: plaintext('c2@example.it') } }))).toEqual([]);
    const upserted = await prisma.contact.upsert({ where: { id: 4 }, create: contact(4), update: {} });
    expect(upserted).toMatchObject({ id: 4, notes: 'note 4' });
    expect(own(await prisma.contact.upsert({ where: { id: 4 }, create: contact(4), update: { notes: plaintext('upserted') }, select: { notes: true } }))).toEqual({ notes: 'upserted' });
    const many = await prisma.contact.createManyAndReturn({ data: [contact(5), contact(6)], select: { id: true, email: true } });
    expect(own(many)).toEqual([{ id: 5, email: 'c5@example.it' }, { id: 6, email: 'c6@example.it' }]);
    expect(own(await prisma.contact.updateMany({ where: { id: { in: [5, 6] } }, data: { email: null } }))).toEqual({ count: 2 });
    expect(own(await prisma.contact.findMany({ where: { id: { in: [5, 6] }, email: null }, select: { id: true, email: true, email_bidx: true }, orderBy: { id: 'asc' } }))).toEqual([
      { id: 5, email: null, email_bidx: null }, { id: 6, email: null, email_bidx: null },
    ]);

    const deleted = await prisma.contact.delete({ where: { id: 4 } });
    expect(deleted).toMatchObject({ id: 4, notes: 'upserted', email: 'c4@example.it' });
    expect(await prisma.contact.findUnique({ where: { id: 4 } })).toBeNull();
    expect(own(await prisma.contact.deleteMany({ where: { id: { in: [5, 6] } } }))).toEqual({ count: 2 });
  });

  it('omit and select leave out the key and tenant a context needs: selected for the purpose, then removed', async () => {
    const omitted = own(await prisma.contact.findUnique({ where: { id: 1 }, omit: { id: true, tenant: true, photo: true } })) as Record<string, unknown>;
    expect(omitted).toMatchObject({ name: 'contact 1', notes: 'note of one', secret: 'tenant secret' });
    expect(Object.keys(omitted)).not.toContain('id');
    expect(Object.keys(omitted)).not.toContain('tenant');
    expect(own(await prisma.contact.findMany({ where: { id: 1 }, select: { secret: true } }))).toEqual([{ secret: 'tenant secret' }]);
    // a client that omits the key everywhere (PrismaClient's omit option)
    const omitting = newClient({ omit: { contact: { id: true, tenant: true } } });
    try {
      const rows = own(await omitting.$extends(extension).contact.findMany({ where: { id: 1 } })) as Array<Record<string, unknown>>;
      expect(rows).toMatchObject([{ notes: 'note of one', secret: 'tenant secret' }]);
      expect(Object.keys(rows[0]!)).not.toContain('id');
      expect(Object.keys(rows[0]!)).not.toContain('tenant');
    } finally {
      await omitting.$disconnect();
    }
  });

  it('definitions are checked: against pgseal.columns at start, against the Prisma schema at $extends', async () => {
    const wrong = defineTable({ ...contacts, columns: { ...contacts.columns, email: column.text({ normalize: 'email' }) } });
    await refused(pgsealPrisma(seal, { models: { Contact: { table: wrong } } }), ErrorCodes.REGISTRY_MISMATCH);
    const misnamed = await pgsealPrisma(seal, { models: { Contact: { table: contacts, fields: { mobile: 'mobile_phone' } } } });
    expect(() => base.$extends(misnamed)).toThrow(expect.objectContaining({ code: ErrorCodes.REGISTRY_MISMATCH }));
    const renamed = defineTable({ ...contacts, name: 'people' });
    await expect(pgsealPrisma(seal, { models: { Contact: { table: renamed } }, verify: false }).then((e) => base.$extends(e))).rejects.toMatchObject({ code: ErrorCodes.REGISTRY_MISMATCH });
    await expect(pgsealPrisma(seal, { models: { Customer: { table: contacts } } }).then((e) => base.$extends(e))).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });

  it('nested reads open the related model; nested writes of encrypted values are refused; transactions work', async () => {
    await base.order.create({ data: { id: 1, contactId: 1, item: 'book' } });
    const order = await prisma.order.findUnique({ where: { id: 1 }, include: { contact: { select: { email: true, notes: true } } } });
    expect(own(order)).toEqual({ id: 1, contactId: 1, item: 'book', contact: { email: 'Mario.Rossi@Example.IT', notes: 'note of one' } });
    const withOrders = await prisma.contact.findUnique({ where: { id: 1 }, select: { secret: true, orders: { select: { item: true } } } });
    expect(own(withOrders)).toEqual({ secret: 'tenant secret', orders: [{ item: 'book' }] });
    await refused(prisma.order.create({ data: { id: 2, item: 'pen', contact: { create: { ...contact(7) } } } }));
    expect(await prisma.order.create({ data: { id: 2, item: 'pen', contact: { connect: { id: 1 } } }, include: { contact: { select: { email: true } } } }))
      .toMatchObject({ contact: { email: 'Mario.Rossi@Example.IT' } });
    const inTx = await prisma.$transaction(async (tx: any) => {
      await tx.contact.create({ data: contact(8) });
      return tx.contact.findFirst({ where: { email: plaintext('c8@example.it') }, select: { id: true, notes: true } });
    });
    expect(own(inTx)).toEqual({ id: 8, notes: 'note 8' });
    const batch = await prisma.$transaction([prisma.contact.findUnique({ where: { id: 8 }, select: { email: true } }), prisma.contact.count()]);
    expect(own(batch[0])).toEqual({ email: 'c8@example.it' });
  });

  it('rows written through Prisma open in SQL and in the typed helpers; rows written there open through Prisma', async () => {
    const [inSql] = await seal.begin((tx) => tx<Record<string, string>[]>`
      select pgseal.decrypt_text(email, 'public.contacts.email') as email,
             pgseal.decrypt_text(phone, 'public.contacts.phone') as phone,
             pgseal.decrypt_text(notes, pgseal.row_context('public.contacts.notes', id::text)) as notes,
             pgseal.decrypt_text(secret, pgseal.row_context(pgseal.scope_context('public.contacts.secret', tenant::text), id::text)) as secret,
             pgseal.decrypt_text(amount, 'public.contacts.amount') as amount,
             phone_bidx = pgseal.blind_index('+39 333 1234567', 'phone', 'public.contacts.phone') as same_index
        from contacts where id = 1`);
    expect(inSql).toEqual({ email: 'Mario.Rossi@Example.IT', phone: '+39 333 1234567', notes: 'note of one', secret: 'tenant secret', amount: '1234.50', same_index: true });
    const helpers = seal.table(contacts, { crypto: 'client' });
    expect(await helpers.findByPk(1)).toMatchObject({ email: 'Mario.Rossi@Example.IT', phone: '+39 333 1234567', notes: 'note of one', secret: 'tenant secret', profile: { city: 'Forlì' } });
    expect((await helpers.findBy('email', 'MARIO.ROSSI@example.it')).map((r) => r.id)).toEqual([1]);

    // the other way: the typed helpers (client and database mode), and SQL
    await helpers.insert({ id: 20, tenant: 2, name: 'helper', email: 'Carla@Example.it', phone: '0039 333 7654321', notes: 'helper note', secret: 'helper secret', amount: '7' });
    await seal.table(contacts, { crypto: 'database' }).insert({ id: 21, tenant: 1, name: 'database', email: 'Dario@Example.it', notes: 'db note', secret: 'db secret' });
    await seal.begin((tx) => tx`
      insert into contacts (id, tenant, name, email, email_bidx, notes, secret)
      values (22, 2, 'sql', pgseal.encrypt_text('Bruno@Example.it', 'public.contacts.email'), pgseal.blind_index('Bruno@Example.it', 'email', 'public.contacts.email'),
              pgseal.encrypt_text('sql note', pgseal.row_context('public.contacts.notes', '22')),
              pgseal.encrypt_text('sql secret', pgseal.row_context(pgseal.scope_context('public.contacts.secret', '2'), '22')))`);
    expect(await prisma.contact.findUnique({ where: { id: 20 } })).toMatchObject({ email: 'Carla@Example.it', mobile: '0039 333 7654321', notes: 'helper note', secret: 'helper secret', amount: '7' });
    expect(own(await prisma.contact.findUnique({ where: { id: 21 }, select: { secret: true, notes: true } }))).toEqual({ secret: 'db secret', notes: 'db note' });
    const found = await prisma.contact.findMany({ where: { email: { in: [plaintext('carla@example.it'), plaintext('dario@example.it'), plaintext('bruno@example.it')] } }, select: { id: true }, orderBy: { id: 'asc' } });
    expect(found.map((r: { id: number }) => r.id)).toEqual([2, 20, 21, 22]);
    expect(own((await prisma.contact.findMany({ where: { mobile: plaintext('+39 333 765 4321'), tenant: 2 }, select: { id: true } })))).toEqual([{ id: 20 }]);
    expect(own(await prisma.contact.findUnique({ where: { id: 22 }, select: { notes: true, secret: true } }))).toEqual({ notes: 'sql note', secret: 'sql secret' });
  });

  it('a value that does not open throws its code (PS003, PS004), audited, with no plaintext in the error', async () => {
    await prisma.contact.create({ data: contact(30) });
    const before = await failures();
    // a notes value copied from another row: its context binds row 1
    await db.sql`update contacts set notes = (select notes from contacts where id = 1) where id = 30`;
    const copied = await refused(prisma.contact.findUnique({ where: { id: 30 } }), ErrorCodes.AUTHENTICATION_FAILED);
    expect(copied.sqlstate).toBe('PS003');
    // one byte of the ciphertext flipped
    await db.sql`update contacts set notes = null, email = set_byte(email, 30, get_byte(email, 30) # 1) where id = 30`;
    const tampered = await refused(prisma.contact.findMany({ where: { id: 30 }, select: { email: true } }), ErrorCodes.AUTHENTICATION_FAILED);
    await db.sql`update contacts set email = null, amount = '\\x01020304'::bytea where id = 30`;
    const malformed = await refused(prisma.contact.findFirst({ where: { id: 30 } }), ErrorCodes.MALFORMED_ENVELOPE);
    expect(malformed.sqlstate).toBe('PS004');
    expect(await failures()).toBe(before + 3);
    for (const e of [copied, tampered, malformed]) {
      const text = `${e.message} ${e.hint} ${JSON.stringify(e)}`;
      for (const s of [...SECRETS, 'c30@example.it', 'note 30']) expect(text).not.toContain(s);
    }
    await db.sql`delete from contacts where id = 30`;
  });

  it('refuses, before anything is sent, what cannot run on ciphertext', async () => {
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['contains', () => prisma.contact.findMany({ where: { email: { contains: plaintext('mario') } } })],
      ['startsWith', () => prisma.contact.findMany({ where: { email: { startsWith: plaintext('m') } } })],
      ['lt', () => prisma.contact.findMany({ where: { amount: { lt: plaintext('5') } } })],
      ['not', () => prisma.contact.findMany({ where: { email: { not: plaintext('x@example.it') } } })],
      ['notIn', () => prisma.contact.findMany({ where: { email: { notIn: [plaintext('x@example.it')] } } })],
      ['non-searchable', () => prisma.contact.findMany({ where: { notes: plaintext('note of one') } })],
      ['under OR', () => prisma.contact.findMany({ where: { OR: [{ email: plaintext('x@example.it') }, { id: 1 }] } })],
      ['under NOT', () => prisma.contact.findMany({ where: { NOT: { email: plaintext('x@example.it') } } })],
      ['orderBy', () => prisma.contact.findMany({ orderBy: { email: 'asc' } })],
      ['orderBy blind index', () => prisma.contact.findMany({ orderBy: [{ id: 'asc' }, { email_bidx: 'desc' }] })],
      ['blind index in where', () => prisma.contact.findMany({ where: { email_bidx: Buffer.alloc(16) } })],
      ['blind index written', () => prisma.contact.create({ data: { ...contact(40), email_bidx: Buffer.alloc(16) } })],
      ['distinct', () => prisma.contact.findMany({ distinct: ['email'] })],
      ['cursor', () => prisma.contact.findMany({ cursor: { email: plaintext('x') } as never, take: 1 })],
      ['count with a lookup', () => prisma.contact.count({ where: { email: plaintext('mario.rossi@example.it') } })],
      ['groupBy', () => prisma.contact.groupBy({ by: ['email'] })],
      ['aggregate _max', () => prisma.contact.aggregate({ _max: { email: true } })],
      ['update by an encrypted field', () => prisma.contact.updateMany({ where: { email: plaintext('mario.rossi@example.it') }, data: { name: 'x' } })],
      ['delete by an encrypted field', () => prisma.contact.deleteMany({ where: { email: plaintext('mario.rossi@example.it') } })],
      ['a relation filter on an encrypted field', () => prisma.order.findMany({ where: { contact: { email: plaintext('mario.rossi@example.it') } } })],
      ['a nested where on an encrypted field', () => prisma.order.findMany({ include: { contact: { select: { id: true } } }, where: { contact: { is: { notes: { contains: 'x' } } } } })],
      ['a model whose table is protected and not configured', () => prisma.secret.findMany()],
      ['lookup with distinct', () => prisma.contact.findMany({ where: { email: plaintext('x@example.it') }, distinct: ['name'] })],
    ];
    for (const [name, run] of cases) {
      sent.length = 0;
      const error = await refused(run()).catch((e: unknown) => {
        throw new Error(`${name}: ${String(e)}`);
      });
      expect(sent, `${name} sent nothing`).toEqual([]);
      expect(error.message).not.toContain('mario');
    }
  });

  it('contexts bound to the row and the tenant: values they need are required, a moved key or tenant is refused', async () => {
    const missingTenant = await refused(prisma.contact.update({ where: { id: 1 }, data: { secret: plaintext('x') } }), ErrorCodes.INVALID_ARGUMENT);
    expect(missingTenant.message).toContain('tenant');
    await refused(prisma.contact.updateMany({ where: { tenant: 1 }, data: { notes: plaintext('x') } }), ErrorCodes.INVALID_ARGUMENT);
    await refused(prisma.contact.update({ where: { id: 1 }, data: { tenant: 2 } }), ErrorCodes.INVALID_ARGUMENT);
    expect(own(await prisma.contact.update({ where: { id: 1, tenant: 1 }, data: { secret: plaintext('tenant secret'), name: 'contact 1' }, select: { secret: true } }))).toEqual({ secret: 'tenant secret' });
    expect(sent.length).toBeGreaterThan(0);
  });

  it('per-tenant keys: a lookup uses the tenant the where names; another tenant\'s value does not open', async () => {
    await prisma.note.create({ data: { id: 1, tenant: 1, body: plaintext(' shared ') } });
    await prisma.note.createMany({ data: [{ id: 2, tenant: 2, body: plaintext('shared') }, { id: 3, tenant: 2, body: plaintext('own') }] });
    const ids = async (where: object) => (await prisma.note.findMany({ where, select: { id: true }, orderBy: { id: 'asc' } })).map((r: { id: number }) => r.id);
    expect(await ids({ body: plaintext('shared'), tenant: 1 })).toEqual([1]);
    expect(await ids({ body: plaintext('shared '), tenant: 2 })).toEqual([2]);
    expect(await ids({ AND: [{ tenant: { equals: 2 } }, { body: { in: [plaintext('own'), plaintext('shared')] } }] })).toEqual([2, 3]);
    await refused(prisma.note.findMany({ where: { body: plaintext('shared') } }), ErrorCodes.INVALID_ARGUMENT);
    const [key] = await db.sql<{ v: number }[]>`select pgseal.key_version_of(body) as v from tenant_notes where id = 2`;
    expect(seal.keyring.loadedDataKey(key!.v)?.scope).toBe('2');
    // tenant 2's value copied into tenant 1's row: read as tenant 1 its key is out of scope (PS002); read with every key, it fails authentication
    await db.sql`update tenant_notes set body = (select body from tenant_notes where id = 2) where id = 1`;
    await refused(prisma.note.findMany({ where: { tenant: 1 } }), ErrorCodes.UNKNOWN_KEY_VERSION);
    await refused(prisma.note.findUnique({ where: { id: 1 } }), ErrorCodes.AUTHENTICATION_FAILED);
    await db.sql`delete from tenant_notes`;
  });

  it('a stale keyring reloads once: another instance rotates and writes, this one reads and finds', async () => {
    await rotateKey(db.sql, master);
    const other = pgseal({ sql: db.sql, masterKey: new LocalMasterKey(Buffer.from(masterBytes)) });
    try {
      await other.table(contacts).insert({ id: 80, tenant: 1, name: 'rotated', email: 'rotated@example.it', notes: 'new key' });
      const [v] = await db.sql<{ v: number }[]>`select pgseal.key_version_of(email) as v from contacts where id = 80`;
      expect(seal.keyring.loadedDataKey(v!.v)).toBeUndefined();
      expect(own(await prisma.contact.findUnique({ where: { id: 80 }, select: { email: true, notes: true } }))).toEqual({ email: 'rotated@example.it', notes: 'new key' });
      expect(own(await prisma.contact.findMany({ where: { email: plaintext('rotated@example.it') }, select: { id: true } }))).toEqual([{ id: 80 }]);
      // and this instance now writes with the new key
      await prisma.contact.update({ where: { id: 80 }, data: { email: plaintext('rotated2@example.it') } });
      const [w] = await db.sql<{ v: number }[]>`select pgseal.key_version_of(email) as v from contacts where id = 80`;
      expect(w!.v).toBe(v!.v);
    } finally {
      await other.close();
    }
  });

  it('blind-index collisions never come back: findMany (take, skip), findFirst, findUnique', async () => {
    await prisma.contact.create({ data: { ...contact(50), email: plaintext('collide@example.it') } });
    await prisma.contact.create({ data: { ...contact(51), email: plaintext('other51@example.it') } });
    await prisma.contact.create({ data: { ...contact(52), email: plaintext('collide@example.it') } });
    // row 49 holds another value under the index of 'collide@example.it': what a truncated index allows
    await prisma.contact.create({ data: { ...contact(49), email: plaintext('other49@example.it') } });
    await db.sql`update contacts set email_bidx = (select email_bidx from contacts where id = 50) where id in (49, 51)`;
    const where = { email: plaintext('collide@example.it') };
    const ids = (rows: Array<{ id: number }>) => rows.map((r) => r.id);
    expect(ids(await prisma.contact.findMany({ where, orderBy: { id: 'asc' } }))).toEqual([50, 52]);
    expect(ids(await prisma.contact.findMany({ where, orderBy: { id: 'asc' }, take: 1 }))).toEqual([50]);
    expect(ids(await prisma.contact.findMany({ where, orderBy: { id: 'asc' }, skip: 1, take: 1 }))).toEqual([52]);
    expect(ids(await prisma.contact.findMany({ where, orderBy: { id: 'asc' }, select: { id: true } }))).toEqual([50, 52]);
    expect(own(await prisma.contact.findFirst({ where, orderBy: { id: 'asc' }, select: { id: true } }))).toEqual({ id: 50 });
    expect(own(await prisma.contact.findFirst({ where, orderBy: { id: 'asc' }, skip: 1, select: { id: true } }))).toEqual({ id: 52 });
    expect(await prisma.contact.findFirst({ where, orderBy: { id: 'asc' }, skip: 2 })).toBeNull();
    expect(await prisma.contact.findUnique({ where: { id: 49, ...where } })).toBeNull();
    expect(own(await prisma.contact.findUnique({ where: { id: 50, ...where }, select: { email: true } }))).toEqual({ email: 'collide@example.it' });
    await expect(prisma.contact.findUniqueOrThrow({ where: { id: 51, ...where } })).rejects.toMatchObject({ code: 'P2025' });
    await expect(prisma.contact.findFirstOrThrow({ where, orderBy: { id: 'asc' }, skip: 5 })).rejects.toMatchObject({ code: 'P2025' });
    await db.sql`delete from contacts where id between 49 and 52`;
  });

  it('logs each access with the rows\' real primary keys (selected for the purpose when the query left them out)', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    await prisma.contact.create({ data: { id: 60, tenant: 1, name: 'logged', email: plaintext('log@example.it') }, select: { name: true } });
    const read = await prisma.contact.findMany({ where: { email: plaintext('log@example.it') }, select: { name: true, email: true } });
    expect(own(read)).toEqual([{ name: 'logged', email: 'log@example.it' }]);
    await prisma.order.findMany({ where: { id: 1 }, include: { contact: { select: { notes: true } } } });
    await prisma.contact.updateMany({ where: { id: 60 }, data: { email: plaintext('log2@example.it') } });
    await prisma.contact.updateMany({ where: { name: 'logged' }, data: { amount: plaintext('1') } });
    await prisma.contact.delete({ where: { id: 60 }, select: { name: true } });
    expect(await logRows()).toEqual([
      { table_name: 'public.contacts', column_name: 'email', row_id: '60', access_type: 'write' },
      { table_name: 'public.contacts', column_name: 'email', row_id: '60', access_type: 'read' },
      { table_name: 'public.contacts', column_name: 'notes', row_id: '1', access_type: 'read' },
      { table_name: 'public.contacts', column_name: 'email', row_id: '60', access_type: 'write' },
      // updateMany returns a count, not the rows: one entry per row, its key unknown
      { table_name: 'public.contacts', column_name: 'amount', row_id: null, access_type: 'write' },
      ...['email', 'phone', 'notes', 'secret', 'profile', 'amount', 'photo'].map((c) => ({ table_name: 'public.contacts', column_name: c, row_id: '60', access_type: 'delete' })),
    ]);
  });

  it('sends no plaintext, searched value or key: the query texts and parameters Prisma logged', async () => {
    const keys = [seal.keyring.loadedActiveKey('default')!, seal.keyring.loadedActiveKey('1')!, seal.keyring.loadedActiveKey('2')!].flatMap((k) => [k.encKey, k.macKey]);
    const indexKeys = ['default', '1', '2'].flatMap((s) => seal.keyring.loadedIndexKeys(s));
    expect(keys.length + indexKeys.length).toBe(9);
    await prisma.contact.create({ data: contact(70) });
    await prisma.contact.findMany({ where: { email: { in: [plaintext('Mario.Rossi@Example.IT'), plaintext('c70@example.it')] }, mobile: plaintext('+39 333 1234567'), tenant: 1 } });
    await prisma.contact.update({ where: { id: 70, tenant: 1 }, data: { notes: plaintext('note of one'), secret: plaintext('tenant secret'), profile: plaintext({ city: 'Forlì' }) } });
    await prisma.contact.upsert({ where: { id: 71 }, create: contact(71), update: {} });
    await prisma.contact.createMany({ data: [contact(72), contact(73)] });
    expect(sent.length).toBeGreaterThanOrEqual(5);
    const { texts, bytes } = wire();
    for (const s of [...SECRETS, 'c70@example.it', 'note 70', 'Forlì']) {
      for (const t of texts) expect(t).not.toContain(s);
      for (const b of bytes) expect(b.includes(Buffer.from(s, 'utf8'))).toBe(false);
    }
    for (const k of [...keys, ...indexKeys]) {
      for (const b of bytes) expect(b.includes(k.subarray(0, 16))).toBe(false);
      for (const t of texts) expect(t).not.toContain(k.toString('hex'));
    }
  });
});
