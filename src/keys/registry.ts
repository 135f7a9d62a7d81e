// Key lifecycle in pgseal.keys: create the first version, rotate, list. Each change is one
// transaction, and the master key is proven to open the current keys before anything is
// written, so a wrong master key changes nothing.

import type { Sql } from 'postgres';
import { recordEvent, withLogKeyset, type Attribution } from '../audit/record.js';
import { ErrorCodes, PgsealError, withPgsealErrors as guarded } from '../errors.js';
import { fingerprint } from '../crypto/derive.js';
import { masterLogKeys, rowsThatDoNotOpen, usableKeyRows, type KeyState } from './unwrap.js';
import { withWrappingKey, type MasterKeyProvider } from './master-key.js';

export const DEFAULT_SCOPE = 'default';
const SCOPE_FORMAT = /^[a-z0-9_-]{1,63}$/;

export interface KeyInfo {
  version: number;
  scope: string;
  purpose: 'data' | 'index' | 'log';
  state: KeyState;
  kek_ref: string;
  fingerprint: string;
  created_at: Date;
  created_by: string;
  deactivated_at: Date | null;
  retired_at: Date | null;
  destroyed_at: Date | null;
}

function checkScope(scope: string): void {
  if (!SCOPE_FORMAT.test(scope)) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `invalid scope name ${JSON.stringify(scope)}`, {
      hint: 'a scope is 1 to 63 characters: a-z, 0-9, _ and -',
    });
  }
}

/** Proves the master key opens every usable key (so a rotation cannot mix master keys). */
async function proveMasterKey(sql: Sql, provider: MasterKeyProvider, scope?: string): Promise<void> {
  const [failed] = await rowsThatDoNotOpen(provider, await usableKeyRows(sql, { scope }));
  if (failed) throw failed.error;
}

type Purpose = 'data' | 'index' | 'log';

async function addKey(
  sql: Sql,
  provider: MasterKeyProvider,
  scope: string,
  expectExisting: boolean,
  purpose: Purpose,
  by: Attribution,
): Promise<{ version: number; previous: number | null }> {
  checkScope(scope);
  await proveMasterKey(sql, provider);
  return guarded(() =>
    sql.begin(async (tx) => {
      // Serialise key changes for this scope with pgseal.add_key's own lock, taken early.
      await tx`select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgseal.keys'), pg_catalog.hashtext(${scope + '/' + purpose}))`;
      const [existing] = await tx<{ n: number }[]>`select count(*)::int as n from pgseal.keys where scope = ${scope} and purpose = ${purpose} and state = 'active'`;
      if (!expectExisting && existing!.n > 0) {
        throw new PgsealError(ErrorCodes.ALREADY_INITIALISED, `scope ${scope} already has an active key`, {
          hint: 'use `pgseal keys rotate` to make a new version',
        });
      }
      if (expectExisting && existing!.n === 0) {
        throw new PgsealError(ErrorCodes.NOT_INITIALISED, `scope ${scope} has no active key to rotate`, {
          hint: `create the first version with \`pgseal keys init${scope === DEFAULT_SCOPE ? '' : ` --scope ${scope}`}\``,
        });
      }
      const [next] = await tx<{ version: number; database: string }[]>`
        select pg_catalog.nextval(pg_catalog.pg_get_serial_sequence('pgseal.keys', 'version'))::int as version,
               pgseal.installation_id()::pg_catalog.text as database`;
      const version = next!.version;
      // With scope keys, a scope's first key creates its key file; a rotation creates one only
      // for a scope none of whose versions was ever wrapped by one (a lost file is an error).
      const [scoped] = !expectExisting ? [{ n: 0 }] : await tx<{ n: number }[]>`
        select count(*)::int as n from pgseal.keys where scope = ${scope} and purpose <> 'log' and kek_ref like 'scope:%'`;
      const made = await withWrappingKey(provider, scope, purpose, { create: scoped!.n === 0 }, async (kek) => ({
        dek: await kek.generateDataKey({ scope, purpose, version, database: next!.database }), kekRef: kek.ref,
      }));
      const { dek, kekRef } = made;
      try {
        const [row] = await tx<{ previous: number | null }[]>`
          select pgseal.add_key(${version}, ${scope}, ${purpose}, ${dek.wrapped}, ${kekRef}, ${fingerprint(dek.plaintext)}) as previous`;
        const logKeys = masterLogKeys(tx as unknown as Sql, provider);
        if (purpose === 'log' && !expectExisting) {
          // the first log key starts both logs' hash chains, before anything is logged
          await withLogKeyset(logKeys, (keyset) => tx`select pgseal.init_log_chains(${keyset}::bytea)`);
        }
        await recordEvent(tx, logKeys, {
          operation: expectExisting ? 'key.rotate' : 'key.create', success: true, actor: by.actor, reason: by.reason, scope, version,
          details: { purpose, previous: row!.previous, master_key: provider.ref, ...(kekRef !== provider.ref ? { wrapped_by: kekRef } : {}) },
        });
        return { version, previous: row!.previous };
      } finally {
        dek.plaintext.fill(0);
      }
    }),
  );
}

/**
 * Creates the first active data key of a scope, and its blind-index key (a separate key
 * family, so rotating data keys never forces blind indexes to be recomputed).
 */
export async function initKeys(
  sql: Sql, provider: MasterKeyProvider, scope = DEFAULT_SCOPE, by: Attribution = {},
): Promise<{ version: number | null; indexVersion: number | null; logVersion: number | null }> {
  checkScope(scope);
  const active = async (purpose: Purpose, of = scope) =>
    (await guarded(() => sql<{ n: number }[]>`select count(*)::int as n from pgseal.keys where scope = ${of} and purpose = ${purpose} and state = 'active'`))[0]!.n > 0;
  const [hasData, hasIndex, hasLog] = [await active('data'), await active('index'), await active('log', DEFAULT_SCOPE)];
  // one log key for the database (scope default), first: every later event is signed with it
  const logVersion = hasLog ? null : (await addKey(sql, provider, DEFAULT_SCOPE, false, 'log', by)).version;
  if (hasData && hasIndex) {
    if (logVersion !== null) return { version: null, indexVersion: null, logVersion };
    throw new PgsealError(ErrorCodes.ALREADY_INITIALISED, `scope ${scope} already has an active key`, { hint: 'use `pgseal keys rotate` to make a new version' });
  }
  // a scope created before blind-index keys existed gets just its index key
  const version = hasData ? null : (await addKey(sql, provider, scope, false, 'data', by)).version;
  const indexVersion = hasIndex ? null : (await addKey(sql, provider, scope, false, 'index', by)).version;
  return { version, indexVersion, logVersion };
}

/**
 * A new active version for the scope; the previous one becomes decrypt-only (its values
 * stay readable until `reencrypt` moves them). `purpose: 'index'` rotates the scope's
 * blind-index key instead.
 */
export function rotateKey(
  sql: Sql, provider: MasterKeyProvider, scope = DEFAULT_SCOPE, by: Attribution & { purpose?: Purpose } = {},
): Promise<{ version: number; previous: number | null }> {
  return addKey(sql, provider, scope, true, by.purpose ?? 'data', by);
}

export function listKeys(sql: Sql): Promise<KeyInfo[]> {
  return guarded(() => sql<KeyInfo[]>`
    select version, scope, purpose, state, kek_ref, fingerprint, created_at, created_by,
           deactivated_at, retired_at, destroyed_at
      from pgseal.keys
     order by scope, purpose, version`);
}
