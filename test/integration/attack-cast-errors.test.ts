// Issue 12, item 5: errors of casts of decrypted values carry no plaintext. A numeric or jsonb
// column whose sealed plaintext is not valid for its type (written bypassing pgseal's checks:
// pgseal.encrypt_text in raw SQL) is read through the decrypted view and through the column
// model's decrypt expression. The error is typed (PS017, INVALID_STORED_VALUE) and neither the
// client's error nor the server's log holds any part of the value. Client-side decoding
// (invalid JSON, invalid UTF-8, invalid numeric) is typed the same way.

import { randomBytes } from 'node:crypto';
import type { Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeValue, encodeValue } from '../../src/columns/values.js';
import { decryptExpr } from '../../src/columns/expressions.js';
import { ErrorCodes, PgsealError } from '../../src/errors.js';
import { withKeys } from '../../src/exec/transaction.js';
import { Keyring } from '../../src/keys/keyring.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { initKeys } from '../../src/keys/registry.js';
import { createView, protectColumn } from '../../src/registry/protect.js';
import { operand, toFragment } from '../../src/statement/expr.js';
import { ident, int, sql as q, statement } from '../../src/statement/sql.js';
import { connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';
import { serverLog, type ServerLog } from '../support/server-log.js';
import { protectedColumn, type ProtectedColumn, type ValueType } from '../../src/columns/model.js';

let db: TestDatabase;
let app: Sql;
let keyring: Keyring;
let roleName: string;
let log: ServerLog | string;
const master = new LocalMasterKey(randomBytes(32));
const BAD_NUMERIC = 'card 4111-1111-1111-1111';
const BAD_JSON = '{"iban": "IT60X0542811101000000123456"';
const NO_PLAINTEXT = [BAD_NUMERIC, '4111', BAD_JSON, 'IT60X', '0542811101'];

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await db.sql`create table payments (id int primary key, amount bytea, meta bytea)`;
  await protectColumn(db.sql, { table: 'payments', column: 'amount', valueType: 'numeric' });
  await protectColumn(db.sql, { table: 'payments', column: 'meta', valueType: 'jsonb' });
  await createView(db.sql, 'payments');
  await initKeys(db.sql, master);
  const role = await createRole(db.admin, 'pgseal_t_cast');
  roleName = role.name;
  await db.sql.unsafe(`grant pgseal_app to "${role.name}"; grant select, insert, update on payments, payments_decrypted to "${role.name}"`);
  app = connectQuiet(db.urlAs(role.name, role.password), { max: 2 });
  keyring = new Keyring(app, master);
  // sealed correctly, but not a numeric / not JSON: what raw SQL can write past the helpers
  await withKeys(app, keyring, (tx) => tx`
    insert into payments (id, amount, meta) values
      (1, pgseal.encrypt_text(${BAD_NUMERIC}, 'public.payments.amount'), pgseal.encrypt_text('{"ok": true}', 'public.payments.meta')),
      (2, pgseal.encrypt_text('12.50', 'public.payments.amount'), pgseal.encrypt_text(${BAD_JSON}, 'public.payments.meta')),
      (3, pgseal.encrypt_text(' -1.5e3 ', 'public.payments.amount'), pgseal.encrypt_text('[1, {"a": null}]', 'public.payments.meta')),
      (4, null, null)`);
  log = await serverLog(db.sql);
});

afterAll(async () => {
  keyring?.close();
  await app?.end();
  await db?.sql.unsafe(`drop owned by "${roleName}"`).catch(() => undefined);
  await db?.drop();
  const admin = connectQuiet(db.url.replace(/\/[^/]*$/, '/postgres'), { max: 1 });
  await admin.unsafe(`drop role if exists "${roleName}"`).catch(() => undefined);
  await admin.end();
});

const column = (name: 'amount' | 'meta', valueType: ValueType): ProtectedColumn =>
  protectedColumn('public', 'payments', name, { valueType, scope: 'default', contextMode: 'column', scopeColumn: null, searchable: false, normalizer: 'none', blindIndexColumn: null, blindIndexBytes: 16 });
const noRow = { key: () => { throw new Error('no row context'); }, scopeValue: () => { throw new Error('no scope column'); } };

/** The error of a read, with every field it carries, as the application would log it. */
async function failure(work: () => Promise<unknown>): Promise<{ error: PgsealError; text: string }> {
  const error = await work().then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(PgsealError);
  const text = JSON.stringify(error, Object.getOwnPropertyNames(error as object));
  for (const part of NO_PLAINTEXT) expect(text).not.toContain(part);
  return { error: error as PgsealError, text };
}

