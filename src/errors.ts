// Typed errors with stable codes. A message says what went wrong and how to fix it, and
// never carries a key or a plaintext value. Errors raised by PostgreSQL keep its fields
// (sqlstate, hint, position, names) but not the query's parameters, `detail` or `where`,
// which can quote row values; and they are never chained as `cause`, because a driver
// error holds the parameters of the statement that failed (for pgseal.use_keys: the keys).

export const ErrorCodes = {
  MASTER_KEY_MISSING: 'PGSEAL_MASTER_KEY_MISSING',
  MASTER_KEY_MALFORMED: 'PGSEAL_MASTER_KEY_MALFORMED',
  MASTER_KEY_MISMATCH: 'PGSEAL_MASTER_KEY_MISMATCH',
  KEY_UNWRAP_FAILED: 'PGSEAL_KEY_UNWRAP_FAILED',
  NOT_INITIALISED: 'PGSEAL_NOT_INITIALISED',
  ALREADY_INITIALISED: 'PGSEAL_ALREADY_INITIALISED',
  NOT_INSTALLED: 'PGSEAL_NOT_INSTALLED',
  INVALID_ARGUMENT: 'PGSEAL_INVALID_ARGUMENT',
  DB_UNREACHABLE: 'PGSEAL_DB_UNREACHABLE',
  DB_AUTH_FAILED: 'PGSEAL_DB_AUTH_FAILED',
  DB_ERROR: 'PGSEAL_DB_ERROR',
  MIGRATION_FAILED: 'PGSEAL_MIGRATION_FAILED',
  // raised inside PostgreSQL with SQLSTATE class PS (sql/20_errors.sql)
  NO_KEYS: 'PGSEAL_NO_KEYS',
  UNKNOWN_KEY_VERSION: 'PGSEAL_UNKNOWN_KEY_VERSION',
  AUTHENTICATION_FAILED: 'PGSEAL_AUTHENTICATION_FAILED',
  MALFORMED_ENVELOPE: 'PGSEAL_MALFORMED_ENVELOPE',
  NO_ACTIVE_KEY: 'PGSEAL_NO_ACTIVE_KEY',
  INVALID_KEY_PAYLOAD: 'PGSEAL_INVALID_KEY_PAYLOAD',
  KEYRING_NOT_EMPTY: 'PGSEAL_KEYRING_NOT_EMPTY',
  // reading and writing protected columns
  UNSUPPORTED_ON_CIPHERTEXT: 'PGSEAL_UNSUPPORTED_ON_CIPHERTEXT',
  SQL_SYNTAX: 'PGSEAL_SQL_SYNTAX',
  REWRITE_UNSUPPORTED: 'PGSEAL_REWRITE_UNSUPPORTED',
  NOT_PROTECTED: 'PGSEAL_NOT_PROTECTED',
  TABLE_NOT_FOUND: 'PGSEAL_TABLE_NOT_FOUND',
  COLUMN_NOT_FOUND: 'PGSEAL_COLUMN_NOT_FOUND',
  REGISTRY_MISMATCH: 'PGSEAL_REGISTRY_MISMATCH',
  NO_INDEX_KEY: 'PGSEAL_NO_INDEX_KEY',
  CANNOT_PROTECT: 'PGSEAL_CANNOT_PROTECT',
  KEY_IN_USE: 'PGSEAL_KEY_IN_USE',
  KEY_RETIRED: 'PGSEAL_KEY_RETIRED',
  KEY_DESTROYED: 'PGSEAL_KEY_DESTROYED',
  KEY_COMPROMISED: 'PGSEAL_KEY_COMPROMISED',
  NO_PRIMARY_KEY: 'PGSEAL_NO_PRIMARY_KEY',
  REENCRYPT_RUNNING: 'PGSEAL_REENCRYPT_RUNNING',
  REENCRYPT_STOPPED: 'PGSEAL_REENCRYPT_STOPPED',
  REENCRYPT_INCOMPLETE: 'PGSEAL_REENCRYPT_INCOMPLETE',
  REINDEX_TOO_EARLY: 'PGSEAL_REINDEX_TOO_EARLY',
  ACCESS_LOG_UNFLUSHED: 'PGSEAL_ACCESS_LOG_UNFLUSHED',
  LOG_KEY_MISSING: 'PGSEAL_LOG_KEY_MISSING',
  LOG_TAMPERED: 'PGSEAL_LOG_TAMPERED',
  // a stored value that decrypts but is not valid for its column's type (numeric, jsonb, UTF-8 text): written bypassing pgseal's checks
  INVALID_STORED_VALUE: 'PGSEAL_INVALID_STORED_VALUE',
  STOPPED: 'PGSEAL_STOPPED',
  // key versions revoked (retired, destroyed, compromised) since the process loaded its keys: reload and run again
  KEYS_REVOKED: 'PGSEAL_KEYS_REVOKED',
  // a key file (master key, scope key) that group or others may read or write
  KEY_FILE_PERMISSIONS: 'PGSEAL_KEY_FILE_PERMISSIONS',
  // a scope's wrapping key is gone: the scope was shredded (keys destroy), or its key file is missing
  SCOPE_KEY_MISSING: 'PGSEAL_SCOPE_KEY_MISSING',
  // AWS (KMS, Secrets Manager): src/keys/aws.ts maps the SDK's errors to these
  AWS_ACCESS_DENIED: 'PGSEAL_AWS_ACCESS_DENIED',
  AWS_CREDENTIALS_MISSING: 'PGSEAL_AWS_CREDENTIALS_MISSING',
  AWS_THROTTLED: 'PGSEAL_AWS_THROTTLED',
  AWS_UNREACHABLE: 'PGSEAL_AWS_UNREACHABLE',
  AWS_REQUEST_FAILED: 'PGSEAL_AWS_REQUEST_FAILED',
  KMS_KEY_NOT_FOUND: 'PGSEAL_KMS_KEY_NOT_FOUND',
  KMS_KEY_DISABLED: 'PGSEAL_KMS_KEY_DISABLED',
  SECRET_NOT_FOUND: 'PGSEAL_SECRET_NOT_FOUND',
  // TLS to PostgreSQL (src/connect.ts): the certificate or host name did not verify; the server offers no TLS; a CA or client certificate file cannot be used
  TLS_VERIFY_FAILED: 'PGSEAL_TLS_VERIFY_FAILED',
  TLS_UNAVAILABLE: 'PGSEAL_TLS_UNAVAILABLE',
  TLS_CONFIG: 'PGSEAL_TLS_CONFIG',
  // pgseal doctor found checks that failed (or warned, with --strict)
  DOCTOR_CHECKS_FAILED: 'PGSEAL_DOCTOR_CHECKS_FAILED',
} as const;
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** SQLSTATEs raised by the pgseal SQL API, and the library code for each. */
export const SqlStates: Record<string, ErrorCode> = {
  PS001: ErrorCodes.NO_KEYS,
  PS002: ErrorCodes.UNKNOWN_KEY_VERSION,
  PS003: ErrorCodes.AUTHENTICATION_FAILED,
  PS004: ErrorCodes.MALFORMED_ENVELOPE,
  PS005: ErrorCodes.NO_ACTIVE_KEY,
  PS006: ErrorCodes.INVALID_KEY_PAYLOAD,
  PS007: ErrorCodes.KEYRING_NOT_EMPTY,
  PS008: ErrorCodes.NO_INDEX_KEY,
  PS009: ErrorCodes.CANNOT_PROTECT,
  PS010: ErrorCodes.NOT_PROTECTED,
  PS011: ErrorCodes.KEY_IN_USE,
  PS012: ErrorCodes.KEY_RETIRED,
  PS013: ErrorCodes.KEY_DESTROYED,
  PS014: ErrorCodes.KEY_COMPROMISED,
  PS015: ErrorCodes.LOG_KEY_MISSING,
  PS016: ErrorCodes.LOG_TAMPERED,
  PS017: ErrorCodes.INVALID_STORED_VALUE,
  PS020: ErrorCodes.KEYS_REVOKED,
};

