// pgseal's library API: the public surface, and pgseal(), a thin facade over the keyed
// executor (src/exec/), the typed helpers (src/helpers/) and rewritten SQL (src/rewrite/).

import type { Sql, TransactionSql } from 'postgres';
import type { AccessLogOptions, AccessLogStats } from './audit/access-log.js';
import { ClientCrypto, decryptClientSide, encryptClientSide } from './exec/client-side.js';
import { KeyedExecutor } from './exec/executor.js';
import type { WithKeysOptions } from './exec/transaction.js';
import type { ColumnDef, TableDefinition } from './helpers/define.js';
import { Table, type CryptoMode, type TableOptions } from './helpers/table.js';
import { Keyring, type KeyringOptions } from './keys/keyring.js';
import type { MasterKeyProvider } from './keys/master-key.js';
import { reencrypt, type ReencryptOptions, type ReencryptResult } from './reencrypt/run.js';
import { loadRegistry } from './registry/load.js';
import { loadSqlRewriter, type RewriteOptions, type SqlRewriter } from './rewrite/index.js';
import { queryArguments, runRewritten } from './rewrite/run.js';

export { ErrorCodes, PgsealError, SqlStates, toPgsealError, type ErrorCode } from './errors.js';
export { envMasterKey, fileMasterKey, generateMasterKey, LocalMasterKey, parseMasterKey, type DataKey, type MasterKeyProvider } from './keys/master-key.js';
export { AwsKmsMasterKey, awsKmsMasterKey, type AwsKmsOptions } from './keys/aws-kms.js';
export { AwsSecretMasterKey, awsSecretMasterKey, type AwsSecretOptions } from './keys/aws-secrets.js';
export { configuredMasterKey, masterKeySource, type MasterKeyConfig, type MasterKeySource } from './keys/providers.js';
export type { WrapContext } from './crypto/derive.js';
export { Keyring, type KeyringOptions, type KeyState } from './keys/keyring.js';
export { masterLogKeys } from './keys/unwrap.js';
export type { LogKeys } from './audit/record.js';
export { initKeys, listKeys, rotateKey, DEFAULT_SCOPE, type KeyInfo } from './keys/registry.js';
export { keyUsage, envelopeCensus, retireKey, destroyScopeKeys, rewrapKeys, type KeyUsage, type Census, type EnvelopeCount, type DestroyResult } from './keys/lifecycle.js';
export { deriveEnvelopeKeys, type EnvelopeKeys } from './crypto/derive.js';
export { seal, open, keyVersionOf } from './crypto/envelope.js';
export { withKeys, type WithKeysOptions } from './exec/transaction.js';
export { KeyedExecutor, type ExecutorOptions } from './exec/executor.js';
export { migrate, migrationStatus, pendingMigrationsSql, MIGRATIONS_DIR, type MigrateOptions, type MigrationStatus } from './migrate.js';
export { connect } from './connect.js';
export { column, defineTable, type ColumnDef, type EncryptedColumn, type EncryptedOptions, type PlainColumn, type PlainKind, type PlainKinds, type Row, type SearchableKey, type TableDefinition, type Values } from './helpers/define.js';
export { Table, type CryptoMode, type ScopeOption, type TableOptions } from './helpers/table.js';
export { ClientCrypto, canonicalTexts, type RowTexts, type ReadScopes } from './exec/client-side.js';
export { protectedColumn, type ColumnSpec } from './columns/model.js';
export { contextOf, columnContext } from './columns/context.js';
export { loadRegistry, listProtectedColumns } from './registry/load.js';
export { protectColumn, unprotectColumn, createView, dropView, type ProtectOptions } from './registry/protect.js';
export { grantApi, revokeApi, listApiGrants, type ApiSet } from './registry/grants.js';
export type { ProtectedColumn, Registry, TableInfo, ValueType, Normalizer, ContextMode } from './registry/types.js';
export { blindIndex } from './columns/blind-index.js';
export { loadSqlRewriter, SqlRewriter, type RewriteOptions, type RewriteResult } from './rewrite/index.js';
export { normalize } from './columns/normalize.js';
export { reencrypt, type ReencryptOptions, type ReencryptProgress, type ReencryptResult, type ColumnProgress } from './reencrypt/run.js';
export { reencryptStatus, reencryptDryRun, type RunStatus, type ColumnStatus, type DryRunReport, type DryRunColumn } from './reencrypt/status.js';
export { emergencyRotate, type EmergencyRotation } from './reencrypt/emergency.js';
export { defaultActor, type Attribution } from './audit/record.js';
export { withAccessContext, currentAccessContext, type AccessContext } from './audit/context.js';
export type { AccessLogOptions, AccessLogStats, AccessType } from './audit/access-log.js';
export { createLogPartitions, dropLogPartitions } from './audit/partitions.js';
export { verifyLogs, type VerifyOptions, type VerifyProblem, type VerifyResult, type ProblemKind } from './audit/verify.js';
export { listEvents, report, type EventFilter, type LogEvent, type Report, type ReportLine } from './audit/query.js';
export { metricsRegistry, registerMetrics, mergedRegistry, doctorExposition, LATENCY_BUCKETS } from './metrics.js';

