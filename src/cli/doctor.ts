// pgseal doctor: each check with ok / warn / fail, what it found and the fix (src/doctor/).
// Exit 0 when nothing fails (warnings too with --strict), 1 otherwise: a failed report
// ends as PGSEAL_DOCTOR_CHECKS_FAILED, which main.ts turns into its one line and exit 1.

import type { Argv, CommandModule } from 'yargs';
import { exitCode, runDoctor, type CheckResult } from '../doctor/index.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import type { MasterKeyProvider } from '../keys/master-key.js';
import { databaseUrl, masterKey, usingDatabase, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';

interface Args extends DatabaseArgs, MasterKeyArgs {
  json?: boolean | undefined;
  full?: boolean | undefined;
  strict?: boolean | undefined;
  prometheus?: boolean | undefined;
  'rotation-days': number;
  'grace-days': number;
  'server-log'?: string | undefined;
}

const MARK: Record<CheckResult['status'], string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: 'skip' };

/** The master key when one is configured; the key checks are skipped (saying so) without one. */
function optionalMasterKey(args: MasterKeyArgs): MasterKeyProvider | undefined {
  try {
    return masterKey(args);
  } catch (error) {
    if (error instanceof PgsealError && error.code === ErrorCodes.MASTER_KEY_MISSING) return undefined;
    throw error;
  }
}

export async function runDoctorCommand(args: Args): Promise<void> {
  const provider = optionalMasterKey(args);
  try {
    const report = await usingDatabase(args, (sql) => runDoctor(sql, {
      databaseUrl: databaseUrl(args), provider, full: args.full, rotationDays: args['rotation-days'], graceDays: args['grace-days'], serverLog: args['server-log'],
    }));
    if (args.prometheus) {
      const { doctorExposition } = await import('../metrics.js') as unknown as { doctorExposition: (results: CheckResult[]) => Promise<string> };
      process.stdout.write(await doctorExposition(report.results));
    } else if (args.json) {
      console.log(JSON.stringify(report, null, 2));
    } else {
      for (const r of report.results) {
        console.log(`${MARK[r.status]}  ${r.id}: ${r.summary}`);
        if (r.fix && r.status !== 'ok') console.log(`      fix: ${r.fix}`);
      }
      const c = report.counts;
      console.log(`pgseal doctor: ${c.ok} ok, ${c.warn} warning(s), ${c.fail} failed, ${c.skip} skipped`);
    }
    if (exitCode(report, args.strict ?? false) !== 0) {
      const n = report.counts.fail + (args.strict ? report.counts.warn : 0);
      throw new PgsealError(ErrorCodes.DOCTOR_CHECKS_FAILED, `${n} check(s) ${args.strict ? 'failed or warned' : 'failed'}`, { hint: 'each one names its fix above' });
    }
  } finally {
    provider?.close();
  }
}

export const doctorCommand: CommandModule<object, Args> = {
  command: 'doctor',
  describe: 'check this database\'s encryption set-up: TLS, logging, keys, data, logs, privileges (exit 1 when a check fails)',
  builder: (y: Argv) =>
    withMasterKey(withDatabase(y))
      .option('json', { type: 'boolean', describe: 'print the report as JSON' })
      .option('full', { type: 'boolean', describe: 'every row of every protected column, audit verify of the last day, partitions ahead' })
      .option('strict', { type: 'boolean', describe: 'exit 1 on warnings too' })
      .option('prometheus', { type: 'boolean', describe: 'print the checks (and this process\'s metrics) in Prometheus text format' })
      .option('rotation-days', { type: 'number', default: 90, describe: 'an active key older than this is overdue for rotation' })
      .option('grace-days', { type: 'number', default: 30, describe: 'a version decrypt-only for longer than this should be re-encrypted away and retired' })
      .option('server-log', { type: 'string', describe: 'a server log file to look for the canary in (else the log pg_current_logfile() names, where readable)' }) as unknown as Argv<Args>,
  handler: runDoctorCommand,
};
