// The SQL rewriter against PostgreSQL: every corpus statement runs as written on a
// plaintext copy of the fixture and, rewritten, on an encrypted copy; both give the same
// rows. Refused patterns run nothing; with the opt-in they give the plaintext copy's rows.
// Writes run in transactions that are rolled back, so every statement sees the seed rows.

import { randomBytes } from 'node:crypto';
import type { TransactionSql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, initKeys, loadRegistry, loadSqlRewriter, LocalMasterKey, pgseal, protectColumn, type Pgseal, type SqlRewriter } from '../../src/index.js';
import type { RewriteResult } from '../../src/rewrite/index.js';
import { Keyring } from '../../src/keys/keyring.js';
import { withKeys } from '../../src/exec/transaction.js';
import { runCli } from '../support/cli.js';
import { createDatabase, type TestDatabase } from '../support/db.js';
import { corpus } from '../rewrite/corpus.js';
import { encryptedDdl, fixtureScopes, plaintextDdl, registry as fixture, seedSql } from '../rewrite/fixture.js';
import { refusals } from '../rewrite/refusals.js';

let plain: TestDatabase;
let enc: TestDatabase;
let ring: Keyring;
let rewriter: SqlRewriter;
let seal: Pgseal;
// one master key for the library and the CLI
const masterText = randomBytes(32).toString('base64');
const master = new LocalMasterKey(Buffer.from(masterText, 'base64'));

class Rollback {
  constructor(readonly rows: unknown) {}
}

/** Runs a statement in a transaction that is rolled back, returning its rows (or its error). */
async function rolledBack(run: (work: (tx: TransactionSql) => Promise<unknown>) => Promise<unknown>, text: string, params: readonly unknown[] = []): Promise<unknown> {
  try {
    await run(async (tx) => {
      throw new Rollback(normalise(await tx.unsafe(text, params as never[])));
    });
  } catch (outcome) {
    if (outcome instanceof Rollback) return outcome.rows;
    throw outcome;
  }
  throw new Error('unreachable');
}

