// The doctor's keys checks: the master key opens every stored key, active keys are rotated
// on time, decrypt-only versions do not linger, no row sits on a revoked version, and no
// re-encryption run was left unfinished. Only versions, scopes, states and counts are
// reported: an unwrapped key is zeroed as soon as it has proved it opens.

import type { Sql } from 'postgres';
import { configureHint, rowsThatDoNotOpen, usableKeyRows, type KeyPurpose, type KeyState } from '../keys/unwrap.js';
import { readableOnly, type Check, type CheckResult } from './check.js';
import { scanColumns } from './data.js';

const DAY_MS = 86_400_000;

interface KeyMeta {
  version: number;
  scope: string;
  purpose: KeyPurpose;
  state: KeyState;
  created_at: Date;
  deactivated_at: Date | null;
  compromised_at: Date | null;
}

/** pgseal.keys without its wrapped keys (the owner and the admin set may read it). */
function keyRows(sql: Sql): Promise<KeyMeta[]> {
  return sql<KeyMeta[]>`
    select version, scope, purpose, state, created_at, deactivated_at, compromised_at from pgseal.keys order by version`;
}

const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? '' : 's'}`;
const days = (from: Date, to: Date): number => Math.floor((to.getTime() - from.getTime()) / DAY_MS);
const scopeFlag = (scope: string): string => ` --scope ${scope}`;
const result = (name: string, r: Omit<CheckResult, 'id' | 'area'>): CheckResult[] => [{ id: `keys.${name}`, area: 'keys', ...r }];

const masterKey: Check = async (ctx) => {
  if (!ctx.provider) {
    return result('master_key', {
      status: 'skip', summary: 'no master key is configured: whether it opens the stored keys is not checked',
      fix: 'configure it as for the key commands (PGSEAL_MASTER_KEY, --master-key-file, PGSEAL_MASTER_KEY_SECRET_ID or PGSEAL_KMS_KEY_ID) and run pgseal doctor again',
    });
  }
  const provider = ctx.provider;
  const rows = await usableKeyRows(ctx.sql);
  if (rows.length === 0) {
    return result('master_key', { status: 'warn', summary: 'pgseal.keys holds no usable key: nothing can be encrypted yet', fix: 'pgseal keys init', details: { usable: 0 } });
  }
  const failed = (await rowsThatDoNotOpen(provider, rows)).map(({ row, error }) => {
    const e = error as { code?: string; message?: string; hint?: string };
    return { version: row.version, scope: row.scope, purpose: row.purpose, kek_ref: row.kek_ref, code: e.code ?? 'error', message: e.message ?? String(error), hint: e.hint };
  });
  const details = { master_key: provider.ref, usable: rows.length, failed: failed.map(({ hint: _hint, ...f }) => f) };
  if (failed.length === 0) {
    return result('master_key', { status: 'ok', summary: `the master key (${provider.ref}) opens all ${rows.length} usable keys`, details });
  }
  const hints = [...new Set(failed.map((f) => f.hint ?? configureHint(f.kek_ref)))];
  return result('master_key', {
    status: 'fail',
    summary: `the master key (${provider.ref}) does not open ${failed.length} of ${rows.length} usable keys: `
      + failed.map((f) => `version ${f.version} (scope ${f.scope}, ${f.purpose}): ${f.code}`).join('; '),
    fix: hints.join('; '),
    details,
  });
};

const rotation: Check = async (ctx) => {
  const limit = ctx.options.rotationDays;
  const active = (await keyRows(ctx.sql)).filter((k) => k.state === 'active' && k.purpose !== 'log');
  const overdue = active.filter((k) => days(k.created_at, ctx.now) > limit).map((k) => ({ ...k, age: days(k.created_at, ctx.now) }));
  const details = { rotation_days: limit, active: active.length, overdue: overdue.map((k) => ({ version: k.version, scope: k.scope, purpose: k.purpose, age_days: k.age, created_at: k.created_at })) };
  if (active.length === 0) return result('rotation', { status: 'ok', summary: 'no active data or index key yet', details });
  if (overdue.length === 0) {
    return result('rotation', { status: 'ok', summary: `${active.length} active data and index keys, each younger than ${limit} days`, details });
  }
  return result('rotation', {
    status: 'warn',
    summary: `overdue for rotation (every ${limit} days): `
      + overdue.map((k) => `version ${k.version} (scope ${k.scope}, ${k.purpose} key) is ${k.age} days old`).join('; '),
    fix: overdue.map((k) => k.purpose === 'index'
      ? `pgseal keys rotate${scopeFlag(k.scope)} --purpose index, then pgseal reencrypt --blind-index${scopeFlag(k.scope)}`
      : `pgseal keys rotate${scopeFlag(k.scope)}, then pgseal reencrypt${scopeFlag(k.scope)}`).join('; '),
    details,
  });
};

const decryptOnly: Check = async (ctx) => {
  const grace = ctx.options.graceDays;
  const lingering = (await keyRows(ctx.sql))
    .filter((k) => k.state === 'decrypt-only' && k.purpose !== 'log' && k.deactivated_at !== null && days(k.deactivated_at, ctx.now) > grace)
    .map((k) => ({ ...k, age: days(k.deactivated_at!, ctx.now) }));
  const details = { grace_days: grace, lingering: lingering.map((k) => ({ version: k.version, scope: k.scope, purpose: k.purpose, decrypt_only_days: k.age })) };
  if (lingering.length === 0) {
    return result('decrypt_only', { status: 'ok', summary: `no data or index key has been decrypt-only for more than ${grace} days`, details });
  }
  return result('decrypt_only', {
    status: 'warn',
    summary: `decrypt-only for more than ${grace} days: ` + lingering.map((k) => `version ${k.version} (scope ${k.scope}, ${k.purpose} key) for ${k.age} days`).join('; '),
    fix: lingering.map((k) => `pgseal reencrypt${k.purpose === 'index' ? ' --blind-index' : ''}${scopeFlag(k.scope)}, then pgseal keys retire ${k.version}`).join('; '),
    details,
  });
};

const revokedInUse: Check = async (ctx) => {
  const keys = new Map((await keyRows(ctx.sql)).map((k) => [k.version, k]));
  const scans = (await scanColumns(ctx)).filter((s) => !s.unreadable);
  const how = ctx.options.full ? 'every row' : `a sample of up to ${ctx.options.sampleRows} values per column; --full counts every row`;
  type Kind = 'retired' | 'destroyed' | 'compromised' | 'unknown';
  const found: Array<{ column: string; version: number; scope: string | null; kind: Kind; rows: number }> = [];
  for (const s of scans) {
    for (const [version, rows] of s.versions) {
      const k = keys.get(version);
      const kind: Kind | undefined = !k ? 'unknown' : k.state === 'retired' || k.state === 'destroyed' ? k.state : k.compromised_at !== null ? 'compromised' : undefined;
      if (kind) found.push({ column: s.name, version, scope: k?.scope ?? null, kind, rows });
    }
  }
  const details = { mode: ctx.options.full ? 'full' : 'sample', columns: scans.length, found };
  if (found.length === 0) {
    return result('revoked_in_use', {
      status: 'ok', summary: `no value in ${plural(scans.length, 'protected column')} is on a retired, destroyed, compromised or unknown key version (${how})`, details,
    });
  }
  const FIX: Record<Kind, (f: (typeof found)[number]) => string> = {
    retired: (f) => `version ${f.version} was retired with rows still on it: those values no longer open (PS012); restore them from a backup taken before it was retired, or delete or overwrite the rows (next time: pgseal reencrypt before pgseal keys retire)`,
    destroyed: (f) => `scope ${f.scope} was destroyed (crypto-shredded): its values can never be read again; delete those rows or set the column to NULL`,
    compromised: (f) => `version ${f.version} is compromised: pgseal reencrypt --scope ${f.scope} moves its values onto the active key`,
    unknown: (f) => `version ${f.version} is not in pgseal.keys (a value copied from another database?): those values cannot be opened here`,
  };
  return result('revoked_in_use', {
    status: 'fail',
    summary: `values on revoked key versions (${how}): `
      + found.map((f) => `${f.column}: ${f.rows} ${f.rows === 1 ? 'row' : 'rows'} on ${f.kind} version ${f.version}${f.scope ? ` (scope ${f.scope})` : ''}`).join('; '),
    // one fix per revoked version, naming its columns
    fix: [...new Set(found.map((f) => FIX[f.kind](f)))]
      .map((fix) => `${found.filter((f) => FIX[f.kind](f) === fix).map((f) => f.column).join(', ')}: ${fix}`).join('; '),
    details,
  });
};

interface RunRow {
  id: string;
  kind: 'data' | 'index';
  state: 'running' | 'stopped' | 'failed';
  table_filter: string | null;
  column_filter: string | null;
  scope_filter: string | null;
  error: string | null;
  updated_at: Date;
  rows_done: string | null;
  rows_total: string | null;
}

const reencryptUnfinished: Check = async (ctx) => {
  const runs = await ctx.sql<RunRow[]>`
    select r.id::pg_catalog.text as id, r.kind, r.state, r.table_filter, r.column_filter, r.scope_filter, r.error, r.updated_at,
           (select pg_catalog.sum(p.rows_done)::pg_catalog.text from pgseal.reencrypt_progress p where p.run_id = r.id) as rows_done,
           (select pg_catalog.sum(p.rows_total)::pg_catalog.text from pgseal.reencrypt_progress p where p.run_id = r.id) as rows_total
      from pgseal.reencrypt_runs r where r.state in ('running', 'stopped', 'failed') order by r.id`;
  if (runs.length === 0) return result('reencrypt_unfinished', { status: 'ok', summary: 'no re-encryption run is unfinished', details: { runs: [] } });
  // a live run holds pgseal reencrypt's advisory lock (src/reencrypt/run.ts); a 'running' run without it was left behind
  const [lock] = await ctx.sql<{ live: boolean }[]>`
    select exists (select 1 from pg_catalog.pg_locks l
                    where l.locktype = 'advisory' and l.granted and l.objsubid = 2
                      and l.database = (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database())
                      and l.classid = pg_catalog.hashtext('pgseal')::pg_catalog.oid and l.objid = pg_catalog.hashtext('reencrypt')::pg_catalog.oid) as live`;
  const live = lock?.live ?? false;
  const command = (r: RunRow) => 'pgseal reencrypt' + (r.kind === 'index' ? ' --blind-index' : '') + (r.table_filter ? ` --table ${r.table_filter}` : '')
    + (r.column_filter ? ` --column ${r.column_filter}` : '') + (r.scope_filter ? ` --scope ${r.scope_filter}` : '');
  const progress = (r: RunRow) => (r.rows_total !== null ? `, ${Number(r.rows_done ?? 0)} of ${Number(r.rows_total)} rows done` : '');
  const findings = runs.map((r) => {
    const { status, what } = r.state === 'failed' ? { status: 'fail' as const, what: `failed${r.error ? ` (${r.error})` : ''}` }
      : r.state === 'stopped' ? { status: 'warn' as const, what: 'stopped' }
      : live ? { status: 'ok' as const, what: 'in progress' }
      : { status: 'warn' as const, what: 'left running: its process ended before it finished' };
    return { run: r, status, text: `run ${r.id} (${r.kind}) ${what}${progress(r)}` };
  });
  const worst = findings.some((f) => f.status === 'fail') ? 'fail' : findings.some((f) => f.status === 'warn') ? 'warn' : 'ok';
  const unfinished = findings.filter((f) => f.status !== 'ok');
  const details = {
    live,
    runs: runs.map((r) => ({ run: Number(r.id), kind: r.kind, state: r.state, error: r.error, table: r.table_filter, column: r.column_filter, scope: r.scope_filter, rows_done: Number(r.rows_done ?? 0), rows_total: Number(r.rows_total ?? 0), updated_at: r.updated_at })),
  };
  if (worst === 'ok') return result('reencrypt_unfinished', { status: 'ok', summary: findings.map((f) => f.text).join('; '), details });
  return result('reencrypt_unfinished', {
    status: worst,
    summary: `unfinished re-encryption: ${findings.map((f) => f.text).join('; ')}`,
    fix: [...new Set(unfinished.map((f) => f.run.state === 'failed'
      ? `see why with pgseal reencrypt status --run ${f.run.id}, then ${command(f.run)} resumes it from its checkpoint`
      : `${command(f.run)} resumes it from its checkpoint`))].join('; '),
    details,
  });
};

export const keysChecks: Array<{ name: string; check: Check }> = [
  { name: 'master_key', check: readableOnly('keys', 'master_key', masterKey) },
  { name: 'rotation', check: readableOnly('keys', 'rotation', rotation) },
  { name: 'decrypt_only', check: readableOnly('keys', 'decrypt_only', decryptOnly) },
  { name: 'revoked_in_use', check: readableOnly('keys', 'revoked_in_use', revokedInUse) },
  { name: 'reencrypt_unfinished', check: readableOnly('keys', 'reencrypt_unfinished', reencryptUnfinished) },
];
