import type { Argv, CommandModule } from 'yargs';
import { listProtectedColumns } from '../registry/load.js';
import { table } from './output.js';
import { usingDatabase, withDatabase, type DatabaseArgs } from './options.js';

interface Args extends DatabaseArgs {
  json?: boolean | undefined;
}

export async function runColumnsList(args: Args): Promise<void> {
  const columns = await usingDatabase(args, (sql) => listProtectedColumns(sql));
  if (args.json) {
    console.log(JSON.stringify(columns, null, 2));
    return;
  }
  const rows = columns.map((c) => ({
    column: `${c.schema}.${c.table}.${c.column}`,
    type: c.valueType,
    scope: c.scopeColumn ? `column ${c.scopeColumn}` : c.scope,
    context: c.contextMode,
    searchable: c.searchable ? `${c.normalizer} -> ${c.blindIndexColumn}` : 'no',
  }));
  console.log(table(['column', 'type', 'scope', 'context', 'searchable'], rows));
}

const listCommand: CommandModule<object, Args> = {
  command: 'list',
  describe: 'list the protected columns',
  builder: (y: Argv) => withDatabase(y).option('json', { type: 'boolean', describe: 'print a JSON array' }) as unknown as Argv<Args>,
  handler: runColumnsList,
};

export const columnsCommand: CommandModule = {
  command: 'columns <command>',
  describe: 'protected columns: list',
  builder: (y) => y.command(listCommand as unknown as CommandModule).demandCommand(1, 'name a columns command'),
  handler: () => {},
};
