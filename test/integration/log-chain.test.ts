// Tamper evidence: both logs' rows carry an HMAC under the log key, and every statement
// that writes them appends a link to a keyed hash chain. `audit verify` must report every
// row inserted, edited or deleted by hand, every link and head altered, and nothing on an
// untouched log written by 8 concurrent writers (with rollbacks among them).

import { randomBytes } from 'node:crypto';
import postgres, { type Sql, type TransactionSql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  column, defineTable, dropLogPartitions, ErrorCodes, initKeys, LocalMasterKey, masterLogKeys, pgseal, protectColumn,
  verifyLogs, withAccessContext, type Pgseal, type VerifyResult,
} from '../../src/index.js';
import { AccessLogBuffer } from '../../src/audit/access-log.js';
import { recordEvent } from '../../src/audit/record.js';
import { runCli } from '../support/cli.js';
import { connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let pool: Sql;
let sync: Pgseal;
let async: Pgseal;
const masterText = randomBytes(32).toString('base64');
const master = () => new LocalMasterKey(Buffer.from(masterText, 'base64'));
const env = () => ({ DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });

const members = defineTable({
  name: 'members',
  primaryKey: 'id',
  columns: { id: column.plain<number>(), name: column.text(), email: column.text({ searchable: true, normalize: 'email' }) },
});

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master());
  await db.sql`create table members (id int primary key)`;
  await protectColumn(db.sql, { table: 'members', column: 'name' });
  await protectColumn(db.sql, { table: 'members', column: 'email', searchable: true, normalizer: 'email' });
  pool = postgres(db.url, { max: 8, onnotice: () => {} });
  sync = pgseal({ sql: pool, masterKey: master(), accessLog: { mode: 'sync', actor: 'svc' } });
  async = pgseal({ sql: pool, masterKey: master(), accessLog: { mode: 'async', actor: 'svc', flushEntries: 50, flushIntervalMs: 50 } });
  await sync.table(members).insertMany(Array.from({ length: 200 }, (_, i) => ({ id: i + 1, name: `member ${i + 1}`, email: `m${i + 1}@example.org` })));
});
afterAll(async () => {
  await sync?.close();
  await async?.close();
  await pool?.end();
  await db?.drop();
});

/** Verifies inside a transaction that is then rolled back: each tampering stays in its test. */
async function tampered(change: (tx: TransactionSql) => Promise<unknown>, since?: Date): Promise<VerifyResult> {
  let result: VerifyResult | undefined;
  await db.sql.begin(async (tx) => {
    await change(tx);
    result = await verifyLogs(tx as unknown as Sql, masterLogKeys(tx as unknown as Sql, master()), { since, record: false });
    throw new Error('rollback');
  }).catch((e: Error) => {
    if (e.message !== 'rollback') throw e;
  });
  return result!;
}

const kinds = (r: VerifyResult) => r.problems.map((p) => `${p.log}:${p.kind}`);

