// The Kysely adapter against a real database through the real kysely package and the
// postgres.js dialect: writes sealed in Node, equality and IN through the blind index with
// the re-check, the refusals, row contexts and per-tenant keys, the access log, the audit
// of values that do not open, a stale keyring, interop with SQL and the typed helpers, and
// what the server is sent (no plaintext, searched value or key).

import { randomBytes } from 'node:crypto';
import { Kysely, sql, type LogEvent } from 'kysely';
import { PostgresJSDialect } from 'kysely-postgres-js';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pgsealKysely, type KyselyTable, type PgsealKyselyPlugin } from '../../src/adapters/kysely.js';
import { column, defineTable, ErrorCodes, initKeys, LocalMasterKey, pgseal, protectColumn, rotateKey, type Pgseal } from '../../src/index.js';
import { connectQuiet, createDatabase, type TestDatabase } from '../support/db.js';

const customers = defineTable({
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

const tenantNotes = defineTable({
  name: 'tenant_notes',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    tenant: column.plain<string>(),
    body: column.text({ searchable: true, normalize: 'trim', scopeColumn: 'tenant' }),
  },
});

interface DB {
  customers: KyselyTable<typeof customers>;
  tenant_notes: KyselyTable<typeof tenantNotes>;
  orders: { id: number; customer_id: number; total: string };
  secrets: { id: number; code: Buffer | null };
}

let db: TestDatabase;
let seal: Pgseal;
let plugin: PgsealKyselyPlugin;
let k: Kysely<DB>;
const sent: Array<{ sql: string; parameters: readonly unknown[] }> = [];
const master = new LocalMasterKey(randomBytes(32));

function kysely(p: PgsealKyselyPlugin): Kysely<DB> {
  return new Kysely<DB>({
    dialect: new PostgresJSDialect({ postgres: connectQuiet(db.url) }),
    plugins: [p],
    log: (event: LogEvent) => {
      sent.push({ sql: event.query.sql, parameters: event.query.parameters });
    },
  });
}

const logRows = () => db.sql<{ table_name: string; column_name: string; row_id: string | null; access_type: string }[]>`
  select table_name, column_name, row_id, access_type from pgseal.encrypted_data_access_log order by link_id, link_pos`;

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master);
  await initKeys(db.sql, master, 't1');
  await initKeys(db.sql, master, 't2');
  await db.sql`create table customers (id int primary key, name text not null)`;
  await db.sql`create table tenant_notes (id int primary key, tenant text not null)`;
  await db.sql`create table orders (id int primary key, customer_id int not null, total numeric not null)`;
  await db.sql`create table secrets (id int primary key)`;
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
  // protected, and not given to the plugin
  await protectColumn(db.sql, { table: 'secrets', column: 'code' });
  seal = pgseal({ sql: db.sql, masterKey: master, accessLog: { mode: 'sync', actor: 'kysely-test' } });
  plugin = await pgsealKysely(seal, { tables: [customers, tenantNotes] });
  k = kysely(plugin);
});
afterAll(async () => {
  await k?.destroy();
  await seal?.close();
  await db?.drop();
});
beforeEach(() => {
  sent.length = 0;
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
const giulia = { id: 2, name: 'Giulia Bianchi', email: 'giulia@example.it', phone: '06 1234 5678', notes: 'nuova', profile: null, balance: '-0.5', photo: null };

describe('kysely: writes and reads', () => {
  it('insert returning and select by primary key round-trip every value type', async () => {
    const inserted = await k.insertInto('customers').values(mario).returningAll().executeTakeFirstOrThrow();
    expect(inserted).toEqual(mario);
    await k.insertInto('customers').values(giulia).execute();
    const found = await k.selectFrom('customers').selectAll().where('id', '=', 1).executeTakeFirst();
    expect(found).toEqual(mario);
    const some = await k.selectFrom('customers').select(['id', 'email as mail', 'profile']).where('id', 'in', [1, 2]).orderBy('id').execute();
    expect(some).toEqual([{ id: 1, mail: mario.email, profile: mario.profile }, { id: 2, mail: giulia.email, profile: null }]);
  });

  it('stores ciphertext only: the raw column holds an envelope, no plaintext bytes', async () => {
    const [raw] = await db.sql<Record<string, Buffer | number | null>[]>`
      select *, pgseal.key_version_of(email) as v_email, pgseal.key_version_of(notes) as v_notes, pgseal.key_version_of(photo) as v_photo from customers where id = 1`;
    for (const v of ['v_email', 'v_notes', 'v_photo']) expect(raw![v], v).not.toBeNull();
    for (const col of ['email', 'phone', 'notes', 'profile', 'balance', 'photo']) {
      const value = raw![col] as Buffer;
      expect(value[0], col).toBe(1);
      for (const needle of ['Mario.Rossi', 'mario.rossi', '3471234567', 'cliente', 'Forl', '12345678901234567890']) {
        expect(value.includes(Buffer.from(needle)), `${col} holds ${needle}`).toBe(false);
      }
    }
    expect((raw!.email_bidx as Buffer).length).toBe(16);
  });

  it('equality and IN on searchable columns go through the blind index, normalised', async () => {
    const one = await k.selectFrom('customers').select(['id', 'email']).where('email', '=', '  MARIO.ROSSI@EXAMPLE.IT ').execute();
    expect(one).toEqual([{ id: 1, email: mario.email }]);
    const many = await k.selectFrom('customers').select('id').where('email', 'in', ['giulia@example.it', 'mario.rossi@example.it', 'nobody@example.it']).orderBy('id').execute();
    expect(many).toEqual([{ id: 1 }, { id: 2 }]);
    // phone normalised, the search column not selected, combined with plain conditions
    const phone = await k.selectFrom('customers as c').select(['c.id', 'c.name']).where('c.phone', '=', '0039 347 1234567').where('c.name', '=', 'Mario Rossi').execute();
    expect(phone).toEqual([{ id: 1, name: 'Mario Rossi' }]);
    expect(await k.selectFrom('customers').select('id').where('email', '=', 'nobody@example.it').execute()).toEqual([]);
    // the SQL sent matches the index column, never the value
    const lookup = sent.find((q) => q.sql.includes('"email_bidx" in') || q.sql.includes('"email_bidx" ='));
    expect(lookup).toBeDefined();
    expect(lookup!.sql).not.toMatch(/"email" =/);
  });

  it('re-checks the decrypted value: a blind-index collision never returns a wrong row', async () => {
    await db.sql`update customers set email_bidx = (select email_bidx from customers where id = 1) where id = 2`;
    expect(await k.selectFrom('customers').select('id').where('email', '=', 'mario.rossi@example.it').execute()).toEqual([{ id: 1 }]);
    expect(await k.selectFrom('customers').select(['id', 'email']).where('email', '=', mario.email).execute()).toEqual([{ id: 1, email: mario.email }]);
    await k.updateTable('customers').set({ email: giulia.email }).where('id', '=', 2).execute();
    expect(await k.selectFrom('customers').select('id').where('email', '=', giulia.email).execute()).toEqual([{ id: 2 }]);
  });

  it('update (row context too) and delete', async () => {
    const updated = await k.updateTable('customers').set({ email: 'g.bianchi@example.it', notes: 'aggiornata', balance: '7' }).where('id', '=', 2).returning(['id', 'email', 'notes', 'balance']).executeTakeFirst();
    expect(updated).toEqual({ id: 2, email: 'g.bianchi@example.it', notes: 'aggiornata', balance: '7' });
    expect(await k.selectFrom('customers').select('id').where('email', '=', 'g.bianchi@example.it').execute()).toEqual([{ id: 2 }]);
    await k.updateTable('customers').set({ phone: null }).where('id', '=', 2).execute();
    expect(await k.selectFrom('customers').select(['phone', 'notes']).where('id', '=', 2).executeTakeFirst()).toEqual({ phone: null, notes: 'aggiornata' });
    const [bidx] = await db.sql<{ b: Buffer | null }[]>`select phone_bidx as b from customers where id = 2`;
    expect(bidx!.b).toBeNull();
    await k.insertInto('customers').values({ id: 3, name: 'Temp', email: 'temp@example.it', notes: 'da cancellare' }).execute();
    const gone = await k.deleteFrom('customers').where('id', '=', 3).returning(['id', 'notes']).execute();
    expect(gone).toEqual([{ id: 3, notes: 'da cancellare' }]);
    const r = await k.deleteFrom('customers').where('id', '=', 3).executeTakeFirst();
    expect(r.numDeletedRows).toBe(0n);
  });

  it('multi-row inserts with a value left out, and a query compiled first', async () => {
    await k.insertInto('customers').values([{ id: 60, name: 'Sessanta', email: 'sessanta@example.it' }, { id: 61, name: 'Sessantuno', phone: '+39 61' }]).execute();
    expect(await k.selectFrom('customers').select(['id', 'email', 'phone']).where('id', 'in', [60, 61]).orderBy('id').execute()).toEqual([
      { id: 60, email: 'sessanta@example.it', phone: null },
      { id: 61, email: null, phone: '+39 61' },
    ]);
    const compiled = k.selectFrom('customers').select(['id', 'email']).where('email', '=', 'sessanta@example.it').compile();
    expect(compiled.parameters.some((p) => typeof p === 'string' && p.includes('sessanta'))).toBe(false);
    expect((await k.executeQuery(compiled)).rows).toEqual([{ id: 60, email: 'sessanta@example.it' }]);
    expect(await k.selectFrom('customers').select((eb) => eb.fn.countAll<string>().as('n')).where('phone', 'is not', null).where('id', '>=', 60).executeTakeFirst()).toEqual({ n: '1' });
    await k.deleteFrom('customers').where('id', 'in', [60, 61]).execute();
  });

  it('reads through joins and aliases, and upserts', async () => {
    await k.insertInto('orders').values([{ id: 10, customer_id: 1, total: '9.90' }, { id: 11, customer_id: 2, total: '5' }]).execute();
    const rows = await k.selectFrom('customers as c').innerJoin('orders as o', 'o.customer_id', 'c.id').select(['o.id as order', 'c.email', 'c.notes as nota', 'o.total']).orderBy('o.id').execute();
    expect(rows).toEqual([{ order: 10, email: mario.email, nota: mario.notes, total: '9.90' }, { order: 11, email: 'g.bianchi@example.it', nota: 'aggiornata', total: '5' }]);
    const starred = await k.selectFrom('orders as o').innerJoin('customers as c', 'c.id', 'o.customer_id').selectAll('c').select('o.total').where('o.id', '=', 10).executeTakeFirst();
    expect(starred).toEqual({ ...mario, total: '9.90' });
    await k.insertInto('customers').values({ id: 4, name: 'Upsert', email: 'old@example.it' })
      .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ email: eb.ref('excluded.email'), name: eb.ref('excluded.name') }))).execute();
    await k.insertInto('customers').values({ id: 4, name: 'Upsert 2', email: 'new@example.it' })
      .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({ email: eb.ref('excluded.email'), name: eb.ref('excluded.name') }))).execute();
    expect(await k.selectFrom('customers').select(['id', 'name']).where('email', '=', 'new@example.it').execute()).toEqual([{ id: 4, name: 'Upsert 2' }]);
    await k.insertInto('customers').values({ id: 4, name: 'x' }).onConflict((oc) => oc.column('id').doUpdateSet({ email: 'set@example.it' })).execute();
    expect((await k.selectFrom('customers').select('email').where('id', '=', 4).executeTakeFirst())?.email).toBe('set@example.it');
    expect(await k.selectFrom('customers').select('id').where('email', '=', 'set@example.it').execute()).toEqual([{ id: 4 }]);
    // null checks run on ciphertext as on plaintext
    expect((await k.selectFrom('customers').select('id').where('photo', 'is not', null).execute()).map((r) => r.id)).toEqual([1]);
  });
});

