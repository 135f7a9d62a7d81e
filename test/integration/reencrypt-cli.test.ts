// The reencrypt CLI under fire: killed with SIGKILL at random moments on 200,000 rows and
// restarted, every checkpoint stays true and the end state is exact; a writer keeps
// writing meanwhile; status and dry run; emergency rotation refuses the old key.

import { Keyring } from '../../src/keys/keyring.js';
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomBytes, randomInt } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { column, defineTable, initKeys, LocalMasterKey, pgseal, protectColumn, reencrypt, rotateKey, type Pgseal } from '../../src/index.js';
import { BIN, runCli } from '../support/cli.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let seal: Pgseal;
const masterText = randomBytes(32).toString('base64');
const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'));
const env = () => ({ DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText, PGSEAL_ACTOR: 'ops-bot' });

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master());
  seal = pgseal({ sql: db.sql, masterKey: master() });
});
afterAll(async () => {
  seal?.close();
  await db?.drop();
});

async function activeVersion(): Promise<number> {
  const [k] = await db.sql<{ version: number }[]>`select version from pgseal.keys where scope = 'default' and purpose = 'data' and state = 'active'`;
  return k!.version;
}

/** Rows whose value does not decrypt to the expected plaintext (kept in a plain table for the test). */
async function mismatches(table: string): Promise<number> {
  const [r] = await seal.begin((tx) => tx.unsafe<{ n: number }[]>(
    `select count(*)::int as n from ${table} t full join ${table}_expected e using (id)
      where pgseal.decrypt_text(t.v, 'public.${table}.v') is distinct from e.v`));
  return r!.n;
}

/** Spawns the CLI; resolves with its exit code or signal after `killAfterMs` (SIGKILL) or on its own exit. */
function runAndKill(args: string[], killAfterMs: number | undefined): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, ...env() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

describe('pgseal reencrypt, killed and restarted', () => {
  it('SIGKILL at 10 random moments on 200,000 rows: checkpoints always true, every row on the new key with its own value, none counted twice', async () => {
    await db.sql`create table accounts (id int primary key, v bytea)`;
    await protectColumn(db.sql, { table: 'accounts', column: 'v' });
    await db.sql`create table accounts_expected as select g as id, 'acct-' || g || '-' || md5(g::text) as v from generate_series(1, 200000) g`;
    await seal.begin((tx) => tx`insert into accounts select id, pgseal.encrypt_text(v, 'public.accounts.v') from accounts_expected`);
    const old = await activeVersion();
    await rotateKey(db.sql, master());
    await seal.keyring.refresh();
    const now = await activeVersion();
    // throttled so that ten kills (at most 1.2 s each) cannot finish the 200,000 rows: the last call must resume
    const args = ['reencrypt', '--batch-size', '1000', '--workers', '2', '--max-rows-per-second', '15000', '--json'];
    let killed = 0;
    for (let i = 0; i < 10; i++) {
      const r = await runAndKill(args, randomInt(150, 1200));
      if (r.signal === 'SIGKILL') killed++;
      // every checkpoint is true: no row at or before a range's last_key is still on the old key
      const [behind] = await db.sql<{ n: number }[]>`
        select count(*)::int as n from pgseal.reencrypt_progress p join accounts a
          on (p.lower_key is null or a.id > p.lower_key::int) and a.id <= p.last_key::int
         where p.last_key is not null and pgseal.key_version_of(a.v) = ${old}`;
      expect(behind!.n).toBe(0);
      expect(await mismatches('accounts')).toBe(0);
    }
    expect(killed).toBeGreaterThanOrEqual(8);
    const last = await runAndKill(['reencrypt', '--batch-size', '1000', '--workers', '2', '--json'], undefined);
    expect(last.code, last.stderr).toBe(0);
    const lines = last.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.at(-1)).toMatchObject({ event: 'done', resumed: true });
    expect(lines.at(-1)!.peak_rss_bytes).toBeGreaterThan(0);

    const [counts] = await db.sql<{ on_new: number; total: number }[]>`
      select count(*) filter (where pgseal.key_version_of(v) = ${now})::int as on_new, count(*)::int as total from accounts`;
    expect(counts).toEqual({ on_new: 200000, total: 200000 });
    expect(await mismatches('accounts')).toBe(0);
    // one run across all the restarts, and each row re-encrypted exactly once
    const runs = await db.sql<{ id: string; state: string }[]>`select id, state from pgseal.reencrypt_runs`;
    expect(runs).toHaveLength(1);
    expect(runs[0]!.state).toBe('done');
    const [done] = await db.sql<{ n: number }[]>`select sum(rows_done)::int as n from pgseal.reencrypt_progress`;
    expect(done!.n).toBe(200000);

    const status = await runCli(['reencrypt', 'status', '--json'], env());
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ state: 'done', actor: 'ops-bot', columns: [{ column: 'public.accounts.v', rowsDone: 200000, remaining: 0, done: true }] });
    const human = await runCli(['reencrypt', 'status'], env());
    expect(human.stdout).toMatch(/run \d+ \(data\): done/);
    expect(human.stdout).toMatch(/public\.accounts\.v\s+\|\s+200000\s+\|\s+0/);
  }, 240_000);
});

