import type { Argv, CommandModule } from 'yargs';
import { toPgsealError } from '../errors.js';
import { Keyring } from '../keys/keyring.js';
import { withKeys } from '../transaction.js';
import { loadRegistry } from '../registry/load.js';
import { loadSqlRewriter } from '../rewrite/index.js';
import { table, toJsonLine } from './output.js';
import { masterKey, usingDatabase, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';

interface Args extends DatabaseArgs, MasterKeyArgs {
  statement: string;
  json?: boolean | undefined;
  scope?: string[] | undefined;
  raw?: boolean | undefined;
  'allow-decrypt-scan'?: boolean | undefined;
}

export async function runQuery(args: Args): Promise<void> {
  const provider = masterKey(args);
  try {
    await usingDatabase(args, async (sql) => {
      const keyring = new Keyring(sql, provider);
      try {
        // Rewritten unless --raw: protected columns read and written as if they held plaintext.
        const statement = args.raw
          ? args.statement
          : (await loadSqlRewriter(await loadRegistry(sql))).rewrite(args.statement, { allowDecryptScan: args['allow-decrypt-scan'] ?? false }).sql;
        const result = await withKeys(sql, keyring, (tx) => tx.unsafe(statement, [], { prepare: false }), args.scope ? { scopes: args.scope } : {}).catch((error: unknown) => {
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
      .option('raw', { type: 'boolean', describe: 'run the statement as written, without rewriting protected columns' })
      .option('allow-decrypt-scan', { type: 'boolean', describe: 'decrypt and compare row by row what no index on ciphertext can serve (LIKE, ranges, ORDER BY ...): correct, but a scan' })
      .example(`$0 query "select id, email from customers where email = 'mario.rossi@example.it'"`, 'protected columns read as plaintext (rewritten)')
      .example(`$0 query --raw "select pgseal.key_version_of(email) from customers"`, 'as written') as unknown as Argv<Args>,
  handler: runQuery,
};
