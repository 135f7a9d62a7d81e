// Issue 12, item 3: a poisoned pooled connection. With only the application role's password,
// on a connection the next user will share (PgBouncer in transaction mode plays it here: one
// postgres.js connection, max: 1), the attacker sets pgseal.* keys of its own session-level
// (data keys of a version 127, an active key, an index key, a hand-off) and writes a value
// sealed under version 127. Only the keys handed over in the reading transaction itself may
// open anything: the forged value is refused, nothing is sealed or indexed under the preset
// keys, and without a hand-off the presets open nothing.

import { randomBytes } from 'node:crypto';
import type { Sql, TransactionSql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seal } from '../../src/crypto/envelope.js';
import { ErrorCodes, PgsealError } from '../../src/errors.js';
import { withKeys } from '../../src/exec/transaction.js';
import { Keyring } from '../../src/keys/keyring.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { initKeys } from '../../src/keys/registry.js';
import { createView, protectColumn } from '../../src/registry/protect.js';
import { connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';
import { randomKey, useKeys } from '../support/keys.js';

let db: TestDatabase;
let shared: Sql; // the pooled connection: the attacker's session, then the victim's transactions
let keyring: Keyring;
let roleName: string;
const master = new LocalMasterKey(randomBytes(32));
const CONTEXT = 'public.notes.secret';
const FORGED = 'forged by the attacker';

const attacker = { version: 127, encKey: randomBytes(32), macKey: randomBytes(32) };
const attackerIndexKey = randomBytes(32);
const hex = (b: Buffer) => b.toString('hex');
const version127 = Buffer.from([0, 0, 0, 127]);

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await db.sql`create table notes (id int primary key, secret bytea)`;
  await protectColumn(db.sql, { table: 'notes', column: 'secret' });
  await createView(db.sql, 'notes');
  await initKeys(db.sql, master);
  const role = await createRole(db.admin, 'pgseal_t_pool');
  roleName = role.name;
  await db.sql.unsafe(`grant pgseal_app to "${role.name}"; grant select, insert, update, delete on notes, notes_decrypted to "${role.name}"`);
  shared = connectQuiet(db.urlAs(role.name, role.password), { max: 1 });
  keyring = new Keyring(shared, master);
});

afterAll(async () => {
  keyring?.close();
  await shared?.end();
  await db?.sql.unsafe(`drop owned by "${roleName}"`).catch(() => undefined);
  await db?.drop();
  const admin = connectQuiet(db.url.replace(/\/[^/]*$/, '/postgres'), { max: 1 });
  await admin.unsafe(`drop role if exists "${roleName}"`).catch(() => undefined);
  await admin.end();
});

/** The attacker's session-level presets, in both forms: bare keys (the format before the
 * hand-off) and keys ending with a nonce of the attacker's, with a matching preset hand-off. */
async function poison(form: 'bare' | 'with-nonce'): Promise<void> {
  const nonce = form === 'with-nonce' ? hex(randomBytes(16)) : '';
  const set = (name: string, value: string) => shared`select pg_catalog.set_config(${name}, ${value}, false)`;
  if (form === 'with-nonce') {
    // a hand-off of the attacker's own transaction (it cannot know the victim's start or nonce)
    await shared`select pg_catalog.set_config('pgseal.handoff', pg_catalog.encode(pg_catalog.timestamptz_send(pg_catalog.now()), 'hex') || ${nonce}, false)`;
  }
  await set('pgseal.enc_0000007f', hex(attacker.encKey) + nonce);
  await set('pgseal.mac_0000007f', hex(attacker.macKey) + nonce);
  await set('pgseal.active_default', hex(Buffer.concat([version127, attacker.encKey, attacker.macKey])) + nonce);
  await set('pgseal.index_default', hex(attackerIndexKey) + nonce);
  await set('pgseal.index_old_default', hex(attackerIndexKey) + nonce);
  await set('pgseal.keys_loaded', '3');
  // the forged value, sealed in Node under version 127, written where the victim reads
  const forged = seal(Buffer.from(FORGED, 'utf8'), CONTEXT, attacker);
  await shared`insert into notes (id, secret) values (1, ${forged}) on conflict (id) do update set secret = excluded.secret`;
}

async function refusal(work: Promise<unknown>): Promise<PgsealError> {
  const error = await work.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(PgsealError);
  expect(JSON.stringify(error, Object.getOwnPropertyNames(error as object))).not.toContain(FORGED);
  return error as PgsealError;
}

