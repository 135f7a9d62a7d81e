// The access log in sync mode: every protected value the typed helpers read, write or
// delete gets its row, in the same statement (nothing decrypted without its log row, a
// failed log write fails the access); monthly partitions and retention.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogPartitions, dropLogPartitions, ErrorCodes, initKeys, LocalMasterKey, pgseal, withAccessContext, type Pgseal } from '../../src/index.js';
import { runCli } from '../support/cli.js';
import { createPatients, patients } from '../support/patients.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let seal: Pgseal;
let plain: Pgseal;
const masterText = randomBytes(32).toString('base64');
const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'));

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master());
  await createPatients(db.sql, master(), 150, 100);
  seal = pgseal({ sql: db.sql, masterKey: master(), accessLog: { mode: 'sync', actor: 'batch-job' } });
  plain = pgseal({ sql: db.sql, masterKey: master() });
});
afterAll(async () => {
  await seal?.close();
  await plain?.close();
  await db?.drop();
});

const logRows = () => db.sql<{ table_name: string; column_name: string; row_id: string; accessed_by: string; access_type: string; client_ip: string | null }[]>`
  select table_name, column_name, row_id, accessed_by, access_type, host(client_ip) as client_ip from pgseal.encrypted_data_access_log order by accessed_at, link_id, link_pos, row_id, column_name`;

describe('access log, sync mode', () => {
  it('reading 100 rows as actor A from address X logs each row and protected column with A and X', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const t = seal.table(patients);
    const { rows } = await withAccessContext({ actor: 'dr.rossi', clientIp: '203.0.113.7' }, () => t.list({ limit: 100 }));
    expect(rows).toHaveLength(100);
    const logged = await logRows();
    expect(logged).toHaveLength(200); // 100 rows x 2 protected columns
    expect(new Set(logged.map((r) => r.row_id)).size).toBe(100);
    expect(logged.every((r) => r.accessed_by === 'dr.rossi' && r.client_ip === '203.0.113.7' && r.access_type === 'read' && r.table_name === 'public.patients')).toBe(true);
    expect(new Set(logged.map((r) => r.column_name))).toEqual(new Set(['diagnosis', 'email']));
    // outside a context: the configured actor, no address; lookups, writes and deletes too
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    await t.findByPk(7);
    await t.findBy('email', 'P8@example.org');
    await t.update(9, { diagnosis: 'revised' });
    await t.insert({ id: 500, ward: 'C', diagnosis: 'new', email: 'new@example.org' });
    await t.insertMany([{ id: 501, ward: 'C', diagnosis: 'x', email: 'x@example.org' }]);
    await t.delete(500);
    const kinds = (await logRows()).map((r) => `${r.access_type}:${r.row_id}:${r.column_name}:${r.accessed_by}:${r.client_ip}`);
    expect(kinds).toEqual([
      'read:7:diagnosis:batch-job:null', 'read:7:email:batch-job:null',
      'read:8:diagnosis:batch-job:null', 'read:8:email:batch-job:null',
      'write:9:diagnosis:batch-job:null', 'write:9:email:batch-job:null',
      'write:500:diagnosis:batch-job:null', 'write:500:email:batch-job:null',
      'write:501:diagnosis:batch-job:null', 'write:501:email:batch-job:null',
      'delete:500:diagnosis:batch-job:null', 'delete:500:email:batch-job:null',
    ]);
    // with the log off, nothing is written
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    await plain.table(patients).list({ limit: 10 });
    expect(await logRows()).toHaveLength(0);
  });

  it('a failed log write fails the read; a read that fails part-way leaves no log rows', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    // opened in SQL, a value that does not open fails the logging statement itself
    const t = seal.table(patients, { crypto: 'database' });
    await db.sql`alter table pgseal.encrypted_data_access_log add constraint no_mallory check (accessed_by <> 'mallory')`;
    try {
      await expect(withAccessContext({ actor: 'mallory' }, () => t.findByPk(1))).rejects.toMatchObject({ code: ErrorCodes.DB_ERROR, sqlstate: '23514' });
    } finally {
      await db.sql`alter table pgseal.encrypted_data_access_log drop constraint no_mallory`;
    }
    expect(await logRows()).toHaveLength(0);
    // row 120's value is damaged: the listing fails on it, and the rows read before it are not logged either
    await db.sql`update patients set diagnosis = set_byte(diagnosis, 30, get_byte(diagnosis, 30) # 1) where id = 120`;
    await expect(withAccessContext({ actor: 'dr.bianchi' }, () => t.list({ limit: 150 }))).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
    expect(await logRows()).toHaveLength(0);
    // the failed decryption itself is in the encryption audit log
    const [failed] = await db.sql`select actor, success, table_name, details from pgseal.encryption_audit_log where operation = 'data.decrypt_failed'`;
    expect(failed).toMatchObject({ actor: 'dr.bianchi', success: false, table_name: 'patients', details: { error: ErrorCodes.AUTHENTICATION_FAILED } });
    // opened in the process, the rows were fetched (and logged) before row 120 failed to open
    // there: they count as read, and the failure is audited too
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    await expect(withAccessContext({ actor: 'dr.verdi' }, () => seal.table(patients, { crypto: 'client' }).list({ limit: 150 }))).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
    const fetched = await logRows();
    expect(new Set(fetched.map((r) => r.row_id)).size).toBe(150);
    expect(fetched.every((r) => r.accessed_by === 'dr.verdi')).toBe(true);
    const [failedHere] = await db.sql`select count(*)::int as n from pgseal.encryption_audit_log where operation = 'data.decrypt_failed' and actor = 'dr.verdi'`;
    expect(failedHere!.n).toBe(1);
    await expect(async () => withAccessContext({ actor: 'x', clientIp: 'not an ip' }, () => 1)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(async () => withAccessContext({ actor: 'x', clientIp: 'fe80::1%eth0' }, () => 1)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });
});

