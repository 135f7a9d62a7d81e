// The TimescaleDB branch (sql/98_timescale.sql): with the extension installed at migration
// time both logs become hypertables with compression and retention policies, and
// everything else (signed rows, verify, retention, migrations down and up) still holds.
//
// It needs a server with timescaledb: the run's server (PGSEAL_TEST_DATABASE_URL) when it
// has the extension, else a TimescaleDB container started with testcontainers where a
// Docker engine answers. Otherwise it does not run, says why, and vitest counts it as
// skipped (never as passed).

import { randomBytes } from 'node:crypto';
import postgres, { type Sql } from 'postgres';
import { GenericContainer, Wait, type StartedTestContainer } from 'testcontainers';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  column, defineTable, dropLogPartitions, initKeys, LocalMasterKey, masterLogKeys, migrate, pgseal, protectColumn, report, verifyLogs, withAccessContext,
} from '../../src/index.js';
import { AccessLogBuffer } from '../../src/audit/access-log.js';
import { withDatabase } from '../support/db.js';

const IMAGE = 'timescale/timescaledb:2.17.2-pg15';

interface Server { adminUrl: string; container?: StartedTestContainer }

async function timescaleServer(): Promise<Server | { reason: string }> {
  const runServer = inject('pgAdminUrl');
  const probe = postgres(runServer, { max: 1, onnotice: () => {} });
  try {
    const [row] = await probe<{ n: number }[]>`select count(*)::int as n from pg_available_extensions where name = 'timescaledb'`;
    if (row!.n > 0) return { adminUrl: runServer };
  } finally {
    await probe.end();
  }
  try {
    const container = await new GenericContainer(IMAGE)
      .withEnvironment({ POSTGRES_PASSWORD: 'pgseal' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    return { adminUrl: `postgres://postgres:pgseal@${container.getHost()}:${container.getMappedPort(5432)}/postgres`, container };
  } catch (error) {
    return {
      reason: `the run's server has no timescaledb (set PGSEAL_TEST_DATABASE_URL to one that has), and no TimescaleDB container could start: ${(error as Error).message.split('\n')[0]}`,
    };
  }
}

const server = await timescaleServer();
if ('reason' in server) console.log(`TimescaleDB tests did not run: ${server.reason}`);

const master = new LocalMasterKey(randomBytes(32));
const people = defineTable({ name: 'people', primaryKey: 'id', columns: { id: column.plain<number>(), email: column.text() } });

describe.skipIf('reason' in server)('TimescaleDB hypertables', () => {
  const s = server as Server;
  let admin: Sql;
  let url: string;
  let sql: Sql;
  const name = 'pgseal_ts_' + randomBytes(4).toString('hex');

  beforeAll(async () => {
    admin = postgres(s.adminUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database "${name}"`);
    url = withDatabase(s.adminUrl, name);
    sql = postgres(url, { max: 4, onnotice: () => {} });
    await sql`create extension if not exists timescaledb`;
    // the retention period is configuration, read at migration time
    await sql.unsafe(`alter database "${name}" set pgseal.log_retention = '90 days'`);
    await sql.end();
    sql = postgres(url, { max: 4, onnotice: () => {} });
    await migrate({ databaseUrl: url, direction: 'up' });
  }, 120_000);
  afterAll(async () => {
    await sql?.end();
    await admin?.unsafe(`drop database if exists "${name}" with (force)`);
    await admin?.end();
    await s.container?.stop();
  });

  it('both logs are hypertables with compression and a retention policy of the configured period', async () => {
    const [storage] = await sql<{ s: string }[]>`select pgseal.log_storage() as s`;
    expect(storage!.s).toBe('timescaledb');
    const tables = await sql<{ hypertable_name: string }[]>`
      select hypertable_name from timescaledb_information.hypertables where hypertable_schema = 'pgseal' order by 1`;
    expect(tables.map((t) => t.hypertable_name)).toEqual(['encrypted_data_access_log', 'encryption_audit_log']);
    const jobs = await sql<{ hypertable_name: string; proc_name: string; config: Record<string, string> }[]>`
      select hypertable_name, proc_name, config from timescaledb_information.jobs where hypertable_schema = 'pgseal' order by 1, 2`;
    expect(jobs.map((j) => `${j.hypertable_name}:${j.proc_name}`)).toEqual([
      'encrypted_data_access_log:policy_compression', 'encrypted_data_access_log:policy_retention',
      'encryption_audit_log:policy_compression', 'encryption_audit_log:policy_retention',
    ]);
    expect(jobs.filter((j) => j.proc_name === 'policy_retention').map((j) => j.config.drop_after)).toEqual(['90 days', '90 days']);
  });

  it('the helpers log to the hypertable, signed; report and verify work; retention drops old chunks and the log still verifies', async () => {
    await initKeys(sql, master);
    await sql`create table people (id int primary key)`;
    await protectColumn(sql, { table: 'people', column: 'email' });
    const seal = pgseal({ sql, masterKey: master, accessLog: { mode: 'sync' } });
    const t = seal.table(people);
    await t.insertMany(Array.from({ length: 50 }, (_, i) => ({ id: i + 1, email: `p${i + 1}@example.org` })));
    await withAccessContext({ actor: 'ana', clientIp: '192.0.2.5' }, () => t.list({ limit: 50 }));
    const r = await report(sql, { since: new Date(Date.now() - 3600_000), actor: 'ana' });
    expect(r.lines).toEqual([expect.objectContaining({ actor: 'ana', column: 'email', reads: 50 })]);
    // entries two years old land in an old chunk
    const old = new AccessLogBuffer(sql, seal.keyring, { mode: 'async' });
    old.add(Array.from({ length: 20 }, (_, i) => ({ table_name: 'public.people', column_name: 'email', row_id: String(i + 1), accessed_by: 'archive', access_type: 'read' as const, client_ip: null, accessed_at: new Date(Date.now() - 730 * 86400_000) })));
    await old.close();
    const keys = masterLogKeys(sql, master);
    expect((await verifyLogs(sql, keys, { record: false })).problems).toEqual([]);
    const dropped = await dropLogPartitions(sql, keys, '400d', { actor: 'dpo' });
    expect(dropped).toEqual([expect.stringMatching(/chunk/)]);
    const [left] = await sql<{ n: number }[]>`select count(*)::int as n from pgseal.encrypted_data_access_log where accessed_by = 'archive'`;
    expect(left!.n).toBe(0);
    expect((await verifyLogs(sql, keys, { record: false })).problems).toEqual([]);
    await seal.close();
  });

  it('migrations go down to zero and up again', async () => {
    await sql`drop table people`;
    // the keyring holds keys: dropping it is allowed explicitly, as `pgseal migrate down --allow-drop-keys` does
    const allowed = new URL(url);
    allowed.searchParams.set('options', '-c pgseal.allow_drop_keys=on');
    await migrate({ databaseUrl: allowed.toString(), direction: 'down', count: Infinity });
    const [gone] = await sql<{ n: number }[]>`select count(*)::int as n from pg_namespace where nspname = 'pgseal'`;
    expect(gone!.n).toBe(0);
    await migrate({ databaseUrl: url, direction: 'up' });
    const [storage] = await sql<{ s: string }[]>`select pgseal.log_storage() as s`;
    expect(storage!.s).toBe('timescaledb');
  });
});
