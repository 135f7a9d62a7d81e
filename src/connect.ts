// A postgres.js client configured for pgseal's own commands. Library users pass their own.
//
// TLS is pgseal's to set up, because postgres.js ignores sslrootcert=/path and treats
// sslmode=require as "no verification" only: the libpq parameters sslmode, sslrootcert,
// sslcert, sslkey (and sslpassword) are read from the URL, else from PGSSLMODE,
// PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, taken out of the URL handed to postgres.js, and for
// require / verify-ca / verify-full pgseal opens the socket itself (the SSLRequest, then the
// TLS handshake with the options below). A server that answers "no TLS" then fails with
// PGSEAL_TLS_UNAVAILABLE, a certificate that does not verify with PGSEAL_TLS_VERIFY_FAILED
// (errors.ts maps both), an unreadable CA, certificate or key file with PGSEAL_TLS_CONFIG.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP, Socket } from 'node:net';
import { Duplex } from 'node:stream';
import tls, { type ConnectionOptions, type TLSSocket } from 'node:tls';
import postgres, { type Sql } from 'postgres';
import { ErrorCodes, PgsealError } from './errors.js';

export interface ConnectOptions {
  max?: number;
  /** seconds */
  connectTimeout?: number;
}

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type SslMode = (typeof SSL_MODES)[number];

/** The URL parameters pgseal handles itself, and the environment variable each falls back to. */
const TLS_PARAMS = { sslmode: 'PGSSLMODE', sslrootcert: 'PGSSLROOTCERT', sslcert: 'PGSSLCERT', sslkey: 'PGSSLKEY', sslpassword: 'PGSSLPASSWORD' } as const;

/** What a database URL (and the environment) asks of TLS. Paths, never file contents or the password. */
export interface TlsSettings {
  sslmode: SslMode;
  /** where sslmode came from: the URL, PGSSLMODE, or neither (then TLS is off, as in postgres.js) */
  sslmodeSource: 'url' | 'environment' | 'default';
  /** TLS is tried (require and up: insisted on; prefer and allow: used when the server offers it) */
  tlsAttempted: boolean;
  tlsRequired: boolean;
  /** the server's certificate chain is checked against rootcert */
  verifyChain: boolean;
  /** the host name (or IP address) connected to is checked against the certificate's SANs */
  verifyHostName: boolean;
  /** the CA file (sslrootcert), 'system' for Node's default CAs, undefined when nothing is verified */
  rootcert: string | undefined;
  /** a client certificate is presented (sslcert and sslkey) */
  clientCert: boolean;
  sslcert: string | undefined;
  sslkey: string | undefined;
  /** the host connected to, as given (a name, an IP address, or a Unix socket directory) */
  host: string;
  port: number;
  /** a Unix-domain socket: no TLS there (as libpq), and traffic stays on the machine */
  unixSocket: boolean;
}

function urlOf(databaseUrl: string): URL {
  try {
    return new URL(databaseUrl);
  } catch {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the database URL is not a valid URL', {
      hint: 'use the form postgres://user:password@host:5432/database',
    });
  }
}

const param = (url: URL, name: string): string | undefined => {
  const v = url.searchParams.get(name);
  return v === null || v === '' ? undefined : v;
};

/**
 * What `databaseUrl` asks of TLS, read the way connect() reads it: pure (no file is read),
 * for the doctor and for tests. Throws PGSEAL_TLS_CONFIG for an sslmode that does not exist,
 * and for sslrootcert=system with anything weaker than verify-full (as libpq does).
 */
