// Client-side crypto: protected values sealed and opened in Node with the keyring's keys
// (src/crypto/envelope.ts, byte for byte what SQL writes), so that no data key, index key,
// plaintext or searched value reaches the database. The typed helpers in client mode and the
// Drizzle and Kysely adapters all go through ClientCrypto; the context rule, the value
// encodings and the blind index are the column model's (src/columns/), as in SQL.

import type { Sql } from 'postgres';
import { blindIndex, blindIndexOfNormalized } from '../columns/blind-index.js';
import { columnContext, contextOf } from '../columns/context.js';
import type { ProtectedColumn } from '../columns/model.js';
import { normalize } from '../columns/normalize.js';
import { decodeValue, encodeValue } from '../columns/values.js';
import { keyVersionOf, open, seal } from '../crypto/envelope.js';
import { ErrorCodes, PgsealError, withPgsealErrors } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';
import { decryptFailed, opened, openedAll, sealed } from '../metrics.js';

/** A row's scope and primary key as the database prints them (`value::text`): what its values' contexts are built from. */
export interface RowTexts {
  scope?: string | undefined;
  key?: string | undefined;
}

/** Scopes a read may open: undefined for every loaded scope. */
export type ReadScopes = ReadonlySet<string> | undefined;

const NOT_LOADED = (version: number) =>
  new PgsealError(ErrorCodes.UNKNOWN_KEY_VERSION, `key version ${version} is not among this process's keys`, {
    sqlstate: 'PS002',
    hint: 'If pgseal.keys lists this version as active or decrypt-only, reload the keyring (a rotation happened elsewhere) or include its scope; if it is not listed at all, the value is damaged.',
  });

const OUT_OF_SCOPE = (version: number) =>
  new PgsealError(ErrorCodes.UNKNOWN_KEY_VERSION, `key version ${version} belongs to a scope this read was not given`, {
    sqlstate: 'PS002',
    hint: 'pass the scope (tenant) the row belongs to; a value copied from another tenant\'s row does not open under this one',
  });

export interface ClientCryptoOptions {
  /**
   * How often (ms) a client-side read also asks the database for its revocation generation
   * (pgseal.key_generation()), so that keys retired, destroyed or compromised elsewhere stop
   * opening values here within that time: 0 on every read. Default 1000.
   */
  revocationCheckMs?: number | undefined;
}

export class ClientCrypto {
  readonly #checkEvery: number;
  #nextCheck = 0;

  constructor(readonly keyring: Keyring, options: ClientCryptoOptions = {}) {
    this.#checkEvery = options.revocationCheckMs ?? 1000;
  }

