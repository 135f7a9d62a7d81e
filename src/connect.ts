// A postgres.js client configured for pgseal's own commands. Library users pass their own.

import postgres, { type Sql } from 'postgres';
import { ErrorCodes, PgsealError } from './errors.js';

export interface ConnectOptions {
  max?: number;
  /** seconds */
  connectTimeout?: number;
}

export function connect(databaseUrl: string | undefined, options: ConnectOptions = {}): Sql {
  if (!databaseUrl) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'no database: DATABASE_URL is not set', {
      hint: 'set DATABASE_URL or pass --database-url postgres://user@host:5432/db',
    });
  }
  try {
    new URL(databaseUrl);
  } catch {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the database URL is not a valid URL', {
      hint: 'use the form postgres://user:password@host:5432/database',
    });
  }
  return postgres(databaseUrl, {
    max: options.max ?? 4,
    connect_timeout: options.connectTimeout ?? 10,
    onnotice: () => {},
    connection: { application_name: 'pgseal' },
  });
}
