// pgseal audit [report]: who read or changed which protected value, and what happened to the keys.
import type { Argv, CommandModule } from 'yargs';
import { listEvents, parseTime, report } from '../audit/query.js';
import { usingDatabase, withDatabase, type DatabaseArgs } from './options.js';
import { jsonReplacer, table, toJsonLine } from './output.js';

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
      since: args.since === undefined ? undefined : parseTime(args.since), until: args.until === undefined ? undefined : parseTime(args.until),
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
    const r = await usingDatabase(args, (sql) => report(sql, { since: parseTime(args.since), until: args.until === undefined ? undefined : parseTime(args.until), actor: args.actor }));
    if (args.json) {
      console.log(JSON.stringify(r, jsonReplacer, 2));
      return;
    }
    console.log(`from ${r.since.toISOString()} to ${r.until.toISOString()}`);
    console.log(table(['actor', 'table', 'column', 'reads', 'writes', 'deletes'], r.lines as unknown as Record<string, unknown>[]));
    if (r.failures.length) console.log(table(['actor', 'operation', 'count'], r.failures as unknown as Record<string, unknown>[]));
  },
};

export const auditCommand: CommandModule = {
  command: 'audit',
  describe: 'read the access log and the encryption audit log; `audit report` summarises',
  builder: (y) => y.command(reportCommand as unknown as CommandModule).command(listCommand as unknown as CommandModule),
  handler: () => {},
};
