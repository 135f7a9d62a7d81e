// A small tree of SQL expressions: the calls, casts and constants pgseal's expressions are
// made of. The protected-column model (src/columns/) builds them once; two renderers turn
// them into SQL: toFragment() here, for statements pgseal writes as text, and the SQL
// rewriter's toNode() (src/rewrite/ast.ts), for statements it rewrites as a parse tree.
// Operands (a column, a parameter, a caller's expression) are opaque to the tree: each
// renderer takes its own kind.

import { bareName, ident, int, join, literal, sql, type Fragment } from './sql.js';

/** The types pgseal's expressions cast to. Written schema-qualified in text, so no type in the caller's temp schema can stand in. */
export type SqlType = 'text' | 'bytea' | 'jsonb' | 'numeric' | 'integer';

/** pgseal's own functions that generated SQL calls (always schema-qualified). */
export type PgsealFunction =
  | 'encrypt_text' | 'encrypt_bytea' | 'decrypt_text' | 'decrypt_bytea'
  | 'encrypt_bytea_with' | 'encrypt_text_with' | 'decrypt_text_with' | 'decrypt_bytea_with'
  | '_material_in' | '_index_keys_in' | 'blind_index_with' | 'blind_index_array_with'
  | 'scope_context' | 'row_context'
  | 'blind_index' | 'blind_index_array' | 'normalize' | 'normalize_array'
  | 'reseal_with' | 'key_version_of'
  | 'value_numeric' | 'value_jsonb';

export type Expr<O> =
  | { readonly k: 'call'; readonly fn: PgsealFunction; readonly args: readonly Expr<O>[]; readonly type?: SqlType }
  | { readonly k: 'cast'; readonly arg: Expr<O>; readonly type: SqlType; readonly array: boolean }
  | { readonly k: 'text'; readonly value: string }
  | { readonly k: 'int'; readonly value: number }
  | { readonly k: 'array'; readonly items: readonly Expr<O>[] }
  /** COALESCE(value, (NULL::schema.table).column): a value typed like the column it goes to */
  | { readonly k: 'typed-like'; readonly value: Expr<O>; readonly schema: string; readonly table: string; readonly column: string }
  | { readonly k: 'operand'; readonly operand: O };

export const call = <O>(fn: PgsealFunction, args: readonly Expr<O>[], type?: SqlType): Expr<O> => (type ? { k: 'call', fn, args, type } : { k: 'call', fn, args });
export const text = <O>(value: string): Expr<O> => ({ k: 'text', value });
export const integer = <O>(value: number): Expr<O> => ({ k: 'int', value });
export const array = <O>(items: readonly Expr<O>[]): Expr<O> => ({ k: 'array', items });
export const operand = <O>(o: O): Expr<O> => ({ k: 'operand', operand: o });

/** `arg::type`, unless arg already is of that type. */
export function cast<O>(arg: Expr<O>, type: SqlType, isArray = false): Expr<O> {
  if (!isArray && ((arg.k === 'cast' && arg.type === type && !arg.array) || (arg.k === 'call' && arg.type === type))) return arg;
  return { k: 'cast', arg, type, array: isArray };
}

export function typedLike<O>(value: Expr<O>, schema: string, table: string, column: string): Expr<O> {
  return { k: 'typed-like', value, schema, table, column };
}

const TYPE_NAMES: Record<SqlType, string> = { text: 'text', bytea: 'bytea', jsonb: 'jsonb', numeric: 'numeric', integer: 'int4' };

/** The expression as statement text; operands are fragments (a column, a parameter, a slot). */
export function toFragment(e: Expr<Fragment>): Fragment {
  switch (e.k) {
    case 'operand':
      return e.operand;
    case 'text':
      return literal(e.value);
    case 'int':
      return int(e.value);
    case 'call':
      // the names come from the closed PgsealFunction set
      return sql`pgseal.${bareName(e.fn)}(${join(e.args.map(toFragment))})`;
    case 'cast': {
      // an operand is the caller's: parenthesised, whatever it holds
      const arg = e.arg.k === 'operand' ? sql`(${e.arg.operand})` : toFragment(e.arg);
      return e.array ? sql`${arg}::pg_catalog.${bareName(TYPE_NAMES[e.type])}[]` : sql`${arg}::pg_catalog.${bareName(TYPE_NAMES[e.type])}`;
    }
    case 'array':
      return sql`ARRAY[${join(e.items.map(toFragment))}]`;
    case 'typed-like':
      return sql`COALESCE(${toFragment(e.value)}, (NULL::${ident(e.schema, e.table)}).${ident(e.column)})`;
  }
}
