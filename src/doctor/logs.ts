// The doctor's logs checks: the access log has somewhere to go this month and next, the
// logs verify (with --full: audit verify of the last day), a retention is set and kept, and
// what can be said about the async buffers of the processes writing the log.

import type { Sql } from 'postgres';
import { logStorage } from '../audit/partitions.js';
import { verifyLogs } from '../audit/verify.js';
import { ErrorCodes } from '../errors.js';
import { masterLogKeys } from '../keys/unwrap.js';
import { readableOnly, type Check, type CheckResult, type DoctorContext } from './check.js';

const result = (name: string, r: Omit<CheckResult, 'id' | 'area'>): CheckResult[] => [{ id: `logs.${name}`, area: 'logs', ...r }];
const HYPERTABLES = ['encrypted_data_access_log', 'encryption_audit_log'] as const;

/** 'YYYY-MM' of the UTC month `ahead` months after now's. */
function monthOf(now: Date, ahead: number): { label: string; partition: string; first: string } {
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + ahead, 1));
  const y = String(d.getUTCFullYear()).padStart(4, '0');
  const m = String(d.getUTCMonth() + 1).padStart(2, '0');
  return { label: `${y}-${m}`, partition: `encrypted_data_access_log_y${y}m${m}`, first: `${y}-${m}-01` };
}

/** TimescaleDB's background jobs on pgseal's hypertables (proc_name, hypertable_name, config). */
async function timescaleJobs(sql: Sql): Promise<Array<{ proc_name: string; hypertable_name: string; drop_after: string | null }>> {
  const [has] = await sql<{ jobs: boolean }[]>`select pg_catalog.to_regclass('timescaledb_information.jobs') is not null as jobs`;
  if (!has?.jobs) return [];
  return sql<Array<{ proc_name: string; hypertable_name: string; drop_after: string | null }>>`
    select j.proc_name::pg_catalog.text, j.hypertable_name::pg_catalog.text, (j.config->>'drop_after') as drop_after
      from timescaledb_information.jobs j where j.hypertable_schema = 'pgseal'`;
}

const partitions: Check = async (ctx) => {
  if ((await logStorage(ctx.sql)) === 'timescaledb') {
    // TimescaleDB makes the chunks as rows arrive; old ones are compressed by a job (retention: logs.retention)
    const jobs = await timescaleJobs(ctx.sql);
    const missing = HYPERTABLES.filter((t) => !jobs.some((j) => j.hypertable_name === t && j.proc_name === 'policy_compression'));
    const details = { storage: 'timescaledb', jobs: jobs.map((j) => `${j.proc_name} ${j.hypertable_name}`), missing_compression: missing };
    if (missing.length === 0) return result('partitions', { status: 'ok', summary: 'the logs are TimescaleDB hypertables: chunks are made as rows arrive, and old ones are compressed', details });
    return result('partitions', {
      status: 'warn', summary: `the logs are TimescaleDB hypertables, but no compression job compresses old chunks of ${missing.map((t) => `pgseal.${t}`).join(', ')}`,
      fix: missing.map((t) => `SELECT add_compression_policy('pgseal.${t}', INTERVAL '30 days')`).join('; ') + ' (as the owner)',
      details,
    });
  }
  // this month and the next must exist; --full also looks one month further, which a monthly `logs partitions` keeps
  const months = [0, 1, ...(ctx.options.full ? [2] : [])].map((i) => monthOf(ctx.now, i));
  const rows = await ctx.sql<{ name: string }[]>`
    select c.relname::pg_catalog.text as name from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid
     where i.inhparent = 'pgseal.encrypted_data_access_log'::pg_catalog.regclass`;
  const attached = new Set(rows.map((r) => r.name));
  const missing = months.filter((m) => !attached.has(m.partition));
  // rows outside every monthly partition wait in the default one: their month has no partition
  const stray = !attached.has('encrypted_data_access_log_default') ? [] : await ctx.sql<{ month: string }[]>`
    select distinct pg_catalog.to_char(pg_catalog.date_trunc('month', d.accessed_at AT TIME ZONE 'UTC'), 'YYYY-MM') as month
      from pgseal.encrypted_data_access_log_default d order by 1 limit 12`;
  const monthly = [...attached].filter((n) => /_y\d{4}m\d{2}$/.test(n)).sort();
  const details = { storage: 'partitions', partitions: monthly, missing: missing.map((m) => m.label), default_partition_months: stray.map((s) => s.month) };
  const fixes: string[] = [];
  const found: string[] = [];
  if (missing.length > 0) {
    found.push(`no partition for ${missing.map((m) => m.label).join(', ')}`);
    fixes.push('pgseal logs partitions (creates this month\'s and the next three that are missing; run it monthly, e.g. from cron)');
  }
  if (stray.length > 0) {
    found.push(`rows of ${stray.map((s) => s.month).join(', ')} wait in the default partition`);
    // they move into their month's partition when it is made; `logs partitions` makes this month's and later ones
    const current = monthOf(ctx.now, 0).label;
    const past = stray.filter((s) => s.month < current);
    if (past.length > 0) {
      const [y, m] = past[0]!.month.split('-').map(Number) as [number, number];
      const span = Math.min(120, (ctx.now.getUTCFullYear() - y) * 12 + ctx.now.getUTCMonth() + 1 - m);
      fixes.push(`create the past months' partitions as the owner: select pgseal.create_log_partitions('${past[0]!.month}-01', ${span}) (the rows move into them)`);
    }
    if (missing.length === 0 && past.length < stray.length) fixes.push('pgseal logs partitions --months 12 (the rows move into their months\' partitions)');
  }
  if (found.length === 0) {
    return result('partitions', { status: 'ok', summary: `monthly access-log partitions exist for ${months.map((m) => m.label).join(', ')} (${monthly.length} in all)`, details });
  }
  // without this month's partition the log goes to the default partition, which retention never drops
  const status = missing.some((m) => m.label === months[0]!.label) ? 'fail' : 'warn';
  return result('partitions', { status, summary: `access-log partitions: ${found.join('; ')}`, fix: fixes.join('; '), details });
};

