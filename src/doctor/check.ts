// What every doctor check returns, and what it is given. A check looks, never changes
// anything (the canary aside, which is a throwaway key and is said so), and says what it
// found and the fix; it never prints a key or a plaintext value.

import type { Sql } from 'postgres';
import type { MasterKeyProvider } from '../keys/master-key.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';
export type CheckArea = 'connection' | 'logging' | 'keys' | 'data' | 'logs' | 'privileges';

export interface CheckResult {
  /** stable, dotted: 'connection.tls', 'logging.log_statement', 'data.plaintext' */
  id: string;
  area: CheckArea;
  status: CheckStatus;
  /** one line: what was found */
  summary: string;
  /** the fix, when status is warn or fail (or why a check was skipped) */
  fix?: string | undefined;
  /** machine-readable findings for --json (row ids, settings, counts): never a key or a value */
  details?: Record<string, unknown> | undefined;
}

export interface DoctorOptions {
  /** every row, not a sample; audit verify of the last day; partitions ahead */
  full?: boolean | undefined;
  /** rotation overdue after this many days (default 90) */
  rotationDays?: number | undefined;
  /** decrypt-only longer than this many days is a warning (default 30) */
  graceDays?: number | undefined;
  /** a server log file the doctor may read (the canary is looked for there) */
  serverLog?: string | undefined;
  /** rows sampled per protected column by default (default 1000) */
  sampleRows?: number | undefined;
}

export interface DoctorContext {
  sql: Sql;
  /** the URL the connection was made with (TLS options come from it); never printed with its password */
  databaseUrl?: string | undefined;
  /** the master key, when configured: the key checks need it, and are skipped (saying so) without */
  provider?: MasterKeyProvider | undefined;
  options: Required<Omit<DoctorOptions, 'serverLog'>> & { serverLog?: string | undefined };
  now: Date;
}

export type Check = (ctx: DoctorContext) => Promise<CheckResult[]>;

/** A check that threw becomes one failed result naming it, so one broken check never hides the others. */
export async function runCheck(name: string, area: CheckArea, check: Check, ctx: DoctorContext): Promise<CheckResult[]> {
  try {
    return await check(ctx);
  } catch (error) {
    const e = error as { code?: string; message?: string; hint?: string };
    return [{ id: `${area}.${name}`, area, status: 'fail', summary: `the check could not run: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(error)}`, fix: e.hint ?? 'run it again with PGSEAL_DEBUG=1 to see why' }];
  }
}

/**
 * The check, skipped (saying so) rather than failed when this role may not read what it
 * needs (SQLSTATE 42501): the doctor is meant to run as the owner of schema pgseal.
 */
export function readableOnly(area: CheckArea, name: string, check: Check): Check {
  return async (ctx) => {
    try {
      return await check(ctx);
    } catch (error) {
      const e = error as { code?: string; sqlstate?: string; message?: string };
      if (e.code !== '42501' && e.sqlstate !== '42501') throw error;
      const [who] = await ctx.sql<{ role: string }[]>`select CURRENT_USER::pg_catalog.text as role`;
      return [{
        id: `${area}.${name}`, area, status: 'skip',
        summary: `role ${who?.role ?? '?'} may not read what this check needs (${e.message ?? 'permission denied'})`,
        fix: 'run pgseal doctor as the owner of schema pgseal (the role that ran the migrations) or a superuser',
      }];
    }
  };
}