/** Rows as plain data (result metadata dropped) for comparison. */
function normalise(rows: unknown): unknown {
  return JSON.parse(JSON.stringify([...(rows as unknown[])], (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
}

const onPlain = (text: string, params?: readonly unknown[]) => rolledBack((work) => plain.sql.begin(work), text, params);
/** The key arguments a rewritten statement takes before the caller's parameters (RewriteResult.keys), as the executor binds them. */
async function withKeyArgs(r: RewriteResult, params: readonly unknown[] = []): Promise<unknown[]> {
  const scopes = await ring.scopes();
  const keys = await Promise.all(r.keys.map((k) => (k === 'keyset' ? ring.keyset(scopes) : ring.payload(scopes))));
  return [...keys, ...params];
}
const onEncrypted = async (r: RewriteResult, params?: readonly unknown[]) => rolledBack((work) => withKeys(enc.sql, ring, work), r.sql, await withKeyArgs(r, params));

beforeAll(async () => {
  plain = await createDatabase();
  enc = await createDatabase({ migrated: true });
  await plain.sql.unsafe(plaintextDdl);
  await enc.sql.unsafe(encryptedDdl);
  for (const scope of fixtureScopes) await initKeys(enc.sql, master, scope);
  for (const table of fixture.values()) {
    for (const c of table.protected.values()) {
      await protectColumn(enc.sql, {
        table: `"${c.schema}"."${c.table}"`,
        column: c.column,
        valueType: c.valueType,
        searchable: c.searchable,
        normalizer: c.normalizer,
        context: c.contextMode,
        ...(c.scopeColumn ? { scopeColumn: c.scopeColumn } : { scope: c.scope ?? 'default' }),
        blindIndexBytes: c.blindIndexBytes,
      });
    }
  }
  ring = new Keyring(enc.sql, master);
  rewriter = await loadSqlRewriter(await loadRegistry(enc.sql));
  for (const s of seedSql) {
    await plain.sql.unsafe(s);
    const r = rewriter.rewrite(s);
    const args = await withKeyArgs(r);
    await withKeys(enc.sql, ring, (tx) => tx.unsafe(r.sql, args as never[]));
  }
  seal = pgseal({ sql: enc.sql, masterKey: master });
});
afterAll(async () => {
  ring?.close();
  await plain?.drop();
  await enc?.drop();
});

describe('the seed rows are stored encrypted', () => {
  it('holds no plaintext in the protected columns of the encrypted copy', async () => {
    const rows = await enc.sql<{ email: Buffer; email_bidx: Buffer }[]>`select email, email_bidx from customers where email is not null`;
    expect(rows.length).toBeGreaterThan(3);
    for (const r of rows) {
      expect(r.email[0]).toBe(1);
      expect(r.email.includes(Buffer.from('@example.it'))).toBe(false);
      expect(r.email_bidx).toHaveLength(16);
    }
  });
});

describe('corpus: the same rows from the plaintext copy and the rewritten statement', () => {
  it(`has at least 60 statements (${corpus.length})`, () => {
    expect(corpus.length).toBeGreaterThanOrEqual(60);
  });

  it.each(corpus.map((e) => [e.name, e] as const))('%s', async (_name, entry) => {
    const rewritten = rewriter.rewrite(entry.sql);
    const expected = await onPlain(entry.sql, entry.params);
    const actual = await onEncrypted(rewritten, entry.params);
    expect(actual).toEqual(expected);
  });
});

describe('refused patterns', () => {
  it.each(refusals.map((e) => [e.name, e] as const))('%s: refused, and with the opt-in equal to the plaintext copy', async (_name, entry) => {
    expect(() => rewriter.rewrite(entry.sql)).toThrow(expect.objectContaining({ code: ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT }));
    const scan = rewriter.rewrite(entry.sql, { allowDecryptScan: true });
    expect(await onEncrypted(scan, entry.params)).toEqual(await onPlain(entry.sql, entry.params));
  });
});

describe('through the library and the CLI', () => {
  it('stores values that try injection exactly, through seal.query (text and tagged template)', async () => {
    const nasty = ["O'Brien'); drop table customers; --", '$$ $tag$ select 1 $tag$', '/* c */ -- d', '\\x0101', 'é🇮🇹'.repeat(2000), 'x'.repeat(200_000)];
    for (const [i, value] of nasty.entries()) {
      const id = 9000 + i;
      await seal.query('insert into customers (id, tenant_id, name, email, notes) values ($1, 1, $2, $3, $4)', [id, 'n', value, value]);
      const [row] = await seal.query<{ email: string; notes: string }>`select email, notes from customers where id = ${id}`;
      expect(row).toEqual({ email: value, notes: value });
      if (value.length < 1000) {
        const found = await seal.query<{ id: number }>('select id from customers where email = $1', [value]);
        expect(found.map((r) => r.id)).toEqual([id]);
      }
    }
    const [count] = await enc.sql<{ n: number }[]>`select count(*)::int as n from customers`;
    expect(count!.n).toBeGreaterThan(5);
  });

  it('binds a row context to the stored key, whatever its spelling in the statement', async () => {
    await seal.query("insert into orders (id, customer_id, amount, memo, status) values ('0777', 1, 5, 'memo spelled 0777', 'open')");
    const [row] = await seal.query<{ memo: string }>('select memo from orders where id = 777');
    expect(row!.memo).toBe('memo spelled 0777');
  });

  it('keeps a plaintext out of the error a bad value raises', async () => {
    const secret = 'IT60X0542811101000000123456';
    const error = await seal.query('insert into orders (id, customer_id, amount, status) values ($1, 1, $2, $3)', [778, secret, 'open']).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCodes.DB_ERROR, sqlstate: '22P02' });
    expect(JSON.stringify(error) + String(error)).not.toContain(secret);
  });

  it('pgseal query rewrites by default, refuses in one line, and runs as written with --raw', async () => {
    const env = { DATABASE_URL: enc.url, PGSEAL_MASTER_KEY: masterText };
    const read = await runCli(['query', '--json', 'select id, email, notes from customers where id = 1'], env);
    expect(read.stderr).toBe('');
    expect(JSON.parse(read.stdout)).toEqual((normalise(await plain.sql`select id, email, notes from customers where id = 1`) as unknown[])[0]);
    const refused = await runCli(['query', "select id from customers where email like '%rossi%'"], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT);
    expect(refused.stderr).toContain('--allow-decrypt-scan');
    expect(refused.stderr).not.toContain('rossi');
    const scan = await runCli(['query', '--json', '--allow-decrypt-scan', "select id from customers where email like '%rossi%' order by id"], env);
    expect(scan.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual(normalise(await plain.sql`select id from customers where email like '%rossi%' order by id`));
    const raw = await runCli(['query', '--json', '--raw', 'select email from customers where id = 1'], env);
    expect((JSON.parse(raw.stdout) as { email: string }).email).toMatch(/^\\x0101/);
  });
});
