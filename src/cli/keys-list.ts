import type { Argv, CommandModule } from 'yargs';
import { listKeys } from '../keys/registry.js';
import { keyUsage } from '../keys/lifecycle.js';
import { jsonReplacer, table } from './output.js';
import { usingDatabase, withDatabase, type DatabaseArgs } from './options.js';

interface Args extends DatabaseArgs {
  json?: boolean | undefined;
}

export async function runKeysList(args: Args): Promise<void> {
  const [keys, usage] = await usingDatabase(args, async (sql) => [await listKeys(sql), await keyUsage(sql)] as const);
  const withUsage = keys.map((k) => {
    const used = usage.filter((u) => u.version === k.version).map(({ column, rows }) => ({ column, rows }));
    return { ...k, rows: used.reduce((n, u) => n + u.rows, 0), usage: used };
  });
  if (args.json) {
    console.log(JSON.stringify(withUsage, jsonReplacer, 2));
    return;
  }
  console.log(table(['version', 'scope', 'purpose', 'state', 'rows', 'kek_ref', 'fingerprint', 'created_at', 'created_by'], withUsage as unknown as Record<string, unknown>[]));
}

export const keysListCommand: CommandModule<object, Args> = {
  command: 'list',
  describe: 'list key versions, their states and how many rows of each protected column use them (no key material)',
  builder: (y: Argv) => withDatabase(y).option('json', { type: 'boolean', describe: 'print a JSON array' }) as unknown as Argv<Args>,
  handler: runKeysList,
};
