// Key lifecycle after rotation: usage counts, retire (refused while a row uses the version),
// destroy (crypto-shredding, other scopes unaffected), rewrap (master-key rotation: data
// rows byte-identical, the old master key refused afterwards).

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { column, defineTable, destroyScopeKeys, envelopeCensus, ErrorCodes, initKeys, keyUsage, LocalMasterKey, pgseal, protectColumn, retireKey, rewrapKeys, rotateKey, unprotectColumn, type Pgseal } from '../../src/index.js';
import { Keyring } from '../../src/keys/keyring.js';
import { runCli } from '../support/cli.js';
import { adminUrl, connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';
import { migrate } from '../../src/migrate.js';

let db: TestDatabase;
let seal: Pgseal;
const masterText = randomBytes(32).toString('base64');
const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'));

const notes = defineTable({
  name: 'notes',
  primaryKey: 'id',
  columns: { id: column.plain<number>(), tenant: column.plain<string>(), body: column.text({ scopeColumn: 'tenant' }) },
});

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  for (const scope of ['default', 'acme', 'globex']) await initKeys(db.sql, master(), scope);
  await db.sql`create table notes (id int primary key, tenant text not null)`;
  await protectColumn(db.sql, { table: 'notes', column: 'body', scopeColumn: 'tenant' });
  seal = pgseal({ sql: db.sql, masterKey: master() });
  const t = seal.table(notes);
  await t.insert({ id: 1, tenant: 'acme', body: 'acme one' });
  await t.insert({ id: 2, tenant: 'globex', body: 'globex one' });
});
afterAll(async () => {
  await db?.drop();
});

const versionOf = async (id: number) => (await db.sql<{ v: number }[]>`select pgseal.key_version_of(body) as v from notes where id = ${id}`)[0]!.v;

describe('retire', () => {
  it('is refused while one row still uses the version, accepted once none does', async () => {
    const old = await versionOf(1);
    const { version } = await rotateKey(db.sql, master(), 'acme');
    await seal.keyring.refresh();
    await expect(retireKey(db.sql, seal.keyring, version)).rejects.toMatchObject({ code: ErrorCodes.KEY_IN_USE }); // active
    await expect(retireKey(db.sql, seal.keyring, old)).rejects.toMatchObject({ code: ErrorCodes.KEY_IN_USE, sqlstate: 'PS011' });
    expect(await keyUsage(db.sql, old)).toEqual([{ version: old, column: 'public.notes.body', rows: 1 }]);
    await seal.table(notes).update(1, { body: 'acme one' }); // written again under the active version
    expect(await versionOf(1)).toBe(version);
    await retireKey(db.sql, seal.keyring, old);
    const [state] = await db.sql<{ state: string }[]>`select state from pgseal.keys where version = ${old}`;
    expect(state!.state).toBe('retired');
    expect((await seal.table(notes).findByPk(1))?.body).toBe('acme one');
  });

  it('forced, leaves the version\'s rows failing with PS012', async () => {
    const old = await versionOf(2);
    await rotateKey(db.sql, master(), 'globex');
    await seal.keyring.refresh();
    await retireKey(db.sql, seal.keyring, old, { force: true });
    await seal.keyring.refresh();
    await expect(seal.table(notes).findByPk(2)).rejects.toMatchObject({ code: ErrorCodes.KEY_RETIRED, sqlstate: 'PS012' });
    await expect(seal.begin((tx) => tx`select pgseal.decrypt_text(body, pgseal.scope_context('public.notes.body', tenant)) from notes where id = 2`)).rejects.toMatchObject({
      code: ErrorCodes.KEY_RETIRED,
    });
    await db.sql`delete from notes where id = 2`;
  });
});

