// Certificates made with the openssl CLI, and a real PostgreSQL that speaks TLS with them:
// a CA, a server certificate it signs (SANs IP:127.0.0.1 and DNS:pgseal-test.local, so
// "localhost" is a host name mismatch), a client certificate for a role, and a second,
// unrelated CA (the wrong CA).

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { startPostgres, type RunningPostgres } from '../../scripts/lib/embedded-postgres.js';

export const SERVER_DNS_NAME = 'pgseal-test.local';

export interface TestCertificates {
  dir: string;
  /** the CA that signed the server's (and the client's) certificate */
  ca: string;
  /** a CA that signed nothing here */
  otherCa: string;
  serverCert: string;
  serverKey: string;
  /** a client certificate (CN = role) and its key, signed by `ca` (or by `otherCa`) */
  clientCert(role: string, signer?: 'ca' | 'other-ca'): { cert: string; key: string };
  remove(): void;
}

const CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = pgseal-test
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:${SERVER_DNS_NAME}
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** uid and gid of the user the embedded server runs as when this process is root ("postgres") */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string): number => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  return { uid: id('-u'), gid: id('-g') };
}

export function makeCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'pgseal-tls-'));
  // the server (as root: the "postgres" user) reads its certificate and key from here
  chmodSync(dir, 0o755);
  const cfg = join(dir, 'openssl.cnf');
  writeFileSync(cfg, CONFIG);
  const makeCa = (name: string, cn: string): void => {
    openssl(['req', '-x509', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${cn}`, '-config', cfg, '-extensions', 'ca_ext'], dir);
  };
  const sign = (name: string, cn: string, ext: string, signer = 'ca'): void => {
    openssl(['req', '-new', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`, '-config', cfg], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.crt`, '-CAkey', `${signer}.key`, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-out', `${name}.crt`, '-extfile', cfg, '-extensions', ext], dir);
  };
  makeCa('ca', 'pgseal test CA');
  makeCa('other-ca', 'pgseal unrelated CA');
  sign('server', SERVER_DNS_NAME, 'server_ext');
  const serverKey = join(dir, 'server.key');
  // PostgreSQL refuses a key file others may read: 0600 and owned by the server's user
  chmodSync(serverKey, 0o600);
  const user = serverUser();
  if (user) chownSync(serverKey, user.uid, user.gid);
  for (const f of ['ca.crt', 'other-ca.crt', 'server.crt']) chmodSync(join(dir, f), 0o644);
  return {
    dir,
    ca: join(dir, 'ca.crt'),
    otherCa: join(dir, 'other-ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey,
    clientCert: (role, signer = 'ca') => {
      const name = `client-${role}-${signer}`;
      sign(name, role, 'client_ext', signer);
      chmodSync(join(dir, `${name}.key`), 0o600);
      return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A PostgreSQL with ssl = on, presenting `certs.serverCert`, trusting `certs.ca` for client certificates. */
export function startTlsPostgres(certs: TestCertificates, settings: Record<string, string> = {}): Promise<RunningPostgres> {
  return startPostgres({
    settings: { ssl: 'on', ssl_cert_file: certs.serverCert, ssl_key_file: certs.serverKey, ssl_ca_file: certs.ca, ssl_min_protocol_version: 'TLSv1.2', ...settings },
  });
}

/** Adds lines to the server's pg_hba.conf (first, so that they win, or last) and reloads it. */
export async function addHbaLines(admin: Sql, lines: string[], where: 'first' | 'last' = 'first'): Promise<void> {
  const [row] = await admin<{ hba_file: string }[]>`show hba_file`;
  const file = row!.hba_file;
  const before = readFileSync(file, 'utf8');
  const added = lines.join('\n') + '\n';
  writeFileSync(file, where === 'first' ? added + before : before + '\n' + added);
  await admin`select pg_reload_conf()`;
  // the postmaster reloads on SIGHUP, a moment later; pg_hba_file_rules reads the file itself
  await new Promise((resolve) => setTimeout(resolve, 500));
}

/** An IPv4 address of this machine that is not loopback, if it has one. */
export function nonLoopbackIPv4(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return undefined;
}

/** `url` with the query parameters set (and any others kept). */
export function withParams(url: string, params: Record<string, string>): string {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

/** `url` with another host. */
export function withHost(url: string, host: string): string {
  const u = new URL(url);
  u.hostname = host;
  return u.toString();
}
