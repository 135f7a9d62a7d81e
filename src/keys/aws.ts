// What the AWS providers (aws-kms.ts, aws-secrets.ts) share: how a client is configured
// (the SDK's own region, credential and endpoint chain, plus bounded time and retries), and
// how the SDK's errors become PgsealErrors. An error keeps the AWS error's name and HTTP
// status, never its message verbatim nor the request (which, for Encrypt, holds a key).

import type { KMSClientConfig } from '@aws-sdk/client-kms';
import { ErrorCodes, PgsealError, type ErrorCode } from '../errors.js';

export interface AwsClientOptions {
  /** default: the SDK's (AWS_REGION, AWS_DEFAULT_REGION, the profile) */
  region?: string | undefined;
  /** default: the SDK's (AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL) */
  endpoint?: string | undefined;
  /** attempts per call, the first included (default 4; AWS_MAX_ATTEMPTS where set); backoff with jitter between them */
  maxAttempts?: number | undefined;
  /** the whole call, retries included, in ms (default 10 s; PGSEAL_AWS_TIMEOUT_MS) */
  timeoutMs?: number | undefined;
  /** default: the SDK's chain (environment, profile, instance or task role) */
  credentials?: KMSClientConfig['credentials'] | undefined;
}

/** The options every pgseal AWS client is made with: the SDK's standard retry mode (exponential backoff, full jitter, throttling retried), short socket timeouts. */
export function clientConfig(options: AwsClientOptions, env: NodeJS.ProcessEnv = process.env) {
  const envAttempts = Number(env.AWS_MAX_ATTEMPTS);
  return {
    ...(options.region ? { region: options.region } : {}),
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    maxAttempts: options.maxAttempts ?? (Number.isInteger(envAttempts) && envAttempts > 0 ? envAttempts : 4),
    retryMode: 'standard',
    requestHandler: { connectionTimeout: 2_000, requestTimeout: 5_000 },
  } as const;
}

export function callTimeoutMs(options: AwsClientOptions, env: NodeJS.ProcessEnv = process.env): number {
  const fromEnv = Number(env.PGSEAL_AWS_TIMEOUT_MS);
  return options.timeoutMs ?? (Number.isFinite(fromEnv) && fromEnv > 0 ? fromEnv : 10_000);
}

/** Runs one SDK call under a deadline that covers its retries; its errors become PgsealErrors. */
export async function awsCall<T>(what: AwsCallSite, timeoutMs: number, call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  // a hard deadline: not every wait inside the SDK (backoff, credentials) honours the signal
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort.abort();
      reject(Object.assign(new Error('deadline'), { name: 'TimeoutError' }));
    }, timeoutMs);
  });
  const work = call(abort.signal);
  work.catch(() => undefined); // settles after the deadline: already answered
  try {
    return await Promise.race([work, deadline]);
  } catch (error) {
    throw awsError(error, what, abort.signal.aborted ? timeoutMs : undefined);
  } finally {
    clearTimeout(timer);
  }
}

export interface AwsCallSite {
  /** the service, for messages: 'AWS KMS', 'AWS Secrets Manager' */
  service: string;
  /** the operation: Decrypt, GenerateDataKey, GetSecretValue ... */
  operation: string;
  /** what was asked for, never secret: a key id or ARN, a secret id */
  resource: string;
  /** how the resource is configured, for hints: 'PGSEAL_KMS_KEY_ID' */
  setting: string;
}

interface SdkErrorLike {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  $fault?: string;
}

const THROTTLING = new Set(['ThrottlingException', 'Throttling', 'TooManyRequestsException', 'RequestLimitExceeded', 'LimitExceededException', 'RequestThrottled', 'SlowDown']);
const DENIED = new Set(['AccessDeniedException', 'AccessDenied', 'UnauthorizedOperation', 'UnrecognizedClientException', 'InvalidSignatureException', 'ExpiredTokenException', 'InvalidClientTokenId', 'SignatureDoesNotMatch']);
const NETWORK = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE']);

