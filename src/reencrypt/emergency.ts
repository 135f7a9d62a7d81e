// Emergency rotation, for a suspected key compromise: a new active version, the old ones
// marked compromised (the database then refuses any value written with them, even by a
// process whose cached keys predate the rotation), the reason recorded, and re-encryption
// of every protected column of the scope started at once.

import type { Sql } from 'postgres';
import { defaultActor, recordEvent } from '../audit/record.js';
import { ErrorCodes, PgsealError, withPgsealErrors as guarded } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import type { MasterKeyProvider } from '../keys/master-key.js';
import { DEFAULT_SCOPE, rotateKey } from '../keys/registry.js';
import { reencrypt, type ReencryptOptions, type ReencryptResult } from './run.js';

export interface EmergencyRotation {
  version: number;
  previous: number | null;
  /** versions marked compromised now */
  compromised: number[];
  reencrypt: ReencryptResult;
}

export async function emergencyRotate(
  sql: Sql, provider: MasterKeyProvider, keyring: Keyring, options: Omit<ReencryptOptions, 'table' | 'column' | 'emergency'> & { reason: string },
): Promise<EmergencyRotation> {
  if (!options.reason?.trim()) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'an emergency rotation needs a reason', { hint: 'pass --reason "what happened" (it goes to the audit log)' });
  }
  const scope = options.scope ?? DEFAULT_SCOPE;
  const actor = options.actor ?? defaultActor();
  const { version, previous } = await rotateKey(sql, provider, scope, { actor, reason: options.reason });
  const compromised = await guarded(() =>
    sql.begin(async (tx) => {
      const [row] = await tx<{ v: number[] }[]>`select pgseal.mark_compromised(${scope}) as v`;
      await recordEvent(tx, keyring, { operation: 'key.compromise', success: true, actor, reason: options.reason, scope, details: { versions: row!.v, replaced_by: version } });
      return row!.v;
    }),
  );
  keyring.invalidate();
  const result = await reencrypt(sql, keyring, { ...options, scope, actor, emergency: true });
  return { version, previous, compromised, reencrypt: result };
}