const verify: Check = async (ctx) => {
  if (!ctx.options.full) {
    return result('verify', { status: 'skip', summary: 'the logs\' tamper evidence is verified with --full (audit verify of the last day)', fix: 'pgseal doctor --full, or pgseal audit verify --since 24h' });
  }
  if (!ctx.provider) {
    return result('verify', { status: 'skip', summary: 'no master key is configured: the log keys it wraps are needed to verify the logs', fix: 'configure the master key (PGSEAL_MASTER_KEY, --master-key-file, PGSEAL_KMS_KEY_ID) and run pgseal doctor --full again' });
  }
  const since = new Date(ctx.now.getTime() - 86_400_000);
  let r;
  try {
    // the doctor changes nothing: the verification is not recorded in the audit log
    r = await verifyLogs(ctx.sql, masterLogKeys(ctx.sql, ctx.provider), { since, limit: 20, record: false });
  } catch (error) {
    if ((error as { code?: string }).code !== ErrorCodes.LOG_KEY_MISSING) throw error;
    return result('verify', { status: 'warn', summary: 'the logs have no log key yet: they are not signed', fix: 'pgseal keys init (as the owner): it creates the log key and starts the logs\' hash chains' });
  }
  const logs = r.logs.map((l) => `${l.log} log ${l.rows} rows, ${l.links} links`).join('; ');
  const details = { since: since.toISOString(), logs: r.logs, counts: r.counts, problems: r.problems };
  if (r.ok) return result('verify', { status: 'ok', summary: `both logs verify for the last day (${logs})`, details });
  const counts = Object.entries(r.counts).filter(([, n]) => n).map(([kind, n]) => `${n} ${kind}`).join(', ');
  const first = r.problems.slice(0, 3).map((p) => `${p.log} log: ${p.detail}${p.at ? ` (${p.at.toISOString()})` : ''}`).join('; ');
  return result('verify', {
    status: 'fail',
    summary: `the logs were altered in the last day: ${counts}${first ? ` (${first})` : ''}`,
    fix: 'keep the evidence outside the database: pgseal audit verify --since 24h --json > verify-report.json; then find who could write the logs (only their owner, or a role granted UPDATE or DELETE on them)',
    details,
  });
};

/** pgseal.log_retention: this session's value, else the one set for this database (ALTER DATABASE ... SET), else null. */
async function retentionSetting(sql: Sql): Promise<string | null> {
  const [row] = await sql<{ value: string | null }[]>`
    select coalesce(nullif(pg_catalog.current_setting('pgseal.log_retention', true), ''),
                    (select pg_catalog.substr(c.cfg, pg_catalog.length('pgseal.log_retention=') + 1)
                       from pg_catalog.pg_db_role_setting s, pg_catalog.unnest(s.setconfig) as c(cfg)
                      where s.setdatabase = (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database())
                        and s.setrole in (0, (select r.oid from pg_catalog.pg_roles r where r.rolname = CURRENT_USER))
                        and c.cfg like 'pgseal.log\\_retention=%'
                      order by s.setrole desc limit 1)) as value`;
  return row?.value ?? null;
}

