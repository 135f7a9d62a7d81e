import postgres from 'postgres';
import { randomBytes } from 'node:crypto';
import { LocalMasterKey } from '../src/keys/master-key.js';
const url = 'postgres://postgres@127.0.0.1:5432/scratch';
const sql = postgres(url, { onnotice: () => {}, connection: { jit: process.env.JIT ?? 'on' } });
const [k] = await sql`select version from pgseal.keys where state='decrypt-only'`;
// fabricate: we cannot unwrap without the master key; use random keys to time the SQL shapes on fresh data
await sql`create temp table k as select 1`;
const enc = randomBytes(32), mac = randomBytes(32);
const v = Buffer.alloc(4); v.writeUInt32BE(999);
const mat = Buffer.concat([v, enc, mac]);
await sql`drop table if exists t2`;
await sql`create table t2 as select i as id, pgseal.encrypt_bytea_with(convert_to('utente' || i || '@example.it','UTF8'), 'public.t2.email', ${mat}) as email from generate_series(1,50000) i`;
const q = async (label: string, text: string, params: unknown[]) => {
  for (let i = 0; i < 2; i++) { const t0 = performance.now(); await sql.unsafe(text, params as never[], { prepare: true }); if (i) console.log(label, ((performance.now() - t0) * 1000 / 50000).toFixed(2), 'us/row'); }
};
await q('decrypt', `select count(pgseal.decrypt_bytea_with(email, 'public.t2.email', $1::bytea)) from t2`, [mat]);
await q('encrypt', `select count(pgseal.encrypt_bytea_with(convert_to('x' || id, 'UTF8'), 'public.t2.email', $1::bytea)) from t2`, [mat]);
await q('both', `select count(pgseal.encrypt_bytea_with(pgseal.decrypt_bytea_with(email, 'public.t2.email', $1::bytea), 'public.t2.email', $1::bytea)) from t2`, [mat]);
await q('hmac only', `select count(hmac(email, $1::bytea, 'sha256')) from t2`, [mac]);
await q('aes dec only', `select count(decrypt_iv(substr(email, 23, octet_length(email) - 54), $1::bytea, substr(email, 7, 16), 'aes-cbc/pad:pkcs')) from t2`, [enc]);
await q('random16', `select count(gen_random_bytes(16)) from t2`, []);
await q('plain count', `select count(email) from t2`, []);
const ex = await sql.unsafe(`explain verbose select pgseal.encrypt_bytea_with(pgseal.decrypt_bytea_with(email, 'public.t2.email', $1::bytea), 'public.t2.email', $1::bytea) from t2`, [mat]);
console.log(ex.map((r) => r['QUERY PLAN']).join('\n').slice(0, 3000));
await sql.end();
