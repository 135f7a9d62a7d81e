// pgseal doctor, logging area, on the run's real server: settings that write bound keys to the
// log are named with their value and where they come from (a database's, a role's), and the
// canary, a throwaway key sent as pgseal sends keys, is found in the server log when the log
// takes parameters and nowhere when it does not. The report never carries the canary.

import { createHash } from 'node:crypto';
import { access, constants } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';
import type { Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDoctor, type CheckResult } from '../../src/doctor/index.js';
import { runCli } from '../support/cli.js';
import { adminUrl, connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';
import { serverLog, type ServerLog } from '../support/server-log.js';

/** A bytea as PostgreSQL prints it, in a log line or a plan: '\x' and 64 hex digits for 32 bytes. */
const BYTEA_32 = /\\x([0-9a-f]{64})/gi;
/** The same, however JSON escaped the backslash. */
const BYTEA_32_ANYWHERE = /\\{1,2}x[0-9a-f]{64}/i;

const fingerprintOf = (hex: string) => createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex').slice(0, 16);

let quiet: TestDatabase; // default logging
let loud: TestDatabase; // ALTER DATABASE ... SET log_min_duration_statement = 0
let explained: TestDatabase; // auto_explain through session_preload_libraries
let trimmed: TestDatabase; // every statement logged, without its bind parameters
let log: ServerLog | string;
let role: { name: string; password: string } | undefined;
const opened: Sql[] = [];

/** A new session: database and role settings apply to sessions opened after them. */
function session(url: string): Sql {
  const sql = connectQuiet(url, { max: 3 });
  opened.push(sql);
  return sql;
}

const logging = (results: CheckResult[]) => results.filter((r) => r.area === 'logging');
function byId(results: CheckResult[], id: string): CheckResult {
  const r = results.find((x) => x.id === id);
  if (!r) throw new Error(`no ${id} among ${results.map((x) => x.id).join(', ')}`);
  return r;
}

/** The fingerprints of every 32-byte bytea in a stretch of the log. */
function byteaFingerprints(text: string): string[] {
  return [...text.matchAll(BYTEA_32)].map((m) => fingerprintOf(m[1]!.toLowerCase()));
}

beforeAll(async () => {
  [quiet, loud, explained, trimmed] = await Promise.all([createDatabase({ migrated: true }), createDatabase({ migrated: true }), createDatabase({ migrated: true }), createDatabase({ migrated: true })]);
  await loud.sql.unsafe(`alter database "${loud.name}" set log_min_duration_statement = 0`);
  for (const [k, v] of [['session_preload_libraries', '\'auto_explain\''], ['auto_explain.log_min_duration', '0'], ['auto_explain.log_verbose', 'on'], ['auto_explain.log_nested_statements', 'on']]) {
    await explained.sql.unsafe(`alter database "${explained.name}" set ${k} = ${v}`);
  }
  for (const [k, v] of [['log_statement', '\'all\''], ['log_min_duration_statement', '0'], ['log_parameter_max_length', '0']]) {
    await trimmed.sql.unsafe(`alter database "${trimmed.name}" set ${k} = ${v}`);
  }
  log = await serverLog(quiet.sql);
  const [pgss] = await quiet.sql<{ preloaded: boolean }[]>`select current_setting('shared_preload_libraries') like '%pg_stat_statements%' as preloaded`;
  if (pgss!.preloaded) await quiet.sql`create extension if not exists pg_stat_statements`;
});

afterAll(async () => {
  for (const s of opened) await s.end({ timeout: 5 });
  await Promise.all([quiet?.drop(), loud?.drop(), explained?.drop(), trimmed?.drop()]);
  if (role) {
    const admin = connectQuiet(adminUrl(), { max: 1 });
    await admin.unsafe(`drop role if exists "${role.name}"`);
    await admin.end({ timeout: 5 });
  }
});

describe('doctor logging checks', () => {
  it('a database with log_min_duration_statement = 0: the setting fails, named with its level, and the canary is found in the server log', async (ctx) => {
    const mark = typeof log === 'string' ? 0 : await log.mark();
    const report = await runDoctor(session(loud.url));
    const mine = logging(report.results);
    const lmds = byId(mine, 'logging.log_min_duration_statement');
    expect(lmds.status).toBe('fail');
    expect(lmds.summary).toContain('log_min_duration_statement = 0');
    expect(lmds.summary).toContain(`ALTER DATABASE "${loud.name}" SET`);
    expect(lmds.fix).toContain(`ALTER DATABASE "${loud.name}" SET log_min_duration_statement = -1`);
    expect(lmds.fix).toContain('log_parameter_max_length = 0');
    expect(lmds.fix).toContain('client mode');
    // the others that logging in full depends on
    expect(byId(mine, 'logging.log_parameter_max_length').status).toBe('warn');
    expect(byId(mine, 'logging.log_statement').status).toBe('ok');
    // never a key in the report
    expect(JSON.stringify(mine)).not.toMatch(BYTEA_32_ANYWHERE);
    expect(JSON.stringify(mine)).not.toMatch(/[0-9a-f]{64}/i);

    const canary = byId(mine, 'logging.canary');
    if (typeof log === 'string') return ctx.skip(log);
    expect(canary.status).toBe('fail');
    expect(canary.summary).toMatch(/the canary \(a throwaway key, fingerprint [0-9a-f]{16}\)/);
    expect(canary.summary).toContain('behind pgseal.guard()');
    expect(canary.details?.guarded).toBe(true);
    expect((canary.details?.found as string[]).some((w) => w.startsWith('the server log'))).toBe(true);
    expect(canary.details?.found).not.toContainEqual(expect.stringContaining('pg_stat_activity'));
    // the key in the log is the canary the report names, and only its fingerprint is in the report
    const seen = await log.since(mark);
    expect(byteaFingerprints(seen)).toContain(canary.details?.fingerprint);
  });

  it('--server-log: a log file this process can read is searched directly', async (ctx) => {
    if (typeof log === 'string') return ctx.skip(log);
    const [row] = await loud.sql<{ dir: string; file: string }[]>`select current_setting('data_directory') as dir, pg_current_logfile() as file`;
    const path = isAbsolute(row!.file) ? row!.file : resolve(row!.dir, row!.file);
    try {
      await access(path, constants.R_OK);
    } catch (error) {
      return ctx.skip(`the server's log ${path} is not readable by this process (${(error as Error).message})`);
    }
    const report = await runDoctor(session(loud.url), { serverLog: path });
    const canary = byId(report.results, 'logging.canary');
    expect(canary.status).toBe('fail');
    expect(canary.details?.log).toBe(`the server log ${path} (--server-log)`);
    expect(canary.details?.found).toContain(`the server log ${path} (--server-log)`);
    // a file that cannot be read: said, and the server's own log read instead
    const fallback = byId((await runDoctor(session(loud.url), { serverLog: `${path}.missing` })).results, 'logging.canary');
    expect(fallback.status).toBe('fail');
    expect(JSON.stringify(fallback.details?.log_fallback)).toContain('cannot be read by this process (ENOENT)');
  });

  it('auto_explain loaded by the database with log_verbose: the check fails naming it, and the plan carries the canary', async (ctx) => {
    const mark = typeof log === 'string' ? 0 : await log.mark();
    const report = await runDoctor(session(explained.url));
    const mine = logging(report.results);
    const ae = byId(mine, 'logging.auto_explain');
    expect(ae.status).toBe('fail');
    expect(ae.summary).toContain('auto_explain is loaded (session_preload_libraries)');
    expect(ae.summary).toContain('auto_explain.log_min_duration = 0');
    expect(ae.summary).toContain('auto_explain.log_verbose = on');
    expect(ae.summary).toContain('auto_explain.log_nested_statements = on');
    expect(ae.fix).toContain(`ALTER DATABASE "${explained.name}" SET auto_explain.log_min_duration = -1`);
    expect(ae.fix).toContain('auto_explain.log_verbose = off');
    expect(JSON.stringify(mine)).not.toMatch(BYTEA_32_ANYWHERE);
    if (typeof log === 'string') return ctx.skip(log);
    const canary = byId(mine, 'logging.canary');
    expect(canary.status).toBe('fail');
    const seen = await log.since(mark);
    // auto_explain's plan of the canary's statement, with the canary as a constant
    expect(seen).toMatch(/Query Text: select pg_catalog\.octet_length\(k\)[^\n]*pgseal_doctor_canary/);
    expect(byteaFingerprints(seen)).toContain(canary.details?.fingerprint);
  });

  it('default logging: no logging check fails, and the canary is found nowhere', async (ctx) => {
    const report = await runDoctor(session(quiet.url));
    const mine = logging(report.results);
    expect(mine.map((r) => r.id)).toEqual(expect.arrayContaining([
      'logging.log_statement', 'logging.log_min_duration_statement', 'logging.log_min_duration_sample', 'logging.log_parameter_max_length',
      'logging.log_parameter_max_length_on_error', 'logging.auto_explain', 'logging.pg_stat_statements', 'logging.pgaudit', 'logging.canary',
    ]));
    expect(mine.filter((r) => r.status === 'fail')).toEqual([]);
    for (const r of mine) expect(r.summary).toMatch(/\S/);
    expect(byId(mine, 'logging.log_statement').summary).toContain('log_statement = none');
    expect(byId(mine, 'logging.auto_explain').summary).toContain('auto_explain is not loaded');
    const pgss = byId(mine, 'logging.pg_stat_statements');
    expect(pgss.status).toBe('ok');
    if (pgss.summary.includes('is loaded') || pgss.summary.includes('track =')) expect(pgss.summary).toContain('never its bind parameters');
    const canary = byId(mine, 'logging.canary');
    expect(canary.details?.found).toEqual([]);
    expect(canary.details?.guarded).toBe(true);
    expect(canary.details?.searched).toContainEqual(expect.stringMatching(/^pg_stat_activity/));
    if (typeof log === 'string') {
      expect(canary.status).toBe('skip');
      return ctx.skip(log);
    }
    expect(canary.status).toBe('ok');
    expect(canary.summary).toContain('was found in none of');
    expect(canary.details?.searched).toContainEqual(expect.stringMatching(/^the server log/));
    if (!JSON.stringify(canary.details).includes('pg_stat_statements is not')) {
      expect(canary.details?.searched).toContainEqual(expect.stringMatching(/^pg_stat_statements/));
    }
  });

  it('every statement logged but log_parameter_max_length = 0: ok, and the canary\'s statement is in the log without the canary', async (ctx) => {
    const mark = typeof log === 'string' ? 0 : await log.mark();
    const mine = logging((await runDoctor(session(trimmed.url))).results);
    for (const id of ['logging.log_statement', 'logging.log_min_duration_statement']) {
      const r = byId(mine, id);
      expect(r.status).toBe('ok');
      expect(r.summary).toContain('log_parameter_max_length = 0 keeps bind parameters out');
    }
    expect(byId(mine, 'logging.log_parameter_max_length').status).toBe('ok');
    if (typeof log === 'string') return ctx.skip(log);
    const canary = byId(mine, 'logging.canary');
    expect(canary.status).toBe('ok');
    const seen = await log.since(mark);
    // the statement was logged (so the search could have found it), its parameter was not
    expect(seen).toMatch(/execute [^:]*: select pg_catalog\.octet_length\(k\)[^\n]*pgseal_doctor_canary/);
    expect(byteaFingerprints(seen)).not.toContain(canary.details?.fingerprint);
  });

  it('a role\'s own setting (ALTER ROLE ... IN DATABASE) is reported for that role\'s sessions, not only this session\'s', async () => {
    role = await createRole(loud.sql, 'pgseal_doclog');
    await loud.sql.unsafe(`alter role "${role.name}" in database "${loud.name}" set log_statement = 'all'`);
    const report = await runDoctor(session(loud.url));
    const ls = byId(report.results, 'logging.log_statement');
    expect(ls.status).toBe('fail');
    expect(ls.summary).toContain('log_statement = all');
    expect(ls.summary).toContain(`ALTER ROLE "${role.name}" IN DATABASE "${loud.name}" SET`);
    expect(ls.summary).toContain(`sessions of role "${role.name}"`);
    expect(ls.fix).toContain(`ALTER ROLE "${role.name}" IN DATABASE "${loud.name}" SET log_statement = 'none'`);
    const findings = ls.details?.findings as Array<{ status: string; sessions: string[] }>;
    expect(findings.find((f) => f.status === 'ok')?.sessions).toContainEqual(expect.stringContaining('this session'));
  });

  it('a role that may not read the server log: the canary says the log was not checked, and why', async () => {
    role ??= await createRole(loud.sql, 'pgseal_doclog');
    const report = await runDoctor(session(quiet.urlAs(role.name, role.password)));
    const mine = logging(report.results);
    expect(mine.filter((r) => r.status === 'fail')).toEqual([]);
    const canary = byId(mine, 'logging.canary');
    expect(canary.status).toBe('skip');
    expect(canary.summary).toContain('the server log was not checked');
    expect(canary.summary).toContain('pg_current_logfile');
    expect(canary.fix).toContain('--server-log');
    // no grant on pgseal.guard(): sent unguarded, and said so
    expect(canary.details?.guarded).toBe(false);
    expect(JSON.stringify(canary.details?.notes)).toContain('pgseal.guard()');
    expect(canary.details?.found).toEqual([]);
  });

  it('the CLI: pgseal doctor --json reports the logging checks and prints no key', async (ctx) => {
    const mark = typeof log === 'string' ? 0 : await log.mark();
    const out = await runCli(['doctor', '--json'], { DATABASE_URL: loud.url });
    const json = out.stdout.slice(out.stdout.indexOf('{'));
    const report = JSON.parse(json) as { results: CheckResult[] };
    const mine = logging(report.results);
    expect(byId(mine, 'logging.log_min_duration_statement').status).toBe('fail');
    expect(out.stdout).not.toMatch(BYTEA_32_ANYWHERE);
    expect(out.stderr).not.toMatch(BYTEA_32_ANYWHERE);
    expect(out.code).toBe(1);
    const canary = byId(mine, 'logging.canary');
    if (typeof log === 'string') return ctx.skip(log);
    // the canary did reach the log, so the output's silence about it means something
    expect(canary.status).toBe('fail');
    const seen = await log.since(mark);
    const hex = [...seen.matchAll(BYTEA_32)].map((m) => m[1]!.toLowerCase()).find((h) => fingerprintOf(h) === canary.details?.fingerprint);
    expect(hex).toBeDefined();
    expect(out.stdout.toLowerCase()).not.toContain(hex);
  });
});
