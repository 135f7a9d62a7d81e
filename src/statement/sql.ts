// The one way pgseal writes SQL text (kysely's compiler, drizzle's `sql` chunks). A
// statement is a tree of fragments: text from pgseal's own template strings, identifiers
// (always quoted), constants (escaped literals, so the planner folds them) and values
// (always bound parameters). Interpolating anything but a fragment is refused, so no
// caller's text ever becomes SQL. Secret values (keys, copies of plaintext) are zeroed once
// the statement that carries them settles.

import type { Sql, TransactionSql } from 'postgres';
import { ErrorCodes, PgsealError } from '../errors.js';

type Chunk =
  /** SQL text written in pgseal's code */
  | string
  /** a bound value */
  | { readonly value: unknown; readonly secret: boolean }
  /** a named placeholder, bound when the statement runs */
  | { readonly slot: string; readonly secret: boolean };

/** Only this module makes fragments: text reaches one through pgseal's own template strings alone. */
const MINT = Symbol('fragment');

export class Fragment {
  readonly chunks: readonly Chunk[];
  /** @internal use sql``, ident(), literal(), value(), secret(), slot() */
  constructor(mint: symbol, chunks: readonly Chunk[]) {
    if (mint !== MINT) throw new TypeError('fragments come from sql``, ident(), literal(), value(), secret() and slot()');
    this.chunks = chunks;
  }
}

const fragment = (chunks: readonly Chunk[]): Fragment => new Fragment(MINT, chunks);
const EMPTY = fragment([]);

function append(into: Chunk[], chunk: Chunk): void {
  const last = into[into.length - 1];
  if (typeof chunk === 'string' && typeof last === 'string') into[into.length - 1] = last + chunk;
  else if (chunk !== '') into.push(chunk);
}

/** A fragment from a template: its text is pgseal's own, every `${...}` must be a fragment. */
export function sql(strings: TemplateStringsArray, ...parts: readonly Fragment[]): Fragment {
  if (!Array.isArray((strings as { raw?: unknown }).raw)) throw new TypeError('sql`` is a template tag: SQL text comes from pgseal\'s own template strings');
  const chunks: Chunk[] = [];
  for (let i = 0; i < strings.length; i++) {
    append(chunks, strings[i]!);
    if (i < parts.length) {
      const part = parts[i];
      if (!(part instanceof Fragment)) throw new TypeError('only fragments can be interpolated into SQL: wrap values with value(), names with ident()');
      for (const c of part.chunks) append(chunks, c);
    }
  }
  return fragment(chunks);
}

function checkText(text: string, what: string): void {
  if (text.includes('\u0000')) throw new TypeError(`a ${what} cannot contain NUL`);
}

