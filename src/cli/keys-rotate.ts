import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_SCOPE, rotateKey } from '../keys/registry.js';
import { masterKey, usingDatabase, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';

interface Args extends DatabaseArgs, MasterKeyArgs {
  scope: string;
}

export async function runKeysRotate(args: Args): Promise<void> {
  const provider = masterKey(args);
  try {
    const { version, previous } = await usingDatabase(args, (sql) => rotateKey(sql, provider, args.scope));
    console.log(`pgseal: key version ${version} is now active for scope ${args.scope}; version ${previous} is decrypt-only`);
    console.log('pgseal: existing rows stay on the old version until they are re-encrypted');
  } finally {
    provider.close();
  }
}

export const keysRotateCommand: CommandModule<object, Args> = {
  command: 'rotate',
  describe: 'create a new active data key version; the old one becomes decrypt-only',
  builder: (y: Argv) =>
    withMasterKey(withDatabase(y)).option('scope', { type: 'string', default: DEFAULT_SCOPE, describe: 'key scope to rotate' }) as unknown as Argv<Args>,
  handler: runKeysRotate,
};
