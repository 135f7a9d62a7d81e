// The pgseal CLI. Exit codes live here and only here: 0 done, 1 failed, 2 bad usage.
// Errors print as one line (code, message, fix); a stack trace only with PGSEAL_DEBUG=1.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { PgsealError, toPgsealError } from '../errors.js';
import { keysCommand } from './keys.js';
import { migrateCommand } from './migrate.js';
import { queryCommand } from './query.js';
import { protectCommand } from './protect.js';
import { unprotectCommand } from './unprotect.js';
import { columnsCommand } from './columns-list.js';
import { viewsCommand } from './views.js';
import { reencryptCommand } from './reencrypt.js';
import { logsCommand } from './logs.js';
import { auditCommand } from './audit.js';
import { grantCommand } from './grant.js';
import { doctorCommand } from './doctor.js';
import type { CommandModule } from 'yargs';

class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  const cli = yargs(argv)
    .scriptName('pgseal')
    .usage('$0 <command> [options]\n\nEncrypt chosen PostgreSQL columns at rest with pgcrypto.')
    .command(migrateCommand as unknown as CommandModule)
    .command(keysCommand)
    .command(queryCommand as unknown as CommandModule)
    .command(protectCommand as unknown as CommandModule)
    .command(unprotectCommand as unknown as CommandModule)
    .command(columnsCommand)
    .command(viewsCommand)
    .command(reencryptCommand)
    .command(logsCommand)
    .command(auditCommand)
    .command(grantCommand as unknown as CommandModule)
    .command(doctorCommand as unknown as CommandModule)
    .demandCommand(1, 'name a command')
    .strict()
    .help()
    .alias('h', 'help')
    .version(false)
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((message, error) => {
      if (error) throw error;
      throw new UsageError(message);
    });
  try {
    await cli.parseAsync();
    return 0;
  } catch (error) {
    // with --json, a script reads the error as one JSON object on stderr, like the output
    const json = argv.includes('--json');
    if (error instanceof UsageError) {
      console.error(json ? JSON.stringify({ error: { code: 'PGSEAL_USAGE', message: error.message, hint: 'see pgseal --help' } }) : `pgseal: ${error.message} (see pgseal --help)`);
      return 2;
    }
    const e = error instanceof PgsealError ? error : toPgsealError(error);
    console.error(json ? JSON.stringify({ error: { code: e.code, message: e.message, hint: e.hint ?? null, sqlstate: e.sqlstate ?? null } }) : `pgseal: ${e.toLine()}`);
    if (process.env.PGSEAL_DEBUG === '1' && error instanceof Error) console.error(error.stack);
    return 1;
  }
}

export async function run(): Promise<void> {
  // the AWS SDK warns on every run under Node 20 (its releases after January 2027 need 22):
  // one clear line per error is the CLI's promise; the README says it
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  process.exitCode = await main(hideBin(process.argv));
}
