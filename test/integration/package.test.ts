// pgseal as a dependency, not a clone: the packed tarball installs into a fresh app, its
// typings check under strict nodenext, `npx pgseal` runs, and the app's own node-pg-migrate
// migration can run pgseal's migrations (each takes its own advisory lock: no hang).

import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type TestDatabase } from '../support/db.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Run { code: number; stdout: string; stderr: string }

function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}, timeout = 240_000): Promise<Run> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('PGSEAL_') && k !== 'DATABASE_URL' && !k.startsWith('npm_')) base[k] = v;
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: { ...base, ...env }, timeout, maxBuffer: 32 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('the packed package in a fresh app', () => {
  let dir: string;
  let app: string;
  let db: TestDatabase;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pgseal-pack-'));
    app = join(dir, 'app');
    mkdirSync(join(app, 'migrations'), { recursive: true });
    // dist/ is built by `npm test`; --ignore-scripts keeps prepack from rewriting it under running tests
    const packed = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], ROOT);
    expect(packed.code, packed.stderr).toBe(0);
    const tarball = join(dir, packed.stdout.trim().split('\n').pop()!);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }));
    const devTypes = JSON.parse(readFileSync(join(ROOT, 'node_modules/@types/node/package.json'), 'utf8')).version as string;
    const ts = JSON.parse(readFileSync(join(ROOT, 'node_modules/typescript/package.json'), 'utf8')).version as string;
    const installed = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, `@types/node@${devTypes}`, `typescript@${ts}`], app);
    expect(installed.code, installed.stderr).toBe(0);
    // npm prints a warning for install scripts it did not run: pgseal has none
    expect(installed.stderr).not.toMatch(/pgseal.*(prepare|install script)/i);
    db = await createDatabase();
  }, 300_000);

  afterAll(async () => {
    await db?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ships what its source maps point at, and no private flag', () => {
    const pkg = JSON.parse(readFileSync(join(app, 'node_modules/pgseal/package.json'), 'utf8'));
    expect(pkg.private).toBeUndefined();
    expect(pkg.scripts?.prepare).toBeUndefined();
    const map = JSON.parse(readFileSync(join(app, 'node_modules/pgseal/dist/index.js.map'), 'utf8')) as { sources: string[] };
    for (const source of map.sources) {
      expect(() => readFileSync(join(app, 'node_modules/pgseal/dist', source))).not.toThrow();
    }
  });

  it('type-checks an import under strict nodenext', async () => {
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
      include: ['index.ts'],
    }));
    writeFileSync(join(app, 'index.ts'), [
      "import { pgseal, envMasterKey, migrate, MIGRATIONS_DIR, PgsealError } from 'pgseal';",
      'export const all = [pgseal, envMasterKey, migrate];',
      'export const dir: string = MIGRATIONS_DIR;',
      'export const isError = (e: unknown): e is PgsealError => e instanceof PgsealError;',
      '',
    ].join('\n'));
    const checked = await run(process.execPath, [join(app, 'node_modules/typescript/bin/tsc'), '-p', '.'], app);
    expect(checked.stdout + checked.stderr).toBe('');
    expect(checked.code).toBe(0);
    // a wrong use must fail, or the check above proves nothing
    writeFileSync(join(app, 'index.ts'), "import { MIGRATIONS_DIR } from 'pgseal';\nexport const n: number = MIGRATIONS_DIR;\n");
    const wrong = await run(process.execPath, [join(app, 'node_modules/typescript/bin/tsc'), '-p', '.'], app);
    expect(wrong.code).not.toBe(0);
  });

  it('runs npx pgseal --help', async () => {
    const help = await run('npx', ['--no-install', 'pgseal', '--help'], app);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/pgseal <command>/);
    expect(help.stdout).toMatch(/migrate/);
  });

  it("runs pgseal's migrations from the app's own node-pg-migrate migration, then nothing is pending", async () => {
    writeFileSync(join(app, 'migrations', '1700000000000_pgseal.js'), [
      "import { migrate } from 'pgseal';",
      'export async function up() {',
      "  await migrate({ databaseUrl: process.env.DATABASE_URL, direction: 'up' });",
      '}',
      'export async function down() {}',
      '',
    ].join('\n'));
    const env = { DATABASE_URL: db.url };
    // node-pg-migrate's default advisory lock, held by the app's runner while pgseal's runs
    const migrated = await run('npx', ['--no-install', 'node-pg-migrate', 'up', '-m', 'migrations', '--migrations-table', 'app_migrations'], app, env, 120_000);
    expect(migrated.code, migrated.stdout + migrated.stderr).toBe(0);
    const [schema] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_namespace where nspname = 'pgseal'`;
    expect(schema!.n).toBe(1);
    const [app_] = await db.sql<{ n: number }[]>`select count(*)::int as n from public.app_migrations`;
    expect(app_!.n).toBe(1);
    const status = await run('npx', ['--no-install', 'pgseal', 'migrate', 'status'], app, env);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/applied/i);
    expect(status.stdout).toMatch(/0 pending|nothing pending|no pending/i);
  }, 150_000);
});
