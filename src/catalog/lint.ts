// A lint over pg_catalog for the pgseal schema: what every function, grant and body in it
// must follow (name resolution, volatility and parallel safety, privileges). It reads the
// catalog only; PL/pgSQL and old-style SQL bodies are parsed here, in Node, with the real
// PostgreSQL parser (libpg_query compiled to WASM), SQL-standard bodies are read from their
// stored trees (pg_proc.prosqlbody) and from pg_depend.
//
// Rules:
//   search_path           every function is an SQL-standard body, or SET search_path = pg_catalog, pg_temp,
//                         or an unpinned PL/pgSQL function whose body qualifies every name
//   immutable_reads_table no IMMUTABLE function reads a table, itself or through the pgseal functions it calls
//   security_definer      SECURITY DEFINER functions are pinned and read settings only through pgseal._setting_*
//   public_privilege      PUBLIC holds nothing on the schema nor on its functions, tables, views, sequences
//   role_grants           pgseal_app and pgseal_admin hold exactly the expected privileges
//   parallel_volatility   functions that modify data are VOLATILE and not PARALLEL SAFE; PARALLEL SAFE ones
//                         call nothing unsafe or restricted; STABLE/IMMUTABLE SQL bodies call nothing VOLATILE
//   sql_body_binding      SQL-standard bodies reference only pg_catalog, pgseal and pgcrypto objects

import type { Sql } from 'postgres';
import { loadModule, parsePlPgSQLSync, parseSync } from 'libpg-query';

export const RULES = [
  'search_path',
  'immutable_reads_table',
  'security_definer',
  'public_privilege',
  'role_grants',
  'parallel_volatility',
  'sql_body_binding',
] as const;
export type RuleName = (typeof RULES)[number];

export interface CatalogProblem {
  rule: RuleName;
  /** `pgseal.f(bytea, text)` for a function, `pgseal.t` for a relation, `pgseal` for the schema, a role name for role_grants */
  object: string;
  detail: string;
}

/** Privileges as strings: `USAGE SCHEMA pgseal`, `EXECUTE FUNCTION pgseal.decrypt_text(bytea, text)`, `SELECT TABLE pgseal.columns`, `SELECT (col) TABLE pgseal.x` */
export interface ExpectedGrants {
  app: string[];
  admin: string[];
}

export const SCHEMA = 'pgseal';
/** The one search_path convention of pgseal functions. */
export const PINNED_SEARCH_PATH = 'pg_catalog, pg_temp';
const ROLES = { app: 'pgseal_app', admin: 'pgseal_admin' } as const;

let loading: Promise<void> | undefined;
function loadParser(): Promise<void> {
  loading ??= loadModule().catch((error: unknown) => {
    loading = undefined;
    throw error;
  });
  return loading;
}

// ---------------------------------------------------------------------------------------
// catalog rows

interface FunctionRow {
  oid: string;
  nspname: string;
  proname: string;
  ident: string;
  lanname: string;
  prokind: string;
  provolatile: string;
  proparallel: string;
  prosecdef: boolean;
  proconfig: string[] | null;
  pronargs: number;
  pronargdefaults: number;
  variadic: boolean;
  sqlbody: string | null;
  def: string | null;
  src: string | null;
}

interface DependRow {
  fn: string;
  refclass: string;
  refoid: string;
  refobjsubid: number;
  refschema: string | null;
  refname: string;
  relkind: string | null;
  provolatile: string | null;
  proparallel: string | null;
  pgcrypto: boolean;
}

export interface AclRow {
  kind: 'SCHEMA' | 'FUNCTION' | 'TABLE' | 'SEQUENCE';
  name: string;
  col: string | null;
  grantee: string;
  privilege_type: string;
  is_grantable: boolean;
}

/**
 * Every privilege on schema pgseal and what it holds (schema, functions, tables, sequences,
 * columns: a column's row is kind TABLE with its col), a NULL acl read as the default one
 * (EXECUTE for PUBLIC on a function nobody revoked it from). The lint and the doctor read it.
 */
export function schemaAcl(sql: Sql): Promise<AclRow[]> {
  return sql<AclRow[]>`
    with objects as (
      select 'SCHEMA' as kind, pg_catalog.quote_ident(n.nspname) as name, null::text as col,
             coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner)) as acl
        from pg_catalog.pg_namespace n where n.nspname = ${SCHEMA}
      union all
      select 'FUNCTION', pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes)), null,
             coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))
        from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace where n.nspname = ${SCHEMA}
      union all
      select case when c.relkind = 'S' then 'SEQUENCE' else 'TABLE' end, pg_catalog.format('%I.%I', n.nspname, c.relname), null,
             coalesce(c.relacl, pg_catalog.acldefault(case when c.relkind = 'S' then 's' else 'r' end::"char", c.relowner))
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
       where n.nspname = ${SCHEMA} and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
      union all
      select 'TABLE', pg_catalog.format('%I.%I', n.nspname, c.relname), pg_catalog.quote_ident(a.attname), a.attacl
        from pg_catalog.pg_attribute a
        join pg_catalog.pg_class c on c.oid = a.attrelid
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
       where n.nspname = ${SCHEMA} and a.attacl is not null and a.attnum > 0 and not a.attisdropped
    )
    select o.kind, o.name, o.col,
           case when x.grantee = 0 then 'PUBLIC' else pg_catalog.pg_get_userbyid(x.grantee)::text end as grantee,
           x.privilege_type, x.is_grantable
      from objects o, pg_catalog.aclexplode(o.acl) x`;
}

