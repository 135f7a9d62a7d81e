import type { Argv, CommandModule } from 'yargs';
import { protectColumn } from '../registry/protect.js';
import type { ContextMode, Normalizer, ValueType } from '../registry/types.js';
import { usingDatabase, withDatabase, type DatabaseArgs } from './options.js';

interface Args extends DatabaseArgs {
  table: string;
  column: string;
  type: ValueType;
  searchable?: boolean | undefined;
  normalize: Normalizer;
  context: ContextMode;
  scope?: string | undefined;
  'scope-column'?: string | undefined;
  'index-bytes': number;
}

export async function runProtect(args: Args): Promise<void> {
  const c = await usingDatabase(args, (sql) =>
    protectColumn(sql, {
      table: args.table,
      column: args.column,
      valueType: args.type,
      searchable: args.searchable ?? false,
      normalizer: args.normalize,
      context: args.context,
      ...(args['scope-column'] ? { scopeColumn: args['scope-column'] } : { scope: args.scope ?? 'default' }),
      blindIndexBytes: args['index-bytes'],
    }),
  );
  const where = `${c.schema}.${c.table}.${c.column}`;
  console.log(`pgseal: ${where} is protected (${c.valueType}, ${c.scopeColumn ? `scope from column ${c.scopeColumn}` : `scope ${c.scope}`}, context ${c.contextMode})`);
  if (c.searchable) console.log(`pgseal: blind index in ${c.blindIndexColumn} (normaliser ${c.normalizer}, ${c.blindIndexBytes} bytes), indexed`);
}

export const protectCommand: CommandModule<object, Args> = {
  command: 'protect',
  describe: 'register a bytea column as encrypted (adds it when missing; a blind index when searchable)',
  builder: (y: Argv) =>
    withDatabase(y)
      .option('table', { type: 'string', demandOption: true, describe: 'table or schema.table' })
      .option('column', { type: 'string', demandOption: true, describe: 'column to protect (bytea)' })
      .option('type', { choices: ['text', 'bytea', 'jsonb', 'numeric'] as const, default: 'text' as const, describe: 'type of the plaintext values' })
      .option('searchable', { type: 'boolean', describe: 'add a blind index for equality and IN lookups' })
      .option('normalize', { choices: ['none', 'trim', 'email', 'phone', 'upper'] as const, default: 'none' as const, describe: 'normaliser applied before indexing' })
      .option('context', { choices: ['column', 'row'] as const, default: 'column' as const, describe: "bind values to the column, or to the column and the row's primary key" })
      .option('scope', { type: 'string', describe: 'fixed key scope (default: default)' })
      .option('scope-column', { type: 'string', describe: "column holding each row's key scope (per-tenant keys)" })
      .option('index-bytes', { type: 'number', default: 16, describe: 'bytes of HMAC kept in the blind index (8 to 32)' })
      .conflicts('scope', 'scope-column')
      .example('$0 protect --table customers --column email --searchable --normalize email', '') as unknown as Argv<Args>,
  handler: runProtect,
};
