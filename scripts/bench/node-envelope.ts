// The envelope in Node (src/crypto/envelope.ts) against @47ng/cloak, the AES-GCM string
// format prisma-field-encryption uses, on the same 10,000 short values in the same run.
// Both sides take and give strings: pgseal's seal of the value's UTF-8 bytes and open
// followed by toString(), as client-side crypto calls them (src/exec/client-side.ts);
// cloak's encryptStringSync / decryptStringSync with a parsed key (what
// prisma-field-encryption calls, minus its per-message keychain lookup).
//
// A "naive" node:crypto envelope, a new cipher and HMAC per value (what the envelope did
// before its keys' state was prepared once), is the second reference.
// Needs no database: the context's connection stays unused.

import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { decryptStringSync, encryptStringSync, generateKey, parseKeySync } from '@47ng/cloak';
import { deriveEnvelopeKeys } from '../../src/crypto/derive.js';
import { contextBytes, open, seal, type VersionedKeys } from '../../src/crypto/envelope.js';
import { median, ratio, type BenchContext } from './common.js';

const VALUES = 10_000;
/** passes over the values per run: 50,000 operations of each kind */
const PASSES = 5;
/**
 * A run takes every operation in turn on CHUNK values at a time, not one operation after
 * the other: on a shared 2-core machine the load changes within seconds, and this way each
 * side meets the same load (whole phases one after the other gave open ratios from 0.32 to
 * 0.54 on the same code here).
 */
const CHUNK = 500;
const CONTEXT = 'public.customers.email';

/** The envelope built straight from node:crypto, every object made per value (the reference). */
function naive(key: VersionedKeys) {
  const ctx = contextBytes(CONTEXT);
  return {
    seal(plaintext: Buffer): Buffer {
      const iv = randomBytes(16);
      const header = Buffer.from([1, 1, 0, 0, 0, 0]);
      header.writeUInt32BE(key.version, 2);
      const cipher = createCipheriv('aes-256-cbc', key.encKey, iv);
      const body = Buffer.concat([header, iv, cipher.update(plaintext), cipher.final()]);
      return Buffer.concat([body, createHmac('sha256', key.macKey).update(body).update(ctx).digest()]);
    },
    open(envelope: Buffer): Buffer {
      const bodyLength = envelope.length - 32;
      if (envelope.length < 70 || (envelope.length - 54) % 16 !== 0) throw new Error('bad length');
      const tag = createHmac('sha256', key.macKey).update(envelope.subarray(0, bodyLength)).update(ctx).digest();
      if (!timingSafeEqual(tag, envelope.subarray(bodyLength))) throw new Error('bad tag');
      const decipher = createDecipheriv('aes-256-cbc', key.encKey, envelope.subarray(6, 22));
      return Buffer.concat([decipher.update(envelope.subarray(22, bodyLength)), decipher.final()]);
    },
  };
}

