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

/** Associated data binding a wrapped key to its row. */
export function wrapContext(scope: string, purpose: string, version: number): Buffer {
  return Buffer.from(`pgseal/v1/dek\0${scope}\0${purpose}\0${version}`, 'utf8');
}
