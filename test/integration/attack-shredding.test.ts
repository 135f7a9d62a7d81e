// Issue 12, item 4: shredding that holds. A forced retire or a destroy erases the key
// material, and no UPDATE can bring it back; with per-scope wrapping keys kept outside the
// database, restoring a pre-destroy dump of pgseal.keys leaves the shredded scope
// unreadable (typed error) while other scopes stay readable; with the one master key, the
// same restore reopens it: the guarantee boundary the README states.

import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { column, defineTable, destroyScopeKeys, ErrorCodes, initKeys, LocalMasterKey, pgseal, protectColumn, retireKey, rotateKey, type MasterKeyProvider } from '../../src/index.js';
import { unwrapKeyRow, type KeyRow } from '../../src/keys/unwrap.js';
import { runCli } from '../support/cli.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

const notes = defineTable({
  name: 'notes',
  primaryKey: 'id',
  columns: { id: column.plain<number>(), tenant: column.plain<string>(), body: column.text({ scopeColumn: 'tenant' }) },
});

const cleanup: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

/** A database with scopes acme and globex, one note each, keys from `master()`. */
async function setUp(master: () => MasterKeyProvider): Promise<TestDatabase> {
  const db = await createDatabase({ migrated: true });
  cleanup.push(() => db.drop());
  for (const scope of ['default', 'acme', 'globex']) {
    const m = master();
    await initKeys(db.sql, m, scope);
    m.close();
  }
  await db.sql`create table notes (id int primary key, tenant text not null)`;
  await protectColumn(db.sql, { table: 'notes', column: 'body', scopeColumn: 'tenant' });
  const seal = pgseal({ sql: db.sql, masterKey: master() });
  await seal.table(notes).insert({ id: 1, tenant: 'acme', body: 'acme one' });
  await seal.table(notes).insert({ id: 2, tenant: 'globex', body: 'globex one' });
  await seal.close();
  return db;
}

type Dumped = Record<string, unknown>;

/** What a pg_dump of pgseal.keys taken now would hold for the scope (read as superuser). */
function dumpScope(sql: Sql, scope: string): Promise<Dumped[]> {
  return sql<Dumped[]>`select * from pgseal.keys where scope = ${scope} order by version`;
}

/** A DBA restoring that dump: the rows back as they were, triggers off as pg_restore --disable-triggers does. */
async function restore(sql: Sql, rows: Dumped[]): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`set local session_replication_role = replica`;
    await tx`delete from pgseal.keys where version in ${tx(rows.map((r) => r.version as number))}`;
    for (const row of rows) await tx`insert into pgseal.keys ${tx(row as Record<string, never>)}`;
  });
}

/** Destroys the scope, then restores its pre-destroy rows; returns a process started afterwards. */
async function destroyAndRestore(db: TestDatabase, master: () => MasterKeyProvider, scope: string) {
  const dump = await dumpScope(db.sql, scope);
  expect(dump.every((r) => r.wrapped_key !== null)).toBe(true);
  const running = pgseal({ sql: db.sql, masterKey: master() });
  expect((await running.table(notes).findByPk(2))?.body).toBe('globex one');
  const m = master();
  expect(await destroyScopeKeys(db.sql, running.keyring, scope, scope, { reason: 'erasure request', scopeKeys: m.scopeKeys })).toMatchObject({ versions: 2 });
  m.close();
  await running.keyring.refresh();
  await expect(running.table(notes).findByPk(2)).rejects.toMatchObject({ code: ErrorCodes.KEY_DESTROYED });
  await restore(db.sql, dump);
  await running.keyring.refresh();
  const later = pgseal({ sql: db.sql, masterKey: master() });
  cleanup.push(async () => {
    await running.close();
    await later.close();
  });
  return { running, later, dump };
}

