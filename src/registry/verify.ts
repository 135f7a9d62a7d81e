// A table definition (the typed helpers', the ORM adapters') against pgseal.columns: every
// difference listed in one PGSEAL_REGISTRY_MISMATCH, so a definition that drifted from the
// database fails at start-up rather than as values that do not open.

import { SPEC_FIELDS, type ProtectedColumn } from '../columns/model.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import type { TableInfo } from './types.js';

/**
 * `encrypted`: the definition's encrypted columns by name; `columns`: all its column names
 * (a column protected in the database must be encrypted in it); `info`: the registry's entry.
 */
export function verifyDefinition(
  qualified: string, encrypted: ReadonlyMap<string, ProtectedColumn>, primaryKey: string, info: Pick<TableInfo, 'primaryKey' | 'protected'> | undefined,
): void {
  const problems: string[] = [];
  if (!info) problems.push('no column of it is protected (pgseal protect)');
  for (const [name, c] of encrypted) {
    const r = info?.protected.get(name);
    if (!r) {
      if (info) problems.push(`${name} is encrypted in the definition but not registered (pgseal protect)`);
      continue;
    }
    // the blind index's size matters only where there is one
    for (const k of SPEC_FIELDS) {
      if (k === 'blindIndexBytes' && !c.searchable) continue;
      if (r[k] !== c[k]) problems.push(`${name}.${k}: definition ${JSON.stringify(c[k])}, database ${JSON.stringify(r[k])}`);
    }
  }
  for (const name of info?.protected.keys() ?? []) if (!encrypted.has(name)) problems.push(`${name} is protected in the database but not encrypted in the definition`);
  if (info && (info.primaryKey.length !== 1 || info.primaryKey[0] !== primaryKey)) problems.push(`the primary key is (${info.primaryKey.join(', ')}) in the database, ${primaryKey} in the definition`);
  if (problems.length > 0) {
    throw new PgsealError(ErrorCodes.REGISTRY_MISMATCH, `${qualified} differs from pgseal.columns: ${problems.join('; ')}`, { hint: 'align the table definition with `pgseal columns list`' });
  }
}
