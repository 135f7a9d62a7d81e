import type { Argv, CommandModule } from 'yargs';
import { toPgsealError } from '../errors.js';
import { Keyring } from '../keys/keyring.js';
import { withKeys } from '../transaction.js';
import { table, toJsonLine } from './output.js';
import { masterKey, usingDatabase, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';

interface Args extends DatabaseArgs, MasterKeyArgs {
  statement: string;
  json?: boolean | undefined;
  scope?: string[] | undefined;
}

export async function runQuery(args: Args): Promise<void> {
  const provider = masterKey(args);
  try {
    await usingDatabase(args, async (sql) => {
      const keyring = new Keyring(sql, provider);
      try {
        const result = await withKeys(sql, keyring, (tx) => tx.unsafe(args.statement, [], { prepare: false }), args.scope ? { scopes: args.scope } : {}).catch((error: unknown) => {
          throw toPgsealError(error);
        });
        const columns = (result.columns ?? []).map((c) => c.name);
        const rows = [...result] as Record<string, unknown>[];
        if (args.json) {
          for (const row of rows) console.log(toJsonLine(row));
        } else if (columns.length > 0) {
          console.log(table(columns, rows));
        } else {
          console.log(`${result.command ?? 'OK'}${result.count !== undefined && result.count !== null ? ` ${result.count}` : ''}`);
        }
      } finally {
        keyring.close();
      }
    });
  } finally {
    provider.close();
  }
}

export const queryCommand: CommandModule<object, Args> = {
  command: 'query <statement>',
  describe: 'run one SQL statement in a transaction with the keys handed in, and print the rows',
  builder: (y: Argv) =>
    withMasterKey(withDatabase(y))
      .positional('statement', { type: 'string', demandOption: true, describe: 'one SQL statement' })
      .option('json', { type: 'boolean', describe: 'print one JSON object per row' })
      .option('scope', { type: 'string', array: true, describe: 'hand in only these key scopes (default: all)' })
      .example(`$0 query "select pgseal.decrypt_text(email, 'public.users.email') from users limit 5"`, '') as unknown as Argv<Args>,
  handler: runQuery,
};
