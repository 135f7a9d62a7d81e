// The keyring and key lifecycle against a real pgseal.keys: unwrap, TTL and zeroing,
// rotation, wrong master keys, tampered rows, and roles that do not own pgseal.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { Keyring } from '../../src/keys/keyring.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { initKeys, listKeys, rotateKey } from '../../src/keys/registry.js';
import { withKeys } from '../../src/exec/transaction.js';
import { connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
const masterBytes = randomBytes(32);
const master = () => new LocalMasterKey(Buffer.from(masterBytes));

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master());
});
afterAll(async () => {
  await db?.drop();
});

const isZero = (b: Buffer) => b.equals(Buffer.alloc(b.length));

describe('keyring', () => {
  it('zeroes unwrapped keys when the TTL expires, and reloads them on demand', async () => {
    const ring = new Keyring(db.sql, master(), { ttlMs: 50 });
    const first = await ring.keysFor(1);
    const copy = Buffer.from(first!.encKey);
    expect(isZero(first!.encKey)).toBe(false);
    await new Promise((r) => setTimeout(r, 120));
    expect(isZero(first!.encKey)).toBe(true);
    expect(isZero(first!.macKey)).toBe(true);
    const again = await ring.keysFor(1);
    expect(again!.encKey.equals(copy)).toBe(true);
    ring.close();
    expect(isZero(again!.encKey)).toBe(true);
    await expect(ring.keysFor(1)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });

  it('refuses a different master key, naming both references but no key', async () => {
    const other = new LocalMasterKey(randomBytes(32));
    const ring = new Keyring(db.sql, other);
    const error = (await ring.payload().then(() => undefined, (e: unknown) => e)) as Error & { code: string };
    expect(error).toMatchObject({ code: ErrorCodes.MASTER_KEY_MISMATCH });
    expect(error.message).toContain(other.ref);
    expect(error.message).not.toContain(masterBytes.toString('base64'));
    ring.close();
  });

  it('detects a wrapped key that was altered in the table', async () => {
    const tampered = await createDatabase({ migrated: true });
    try {
      await initKeys(tampered.sql, master());
      await tampered.sql`update pgseal.keys set wrapped_key = overlay(wrapped_key placing '\\xff'::bytea from 20 for 1)`;
      const ring = new Keyring(tampered.sql, master());
      await expect(ring.payload()).rejects.toMatchObject({ code: ErrorCodes.KEY_UNWRAP_FAILED });
      ring.close();
    } finally {
      await tampered.drop();
    }
  });
});

describe('rotation', () => {
  it('makes a new active version; both versions keep decrypting', async () => {
    const ring = new Keyring(db.sql, master(), { ttlMs: 60_000 });
    await db.sql`create table people (id int primary key, email bytea)`;
    await withKeys(db.sql, ring, (tx) => tx`insert into people values (1, pgseal.encrypt_text('old@example.it', 'public.people.email'))`);
    const [first] = await db.sql<{ v: number }[]>`select version as v from pgseal.keys where scope = 'default' and purpose = 'data' and state = 'active'`;
    const { version, previous } = await rotateKey(db.sql, master());
    expect(previous).toBe(first!.v);
    await ring.refresh();
    await withKeys(db.sql, ring, (tx) => tx`insert into people values (2, pgseal.encrypt_text('new@example.it', 'public.people.email'))`);
    const rows = await withKeys(db.sql, ring, (tx) => tx<{ id: number; v: number; email: string }[]>`
      select id, pgseal.key_version_of(email) as v, pgseal.decrypt_text(email, 'public.people.email') as email from people order by id`);
    expect(rows).toEqual([
      { id: 1, v: first!.v, email: 'old@example.it' },
      { id: 2, v: version, email: 'new@example.it' },
    ]);
    const keys = (await listKeys(db.sql)).filter((k) => k.purpose === 'data');
    expect(keys.map((k) => [k.version, k.state])).toEqual([
      [first!.v, 'decrypt-only'],
      [version, 'active'],
    ]);
    ring.close();
  });

  it('serialises concurrent rotations: one active version per scope, always', async () => {
    const results = await Promise.all([rotateKey(db.sql, master()), rotateKey(db.sql, master()), rotateKey(db.sql, master())]);
    expect(new Set(results.map((r) => r.version)).size).toBe(3);
    const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.keys where scope = 'default' and purpose = 'data' and state = 'active'`;
    expect(row!.n).toBe(1);
  });

  it('enforces one active version per scope in the database itself', async () => {
    const [k] = await db.sql<{ version: number }[]>`select version from pgseal.keys where purpose = 'data' and state = 'decrypt-only' limit 1`;
    await expect(db.sql`update pgseal.keys set state = 'active' where version = ${k!.version}`).rejects.toMatchObject({ code: '23505' });
  });

  it('keeps scopes apart', async () => {
    const { version } = await initKeys(db.sql, master(), 'tenant-42');
    const ring = new Keyring(db.sql, master());
    const [row] = await withKeys(db.sql, ring, (tx) => tx<{ v: number }[]>`select pgseal.key_version_of(pgseal.encrypt_text('x', 'c', 'tenant-42')) as v`);
    expect(row!.v).toBe(version);
    await expect(withKeys(db.sql, ring, (tx) => tx`select pgseal.encrypt_text('x', 'c', 'tenant-42')`, { scopes: ['default'] })).rejects.toMatchObject({
      code: ErrorCodes.NO_ACTIVE_KEY,
    });
    await expect(initKeys(db.sql, master(), 'Bad Scope!')).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(initKeys(db.sql, master(), 'tenant-42')).rejects.toMatchObject({ code: ErrorCodes.ALREADY_INITIALISED });
    // a scope with a data key but no blind-index key gets just the index key
    await db.sql`delete from pgseal.keys where scope = 'tenant-42' and purpose = 'index'`;
    expect(await initKeys(db.sql, master(), 'tenant-42')).toMatchObject({ version: null, indexVersion: expect.any(Number) });
    ring.close();
  });

  it('changes nothing when the master key is wrong', async () => {
    const before = await db.sql`select version, state from pgseal.keys order by version`;
    await expect(rotateKey(db.sql, new LocalMasterKey(randomBytes(32)))).rejects.toMatchObject({ code: ErrorCodes.MASTER_KEY_MISMATCH });
    expect(await db.sql`select version, state from pgseal.keys order by version`).toEqual(before);
  });
});

describe('roles', () => {
  it('PUBLIC cannot read or change pgseal.keys; a role granted pgseal_app can work with keys', async () => {
    const app = await createRole(db.admin, 'pgseal_app');
    const nobody = await createRole(db.admin, 'pgseal_nobody');
    await db.sql.unsafe(`grant pgseal_app to "${app.name}"`);
    await db.sql.unsafe(`create table notes (id serial primary key, body bytea); grant select, insert on notes to "${app.name}"; grant usage on sequence notes_id_seq to "${app.name}"`);
    const asApp = connectQuiet(db.urlAs(app.name, app.password));
    const asNobody = connectQuiet(db.urlAs(nobody.name, nobody.password));
    try {
      const ring = new Keyring(asApp, master());
      await withKeys(asApp, ring, (tx) => tx`insert into notes (body) values (pgseal.encrypt_text('nota riservata', 'public.notes.body'))`);
      const [row] = await withKeys(asApp, ring, (tx) => tx<{ b: string }[]>`select pgseal.decrypt_text(body, 'public.notes.body') as b from notes`);
      expect(row!.b).toBe('nota riservata');
      await expect(asApp`delete from pgseal.keys`).rejects.toMatchObject({ code: '42501' });
      await expect(asApp`select pgseal.add_key(999, 'default', 'data', '\\x00', 'x', 'y')`).rejects.toMatchObject({ code: '42501' });
      ring.close();
      await expect(asNobody`select * from pgseal.keys`).rejects.toMatchObject({ code: '42501' });
      const nobodyRing = new Keyring(asNobody, master());
      await expect(nobodyRing.payload()).rejects.toMatchObject({ code: ErrorCodes.DB_ERROR, sqlstate: '42501' });
      nobodyRing.close();
    } finally {
      await asApp.end();
      await asNobody.end();
    }
  });
});
