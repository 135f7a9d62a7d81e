// pgseal doctor, the state of the database: keys, data, logs, privileges (src/doctor/). A
// healthy database passes every check of these areas; each broken state is reported with
// its fix. Every scenario has its own database.

import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { runDoctor, type CheckResult, type DoctorOptions } from '../../src/doctor/index.js';
import { column, createLogPartitions, defineTable, dropLogPartitions, initKeys, LocalMasterKey, pgseal, protectColumn, reencrypt, retireKey, rotateKey, type Pgseal } from '../../src/index.js';
import { recordEvent } from '../../src/audit/record.js';
import { connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';

const AREAS = new Set(['keys', 'data', 'logs', 'privileges']);
const IDS = [
  'keys.master_key', 'keys.rotation', 'keys.decrypt_only', 'keys.revoked_in_use', 'keys.reencrypt_unfinished',
  'data.plaintext', 'data.columns', 'data.pending',
  'logs.partitions', 'logs.verify', 'logs.retention', 'logs.async_buffer',
  'privileges.keys', 'privileges.public',
];

const people = defineTable({
  name: 'people',
  primaryKey: 'id',
  columns: { id: column.plain<number>(), email: column.text({ searchable: true, normalize: 'email' }), note: column.text() },
});

interface Scenario {
  db: TestDatabase;
  seal: Pgseal;
  master: () => LocalMasterKey;
  doctor(options?: DoctorOptions & { provider?: LocalMasterKey | null }): Promise<Map<string, CheckResult>>;
}

const opened: Scenario[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) {
    await s.seal.close();
    await s.db.drop();
  }
});

/** A migrated database with keys, and a protected table of `rows` rows written by the typed helpers (access log on). */
async function scenario(rows = 20): Promise<Scenario> {
  const db = await createDatabase({ migrated: true });
  const key = randomBytes(32);
  const master = () => new LocalMasterKey(Buffer.from(key));
  await initKeys(db.sql, master());
  await db.sql`create table people (id int primary key)`;
  await protectColumn(db.sql, { table: 'people', column: 'email', searchable: true, normalizer: 'email' });
  await protectColumn(db.sql, { table: 'people', column: 'note' });
  const seal = pgseal({ sql: db.sql, masterKey: master(), accessLog: { mode: 'sync', actor: 'doctor-test' } });
  await seal.table(people).insertMany(Array.from({ length: rows }, (_, i) => ({ id: i + 1, email: `user${i + 1}@example.com`, note: `note ${i + 1}` })));
  await seal.table(people).findByPk(1); // a read in the access log too
  const s: Scenario = {
    db, seal, master,
    async doctor(options = {}) {
      const provider = options.provider === null ? undefined : (options.provider ?? master());
      try {
        const report = await runDoctor(db.sql, { ...options, provider });
        const mine = report.results.filter((r) => AREAS.has(r.area));
        return new Map(mine.map((r) => [r.id, r]));
      } finally {
        provider?.close();
      }
    },
  };
  opened.push(s);
  return s;
}

/** Every check reported with what a result must carry: a summary, and a fix unless it is ok. */
function wellFormed(results: Map<string, CheckResult>): void {
  expect([...results.keys()].sort()).toEqual([...IDS].sort());
  for (const r of results.values()) {
    expect(r.summary, r.id).toMatch(/\S/);
    expect(r.summary, r.id).not.toContain('\n');
    if (r.status !== 'ok') expect(r.fix, r.id).toMatch(/\S/);
  }
}

const notOk = (results: Map<string, CheckResult>) => [...results.values()].filter((r) => r.status === 'warn' || r.status === 'fail');

