// The doctor's logging checks: which settings can copy a key pgseal sends to PostgreSQL (or a
// plaintext) into the server log or the statistics, and a canary that shows it.
//
// - The settings are read as the server applies them: this session's values (pg_settings,
//   as the connecting role sees them), and, for every login role that may connect here,
//   what its sessions get from ALTER DATABASE / ALTER ROLE [IN DATABASE] / ALTER ROLE ALL
//   (pg_db_role_setting). A setting is named with its value, where it comes from, and the
//   statement that makes it safe at that level.
// - The canary (logging.canary): 32 fresh random bytes, a throwaway key that opens nothing,
//   handed over as pgseal hands over keys (a bound bytea parameter of a prepared statement,
//   in a transaction behind pgseal.guard() where this role may call it), then looked for, as
//   PostgreSQL prints a bytea ('\x' and lowercase hex), in pg_stat_activity,
//   pg_stat_statements and the server log. The canary is sent to the server once, as that
//   parameter: every search happens here, and no result carries it (its fingerprint only).

import { createHash, randomBytes } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { Sql } from 'postgres';
import { quoteIdent } from '../statement/sql.js';
import type { Check, CheckResult, CheckStatus, DoctorContext } from './check.js';

// ---------------------------------------------------------------------------------------
// What is read

/** Core settings (pg_settings) and extension settings (present when the library is loaded). */
const SETTINGS = [
  'log_statement', 'log_min_duration_statement', 'log_min_duration_sample', 'log_statement_sample_rate',
  'log_transaction_sample_rate', 'log_parameter_max_length', 'log_parameter_max_length_on_error',
  'debug_print_parse', 'debug_print_rewritten', 'debug_print_plan',
  'shared_preload_libraries', 'session_preload_libraries', 'local_preload_libraries',
  'auto_explain.log_min_duration', 'auto_explain.log_verbose', 'auto_explain.log_nested_statements',
  'auto_explain.log_parameter_max_length', 'auto_explain.sample_rate',
  'pg_stat_statements.track', 'pg_stat_statements.track_utility',
  'pgaudit.log', 'pgaudit.log_parameter',
] as const;

/** The compiled-in defaults, for a setting the server does not show (an extension not loaded, an older server). */
const DEFAULTS: Record<string, string> = {
  log_statement: 'none', log_min_duration_statement: '-1', log_min_duration_sample: '-1', log_statement_sample_rate: '1',
  log_transaction_sample_rate: '0', log_parameter_max_length: '-1', log_parameter_max_length_on_error: '0',
  debug_print_parse: 'off', debug_print_rewritten: 'off', debug_print_plan: 'off',
  shared_preload_libraries: '', session_preload_libraries: '', local_preload_libraries: '',
  'auto_explain.log_min_duration': '-1', 'auto_explain.log_verbose': 'off', 'auto_explain.log_nested_statements': 'off',
  'auto_explain.log_parameter_max_length': '-1', 'auto_explain.sample_rate': '1',
  'pg_stat_statements.track': 'top', 'pg_stat_statements.track_utility': 'on',
  'pgaudit.log': 'none', 'pgaudit.log_parameter': 'off',
};

/** Where a value comes from: the level that set it, which is where the fix goes. */
type Origin =
  | { kind: 'default' }
  | { kind: 'server'; source: string }
  | { kind: 'database' }
  | { kind: 'role'; role: string }
  | { kind: 'role-database'; role: string }
  | { kind: 'all-roles' }
  | { kind: 'client'; source: string };

interface Value {
  value: string;
  origin: Origin;
}

/** The settings one kind of session gets. */
interface Profile {
  label: string;
  values: Map<string, Value>;
}

interface Snapshot {
  database: string;
  role: string;
  version: number;
  /** this session first, then what other sessions here get (only when pg_db_role_setting says anything) */
  profiles: Profile[];
  /** libraries whose settings this session shows, i.e. loaded in it */
  loadedHere: Set<string>;
  /** shared_preload_libraries was hidden from this role (pg_read_all_settings) */
  sharedHidden: boolean;
  /** why pg_db_role_setting could not be read, if it could not */
  perRoleUnread?: string | undefined;
}

interface RoleSetting {
  database: boolean;
  role: string | null;
  config: string[];
}

const snapshots = new WeakMap<DoctorContext, Promise<Snapshot>>();

/** One read of the settings for all the checks of a run. */
function snapshot(ctx: DoctorContext): Promise<Snapshot> {
  let s = snapshots.get(ctx);
  if (!s) {
    s = readSnapshot(ctx.sql);
    snapshots.set(ctx, s);
    // a failed read is retried by the next check rather than failing every one the same way
    s.catch(() => snapshots.delete(ctx));
  }
  return s;
}

