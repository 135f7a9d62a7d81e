// The README's quick start and its rotation section, run literally: every `pgseal` command of
// their sh blocks, parsed as a shell would, against a fresh database. Then every value still
// decrypts and is ciphertext at rest. And the way the quick start once went (a value sealed
// by hand into a column never protected): reencrypt names what it did not move, retire is
// refused naming the column, and the value still opens.

import { readFileSync } from 'node:fs';
import { parse } from 'shell-quote';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from '../support/cli.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The lines of each ```sh block of the README section headed `## title`. */
function shBlocks(title: string): string[][] {
  const start = README.indexOf(`\n## ${title}`);
  if (start < 0) throw new Error(`README has no section "## ${title}"`);
  const end = README.indexOf('\n## ', start + 1);
  const section = README.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.split('\n').filter((l) => l.trim() !== ''));
}

/** A README line as argv after `pgseal` (a leading `npx` dropped, the comment cut). */
function pgsealArgs(line: string): string[] {
  const words: string[] = [];
  for (const entry of parse(line)) {
    if (typeof entry !== 'string') {
      if ('comment' in entry) break;
      throw new Error(`README line is more than one command: ${line}`);
    }
    words.push(entry);
  }
  if (words[0] === 'npx') words.shift();
  if (words.shift() !== 'pgseal') throw new Error(`README line is not a pgseal command: ${line}`);
  return words;
}

let db: TestDatabase;
const dropped: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(dropped.map((d) => d.drop()));
});

/** A fresh database, and the quick start's first block: DATABASE_URL, and a master key made by its own command. */
async function setUp(): Promise<Record<string, string>> {
  db = await createDatabase();
  dropped.push(db);
  const [exports] = shBlocks('Five-minute quick start (your own database)');
  expect(exports!.some((l) => l.startsWith('export DATABASE_URL='))).toBe(true);
  const keyLine = exports!.find((l) => l.startsWith('export PGSEAL_MASTER_KEY='));
  const generate = /\$\((.+)\)/.exec(keyLine ?? '');
  expect(generate, 'the quick start generates its master key with a pgseal command').not.toBeNull();
  const key = await runCli(pgsealArgs(generate![1]!));
  expect(key.code, key.stderr).toBe(0);
  return { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: key.stdout.trim() };
}

async function run(line: string, env: Record<string, string>): Promise<CliResult> {
  return runCli(pgsealArgs(line), env);
}

describe('the README, literally', () => {
  it('quick start, then the rotation section: every command succeeds and every value still decrypts', async () => {
    const env = await setUp();
    const [, quick] = shBlocks('Five-minute quick start (your own database)');
    const [rotation] = shBlocks('Rotation and re-encryption');
    expect(quick!.some((l) => l.includes('protect --table customers --column email'))).toBe(true);
    for (const line of [...quick!, ...rotation!]) {
      const r = await run(line, env);
      expect(r.code, `${line}\n${r.stderr}`).toBe(0);
      expect(r.stderr, line).not.toContain('not moved');
    }
    const read = await run(`pgseal query --json "select email, pgseal.key_version_of(email) as v from customers"`, env);
    expect(read.code, read.stderr).toBe(0);
    // the value decrypted, and key_version_of given the ciphertext as it is stored
    expect(JSON.parse(read.stdout.trim())).toEqual({ email: 'mario.rossi@example.it', v: 5 });
    // at rest: an envelope under the active version, no plaintext
    const [row] = await db.sql<{ email: Buffer; v: number; active: number }[]>`
      select email, pgseal.key_version_of(email) as v,
             (select version from pgseal.keys where scope = 'default' and purpose = 'data' and state = 'active') as active
        from customers`;
    expect(row!.v).toBe(row!.active);
    expect(row!.email.subarray(0, 2)).toEqual(Buffer.from([1, 1]));
    expect(row!.email.includes(Buffer.from('mario.rossi'))).toBe(false);
    const retired = await db.sql<{ version: number }[]>`select version from pgseal.keys where state = 'retired' order by version`;
    expect(retired.map((r) => r.version)).toEqual([2, 4]);
  });

  it('a value sealed by hand into a column never protected: reencrypt says it did not move it, retire is refused naming it, the value still opens', async () => {
    const env = await setUp();
    for (const line of ['pgseal migrate up', 'pgseal keys init']) expect((await run(line, env)).code).toBe(0);
    await db.sql`create table customers (id bigint generated always as identity primary key, name text not null, email bytea)`;
    const sealed = await run(`pgseal query "insert into customers (name, email) values ('Mario Rossi', pgseal.encrypt_text('mario.rossi@example.it', 'public.customers.email'))"`, env);
    expect(sealed.code, sealed.stderr).toBe(0);
    expect((await run('pgseal keys rotate', env)).code).toBe(0);
    const moved = await run('pgseal reencrypt', env);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stderr).toContain('pgseal: not moved: 1 values on older key versions in columns that are not protected: 1 in public.customers.email (not a protected column)');
    const retire = await run('pgseal keys retire 2', env);
    expect(retire.code).toBe(1);
    expect(retire.stderr).toContain('PGSEAL_KEY_IN_USE');
    expect(retire.stderr).toContain('key version 2 still seals 1 values: 1 in public.customers.email (not a protected column)');
    const [state] = await db.sql<{ state: string }[]>`select state from pgseal.keys where version = 2`;
    expect(state!.state).toBe('decrypt-only');
    const read = await run(`pgseal query "select pgseal.decrypt_text(email, 'public.customers.email') as email from customers"`, env);
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout).toContain('mario.rossi@example.it');
  });
});
