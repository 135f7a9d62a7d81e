// The real PostgreSQL parser (libpg_query compiled to WASM, through pgsql-parser) and the
// deparser. The WASM module loads once per process; after that every call is synchronous.

import { deparseSync, loadModule, parseSync } from 'pgsql-parser';
import type { ParseResult } from '@pgsql/types';
import { ErrorCodes, PgsealError } from '../errors.js';
import { unsupported } from './errors.js';

let loading: Promise<void> | undefined;
let loaded = false;

export function loadParser(): Promise<void> {
  loading ??= loadModule().then(
    () => {
      loaded = true;
    },
    (error: unknown) => {
      loading = undefined;
      throw error;
    },
  );
  return loading;
}

export function parse(sql: string): ParseResult {
  if (!loaded) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the SQL parser is not loaded', {
      hint: 'create the rewriter with `await loadSqlRewriter(registry)`, which loads it once',
    });
  }
  try {
    return parseSync(sql);
  } catch (error) {
    throw syntaxError(error);
  }
}

function syntaxError(error: unknown): PgsealError {
  const details = (error as { sqlDetails?: { message?: string; cursorPosition?: number } }).sqlDetails;
  const raw = details?.message ?? (error instanceof Error ? error.message : String(error));
  // "syntax error at or near "<token>"" quotes the statement, and a token can be a literal.
  const message = raw.replace(/ at or near .*$/s, '').replace(/"(?:[^"]|"")*"/g, '"..."');
  const position = details?.cursorPosition !== undefined && details.cursorPosition >= 0 ? details.cursorPosition + 1 : undefined;
  return new PgsealError(ErrorCodes.SQL_SYNTAX, `${message}${position === undefined ? '' : ` at position ${position}`}`, {
    hint: 'fix the SQL: it does not parse as PostgreSQL',
    position: position === undefined ? undefined : String(position),
  });
}

const VOLATILE_FIELDS = new Set(['location', 'stmt_location', 'stmt_len', 'rexpr_list_start', 'rexpr_list_end', 'list_start', 'list_end']);
/**
 * A tree's text without positions, keys sorted (the rewriter builds nodes in its own key
 * order), nested ANDs and ORs flattened (the parser flattens `(a AND b) AND c`).
 */
function shape(tree: unknown): string {
  if (typeof tree !== 'object' || tree === null) return JSON.stringify(tree) ?? 'undefined';
  if (Array.isArray(tree)) return `[${tree.map(shape).join(',')}]`;
  const record = tree as Record<string, unknown>;
  const bool = record.BoolExpr as { boolop?: string; args?: unknown[] } | undefined;
  if (bool && Object.keys(record).length === 1 && bool.boolop !== 'NOT_EXPR') {
    return `{"BoolExpr":{"args":[${flatten(bool.boolop, bool.args ?? []).map(shape).join(',')}],"boolop":${JSON.stringify(bool.boolop)}}}`;
  }
  // the deparser prints some casts to pg_catalog's types unqualified (c.id::text), others
  // qualified (CAST($1 AS pg_catalog.bytea), how every key argument prints): the same type
  const names = record.names as Array<{ String?: { sval?: string } }> | undefined;
  if ('typemod' in record && Array.isArray(names) && names.length === 2 && names[0]?.String?.sval === 'pg_catalog') {
    return shape({ ...record, names: names.slice(1) });
  }
  const keys = Object.keys(record)
    .filter((k) => !VOLATILE_FIELDS.has(k) && record[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${shape(record[k])}`).join(',')}}`;
}

function flatten(boolop: string | undefined, args: unknown[]): unknown[] {
  return args.flatMap((a) => {
    const inner = (a as { BoolExpr?: { boolop?: string; args?: unknown[] } }).BoolExpr;
    return inner && inner.boolop === boolop ? flatten(boolop, inner.args ?? []) : [a];
  });
}

/**
 * Deparses a rewritten tree and parses the text back: the deparser has precedence bugs
 * (e.g. `(a OR b) IS NULL` prints without parentheses), so a text that does not parse to
 * the same tree is refused instead of run.
 */
export function deparseChecked(tree: ParseResult): string {
  const text = deparseSync(tree, { pretty: false });
  let back: ParseResult | undefined;
  try {
    back = parseSync(text);
  } catch {
    back = undefined;
  }
  if (!back || shape(back.stmts) !== shape(tree.stmts)) {
    throw unsupported(
      'this statement: its rewritten form does not print back faithfully (a deparser limitation)',
      'simplify the statement (for example add parentheses or split it), or use the typed helpers',
    );
  }
  return text;
}