describe('pgseal audit', () => {
  it('lists events by actor, table and row, and reports per actor, table and column', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const t = seal.table(patients);
    await withAccessContext({ actor: 'alice', clientIp: '192.0.2.1' }, () => t.list({ limit: 3 }));
    await withAccessContext({ actor: 'bob' }, async () => {
      await t.update(5, { diagnosis: 'updated by bob' });
      await t.findByPk(5);
    });
    const env = { DATABASE_URL: db.url };
    const alice = await runCli(['audit', '--actor', 'alice', '--json'], env);
    expect(alice.code, alice.stderr).toBe(0);
    const aliceEvents = alice.stdout.trim().split('\n').map((l) => JSON.parse(l) as { kind: string; action: string; row: string; clientIp: string });
    expect(aliceEvents).toHaveLength(6);
    expect(aliceEvents.every((e) => e.kind === 'access' && e.action === 'read' && e.clientIp === '192.0.2.1')).toBe(true);
    const row5 = await runCli(['audit', '--table', 'patients', '--row', '5', '--json'], env);
    expect(row5.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { actor: string; action: string }).action).sort()).toEqual(['read', 'read', 'write', 'write']);
    const human = await runCli(['audit', '--since', '1h'], env);
    expect(human.stdout).toMatch(/\(\d+ rows\)/);
    const noTable = await runCli(['audit', '--row', '5'], env);
    expect(noTable.code).toBe(1);
    expect(noTable.stderr).toMatch(/^pgseal: PGSEAL_INVALID_ARGUMENT: a row needs its table/);

    const r = await runCli(['audit', 'report', '--since', '1h', '--json'], env);
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout) as { lines: Array<{ actor: string; table: string; column: string; reads: number; writes: number; deletes: number }> };
    expect(rep.lines).toEqual([
      { actor: 'alice', table: 'public.patients', column: 'diagnosis', reads: 3, writes: 0, deletes: 0 },
      { actor: 'alice', table: 'public.patients', column: 'email', reads: 3, writes: 0, deletes: 0 },
      { actor: 'bob', table: 'public.patients', column: 'diagnosis', reads: 1, writes: 1, deletes: 0 },
      { actor: 'bob', table: 'public.patients', column: 'email', reads: 1, writes: 1, deletes: 0 },
    ]);
    const one = await runCli(['audit', 'report', '--since', '1h', '--actor', 'bob'], env);
    expect(one.stdout).toMatch(/bob\s+\|\s+public\.patients\s+\|\s+diagnosis\s+\|\s+1\s+\|\s+1\s+\|\s+0/);
    expect(one.stdout).not.toContain('alice');
  });
});

