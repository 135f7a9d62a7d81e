// The doctor's privileges checks: who may read or change the key registry or run a key
// operation beyond the admin set (docs/privileges.md), and whether PUBLIC was granted
// anything in schema pgseal. Read from the catalogs only.

import { schemaAcl } from '../catalog/lint.js';
import { quoteIdent } from '../statement/sql.js';
import { readableOnly, type Check, type CheckResult } from './check.js';

const result = (name: string, r: Omit<CheckResult, 'id' | 'area'>): CheckResult[] => [{ id: `privileges.${name}`, area: 'privileges', ...r }];

interface KeyPrivilegeRow {
  role: string;
  object: string;
  kind: 'table' | 'function';
  privilege: string;
  admin: boolean;
  /** granted to the role itself (else through a role it is a member of, such as pg_read_all_data) */
  direct: boolean;
}

// What may touch the key registry and the key operations: the admin set may read and write
// pgseal.keys (never delete from it) and run its functions; mark_compromised is the owner's.
const keyPrivileges: Check = async (ctx) => {
  const rows = await ctx.sql<KeyPrivilegeRow[]>`
    with owner as (select s.nspowner as oid from pg_catalog.pg_namespace s where s.nspname = 'pgseal'),
    roles as (
      select 0::pg_catalog.oid as oid, 'PUBLIC'::pg_catalog.text as name
      union all
      select r.oid, r.rolname::pg_catalog.text from pg_catalog.pg_roles r, owner o
       where not r.rolsuper and r.oid <> o.oid and not pg_catalog.pg_has_role(r.oid, o.oid, 'MEMBER')
         and r.rolname !~ '^pg_'),
    admin as (
      select r.oid from roles r
       where r.oid <> 0 and exists (select 1 from pgseal.api_grants g where g.api = 'admin' and pg_catalog.pg_has_role(r.oid, g.role_oid, 'USAGE'))),
    wanted (kind, object, privilege, admin_ok) as (values
      ('column', 'pgseal.keys', 'SELECT', true), ('column', 'pgseal.keys', 'INSERT', true), ('column', 'pgseal.keys', 'UPDATE', true),
      ('table', 'pgseal.keys', 'DELETE', false), ('table', 'pgseal.keys', 'TRUNCATE', false), ('table', 'pgseal.keys', 'TRIGGER', false),
      ('function', 'pgseal.add_key(integer, text, text, bytea, text, text)', 'EXECUTE', true),
      ('function', 'pgseal.retire_key(integer, boolean)', 'EXECUTE', true),
      ('function', 'pgseal.destroy_scope_keys(text)', 'EXECUTE', true),
      ('function', 'pgseal.mark_compromised(text)', 'EXECUTE', false)),
    objects as (
      select w.*, case when w.kind = 'function' then pg_catalog.to_regprocedure(w.object)::pg_catalog.oid
                       else pg_catalog.to_regclass(w.object)::pg_catalog.oid end as obj
        from wanted w),
    found as (
      select r.oid, r.name, w.kind, w.object, w.obj, w.privilege, a.oid is not null as admin
        from roles r cross join objects w left join admin a on a.oid = r.oid
       where w.obj is not null
         and not (w.admin_ok and a.oid is not null)
         and case w.kind
               when 'column' then case when r.oid = 0 then pg_catalog.has_any_column_privilege('public', w.obj, w.privilege)
                                       else pg_catalog.has_any_column_privilege(r.oid, w.obj, w.privilege) end
               when 'table' then case when r.oid = 0 then pg_catalog.has_table_privilege('public', w.obj, w.privilege)
                                      else pg_catalog.has_table_privilege(r.oid, w.obj, w.privilege) end
               else case when r.oid = 0 then pg_catalog.has_function_privilege('public', w.obj, w.privilege)
                         else pg_catalog.has_function_privilege(r.oid, w.obj, w.privilege) end
             end)
    -- a role that holds a privilege only through PUBLIC or another role listed here is not listed again
    select f.name as role, f.object, case when f.kind = 'function' then 'function' else 'table' end as kind, f.privilege, f.admin,
           exists (select 1 from pg_catalog.aclexplode(case when f.kind = 'function'
                                 then (select coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner)) from pg_catalog.pg_proc p where p.oid = f.obj)
                                 else (select c.relacl from pg_catalog.pg_class c where c.oid = f.obj) end) x
                    where x.grantee = f.oid and x.privilege_type = f.privilege)
           or exists (select 1 from pg_catalog.pg_attribute t, pg_catalog.aclexplode(t.attacl) x
                       where f.kind = 'column' and t.attrelid = f.obj and x.grantee = f.oid and x.privilege_type = f.privilege) as direct
      from found f
     where not exists (select 1 from found g
                        where g.oid <> f.oid and g.object = f.object and g.privilege = f.privilege
                          and case when f.oid = 0 then false when g.oid = 0 then true else pg_catalog.pg_has_role(f.oid, g.oid, 'USAGE') end)
     order by f.name = 'PUBLIC' desc, f.name, f.object, f.privilege`;
  const details = { found: rows.map((r) => ({ role: r.role, privilege: r.privilege, object: r.object, admin_set: r.admin, direct: r.direct })) };
  if (rows.length === 0) {
    return result('keys', { status: 'ok', summary: 'only the owner and the admin set may read or change pgseal.keys or run key operations', details });
  }
  const what = (r: KeyPrivilegeRow) => `${r.privilege} ${r.kind === 'function' ? r.object : `on ${r.object}`}`;
  const byRole = new Map<string, KeyPrivilegeRow[]>();
  for (const r of rows) byRole.set(r.role, [...(byRole.get(r.role) ?? []), r]);
  const revoke = (r: KeyPrivilegeRow) => r.direct
    ? `REVOKE ${r.privilege} ON ${r.kind === 'function' ? 'FUNCTION' : 'TABLE'} ${r.object} FROM ${r.role === 'PUBLIC' ? 'PUBLIC' : quoteIdent(r.role)}`
    : `role ${r.role} holds ${what(r)} through a role it is a member of (pg_read_all_data, pg_write_all_data or a role granted it): revoke that membership`;
  return result('keys', {
    status: 'fail',
    summary: `beyond the admin set: ${[...byRole].map(([role, list]) => `${role === 'PUBLIC' ? 'PUBLIC' : `role ${role}`} holds ${list.map(what).join(', ')}`).join('; ')}`,
    fix: `as the owner: ${[...new Set(rows.map(revoke))].join('; ')}; `
      + 'a key administrator gets the admin set with pgseal grant --admin ROLE, an application the app set with pgseal grant --app ROLE (it reads the wrapped keys through pgseal.usable_keys)',
    details,
  });
};

