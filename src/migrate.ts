// Applies the SQL migrations in migrations/ with node-pg-migrate, taking its advisory lock
// in wait mode so that concurrent runs queue instead of failing.

import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import { pgClientConfig } from './connect.js';
import { ErrorCodes, PgsealError, toPgsealError } from './errors.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
export const MIGRATIONS_SCHEMA = 'pgseal_migrations';
export const MIGRATIONS_TABLE = 'migrations';

export interface MigrateOptions {
  databaseUrl: string;
  direction: 'up' | 'down';
  /** how many migrations; default all (up) or one (down); Infinity for all */
  count?: number;
}

export async function migrate(options: MigrateOptions): Promise<string[]> {
  const messages: string[] = [];
  try {
    const applied = await runner({
      // TLS as every other command (connect.ts), not node-postgres's own reading of sslmode
      databaseUrl: pgClientConfig(options.databaseUrl),
      dir: MIGRATIONS_DIR,
      direction: options.direction,
      count: options.count ?? (options.direction === 'up' ? Infinity : 1),
      // the migrations' session: pgcrypto, when 0001_core creates it, lands in public (sql/10_crypto_bindings.sql)
      schema: 'public',
      migrationsSchema: MIGRATIONS_SCHEMA,
      migrationsTable: MIGRATIONS_TABLE,
      createMigrationsSchema: true,
      checkOrder: true,
      singleTransaction: true,
      advisoryLockMode: 'wait',
      log: (message: string) => messages.push(message),
    });
    return applied.map((m) => m.name);
  } catch (error) {
    const e = toPgsealError(error, 'the database');
    if (e.code !== ErrorCodes.DB_ERROR) throw e;
    throw new PgsealError(ErrorCodes.MIGRATION_FAILED, `migration failed: ${e.message}`, {
      hint: e.hint ?? 'nothing was applied (migrations run in one transaction); fix the cause and run again',
      sqlstate: e.sqlstate,
    });
  }
}
