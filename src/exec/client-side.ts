// Client-side crypto with the keyring's keys: the envelope built and opened in Node
// (src/crypto/envelope.ts), byte for byte what SQL writes, so no key reaches the database.

import { keyVersionOf, open, seal } from '../crypto/envelope.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import type { Keyring } from '../keys/keyring.js';

export async function encryptClientSide(keyring: Keyring, plaintext: string | Buffer, context: string, scope = 'default'): Promise<Buffer> {
  const key = await keyring.activeKey(scope);
  if (!key) throw new PgsealError(ErrorCodes.NO_ACTIVE_KEY, `no active key for scope ${scope}`, { hint: 'create one with `pgseal keys init`' });
  return seal(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext, context, key);
}

export async function decryptClientSide(keyring: Keyring, envelope: Buffer, context: string): Promise<Buffer> {
  const version = keyVersionOf(envelope);
  const keys = version === undefined ? undefined : await keyring.keysFor(version);
  return open(envelope, context, (v) => (v === version ? keys : undefined));
}
