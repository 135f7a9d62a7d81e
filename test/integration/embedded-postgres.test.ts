// The throwaway server the demo, the benchmarks and the tests start (scripts/lib/embedded-postgres.ts):
// the superuser's password never sits where other local users can read it, and, as root, a
// clone the "postgres" user cannot reach is one clear error before anything starts.

import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkReachableByPostgres, startPostgres } from '../../scripts/lib/embedded-postgres.js';
import { connectQuiet } from '../support/db.js';

const root = process.getuid?.() === 0;

describe('the embedded PostgreSQL', () => {
  it('writes the password file for initdb only inside a folder other users cannot enter, and leaves nothing behind', async () => {
    const base = tmpdir();
    const seen: string[] = [];
    const modes = new Map<string, number>();
    const watcher = watch(base, (_event, name) => {
      if (!name) return;
      seen.push(name);
      if (name.startsWith('pgseal-pw-')) {
        try {
          modes.set(name, statSync(join(base, name)).mode & 0o777);
        } catch {
          // already removed
        }
      }
    });
    let server;
    try {
      server = await startPostgres();
    } finally {
      watcher.close();
    }
    try {
      const sql = connectQuiet(server.url(), { max: 1 });
      const [row] = await sql<{ ok: number }[]>`select 1 as ok`;
      expect(row!.ok).toBe(1);
      await sql.end();
    } finally {
      await server.stop();
    }
    expect(seen.filter((n) => n.startsWith('pg-password-'))).toEqual([]);
    const privates = seen.filter((n) => n.startsWith('pgseal-pw-'));
    expect(privates.length).toBeGreaterThan(0);
    for (const mode of modes.values()) expect(mode & 0o077).toBe(0);
    expect(readdirSync(base).filter((n) => n.startsWith('pgseal-pw-') || n.startsWith('pg-password-'))).toEqual([]);
  });

  it.skipIf(!root)('as root, a folder the "postgres" user cannot enter is one clear error (only as root: otherwise the server runs as this user)', () => {
    const home = mkdtempSync(join(tmpdir(), 'pgseal-home-'));
    try {
      const clone = join(home, 'clone', 'scripts', 'lib');
      mkdirSync(clone, { recursive: true });
      // mkdtemp makes it 0700: a home directory only its owner may enter
      expect(() => checkReachableByPostgres(clone)).toThrow(/runs as user "postgres", which cannot enter .*pgseal-home-\w+ \(mode 700\): run as another user, clone outside that folder, or set DATABASE_URL/);
      expect(() => checkReachableByPostgres(tmpdir())).not.toThrow();
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
