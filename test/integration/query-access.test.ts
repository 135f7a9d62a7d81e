// The access log of rewritten SQL: seal.query and `pgseal query` log each protected column
// a statement reads or changes, per row, as the actor of the request (or --actor); sync in
// the statement's own transaction, async buffered and flushed on close() and on SIGTERM.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, initKeys, LocalMasterKey, masterLogKeys, pgseal, rotateKey, verifyLogs, withAccessContext, type Pgseal } from '../../src/index.js';
import { BIN, runCli } from '../support/cli.js';
import { createDatabase, type TestDatabase } from '../support/db.js';
import { createPatients } from '../support/patients.js';

let db: TestDatabase;
let sync: Pgseal;
const masterText = randomBytes(32).toString('base64');
const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'));
const env = () => ({ DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master());
  await createPatients(db.sql, master(), 20, 10);
  sync = pgseal({ sql: db.sql, masterKey: master(), accessLog: { mode: 'sync', actor: 'svc' } });
});
afterAll(async () => {
  await sync?.close();
  await db?.drop();
});

const logRows = () => db.sql<{ row_id: string | null; column_name: string; accessed_by: string; access_type: string; client_ip: string | null }[]>`
  select row_id, column_name, accessed_by, access_type, host(client_ip) as client_ip from pgseal.encrypted_data_access_log
   order by accessed_at, row_id::int nulls first, column_name`;

describe('seal.query (rewritten SQL)', () => {
  it('sync: logs each protected column read, per row, with the row id when the result holds the primary key', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const rows = await withAccessContext({ actor: 'dr.rossi', clientIp: '203.0.113.9' }, () =>
      sync.query<{ id: number; diagnosis: string }>('select id, diagnosis from patients where id between $1 and $2 order by id', [3, 5]));
    expect(rows.map((r) => r.diagnosis)).toEqual(['diagnosis 3', 'diagnosis 4', 'diagnosis 5']);
    expect((await logRows()).map((r) => `${r.access_type}:${r.row_id}:${r.column_name}:${r.accessed_by}:${r.client_ip}`)).toEqual([
      'read:3:diagnosis:dr.rossi:203.0.113.9', 'read:4:diagnosis:dr.rossi:203.0.113.9', 'read:5:diagnosis:dr.rossi:203.0.113.9',
    ]);
  });

  it('sync: the real primary key of every row read, written or deleted, fetched beside the result, never from a column the caller names', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const entries = async () => (await logRows()).map((r) => `${r.access_type}:${r.row_id}:${r.column_name}`);
    const take = async () => {
      const e = await entries();
      await db.sql`truncate pgseal.encrypted_data_access_log`;
      return e;
    };
    // a select without the key in its select list: the result is what the caller asked for, no more
    const read = await sync.query<Record<string, unknown>>('select ward, diagnosis from patients where ward = $1 and id <= 12 order by id', ['B']);
    expect(read).toEqual([{ ward: 'B', diagnosis: 'diagnosis 11' }, { ward: 'B', diagnosis: 'diagnosis 12' }]);
    expect(Object.keys(read[0]!)).toEqual(['ward', 'diagnosis']);
    expect((read as unknown as { columns: Array<{ name: string }> }).columns.map((c) => c.name)).toEqual(['ward', 'diagnosis']);
    expect(await take()).toEqual(['read:11:diagnosis', 'read:12:diagnosis']);
    // a blind-index search, the key not selected
    await sync.query('select ward from patients where email = $1', ['P14@example.org']);
    expect(await take()).toEqual(['read:14:email']);
    // forged: another value under the primary key's name is not the row id
    await sync.query('select 999 as id, diagnosis from patients where patients.id = 1');
    expect(await take()).toEqual(['read:1:diagnosis']);
    // a join on c.id + 1 attributes each value to the row it came from
    const joined = await sync.query<{ diagnosis: string }>('select p.diagnosis from patients p join patients q on q.id = p.id + 1 where q.id = 3');
    expect(joined).toEqual([{ diagnosis: 'diagnosis 2' }]);
    expect(await take()).toEqual(['read:2:diagnosis']);
    // insert without RETURNING, update ... where, delete: each row and protected column
    await sync.query('insert into patients (id, ward, diagnosis, email) values (101, $1, $2, $3), (102, $1, $2, $3)', ['C', 'new', 'n@example.org']);
    expect(await take()).toEqual(['write:101:diagnosis', 'write:101:email', 'write:102:diagnosis', 'write:102:email']);
    await sync.query('update patients set diagnosis = $1 where ward = $2', ['reviewed', 'C']);
    expect(await take()).toEqual(['write:101:diagnosis', 'write:102:diagnosis']);
    const deleted = await sync.query('delete from patients where id = 102');
    expect((deleted as unknown as { count: number }).count).toBe(1);
    expect(await take()).toEqual(['delete:102:diagnosis', 'delete:102:email']);
    // an aggregate (a decrypting scan) logs every row it read, not one
    const [counted] = await sync.query<{ n: string }>('select count(*) as n from patients where diagnosis like $1', ['diagnosis 1%'], { allowDecryptScan: true });
    expect(counted!.n).toBe('11');
    const scanned = await take();
    expect(scanned).toHaveLength(11);
    expect(new Set(scanned)).toEqual(new Set(['1', '10', '11', '12', '13', '14', '15', '16', '17', '18', '19'].map((id) => `read:${id}:diagnosis`)));
    // no protected column, no entry; and pgseal's own output names are refused
    await sync.query('select id, ward from patients');
    expect(await take()).toEqual([]);
    await expect(sync.query('select id as "pgseal$row$0", diagnosis from patients where id = 1')).rejects.toMatchObject({ code: ErrorCodes.REWRITE_UNSUPPORTED });
    await db.sql`delete from patients where id = 101`;
  });

  it('sync: a statement that fails logs nothing, and a failed log write fails the statement', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    await expect(sync.query('select id, diagnosis from patients where id = 1 and 1 / (id - 1) = 0')).rejects.toMatchObject({ sqlstate: '22012' });
    await db.sql`alter table pgseal.encrypted_data_access_log add constraint no_eve check (accessed_by <> 'eve')`;
    try {
      await expect(withAccessContext({ actor: 'eve' }, () => sync.query('select id, diagnosis from patients where id = 1'))).rejects.toMatchObject({ code: ErrorCodes.DB_ERROR, sqlstate: '23514' });
    } finally {
      await db.sql`alter table pgseal.encrypted_data_access_log drop constraint no_eve`;
    }
    expect(await logRows()).toHaveLength(0);
  });

  it('async: entries are buffered and written on close()', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const since = new Date();
    const async = pgseal({ sql: db.sql, masterKey: master(), accessLog: { mode: 'async', actor: 'batch', flushIntervalMs: 60_000 } });
    await async.query('select id, email from patients where id = 7');
    expect(await logRows()).toHaveLength(0);
    await async.close();
    expect((await logRows()).map((r) => `${r.access_type}:${r.row_id}:${r.column_name}:${r.accessed_by}`)).toEqual(['read:7:email:batch']);
    // signed like every log row (the earlier tests' truncations are before `since`)
    expect((await verifyLogs(db.sql, masterLogKeys(db.sql, master()), { since, record: false })).problems).toEqual([]);
  });
});