async function expectLogClean(mark: number): Promise<void> {
  const logged = await (log as ServerLog).since(mark);
  expect(logged).toMatch(/PS017|not a valid/); // the failure was logged ...
  for (const part of NO_PLAINTEXT) expect(logged).not.toContain(part); // ... without the value
}

describe('a stored value invalid for its column type', () => {
  it('read through the decrypted view: PS017, no plaintext in the error', async () => {
    for (const [id, type] of [[1, 'numeric'], [2, 'jsonb']] as const) {
      const { error } = await failure(() => withKeys(app, keyring, (tx) => tx`select * from payments_decrypted where id = ${id}`));
      expect(error.code).toBe(ErrorCodes.INVALID_STORED_VALUE);
      expect(error.sqlstate).toBe('PS017');
      expect(error.message).toContain(type);
      expect(error.hint).toMatch(/bypassing pgseal/);
    }
  });

  it('read through decryptExpr (the model\'s expression, both key routes): PS017, no plaintext', async () => {
    for (const [id, name, type] of [[1, 'amount', 'numeric'], [2, 'meta', 'jsonb']] as const) {
      const c = column(name, type);
      const expr = toFragment(decryptExpr(c, operand(ident('p', name)), noRow));
      const { error } = await failure(() => withKeys(app, keyring, (tx) =>
        statement(q`select ${expr} as v from public.payments as p where p.id = ${int(id)}`).run(tx as unknown as Sql)));
      expect(error.code).toBe(ErrorCodes.INVALID_STORED_VALUE);
    }
  });

  it('leaves no part of the value in the server log', async (ctx) => {
    if (typeof log === 'string') return ctx.skip(log);
    const mark = await log.mark();
    await failure(() => withKeys(app, keyring, (tx) => tx`select amount from payments_decrypted where id = 1`));
    await failure(() => withKeys(app, keyring, (tx) => tx`select meta from payments_decrypted where id = 2`));
    await expectLogClean(mark);
  });

  it('valid values and NULLs still read as their types, in parallel workers too', async () => {
    const rows = await withKeys(app, keyring, (tx) => tx<{ id: number; amount: string | null; meta: unknown }[]>`
      select id, amount, meta from payments_decrypted where id in (3, 4) order by id`);
    expect(rows).toEqual([{ id: 3, amount: '-1500', meta: [1, { a: null }] }, { id: 4, amount: null, meta: null }]);
    const [plan] = await db.sql<{ p: string }[]>`
      select p from (select pg_get_functiondef('pgseal.value_jsonb(text)'::regprocedure) as p) s`;
    expect(plan!.p).toContain('PARALLEL SAFE');
    const procs = await db.sql<{ proname: string; proparallel: string }[]>`
      select proname, proparallel from pg_proc where pronamespace = 'pgseal'::regnamespace and proname in ('value_numeric', 'value_jsonb', '_is_json') order by 1`;
    expect(procs.map((p) => p.proparallel)).toEqual(['s', 's', 's']);
  });
});

describe('client-side decoding', () => {
  const numeric = column('amount', 'numeric');
  const json = column('meta', 'jsonb');
  const text = column('amount', 'text');

  it('invalid JSON, invalid UTF-8 and invalid numeric are PgsealErrors that show no value bytes', () => {
    const cases: Array<[ProtectedColumn, unknown]> = [
      [json, BAD_JSON],
      [text, Buffer.from([0x34, 0x31, 0x31, 0x31, 0xff, 0xfe])],
      [numeric, BAD_NUMERIC],
    ];
    for (const [c, wire] of cases) {
      let caught: unknown;
      try {
        decodeValue(c, wire);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(PgsealError);
      expect((caught as PgsealError).code).toBe(ErrorCodes.INVALID_STORED_VALUE);
      const all = JSON.stringify(caught, Object.getOwnPropertyNames(caught as object));
      for (const part of [...NO_PLAINTEXT, '4111', 'fffe', '0xff']) expect(all).not.toContain(part);
    }
    expect(decodeValue(json, '{"a":1}')).toEqual({ a: 1 });
    expect(decodeValue(numeric, '12.50')).toBe('12.50');
    expect(decodeValue(text, Buffer.from('è', 'utf8'))).toBe('è');
  });

  it('the helpers refuse a numeric that is not one before sealing, without echoing it', () => {
    expect(() => encodeValue(numeric, BAD_NUMERIC)).toThrow(PgsealError);
    try {
      encodeValue(numeric, BAD_NUMERIC);
    } catch (e) {
      expect((e as PgsealError).message).not.toContain('4111');
    }
    expect(encodeValue(numeric, 12.5).toString()).toBe('12.5');
  });
});
