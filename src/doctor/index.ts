// pgseal doctor: is this database's encryption healthy right now? Every check of every
// area, each ok / warn / fail with what it found and the fix (check.ts); the exit rule in
// one place (exitCode). The checks live one file per area beside this one.

import type { Sql } from 'postgres';
import { withPgsealErrors } from '../errors.js';
import type { MasterKeyProvider } from '../keys/master-key.js';
import { runCheck, type CheckArea, type CheckResult, type DoctorOptions } from './check.js';
import { connectionChecks } from './connection.js';
import { loggingChecks } from './logging.js';
import { keysChecks } from './keys.js';
import { dataChecks } from './data.js';
import { logsChecks } from './logs.js';
import { privilegesChecks } from './privileges.js';

export type { CheckResult, CheckStatus, DoctorOptions } from './check.js';

const AREAS: Array<[CheckArea, typeof connectionChecks]> = [
  ['connection', connectionChecks], ['logging', loggingChecks], ['keys', keysChecks],
  ['data', dataChecks], ['logs', logsChecks], ['privileges', privilegesChecks],
];

export interface DoctorReport {
  results: CheckResult[];
  counts: Record<'ok' | 'warn' | 'fail' | 'skip', number>;
}

export async function runDoctor(sql: Sql, options: DoctorOptions & { databaseUrl?: string; provider?: MasterKeyProvider } = {}): Promise<DoctorReport> {
  const ctx = {
    sql,
    databaseUrl: options.databaseUrl,
    provider: options.provider,
    options: {
      full: options.full ?? false,
      rotationDays: options.rotationDays ?? 90,
      graceDays: options.graceDays ?? 30,
      sampleRows: options.sampleRows ?? 1000,
      serverLog: options.serverLog,
    },
    now: new Date(),
  };
  // a connection that fails (TLS, authentication) is one error, not every check failing with it
  await withPgsealErrors(() => sql`select 1`);
  const results: CheckResult[] = [];
  for (const [area, checks] of AREAS) {
    for (const { name, check } of checks) results.push(...(await runCheck(name, area, check, ctx)));
  }
  const counts = { ok: 0, warn: 0, fail: 0, skip: 0 };
  for (const r of results) counts[r.status] += 1;
  return { results, counts };
}

/** 0 when nothing failed (and, with strict, nothing warned); 1 otherwise. */
export function exitCode(report: DoctorReport, strict = false): number {
  return report.counts.fail > 0 || (strict && report.counts.warn > 0) ? 1 : 0;
}
