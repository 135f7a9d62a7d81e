// The doctor's connection checks: is this connection encrypted (connection.tls), is the
// server it reached the one meant (connection.verify), and does the server keep others to
// TLS and SCRAM (connection.server_settings, connection.pg_hba). What was asked of TLS comes
// from the connection URL (tlsSettings in connect.ts); what happened, from the server.
// Neither the URL nor its password is ever printed.

import { tlsSettings, type TlsSettings } from '../connect.js';
import type { Check, CheckResult } from './check.js';

const area = 'connection' as const;
const VERIFY_FULL_FIX = 'connect with sslmode=verify-full&sslrootcert=/path/to/ca.pem in the URL (or PGSSLMODE and PGSSLROOTCERT), naming the CA that signed the server\'s certificate';
const SERVER_TLS_FIX = 'turn TLS on at the server (ssl = on, ssl_cert_file, ssl_key_file in postgresql.conf; pg_hba.conf lines "hostssl" rather than "host"), then ' + VERIFY_FULL_FIX;

interface SslRow {
  ssl: boolean | null;
  version: string | null;
  cipher: string | null;
  bits: number | null;
  client_cert: boolean | null;
  server_addr: string | null;
  loopback: boolean;
}

async function sslOfThisConnection(ctx: Parameters<Check>[0]): Promise<SslRow> {
  const [row] = await ctx.sql<SslRow[]>`
    select s.ssl, s.version, s.cipher, s.bits, s.client_dn is not null as client_cert,
           host(inet_server_addr()) as server_addr,
           coalesce(inet_server_addr() <<= inet '127.0.0.0/8' or inet_server_addr() = inet '::1'
                    or inet_server_addr() <<= inet '::ffff:127.0.0.0/104', false) as loopback
      from pg_stat_ssl s where s.pid = pg_backend_pid()`;
  return row ?? { ssl: null, version: null, cipher: null, bits: null, client_cert: null, server_addr: null, loopback: false };
}

function settingsOf(databaseUrl: string | undefined): TlsSettings | undefined {
  if (!databaseUrl) return undefined;
  try {
    return tlsSettings(databaseUrl);
  } catch {
    return undefined;
  }
}

const OLD_TLS = new Set(['SSLv3', 'TLSv1', 'TLSv1.1']);

const tlsCheck: Check = async (ctx) => {
  const id = 'connection.tls';
  const s = await sslOfThisConnection(ctx);
  const asked = settingsOf(ctx.databaseUrl);
  // inet_server_addr() is null over a Unix-domain socket
  const socket = s.server_addr === null;
  const where = socket ? 'a Unix-domain socket' : s.server_addr!;
  const details = { tls: s.ssl === true, version: s.version, cipher: s.cipher, bits: s.bits, clientCertificate: s.client_cert === true, serverAddress: s.server_addr, unixSocket: socket, loopback: s.loopback, sslmode: asked?.sslmode };
  if (s.ssl) {
    const summary = `TLS in use: ${s.version}, ${s.cipher}, ${s.bits}-bit${s.client_cert ? ', client certificate presented' : ''}`;
    if (s.version && OLD_TLS.has(s.version)) {
      return [{ id, area, status: 'warn', summary: `${summary}: ${s.version} is outdated`, fix: 'set ssl_min_protocol_version = \'TLSv1.2\' (or TLSv1.3) at the server', details }];
    }
    return [{ id, area, status: 'ok', summary, details }];
  }
  if (socket || s.loopback) {
    return [{
      id, area, status: 'warn',
      summary: `no TLS, over ${socket ? where : `the loopback address ${where}`}: the traffic does not leave this machine`,
      fix: `a server reached over the network must use TLS: ${SERVER_TLS_FIX}`,
      details,
    }];
  }
  return [{ id, area, status: 'fail', summary: `no TLS: this connection to ${where} is unencrypted (queries, results and passwords cross the network in clear)`, fix: SERVER_TLS_FIX, details }];
};

