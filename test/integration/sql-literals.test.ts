// Literals the helpers and the re-encryption engine put in generated SQL (contexts built
// from names) read back exactly, whatever standard_conforming_strings says.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { quoteLiteral as literal } from '../../src/statement/sql.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe('literal()', () => {
  const samples = ["plain", "it's", "back\\slash", "tricky\\'; select 1; --", "\\\\'\\", 'percent % and "quotes"', 'ünïcödé'];
  for (const scs of ['on', 'off']) {
    it(`reads back every sample with standard_conforming_strings = ${scs}`, async () => {
      const got = await db.sql.begin(async (tx) => {
        await tx.unsafe(`set local standard_conforming_strings = ${scs}`);
        await tx.unsafe('set local escape_string_warning = off');
        return tx.unsafe<{ v: string }[]>(samples.map((s) => `select ${literal(s)}::text as v`).join(' union all '));
      });
      expect(got.map((r) => r.v)).toEqual(samples);
    });
  }
});
