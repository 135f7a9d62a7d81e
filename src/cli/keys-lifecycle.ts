// keys retire, keys destroy, keys rewrap: the lifecycle commands after rotation.
import type { Argv, CommandModule } from 'yargs';
import { destroyScopeKeys, retireKey, rewrapKeys } from '../keys/lifecycle.js';
import { envMasterKey, fileMasterKey } from '../keys/master-key.js';
import { by, withAttribution, type AttributionArgs } from './attribution.js';
import { masterKey, usingDatabase, usingLogKeys, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';

interface RetireArgs extends DatabaseArgs, MasterKeyArgs, AttributionArgs {
  version: number;
  force?: boolean | undefined;
}

export const keysRetireCommand: CommandModule<object, RetireArgs> = {
  command: 'retire <version>',
  describe: 'retire a decrypt-only key version (refused while any row still uses it)',
  builder: (y: Argv) =>
    withAttribution(withMasterKey(withDatabase(y)))
      .positional('version', { type: 'number', demandOption: true, describe: 'key version (pgseal keys list)' })
      .option('force', { type: 'boolean', describe: 'retire even though rows use it: those rows become unreadable' }) as unknown as Argv<RetireArgs>,
  handler: async (args) => {
    await usingLogKeys(args, (sql, keys) => retireKey(sql, keys, args.version, { ...by(args), force: args.force ?? false }));
    console.log(`pgseal: key version ${args.version} is retired`);
  },
};

interface DestroyArgs extends DatabaseArgs, MasterKeyArgs, AttributionArgs {
  scope: string;
  confirm: string;
}

export const keysDestroyCommand: CommandModule<object, DestroyArgs> = {
  command: 'destroy',
  describe: "crypto-shred a scope: destroy its keys, so its values can never be read again",
  builder: (y: Argv) =>
    withAttribution(withMasterKey(withDatabase(y)))
      .option('scope', { type: 'string', demandOption: true, describe: 'the scope (tenant, data subject) to erase' })
      .option('confirm', { type: 'string', demandOption: true, describe: 'repeat the scope name: this cannot be undone' }) as unknown as Argv<DestroyArgs>,
  handler: async (args) => {
    const n = await usingLogKeys(args, (sql, keys) => destroyScopeKeys(sql, keys, args.scope, args.confirm, by(args)));
    console.log(`pgseal: destroyed ${n} key version(s) of scope ${args.scope}; its values can no longer be read`);
  },
};

interface RewrapArgs extends DatabaseArgs, MasterKeyArgs, AttributionArgs {
  'new-master-key-file'?: string | undefined;
  'new-master-key-env': string;
}

export const keysRewrapCommand: CommandModule<object, RewrapArgs> = {
  command: 'rewrap',
  describe: 'master-key rotation: re-wrap every data key under a new master key (no data row is touched)',
  builder: (y: Argv) =>
    withAttribution(withMasterKey(withDatabase(y)))
      .option('new-master-key-file', { type: 'string', describe: 'file holding the new base64 master key' })
      .option('new-master-key-env', { type: 'string', default: 'PGSEAL_NEW_MASTER_KEY', describe: 'environment variable holding the new master key (when no file)' }) as unknown as Argv<RewrapArgs>,
  handler: async (args) => {
    const from = masterKey(args);
    const to = args['new-master-key-file'] ? fileMasterKey(args['new-master-key-file']) : envMasterKey(args['new-master-key-env']);
    try {
      const n = await usingDatabase(args, (sql) => rewrapKeys(sql, from, to, by(args)));
      console.log(`pgseal: re-wrapped ${n} key version(s) under master key ${to.ref}; the previous master key opens nothing now`);
    } finally {
      from.close();
      to.close();
    }
  },
};