describe.each(['bare', 'with-nonce'] as const)('keys preset on a pooled connection (%s)', (form) => {
  it('do not make a forged value decrypt inside a withKeys transaction, through SQL or the view', async () => {
    await poison(form);
    const viaSql = await refusal(withKeys(shared, keyring, (tx) => tx`select pgseal.decrypt_text(secret, ${CONTEXT}) as v from notes where id = 1`));
    expect(viaSql.code).toBe(ErrorCodes.UNKNOWN_KEY_VERSION);
    expect(viaSql.message).toContain('127');
    const viaView = await refusal(withKeys(shared, keyring, (tx) => tx`select secret from notes_decrypted where id = 1`));
    expect(viaView.code).toBe(ErrorCodes.UNKNOWN_KEY_VERSION);
  });

  it('seal and index nothing under the preset active and index keys', async () => {
    await poison(form);
    // the victim's hand-off carries the default scope: its own keys win, never the preset
    const [row] = await withKeys(shared, keyring, (tx) => tx<{ ver: number; bi: Buffer }[]>`
      select pgseal.key_version_of(pgseal.encrypt_text('x', ${CONTEXT})) as ver, pgseal.blind_index('x', 'none', ${CONTEXT}) as bi`);
    expect(row!.ver).not.toBe(127);
    const { createHmac } = await import('node:crypto');
    const ctx = Buffer.from(CONTEXT);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(ctx.length);
    const underAttackerKey = createHmac('sha256', attackerIndexKey).update('x').update(ctx).update(len).digest().subarray(0, 16);
    expect(Buffer.from(row!.bi).equals(underAttackerKey)).toBe(false);
    // a hand-off without the default scope: the preset default keys stay unused (PS005, PS008)
    const other = randomKey(4242, 'other');
    const inTx = async (statement: (tx: TransactionSql) => Promise<unknown>) =>
      shared.begin(async (tx) => {
        await useKeys(tx, other);
        return statement(tx);
      }).then(() => 'ok', (e: { code?: string; message?: string }) => {
        expect(e.message ?? '').not.toContain(FORGED);
        return e.code;
      });
    expect(await inTx((tx) => tx`select pgseal.encrypt_text('x', ${CONTEXT})`)).toBe('PS005');
    expect(await inTx((tx) => tx`select pgseal.blind_index('x', 'none', ${CONTEXT})`)).toBe('PS008');
    expect(await inTx((tx) => tx`select pgseal.blind_index_array(array['x'], 'none', ${CONTEXT})`)).toBe('PS008');
    expect(await inTx((tx) => tx`select pgseal.decrypt_text(secret, ${CONTEXT}) from notes where id = 1`)).toBe('PS002');
  });

  it('open nothing without a hand-off in the transaction', async () => {
    await poison(form);
    for (const statement of [
      shared`select pgseal.decrypt_text(secret, ${CONTEXT}) from notes where id = 1`,
      shared`select secret from notes_decrypted where id = 1`,
      shared`select pgseal.encrypt_text('x', ${CONTEXT})`,
      shared`select pgseal.blind_index('x', 'none', ${CONTEXT})`,
    ]) {
      const e = await statement.then(() => undefined, (error: { code?: string; message?: string }) => error);
      expect(e?.code).toBe('PS001');
      expect(e?.message ?? '').not.toContain(FORGED);
    }
  });
});

describe('the normal path', () => {
  it('still encrypts, decrypts, indexes and writes through the view, on the same poisoned connection', async () => {
    await poison('with-nonce');
    const [row] = await withKeys(shared, keyring, async (tx) => {
      await tx`insert into notes_decrypted (id, secret) values (2, 'genuine') on conflict do nothing`;
      return tx<{ v: string; viaView: string; bi: Buffer }[]>`
        select pgseal.decrypt_text(pgseal.encrypt_text('mario.rossi@example.it', ${CONTEXT}), ${CONTEXT}) as v,
               (select secret from notes_decrypted where id = 2) as "viaView",
               pgseal.blind_index('x', 'none', ${CONTEXT}) as bi`;
    });
    expect(row!.v).toBe('mario.rossi@example.it');
    expect(row!.viaView).toBe('genuine');
    expect(row!.bi).toHaveLength(16);
  });

  it('a value preset that is not hex, or a hand-off cut short, is refused too, showing nothing', async () => {
    await poison('bare');
    await shared`select pg_catalog.set_config('pgseal.mac_0000007f', 'not hex at all', false)`;
    await shared`select pg_catalog.set_config('pgseal.handoff', '', false)`;
    await refusal(withKeys(shared, keyring, (tx) => tx`select pgseal.decrypt_text(secret, ${CONTEXT}) as v from notes where id = 1`));
    const e = await shared`select pgseal.encrypt_text('x', ${CONTEXT})`.then(() => undefined, (error: { code?: string }) => error);
    expect(e?.code).toBe('PS001');
  });
});