describe('pgseal reencrypt beside a writer', () => {
  it('each row ends with the writer\'s last value, on the new key; keys never in pg_stat_activity', async () => {
    await db.sql`create table wallets (id int primary key, v bytea)`;
    await protectColumn(db.sql, { table: 'wallets', column: 'v' });
    await seal.begin((tx) => tx`insert into wallets select g, pgseal.encrypt_text('w' || g, 'public.wallets.v') from generate_series(1, 20000) g`);
    await rotateKey(db.sql, master());
    await seal.keyring.refresh();
    const now = await activeVersion();
    // database mode: the writer's statements carry key material, which pg_stat_activity must never show
    const wallets = seal.table(defineTable({ name: 'wallets', primaryKey: 'id', columns: { id: column.plain<number>(), v: column.text() } }), { crypto: 'database' });
    const expected = new Map<number, string>();
    let running = true;
    let writes = 0;
    const writer = (async () => {
      while (running) {
        const id = randomInt(1, 20001);
        const value = `writer ${id} #${++writes}`;
        await wallets.update(id, { v: value });
        expected.set(id, value);
      }
    })();
    const material = (await seal.keyring.keyset(['default']))!.toString('hex');
    const seen: string[] = [];
    const watcher = setInterval(() => {
      void db.sql<{ query: string }[]>`select query from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`.then((rows) => seen.push(...rows.map((r) => r.query)));
    }, 20);
    const result = await reencrypt(db.sql, seal.keyring, { table: 'wallets', batchSize: 500, workers: 2, maxRowsPerSecond: 20000 });
    running = false;
    clearInterval(watcher);
    await writer;
    expect(result.state).toBe('done');
    expect(writes).toBeGreaterThan(100);
    const rows = await seal.begin((tx) => tx<{ id: number; v: string; version: number }[]>`
      select id, pgseal.decrypt_text(v, 'public.wallets.v') as v, pgseal.key_version_of(v) as version from wallets order by id`);
    expect(rows).toHaveLength(20000);
    for (const r of rows) {
      expect(r.version).toBe(now);
      expect(r.v).toBe(expected.get(r.id) ?? `w${r.id}`);
    }
    expect(seen.some((q) => q.includes('pgseal.encrypt_bytea_with'))).toBe(true);
    for (const q of seen) expect(q).not.toContain(material.slice(8, 40));
  });
});

