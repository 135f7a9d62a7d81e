// npm run demo: pgseal end to end on sample Italian personal data.
// Uses DATABASE_URL when set, otherwise starts an embedded PostgreSQL for the run.

import { randomBytes } from 'node:crypto';
import postgres from 'postgres';
import { envMasterKey, initKeys, LocalMasterKey, migrate, pgseal, protectColumn, retireKey, rotateKey, listKeys, verifyLogs, type MasterKeyProvider } from '../src/index.js';
import { table } from '../src/cli/output.js';
import { runDoctor } from '../src/doctor/index.js';
import { startPostgres, type RunningPostgres } from './lib/embedded-postgres.js';

const say = (text = '') => console.log(text);
const step = (n: number, text: string) => say(`\n== ${n}. ${text}`);

const clienti = [
  { nome: 'Mario Rossi', email: 'mario.rossi@example.it', telefono: '+39 347 123 4567', codice_fiscale: 'RSSMRA85T10A562S' },
  { nome: 'Giulia Bianchi', email: 'giulia.bianchi@example.it', telefono: '+39 06 1234 5678', codice_fiscale: 'BNCGLI90A41H501X' },
  { nome: 'Luca Verdi', email: 'luca.verdi@example.it', telefono: '+39 335 111 2233', codice_fiscale: 'VRDLCU78M12F205Z' },
];