describe('pgseal query', () => {
  it('logs what it reads and writes as --actor (default $PGSEAL_ACTOR), in the statement\'s transaction', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const r = await runCli(['query', '--json', '--actor', 'dpo', 'select id, email from patients where id = 11', "update patients set diagnosis = 'seen' where id = 12 returning id"], env());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['{"id":11,"email":"p11@example.org"}', '{"id":12}']);
    const byEnv = await runCli(['query', 'select id, diagnosis from patients where id = 13'], { ...env(), PGSEAL_ACTOR: 'ops-bot' });
    expect(byEnv.code, byEnv.stderr).toBe(0);
    expect((await logRows()).map((x) => `${x.access_type}:${x.row_id}:${x.column_name}:${x.accessed_by}`)).toEqual([
      'read:11:email:dpo', 'write:12:diagnosis:dpo', 'read:13:diagnosis:ops-bot',
    ]);
    // two statements in one call: each counted with its own rows
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const two = await runCli(['query', '--actor', 'dpo', "select codice from (select 1 as codice) x", 'select diagnosis from patients where id in (4, 5)', 'delete from patients where id = 20'], env());
    expect(two.code, two.stderr).toBe(0);
    expect((await logRows()).map((x) => `${x.access_type}:${x.row_id}:${x.column_name}`)).toEqual([
      'read:4:diagnosis', 'read:5:diagnosis', 'delete:20:diagnosis', 'delete:20:email',
    ]);
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    await runCli(['query', 'select id, diagnosis from patients where id = 11', "update patients set diagnosis = 'seen' where id = 12 returning id", 'select id, diagnosis from patients where id = 13'], env());
    // --raw is run as written and not logged
    const raw = await runCli(['query', '--raw', 'select count(*) from patients'], env());
    expect(raw.code, raw.stderr).toBe(0);
    expect(await logRows()).toHaveLength(3);
  });

  it('async: SIGTERM lets the statement under way finish, skips the rest, and flushes every buffered entry', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const since = new Date();
    const child = spawn(process.execPath, [BIN, 'query', '--access-log', 'async', '--flush-interval-ms', '600000', '--actor', 'night-job',
      'select id, diagnosis from patients where id <= 10 order by id', 'select pg_sleep(1.5)', 'select id, email from patients'], {
      env: { PATH: process.env.PATH, ...env() }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        // the first statement's rows are printed: its entries are buffered, not yet written
        if (stdout.includes('diagnosis 10') && !child.killed) setTimeout(() => child.kill('SIGTERM'), 200);
      });
      child.on('exit', resolve);
    });
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain('PGSEAL_STOPPED');
    expect(stderr).toContain('after 2 of 3 statements');
    const logged = await logRows();
    expect(logged.map((r) => `${r.row_id}:${r.column_name}:${r.accessed_by}`)).toEqual(Array.from({ length: 10 }, (_, i) => `${i + 1}:diagnosis:night-job`));
    expect((await verifyLogs(db.sql, masterLogKeys(db.sql, master()), { since, record: false })).problems).toEqual([]);
  });
});

describe('seal.query after a rotation elsewhere', () => {
  it('reloads its keys and runs the statement once more (it failed as a whole), as the typed helpers do', async () => {
    const reader = pgseal({ sql: db.sql, masterKey: master(), ttlMs: 60 * 60_000 });
    const writer = pgseal({ sql: db.sql, masterKey: master() });
    try {
      expect(await reader.query('select diagnosis from patients where id = 1')).toHaveLength(1); // its keys are loaded now
      await rotateKey(db.sql, master());
      await writer.query('update patients set diagnosis = $1 where id = 1', ['written under the new key']);
      const [row] = await reader.query<{ diagnosis: string }>('select diagnosis from patients where id = 1');
      expect(row!.diagnosis).toBe('written under the new key');
      const [raw] = await db.sql<{ v: number; active: number }[]>`
        select pgseal.key_version_of(diagnosis) as v, (select version from pgseal.keys where purpose = 'data' and state = 'active') as active from patients where id = 1`;
      expect(raw!.v).toBe(raw!.active);
    } finally {
      await reader.close();
      await writer.close();
    }
  });
});
