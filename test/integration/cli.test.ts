// The CLI end to end, and its behaviour on bad input: one clear line, a non-zero exit
// code, no stack trace, nothing written.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/lib/embedded-postgres.js';
import { runCli, type CliResult } from '../support/cli.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
const key = randomBytes(32).toString('base64');

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
});
afterAll(async () => {
  await db?.drop();
});

const cli = (args: string[], env: Record<string, string | undefined> = {}) => runCli(args, { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: key, ...env });

function expectOneLineFailure(r: CliResult, code: string): void {
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^pgseal: ${code}`));
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

async function keyCount(): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.keys where purpose = 'data'`;
  return row!.n;
}

describe('pgseal CLI', () => {
  it('prints help for every command', async () => {
    for (const args of [['--help'], ['migrate', '--help'], ['keys', '--help'], ['keys', 'init', '--help'], ['keys', 'list', '--help'], ['keys', 'rotate', '--help'], ['keys', 'generate-master-key', '--help'], ['query', '--help']]) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toContain('pgseal');
    }
  });

  it('rejects bad usage with exit code 2', async () => {
    const r = await runCli(['keys', 'frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('pgseal:');
  });

  it('generates master keys', async () => {
    const a = await runCli(['keys', 'generate-master-key']);
    const b = await runCli(['keys', 'generate-master-key']);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(a.stdout).not.toBe(b.stdout);
  });

  describe('bad input: one line, non-zero, nothing written', () => {
    it('missing PGSEAL_MASTER_KEY', async () => {
      expectOneLineFailure(await cli(['keys', 'init'], { PGSEAL_MASTER_KEY: undefined }), 'PGSEAL_MASTER_KEY_MISSING');
      expect(await keyCount()).toBe(0);
    });

    it('malformed master key', async () => {
      const r = await cli(['keys', 'init'], { PGSEAL_MASTER_KEY: 'not-a-real-key-at-all' });
      expectOneLineFailure(r, 'PGSEAL_MASTER_KEY_MALFORMED');
      expect(r.stderr).not.toContain('not-a-real-key-at-all');
      expect(await keyCount()).toBe(0);
    });

    it('unreachable database', async () => {
      const port = await freePort();
      expectOneLineFailure(await cli(['keys', 'init'], { DATABASE_URL: `postgres://nobody@127.0.0.1:${port}/nowhere` }), 'PGSEAL_DB_UNREACHABLE');
      expectOneLineFailure(await cli(['migrate', 'up'], { DATABASE_URL: `postgres://nobody@127.0.0.1:${port}/nowhere` }), 'PGSEAL_DB_UNREACHABLE');
    });

    it('wrong master key for the stored keys', async () => {
      const init = await cli(['keys', 'init']);
      expect(init.code, init.stderr).toBe(0);
      expect(await keyCount()).toBe(1);
      const other = randomBytes(32).toString('base64');
      const rotate = await cli(['keys', 'rotate'], { PGSEAL_MASTER_KEY: other });
      expectOneLineFailure(rotate, 'PGSEAL_MASTER_KEY_MISMATCH');
      expect(rotate.stderr).not.toContain(other);
      expect(rotate.stderr).not.toContain(key);
      expectOneLineFailure(await cli(['query', "select pgseal.encrypt_text('x', 'c')"], { PGSEAL_MASTER_KEY: other }), 'PGSEAL_MASTER_KEY_MISMATCH');
      expect(await keyCount()).toBe(1);
    });

    it('a statement that needs no key runs without a master key; one that does names the missing key', async () => {
      const plain = await cli(['query', 'select 1 as one', 'create table if not exists scratch_plain (id int)'], { PGSEAL_MASTER_KEY: undefined });
      expect(plain.code, plain.stderr).toBe(0);
      expect(plain.stdout).toContain('one');
      expect(plain.stdout).toContain('CREATE TABLE');
      expect((await cli(['query', '--raw', 'select 2 as two'], { PGSEAL_MASTER_KEY: undefined })).code).toBe(0);
      expectOneLineFailure(await cli(['query', "select pgseal.decrypt_text('\\x00'::bytea, 'c')"], { PGSEAL_MASTER_KEY: undefined }), 'PGSEAL_MASTER_KEY_MISSING');
    });
  });

  it('init, query, rotate, list: the whole round', async () => {
    if ((await keyCount()) === 0) expect((await cli(['keys', 'init'])).code).toBe(0);
    expect((await cli(['keys', 'init'])).stderr).toContain('PGSEAL_ALREADY_INITIALISED');
    const setup = await cli(['query', `create table if not exists clienti (id int primary key, email bytea)`]);
    expect(setup.code, setup.stderr).toBe(0);
    const ins = await cli(['query', `insert into clienti values (1, pgseal.encrypt_text('mario.rossi@example.it', 'public.clienti.email'))`]);
    expect(ins.stdout.trim()).toBe('INSERT 1');
    const rotate = await cli(['keys', 'rotate']);
    expect(rotate.code, rotate.stderr).toBe(0);
    await cli(['query', `insert into clienti values (2, pgseal.encrypt_text('giulia@example.it', 'public.clienti.email'))`]);
    const json = await cli(['query', '--json', `select id, pgseal.key_version_of(email) as version, pgseal.decrypt_text(email, 'public.clienti.email') as email from clienti order by id`]);
    expect(json.code, json.stderr).toBe(0);
    const rows = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: number; version: number; email: string });
    expect(rows.map((r) => r.email)).toEqual(['mario.rossi@example.it', 'giulia@example.it']);
    expect(rows[1]!.version).toBeGreaterThan(rows[0]!.version);
    const table = await cli(['query', `select id, email from clienti order by id`]);
    expect(table.stdout).toMatch(/\\x0101/);
    expect(table.stdout).not.toContain('mario');
    const list = await cli(['keys', 'list', '--json']);
    const keys = JSON.parse(list.stdout) as Array<{ version: number; state: string; purpose: string }>;
    expect(keys.filter((k) => k.purpose === 'data').map((k) => k.state)).toEqual(['decrypt-only', 'active']);
    expect(keys.filter((k) => k.purpose === 'index').map((k) => k.state)).toEqual(['active']);
    expect(list.stdout).not.toContain('wrapped');
    const human = await cli(['keys', 'list']);
    expect(human.stdout).toContain('decrypt-only');
  });

  it('query on a decrypted view: it needs the keys, and gets them (without a master key: the missing key, named)', async () => {
    if ((await keyCount()) === 0) expect((await cli(['keys', 'init'])).code).toBe(0);
    expect((await cli(['query', 'create table viste (id int primary key)'])).code).toBe(0);
    expect((await cli(['protect', '--table', 'viste', '--column', 'nota'])).code).toBe(0);
    expect((await cli(['query', "insert into viste (id, nota) values (1, 'nota segreta')"])).code).toBe(0);
    expect((await cli(['views', 'create', '--table', 'viste'])).code).toBe(0);
    const read = await cli(['query', '--json', 'select id, nota from viste_decrypted']);
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout.trim()).toBe('{"id":1,"nota":"nota segreta"}');
    expectOneLineFailure(await cli(['query', 'select id, nota from viste_decrypted'], { PGSEAL_MASTER_KEY: undefined }), 'PGSEAL_MASTER_KEY_MISSING');
  });

  it('reports a failing statement with its SQLSTATE and exits non-zero', async () => {
    const r = await cli(['query', `select pgseal.decrypt_text(convert_to('plaintext in a ciphertext column, long enough to look like one', 'UTF8'), 'c')`]);
    expectOneLineFailure(r, 'PGSEAL_MALFORMED_ENVELOPE');
    expect(r.stderr).toContain('SQLSTATE PS004');
    const syntax = await cli(['query', 'selec 1']);
    expectOneLineFailure(syntax, 'PGSEAL_DB_ERROR');
    expect(syntax.stderr).toContain('SQLSTATE 42601');
    // with --json, the error is one JSON object on stderr, and stdout stays empty
    const asJson = await cli(['query', '--json', 'selec 1']);
    expect(asJson.code).toBe(1);
    expect(asJson.stdout).toBe('');
    expect(asJson.stderr.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(asJson.stderr)).toMatchObject({ error: { code: 'PGSEAL_DB_ERROR', sqlstate: '42601' } });
    const usage = await runCli(['keys', 'list', '--json', '--no-such-flag']);
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stderr)).toMatchObject({ error: { code: 'PGSEAL_USAGE' } });
  });

  it('reads the master key from a file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgseal-cli-'));
    writeFileSync(join(dir, 'master.key'), key + '\n', { mode: 0o600 });
    const r = await cli(['query', '--json', '--master-key-file', join(dir, 'master.key'), `select pgseal.decrypt_text(pgseal.encrypt_text('ok', 'c'), 'c') as v`], { PGSEAL_MASTER_KEY: undefined });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ v: 'ok' });
  });
});