async function main(): Promise<void> {
  // the master key first: a bad one fails before a server is started (and left running);
  // envMasterKey() takes it out of the environment, so whether one was given is noted before
  const throwaway = !process.env.PGSEAL_MASTER_KEY;
  let master: MasterKeyProvider;
  if (process.env.PGSEAL_MASTER_KEY) {
    master = envMasterKey();
  } else {
    say('PGSEAL_MASTER_KEY is not set: using a throwaway master key for this run.');
    master = new LocalMasterKey(randomBytes(32));
  }
  let server: RunningPostgres | undefined;
  let url = process.env.DATABASE_URL;
  let dropDatabase: (() => Promise<void>) | undefined;
  if (url && throwaway) {
    // a throwaway master key cannot open the keys an earlier run left in DATABASE_URL's
    // database: this run gets a database of its own on that server, dropped at the end
    const name = `pgseal_demo_${randomBytes(4).toString('hex')}`;
    const admin = postgres(url, { onnotice: () => {}, max: 1 });
    try {
      await admin`create database ${admin(name)}`;
    } catch (error) {
      throw new Error(`cannot create a database for this run on DATABASE_URL's server (${(error as { code?: string }).code ?? String(error)}): set PGSEAL_MASTER_KEY to run in DATABASE_URL's own database, or let this role create databases`);
    } finally {
      await admin.end({ timeout: 5 });
    }
    const serverUrl = url;
    dropDatabase = async () => {
      const drop = postgres(serverUrl, { onnotice: () => {}, max: 1 });
      try {
        await drop`drop database if exists ${drop(name)} with (force)`;
      } finally {
        await drop.end({ timeout: 5 });
      }
    };
    const u = new URL(url);
    u.pathname = `/${name}`;
    url = u.toString();
    say(`DATABASE_URL is set but PGSEAL_MASTER_KEY is not: running in a new database ${name} on that server, dropped at the end.`);
  }
  if (!url) {
    say('DATABASE_URL is not set: starting an embedded PostgreSQL for this demo...');
    server = await startPostgres();
    try {
      const admin = postgres(server.url(), { onnotice: () => {}, max: 1 });
      await admin`create database pgseal_demo`;
      await admin.end();
    } catch (error) {
      await server.stop();
      throw error;
    }
    url = server.url('pgseal_demo');
  }
  const sql = postgres(url, { onnotice: () => {}, max: 4 });
  const seal = pgseal({ sql, masterKey: master, accessLog: { mode: 'sync', actor: 'demo' } }); // every read and write of a protected value is logged
  try {
    step(1, 'apply the migrations');
    const applied = await migrate({ databaseUrl: url, direction: 'up' });
    say(applied.length ? `applied: ${applied.join(', ')}` : 'already up to date');

    step(2, 'create the first data key');
    const existing = await listKeys(sql);
    if (existing.some((k) => k.scope === 'default' && k.state === 'active')) say('scope "default" already has an active key: keeping it');
    else say(`key version ${(await initKeys(sql, master)).version} is active (with a blind-index key), wrapped by master key ${master.ref}`);

    step(3, 'protect three columns (searchable through blind indexes) and write through the SQL rewriter');
    await sql`drop table if exists pgseal_demo_clienti`;
    await sql`create table pgseal_demo_clienti (id int generated always as identity primary key, nome text not null)`;
    for (const [column, normalizer] of [['email', 'email'], ['telefono', 'phone'], ['codice_fiscale', 'upper']] as const) {
      const c = await protectColumn(sql, { table: 'pgseal_demo_clienti', column, searchable: true, normalizer });
      say(`protected ${c.schema}.${c.table}.${c.column} (normaliser ${c.normalizer}, blind index ${c.blindIndexColumn})`);
    }
    await seal.reloadRegistry();
    for (const c of clienti.slice(0, 2)) {
      // written as if the columns held plaintext; values are bound parameters, encrypted inside PostgreSQL
      await seal.query('insert into pgseal_demo_clienti (nome, email, telefono, codice_fiscale) values ($1, $2, $3, $4)', [c.nome, c.email, c.telefono, c.codice_fiscale]);
    }
    const statement = 'select id from pgseal_demo_clienti where email = $1';
    say(`inserted 2 customers; a lookup is rewritten to:\n  ${(await seal.rewriter()).rewrite(statement).sql}`);

    step(4, 'rotate the key: new writes use the new version, old rows stay readable');
    const { version, previous } = await rotateKey(sql, master);
    say(`key version ${version} is active; version ${previous} is decrypt-only`);
    await seal.keyring.refresh();
    const c = clienti[2]!;
    await seal.query`insert into pgseal_demo_clienti (nome, email, telefono, codice_fiscale) values (${c.nome}, ${c.email}, ${c.telefono}, ${c.codice_fiscale})`;
    say(`inserted ${c.nome} under version ${version}`);

    step(5, 'read back: both key versions decrypt');
    const versions = new Map((await sql<{ id: number; v: number }[]>`select id, pgseal.key_version_of(email) as v from pgseal_demo_clienti`).map((r) => [r.id, r.v]));
    const rows = (await seal.query('select id, nome, email, telefono, codice_fiscale from pgseal_demo_clienti order by id')).map((r) => ({ ...r, key_version: versions.get(r.id as number) }));
    say(table(['id', 'nome', 'key_version', 'email', 'telefono', 'codice_fiscale'], rows));
    const found = await seal.query('select id, nome from pgseal_demo_clienti where email = $1 or telefono = $2', ['  GIULIA.Bianchi@Example.IT', '0039 06 12345678']);
    say(`search by e-mail (any case) or phone (any format), through the blind indexes: ${found.map((r) => `${r.id} ${r.nome}`).join(', ')}`);
    try {
      await seal.query("select id from pgseal_demo_clienti where email like '%rossi%'");
    } catch (error) {
      say(`a LIKE on ciphertext is refused: ${(error as { code?: string }).code}`);
    }

    step(6, 'what the raw columns hold (a plain SELECT, no keys)');
    const raw = await sql<{ id: number; email: Buffer; codice_fiscale: Buffer }[]>`select id, email, codice_fiscale from pgseal_demo_clienti order by id`;
    for (const r of raw) {
      const hex = r.email.toString('hex');
      say(`id ${r.id}  email = \\x${hex.slice(0, 12)} ${hex.slice(12, 44)}... (${r.email.length} bytes: header 01 01 + key version, IV, AES-256-CBC, HMAC tag)`);
    }
    const leaked = raw.some((r) => clienti.some((k) => r.email.includes(Buffer.from(k.email)) || r.codice_fiscale.includes(Buffer.from(k.codice_fiscale))));
    say(`plaintext bytes found in the raw columns: ${leaked ? 'YES (bug!)' : 'none'}`);
    try {
      await sql`select pgseal.decrypt_text(email, 'public.pgseal_demo_clienti.email') from pgseal_demo_clienti`;
    } catch (error) {
      const e = error as { code?: string; message?: string };
      say(`decrypting without the keys: SQLSTATE ${e.code}, ${e.message}`);
    }
    try {
      await seal.begin((tx) => tx`select pgseal.decrypt_text(email, 'public.pgseal_demo_clienti.telefono') from pgseal_demo_clienti`);
    } catch (error) {
      const e = error as { code?: string; sqlstate?: string; message?: string };
      say(`an email decrypted as if it were a phone number (wrong context): ${e.code} [${e.sqlstate}], ${e.message}`);
    }

    step(7, 're-encrypt inside the database: every value onto the active key, then retire the old one');
    const moved = await seal.reencrypt({ actor: 'demo', reason: 'demo rotation' });
    say(`run ${moved.runId}: ${moved.rows} values re-encrypted in ${moved.seconds.toFixed(2)} s (${moved.columns.map((col) => `${col.column} ${col.rowsDone}`).join(', ')})`);
    const after = await sql<{ v: number; n: number }[]>`select pgseal.key_version_of(email) as v, count(*)::int as n from pgseal_demo_clienti group by 1`;
    say(`rows per key version now: ${after.map((r) => `version ${r.v}: ${r.n}`).join(', ')}`);
    await retireKey(sql, seal.keyring, previous!, { actor: 'demo', reason: 'demo rotation' });
    say(`version ${previous} retired (no row uses it); the audit log:`);
    say(table(['occurred_at', 'actor', 'operation', 'key_version', 'reason'], await sql`select occurred_at, actor, operation, key_version, reason from pgseal.encryption_audit_log order by id`));
    // tamper evidence: every log row is signed with the log key and chained; an edit by hand shows
    const clean = await verifyLogs(sql, seal.keyring, { actor: 'demo' });
    say(`audit verify: ${clean.logs.map((l) => `${l.log} log ${l.rows} rows in ${l.links} links`).join(', ')}: ${clean.ok ? 'no row inserted, edited or deleted by hand' : 'ALTERED'}`);
    await sql.begin(async (tx) => {
      await tx`update pgseal.encryption_audit_log set reason = 'nothing to see' where operation = 'key.rotate'`;
      const r = await verifyLogs(tx as never, seal.keyring, { record: false });
      say(`after editing the rotation's reason by hand: ${r.problems.map((p) => `${p.log} log, ${p.kind}: ${p.what} by ${p.who}`).join('; ')} (rolled back)`);
      throw new Error('rollback');
    }).catch((e: Error) => {
      if (e.message !== 'rollback') throw e;
    });

    step(8, 'the key registry (no key material)');
    say(table(['version', 'scope', 'purpose', 'state', 'kek_ref', 'fingerprint'], (await listKeys(sql)) as unknown as Record<string, unknown>[]));

    step(9, 'pgseal doctor --full: is this database\'s encryption healthy?');
    const report = await runDoctor(sql, { databaseUrl: url, provider: master, full: true });
    for (const r of report.results) say(`${r.status.padEnd(4)}  ${r.id}: ${r.summary}`);
    const n = report.counts;
    say(`doctor: ${n.ok} ok, ${n.warn} warning(s), ${n.fail} failed, ${n.skip} skipped`);
    if (n.fail > 0) throw new Error(`the doctor found ${n.fail} failed check(s) on the demo database`);
    say('\ndone.');
  } finally {
    seal.close();
    await sql.end({ timeout: 5 });
    await dropDatabase?.();
    await server?.stop();
  }
}

main().catch((error: unknown) => {
  const e = error as { code?: string; message?: string; toLine?: () => string };
  console.error(`demo failed: ${e.toLine ? e.toLine() : `${e.code ?? ''} ${e.message ?? String(error)}`}`);
  process.exitCode = 1;
});