describe('kysely: what is refused', () => {
  const refused = async (what: string, run: () => Promise<unknown>, hint?: RegExp) => {
    const error = await run().then(() => undefined, (e: unknown) => e);
    expect(error, what).toMatchObject({ name: 'PgsealError', code: ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT });
    if (hint) expect((error as { hint: string }).hint, what).toMatch(hint);
  };

  it('operations that cannot run on ciphertext, naming the fix, before anything is sent', async () => {
    sent.length = 0;
    await refused('like', () => k.selectFrom('customers').select('id').where('email', 'like', '%mario%').execute(), /filter in the application/);
    await refused('<', () => k.selectFrom('customers').select('id').where('balance', '<', '10').execute());
    await refused('order by', () => k.selectFrom('customers').select(['id', 'email']).orderBy('email').execute(), /sort/);
    await refused('order by a column not selected', () => k.selectFrom('customers').select('id').orderBy('customers.phone').execute(), /sort/);
    await refused('compared to a column', () => k.selectFrom('customers').select('id').whereRef('email', '=', 'phone').execute(), /compares only to values/);
    await refused('join on an encrypted column', () => k.selectFrom('customers as a').innerJoin('customers as b', 'a.email', 'b.email').select('a.id').execute());
    await refused('not searchable', () => k.selectFrom('customers').select('id').where('notes', '=', 'x').execute(), /searchable: true/);
    await refused('!=', () => k.selectFrom('customers').select('id').where('email', '!=', 'x').execute(), /cannot exclude/);
    await refused('under OR', () => k.selectFrom('customers').select('id').where((eb) => eb.or([eb('email', '=', 'a'), eb('id', '=', 2)])).execute(), /top-level|outer where/);
    await refused('a function over it', () => k.selectFrom('customers').select((eb) => eb.fn('lower', ['email']).as('e')).execute(), /compute in the application/);
    await refused('group by', () => k.selectFrom('customers').select('email').groupBy('email').execute(), /group/);
    await refused('distinct', () => k.selectFrom('customers').select('email').distinct().execute(), /de-duplicate/);
    await refused('in a subquery', () => k.selectFrom('orders').select('id').where('customer_id', 'in', (eb) => eb.selectFrom('customers').select('id').where('email', '=', mario.email)).execute());
    await refused('select * over a join', () => k.selectFrom('customers').innerJoin('orders', 'orders.customer_id', 'customers.id').selectAll().execute(), /by name/);
    await refused('update where on an encrypted column', () => k.updateTable('customers').set({ name: 'x' }).where('email', '=', mario.email).execute(), /primary keys/);
    await refused('delete where on an encrypted column', () => k.deleteFrom('customers').where('email', '=', mario.email).execute(), /primary keys/);
    await refused('set to an expression', () => k.updateTable('customers').set((eb) => ({ email: eb.ref('name') })).where('id', '=', 1).execute(), /compute the value/);
    await refused('insert from a query', () => k.insertInto('customers').columns(['id', 'name', 'email']).expression((eb) => eb.selectFrom('orders').select(['id', 'id as name', sql<string>`'x'`.as('email')])).execute());
    await refused('the blind index itself', () => k.selectFrom('customers').select('id').where(sql.ref('email_bidx'), '=', Buffer.alloc(16)).execute(), /email itself/);
    await refused('a protected table not configured', () => k.selectFrom('secrets').select('code').execute(), /tables/);
    await refused('an upsert moving the key of row-bound values', () => k.insertInto('customers').values({ id: 1, name: 'x' }).onConflict((oc) => oc.column('name').doUpdateSet({ id: 5 })).execute());
    await refused('an alias of the plugin\'s own', () => k.selectFrom('customers').select('email as pgseal$k0').execute());
    await refused('an aggregate over a lookup', () => k.selectFrom('customers').select((eb) => eb.fn.countAll().as('n')).where('email', '=', mario.email).execute(), /aggregate in the application/);
    await refused('a search keyed per tenant without the tenant', () => k.selectFrom('tenant_notes').select('id').where('body', '=', 'x').execute(), /tenant/);
    expect(sent, 'nothing reached the database').toEqual([]);
  });
});

