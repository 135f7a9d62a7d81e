// Keys per transaction: handed over as a bound parameter, pipelined, gone afterwards,
// never visible in pg_stat_activity, never in an error.

import { inspect } from 'node:util';
import { randomBytes } from 'node:crypto';
import type { Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, PgsealError } from '../../src/errors.js';
import { Keyring } from '../../src/keys/keyring.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { initKeys } from '../../src/keys/registry.js';
import { withKeys } from '../../src/exec/transaction.js';
import { pgseal } from '../../src/index.js';
import { connectQuiet, createDatabase, type TestDatabase } from '../support/db.js';
import { startTurnProxy } from '../support/turn-proxy.js';

let db: TestDatabase;
let master: LocalMasterKey;
let single: Sql; // one connection: what the transaction leaves behind is visible on it
let keyring: Keyring;
let dataVersion: number;

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  master = new LocalMasterKey(randomBytes(32));
  dataVersion = (await initKeys(db.sql, master)).version!;
  single = connectQuiet(db.url, { max: 1 });
  keyring = new Keyring(single, master);
});
afterAll(async () => {
  keyring?.close();
  await single?.end();
  await db?.drop();
});

/** A second scope, so a transaction can load keys that do not include version 1. */
async function rotateAndLoadOnly(): Promise<string> {
  const scope = 'forge-check';
  const { listKeys } = await import('../../src/keys/registry.js');
  if (!(await listKeys(db.sql)).some((k) => k.scope === scope)) await initKeys(db.sql, master, scope);
  await keyring.refresh();
  return scope;
}

/** Every hex key that went into the last payload, to look for. */
async function keyHexes(): Promise<string[]> {
  const payload = await keyring.payload();
  const out: string[] = [];
  for (let at = 0; at < payload.length; ) {
    const scopeLength = payload[at + 5]!;
    const material = payload.subarray(at + 6 + scopeLength, at + 6 + scopeLength + 64);
    out.push(material.subarray(0, 32).toString('hex'), material.subarray(32).toString('hex'), material.subarray(0, 32).toString('base64'));
    at += 6 + scopeLength + 64;
  }
  payload.fill(0);
  return out;
}

