// Migrations: up, down, up again; concurrent runs; installation by a database owner who
// is not a superuser; pgcrypto wherever it lives; the sql/ sources match the migrations.

import { readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { Keyring } from '../../src/keys/keyring.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { initKeys } from '../../src/keys/registry.js';
import { MIGRATIONS_LOCK_ID, migrate, migrationStatus } from '../../src/migrate.js';
import { withKeys } from '../../src/exec/transaction.js';
import { runCli } from '../support/cli.js';
import { adminUrl, connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';

const ALL = readdirSync(new URL('../../migrations/', import.meta.url)).filter((f) => f.endsWith('.sql')).sort().map((f) => f.replace(/\.sql$/, ''));
const cleanup: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});
async function fresh(options: Parameters<typeof createDatabase>[0] = {}): Promise<TestDatabase> {
  const db = await createDatabase(options);
  cleanup.push(() => db.drop());
  return db;
}

async function pgsealFunctions(db: TestDatabase): Promise<string[]> {
  const rows = await db.sql<{ f: string }[]>`
    select p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')' as f
      from pg_proc p where p.pronamespace = (select oid from pg_namespace where nspname = 'pgseal') order by 1`;
  return rows.map((r) => r.f);
}

// as psql -f would: one session, the script's own BEGIN/COMMIT
async function runScript(url: string, script: string): Promise<void> {
  const one = connectQuiet(url, { max: 1 });
  try {
    await one.unsafe(script);
  } finally {
    await one.end();
  }
}