async function readSnapshot(sql: Sql): Promise<Snapshot> {
  const [who] = await sql<{ database: string; role: string; version: string }[]>`
    select pg_catalog.current_database()::pg_catalog.text as database, session_user::pg_catalog.text as role,
           pg_catalog.current_setting('server_version_num') as version`;
  const { database, role } = who!;
  // shared_preload_libraries and the like are hidden from a role without pg_read_all_settings:
  // pg_settings leaves them out; current_setting() is asked only for an extension's placeholder
  const rows = await sql<{ name: string; setting: string | null; source: string | null; boot_val: string | null; shown: boolean }[]>`
    select n.name, coalesce(s.setting, case when s.name is null and pg_catalog.strpos(n.name, '.') > 0 then pg_catalog.current_setting(n.name, true) end) as setting,
           s.source, s.boot_val, s.name is not null as shown
      from pg_catalog.unnest(${SETTINGS as unknown as string[]}::pg_catalog.text[]) as n(name)
      left join pg_catalog.pg_settings s on s.name = n.name`;
  let perRole: RoleSetting[] = [];
  let perRoleUnread: string | undefined;
  try {
    perRole = await sql<RoleSetting[]>`
      select s.setdatabase <> 0 as database, r.rolname::pg_catalog.text as role, s.setconfig::pg_catalog.text[] as config
        from pg_catalog.pg_db_role_setting s left join pg_catalog.pg_roles r on r.oid = s.setrole
       where s.setdatabase in (0, (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database()))
         and (s.setrole = 0 or (r.rolcanlogin and pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'connect')))`;
  } catch (error) {
    perRoleUnread = (error as Error).message;
  }
  const config = (r: RoleSetting): Map<string, string> => {
    const m = new Map<string, string>();
    for (const c of r.config ?? []) {
      const at = c.indexOf('=');
      if (at > 0) m.set(c.slice(0, at).toLowerCase(), c.slice(at + 1));
    }
    return m;
  };
  const levels = perRole.map((r) => ({
    origin: (r.role === null ? (r.database ? { kind: 'database' } : { kind: 'all-roles' }) : r.database ? { kind: 'role-database', role: r.role } : { kind: 'role', role: r.role }) as Origin,
    // the precedence PostgreSQL applies at login: role in database > role > database > all roles
    rank: r.role === null ? (r.database ? 1 : 0) : r.database ? 3 : 2,
    role: r.role,
    config: config(r),
  }));
  const forRole = (name: string | null) => levels.filter((l) => l.role === null || l.role === name).sort((a, b) => a.rank - b.rank);

  // this session: pg_settings' source, or for a placeholder the level of pg_db_role_setting that set it
  const mine = forRole(role);
  const here = new Map<string, Value>();
  const loadedHere = new Set<string>();
  let sharedHidden = false;
  for (const r of rows) {
    if (r.name.includes('.') && r.shown) loadedHere.add(r.name.slice(0, r.name.indexOf('.')));
    if (r.name === 'shared_preload_libraries' && !r.shown) sharedHidden = true;
    if (r.setting === null) continue;
    let origin: Origin;
    if (r.source !== null) origin = originOf(r.source, role);
    else origin = [...mine].reverse().find((l) => l.config.has(r.name))?.origin ?? { kind: 'server', source: 'configuration file' };
    here.set(r.name, { value: r.setting, origin });
  }
  const profiles: Profile[] = [{ label: `this session (role ${quoteIdent(role)})`, values: here }];
  if (levels.length > 0) {
    // what the server gives a session before any database or role setting
    const base = new Map<string, Value>();
    for (const r of rows) {
      const v = here.get(r.name);
      if (!v) continue;
      if (v.origin.kind === 'default' || v.origin.kind === 'server') base.set(r.name, v);
      else if (r.boot_val !== null) base.set(r.name, { value: r.boot_val, origin: { kind: 'default' } });
    }
    const profile = (label: string, name: string | null): Profile => {
      const values = new Map(base);
      for (const l of forRole(name)) for (const [k, v] of l.config) values.set(k, { value: v, origin: l.origin });
      return { label, values };
    };
    profiles.push(profile('new sessions of any role in this database', null));
    for (const r of [...new Set(levels.map((l) => l.role).filter((n): n is string => n !== null))].sort()) {
      profiles.push(profile(`sessions of role ${quoteIdent(r)}`, r));
    }
  }
  return { database, role, version: Number(who!.version), profiles, loadedHere, sharedHidden, perRoleUnread };
}

function originOf(source: string, role: string): Origin {
  switch (source) {
    case 'default': return { kind: 'default' };
    case 'database': return { kind: 'database' };
    case 'user': return { kind: 'role', role };
    case 'database user': return { kind: 'role-database', role };
    case 'global': return { kind: 'all-roles' };
    case 'client': case 'session': case 'interactive': case 'test': return { kind: 'client', source };
    default: return { kind: 'server', source };
  }
}

function describeOrigin(origin: Origin, database: string): string {
  switch (origin.kind) {
    case 'default': return 'the default';
    case 'server': return origin.source === 'command line' ? 'the server\'s command line' : `the server's ${origin.source}`;
    case 'database': return `ALTER DATABASE ${quoteIdent(database)} SET`;
    case 'role': return `ALTER ROLE ${quoteIdent(origin.role)} SET`;
    case 'role-database': return `ALTER ROLE ${quoteIdent(origin.role)} IN DATABASE ${quoteIdent(database)} SET`;
    case 'all-roles': return 'ALTER ROLE ALL SET';
    case 'client': return `the client (${origin.source})`;
  }
}

