// Master keys in AWS: the real @aws-sdk/client-kms and client-secrets-manager against
// moto_server on loopback (scripts/lib/moto.ts), whose proxy counts every call at the
// server and can answer with AWS's own errors (throttling, access denied). Covers the CLI
// with only PGSEAL_KMS_KEY_ID (or only PGSEAL_MASTER_KEY_SECRET_ID) set, KMS traffic under
// load, encryption contexts refusing moved rows, the failures, and keys rewrap
// env → KMS → another KMS key → env. Without moto_server: one line, and skipped.

import { randomBytes } from 'node:crypto';
import { CreateAliasCommand, CreateKeyCommand, DisableKeyCommand, EnableKeyCommand, KMSClient, ScheduleKeyDeletionCommand } from '@aws-sdk/client-kms';
import { CreateSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  awsKmsMasterKey, column, defineTable, ErrorCodes, initKeys, LocalMasterKey, PgsealError, pgseal, protectColumn, rotateKey, type Pgseal,
} from '../../src/index.js';
import { Keyring } from '../../src/keys/keyring.js';
import { unwrapKeyRow } from '../../src/keys/unwrap.js';
import { masterKeySource } from '../../src/keys/providers.js';
import { motoAvailable, startMoto, type Moto } from '../../scripts/lib/moto.js';
import { runCli, type CliResult } from '../support/cli.js';
import { connectQuiet, createDatabase, createRole, type TestDatabase } from '../support/db.js';

// the SDK warns once per process under Node 20 (its releases after January 2027 need 22)
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

const available = motoAvailable();
if (available !== true) console.log(`AWS KMS tests did not run: ${available.reason}`);

const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const region = 'us-east-1';