function monthPartition(ahead: number): string {
  const now = new Date();
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + ahead, 1));
  return `encrypted_data_access_log_y${d.getUTCFullYear()}m${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

describe('a healthy database', () => {
  it('passes every check of keys, data, logs and privileges, sampled and --full', async () => {
    const s = await scenario();
    await s.db.sql.unsafe(`alter database "${s.db.name}" set pgseal.log_retention = '400 days'`);
    for (const full of [false, true]) {
      const results = await s.doctor({ full });
      wellFormed(results);
      expect(notOk(results), JSON.stringify(notOk(results), null, 2)).toEqual([]);
      expect(results.get('keys.master_key')!.status).toBe('ok');
      expect(results.get('data.plaintext')!.status).toBe('ok');
      expect(results.get('data.pending')!.status).toBe('skip');
      expect(results.get('logs.async_buffer')!.status).toBe('skip');
      expect(results.get('logs.verify')!.status).toBe(full ? 'ok' : 'skip');
      if (!full) expect(results.get('logs.verify')!.fix).toContain('pgseal doctor --full');
    }
    // without a master key the checks that need it say so
    const bare = await s.doctor({ full: true, provider: null });
    expect(bare.get('keys.master_key')).toMatchObject({ status: 'skip' });
    expect(bare.get('keys.master_key')!.summary).toContain('no master key');
    expect(bare.get('logs.verify')).toMatchObject({ status: 'skip' });
    // a master key that is not this database's opens nothing
    const wrong = await s.doctor({ provider: new LocalMasterKey(randomBytes(32)) });
    expect(wrong.get('keys.master_key')).toMatchObject({ status: 'fail' });
    expect(wrong.get('keys.master_key')!.summary).toContain('PGSEAL_MASTER_KEY_MISMATCH');
    expect(wrong.get('keys.master_key')!.fix).toContain('PGSEAL_MASTER_KEY');
  });
});

describe('keys', () => {
  it('an active key overdue for rotation, and a version decrypt-only past its grace', async () => {
    const s = await scenario();
    const [old] = await s.db.sql<{ version: number }[]>`select version from pgseal.keys where purpose = 'data' and state = 'active'`;
    await s.db.sql`update pgseal.keys set created_at = now() - interval '200 days' where version = ${old!.version}`;
    let results = await s.doctor();
    expect(results.get('keys.rotation')).toMatchObject({ status: 'warn' });
    expect(results.get('keys.rotation')!.summary).toContain(`version ${old!.version} (scope default, data key) is 200 days old`);
    expect(results.get('keys.rotation')!.fix).toContain('pgseal keys rotate --scope default');
    expect(results.get('keys.rotation')!.details).toMatchObject({ overdue: [{ version: old!.version, age_days: 200 }] });
    expect((await s.doctor({ rotationDays: 365 })).get('keys.rotation')!.status).toBe('ok');

    const { version } = await rotateKey(s.db.sql, s.master());
    await s.db.sql`update pgseal.keys set deactivated_at = now() - interval '45 days' where version = ${old!.version}`;
    results = await s.doctor();
    expect(results.get('keys.rotation')!.status).toBe('ok'); // the new version is young
    expect(results.get('keys.decrypt_only')).toMatchObject({ status: 'warn' });
    expect(results.get('keys.decrypt_only')!.summary).toContain(`version ${old!.version} (scope default, data key) for 45 days`);
    expect(results.get('keys.decrypt_only')!.fix).toContain(`pgseal reencrypt --scope default, then pgseal keys retire ${old!.version}`);
    expect(version).toBeGreaterThan(old!.version);
  });

  it('a retired version still used by rows: where they are and how many', async () => {
    const s = await scenario(12);
    const [old] = await s.db.sql<{ version: number }[]>`select version from pgseal.keys where purpose = 'data' and state = 'active'`;
    await rotateKey(s.db.sql, s.master());
    await s.seal.keyring.refresh();
    await s.seal.table(people).update(1, { note: 'moved' }); // one note on the new version
    await retireKey(s.db.sql, s.seal.keyring, old!.version, { force: true });
    for (const full of [false, true]) {
      const r = (await s.doctor({ full })).get('keys.revoked_in_use')!;
      expect(r.status).toBe('fail');
      expect(r.summary).toContain(`public.people.email: 12 rows on retired version ${old!.version}`);
      expect(r.summary).toContain(`public.people.note: 11 rows on retired version ${old!.version}`);
      expect(r.fix).toContain('restore them from a backup');
      expect(r.details).toMatchObject({ found: expect.arrayContaining([{ column: 'public.people.note', version: old!.version, scope: 'default', kind: 'retired', rows: 11 }]) });
    }
  });

  it('an unfinished re-encryption run: stopped, failed, left running', async () => {
    const s = await scenario(300);
    await rotateKey(s.db.sql, s.master());
    const stop = new AbortController();
    const run = await reencrypt(s.db.sql, s.seal.keyring, { table: 'people', column: 'note', batchSize: 50, signal: stop.signal, onProgress: () => stop.abort() });
    expect(run.state).toBe('stopped');
    let r = (await s.doctor()).get('keys.reencrypt_unfinished')!;
    expect(r.status).toBe('warn');
    expect(r.summary).toContain(`run ${run.runId} (data) stopped, 50 of 300 rows done`);
    expect(r.fix).toContain('pgseal reencrypt --table people --column note resumes it');

    await s.db.sql`update pgseal.reencrypt_runs set state = 'failed', error = 'PGSEAL_DB_ERROR' where id = ${run.runId}`;
    r = (await s.doctor()).get('keys.reencrypt_unfinished')!;
    expect(r.status).toBe('fail');
    expect(r.summary).toContain('failed (PGSEAL_DB_ERROR)');
    expect(r.fix).toContain(`pgseal reencrypt status --run ${run.runId}`);

    await s.db.sql`update pgseal.reencrypt_runs set state = 'running', error = null where id = ${run.runId}`;
    r = (await s.doctor()).get('keys.reencrypt_unfinished')!;
    expect(r.status).toBe('warn');
    expect(r.summary).toContain('left running');

    // resumed to the end, nothing is unfinished
    expect((await reencrypt(s.db.sql, s.seal.keyring, { table: 'people', column: 'note' })).state).toBe('done');
    expect((await s.doctor()).get('keys.reencrypt_unfinished')!.status).toBe('ok');
  });
});

describe('data', () => {
  it('one plaintext value slipped in by hand: its row id with --full, never the value', async () => {
    const s = await scenario();
    await s.db.sql`update people set note = convert_to('plain text value long enough', 'UTF8') where id = 3`;
    const results = await s.doctor({ full: true });
    const r = results.get('data.plaintext')!;
    expect(r.status).toBe('fail');
    expect(r.summary).toContain('public.people.note: 1 of 20 values is not a pgseal envelope, row 3');
    expect(r.details).toMatchObject({ mode: 'full', columns: expect.arrayContaining([expect.objectContaining({ column: 'public.people.note', not_envelopes: 1, row_ids: ['3'], id_columns: ['id'] })]) });
    expect(JSON.stringify([...results.values()])).not.toContain('plain text value');
    // the sample finds it too in a table this small
    expect((await s.doctor()).get('data.plaintext')!.status).toBe('fail');
  });

  it('row ids of a composite primary key, and without a primary key', async () => {
    const s = await scenario(1);
    await s.db.sql`create table pairs (a int, b int, primary key (a, b))`;
    await s.db.sql`create table loose (n int)`;
    for (const table of ['pairs', 'loose']) await protectColumn(s.db.sql, { table, column: 'v' });
    await s.db.sql`insert into pairs values (1, 2, convert_to('a plaintext value', 'UTF8')), (1, 3, null)`;
    await s.db.sql`insert into loose values (1, convert_to('another plaintext value', 'UTF8'))`;
    const r = (await s.doctor({ full: true })).get('data.plaintext')!;
    expect(r.summary).toContain('public.pairs.v: 1 of 1 values is not a pgseal envelope, row (1,2)');
    expect(r.summary).toContain('public.loose.v: 1 of 1 values is not a pgseal envelope, row (0,1)');
    expect(r.details!.columns).toEqual(expect.arrayContaining([
      expect.objectContaining({ column: 'public.pairs.v', row_ids: ['(1,2)'], id_columns: ['a', 'b'] }),
      expect.objectContaining({ column: 'public.loose.v', row_ids: ['(0,1)'], id_columns: ['ctid'] }),
    ]));
  });

  it('a tenth of 2,000 rows in plaintext: the default sample reports it', async () => {
    const s = await scenario(2000);
    await s.db.sql`update people set note = convert_to('plain ' || id, 'UTF8') where id % 10 = 0`;
    const r = (await s.doctor()).get('data.plaintext')!;
    expect(r.status).toBe('fail');
    const note = (r.details!.columns as Array<{ column: string; values: number; not_envelopes: number; method: string }>).find((c) => c.column === 'public.people.note')!;
    expect(note.values).toBe(1000);
    expect(note.method).toBe('random');
    expect(note.not_envelopes).toBeGreaterThan(50);
    expect(note.not_envelopes).toBeLessThan(150);
    expect(r.summary).toContain('sampled values are not pgseal envelopes');
    expect(r.fix).toContain('pgseal doctor --full');
    // a smaller sample of this table (its size known once analysed) is drawn row by row first (BERNOULLI), and still sees it
    await s.db.sql`analyze people`;
    const small = (await s.doctor({ sampleRows: 100 })).get('data.plaintext')!;
    expect(small.status).toBe('fail');
    expect(small.details!.columns).toEqual(expect.arrayContaining([expect.objectContaining({ column: 'public.people.note', method: 'bernoulli', values: 100 })]));
    // a tiny one by blocks (SYSTEM), drawn again from every row when the blocks come back short
    const tiny = (await s.doctor({ sampleRows: 10 })).get('data.plaintext')!;
    expect(tiny.details!.columns).toEqual(expect.arrayContaining([expect.objectContaining({ column: 'public.people.note', values: 10 })]));
    // --full counts every row
    const full = (await s.doctor({ full: true })).get('data.plaintext')!;
    expect(full.summary).toContain('public.people.note: 200 of 2000 values are not pgseal envelopes, rows 10, 20, 30');
    expect(full.summary).toContain('and 180 more');
  });

  it('a protected column renamed, and a blind-index column dropped', async () => {
    const s = await scenario();
    await s.db.sql`alter table people rename column note to remark`;
    await s.db.sql`alter table people drop column email_bidx`;
    const r = (await s.doctor()).get('data.columns')!;
    expect(r.status).toBe('fail');
    expect(r.summary).toContain('public.people.note: the column does not exist (dropped or renamed)');
    expect(r.summary).toContain('public.people.email: its blind-index column email_bidx is missing');
    expect(r.fix).toContain('pgseal reencrypt --blind-index');
  });
});

describe('logs', () => {
  it('a missing partition for next month, and this month\'s; no retention set', async () => {
    const s = await scenario();
    await s.db.sql.unsafe(`drop table pgseal."${monthPartition(1)}"`);
    let results = await s.doctor();
    let r = results.get('logs.partitions')!;
    expect(r.status).toBe('warn');
    expect(r.summary).toContain(`no partition for ${monthPartition(1).replace(/^.*_y(\d{4})m(\d{2})$/, '$1-$2')}`);
    expect(r.fix).toContain('pgseal logs partitions');
    expect(results.get('logs.retention')).toMatchObject({ status: 'warn' });
    expect(results.get('logs.retention')!.fix).toContain('pgseal logs retention --older-than');
    // the fix works
    await createLogPartitions(s.db.sql);
    expect((await s.doctor()).get('logs.partitions')!.status).toBe('ok');
    // this month's gone: its rows land in the default partition
    await s.db.sql.unsafe(`drop table pgseal."${monthPartition(0)}"`);
    await s.seal.table(people).findByPk(2);
    results = await s.doctor();
    r = results.get('logs.partitions')!;
    expect(r.status).toBe('fail');
    expect(r.summary).toContain('wait in the default partition');
  });

  it('a partition older than the retention period until retention runs; an async buffer overflow recorded', async () => {
    const s = await scenario(2);
    await s.db.sql.unsafe(`alter database "${s.db.name}" set pgseal.log_retention = '400 days'`);
    await s.db.sql`select pgseal.create_log_partitions('2020-01-01', 1)`;
    let r = (await s.doctor()).get('logs.retention')!;
    expect(r.status).toBe('warn');
    expect(r.summary).toContain('pgseal.log_retention = 400 days');
    expect(r.summary).toContain('encrypted_data_access_log_y2020m01');
    expect(r.fix).toContain("pgseal logs retention --older-than '400 days'");
    await dropLogPartitions(s.db.sql, s.seal.keyring, '400 days');
    r = (await s.doctor()).get('logs.retention')!;
    expect(r.status).toBe('ok');
    expect(r.summary).toContain('pgseal logs retention last ran');

    await recordEvent(s.db.sql, s.seal.keyring, { operation: 'access_log.overflow', success: false, details: { dropped: 42, max_buffered: 10 } });
    r = (await s.doctor()).get('logs.async_buffer')!;
    expect(r.status).toBe('warn');
    expect(r.summary).toContain('overflowed once in the last 7 days: 42 entries were dropped');
    expect(r.fix).toContain('pgseal_access_log_dropped_total');
  });

  it('an edited log row fails logs.verify with --full', async () => {
    const s = await scenario();
    expect((await s.doctor({ full: true })).get('logs.verify')!.status).toBe('ok');
    await s.db.sql`update pgseal.encryption_audit_log set reason = 'nothing to see' where id = (select min(id) from pgseal.encryption_audit_log)`;
    await s.db.sql`update pgseal.encrypted_data_access_log set accessed_by = 'someone else' where row_id = '1' and access_type = 'read' and column_name = 'note'`;
    const r = (await s.doctor({ full: true })).get('logs.verify')!;
    expect(r.status).toBe('fail');
    expect(r.summary).toContain('2 edited');
    expect(r.summary).toContain('edited by hand');
    expect(r.fix).toContain('pgseal audit verify --since 24h --json');
    expect(r.details).toMatchObject({ counts: { edited: 2 } });
    expect((await s.doctor()).get('logs.verify')!.status).toBe('skip');
    // the doctor records nothing: no audit.verify event
    const [n] = await s.db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.encryption_audit_log where operation = 'audit.verify'`;
    expect(n!.n).toBe(0);
  });
});