/** The statement that gives `name` the safe value at the level it came from. */
function setFix(name: string, origin: Origin, safe: string, database: string): string {
  switch (origin.kind) {
    case 'database': return `ALTER DATABASE ${quoteIdent(database)} SET ${name} = ${safe}`;
    case 'role': return `ALTER ROLE ${quoteIdent(origin.role)} SET ${name} = ${safe}`;
    case 'role-database': return `ALTER ROLE ${quoteIdent(origin.role)} IN DATABASE ${quoteIdent(database)} SET ${name} = ${safe}`;
    case 'all-roles': return `ALTER ROLE ALL SET ${name} = ${safe}`;
    case 'client': return `stop the client setting ${name} (connection options, PGOPTIONS)`;
    case 'server':
      if (origin.source === 'command line') return `remove -c ${name}=... from the server's command line (it overrides ALTER SYSTEM), or set ${name} = ${safe} there`;
      return `ALTER SYSTEM SET ${name} = ${safe}; SELECT pg_reload_conf()${name === 'shared_preload_libraries' ? ' (a restart for this one)' : ''}`;
    case 'default': return `ALTER SYSTEM SET ${name} = ${safe}; SELECT pg_reload_conf()`;
  }
}

// ---------------------------------------------------------------------------------------
// Reading values

const get = (p: Profile, name: string): Value => p.values.get(name) ?? { value: DEFAULTS[name] ?? '', origin: { kind: 'default' } };

const TIME_UNITS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };
const BYTE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3, tb: 1024 ** 4 };

/** A duration setting in ms (its base unit); '-1' is off. */
function ms(v: string): number {
  const m = /^\s*(-?\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v.replace(/^'|'$/g, ''));
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return n < 0 ? -1 : n * (TIME_UNITS[m[2]!.toLowerCase() || 'ms'] ?? Number.NaN);
}

/** A size setting in bytes; -1 is unlimited. */
function bytes(v: string): number {
  const m = /^\s*(-?\d+)\s*([a-z]*)\s*$/i.exec(v.replace(/^'|'$/g, ''));
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return n < 0 ? -1 : n * (BYTE_UNITS[m[2]!.toLowerCase() || 'b'] ?? Number.NaN);
}

function bool(v: string): boolean {
  const s = v.trim().replace(/^'|'$/g, '').toLowerCase();
  return s === '1' || (s.length > 0 && ('true'.startsWith(s) || 'yes'.startsWith(s))) || (s.length > 1 && 'on'.startsWith(s));
}

const rate = (v: string): number => Number(v.trim().replace(/^'|'$/g, ''));

/** The library names of a preload list ('$libdir/plugins/auto_explain.so' is auto_explain). */
function libraries(v: string): string[] {
  return v.split(',').map((s) => s.trim().replace(/^"|"$/g, '').replace(/^'|'$/g, '')).filter(Boolean)
    .map((s) => s.slice(s.lastIndexOf('/') + 1).replace(/\.(so|dylib|dll)$/i, '').toLowerCase());
}

/** Where `lib` is loaded from for sessions of this profile, or undefined when it is not. */
function loadedBy(s: Snapshot, p: Profile, lib: string): string | undefined {
  for (const list of ['session_preload_libraries', 'local_preload_libraries'] as const) {
    if (libraries(get(p, list).value).includes(lib)) return list;
  }
  if (libraries(get(p, 'shared_preload_libraries').value).includes(lib)) return 'shared_preload_libraries';
  // shared_preload_libraries hidden from this role, or loaded by this session's own preload lists
  const here = s.profiles[0]!;
  if (s.loadedHere.has(lib) && !['session_preload_libraries', 'local_preload_libraries'].some((l) => libraries(get(here, l).value).includes(lib))) {
    return 'shared_preload_libraries';
  }
  return undefined;
}

/** How statement logs print bind parameters in this profile. */
function parameters(p: Profile): { logged: boolean; says: string; value: Value } {
  const value = get(p, 'log_parameter_max_length');
  const n = bytes(value.value);
  if (n === 0) return { logged: false, says: 'log_parameter_max_length = 0 keeps bind parameters out', value };
  if (n > 0) return { logged: true, says: `with its bind parameters trimmed to ${n} bytes (log_parameter_max_length = ${value.value}: still a prefix of every key)`, value };
  return { logged: true, says: `with its bind parameters in full (log_parameter_max_length = ${value.value})`, value };
}

const CLIENT_MODE = 'or keep the application in client mode (the typed helpers\' default, and the ORM adapters), which sends no key';

// ---------------------------------------------------------------------------------------
// Findings: each rule looks at one profile; the results of all profiles are merged

interface Finding {
  status: CheckStatus;
  /** the setting the finding is about (its value, origin and fix) */
  setting: string;
  value: Value;
  says: string;
  fix?: string | undefined;
  /** says nothing of where the value comes from (what is not loaded is set nowhere) */
  plain?: boolean | undefined;
}

type Rule = (s: Snapshot, p: Profile) => Finding;

const RANK: Record<CheckStatus, number> = { skip: 0, ok: 1, warn: 2, fail: 3 };