function expectOneLineFailure(r: CliResult, code: string): void {
  expect(r.code, r.stdout + r.stderr).toBe(1);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^pgseal: ${code}`));
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

/** `pgseal query --json` prints one JSON object per row */
const rowsOf = (stdout: string): unknown[] => stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));

const contacts = defineTable({ name: 'contacts', primaryKey: 'id', columns: { id: column.plain<number>(), email: column.text({ searchable: true }) } });

describe.skipIf(available !== true)('AWS KMS and Secrets Manager (moto_server)', () => {
  let moto: Moto;
  let kms: KMSClient;
  let keyA: string; // ARN
  let keyB: string;

  const provider = (keyId: string, extra: Record<string, unknown> = {}) => awsKmsMasterKey({ keyId, endpoint: moto.endpoint, region, credentials, ...extra });
  const newKey = async (alias?: string) => {
    const k = await kms.send(new CreateKeyCommand({ Description: 'pgseal test' }));
    if (alias) await kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: k.KeyMetadata!.KeyId! }));
    return k.KeyMetadata!.Arn!;
  };

  beforeAll(async () => {
    moto = await startMoto();
    kms = new KMSClient({ endpoint: moto.direct, region, credentials });
    keyA = await newKey('alias/pgseal-a');
    keyB = await newKey('alias/pgseal-b');
  }, 60_000);
  afterAll(async () => {
    kms?.destroy();
    await moto?.stop();
  });

  describe('the CLI with only PGSEAL_KMS_KEY_ID set', () => {
    let db: TestDatabase;
    const env = (extra: Record<string, string | undefined> = {}) => ({ ...moto.env, DATABASE_URL: db.url, PGSEAL_KMS_KEY_ID: 'alias/pgseal-a', ...extra });

    beforeAll(async () => {
      db = await createDatabase({ migrated: true });
      await db.sql`create table contacts (id int primary key, email bytea, email_bidx bytea)`;
    });
    afterAll(async () => {
      await db?.drop();
    });

    it('keys init, protect, writes and reads, keys rotate (one Decrypt per key), reencrypt; kek_ref names the key, never a secret', async () => {
      const init = await runCli(['keys', 'init'], env());
      expect(init.code, init.stderr).toBe(0);
      const rows = await db.sql<{ kek_ref: string; n: number }[]>`select kek_ref, count(*)::int as n from pgseal.keys group by kek_ref`;
      expect(rows).toEqual([{ kek_ref: `kms:${keyA}`, n: 3 }]);

      const protect = await runCli(['protect', '--table', 'contacts', '--column', 'email', '--searchable'], env());
      expect(protect.code, protect.stderr).toBe(0);
      const ins = await runCli(['query', `insert into contacts (id, email) values (1, 'mario.rossi@example.it'), (2, 'giulia@example.it')`], env());
      expect(ins.code, ins.stderr).toBe(0);
      // at rest: the raw column read as the owner is an envelope, not the address
      const [raw] = await db.sql<{ email: Buffer }[]>`select email from contacts where id = 1`;
      expect(raw!.email.includes(Buffer.from('mario.rossi'))).toBe(false);
      expect(raw!.email[0]).toBe(1);

      const read = await runCli(['query', '--json', `select id, email from contacts where email = 'giulia@example.it'`], env());
      expect(read.code, read.stderr).toBe(0);
      expect(rowsOf(read.stdout)).toEqual([{ id: 2, email: 'giulia@example.it' }]);

      const usable = (await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.usable_keys()`)[0]!.n;
      moto.reset();
      const rotate = await runCli(['keys', 'rotate'], env());
      expect(rotate.code, rotate.stderr).toBe(0);
      // the key commands unwrap each key once (a process's Decrypts are shared and cached), one data key made
      expect(moto.count('Decrypt')).toBeLessThanOrEqual(usable);
      expect(moto.count('GenerateDataKey')).toBe(1);

      const re = await runCli(['reencrypt', '--table', 'contacts', '--json'], env());
      expect(re.code, re.stderr).toBe(0);
      const [active] = await db.sql<{ v: number }[]>`select version as v from pgseal.keys where purpose = 'data' and state = 'active'`;
      const versions = await db.sql<{ v: number }[]>`select distinct pgseal.key_version_of(email) as v from contacts`;
      expect(versions).toEqual([{ v: active!.v }]);
      const after = await runCli(['query', '--json', `select id, email from contacts order by id`], env());
      expect(rowsOf(after.stdout)).toEqual([{ id: 1, email: 'mario.rossi@example.it' }, { id: 2, email: 'giulia@example.it' }]);

      // nothing of a key in what the CLI printed, nor in kek_ref; the audit log names the KMS key
      const [ev] = await db.sql<{ details: Record<string, unknown> }[]>`select details from pgseal.encryption_audit_log where operation = 'key.rotate' order by id desc limit 1`;
      expect(ev!.details.master_key).toBe(`kms:${keyA}`);
    });

    it('the same with the typed helpers, in a process whose 8 clients do 10,000 reads and 10,000 writes: one Decrypt per key version', async () => {
      const usable = (await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.usable_keys()`)[0]!.n;
      const shared = provider('alias/pgseal-a');
      moto.reset();
      const seals: Pgseal[] = Array.from({ length: 8 }, () => pgseal({ sql: db.sql, masterKey: shared }));
      try {
        await Promise.all(seals.map(async (seal, c) => {
          const t = seal.table(contacts);
          for (let i = 0; i < 1250; i++) {
            const id = 1000 + c * 1250 + i;
            await t.insert({ id, email: `user${id}@example.it` });
            const got = await t.findByPk(id);
            if (got?.email !== `user${id}@example.it`) throw new Error(`row ${id} read back wrong`);
          }
        }));
      } finally {
        for (const s of seals) s.keyring.close();
        shared.close();
      }
      expect((await db.sql<{ n: number }[]>`select count(*)::int as n from contacts where id >= 1000`)[0]!.n).toBe(10_000);
      // eight keyrings, one provider: each version unwrapped once, however many misses raced
      expect(moto.count('Decrypt')).toBe(usable);
      expect(moto.count('DescribeKey')).toBe(1);
    }, 240_000);

    it('asks KMS again only when the TTL has passed, once per version', async () => {
      const usable = (await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.usable_keys()`)[0]!.n;
      const shared = provider(keyA, { cacheTtlMs: 300 });
      const seal = pgseal({ sql: db.sql, masterKey: shared, ttlMs: 300 });
      try {
        moto.reset();
        const t = seal.table(contacts);
        for (let i = 0; i < 50; i++) expect((await t.findByPk(1))?.email).toBe('mario.rossi@example.it');
        expect(moto.count('Decrypt')).toBe(usable);
        await new Promise((r) => setTimeout(r, 450));
        for (let i = 0; i < 50; i++) await t.findByPk(2);
        expect(moto.count('Decrypt')).toBe(2 * usable);
      } finally {
        seal.keyring.close();
        shared.close();
      }
    });

    it('with the cache turned off (TTL 0, or one use), concurrent unwraps of one key still settle, sharing the Decrypt in flight', async () => {
      const [row] = await db.sql<{ wrapped_key: Buffer; version: number; scope: string; purpose: string; database: string }[]>`
        select wrapped_key, version, scope, purpose, pgseal.installation_id()::text as database from pgseal.keys where state = 'active' and purpose = 'data' and scope = 'default'`;
      const context = { scope: row!.scope, purpose: row!.purpose, version: row!.version, database: row!.database };
      for (const options of [{ cacheTtlMs: 0 }, { cacheMaxUses: 1 }]) {
        const p = provider(keyA, options);
        await p.prepare();
        moto.reset();
        const keys = await Promise.all(Array.from({ length: 8 }, () => p.unwrap(row!.wrapped_key, context)));
        expect(new Set(keys.map((k) => k.toString('hex'))).size).toBe(1);
        expect(keys[0]!.every((b) => b === 0)).toBe(false);
        expect(moto.count('Decrypt')).toBe(1);
        for (const k of keys) k.fill(0);
        p.close();
      }
    });

    it('a wrapped key moved to another version or scope row, or to another database, does not unwrap (encryption context)', async () => {
      await initKeys(db.sql, provider(keyA), 'acme');
      const rows = await db.sql<{ version: number; scope: string; purpose: string; wrapped_key: Buffer }[]>`
        select version, scope, purpose, wrapped_key from pgseal.keys where state = 'active' and purpose = 'data' order by scope`;
      const acme = rows.find((r) => r.scope === 'acme')!;
      const def = rows.find((r) => r.scope === 'default')!;
      const fresh = () => new Keyring(db.sql, provider(keyA));
      // default's active data key copied into acme's row: same KMS key, other context
      await db.sql.begin(async (tx) => {
        await tx`update pgseal.keys set wrapped_key = ${def.wrapped_key} where version = ${acme.version}`;
        const ring = new Keyring(tx as never, provider(keyA));
        const error = await ring.refresh().then(() => undefined, (e: unknown) => e);
        expect(error).toBeInstanceOf(PgsealError);
        expect(error).toMatchObject({ code: ErrorCodes.KEY_UNWRAP_FAILED });
        expect((error as PgsealError).message).toMatch(/encryption context/);
        expect((error as PgsealError).hint).toMatch(/moved to another version, scope or database/);
        ring.close();
        throw new Error('roll back');
      }).catch((e: unknown) => {
        if ((e as Error).message !== 'roll back') throw e;
      });
      const ok = fresh();
      await ok.refresh(); // the rows are back as they were
      ok.close();

      // the same row copied into another pgseal database: its installation id differs
      const other = await createDatabase({ migrated: true });
      try {
        const [row] = await db.sql<{ version: number; scope: string; purpose: string; state: string; wrapped_key: Buffer; kek_ref: string; fingerprint: string }[]>`
          select version, scope, purpose, state, wrapped_key, kek_ref, fingerprint from pgseal.keys where version = ${def.version}`;
        await other.sql`insert into pgseal.keys (version, scope, purpose, state, wrapped_key, kek_ref, fingerprint)
          values (${row!.version}, ${row!.scope}, ${row!.purpose}, ${row!.state}, ${row!.wrapped_key}, ${row!.kek_ref}, ${row!.fingerprint})`;
        const ring = new Keyring(other.sql, provider(keyA));
        await expect(ring.refresh()).rejects.toMatchObject({ code: ErrorCodes.KEY_UNWRAP_FAILED });
        ring.close();
      } finally {
        await other.drop();
      }
    });

    it('a disabled key, access denied, throttling past the retries, an unreachable endpoint: one line, exit 1, nothing written; the library error has the code', async () => {
      const keyCount = async () => (await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.keys`)[0]!.n;
      const before = await keyCount();
      const rowsBefore = (await db.sql<{ n: number }[]>`select count(*)::int as n from contacts`)[0]!.n;

      // moto takes the bare key id here (an ARN gets an HTML error page)
    await kms.send(new DisableKeyCommand({ KeyId: keyA.split('/').pop()! }));
      try {
        expectOneLineFailure(await runCli(['keys', 'rotate'], env()), 'PGSEAL_KMS_KEY_DISABLED');
        expectOneLineFailure(await runCli(['query', `insert into contacts (id, email) values (90001, 'x@example.it')`], env()), 'PGSEAL_KMS_KEY_DISABLED');
        await expect(provider(keyA).prepare()).rejects.toMatchObject({ code: ErrorCodes.KMS_KEY_DISABLED });
      } finally {
        await kms.send(new EnableKeyCommand({ KeyId: keyA.split('/').pop()! }));
      }

      moto.fail({ operation: 'Decrypt', error: 'AccessDeniedException', status: 400 });
      try {
        const denied = await runCli(['keys', 'rotate'], env());
        expectOneLineFailure(denied, 'PGSEAL_AWS_ACCESS_DENIED');
        expect(denied.stderr).toContain('kms:Decrypt');
        await expect(new Keyring(db.sql, provider(keyA)).refresh()).rejects.toMatchObject({ code: ErrorCodes.AWS_ACCESS_DENIED });
      } finally {
        moto.clearFaults();
      }

      moto.fail({ operation: 'Decrypt', error: 'ThrottlingException', status: 400 });
      try {
        moto.reset();
        const throttled = await runCli(['query', `select email from contacts limit 1`], env({ AWS_MAX_ATTEMPTS: '3' }));
        expectOneLineFailure(throttled, 'PGSEAL_AWS_THROTTLED');
        // bounded: each Decrypt tried AWS_MAX_ATTEMPTS times, no more (the keys load concurrently)
        const usable = (await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.usable_keys()`)[0]!.n;
        expect(moto.count('Decrypt')).toBeLessThanOrEqual(3 * usable);
        expect(moto.count('Decrypt')).toBeGreaterThanOrEqual(3);
        const ring = new Keyring(db.sql, provider(keyA, { maxAttempts: 2 }));
        await expect(ring.refresh()).rejects.toMatchObject({ code: ErrorCodes.AWS_THROTTLED });
        ring.close();
      } finally {
        moto.clearFaults();
      }

      const unreachable = await runCli(['keys', 'rotate'], env({ AWS_ENDPOINT_URL_KMS: 'http://127.0.0.1:9', AWS_MAX_ATTEMPTS: '2' }));
      expectOneLineFailure(unreachable, 'PGSEAL_AWS_UNREACHABLE');
      await expect(awsKmsMasterKey({ keyId: keyA, endpoint: 'http://127.0.0.1:9', region, credentials, maxAttempts: 1 }).prepare())
        .rejects.toMatchObject({ code: ErrorCodes.AWS_UNREACHABLE });

      const missing = await runCli(['keys', 'rotate'], env({ PGSEAL_KMS_KEY_ID: 'alias/no-such-key' }));
      expectOneLineFailure(missing, 'PGSEAL_KMS_KEY_NOT_FOUND');
      // the right alias in the wrong region: a KMS key lives in one
      const wrongRegion = await runCli(['keys', 'rotate'], env({ AWS_REGION: 'eu-west-1' }));
      expectOneLineFailure(wrongRegion, 'PGSEAL_KMS_KEY_NOT_FOUND');
      expect(wrongRegion.stderr).toContain('region');
      // a key pending deletion is refused before anything is written
      const doomed = await newKey();
      await kms.send(new ScheduleKeyDeletionCommand({ KeyId: doomed.split('/').pop()!, PendingWindowInDays: 7 }));
      const pending = await provider(doomed).prepare().catch((e: unknown) => e);
      expect(pending).toMatchObject({ code: ErrorCodes.KMS_KEY_DISABLED });
      expect((pending as PgsealError).message).toContain('PendingDeletion');
      expect((pending as PgsealError).hint).toContain('cancel-key-deletion');

      expect(await keyCount()).toBe(before);
      expect((await db.sql<{ n: number }[]>`select count(*)::int as n from contacts`)[0]!.n).toBe(rowsBefore);
    }, 120_000);

    it('refuses two master key sources at once, naming both', async () => {
      const r = await runCli(['keys', 'rotate'], env({ PGSEAL_MASTER_KEY: randomBytes(32).toString('base64') }));
      expectOneLineFailure(r, 'PGSEAL_INVALID_ARGUMENT');
      expect(r.stderr).toContain('PGSEAL_KMS_KEY_ID and PGSEAL_MASTER_KEY are both set');
      expect(() => masterKeySource({}, { PGSEAL_KMS_KEY_ID: 'k', PGSEAL_MASTER_KEY_SECRET_ID: 's' })).toThrow(/both set/);
      expect(masterKeySource({ kmsKeyId: 'flag' }, { PGSEAL_MASTER_KEY: 'x' })).toEqual({ kind: 'kms', keyId: 'flag' });
    });
  });

  describe('the application role as attacker', () => {
    let db: TestDatabase;
    let role: { name: string; password: string };

    beforeAll(async () => {
      db = await createDatabase({ migrated: true });
      await db.sql`create table contacts (id int primary key)`;
      await protectColumn(db.sql, { table: 'contacts', column: 'email', searchable: true });
      await initKeys(db.sql, provider(keyA));
      role = await createRole(db.admin, 'app');
      await db.sql`select pgseal.grant_api(${role.name}, 'app')`;
      await db.sql.unsafe(`alter table contacts owner to "${role.name}"`);
      // its own installation_id and usable_keys, first on its search_path
      await db.sql.unsafe(`
        create schema evil authorization "${role.name}";
        set role "${role.name}";
        create function evil.installation_id() returns uuid language sql as $$ select '00000000-0000-4000-8000-000000000000'::uuid $$;
        create function evil.usable_keys(text, text) returns table (version integer, scope text, purpose text, state text, wrapped_key bytea, kek_ref text, fingerprint text)
          language sql as $$ select null::integer, null::text, null::text, null::text, null::bytea, null::text, null::text where false $$;
        reset role;
        alter role "${role.name}" set search_path = evil, pg_catalog, public;`);
    });
    afterAll(async () => {
      await db.sql.unsafe(`drop owned by "${role.name}" cascade`).catch(() => undefined);
      await db?.drop();
    });

    it('holds no way to the keys: the wrapped keys it can read open only in KMS, its own functions are never called, the identity is not its to change', async () => {
      const app = connectQuiet(db.urlAs(role.name, role.password), { max: 2 });
      const shared = provider(keyA);
      const seal = pgseal({ sql: app, masterKey: shared });
      try {
        // the application works as that role, whatever its search_path says
        await seal.table(contacts).insert({ id: 1, email: 'rosa@example.it' });
        expect((await seal.table(contacts).findBy('email', 'rosa@example.it'))[0]?.id).toBe(1);
        const [real] = await db.sql<{ id: string }[]>`select pgseal.installation_id()::text as id`;
        const [seen] = await app<{ id: string }[]>`select installation_id()::text as id`;
        expect(seen!.id).toBe('00000000-0000-4000-8000-000000000000'); // its own function, for its own queries only
        expect(real!.id).not.toBe(seen!.id);
        await expect(app`select id from pgseal.installation`).rejects.toMatchObject({ code: '42501' });
        await expect(app`update pgseal.installation set id = gen_random_uuid()`).rejects.toMatchObject({ code: '42501' });
        await expect(app`update pgseal.keys set kek_ref = 'kms:x'`).rejects.toMatchObject({ code: '42501' });
        // what it can read of the keys is KMS ciphertext: no data key in it
        const rows = await app<{ version: number; scope: string; purpose: 'data' | 'index' | 'log'; state: 'active'; wrapped_key: Buffer; kek_ref: string; fingerprint: string; database: string }[]>`
          select version, scope, purpose, state, wrapped_key, kek_ref, fingerprint, pgseal.installation_id()::text as database from pgseal.usable_keys()`;
        expect(rows.length).toBeGreaterThan(0);
        for (const row of rows) {
          const dek = await unwrapKeyRow(shared, row);
          expect(row.wrapped_key.includes(dek)).toBe(false);
          dek.fill(0);
        }
        const [raw] = await app<{ email: Buffer }[]>`select email from public.contacts where id = 1`;
        expect(raw!.email.includes(Buffer.from('rosa'))).toBe(false);
      } finally {
        await seal.close();
        shared.close();
        await app.end({ timeout: 5 });
      }
    });
  });

  describe('the CLI with only PGSEAL_MASTER_KEY_SECRET_ID set', () => {
    let db: TestDatabase;
    const secretName = `pgseal/master-${randomBytes(3).toString('hex')}`;
    const env = () => ({ ...moto.env, DATABASE_URL: db.url, PGSEAL_MASTER_KEY_SECRET_ID: secretName });
    const masterText = randomBytes(32).toString('base64');

    beforeAll(async () => {
      db = await createDatabase({ migrated: true });
      await db.sql`create table contacts (id int primary key, email bytea, email_bidx bytea)`;
      const sm = new SecretsManagerClient({ endpoint: moto.direct, region, credentials });
      await sm.send(new CreateSecretCommand({ Name: secretName, SecretString: masterText }));
      sm.destroy();
    });
    afterAll(async () => {
      await db?.drop();
    });

    it('keys init, protect, writes and reads, keys rotate, reencrypt: the secret read once per process, the keys the same as with PGSEAL_MASTER_KEY', async () => {
      moto.reset();
      const init = await runCli(['keys', 'init'], env());
      expect(init.code, init.stderr).toBe(0);
      expect(moto.count('GetSecretValue')).toBe(1);
      const [ref] = await db.sql<{ kek_ref: string }[]>`select distinct kek_ref from pgseal.keys`;
      expect(ref!.kek_ref).toBe(new LocalMasterKey(Buffer.from(masterText, 'base64')).ref);
      for (const args of [
        ['protect', '--table', 'contacts', '--column', 'email', '--searchable'],
        ['query', `insert into contacts (id, email) values (1, 'anna@example.it')`],
        ['keys', 'rotate'],
        ['reencrypt', '--table', 'contacts', '--json'],
      ]) {
        const r = await runCli(args, env());
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      }
      moto.reset();
      const read = await runCli(['query', '--json', `select email from contacts where email = 'anna@example.it'`], env());
      expect(rowsOf(read.stdout)).toEqual([{ email: 'anna@example.it' }]);
      expect(moto.count('GetSecretValue')).toBe(1);
      // the same key from the environment opens the same database
      const same = await runCli(['query', '--json', `select email from contacts`], { DATABASE_URL: db.url, PGSEAL_MASTER_KEY: masterText });
      expect(rowsOf(same.stdout)).toEqual([{ email: 'anna@example.it' }]);
      const missing = await runCli(['keys', 'list'], { ...env(), PGSEAL_MASTER_KEY_SECRET_ID: 'pgseal/none' });
      expect(missing.code).toBe(0); // keys list needs no master key
      expectOneLineFailure(await runCli(['keys', 'rotate'], { ...env(), PGSEAL_MASTER_KEY_SECRET_ID: 'pgseal/none' }), 'PGSEAL_SECRET_NOT_FOUND');
    }, 120_000);
  });

  describe('keys rewrap between providers', () => {
    let db: TestDatabase;
    const envText = randomBytes(32).toString('base64');
    const backText = randomBytes(32).toString('base64');

    beforeAll(async () => {
      db = await createDatabase({ migrated: true });
      await db.sql`create table contacts (id int primary key, email bytea, email_bidx bytea)`;
      await initKeys(db.sql, new LocalMasterKey(Buffer.from(envText, 'base64')));
      await protectColumn(db.sql, { table: 'contacts', column: 'email', searchable: true });
      const seal = pgseal({ sql: db.sql, masterKey: new LocalMasterKey(Buffer.from(envText, 'base64')) });
      for (let i = 1; i <= 20; i++) await seal.table(contacts).insert({ id: i, email: `p${i}@example.it` });
      await rotateKey(db.sql, new LocalMasterKey(Buffer.from(envText, 'base64')));
      seal.keyring.close();
    });
    afterAll(async () => {
      await db?.drop();
    });

    it('env → KMS → another KMS key (ReEncrypt) → env: data rows byte-identical, readable at each step, the previous master refused, the audit log saying from and to', async () => {
      const snapshot = async () => (await db.sql<{ id: number; email: Buffer; email_bidx: Buffer }[]>`select id, email, email_bidx from contacts order by id`)
        .map((r) => `${r.id}:${r.email.toString('hex')}:${r.email_bidx.toString('hex')}`).join(',');
      const data = await snapshot();
      const wrapped = (await db.sql<{ n: number }[]>`select count(*)::int as n from pgseal.keys where wrapped_key is not null`)[0]!.n;
      const base = { ...moto.env, DATABASE_URL: db.url };
      const readsAll = async (env: Record<string, string>) => {
        const r = await runCli(['query', '--json', `select email from contacts where email = 'p7@example.it'`], env);
        expect(r.code, r.stderr).toBe(0);
        expect(rowsOf(r.stdout)).toEqual([{ email: 'p7@example.it' }]);
        const all = await runCli(['query', '--json', `select count(*)::int as n from contacts where email is not null`], env);
        expect(all.code, all.stderr).toBe(0);
      };
      const asEnv = { ...base, PGSEAL_MASTER_KEY: envText };
      const asA = { ...base, PGSEAL_KMS_KEY_ID: 'alias/pgseal-a' };
      const asB = { ...base, PGSEAL_KMS_KEY_ID: keyB };
      const asBack = { ...base, PGSEAL_MASTER_KEY: backText };

      // a failed Encrypt (its request holds a data key) changes nothing and prints no key
      const deks = await Promise.all((await db.sql<{ version: number; scope: string; purpose: 'data' | 'index' | 'log'; state: 'active'; wrapped_key: Buffer; kek_ref: string; fingerprint: string; database: string }[]>`
        select version, scope, purpose, state, wrapped_key, kek_ref, fingerprint, pgseal.installation_id()::text as database from pgseal.keys where wrapped_key is not null`)
        .map((row) => unwrapKeyRow(new LocalMasterKey(Buffer.from(envText, 'base64')), row)));
      moto.fail({ operation: 'Encrypt', error: 'AccessDeniedException', status: 400, times: 1 });
      const failed = await runCli(['keys', 'rewrap', '--new-kms-key-id', 'alias/pgseal-a'], asEnv);
      moto.clearFaults();
      expectOneLineFailure(failed, 'PGSEAL_AWS_ACCESS_DENIED');
      for (const dek of deks) {
        for (const spelling of [dek.toString('hex'), dek.toString('base64'), dek.toString('base64url')]) expect(failed.stderr).not.toContain(spelling);
      }
      const plaintext = Buffer.from(deks[0]!);
      moto.fail({ operation: 'Encrypt', error: 'ThrottlingException', status: 400 });
      const error = await provider(keyA, { maxAttempts: 1 }).wrap(plaintext, { scope: 'default', purpose: 'data', version: 1, database: 'x' }).catch((e: unknown) => e);
      moto.clearFaults();
      expect(error).toMatchObject({ code: ErrorCodes.AWS_THROTTLED });
      expect((error as Error).cause).toBeUndefined();
      const told = JSON.stringify({ ...(error as object), message: (error as Error).message });
      for (const spelling of [plaintext.toString('hex'), plaintext.toString('base64')]) expect(told).not.toContain(spelling);
      expect(await snapshot()).toBe(data);
      expect((await db.sql<{ kek_ref: string }[]>`select distinct kek_ref from pgseal.keys where wrapped_key is not null`).map((r) => r.kek_ref))
        .toEqual([new LocalMasterKey(Buffer.from(envText, 'base64')).ref]);

      const toA = await runCli(['keys', 'rewrap', '--new-kms-key-id', 'alias/pgseal-a'], asEnv);
      expect(toA.code, toA.stderr).toBe(0);
      expect(toA.stdout).toContain(`kms:${keyA}`);
      expect(await snapshot()).toBe(data);
      await readsAll(asA);
      expectOneLineFailure(await runCli(['query', 'select email from contacts limit 1'], asEnv), 'PGSEAL_MASTER_KEY_MISMATCH');

      moto.reset();
      const toB = await runCli(['keys', 'rewrap', '--new-kms-key-id', keyB], asA);
      expect(toB.code, toB.stderr).toBe(0);
      expect(moto.count('ReEncrypt')).toBe(wrapped); // the data keys never left KMS
      expect(await snapshot()).toBe(data);
      await readsAll(asB);
      const refusedA = await runCli(['query', 'select email from contacts limit 1'], asA);
      expectOneLineFailure(refusedA, 'PGSEAL_MASTER_KEY_MISMATCH');
      expect(refusedA.stderr).toContain(`set PGSEAL_KMS_KEY_ID (or --kms-key-id) to ${keyB}`);

      const back = await runCli(['keys', 'rewrap'], { ...asB, PGSEAL_NEW_MASTER_KEY: backText });
      expect(back.code, back.stderr).toBe(0);
      expect(await snapshot()).toBe(data);
      await readsAll(asBack);
      expectOneLineFailure(await runCli(['query', 'select email from contacts limit 1'], asB), 'PGSEAL_MASTER_KEY_MISMATCH');

      const events = await db.sql<{ details: { from: string; to: string; versions: number } }[]>`
        select details from pgseal.encryption_audit_log where operation = 'key.rewrap' order by id`;
      expect(events.map((e) => [e.details.from, e.details.to, e.details.versions])).toEqual([
        [new LocalMasterKey(Buffer.from(envText, 'base64')).ref, `kms:${keyA}`, wrapped],
        [`kms:${keyA}`, `kms:${keyB}`, wrapped],
        [`kms:${keyB}`, new LocalMasterKey(Buffer.from(backText, 'base64')).ref, wrapped],
      ]);
    }, 120_000);
  });
});