export function tlsSettings(databaseUrl: string, env: NodeJS.ProcessEnv = process.env): TlsSettings {
  const url = urlOf(databaseUrl);
  const pick = (name: keyof typeof TLS_PARAMS): string | undefined => param(url, name) ?? (env[TLS_PARAMS[name]] || undefined);

  let raw = param(url, 'sslmode');
  let source: TlsSettings['sslmodeSource'] = 'url';
  if (raw === undefined) {
    // postgres.js's own ?ssl= parameter: a mode name, true (verify against Node's CAs) or false
    const ssl = param(url, 'ssl');
    if (ssl !== undefined) raw = ssl === 'true' ? 'verify-full' : ssl === 'false' ? 'disable' : ssl;
  }
  if (raw === undefined && env.PGSSLMODE) {
    raw = env.PGSSLMODE;
    source = 'environment';
  }
  const rootcertParam = pick('sslrootcert');
  if (raw === undefined && rootcertParam === 'system') raw = 'verify-full'; // libpq 16 and postgres.js
  if (raw === undefined) source = 'default';
  const sslmode = (raw ?? 'disable') as SslMode;
  if (!SSL_MODES.includes(sslmode)) {
    throw new PgsealError(ErrorCodes.TLS_CONFIG, `sslmode=${raw} is not an sslmode`, { hint: `use one of ${SSL_MODES.join(', ')} (verify-full in production)` });
  }
  if (sslmode === 'verify-ca' && rootcertParam === undefined) {
    // the public CAs without a host name check would accept any publicly signed certificate (libpq refuses too)
    throw new PgsealError(ErrorCodes.TLS_CONFIG, 'sslmode=verify-ca needs sslrootcert: the CA that signed the server\'s certificate', {
      hint: 'set sslrootcert (or PGSSLROOTCERT) to that CA\'s PEM file, or use sslmode=verify-full',
    });
  }
  if (rootcertParam === 'system' && sslmode !== 'verify-full') {
    throw new PgsealError(ErrorCodes.TLS_CONFIG, `sslrootcert=system needs sslmode=verify-full, not ${sslmode}`, {
      hint: 'the public CAs sign certificates for anyone: only a host name check makes them mean something; use sslmode=verify-full',
    });
  }

  let host = url.hostname ? decodeURIComponent(url.hostname) : (env.PGHOST || 'localhost');
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(url.port || env.PGPORT || 5432);
  const unixSocket = host.includes('/');
  const sslcert = pick('sslcert');
  const sslkey = pick('sslkey');

  const tlsAttempted = !unixSocket && sslmode !== 'disable';
  const tlsRequired = tlsAttempted && (sslmode === 'require' || sslmode === 'verify-ca' || sslmode === 'verify-full');
  // libpq: with a root certificate given, require verifies the chain as verify-ca does
  const verifyChain = tlsRequired && (sslmode !== 'require' || rootcertParam !== undefined);
  return {
    sslmode,
    sslmodeSource: source,
    tlsAttempted,
    tlsRequired,
    verifyChain,
    verifyHostName: tlsRequired && sslmode === 'verify-full',
    rootcert: verifyChain ? (rootcertParam ?? 'system') : rootcertParam,
    clientCert: sslcert !== undefined && sslkey !== undefined,
    sslcert,
    sslkey,
    host,
    port,
    unixSocket,
  };
}

function readTlsFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as { code?: string }).code ?? 'unreadable';
    throw new PgsealError(ErrorCodes.TLS_CONFIG, `cannot read the ${what} file ${path} (${code})`, {
      hint: 'check the path and that this user may read the file',
    });
  }
}

