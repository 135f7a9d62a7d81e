// pgseal query: statements run one by one, each in its own transaction with the keys handed
// in, rewritten so protected columns read and write as plaintext, and every protected value
// read or changed written to the access log as --actor.
import type { Argv, CommandModule } from 'yargs';
import { defaultActor } from '../audit/record.js';
import type { Sql } from 'postgres';
import { ErrorCodes, PgsealError, toPgsealError, withPgsealErrors as guarded } from '../errors.js';
import { pgseal, type Pgseal } from '../index.js';
import type { MasterKeyProvider } from '../keys/master-key.js';
import { loadRegistry } from '../registry/load.js';
import { loadSqlRewriter, type SqlRewriter } from '../rewrite/index.js';
import { needsKeys } from '../rewrite/run.js';
import { table, toJsonLine } from './output.js';
import { masterKey, usingDatabase, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';

interface Args extends DatabaseArgs, MasterKeyArgs {
  statements: string[];
  json?: boolean | undefined;
  scope?: string[] | undefined;
  raw?: boolean | undefined;
  'allow-decrypt-scan'?: boolean | undefined;
  actor?: string | undefined;
  'access-log': 'sync' | 'async';
  'flush-interval-ms': number;
}

export async function runQuery(args: Args): Promise<void> {
  // the master key is read only once a statement needs keys: `select 1`, DDL and queries over
  // unprotected columns run without one
  let provider: MasterKeyProvider | undefined;
  // SIGINT / SIGTERM: the statement under way finishes, the rest do not run, and the access
  // log is flushed before the process exits
  let stopped: string | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    stopped = signal;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    await usingDatabase(args, async (sql) => {
      let seal: Pgseal | undefined;
      const keyed = () => (seal ??= pgseal({
        sql, masterKey: (provider = masterKey(args)),
        accessLog: { mode: args['access-log'], actor: args.actor ?? defaultActor(), flushIntervalMs: args['flush-interval-ms'] },
      }));
      const scopes = args.scope ? { scopes: args.scope } : {};
      const rewrite = { allowDecryptScan: args['allow-decrypt-scan'] ?? false };
      try {
        const rewriter = args.raw ? undefined : await keylessRewriter(sql);
        for (const [i, statement] of args.statements.entries()) {
          if (stopped) {
            throw new PgsealError(ErrorCodes.STOPPED, `stopped by ${stopped} after ${i} of ${args.statements.length} statements`, {
              hint: 'the statements that ran were committed and their accesses logged; run the others again',
            });
          }
          let result: unknown;
          if (!needsKeys(statement, rewriter, rewrite)) {
            result = await sql.begin((tx) => tx.unsafe(statement, [], { prepare: false })).catch(async (error: unknown) => {
              const e = toPgsealError(error);
              // PS001: it needed keys after all (a decrypted view decrypts with the transaction's
              // keys); it rolled back as a whole, so it runs again with them, as --raw would
              if (e.sqlstate !== 'PS001') throw e;
              return keyed().begin((tx) => tx.unsafe(statement, [], { prepare: false }), scopes).catch((again: unknown) => {
                throw toPgsealError(again);
              });
            });
          } else if (args.raw) {
            // --raw: as written, and not logged (pgseal cannot tell what a hand-written call decrypts)
            result = await keyed().begin((tx) => tx.unsafe(statement, [], { prepare: false }), scopes).catch((error: unknown) => {
              throw toPgsealError(error);
            });
          } else {
            result = await keyed().query(statement, [], { ...rewrite, ...scopes });
          }
          print(result as Result, args.json ?? false);
        }
      } finally {
        // async: everything buffered is written before the process ends
        await seal?.close();
      }
    });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    provider?.close();
  }
}

/** The rewriter over the registry; before `migrate up` there is no registry and nothing is protected. */
async function keylessRewriter(sql: Sql): Promise<SqlRewriter | undefined> {
  const [installed] = await sql<{ ok: boolean }[]>`select pg_catalog.to_regclass('pgseal.columns') is not null as ok`.catch((error: unknown) => {
    throw toPgsealError(error);
  });
  return installed!.ok ? loadSqlRewriter(await guarded(() => loadRegistry(sql))) : undefined;
}

type Result = Record<string, unknown>[] & { columns?: Array<{ name: string }>; command?: string; count?: number | null };

function print(result: Result, json: boolean): void {
  const columns = (result.columns ?? []).map((c) => c.name);
  const rows = [...result];
  if (json) {
    for (const row of rows) console.log(toJsonLine(row));
  } else if (columns.length > 0) {
    console.log(table(columns, rows));
  } else {
    console.log(`${result.command ?? 'OK'}${result.count !== undefined && result.count !== null ? ` ${result.count}` : ''}`);
  }
}

export const queryCommand: CommandModule<object, Args> = {
  command: 'query <statements..>',
  describe: 'run SQL statements, each in a transaction with the keys handed in, print the rows, and log what they read and changed',
  builder: (y: Argv) =>
    withMasterKey(withDatabase(y))
      .positional('statements', { type: 'string', array: true, demandOption: true, describe: 'one or more SQL statements, run in order' })
      .option('json', { type: 'boolean', describe: 'print one JSON object per row' })
      .option('scope', { type: 'string', array: true, describe: 'hand in only these key scopes (default: all)' })
      .option('raw', { type: 'boolean', describe: 'run the statements as written, without rewriting protected columns (and without access log)' })
      .option('allow-decrypt-scan', { type: 'boolean', describe: 'decrypt and compare row by row what no index on ciphertext can serve (LIKE, ranges, ORDER BY ...): correct, but a scan' })
      .option('actor', { type: 'string', describe: 'who reads, for the access log (default: $PGSEAL_ACTOR, else the operating-system user)' })
      .option('access-log', { choices: ['sync', 'async'] as const, default: 'sync' as const, describe: 'sync: each statement\'s log rows in its own transaction; async: buffered, written on exit' })
      .option('flush-interval-ms', { type: 'number', default: 1000, describe: 'async: write the buffered log at least this often' })
      .example(`$0 query --actor dpo "select id, email from customers where email = 'mario.rossi@example.it'"`, 'protected columns read as plaintext (rewritten), the read logged as dpo')
      .example(`$0 query --raw "select pgseal.key_version_of(email) from customers"`, 'as written') as unknown as Argv<Args>,
  handler: runQuery,
};
