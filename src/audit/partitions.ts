// Partitions of the access log: created ahead (monthly, UTC), dropped whole for retention.
// When the logs are TimescaleDB hypertables (sql/98_timescale.sql), TimescaleDB makes the
// chunks, and retention drops both logs' old chunks instead.

import type { Sql, TransactionSql } from 'postgres';
import { ErrorCodes, PgsealError, withPgsealErrors as guarded } from '../errors.js';
import { recordEvent, withLogKeyset, type Attribution, type LogKeys } from './record.js';

/** Creates the monthly partitions of the next `months` months (this one included) that are missing. */
export function createLogPartitions(sql: Sql, months = 4): Promise<number> {
  return guarded(async () => {
    if ((await logStorage(sql)) === 'timescaledb') return 0;
    const [row] = await sql<{ n: number }[]>`select pgseal.create_log_partitions(p_months => ${months}::integer) as n`;
    return row!.n;
  });
}

/** Parses a retention period: '400d', '13 months', '2y' (days, weeks, months, years). */
export function parsePeriod(text: string): string {
  const m = /^\s*(\d+)\s*(d|days?|w|weeks?|m|months?|y|years?)\s*$/i.exec(text);
  if (!m) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `not a retention period: ${JSON.stringify(text)}`, { hint: 'write it like 400d, 13months or 2y' });
  }
  const unit = m[2]!.toLowerCase()[0];
  return `${m[1]} ${unit === 'd' ? 'days' : unit === 'w' ? 'weeks' : unit === 'm' ? 'months' : 'years'}`;
}

/** Where the logs live: 'partitions' (native monthly partitions) or 'timescaledb' (hypertables). */
export async function logStorage(sql: Sql): Promise<'partitions' | 'timescaledb'> {
  const [row] = await guarded(() => sql<{ storage: 'partitions' | 'timescaledb' }[]>`select pgseal.log_storage() as storage`);
  return row!.storage;
}

/**
 * Drops the access log's monthly partitions older than the period and returns their names;
 * on TimescaleDB, both logs' chunks older than the period (named by count). Then the chains
 * forget the links of the rows that went. Recorded in the audit log.
 */
export async function dropLogPartitions(sql: Sql, keys: LogKeys, olderThan: string, by: Attribution = {}): Promise<string[]> {
  const period = parsePeriod(olderThan);
  const storage = await logStorage(sql);
  return await guarded(() =>
    sql.begin(async (tx) => {
      const { dropped, cuts } = storage === 'timescaledb' ? await dropChunks(tx, period) : await dropPartitions(tx, period);
      // the chains forget the dropped rows' links and remember where they now start
      let links = 0;
      if (cuts.length > 0) {
        await withLogKeyset(keys, async (keyset) => {
          for (const [log, before] of cuts) {
            const [trim] = await tx<{ n: number }[]>`select pgseal.trim_log_chains(${log}, ${before}::timestamptz, ${keyset}::bytea) as n`;
            links += trim!.n;
          }
        });
      }
      await recordEvent(tx, keys, {
        operation: 'logs.retention', success: true, actor: by.actor, reason: by.reason,
        details: { older_than: period, dropped, links_trimmed: links, retained_from: cuts.find(([log]) => log === 'access')?.[1] ?? null },
      });
      return dropped;
    }),
  );
}

type Cut = ['access' | 'audit', string];

/** Native partitions: the access log's months; its chains now start after the newest one dropped. */
async function dropPartitions(tx: TransactionSql, period: string): Promise<{ dropped: string[]; cuts: Cut[] }> {
  const [row] = await tx<{ dropped: string[] }[]>`select pgseal.drop_log_partitions(${period}::interval) as dropped`;
  const months = row!.dropped.map((name) => /_y(\d{4})m(\d{2})$/.exec(name)).filter((m) => m !== null).map((m) => Date.UTC(Number(m[1]), Number(m[2]), 1));
  return { dropped: row!.dropped, cuts: months.length ? [['access', new Date(Math.max(...months)).toISOString()]] : [] };
}

/**
 * TimescaleDB: both logs' chunks. Chunks go whole: the chains now start where the oldest
 * chunk left begins (not at the oldest row left, which rows deleted by hand would move).
 */
async function dropChunks(tx: TransactionSql, period: string): Promise<{ dropped: string[]; cuts: Cut[] }> {
  const [row] = await tx<{ n: number }[]>`select pgseal.drop_log_chunks(${period}::interval) as n`;
  const cuts = await tx<{ log: 'access' | 'audit'; before: Date }[]>`
    select l.log, coalesce(pg_catalog.min(c.range_start), pg_catalog.now() - ${period}::interval) as before
      from (values ('access', 'encrypted_data_access_log'), ('audit', 'encryption_audit_log')) as l(log, hypertable)
      left join timescaledb_information.chunks c on c.hypertable_schema = 'pgseal' and c.hypertable_name = l.hypertable
     group by l.log`;
  return { dropped: row!.n > 0 ? [`${row!.n} chunk(s)`] : [], cuts: cuts.map((c) => [c.log, c.before.toISOString()]) };
}