describe('access log, async mode', () => {
  it('buffers, then writes every entry with its actor and address on flush and on close', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const async = pgseal({ sql: db.sql, masterKey: master(), accessLog: { mode: 'async', flushIntervalMs: 60_000 } });
    const t = async.table(patients);
    await withAccessContext({ actor: 'dr.verdi', clientIp: '2001:db8::5' }, () => t.list({ limit: 100 }));
    expect(await logRows()).toHaveLength(0);
    expect(async.accessLog()).toMatchObject({ buffered: 200, written: 0, dropped: 0 });
    await async.flushAccessLog();
    const logged = await logRows();
    expect(logged).toHaveLength(200);
    expect(logged.every((r) => r.accessed_by === 'dr.verdi' && r.client_ip === '2001:db8::5' && r.access_type === 'read')).toBe(true);
    await t.delete(150);
    await t.findByPk(1);
    await async.close(); // a graceful stop writes what is buffered
    expect((await logRows()).slice(200).map((r) => `${r.access_type}:${r.row_id}`)).toEqual(['delete:150', 'delete:150', 'read:1', 'read:1']);
  });

  it('a failing flush keeps its entries, retries on the timer, and close() rejects while any remain', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const errors: string[] = [];
    const flaky = pgseal({ sql: db.sql, masterKey: master(), accessLog: { mode: 'async', flushIntervalMs: 100, onError: (e) => errors.push(e.code) } });
    await db.sql`alter table pgseal.encrypted_data_access_log add constraint no_flush check (accessed_by <> 'blocked')`;
    try {
      await withAccessContext({ actor: 'blocked' }, () => flaky.table(patients).list({ limit: 10 }));
      await flaky.flushAccessLog();
      expect(flaky.accessLog()).toMatchObject({ buffered: 20, written: 0 });
      await new Promise((r) => setTimeout(r, 350)); // the timer retries, without a tight loop
      const failed = flaky.accessLog()!.failedFlushes;
      expect(failed).toBeGreaterThanOrEqual(2);
      expect(failed).toBeLessThan(10);
      expect(errors.every((c) => c === ErrorCodes.DB_ERROR)).toBe(true);
      await expect(flaky.close()).rejects.toMatchObject({ code: ErrorCodes.ACCESS_LOG_UNFLUSHED });
    } finally {
      await db.sql`alter table pgseal.encrypted_data_access_log drop constraint no_flush`;
    }
    expect(await logRows()).toHaveLength(0);
  });

  it('a full buffer drops entries, counts them and reports them in the audit log', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const small = pgseal({ sql: db.sql, masterKey: master(), accessLog: { mode: 'async', maxBuffered: 50, flushEntries: 1000, flushIntervalMs: 60_000 } });
    await small.table(patients).list({ limit: 100 });
    expect(small.accessLog()).toMatchObject({ buffered: 50, dropped: 150 });
    await small.close();
    expect(await logRows()).toHaveLength(50);
    const [event] = await db.sql`select success, details from pgseal.encryption_audit_log where operation = 'access_log.overflow' order by id desc limit 1`;
    expect(event).toMatchObject({ success: false, details: { dropped: 150, max_buffered: 50 } });
  });

  it('a killed process loses at most the entries of its last flush interval', async () => {
    await db.sql`truncate pgseal.encrypted_data_access_log`;
    const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('../support/async-log-child.ts', import.meta.url))], {
      env: { PATH: process.env.PATH, DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('second')) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', (code) => code !== null && reject(new Error(`child exited ${code}`)));
    });
    const counts = await db.sql<{ accessed_by: string; n: number }[]>`select accessed_by, count(*)::int as n from pgseal.encrypted_data_access_log group by 1 order by 1`;
    // the first read is older than a flush interval: all of it is there; the second may be lost
    expect(counts[0]).toEqual({ accessed_by: 'crash-1', n: 200 });
    expect(counts.find((c) => c.accessed_by === 'crash-2')?.n ?? 0).toBeLessThanOrEqual(200);
  });
});