  /** Whether this read should carry the revocation check (at most once per revocationCheckMs, process-wide for this keyring). */
  revocationCheckDue(): boolean {
    const now = Date.now();
    if (now < this.#nextCheck) return false;
    this.#nextCheck = now + this.#checkEvery;
    return true;
  }

  /** A read that carried the check found none of its rows to read it from: the next one carries it. */
  revocationCheckMissed(): void {
    this.#nextCheck = 0;
  }

  /** The database's generation as a read returned it: keys revoked since this process loaded its own are dropped before anything opens. */
  async revocationSeen(generation: unknown): Promise<void> {
    if (generation !== undefined && generation !== null && Number(generation) > this.keyring.loadedGeneration) await this.keyring.refresh();
  }

  /** Loads the keys if they are not fresh; every synchronous call below needs it first. */
  ready(): Promise<void> {
    return this.keyring.ready();
  }

  /** The scope the column's value of this row is sealed under. */
  keyScope(c: ProtectedColumn, row: RowTexts): string {
    if (!c.scopeColumn) return c.scope ?? 'default';
    if (row.scope === undefined) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${columnContext(c)} is keyed by ${c.scopeColumn}: give its value`, { hint: `include ${c.scopeColumn} in the values written` });
    return row.scope;
  }

  /** One value sealed with its scope's active key under its context (synchronous: ready() first). */
  seal(c: ProtectedColumn, value: unknown, row: RowTexts = {}): Buffer {
    const started = performance.now(); // metrics: timed per value (a write's round trip dwarfs it)
    const scope = this.keyScope(c, row);
    const key = this.keyring.loadedActiveKey(scope);
    if (!key) throw new PgsealError(ErrorCodes.NO_ACTIVE_KEY, `no active key for scope ${scope}`, { sqlstate: 'PS005', hint: `create it with \`pgseal keys init --scope ${scope}\`` });
    const plaintext = encodeValue(c, value);
    try {
      return sealed(c, seal(plaintext, contextOf(c, row), key), started);
    } finally {
      plaintext.fill(0);
    }
  }

  /** The blind index a write stores, under the scope's active index key (synchronous). */
  index(c: ProtectedColumn, value: unknown, row: RowTexts = {}): Buffer {
    const scope = this.keyScope(c, row);
    const key = this.keyring.loadedIndexKey(scope);
    if (!key) throw new PgsealError(ErrorCodes.NO_INDEX_KEY, `no blind-index key for scope ${scope}`, { hint: `run \`pgseal keys init --scope ${scope}\`` });
    return blindIndex(key, String(value), c.normalizer, columnContext(c), c.blindIndexBytes);
  }

  /**
   * The indexes an equality or IN lookup matches: each value under every index key of the
   * scope (rows not yet re-indexed under the active key still match), and the normalised
   * values the rows found must really hold (the index is truncated).
   */
  lookup(c: ProtectedColumn, values: readonly unknown[], scope: string): { indexes: Buffer[]; targets: Set<string> } {
    const keys = this.keyring.loadedIndexKeys(scope);
    if (keys.length === 0) throw new PgsealError(ErrorCodes.NO_INDEX_KEY, `no blind-index key for scope ${scope}`, { hint: `run \`pgseal keys init --scope ${scope}\`` });
    const targets = new Set(values.map((v) => normalize(String(v), c.normalizer)));
    const context = columnContext(c);
    const indexes: Buffer[] = [];
    for (const t of targets) for (const k of keys) indexes.push(blindIndexOfNormalized(k, t, context, c.blindIndexBytes));
    return { indexes, targets };
  }

  /** Whether a value read back matches a lookup's targets (drops a truncated-index collision). */
  matches(c: ProtectedColumn, value: unknown, targets: ReadonlySet<string>): boolean {
    return value !== null && value !== undefined && targets.has(normalize(String(value), c.normalizer));
  }

  /**
   * One stored value opened and decoded to the column's type (synchronous). PS002 when its
   * version is not loaded (openAll reloads once) or belongs to a scope the read was not given,
   * PS003 when it does not authenticate under its context, PS004 when it is no envelope.
   */
  open(c: ProtectedColumn, stored: unknown, row: RowTexts = {}, scopes?: ReadScopes): unknown {
    if (stored === null || stored === undefined) return stored;
    if (!Buffer.isBuffer(stored)) throw new PgsealError(ErrorCodes.MALFORMED_ENVELOPE, `${columnContext(c)}: a stored value is not bytea`, { sqlstate: 'PS004', hint: 'the column must be the bytea column pgseal protect created' });
    const version = keyVersionOf(stored);
    const key = version === undefined ? undefined : this.keyring.loadedDataKey(version);
    if (version !== undefined) {
      if (!key) throw NOT_LOADED(version);
      if (scopes && !scopes.has(key.scope)) throw OUT_OF_SCOPE(version);
    }
    const plaintext = open(stored, contextOf(c, row), () => key);
    if (c.valueType === 'bytea') return plaintext;
    try {
      return decodeValue(c, plaintext);
    } finally {
      plaintext.fill(0);
    }
  }

  /**
   * Opens every protected value of some rows in place. A version this process has not
   * loaded (another process rotated) reloads the keyring once; a version still missing
   * then is named as the database would: retired (PS012), destroyed (PS013), else PS002.
   */
  async openAll(sql: Sql, rows: readonly Record<string, unknown>[], columns: readonly ProtectedColumn[], rowTexts: (row: Record<string, unknown>, c: ProtectedColumn) => RowTexts, scopes?: ReadScopes): Promise<void> {
    await this.ready();
    const started = performance.now(); // metrics: timed once per statement, never per value
    let at = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        const opened: unknown[] = new Array(columns.length);
        for (; at < rows.length; at++) {
          const row = rows[at]!;
          // a row changes only once all its values opened: a retry starts it again from its stored values
          for (let i = 0; i < columns.length; i++) opened[i] = this.open(columns[i]!, row[columns[i]!.column], rowTexts(row, columns[i]!), scopes);
          for (let i = 0; i < columns.length; i++) if (columns[i]!.column in row) row[columns[i]!.column] = opened[i];
        }
        return openedAll(columns, rows, started);
      } catch (error) {
        if (!(error instanceof PgsealError) || error.code !== ErrorCodes.UNKNOWN_KEY_VERSION || error.message.includes('scope this read')) throw error;
        if (attempt === 0) {
          // rows before `at` are opened already
          await this.keyring.refresh();
          continue;
        }
        throw await stateError(sql, error);
      }
    }
  }
}

/** pgseal().encrypt: a value sealed with the scope's active key under any context. */
export async function encryptClientSide(keyring: Keyring, plaintext: string | Buffer, context: string, scope = 'default'): Promise<Buffer> {
  const key = await keyring.activeKey(scope);
  if (!key) throw new PgsealError(ErrorCodes.NO_ACTIVE_KEY, `no active key for scope ${scope}`, { hint: 'create one with `pgseal keys init`' });
  const started = performance.now();
  return sealed(undefined, seal(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext, context, key), started);
}

