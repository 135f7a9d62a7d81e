// Metrics: after typed-helper reads and writes in client and database mode, values that do
// not open, pgseal().encrypt/decrypt, an async access log that overflows, KMS calls (moto_server,
// the KMS-compatible server of the AWS tests) and a re-encryption run, pgseal's registry is served over HTTP as an application
// would serve it, scraped, and the counters are checked label by label; no label or value of
// the scrape holds a plaintext, a key or a row id. Then the doctor's exposition.

import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { motoAvailable, startMoto } from '../../scripts/lib/moto.js';
import { Counter, Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AwsKmsMasterKey, column, defineTable, doctorExposition, ErrorCodes, initKeys, LocalMasterKey, mergedRegistry, metricsRegistry, pgseal, protectColumn,
  reencrypt, registerMetrics, rotateKey, type Pgseal,
} from '../../src/index.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

let db: TestDatabase;
let seal: Pgseal;
let server: Server;
const masterBytes = randomBytes(32);
const master = () => new LocalMasterKey(Buffer.from(masterBytes));

const people = defineTable({
  name: 'm_people',
  primaryKey: 'id',
  columns: {
    id: column.plain<string>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    note: column.text(),
  },
});

const ids = Array.from({ length: 15 }, () => randomUUID());
const emails = ids.map((_, i) => `metrics.person${i}@example.com`);
const notes = ids.map((_, i) => (i % 5 === 4 ? null : `private note number ${i} of the metrics test`));
/** every key this process held, as hex: none may appear in a scrape */
const keyHex = new Set<string>([masterBytes.toString('hex'), masterBytes.toString('base64')]);

