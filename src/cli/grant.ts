// pgseal grant: the app or admin privilege set (docs/privileges.md) to roles you name, for
// when the migrations could not create pgseal_app and pgseal_admin, or you prefer your own.
import type { Argv, CommandModule } from 'yargs';
import { grantApi, listApiGrants, revokeApi } from '../registry/grants.js';
import { usingDatabase, withDatabase, type DatabaseArgs } from './options.js';

interface Args extends DatabaseArgs {
  app?: string[] | undefined;
  admin?: string[] | undefined;
  revoke?: string[] | undefined;
}

export async function runGrant(args: Args): Promise<void> {
  await usingDatabase(args, async (sql) => {
    for (const role of args.revoke ?? []) {
      await revokeApi(sql, role);
      console.log(`pgseal: ${role} no longer holds pgseal's privileges`);
    }
    for (const [set, roles] of [['app', args.app], ['admin', args.admin]] as const) {
      for (const role of roles ?? []) {
        await grantApi(sql, role, set);
        console.log(`pgseal: ${role} holds the ${set} privileges (docs/privileges.md)`);
      }
    }
    if (!args.app?.length && !args.admin?.length && !args.revoke?.length) {
      for (const g of await listApiGrants(sql)) console.log(`${g.role}\t${g.set}\t${g.grantedAt.toISOString()}\t${g.grantedBy}`);
    }
  });
}

export const grantCommand: CommandModule<object, Args> = {
  command: 'grant',
  describe: 'grant the application (--app) or key-administration (--admin) privileges to roles, or --revoke them; without options, list who holds them',
  builder: (y: Argv) =>
    withDatabase(y)
      .option('app', { type: 'string', array: true, describe: 'role(s) of the application: read and write protected data, load keys, write the logs' })
      .option('admin', { type: 'string', array: true, describe: 'role(s) that run the key commands (init, rotate, list, retire, destroy, rewrap)' })
      .option('revoke', { type: 'string', array: true, describe: 'role(s) to take pgseal\'s privileges from' })
      .example('$0 grant --app shop_service --admin shop_ops', 'grant both sets') as unknown as Argv<Args>,
  handler: runGrant,
};