function settingCheck(name: string, rule: Rule): { name: string; check: Check } {
  return {
    name,
    check: async (ctx) => {
      const s = await snapshot(ctx);
      const merged = new Map<string, Finding & { profiles: string[] }>();
      for (const p of s.profiles) {
        const f = rule(s, p);
        const key = JSON.stringify([f.status, f.setting, f.value.value, f.value.origin, f.says]);
        const seen = merged.get(key);
        if (seen) seen.profiles.push(p.label);
        else merged.set(key, { ...f, profiles: [p.label] });
      }
      const findings = [...merged.values()];
      const worst = findings.reduce((w, f) => (RANK[f.status] > RANK[w] ? f.status : w), 'ok' as CheckStatus);
      const shown = worst === 'ok' ? findings.slice(0, 1) : findings.filter((f) => f.status === worst);
      const many = s.profiles.length > 1;
      const summary = shown.map((f) => {
        const from = f.plain || f.value.origin.kind === 'default' ? '' : `set by ${describeOrigin(f.value.origin, s.database)}`;
        const where = many && worst !== 'ok' ? `for ${f.profiles.join(', ')}` : '';
        const note = [from, where].filter(Boolean).join(', ');
        return note ? `${f.says} (${note})` : f.says;
      }).join('; ');
      const fixes = [...new Set(findings.filter((f) => f.status !== 'ok' && f.fix).map((f) => f.fix!))];
      const details: Record<string, unknown> = {
        findings: findings.map((f) => ({ status: f.status, setting: f.setting, value: f.value.value, from: describeOrigin(f.value.origin, s.database), sessions: f.profiles })),
      };
      if (s.perRoleUnread) details.per_role_settings = `not read: ${s.perRoleUnread}`;
      const result: CheckResult = { id: `logging.${name}`, area: 'logging', status: worst, summary, details };
      if (fixes.length > 0) result.fix = fixes.join('; ');
      return [result];
    },
  };
}

/** log_statement, log_min_duration_statement and the sampling settings: statements with their parameters. */
function statementLogging(setting: string, active: (p: Profile) => string | undefined, safe: string): Rule {
  return (s, p) => {
    const value = get(p, setting);
    const what = active(p);
    if (what === undefined) return { status: 'ok', setting, value, says: `${setting} = ${value.value}: ${value.value.trim().toLowerCase() === 'ddl' ? 'it logs DDL statements only, and no key travels in DDL' : 'it logs no statement'}` };
    const params = parameters(p);
    if (!params.logged) {
      return { status: 'ok', setting, value, says: `${setting} = ${value.value} logs ${what}, but ${params.says} (the keys pgseal binds stay out of the log)` };
    }
    return {
      status: 'fail', setting, value,
      says: `${setting} = ${value.value} logs ${what} ${params.says}, and so the keys pgseal sends as parameters in database mode, seal.query and seal.begin`,
      fix: `${setFix(setting, value.origin, safe, s.database)}; or ${setFix('log_parameter_max_length', params.value.origin, '0', s.database)} (statement logs without bind parameters); ${CLIENT_MODE}`,
    };
  };
}

const logStatement = statementLogging('log_statement', (p) => {
  const v = get(p, 'log_statement').value.trim().toLowerCase();
  return v === 'all' ? 'every statement' : v === 'mod' ? 'every data-modifying statement (INSERT, UPDATE, DELETE, COPY FROM...)' : undefined;
}, '\'none\'');

const logMinDuration = statementLogging('log_min_duration_statement', (p) => {
  const n = ms(get(p, 'log_min_duration_statement').value);
  return n === 0 ? 'every statement' : n > 0 ? `every statement running ${n} ms or longer` : undefined;
}, '-1');

const logMinDurationSample = statementLogging('log_min_duration_sample', (p) => {
  const n = ms(get(p, 'log_min_duration_sample').value);
  const r = rate(get(p, 'log_statement_sample_rate').value);
  if (!(n >= 0) || !(r > 0)) return undefined;
  return `a sample (log_statement_sample_rate = ${get(p, 'log_statement_sample_rate').value}) of the statements running ${n} ms or longer`;
}, '-1');

const logTransactionSample = statementLogging('log_transaction_sample_rate', (p) => {
  const r = rate(get(p, 'log_transaction_sample_rate').value);
  return r > 0 ? `every statement of a sample of ${r * 100}% of the transactions` : undefined;
}, '0');

const logParameterMaxLength: Rule = (s, p) => {
  const params = parameters(p);
  const setting = 'log_parameter_max_length';
  if (!params.logged) return { status: 'ok', setting, value: params.value, says: 'log_parameter_max_length = 0: statement logs carry no bind parameters' };
  const logging = [logStatement, logMinDuration, logMinDurationSample, logTransactionSample].map((r) => r(s, p)).filter((f) => f.status === 'fail').map((f) => `${f.setting} = ${f.value.value}`);
  if (logging.length === 0) {
    return { status: 'ok', setting, value: params.value, says: `log_parameter_max_length = ${params.value.value}: a statement log would carry bind parameters, but no setting logs statements` };
  }
  return {
    status: 'warn', setting, value: params.value,
    says: `log_parameter_max_length = ${params.value.value}: the statements logged by ${logging.join(', ')} carry their bind parameters`,
    fix: `${setFix(setting, params.value.origin, '0', s.database)} (or turn that statement logging off)`,
  };
};

const logParameterOnError: Rule = (s, p) => {
  const setting = 'log_parameter_max_length_on_error';
  const value = get(p, setting);
  const n = bytes(value.value);
  if (n === 0) return { status: 'ok', setting, value, says: `${setting} = 0: a failing statement is logged without its bind parameters` };
  return {
    status: 'warn', setting, value,
    says: `${setting} = ${value.value}: a failing statement is logged with its bind parameters; pgseal.guard() pins it to 0 inside pgseal's own transactions, so no key reaches the log that way, but a failing statement of the application's own logs its parameters (plaintext among them)`,
    fix: setFix(setting, value.origin, '0', s.database),
  };
};

