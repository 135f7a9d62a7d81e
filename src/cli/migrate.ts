import type { Argv, CommandModule } from 'yargs';
import { ErrorCodes, PgsealError } from '../errors.js';
import { migrate, migrationStatus, pendingMigrationsSql } from '../migrate.js';
import { databaseUrl, withDatabase, type DatabaseArgs } from './options.js';

interface Args extends DatabaseArgs {
  direction: 'up' | 'down' | 'status' | 'sql';
  all?: boolean | undefined;
  json?: boolean | undefined;
  count?: number | undefined;
  'allow-drop-keys'?: boolean | undefined;
  roles?: boolean | undefined;
}

export async function runMigrate(args: Args): Promise<void> {
  let url = databaseUrl(args);
  if (args.direction === 'sql') {
    // the script goes to stdout alone, so `pgseal migrate sql > V2__pgseal.sql` is the whole file
    process.stdout.write(await pendingMigrationsSql(url, { all: args.all === true }));
    return;
  }
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
  if (args.direction === 'status') {
    const status = await migrationStatus(url);
    if (args.json) {
      console.log(JSON.stringify({ applied: status.applied.map((a) => ({ name: a.name, run_on: a.runOn.toISOString() })), pending: status.pending, unknown: status.unknown }));
      return;
    }
    for (const a of status.applied) console.log(`applied  ${a.name}  ${a.runOn.toISOString()}`);
    for (const name of status.pending) console.log(`pending  ${name}`);
    for (const name of status.unknown) console.log(`unknown  ${name}  (applied by a newer pgseal than this one)`);
    console.log(`pgseal: ${status.applied.length} applied, ${status.pending.length} pending${status.pending.length > 0 ? ' (run `pgseal migrate up`, or `pgseal migrate sql` for your own migration tool)' : ''}`);
    return;
  }
  const count = args.count ?? (args.direction === 'up' ? Infinity : 1);
  const applied = await migrate({ databaseUrl: url, direction: args.direction, count });
  if (applied.length === 0) console.log(args.direction === 'up' ? 'pgseal: already up to date' : 'pgseal: nothing to undo');
  for (const name of applied) console.log(`pgseal: ${args.direction === 'up' ? 'applied' : 'reverted'} ${name}`);
}

export const migrateCommand: CommandModule<object, Args> = {
  command: 'migrate <direction>',
  describe: 'apply (up), revert (down), list (status) or print (sql) the pgseal SQL migrations',
  builder: (y: Argv) =>
    withDatabase(y)
      .positional('direction', {
        choices: ['up', 'down', 'status', 'sql'] as const,
        demandOption: true,
        describe: 'up applies pending migrations; down reverts; status lists applied and pending; sql prints the pending ones as one SQL script',
      })
      .option('json', { type: 'boolean', describe: 'with status: print one JSON object' })
      .option('all', { type: 'boolean', describe: 'with sql: every migration, for an empty database (no connection needed)' })
      .option('count', { type: 'number', describe: 'how many migrations (default: all for up, 1 for down)' })
      .option('allow-drop-keys', { type: 'boolean', describe: 'let `down` drop pgseal.keys even though it holds keys (makes encrypted data unreadable)' })
      .option('roles', { type: 'boolean', default: true, describe: 'grant the privilege sets to the cluster-wide roles pgseal_app and pgseal_admin (--no-roles: grant roles of yours with `pgseal grant`)' })
      .example('$0 migrate up', 'install or upgrade the pgseal schema')
      .example('$0 migrate down --count 1', 'revert the newest migration')
      .example('$0 migrate status', 'list applied and pending migrations')
      .example('$0 migrate sql > migrations/V7__pgseal.sql', 'the pending migrations as SQL for Flyway, Prisma Migrate, Drizzle Kit or psql') as unknown as Argv<Args>,
  handler: runMigrate,
};
