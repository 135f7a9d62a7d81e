// The two privilege sets of docs/privileges.md, used as a real application and a real key
// administrator would: a login role granted pgseal_app reads and writes protected columns
// through the typed helpers, rewritten SQL and a decrypted view, and can do nothing with the
// keys themselves; a login role granted pgseal_admin runs the key commands. The same sets
// granted to roles named with `pgseal grant` behave the same.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { pgseal, type Pgseal } from '../../src/index.js';
import { column, defineTable } from '../../src/helpers/define.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { initKeys, rotateKey } from '../../src/keys/registry.js';
import { protectColumn, createView } from '../../src/registry/protect.js';
import { runCli } from '../support/cli.js';
import { connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
const keyText = randomBytes(32).toString('base64');
const master = () => new LocalMasterKey(Buffer.from(keyText, 'base64'));
const roles: string[] = [];

const clients = defineTable({
  name: 'clients',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    name: column.plain<string>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    notes: column.text({ context: 'row' }),
  },
});

async function loginRole(prefix: string, grant: string): Promise<{ name: string; url: string }> {
  const r = await createRole(db.admin, prefix);
  roles.push(r.name);
  await db.sql.unsafe(grant.replaceAll('$ROLE', `"${r.name}"`));
  return { name: r.name, url: db.urlAs(r.name, r.password) };
}

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await db.sql`create table clients (id int primary key, name text not null)`;
  await protectColumn(db.sql, { table: 'clients', column: 'email', searchable: true, normalizer: 'email' });
  await protectColumn(db.sql, { table: 'clients', column: 'notes', context: 'row' });
  await createView(db.sql, 'clients');
  await initKeys(db.sql, master());
});

afterAll(async () => {
  for (const r of roles) await db.sql.unsafe(`drop owned by "${r}"`).catch(() => undefined);
  await db?.drop();
  const admin = connectQuiet(db.url.replace(/\/[^/]*$/, '/postgres'), { max: 1 });
  for (const r of roles) await admin.unsafe(`drop role if exists "${r}"`).catch(() => undefined);
  await admin.end();
});

/** The application's own grants on its own table: what pgseal cannot know. */
const TABLE_GRANTS = 'grant select, insert, update, delete on clients, clients_decrypted to $ROLE';

async function asApplication(url: string, work: (seal: Pgseal, sql: ReturnType<typeof connectQuiet>) => Promise<void>): Promise<void> {
  const sql = connectQuiet(url);
  const seal = pgseal({ sql, masterKey: master(), accessLog: { mode: 'sync', actor: 'app' } });
  try {
    await work(seal, sql);
  } finally {
    await seal.close();
    await sql.end();
  }
}

/** Everything an application role must be refused: the keys, key operations, the chosen-IV seal, the chains. */
async function expectNoKeyPowers(sql: ReturnType<typeof connectQuiet>): Promise<void> {
  for (const attempt of [
    sql`select wrapped_key from pgseal.keys`,
    sql`select count(*) from pgseal.keys`,
    sql`update pgseal.keys set state = 'decrypt-only'`,
    sql`select pgseal.add_key(999, 'default', 'data', '\\x00', 'x', 'y')`,
    sql`select pgseal.retire_key(1, true)`,
    sql`select pgseal.destroy_scope_keys('default')`,
    sql`select * from pgseal.key_usage()`,
    sql`select * from pgseal.envelope_census()`,
    sql`select pgseal.seal('\\x00'::bytea, 'c', ${Buffer.alloc(68)}::bytea, ${Buffer.alloc(16)}::bytea)`,
    sql`update pgseal.log_chains set seq = 0`,
    sql`delete from pgseal.log_links`,
    sql`select pgseal.init_log_chains('\\x00'::bytea)`,
    sql`select * from pgseal.encrypted_data_access_log`,
    sql`select pgseal.grant_api(current_user, 'admin')`,
  ]) {
    await expect(attempt).rejects.toMatchObject({ code: '42501' });
  }
  await expect(rotateKey(sql, master())).rejects.toMatchObject({ code: ErrorCodes.DB_ERROR, sqlstate: '42501' });
}