describe('an untouched log', () => {
  it('verifies clean after 8 concurrent writers (sync and async access logs, audit events, rollbacks)', async () => {
    const logKeys = masterLogKeys(pool, master());
    let rolledBack = 0;
    await Promise.all(Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; i < 25; i++) {
        const id = ((w * 25 + i) % 200) + 1;
        await withAccessContext({ actor: `user-${w}`, clientIp: `198.51.100.${w + 1}` }, async () => {
          if (i % 5 === 0) await sync.table(members).update(id, { name: `renamed ${id}` });
          else if (i % 2 === 0) await sync.table(members).findByPk(id);
          else await async.table(members).findBy('email', `m${id}@example.org`);
        });
        if (i % 6 === 0) await recordEvent(pool, logKeys, { operation: 'test.event', success: true, actor: `writer-${w}`, details: { i } });
        if (i % 8 === 0) {
          // a rolled-back statement takes its link with it: no gap in any chain
          await pool.begin(async (tx) => {
            await recordEvent(tx, logKeys, { operation: 'test.rolled_back', success: true, actor: `writer-${w}` });
            throw new Error('rollback');
          }).catch(() => { rolledBack += 1; });
        }
      }
    }));
    await async.flushAccessLog();
    expect(rolledBack).toBe(32);
    const chains = await db.sql<{ log: string; n: number }[]>`select log, count(distinct chain)::int as n from pgseal.log_links group by log order by log`;
    // concurrent writers spread over several chains instead of queueing on one
    expect(chains.find((c) => c.log === 'access')!.n).toBeGreaterThan(1);
    const [gone] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.encryption_audit_log where operation = 'test.rolled_back'`;
    expect(gone!.n).toBe(0);

    const r = await verifyLogs(db.sql, masterLogKeys(db.sql, master()), { actor: 'auditor' });
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    const access = r.logs.find((l) => l.log === 'access')!;
    expect(access.rows).toBeGreaterThan(400 + 8 * 25);
    expect(access.links).toBeGreaterThan(100);
    expect(r.logs.find((l) => l.log === 'audit')!.rows).toBeGreaterThanOrEqual(3 + 8 * 5);
    // verify leaves its own (signed) trace
    const [trace] = await db.sql<{ actor: string; success: boolean }[]>`select actor, success from pgseal.encryption_audit_log where operation = 'audit.verify' order by id desc limit 1`;
    expect(trace).toEqual({ actor: 'auditor', success: true });

    const cli = await runCli(['audit', 'verify'], env());
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('the logs verify');
  });

  it('every log row has a MAC, and the log key is neither in the rows nor in the settings', async () => {
    const [row] = await db.sql<{ n: number; unsigned: number }[]>`
      select count(*)::int as n, count(*) filter (where mac is null or link_id is null)::int as unsigned from pgseal.encrypted_data_access_log`;
    expect(row!.n).toBeGreaterThan(0);
    expect(row!.unsigned).toBe(0);
    const keyset = await masterLogKeys(db.sql, master()).logKeyset();
    const key = keyset.subarray(4, 36);
    const dump = await db.sql<{ t: string }[]>`
      select string_agg(t::text, '') as t from (select l::text as t from pgseal.log_links l union all select c::text from pgseal.log_chains c
        union all select a::text from pgseal.encrypted_data_access_log a) x`;
    expect(dump[0]!.t.includes(key.toString('hex'))).toBe(false);
    keyset.fill(0);
  });
});

describe('tampering', () => {
  it('an access-log row edited by hand is reported as edited, with what it now says', async () => {
    const r = await tampered((tx) => tx`update pgseal.encrypted_data_access_log set accessed_by = 'nobody' where ctid = (select ctid from pgseal.encrypted_data_access_log where accessed_by = 'user-3' limit 1)`);
    expect(kinds(r)).toEqual(['access:edited']);
    expect(r.problems[0]).toMatchObject({ who: 'nobody', table: 'public.members', linkId: expect.any(Number), position: expect.any(Number) });
    expect(r.ok).toBe(false);
  });

  it('an access-log row deleted by hand is reported with its link and position', async () => {
    let victim: { link_id: string; link_pos: number } | undefined;
    const r = await tampered(async (tx) => {
      [victim] = await tx<{ link_id: string; link_pos: number }[]>`
        delete from pgseal.encrypted_data_access_log where ctid = (select ctid from pgseal.encrypted_data_access_log where accessed_by = 'user-5' limit 1) returning link_id::text, link_pos`;
    });
    expect(kinds(r)).toEqual(['access:deleted']);
    expect(r.problems[0]).toMatchObject({ linkId: Number(victim!.link_id), position: victim!.link_pos });
  });

  it('rows inserted by hand are reported: without a link, with a forged position, or as a copy of a real row', async () => {
    const r = await tampered(async (tx) => {
      await tx`insert into pgseal.encrypted_data_access_log (table_name, column_name, row_id, accessed_by, access_type) values ('public.members', 'name', '1', 'alibi', 'read')`;
      await tx`insert into pgseal.encrypted_data_access_log (table_name, column_name, row_id, accessed_by, access_type, link_id, link_pos, mac)
               select table_name, column_name, row_id, 'forger', access_type, link_id, 100000, mac from pgseal.encrypted_data_access_log limit 1`;
      await tx`insert into pgseal.encrypted_data_access_log select * from pgseal.encrypted_data_access_log where accessed_by = 'user-1' limit 1`;
    });
    expect(kinds(r).sort()).toEqual(['access:inserted', 'access:inserted', 'access:inserted']);
    expect(r.problems.map((p) => p.who).sort()).toEqual(['alibi', 'forger', 'user-1']);
    expect(r.counts).toEqual({ inserted: 3 });
  });

  it('the audit log: an edited reason, a deleted event and a forged event are each reported', async () => {
    const r = await tampered(async (tx) => {
      await tx`update pgseal.encryption_audit_log set reason = 'routine' where operation = 'key.create' and key_scope = 'default' and details->>'purpose' = 'data'`;
      await tx`delete from pgseal.encryption_audit_log where id = (select min(id) from pgseal.encryption_audit_log where operation = 'test.event')`;
      await tx`insert into pgseal.encryption_audit_log (actor, operation, success) values ('admin', 'key.rotate', true)`;
    });
    expect(kinds(r).sort()).toEqual(['audit:deleted', 'audit:edited', 'audit:inserted']);
    expect(r.problems.find((p) => p.kind === 'edited')).toMatchObject({ what: 'key.create' });
    expect(r.problems.find((p) => p.kind === 'inserted')).toMatchObject({ what: 'key.rotate', who: 'admin' });
  });

  it('a link deleted with all its rows leaves a gap in its chain', async () => {
    const r = await tampered(async (tx) => {
      const [link] = await tx<{ id: string }[]>`
        select l.id::text from pgseal.log_links l join pgseal.log_chains h using (log, chain)
         where l.log = 'access' and l.seq < h.seq order by l.seq desc, l.chain limit 1`;
      await tx`delete from pgseal.encrypted_data_access_log where link_id = ${link!.id}`;
      await tx`delete from pgseal.log_links where id = ${link!.id}`;
    });
    expect(kinds(r)).toEqual(['access:link_deleted']);
    expect(r.problems[0]!.detail).toMatch(/missing, with their rows/);
  });

  it('the tail of a chain cut off, even with its head rolled back to match, is reported', async () => {
    const cut = async (tx: TransactionSql, moveHead: boolean) => {
      const [h] = await tx<{ chain: number; seq: string }[]>`select chain, seq::text from pgseal.log_chains where log = 'access' and seq > 1 order by seq desc limit 1`;
      const [last] = await tx<{ id: string }[]>`select id::text from pgseal.log_links where log = 'access' and chain = ${h!.chain} and seq = ${h!.seq}`;
      await tx`delete from pgseal.encrypted_data_access_log where link_id = ${last!.id}`;
      await tx`delete from pgseal.log_links where id = ${last!.id}`;
      if (moveHead) {
        await tx`update pgseal.log_chains h set seq = h.seq - 1, last_mac = (select mac from pgseal.log_links l where l.log = h.log and l.chain = h.chain and l.seq = h.seq - 1)
                 where log = 'access' and chain = ${h!.chain}`;
      }
    };
    expect(kinds(await tampered((tx) => cut(tx, false)))).toEqual(['access:link_deleted']);
    expect(kinds(await tampered((tx) => cut(tx, true)))).toEqual(['access:head']);
  });

  it('a link edited (its row count lowered to hide a deletion) is reported', async () => {
    const r = await tampered(async (tx) => {
      const [l] = await tx<{ id: string }[]>`select id::text from pgseal.log_links where log = 'access' and row_count > 1 limit 1`;
      await tx`delete from pgseal.encrypted_data_access_log where link_id = ${l!.id} and link_pos = (select max(link_pos) from pgseal.encrypted_data_access_log where link_id = ${l!.id})`;
      await tx`update pgseal.log_links set row_count = row_count - 1 where id = ${l!.id}`;
    });
    expect(kinds(r)).toEqual(['access:link_edited']);
  });

  it('a head reset or deleted is reported, and writers refuse to chain on from an altered head', async () => {
    expect(kinds(await tampered((tx) => tx`update pgseal.log_chains set head_mac = null, sealed_from = null, seq = 0, last_mac = null, key_version = null where log = 'audit' and chain = 0`)))
      .toContain('audit:head');
    expect(kinds(await tampered((tx) => tx`delete from pgseal.log_chains where log = 'access' and chain = 7`))).toContain('access:head');
    // every head altered: the next write fails rather than extend a tampered chain
    await db.sql.begin(async (tx) => {
      await tx`update pgseal.log_chains set seq = seq + 1`;
      const e = await recordEventIn(tx).catch((error: unknown) => error);
      expect(e).toMatchObject({ code: ErrorCodes.LOG_TAMPERED, sqlstate: 'PS016' });
      throw new Error('rollback');
    }).catch((e: Error) => {
      if (e.message !== 'rollback') throw e;
    });
  });

  it('--since reports what changed after it and not before; the CLI exits 1 with one line, JSON lists each problem', async () => {
    const t0 = new Date();
    await sync.table(members).findByPk(42);
    // an edit of a row older than --since is outside the window; the newer one is reported
    const r = await tampered(async (tx) => {
      await tx`update pgseal.encrypted_data_access_log set row_id = '43' where row_id = '42' and accessed_at >= ${t0}`;
      await tx`update pgseal.encrypted_data_access_log set accessed_by = 'x' where ctid = (select ctid from pgseal.encrypted_data_access_log where accessed_at < ${t0} limit 1)`;
    }, t0);
    expect(kinds(r)).toEqual(['access:edited', 'access:edited']);
    expect(r.problems.every((p) => p.row === '43')).toBe(true);

    await db.sql`update pgseal.encrypted_data_access_log set accessed_by = 'mallory' where row_id = '42' and accessed_at >= ${t0}`;
    try {
      const cli = await runCli(['audit', 'verify', '--since', t0.toISOString()], env());
      expect(cli.code).toBe(1);
      expect(cli.stderr.trim().split('\n')).toHaveLength(1);
      expect(cli.stderr).toContain('PGSEAL_LOG_TAMPERED');
      expect(cli.stderr).toContain('2 edited');
      expect(cli.stdout).toContain('mallory');
      const json = await runCli(['audit', 'verify', '--json'], env());
      expect(json.code).toBe(1);
      const parsed = JSON.parse(json.stdout) as VerifyResult;
      expect(parsed.counts, JSON.stringify(parsed.problems)).toEqual({ edited: 2 });
      expect(parsed.problems.map((p) => p.who)).toEqual(['mallory', 'mallory']);
      const wrong = await runCli(['audit', 'verify'], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: randomBytes(32).toString('base64') });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain('PGSEAL_MASTER_KEY_MISMATCH');
    } finally {
      await db.sql`update pgseal.encrypted_data_access_log set accessed_by = 'svc' where row_id = '42' and accessed_at >= ${t0}`;
    }
    // put back exactly: verifies clean again
    expect((await verifyLogs(db.sql, masterLogKeys(db.sql, master()), { record: false })).ok).toBe(true);
  });
});

describe('an application role', () => {
  it('with the documented grants logs and signs its accesses, and can neither edit the logs nor write the chains', async () => {
    const app = await createRole(db.admin, 'pgseal_app');
    // the documented grants: the app set (docs/privileges.md), and the application's own table
    await db.sql.unsafe(`grant pgseal_app to "${app.name}"; grant select, insert, update on members to "${app.name}"`);
    const asApp = connectQuiet(db.urlAs(app.name, app.password));
    const since = new Date();
    try {
      const s = pgseal({ sql: asApp, masterKey: master(), accessLog: { mode: 'sync', actor: 'app-role' } });
      const a = pgseal({ sql: asApp, masterKey: master(), accessLog: { mode: 'async', actor: 'app-role-async' } });
      expect((await s.table(members).findByPk(3))?.name).toMatch(/member 3|renamed 3/);
      await s.table(members).update(4, { name: 'by the app' });
      await a.table(members).findBy('email', 'm5@example.org');
      await a.close();
      await s.close();
      const [logged] = await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.encrypted_data_access_log where accessed_by like 'app-role%' and mac is not null`;
      expect(logged!.n).toBe(2 + 2 + 2);
      for (const attempt of [
        asApp`update pgseal.encrypted_data_access_log set accessed_by = 'x' where accessed_by = 'app-role'`,
        asApp`delete from pgseal.encryption_audit_log`,
        asApp`update pgseal.log_chains set seq = 0`,
        asApp`delete from pgseal.log_links`,
        asApp`select pgseal.init_log_chains('\\x00'::bytea)`,
      ]) {
        await expect(attempt).rejects.toMatchObject({ code: '42501' });
      }
      expect((await verifyLogs(db.sql, masterLogKeys(db.sql, master()), { since, record: false })).problems).toEqual([]);
    } finally {
      await asApp.end();
      await db.sql.unsafe(`drop owned by "${app.name}"; drop role "${app.name}"`);
    }
  });
});