export interface PgsealErrorFields {
  hint?: string | undefined;
  sqlstate?: string | undefined;
  position?: string | undefined;
  schema_name?: string | undefined;
  table_name?: string | undefined;
  column_name?: string | undefined;
  constraint_name?: string | undefined;
}

export class PgsealError extends Error {
  override readonly name = 'PgsealError';
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly sqlstate: string | undefined;
  readonly position: string | undefined;
  readonly schema_name: string | undefined;
  readonly table_name: string | undefined;
  readonly column_name: string | undefined;
  readonly constraint_name: string | undefined;

  constructor(code: ErrorCode, message: string, fields: PgsealErrorFields = {}) {
    super(message);
    this.code = code;
    this.hint = fields.hint;
    this.sqlstate = fields.sqlstate;
    this.position = fields.position;
    this.schema_name = fields.schema_name;
    this.table_name = fields.table_name;
    this.column_name = fields.column_name;
    this.constraint_name = fields.constraint_name;
  }

  /** One line for a terminal: code, message, and the fix. */
  toLine(): string {
    const state = this.sqlstate ? ` [SQLSTATE ${this.sqlstate}]` : '';
    return `${this.code}${state}: ${this.message}${this.hint ? ` (${this.hint})` : ''}`;
  }
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED']);

interface DriverError {
  code?: unknown;
  errno?: unknown;
  message?: unknown;
  hint?: unknown;
  position?: unknown;
  schema_name?: unknown;
  table_name?: unknown;
  column_name?: unknown;
  constraint_name?: unknown;
  severity?: unknown;
  name?: unknown;
  address?: unknown;
  port?: unknown;
  reason?: unknown;
  host?: unknown;
  /** set by connect.ts on the errors of the TLS connections it opens: what was asked */
  tlsContext?: { sslmode?: string; rootcert?: string | undefined; host?: string; port?: number; clientCertUnconfirmed?: boolean } | undefined;
}

/** Runs `work`, turning whatever the driver throws into a PgsealError. */
export async function withPgsealErrors<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw toPgsealError(error);
  }
}

