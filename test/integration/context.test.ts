// The context rule exists once per language: src/columns/context.ts in TypeScript,
// pgseal.scope_context / row_context / _context_expr in SQL. Both must give the same
// context for every combination (column, row, scope, both), also for names with quotes and
// non-ASCII, and a value sealed under one must open under the other.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { contextExpr, contextOf } from '../../src/columns/context.js';
import { protectedColumn, type ProtectedColumn } from '../../src/columns/model.js';
import { column, defineTable } from '../../src/helpers/define.js';
import { pgseal, type Pgseal } from '../../src/index.js';
import { initKeys } from '../../src/keys/registry.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { loadRegistry } from '../../src/registry/load.js';
import { createView, protectColumn } from '../../src/registry/protect.js';
import { operand, toFragment } from '../../src/statement/expr.js';
import { compile, ident, quoteIdent, sql as q } from '../../src/statement/sql.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

const SCHEMA = 'Sché"ma ünï';
const TABLE = 'Kün"den';
const qualified = quoteIdent(SCHEMA, TABLE);

let db: TestDatabase;
let seal: Pgseal;
const master = new LocalMasterKey(randomBytes(32));

// one column per combination; the scope column and the key hold awkward text too
const COMBINATIONS = {
  'plain "colonna"': {},
  'per riga': { context: 'row' as const },
  'per tenant': { scopeColumn: 'tenant' },
  'beides ü': { context: 'row' as const, scopeColumn: 'tenant' },
};

const definition = defineTable({
  schema: SCHEMA,
  name: TABLE,
  primaryKey: 'id',
  columns: {
    id: column.plain<string>(),
    tenant: column.plain<string>(),
    'plain "colonna"': column.text(),
    'per riga': column.text({ context: 'row' }),
    'per tenant': column.text({ scopeColumn: 'tenant' }),
    'beides ü': column.text({ context: 'row', scopeColumn: 'tenant' }),
  },
});

const ROWS = [
  { id: "k-1 'quoted'", tenant: 'acme' },
  { id: 'ключ-2', tenant: 'globex' },
];

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await db.sql.unsafe(`create schema ${quoteIdent(SCHEMA)}; create table ${qualified} (id text primary key, tenant text not null)`);
  for (const [name, o] of Object.entries(COMBINATIONS)) {
    await protectColumn(db.sql, { table: qualified, column: name, ...('scopeColumn' in o ? { scopeColumn: o.scopeColumn } : {}), ...('context' in o ? { context: o.context } : {}) });
  }
  await createView(db.sql, qualified);
  for (const scope of ['default', 'acme', 'globex']) await initKeys(db.sql, master, scope).catch(() => undefined);
  seal = pgseal({ sql: db.sql, masterKey: master });
});
afterAll(async () => {
  seal?.keyring.close();
  await db?.drop();
});

const models = (): ProtectedColumn[] =>
  Object.entries(definition.columns).flatMap(([name, d]) => (d.kind === 'encrypted' ? [protectedColumn(SCHEMA, TABLE, name, d)] : []));

describe('the context rule', () => {
  it('the registry and a table definition give the same model', async () => {
    const registry = await loadRegistry(db.sql);
    const info = registry.get(`${SCHEMA}.${TABLE}`)!;
    for (const m of models()) expect(info.protected.get(m.column)).toEqual(m);
    await seal.table(definition).verify();
  });

  it('TypeScript (string and SQL expression) and SQL (the view generator) give the same context for every combination', async () => {
    for (const r of ROWS) await db.sql.unsafe(`insert into ${qualified} (id, tenant) values ($1, $2)`, [r.id, r.tenant]);
    try {
      for (const m of models()) {
        // SQL's rule: the expression the decrypted view is built with, over the row aliased t
        const [gen] = await db.sql<{ e: string }[]>`
          select pgseal._context_expr(c, 't', 'id') as e from pgseal.columns c
           where c.table_schema = ${SCHEMA} and c.table_name = ${TABLE} and c.column_name = ${m.column}`;
        // TypeScript's rule, rendered as SQL over the same row
        const ts = toFragment(contextExpr(m, { key: () => operand(q`t.${ident('id')}`), scopeValue: () => operand(q`t.${ident('tenant')}`) }));
        const rows = await db.sql.unsafe<{ id: string; tenant: string; from_sql: string; from_ts: string }[]>(
          `select t.id, t.tenant, ${gen!.e} as from_sql, ${compile(ts).text} as from_ts from ${qualified} as t order by t.id`);
        expect(rows).toHaveLength(ROWS.length);
        for (const r of rows) {
          const expected = contextOf(m, { scope: r.tenant, key: r.id });
          expect({ column: m.column, sql: r.from_sql, ts: r.from_ts }).toEqual({ column: m.column, sql: expected, ts: expected });
        }
      }
      // the rule itself, spelled out once here: separators '@' then '#'
      const both = models().find((m) => m.column === 'beides ü')!;
      expect(contextOf(both, { scope: 'acme', key: 'k' })).toBe(`${SCHEMA}.${TABLE}.beides ü@acme#k`);
    } finally {
      await db.sql.unsafe(`delete from ${qualified}`);
    }
  });

  it('a value written by the helpers opens through the view, rewritten SQL and client-side under the string context, and the reverse', async () => {
    const t = seal.table(definition);
    const values = (r: (typeof ROWS)[number]) => ({ 'plain "colonna"': `a ${r.id}`, 'per riga': `b ${r.id}`, 'per tenant': `c ${r.id}`, 'beides ü': `d ${r.id}` });
    await t.insert({ ...ROWS[0]!, ...values(ROWS[0]!) });
    // the other row through the view: SQL's rule seals it
    await seal.begin((tx) => tx.unsafe(`insert into ${quoteIdent(SCHEMA, `${TABLE}_decrypted`)} (id, tenant, "plain ""colonna""", "per riga", "per tenant", "beides ü") values ($1, $2, $3, $4, $5, $6)`,
      [ROWS[1]!.id, ROWS[1]!.tenant, ...Object.values(values(ROWS[1]!))]));
    for (const r of ROWS) {
      expect(await t.findByPk(r.id)).toEqual({ ...r, ...values(r) });
      const [viewed] = await seal.begin((tx) => tx.unsafe(`select * from ${quoteIdent(SCHEMA, `${TABLE}_decrypted`)} where id = $1`, [r.id]));
      expect(viewed).toEqual({ ...r, ...values(r) });
      const [rewritten] = await seal.query(`select * from ${qualified} where id = $1`, [r.id]);
      expect(rewritten).toEqual({ ...r, ...values(r) });
      // client-side, with the context as a string: the raw envelope opens only under it
      const [raw] = await db.sql.unsafe<Record<string, Buffer>[]>(`select * from ${qualified} where id = $1`, [r.id]);
      for (const m of models()) {
        const context = contextOf(m, { scope: r.tenant, key: r.id });
        expect(await seal.decryptText(raw![m.column]!, context)).toBe((values(r) as Record<string, string>)[m.column]);
        await expect(seal.decryptText(raw![m.column]!, context + 'x')).rejects.toMatchObject({ sqlstate: 'PS003' });
      }
    }
  });
});
