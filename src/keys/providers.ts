// Which master key provider a process uses: the one place that reads the settings that
// choose it (flags first, then the environment), for the CLI and for applications.
//   PGSEAL_KMS_KEY_ID            AWS KMS (aws-kms.ts)
//   PGSEAL_MASTER_KEY_SECRET_ID  the local key, read from AWS Secrets Manager (aws-secrets.ts)
//   PGSEAL_MASTER_KEY_FILE       the local key, from a file (master-key.ts)
//   PGSEAL_MASTER_KEY            the local key, from the environment (master-key.ts)
// Two of the first, or one of them beside a local key, is refused: which key wraps the data
// keys must never be a guess.

import { ErrorCodes, PgsealError } from '../errors.js';
import { awsKmsMasterKey, type AwsKmsOptions } from './aws-kms.js';
import { awsSecretMasterKey } from './aws-secrets.js';
import { envMasterKey, fileMasterKey, type MasterKeyProvider } from './master-key.js';

export type MasterKeySource =
  | { kind: 'kms'; keyId: string }
  | { kind: 'secret'; secretId: string }
  | { kind: 'file'; path: string }
  | { kind: 'env'; variable: string };

export interface MasterKeyConfig {
  /** an AWS KMS key (id, ARN, alias); default $PGSEAL_KMS_KEY_ID */
  kmsKeyId?: string | undefined;
  /** a Secrets Manager secret holding the local key; default $PGSEAL_MASTER_KEY_SECRET_ID */
  secretId?: string | undefined;
  /** a file holding the local key; default $PGSEAL_MASTER_KEY_FILE */
  masterKeyFile?: string | undefined;
  /** per-scope wrapping key files (local master keys only); default $PGSEAL_SCOPE_KEY_DIR, null for none */
  scopeKeyDir?: string | null | undefined;
  /** the KMS client's options beyond the key (region, endpoint, retries, cache) */
  kms?: Omit<AwsKmsOptions, 'keyId'> | undefined;
}

const set = (v: string | undefined): string | undefined => (v !== undefined && v.trim() !== '' ? v.trim() : undefined);

/** The source the configuration and environment name; refuses an ambiguous environment. */
export function masterKeySource(config: MasterKeyConfig = {}, env: NodeJS.ProcessEnv = process.env): MasterKeySource {
  const flags = [set(config.kmsKeyId) && '--kms-key-id', set(config.secretId) && 'the secret id', set(config.masterKeyFile) && '--master-key-file'].filter(Boolean);
  if (flags.length > 1) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${flags.join(' and ')} are ${flags.length === 2 ? 'both' : 'all'} given: pgseal will not guess which master key wraps this database's keys`, { hint: 'give one' });
  }
  if (set(config.kmsKeyId)) return { kind: 'kms', keyId: set(config.kmsKeyId)! };
  if (set(config.secretId)) return { kind: 'secret', secretId: set(config.secretId)! };
  if (set(config.masterKeyFile)) return { kind: 'file', path: set(config.masterKeyFile)! };
  const named = [
    set(env.PGSEAL_KMS_KEY_ID) && 'PGSEAL_KMS_KEY_ID',
    set(env.PGSEAL_MASTER_KEY_SECRET_ID) && 'PGSEAL_MASTER_KEY_SECRET_ID',
    (set(env.PGSEAL_MASTER_KEY_FILE) ?? set(env.PGSEAL_MASTER_KEY)) && (set(env.PGSEAL_MASTER_KEY_FILE) ? 'PGSEAL_MASTER_KEY_FILE' : 'PGSEAL_MASTER_KEY'),
  ].filter((v): v is string => Boolean(v));
  if (named.length > 1) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${named.join(' and ')} are ${named.length === 2 ? 'both' : 'all'} set: pgseal will not guess which master key wraps this database's keys`, {
      hint: 'unset all but one (after `pgseal keys rewrap` moved the keys, unset the previous one); a flag (--kms-key-id, --master-key-file) overrides the environment',
    });
  }
  if (set(env.PGSEAL_KMS_KEY_ID)) return { kind: 'kms', keyId: set(env.PGSEAL_KMS_KEY_ID)! };
  if (set(env.PGSEAL_MASTER_KEY_SECRET_ID)) return { kind: 'secret', secretId: set(env.PGSEAL_MASTER_KEY_SECRET_ID)! };
  if (set(env.PGSEAL_MASTER_KEY_FILE)) return { kind: 'file', path: set(env.PGSEAL_MASTER_KEY_FILE)! };
  return { kind: 'env', variable: 'PGSEAL_MASTER_KEY' };
}

/** The provider of one source. Scope key files combine with a local master key only. */
export function masterKeyFrom(source: MasterKeySource, config: Pick<MasterKeyConfig, 'scopeKeyDir' | 'kms'> = {}, env: NodeJS.ProcessEnv = process.env): MasterKeyProvider {
  const dir = config.scopeKeyDir === null ? undefined : set(config.scopeKeyDir) ?? set(env.PGSEAL_SCOPE_KEY_DIR);
  const scopeKeys = dir ? { dir } : undefined;
  switch (source.kind) {
    case 'kms':
      if (scopeKeys) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'scope key files (PGSEAL_SCOPE_KEY_DIR, --scope-key-dir) combine with a local master key, not with AWS KMS', {
          hint: 'unset PGSEAL_SCOPE_KEY_DIR, or keep a local master key (PGSEAL_MASTER_KEY_SECRET_ID keeps it in Secrets Manager); docs/key-providers.md',
        });
      }
      return awsKmsMasterKey({ ...config.kms, keyId: source.keyId });
    case 'secret':
      return awsSecretMasterKey({ secretId: source.secretId, scopeKeys });
    case 'file':
      return fileMasterKey(source.path, { scopeKeys });
    case 'env':
      return envMasterKey(source.variable, env, { scopeKeys });
  }
}

/**
 * The master key this process is configured with: flags (config) first, then
 * PGSEAL_KMS_KEY_ID, PGSEAL_MASTER_KEY_SECRET_ID, PGSEAL_MASTER_KEY_FILE, PGSEAL_MASTER_KEY.
 */
export function configuredMasterKey(config: MasterKeyConfig = {}, env: NodeJS.ProcessEnv = process.env): MasterKeyProvider {
  return masterKeyFrom(masterKeySource(config, env), config, env);
}
