// keys retire, keys destroy, keys rewrap: the lifecycle commands after rotation.
import type { Argv, CommandModule } from 'yargs';
import { describeCounts, destroyScopeKeys, retireKey, rewrapKeys } from '../keys/lifecycle.js';
import type { MasterKeyProvider } from '../keys/master-key.js';
import { masterKeyFrom, type MasterKeySource } from '../keys/providers.js';
import { masterLogKeys } from '../keys/unwrap.js';
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
    console.log(`pgseal: key version ${args.version} is retired; its key material is erased (no state change can revive it)`);
  },
};

interface DestroyArgs extends DatabaseArgs, MasterKeyArgs, AttributionArgs {
  scope: string;
  confirm: string;
}

export const keysDestroyCommand: CommandModule<object, DestroyArgs> = {
  command: 'destroy',
  describe: "crypto-shred a scope: erase its keys (and its scope key file, when scope keys are configured), so its values can never be read again",
  builder: (y: Argv) =>
    withAttribution(withMasterKey(withDatabase(y)))
      .option('scope', { type: 'string', demandOption: true, describe: 'the scope (tenant, data subject) to erase' })
      .option('confirm', { type: 'string', demandOption: true, describe: 'repeat the scope name: this cannot be undone' }) as unknown as Argv<DestroyArgs>,
  handler: async (args) => {
    const provider = masterKey(args);
    try {
      const scopeKeys = provider.scopeKeys;
      const r = await usingDatabase(args, (sql) => destroyScopeKeys(sql, masterLogKeys(sql, provider), args.scope, args.confirm, { ...by(args), scopeKeys }));
      console.log(`pgseal: destroyed ${r.versions} key version(s) of scope ${args.scope}; its ${r.values} values can no longer be read${r.values > 0 ? ` (${describeCounts(r.counts)})` : ''}`);
      if (r.unreadable.length > 0) console.log(`pgseal: not counted (pgseal's owner may not read them): ${r.unreadable.join(', ')}`);
      console.log(scopeKeys
        ? `pgseal: its scope key in ${scopeKeys.location} is destroyed too: old backups of pgseal.keys do not reopen it (copies of that file elsewhere would)`
        : 'pgseal: without scope keys, an old backup of pgseal.keys restored with this master key reopens it (README, "What crypto-shredding guarantees")');
    } finally {
      provider.close();
    }
  },
};

interface RewrapArgs extends DatabaseArgs, MasterKeyArgs, AttributionArgs {
  'new-master-key-file'?: string | undefined;
  'new-master-key-env': string;
  'new-kms-key-id'?: string | undefined;
  'new-master-key-secret-id'?: string | undefined;
  'new-scope-key-dir'?: string | undefined;
}

export const keysRewrapCommand: CommandModule<object, RewrapArgs> = {
  command: 'rewrap',
  describe: 'master-key rotation: re-wrap every data key under a new master key (no data row is touched)',
  builder: (y: Argv) =>
    withAttribution(withMasterKey(withDatabase(y)))
      .option('new-master-key-file', { type: 'string', describe: 'file holding the new base64 master key' })
      .option('new-master-key-env', { type: 'string', default: 'PGSEAL_NEW_MASTER_KEY', describe: 'environment variable holding the new master key (when no file, KMS key or secret)' })
      .option('new-kms-key-id', { type: 'string', describe: 'AWS KMS key (id, ARN or alias) to wrap the data keys with from now on (ReEncrypt from another KMS key)' })
      .option('new-master-key-secret-id', { type: 'string', describe: 'Secrets Manager secret holding the new base64 master key' })
      .option('new-scope-key-dir', { type: 'string', describe: 'scope key directory after the rewrap (default: the current one, --scope-key-dir); naming one moves each scope\'s keys under its own scope key' }) as unknown as Argv<RewrapArgs>,
  handler: async (args) => {
    const from = masterKey(args);
    let to: MasterKeyProvider;
    try {
      await from.prepare?.();
      const dir = args['new-scope-key-dir'] ?? from.scopeKeys?.location;
      const source: MasterKeySource = args['new-kms-key-id'] ? { kind: 'kms', keyId: args['new-kms-key-id'] }
        : args['new-master-key-secret-id'] ? { kind: 'secret', secretId: args['new-master-key-secret-id'] }
        : args['new-master-key-file'] ? { kind: 'file', path: args['new-master-key-file'] }
        : { kind: 'env', variable: args['new-master-key-env'] ?? 'PGSEAL_NEW_MASTER_KEY' };
      // the new side's scope keys are only what is named here (a KMS key takes none)
      to = masterKeyFrom(source, { scopeKeyDir: source.kind === 'kms' ? null : dir ?? null });
    } catch (error) {
      from.close();
      throw error;
    }
    try {
      const n = await usingDatabase(args, (sql) => rewrapKeys(sql, from, to, by(args)));
      console.log(`pgseal: re-wrapped ${n} key version(s) under master key ${to.ref}${to.scopeKeys ? ` and the scope keys in ${to.scopeKeys.location}` : ''}; the previous wrapping keys open nothing now`);
    } finally {
      from.close();
      to.close();
    }
  },
};