describe('pgseal keys rotate --emergency', () => {
  it('rotates, marks the old version compromised, re-encrypts every column at once, records why; old-key writes are refused', async () => {
    await db.sql`create table patients (id int primary key, v bytea)`;
    await protectColumn(db.sql, { table: 'patients', column: 'v' });
    await seal.keyring.refresh();
    await seal.begin((tx) => tx`insert into patients select g, pgseal.encrypt_text('p' || g, 'public.patients.v') from generate_series(1, 3000) g`);
    const stale = pgseal({ sql: db.sql, masterKey: master() });
    const staleKeys = new Keyring(db.sql, master());
    await staleKeys.refresh();
    const patients = defineTable({ name: 'patients', primaryKey: 'id', columns: { id: column.plain<number>(), v: column.text() } });
    expect((await stale.table(patients).findByPk(1))?.v).toBe('p1');
    const old = await activeVersion();

    const noReason = await runCli(['keys', 'rotate', '--emergency'], env());
    expect(noReason.code).toBe(1);
    expect(noReason.stderr).toMatch(/^pgseal: PGSEAL_INVALID_ARGUMENT: --emergency needs --reason/);
    expect(await activeVersion()).toBe(old);

    const r = await runCli(['keys', 'rotate', '--emergency', '--reason', 'laptop with the key lost', '--json'], env());
    expect(r.code, r.stderr).toBe(0);
    const now = await activeVersion();
    expect(now).not.toBe(old);
    const [k] = await db.sql<{ compromised_at: Date | null }[]>`select compromised_at from pgseal.keys where version = ${old}`;
    expect(k!.compromised_at).not.toBeNull();
    for (const t of ['patients', 'accounts', 'wallets']) {
      const [c] = await db.sql.unsafe<{ n: number }[]>(`select count(*)::int as n from ${t} where pgseal.key_version_of(v) <> ${now}`);
      expect(c!.n, t).toBe(0);
    }
    const events = await db.sql<{ operation: string; actor: string; reason: string }[]>`
      select operation, actor, reason from pgseal.encryption_audit_log where reason = 'laptop with the key lost' order by id`;
    expect(events.map((e) => e.operation)).toEqual(['key.rotate', 'key.compromise', 'reencrypt.start', 'reencrypt.finish']);
    expect(events.every((e) => e.actor === 'ops-bot')).toBe(true);
    const [run] = await db.sql<{ emergency: boolean }[]>`select emergency from pgseal.reencrypt_runs order by id desc limit 1`;
    expect(run!.emergency).toBe(true);

    // a process whose keys predate the rotation cannot write with the compromised key: the
    // compromise is a revocation, so its next transaction is refused by pgseal.guard() before
    // any key is sent (PS020), and it reloads and writes with the new key
    await stale.begin((tx) => tx`update patients set v = pgseal.encrypt_text('written after the compromise', 'public.patients.v') where id = 1`);
    await stale.begin((tx) => tx`insert into patients values (3001, pgseal.encrypt_text('new row', 'public.patients.v'))`);
    const written = await db.sql<{ version: number }[]>`select pgseal.key_version_of(v) as version from patients where id in (1, 3001)`;
    expect(written.map((r) => r.version)).toEqual([now, now]);
    // the emergency guard still refuses a compromised key handed in by hand
    const oldKeys = db.sql.begin(async (tx) => {
      await tx`select pgseal.use_keys(${await staleKeys.payload()})`;
      return tx`update patients set v = pgseal.encrypt_text('written with the old key', 'public.patients.v') where id = 1`;
    });
    await expect(oldKeys).rejects.toMatchObject({ code: 'PS014' });
    await db.sql`delete from patients where id = 3001`;
    // ...and its typed helpers heal: refused, they reload the keys and write with the new one
    await stale.table(patients).update(2, { v: 'after reload' });
    const [two] = await db.sql<{ version: number }[]>`select pgseal.key_version_of(v) as version from patients where id = 2`;
    expect(two!.version).toBe(now);
    expect((await seal.table(patients).findByPk(2))?.v).toBe('after reload');
    stale.close();
  });

  it('the quarterly rotation script rotates every scope, re-encrypts, retires the old versions, and records why', async () => {
    const script = fileURLToPath(new URL('../../scripts/quarterly-rotation.ts', import.meta.url));
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', script], { env: { PATH: process.env.PATH, ...env() }, timeout: 120_000 }, (error, stdout, stderr) =>
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }));
    });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string });
    expect(events.map((e) => e.event)).toContain('re-encrypted');
    const keys = await db.sql<{ state: string; n: number }[]>`select state, count(*)::int as n from pgseal.keys where purpose = 'data' group by state order by state`;
    expect(keys).toEqual([{ state: 'active', n: 1 }, { state: 'retired', n: expect.any(Number) }]);
    const now = await activeVersion();
    for (const t of ['patients', 'accounts', 'wallets']) {
      const [c] = await db.sql.unsafe<{ n: number }[]>(`select count(*)::int as n from ${t} where pgseal.key_version_of(v) <> ${now}`);
      expect(c!.n, t).toBe(0);
    }
    const [retired] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.encryption_audit_log where operation = 'key.retire' and reason like 'quarterly rotation %' and actor = 'ops-bot'`;
    expect(retired!.n).toBeGreaterThan(0);
  });

  it('dry run counts per version and changes nothing', async () => {
    await rotateKey(db.sql, master());
    const before = (await db.sql`select v from patients order by id`).map((r) => (r.v as Buffer).toString('hex')).join();
    const dry = await runCli(['reencrypt', '--dry-run', '--table', 'patients', '--json'], env());
    expect(dry.code, dry.stderr).toBe(0);
    const report = JSON.parse(dry.stdout) as { stale: number; columns: Array<{ versions: Array<{ rows: number; state: string }> }> };
    expect(report.stale).toBe(3000);
    expect(report.columns[0]!.versions).toEqual([expect.objectContaining({ rows: 3000, state: 'decrypt-only' })]);
    const human = await runCli(['reencrypt', '--dry-run', '--table', 'patients'], env());
    expect(human.stdout).toMatch(/3000 rows to re-encrypt, about \d+ s with 1 worker\(s\); nothing was changed/);
    expect((await db.sql`select v from patients order by id`).map((r) => (r.v as Buffer).toString('hex')).join()).toBe(before);
    expect(await db.sql`select 1 from pgseal.reencrypt_runs where state = 'running'`).toHaveLength(0);
  });
});

describe('pgseal reencrypt and signals', () => {
  it('SIGTERM stops after the batch in flight: exit 1 with PGSEAL_REENCRYPT_STOPPED, the run resumable', async () => {
    // patients is on a decrypt-only version since the dry-run test rotated
    const child = spawn(process.execPath, [BIN, 'reencrypt', '--table', 'patients', '--batch-size', '100', '--max-rows-per-second', '500', '--json'], {
      env: { PATH: process.env.PATH, ...env() }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.once('data', () => child.kill('SIGTERM'));
      child.on('exit', (c) => resolve(c));
    });
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    // --json: the error is one JSON object on stderr
    const failure = (JSON.parse(stderr) as { error: { code: string; message: string; hint: string } }).error;
    expect(failure.code).toBe('PGSEAL_REENCRYPT_STOPPED');
    expect(failure.message).toMatch(/^run \d+ stopped by SIGTERM after \d+ values$/);
    expect(failure.hint).toMatch(/run `pgseal reencrypt` again/);
    const [run] = await db.sql<{ state: string }[]>`select state from pgseal.reencrypt_runs order by id desc limit 1`;
    expect(run!.state).toBe('stopped');
    const resumed = await runCli(['reencrypt', '--table', 'patients', '--json'], env());
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout.trim().split('\n').at(-1)!)).toMatchObject({ event: 'done', resumed: true });
  });
});
