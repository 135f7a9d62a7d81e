// Integration tests get one PostgreSQL server for the run: PGSEAL_TEST_DATABASE_URL when
// set (a superuser URL; each test file creates its own database there), else an embedded
// server started here on a free port.

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
  const server = await startPostgres({ settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } });
  project.provide('pgAdminUrl', server.url());
  return () => server.stop();
}