const verifyCheck: Check = async (ctx) => {
  const id = 'connection.verify';
  const asked = settingsOf(ctx.databaseUrl);
  if (!asked) {
    return [{ id, area, status: 'skip', summary: 'the connection URL is not known here, so neither is what TLS verifies', fix: 'run pgseal doctor with DATABASE_URL or --database-url (runDoctor: pass databaseUrl)' }];
  }
  const s = await sslOfThisConnection(ctx);
  const details = { sslmode: asked.sslmode, sslmodeSource: asked.sslmodeSource, verifyChain: asked.verifyChain, verifyHostName: asked.verifyHostName, rootcert: asked.rootcert, clientCertificate: asked.clientCert, host: asked.host };
  if (!s.ssl) return [{ id, area, status: 'skip', summary: `no TLS on this connection (sslmode=${asked.sslmode}): nothing to verify (see connection.tls)`, details }];
  if (asked.verifyHostName) {
    const ca = asked.rootcert === 'system' ? 'Node\'s default CAs' : `the CA in ${asked.rootcert}`;
    return [{ id, area, status: 'ok', summary: `sslmode=verify-full: the server's certificate is checked against ${ca} and the host name ${asked.host}`, details }];
  }
  const what = asked.verifyChain
    ? 'the server\'s certificate chain is checked but not its host name: any certificate from that CA passes'
    : 'the server\'s certificate is not checked: anyone between here and the server can pose as it';
  return [{ id, area, status: 'warn', summary: `sslmode=${asked.sslmode}: ${what}`, fix: VERIFY_FULL_FIX, details }];
};

interface SettingsRow {
  ssl: string | null;
  min_protocol: string | null;
  password_encryption: string | null;
}

const serverSettingsCheck: Check = async (ctx) => {
  const id = 'connection.server_settings';
  const [row] = await ctx.sql<SettingsRow[]>`
    select current_setting('ssl', true) as ssl,
           current_setting('ssl_min_protocol_version', true) as min_protocol,
           current_setting('password_encryption', true) as password_encryption`;
  const r = row ?? { ssl: null, min_protocol: null, password_encryption: null };
  const problems: string[] = [];
  const fixes: string[] = [];
  if (r.ssl !== 'on') {
    problems.push('the server offers no TLS');
    fixes.push('ssl = on with ssl_cert_file and ssl_key_file');
  }
  if (r.ssl === 'on' && r.min_protocol !== null && !['TLSv1.2', 'TLSv1.3'].includes(r.min_protocol)) {
    problems.push(`ssl_min_protocol_version ${r.min_protocol || '(any)'} allows TLS older than 1.2`);
    fixes.push('ssl_min_protocol_version = \'TLSv1.2\'');
  }
  if (r.password_encryption === 'md5') {
    problems.push('new passwords are stored as MD5 hashes');
    fixes.push('password_encryption = \'scram-sha-256\', then set each role\'s password again');
  }
  const found = `ssl = ${r.ssl ?? '?'}, ssl_min_protocol_version = ${r.min_protocol === null ? '?' : r.min_protocol || '(any)'}, password_encryption = ${r.password_encryption ?? '?'}`;
  const details = { ssl: r.ssl, ssl_min_protocol_version: r.min_protocol, password_encryption: r.password_encryption };
  if (problems.length === 0) return [{ id, area, status: 'ok', summary: found, details }];
  return [{ id, area, status: 'warn', summary: `${found}: ${problems.join('; ')}`, fix: `in postgresql.conf: ${fixes.join('; ')}`, details }];
};

interface HbaRow {
  line_number: number;
  type: string | null;
  database: string[] | null;
  user_name: string[] | null;
  address: string | null;
  netmask: string | null;
  auth_method: string | null;
  error: string | null;
}

/** The number of leading one bits of an IPv4 or IPv6 netmask. */
function prefixLength(netmask: string): number {
  const ones = (n: number): number => n.toString(2).replace(/0/g, '').length;
  if (netmask.includes('.')) return netmask.split('.').reduce((n, octet) => n + ones(Number(octet)), 0);
  const [head = '', tail = ''] = netmask.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  return [...h, ...t].reduce((n, group) => n + ones(parseInt(group, 16) || 0), 0);
}

