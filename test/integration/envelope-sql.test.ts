// The SQL side of the envelope: the shared vectors, interoperation with Node, and every
// kind of damage raising its documented SQLSTATE (never garbage).

import { createHash } from 'node:crypto';
import type { TransactionSql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open, seal } from '../../src/crypto/envelope.js';
import { connectQuiet, createDatabase, type TestDatabase } from '../support/db.js';
import { keyMaterial, randomKey, useKeys, vectorKey } from '../support/keys.js';
import { bitFlips, truncations } from '../support/mutations.js';
import { loadVectors, megabytePlaintext, plaintextOf } from '../vectors/vectors.js';

const vectors = loadVectors();
let db: TestDatabase;

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
});
afterAll(async () => {
  await db?.drop();
});

// postgres.js sends arrays of buffers poorly: hand them over as hex text.
const hexes = (values: Buffer[]) => values.map((v) => v.toString('hex'));

/**
 * Decrypts each value in one statement, returning 'ok:<hex>', 'null' or the SQLSTATE per
 * value: with the transaction's keys (decrypt_bytea), or with a keyset (decrypt_bytea_with).
 */
async function tryDecrypt(tx: TransactionSql, values: Buffer[], context: string | null, keyset?: { keys: Buffer | null }): Promise<string[]> {
  await tx`
    create or replace function pg_temp.try_decrypt(cts bytea[], ctx text, with_keyset boolean, ks bytea) returns text[] language plpgsql as $$
    declare ct bytea; out text[] := '{}'; pt bytea;
    begin
      foreach ct in array cts loop
        begin
          pt := CASE WHEN with_keyset THEN pgseal.decrypt_bytea_with(ct, ctx, ks) ELSE pgseal.decrypt_bytea(ct, ctx) END;
          out := out || coalesce('ok:' || encode(pt, 'hex'), 'null');
        exception when others then
          out := out || sqlstate::text;
        end;
      end loop;
      return out;
    end $$`;
  const [row] = await tx<{ r: string[] }[]>`
    select pg_temp.try_decrypt(array(select decode(h, 'hex') from unnest(${hexes(values)}::text[]) with ordinality u(h, i) order by i),
                               ${context}, ${keyset !== undefined}, ${keyset?.keys ?? null}) as r`;
  return row!.r;
}

