// Registry, normalisers and blind indexes (SQL and Node agree), and the decrypted views
// used as a role that owns nothing.

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blindIndex, ErrorCodes, initKeys, listProtectedColumns, LocalMasterKey, normalize, pgseal, protectColumn, unprotectColumn, createView, type Normalizer, type Pgseal } from '../../src/index.js';
import { Keyring } from '../../src/keys/keyring.js';
import { withKeys } from '../../src/exec/transaction.js';
import { runCli } from '../support/cli.js';
import { connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let seal: Pgseal;
const master = new LocalMasterKey(randomBytes(32));

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master);
  seal = pgseal({ sql: db.sql, masterKey: master });
});
afterAll(async () => {
  seal?.close();
  await db?.drop();
});

const samples = [
  'Mario.Rossi@Example.IT', '  padded@example.it\t\n', 'ÉLODIE@exemple.fr', '+39 347 123 4567', '0039 (06) 1234-5678', '347.123.4567', '+1 (555) 010-9999',
  'rssmra85t10a562s', ' BNCGLI90A41H501X ', 'ß straße', '', ' ', 'x\u0000y', '🇮🇹 emoji', 'İstanbul', 'ǅ title case',
];
const normalizers: Normalizer[] = ['none', 'trim', 'email', 'phone', 'upper'];

describe('normalisers and blind indexes', () => {
  it('normalise identically in SQL and Node', async () => {
    const values = samples.filter((s) => !s.includes('\u0000')); // SQL text cannot hold NUL
    for (const n of normalizers) {
      const [row] = await db.sql<{ out: string[] }[]>`select array(select pgseal.normalize(v, ${n}) from unnest(${values}::text[]) with ordinality u(v, i) order by i) as out`;
      expect(row!.out, n).toEqual(values.map((v) => normalize(v, n)));
    }
    await expect(db.sql`select pgseal.normalize('x', 'soundex')`).rejects.toMatchObject({ code: '22023' });
  });

  it('compute the same blind index in SQL and Node, per normaliser, context and length', async () => {
    const indexKey = await seal.keyring.indexKey('default');
    const values = samples.filter((s) => !s.includes('\u0000'));
    for (const n of normalizers) {
      for (const bytes of [8, 16, 32]) {
        const rows = await seal.begin((tx) => tx<{ b: Buffer }[]>`
          select pgseal.blind_index(v, ${n}, 'public.t.c', 'default', ${bytes}) as b from unnest(${values}::text[]) with ordinality u(v, i) order by i`);
        expect(rows.map((r) => r.b.toString('hex')), `${n}/${bytes}`).toEqual(values.map((v) => blindIndex(indexKey!, v, n, 'public.t.c', bytes).toString('hex')));
      }
    }
    const [other] = await seal.begin((tx) => tx<{ a: Buffer; b: Buffer }[]>`
      select pgseal.blind_index('x', 'none', 'public.t.c') as a, pgseal.blind_index('x', 'none', 'public.t.d') as b`);
    expect(other!.a.equals(other!.b)).toBe(false); // the same value in two columns does not correlate
  });

  it('keep NULL arrays NULL, so = ANY(NULL) stays unknown as on a plaintext column', async () => {
    const [row] = await seal.begin((tx) => tx<{ b: unknown; n: unknown }[]>`
      select pgseal.blind_index_array(null, 'none', 'c') as b, pgseal.normalize_array(null, 'email') as n`);
    expect(row).toEqual({ b: null, n: null });
    const [empty] = await seal.begin((tx) => tx<{ b: unknown[] }[]>`select pgseal.blind_index_array('{}'::text[], 'none', 'c') as b`);
    expect(empty!.b).toEqual([]);
  });

  it('need the index key: none in the transaction is PS001, none for the scope is PS008', async () => {
    await expect(db.sql`select pgseal.blind_index('x', 'none', 'c')`).rejects.toMatchObject({ code: 'PS001' });
    await expect(seal.begin((tx) => tx`select pgseal.blind_index('x', 'none', 'c', 'tenant-x')`)).rejects.toMatchObject({ code: ErrorCodes.NO_INDEX_KEY, sqlstate: 'PS008' });
  });
});

