// TLS to PostgreSQL, against real servers: one with ssl = on and certificates made here by
// openssl (test/support/tls.ts), one without TLS listening on every address. verify-full
// with the right CA connects and the doctor says which TLS; a wrong CA, a wrong host name,
// a server without TLS, an unreadable CA file: each one line from the CLI, exit 1; a server
// without TLS over a non-loopback address fails connection.tls; client certificates.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startPostgres, type RunningPostgres } from '../../scripts/lib/embedded-postgres.js';
import { connect, tlsSettings } from '../../src/connect.js';
import { runCheck, type CheckResult, type DoctorContext } from '../../src/doctor/check.js';
import { connectionChecks } from '../../src/doctor/connection.js';
import { ErrorCodes, PgsealError, toPgsealError, withPgsealErrors } from '../../src/errors.js';
import { runCli, type CliResult } from '../support/cli.js';
import { addHbaLines, makeCertificates, nonLoopbackIPv4, SERVER_DNS_NAME, startTlsPostgres, withHost, withParams, type TestCertificates } from '../support/tls.js';

function expectOneLineFailure(r: CliResult, code: string): string {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stdout).toBe('');
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^pgseal: ${code}`));
  expect(r.stderr).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

const passwordOf = (url: string): string => decodeURIComponent(new URL(url).password);

/** The doctor's connection checks, as runDoctor runs them. */
async function connectionReport(sql: Sql, databaseUrl: string | undefined): Promise<Map<string, CheckResult>> {
  const ctx: DoctorContext = { sql, databaseUrl, options: { full: false, rotationDays: 90, graceDays: 30, sampleRows: 1000 }, now: new Date() };
  const results: CheckResult[] = [];
  for (const { name, check } of connectionChecks) results.push(...(await runCheck(name, 'connection', check, ctx)));
  return new Map(results.map((r) => [r.id, r]));
}

/** Runs `work` on a pgseal connection (src/connect.ts) to `url`, always closing it. */
async function using<T>(url: string, work: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = connect(url, { connectTimeout: 10 });
  try {
    return await work(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

async function failure(url: string): Promise<PgsealError> {
  return using(url, async (sql) => {
    const error = await withPgsealErrors(() => sql`select 1`).then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(PgsealError);
    // the connection goes back to the pool: a second query fails the same way, it does not hang
    const again = await withPgsealErrors(() => sql`select 1`).then(() => undefined, (e: unknown) => e);
    expect((again as PgsealError).code).toBe((error as PgsealError).code);
    return error as PgsealError;
  });
}

describe('tlsSettings: what a URL asks of TLS', () => {
  const base = 'postgres://u:secret@db.example.com:5432/app';

  it('verify-full checks the chain and the host name; the URL wins over the environment', () => {
    const s = tlsSettings(`${base}?sslmode=verify-full&sslrootcert=/etc/ca.pem`, { PGSSLMODE: 'require', PGSSLROOTCERT: '/other.pem' });
    expect(s).toMatchObject({ sslmode: 'verify-full', sslmodeSource: 'url', tlsRequired: true, verifyChain: true, verifyHostName: true, rootcert: '/etc/ca.pem', clientCert: false, host: 'db.example.com', port: 5432 });
  });

  it('falls back to PGSSLMODE, PGSSLROOTCERT, PGSSLCERT and PGSSLKEY', () => {
    const s = tlsSettings(base, { PGSSLMODE: 'verify-ca', PGSSLROOTCERT: '/ca.pem', PGSSLCERT: '/c.crt', PGSSLKEY: '/c.key' });
    expect(s).toMatchObject({ sslmode: 'verify-ca', sslmodeSource: 'environment', verifyChain: true, verifyHostName: false, rootcert: '/ca.pem', clientCert: true, sslcert: '/c.crt', sslkey: '/c.key' });
  });

  it('require verifies nothing, unless given a root certificate (then the chain, as libpq)', () => {
    expect(tlsSettings(`${base}?sslmode=require`, {})).toMatchObject({ tlsRequired: true, verifyChain: false, verifyHostName: false, rootcert: undefined });
    expect(tlsSettings(`${base}?sslmode=require&sslrootcert=/ca.pem`, {})).toMatchObject({ verifyChain: true, verifyHostName: false, rootcert: '/ca.pem' });
  });

  it('no sslmode: no TLS, as postgres.js; prefer: TLS when offered, not required', () => {
    expect(tlsSettings(base, {})).toMatchObject({ sslmode: 'disable', sslmodeSource: 'default', tlsAttempted: false, tlsRequired: false });
    expect(tlsSettings(`${base}?sslmode=prefer`, {})).toMatchObject({ tlsAttempted: true, tlsRequired: false, verifyChain: false });
  });

  it('sslrootcert=system means verify-full against Node\'s CAs, and refuses a weaker mode', () => {
    expect(tlsSettings(`${base}?sslrootcert=system`, {})).toMatchObject({ sslmode: 'verify-full', rootcert: 'system', verifyHostName: true });
    expect(() => tlsSettings(`${base}?sslmode=require&sslrootcert=system`, {})).toThrow(expect.objectContaining({ code: ErrorCodes.TLS_CONFIG }));
    expect(() => tlsSettings(`${base}?sslmode=verify-everything`, {})).toThrow(expect.objectContaining({ code: ErrorCodes.TLS_CONFIG }));
  });

  it('verify-ca without sslrootcert is refused: the public CAs with no host name check would accept anyone\'s certificate', () => {
    expect(() => tlsSettings('postgres://u@db.example.com/app?sslmode=verify-ca', {})).toThrow(expect.objectContaining({ code: ErrorCodes.TLS_CONFIG }));
  });

  it('a Unix-domain socket gets no TLS (as libpq)', () => {
    expect(tlsSettings('postgres://u@%2Fvar%2Frun%2Fpostgresql/app?sslmode=verify-full', {})).toMatchObject({ unixSocket: true, tlsAttempted: false, host: '/var/run/postgresql' });
  });
});

describe('TLS errors from the drivers, mapped', () => {
  it('a chain that does not verify, a host name not in the SANs, an expired certificate: TLS_VERIFY_FAILED', () => {
    const chain = toPgsealError(Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }));
    expect(chain).toMatchObject({ code: ErrorCodes.TLS_VERIFY_FAILED, message: expect.stringContaining('wrong CA'), hint: expect.stringContaining('sslrootcert') });
    const name = toPgsealError(Object.assign(new Error('Hostname/IP does not match'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID', host: 'db.internal', reason: 'Host: db.internal. is not in the cert\'s altnames: DNS:db.example.com' }));
    expect(name).toMatchObject({ code: ErrorCodes.TLS_VERIFY_FAILED, message: expect.stringContaining('host name mismatch'), hint: expect.stringContaining('SANs') });
    expect(name.message).toContain('db.internal');
    expect(toPgsealError(Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' })).code).toBe(ErrorCodes.TLS_VERIFY_FAILED);
  });

  it('node-postgres\'s "no TLS" (pgseal migrate): TLS_UNAVAILABLE', () => {
    expect(toPgsealError(new Error('The server does not support SSL connections')).code).toBe(ErrorCodes.TLS_UNAVAILABLE);
  });
});

describe('TLS against real servers', () => {
  let certs: TestCertificates;
  let tlsServer: RunningPostgres;
  let plainServer: RunningPostgres;
  const stops: Array<() => Promise<void> | void> = [];

  beforeAll(async () => {
    certs = makeCertificates();
    stops.push(() => certs.remove());
    [tlsServer, plainServer] = await Promise.all([startTlsPostgres(certs), startPostgres({ settings: { listen_addresses: '*' } })]);
    stops.push(() => tlsServer.stop(), () => plainServer.stop());
  });
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  const verifyFull = (ca = certs.ca, url = tlsServer.url()) => withParams(url, { sslmode: 'verify-full', sslrootcert: ca });

  it('verify-full with the right CA connects over TLS, and the doctor says which', async () => {
    const url = verifyFull();
    const report = await using(url, async (sql) => {
      const [row] = await sql<{ ssl: boolean; version: string }[]>`select ssl, version from pg_stat_ssl where pid = pg_backend_pid()`;
      expect(row).toMatchObject({ ssl: true, version: expect.stringMatching(/^TLSv1\.[23]$/) });
      return connectionReport(sql, url);
    });
    const tls = report.get('connection.tls')!;
    expect(tls.status).toBe('ok');
    expect(tls.details).toMatchObject({ tls: true, version: expect.stringMatching(/^TLSv1\.[23]$/), cipher: expect.any(String), bits: expect.any(Number) });
    expect(tls.summary).toContain(String(tls.details!.version));
    expect(tls.summary).toContain(String(tls.details!.cipher));
    expect(report.get('connection.verify')).toMatchObject({ status: 'ok', details: { sslmode: 'verify-full', verifyHostName: true, rootcert: certs.ca } });
    expect(report.get('connection.server_settings')).toMatchObject({ status: 'ok', details: { ssl: 'on', ssl_min_protocol_version: 'TLSv1.2', password_encryption: 'scram-sha-256' } });
    expect(report.get('connection.pg_hba')!.status).toBe('ok');
  });

  it('pgseal doctor --json over verify-full reports the TLS version and cipher, and no password', async () => {
    const url = verifyFull();
    const r = await runCli(['doctor', '--json'], { DATABASE_URL: url });
    const report = JSON.parse(r.stdout) as { results: CheckResult[] };
    const tls = report.results.find((c) => c.id === 'connection.tls');
    expect(tls, r.stderr).toMatchObject({ status: 'ok', details: { tls: true, version: expect.stringMatching(/^TLSv1\.[23]$/), cipher: expect.stringMatching(/\w/) } });
    expect(report.results.find((c) => c.id === 'connection.verify')?.status).toBe('ok');
    expect(r.stdout + r.stderr).not.toContain(passwordOf(url));
  });

  it('a certificate not signed by sslrootcert is refused: PGSEAL_TLS_VERIFY_FAILED, wrong CA', async () => {
    const url = verifyFull(certs.otherCa);
    const line = expectOneLineFailure(await runCli(['keys', 'list'], { DATABASE_URL: url }), ErrorCodes.TLS_VERIFY_FAILED);
    expect(line).toContain('wrong CA');
    expect(line).toContain(certs.otherCa);
    expect(line).toContain('sslrootcert');
    expect(line).not.toContain(passwordOf(url));
    const e = await failure(url);
    expect(e.code).toBe(ErrorCodes.TLS_VERIFY_FAILED);
    expect(e.message).toContain('wrong CA');
  });

  it('a host name not in the certificate\'s SANs is refused: PGSEAL_TLS_VERIFY_FAILED, host name mismatch', async () => {
    // the certificate names 127.0.0.1 and pgseal-test.local; "localhost" reaches the same server
    const url = withHost(verifyFull(), 'localhost');
    const line = expectOneLineFailure(await runCli(['keys', 'list'], { DATABASE_URL: url }), ErrorCodes.TLS_VERIFY_FAILED);
    expect(line).toContain('host name mismatch');
    expect(line).toContain('localhost');
    expect(line).toContain(SERVER_DNS_NAME);
    expect(line).toContain('SANs');
    expect((await failure(url)).code).toBe(ErrorCodes.TLS_VERIFY_FAILED);
    // verify-ca checks the chain only: the same URL connects, and the doctor warns
    const ca = withParams(url, { sslmode: 'verify-ca' });
    const report = await using(ca, (sql) => connectionReport(sql, ca));
    expect(report.get('connection.tls')!.status).toBe('ok');
    expect(report.get('connection.verify')).toMatchObject({ status: 'warn', fix: expect.stringContaining('sslmode=verify-full&sslrootcert=') });
  });

  it('PGSSLMODE and PGSSLROOTCERT apply when the URL says nothing', async () => {
    const env = { DATABASE_URL: tlsServer.url(), PGSSLMODE: 'verify-full' };
    expectOneLineFailure(await runCli(['keys', 'list'], { ...env, PGSSLROOTCERT: certs.otherCa }), ErrorCodes.TLS_VERIFY_FAILED);
    const r = await runCli(['doctor', '--json'], { ...env, PGSSLROOTCERT: certs.ca });
    const report = JSON.parse(r.stdout) as { results: CheckResult[] };
    expect(report.results.find((c) => c.id === 'connection.verify'), r.stderr).toMatchObject({ status: 'ok', details: { sslmodeSource: 'environment', rootcert: certs.ca } });
  });

  it('pgseal migrate (node-postgres underneath) takes the same TLS: PGSSLROOTCERT honoured, a wrong CA refused', async () => {
    const env = { DATABASE_URL: tlsServer.url(), PGSSLMODE: 'verify-full' };
    expectOneLineFailure(await runCli(['migrate', 'up'], { ...env, PGSSLROOTCERT: certs.otherCa }), ErrorCodes.TLS_VERIFY_FAILED);
    const up = await runCli(['migrate', 'up'], { ...env, PGSSLROOTCERT: certs.ca });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stderr).not.toMatch(/SECURITY WARNING/);
    const down = await runCli(['migrate', 'down', '--count', '99'], { ...env, PGSSLROOTCERT: certs.ca });
    expect(down.code, down.stderr).toBe(0);
  });

  it('sslmode=require encrypts without verifying: connects with any CA, and the doctor warns', async () => {
    const url = withParams(tlsServer.url(), { sslmode: 'require' });
    const report = await using(url, (sql) => connectionReport(sql, url));
    expect(report.get('connection.tls')!.status).toBe('ok');
    expect(report.get('connection.verify')).toMatchObject({ status: 'warn', summary: expect.stringContaining('not checked') });
  });

  it('a CA file that cannot be read: PGSEAL_TLS_CONFIG naming the file, never its content', async () => {
    const missing = join(certs.dir, 'no-such-ca.pem');
    const line = expectOneLineFailure(await runCli(['keys', 'list'], { DATABASE_URL: verifyFull(missing) }), ErrorCodes.TLS_CONFIG);
    expect(line).toContain(missing);
    const notPem = join(certs.dir, 'not-a-ca.pem');
    writeFileSync(notPem, 'this-is-not-a-certificate-7f3a9c\n');
    const bad = expectOneLineFailure(await runCli(['keys', 'list'], { DATABASE_URL: verifyFull(notPem) }), ErrorCodes.TLS_CONFIG);
    expect(bad).toContain(notPem);
    expect(bad).not.toContain('7f3a9c');
  });

  it('verify-full to a port nobody listens on: PGSEAL_DB_UNREACHABLE, as without TLS', async () => {
    const port = await freePort();
    const line = expectOneLineFailure(await runCli(['keys', 'list'], { DATABASE_URL: verifyFull(certs.ca, `postgres://nobody@127.0.0.1:${port}/nowhere`) }), ErrorCodes.DB_UNREACHABLE);
    expect(line).toContain(`127.0.0.1:${port}`);
  });

  it('sslmode=require against a server without TLS: PGSEAL_TLS_UNAVAILABLE', async () => {
    const url = withParams(plainServer.url(), { sslmode: 'require' });
    const line = expectOneLineFailure(await runCli(['keys', 'list'], { DATABASE_URL: url }), ErrorCodes.TLS_UNAVAILABLE);
    expect(line).toContain('does not offer TLS');
    expect((await failure(verifyFull(certs.ca, plainServer.url()))).code).toBe(ErrorCodes.TLS_UNAVAILABLE);
  });

  it('no TLS over loopback is a warning: the traffic stays on this machine', async () => {
    const url = plainServer.url();
    const report = await using(url, (sql) => connectionReport(sql, url));
    expect(report.get('connection.tls')).toMatchObject({ status: 'warn', details: { tls: false, loopback: true } });
    expect(report.get('connection.verify')!.status).toBe('skip');
    expect(report.get('connection.server_settings')).toMatchObject({ status: 'warn', details: { ssl: 'off' } });
  });

  it('no TLS over a non-loopback address fails connection.tls, and pg_hba lists the line that allows it', async (ctx) => {
    const ip = nonLoopbackIPv4();
    if (!ip) return ctx.skip('this machine has no non-loopback IPv4 address to connect through');
    // initdb's pg_hba.conf admits loopback only
    await using(plainServer.url(), (sql) => addHbaLines(sql, [`host all all ${ip}/32 scram-sha-256`, 'host all all 198.51.100.0/24 md5'], 'last'));
    const url = withHost(plainServer.url(), ip);
    const report = await using(url, (sql) => connectionReport(sql, url));
    expect(report.get('connection.tls')).toMatchObject({ status: 'fail', details: { tls: false, loopback: false, serverAddress: ip } });
    expect(report.get('connection.tls')!.fix).toContain('sslmode=verify-full');
    const hba = report.get('connection.pg_hba')!;
    expect(hba.status).toBe('warn');
    expect(hba.details!.withoutTls).toEqual([expect.stringContaining(`host all all ${ip}/32 scram-sha-256`), expect.stringContaining('198.51.100.0/24 md5')]);
    expect(hba.details!.weakMethods).toEqual([expect.stringContaining('198.51.100.0/24 md5')]);
  });

  it('a role that must present a client certificate (pg_hba "hostssl ... cert")', async () => {
    const role = 'pgseal_cert_user';
    await using(tlsServer.url(), async (sql) => {
      await sql.unsafe(`create role ${role} login`);
      await addHbaLines(sql, [`hostssl all ${role} 127.0.0.1/32 cert`], 'first');
    });
    const asRole = (() => {
      const u = new URL(verifyFull());
      u.username = role;
      u.password = '';
      return u.toString();
    })();
    const mine = certs.clientCert(role);
    const url = withParams(asRole, { sslcert: mine.cert, sslkey: mine.key });
    const report = await using(url, async (sql) => {
      const [row] = await sql<{ user: string; client_dn: string }[]>`select current_user as user, client_dn from pg_stat_ssl where pid = pg_backend_pid()`;
      expect(row).toEqual({ user: role, client_dn: `/CN=${role}` });
      return connectionReport(sql, url);
    });
    expect(report.get('connection.tls')).toMatchObject({ status: 'ok', summary: expect.stringContaining('client certificate'), details: { clientCertificate: true } });
    expect(report.get('connection.verify')).toMatchObject({ status: 'ok', details: { clientCertificate: true } });
    // no certificate: the server says so, and the fix names sslcert and sslkey
    const none = await failure(asRole);
    expect(none.code).toBe(ErrorCodes.DB_AUTH_FAILED);
    expect(none.hint).toContain('sslcert');
    // a certificate from another CA: the server refuses it (in TLS 1.3 after the client's
    // handshake is done: its alert, or the reset the client's first write meets)
    const foreign = certs.clientCert(role, 'other-ca');
    const line = expectOneLineFailure(await runCli(['keys', 'list'], { DATABASE_URL: withParams(asRole, { sslcert: foreign.cert, sslkey: foreign.key }) }), ErrorCodes.TLS_VERIFY_FAILED);
    expect(line).toContain('refused this client\'s TLS certificate');
    expect(line).toContain('sslcert and sslkey');
    // half a client certificate is a configuration error, before any connection
    expectOneLineFailure(await runCli(['keys', 'list'], { DATABASE_URL: withParams(asRole, { sslcert: mine.cert }) }), ErrorCodes.TLS_CONFIG);
  });
});