describe('per-scope wrapping keys: a restored pre-destroy dump stays shredded', () => {
  const masterText = randomBytes(32).toString('base64');
  const dir = join(mkdtempSync(join(tmpdir(), 'pgseal-scopes-')), 'scopes');
  const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'), { scopeKeys: { dir } });

  it('wraps each scope\'s keys by its own key file (0600), named in kek_ref; the log key stays with the master key', async () => {
    const db = await setUp(master);
    const refs = await db.sql<{ scope: string; purpose: string; kek_ref: string }[]>`select scope, purpose, kek_ref from pgseal.keys order by version`;
    for (const r of refs) {
      if (r.purpose === 'log') expect(r.kek_ref).toMatch(/^local:[0-9a-f]{16}$/);
      else expect(r.kek_ref).toMatch(new RegExp(`^scope:${r.scope}:[0-9a-f]{16}$`));
    }
    for (const scope of ['default', 'acme', 'globex']) expect(statSync(join(dir, `${scope}.key`)).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);

    const { running, later, dump } = await destroyAndRestore(db, master, 'globex');
    expect(existsSync(join(dir, 'globex.key'))).toBe(false);
    // the restored rows are back, wrapped keys and all
    expect((await dumpScope(db.sql, 'globex')).map((r) => r.state)).toEqual(dump.map((r) => r.state));

    for (const seal of [running, later]) {
      // the other scope reads as before; the shredded one does not open, in SQL or in Node
      expect((await seal.table(notes).findByPk(1))?.body).toBe('acme one');
      // in SQL the version is not among the keys handed in; in Node the keyring says why
      await expect(seal.table(notes).findByPk(2)).rejects.toMatchObject({ code: expect.stringMatching(/^PGSEAL_(UNKNOWN_KEY_VERSION|SCOPE_KEY_MISSING)$/) });
      const [row] = await db.sql<{ body: Buffer }[]>`select body from notes where id = 2`;
      await expect(seal.decryptText(row!.body, 'public.notes.body@globex')).rejects.toMatchObject({ code: ErrorCodes.SCOPE_KEY_MISSING });
      expect(await seal.keyring.scopes()).not.toContain('globex');
    }
    // unwrapping a restored row names the cause and the fix
    const m = master();
    const error = await unwrapKeyRow(m, dump[0] as unknown as KeyRow).catch((e: unknown) => e);
    m.close();
    expect(error).toMatchObject({ code: ErrorCodes.SCOPE_KEY_MISSING });
    expect((error as Error).message).toContain('globex.key');
    expect((error as { hint: string }).hint).toContain('shredded');
    // a new key for the scope can be made again (init), with a new key file: the old values stay closed
    await db.sql`delete from pgseal.keys where scope = 'globex'`;
    const m2 = master();
    await initKeys(db.sql, m2, 'globex');
    m2.close();
    await later.keyring.refresh();
    await expect(later.table(notes).findByPk(2)).rejects.toMatchObject({ name: 'PgsealError' });
  });

  it('rotation and master-key rewrap keep working with scope keys; rewrap moves a single-key set-up onto them', async () => {
    const plainText = randomBytes(32).toString('base64');
    const single = () => new LocalMasterKey(Buffer.from(plainText, 'base64'));
    const db = await setUp(single);
    const movedDir = join(mkdtempSync(join(tmpdir(), 'pgseal-scopes-')), 'k');
    const scoped = (text = plainText) => new LocalMasterKey(Buffer.from(text, 'base64'), { scopeKeys: { dir: movedDir } });
    const { rewrapKeys } = await import('../../src/keys/lifecycle.js');
    const [from, to] = [single(), scoped()];
    expect(await rewrapKeys(db.sql, from, to)).toBe(6); // data and index keys of three scopes; the log key stays
    from.close();
    to.close();
    const refs = await db.sql<{ kek_ref: string }[]>`select kek_ref from pgseal.keys where purpose <> 'log'`;
    expect(refs.every((r) => r.kek_ref.startsWith('scope:'))).toBe(true);
    const m = scoped();
    const { version } = await rotateKey(db.sql, m, 'acme');
    m.close();
    const [rotated] = await db.sql<{ kek_ref: string }[]>`select kek_ref from pgseal.keys where version = ${version}`;
    expect(rotated!.kek_ref).toMatch(/^scope:acme:/);
    // a new master key, same scope key files
    const nextText = randomBytes(32).toString('base64');
    const [a, b] = [scoped(), scoped(nextText)];
    expect(await rewrapKeys(db.sql, a, b)).toBe(8);
    a.close();
    b.close();
    const seal = pgseal({ sql: db.sql, masterKey: scoped(nextText) });
    expect((await seal.table(notes).findByPk(1))?.body).toBe('acme one');
    expect((await seal.table(notes).findByPk(2))?.body).toBe('globex one');
    await seal.close();
  });

  it('`keys init --scope` creates the scope key file, `keys destroy` removes it (CLI, PGSEAL_SCOPE_KEY_DIR)', async () => {
    const text = randomBytes(32).toString('base64');
    const cliDir = join(mkdtempSync(join(tmpdir(), 'pgseal-scopes-')), 'cli');
    const db = await createDatabase({ migrated: true });
    cleanup.push(() => db.drop());
    const env = { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: text, PGSEAL_SCOPE_KEY_DIR: cliDir };
    const init = await runCli(['keys', 'init', '--scope', 'tenant-7'], env);
    expect(init.stderr).toBe('');
    expect(init.stdout).toContain('scope key');
    expect(statSync(join(cliDir, 'tenant-7.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(cliDir, 'tenant-7.key')).size).toBe(32);
    const destroy = await runCli(['keys', 'destroy', '--scope', 'tenant-7', '--confirm', 'tenant-7'], env);
    expect(destroy.stderr).toBe('');
    expect(destroy.stdout).toContain('scope key');
    expect(existsSync(join(cliDir, 'tenant-7.key'))).toBe(false);
  });
});

describe('one master key (no scope keys): the guarantee boundary', () => {
  const masterText = randomBytes(32).toString('base64');
  const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'));

  it('destroy erases the rows and running processes refuse, but a restored pre-destroy dump plus the master key reopen the scope', async () => {
    const db = await setUp(master);
    const { later } = await destroyAndRestore(db, master, 'globex');
    // documented, not a bug: the wrapped keys in the old dump open with the surviving master key
    expect((await later.table(notes).findByPk(2))?.body).toBe('globex one');
    expect((await later.table(notes).findByPk(1))?.body).toBe('acme one');
  });
});

describe('erased key material never comes back', () => {
  const masterText = randomBytes(32).toString('base64');
  const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'));

  it('a forced retire erases the wrapped key; setting the row back to decrypt-only, or its key back, is refused', async () => {
    const db = await setUp(master);
    const [{ v: old }] = await db.sql<{ v: number }[]>`select pgseal.key_version_of(body) as v from notes where id = 2` as unknown as [{ v: number }];
    const [saved] = await db.sql<{ wrapped_key: Buffer }[]>`select wrapped_key from pgseal.keys where version = ${old}`;
    const m = master();
    await rotateKey(db.sql, m, 'globex');
    const seal = pgseal({ sql: db.sql, masterKey: m });
    await retireKey(db.sql, seal.keyring, old, { force: true });
    const [row] = await db.sql<{ state: string; wrapped_key: Buffer | null; retired_at: Date | null }[]>`select state, wrapped_key, retired_at from pgseal.keys where version = ${old}`;
    expect(row).toMatchObject({ state: 'retired', wrapped_key: null });
    expect(row!.retired_at).not.toBeNull();
    // the attack of the issue: the row set back by hand (as the owner, even as superuser)
    await expect(db.sql`update pgseal.keys set state = 'decrypt-only' where version = ${old}`).rejects.toMatchObject({ code: '23514' });
    await expect(db.sql`update pgseal.keys set state = 'decrypt-only', wrapped_key = ${saved!.wrapped_key} where version = ${old}`).rejects.toMatchObject({ constraint_name: 'keys_no_revival' });
    await expect(db.sql`update pgseal.keys set wrapped_key = ${saved!.wrapped_key} where version = ${old}`).rejects.toMatchObject({ code: '23514' });
    // retired may still become destroyed; destroyed never goes back
    await destroyScopeKeys(db.sql, seal.keyring, 'globex', 'globex');
    const states = await db.sql<{ state: string }[]>`select distinct state from pgseal.keys where scope = 'globex'`;
    expect(states.map((s) => s.state)).toEqual(['destroyed']);
    await expect(db.sql`update pgseal.keys set state = 'active' where scope = 'globex' and purpose = 'data'`).rejects.toMatchObject({ code: '23514' });
    // an unforced retire erases too: a retired version is never used again
    const m2 = master();
    const { previous } = await rotateKey(db.sql, m2, 'acme');
    m2.close();
    await db.sql`update notes set body = null where id = 1`;
    await retireKey(db.sql, seal.keyring, previous!);
    const [erased] = await db.sql<{ wrapped_key: Buffer | null }[]>`select wrapped_key from pgseal.keys where version = ${previous}`;
    expect(erased!.wrapped_key).toBeNull();
    await seal.close();
  });
});
