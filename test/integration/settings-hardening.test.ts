// Issue 12, item 6 (its SQL parts): the functions of migration 0006 that stayed executable by
// PUBLIC; a crafted pgseal.log_head_* setting; a wrong log keyset. Neither a setting the
// caller can write nor a wrong key may make the logs' tamper evidence report tampering.

import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordEvent, type LogKeys } from '../../src/audit/record.js';
import { verifyLogs } from '../../src/audit/verify.js';
import { ErrorCodes } from '../../src/errors.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { initKeys } from '../../src/keys/registry.js';
import { masterLogKeys } from '../../src/keys/unwrap.js';
import { migrate } from '../../src/migrate.js';
import { connectQuiet, createDatabase, type TestDatabase } from '../support/db.js';

const cleanup: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});
async function fresh(): Promise<TestDatabase> {
  const db = await createDatabase();
  cleanup.push(() => db.drop());
  return db;
}

/** Functions of schema pgseal that PUBLIC may execute. */
async function publicFunctions(sql: Sql): Promise<string[]> {
  const rows = await sql<{ f: string }[]>`
    select p.oid::regprocedure::text as f from pg_proc p
     where p.pronamespace = 'pgseal'::regnamespace
       and exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x where x.grantee = 0 and x.privilege_type = 'EXECUTE')
     order by 1`;
  return rows.map((r) => r.f);
}

const LOG_CHAIN_FUNCTIONS = [
  'pgseal._check_log_head(pgseal.log_chains,bytea)', 'pgseal._log_head_mac(bytea,pgseal.log_chains)', 'pgseal._log_key(bytea,integer)',
  'pgseal._log_key_version(bytea)', 'pgseal._log_link_mac(bytea,text,smallint,bigint,bigint,timestamp with time zone,integer,timestamp with time zone,timestamp with time zone,integer,bytea)',
  'pgseal._timescaledb_schema()', 'pgseal.access_log_row_mac(bytea,bigint,integer,timestamp with time zone,text,name,text,text,text,inet)',
  'pgseal.audit_log_row_mac(bytea,bigint,integer,timestamp with time zone,text,text,text,name,name,name,text,integer,boolean,text,jsonb)', 'pgseal.log_storage()',
];

describe('functions executable by PUBLIC', () => {
  it('the nine of 0006 are found on a database at 0006, and none is left after every migration', async () => {
    const db = await fresh();
    await migrate({ databaseUrl: db.url, direction: 'up', count: 6 });
    const at6 = await publicFunctions(db.sql);
    for (const f of LOG_CHAIN_FUNCTIONS) expect(at6).toContain(f);
    await migrate({ databaseUrl: db.url, direction: 'up' });
    expect(await publicFunctions(db.sql)).toEqual([]);
  });

  it('sql/97_log_chain.sql revokes its own functions from PUBLIC (not only 99 at the end)', async () => {
    const db = await fresh();
    const dir = new URL('../../sql/', import.meta.url);
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.sql') && n <= '97_log_chain.sql').sort()) {
      await db.sql.unsafe(readFileSync(new URL(f, dir), 'utf8'));
    }
    const left = await publicFunctions(db.sql);
    const of97 = LOG_CHAIN_FUNCTIONS.filter((f) => !/timescaledb_schema|log_storage/.test(f));
    for (const f of of97) expect(left).not.toContain(f);
  });
});

describe('the logs\' chains', () => {
  let db: TestDatabase;
  const master = new LocalMasterKey(randomBytes(32));
  let keys: LogKeys;
  /** The right versions with random keys: a wrong log keyset. */
  const wrongKeys: LogKeys = {
    async logKeyset() {
      const right = await keys.logKeyset();
      for (let at = 0; at < right.length; at += 36) randomBytes(32).copy(right, at + 4);
      return right;
    },
  };

  beforeAll(async () => {
    db = await createDatabase({ migrated: true });
    cleanup.push(() => db.drop());
    await initKeys(db.sql, master);
    keys = masterLogKeys(db.sql, master);
    await recordEvent(db.sql, keys, { operation: 'test.event', success: true });
  });

  it('a crafted pgseal.log_head_* setting neither blocks a writer on a head another transaction holds nor breaks the chain', async () => {
    const holder = connectQuiet(db.url, { max: 1 });
    const writer = connectQuiet(db.url, { max: 1 });
    try {
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let locked!: () => void;
      const isLocked = new Promise<void>((resolve) => (locked = resolve));
      const holding = holder.begin(async (tx) => {
        await tx`select 1 from pgseal.log_chains where log = 'audit' and chain = 3 for update`;
        locked();
        await released;
      });
      await isLocked;
      await writer`select pg_catalog.set_config('pgseal.log_head_audit', '3', false)`; // session-level, as any role can
      const started = Date.now();
      const done = recordEvent(writer, masterLogKeys(writer, master), { operation: 'test.event', success: true }).then(() => Date.now() - started);
      const waited = await Promise.race([done, new Promise<number>((resolve) => setTimeout(() => resolve(-1), 3000))]);
      release();
      await holding;
      expect(waited).toBeGreaterThanOrEqual(0); // it did not wait for chain 3
      await writer`select pg_catalog.set_config('pgseal.log_head_audit', '99', false)`;
      await recordEvent(writer, masterLogKeys(writer, master), { operation: 'test.event', success: true });
      const result = await verifyLogs(db.sql, keys, { record: false });
      expect(result.problems).toEqual([]);
      expect(result.ok).toBe(true);
    } finally {
      await holder.end();
      await writer.end();
    }
  });

  it('a wrong log keyset is reported as a wrong key (PS015), by writers and by verify, not as an altered chain', async () => {
    const e = await recordEvent(db.sql, wrongKeys, { operation: 'test.event', success: true }).catch((error: unknown) => error);
    expect(e).toMatchObject({ code: ErrorCodes.LOG_KEY_MISSING, sqlstate: 'PS015' });
    expect(String((e as Error).message)).toMatch(/wrong log key/);
    const v = await verifyLogs(db.sql, wrongKeys, { record: false }).catch((error: unknown) => error);
    expect(v).toMatchObject({ code: ErrorCodes.LOG_KEY_MISSING });
    expect(String((v as Error).message)).toMatch(/wrong log key, not an altered chain/);
    // the right keys: nothing was altered
    expect((await verifyLogs(db.sql, keys, { record: false })).ok).toBe(true);
  });
});