interface CalleeInfo {
  oid: string;
  ident: string;
  provolatile: string;
  proparallel: string;
}

// ---------------------------------------------------------------------------------------
// facts about one parsed body (PL/pgSQL, or an old-style SQL string body)

interface Offence {
  what: string;
  location: number;
}

interface CallSite {
  schema: string | undefined;
  name: string;
  nargs: number;
}

interface BodyFacts {
  /** names resolved through the search_path, in source order */
  unqualified: string[];
  dynamic: boolean;
  /** relations as written (`pgseal.keys`, `keys`) */
  relations: string[];
  calls: CallSite[];
  /** why the body modifies data (first reason), if it does */
  modifies: string | undefined;
  /** reads a setting directly: current_setting, pg_settings, SHOW */
  readsSettings: string | undefined;
  /** an EXCEPTION block: each entry starts a subtransaction, which parallel mode forbids */
  subtransaction: boolean;
  parseError: string | undefined;
}

type Json = unknown;
type JsonObject = Record<string, Json>;

function isObject(v: Json): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function strings(list: Json): string[] | undefined {
  if (!Array.isArray(list)) return undefined;
  const out: string[] = [];
  for (const item of list) {
    if (!isObject(item) || !isObject(item.String)) return undefined;
    out.push(String(item.String.sval ?? ''));
  }
  return out;
}

function location(node: JsonObject): number {
  return typeof node.location === 'number' ? node.location : 0;
}

const OPERATOR_KINDS: Record<string, string> = {
  AEXPR_OP: '',
  AEXPR_OP_ANY: ' (= ANY)',
  AEXPR_OP_ALL: ' (= ALL)',
  AEXPR_IN: ' (IN)',
  AEXPR_NULLIF: ' (NULLIF)',
  AEXPR_DISTINCT: ' (IS DISTINCT FROM)',
  AEXPR_NOT_DISTINCT: ' (IS NOT DISTINCT FROM)',
  AEXPR_LIKE: ' (LIKE)',
  AEXPR_ILIKE: ' (ILIKE)',
  AEXPR_SIMILAR: ' (SIMILAR TO)',
  AEXPR_BETWEEN: '',
  AEXPR_NOT_BETWEEN: '',
  AEXPR_BETWEEN_SYM: '',
  AEXPR_NOT_BETWEEN_SYM: '',
};

const MODIFYING_STATEMENTS: Record<string, string> = {
  InsertStmt: 'INSERT',
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE',
  MergeStmt: 'MERGE',
};

/** Walks one parsed SQL statement (a raw parse tree) and adds what it finds to `facts`. */
function scanStatement(stmt: JsonObject, facts: BodyFacts, offences: Offence[], topLevel: boolean): void {
  const statementType = Object.keys(stmt)[0] ?? '';
  if (topLevel && !facts.modifies) {
    if (MODIFYING_STATEMENTS[statementType]) facts.modifies = MODIFYING_STATEMENTS[statementType];
    else if (statementType === 'VariableShowStmt') facts.readsSettings ??= 'SHOW';
    else if (statementType !== 'SelectStmt') facts.modifies = `a ${statementType.replace(/Stmt$/, '')} statement`;
  }
  const ctes = new Set<string>();
  const relations: Array<{ schema: string | undefined; name: string; location: number }> = [];

  const visit = (node: Json): void => {
    if (Array.isArray(node)) {
      for (const item of node) visit(item);
      return;
    }
    if (!isObject(node)) return;
    // unwrapped structs, recognised by their fields
    if (typeof node.relname === 'string') {
      relations.push({ schema: typeof node.schemaname === 'string' ? node.schemaname : undefined, name: node.relname, location: location(node) });
    }
    if (Array.isArray(node.names) && 'typemod' in node) {
      const names = strings(node.names);
      if (names && names.length === 1) offences.push({ what: `type ${names[0]}`, location: location(node) });
    }
    for (const [key, value] of Object.entries(node)) {
      if (!isObject(value)) {
        visit(value);
        continue;
      }
      switch (key) {
        case 'FuncCall': {
          const names = strings(value.funcname) ?? [];
          const name = names[names.length - 1] ?? '';
          const schema = names.length > 1 ? names[names.length - 2] : undefined;
          const nargs = Array.isArray(value.args) ? value.args.length : 0;
          facts.calls.push({ schema, name, nargs });
          if (names.length === 1) offences.push({ what: `function ${name}()`, location: location(value) });
          if (name === 'current_setting' && (schema === undefined || schema === 'pg_catalog')) {
            facts.readsSettings ??= `${schema ?? ''}${schema ? '.' : ''}current_setting()`;
          }
          break;
        }
        case 'A_Expr': {
          const kind = String(value.kind ?? '');
          const names = strings(value.name) ?? [];
          if (kind in OPERATOR_KINDS && names.length === 1) {
            const what = kind.includes('BETWEEN') ? `operators of ${kind.replace('AEXPR_', '').replace(/_/g, ' ')}` : `operator ${names[0]}${OPERATOR_KINDS[kind]}`;
            offences.push({ what, location: location(value) });
          }
          break;
        }
        case 'SubLink': {
          const type = String(value.subLinkType ?? '');
          if (type === 'ANY_SUBLINK' || type === 'ALL_SUBLINK' || type === 'ROWCOMPARE_SUBLINK') {
            const names = strings(value.operName) ?? [];
            if (names.length <= 1) offences.push({ what: `operator ${names[0] ?? '='} (${type === 'ALL_SUBLINK' ? 'ALL' : type === 'ANY_SUBLINK' ? 'IN / ANY' : 'row comparison'} subquery)`, location: location(value) });
          }
          break;
        }
        case 'CaseExpr':
          if (value.arg !== undefined) offences.push({ what: 'operator = (CASE x WHEN)', location: location(value) });
          break;
        case 'CollateClause': {
          const names = strings(value.collname) ?? [];
          if (names.length === 1) offences.push({ what: `collation "${names[0]}"`, location: location(value) });
          break;
        }
        case 'CommonTableExpr':
          if (typeof value.ctename === 'string') ctes.add(value.ctename);
          break;
        case 'SelectStmt':
          if (Array.isArray(value.lockingClause) && value.lockingClause.length > 0) facts.modifies ??= 'row locks (SELECT ... FOR UPDATE/SHARE)';
          break;
        default:
          if (MODIFYING_STATEMENTS[key]) facts.modifies ??= MODIFYING_STATEMENTS[key];
      }
      visit(value);
    }
  };
  visit(stmt);

  for (const r of relations) {
    if (r.schema === undefined && ctes.has(r.name)) continue;
    const name = r.schema ? `${r.schema}.${r.name}` : r.name;
    facts.relations.push(name);
    if (r.schema === undefined) offences.push({ what: `relation ${r.name}`, location: r.location });
    if (r.name === 'pg_settings' && (r.schema === undefined || r.schema === 'pg_catalog')) facts.readsSettings ??= 'pg_settings';
  }
}