interface AclRow {
  kind: 'schema' | 'function' | 'table' | 'sequence' | 'column' | 'default privileges';
  name: string;
  /** the column, for a column privilege */
  col: string | null;
  privilege: string;
}

const publicPrivileges: Check = async (ctx) => {
  // the lint's reading of the schema's privileges (a NULL acl is the default one), and the
  // default privileges for objects created later, which only the doctor asks about
  const granted = (await schemaAcl(ctx.sql)).filter((a) => a.grantee === 'PUBLIC')
    .map((a): AclRow => ({ kind: a.col ? 'column' : (a.kind.toLowerCase() as AclRow['kind']), name: a.name, col: a.col, privilege: a.privilege_type }));
  const defaults = await ctx.sql<AclRow[]>`
    select 'default privileges' as kind, pg_catalog.format('%s created in schema pgseal',
             case d.defaclobjtype when 'r' then 'tables' when 'S' then 'sequences' when 'f' then 'functions' when 'T' then 'types' else 'schemas' end) as name,
           null::pg_catalog.text as col, x.privilege_type as privilege
      from pg_catalog.pg_default_acl d join pg_catalog.pg_namespace n on n.oid = d.defaclnamespace, pg_catalog.aclexplode(d.defaclacl) x
     where n.nspname = 'pgseal' and x.grantee = 0`;
  const seen = new Set<string>();
  const rows = [...granted, ...defaults]
    .filter((r) => {
      const key = JSON.stringify([r.kind, r.name, r.col, r.privilege]);
      return !seen.has(key) && seen.add(key);
    })
    .sort((a, b) => a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name) || (a.col ?? '').localeCompare(b.col ?? '') || a.privilege.localeCompare(b.privilege));
  const details = { found: rows };
  if (rows.length === 0) return result('public', { status: 'ok', summary: 'PUBLIC holds nothing in schema pgseal', details });
  const revoke = (r: AclRow) => r.kind === 'column' ? `REVOKE ${r.privilege} (${r.col}) ON TABLE ${r.name} FROM PUBLIC`
    : r.kind === 'default privileges' ? `ALTER DEFAULT PRIVILEGES IN SCHEMA pgseal REVOKE ${r.privilege} ON ${r.name.split(' ')[0]!.toUpperCase()} FROM PUBLIC`
    : `REVOKE ${r.privilege} ON ${r.kind.toUpperCase()} ${r.name} FROM PUBLIC`;
  const shown = rows.slice(0, 10).map((r) => `${r.privilege} on ${r.kind} ${r.name}${r.col ? ` (${r.col})` : ''}`);
  return result('public', {
    status: 'fail',
    summary: `PUBLIC holds ${rows.length} privilege${rows.length === 1 ? '' : 's'} in schema pgseal: ${shown.join(', ')}${rows.length > 10 ? ` and ${rows.length - 10} more` : ''}`,
    fix: `as the owner: ${rows.map(revoke).join('; ')}; grant roles what they need with pgseal grant --app ROLE / --admin ROLE`,
    details,
  });
};

export const privilegesChecks: Array<{ name: string; check: Check }> = [
  { name: 'keys', check: readableOnly('privileges', 'keys', keyPrivileges) },
  { name: 'public', check: readableOnly('privileges', 'public', publicPrivileges) },
];
