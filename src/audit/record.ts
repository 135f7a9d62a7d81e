// Writing pgseal.encryption_audit_log: one row per key or data operation, with the actor
// and the reason. Only names, versions, counts and error codes go in: never a key, never
// a plaintext, never a driver error (its parameters may hold either). Each row is signed
// with the log key and linked into the log's hash chain (sql/97_log_chain.sql).

import { userInfo } from 'node:os';
import type { Sql, TransactionSql } from 'postgres';
import { withPgsealErrors } from '../errors.js';

/** Who can sign log rows: the keyring, or a key command holding the master key (keys/unwrap.ts). */
export interface LogKeys {
  /** The log keyset argument (crypto/wire.ts): version u32 | key 32, active first. The caller zeroes it. */
  logKeyset(): Promise<Buffer>;
  /** Marks cached keys stale (a log key version was missing): the next logKeyset() reloads. */
  invalidate?(): void;
}

export interface AuditEvent {
  operation: string;
  success: boolean;
  actor?: string | undefined;
  reason?: string | undefined;
  table?: { schema: string; table: string; column?: string | undefined } | undefined;
  scope?: string | undefined;
  version?: number | undefined;
  details?: Record<string, unknown> | undefined;
}

/** Who acts, when the caller does not say: $PGSEAL_ACTOR, else the operating-system user. */
export function defaultActor(): string {
  if (process.env.PGSEAL_ACTOR) return process.env.PGSEAL_ACTOR;
  try {
    return userInfo().username;
  } catch {
    return `uid:${process.getuid?.() ?? 'unknown'}`;
  }
}

/** Who did it and why: every lifecycle call takes these. */
export interface Attribution {
  actor?: string | undefined;
  reason?: string | undefined;
}

/** Runs `work` with the log keyset, zeroed when it settles: the one place log keys are held and let go. */
export async function withLogKeyset<T>(keys: LogKeys, work: (keyset: Buffer) => Promise<T>): Promise<T> {
  const keyset = await keys.logKeyset();
  try {
    return await work(keyset);
  } finally {
    keyset.fill(0);
  }
}

export function recordEvent(sql: Sql | TransactionSql, keys: LogKeys, event: AuditEvent): Promise<void> {
  return withLogKeyset(keys, async (keyset) => {
    // one statement: the link, then the row under the same time, signed with the active log key
    await withPgsealErrors(() => sql`
      with k as (select ${keyset}::bytea as ks),
      v as (select pg_catalog.clock_timestamp() as at, ${event.actor ?? defaultActor()}::text as actor, session_user::text as db_user,
                   ${event.operation}::text as operation, ${event.table?.schema ?? null}::name as table_schema, ${event.table?.table ?? null}::name as table_name,
                   ${event.table?.column ?? null}::name as column_name, ${event.scope ?? null}::text as key_scope, ${event.version ?? null}::integer as key_version,
                   ${event.success}::boolean as success, ${event.reason ?? null}::text as reason, ${JSON.stringify(event.details ?? {})}::pg_catalog.text::pg_catalog.jsonb as details),
      l as (select pgseal.append_log_link('audit', 1, v.at, v.at, k.ks) as id, pgseal._log_key(k.ks, pgseal._log_key_version(k.ks)) as key from k, v)
      insert into pgseal.encryption_audit_log
        (occurred_at, actor, db_user, operation, table_schema, table_name, column_name, key_scope, key_version, success, reason, details, link_id, link_pos, mac)
      select v.at, v.actor, v.db_user, v.operation, v.table_schema, v.table_name, v.column_name, v.key_scope, v.key_version, v.success, v.reason, v.details,
             l.id, 0, pgseal.audit_log_row_mac(l.key, l.id, 0, v.at, v.actor, v.db_user, v.operation, v.table_schema, v.table_name, v.column_name,
                                               v.key_scope, v.key_version, v.success, v.reason, v.details)
        from v, l`);
  });
}

/** Records a refused or failed operation; never masks the operation's own error. */
export async function recordFailure(sql: Sql, keys: LogKeys, event: Omit<AuditEvent, 'success'>, error: unknown): Promise<void> {
  const code = (error as { code?: unknown } | null)?.code;
  try {
    await recordEvent(sql, keys, { ...event, success: false, details: { ...event.details, error: typeof code === 'string' ? code : 'unknown' } });
  } catch {
    // the log is unreachable too (database down, not migrated, or no log key: a wrong master
    // key cannot sign): the caller's error says why
  }
}