/** A quoted, possibly qualified name as text: quoteIdent('public', 'users') is "public"."users" (also the input form of regclass). */
export function quoteIdent(...names: readonly string[]): string {
  if (names.length === 0) throw new TypeError('an identifier needs a name');
  for (const n of names) {
    if (n === '') throw new TypeError('an identifier cannot be empty');
    checkText(n, 'identifier');
  }
  return names.map((n) => '"' + n.replace(/"/g, '""') + '"').join('.');
}

/** A quoted, possibly qualified identifier: ident('public', 'users') is "public"."users". */
export function ident(...names: readonly string[]): Fragment {
  return fragment([quoteIdent(...names)]);
}

/**
 * A type name as pg_catalog.format_type() printed it (a column's type, for casts): the
 * server quoted every identifier in it, so it is SQL as it stands.
 */
export function catalogType(formatted: string): Fragment {
  checkText(formatted, 'type name');
  if (formatted === '' || formatted.includes("'")) throw new TypeError('not a type name as format_type() prints it');
  return fragment([formatted]);
}

/**
 * A string constant. One holding a backslash is written as an E'' literal, which reads the
 * same whatever standard_conforming_strings says (a plain '' literal would not when it is off).
 */
export function quoteLiteral(text: string): string {
  checkText(text, 'literal');
  return text.includes('\\') ? "E'" + text.replace(/\\/g, '\\\\').replace(/'/g, "''") + "'" : "'" + text.replace(/'/g, "''") + "'";
}

/** A constant from pgseal's definitions (a context, a normaliser's name), written as a literal so the planner folds it. */
export function literal(text: string): Fragment {
  return fragment([quoteLiteral(text)]);
}

/** An integer constant. */
export function int(n: number): Fragment {
  if (!Number.isSafeInteger(n)) throw new TypeError('int() takes a whole number');
  return fragment([String(n)]);
}

/** A bound parameter. */
export function value(v: unknown): Fragment {
  return fragment([{ value: v, secret: false }]);
}

/** A bound parameter pgseal made and owns (a key, a copy of a plaintext): zeroed once the statement settles. */
export function secret(buffer: Buffer): Fragment {
  return fragment([{ value: buffer, secret: true }]);
}

/** A named placeholder, given a value each time the compiled statement runs; `secret`: a Buffer zeroed after the run. */
export function slot(name: string, options: { secret?: boolean } = {}): Fragment {
  if (!/^[a-z][a-z0-9_]*$/.test(name)) throw new TypeError(`a slot name is lower case: ${JSON.stringify(name)}`);
  return fragment([{ slot: name, secret: options.secret ?? false }]);
}

/**
 * A name from a closed set in pgseal's code (its own function names, pg_catalog's type
 * names), written bare: a lower-case identifier, which needs no quotes after a schema.
 */
export function bareName(name: string): Fragment {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new TypeError(`not a bare name: ${JSON.stringify(name)}`);
  return fragment([name]);
}

/** Fragments joined with a separator written in pgseal's code. */
export function join(parts: readonly Fragment[], separator: ', ' | ' AND ' | ' OR ' | ' ' | ' UNION ALL ' = ', '): Fragment {
  const chunks: Chunk[] = [];
  parts.forEach((p, i) => {
    if (i > 0) append(chunks, separator);
    for (const c of p.chunks) append(chunks, c);
  });
  return fragment(chunks);
}

/** Nothing: for optional parts of a statement. */
export const empty = (): Fragment => EMPTY;

type Param = { readonly value: unknown; readonly secret: boolean } | { readonly slot: string; readonly secret: boolean };

/**
 * A fragment turned into statement text once: placeholders numbered in order of first use
 * (a prepared statement may not declare a parameter it does not use), a named slot used
 * twice is one parameter. Build it once per statement shape, bind it per call.
 */
export class Compiled {
  readonly text: string;
  readonly #params: Param[];
  /** the named slots, in parameter order */
  readonly slots: readonly string[];

  /** values bound when the statement was built (not slots): a statement compiled once and run again must have none */
  readonly fixedValues: number;

  constructor(fragment: Fragment) {
    let text = '';
    const params: Param[] = [];
    // a named slot used twice is one parameter, and so is one value fragment used twice
    const numbers = new Map<string | object, number>();
    for (const c of fragment.chunks) {
      if (typeof c === 'string') {
        text += c;
        continue;
      }
      const id = 'slot' in c ? c.slot : c;
      let n = numbers.get(id);
      if (n === undefined) numbers.set(id, (n = params.push(c)));
      text += '$' + n;
    }
    this.text = text;
    this.#params = params;
    this.slots = params.flatMap((p) => ('slot' in p ? [p.slot] : []));
    this.fixedValues = params.length - this.slots.length;
  }

  /** The statement with its named slots filled; a slot without a value (undefined) is an error, NULL is given as null. */
  bind(named: Readonly<Record<string, unknown>> = {}): Statement {
    const values: unknown[] = new Array(this.#params.length);
    const secrets: Buffer[] = [];
    this.#params.forEach((p, i) => {
      const v = 'slot' in p ? named[p.slot] : p.value;
      if (v === undefined) {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'slot' in p ? `no value for ${p.slot}` : 'an undefined value in a statement', { hint: 'pass null for SQL NULL' });
      }
      values[i] = v;
      if (p.secret && Buffer.isBuffer(v)) secrets.push(v);
    });
    return new Statement(this.text, values, secrets);
  }
}

export function compile(fragment: Fragment): Compiled {
  return new Compiled(fragment);
}

export type Runner = Sql | TransactionSql;

/** A statement ready to run: its text, its values, and the secrets among them. */
export class Statement {
  constructor(
    readonly text: string,
    readonly values: readonly unknown[],
    readonly secrets: readonly Buffer[],
  ) {}

  /**
   * Runs it (prepared), then zeroes its secrets, whether it succeeded or not. The query is
   * sent at once (execute()), not when a later microtask awaits it, so that statements issued
   * one after the other reach the connection in that order (exec/transaction.ts pipelines
   * BEGIN + guard, this statement and COMMIT).
   */
  async run<R = Record<string, unknown>>(db: Runner): Promise<R[] & { count: number; columns?: ReadonlyArray<{ name: string }> }> {
    try {
      const query = db.unsafe(this.text, this.values as never[], { prepare: true });
      (query as { execute?: () => unknown }).execute?.();
      return (await query) as never;
    } finally {
      this.zero();
    }
  }

  /** Zeroes the secrets now (a statement built but never run). */
  zero(): void {
    for (const s of this.secrets) s.fill(0);
  }
}

/** Compiles and binds a one-off statement. */
export function statement(fragment: Fragment, named?: Readonly<Record<string, unknown>>): Statement {
  return compile(fragment).bind(named);
}