/** One AWS SDK error as a PgsealError: a stable code, the operation and resource, and the fix. */
export function awsError(error: unknown, at: AwsCallSite, timedOutAfterMs?: number): PgsealError {
  if (error instanceof PgsealError) return error;
  const e = (error ?? {}) as SdkErrorLike;
  const name = e.name ?? 'Error';
  const status = e.$metadata?.httpStatusCode;
  const attempts = e.$metadata?.attempts;
  const call = `${at.service} ${at.operation} on ${at.resource}`;
  const tail = `${name}${status ? `, HTTP ${status}` : ''}${attempts && attempts > 1 ? `, after ${attempts} attempts` : ''}`;
  const make = (code: ErrorCode, message: string, hint: string) => new PgsealError(code, message, { hint });
  if (timedOutAfterMs !== undefined || name === 'AbortError' || name === 'TimeoutError' || NETWORK.has(e.code ?? '') || NETWORK.has(name)) {
    return make(ErrorCodes.AWS_UNREACHABLE,
      timedOutAfterMs !== undefined ? `${call} did not answer within ${timedOutAfterMs} ms` : `${call} failed: the endpoint cannot be reached (${e.code ?? name})`,
      `check the network path to ${at.service} and the region or endpoint (AWS_REGION, AWS_ENDPOINT_URL_*); PGSEAL_AWS_TIMEOUT_MS sets the deadline`);
  }
  if (name === 'CredentialsProviderError' || /credential/i.test(name)) {
    return make(ErrorCodes.AWS_CREDENTIALS_MISSING, `${call}: no AWS credentials were found`,
      'give this process credentials the usual way: an instance or task role, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  }
  if (/region is missing/i.test(String((error as Error)?.message ?? ''))) {
    return make(ErrorCodes.AWS_CREDENTIALS_MISSING, `${call}: no AWS region is configured`, 'set AWS_REGION (a KMS key and a secret live in one region)');
  }
  if (THROTTLING.has(name) || status === 429) {
    return make(ErrorCodes.AWS_THROTTLED, `${call} was throttled past its retries (${tail})`,
      `raise the account's ${at.service} request quota, or spread the load: each process asks once per key and TTL, so look for many processes starting at once; AWS_MAX_ATTEMPTS sets the retries`);
  }
  if (DENIED.has(name) || status === 403) {
    return make(ErrorCodes.AWS_ACCESS_DENIED, `${call} was denied (${tail})`,
      `allow this process's AWS identity ${at.operation} on ${at.resource}, in its IAM policy and in the resource's own policy${at.service === 'AWS KMS' ? ' (pgseal needs kms:Decrypt, kms:GenerateDataKey, kms:Encrypt and kms:DescribeKey; keys rewrap between KMS keys also kms:ReEncrypt*)' : ' (secretsmanager:GetSecretValue)'}`);
  }
  if (name === 'DisabledException' || name === 'KMSInvalidStateException' || name === 'KeyUnavailableException') {
    return make(ErrorCodes.KMS_KEY_DISABLED, `${call}: the KMS key is disabled, pending deletion or otherwise unusable (${tail})`,
      `enable it (aws kms enable-key), or cancel its deletion (aws kms cancel-key-deletion), then run again; nothing was written`);
  }
  if (name === 'NotFoundException' && at.service === 'AWS KMS') {
    return make(ErrorCodes.KMS_KEY_NOT_FOUND, `${call}: there is no such KMS key where the client looked (${tail})`,
      `check ${at.setting} and the region: a KMS key lives in one region, and an alias must start with alias/`);
  }
  if (name === 'ResourceNotFoundException') {
    return make(ErrorCodes.SECRET_NOT_FOUND, `${call}: there is no such secret where the client looked (${tail})`,
      `check ${at.setting} and the region: a secret lives in one region`);
  }
  if (name === 'InvalidCiphertextException') {
    return make(ErrorCodes.KEY_UNWRAP_FAILED, `${call}: KMS refused the wrapped key under its encryption context (${tail})`,
      'the row of pgseal.keys was moved to another version, scope or database, or altered: restore pgseal.keys from a backup of this database');
  }
  if (name === 'IncorrectKeyException') {
    return make(ErrorCodes.MASTER_KEY_MISMATCH, `${call}: the wrapped key was not made by this KMS key (${tail})`,
      `set ${at.setting} to the key that wrapped it (pgseal keys list shows each version's kek_ref)`);
  }
  return make(ErrorCodes.AWS_REQUEST_FAILED, `${call} failed (${tail})`,
    `${status && status >= 500 ? 'the service failed: run again later' : 'check the request\'s configuration'}; the AWS error name says which`);
}
