// The byte layouts of keys on their way to the database (docs/format.md): the payload of
// pgseal.use_keys, the key material and keyset arguments of the *_with functions, and the
// log keyset of the log writers. Written here only; the keyring and the tests use these,
// and the SQL side reads them in sql/30_keyring.sql, sql/60_search.sql and
// sql/97_log_chain.sql. Every function returns a fresh buffer the caller zeroes.

import type { VersionedKeys } from './envelope.js';

/** version u32 BE | encryption key (32) | MAC key (32): one data key, for writes (key_material) and in a keyset */
export const KEY_MATERIAL_BYTES = 4 + 32 + 32;
/** version u32 BE | log key (32): one entry of a log keyset */
export const LOG_KEY_ENTRY_BYTES = 4 + 32;

export interface PayloadEntry extends VersionedKeys {
  scope: string;
  /** the key new values of this scope are written with */
  active: boolean;
  /** a blind-index key (in encKey) rather than a data key */
  index?: boolean;
}

const PAYLOAD_FIXED_BYTES = 1 + 4 + 1 + 64;

/** The flags byte of a payload entry: bit 0 the active data key, bit 1 the active index key, bit 2 an older index key. */
function entryFlags(key: PayloadEntry): number {
  if (key.index) return key.active ? 2 : 4;
  return key.active ? 1 : 0;
}

/** pgseal.use_keys' argument: entries of flags u8 | version u32 BE | scope length u8 | scope | key material (64). */
export function encodeKeyPayload(entries: readonly PayloadEntry[]): Buffer {
  const out = Buffer.alloc(entries.reduce((n, k) => n + PAYLOAD_FIXED_BYTES + Buffer.byteLength(k.scope), 0));
  let at = 0;
  for (const key of entries) {
    at = out.writeUInt8(entryFlags(key), at);
    at = out.writeUInt32BE(key.version, at);
    at = out.writeUInt8(Buffer.byteLength(key.scope), at);
    at += out.write(key.scope, at, 'utf8');
    at += key.encKey.copy(out, at);
    at += key.macKey.copy(out, at);
  }
  return out;
}

function writeKeyMaterial(key: VersionedKeys, out: Buffer, at: number): void {
  out.writeUInt32BE(key.version, at);
  key.encKey.copy(out, at + 4);
  key.macKey.copy(out, at + 36);
}

/** The key_material argument of encrypt_*_with (and of pgseal.seal). */
export function encodeKeyMaterial(key: VersionedKeys): Buffer {
  const out = Buffer.alloc(KEY_MATERIAL_BYTES);
  writeKeyMaterial(key, out, 0);
  return out;
}

/** The keyset argument of decrypt_*_with and reseal_with: key material entries, in the order given (the active key first). */
export function encodeKeyset(keys: readonly VersionedKeys[]): Buffer {
  const out = Buffer.alloc(keys.length * KEY_MATERIAL_BYTES);
  keys.forEach((k, i) => writeKeyMaterial(k, out, i * KEY_MATERIAL_BYTES));
  return out;
}

/** The log keyset of the log writers: version u32 BE | key (32) entries, the active version first. */
export function encodeLogKeyset(keys: ReadonlyArray<{ version: number; key: Buffer }>): Buffer {
  const out = Buffer.alloc(keys.length * LOG_KEY_ENTRY_BYTES);
  keys.forEach((k, i) => {
    out.writeUInt32BE(k.version, i * LOG_KEY_ENTRY_BYTES);
    k.key.copy(out, i * LOG_KEY_ENTRY_BYTES + 4);
  });
  return out;
}