describe('kysely: contexts and tenants', () => {
  it('a row-context value copied to another row fails authentication (PS003), audited', async () => {
    const before = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.encryption_audit_log where operation = 'data.decrypt_failed'`;
    await db.sql`update customers set notes = (select notes from customers where id = 1) where id = 2`;
    await expect(k.selectFrom('customers').select(['id', 'notes']).where('id', '=', 2).execute()).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED, sqlstate: 'PS003' });
    const after = await db.sql<{ n: number; t: string }[]>`select count(*)::int as n, max(table_name) as t from pgseal.encryption_audit_log where operation = 'data.decrypt_failed'`;
    expect(after[0]!.n).toBe(before[0]!.n + 1);
    expect(after[0]!.t).toBe('customers');
    await k.updateTable('customers').set({ notes: 'ripristinata' }).where('id', '=', 2).execute();
    expect((await k.selectFrom('customers').select('notes').where('id', '=', 2).executeTakeFirst())?.notes).toBe('ripristinata');
  });

  it('tampered and non-envelope values throw their code, no plaintext in the error', async () => {
    await db.sql`update customers set phone = set_byte(phone, 30, get_byte(phone, 30) # 1) where id = 1`;
    const error = await k.selectFrom('customers').selectAll().where('id', '=', 1).execute().then(() => new Error('opened'), (e: unknown) => e as Error);
    expect(error).toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
    expect(JSON.stringify({ m: error.message, h: (error as { hint?: string }).hint })).not.toContain('347');
    await db.sql`update customers set phone = 'plaintext phone'::bytea where id = 1`;
    await expect(k.selectFrom('customers').select('phone').where('id', '=', 1).execute()).rejects.toMatchObject({ code: ErrorCodes.MALFORMED_ENVELOPE });
    await k.updateTable('customers').set({ phone: mario.phone }).where('id', '=', 1).execute();
  });

  it('requires the key of a row-bound value', async () => {
    await expect(k.updateTable('customers').set({ notes: 'x' }).where('name', '=', 'Mario Rossi').execute()).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(k.updateTable('customers').set({ id: 99 }).where('id', '=', 1).execute()).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });

  it('keys each row by its tenant; a read naming one tenant refuses another tenant\'s value', async () => {
    await k.insertInto('tenant_notes').values([{ id: 1, tenant: 't1', body: 'segreto di t1' }, { id: 2, tenant: 't2', body: 'segreto di t2' }]).execute();
    const versions = await db.sql<{ scope: string }[]>`select k.scope from tenant_notes n join pgseal.keys k on k.version = pgseal.key_version_of(n.body) order by n.id`;
    expect(versions.map((r) => r.scope)).toEqual(['t1', 't2']);
    expect(await k.selectFrom('tenant_notes').select(['id', 'body']).where('tenant', '=', 't2').where('body', '=', ' segreto di t2 ').execute()).toEqual([{ id: 2, body: 'segreto di t2' }]);
    expect(await k.selectFrom('tenant_notes').select('id').where('tenant', '=', 't1').where('body', '=', 'segreto di t2').execute()).toEqual([]);
    // t2's value sealed under its key, moved into a t1 row
    await db.sql`insert into tenant_notes (id, tenant, body) select 3, 't1', body from tenant_notes where id = 2`;
    await expect(k.selectFrom('tenant_notes').select('body').where('tenant', '=', 't1').where('id', '=', 3).execute()).rejects.toMatchObject({ code: ErrorCodes.UNKNOWN_KEY_VERSION });
    // without the tenant named, the context (…@t1) still refuses it
    await expect(k.selectFrom('tenant_notes').select('body').where('id', '=', 3).execute()).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
    await k.updateTable('tenant_notes').set({ body: 'di t1' }).where('id', '=', 3).where('tenant', '=', 't1').execute();
    expect(await k.selectFrom('tenant_notes').selectAll().where('tenant', '=', 't1').orderBy('id').execute()).toEqual([{ id: 1, tenant: 't1', body: 'segreto di t1' }, { id: 3, tenant: 't1', body: 'di t1' }]);
    await expect(k.updateTable('tenant_notes').set({ body: 'x' }).where('id', '=', 3).execute()).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(k.insertInto('tenant_notes').values({ id: 9, tenant: 't1' }).execute()).resolves.toBeDefined();
  });
});

describe('kysely: interop', () => {
  it('rows written through the adapter read back through SQL and the typed helpers', async () => {
    const [row] = await seal.begin((tx) => tx<{ email: string; notes: string; balance: string }[]>`
      select pgseal.decrypt_text(email, 'public.customers.email') as email, pgseal.decrypt_text(notes, pgseal.row_context('public.customers.notes', id::text)) as notes,
             pgseal.decrypt_text(balance, 'public.customers.balance') as balance from customers where id = 1`);
    expect(row).toEqual({ email: mario.email, notes: mario.notes, balance: mario.balance });
    for (const crypto of ['client', 'database'] as const) {
      const t = seal.table(customers, { crypto });
      expect(await t.findByPk(1), crypto).toEqual(mario);
      expect((await t.findBy('email', 'mario.rossi@example.it')).map((r) => r.id), crypto).toEqual([1]);
    }
    const tn = seal.table(tenantNotes, { crypto: 'client' });
    expect((await tn.findBy('body', 'segreto di t2', { scope: 't2' })).map((r) => r.id)).toEqual([2]);
  });

  it('rows written by the helpers and by SQL read back through the adapter, blind indexes agree', async () => {
    await seal.table(customers, { crypto: 'client' }).insert({ id: 20, name: 'Helper client', email: 'helper.client@example.it', notes: 'da helper', profile: { city: 'Roma', tags: [] } });
    await seal.table(customers, { crypto: 'database' }).insert({ id: 21, name: 'Helper db', email: 'helper.db@example.it', notes: 'da sql', photo: Buffer.from([9, 8]) });
    await seal.begin((tx) => tx`insert into customers (id, name, email, email_bidx, notes)
      values (22, 'Raw SQL', pgseal.encrypt_text('raw.sql@example.it', 'public.customers.email'), pgseal.blind_index('raw.sql@example.it', 'email', 'public.customers.email'),
              pgseal.encrypt_text('scritto in sql', pgseal.row_context('public.customers.notes', '22')))`);
    const rows = await k.selectFrom('customers').select(['id', 'email', 'notes', 'profile', 'photo']).where('email', 'in', ['Helper.Client@example.it', 'helper.db@example.it', 'raw.sql@example.it']).orderBy('id').execute();
    expect(rows).toEqual([
      { id: 20, email: 'helper.client@example.it', notes: 'da helper', profile: { city: 'Roma', tags: [] }, photo: null },
      { id: 21, email: 'helper.db@example.it', notes: 'da sql', profile: null, photo: Buffer.from([9, 8]) },
      { id: 22, email: 'raw.sql@example.it', notes: 'scritto in sql', profile: null, photo: null },
    ]);
    const [ours] = await db.sql<{ b: Buffer }[]>`select email_bidx as b from customers where id = 1`;
    const [theirs] = await seal.begin((tx) => tx<{ b: Buffer }[]>`select pgseal.blind_index(${mario.email}, 'email', 'public.customers.email') as b`);
    expect(ours!.b.equals(theirs!.b)).toBe(true);
  });
});

describe('kysely: access log', () => {
  it('logs reads, writes and deletes with the rows\' primary keys', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    await k.selectFrom('customers').select(['name', 'email']).where('id', 'in', [1, 2]).execute();
    await k.insertInto('customers').values({ id: 30, name: 'Log', email: 'log@example.it', notes: 'n' }).execute();
    await k.updateTable('customers').set({ phone: '+39 1' }).where('id', '=', 30).execute();
    await k.selectFrom('customers').select('id').where('email', '=', 'log@example.it').execute();
    await k.selectFrom('customers').select(['id', 'name']).where('id', '=', 1).execute(); // no encrypted column: nothing to log
    await k.deleteFrom('customers').where('id', '=', 30).execute();
    const logged = (await logRows()).map((r) => `${r.access_type}:${r.table_name}:${r.column_name}:${r.row_id}`);
    expect(logged.slice(0, 2).sort()).toEqual(['read:public.customers:email:1', 'read:public.customers:email:2']);
    expect(logged.slice(2, 4).sort()).toEqual(['write:public.customers:email:30', 'write:public.customers:notes:30']);
    expect(logged[4]).toBe('write:public.customers:phone:30');
    expect(logged[5]).toBe('read:public.customers:email:30');
    expect(logged.slice(6).sort()).toEqual(['balance', 'email', 'notes', 'phone', 'photo', 'profile'].map((c) => `delete:public.customers:${c}:30`));
    // nothing pgseal selected for itself reaches the caller
    const row = await k.selectFrom('customers').selectAll().where('id', '=', 1).executeTakeFirst();
    expect(Object.keys(row!).sort()).toEqual(Object.keys(mario).sort());
  });
});

