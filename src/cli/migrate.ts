import type { Argv, CommandModule } from 'yargs';
import { ErrorCodes, PgsealError } from '../errors.js';
import { migrate } from '../migrate.js';
import { databaseUrl, withDatabase, type DatabaseArgs } from './options.js';

interface Args extends DatabaseArgs {
  direction: 'up' | 'down';
  count?: number | undefined;
  'allow-drop-keys'?: boolean | undefined;
  roles?: boolean | undefined;
}

export async function runMigrate(args: Args): Promise<void> {
  let url = databaseUrl(args);
  if (!url) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'no database: DATABASE_URL is not set', { hint: 'set DATABASE_URL or pass --database-url' });
  }
  // settings of the migrating session, read by the migrations
  const settings = [args['allow-drop-keys'] ? '-c pgseal.allow_drop_keys=on' : '', args.roles === false ? '-c pgseal.roles=off' : ''].filter(Boolean);
  if (settings.length > 0) {
    const u = new URL(url);
    u.searchParams.set('options', [u.searchParams.get('options'), ...settings].filter(Boolean).join(' '));
    url = u.toString();
  }
  const count = args.count ?? (args.direction === 'up' ? Infinity : 1);
  const applied = await migrate({ databaseUrl: url, direction: args.direction, count });
  if (applied.length === 0) console.log(args.direction === 'up' ? 'pgseal: already up to date' : 'pgseal: nothing to undo');
  for (const name of applied) console.log(`pgseal: ${args.direction === 'up' ? 'applied' : 'reverted'} ${name}`);
}

export const migrateCommand: CommandModule<object, Args> = {
  command: 'migrate <direction>',
  describe: 'apply (up) or revert (down) the pgseal SQL migrations',
  builder: (y: Argv) =>
    withDatabase(y)
      .positional('direction', { choices: ['up', 'down'] as const, demandOption: true, describe: 'up applies pending migrations; down reverts' })
      .option('count', { type: 'number', describe: 'how many migrations (default: all for up, 1 for down)' })
      .option('allow-drop-keys', { type: 'boolean', describe: 'let `down` drop pgseal.keys even though it holds keys (makes encrypted data unreadable)' })
      .option('roles', { type: 'boolean', default: true, describe: 'grant the privilege sets to the cluster-wide roles pgseal_app and pgseal_admin (--no-roles: grant roles of yours with `pgseal grant`)' })
      .example('$0 migrate up', 'install or upgrade the pgseal schema')
      .example('$0 migrate down --count 1', 'revert the newest migration') as unknown as Argv<Args>,
  handler: runMigrate,
};
