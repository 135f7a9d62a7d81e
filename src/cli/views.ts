import type { Argv, CommandModule } from 'yargs';
import { listProtectedColumns } from '../registry/load.js';
import { createView, dropView } from '../registry/protect.js';
import { quoteIdent } from '../statement/sql.js';
import { usingDatabase, withDatabase, type DatabaseArgs } from './options.js';

interface Args extends DatabaseArgs {
  table?: string | undefined;
}

async function tablesOf(args: Args, sql: Parameters<typeof listProtectedColumns>[0]): Promise<string[]> {
  if (args.table) return [args.table];
  const columns = await listProtectedColumns(sql);
  return [...new Set(columns.map((c) => quoteIdent(c.schema, c.table)))];
}

export async function runViewsCreate(args: Args): Promise<void> {
  await usingDatabase(args, async (sql) => {
    for (const t of await tablesOf(args, sql)) console.log(`pgseal: created view ${await createView(sql, t)}`);
  });
}

export async function runViewsDrop(args: Args): Promise<void> {
  await usingDatabase(args, async (sql) => {
    for (const t of await tablesOf(args, sql)) {
      await dropView(sql, t);
      console.log(`pgseal: dropped the decrypted view of ${t}`);
    }
  });
}

const build = (y: Argv) => withDatabase(y).option('table', { type: 'string', describe: 'one table (default: every protected table)' }) as unknown as Argv<Args>;

export const viewsCommand: CommandModule = {
  command: 'views <command>',
  describe: 'decrypted, writable views (<table>_decrypted) for ORMs and psql: create, drop',
  builder: (y) =>
    y
      .command({ command: 'create', describe: 'create or replace the decrypted views', builder: build, handler: runViewsCreate } as unknown as CommandModule)
      .command({ command: 'drop', describe: 'drop the decrypted views', builder: build, handler: runViewsDrop } as unknown as CommandModule)
      .demandCommand(1, 'name a views command'),
  handler: () => {},
};
