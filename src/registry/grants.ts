// Granting pgseal's privilege sets (sql/99_privileges.sql, docs/privileges.md) to roles you
// name: 'app' for the application's role, 'admin' for whoever runs the key commands.

import type { Sql } from 'postgres';
import { withPgsealErrors as guard } from '../errors.js';

export type ApiSet = 'app' | 'admin';

/** Gives the role exactly this set (what it held on pgseal's objects before is revoked); later migrations grant it what they add. */
export function grantApi(sql: Sql, role: string, set: ApiSet): Promise<void> {
  return guard(async () => {
    await sql`select pgseal.grant_api(${role}::name, ${set})`;
  });
}

/** Takes the set away again. */
export function revokeApi(sql: Sql, role: string): Promise<void> {
  return guard(async () => {
    await sql`select pgseal.revoke_api(${role}::name)`;
  });
}

/** The roles given a set, as recorded in pgseal.api_grants. */
export function listApiGrants(sql: Sql): Promise<Array<{ role: string; set: ApiSet; grantedAt: Date; grantedBy: string }>> {
  return guard(() => sql<Array<{ role: string; set: ApiSet; grantedAt: Date; grantedBy: string }>>`
    select role_name as role, api as set, granted_at as "grantedAt", granted_by as "grantedBy" from pgseal.api_grants order by role_name`);
}
