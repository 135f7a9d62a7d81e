// Key material for SQL tests that bypass the keyring: the vector key and random ones.

import { randomBytes } from 'node:crypto';
import type { TransactionSql } from 'postgres';
import { deriveEnvelopeKeys } from '../../src/crypto/derive.js';
import { encodeKeyMaterial, encodeKeyPayload, type PayloadEntry } from '../../src/crypto/wire.js';
import { loadVectors } from '../vectors/vectors.js';

const vectors = loadVectors();

export const vectorKey: PayloadEntry = {
  version: vectors.version,
  scope: 'default',
  active: true,
  encKey: Buffer.from(vectors.enc_key, 'hex'),
  macKey: Buffer.from(vectors.mac_key, 'hex'),
};

export function randomKey(version: number, scope = 'default', active = true): PayloadEntry {
  return { version, scope, active, ...deriveEnvelopeKeys(randomBytes(32)) };
}

/** pgseal.seal's key_material argument (crypto/wire.ts). */
export const keyMaterial = (k: PayloadEntry): Buffer => encodeKeyMaterial(k);

export async function useKeys(tx: TransactionSql, ...entries: PayloadEntry[]): Promise<void> {
  await tx`select pgseal.use_keys(${encodeKeyPayload(entries)})`;
}
