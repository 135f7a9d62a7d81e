// Reading the logs: events (access log rows and key/data operations, merged in time order)
// and a per actor, table and column summary. Every filter is a bound parameter; the access
// log's indexes (accessed_by, accessed_at) and (table_name, row_id, accessed_at) serve them.

import type { Sql } from 'postgres';
import { ErrorCodes, PgsealError, withPgsealErrors as guarded } from '../errors.js';

export interface EventFilter {
  since?: Date | undefined;
  until?: Date | undefined;
  actor?: string | undefined;
  /** 'schema.table' or 'table' (public) */
  table?: string | undefined;
  /** a row's primary key, as text (needs table) */
  row?: string | undefined;
  limit?: number | undefined;
}

export interface LogEvent {
  at: Date;
  kind: 'access' | 'operation';
  actor: string;
  /** read / write / delete, or the operation (key.rotate, reencrypt.finish, ...) */
  action: string;
  table: string | null;
  column: string | null;
  row: string | null;
  clientIp: string | null;
  success: boolean;
  reason: string | null;
}

const qualified = (table: string | undefined) => (table === undefined ? undefined : table.includes('.') ? table : `public.${table}`);

/** Parses a time given on the command line: an ISO date or time, or a duration back from now (24h, 7d). */
export function parseTime(text: string): Date {
  const ago = /^(\d+)\s*(m|min|h|d|w)$/i.exec(text.trim());
  if (ago) {
    const unit = { m: 60e3, min: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 }[ago[2]!.toLowerCase() as 'm'];
    return new Date(Date.now() - Number(ago[1]) * unit);
  }
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `not a time: ${JSON.stringify(text)}`, { hint: 'give an ISO date or time (2026-11-01, 2026-11-01T09:00Z) or a span back from now (24h, 7d)' });
  }
  return at;
}

export function listEvents(sql: Sql, f: EventFilter = {}): Promise<LogEvent[]> {
  if (f.row !== undefined && f.table === undefined) {
    return Promise.reject(new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'a row needs its table', { hint: 'pass --table T --row R' }));
  }
  const table = qualified(f.table);
  return guarded(async () => {
    const rows = await sql<Array<Omit<LogEvent, 'clientIp'> & { client_ip: string | null }>>`
      select * from (
        select accessed_at as at, 'access' as kind, accessed_by as actor, access_type as action, table_name as table,
               column_name::text as column, row_id as row, host(client_ip) as client_ip, true as success, null::text as reason
          from pgseal.encrypted_data_access_log
         where (${f.since ?? null}::timestamptz is null or accessed_at >= ${f.since ?? null})
           and (${f.until ?? null}::timestamptz is null or accessed_at < ${f.until ?? null})
           and (${f.actor ?? null}::text is null or accessed_by = ${f.actor ?? null})
           and (${table ?? null}::text is null or table_name = ${table ?? null})
           and (${f.row ?? null}::text is null or row_id = ${f.row ?? null})
        union all
        select occurred_at, 'operation', actor, operation, table_schema || '.' || table_name, column_name::text, null, null, success, reason
          from pgseal.encryption_audit_log
         where (${f.since ?? null}::timestamptz is null or occurred_at >= ${f.since ?? null})
           and (${f.until ?? null}::timestamptz is null or occurred_at < ${f.until ?? null})
           and (${f.actor ?? null}::text is null or actor = ${f.actor ?? null})
           and (${table ?? null}::text is null or table_schema || '.' || table_name = ${table ?? null})
           and ${f.row ?? null}::text is null
      ) as e
      order by at desc
      limit ${f.limit ?? 1000}`;
    return rows.map(({ client_ip, ...e }) => ({ ...e, clientIp: client_ip }));
  });
}

export interface ReportLine {
  actor: string;
  table: string;
  column: string;
  reads: number;
  writes: number;
  deletes: number;
}

export interface Report {
  since: Date;
  until: Date;
  lines: ReportLine[];
  /** failed key and data operations per actor (the encryption audit log) */
  failures: Array<{ actor: string; operation: string; count: number }>;
}

/** Per actor, table and column: reads, writes, deletes; and failed operations per actor. */
export function report(sql: Sql, f: { since: Date; until?: Date | undefined; actor?: string | undefined }): Promise<Report> {
  const until = f.until ?? new Date();
  return guarded(async () => {
    const lines = await sql<Array<{ actor: string; table: string; column: string; reads: string; writes: string; deletes: string }>>`
      select accessed_by as actor, table_name as table, column_name::text as column,
             count(*) filter (where access_type = 'read') as reads,
             count(*) filter (where access_type = 'write') as writes,
             count(*) filter (where access_type = 'delete') as deletes
        from pgseal.encrypted_data_access_log
       where accessed_at >= ${f.since} and accessed_at < ${until}
         ${f.actor === undefined ? sql`` : sql`and accessed_by = ${f.actor}`}
       group by 1, 2, 3 order by 1, 2, 3`;
    const failures = await sql<Array<{ actor: string; operation: string; count: number }>>`
      select actor, operation, count(*)::int as count from pgseal.encryption_audit_log
       where not success and occurred_at >= ${f.since} and occurred_at < ${until}
         ${f.actor === undefined ? sql`` : sql`and actor = ${f.actor}`}
       group by 1, 2 order by 1, 2`;
    return {
      since: f.since, until,
      lines: lines.map((l) => ({ actor: l.actor, table: l.table, column: l.column, reads: Number(l.reads), writes: Number(l.writes), deletes: Number(l.deletes) })),
      failures,
    };
  });
}