describe('kysely: keys', () => {
  it('a stale keyring reloads once: another instance rotates and writes, this one reads', async () => {
    await rotateKey(db.sql, master);
    const other = pgseal({ sql: db.sql, masterKey: master });
    const theirs = kysely(await pgsealKysely(other, { tables: [customers, tenantNotes] }));
    try {
      await theirs.insertInto('customers').values({ id: 40, name: 'Rotated', email: 'rotated@example.it', notes: 'nuova chiave' }).execute();
      const [v] = await db.sql<{ v: number; max: number }[]>`select pgseal.key_version_of(email) as v, (select max(version) from pgseal.keys where scope = 'default' and purpose = 'data') as max from customers where id = 40`;
      expect(v!.v).toBe(v!.max);
      // this instance has not loaded the new version yet
      expect(seal.keyring.loadedDataKey(v!.v)).toBeUndefined();
      expect(await k.selectFrom('customers').select(['email', 'notes']).where('id', '=', 40).executeTakeFirst()).toEqual({ email: 'rotated@example.it', notes: 'nuova chiave' });
      expect(await k.selectFrom('customers').select('id').where('email', '=', 'rotated@example.it').execute()).toEqual([{ id: 40 }]);
    } finally {
      await theirs.destroy();
      await other.close();
    }
  });
});

