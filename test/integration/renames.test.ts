// A protected column or table renamed by hand (ALTER TABLE ... RENAME) after it was
// protected: pgseal finds it under its new name through the oid and attnum it recorded, and
// refuses to read its ciphertext as plaintext (no read returns `\x0101...` as data), naming
// the rename and how to undo it. Renamed back, everything reads as before. A value read under
// a context it was not sealed with names a rename among the causes.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { column, defineTable, ErrorCodes, initKeys, LocalMasterKey, pgseal, protectColumn } from '../../src/index.js';
import { runCli } from '../support/cli.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
const masterText = randomBytes(32).toString('base64');
const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'));
const env = () => ({ DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });

const contatti = defineTable({ name: 'contatti', primaryKey: 'id', columns: { id: column.plain('number'), email: column.text({ searchable: true, normalize: 'email' }) } });

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master());
  await db.sql`create table contatti (id int primary key, nome text)`;
  await protectColumn(db.sql, { table: 'contatti', column: 'email', searchable: true, normalizer: 'email' });
  const seal = pgseal({ sql: db.sql, masterKey: master() });
  await seal.table(contatti).insert({ id: 1, email: 'mario.rossi@example.it' });
  await seal.close();
});
afterAll(async () => {
  await db?.drop();
});

/** Every way to read the table: none may return ciphertext as data. */
async function expectRefused(statement: string, because: string): Promise<void> {
  const r = await runCli(['query', statement], env());
  expect(r.code, r.stdout).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toContain('PGSEAL_REGISTRY_MISMATCH');
  expect(r.stderr).toContain(because);
  expect(r.stderr).toContain('rename it back');
  const json = await runCli(['query', '--json', statement], env());
  expect(JSON.parse(json.stderr) as { error: { code: string } }).toMatchObject({ error: { code: 'PGSEAL_REGISTRY_MISMATCH' } });
  // the library, with a registry loaded after the rename
  const seal = pgseal({ sql: db.sql, masterKey: master() });
  try {
    await expect(seal.query(statement)).rejects.toMatchObject({ code: ErrorCodes.REGISTRY_MISMATCH, message: expect.stringContaining(because) });
  } finally {
    await seal.close();
  }
}

async function readsBack(): Promise<void> {
  const r = await runCli(['query', '--json', 'select id, email from contatti'], env());
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout.trim()).toBe('{"id":1,"email":"mario.rossi@example.it"}');
}

describe('a protected column or table renamed by hand', () => {
  it('a renamed column: every read is refused naming the rename, not answered with ciphertext; renamed back, it reads', async () => {
    await db.sql`alter table contatti rename column email to posta`;
    const because = 'column email was renamed to posta after it was protected';
    await expectRefused('select posta from contatti', because);
    await expectRefused('select * from contatti', because);
    await expectRefused("select id from contatti where posta = 'mario.rossi@example.it'", because);
    await expectRefused("insert into contatti (id, posta) values (2, 'giulia@example.it')", because);
    const seal = pgseal({ sql: db.sql, masterKey: master() });
    try {
      await expect(seal.table(contatti).verify()).rejects.toMatchObject({ code: ErrorCodes.REGISTRY_MISMATCH, message: expect.stringContaining(because) });
      // the typed helpers name the column as protected: an error, never the ciphertext
      await expect(seal.table(contatti).findByPk(1)).rejects.toMatchObject({ sqlstate: '42703' });
    } finally {
      await seal.close();
    }
    const [stored] = await db.sql<{ n: number }[]>`select count(*)::int as n from contatti where id = 2`;
    expect(stored!.n).toBe(0);
    await db.sql`alter table contatti rename column posta to email`;
    await readsBack();
  });

  it('a renamed table: found under its new name by its oid and refused; renamed back, it reads', async () => {
    await db.sql`alter table contatti rename to rubrica`;
    const because = 'table public.contatti was renamed to public.rubrica after its column email was protected';
    await expectRefused('select email from rubrica', because);
    await expectRefused('select * from rubrica', because);
    await expectRefused('delete from rubrica where id = 1', because);
    const [kept] = await db.sql<{ n: number }[]>`select count(*)::int as n from rubrica`;
    expect(kept!.n).toBe(1);
    await db.sql`alter table rubrica rename to contatti`;
    await readsBack();
  });

  it('registered again under the new name, a value fails authentication with a hint that names the rename', async () => {
    await db.sql`create table note (id int primary key)`;
    await protectColumn(db.sql, { table: 'note', column: 'testo' });
    const seal = pgseal({ sql: db.sql, masterKey: master() });
    try {
      await seal.query("insert into note (id, testo) values (1, 'appunto')");
      await db.sql`alter table note rename column testo to corpo`;
      await db.sql`delete from pgseal.columns where table_name = 'note'`;
      await protectColumn(db.sql, { table: 'note', column: 'corpo' });
      await seal.reloadRegistry();
      await expect(seal.query('select corpo from note')).rejects.toMatchObject({
        code: ErrorCodes.AUTHENTICATION_FAILED, hint: expect.stringContaining('renamed after it was protected'),
      });
    } finally {
      await seal.close();
    }
  });
});