beforeAll(async () => {
  db = await createDatabase({ migrated: true });
  await initKeys(db.sql, master());
  await db.sql`create table m_people (id uuid primary key)`;
  await protectColumn(db.sql, { table: 'm_people', column: 'email', searchable: true, normalizer: 'email' });
  await protectColumn(db.sql, { table: 'm_people', column: 'note' });
  seal = pgseal({ sql: db.sql, masterKey: master(), crypto: 'client' });
  server = createServer((_req, res) => {
    const registry = metricsRegistry();
    registry.metrics().then((text) => {
      res.setHeader('Content-Type', registry.contentType);
      res.end(text);
    }, (error: unknown) => {
      res.statusCode = 500;
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await seal?.close();
  await db?.drop();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

async function scrape(): Promise<{ text: string; contentType: string | null; samples: Sample[] }> {
  const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    expect(m, line).not.toBeNull();
    const labels: Record<string, string> = {};
    for (const l of m![2]?.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g) ?? []) labels[l[1]!] = l[2]!;
    samples.push({ name: m![1]!, labels, value: Number(m![3]) });
  }
  return { text, contentType: res.headers.get('content-type'), samples };
}

/** The value of the one sample of `name` with these labels (0 when absent). */
function value(samples: Sample[], name: string, labels: Record<string, string>): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  expect(found.length, `${name} ${JSON.stringify(labels)}`).toBeLessThanOrEqual(1);
  return found[0]?.value ?? 0;
}

describe('metrics', () => {

  const moto = motoAvailable();
  it.skipIf(moto !== true)(`counts KMS calls and the KMS cache against moto_server${moto === true ? '' : ` (skipped: ${moto.reason})`}`, async () => {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
    const server = await startMoto();
    const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
    const admin = new KMSClient({ endpoint: server.direct, region: 'us-east-1', credentials });
    try {
      const key = (await admin.send(new CreateKeyCommand({}))).KeyMetadata!.Arn!;
      // one Decrypt serves two unwraps; GenerateDataKey throttled past its (one) attempt
      const kms = new AwsKmsMasterKey({ keyId: key, endpoint: server.endpoint, region: 'us-east-1', credentials, maxAttempts: 1 });
      const context = { scope: 'default', purpose: 'data', version: 1, database: randomUUID() };
      const made = await kms.generateDataKey(context);
      made.plaintext.fill(0);
      (await kms.unwrap(made.wrapped, context)).fill(0);
      (await kms.unwrap(made.wrapped, context)).fill(0);
      expect(server.count('Decrypt')).toBe(1);
      server.fail({ operation: 'GenerateDataKey', error: 'ThrottlingException', status: 400 });
      await expect(kms.generateDataKey(context)).rejects.toMatchObject({ code: ErrorCodes.AWS_THROTTLED });
      kms.close();
      const { samples } = await scrape();
      expect(value(samples, 'pgseal_key_cache_misses_total', { cache: 'kms' })).toBe(1);
      expect(value(samples, 'pgseal_key_cache_hits_total', { cache: 'kms' })).toBe(1);
      expect(value(samples, 'pgseal_kms_requests_total', { operation: 'Decrypt', outcome: 'ok' })).toBe(1);
      expect(value(samples, 'pgseal_kms_requests_total', { operation: 'DescribeKey', outcome: 'ok' })).toBe(1);
      expect(value(samples, 'pgseal_kms_requests_total', { operation: 'GenerateDataKey', outcome: 'ok' })).toBe(1);
      expect(value(samples, 'pgseal_kms_requests_total', { operation: 'GenerateDataKey', outcome: 'throttled' })).toBe(1);
      expect(value(samples, 'pgseal_kms_requests_total', { operation: 'Encrypt', outcome: 'error' })).toBe(0);
      expect(value(samples, 'pgseal_kms_request_duration_seconds_count', { operation: 'Decrypt' })).toBe(1);
    } finally {
      admin.destroy();
      await server.stop();
    }
  });
  it('counts encryptions, decryptions, failures, key-cache use, KMS calls, the access log and re-encryption, served over HTTP with no secret in it', async () => {
    // client mode: 10 rows written and read back in several ways
    const client = seal.table(people);
    for (let i = 0; i < 10; i++) await client.insert({ id: ids[i]!, email: emails[i]!, note: notes[i]! });
    for (let i = 0; i < 10; i++) expect((await client.findByPk(ids[i]!))?.email).toBe(emails[i]);
    expect((await client.findBy('email', emails[3]!)).map((r) => r.id)).toEqual([ids[3]]);
    // database mode: 5 rows more, read back in SQL
    const inDb = seal.table(people, { crypto: 'database' });
    for (let i = 10; i < 15; i++) await inDb.insert({ id: ids[i]!, email: emails[i]!, note: notes[i]! });
    for (let i = 0; i < 15; i++) expect((await inDb.findByPk(ids[i]!))?.note).toBe(notes[i]);
    const listed = await client.list({ limit: 100 });
    expect(listed.rows).toHaveLength(15);

    // pgseal().encrypt / decrypt: column 'ad_hoc'; a wrong context does not open
    const envelope = await seal.encrypt('an ad hoc secret', 'metrics.ad_hoc');
    expect(await seal.decryptText(envelope, 'metrics.ad_hoc')).toBe('an ad hoc secret');
    await expect(seal.decrypt(envelope, 'metrics.other')).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });

    // a tampered value fails in both modes (and is restored for the re-encryption)
    const stored = await db.sql<{ id: string; note: Buffer }[]>`select id, note from m_people where id in (${ids[0]!}::uuid, ${ids[1]!}::uuid)`;
    await db.sql`update m_people set note = set_byte(note, length(note) - 1, get_byte(note, length(note) - 1) # 1) where id = ${ids[0]!}::uuid`;
    await expect(client.findByPk(ids[0]!)).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
    await expect(inDb.findByPk(ids[0]!)).rejects.toMatchObject({ code: ErrorCodes.AUTHENTICATION_FAILED });
    await db.sql`update m_people set note = convert_to('plain words', 'UTF8') where id = ${ids[1]!}::uuid`;
    await expect(client.findByPk(ids[1]!)).rejects.toMatchObject({ code: ErrorCodes.MALFORMED_ENVELOPE });
    for (const r of stored) await db.sql`update m_people set note = ${r.note} where id = ${r.id}::uuid`;

    // the keys this process held, to look for in the scrape
    await seal.keyring.ready();
    const active = seal.keyring.loadedActiveKey('default')!;
    keyHex.add(active.encKey.toString('hex')).add(active.macKey.toString('hex'));
    const indexKey = seal.keyring.loadedIndexKey('default')!;
    keyHex.add(indexKey.toString('hex'));

    // an async access log that overflows: 15 rows x 2 columns read, room for 4
    const logged = pgseal({ sql: db.sql, masterKey: master(), accessLog: { mode: 'async', maxBuffered: 4, flushIntervalMs: 600_000 } });
    expect((await logged.table(people).list({ limit: 100 })).rows).toHaveLength(15);
    const whileBuffered = await scrape();
    expect(value(whileBuffered.samples, 'pgseal_access_log_buffered', {})).toBe(4);
    expect(value(whileBuffered.samples, 'pgseal_access_log_buffer_capacity', {})).toBe(4);
    expect(value(whileBuffered.samples, 'pgseal_access_log_dropped_total', {})).toBe(26);
    await logged.close();

    // re-encryption after a rotation
    await rotateKey(db.sql, master(), 'default');
    const result = await reencrypt(db.sql, seal.keyring, { batchSize: 4 });
    expect(result.state).toBe('done');
    expect(result.rows).toBe(15 + notes.filter((n) => n !== null).length);
    await seal.keyring.ready();
    const rotated = seal.keyring.loadedActiveKey('default')!;
    keyHex.add(rotated.encKey.toString('hex')).add(rotated.macKey.toString('hex'));

    const { text, contentType, samples } = await scrape();
    expect(contentType).toBe(Registry.PROMETHEUS_CONTENT_TYPE);
    const email = { column: 'public.m_people.email' };
    const note = { column: 'public.m_people.note' };

    // client mode: every sealed value counted (the blind index is not), opened values per column (NULLs not)
    expect(value(samples, 'pgseal_encryptions_total', { ...email, mode: 'client' })).toBe(10);
    expect(value(samples, 'pgseal_encryptions_total', { ...note, mode: 'client' })).toBe(notes.slice(0, 10).filter((n) => n !== null).length);
    // 10 inserts returning their row, 10 lookups, 1 search, two listings of 15 (the second by the logging instance),
    // not the reads that failed; the latency once per statement
    expect(value(samples, 'pgseal_decryptions_total', { ...email, mode: 'client' })).toBe(10 + 10 + 1 + 15 + 15);
    expect(value(samples, 'pgseal_decrypt_duration_seconds_count', { ...email, mode: 'client' })).toBe(10 + 10 + 1 + 1 + 1);
    expect(value(samples, 'pgseal_decrypt_duration_seconds_bucket', { ...email, mode: 'client', le: '+Inf' })).toBe(23);
    expect(value(samples, 'pgseal_decryptions_total', { ...note, mode: 'client' })).toBe(8 + 8 + 1 + 12 + 12);
    expect(value(samples, 'pgseal_decrypt_duration_seconds_sum', { ...email, mode: 'client' })).toBeGreaterThan(0);
    expect(value(samples, 'pgseal_encrypt_duration_seconds_count', { ...email, mode: 'client' })).toBe(10);
    // database mode: per statement, rows x the table's protected columns
    expect(value(samples, 'pgseal_encryptions_total', { ...email, mode: 'database' })).toBe(5);
    expect(value(samples, 'pgseal_decryptions_total', { ...note, mode: 'database' })).toBe(15);
    expect(value(samples, 'pgseal_decrypt_duration_seconds_count', { ...note, mode: 'database' })).toBe(15);
    // pgseal().encrypt / decrypt
    expect(value(samples, 'pgseal_encryptions_total', { column: 'ad_hoc', mode: 'client' })).toBe(1);
    expect(value(samples, 'pgseal_decryptions_total', { column: 'ad_hoc', mode: 'client' })).toBe(1);

    // values that did not open: the tampered row in both modes, the wrong context, the plaintext
    expect(value(samples, 'pgseal_decrypt_failures_total', { code: ErrorCodes.AUTHENTICATION_FAILED })).toBe(3);
    expect(value(samples, 'pgseal_decrypt_failures_total', { code: ErrorCodes.MALFORMED_ENVELOPE })).toBe(1);
    expect(value(samples, 'pgseal_decrypt_failures_total', { code: ErrorCodes.KEY_DESTROYED })).toBe(0);
    expect(samples.some((s) => s.name === 'pgseal_decrypt_failures_total' && s.labels.code === ErrorCodes.KEY_RETIRED)).toBe(true);

    // key caches
    expect(value(samples, 'pgseal_key_cache_misses_total', { cache: 'keyring' })).toBeGreaterThanOrEqual(1);
    expect(value(samples, 'pgseal_key_cache_hits_total', { cache: 'keyring' })).toBeGreaterThan(20);
    expect(value(samples, 'pgseal_keyring_loads_total', { outcome: 'ok' })).toBeGreaterThanOrEqual(2);

    // the access log once closed: its buffer gone, its drops kept
    expect(value(samples, 'pgseal_access_log_buffered', {})).toBe(0);
    expect(value(samples, 'pgseal_access_log_dropped_total', {})).toBe(26);
    expect(value(samples, 'pgseal_access_log_flush_failures_total', {})).toBe(0);

    // re-encryption: the rows it moved, per column; nothing left
    for (const c of result.columns) {
      const labels = { column: c.column, kind: 'data' };
      expect(value(samples, 'pgseal_reencrypt_rows_total', labels)).toBe(c.rowsDone);
      expect(value(samples, 'pgseal_reencrypt_batches_total', labels)).toBe(c.batches);
      expect(value(samples, 'pgseal_reencrypt_rows_remaining', labels)).toBe(0);
    }
    expect(result.columns.map((c) => c.column).sort()).toEqual(['public.m_people.email', 'public.m_people.note']);
    expect(samples.filter((s) => s.name === 'pgseal_reencrypt_rows_total').reduce((n, s) => n + s.value, 0)).toBe(result.rows);

    // nothing secret: only these label names, column labels are column names, no value, key or row id anywhere
    const labelNames = new Set(samples.flatMap((s) => Object.keys(s.labels)));
    expect([...labelNames].filter((l) => !['column', 'mode', 'code', 'cache', 'operation', 'outcome', 'kind', 'le'].includes(l))).toEqual([]);
    for (const s of samples) if (s.labels.column !== undefined) expect(s.labels.column).toMatch(/^(ad_hoc|public\.m_people\.(email|note))$/);
    for (const secret of [...emails, ...notes.filter((n): n is string => n !== null), 'an ad hoc secret', 'plain words', ...ids, ...keyHex]) {
      expect(text.includes(secret), 'the scrape holds a value, row id or key').toBe(false);
      expect(text.toLowerCase().includes(secret.toLowerCase().slice(0, 24))).toBe(false);
    }
  });

  it('joins the application\'s registry (registerMetrics, mergedRegistry) without taking prom-client\'s global one', async () => {
    const app = new Registry();
    new Counter({ name: 'app_requests_total', help: 'the application\'s own', registers: [app] });
    registerMetrics(app);
    registerMetrics(app); // again: nothing new, no error
    const text = await app.metrics();
    expect(text).toContain('app_requests_total 0');
    expect(text).toMatch(/^pgseal_decryptions_total\{column="public\.m_people\.email",mode="client"\} \d+$/m);
    const other = new Registry();
    new Counter({ name: 'other_total', help: 'another', registers: [other] });
    const merged = await mergedRegistry(other).metrics();
    expect(merged).toContain('other_total 0');
    expect(merged).toContain('# TYPE pgseal_decrypt_duration_seconds histogram');
    const { register } = await import('prom-client');
    expect(register.getSingleMetric('pgseal_decryptions_total')).toBeUndefined();
  });

  it('doctorExposition: one gauge per check (0 ok, 1 warn, 2 fail, -1 skip), the run\'s time, and the process\'s metrics', async () => {
    const text = await doctorExposition([
      { id: 'keys.rotation', area: 'keys', status: 'warn' },
      { id: 'data.plaintext', area: 'data', status: 'fail' },
      { id: 'logs.verify', area: 'logs', status: 'ok' },
      { id: 'connection.tls', area: 'connection', status: 'skip' },
    ]);
    expect(text).toContain('# TYPE pgseal_doctor_check_status gauge');
    const lines = text.split('\n').filter((l) => l.startsWith('pgseal_doctor_check_status{'));
    expect(lines).toEqual([
      'pgseal_doctor_check_status{check="keys.rotation",area="keys"} 1',
      'pgseal_doctor_check_status{check="data.plaintext",area="data"} 2',
      'pgseal_doctor_check_status{check="logs.verify",area="logs"} 0',
      'pgseal_doctor_check_status{check="connection.tls",area="connection"} -1',
    ]);
    const at = Number(/^pgseal_doctor_last_run_timestamp_seconds (\S+)$/m.exec(text)?.[1]);
    expect(Math.abs(at - Date.now() / 1000)).toBeLessThan(60);
    expect(text).toContain('pgseal_decryptions_total{');
    // a second exposition does not collide with the first
    expect(await doctorExposition([])).not.toContain('pgseal_doctor_check_status{');
  });
});