export async function benchNodeEnvelope({ runs, log }: BenchContext) {
  const emails = Array.from({ length: VALUES }, (_, i) => `utente${i + 1}@example.it`);
  const key: VersionedKeys = { version: 1, ...deriveEnvelopeKeys(randomBytes(32)) };
  const keyFor = (v: number) => (v === key.version ? key : undefined);
  const cloakKey = parseKeySync(generateKey());
  const reference = naive(key);

  // the inputs of the opens, and correctness first: every side reads back every value
  const sealed = emails.map((e) => seal(Buffer.from(e, 'utf8'), CONTEXT, key));
  const cloaked = emails.map((e) => encryptStringSync(e, cloakKey));
  for (let i = 0; i < VALUES; i++) {
    const e = emails[i]!;
    if (open(sealed[i]!, CONTEXT, keyFor).toString('utf8') !== e) throw new Error('node-envelope bench: open did not return the value');
    if (reference.open(sealed[i]!).toString('utf8') !== e) throw new Error('node-envelope bench: the naive open disagrees with seal');
    if (open(reference.seal(Buffer.from(e, 'utf8')), CONTEXT, keyFor).toString('utf8') !== e) throw new Error('node-envelope bench: open disagrees with the naive seal');
    if (decryptStringSync(cloaked[i]!, cloakKey) !== e) throw new Error('node-envelope bench: cloak did not decrypt');
  }

  // results go to a sink, so no call is optimised away
  let sink = 0;
  const ops: Array<[string, (i: number) => void]> = [
    ['pgseal_seal', (i) => void (sink += seal(Buffer.from(emails[i]!, 'utf8'), CONTEXT, key).length)],
    ['pgseal_open', (i) => void (sink += open(sealed[i]!, CONTEXT, keyFor).toString('utf8').length)],
    ['cloak_encrypt', (i) => void (sink += encryptStringSync(emails[i]!, cloakKey).length)],
    ['cloak_decrypt', (i) => void (sink += decryptStringSync(cloaked[i]!, cloakKey).length)],
    ['naive_seal', (i) => void (sink += reference.seal(Buffer.from(emails[i]!, 'utf8')).length)],
    ['naive_open', (i) => void (sink += reference.open(sealed[i]!).toString('utf8').length)],
  ];
  /** µs per operation of each kind over PASSES passes of every value, the kinds interleaved by CHUNK */
  const measure = (run: number): number[] => {
    const ms = ops.map(() => 0);
    let turn = run;
    for (let pass = 0; pass < PASSES; pass++) {
      for (let start = 0; start < VALUES; start += CHUNK, turn++) {
        // who goes first moves with every chunk
        for (let k = 0; k < ops.length; k++) {
          const j = (k + turn) % ops.length;
          const op = ops[j]![1];
          const t0 = performance.now();
          for (let i = start; i < start + CHUNK; i++) op(i);
          ms[j]! += performance.now() - t0;
        }
      }
    }
    return ms.map((x) => (x * 1000) / (PASSES * VALUES));
  };
  measure(0); // warm-up: JIT, prepared key state, caches
  const t: Record<string, number[]> = Object.fromEntries(ops.map(([name]) => [name, []]));
  for (let run = 0; run < runs; run++) {
    measure(run).forEach((us, j) => t[ops[j]![0]]!.push(us));
    log(`run ${run + 1}/${runs}: ` + Object.entries(t).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(2)}`).join(', ') + ' (µs per op)');
  }
  if (sink === 0) throw new Error('node-envelope bench: nothing was measured');
  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)])) as Record<string, number>;
  const us = (x: number) => Math.round(x * 100) / 100;
  return {
    values: VALUES,
    example: emails[122],
    operations_per_run: PASSES * VALUES,
    interleaved_by: CHUNK,
    us_per_op: Object.fromEntries(ops.map(([name]) => [name, us(m[name]!)])),
    ratios: {
      open_vs_cloak_decrypt: ratio(m.pgseal_open!, m.cloak_decrypt!),
      seal_vs_cloak_encrypt: ratio(m.pgseal_seal!, m.cloak_encrypt!),
    },
    // the same work without prepared state: what preparing it once per key saves
    references: {
      naive_open_vs_cloak_decrypt: ratio(m.naive_open!, m.cloak_decrypt!),
      naive_seal_vs_cloak_encrypt: ratio(m.naive_seal!, m.cloak_encrypt!),
      open_vs_naive_open: ratio(m.pgseal_open!, m.naive_open!),
      seal_vs_naive_seal: ratio(m.pgseal_seal!, m.naive_seal!),
    },
    targets: { open_vs_cloak_decrypt: '<= 0.5', seal_vs_cloak_encrypt: '<= 0.5' },
    pass: {
      open_vs_cloak_decrypt: m.pgseal_open! / m.cloak_decrypt! <= 0.5,
      seal_vs_cloak_encrypt: m.pgseal_seal! / m.cloak_encrypt! <= 0.5,
    },
  };
}