describe('registry', () => {
  it('protect adds the column, its blind index and index; refuses what cannot work; unprotect undoes it', async () => {
    await db.sql`create table people (id int primary key, email text, tenant text)`;
    await expect(protectColumn(db.sql, { table: 'people', column: 'email' })).rejects.toMatchObject({ code: ErrorCodes.CANNOT_PROTECT, sqlstate: 'PS009' });
    await expect(protectColumn(db.sql, { table: 'nope', column: 'email' })).rejects.toMatchObject({ code: ErrorCodes.TABLE_NOT_FOUND });
    await expect(protectColumn(db.sql, { table: 'people', column: 'secret', scopeColumn: 'missing' })).rejects.toMatchObject({ sqlstate: 'PS009' });
    const c = await protectColumn(db.sql, { table: 'public.people', column: 'email_enc', searchable: true, normalizer: 'email' });
    expect(c).toMatchObject({ schema: 'public', table: 'people', column: 'email_enc', blindIndexColumn: 'email_enc_bidx', blindIndexBytes: 16 });
    expect(await protectColumn(db.sql, { table: 'people', column: 'email_enc', searchable: true, normalizer: 'email' })).toMatchObject({ column: 'email_enc' });
    await expect(protectColumn(db.sql, { table: 'people', column: 'email_enc', searchable: true, normalizer: 'trim' })).rejects.toMatchObject({ sqlstate: 'PS009' });
    const cols = await db.sql<{ column_name: string; data_type: string }[]>`
      select column_name, data_type from information_schema.columns where table_name = 'people' order by ordinal_position`;
    expect(cols.map((x) => `${x.column_name}:${x.data_type}`)).toEqual(['id:integer', 'email:text', 'tenant:text', 'email_enc:bytea', 'email_enc_bidx:bytea']);
    const [idx] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_indexes where tablename = 'people' and indexdef like '%email_enc_bidx%'`;
    expect(idx!.n).toBe(1);
    await db.sql`create table quoted ("Id" int, "Weird ""Name""" bytea)`;
    await expect(protectColumn(db.sql, { table: '"quoted"', column: 'Weird "Name"', context: 'row' })).rejects.toMatchObject({ sqlstate: 'PS009' }); // no primary key
    expect(await protectColumn(db.sql, { table: '"quoted"', column: 'Weird "Name"' })).toMatchObject({ column: 'Weird "Name"' });
    expect((await listProtectedColumns(db.sql)).map((x) => `${x.table}.${x.column}`)).toEqual(['people.email_enc', 'quoted.Weird "Name"']);
    await unprotectColumn(db.sql, 'people', 'email_enc');
    await expect(unprotectColumn(db.sql, 'people', 'email_enc')).rejects.toMatchObject({ code: ErrorCodes.NOT_PROTECTED });
    await expect(protectColumn(db.sql, { table: 'people', column: 'x', searchable: true, blindIndexBytes: 4 })).rejects.toMatchObject({ code: ErrorCodes.CANNOT_PROTECT });
    await db.sql`alter table people add column phone_bidx text`;
    await expect(protectColumn(db.sql, { table: 'people', column: 'phone', searchable: true })).rejects.toMatchObject({ code: ErrorCodes.CANNOT_PROTECT });
    await expect(protectColumn(db.sql, { table: 'people', column: 'c#1' })).rejects.toMatchObject({ code: ErrorCodes.CANNOT_PROTECT });
    const [bidx] = await db.sql<{ n: number }[]>`select count(*)::int as n from information_schema.columns where table_name = 'people' and column_name = 'email_enc_bidx'`;
    expect(bidx!.n).toBe(0);
  });

  it('through the CLI: protect, columns list --json, unprotect', async () => {
    await db.sql`create table accounts (id int primary key, owner text)`;
    const env = { DATABASE_URL: db.url };
    const p = await runCli(['protect', '--table', 'accounts', '--column', 'iban', '--searchable', '--normalize', 'trim', '--index-bytes', '12'], env);
    expect(p.stderr).toBe('');
    expect(p.stdout).toContain('public.accounts.iban is protected');
    const list = JSON.parse((await runCli(['columns', 'list', '--json'], env)).stdout) as Array<{ table: string; column: string; blindIndexBytes: number }>;
    expect(list.find((c) => c.table === 'accounts')).toMatchObject({ column: 'iban', blindIndexBytes: 12 });
    const bad = await runCli(['protect', '--table', 'accounts', '--column', 'owner'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toContain('not bytea');
    const conflict = await runCli(['protect', '--table', 'accounts', '--column', 'x', '--scope', 'a', '--scope-column', 'owner'], env);
    expect(conflict.code).toBe(2);
    expect((await runCli(['unprotect', '--table', 'accounts', '--column', 'iban'], env)).code).toBe(0);
  });
});

describe('decrypted views', () => {
  it('insert, update, select and delete through the view as a role that owns nothing', async () => {
    await db.sql`create table patients (id int generated by default as identity primary key, name text not null, created_at timestamptz not null default now())`;
    await protectColumn(db.sql, { table: 'patients', column: 'tax_code', searchable: true, normalizer: 'upper' });
    await protectColumn(db.sql, { table: 'patients', column: 'diagnosis', context: 'row' });
    await protectColumn(db.sql, { table: 'patients', column: 'vitals', valueType: 'jsonb' });
    const r = await runCli(['views', 'create', '--table', 'patients'], { DATABASE_URL: db.url });
    expect(r.stdout).toContain('public.patients_decrypted');
    const nurse = await createRole(db.admin, 'pgseal_nurse');
    await db.sql.unsafe(`grant select, insert, update, delete on patients, patients_decrypted to "${nurse.name}";
                         grant usage on sequence patients_id_seq to "${nurse.name}"; grant pgseal_app to "${nurse.name}"`);
    const asNurse = connectQuiet(db.urlAs(nurse.name, nurse.password));
    const ring = new Keyring(asNurse, master);
    try {
      const [owner] = await asNurse<{ owns: boolean }[]>`select pg_has_role(current_user, (select tableowner from pg_tables where tablename = 'patients'), 'member') as owns`;
      expect(owner!.owns).toBe(false);
      const inserted = await withKeys(asNurse, ring, (tx) => tx<{ id: number; tax_code: string; vitals: { bpm: number } }[]>`
        insert into patients_decrypted (name, tax_code, diagnosis, vitals) values ('Anna Neri', 'nrenna80a41h501u', 'riservato', '{"bpm": 72}')
        returning id, tax_code, vitals`);
      expect(inserted[0]).toMatchObject({ tax_code: 'nrenna80a41h501u', vitals: { bpm: 72 } });
      const id = inserted[0]!.id;
      await withKeys(asNurse, ring, (tx) => tx`update patients_decrypted set diagnosis = 'aggiornato', name = 'Anna N.' where id = ${id}`);
      // moving the row's key re-encrypts what is bound to it (row context)
      await withKeys(asNurse, ring, (tx) => tx`update patients_decrypted set id = ${id + 1000} where id = ${id}`);
      await withKeys(asNurse, ring, (tx) => tx`update patients_decrypted set id = ${id} where id = ${id + 1000}`);
      const [row] = await withKeys(asNurse, ring, (tx) => tx<{ name: string; diagnosis: string; tax_code: string }[]>`
        select name, diagnosis, tax_code from patients_decrypted where id = ${id}`);
      expect(row).toEqual({ name: 'Anna N.', diagnosis: 'aggiornato', tax_code: 'nrenna80a41h501u' });
      const [raw] = await db.sql<{ diagnosis: Buffer; tax_code: Buffer; tax_code_bidx: Buffer; created_at: Date }[]>`select * from patients where id = ${id}`;
      expect(raw!.diagnosis.includes(Buffer.from('aggiornato'))).toBe(false);
      expect(raw!.created_at).toBeInstanceOf(Date); // the table's default applied through the view
      const [found] = await seal.begin((tx) => tx<{ id: number }[]>`
        select id from patients where tax_code_bidx = pgseal.blind_index('NRENNA80A41H501U', 'upper', 'public.patients.tax_code')`);
      expect(found!.id).toBe(id);
      await expect(asNurse`select diagnosis from patients_decrypted`).rejects.toMatchObject({ code: 'PS001' });
      await withKeys(asNurse, ring, (tx) => tx`delete from patients_decrypted where id = ${id}`);
      const [left] = await db.sql<{ n: number }[]>`select count(*)::int as n from patients`;
      expect(left!.n).toBe(0);
    } finally {
      ring.close();
      await asNurse.end();
    }
    expect(await createView(db.sql, 'patients')).toBe('public.patients_decrypted'); // idempotent
  });
});