describe('run by another role', () => {
  it('the application role: checks it may not run are skipped, saying so, and none fails', async () => {
    const s = await scenario();
    const role = await createRole(s.db.admin, 'doctor_app');
    const app = connectQuiet(s.db.urlAs(role.name, role.password));
    try {
      await s.db.sql.unsafe(`grant pgseal_app to "${role.name}"`);
      const provider = s.master();
      const report = await runDoctor(app, { provider, full: true });
      provider.close();
      const results = new Map(report.results.filter((r) => AREAS.has(r.area)).map((r) => [r.id, r]));
      wellFormed(results);
      expect(notOk(results), JSON.stringify(notOk(results), null, 2)).toEqual([]);
      expect(results.get('keys.master_key')!.status).toBe('ok'); // through pgseal.usable_keys
      expect(results.get('keys.rotation')).toMatchObject({ status: 'skip', fix: expect.stringContaining('as the owner of schema pgseal') });
      expect(results.get('keys.rotation')!.summary).toContain(`role ${role.name} may not read`);
      expect(results.get('data.plaintext')).toMatchObject({ status: 'skip' });
      expect(results.get('data.plaintext')!.summary).toContain('could not be read by this role: public.people.email, public.people.note');
    } finally {
      await app.end({ timeout: 5 });
      await s.db.admin.unsafe(`drop owned by "${role.name}" cascade`).catch(() => undefined);
    }
  });
});

