// Key lifecycle after rotation: usage counts, retiring a version, destroying a scope's keys
// (crypto-shredding), and re-wrapping every data key under a new master key.

import type { Sql, TransactionSql } from 'postgres';
import { recordEvent, recordFailure, type Attribution, type LogKeys } from '../audit/record.js';
import { ErrorCodes, PgsealError, withPgsealErrors as guarded } from '../errors.js';
import { masterLogKeys, unwrapKeyRow, wrapContextOf, type KeyRow } from './unwrap.js';
import { withWrappingKey, type MasterKeyProvider, type ScopeKeyProvider } from './master-key.js';

export interface KeyUsage {
  version: number;
  column: string;
  rows: number;
}

/** Values sealed under one key version in one column, protected or not (pgseal.envelope_census). */
export interface EnvelopeCount {
  /** schema.table.column */
  column: string;
  /** registered in pgseal.columns (reencrypt moves it); false: sealed by hand into another column */
  registered: boolean;
  version: number;
  values: number;
}

export interface Census {
  counts: EnvelopeCount[];
  /** columns pgseal's owner may not read (privileges, row-level security): what they hold is unknown */
  unreadable: string[];
}

/**
 * Every envelope in the database, per column and key version (full scans of every bytea
 * column; only `registered` ones if asked): what `keys retire` checks, what `keys destroy`
 * reports lost and what `reencrypt` reports it did not move.
 */
export function envelopeCensus(sql: Sql | TransactionSql, options: { versions?: readonly number[]; registered?: boolean } = {}): Promise<Census> {
  return guarded(async () => {
    const one = options.versions?.length === 1 ? options.versions[0]! : null;
    const rows = await sql<{ table_schema: string; table_name: string; column_name: string; registered: boolean; readable: boolean; version: number | null; row_count: string | null }[]>`
      select * from pgseal.envelope_census(${one}::integer, ${options.registered ?? null}::boolean)`;
    const wanted = options.versions ? new Set(options.versions) : undefined;
    const name = (r: (typeof rows)[number]) => `${r.table_schema}.${r.table_name}.${r.column_name}`;
    return {
      counts: rows
        .filter((r) => r.readable && r.version !== null && (!wanted || wanted.has(r.version)))
        .map((r) => ({ column: name(r), registered: r.registered, version: r.version!, values: Number(r.row_count) })),
      unreadable: rows.filter((r) => !r.readable).map(name),
    };
  });
}

/** "3 in public.a.b, 1 in public.c.d (not a protected column)" */
export function describeCounts(counts: readonly EnvelopeCount[]): string {
  return counts.map((c) => `${c.values} in ${c.column}${c.registered ? '' : ' (not a protected column)'}`).join(', ');
}

/** Rows per key version and protected column (scans every protected table). */
export function keyUsage(sql: Sql, version?: number): Promise<KeyUsage[]> {
  return guarded(async () => {
    const rows = await sql<{ table_schema: string; table_name: string; column_name: string; version: number | null; row_count: string }[]>`
      select * from pgseal.key_usage(${version ?? null}::integer)`;
    return rows.map((r) => ({ version: r.version ?? 0, column: `${r.table_schema}.${r.table_name}.${r.column_name}`, rows: Number(r.row_count) }));
  });
}

/** Retires a decrypt-only version; refused (PGSEAL_KEY_IN_USE) while any row uses it, unless forced. */
export async function retireKey(sql: Sql, keys: LogKeys, version: number, options: Attribution & { force?: boolean } = {}): Promise<void> {
  const event = { operation: 'key.retire', actor: options.actor, reason: options.reason, version, details: { force: options.force ?? false } };
  try {
    await guarded(() =>
      sql.begin(async (tx) => {
        const [key] = await tx<{ purpose: string }[]>`select purpose from pgseal.keys where version = ${version}`;
        if (key?.purpose === 'log') {
          throw new PgsealError(ErrorCodes.KEY_IN_USE, `key version ${version} is a log key: it signs log rows that \`pgseal audit verify\` checks`, {
            hint: 'log keys stay decrypt-only as long as the rows they signed are kept',
          });
        }
        await tx`select pgseal.retire_key(${version}::integer, ${options.force ?? false})`;
        await recordEvent(tx, keys, { ...event, success: true });
      }),
    );
  } catch (error) {
    await recordFailure(sql, keys, event, error);
    throw error;
  }
}

export interface DestroyResult {
  /** key versions erased */
  versions: number;
  /** values sealed under them, counted before they were erased (they can no longer be read) */
  values: number;
  /** where those values are, protected columns or not */
  counts: EnvelopeCount[];
  /** columns pgseal's owner could not read: values there may be lost too */
  unreadable: string[];
}

/**
 * Crypto-shredding: the scope's keys lose their material (one UPDATE of their rows in
 * pgseal.keys); `confirm` must repeat the scope. With `scopeKeys` (the provider's), the
 * scope's wrapping key is destroyed too once the rows are erased, so that old backups of
 * pgseal.keys no longer open the scope either. The values made unreadable are counted
 * first, everywhere in the database, and recorded with the event.
 */