const debugPrint: Rule = (s, p) => {
  const on = ['debug_print_parse', 'debug_print_rewritten', 'debug_print_plan'].filter((n) => bool(get(p, n).value));
  if (on.length === 0) return { status: 'ok', setting: 'debug_print_plan', value: get(p, 'debug_print_plan'), says: 'debug_print_parse, debug_print_rewritten and debug_print_plan are off' };
  const first = on[0]!;
  return {
    status: 'warn', setting: first, value: get(p, first),
    says: `${on.map((n) => `${n} = on`).join(', ')} print(s) every statement's parse tree or plan to the log, bound values as constants; pgseal.guard() pins them off inside pgseal's own transactions, but not elsewhere`,
    fix: on.map((n) => setFix(n, get(p, n).origin, 'off', s.database)).join('; '),
  };
};

const autoExplain: Rule = (s, p) => {
  const setting = 'auto_explain.log_min_duration';
  const value = get(p, setting);
  const via = loadedBy(s, p, 'auto_explain');
  if (!via) return { status: 'ok', setting: 'session_preload_libraries', value: get(p, 'session_preload_libraries'), says: 'auto_explain is not loaded (shared_preload_libraries, session_preload_libraries, local_preload_libraries)', plain: true };
  const n = ms(value.value);
  const sample = get(p, 'auto_explain.sample_rate');
  if (!(n >= 0) || !(rate(sample.value) > 0)) {
    return { status: 'ok', setting, value, says: `auto_explain is loaded (${via}) but logs no plan (${setting} = ${value.value}, auto_explain.sample_rate = ${sample.value})` };
  }
  const verbose = get(p, 'auto_explain.log_verbose');
  const nested = get(p, 'auto_explain.log_nested_statements');
  // auto_explain.log_parameter_max_length (PostgreSQL 16): a "Query Parameters" line, in full by default
  const maxLength = s.version >= 160000 ? get(p, 'auto_explain.log_parameter_max_length') : undefined;
  const why: string[] = [];
  if (bool(verbose.value)) why.push('auto_explain.log_verbose = on prints each plan node\'s output, bound keys as constants of a custom plan');
  if (maxLength && bytes(maxLength.value) !== 0) why.push(`auto_explain.log_parameter_max_length = ${maxLength.value} prints each statement's bind parameters`);
  const plans = `auto_explain is loaded (${via}) and logs the plan of ${n === 0 ? 'every statement' : `every statement running ${n} ms or longer`} (${setting} = ${value.value})`;
  const nestedNote = bool(nested.value) ? '; auto_explain.log_nested_statements = on logs the statements run inside functions too (pgseal\'s own among them)' : '';
  const fixes = [setFix(setting, value.origin, '-1', s.database)];
  if (bool(verbose.value)) fixes.push(`or ${setFix('auto_explain.log_verbose', verbose.origin, 'off', s.database)}`);
  if (maxLength && bytes(maxLength.value) !== 0) fixes.push(`and ${setFix('auto_explain.log_parameter_max_length', maxLength.origin, '0', s.database)}`);
  if (bool(nested.value)) fixes.push(`and ${setFix('auto_explain.log_nested_statements', nested.origin, 'off', s.database)}`);
  fixes.push(CLIENT_MODE);
  if (why.length > 0) return { status: 'fail', setting, value, says: `${plans}: ${why.join('; ')}${nestedNote}`, fix: fixes.join('; ') };
  return {
    status: 'warn', setting, value,
    says: `${plans}: without log_verbose a custom plan still shows the bound values its conditions compare with${nestedNote}`,
    fix: fixes.join('; '),
  };
};

const pgStatStatements: Rule = (s, p) => {
  const setting = 'pg_stat_statements.track';
  const value = get(p, setting);
  if (!loadedBy(s, p, 'pg_stat_statements')) {
    return { status: 'ok', setting: 'shared_preload_libraries', value: get(p, 'shared_preload_libraries'), says: `pg_stat_statements is not loaded${s.sharedHidden ? ' (as far as this role can see: shared_preload_libraries is hidden from it without pg_read_all_settings)' : ''}`, plain: true };
  }
  const track = value.value.trim().toLowerCase();
  if (track === 'none') return { status: 'ok', setting, value, says: `pg_stat_statements is loaded, ${setting} = none: it records nothing` };
  const notes = [`pg_stat_statements.track = ${value.value}: it stores each statement's normalised text (constants as $n), never its bind parameters, so not the keys pgseal binds`];
  if (track === 'all') notes.push('track = all also records the statements run inside functions (pgseal\'s own, normalised the same way)');
  if (s.version < 160000 && bool(get(p, 'pg_stat_statements.track_utility').value)) {
    notes.push('before PostgreSQL 16, utility statements (DO, CALL, SET) are stored as written, literals and all (pgseal sends no key that way)');
  }
  return { status: 'ok', setting, value, says: notes.join('; ') };
};

/** pgaudit.log's classes: 'read, write', 'all, -misc'... */
function auditClasses(v: string): Set<string> {
  const all = ['read', 'write', 'function', 'role', 'ddl', 'misc', 'misc_set'];
  const out = new Set<string>();
  for (const raw of v.replace(/^'|'$/g, '').split(',')) {
    const item = raw.trim().toLowerCase();
    const minus = item.startsWith('-');
    const name = minus ? item.slice(1) : item;
    const names = name === 'all' ? all : all.includes(name) ? [name] : [];
    for (const n of names) (minus ? out.delete(n) : out.add(n));
  }
  return out;
}