describe('rows written before tamper evidence', () => {
  it('are signed when the log key is created: the log verifies, and an unsigned row inserted later is reported', async () => {
    const fresh = await createDatabase({ migrated: true });
    try {
      // as a database migrated before 0006 holds them: rows without link or MAC
      await fresh.sql`insert into pgseal.encryption_audit_log (actor, operation, success) values ('old-admin', 'key.create', true)`;
      await fresh.sql`insert into pgseal.encrypted_data_access_log (accessed_at, table_name, column_name, row_id, accessed_by, access_type)
                      select now() - g * interval '1 minute', 'public.t', 'c', g::text, 'old-app', 'read' from generate_series(1, 25) g`;
      await initKeys(fresh.sql, master());
      const [unsigned] = await fresh.sql<{ n: number }[]>`
        select (select count(*) from pgseal.encryption_audit_log where mac is null)::int + (select count(*) from pgseal.encrypted_data_access_log where mac is null)::int as n`;
      expect(unsigned!.n).toBe(0);
      const keys = masterLogKeys(fresh.sql, master());
      const clean = await verifyLogs(fresh.sql, keys, { record: false });
      expect(clean.problems).toEqual([]);
      expect(clean.logs.find((l) => l.log === 'access')).toMatchObject({ rows: 25, links: 1 });
      await fresh.sql`insert into pgseal.encrypted_data_access_log (accessed_at, table_name, column_name, row_id, accessed_by, access_type)
                      values (now() - interval '1 year', 'public.t', 'c', '99', 'backdated', 'read')`;
      const r = await verifyLogs(fresh.sql, keys, { record: false });
      expect(kinds(r)).toEqual(['access:inserted']);
      expect(r.problems[0]).toMatchObject({ who: 'backdated' });
    } finally {
      await fresh.drop();
    }
  });
});