describe('migrations', () => {
  it('go up, down to zero, and up again', async () => {
    const db = await fresh();
    expect(await migrate({ databaseUrl: db.url, direction: 'up' })).toEqual(ALL);
    expect(await pgsealFunctions(db)).toContain('decrypt_text(ciphertext bytea, context text)');
    expect(await migrate({ databaseUrl: db.url, direction: 'up' })).toEqual([]);
    expect(await migrate({ databaseUrl: db.url, direction: 'down', count: Infinity })).toEqual([...ALL].reverse());
    const [gone] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_namespace where nspname = 'pgseal'`;
    expect(gone!.n).toBe(0);
    expect(await migrate({ databaseUrl: db.url, direction: 'up' })).toEqual(ALL);
    expect((await pgsealFunctions(db)).length).toBeGreaterThan(10);
  });

  it('refuse to drop a keyring that holds keys, unless told to', async () => {
    const db = await fresh({ migrated: true });
    await initKeys(db.sql, new LocalMasterKey(randomBytes(32)));
    await expect(migrate({ databaseUrl: db.url, direction: 'down', count: Infinity })).rejects.toMatchObject({ code: ErrorCodes.KEYRING_NOT_EMPTY });
    const [kept] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.keys`;
    expect(kept!.n).toBe(3); // log key, data key and blind-index key
    const [registry] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_class where oid = 'pgseal.columns'::regclass`;
    expect(registry!.n).toBe(1); // the whole run rolled back
    const r = await runCli(['migrate', 'down', '--count', String(ALL.length), '--allow-drop-keys', '--database-url', db.url]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const [gone] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_namespace where nspname = 'pgseal'`;
    expect(gone!.n).toBe(0);
  });

  it('never drop objects of yours that depend on pgseal when going down', async () => {
    const db = await fresh({ migrated: true });
    await db.sql`create table t (c bytea)`;
    await db.sql`create index t_version on t (pgseal.key_version_of(c))`;
    await expect(migrate({ databaseUrl: db.url, direction: 'down', count: Infinity })).rejects.toMatchObject({ code: ErrorCodes.MIGRATION_FAILED, sqlstate: '2BP01' });
    const [kept] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_indexes where indexname = 't_version'`;
    expect(kept!.n).toBe(1);
    await db.sql`drop index t_version`;
    expect(await migrate({ databaseUrl: db.url, direction: 'down', count: Infinity })).toEqual([...ALL].reverse());
  });

  it('status lists applied and pending ones; `migrate sql` applies the pending ones as plain SQL, recorded as `up` records them', async () => {
    const db = await fresh();
    expect(await migrationStatus(db.url)).toMatchObject({ applied: [], pending: ALL, unknown: [] });
    await migrate({ databaseUrl: db.url, direction: 'up', count: 3 });
    const partly = await runCli(['migrate', 'status', '--json', '--database-url', db.url]);
    expect(partly.code).toBe(0);
    const parsed = JSON.parse(partly.stdout) as { applied: { name: string }[]; pending: string[] };
    expect(parsed.applied.map((a) => a.name)).toEqual(ALL.slice(0, 3));
    expect(parsed.pending).toEqual(ALL.slice(3));
    // the script another tool (psql, Flyway, Prisma Migrate) would run: only what is pending
    const script = await runCli(['migrate', 'sql', '--database-url', db.url]);
    expect(script.code).toBe(0);
    expect(script.stdout).not.toContain(`==== ${ALL[0]} ====`);
    expect(script.stdout).toContain(`==== ${ALL[3]} ====`);
    expect(script.stdout).not.toMatch(/-- Down Migration/i);
    await runScript(db.url, script.stdout);
    const done = await runCli(['migrate', 'status', '--database-url', db.url]);
    expect(done.stdout).toMatch(new RegExp(`${ALL.length} applied, 0 pending`));
    expect(await migrate({ databaseUrl: db.url, direction: 'up' })).toEqual([]);
    // and the same schema as `migrate up` builds
    const reference = await fresh({ migrated: true });
    expect(await pgsealFunctions(db)).toEqual(await pgsealFunctions(reference));
    // --all needs no database: a script for an empty one
    const all = await runCli(['migrate', 'sql', '--all']);
    expect(all.code).toBe(0);
    const empty = await fresh();
    await runScript(empty.url, all.stdout);
    expect((await migrationStatus(empty.url)).pending).toEqual([]);
  });

  it('take a lock of their own, so an application\'s node-pg-migrate run holding its default lock does not block them', async () => {
    const db = await fresh();
    const app = connectQuiet(db.url);
    cleanup.push(() => app.end());
    await app.reserve().then(async (conn) => {
      await conn`select pg_advisory_lock(7241865325823964)`; // node-pg-migrate's default lock id
      try {
        expect(await migrate({ databaseUrl: db.url, direction: 'up' })).toEqual(ALL);
      } finally {
        await conn`select pg_advisory_unlock(7241865325823964)`;
        conn.release();
      }
    });
    expect(MIGRATIONS_LOCK_ID).not.toBe(7241865325823964);
  });

  it('two concurrent `pgseal migrate up` both succeed', async () => {
    const db = await fresh();
    const [a, b] = await Promise.all([runCli(['migrate', 'up'], { DATABASE_URL: db.url }), runCli(['migrate', 'up'], { DATABASE_URL: db.url })]);
    expect([a.code, b.code], a.stderr + b.stderr).toEqual([0, 0]);
    expect([a.stdout, b.stdout].sort()).toEqual(['pgseal: already up to date\n', ALL.map((m) => `pgseal: applied ${m}\n`).join('')]);
    const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal_migrations.migrations`;
    expect(row!.n).toBe(ALL.length);
  });

  it('install as a database owner that is not a superuser', async () => {
    const admin = connectQuiet(adminUrl(), { max: 1 });
    const owner = await createRole(admin, 'pgseal_owner', 'nosuperuser nocreaterole nocreatedb');
    cleanup.push(async () => {
      await admin.unsafe(`drop role if exists "${owner.name}"`);
      await admin.end();
    });
    const db = await createDatabase({ owner: owner.name });
    cleanup.push(() => db.drop());
    const url = db.urlAs(owner.name, owner.password);
    expect(await migrate({ databaseUrl: url, direction: 'up' })).toEqual(ALL);
    const asOwner = connectQuiet(url);
    try {
      const [role] = await asOwner<{ rolsuper: boolean }[]>`select rolsuper from pg_roles where rolname = current_user`;
      expect(role!.rolsuper).toBe(false);
      const master = new LocalMasterKey(randomBytes(32));
      await initKeys(asOwner, master);
      const ring = new Keyring(asOwner, master);
      const [row] = await withKeys(asOwner, ring, (tx) => tx<{ v: string }[]>`select pgseal.decrypt_text(pgseal.encrypt_text('ok', 'c'), 'c') as v`);
      expect(row!.v).toBe('ok');
      ring.close();
    } finally {
      await asOwner.end();
    }
  });

  it('use pgcrypto where it already lives, named explicitly, whatever the search_path', async () => {
    const db = await fresh();
    await db.sql.unsafe('create schema crypto; create extension pgcrypto schema crypto');
    await migrate({ databaseUrl: db.url, direction: 'up' });
    const [def] = await db.sql<{ d: string }[]>`select pg_get_functiondef('pgseal._hmac_sha256(bytea, bytea)'::regprocedure) as d`;
    expect(def!.d).toContain('crypto.hmac(');
    const master = new LocalMasterKey(randomBytes(32));
    await initKeys(db.sql, master);
    const ring = new Keyring(db.sql, master);
    const [row] = await withKeys(db.sql, ring, async (tx) => {
      await tx`set local search_path = pg_catalog`;
      return tx<{ v: string }[]>`select pgseal.decrypt_text(pgseal.encrypt_text('ok', 'c'), 'c') as v`;
    });
    expect(row!.v).toBe('ok');
    ring.close();
  });

  it('define exactly what the sql/ sources define', async () => {
    const fromMigrations = await fresh({ migrated: true });
    const fromSources = await fresh();
    const dir = new URL('../../sql/', import.meta.url);
    const files = readdirSync(dir).filter((f) => f.endsWith('.sql')).sort();
    for (const f of files) await fromSources.sql.unsafe(readFileSync(new URL(f, dir), 'utf8'));
    const catalog = async (db: TestDatabase) => ({
      functions: await db.sql`
        select p.proname, pg_get_function_identity_arguments(p.oid) as args, pg_get_functiondef(p.oid) as def, p.proacl::text as acl
          from pg_proc p where p.pronamespace = 'pgseal'::regnamespace order by 1, 2`,
      columns: await db.sql`
        select table_name, column_name, data_type, column_default, is_nullable
          from information_schema.columns where table_schema = 'pgseal' order by 1, 2`,
      constraints: await db.sql`
        select conname, pg_get_constraintdef(oid) as def from pg_constraint where connamespace = 'pgseal'::regnamespace order by 1`,
      indexes: await db.sql`select indexname, indexdef from pg_indexes where schemaname = 'pgseal' order by 1`,
      tables: await db.sql`select c.relname, c.relacl::text as acl from pg_class c where c.relnamespace = 'pgseal'::regnamespace order by 1`,
    });
    const a = await catalog(fromMigrations);
    const b = await catalog(fromSources);
    expect(a.functions.length).toBeGreaterThan(10);
    expect(b).toEqual(a);
  });
});
