import type { Argv, CommandModule } from 'yargs';
import { listKeys } from '../keys/registry.js';
import { jsonReplacer, table } from './output.js';
import { usingDatabase, withDatabase, type DatabaseArgs } from './options.js';

interface Args extends DatabaseArgs {
  json?: boolean | undefined;
}

export async function runKeysList(args: Args): Promise<void> {
  const keys = await usingDatabase(args, (sql) => listKeys(sql));
  if (args.json) {
    console.log(JSON.stringify(keys, jsonReplacer, 2));
    return;
  }
  console.log(table(['version', 'scope', 'purpose', 'state', 'kek_ref', 'fingerprint', 'created_at', 'created_by'], keys as unknown as Record<string, unknown>[]));
}

export const keysListCommand: CommandModule<object, Args> = {
  command: 'list',
  describe: 'list key versions and their states (no key material)',
  builder: (y: Argv) => withDatabase(y).option('json', { type: 'boolean', describe: 'print a JSON array' }) as unknown as Argv<Args>,
  handler: runKeysList,
};
