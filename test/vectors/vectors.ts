// Loading the shared envelope vectors (envelope-v1.json), for the Node and SQL tests.

import { readFileSync } from 'node:fs';

export interface VectorCase {
  name: string;
  context: string;
  iv: string;
  plaintext_utf8?: string;
  plaintext_hex?: string;
  envelope: string;
}

export interface VectorFile {
  format: number;
  note: string;
  dek: string;
  version: number;
  enc_key: string;
  mac_key: string;
  cases: VectorCase[];
  large: {
    name: string;
    context: string;
    iv: string;
    plaintext_generator: string;
    plaintext_sha256: string;
    envelope_bytes: number;
    envelope_sha256: string;
  };
}

export const MEGABYTE = 1024 * 1024;

export function megabytePlaintext(): Buffer {
  const pattern = Buffer.from('pgseal-');
  const out = Buffer.alloc(MEGABYTE);
  for (let i = 0; i < MEGABYTE; i++) out[i] = pattern[i % pattern.length]!;
  return out;
}

export function loadVectors(): VectorFile {
  return JSON.parse(readFileSync(new URL('./envelope-v1.json', import.meta.url), 'utf8')) as VectorFile;
}

export function plaintextOf(c: VectorCase): Buffer {
  return c.plaintext_utf8 !== undefined ? Buffer.from(c.plaintext_utf8, 'utf8') : Buffer.from(c.plaintext_hex!, 'hex');
}
