// The SQL rewriter: SQL written as if protected columns held plaintext, rewritten to call
// pgseal's SQL functions. What cannot work on ciphertext is refused with a typed error
// (PgsealError UNSUPPORTED_ON_CIPHERTEXT / REWRITE_UNSUPPORTED / SQL_SYNTAX), never
// answered wrongly. Results are cached per (text, options), so a statement the
// application sends again costs a map lookup.

import type { Registry } from '../registry/types.js';
import { SourceText } from './errors.js';
import { deparseChecked, loadParser, parse } from './parser.js';
import { KEY_PARAMS } from './sealed.js';
import { StatementRewriter, type RowAttribution } from './statements.js';

export { DECRYPT_SCAN_HINT } from './errors.js';
export { ROW_ID_PREFIX, type RowAttribution } from './statements.js';

export interface RewriteOptions {
  /** decrypt row by row what the blind index cannot answer (LIKE, ranges, ORDER BY, ...): correct, but a full scan */
  allowDecryptScan?: boolean;
  /**
   * for the access log: the statement also returns, in hidden output columns, the primary
   * key of every row it reads or changes (`rows` says where); the runner strips them
   */
  attributeRows?: boolean;
}

export interface RewriteResult {
  sql: string;
  changed: boolean;
  /** protected columns the statement touches, 'schema.table.column' */
  columns: string[];
  /** what the statement does to them, for the access log: read (SELECT), write (INSERT, UPDATE), delete */
  access?: 'read' | 'write' | 'delete' | undefined;
  /**
   * The key arguments the rewritten statement takes first, in this order ($1, $2): the
   * caller's own parameters follow them ($1 of the original text is $(keys.length + 1)).
   */
  keys: ReadonlyArray<'keyset' | 'payload'>;
  /** with attributeRows: the hidden outputs holding row ids, per protected table */
  rows?: readonly RowAttribution[];
}

export interface SqlRewriterOptions {
  /** rewritten statements kept (least recently used dropped first); default 1000 */
  cacheSize?: number;
}

const NOTHING: readonly string[] = Object.freeze([]);
const NO_KEYS: ReadonlyArray<'keyset' | 'payload'> = Object.freeze([]);

/**
 * Numbers the key placeholders (sealed.ts KEY_PARAMS) $1, $2 in the order keyset, payload
 * (only those used: a parameter the statement never names has no type, an error), and
 * moves every parameter of the caller's text after them, so that no part of the caller's
 * text can name a key.
 */
function numberKeyParams(tree: unknown): ReadonlyArray<'keyset' | 'payload'> {
  // the nodes holding a ParamRef: each gets a new ParamRef (the placeholders are shared constants)
  const holders = new Set<{ ParamRef: { number?: number } }>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) for (const x of v) walk(x);
    else if (v && typeof v === 'object') {
      if ('ParamRef' in v) holders.add(v as { ParamRef: { number?: number } });
      else for (const x of Object.values(v)) walk(x);
    }
  };
  walk(tree);
  const used = (['keyset', 'payload'] as const).filter((k) => [...holders].some((h) => h.ParamRef.number === KEY_PARAMS[k]));
  if (used.length === 0) return NO_KEYS;
  for (const h of holders) {
    const n = h.ParamRef.number;
    const key = n === KEY_PARAMS.keyset ? 'keyset' : n === KEY_PARAMS.payload ? 'payload' : undefined;
    h.ParamRef = { ...h.ParamRef, number: key ? used.indexOf(key) + 1 : (n ?? 0) + used.length };
  }
  return Object.freeze(used);
}

export class SqlRewriter {
  // one slot per combination of options (decrypt scan, row attribution)
  private readonly cache = new Map<string, Array<RewriteResult | undefined>>();
  private readonly cacheSize: number;
  /** lower-cased names of protected tables: a statement mentioning none is left alone unparsed */
  private readonly tableNames: string[];

  constructor(
    private readonly registry: Registry,
    options: SqlRewriterOptions = {},
  ) {
    this.cacheSize = Math.max(0, options.cacheSize ?? 1000);
    // as written in SQL too: a quote inside a quoted name is doubled
    this.tableNames = [...new Set([...registry.values()].flatMap((t) => [t.table.toLowerCase(), t.table.toLowerCase().replace(/"/g, '""')]))];
  }

  rewrite(sql: string, options: RewriteOptions = {}): RewriteResult {
    const slot = (options.allowDecryptScan ? 1 : 0) + (options.attributeRows ? 2 : 0);
    const entry = this.cache.get(sql);
    if (entry) {
      const hit = entry[slot];
      if (hit) {
        // Most recently used goes last.
        this.cache.delete(sql);
        this.cache.set(sql, entry);
        return hit;
      }
    }
    const result = this.compute(sql, options.allowDecryptScan ?? false, options.attributeRows ?? false);
    if (this.cacheSize > 0) {
      const e = entry ?? [];
      e[slot] = result;
      this.cache.delete(sql);
      this.cache.set(sql, e);
      if (this.cache.size > this.cacheSize) {
        const oldest = this.cache.keys().next().value;
        if (oldest !== undefined) this.cache.delete(oldest);
      }
    }
    return result;
  }

  private compute(sql: string, allowDecryptScan: boolean, attributeRows: boolean): RewriteResult {
    if (!this.mayTouch(sql)) return freeze({ sql, changed: false, columns: NOTHING as string[], keys: NO_KEYS });
    const tree = parse(sql);
    const rewriter = new StatementRewriter(this.registry, allowDecryptScan, new SourceText(sql));
    for (const raw of tree.stmts ?? []) if (raw.stmt) rewriter.topLevel(raw.stmt);
    const columns = [...rewriter.touched];
    const first = tree.stmts?.[0]?.stmt;
    const access = !first || columns.length === 0 ? undefined
      : 'InsertStmt' in first || 'UpdateStmt' in first ? 'write' : 'DeleteStmt' in first ? 'delete' : 'read';
    // one statement only: a text of several returns several results
    const rows = attributeRows && access && tree.stmts?.length === 1 ? rewriter.attachRowIds() : [];
    if (!rewriter.changed) return freeze({ sql, changed: false, columns, access, keys: NO_KEYS });
    const keys = numberKeyParams(tree);
    return freeze({ sql: deparseChecked(tree), changed: true, columns, access, keys, ...(rows.length > 0 ? { rows: Object.freeze(rows) } : {}) });
  }

  /** False only when no protected table can be named: no name appears, and no U&"..." escape. */
  private mayTouch(sql: string): boolean {
    const lower = sql.toLowerCase();
    if (lower.includes('u&')) return true;
    return this.tableNames.some((name) => lower.includes(name));
  }
}

function freeze(result: RewriteResult): RewriteResult {
  Object.freeze(result.columns);
  return Object.freeze(result);
}

/** Loads the parser (once per process) and returns a rewriter for the registry. */
export async function loadSqlRewriter(registry: Registry, options?: SqlRewriterOptions): Promise<SqlRewriter> {
  await loadParser();
  return new SqlRewriter(registry, options);
}
