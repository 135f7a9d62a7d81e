// What is on disk: the table's own heap pages, read back as bytes, hold no plaintext.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/keys/keyring.js';
import { LocalMasterKey } from '../../src/keys/master-key.js';
import { initKeys } from '../../src/keys/registry.js';
import { withKeys } from '../../src/exec/transaction.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let ring: Keyring;
let dataVersion: number;
const people = [
  { email: 'mario.rossi@example.it', phone: '+393471234567', cf: 'RSSMRA85T10A562S' },
  { email: 'giulia.bianchi@example.it', phone: '+390612345678', cf: 'BNCGLI90A41H501X' },
  { email: 'luca.verdi@example.it', phone: '+393351112233', cf: 'VRDLCU78M12F205Z' },
];

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  const master = new LocalMasterKey(randomBytes(32));
  dataVersion = (await initKeys(db.sql, master)).version!;
  ring = new Keyring(db.sql, master);
  await db.sql`create table customers (id int primary key, email bytea not null, phone bytea not null, tax_code bytea not null)`;
  await withKeys(db.sql, ring, async (tx) => {
    for (const [i, p] of people.entries()) {
      await tx`insert into customers values (${i + 1},
        pgseal.encrypt_text(${p.email}, 'public.customers.email'),
        pgseal.encrypt_text(${p.phone}, 'public.customers.phone'),
        pgseal.encrypt_text(${p.cf}, 'public.customers.tax_code'))`;
    }
  });
});
afterAll(async () => {
  ring?.close();
  await db?.drop();
});

const needles = people.flatMap((p) => [p.email, p.email.split('@')[0]!, p.phone, p.phone.slice(3), p.cf, p.cf.toLowerCase()]);

describe('at rest', () => {
  it('a raw SELECT of the encrypted columns shows only envelopes, no plaintext bytes', async () => {
    const rows = await db.sql<{ email: Buffer; phone: Buffer; tax_code: Buffer; v: number }[]>`
      select email, phone, tax_code, pgseal.key_version_of(email) as v from customers`;
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row.v).toBe(dataVersion);
      for (const raw of [row.email, row.phone, row.tax_code]) {
        expect(raw[0]).toBe(1);
        for (const n of needles) expect(raw.includes(Buffer.from(n))).toBe(false);
      }
    }
  });

  it('the table file on disk holds no plaintext', async () => {
    await db.sql`checkpoint`;
    const [{ path }] = (await db.sql`select pg_relation_filepath('customers') as path`) as unknown as [{ path: string }];
    const [{ bytes }] = (await db.sql`select pg_read_binary_file(${path}) as bytes`) as unknown as [{ bytes: Buffer }];
    expect(bytes.length).toBeGreaterThan(0);
    // the file does hold the rows: their envelopes are there
    const [{ email }] = (await db.sql`select email from customers where id = 1`) as unknown as [{ email: Buffer }];
    expect(bytes.includes(email.subarray(0, 40))).toBe(true);
    for (const n of needles) expect(bytes.includes(Buffer.from(n)), n).toBe(false);
  });

  it('decrypts back through the keys', async () => {
    const rows = await withKeys(db.sql, ring, (tx) => tx<{ email: string; phone: string; cf: string }[]>`
      select pgseal.decrypt_text(email, 'public.customers.email') as email,
             pgseal.decrypt_text(phone, 'public.customers.phone') as phone,
             pgseal.decrypt_text(tax_code, 'public.customers.tax_code') as cf
        from customers order by id`);
    expect(rows).toEqual(people);
  });
});