describe('chains under contention', () => {
  it('a transaction that writes twice extends one head; with every head held, a writer waits and then chains on', async () => {
    const keys = masterLogKeys(pool, master());
    await pool.begin(async (tx) => {
      await recordEvent(tx, keys, { operation: 'test.twice', success: true });
      await recordEvent(tx, keys, { operation: 'test.twice', success: true });
    });
    const twice = await db.sql<{ chain: number; seq: string }[]>`
      select l.chain, l.seq::text from pgseal.encryption_audit_log a join pgseal.log_links l on l.id = a.link_id where a.operation = 'test.twice' order by a.id`;
    expect(twice[0]!.chain).toBe(twice[1]!.chain);
    expect(Number(twice[1]!.seq)).toBe(Number(twice[0]!.seq) + 1);

    const holder = postgres(db.url, { max: 1, onnotice: () => {} });
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let locked!: () => void;
    const lockedAll = new Promise<void>((r) => { locked = r; });
    const holding = holder.begin(async (tx) => {
      await tx`select chain from pgseal.log_chains where log = 'audit' for update`;
      locked();
      await held;
    });
    await lockedAll;
    let settled = false;
    const waiting = recordEvent(pool, keys, { operation: 'test.waited', success: true }).then(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false);
    release();
    await holding;
    await waiting;
    await holder.end();
    expect((await verifyLogs(db.sql, masterLogKeys(db.sql, master()), { record: false })).problems).toEqual([]);
  });

  it('--since does not mistake a link outside the window (entries older than their neighbours) for a deleted one', async () => {
    const t0 = new Date();
    const ring = pgseal({ sql: pool, masterKey: master() });
    const entry = (at: Date) => ({ table_name: 'public.members', column_name: 'name', row_id: '1', accessed_by: 'late', access_type: 'read' as const, client_ip: null, accessed_at: at });
    const { insertAccessEntries } = await import('../../src/audit/access-log.js');
    // one transaction: three links in a row on one chain, the middle one with entries of last year
    await pool.begin(async (tx) => {
      const keyset = await ring.keyring.logKeyset();
      try {
        await insertAccessEntries(tx, keyset, [entry(new Date())]);
        await insertAccessEntries(tx, keyset, [entry(new Date(Date.now() - 365 * 86400_000))]);
        await insertAccessEntries(tx, keyset, [entry(new Date())]);
      } finally {
        keyset.fill(0);
      }
    });
    await ring.close();
    expect((await verifyLogs(db.sql, masterLogKeys(db.sql, master()), { since: t0, record: false })).problems).toEqual([]);
    // and deleting that old-timed link (with its row) is still caught within the window
    const r = await tampered(async (tx) => {
      const [old] = await tx<{ id: string }[]>`
        select l.id::text from pgseal.log_links l where l.log = 'access' and l.created_at >= ${t0} and l.last_at < ${t0} limit 1`;
      await tx`delete from pgseal.encrypted_data_access_log where link_id = ${old!.id}`;
      await tx`delete from pgseal.log_links where id = ${old!.id}`;
    }, t0);
    expect(kinds(r)).toEqual(['access:link_deleted']);
  });

  it('a log whose evidence was wiped (heads reset, links deleted, MACs removed) is reported', async () => {
    const r = await tampered(async (tx) => {
      await tx`update pgseal.log_chains set head_mac = null, sealed_from = null, seq = 0, last_mac = null, key_version = null where log = 'audit'`;
      await tx`delete from pgseal.log_links where log = 'audit'`;
      await tx`update pgseal.encryption_audit_log set link_id = null, link_pos = null, mac = null`;
    });
    expect(kinds(r)).toContain('audit:head');
    expect(r.ok).toBe(false);
  });
});