describe('kysely: what the server is sent', () => {
  it('no parameter or text holds a plaintext, a searched value or a key', async () => {
    sent.length = 0;
    const secret = { email: 'Attacker.Target@Example.it', phone: '+39 333 9876543', notes: 'nota segretissima', profile: { city: 'Cittàsegreta', tags: ['x'] }, balance: '424242.4242', photo: Buffer.from('fotosegreta') };
    await k.insertInto('customers').values({ id: 50, name: 'Target', ...secret }).execute();
    await k.updateTable('customers').set({ notes: 'altra nota segretissima' }).where('id', '=', 50).execute();
    await k.selectFrom('customers').selectAll().where('email', '=', 'attacker.target@example.it').execute();
    await k.selectFrom('customers').select('id').where('phone', 'in', ['0039 333 9876543', '+39 000']).execute();
    await k.insertInto('tenant_notes').values({ id: 50, tenant: 't1', body: 'tenant segretissimo' }).execute();
    await k.selectFrom('tenant_notes').select('id').where('tenant', '=', 't1').where('body', '=', 'tenant segretissimo').execute();
    expect(sent.length).toBe(6);
    const keys: Buffer[] = [];
    for (const scope of ['default', 't1', 't2']) {
      const active = seal.keyring.loadedActiveKey(scope)!;
      keys.push(active.encKey, active.macKey, ...seal.keyring.loadedIndexKeys(scope));
    }
    const needles = ['attacker.target', 'Attacker.Target', '9876543', 'segretissim', 'Cittàsegreta', '424242', 'fotosegreta', 'vip'];
    for (const q of sent) {
      const texts = [q.sql, ...q.parameters.map((p) => (Buffer.isBuffer(p) ? p.toString('latin1') : typeof p === 'object' ? JSON.stringify(p) : String(p)))];
      for (const t of texts) for (const n of needles.slice(0, 7)) expect(t.includes(n), `${n} in ${q.sql}`).toBe(false);
      for (const p of q.parameters) {
        if (!Buffer.isBuffer(p)) continue;
        for (const key of keys) {
          expect(p.includes(key), 'a key in a parameter').toBe(false);
          expect(p.includes(key.subarray(0, 8)), 'a key prefix in a parameter').toBe(false);
        }
      }
    }
  });
});
