// From one data key (DEK) to the keys the envelope uses. The database only ever sees the
// derived encryption and MAC keys, and only for one transaction at a time.

import { createHmac, hkdfSync } from 'node:crypto';

export interface EnvelopeKeys {
  encKey: Buffer;
  macKey: Buffer;
}

const EMPTY = Buffer.alloc(0);

export function deriveEnvelopeKeys(dek: Buffer): EnvelopeKeys {
  return {
    encKey: Buffer.from(hkdfSync('sha256', dek, EMPTY, 'pgseal/v1/enc', 32)),
    macKey: Buffer.from(hkdfSync('sha256', dek, EMPTY, 'pgseal/v1/mac', 32)),
  };
}

/** The blind-index key derived from an index-purpose data key. */
export function deriveIndexKey(dek: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', dek, EMPTY, 'pgseal/v1/index', 32));
}

/** The log key (HMAC of log rows and links) derived from a log-purpose data key. */
export function deriveLogKey(dek: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', dek, EMPTY, 'pgseal/v1/log', 32));
}

/** Stored in pgseal.keys.fingerprint: proves an unwrap gave back the same key. */
export function fingerprint(dek: Buffer): string {
  return createHmac('sha256', dek).update('pgseal/v1/fingerprint').digest('hex').slice(0, 32);
}

/**
 * What a wrapped key is bound to: its row of pgseal.keys (scope, purpose, version) and the
 * database it belongs to (pgseal.installation_id()). Each provider binds it its own way,
 * spelled once below.
 */
export interface WrapContext {
  scope: string;
  purpose: string;
  version: number;
  /** pgseal.installation_id() of the database whose pgseal.keys holds the row */
  database: string;
}

/**
 * The associated data of a local wrap (AES-256-GCM): the row. Not the database: keys
 * wrapped before databases had an id must keep opening, and the local master key is usually
 * one per database already.
 */
export function wrapAad(context: WrapContext): Buffer {
  return Buffer.from(`pgseal/v1/dek\0${context.scope}\0${context.purpose}\0${context.version}`, 'utf8');
}

/** The encryption context of a KMS wrap: the row and the database, checked by KMS on every Decrypt (and visible in CloudTrail: nothing secret). */
export function kmsEncryptionContext(context: WrapContext): Record<string, string> {
  return {
    'pgseal:key': 'v1/dek',
    'pgseal:scope': context.scope,
    'pgseal:purpose': context.purpose,
    'pgseal:version': String(context.version),
    'pgseal:database': context.database,
  };
}