describe('a role granted only pgseal_app', () => {
  it('reads and writes protected columns through the helpers, rewritten SQL and the view, and gets no key power', async () => {
    const app = await loginRole('pgseal_t_app', `grant pgseal_app to $ROLE; ${TABLE_GRANTS}`);
    await asApplication(app.url, async (seal, sql) => {
      const t = seal.table(clients);
      await t.verify();
      await t.insert({ id: 1, name: 'Mario Rossi', email: 'Mario.Rossi@Example.it', notes: 'cliente dal 2019' });
      expect(await t.findBy('email', 'mario.rossi@example.it')).toMatchObject([{ id: 1, notes: 'cliente dal 2019' }]);
      await seal.query('insert into clients (id, name, email, notes) values ($1, $2, $3, $4)', [2, 'Giulia Bianchi', 'giulia@example.it', 'nuova']);
      expect(await seal.query`select id, email, notes from clients where email = ${'GIULIA@example.it'}`).toEqual([{ id: 2, email: 'giulia@example.it', notes: 'nuova' }]);
      await seal.begin((tx) => tx`insert into clients_decrypted (id, name, email, notes) values (3, 'Anna Neri', 'anna@example.it', 'dalla vista')`);
      const [viewed] = await seal.begin((tx) => tx<{ email: string; notes: string }[]>`select email, notes from clients_decrypted where id = 3`);
      expect(viewed).toEqual({ email: 'anna@example.it', notes: 'dalla vista' });
      expect((await t.findByPk(3))?.notes).toBe('dalla vista');
      await expectNoKeyPowers(sql);
    });
    // at rest, read another way: ciphertext only
    const raw = await db.sql<{ email: Buffer; notes: Buffer }[]>`select email, notes from clients order by id`;
    expect(raw).toHaveLength(3);
    for (const r of raw) {
      expect(r.email.subarray(0, 2)).toEqual(Buffer.from([1, 1]));
      expect(r.email.toString('latin1')).not.toMatch(/example\.it/);
      expect(r.notes.toString('latin1')).not.toMatch(/cliente|nuova|vista/);
    }
    // its accesses were logged and signed
    const [logged] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.encrypted_data_access_log where accessed_by = 'app' and mac is not null`;
    expect(logged!.n).toBeGreaterThan(0);
  });

  it('without it, the same role can use nothing in schema pgseal', async () => {
    const none = await loginRole('pgseal_t_none', TABLE_GRANTS);
    const sql = connectQuiet(none.url);
    try {
      await expect(sql`select pgseal.key_version_of('\\x00'::bytea)`).rejects.toMatchObject({ code: '42501' });
      await expect(sql`select * from pgseal.columns`).rejects.toMatchObject({ code: '42501' });
      await expect(sql`select * from pgseal.usable_keys()`).rejects.toMatchObject({ code: '42501' });
    } finally {
      await sql.end();
    }
  });
});

describe('a role granted pgseal_admin', () => {
  it('runs the key commands without owning or reading the protected tables', async () => {
    const ops = await loginRole('pgseal_t_ops', 'grant pgseal_admin to $ROLE');
    const env = (extra: Record<string, string> = {}) => ({ DATABASE_URL: ops.url, PGSEAL_MASTER_KEY: keyText, PGSEAL_ACTOR: 'ops', ...extra });
    const ok = async (args: string[], extra?: Record<string, string>) => {
      const r = await runCli(args, env(extra));
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    const asOps = connectQuiet(ops.url);
    try {
      await expect(asOps`select * from clients`).rejects.toMatchObject({ code: '42501' });
      await ok(['keys', 'init', '--scope', 'tenant-b']);
      const [before] = await db.sql<{ version: number }[]>`select version from pgseal.keys where scope = 'default' and purpose = 'data' and state = 'active'`;
      await ok(['keys', 'rotate', '--reason', 'quarterly']);
      const listed = JSON.parse(await ok(['keys', 'list', '--json'])) as Array<{ version: number; state: string }>;
      expect(listed.find((k) => k.version === before!.version)?.state).toBe('decrypt-only');
      // rows still on the old version: retire is refused with the count (key_usage runs as the owner)
      const refused = await runCli(['keys', 'retire', String(before!.version)], env());
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/PGSEAL_KEY_IN_USE.*still seals \d+ values: \d+ in public\.clients\./);
      const seal = pgseal({ sql: db.sql, masterKey: master() });
      await seal.reencrypt();
      seal.keyring.close();
      await ok(['keys', 'retire', String(before!.version)]);
      await ok(['keys', 'destroy', '--scope', 'tenant-b', '--confirm', 'tenant-b']);
      const next = randomBytes(32).toString('base64');
      await ok(['keys', 'rewrap', '--new-master-key-env', 'NEXT_KEY'], { NEXT_KEY: next });
      const [rewrapped] = await db.sql<{ n: number }[]>`select count(distinct kek_ref)::int as n from pgseal.keys where wrapped_key is not null`;
      expect(rewrapped!.n).toBe(1);
      // back to the first master key for the rest of the file
      await ok(['keys', 'rewrap', '--new-master-key-env', 'FIRST_KEY'], { PGSEAL_MASTER_KEY: next, FIRST_KEY: keyText });
      const events = await db.sql<{ operation: string }[]>`select operation from pgseal.encryption_audit_log where actor = 'ops' order by id`;
      expect(events.map((e) => e.operation)).toEqual(expect.arrayContaining(['key.create', 'key.rotate', 'key.retire', 'key.destroy', 'key.rewrap']));
      // and it still cannot write the chains or install triggers on tables it does not own
      await expect(asOps`update pgseal.log_chains set seq = 0`).rejects.toMatchObject({ code: '42501' });
      await expect(asOps`select pgseal.mark_compromised('default')`).rejects.toMatchObject({ code: '42501' });
    } finally {
      await asOps.end();
    }
  });
});

describe('pgseal grant', () => {
  it('gives a named role exactly the app set (what it held before goes), and --revoke takes it away', async () => {
    const own = await loginRole('pgseal_t_own', `${TABLE_GRANTS}; grant select on pgseal.keys to $ROLE`);
    const r = await runCli(['grant', '--app', own.name], { DATABASE_URL: db.url });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${own.name} holds the app privileges`);
    await asApplication(own.url, async (seal, sql) => {
      expect((await seal.table(clients).findByPk(1))?.name).toBe('Mario Rossi');
      await expectNoKeyPowers(sql); // the SELECT on pgseal.keys it had is gone
    });
    const listed = await runCli(['grant'], { DATABASE_URL: db.url });
    expect(listed.stdout).toMatch(new RegExp(`^${own.name}\\tapp\\t`, 'm'));
    expect((await runCli(['grant', '--revoke', own.name], { DATABASE_URL: db.url })).code).toBe(0);
    const sql = connectQuiet(own.url);
    try {
      await expect(sql`select pgseal.key_version_of('\\x00'::bytea)`).rejects.toMatchObject({ code: '42501' });
    } finally {
      await sql.end();
    }
    const missing = await runCli(['grant', '--app', 'no_such_role_here'], { DATABASE_URL: db.url });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^pgseal: .*there is no role no_such_role_here/);
  });
});

