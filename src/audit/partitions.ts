// Partitions of the access log: created ahead (monthly, UTC), dropped whole for retention.
// When the logs are TimescaleDB hypertables (sql/98_timescale.sql), TimescaleDB makes the
// chunks, and retention drops both logs' old chunks instead.

import type { Sql } from 'postgres';
import { ErrorCodes, PgsealError, withPgsealErrors as guarded } from '../errors.js';
import { recordEvent, type Attribution, type LogKeys } from './record.js';

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
  if ((await logStorage(sql)) === 'timescaledb') return dropLogChunks(sql, keys, period, by);
  return await guarded(() =>
    sql.begin(async (tx) => {
      const [row] = await tx<{ dropped: string[] }[]>`select pgseal.drop_log_partitions(${period}::interval) as dropped`;
      const before = retainedFrom(row!.dropped);
      let links = 0;
      if (before) {
        // the chains forget the dropped rows' links and remember where they now start
        const keyset = await keys.logKeyset();
        try {
          const [trim] = await tx<{ n: number }[]>`select pgseal.trim_log_chains('access', ${before}::timestamptz, ${keyset}::bytea) as n`;
          links = trim!.n;
        } finally {
          keyset.fill(0);
        }
      }
      await recordEvent(tx, keys, { operation: 'logs.retention', success: true, actor: by.actor, reason: by.reason, details: { older_than: period, dropped: row!.dropped, links_trimmed: links, retained_from: before ?? null } });
      return row!.dropped;
    }),
  );
}

/** The start of the month after the newest dropped partition (encrypted_data_access_log_yYYYYmMM, UTC). */
function retainedFrom(dropped: readonly string[]): string | undefined {
  const months = dropped.map((name) => /_y(\d{4})m(\d{2})$/.exec(name)).filter((m) => m !== null).map((m) => Date.UTC(Number(m[1]), Number(m[2]), 1));
  return months.length ? new Date(Math.max(...months)).toISOString() : undefined;
}

async function dropLogChunks(sql: Sql, keys: LogKeys, period: string, by: Attribution): Promise<string[]> {
  return guarded(() =>
    sql.begin(async (tx) => {
      const [row] = await tx<{ n: number }[]>`select pgseal.drop_log_chunks(${period}::interval) as n`;
      // chunks go whole: the chains now start where the oldest chunk left begins (not at the
      // oldest row left, which rows deleted by hand would move)
      const keyset = await keys.logKeyset();
      let links = 0;
      try {
        for (const [log, table] of [['access', 'encrypted_data_access_log'], ['audit', 'encryption_audit_log']] as const) {
          const [trim] = await tx.unsafe<{ n: number }[]>(
            `select pgseal.trim_log_chains($1, coalesce(
               (select pg_catalog.min(c.range_start) from timescaledb_information.chunks c where c.hypertable_schema = 'pgseal' and c.hypertable_name = $2),
               pg_catalog.now() - $3::interval), $4::bytea) as n`,
            [log, table, period, keyset]);
          links += trim!.n;
        }
      } finally {
        keyset.fill(0);
      }
      await recordEvent(tx, keys, { operation: 'logs.retention', success: true, actor: by.actor, reason: by.reason, details: { older_than: period, chunks_dropped: row!.n, links_trimmed: links } });
      return row!.n > 0 ? [`${row!.n} chunk(s)`] : [];
    }),
  );
}
