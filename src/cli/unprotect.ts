import type { Argv, CommandModule } from 'yargs';
import { unprotectColumn } from '../registry/protect.js';
import { usingDatabase, withDatabase, type DatabaseArgs } from './options.js';

interface Args extends DatabaseArgs {
  table: string;
  column: string;
  'keep-blind-index'?: boolean | undefined;
}

export async function runUnprotect(args: Args): Promise<void> {
  await usingDatabase(args, (sql) => unprotectColumn(sql, args.table, args.column, !args['keep-blind-index']));
  console.log(`pgseal: ${args.table}.${args.column} is no longer registered; its values stay ciphertext`);
}

export const unprotectCommand: CommandModule<object, Args> = {
  command: 'unprotect',
  describe: 'remove a column from the registry (its data stays encrypted; the blind-index column is dropped)',
  builder: (y: Argv) =>
    withDatabase(y)
      .option('table', { type: 'string', demandOption: true, describe: 'table or schema.table' })
      .option('column', { type: 'string', demandOption: true })
      .option('keep-blind-index', { type: 'boolean', describe: 'keep the blind-index column' }) as unknown as Argv<Args>,
  handler: runUnprotect,
};
