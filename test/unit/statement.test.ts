// The statement builder (src/statement/): the one way pgseal writes SQL text.

import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { call, cast, operand, text, toFragment, typedLike } from '../../src/statement/expr.js';
import { bareName, catalogType, compile, Fragment, ident, int, join, literal, quoteIdent, secret, slot, sql, statement, value, type Runner } from '../../src/statement/sql.js';

/** A runner that records what it was asked to run, and fails when told to. */
function recorder(fail = false) {
  const seen: Array<{ text: string; values: unknown[]; copies: string[] }> = [];
  const runner = {
    unsafe: async (text: string, values: unknown[]) => {
      seen.push({ text, values, copies: values.map((v) => (Buffer.isBuffer(v) ? v.toString('hex') : String(v))) });
      if (fail) throw new Error('boom');
      return Object.assign([], { count: 0 });
    },
  } as unknown as Runner;
  return { runner, seen };
}

describe('the statement builder', () => {
  it('numbers values in order of first use; a named slot or a value fragment used twice is one parameter', () => {
    const shared = value(7);
    const c = compile(sql`SELECT ${slot('a')}, ${value('x')}, ${slot('b')}, ${slot('a')}, ${shared}, ${shared}`);
    expect(c.text).toBe('SELECT $1, $2, $3, $1, $4, $4');
    expect(c.slots).toEqual(['a', 'b']);
    expect(c.fixedValues).toBe(2);
    expect(c.bind({ a: 1, b: null }).values).toEqual([1, 'x', null, 7]);
  });

  it('refuses a slot without a value; null is SQL NULL', () => {
    const c = compile(sql`SELECT ${slot('pk')}`);
    expect(() => c.bind({})).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
    expect(() => c.bind({ pk: undefined })).toThrow(/no value for pk/);
    expect(c.bind({ pk: null }).values).toEqual([null]);
    expect(() => statement(sql`SELECT ${value(undefined)}`)).toThrow(/undefined/);
  });

  it('takes text only from its own template strings', () => {
    expect(() => sql`SELECT ${'1; drop table x' as unknown as Fragment}`).toThrow(TypeError);
    expect(() => (sql as unknown as (s: string[]) => Fragment)(['SELECT 1'])).toThrow(TypeError);
    expect(() => new (Fragment as unknown as new (a: symbol, c: string[]) => Fragment)(Symbol('fragment'), ['SELECT 1'])).toThrow(TypeError);
  });

  it('quotes identifiers and writes constants as literals that read the same whatever standard_conforming_strings says', () => {
    expect(compile(sql`${ident('pub"lic', 'Ünï')}`).text).toBe('"pub""lic"."Ünï"');
    expect(quoteIdent('a', 'b')).toBe('"a"."b"');
    expect(compile(literal("it's")).text).toBe("'it''s'");
    expect(compile(literal('back\\slash')).text).toBe("E'back\\\\slash'");
    expect(compile(int(42)).text).toBe('42');
    expect(() => int(1.5)).toThrow(TypeError);
    expect(() => ident('')).toThrow(TypeError);
    expect(() => literal('nul\u0000')).toThrow(TypeError);
    expect(() => bareName('Upper')).toThrow(TypeError);
    expect(() => catalogType("text'; --")).toThrow(TypeError);
    expect(compile(join([int(1), int(2)], ' AND ')).text).toBe('1 AND 2');
  });

  it('zeroes the secrets of a statement once it settles, after the driver saw them, and on failure too', async () => {
    const key = Buffer.from('00112233', 'hex');
    const named = Buffer.from('44556677', 'hex');
    const ok = recorder();
    await statement(sql`SELECT ${secret(key)}, ${slot('k', { secret: true })}`, { k: named }).run(ok.runner);
    expect(ok.seen[0]!.copies).toEqual(['00112233', '44556677']);
    expect([...key, ...named].every((b) => b === 0)).toBe(true);
    const again = Buffer.from('8899', 'hex');
    const failing = recorder(true);
    await expect(statement(sql`SELECT ${secret(again)}`).run(failing.runner)).rejects.toThrow('boom');
    expect([...again].every((b) => b === 0)).toBe(true);
  });
});

describe('the expression tree as text', () => {
  it('qualifies pgseal functions and types, parenthesises operands it casts, and skips a cast to the type already given', () => {
    const e = call<Fragment>('decrypt_text_with', [operand(ident('email')), text<Fragment>('public.t.email'), cast(operand(slot('ks')), 'bytea')], 'text');
    expect(compile(toFragment(cast(e, 'text'))).text).toBe(`pgseal.decrypt_text_with("email", 'public.t.email', ($1)::pg_catalog.bytea)`);
    expect(compile(toFragment(cast(e, 'jsonb'))).text).toBe(`pgseal.decrypt_text_with("email", 'public.t.email', ($1)::pg_catalog.bytea)::pg_catalog.jsonb`);
    expect(compile(toFragment(cast(operand(value(['a'])), 'text', true))).text).toBe('($1)::pg_catalog.text[]');
    expect(compile(toFragment(typedLike(operand(value(7)), 'public', 't', 'id'))).text).toBe('COALESCE($1, (NULL::"public"."t")."id")');
  });
});
