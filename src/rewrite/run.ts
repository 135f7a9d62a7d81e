// Rewritten SQL, run: a statement written as if protected columns held plaintext is
// rewritten (index.ts) and run by the keyed executor with its keys as its first arguments,
// its accesses logged per row and protected column (seal.query, pgseal query).

import { accessor, statementEntries } from '../audit/access-log.js';
import type { KeyedExecutor } from '../exec/executor.js';
import type { WithKeysOptions } from '../exec/transaction.js';
import type { RewriteOptions, SqlRewriter } from './index.js';

export type QueryOptions = RewriteOptions & WithKeysOptions;

/** A call, written by the caller, of a pgseal function that reads the keys of the transaction's settings. */
const HAND_WRITTEN_KEYED_CALL = /\bpgseal\s*\.\s*"?(?:encrypt_text|encrypt_bytea|decrypt_text|decrypt_bytea|blind_index|blind_index_array|reseal)"?\s*\(/i;

/**
 * Whether a statement needs keys at all: it names a protected column (rewritten, or to be
 * logged), or calls a keyed pgseal function by hand. `select 1`, DDL and queries over
 * unprotected columns do not, and run without a master key (pgseal query). Without a
 * rewriter (--raw) only the hand-written calls count.
 */
export function needsKeys(text: string, rewriter: SqlRewriter | undefined, options: RewriteOptions = {}): boolean {
  if (HAND_WRITTEN_KEYED_CALL.test(text)) return true;
  if (!rewriter) return false;
  const r = rewriter.rewrite(text, options);
  return r.keys.length > 0 || r.columns.length > 0;
}

/** seal.query's arguments: (text, params, options) or a tagged template. */
export function queryArguments(first: string | TemplateStringsArray, rest: unknown[]): { text: string; params: readonly unknown[]; options: QueryOptions } {
  if (typeof first === 'string') {
    return { text: first, params: (rest[0] as readonly unknown[] | undefined) ?? [], options: (rest[1] as QueryOptions | undefined) ?? {} };
  }
  return { text: first.reduce((out, part, i) => out + (i > 0 ? `$${i}` : '') + part, ''), params: rest, options: {} };
}

export async function runRewritten(exec: KeyedExecutor, rewriter: SqlRewriter, text: string, params: readonly unknown[], options: QueryOptions = {}): Promise<Record<string, unknown>[]> {
  // with the access log on, the statement returns the row ids of what it touches (hidden outputs)
  const rewritten = rewriter.rewrite(text, { ...options, attributeRows: exec.logging });
  // a value that does not open is audited against its table when the statement names one only
  const tables = new Set(rewritten.columns.map((c) => c.slice(0, c.lastIndexOf('.'))));
  const [schema, table] = tables.size === 1 ? [...tables][0]!.split('.') : [];
  const rows = await exec.rewritten({
    text: rewritten.sql,
    params,
    keys: rewritten.keys,
    settings: HAND_WRITTEN_KEYED_CALL.test(text),
    scopes: options.scopes,
    entries: rewritten.access ? (result) => statementEntries(result, rewritten, accessor(exec.accessLog)) : undefined,
    table: schema !== undefined && table !== undefined ? { schema, table } : undefined,
  });
  if (rewritten.rows) stripOutputs(rows, rewritten.rows.map((r) => r.output));
  return rows;
}

/** The hidden row-id outputs leave the caller's result (rows and column list). */
function stripOutputs(result: Record<string, unknown>[] & { columns?: ReadonlyArray<{ name: string }> | undefined }, names: readonly string[]): void {
  for (const row of result) for (const name of names) delete row[name];
  if (Array.isArray(result.columns)) (result as { columns?: unknown }).columns = result.columns.filter((c) => !names.includes(c.name));
}