const pgaudit: Rule = (s, p) => {
  const log = get(p, 'pgaudit.log');
  const parameter = get(p, 'pgaudit.log_parameter');
  if (!loadedBy(s, p, 'pgaudit')) return { status: 'ok', setting: 'shared_preload_libraries', value: get(p, 'shared_preload_libraries'), says: 'pgaudit is not loaded', plain: true };
  if (bool(parameter.value)) {
    return {
      status: 'fail', setting: 'pgaudit.log_parameter', value: parameter,
      says: `pgaudit.log_parameter = ${parameter.value} logs every audited statement's bind parameters (pgaudit.log = ${log.value}), and so the keys pgseal sends as parameters`,
      fix: `${setFix('pgaudit.log_parameter', parameter.origin, 'off', s.database)}; ${CLIENT_MODE}`,
    };
  }
  const risky = [...auditClasses(log.value)].filter((c) => c === 'read' || c === 'write' || c === 'function');
  if (risky.length > 0) {
    return {
      status: 'warn', setting: 'pgaudit.log', value: log,
      says: `pgaudit.log = ${log.value} logs the text of every ${risky.join('/')} statement: keys travel as parameters, not in the text, but a plaintext written into a statement's text is logged`,
      fix: `bind plaintext as parameters rather than writing it into SQL text, or narrow ${setFix('pgaudit.log', log.origin, '\'ddl, role\'', s.database)} to the classes you need`,
    };
  }
  return { status: 'ok', setting: 'pgaudit.log', value: log, says: `pgaudit is loaded; pgaudit.log = ${log.value} and pgaudit.log_parameter = off log no bind parameter and no read or write statement` };
};

// ---------------------------------------------------------------------------------------
// The canary

/** How long the log collector is given to write the canary's statement (and the marker after it). */
const LOG_WAIT_MS = 2000;
const CHUNK = 8 * 1024 * 1024;

interface LogReader {
  /** for the report: which file, read how */
  where: string;
  /** the next bytes written since the last call (from where the log ended when opened), or null when caught up */
  next(): Promise<Buffer | null>;
  close(): Promise<void>;
}

/** The log file named by --server-log, read by this process. */
async function localLog(path: string): Promise<LogReader | string> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
    const st = await handle.stat();
    if (!st.isFile()) {
      await handle.close();
      return `${path} is not a file`;
    }
    let pos = st.size;
    return {
      where: `the server log ${path} (--server-log)`,
      async next() {
        const size = (await handle.stat()).size;
        if (size < pos) pos = 0; // truncated: copytruncate rotation
        if (size === pos) return null;
        const length = Math.min(size - pos, CHUNK);
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, pos);
        pos += bytesRead;
        return bytesRead > 0 ? buffer.subarray(0, bytesRead) : null;
      },
      close: () => handle.close(),
    };
  } catch (error) {
    return `${path} cannot be read by this process (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
}

/** The server's current log file, read through the connection (pg_read_binary_file). */
async function serverLog(sql: Sql): Promise<LogReader | string> {
  let file: string | null;
  try {
    const [row] = await sql<{ file: string | null }[]>`select pg_catalog.pg_current_logfile() as file`;
    file = row?.file ?? null;
  } catch (error) {
    return `this role may not ask for the server's log file (pg_current_logfile(): ${(error as Error).message}; a superuser or a member of pg_monitor may)`;
  }
  if (file === null) return 'the server writes no log file the doctor can find (logging_collector is off, or log_destination has no stderr, csvlog or jsonlog)';
  let pos: number;
  try {
    const [row] = await sql<{ size: string }[]>`select (pg_catalog.pg_stat_file(${file})).size::pg_catalog.text as size, pg_catalog.length(pg_catalog.pg_read_binary_file(${file}, 0, 0)) as n`;
    pos = Number(row!.size);
  } catch (error) {
    return `this role may not read the server's log ${file} (${(error as Error).message}; a superuser, or a role with EXECUTE on pg_stat_file and pg_read_binary_file and, for a file outside the data directory, pg_read_server_files, may)`;
  }
  let current = file;
  return {
    where: `the server log ${file} (read with pg_read_binary_file)`,
    async next() {
      for (;;) {
        const [row] = await sql<{ file: string | null; size: string | null }[]>`
          select pg_catalog.pg_current_logfile() as file, (pg_catalog.pg_stat_file(${current}, true)).size::pg_catalog.text as size`;
        const size = row?.size == null ? 0 : Number(row.size);
        if (size < pos) pos = 0;
        if (pos < size) {
          const length = Math.min(size - pos, CHUNK);
          const [read] = await sql<{ data: Buffer }[]>`select pg_catalog.pg_read_binary_file(${current}, ${pos}::pg_catalog.int8, ${length}::pg_catalog.int8) as data`;
          const data = read!.data;
          pos += data.length;
          if (data.length > 0) return data;
          return null;
        }
        // rotated: the rest of the old file was read, go on in the new one
        if (row?.file && row.file !== current) {
          current = row.file;
          pos = 0;
          continue;
        }
        return null;
      }
    },
    close: async () => {},
  };
}

