// The demo's database is a healthy one: `npm run demo` (on a database of the run's server)
// ends by printing the doctor's summary, and `pgseal doctor --full` on what it left exits 0.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSX = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));

let db: TestDatabase;
const master = randomBytes(32).toString('base64');

beforeAll(async () => {
  db = await createDatabase();
});
afterAll(async () => {
  await db?.drop();
});

function runDemo(env: Record<string, string | undefined>): Promise<{ code: number; stdout: string; stderr: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PGSEAL_') && k !== 'DATABASE_URL'));
  const all = Object.fromEntries(Object.entries({ ...base, ...env }).filter((e): e is [string, string] => e[1] !== undefined));
  return new Promise((resolve) => {
    execFile(TSX, ['scripts/demo.ts'], { cwd: ROOT, env: all, timeout: 120_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }));
  });
}

describe('the demo on a DATABASE_URL', () => {
  it('without a master key, twice on the same DATABASE_URL: each run in a database of its own, dropped after; the given one untouched', async () => {
    const other = await createDatabase();
    try {
      for (const run of [1, 2]) {
        const demo = await runDemo({ DATABASE_URL: other.url });
        expect(demo.code, `run ${run}: ${demo.stderr}`).toBe(0);
        expect(demo.stdout).toMatch(/running in a new database pgseal_demo_[0-9a-f]{8} on that server, dropped at the end/);
        expect(demo.stdout).toMatch(/doctor: \d+ ok, \d+ warning\(s\), 0 failed/);
      }
      const left = await other.sql<{ n: number }[]>`select count(*)::int as n from pg_database where datname like 'pgseal\_demo\_%'`;
      expect(left[0]!.n).toBe(0);
      const [schema] = await other.sql<{ n: number }[]>`select count(*)::int as n from pg_namespace where nspname = 'pgseal'`;
      expect(schema!.n).toBe(0);
    } finally {
      await other.drop();
    }
  }, 300_000);

  it('a bad master key: one line and a non-zero exit, nothing started', async () => {
    const demo = await runDemo({ PGSEAL_MASTER_KEY: 'not-a-key' });
    expect(demo.code).not.toBe(0);
    expect(demo.stderr.trim().split('\n')).toHaveLength(1);
    expect(demo.stderr).toMatch(/^demo failed: PGSEAL_/);
    expect(demo.stdout).not.toContain('starting an embedded PostgreSQL');
  });
});

describe('pgseal doctor on the demo database', () => {
  it('the demo ends with the doctor\'s summary, nothing failed; the CLI then exits 0', async () => {
    const demo = await runDemo({ DATABASE_URL: db.url, PGSEAL_MASTER_KEY: master });
    expect(demo.stderr, demo.stdout).not.toMatch(/demo failed/);
    expect(demo.stdout).toMatch(/== 9\. pgseal doctor/);
    expect(demo.stdout).toMatch(/doctor: \d+ ok, \d+ warning\(s\), 0 failed/);
    const doctor = await runCli(['doctor', '--full'], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: master });
    expect(doctor.code, doctor.stdout + doctor.stderr).toBe(0);
    expect(doctor.stdout).toMatch(/pgseal doctor: \d+ ok, \d+ warning\(s\), 0 failed/);
    const json = await runCli(['doctor', '--json'], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: master });
    const report = JSON.parse(json.stdout) as { results: Array<{ id: string; status: string }>; counts: Record<string, number> };
    expect(report.counts.fail).toBe(0);
    for (const area of ['connection', 'logging', 'keys', 'data', 'logs', 'privileges']) {
      expect(report.results.some((r) => r.id.startsWith(`${area}.`)), area).toBe(true);
    }
  }, 180_000);
});