function newFacts(): BodyFacts {
  return { unqualified: [], dynamic: false, relations: [], calls: [], modifies: undefined, readsSettings: undefined, subtransaction: false, parseError: undefined };
}

/** Parses SQL text (one or more statements) into `facts`; the offences keep source order. */
function scanSql(text: string, facts: BodyFacts): void {
  let tree: { stmts?: Array<{ stmt?: JsonObject }> };
  try {
    tree = parseSync(text) as typeof tree;
  } catch (error) {
    facts.parseError ??= `${error instanceof Error ? error.message : String(error)} in: ${text.slice(0, 80)}`;
    return;
  }
  const offences: Offence[] = [];
  for (const s of tree.stmts ?? []) if (s.stmt) scanStatement(s.stmt, facts, offences, true);
  offences.sort((a, b) => a.location - b.location);
  facts.unqualified.push(...offences.map((o) => o.what));
}

const IDENT = String.raw`(?:"(?:[^"]|"")*"|[^\s:=\[\]."]+)`;
const ASSIGN_TARGET = new RegExp(String.raw`^\s*${IDENT}(?:\s*\.\s*${IDENT})*\s*((?:\[[^\]]*\]\s*)*)(?::=|=)`);

/**
 * One PL/pgSQL expression, by its RawParseMode: 0 a statement, 1 a type name, 2 an expression,
 * 3 to 5 an assignment `target := expr` (a target of one, two or three names).
 */
function scanExpression(expr: JsonObject, facts: BodyFacts): void {
  const query = String(expr.query ?? '');
  const mode = Number(expr.parseMode ?? 0);
  if (mode === 0) {
    scanSql(query, facts);
  } else if (mode === 1) {
    checkDeclaredType(query, facts);
  } else if (mode >= 3 && mode <= 5) {
    const m = ASSIGN_TARGET.exec(query);
    if (!m) {
      facts.parseError ??= `unrecognised assignment: ${query.slice(0, 80)}`;
      return;
    }
    for (const sub of (m[1] ?? '').matchAll(/\[([^\]]*)\]/g)) scanSql(`SELECT ${(sub[1] ?? '').split(':').filter((s) => s.trim()).join(', ') || 'NULL'}`, facts);
    scanSql(`SELECT ${query.slice(m[0].length)}`, facts);
  } else {
    scanSql(`SELECT ${query}`, facts);
  }
}

const DYNAMIC_STATEMENTS = new Set(['PLpgSQL_stmt_dynexecute', 'PLpgSQL_stmt_dynfors']);