/** Node's TLS options for what `settings` asks: the files are read (and checked) here. */
export function tlsOptions(settings: TlsSettings, sslpassword?: string): ConnectionOptions {
  const options: ConnectionOptions = { rejectUnauthorized: settings.verifyChain };
  if (settings.rootcert !== undefined && settings.rootcert !== 'system') {
    const ca = readTlsFile(settings.rootcert, 'CA (sslrootcert)');
    try {
      new X509Certificate(ca); // the first certificate of the file parses (Node skips what is not PEM silently)
      tls.createSecureContext({ ca });
    } catch (error) {
      throw new PgsealError(ErrorCodes.TLS_CONFIG, `the CA file ${settings.rootcert} (sslrootcert) holds no usable PEM certificate (${(error as { code?: string }).code ?? 'invalid'})`, {
        hint: 'point sslrootcert at the PEM file of the CA certificate that signed the server\'s certificate',
      });
    }
    if (settings.verifyChain) options.ca = ca;
  }
  if ((settings.sslcert === undefined) !== (settings.sslkey === undefined)) {
    throw new PgsealError(ErrorCodes.TLS_CONFIG, `a client certificate needs both sslcert and sslkey, and only ${settings.sslcert ? 'sslcert' : 'sslkey'} is set`, {
      hint: 'set sslcert to the client certificate and sslkey to its private key (PEM files)',
    });
  }
  if (settings.sslcert !== undefined && settings.sslkey !== undefined) {
    const cert = readTlsFile(settings.sslcert, 'client certificate (sslcert)');
    const key = readTlsFile(settings.sslkey, 'client key (sslkey)');
    try {
      tls.createSecureContext({ cert, key, ...(sslpassword ? { passphrase: sslpassword } : {}) });
    } catch (error) {
      throw new PgsealError(ErrorCodes.TLS_CONFIG, `the client certificate ${settings.sslcert} and key ${settings.sslkey} cannot be used together (${(error as { code?: string }).code ?? 'invalid'})`, {
        hint: 'sslcert must be the PEM certificate and sslkey its PEM private key (an encrypted key needs sslpassword)',
      });
    }
    options.cert = cert;
    options.key = key;
    if (sslpassword) options.passphrase = sslpassword;
  }
  if (settings.verifyChain && !settings.verifyHostName) options.checkServerIdentity = () => undefined;
  return options;
}

// SSLRequest: length 8, code 80877103
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

interface TlsErrorContext {
  sslmode: SslMode;
  rootcert: string | undefined;
  host: string;
  port: number;
  /**
   * TLS 1.3 with a client certificate, and the server has not spoken since the handshake:
   * the server checks the certificate after the client's handshake is done, and when it
   * refuses it, its alert can be lost to the reset that the client's first write meets
   */
  clientCertUnconfirmed?: boolean;
}

/** An error naming what TLS was asked, for toPgsealError (never the URL or a password). */
function withContext(error: unknown, context: TlsErrorContext): Error {
  const e = error instanceof Error ? error : new Error(String(error));
  if (!('tlsContext' in e)) Object.defineProperty(e, 'tlsContext', { value: context, enumerable: false, configurable: true });
  return e;
}

function failure(code: string, message: string, context: TlsErrorContext): Error {
  return withContext(Object.assign(new Error(message), { code, address: context.host, port: context.port }), context);
}

/**
 * Connects to host:port, asks for TLS and completes the handshake: resolves to the TLS socket
 * postgres.js then speaks the protocol over, or rejects with what went wrong.
 */
function openTls(host: string, port: number, options: ConnectionOptions, context: TlsErrorContext, timeoutSeconds: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const raw = new Socket();
    let secure: TLSSocket | undefined;
    let done = false;
    const fail = (error: unknown): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      secure?.destroy();
      raw.destroy();
      reject(withContext(error, context));
    };
    const timer = setTimeout(() => fail(failure('CONNECT_TIMEOUT', `write CONNECT_TIMEOUT ${host}:${port}`, context)), timeoutSeconds * 1000);
    raw.once('error', fail);
    raw.once('close', () => fail(failure('CONNECTION_CLOSED', `the server at ${host}:${port} closed the connection before TLS was set up`, context)));
    raw.once('connect', () => raw.write(SSL_REQUEST));
    raw.once('data', (reply: Buffer) => {
      raw.removeAllListeners('close');
      if (reply[0] === 0x4e /* N */) {
        fail(failure(ErrorCodes.TLS_UNAVAILABLE, `the server at ${host}:${port} does not offer TLS, and sslmode=${context.sslmode} requires it`, context));
        return;
      }
      if (reply[0] !== 0x53 /* S */ || reply.length !== 1) {
        // an error message (a very old server), or bytes sent before the handshake (CVE-2021-23222): refuse both
        fail(failure(ErrorCodes.TLS_UNAVAILABLE, `the server at ${host}:${port} did not answer the TLS request as PostgreSQL does`, context));
        return;
      }
      raw.removeAllListeners('error');
      secure = tls.connect({ ...options, socket: raw, host, ...(isIP(host) ? {} : { servername: host }) });
      secure.once('error', fail);
      secure.once('close', () => fail(failure('CONNECTION_CLOSED', `the server at ${host}:${port} closed the connection during the TLS handshake`, context)));
      secure.once('secureConnect', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        secure!.removeAllListeners('error');
        secure!.removeAllListeners('close');
        // runs before postgres.js's listener: names what was asked on a later error; and until
        // postgres.js listens, an error must not go unhandled (the close that follows reaches it)
        const clientCert = options.cert !== undefined && secure!.getProtocol() === 'TLSv1.3';
        secure!.on('error', (error) => withContext(error, { ...context, clientCertUnconfirmed: clientCert && !secure!.readableDidRead }));
        Object.assign(secure!, { host, port });
        resolve(secure!);
      });
    });
    raw.connect(port, host);
  });
}

