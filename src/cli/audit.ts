// pgseal audit [report | verify]: who read or changed which protected value, what happened to
// the keys, and whether anyone edited the logs by hand.
import type { Argv, CommandModule } from 'yargs';
import { listEvents, parseTime, report } from '../audit/query.js';
import { verifyLogs } from '../audit/verify.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import { by, withAttribution, type AttributionArgs } from './attribution.js';
import { usingDatabase, usingLogKeys, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';
import { jsonReplacer, table, toJsonLine } from './output.js';

const optionalTime = (text: string | undefined): Date | undefined => (text === undefined ? undefined : parseTime(text));

interface ListArgs extends DatabaseArgs {
  since?: string | undefined;
  until?: string | undefined;
  actor?: string | undefined;
  table?: string | undefined;
  row?: string | undefined;
  limit: number;
  json?: boolean | undefined;
}

const listCommand: CommandModule<object, ListArgs> = {
  command: '$0',
  describe: 'list events, newest first: accesses to protected values and key / data operations',
  builder: (y: Argv) =>
    withDatabase(y)
      .option('since', { type: 'string', describe: 'from this time (ISO, or a span back from now: 24h, 7d)' })
      .option('until', { type: 'string', describe: 'before this time' })
      .option('actor', { type: 'string', describe: 'only this actor' })
      .option('table', { type: 'string', describe: 'only this table (schema.table)' })
      .option('row', { type: 'string', describe: 'only this row (its primary key; needs --table)' })
      .option('limit', { type: 'number', default: 1000, describe: 'at most this many events' })
      .option('json', { type: 'boolean', describe: 'one JSON object per line' }) as unknown as Argv<ListArgs>,
  handler: async (args) => {
    const events = await usingDatabase(args, (sql) => listEvents(sql, {
      since: optionalTime(args.since), until: optionalTime(args.until),
      actor: args.actor, table: args.table, row: args.row, limit: args.limit,
    }));
    if (args.json) {
      for (const e of events) console.log(toJsonLine(e as unknown as Record<string, unknown>));
      return;
    }
    console.log(table(['at', 'kind', 'actor', 'action', 'table', 'column', 'row', 'clientIp', 'success', 'reason'], events as unknown as Record<string, unknown>[]));
  },
};

interface ReportArgs extends DatabaseArgs {
  since: string;
  until?: string | undefined;
  actor?: string | undefined;
  json?: boolean | undefined;
}

const reportCommand: CommandModule<object, ReportArgs> = {
  command: 'report',
  describe: 'per actor, table and column: reads, writes, deletes; failed operations per actor',
  builder: (y: Argv) =>
    withDatabase(y)
      .option('since', { type: 'string', demandOption: true, describe: 'from this time (ISO, or 24h, 7d)' })
      .option('until', { type: 'string', describe: 'before this time (default now)' })
      .option('actor', { type: 'string', describe: 'only this actor' })
      .option('json', { type: 'boolean', describe: 'print JSON' }) as unknown as Argv<ReportArgs>,
  handler: async (args) => {
    const r = await usingDatabase(args, (sql) => report(sql, { since: parseTime(args.since), until: optionalTime(args.until), actor: args.actor }));
    if (args.json) {
      console.log(JSON.stringify(r, jsonReplacer, 2));
      return;
    }
    console.log(`from ${r.since.toISOString()} to ${r.until.toISOString()}`);
    console.log(table(['actor', 'table', 'column', 'reads', 'writes', 'deletes'], r.lines as unknown as Record<string, unknown>[]));
    if (r.failures.length) console.log(table(['actor', 'operation', 'count'], r.failures as unknown as Record<string, unknown>[]));
  },
};

interface VerifyArgs extends DatabaseArgs, MasterKeyArgs, AttributionArgs {
  since?: string | undefined;
  limit: number;
  json?: boolean | undefined;
}

const verifyCommand: CommandModule<object, VerifyArgs> = {
  command: 'verify',
  describe: 'check both logs\' hash chains and row MACs: report every row inserted, edited or deleted by hand (exit 1 if any)',
  builder: (y: Argv) =>
    withAttribution(withMasterKey(withDatabase(y)))
      .option('since', { type: 'string', describe: 'only links and rows from this time (ISO, or 24h, 7d); default: everything kept' })
      .option('limit', { type: 'number', default: 1000, describe: 'list at most this many problems per check (counts stay complete)' })
      .option('json', { type: 'boolean', describe: 'print JSON' }) as unknown as Argv<VerifyArgs>,
  handler: async (args) => {
    const r = await usingLogKeys(args, (sql, keys) => verifyLogs(sql, keys, { since: optionalTime(args.since), limit: args.limit, ...by(args) }));
    if (args.json) console.log(JSON.stringify(r, jsonReplacer, 2));
    else {
      for (const l of r.logs) {
        console.log(`${l.log} log: ${l.rows} rows, ${l.links} links`);
      }
      if (r.problems.length) {
        console.log(table(['log', 'kind', 'at', 'linkId', 'position', 'what', 'who', 'table', 'row', 'detail'], r.problems as unknown as Record<string, unknown>[]));
      }
    }
    if (!r.ok) {
      const counts = Object.entries(r.counts).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(', ');
      throw new PgsealError(ErrorCodes.LOG_TAMPERED, `the logs were altered: ${counts}`, {
        hint: 'keep this report; restore the altered rows from a backup or account for them (`pgseal audit verify --json` lists each one)',
      });
    }
    if (!args.json) console.log('pgseal: the logs verify: no row inserted, edited or deleted by hand');
  },
};

export const auditCommand: CommandModule = {
  command: 'audit',
  describe: 'read the access log and the encryption audit log; `audit report` summarises, `audit verify` checks them for tampering',
  builder: (y) => y.command(reportCommand as unknown as CommandModule).command(verifyCommand as unknown as CommandModule).command(listCommand as unknown as CommandModule),
  handler: () => {},
};