describe('access log partitions', () => {
  it('rows land in their month; retention drops only whole months older than the period', async () => {
    await createLogPartitions(db.sql, 4);
    await db.sql`select pgseal.create_log_partitions('2024-01-01'::date, 3)`;
    await db.sql`insert into pgseal.encrypted_data_access_log (accessed_at, table_name, column_name, row_id, accessed_by, access_type)
                 values ('2024-02-10 12:00Z', 'public.patients', 'diagnosis', '1', 'old', 'read'),
                        ('2024-03-31 23:59:59Z', 'public.patients', 'diagnosis', '2', 'old', 'read'),
                        (now(), 'public.patients', 'diagnosis', '3', 'new', 'read')`;
    const placed = await db.sql<{ row_id: string; part: string }[]>`
      select row_id, tableoid::regclass::text as part from pgseal.encrypted_data_access_log where accessed_by in ('old', 'new') order by row_id`;
    const thisMonth = new Date().toISOString().slice(0, 7).replace('-', 'm');
    expect(placed).toEqual([
      { row_id: '1', part: 'pgseal.encrypted_data_access_log_y2024m02' },
      { row_id: '2', part: 'pgseal.encrypted_data_access_log_y2024m03' },
      { row_id: '3', part: `pgseal.encrypted_data_access_log_y${thisMonth}` },
    ]);
    // a row before any partition goes to the default one, and moves into its month when that is created
    await db.sql`insert into pgseal.encrypted_data_access_log (accessed_at, table_name, column_name, accessed_by, access_type) values ('2023-06-15Z', 't', 'c', 'older', 'read')`;
    await db.sql`select pgseal.create_log_partitions('2023-06-01'::date, 1)`;
    const [moved] = await db.sql<{ part: string }[]>`select tableoid::regclass::text as part from pgseal.encrypted_data_access_log where accessed_by = 'older'`;
    expect(moved!.part).toBe('pgseal.encrypted_data_access_log_y2023m06');

    const r = await runCli(['logs', 'retention', '--older-than', '400d', '--actor', 'dpo'], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('encrypted_data_access_log_y2023m06');
    const left = await db.sql<{ accessed_by: string }[]>`select distinct accessed_by from pgseal.encrypted_data_access_log where accessed_by in ('old', 'new', 'older') order by 1`;
    expect(left.map((x) => x.accessed_by)).toEqual(['new']);
    const parts = await db.sql<{ name: string }[]>`
      select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'pgseal.encrypted_data_access_log'::regclass order by 1`;
    expect(parts.map((p) => p.name)).toContain(`encrypted_data_access_log_y${thisMonth}`);
    expect(parts.map((p) => p.name)).toContain('encrypted_data_access_log_default');
    expect(parts.some((p) => /y202[34]m/.test(p.name))).toBe(false);
    const [event] = await db.sql`select actor, details from pgseal.encryption_audit_log where operation = 'logs.retention'`;
    expect(event).toMatchObject({ actor: 'dpo', details: { older_than: '400 days' } });
    await expect(dropLogPartitions(db.sql, seal.keyring, 'soon')).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    // never the current month, whatever the period
    expect((await db.sql<{ d: string[] | null }[]>`select pgseal.drop_log_partitions(null) as d`)[0]!.d).toBeNull();
    await db.sql`select pgseal.drop_log_partitions('1 mon -29 days'::interval)`;
    expect((await db.sql`select 1 from pg_class where relname = ${`encrypted_data_access_log_y${thisMonth}`}`).length).toBe(1);
  });
});