describe('privileges', () => {
  it('PUBLIC granted SELECT on pgseal.keys, a role given a key operation outside the admin set', async () => {
    const s = await scenario();
    await s.db.sql`grant select on pgseal.keys to public`;
    let results = await s.doctor();
    expect(results.get('privileges.keys')).toMatchObject({ status: 'fail' });
    expect(results.get('privileges.keys')!.summary).toContain('PUBLIC holds SELECT on pgseal.keys');
    expect(results.get('privileges.keys')!.fix).toContain('REVOKE SELECT ON TABLE pgseal.keys FROM PUBLIC');
    expect(results.get('privileges.public')).toMatchObject({ status: 'fail' });
    expect(results.get('privileges.public')!.summary).toContain('SELECT on table pgseal.keys');
    await s.db.sql`revoke select on pgseal.keys from public`;

    const role = await createRole(s.db.admin, 'doctor_ops');
    try {
      await s.db.sql.unsafe(`grant execute on function pgseal.add_key(integer, text, text, bytea, text, text) to "${role.name}"`);
      results = await s.doctor();
      expect(results.get('privileges.keys')).toMatchObject({ status: 'fail' });
      expect(results.get('privileges.keys')!.summary).toContain(`role ${role.name} holds EXECUTE pgseal.add_key(integer, text, text, bytea, text, text)`);
      expect(results.get('privileges.public')!.status).toBe('ok');
      // the admin set is allowed exactly that
      await s.db.sql`select pgseal.grant_api(${role.name}, 'admin')`;
      results = await s.doctor();
      expect(results.get('privileges.keys')!.status).toBe('ok');
      await s.db.sql`select pgseal.revoke_api(${role.name})`;
    } finally {
      await s.db.admin.unsafe(`drop role if exists "${role.name}"`);
    }
  });
});
