// The access log in sync mode: the statement that reads or writes protected values also
// inserts its log rows (a data-modifying CTE), so nothing is decrypted without its log row,
// a rolled-back statement leaves none, and a failed log write fails the access. One row per
// row and protected column accessed.

import { defaultActor } from './record.js';
import { currentAccessContext, type AccessContext } from './context.js';

export type AccessType = 'read' | 'write' | 'delete';

export interface AccessLogOptions {
  /** 'sync': in the same statement as the access; 'off' (default): no access log */
  mode?: 'off' | 'sync';
  /** the actor outside any withAccessContext scope (default: $PGSEAL_ACTOR, else the OS user) */
  actor?: string;
}

export interface Accessed {
  /** 'schema.table' */
  table: string;
  /** the primary-key column, as named in the statement's output */
  primaryKey: string;
  /** protected columns accessed in each row */
  columns: readonly string[];
  type: AccessType;
}

/** Who accesses: the async scope's context, else the instance's configured actor. */
export function accessor(options: AccessLogOptions): AccessContext {
  return currentAccessContext() ?? { actor: options.actor ?? defaultActor() };
}

/**
 * Wraps a statement returning the accessed rows (a SELECT, or a write with RETURNING of
 * the primary key) so that it logs them; `add` binds a parameter and returns its placeholder.
 */
export function withAccessLog(statement: string, accessed: Accessed, who: AccessContext, add: (value: unknown) => string): string {
  const quote = (name: string) => '"' + name.replace(/"/g, '""') + '"';
  return `WITH pgseal_accessed AS (${statement}), pgseal_logged AS (
  INSERT INTO pgseal.encrypted_data_access_log (table_name, column_name, row_id, accessed_by, access_type, client_ip)
  SELECT ${add(accessed.table)}::text, c.name, a.${quote(accessed.primaryKey)}::text, ${add(who.actor)}::text, ${add(accessed.type)}::text, ${add(who.clientIp ?? null)}::inet
    FROM pgseal_accessed AS a CROSS JOIN pg_catalog.unnest(${add(accessed.columns)}::text[]) AS c(name))
SELECT * FROM pgseal_accessed`;
}
