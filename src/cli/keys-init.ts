import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_SCOPE, initKeys } from '../keys/registry.js';
import { by, withAttribution, type AttributionArgs } from './attribution.js';
import { masterKey, usingDatabase, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';

interface Args extends DatabaseArgs, MasterKeyArgs, AttributionArgs {
  scope: string;
}

export async function runKeysInit(args: Args): Promise<void> {
  const provider = masterKey(args);
  try {
    const { version, indexVersion, logVersion } = await usingDatabase(args, (sql) => initKeys(sql, provider, args.scope, by(args)));
    const wrappedBy = provider.scopeKeys ? `the scope key of scope ${args.scope} (${provider.scopeKeys.location}; destroyed with the scope)` : `master key ${provider.ref}`;
    if (version !== null) console.log(`pgseal: created key version ${version} (scope ${args.scope}, active), wrapped by ${wrappedBy}`);
    if (indexVersion !== null) console.log(`pgseal: created blind-index key version ${indexVersion} (scope ${args.scope})`);
    if (logVersion !== null) console.log(`pgseal: created log key version ${logVersion}: the audit and access logs are signed from now on`);
  } finally {
    provider.close();
  }
}

export const keysInitCommand: CommandModule<object, Args> = {
  command: 'init',
  describe: 'create the first active data key of a scope',
  builder: (y: Argv) =>
    withAttribution(withMasterKey(withDatabase(y))).option('scope', { type: 'string', default: DEFAULT_SCOPE, describe: 'key scope (tenant or data subject)' }) as unknown as Argv<Args>,
  handler: runKeysInit,
};
