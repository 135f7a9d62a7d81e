// Applies the SQL migrations in migrations/ with node-pg-migrate, under an advisory lock of
// pgseal's own (taken in wait mode, so concurrent runs queue): node-pg-migrate's default lock
// would deadlock against an application's own node-pg-migrate run that calls migrate().
// Also: which migrations are applied or pending, and the pending ones as one SQL script for
// other migration tools (Prisma Migrate, Drizzle Kit, Flyway, psql).

import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';
import { connect, pgClientConfig } from './connect.js';
import { ErrorCodes, PgsealError, toPgsealError } from './errors.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
export const MIGRATIONS_SCHEMA = 'pgseal_migrations';
export const MIGRATIONS_TABLE = 'migrations';
/** pgseal's advisory lock key ('pgseal' in ASCII), distinct from node-pg-migrate's default */
export const MIGRATIONS_LOCK_ID = 0x70677365616c;
// the session the migrations expect: pgcrypto, when 0001_core creates it, lands in public
const MIGRATIONS_SEARCH_PATH = 'public';

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
      schema: MIGRATIONS_SEARCH_PATH,
      migrationsSchema: MIGRATIONS_SCHEMA,
      migrationsTable: MIGRATIONS_TABLE,
      createMigrationsSchema: true,
      checkOrder: true,
      singleTransaction: true,
      advisoryLockMode: 'wait',
      lockValue: MIGRATIONS_LOCK_ID,
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

/** The migrations this package ships, oldest first (names without `.sql`, as recorded). */
export function shippedMigrations(): string[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((f) => f.slice(0, -'.sql'.length));
}

export interface MigrationStatus {
  /** applied ones, oldest first, with when they ran */
  applied: { name: string; runOn: Date }[];
  /** shipped but not applied, in the order they would run */
  pending: string[];
  /** recorded as applied but not shipped by this version of pgseal (a newer pgseal applied them) */
  unknown: string[];
}

export async function migrationStatus(databaseUrl: string): Promise<MigrationStatus> {
  const sql = connect(databaseUrl, { connectTimeout: 10 });
  try {
    const [found] = await sql<{ exists: boolean }[]>`
      select pg_catalog.to_regclass(${`"${MIGRATIONS_SCHEMA}"."${MIGRATIONS_TABLE}"`}) is not null as exists`;
    const exists = found?.exists === true;
    const rows = exists
      ? await sql<{ name: string; run_on: Date }[]>`
          select name, run_on from ${sql(MIGRATIONS_SCHEMA)}.${sql(MIGRATIONS_TABLE)} order by run_on, id`
      : [];
    const shipped = shippedMigrations();
    const done = new Set(rows.map((r) => r.name));
    return {
      applied: rows.map((r) => ({ name: r.name, runOn: r.run_on })),
      pending: shipped.filter((n) => !done.has(n)),
      unknown: rows.map((r) => r.name).filter((n) => !shipped.includes(n)),
    };
  } catch (error) {
    throw toPgsealError(error, 'the database');
  } finally {
    await sql.end({ timeout: 5 });
  }
}

// node-pg-migrate's own rule for a SQL file: the up part runs from its marker to the down marker
const UP_MARKER = /^\s*--[\s-]*up\s+migration/im;
const DOWN_MARKER = /^\s*--[\s-]*down\s+migration/im;

export function upSection(name: string): string {
  const content = readFileSync(join(MIGRATIONS_DIR, `${name}.sql`), 'utf8');
  const up = content.search(UP_MARKER);
  const down = content.search(DOWN_MARKER);
  if (up < 0 || down < up) {
    throw new PgsealError(ErrorCodes.MIGRATION_FAILED, `migration ${name} has no up section before its down section`, {
      hint: 'the package is damaged: reinstall pgseal',
    });
  }
  return content.slice(up, down).trimEnd();
}

/**
 * The pending migrations as one script for another tool to run: one transaction, the session
 * pgseal's runner sets, and each migration recorded in pgseal_migrations.migrations exactly as
 * `pgseal migrate up` records it, so `migrate status` and later `migrate up` agree with it.
 * With `all`, every shipped migration (a script for an empty database, no connection needed).
 */
export async function pendingMigrationsSql(databaseUrl: string | undefined, options: { all?: boolean } = {}): Promise<string> {
  let names: string[];
  if (options.all) names = shippedMigrations();
  else {
    if (!databaseUrl) {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'no database: DATABASE_URL is not set', {
        hint: 'set DATABASE_URL to read which migrations are applied, or pass --all for a script for an empty database',
      });
    }
    const status = await migrationStatus(databaseUrl);
    names = status.pending;
  }
  const table = `"${MIGRATIONS_SCHEMA}"."${MIGRATIONS_TABLE}"`;
  const out = [
    `-- pgseal migrations: ${names.length === 0 ? 'none pending' : names.join(', ')}`,
    '-- Generated by `pgseal migrate sql`; run it as the role that owns pgseal\'s objects.',
    '-- One transaction: a failure applies nothing. Each migration is recorded where',
    '-- `pgseal migrate up` records it, so `pgseal migrate status` sees it as applied.',
    'BEGIN;',
    `SELECT pg_catalog.pg_advisory_xact_lock(${MIGRATIONS_LOCK_ID});`,
    `SET LOCAL search_path TO "${MIGRATIONS_SEARCH_PATH}";`,
    `CREATE SCHEMA IF NOT EXISTS "${MIGRATIONS_SCHEMA}";`,
    `CREATE TABLE IF NOT EXISTS ${table} (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL);`,
  ];
  for (const name of names) {
    out.push('', `-- ==== ${name} ====`, upSection(name), '', `INSERT INTO ${table} (name, run_on) VALUES ('${name}', pg_catalog.now());`);
  }
  out.push('', 'COMMIT;', '');
  return out.join('\n');
}
