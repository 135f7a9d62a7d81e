// A fresh database per test file, on the run's server (see global-setup.ts).

import { randomBytes } from 'node:crypto';
import postgres, { type Sql } from 'postgres';
import { inject } from 'vitest';
import { migrate } from '../../src/migrate.js';

export interface TestDatabase {
  name: string;
  /** superuser URL of this database */
  url: string;
  /** superuser connection to this database */
  sql: Sql;
  /** URL of this database for another role */
  urlAs(user: string, password: string): string;
  /** superuser connection to the server's maintenance database */
  admin: Sql;
  drop(): Promise<void>;
}

export function adminUrl(): string {
  return inject('pgAdminUrl');
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = '/' + database;
  return u.toString();
}

export function connectQuiet(url: string, options: postgres.Options<Record<string, postgres.PostgresType>> = {}): Sql {
  return postgres(url, { onnotice: () => {}, max: 4, ...options });
}

export async function createDatabase(options: { migrated?: boolean; owner?: string } = {}): Promise<TestDatabase> {
  const admin = connectQuiet(adminUrl(), { max: 1 });
  const name = 'pgseal_t_' + randomBytes(5).toString('hex');
  await admin.unsafe(`create database "${name}"${options.owner ? ` owner "${options.owner}"` : ''}`);
  const url = withDatabase(adminUrl(), name);
  if (options.migrated) await migrate({ databaseUrl: url, direction: 'up' });
  const sql = connectQuiet(url);
  return {
    name,
    url,
    sql,
    admin,
    urlAs: (user, password) => {
      const u = new URL(url);
      u.username = user;
      u.password = password;
      return u.toString();
    },
    drop: async () => {
      await sql.end({ timeout: 5 });
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end({ timeout: 5 });
    },
  };
}

/** A login role for this run; dropped by the caller. */
export async function createRole(admin: Sql, prefix: string, attributes = ''): Promise<{ name: string; password: string }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  await admin.unsafe(`create role "${name}" login password '${password}' ${attributes}`);
  return { name, password };
}