/** A pg_hba address that only this machine can come from. */
function localAddress(address: string | null, netmask: string | null): boolean {
  if (address === null) return true;
  if (address === 'samehost' || address === 'localhost') return true;
  if (/^127\.\d+\.\d+\.\d+$/.test(address)) return netmask === null || prefixLength(netmask) >= 8;
  if (address === '::1') return netmask === null || prefixLength(netmask) === 128;
  return false;
}

function describeLine(r: HbaRow): string {
  const address = r.address === null ? '' : ` ${r.address}${r.netmask ? `/${prefixLength(r.netmask)}` : ''}`;
  return `line ${r.line_number}: ${r.type} ${(r.database ?? []).join(',')} ${(r.user_name ?? []).join(',')}${address} ${r.auth_method}`;
}

const WEAK_METHODS = new Set(['md5', 'password', 'trust']);

const pgHbaCheck: Check = async (ctx) => {
  const id = 'connection.pg_hba';
  let rows: HbaRow[];
  try {
    rows = await ctx.sql<HbaRow[]>`
      select line_number, type, database, user_name, address, netmask, auth_method, error
        from pg_catalog.pg_hba_file_rules order by line_number`;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === '42501') {
      return [{ id, area, status: 'skip', summary: 'pg_hba_file_rules is readable by superusers only, and this role is not one', fix: 'run pgseal doctor as a superuser to check pg_hba.conf' }];
    }
    if (code === '42P01' || code === '42883') {
      return [{ id, area, status: 'skip', summary: 'this server has no pg_hba_file_rules view (PostgreSQL before 10, or a managed service that hides it)', fix: 'check pg_hba.conf by hand: hostssl lines with scram-sha-256 (or cert)' }];
    }
    throw error;
  }
  const broken = rows.filter((r) => r.error !== null);
  const clear = rows.filter((r) => r.error === null && (r.type === 'host' || r.type === 'hostnossl') && r.auth_method !== 'reject' && !localAddress(r.address, r.netmask));
  const weak = rows.filter((r) => r.error === null && r.auth_method !== null && WEAK_METHODS.has(r.auth_method));
  const details = {
    lines: rows.length,
    withoutTls: clear.map(describeLine),
    weakMethods: weak.map(describeLine),
    errors: broken.map((r) => `line ${r.line_number}: ${r.error}`),
  };
  if (clear.length === 0 && weak.length === 0 && broken.length === 0) {
    return [{ id, area, status: 'ok', summary: `${rows.length} pg_hba.conf line(s): none lets another machine in without TLS, none uses md5, password or trust`, details }];
  }
  const parts: string[] = [];
  const fixes: string[] = [];
  if (clear.length > 0) {
    parts.push(`allowing non-TLS access from other machines: ${clear.map(describeLine).join('; ')}`);
    fixes.push('make those lines "hostssl" (and add "hostnossl ... reject" before them if need be)');
  }
  if (weak.length > 0) {
    parts.push(`with a method weaker than SCRAM: ${weak.map(describeLine).join('; ')}`);
    fixes.push('use scram-sha-256 (or cert) instead of md5, password or trust, with password_encryption = scram-sha-256 and passwords set again');
  }
  if (broken.length > 0) {
    parts.push(`that PostgreSQL cannot parse: ${details.errors.join('; ')}`);
    fixes.push('fix the lines pg_hba_file_rules reports errors for');
  }
  const result: CheckResult = { id, area, status: 'warn', summary: `pg_hba.conf lines ${parts.join('; lines ')}`, fix: `${fixes.join('; ')}; then select pg_reload_conf()`, details };
  return [result];
};

export const connectionChecks: Array<{ name: string; check: Check }> = [
  { name: 'tls', check: tlsCheck },
  { name: 'verify', check: verifyCheck },
  { name: 'server_settings', check: serverSettingsCheck },
  { name: 'pg_hba', check: pgHbaCheck },
];