function scanPlpgsql(functionDef: string): BodyFacts {
  const facts = newFacts();
  let tree: { plpgsql_funcs?: Array<{ PLpgSQL_function?: JsonObject }> };
  try {
    tree = parsePlPgSQLSync(functionDef) as typeof tree;
  } catch (error) {
    facts.parseError = error instanceof Error ? error.message : String(error);
    return facts;
  }
  for (const f of tree.plpgsql_funcs ?? []) {
    const fn = f.PLpgSQL_function;
    if (!fn) continue;
    // declarations first (source order): their types, then everything else in the tree
    for (const datum of Array.isArray(fn.datums) ? fn.datums : []) {
      if (!isObject(datum)) continue;
      const d = Object.values(datum)[0];
      if (!isObject(d) || d.lineno === undefined) continue; // parameters and implicit variables
      if (d.cursor_explicit_expr !== undefined) continue; // a bound cursor's type is refcursor by OID
      const type = isObject(d.datatype) && isObject(d.datatype.PLpgSQL_type) ? d.datatype.PLpgSQL_type.typname : undefined;
      if (typeof type === 'string') checkDeclaredType(type, facts);
    }
    const visit = (node: Json): void => {
      if (Array.isArray(node)) {
        for (const item of node) visit(item);
        return;
      }
      if (!isObject(node)) return;
      for (const [key, value] of Object.entries(node)) {
        if (key === 'PLpgSQL_expr' && isObject(value)) {
          scanExpression(value, facts);
          continue;
        }
        if (key === 'PLpgSQL_stmt_block' && isObject(value) && value.exceptions !== undefined) facts.subtransaction = true;
        if (key === 'PLpgSQL_stmt_commit' || key === 'PLpgSQL_stmt_rollback') facts.modifies ??= key === 'PLpgSQL_stmt_commit' ? 'COMMIT' : 'ROLLBACK';
        if (DYNAMIC_STATEMENTS.has(key) || ((key === 'PLpgSQL_stmt_return_query' || key === 'PLpgSQL_stmt_open') && isObject(value) && value.dynquery !== undefined)) {
          facts.dynamic = true;
        }
        visit(value);
      }
    };
    visit(fn.datums);
    visit(fn.action);
  }
  return facts;
}

function checkDeclaredType(typname: string, facts: BodyFacts): void {
  const pct = /%(row)?type\s*$/i.exec(typname);
  const base = pct ? typname.slice(0, pct.index) : typname;
  let names: string[] | undefined;
  try {
    const tree = parseSync(`SELECT NULL::${base}`) as { stmts?: Array<{ stmt?: JsonObject }> };
    const select = tree.stmts?.[0]?.stmt?.SelectStmt;
    const target = isObject(select) && Array.isArray(select.targetList) ? select.targetList[0] : undefined;
    const cast = isObject(target) && isObject(target.ResTarget) && isObject(target.ResTarget.val) ? target.ResTarget.val.TypeCast : undefined;
    names = isObject(cast) && isObject(cast.typeName) ? strings(cast.typeName.names) : undefined;
  } catch {
    names = undefined;
  }
  if (!names) {
    facts.parseError ??= `unrecognised declared type ${typname}`;
    return;
  }
  if (pct?.[1]) {
    // t%ROWTYPE names a relation
    if (names.length === 1) facts.unqualified.push(`relation ${names[0]} (${typname})`);
  } else if (pct) {
    // v%TYPE is a variable; t.c%TYPE may be an unqualified relation's column or a variable's field: not told apart
  } else if (names.length === 1) {
    facts.unqualified.push(`type ${names[0]}`);
  }
}

// ---------------------------------------------------------------------------------------
// stored SQL-standard bodies (pg_node_tree text)

interface StoredBodyFacts {
  funcOids: Set<string>;
  relOids: Set<string>;
  modifies: string | undefined;
}

function scanStoredBody(tree: string): StoredBodyFacts {
  const funcOids = new Set<string>();
  for (const m of tree.matchAll(/:(?:funcid|opfuncid|aggfnoid|winfnoid) (\d+)/g)) if (m[1] !== '0') funcOids.add(m[1]!);
  const relOids = new Set<string>();
  for (const m of tree.matchAll(/:rtekind 0 :relid (\d+)/g)) relOids.add(m[1]!);
  let modifies: string | undefined;
  const commands: Record<string, string> = { '2': 'UPDATE', '3': 'INSERT', '4': 'DELETE', '5': 'MERGE', '6': 'a utility statement' };
  for (const m of tree.matchAll(/:commandType (\d+)/g)) {
    if (commands[m[1]!]) {
      modifies = commands[m[1]!];
      break;
    }
  }
  if (!modifies && /:hasForUpdate true/.test(tree)) modifies = 'row locks (SELECT ... FOR UPDATE/SHARE)';
  return { funcOids, relOids, modifies };
}

// ---------------------------------------------------------------------------------------

const VOLATILITY: Record<string, string> = { i: 'IMMUTABLE', s: 'STABLE', v: 'VOLATILE' };
const PARALLEL: Record<string, string> = { s: 'PARALLEL SAFE', r: 'PARALLEL RESTRICTED', u: 'PARALLEL UNSAFE' };
const VOLATILITY_RANK: Record<string, number> = { i: 0, s: 1, v: 2 };
const PARALLEL_RANK: Record<string, number> = { s: 0, r: 1, u: 2 };

