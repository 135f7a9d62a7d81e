// Envelope throughput: decrypt_text / encrypt_text against pgcrypto's own primitives
// composed inline in one SELECT (the floor), on the same rows, in the same run.

import type { TransactionSql } from 'postgres';
import { withKeys } from '../../src/exec/transaction.js';
import { median, type BenchContext } from './common.js';

const CONTEXT = 'public.pgseal_bench.email';

export async function benchEnvelope({ sql, keyring, rows, runs, log }: BenchContext) {
  const key = (await keyring.activeKey('default'))!;
  log('preparing rows...');
  await sql`drop table if exists pgseal_bench`;
  await withKeys(sql, keyring, (tx) => tx`
    create table pgseal_bench as
    select i as id, 'utente' || i || '@example.it' as email, pgseal.encrypt_text('utente' || i || '@example.it', ${CONTEXT}) as ct
      from generate_series(1, ${rows}::int) as i`);
  await sql`vacuum analyze pgseal_bench`;

  const versionBytes = Buffer.alloc(4);
  versionBytes.writeUInt32BE(key.version);
  const header = Buffer.concat([Buffer.from([1, 1]), versionBytes]);
  const contextBytes = Buffer.concat([Buffer.from(CONTEXT), Buffer.from([0, 0, 0, Buffer.byteLength(CONTEXT)])]);

  // Each query runs inside a transaction that holds the keys, so all pay the same BEGIN.
  const queries: Record<string, (tx: TransactionSql) => Promise<unknown>> = {
    plain_read: (tx) => tx`select count(email) from pgseal_bench`,
    md5: (tx) => tx`select count(md5(email)) from pgseal_bench`,
    decrypt_floor: (tx) => tx`
      select count(case when hmac(substr(ct, 1, octet_length(ct) - 32) || ${contextBytes}::bytea, ${key.macKey}::bytea, 'sha256')
                             = substr(ct, octet_length(ct) - 31)
                        then convert_from(decrypt_iv(substr(ct, 23, octet_length(ct) - 54), ${key.encKey}::bytea, substr(ct, 7, 16), 'aes-cbc/pad:pkcs'), 'UTF8') end)
        from pgseal_bench`,
    decrypt_text: (tx) => tx`select count(pgseal.decrypt_text(ct, ${CONTEXT})) from pgseal_bench`,
    encrypt_floor: (tx) => tx`
      select count(hmac(${header}::bytea || iv || encrypt_iv(convert_to(email, 'UTF8'), ${key.encKey}::bytea, iv, 'aes-cbc/pad:pkcs') || ${contextBytes}::bytea,
                        ${key.macKey}::bytea, 'sha256'))
        from (select email, gen_random_bytes(16) as iv from pgseal_bench) as s`,
    encrypt_text: (tx) => tx`select count(pgseal.encrypt_text(email, ${CONTEXT})) from pgseal_bench`,
  };
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(queries).map((k) => [k, []]));
  for (const [name, q] of Object.entries(queries)) await withKeys(sql, keyring, q).catch((e: unknown) => {
    throw new Error(`${name}: ${(e as Error).message}`);
  }); // warm-up: caches, prepared statements
  for (let run = 0; run < runs; run++) {
    for (const [name, q] of Object.entries(queries)) {
      const t0 = performance.now();
      await withKeys(sql, keyring, q);
      times[name]!.push(performance.now() - t0);
    }
    log(`run ${run + 1}/${runs}: ` + Object.entries(times).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)} ms`).join(', '));
  }
  const medians = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const ms = (name: string): number => medians[name]!;
  const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
  const result = {
    median_ms: Object.fromEntries(Object.entries(medians).map(([k, v]) => [k, Math.round(v * 10) / 10])),
    us_per_value: Object.fromEntries(Object.entries(medians).map(([k, v]) => [k, Math.round(((v * 1000) / rows) * 1000) / 1000])),
    ratios: {
      decrypt_text_vs_floor: ratio(ms('decrypt_text'), ms('decrypt_floor')),
      encrypt_text_vs_floor: ratio(ms('encrypt_text'), ms('encrypt_floor')),
      decrypt_text_vs_md5: ratio(ms('decrypt_text'), ms('md5')),
      encrypt_text_vs_md5: ratio(ms('encrypt_text'), ms('md5')),
    },
    targets: { decrypt_text_vs_floor: 1.3, encrypt_text_vs_floor: 1.4 },
    pass: {
      decrypt_text_vs_floor: ms('decrypt_text') / ms('decrypt_floor') <= 1.3,
      encrypt_text_vs_floor: ms('encrypt_text') / ms('encrypt_floor') <= 1.4,
    },
  };
  await sql`drop table if exists pgseal_bench`;
  return result;
}