/**
 * A stream that fails with `error` once postgres.js listens to it: postgres.js rejects the
 * waiting query with the error and, on the close that follows, puts the connection back in
 * its pool to be tried again, where a socket factory that throws would leave it stuck.
 */
function failedSocket(error: Error): Duplex {
  const stream = new Duplex({ read() {}, write(_chunk, _encoding, callback) { callback(); } });
  setImmediate(() => stream.destroy(error));
  return stream;
}

export function connect(databaseUrl: string | undefined, options: ConnectOptions = {}): Sql {
  if (!databaseUrl) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'no database: DATABASE_URL is not set', {
      hint: 'set DATABASE_URL or pass --database-url postgres://user@host:5432/db',
    });
  }
  const url = urlOf(databaseUrl);
  const settings = tlsSettings(databaseUrl);
  const connectTimeout = options.connectTimeout ?? 10;
  let ssl: postgres.Options<Record<string, postgres.PostgresType>>['ssl'];
  let socket: ((o: { host: string[]; port: number[] }) => Promise<Duplex>) | undefined;
  if (!settings.tlsAttempted) {
    ssl = false;
  } else if (!settings.tlsRequired) {
    ssl = 'prefer'; // prefer and allow: TLS without verification when the server offers it, else none
  } else {
    ssl = false; // the socket below is TLS already
    const tlsOpts = tlsOptions(settings, param(url, 'sslpassword') ?? (process.env.PGSSLPASSWORD || undefined));
    const context: TlsErrorContext = { sslmode: settings.sslmode, rootcert: settings.rootcert, host: settings.host, port: settings.port };
    socket = async (o) => {
      const host = o.host[0] ?? settings.host;
      const port = o.port[0] ?? settings.port;
      try {
        return await openTls(host, port, tlsOpts, { ...context, host, port }, connectTimeout);
      } catch (error) {
        return failedSocket(error as Error);
      }
    };
  }
  return postgres(withoutTlsParams(databaseUrl), {
    max: options.max ?? 4,
    connect_timeout: connectTimeout,
    onnotice: () => {},
    connection: { application_name: 'pgseal' },
    ssl,
    ...(socket ? { socket } : {}),
  });
}

/** The URL without the TLS parameters pgseal reads itself (drivers would read them their own way). */
function withoutTlsParams(databaseUrl: string): string {
  const url = urlOf(databaseUrl);
  const ours = [...Object.keys(TLS_PARAMS), 'ssl'];
  if (!ours.some((p) => url.searchParams.has(p))) return databaseUrl;
  for (const p of ours) url.searchParams.delete(p);
  return url.toString();
}

/**
 * The same TLS for node-postgres (node-pg-migrate connects with it), which reads sslmode its
 * own way (ignoring PGSSLROOTCERT, treating require as verify-full): the URL without the TLS
 * parameters, and Node's TLS options built as connect() builds them.
 */
export function pgClientConfig(databaseUrl: string): { connectionString: string; ssl: false | ConnectionOptions } {
  const settings = tlsSettings(databaseUrl);
  const url = urlOf(databaseUrl);
  // node-postgres has no "prefer": TLS without verification when asked for at all
  const ssl = !settings.tlsAttempted ? false
    : !settings.tlsRequired ? { rejectUnauthorized: false }
    : tlsOptions(settings, param(url, 'sslpassword') ?? (process.env.PGSSLPASSWORD || undefined));
  return { connectionString: withoutTlsParams(databaseUrl), ssl };
}