async function sqlstateOf(work: (tx: TransactionSql) => Promise<unknown>): Promise<string> {
  try {
    await db.sql.begin(work);
    return 'no error';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

describe('vectors through SQL', () => {
  it.each(vectors.cases.map((c) => [c.name, c] as const))('pgseal.seal reproduces %s byte for byte', async (_n, c) => {
    const [row] = await db.sql<{ e: Buffer }[]>`select pgseal.seal(${plaintextOf(c)}, ${c.context}, ${keyMaterial(vectorKey)}, ${Buffer.from(c.iv, 'hex')}) as e`;
    expect(row!.e.toString('hex')).toBe(c.envelope);
  });

  it('decrypts every vector with the key handed to the transaction', async () => {
    await db.sql.begin(async (tx) => {
      await useKeys(tx, vectorKey);
      for (const c of vectors.cases) {
        const [row] = await tx<{ b: Buffer; t: string | null }[]>`
          select pgseal.decrypt_bytea(${Buffer.from(c.envelope, 'hex')}, ${c.context}) as b,
                 case when ${c.plaintext_utf8 !== undefined} then pgseal.decrypt_text(${Buffer.from(c.envelope, 'hex')}, ${c.context}) end as t`;
        expect(row!.b.equals(plaintextOf(c)), c.name).toBe(true);
        if (c.plaintext_utf8 !== undefined) expect(row!.t).toBe(c.plaintext_utf8);
      }
    });
  });

  it('reproduces and decrypts the 1 MiB vector', async () => {
    const plaintext = megabytePlaintext();
    const [row] = await db.sql<{ e: Buffer }[]>`select pgseal.seal(${plaintext}, ${vectors.large.context}, ${keyMaterial(vectorKey)}, ${Buffer.from(vectors.large.iv, 'hex')}) as e`;
    expect(row!.e.length).toBe(vectors.large.envelope_bytes);
    expect(createHash('sha256').update(row!.e).digest('hex')).toBe(vectors.large.envelope_sha256);
    await db.sql.begin(async (tx) => {
      await useKeys(tx, vectorKey);
      const [back] = await tx<{ t: string }[]>`select pgseal.decrypt_text(${row!.e}, ${vectors.large.context}) as t`;
      expect(back!.t.length).toBe(plaintext.length);
      expect(Buffer.from(back!.t).equals(plaintext)).toBe(true);
    });
  });
});

describe('SQL and Node interoperate', () => {
  const values = ['mario.rossi@example.it', '', '+393471234567', 'RSSMRA85T10A562S', 'Perché no? 🇮🇹', 'x'.repeat(5000)];
  const context = 'public.customers.email';

  it('SQL-written ciphertext decrypts in Node', async () => {
    const rows = await db.sql.begin(async (tx) => {
      await useKeys(tx, vectorKey);
      return tx<{ v: string; e: Buffer }[]>`select v, pgseal.encrypt_text(v, ${context}) as e from unnest(${values}::text[]) as v`;
    });
    expect(rows).toHaveLength(values.length);
    for (const row of rows) {
      expect(open(row.e, context, (v) => (v === vectorKey.version ? vectorKey : undefined)).toString('utf8')).toBe(row.v);
    }
  });

  it('Node-written ciphertext decrypts in SQL', async () => {
    const sealed = values.map((v) => seal(Buffer.from(v), context, vectorKey));
    const rows = await db.sql.begin(async (tx) => {
      await useKeys(tx, vectorKey);
      return tx<{ t: string }[]>`select pgseal.decrypt_text(e, ${context}) as t from unnest(${hexes(sealed)}::text[]) with ordinality as u(h, i), decode(h, 'hex') as e order by i`;
    });
    expect(rows.map((r) => r.t)).toEqual(values);
  });

  it('random IVs: the same value twice gives different ciphertexts', async () => {
    const [row] = await db.sql.begin(async (tx) => {
      await useKeys(tx, vectorKey);
      return tx<{ a: Buffer; b: Buffer }[]>`select pgseal.encrypt_text('same', 'c') as a, pgseal.encrypt_text('same', 'c') as b`;
    });
    expect(row!.a.equals(row!.b)).toBe(false);
  });

  it('NULL in, NULL out', async () => {
    const [row] = await db.sql.begin(async (tx) => {
      await useKeys(tx, vectorKey);
      return tx`select pgseal.encrypt_text(null, 'c') as a, pgseal.encrypt_bytea(null, 'c') as b,
                       pgseal.decrypt_text(null, 'c') as c, pgseal.decrypt_bytea(null, 'c') as d,
                       pgseal.key_version_of(null) as e`;
    });
    expect(row).toEqual({ a: null, b: null, c: null, d: null, e: null });
  });
});

describe('the keyset path (decrypt_bytea_with): a small fast path, the full checks behind it', () => {
  const sample = Buffer.from(vectors.cases[0]!.envelope, 'hex');
  const context = vectors.cases[0]!.context;
  const plain = plaintextOf(vectors.cases[0]!).toString('hex');
  const older = keyMaterial(vectorKey);
  const newer = keyMaterial(randomKey(vectorKey.version + 1));
  const keyset = (...entries: Buffer[]) => Buffer.concat(entries);

  const tryWith = (values: Buffer[], ctx: string | null, keys: Buffer | null) => db.sql.begin((tx) => tryDecrypt(tx, values, ctx, { keys }));

  it('opens a value under the first entry, and one under a later entry (the slow path)', async () => {
    expect(await tryWith([sample], context, keyset(older, newer))).toEqual([`ok:${plain}`]);
    expect(await tryWith([sample], context, keyset(newer, older))).toEqual([`ok:${plain}`]);
  });

  it('every single-bit flip and every truncation gives the same SQLSTATE as the settings path, on both paths', async () => {
    const damaged = [...bitFlips(sample), ...truncations(sample)];
    for (const keys of [keyset(older), keyset(newer, older)]) {
      const got = await tryWith(damaged.map((m) => m.bytes), context, keys);
      const wrong = damaged.map((m, i) => ({ label: m.label, want: m.sqlstate, got: got[i] })).filter((x) => x.got !== x.want);
      expect(wrong).toEqual([]);
    }
  });

  it('NULL stays NULL; a NULL context is 22004; another context PS003; a version not in the keyset PS002; plaintext PS004', async () => {
    expect(await tryWith([Buffer.alloc(0)], context, keyset(older))).toEqual(['PS004']);
    const [nullRow] = await db.sql<{ v: Buffer | null }[]>`select pgseal.decrypt_bytea_with(null, ${context}, ${keyset(older)}) as v`;
    expect(nullRow!.v).toBeNull();
    expect(await tryWith([sample], null, keyset(older))).toEqual(['22004']);
    expect(await tryWith([sample], 'public.customers.phone', keyset(older))).toEqual(['PS003']);
    expect(await tryWith([sample], context, keyset(newer))).toEqual(['PS002']);
    expect(await tryWith([sample], context, null)).toEqual(['PS002']);
    const text = Buffer.from('mario.rossi@example.it, a plaintext that is long enough for an envelope');
    expect(await tryWith([text, text.subarray(0, 32), text.subarray(0, 31)], context, keyset(older))).toEqual(['PS004', 'PS004', 'PS004']);
  });

  it('an empty or malformed keyset is never a key: a value forged under an empty key does not open', async () => {
    // what anyone can compute: the tag under an empty MAC key, AES under pgcrypto's zero-padded empty key
    const forgedMaterial = Buffer.concat([older.subarray(0, 4), Buffer.alloc(16)]);
    const [row] = await db.sql<{ f: Buffer }[]>`select pgseal._seal(convert_to('forged', 'UTF8'), pgseal._context_bytes(${context}), ${forgedMaterial}, ${Buffer.alloc(16, 7)}) as f`;
    expect(await tryWith([row!.f], context, Buffer.alloc(0))).toEqual(['PS002']);
    expect(await tryWith([row!.f], context, older.subarray(0, 4))).toEqual(['PS006']);
    expect(await tryWith([sample], context, older.subarray(0, 67))).toEqual(['PS006']);
    // the value's own entry cut short; a complete first entry still opens its own values
    expect(await tryWith([sample], context, Buffer.concat([newer, older.subarray(0, 40)]))).toEqual(['PS006']);
    expect(await tryWith([sample], context, Buffer.concat([older, newer.subarray(0, 40)]))).toEqual([`ok:${plain}`]);
  });

  it('a value opens only under the key its header names: a tag made with the first key under another version does not open', async () => {
    // what the holder of a compromised first key could write to slip past the emergency guard
    const renamed = Buffer.concat([newer.subarray(0, 4), older.subarray(4)]);
    const [row] = await db.sql<{ f: Buffer }[]>`select pgseal._seal(convert_to('forged', 'UTF8'), pgseal._context_bytes(${context}), ${renamed}, ${Buffer.alloc(16, 7)}) as f`;
    expect(await tryWith([row!.f], context, keyset(older))).toEqual(['PS002']);
    expect(await tryWith([row!.f], context, keyset(older, newer))).toEqual(['PS003']);
  });

  it('with standard_conforming_strings off, pgseal.seal still writes the header and the slow path still opens', async () => {
    // a fresh session whose first use of the PL/pgSQL bodies happens with the setting off
    const legacy = connectQuiet(db.url, { max: 1, connection: { standard_conforming_strings: 'off' } });
    try {
      const [row] = await legacy<{ e: Buffer; o: Buffer }[]>`
        select pgseal.seal(${plaintextOf(vectors.cases[0]!)}, ${context}, ${older}, ${Buffer.from(vectors.cases[0]!.iv, 'hex')}) as e,
               pgseal.decrypt_bytea_with(${sample}, ${context}, ${keyset(newer, older)}) as o`;
      expect(row!.e.toString('hex')).toBe(vectors.cases[0]!.envelope);
      expect(row!.o.toString('hex')).toBe(plain);
    } finally {
      await legacy.end();
    }
  });

  it('a constant too short for an envelope is PS004 even when the planner folds it into both branches', async () => {
    const state = await sqlstateOf(async (tx) => {
      await tx`create temp table keysets (k bytea) on commit drop`;
      await tx`insert into keysets values (${keyset(older)})`;
      await tx.unsafe(`select pgseal.decrypt_bytea_with('\\x0101'::bytea, 'public.t.c', k) from keysets`);
    });
    expect(state).toBe('PS004');
  });

  it('inlines to one tag check and one decryption; version lookups stay inside the slow path', async () => {
    // columns, not constants: an IMMUTABLE call on constants would be folded away at plan time
    const output = await db.sql.begin(async (tx) => {
      await tx`create temp table sealed (c bytea, k bytea) on commit drop`;
      const plan = await tx.unsafe(`explain (verbose, costs off) select pgseal.decrypt_text_with(c, 'public.t.c', k) from sealed`);
      return plan.map((r) => String((r as Record<string, unknown>)['QUERY PLAN'])).join('\n');
    });
    expect(output).toContain('_open_with_keyset');
    expect(output).toMatch(/hmac\(/);
    expect(output).not.toContain('_keyset_offset');
    expect(output).not.toContain('_keyset_find');
  });
});

describe('damage and missing keys raise the documented SQLSTATE', () => {
  const sample = Buffer.from(vectors.cases[0]!.envelope, 'hex');
  const context = vectors.cases[0]!.context;

  it('every single-bit flip', async () => {
    const flips = bitFlips(sample);
    const got = await db.sql.begin(async (tx) => {
      await useKeys(tx, vectorKey);
      return tryDecrypt(tx, flips.map((m) => m.bytes), context);
    });
    const wrong = flips.map((m, i) => ({ label: m.label, want: m.sqlstate, got: got[i] })).filter((x) => x.got !== x.want);
    expect(wrong).toEqual([]);
  });

  it('every truncation', async () => {
    const cuts = truncations(sample);
    const got = await db.sql.begin(async (tx) => {
      await useKeys(tx, vectorKey);
      return tryDecrypt(tx, cuts.map((m) => m.bytes), context);
    });
    const wrong = cuts.map((m, i) => ({ label: m.label, want: m.sqlstate, got: got[i] })).filter((x) => x.got !== x.want);
    expect(wrong).toEqual([]);
  });

  it('a ciphertext moved to another context: PS003', async () => {
    expect(await sqlstateOf(async (tx) => {
      await useKeys(tx, vectorKey);
      await tx`select pgseal.decrypt_text(${sample}, 'public.customers.phone')`;
    })).toBe('PS003');
  });

  it('the wrong key for the version: PS003', async () => {
    expect(await sqlstateOf(async (tx) => {
      await useKeys(tx, randomKey(vectorKey.version));
      await tx`select pgseal.decrypt_text(${sample}, ${context})`;
    })).toBe('PS003');
  });

  it('no keys in the transaction: PS001, for decrypt and encrypt', async () => {
    expect(await sqlstateOf((tx) => tx`select pgseal.decrypt_text(${sample}, ${context})`)).toBe('PS001');
    expect(await sqlstateOf((tx) => tx`select pgseal.encrypt_text('x', 'c')`)).toBe('PS001');
  });

  it('a version not handed in: PS002', async () => {
    expect(await sqlstateOf(async (tx) => {
      await useKeys(tx, randomKey(vectorKey.version + 1));
      await tx`select pgseal.decrypt_text(${sample}, ${context})`;
    })).toBe('PS002');
  });

  it('plaintext where ciphertext belongs: PS004', async () => {
    expect(await sqlstateOf(async (tx) => {
      await useKeys(tx, vectorKey);
      await tx`select pgseal.decrypt_text(convert_to('mario.rossi@example.it, a plaintext that is long enough for an envelope', 'UTF8'), 'c')`;
    })).toBe('PS004');
  });

  it('no active key for the scope written: PS005', async () => {
    expect(await sqlstateOf(async (tx) => {
      await useKeys(tx, vectorKey);
      await tx`select pgseal.encrypt_text('x', 'c', 'tenant-9')`;
    })).toBe('PS005');
  });

  it('a NULL context: 22004', async () => {
    expect(await sqlstateOf(async (tx) => {
      await useKeys(tx, vectorKey);
      await tx`select pgseal.encrypt_text('x', null)`;
    })).toBe('22004');
  });

  it('a malformed key payload: PS006', async () => {
    expect(await sqlstateOf((tx) => tx`select pgseal.use_keys(${Buffer.from([1, 0, 0])})`)).toBe('PS006');
  });

  it('error messages carry no plaintext and no key', async () => {
    const messages: string[] = [];
    for (const run of [
      (tx: TransactionSql) => tx`select pgseal.decrypt_text(${sample}, 'public.other.col')`,
      (tx: TransactionSql) => tx`select pgseal.decrypt_text(convert_to('mario.rossi@example.it mario.rossi@example.it mario.rossi@example.it', 'UTF8'), 'c')`,
    ]) {
      try {
        await db.sql.begin(async (tx) => {
          await useKeys(tx, vectorKey);
          await run(tx);
        });
      } catch (error) {
        const e = error as { message: string; hint?: string; detail?: string; where?: string };
        messages.push([e.message, e.hint, e.detail, e.where].join(' '));
      }
    }
    expect(messages).toHaveLength(2);
    for (const m of messages) {
      expect(m).not.toContain('mario');
      expect(m).not.toContain(vectorKey.encKey.toString('hex'));
      expect(m).not.toContain(vectorKey.macKey.toString('hex'));
    }
  });
});

describe('functions declare what they are', () => {
  it('marks every envelope function PARALLEL SAFE with its true volatility', async () => {
    const rows = await db.sql<{ proname: string; provolatile: string; proparallel: string }[]>`
      select proname, provolatile, proparallel from pg_proc where pronamespace = 'pgseal'::regnamespace`;
    const by = Object.fromEntries(rows.map((r) => [r.proname, r]));
    expect(by.decrypt_text).toMatchObject({ provolatile: 's', proparallel: 's' });
    expect(by.decrypt_bytea).toMatchObject({ provolatile: 's', proparallel: 's' });
    expect(by.encrypt_text).toMatchObject({ provolatile: 'v', proparallel: 's' });
    expect(by.key_version_of).toMatchObject({ provolatile: 'i', proparallel: 's' });
    expect(by.use_keys).toMatchObject({ provolatile: 'v', proparallel: 'u' });
  });

  it('decrypt_text is inlined and runs in parallel workers', async () => {
    await db.sql`create table par as select pgseal.seal(convert_to('v' || i, 'UTF8'), 'c', ${keyMaterial(vectorKey)}, pgseal._random_bytes(16)) as e from generate_series(1, 50000) i`;
    await db.sql`analyze par`;
    const plan = await db.sql.begin(async (tx) => {
      await useKeys(tx, vectorKey);
      await tx`set local parallel_setup_cost = 0`;
      await tx`set local parallel_tuple_cost = 0`;
      await tx`set local min_parallel_table_scan_size = 0`;
      const rows = await tx<{ 'QUERY PLAN': string }[]>`explain (verbose, costs off) select count(pgseal.decrypt_text(e, 'c')) from par`;
      const [n] = await tx<{ n: number }[]>`select count(pgseal.decrypt_text(e, 'c'))::int as n from par`;
      expect(n!.n).toBe(50000);
      return rows.map((r) => r['QUERY PLAN']).join('\n');
    });
    expect(plan).toMatch(/Gather/);
    expect(plan).toMatch(/decrypt_iv\(/); // inlined down to pgcrypto
    expect(plan).not.toMatch(/pgseal\.decrypt_text\(/);
  });
});
