import type { Argv, CommandModule } from 'yargs';
import { ErrorCodes, PgsealError } from '../errors.js';
import { DEFAULT_SCOPE, rotateKey } from '../keys/registry.js';
import { emergencyRotate } from '../reencrypt/emergency.js';
import { by } from './attribution.js';
import { masterKey, usingDatabase } from './options.js';
import { printResult, withRunContext, withRunOptions, type RunArgs } from './reencrypt.js';

interface Args extends RunArgs {
  scope: string;
  purpose: 'data' | 'index' | 'log';
  emergency?: boolean | undefined;
}

export async function runKeysRotate(args: Args): Promise<void> {
  if (args.emergency) return runEmergency(args);
  const provider = masterKey(args);
  try {
    const { version, previous } = await usingDatabase(args, (sql) => rotateKey(sql, provider, args.scope, { ...by(args), purpose: args.purpose }));
    const what = args.purpose === 'index' ? 'blind-index key' : args.purpose === 'log' ? 'log key' : 'key';
    console.log(`pgseal: ${what} version ${version} is now active for scope ${args.scope}; version ${previous} is decrypt-only`);
    if (args.purpose === 'log') console.log('pgseal: new log rows are signed with it; the old version stays to verify the rows it signed');
    else console.log(args.purpose === 'index'
      ? 'pgseal: lookups use both keys until `pgseal reencrypt --blind-index` has recomputed the indexes (it starts once running processes have reloaded their keys, 5 minutes by default)'
      : 'pgseal: existing rows stay on the old version until `pgseal reencrypt` moves them');
  } finally {
    provider.close();
  }
}

async function runEmergency(args: Args): Promise<void> {
  if (args.purpose !== 'data') throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, '--emergency rotates data keys', { hint: 'drop --purpose index' });
  if (!args.reason?.trim()) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, '--emergency needs --reason', { hint: 'say what happened: --reason "laptop with the key stolen"; it goes to the audit log' });
  }
  const json = args.json ?? !process.stderr.isTTY;
  const { value: r, stoppedBy } = await withRunContext(args, json, ({ sql, keyring, provider, signal, onProgress }) =>
    emergencyRotate(sql, provider, keyring, {
      scope: args.scope, actor: args.actor, reason: args.reason!, batchSize: args['batch-size'], workers: args.workers,
      maxRowsPerSecond: args['max-rows-per-second'], signal, onProgress,
    }));
  if (!json) console.log(`pgseal: emergency: key version ${r.version} is active for scope ${args.scope}; version(s) ${r.compromised.join(', ') || '(none)'} marked compromised: the database refuses values written with them`);
  printResult(r.reencrypt, json, stoppedBy);
}

export const keysRotateCommand: CommandModule<object, Args> = {
  command: 'rotate',
  describe: 'create a new active key version; the old one becomes decrypt-only (--emergency: also mark it compromised and re-encrypt now)',
  builder: (y: Argv) =>
    withRunOptions(y)
      .option('scope', { type: 'string', default: DEFAULT_SCOPE, describe: 'key scope to rotate' })
      .option('purpose', { choices: ['data', 'index', 'log'] as const, default: 'data' as const, describe: 'the data key, the blind-index key, or the log key (signs the logs)' })
      .option('emergency', { type: 'boolean', describe: 'suspected compromise: refuse writes under the old version and re-encrypt every protected column now (needs --reason)' }) as unknown as Argv<Args>,
  handler: runKeysRotate,
};