export const isNetworkCode = (code: string): boolean => NETWORK_CODES.has(code);

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

// Node's (OpenSSL's) codes for a server certificate that does not verify: the chain, the
// host name, the dates. The server refusing ours comes back as a TLS alert.
const TLS_CHAIN_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_REVOKED', 'CERT_CHAIN_TOO_LONG', 'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE',
]);
const TLS_DATE_CODES = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD']);
const TLS_NAME_CODES = new Set(['ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH', 'IP_ADDRESS_MISMATCH']);
const TLS_CLIENT_REFUSED = /^ERR_SSL_(?:TLSV1_ALERT_UNKNOWN_CA|SSLV3_ALERT_BAD_CERTIFICATE|TLSV13_ALERT_CERTIFICATE_REQUIRED|SSLV3_ALERT_CERTIFICATE_UNKNOWN|SSLV3_ALERT_CERTIFICATE_EXPIRED|TLSV1_ALERT_ACCESS_DENIED)$/;

/** A TLS failure of the connection to PostgreSQL, or undefined when `e` is not one. */
function tlsError(e: DriverError, code: string | undefined): PgsealError | undefined {
  const ctx = e.tlsContext;
  const where = ctx?.host ? ` at ${ctx.host}${ctx.port ? `:${ctx.port}` : ''}` : '';
  const against = ctx?.rootcert && ctx.rootcert !== 'system' ? `the CA in sslrootcert=${ctx.rootcert}` : ctx ? 'Node\'s default CAs (no sslrootcert given)' : 'the trusted CAs';
  if (code && TLS_CHAIN_CODES.has(code)) {
    return new PgsealError(ErrorCodes.TLS_VERIFY_FAILED, `the server's certificate${where} is not signed by ${against} (wrong CA: ${code})`, {
      hint: 'point sslrootcert at the CA certificate that signed the server\'s certificate: sslmode=verify-full&sslrootcert=/path/to/ca.pem',
    });
  }
  if (code && TLS_NAME_CODES.has(code)) {
    const host = str(e.host) ?? ctx?.host;
    const reason = str(e.reason);
    return new PgsealError(ErrorCodes.TLS_VERIFY_FAILED, `the server's certificate${where} is not for the host name${host ? ` ${host}` : ''} connected to (host name mismatch${reason ? `: ${reason}` : ''})`, {
      hint: 'connect with a host name or IP address listed in the certificate\'s subject alternative names (SANs), or reissue the server certificate with this name among its SANs',
    });
  }
  if (code && TLS_DATE_CODES.has(code)) {
    return new PgsealError(ErrorCodes.TLS_VERIFY_FAILED, `the server's certificate${where} is outside its validity period (${code})`, {
      hint: 'renew the server\'s certificate (ssl_cert_file), and check both machines\' clocks',
    });
  }
  if (code && TLS_CLIENT_REFUSED.test(code)) {
    return new PgsealError(ErrorCodes.TLS_VERIFY_FAILED, `the server${where} refused this client's TLS certificate (${code})`, {
      hint: 'set sslcert and sslkey to a client certificate signed by the CA in the server\'s ssl_ca_file',
    });
  }
  if ((code === 'ECONNRESET' || code === 'EPIPE') && ctx?.clientCertUnconfirmed) {
    return new PgsealError(ErrorCodes.TLS_VERIFY_FAILED, `the server${where} reset the connection right after the TLS handshake, before answering: it most likely refused this client's TLS certificate (${code})`, {
      hint: 'set sslcert and sslkey to a client certificate signed by the CA in the server\'s ssl_ca_file',
    });
  }
  if (code === ErrorCodes.TLS_UNAVAILABLE) {
    return new PgsealError(ErrorCodes.TLS_UNAVAILABLE, str(e.message) ?? `the server${where} does not offer TLS`, {
      hint: 'turn TLS on at the server (ssl = on, ssl_cert_file, ssl_key_file in postgresql.conf) or reach it through a TLS-terminating proxy; only sslmode=prefer or disable accept an unencrypted connection',
    });
  }
  // node-postgres (under node-pg-migrate) on a server that answers "no TLS"
  if (!code && /^The server does not support SSL connections$/.test(str(e.message) ?? '')) {
    return new PgsealError(ErrorCodes.TLS_UNAVAILABLE, 'the server does not offer TLS, and the sslmode asked requires it', {
      hint: 'turn TLS on at the server (ssl = on, ssl_cert_file, ssl_key_file in postgresql.conf); only sslmode=prefer or disable accept an unencrypted connection',
    });
  }
  if (code === 'ECONNRESET' && /before secure TLS connection was established/.test(str(e.message) ?? '')) {
    return new PgsealError(ErrorCodes.TLS_UNAVAILABLE, `the server${where} closed the connection during the TLS handshake (it may not offer TLS)`, {
      hint: 'check that the server has ssl = on; only sslmode=prefer or disable accept an unencrypted connection',
    });
  }
  if (code && /^ERR_SSL_/.test(code)) {
    return new PgsealError(ErrorCodes.TLS_UNAVAILABLE, `the TLS handshake with the server${where} failed (${code})`, {
      hint: 'the server must accept TLS 1.2 or later (ssl_min_protocol_version, ssl_ciphers); check that the port is PostgreSQL\'s',
    });
  }
  return undefined;
}