function normaliseSetting(entry: string): string {
  return entry.replace(/[\s"']/g, '');
}

function searchPathSetting(config: string[] | null): string | undefined {
  const entry = (config ?? []).find((c) => c.toLowerCase().startsWith('search_path='));
  return entry === undefined ? undefined : entry.slice('search_path='.length);
}

function isPinned(config: string[] | null): boolean {
  return (config ?? []).some((c) => normaliseSetting(c) === normaliseSetting(`search_path=${PINNED_SEARCH_PATH}`));
}

/** The schemas an unqualified name resolves in (pg_catalog first unless listed), or undefined when the caller's search_path decides. */
function resolutionPath(config: string[] | null): string[] | undefined {
  const setting = searchPathSetting(config);
  if (setting === undefined) return undefined;
  const listed = setting
    .split(',')
    .map((s) => s.trim().replace(/^"(.*)"$/, '$1'))
    .filter((s) => s !== '' && s !== 'pg_temp' && s !== '$user');
  return listed.includes('pg_catalog') ? listed : ['pg_catalog', ...listed];
}

interface Lintable extends FunctionRow {
  facts: BodyFacts | undefined;
  stored: StoredBodyFacts | undefined;
}

export async function lintCatalog(sql: Sql, expected?: ExpectedGrants): Promise<CatalogProblem[]> {
  const parserReady = loadParser();
  const [schemaRows, functionRows, dependRows, aclRows, roleRows] = await Promise.all([
    sql<{ oid: string }[]>`select oid::int8::text as oid from pg_catalog.pg_namespace where nspname = ${SCHEMA}`,
    sql<FunctionRow[]>`
      select p.oid::int8::text as oid, n.nspname, p.proname,
             pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes)) as ident,
             l.lanname, p.prokind, p.provolatile, p.proparallel, p.prosecdef, p.proconfig,
             p.pronargs::int as pronargs, p.pronargdefaults::int as pronargdefaults, p.provariadic <> 0 as variadic,
             case when n.nspname = ${SCHEMA} then p.prosqlbody::text end as sqlbody,
             case when n.nspname = ${SCHEMA} and l.lanname = 'plpgsql' and p.prosqlbody is null and p.prokind in ('f', 'p')
                  then pg_catalog.pg_get_functiondef(p.oid) end as def,
             case when n.nspname = ${SCHEMA} and l.lanname = 'sql' and p.prosqlbody is null then p.prosrc end as src
        from pg_catalog.pg_proc p
        join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        join pg_catalog.pg_language l on l.oid = p.prolang
       where n.nspname in ('pg_catalog', ${SCHEMA})`,
    sql<DependRow[]>`
      select d.objid::int8::text as fn, d.refclassid::regclass::text as refclass, d.refobjid::int8::text as refoid, d.refobjsubid,
             coalesce(rpn.nspname, ron.nspname, rtn.nspname, rcn.nspname) as refschema,
             case d.refclassid
               when 'pg_catalog.pg_proc'::regclass then pg_catalog.format('%I.%I(%s)', rpn.nspname, rp.proname, pg_catalog.oidvectortypes(rp.proargtypes))
               when 'pg_catalog.pg_operator'::regclass then pg_catalog.format('%I.%s(%s, %s)', ron.nspname, ro.oprname,
                                                               pg_catalog.format_type(nullif(ro.oprleft, 0), null), pg_catalog.format_type(nullif(ro.oprright, 0), null))
               when 'pg_catalog.pg_type'::regclass then pg_catalog.format('%I.%I', rtn.nspname, rt.typname)
               else pg_catalog.format('%I.%I', rcn.nspname, rc.relname) end as refname,
             rc.relkind::text as relkind, rp.provolatile::text as provolatile, rp.proparallel::text as proparallel,
             exists (select 1 from pg_catalog.pg_depend e join pg_catalog.pg_extension x on x.oid = e.refobjid
                      where e.classid = d.refclassid and e.objid = d.refobjid and e.refclassid = 'pg_catalog.pg_extension'::regclass
                        and e.deptype = 'e' and x.extname = 'pgcrypto') as pgcrypto
        from pg_catalog.pg_depend d
        join pg_catalog.pg_proc p on d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid
        join pg_catalog.pg_namespace n on n.oid = p.pronamespace and n.nspname = ${SCHEMA}
        left join pg_catalog.pg_proc rp on d.refclassid = 'pg_catalog.pg_proc'::regclass and rp.oid = d.refobjid
        left join pg_catalog.pg_namespace rpn on rpn.oid = rp.pronamespace
        left join pg_catalog.pg_operator ro on d.refclassid = 'pg_catalog.pg_operator'::regclass and ro.oid = d.refobjid
        left join pg_catalog.pg_namespace ron on ron.oid = ro.oprnamespace
        left join pg_catalog.pg_type rt on d.refclassid = 'pg_catalog.pg_type'::regclass and rt.oid = d.refobjid
        left join pg_catalog.pg_namespace rtn on rtn.oid = rt.typnamespace
        left join pg_catalog.pg_class rc on d.refclassid = 'pg_catalog.pg_class'::regclass and rc.oid = d.refobjid
        left join pg_catalog.pg_namespace rcn on rcn.oid = rc.relnamespace
       where p.prosqlbody is not null and d.deptype = 'n'
         and d.refclassid in ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_operator'::regclass, 'pg_catalog.pg_type'::regclass, 'pg_catalog.pg_class'::regclass)`,
    schemaAcl(sql),
    sql<{ rolname: string }[]>`select rolname::text from pg_catalog.pg_roles where rolname in (${ROLES.app}, ${ROLES.admin})`,
  ]);
  if (schemaRows.length === 0) throw new Error(`lintCatalog: schema ${SCHEMA} does not exist`);
  await parserReady;

  const problems: CatalogProblem[] = [];
  const reported = new Set<string>();
  const add = (rule: RuleName, object: string, detail: string): void => {
    const key = `${rule}\n${object}\n${detail}`;
    if (reported.has(key)) return; // e.g. one privilege granted to PUBLIC by two grantors
    reported.add(key);
    problems.push({ rule, object, detail });
  };

  // -- functions, and the facts of each pgseal body
  const byOid = new Map<string, CalleeInfo>();
  const byName = new Map<string, FunctionRow[]>();
  const pgseal: Lintable[] = [];
  for (const row of functionRows) {
    byOid.set(row.oid, { oid: row.oid, ident: row.ident, provolatile: row.provolatile, proparallel: row.proparallel });
    const key = `${row.nspname}.${row.proname}`;
    const list = byName.get(key);
    if (list) list.push(row);
    else byName.set(key, [row]);
    if (row.nspname !== SCHEMA) continue;
    let facts: BodyFacts | undefined;
    if (row.def !== null) facts = scanPlpgsql(row.def);
    else if (row.src !== null) {
      facts = newFacts();
      scanSql(row.src, facts);
    }
    pgseal.push({ ...row, facts, stored: row.sqlbody !== null ? scanStoredBody(row.sqlbody) : undefined });
  }
  pgseal.sort((a, b) => (a.ident < b.ident ? -1 : a.ident > b.ident ? 1 : 0));
  const depends = new Map<string, DependRow[]>();
  for (const d of dependRows) {
    const list = depends.get(d.fn);
    if (list) list.push(d);
    else depends.set(d.fn, [d]);
    if (d.refclass === 'pg_proc' && d.provolatile && d.proparallel && !byOid.has(d.refoid)) {
      byOid.set(d.refoid, { oid: d.refoid, ident: d.refname, provolatile: d.provolatile, proparallel: d.proparallel });
    }
  }

  /** Candidates of a call written in a parsed body: by name (and arity when that narrows it down). */
  const candidates = (call: CallSite, schema: string): FunctionRow[] => {
    const all = byName.get(`${schema}.${call.name}`) ?? [];
    const fits = all.filter(
      (c) => (call.nargs >= c.pronargs - c.pronargdefaults && call.nargs <= c.pronargs) || (c.variadic && call.nargs >= c.pronargs - 1),
    );
    return fits.length > 0 ? fits : all;
  };
  /** What a parsed call resolves to: the first schema of its path holding a candidate. */
  const resolveCall = (fn: Lintable, call: CallSite): FunctionRow[] => {
    // unpinned: the caller's search_path decides; guess pg_catalog (searched first unless listed), then pgseal
    const path = call.schema !== undefined ? [call.schema] : (resolutionPath(fn.proconfig) ?? ['pg_catalog', SCHEMA]);
    for (const schema of path) {
      const found = candidates(call, schema);
      if (found.length > 0) return found;
    }
    return [];
  };
  /** Every function a body calls (oids), for rule 6. */
  const calleesOf = (fn: Lintable): CalleeInfo[] => {
    const out: CalleeInfo[] = [];
    if (fn.stored) {
      const oids = new Set(fn.stored.funcOids);
      for (const d of depends.get(fn.oid) ?? []) if (d.refclass === 'pg_proc') oids.add(d.refoid);
      for (const oid of oids) {
        const c = byOid.get(oid);
        if (c) out.push(c);
      }
    } else if (fn.facts) {
      for (const call of fn.facts.calls) {
        const found = resolveCall(fn, call).map((r) => byOid.get(r.oid)!);
        if (found.length === 0) continue;
        // overloads told apart by name and arity only: judge by the most lenient one
        const lenient = [...found].sort(
          (a, b) => (PARALLEL_RANK[a.proparallel] ?? 0) - (PARALLEL_RANK[b.proparallel] ?? 0) || (VOLATILITY_RANK[a.provolatile] ?? 0) - (VOLATILITY_RANK[b.provolatile] ?? 0),
        )[0]!;
        out.push(lenient);
      }
    }
    return out;
  };

  // -- rule 1: search_path
  for (const fn of pgseal) {
    if (fn.prokind === 'a' || fn.prokind === 'w') continue;
    if (fn.stored) continue; // (a) names bound at CREATE time
    if (isPinned(fn.proconfig)) continue; // (b)
    const setting = searchPathSetting(fn.proconfig);
    if (setting !== undefined) {
      add('search_path', fn.ident, `SET search_path = ${setting === '""' ? "''" : setting}: the convention is SET search_path = ${PINNED_SEARCH_PATH}`);
      continue;
    }
    if (fn.lanname !== 'plpgsql') {
      add('search_path', fn.ident, `LANGUAGE ${fn.lanname}${fn.lanname === 'sql' ? ' with a string body' : ''} without SET search_path = ${PINNED_SEARCH_PATH}`);
      continue;
    }
    // (c) an unpinned PL/pgSQL function qualifying every name
    const facts = fn.facts!;
    if (facts.parseError) add('search_path', fn.ident, `unpinned, and its body could not be checked: ${facts.parseError}`);
    else if (facts.unqualified.length > 0) add('search_path', fn.ident, `unpinned PL/pgSQL with an unqualified name: ${facts.unqualified[0]}`);
    else if (facts.dynamic) add('search_path', fn.ident, 'unpinned PL/pgSQL with a dynamic EXECUTE');
  }

  // -- rule 2: immutable_reads_table (closure over pgseal calls)
  const pgsealByOid = new Map(pgseal.map((f) => [f.oid, f]));
  const directReads = new Map<string, string>();
  const calls = new Map<string, string[]>();
  const relationNames = new Map<string, string>();
  for (const d of dependRows) if (d.refclass === 'pg_class') relationNames.set(d.refoid, d.refname);
  const catalogRelations = await relationNamesOf(sql, pgseal.flatMap((f) => [...(f.stored?.relOids ?? [])]).filter((oid) => !relationNames.has(oid)));
  for (const [oid, name] of catalogRelations) relationNames.set(oid, name);
  for (const fn of pgseal) {
    const out = new Set<string>();
    if (fn.stored) {
      const reads = new Set<string>();
      for (const oid of fn.stored.relOids) reads.add(relationNames.get(oid) ?? `relation ${oid}`);
      for (const d of depends.get(fn.oid) ?? []) {
        if (d.refclass === 'pg_class' && d.refobjsubid === 0 && d.relkind !== 'c' && d.relkind !== 'i') reads.add(d.refname);
        if (d.refclass === 'pg_proc' && d.refschema === SCHEMA) out.add(d.refoid);
      }
      if (reads.size > 0) directReads.set(fn.oid, `reads ${[...reads].sort().join(', ')}`);
    } else if (fn.facts) {
      const f = fn.facts;
      if (f.relations.length > 0) directReads.set(fn.oid, `reads ${[...new Set(f.relations)].sort().join(', ')}`);
      else if (f.dynamic) directReads.set(fn.oid, 'may read tables (dynamic EXECUTE)');
      else if (f.parseError) directReads.set(fn.oid, `may read tables (body not parsed: ${f.parseError})`);
      // pgseal.x: every pgseal function named x; an unqualified name only where pgseal may be on the path
      const path = resolutionPath(fn.proconfig);
      for (const call of f.calls) {
        if (call.schema !== SCHEMA && !(call.schema === undefined && (path === undefined || path.includes(SCHEMA)))) continue;
        for (const c of byName.get(`${SCHEMA}.${call.name}`) ?? []) out.add(c.oid);
      }
    }
    calls.set(fn.oid, [...out].sort((a, b) => (pgsealByOid.get(a)!.ident < pgsealByOid.get(b)!.ident ? -1 : 1)));
  }
  for (const fn of pgseal) {
    if (fn.provolatile !== 'i') continue;
    // breadth first: the shortest path to a function that reads
    const previous = new Map<string, string | null>([[fn.oid, null]]);
    const queue = [fn.oid];
    let reader: string | undefined;
    while (queue.length > 0) {
      const oid = queue.shift()!;
      if (directReads.has(oid)) {
        reader = oid;
        break;
      }
      for (const next of calls.get(oid) ?? []) {
        if (previous.has(next)) continue;
        previous.set(next, oid);
        queue.push(next);
      }
    }
    if (reader === undefined) continue;
    const path: string[] = [];
    for (let at: string | null | undefined = reader; at; at = previous.get(at)) path.unshift(pgsealByOid.get(at)!.proname);
    add('immutable_reads_table', fn.ident, `${path.join(' -> ')} ${directReads.get(reader)}`);
  }

  // -- rule 3: security_definer
  const currentSettingOids = new Set((byName.get('pg_catalog.current_setting') ?? []).map((r) => r.oid));
  for (const fn of pgseal) {
    if (!fn.prosecdef) continue;
    if (!isPinned(fn.proconfig)) add('security_definer', fn.ident, `SECURITY DEFINER without SET search_path = ${PINNED_SEARCH_PATH}`);
    let direct: string | undefined;
    if (fn.stored) {
      if ([...fn.stored.funcOids].some((oid) => currentSettingOids.has(oid))) direct = 'pg_catalog.current_setting()';
      else if ([...fn.stored.relOids].some((oid) => relationNames.get(oid) === 'pg_catalog.pg_settings')) direct = 'pg_catalog.pg_settings';
    } else if (fn.facts) {
      direct = fn.facts.readsSettings ?? (fn.facts.parseError ? `unknown (body not parsed: ${fn.facts.parseError})` : undefined);
    }
    if (direct) add('security_definer', fn.ident, `SECURITY DEFINER reading a setting directly through ${direct}: read it through a pgseal._setting_* helper`);
  }

  // -- rule 4: public_privilege
  for (const a of aclRows) {
    if (a.grantee !== 'PUBLIC') continue;
    add('public_privilege', a.name, `PUBLIC holds ${a.privilege_type}${a.col ? ` (${a.col})` : ''} on ${a.kind.toLowerCase()} ${a.name}`);
  }

  // -- rule 5: role_grants
  if (expected) {
    const existing = new Set(roleRows.map((r) => r.rolname));
    for (const [key, role] of Object.entries(ROLES) as Array<[keyof ExpectedGrants, string]>) {
      if (!existing.has(role)) {
        add('role_grants', role, `role ${role} does not exist`);
        continue;
      }
      const held = new Set(
        aclRows
          .filter((a) => a.grantee === role)
          .map((a) => `${a.privilege_type} ${a.col ? `(${a.col}) ` : ''}${a.kind} ${a.name}${a.is_grantable ? ' WITH GRANT OPTION' : ''}`),
      );
      const wanted = new Set(expected[key].map((s) => s.trim()));
      for (const w of [...wanted].sort()) if (!held.has(w)) add('role_grants', role, `missing: ${w}`);
      for (const h of [...held].sort()) if (!wanted.has(h)) add('role_grants', role, `extra: ${h}`);
    }
  }

  // -- rule 6: parallel_volatility
  for (const fn of pgseal) {
    const callees = calleesOf(fn);
    const declared = `${VOLATILITY[fn.provolatile] ?? fn.provolatile} ${PARALLEL[fn.proparallel] ?? fn.proparallel}`;
    let modifies = fn.stored?.modifies ?? fn.facts?.modifies ?? (fn.facts?.dynamic ? 'a dynamic EXECUTE' : undefined);
    let modifyingCallee: string | undefined;
    if (!modifies) {
      const writer = callees.find((c) => c.provolatile === 'v' && c.proparallel === 'u');
      if (writer) {
        modifies = `calls ${writer.ident}, VOLATILE PARALLEL UNSAFE`;
        modifyingCallee = writer.oid;
      }
    }
    if (modifies && (fn.provolatile !== 'v' || fn.proparallel === 's')) {
      add('parallel_volatility', fn.ident, `modifies data (${modifies}) but is ${declared}: declare it VOLATILE PARALLEL UNSAFE`);
    } else modifyingCallee = undefined;
    if (fn.proparallel === 's' && fn.facts?.subtransaction) {
      add('parallel_volatility', fn.ident, 'PARALLEL SAFE but has an EXCEPTION block (a subtransaction, refused in parallel mode): declare it PARALLEL UNSAFE');
    }
    if (fn.proparallel === 's') {
      const seen = new Set<string>();
      for (const callee of callees) {
        if (callee.oid === modifyingCallee || seen.has(callee.oid)) continue;
        seen.add(callee.oid);
        if (callee.proparallel === 'u' || callee.proparallel === 'r') {
          add('parallel_volatility', fn.ident, `PARALLEL SAFE but calls ${callee.ident}, ${PARALLEL[callee.proparallel]}`);
        }
      }
    }
    if (fn.stored && fn.provolatile !== 'v') {
      const seen = new Set<string>();
      for (const callee of callees) {
        if (seen.has(callee.oid)) continue;
        seen.add(callee.oid);
        if (callee.provolatile === 'v') add('parallel_volatility', fn.ident, `${VOLATILITY[fn.provolatile]} but calls ${callee.ident}, VOLATILE: it is never inlined and lies about itself`);
      }
    }
  }

  // -- rule 7: sql_body_binding
  for (const fn of pgseal) {
    if (!fn.stored) continue;
    const seen = new Set<string>();
    for (const d of depends.get(fn.oid) ?? []) {
      if (d.refschema === 'pg_catalog' || d.refschema === SCHEMA || d.pgcrypto) continue;
      const what = `${d.refclass === 'pg_proc' ? 'function' : d.refclass === 'pg_operator' ? 'operator' : d.refclass === 'pg_type' ? 'type' : 'relation'} ${d.refname}`;
      if (seen.has(what)) continue;
      seen.add(what);
      add('sql_body_binding', fn.ident, `references ${what}, outside pg_catalog and pgseal and not pgcrypto's`);
    }
  }

  // by rule, then object; each object's problems in the order found
  const order = RULES.reduce<Record<string, number>>((acc, r, i) => ({ ...acc, [r]: i }), {});
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => order[a.p.rule]! - order[b.p.rule]! || (a.p.object < b.p.object ? -1 : a.p.object > b.p.object ? 1 : 0) || a.i - b.i)
    .map(({ p }) => p);
}

/** Names of relations referenced only by stored bodies (catalog relations are pinned: pg_depend omits them). */
async function relationNamesOf(sql: Sql, oids: string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (oids.length === 0) return out;
  const rows = await sql<{ oid: string; name: string }[]>`
    select c.oid::int8::text as oid, pg_catalog.format('%I.%I', n.nspname, c.relname) as name
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where c.oid = any(${[...new Set(oids)]}::oid[])`;
  for (const r of rows) out.set(r.oid, r.name);
  return out;
}