describe('destroy', () => {
  it('makes the scope\'s rows unreadable with their own SQLSTATE; other scopes are unaffected; needs the confirmation', async () => {
    const t = seal.table(notes);
    await t.insert({ id: 3, tenant: 'globex', body: 'globex two' });
    await expect(destroyScopeKeys(db.sql, seal.keyring, 'globex', 'acme')).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    const bad = await runCli(['keys', 'destroy', '--scope', 'globex', '--confirm', 'globe'], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect((await t.findByPk(3))?.body).toBe('globex two');
    const ok = await runCli(['keys', 'destroy', '--scope', 'globex', '--confirm', 'globex'], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });
    expect(ok.code, ok.stderr).toBe(0);
    const [left] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.keys where scope = 'globex' and wrapped_key is not null`;
    expect(left!.n).toBe(0);
    await seal.keyring.refresh();
    await expect(t.findByPk(3)).rejects.toMatchObject({ code: ErrorCodes.KEY_DESTROYED, sqlstate: 'PS013' });
    expect((await t.findByPk(1))?.body).toBe('acme one');
  });
});

describe('the census: every envelope in the database, protected column or not', () => {
  it('retire is refused while a column pgseal does not manage holds the version, naming it; protect + reencrypt, then retire loses nothing', async () => {
    await db.sql`create table memos (id int primary key, secret bytea, blob bytea)`;
    await db.sql`insert into memos values (1, null, '\\x00ff'), (2, null, null)`;
    const [k] = await db.sql<{ v: number }[]>`select version as v from pgseal.keys where scope = 'default' and purpose = 'data' and state = 'active'`;
    // sealed by hand, as the quick start once did: never protected
    await seal.begin((tx) => tx`update memos set secret = pgseal.encrypt_text('kept ' || id, 'public.memos.secret')`);
    expect((await envelopeCensus(db.sql, { versions: [k!.v] })).counts).toEqual([{ column: 'public.memos.secret', registered: false, version: k!.v, values: 2 }]);
    await rotateKey(db.sql, master());
    await seal.keyring.refresh();
    // reencrypt moves nothing there, and says so
    const r = await seal.reencrypt();
    expect(r.notMoved).toEqual({ counts: [{ column: 'public.memos.secret', registered: false, version: k!.v, values: 2 }], unreadable: [] });
    const refused = await runCli(['keys', 'retire', String(k!.v)], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`PGSEAL_KEY_IN_USE`);
    expect(refused.stderr).toContain(`key version ${k!.v} still seals 2 values: 2 in public.memos.secret (not a protected column)`);
    expect(refused.stderr).toContain('pgseal protect --table T --column C');
    expect(refused.stderr).not.toContain('kept');
    // the supported way: protect it (same context, column mode), re-encrypt, retire
    await protectColumn(db.sql, { table: 'memos', column: 'secret' });
    const moved = await seal.reencrypt();
    expect(moved.columns.find((c) => c.column === 'public.memos.secret')?.rowsDone).toBe(2);
    expect(moved.notMoved?.counts).toEqual([]);
    await retireKey(db.sql, seal.keyring, k!.v);
    const back = await seal.begin((tx) => tx<{ v: string }[]>`select pgseal.decrypt_text(secret, 'public.memos.secret') as v from memos order by id`);
    expect(back.map((b) => b.v)).toEqual(['kept 1', 'kept 2']);
    await unprotectColumn(db.sql, 'memos', 'secret');
    await db.sql`drop table memos`;
  });

  it('destroy counts what it makes unreadable, everywhere, and logs it', async () => {
    await initKeys(db.sql, master(), 'initech');
    await seal.keyring.refresh();
    await seal.table(notes).insert({ id: 9, tenant: 'initech', body: 'initech one' });
    await db.sql`create table loose (id int primary key, v bytea)`;
    await seal.begin((tx) => tx`insert into loose values (1, pgseal.encrypt_text('by hand', 'x', 'initech'))`, { scopes: ['initech'] });
    const ok = await runCli(['keys', 'destroy', '--scope', 'initech', '--confirm', 'initech'], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('its 2 values can no longer be read (1 in public.loose.v (not a protected column), 1 in public.notes.body)');
    const [event] = await db.sql<{ details: { values: number; columns: unknown[] } }[]>`
      select details from pgseal.encryption_audit_log where operation = 'key.destroy' and key_scope = 'initech'`;
    expect(event!.details.values).toBe(2);
    expect(event!.details.columns).toHaveLength(2);
    await db.sql`delete from notes where id = 9`;
    await db.sql`drop table loose`;
  });

  it('a table pgseal\'s owner may not read (privileges, row-level security) makes retire refuse until granted', async () => {
    const admin = connectQuiet(adminUrl(), { max: 1 });
    const owner = await createRole(admin, 'pgseal_owner', 'nosuperuser nocreaterole nocreatedb');
    const other = await createDatabase({ owner: owner.name });
    try {
      const url = other.urlAs(owner.name, owner.password);
      await migrate({ databaseUrl: url, direction: 'up' });
      const asOwner = connectQuiet(url);
      try {
        const m = master();
        await initKeys(asOwner, m);
        const [k] = await asOwner<{ v: number }[]>`select version as v from pgseal.keys where purpose = 'data' and state = 'active'`;
        await rotateKey(asOwner, master());
        // the superuser's own tables: one not granted, one granted but behind row-level security
        await other.sql`create table hidden (id int primary key, v bytea)`;
        await other.sql`create table policed (id int primary key, v bytea)`;
        await other.sql.unsafe(`grant select on policed to "${owner.name}"; alter table policed enable row level security`);
        const census = await envelopeCensus(asOwner, { versions: [k!.v] });
        expect(census.unreadable).toEqual(['public.hidden.v', 'public.policed.v']);
        const ring = new Keyring(asOwner, master());
        try {
          await expect(retireKey(asOwner, ring, k!.v)).rejects.toMatchObject({
            code: ErrorCodes.KEY_IN_USE, message: expect.stringContaining('public.hidden.v, public.policed.v'), hint: expect.stringContaining(`Grant SELECT on those tables to ${owner.name}`),
          });
          await other.sql.unsafe(`grant select on hidden to "${owner.name}"; alter table policed disable row level security`);
          await retireKey(asOwner, ring, k!.v);
        } finally {
          ring.close();
        }
      } finally {
        await asOwner.end();
      }
    } finally {
      await other.drop();
      await admin.unsafe(`drop role if exists "${owner.name}"`);
      await admin.end();
    }
  });
});

describe('rewrap', () => {
  it('re-wraps every key under a new master key: data rows byte-identical, the old master key refused after', async () => {
    const before = await db.sql<{ id: number; body: Buffer }[]>`select id, body from notes order by id`;
    const newText = randomBytes(32).toString('base64');
    const r = await runCli(['keys', 'rewrap'], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText, PGSEAL_NEW_MASTER_KEY: newText });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const after = await db.sql<{ id: number; body: Buffer }[]>`select id, body from notes order by id`;
    expect(after).toEqual(before);
    const old = new Keyring(db.sql, master());
    await expect(old.payload()).rejects.toMatchObject({ code: ErrorCodes.MASTER_KEY_MISMATCH });
    old.close();
    const fresh = pgseal({ sql: db.sql, masterKey: new LocalMasterKey(Buffer.from(newText, 'base64')) });
    expect((await fresh.table(notes).findByPk(1))?.body).toBe('acme one');
    fresh.keyring.close();
    // the old master key cannot rewrap again, and nothing changes
    await expect(rewrapKeys(db.sql, master(), new LocalMasterKey(randomBytes(32)))).rejects.toMatchObject({ code: ErrorCodes.MASTER_KEY_MISMATCH });
    const list = JSON.parse((await runCli(['keys', 'list', '--json'], { DATABASE_URL: db.url })).stdout) as Array<{ kek_ref: string; rows: number; usage: unknown[] }>;
    expect(new Set(list.map((k) => k.kek_ref)).size).toBeLessThanOrEqual(2); // destroyed keys keep their old reference
    expect(list.reduce((n, k) => n + k.rows, 0)).toBe(after.length);
  });
});