/** Reads what the log gets until the marker shows (or the wait ends), looking for the canary before it. */
async function scanLog(reader: LogReader, hex: string, marker: string): Promise<{ found: boolean; complete: boolean }> {
  const deadline = Date.now() + LOG_WAIT_MS;
  const keep = Math.max(hex.length, marker.length);
  let tail = '';
  for (;;) {
    for (let chunk = await reader.next(); chunk !== null; chunk = await reader.next()) {
      // latin1: one character a byte, whatever the log's encoding; hex and the marker are ASCII
      const text = tail + chunk.toString('latin1').toLowerCase();
      const at = text.indexOf(marker);
      if ((at >= 0 ? text.slice(0, at) : text).includes(hex)) return { found: true, complete: true };
      if (at >= 0) return { found: false, complete: true };
      tail = text.slice(-keep);
    }
    if (Date.now() >= deadline) return { found: false, complete: false };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Searched {
  where: string;
  found: boolean;
  /** rows whose text this role may not see */
  hidden?: number | undefined;
}

/** Every query text the role can see in pg_stat_activity (searched here, not in SQL: the canary is not sent again). */
async function searchActivity(sql: Sql, hex: string): Promise<Searched> {
  const [r] = await sql.unsafe<Texts[]>(texts('pg_catalog.pg_stat_activity'));
  return { where: `pg_stat_activity (${r!.n - r!.hidden} sessions)`, found: r!.candidates.some((q) => q.toLowerCase().includes(hex)), hidden: r!.hidden };
}

interface Texts {
  n: number;
  hidden: number;
  candidates: string[];
}

/**
 * The query texts of a view this role can see, counted, and those with a run of 64 hex
 * digits (a 32-byte key as PostgreSQL prints it) returned for the search here: a pattern, not
 * the canary, goes to the server, and a large pg_stat_statements is not fetched whole.
 */
const texts = (view: string) => `
  select pg_catalog.count(*)::int4 as n, (pg_catalog.count(*) filter (where v.query = '<insufficient privilege>'))::int4 as hidden,
         coalesce(pg_catalog.array_agg(v.query) filter (where v.query operator(pg_catalog.~*) '[0-9a-f]{64}'), '{}')::pg_catalog.text[] as candidates
    from ${view} v where v.query is not null and v.query <> ''`;

async function searchStatements(sql: Sql, hex: string): Promise<Searched | string> {
  const [ext] = await sql<{ schema: string }[]>`
    select n.nspname::pg_catalog.text as schema from pg_catalog.pg_extension e join pg_catalog.pg_namespace n on n.oid = e.extnamespace
     where e.extname = 'pg_stat_statements'`;
  if (!ext) return 'the pg_stat_statements extension is not installed in this database (CREATE EXTENSION pg_stat_statements lets the doctor look there)';
  let r: Texts;
  try {
    [r] = (await sql.unsafe<Texts[]>(texts(`${quoteIdent(ext.schema)}.pg_stat_statements`))) as unknown as [Texts];
  } catch (error) {
    return `pg_stat_statements cannot be read (${(error as Error).message})`;
  }
  return { where: `pg_stat_statements (${r.n - r.hidden} statements)`, found: r.candidates.some((q) => q.toLowerCase().includes(hex)), hidden: r.hidden };
}

/** pgseal.guard()'s argument, when this role may run the guard; else why not. */
async function guardGeneration(sql: Sql): Promise<string | { reason: string }> {
  try {
    const [row] = await sql<{ usable: boolean | null }[]>`
      select pg_catalog.to_regprocedure('pgseal.guard(bigint)') is not null and pg_catalog.to_regprocedure('pgseal.key_generation()') is not null
         and pg_catalog.has_function_privilege('pgseal.guard(bigint)', 'execute') and pg_catalog.has_function_privilege('pgseal.key_generation()', 'execute')
         and pg_catalog.has_schema_privilege('pgseal', 'usage') as usable`;
    if (!row?.usable) return { reason: 'this role may not call pgseal.guard() (or pgseal is not installed)' };
    const [g] = await sql<{ generation: string }[]>`select pgseal.key_generation()::pg_catalog.text as generation`;
    return g!.generation;
  } catch (error) {
    return { reason: `pgseal.guard() is not available to this role (${(error as Error).message})` };
  }
}

/**
 * The canary handed over as keys are: BEGIN, pgseal.guard(generation), then a prepared
 * statement with the canary as its bound bytea parameter (the protocol and type of a keyset
 * argument). The subquery's OFFSET 0 keeps the parameter a node's output in the plan rather
 * than folded away, as a keyset argument of pgseal's functions is: what auto_explain would
 * print of a key, it prints of the canary. `during` runs while the transaction is open; the
 * marker is logged in it after the canary, and the transaction rolls back.
 */
async function handOver(sql: Sql, canary: Buffer, marker: string, during: (db: Sql) => Promise<void>): Promise<{ guarded: boolean; note?: string | undefined }> {
  const generation = await guardGeneration(sql);
  const db = await sql.reserve();
  let guarded = false;
  let note = typeof generation === 'string' ? undefined : generation.reason;
  let open = false;
  try {
    await db.unsafe('begin');
    open = true;
    if (typeof generation === 'string') {
      try {
        await db`select pgseal.guard(${generation}::pg_catalog.int8)`;
        guarded = true;
      } catch (error) {
        note = `pgseal.guard() refused (${(error as Error).message}): the canary was sent unguarded`;
        await db.unsafe('rollback');
        await db.unsafe('begin');
      }
    }
    await db`select pg_catalog.octet_length(k) as bytes from (select ${canary}::pg_catalog.bytea as k offset 0) as pgseal_doctor_canary`;
    await during(db as unknown as Sql);
    try {
      // after the canary's statement, on its connection: what the log holds before the marker is
      // all the canary left. One fixed DO text (pg_stat_statements keeps one entry for it), the
      // marker a transaction-local setting.
      await db`select pg_catalog.set_config('pgseal_doctor.marker', ${marker}, true)`;
      await db.unsafe('do $$ begin raise log \'pgseal doctor: %\', pg_catalog.current_setting(\'pgseal_doctor.marker\'); end $$');
    } catch (error) {
      note = [note, `the log marker could not be written (${(error as Error).message})`].filter(Boolean).join('; ');
    }
    await db.unsafe('rollback');
    open = false;
  } finally {
    if (open) await db.unsafe('rollback').catch(() => {});
    db.release();
  }
  return { guarded, note };
}

const canary: Check = async (ctx) => {
  const key = randomBytes(32);
  const hex = key.toString('hex');
  const fingerprint = createHash('sha256').update(key).digest('hex').slice(0, 16);
  const marker = `pgseal-doctor-canary-marker-${randomBytes(8).toString('hex')}`;
  const notes: string[] = [];
  // the log as it ends now: what the canary adds comes after
  let reader: LogReader | undefined;
  const unread: string[] = [];
  if (ctx.options.serverLog) {
    const local = await localLog(ctx.options.serverLog);
    if (typeof local === 'string') unread.push(local);
    else reader = local;
  }
  if (!reader) {
    const remote = await serverLog(ctx.sql);
    if (typeof remote === 'string') unread.push(remote);
    else reader = remote;
  }
  try {
    const searched: Searched[] = [];
    const unsearched: string[] = [];
    // a second connection sees the canary's session as others do; a pool of one cannot give one
    const poolSize = (ctx.sql.options as { max?: number }).max ?? 1;
    const handed = await handOver(ctx.sql, key, marker, async (db) => {
      searched.push(await searchActivity(poolSize > 1 ? ctx.sql : db, hex));
    });
    if (handed.note) notes.push(handed.note);
    const statements = await searchStatements(ctx.sql, hex);
    if (typeof statements === 'string') unsearched.push(statements);
    else searched.push(statements);
    let logState: 'read' | 'partial' | 'unread' = 'unread';
    if (reader) {
      const scan = await scanLog(reader, hex, marker);
      searched.push({ where: reader.where, found: scan.found });
      logState = scan.complete ? 'read' : 'partial';
    }
    const found = searched.filter((s) => s.found).map((s) => s.where);
    const hidden = searched.reduce((n, s) => n + (s.hidden ?? 0), 0);
    if (hidden > 0) notes.push(`${hidden} row(s) of other roles were hidden from this role (pg_read_all_stats shows them)`);
    const how = `the canary (a throwaway key, fingerprint ${fingerprint}) sent as pgseal sends keys (a bound bytea parameter${handed.guarded ? ', behind pgseal.guard()' : ''})`;
    const details: Record<string, unknown> = {
      fingerprint, guarded: handed.guarded, searched: searched.map((s) => s.where), found,
      log: logState === 'unread' ? `not checked: ${unread.join('; ')}` : logState === 'partial' ? `not all read: the marker did not appear within ${LOG_WAIT_MS} ms` : reader!.where,
      ...(unsearched.length > 0 ? { not_searched: unsearched } : {}),
      ...(notes.length > 0 ? { notes } : {}),
      ...(unread.length > 0 && logState !== 'unread' ? { log_fallback: unread } : {}),
    };
    const base = { id: 'logging.canary', area: 'logging' as const, details };
    if (found.length > 0) {
      const inLog = found.some((w) => w.startsWith('the server log'));
      return [{
        ...base, status: 'fail',
        summary: `${how} reached ${found.join(', ')}: a real key sent the same way would be there`,
        fix: inLog
          ? `turn off what logs statements with their parameters (the logging.* checks that failed: log_statement, log_min_duration_statement, auto_explain...), or set log_parameter_max_length = 0; ${CLIENT_MODE}`
          : `something writes bound parameters into statement text or statistics on this server: find it (an extension, a proxy); ${CLIENT_MODE}`,
      }];
    }
    const looked = searched.map((s) => s.where).join(', ');
    if (logState === 'unread') {
      return [{
        ...base, status: 'skip',
        summary: `${how} was found in none of ${looked || 'the places searched'}; the server log was not checked: ${unread.join('; ')}`,
        fix: 'pass --server-log <file> (a log file this process can read), or run the doctor as a role that may read the server log',
      }];
    }
    if (logState === 'partial') {
      return [{
        ...base, status: 'warn',
        summary: `${how} was found in none of ${looked}, but the server log had not shown the doctor's marker after ${LOG_WAIT_MS} ms (the log collector lags, or log_min_messages is above log): the canary may not have been written yet`,
        fix: 'run the doctor again; if it persists, check log_min_messages (the marker is logged at level LOG)',
      }];
    }
    return [{ ...base, status: 'ok', summary: `${how} was found in none of ${looked}` }];
  } finally {
    key.fill(0);
    await reader?.close();
  }
};

export const loggingChecks: Array<{ name: string; check: Check }> = [
  settingCheck('log_statement', logStatement),
  settingCheck('log_min_duration_statement', logMinDuration),
  settingCheck('log_min_duration_sample', logMinDurationSample),
  settingCheck('log_transaction_sample_rate', logTransactionSample),
  settingCheck('log_parameter_max_length', logParameterMaxLength),
  settingCheck('log_parameter_max_length_on_error', logParameterOnError),
  settingCheck('debug_print', debugPrint),
  settingCheck('auto_explain', autoExplain),
  settingCheck('pg_stat_statements', pgStatStatements),
  settingCheck('pgaudit', pgaudit),
  { name: 'canary', check: canary },
];