/**
 * Turns anything thrown by the driver into a PgsealError that is safe to log.
 * A PgsealError passes through unchanged.
 */
export function toPgsealError(error: unknown, what = 'the database'): PgsealError {
  if (error instanceof PgsealError) return error;
  const e = (typeof error === 'object' && error !== null ? error : {}) as DriverError;
  const code = str(e.code);
  const tls = tlsError(e, code);
  if (tls) return tls;
  if (code && NETWORK_CODES.has(code)) {
    const where = str(e.address) ? ` at ${String(e.address)}${e.port ? `:${String(e.port)}` : ''}` : '';
    return new PgsealError(ErrorCodes.DB_UNREACHABLE, `cannot reach ${what}${where} (${code})`, {
      hint: 'check DATABASE_URL (or --database-url) and that the server is running and accepts connections',
    });
  }
  // PostgreSQL errors carry a 5-character SQLSTATE and a severity.
  if (code && /^[0-9A-Z]{5}$/.test(code) && str(e.severity)) {
    const fields: PgsealErrorFields = {
      sqlstate: code,
      hint: str(e.hint),
      position: str(e.position),
      schema_name: str(e.schema_name),
      table_name: str(e.table_name),
      column_name: str(e.column_name),
      constraint_name: str(e.constraint_name),
    };
    let message = (str(e.message) ?? 'database error').replace(/^pgseal: /, '');
    // Data exceptions quote the offending value ('invalid input syntax for type numeric:
    // "..."'), which may be a plaintext meant for an encrypted column: keep the words only.
    if (code.startsWith('22')) message = message.replace(/"(?:[^"]|"")*"|'(?:[^']|'')*'/g, '(value hidden)');
    const mapped = SqlStates[code];
    if (mapped) return new PgsealError(mapped, message, fields);
    if (code === '28000' && /certificate/i.test(message)) {
      return new PgsealError(ErrorCodes.DB_AUTH_FAILED, message, {
        ...fields,
        hint: 'this role signs in with a client certificate: set sslcert and sslkey to a certificate whose CN is the role name, signed by the CA in the server\'s ssl_ca_file',
      });
    }
    if (code === '28000' && /no pg_hba\.conf entry/.test(message) && /no encryption/.test(message)) {
      return new PgsealError(ErrorCodes.DB_AUTH_FAILED, message, {
        ...fields,
        hint: 'no pg_hba.conf line lets this host in without TLS: if the server takes it over TLS only (hostssl), connect with sslmode=verify-full&sslrootcert=/path/to/ca.pem; else the server\'s pg_hba.conf needs a line for it',
      });
    }
    if (code === '28P01' || code === '28000') {
      return new PgsealError(ErrorCodes.DB_AUTH_FAILED, message, {
        ...fields,
        hint: 'check the user and password in DATABASE_URL',
      });
    }
    if (code === '3D000') {
      return new PgsealError(ErrorCodes.DB_ERROR, message, { ...fields, hint: 'check the database name in DATABASE_URL' });
    }
    if (code === '22004' && /^pgseal: /.test(str(e.message) ?? '')) return new PgsealError(ErrorCodes.INVALID_ARGUMENT, message, fields);
    if (code === '42P01' && !/pgseal\./.test(message)) {
      return new PgsealError(ErrorCodes.TABLE_NOT_FOUND, message, { ...fields, hint: 'name an existing table, schema-qualified if it is not on the search_path' });
    }
    if (code === '3F000' || (code === '42883' && /pgseal\./.test(message)) || (code === '42P01' && /pgseal\./.test(message))) {
      return new PgsealError(ErrorCodes.NOT_INSTALLED, message, {
        ...fields,
        hint: fields.hint ?? 'apply the pgseal migrations first: pgseal migrate up',
      });
    }
    return new PgsealError(ErrorCodes.DB_ERROR, message, fields);
  }
  const message = error instanceof Error ? error.message : String(error);
  return new PgsealError(ErrorCodes.DB_ERROR, message);
}