describe('withKeys', () => {
  it('encrypts and decrypts inside, on the caller\'s own postgres() instance', async () => {
    const [row] = await withKeys(single, keyring, (tx) => tx<{ v: string; ver: number }[]>`
      select pgseal.decrypt_text(pgseal.encrypt_text('mario.rossi@example.it', 'c'), 'c') as v,
             pgseal.key_version_of(pgseal.encrypt_text('x', 'c')) as ver`);
    expect(row!.v).toBe('mario.rossi@example.it');
    expect(row!.ver).toBe(dataVersion);
  });

  it('leaves no pgseal setting on the connection after commit or rollback', async () => {
    const [{ pid: before }] = (await single`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
    // Custom settings are hidden from pg_settings: look each name up.
    const hex = dataVersion.toString(16).padStart(8, '0');
    const names = ['pgseal.keys_loaded', 'pgseal.active_default', `pgseal.enc_${hex}`, `pgseal.mac_${hex}`];
    const visible = (q: Sql | Parameters<Parameters<typeof withKeys>[2]>[0]) =>
      q<{ name: string; setting: string | null }[]>`
        select name, nullif(current_setting(name, true), '') as setting from unnest(${names}::text[]) as name`;
    const inside = await withKeys(single, keyring, (tx) => visible(tx));
    expect(inside.filter((r) => r.setting !== null).map((r) => r.name)).toEqual(names);
    await expect(withKeys(single, keyring, async (tx) => {
      await tx`select 1`;
      throw new Error('roll back');
    })).rejects.toThrow('roll back');
    const [{ pid: after }] = (await single`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
    expect(after).toBe(before);
    const left = await visible(single);
    expect(left.filter((r) => r.setting !== null)).toEqual([]);
    await expect(single`select pgseal.encrypt_text('x', 'c')`).rejects.toMatchObject({ code: 'PS001' });
  });

  it('never lets the empty settings a finished transaction leaves behind act as a key', async () => {
    // what anyone can compute: AES under an all-zero key, tagged with HMAC under an empty key
    const { createCipheriv, createHmac } = await import('node:crypto');
    const header = Buffer.from([1, 1, 0, 0, 0, 1]);
    const iv = Buffer.alloc(16, 7);
    const c = createCipheriv('aes-128-cbc', Buffer.alloc(16), iv);
    const body = Buffer.concat([header, iv, c.update('attacker chosen'), c.final()]);
    const ctx = Buffer.from('public.t.c');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(ctx.length);
    const forged = Buffer.concat([body, createHmac('sha256', Buffer.alloc(0)).update(body).update(ctx).update(len).digest()]);
    await withKeys(single, keyring, (tx) => tx`select 1`); // leaves pgseal.* settings defined as ''
    await expect(single`select pgseal.decrypt_text(${forged}, 'public.t.c')`).rejects.toMatchObject({ code: 'PS001' });
    const other = await rotateAndLoadOnly();
    await expect(withKeys(single, keyring, (tx) => tx`select pgseal.decrypt_text(${forged}, 'public.t.c')`, { scopes: [other] })).rejects.toMatchObject({
      code: ErrorCodes.UNKNOWN_KEY_VERSION,
    });
  });

  it('never shows a key in pg_stat_activity while the transaction runs', async () => {
    const hexes = await keyHexes();
    const watcher = connectQuiet(db.url, { max: 2 });
    const blocker = await watcher.reserve();
    try {
      await blocker`select pg_advisory_lock(4242)`;
      const running = withKeys(single, keyring, (tx) => tx`select pg_advisory_xact_lock(4242), pgseal.encrypt_text('x', 'c')`);
      let activity: { pid: number; query: string; state: string }[] = [];
      for (let i = 0; i < 100; i++) {
        activity = await watcher<{ pid: number; query: string; state: string }[]>`
          select pid, query, state from pg_stat_activity where datname = current_database() and wait_event = 'advisory'`;
        if (activity.length > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(activity.length).toBe(1);
      const all = await watcher<{ query: string }[]>`select coalesce(query, '') as query from pg_stat_activity`;
      await blocker`select pg_advisory_unlock(4242)`;
      await running;
      const text = all.map((r) => r.query).join('\n');
      expect(text).toContain('pg_advisory_xact_lock(4242)');
      for (const hex of hexes) expect(text).not.toContain(hex);
    } finally {
      blocker.release();
      await watcher.end();
    }
  });

  it('costs no extra round trip: the hand-off is pipelined with the first statement', async () => {
    const proxy = await startTurnProxy(Number(new URL(db.url).port));
    const u = new URL(db.url);
    u.port = String(proxy.port);
    const sql = connectQuiet(u.toString(), { max: 1 });
    const ring = new Keyring(sql, master);
    try {
      await ring.payload().then((p) => p.fill(0)); // load keys outside the count
      for (let i = 0; i < 2; i++) await withKeys(sql, ring, (tx) => tx`select 1`); // prepare statements
      await sql.begin((tx) => tx`select 1`);
      proxy.reset();
      await sql.begin((tx) => tx`select 1`);
      const plain = proxy.turns();
      proxy.reset();
      await withKeys(sql, ring, (tx) => tx`select 1`);
      expect(proxy.turns()).toBe(plain);
      expect(plain).toBe(3); // BEGIN, statement, COMMIT
    } finally {
      ring.close();
      await sql.end();
      await proxy.close();
    }
  });

  it('zeroes the payload buffer when the transaction is over', async () => {
    let seen: Buffer | undefined;
    const spy = Object.create(keyring) as Keyring;
    spy.payload = async (scopes) => (seen = await keyring.payload(scopes));
    spy.generation = () => keyring.generation();
    await withKeys(single, spy, (tx) => tx`select 1`);
    expect(seen!.length).toBeGreaterThan(0);
    expect(seen!.equals(Buffer.alloc(seen!.length))).toBe(true);
  });

  it('a failed hand-off gives a typed error that holds no key', async () => {
    const bare = await createDatabase(); // pgseal not installed: use_keys does not exist
    const other = connectQuiet(bare.url, { max: 1 });
    try {
      const hexes = await keyHexes();
      const error = await withKeys(other, keyring, (tx) => tx`select 1`).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(PgsealError);
      expect((error as PgsealError).code).toBe(ErrorCodes.NOT_INSTALLED);
      expect((error as PgsealError).cause).toBeUndefined();
      const dump = inspect(error, { showHidden: true, depth: 10 }) + JSON.stringify(error);
      for (const hex of hexes) expect(dump).not.toContain(hex);
    } finally {
      await other.end();
      await bare.drop();
    }
  });

  it('surfaces database errors as typed errors, and leaves the caller\'s own errors alone', async () => {
    await expect(withKeys(single, keyring, (tx) => tx`select pgseal.decrypt_text('\\x00'::bytea, 'c')`)).rejects.toMatchObject({
      code: ErrorCodes.MALFORMED_ENVELOPE,
      sqlstate: 'PS004',
    });
    const secret = 'mario.rossi@example.it';
    const error = await withKeys(single, keyring, (tx) => tx`select 1/0 as x, ${secret}::text as y`).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCodes.DB_ERROR, sqlstate: '22012' });
    expect(inspect(error, { showHidden: true, depth: 10 })).not.toContain(secret);
    await expect(withKeys(single, keyring, (tx) => tx`select pgseal.encrypt_text('x', null)`)).rejects.toMatchObject({
      code: ErrorCodes.INVALID_ARGUMENT,
      sqlstate: '22004',
    });
    await expect(withKeys(single, keyring, () => Promise.reject(new RangeError('mine')))).rejects.toBeInstanceOf(RangeError);
  });

  it('reloads the keyring after meeting a version it does not know (rotation elsewhere)', async () => {
    const ring = new Keyring(single, master, { ttlMs: 60 * 60_000 });
    await ring.payload().then((p) => p.fill(0));
    const { rotateKey } = await import('../../src/keys/registry.js');
    const { version } = await rotateKey(db.sql, master);
    const otherProcess = new Keyring(db.sql, master);
    const [row] = await withKeys(db.sql, otherProcess, (tx) => tx<{ e: Buffer }[]>`select pgseal.encrypt_text('after rotation', 'c') as e`);
    otherProcess.close();
    await keyring.refresh();
    await expect(withKeys(single, ring, (tx) => tx`select pgseal.decrypt_text(${row!.e}, 'c')`)).rejects.toMatchObject({ code: ErrorCodes.UNKNOWN_KEY_VERSION });
    const [back] = await withKeys(single, ring, (tx) => tx<{ v: string; k: number }[]>`
      select pgseal.decrypt_text(${row!.e}, 'c') as v, pgseal.key_version_of(pgseal.encrypt_text('x', 'c')) as k`);
    expect(back).toEqual({ v: 'after rotation', k: version });
    ring.close();
  });

  it('works through the pgseal() facade, client-side too', async () => {
    const seal = pgseal({ sql: single, masterKey: new LocalMasterKey(Buffer.from(randomBytes(32))) });
    await expect(seal.encrypt('x', 'c')).rejects.toMatchObject({ code: ErrorCodes.MASTER_KEY_MISMATCH });
    seal.close();
    const right = pgseal({ sql: single, masterKey: master });
    const envelope = await right.encrypt('client side', 'public.t.c');
    const [row] = await right.begin((tx) => tx<{ v: string }[]>`select pgseal.decrypt_text(${envelope}, 'public.t.c') as v`);
    expect(row!.v).toBe('client side');
    const [back] = await right.begin((tx) => tx<{ e: Buffer }[]>`select pgseal.encrypt_text('server side', 'public.t.c') as e`);
    expect(await right.decryptText(back!.e, 'public.t.c')).toBe('server side');
    right.keyring.close();
  });
});
