// Options shared by commands, and turning them into a connection and a master key.
// Flags override the environment. The master key itself is never a flag value (it would
// show in `ps` and shell history): it comes from PGSEAL_MASTER_KEY, a file, Secrets Manager,
// or stays in AWS KMS (keys/providers.ts chooses).

import type { Argv } from 'yargs';
import type { Sql } from 'postgres';
import { connect } from '../connect.js';
import type { LogKeys } from '../audit/record.js';
import { masterLogKeys } from '../keys/unwrap.js';
import type { MasterKeyProvider } from '../keys/master-key.js';
import { configuredMasterKey } from '../keys/providers.js';

export interface DatabaseArgs {
  'database-url'?: string | undefined;
}
export interface MasterKeyArgs {
  'master-key-file'?: string | undefined;
  'kms-key-id'?: string | undefined;
  'scope-key-dir'?: string | undefined;
}

export function withDatabase<T>(y: Argv<T>): Argv<T & DatabaseArgs> {
  return y.option('database-url', {
    type: 'string',
    describe: 'PostgreSQL URL (default: $DATABASE_URL)',
  }) as Argv<T & DatabaseArgs>;
}

export function withMasterKey<T>(y: Argv<T>): Argv<T & MasterKeyArgs> {
  return y.option('master-key-file', {
    type: 'string',
    describe: 'file holding the base64 master key (default: $PGSEAL_MASTER_KEY_FILE, else $PGSEAL_MASTER_KEY)',
  }).option('kms-key-id', {
    type: 'string',
    describe: 'AWS KMS key (id, ARN or alias) wrapping the data keys (default: $PGSEAL_KMS_KEY_ID; $PGSEAL_MASTER_KEY_SECRET_ID reads the master key from Secrets Manager)',
  }).option('scope-key-dir', {
    type: 'string',
    describe: 'directory of per-scope wrapping keys, one file per scope, kept outside the database (default: $PGSEAL_SCOPE_KEY_DIR; docs/key-providers.md)',
  }) as Argv<T & MasterKeyArgs>;
}

export function databaseUrl(args: DatabaseArgs): string | undefined {
  return args['database-url'] ?? process.env.DATABASE_URL;
}

export function openDatabase(args: DatabaseArgs): Sql {
  return connect(databaseUrl(args));
}

export function masterKey(args: MasterKeyArgs): MasterKeyProvider {
  return configuredMasterKey({ kmsKeyId: args['kms-key-id'], masterKeyFile: args['master-key-file'], scopeKeyDir: args['scope-key-dir'] });
}

/** Runs `work` with a connection, always closing it. */
export async function usingDatabase<T>(args: DatabaseArgs, work: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = openDatabase(args);
  try {
    return await work(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Runs `work` with a connection and the log keys the master key opens: for commands that log what they do. */
export async function usingLogKeys<T>(args: DatabaseArgs & MasterKeyArgs, work: (sql: Sql, keys: LogKeys) => Promise<T>): Promise<T> {
  const provider = masterKey(args);
  try {
    return await usingDatabase(args, (sql) => work(sql, masterLogKeys(sql, provider)));
  } finally {
    provider.close();
  }
}