describe('retention', () => {
  it('dropping old partitions trims their links: the log still verifies, and the chains remember where they start', async () => {
    const fresh = await createDatabase({ migrated: true });
    const sql = postgres(fresh.url, { max: 2, onnotice: () => {} });
    try {
      await initKeys(sql, master());
      const keys = masterLogKeys(sql, master());
      const ring = pgseal({ sql, masterKey: master() });
      // entries of June 2023 (before any partition: they wait in the default one), signed by one async flush
      const writer = new AccessLogBuffer(sql, ring.keyring, { mode: 'async' });
      writer.add(Array.from({ length: 30 }, (_, i) => ({
        table_name: 'public.members', column_name: 'name', row_id: String(i + 1), accessed_by: 'archive', access_type: 'read' as const, client_ip: null,
        accessed_at: new Date(Date.UTC(2023, 5, 1 + (i % 28))),
      })));
      await writer.close();
      // then a month of today's entries, in as many links as there are chains
      const recent = new AccessLogBuffer(sql, ring.keyring, { mode: 'async' });
      for (let i = 0; i < 40; i++) {
        recent.add([{ table_name: 'public.members', column_name: 'name', row_id: String(i), accessed_by: 'today', access_type: 'read', client_ip: null, accessed_at: new Date() }]);
        await recent.flush();
      }
      await recent.close();
      await sql`select pgseal.create_log_partitions('2023-06-01'::date, 1)`;
      expect((await verifyLogs(sql, keys, { record: false })).ok).toBe(true);

      const dropped = await dropLogPartitions(sql, keys, '400d', { actor: 'dpo' });
      expect(dropped).toEqual(['encrypted_data_access_log_y2023m06']);
      const [left] = await sql<{ n: number }[]>`select count(*)::int as n from pgseal.encrypted_data_access_log where accessed_by = 'archive'`;
      expect(left!.n).toBe(0);
      const [event] = await sql<{ details: { links_trimmed: number; retained_from: string } }[]>`
        select details from pgseal.encryption_audit_log where operation = 'logs.retention' order by id desc limit 1`;
      expect(event!.details).toMatchObject({ links_trimmed: 1, retained_from: '2023-07-01T00:00:00.000Z' });
      const [head] = await sql<{ first_seq: string }[]>`select first_seq::text from pgseal.log_chains where log = 'access' and first_seq > 1`;
      expect(head!.first_seq).toBe('2');
      const r = await verifyLogs(sql, keys, { record: false });
      expect(r.problems).toEqual([]);
      expect(r.logs.find((l) => l.log === 'access')).toMatchObject({ rows: 40, links: 40 });
      // new writes chain on from the trimmed heads; deleting a kept link is still caught
      await recordEvent(sql, keys, { operation: 'test.event', success: true });
      expect((await verifyLogs(sql, keys, { record: false })).ok).toBe(true);
      await sql`delete from pgseal.encrypted_data_access_log where link_id = (
                  select l.id from pgseal.log_links l join pgseal.log_chains h using (log, chain) where l.log = 'access' and l.seq = h.first_seq limit 1)`;
      expect(kinds(await verifyLogs(sql, keys, { record: false }))).toEqual(['access:deleted']);
      await ring.close();
    } finally {
      await sql.end();
      await fresh.drop();
    }
  });
});

async function recordEventIn(tx: TransactionSql): Promise<void> {
  await recordEvent(tx, masterLogKeys(tx as unknown as Sql, master()), { operation: 'test.event', success: true });
}