/** pgseal().decrypt: an envelope opened under any context. */
export async function decryptClientSide(keyring: Keyring, envelope: Buffer, context: string): Promise<Buffer> {
  const version = keyVersionOf(envelope);
  const keys = version === undefined ? undefined : await keyring.keysFor(version);
  const started = performance.now();
  try {
    return opened(open(envelope, context, (v) => (v === version ? keys : undefined)), started);
  } catch (error) {
    decryptFailed(error);
    throw error;
  }
}

/** PS012 / PS013 for a version pgseal.keys lists as retired or destroyed (pgseal._key_state, granted to the application's role). */
async function stateError(sql: Sql, error: PgsealError): Promise<PgsealError> {
  const version = Number(/key version (\d+)/.exec(error.message)?.[1]);
  if (!Number.isSafeInteger(version)) return error;
  const [row] = await withPgsealErrors(() => sql<Array<{ state: string | null }>>`select pgseal._key_state(${version}::pg_catalog.int4) as state`);
  if (row?.state === 'retired') {
    return new PgsealError(ErrorCodes.KEY_RETIRED, `key version ${version} is retired`, { sqlstate: 'PS012', hint: 'This value was not re-encrypted before its key version was retired; it can no longer be read.' });
  }
  if (row?.state === 'destroyed') {
    return new PgsealError(ErrorCodes.KEY_DESTROYED, `key version ${version} was destroyed (crypto-shredded)`, { sqlstate: 'PS013', hint: 'The keys of this scope were destroyed on purpose; the value can never be read again.' });
  }
  return error;
}

/**
 * Row texts in Node: a context binds a row's primary key and scope as the database prints
 * them (`'07'` written to an integer key binds `#7`), so a client-side seal must spell them
 * the same way before the value reaches the database. Known here for the types keys and
 * tenants use (integers, text, uuid); another type is refused with the way out.
 */
export type Canonical = (column: string, value: unknown) => string;

const INTEGER = /^[ \t\n\r\f\v]*([+-]?)0*([0-9]+)[ \t\n\r\f\v]*$/;
const UUID_HEX = /^[0-9a-f]{32}$/;

function canonicalOf(type: string, column: string, where: string): (value: unknown) => string {
  switch (type) {
    case 'smallint':
    case 'integer':
    case 'bigint':
      return (value) => {
        if (typeof value === 'bigint') return value.toString();
        if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
        const m = typeof value === 'string' ? INTEGER.exec(value) : null;
        if (!m) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where}.${column} is ${type}: the value given is not an integer (it is not shown)`, { hint: 'pass an integer, a bigint or a string of digits' });
        return (m[1] === '-' && m[2] !== '0' ? '-' : '') + m[2]!.replace(/^0+(?=.)/, '');
      };
    case 'text':
    case 'character varying':
      return (value) => (typeof value === 'string' ? value : String(value));
    case 'uuid':
      return (value) => {
        const hex = String(value).trim().replace(/^\{(.*)\}$/, '$1').replaceAll('-', '').toLowerCase();
        if (!UUID_HEX.test(hex)) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where}.${column} is uuid: the value given is not a uuid (it is not shown)`, { hint: 'pass a uuid such as 0b5e3c1a-6f1e-4a8e-9d7c-2f9a1b3c4d5e' });
        return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
      };
    default:
      return () => {
        throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${where}.${column} is ${type}: client-side crypto binds values to keys and tenants of integer, text, varchar or uuid columns only`, {
          hint: 'use crypto: \'database\' for this table (its contexts are then built in SQL)',
        });
      };
  }
}

const CANONICAL = new WeakMap<Sql, Map<string, Promise<Canonical>>>();

/** How the database spells the given columns' values as text, read from the catalog once per table and client. */
export function canonicalTexts(sql: Sql, schema: string, table: string): Promise<Canonical> {
  let tables = CANONICAL.get(sql);
  if (!tables) CANONICAL.set(sql, (tables = new Map()));
  const name = `${schema}.${table}`;
  let found = tables.get(name);
  if (!found) {
    found = withPgsealErrors(() => sql<Array<{ name: string; type: string }>>`
      select a.attname::pg_catalog.text as name, pg_catalog.format_type(a.atttypid, null) as type
        from pg_catalog.pg_attribute a
        join pg_catalog.pg_class r on r.oid operator(pg_catalog.=) a.attrelid
        join pg_catalog.pg_namespace n on n.oid operator(pg_catalog.=) r.relnamespace
       where n.nspname operator(pg_catalog.=) ${schema} and r.relname operator(pg_catalog.=) ${table}
         and a.attnum operator(pg_catalog.>) 0 and not a.attisdropped`).then((rows) => {
      const rules = new Map(rows.map((r) => [r.name, canonicalOf(r.type, r.name, name)]));
      return (column: string, value: unknown) => {
        const rule = rules.get(column);
        if (!rule) throw new PgsealError(ErrorCodes.COLUMN_NOT_FOUND, `${name} has no column ${column}`, { hint: 'check the table definition against the database' });
        return rule(value);
      };
    });
    found.catch(() => tables!.delete(name));
    tables.set(name, found);
  }
  return found;
}
