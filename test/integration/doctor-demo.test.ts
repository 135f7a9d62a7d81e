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

describe('pgseal doctor on the demo database', () => {
  it('the demo ends with the doctor\'s summary, nothing failed; the CLI then exits 0', async () => {
    const demo = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(TSX, ['scripts/demo.ts'], { cwd: ROOT, env: { ...process.env, DATABASE_URL: db.url, PGSEAL_MASTER_KEY: master }, timeout: 120_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }));
    });
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