describe('migration 0008 and the role sets', () => {
  it('upgrading revokes what other roles held on pgseal\'s objects (an older set-up\'s SELECT on pgseal.keys)', async () => {
    const old = await createDatabase();
    try {
      const { migrate } = await import('../../src/migrate.js');
      await migrate({ databaseUrl: old.url, direction: 'up', count: 7 });
      const legacy = await createRole(db.admin, 'pgseal_t_legacy');
      roles.push(legacy.name);
      await old.sql.unsafe(`grant usage on schema pgseal to "${legacy.name}"; grant select on pgseal.keys to "${legacy.name}"`);
      const can = async () => (await old.sql<{ ok: boolean }[]>`select has_table_privilege(${legacy.name}, 'pgseal.keys', 'SELECT') as ok`)[0]!.ok;
      expect(await can()).toBe(true);
      await migrate({ databaseUrl: old.url, direction: 'up' });
      expect(await can()).toBe(false);
      await old.sql.unsafe(`drop owned by "${legacy.name}"`);
    } finally {
      await old.drop();
    }
  });

  it('with --no-roles, the shared roles get nothing in that database', async () => {
    const separate = await createDatabase();
    try {
      const r = await runCli(['migrate', 'up', '--no-roles'], { DATABASE_URL: separate.url });
      expect(r.code, r.stderr).toBe(0);
      const [held] = await separate.sql<{ n: number }[]>`
        select count(*)::int as n from pg_proc p, aclexplode(p.proacl) a
         where p.pronamespace = 'pgseal'::regnamespace and a.grantee in (select oid from pg_roles where rolname in ('pgseal_app', 'pgseal_admin'))`;
      expect(held!.n).toBe(0);
      const [usage] = await separate.sql<{ ok: boolean }[]>`select has_schema_privilege('pgseal_app', 'pgseal', 'USAGE') as ok`;
      expect(usage!.ok).toBe(false);
    } finally {
      await separate.drop();
    }
  });

  it('grant_api and revoke_api refuse superusers and the owner (they would lock it out), and roles that do not exist', async () => {
    const [me] = await db.sql<{ u: string }[]>`select current_user as u`;
    for (const attempt of [db.sql`select pgseal.grant_api(${me!.u}::name, 'app')`, db.sql`select pgseal.revoke_api(${me!.u}::name)`]) {
      await expect(attempt).rejects.toMatchObject({ code: '22023' });
    }
    await expect(db.sql`select pgseal.grant_api('no_such_role_here'::name, 'app')`).rejects.toMatchObject({ code: '42704' });
    await expect(db.sql`select pgseal.grant_api('pgseal_app'::name, 'everything')`).rejects.toMatchObject({ code: '22023' });
  });

  it('key material that is all zeros (a buffer zeroed while a statement held it) seals nothing, in SQL and in Node', async () => {
    const zero = Buffer.alloc(68);
    zero.writeUInt32BE(7, 0);
    await expect(db.sql`select pgseal.encrypt_bytea_with('\\x41'::bytea, 'a.b.c', ${zero}::bytea)`).rejects.toMatchObject({ code: 'PS006' });
    const { seal: sealInNode } = await import('../../src/crypto/envelope.js');
    expect(() => sealInNode(Buffer.from('x'), 'a.b.c', { version: 7, encKey: Buffer.alloc(32), macKey: Buffer.alloc(32) })).toThrow(/unloaded/);
  });
});
