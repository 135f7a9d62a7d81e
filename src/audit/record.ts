// Writing pgseal.encryption_audit_log: one row per key or data operation, with the actor
// and the reason. Only names, versions, counts and error codes go in: never a key, never
// a plaintext, never a driver error (its parameters may hold either).

import { userInfo } from 'node:os';
import type { Sql, TransactionSql } from 'postgres';
import { withPgsealErrors } from '../errors.js';

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

export async function recordEvent(sql: Sql | TransactionSql, event: AuditEvent): Promise<void> {
  await withPgsealErrors(() => sql`
    insert into pgseal.encryption_audit_log
      (actor, operation, table_schema, table_name, column_name, key_scope, key_version, success, reason, details)
    values (${event.actor ?? defaultActor()}, ${event.operation}, ${event.table?.schema ?? null}, ${event.table?.table ?? null},
            ${event.table?.column ?? null}, ${event.scope ?? null}, ${event.version ?? null}, ${event.success},
            ${event.reason ?? null}, ${sql.json((event.details ?? {}) as never)})`);
}

/** Records a refused or failed operation; never masks the operation's own error. */
export async function recordFailure(sql: Sql, event: Omit<AuditEvent, 'success'>, error: unknown): Promise<void> {
  const code = (error as { code?: unknown } | null)?.code;
  try {
    await recordEvent(sql, { ...event, success: false, details: { ...event.details, error: typeof code === 'string' ? code : 'unknown' } });
  } catch {
    // the log is unreachable too (database down, or not migrated): the caller's error says why
  }
}