export interface PgsealOptions extends KeyringOptions {
  /** your postgres.js client; pgseal never closes it */
  sql: Sql;
  masterKey: MasterKeyProvider;
  /**
   * Record every protected value the typed helpers read, write or delete in
   * pgseal.encrypted_data_access_log ('sync': in the same statement). The actor and client
   * address come from withAccessContext() around the request, else `actor`.
   */
  accessLog?: AccessLogOptions;
  /**
   * Where the typed helpers encrypt and decrypt: 'client' (default) in this process, so the
   * database receives only ciphertext and blind indexes; 'database' in SQL, with the keys
   * as arguments of each statement. Per table: seal.table(def, { crypto }).
   */
  crypto?: CryptoMode;
  /**
   * Client mode: how often (ms) a read also asks the database whether keys were revoked
   * (retired, destroyed, compromised) since this process loaded them; 0 on every read (it
   * costs the server a SECURITY DEFINER call a read). Default 1000. Writes always check.
   */
  revocationCheckMs?: number;
}

export interface Pgseal {
  readonly sql: Sql;
  readonly keyring: Keyring;
  /** The executor every keyed statement runs through (the ORM adapters log accesses through it). */
  readonly executor: KeyedExecutor;
  /** Client-side crypto with this instance's keyring (the typed helpers' client mode, the ORM adapters). */
  readonly crypto: ClientCrypto;
  /** Runs `work` in a transaction whose statements can call pgseal.encrypt_* / decrypt_*. */
  begin<T>(work: (tx: TransactionSql) => T | Promise<T>, options?: WithKeysOptions): Promise<T>;
  /** Client-side encryption with the scope's active key: the same envelope SQL writes. */
  encrypt(plaintext: string | Buffer, context: string, scope?: string): Promise<Buffer>;
  /** Client-side decryption of an envelope written by SQL or by `encrypt`. */
  decrypt(envelope: Buffer, context: string): Promise<Buffer>;
  decryptText(envelope: Buffer, context: string): Promise<string>;
  /**
   * Raw SQL written as if protected columns held plaintext: parsed with PostgreSQL's
   * parser, rewritten to pgseal's functions (cached by text), run with the keys handed in.
   * Values are bound parameters. Also a tagged template: seal.query`... ${value}`.
   */
  query<R extends Record<string, unknown> = Record<string, unknown>>(text: string, params?: readonly unknown[], options?: RewriteOptions & WithKeysOptions): Promise<R[]>;
  query<R extends Record<string, unknown> = Record<string, unknown>>(strings: TemplateStringsArray, ...values: unknown[]): Promise<R[]>;
  /** The rewriter for the current registry (loaded on first use). */
  rewriter(): Promise<SqlRewriter>;
  /** Reloads pgseal.columns (after protect / unprotect) for the rewriter. */
  reloadRegistry(): Promise<void>;
  /**
   * Moves every value on an older data-key version onto the active one, inside the
   * database, in checkpointed batches (resumable; see ReencryptOptions).
   */
  reencrypt(options?: ReencryptOptions): Promise<ReencryptResult>;
  /** Typed helpers for one table definition (see defineTable). */
  table<T extends TableDefinition<Record<string, ColumnDef>, string>>(definition: T, options?: TableOptions): Table<T>;
  /** Async access log: counts of entries buffered, written, dropped (undefined unless mode is 'async'). */
  accessLog(): AccessLogStats | undefined;
  /** Async access log: writes what is buffered now. */
  flushAccessLog(): Promise<void>;
  /** Zeroes the keys in memory and writes the buffered access log (your `sql` stays open). */
  close(): Promise<void>;
}

export function pgseal(options: PgsealOptions): Pgseal {
  const keyring = new Keyring(options.sql, options.masterKey, options);
  const exec = new KeyedExecutor(options.sql, keyring, { accessLog: options.accessLog });
  let rewriter: Promise<SqlRewriter> | undefined;
  const getRewriter = () => (rewriter ??= loadRegistry(options.sql).then((registry) => loadSqlRewriter(registry)));
  const crypto = new ClientCrypto(keyring, { revocationCheckMs: options.revocationCheckMs });
  const api: Pgseal = {
    sql: options.sql,
    keyring,
    executor: exec,
    crypto,
    begin: (work, opts) => exec.transaction(work, opts),
    encrypt: (plaintext, context, scope) => encryptClientSide(keyring, plaintext, context, scope),
    decrypt: (envelope, context) => decryptClientSide(keyring, envelope, context),
    async decryptText(envelope, context) {
      return (await decryptClientSide(keyring, envelope, context)).toString('utf8');
    },
    async query(first: string | TemplateStringsArray, ...rest: unknown[]) {
      const { text, params, options: opts } = queryArguments(first, rest);
      return (await runRewritten(exec, await getRewriter(), text, params, opts)) as never;
    },
    rewriter: getRewriter,
    async reloadRegistry() {
      rewriter = undefined;
      await getRewriter();
    },
    reencrypt: (opts) => reencrypt(options.sql, keyring, opts),
    table: (definition, opts) => new Table(exec, definition, { crypto: options.crypto ?? 'client', client: crypto, ...opts }),
    accessLog: () => exec.stats(),
    flushAccessLog: () => exec.flush(),
    close: async () => {
      try {
        // async access log: what is buffered is written (signed: the keyring is still open) before close resolves
        await exec.close();
      } finally {
        keyring.close();
        options.masterKey.close();
      }
    },
  };
  return api;
}