const retention: Check = async (ctx) => {
  if ((await logStorage(ctx.sql)) === 'timescaledb') {
    const jobs = (await timescaleJobs(ctx.sql)).filter((j) => j.proc_name === 'policy_retention');
    const missing = HYPERTABLES.filter((t) => !jobs.some((j) => j.hypertable_name === t));
    const details = { storage: 'timescaledb', policies: jobs.map((j) => ({ hypertable: j.hypertable_name, drop_after: j.drop_after })) };
    if (missing.length === 0) return result('retention', { status: 'ok', summary: `TimescaleDB drops the logs' chunks older than ${[...new Set(jobs.map((j) => j.drop_after))].join(', ')}`, details });
    return result('retention', {
      status: 'warn', summary: `no TimescaleDB retention policy on ${missing.map((t) => `pgseal.${t}`).join(', ')}: those rows are kept forever`,
      fix: missing.map((t) => `SELECT add_retention_policy('pgseal.${t}', INTERVAL '400 days')`).join('; '),
      details,
    });
  }
  // native partitions: the period is the pgseal.log_retention setting, else what the last `pgseal logs retention` was given
  const setting = await retentionSetting(ctx.sql);
  const [last] = await ctx.sql<{ occurred_at: Date; older_than: string | null }[]>`
    select occurred_at, details->>'older_than' as older_than from pgseal.encryption_audit_log
     where operation = 'logs.retention' and success order by occurred_at desc limit 1`;
  const period = setting ?? last?.older_than ?? null;
  const details: Record<string, unknown> = { storage: 'partitions', setting, last_run: last?.occurred_at ?? null, last_older_than: last?.older_than ?? null };
  if (period === null) {
    return result('retention', {
      status: 'warn', summary: 'no retention is set for the access log: no pgseal.log_retention, and pgseal logs retention never ran, so every month is kept forever',
      fix: 'choose a period, record it (ALTER DATABASE <db> SET pgseal.log_retention = \'400 days\') and run pgseal logs retention --older-than 400d monthly, e.g. from cron',
      details,
    });
  }
  // partitions whose whole month is older than the period are what retention would drop
  let overdue: Array<{ name: string }>;
  try {
    overdue = await ctx.sql<{ name: string }[]>`
      select c.relname::pg_catalog.text as name
        from pg_catalog.pg_inherits i join pg_catalog.pg_class c on c.oid = i.inhrelid
       where i.inhparent = 'pgseal.encrypted_data_access_log'::pg_catalog.regclass and c.relname ~ '_y[0-9]{4}m[0-9]{2}$'
         and (pg_catalog.to_date(pg_catalog.right(c.relname, 8), '"y"YYYY"m"MM') + interval '1 month')::timestamp AT TIME ZONE 'UTC'
             <= pg_catalog.now() - ${period}::pg_catalog.interval
       order by 1`;
  } catch (error) {
    if (!(error as { code?: string }).code?.startsWith('22')) throw error; // data exception: the period is not an interval
    return result('retention', {
      status: 'warn', summary: `pgseal.log_retention is ${JSON.stringify(period)}, which is not a period`,
      fix: 'set it to an interval: ALTER DATABASE <db> SET pgseal.log_retention = \'400 days\'', details,
    });
  }
  details.period = period;
  details.overdue_partitions = overdue.map((p) => p.name);
  const source = setting !== null ? `pgseal.log_retention = ${setting}` : `the last pgseal logs retention (older than ${period})`;
  if (overdue.length > 0) {
    return result('retention', {
      status: 'warn', summary: `partitions older than the retention period (${source}) are still kept: ${overdue.map((p) => p.name).join(', ')}`,
      fix: `pgseal logs retention --older-than '${period}' (run it monthly, e.g. from cron)`,
      details,
    });
  }
  return result('retention', {
    status: 'ok', summary: `retention ${source}; ${last ? `pgseal logs retention last ran ${last.occurred_at.toISOString()}` : 'no partition is older than it yet'}`, details,
  });
};

const asyncBuffer: Check = async (ctx: DoctorContext) => {
  // an overflow is recorded in the audit log by the process whose buffer overflowed, once it can write again
  const [row] = await ctx.sql<{ events: number; dropped: string | null; last: Date | null }[]>`
    select pg_catalog.count(*)::int as events, pg_catalog.sum((details->>'dropped')::bigint)::pg_catalog.text as dropped, pg_catalog.max(occurred_at) as last
      from pgseal.encryption_audit_log where operation = 'access_log.overflow' and occurred_at >= ${new Date(ctx.now.getTime() - 7 * 86_400_000)}`;
  const fix = 'watch each process\'s access-log drop counter, pgseal_access_log_dropped_total in its metrics registry (metricsRegistry(); seal.accessLog().dropped), and raise accessLog.maxBuffered or flush more often where it grows';
  if (row && row.events > 0) {
    return result('async_buffer', {
      status: 'warn', summary: `async access-log buffers overflowed ${row.events === 1 ? 'once' : `${row.events} times`} in the last 7 days: ${Number(row.dropped ?? 0)} entries were dropped (last ${row.last!.toISOString()})`,
      fix, details: { overflow_events: row.events, dropped: Number(row.dropped ?? 0), last: row.last },
    });
  }
  return result('async_buffer', {
    status: 'skip',
    summary: 'the async access log\'s buffer and its overflow count live in each writing process: the doctor cannot see them (no overflow was recorded in the audit log in the last 7 days)',
    fix, details: { overflow_events: 0 },
  });
};

export const logsChecks: Array<{ name: string; check: Check }> = [
  { name: 'partitions', check: readableOnly('logs', 'partitions', partitions) },
  { name: 'verify', check: readableOnly('logs', 'verify', verify) },
  { name: 'retention', check: readableOnly('logs', 'retention', retention) },
  { name: 'async_buffer', check: readableOnly('logs', 'async_buffer', asyncBuffer) },
];