export async function destroyScopeKeys(
  sql: Sql, keys: LogKeys, scope: string, confirm: string, by: Attribution & { scopeKeys?: ScopeKeyProvider | undefined } = {},
): Promise<DestroyResult> {
  if (confirm !== scope) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the confirmation does not repeat the scope name', {
      hint: `destroying keys cannot be undone: pass --confirm ${scope} to destroy scope ${scope}`,
    });
  }
  const result = await guarded(() =>
    sql.begin(async (tx) => {
      const versions = (await tx<{ version: number }[]>`
        select version from pgseal.keys where scope = ${scope} and purpose = 'data' and state <> 'destroyed' and wrapped_key is not null`).map((r) => r.version);
      const census = versions.length > 0 ? await envelopeCensus(tx, { versions }) : { counts: [], unreadable: [] };
      const [row] = await tx<{ n: number }[]>`select pgseal.destroy_scope_keys(${scope}) as n`;
      const values = census.counts.reduce((n, c) => n + c.values, 0);
      const details: Record<string, unknown> = {
        versions: row!.n, values, columns: census.counts.map((c) => ({ column: c.column, version: c.version, values: c.values, registered: c.registered })),
        ...(census.unreadable.length > 0 ? { unreadable: census.unreadable } : {}),
      };
      if (by.scopeKeys) details.scope_key = (await by.scopeKeys.has(scope)) ? 'destroyed' : 'none';
      await recordEvent(tx, keys, { operation: 'key.destroy', success: true, actor: by.actor, reason: by.reason, scope, details });
      return { versions: row!.n, values, counts: census.counts, unreadable: census.unreadable };
    }),
  );
  if (by.scopeKeys) {
    try {
      await by.scopeKeys.destroy(scope);
    } catch (error) {
      throw new PgsealError(ErrorCodes.SCOPE_KEY_MISSING, `the keys of scope ${scope} are erased in the database, but its scope key in ${by.scopeKeys.location} could not be destroyed: ${(error as Error).message}`, {
        hint: `delete it by hand (shred -u ${by.scopeKeys.location}/${scope}.key): until it is gone, an old backup of pgseal.keys still opens the scope`,
      });
    }
  }
  return result;
}

/**
 * Master-key rotation: every data key is unwrapped with `from` and wrapped with `to`, in
 * one transaction (all or nothing); no data row is touched. Afterwards `from` opens nothing.
 */
export async function rewrapKeys(sql: Sql, from: MasterKeyProvider, to: MasterKeyProvider, by: Attribution = {}): Promise<number> {
  // a remote provider's ref (a KMS key's ARN) is final once prepared
  await Promise.all([from.prepare?.(), to.prepare?.()]);
  const sameScopeKeys = from.scopeKeys?.location === to.scopeKeys?.location;
  if (from.ref === to.ref && sameScopeKeys) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the new master key is the current one', { hint: 'generate a new one with `pgseal keys generate-master-key`, or name another KMS key' });
  }
  return guarded(() =>
    sql.begin(async (tx) => {
      // no rotation or other rewrap may interleave
      await tx`lock table pgseal.keys in share row exclusive mode`;
      const rows = await tx<KeyRow[]>`
        select version, scope, purpose, state, wrapped_key, kek_ref, fingerprint, pgseal.installation_id()::pg_catalog.text as database
          from pgseal.keys where wrapped_key is not null order by version`;
      let moved = 0;
      for (const row of rows) {
        // with scope keys on the new side, each scope's data and index keys go under its scope
        // key (created if the scope has none yet: moving a set-up onto scope keys)
        const changed = await withWrappingKey(to, row.scope, row.purpose, { create: true }, async (kek) => {
          if (kek.ref === row.kek_ref) return false;
          const context = wrapContextOf(row);
          // KMS to KMS: ReEncrypt, the key never leaves KMS (undefined where it does not fit)
          let wrapped = row.kek_ref === from.ref ? await kek.rewrapFrom?.(from, row.wrapped_key!, context) : undefined;
          if (!wrapped) {
            const dek = await unwrapKeyRow(from, row);
            try {
              wrapped = await kek.wrap(dek, context);
            } finally {
              dek.fill(0);
            }
          }
          await tx`update pgseal.keys set wrapped_key = ${wrapped}, kek_ref = ${kek.ref} where version = ${row.version}`;
          return true;
        });
        if (changed) moved += 1;
      }
      if (moved === 0 && rows.length > 0) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'every key is already wrapped by the new master key (and scope keys)', { hint: 'generate a new one with `pgseal keys generate-master-key`' });
      }
      await recordEvent(tx, masterLogKeys(tx as never, to), {
        operation: 'key.rewrap', success: true, actor: by.actor, reason: by.reason,
        details: { versions: moved, from: from.ref, to: to.ref, ...(to.scopeKeys ? { scope_keys: true } : {}) },
      });
      return moved;
    }),
  );
}
