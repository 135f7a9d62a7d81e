// The test server's own log, for tests that must show something never reaches it (a key, a
// plaintext). The embedded server runs with logging_collector on and one fixed log file
// (global-setup.ts); a server named by PGSEAL_TEST_DATABASE_URL may have no readable log.
//
//   const log = await serverLog(db.sql);           // a superuser connection
//   if (typeof log === 'string') return ctx.skip(log); // the reason: never pass silently
//   const mark = await log.mark();
//   ... the statements under test ...
//   expect(await log.since(mark)).not.toContain(secret);
//
// since() returns only what was logged after mark(), once the collector has written it:
// it logs a marker line of its own and waits for it.

import { randomBytes } from 'node:crypto';
import type { Sql } from 'postgres';

export interface ServerLog {
  /** The log file, relative to the data directory. */
  readonly file: string;
  /** Where the log ends now. */
  mark(): Promise<number>;
  /** Everything the server logged after the mark. */
  since(mark: number): Promise<string>;
}

/** The server's log through a superuser connection, or why it cannot be read (for ctx.skip). */
export async function serverLog(sql: Sql): Promise<ServerLog | string> {
  let file: string | null;
  try {
    const [row] = await sql<{ file: string | null }[]>`select pg_catalog.pg_current_logfile('stderr') as file`;
    file = row?.file ?? null;
    if (file !== null) await sql`select pg_catalog.pg_read_file(${file}, 0, 1)`;
  } catch (error) {
    return `the server's log cannot be read (${(error as Error).message}): log assertions skipped`;
  }
  if (file === null) return 'the server writes no log file (logging_collector is off): log assertions skipped';
  const logFile = file;
  const size = async () => {
    const [row] = await sql<{ size: string }[]>`select (pg_catalog.pg_stat_file(${logFile})).size::text as size`;
    return Number(row!.size);
  };
  return {
    file: logFile,
    mark: size,
    async since(mark: number): Promise<string> {
      const marker = `pgseal-test-log-marker-${randomBytes(6).toString('hex')}`;
      await sql.unsafe(`do $$ begin raise log '${marker}'; end $$`);
      for (let attempt = 0; attempt < 100; attempt++) {
        const end = await size();
        const [row] = await sql<{ text: string }[]>`select pg_catalog.pg_read_file(${logFile}, ${mark}, ${Math.max(0, end - mark)}) as text`;
        const text = row!.text;
        const at = text.indexOf(marker);
        if (at >= 0) return text.slice(0, at);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`the server's log (${logFile}) did not show the marker within 5 s`);
    },
  };
}
