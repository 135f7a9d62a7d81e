// How the AWS SDK's errors become PgsealErrors (src/keys/aws.ts): by the error's name and
// HTTP status, with a fix, and never quoting the SDK's message (which can name a request).
// The integration test (aws-kms.test.ts) meets the same errors from a real server.

import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { awsError } from '../../src/keys/aws.js';
import { masterKeySource } from '../../src/keys/providers.js';

const at = { service: 'AWS KMS', operation: 'Decrypt', resource: 'arn:aws:kms:eu-south-1:1:key/k', setting: 'PGSEAL_KMS_KEY_ID (--kms-key-id)' };
const sdk = (name: string, status?: number, extra: Record<string, unknown> = {}) =>
  Object.assign(new Error(`secret-looking SDK message ${name}`), { name, $metadata: { httpStatusCode: status, attempts: 3 }, ...extra });

describe('AWS errors', () => {
  it.each([
    ['AccessDeniedException', 400, ErrorCodes.AWS_ACCESS_DENIED],
    ['UnrecognizedClientException', 400, ErrorCodes.AWS_ACCESS_DENIED],
    ['ThrottlingException', 400, ErrorCodes.AWS_THROTTLED],
    ['TooManyRequestsException', 429, ErrorCodes.AWS_THROTTLED],
    ['DisabledException', 400, ErrorCodes.KMS_KEY_DISABLED],
    ['KMSInvalidStateException', 400, ErrorCodes.KMS_KEY_DISABLED],
    ['NotFoundException', 400, ErrorCodes.KMS_KEY_NOT_FOUND],
    ['InvalidCiphertextException', 400, ErrorCodes.KEY_UNWRAP_FAILED],
    ['IncorrectKeyException', 400, ErrorCodes.MASTER_KEY_MISMATCH],
    ['CredentialsProviderError', undefined, ErrorCodes.AWS_CREDENTIALS_MISSING],
    ['TimeoutError', undefined, ErrorCodes.AWS_UNREACHABLE],
    ['InternalFailureException', 500, ErrorCodes.AWS_REQUEST_FAILED],
  ])('%s becomes %s, with a fix, without the SDK message', (name, status, code) => {
    const e = awsError(sdk(name, status), at);
    expect(e.code).toBe(code);
    expect(e.hint).toBeTruthy();
    expect(e.message).toContain('AWS KMS Decrypt on arn:aws:kms:eu-south-1:1:key/k');
    expect(e.message).not.toContain('secret-looking');
    expect(e.cause).toBeUndefined();
  });

  it('a refused connection or a passed deadline is unreachable, saying which', () => {
    expect(awsError(Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }), at).code).toBe(ErrorCodes.AWS_UNREACHABLE);
    const late = awsError(Object.assign(new Error('aborted'), { name: 'AbortError' }), at, 10_000);
    expect(late.code).toBe(ErrorCodes.AWS_UNREACHABLE);
    expect(late.message).toContain('within 10000 ms');
  });

  it('a missing secret names the setting', () => {
    const e = awsError(sdk('ResourceNotFoundException', 400), { ...at, service: 'AWS Secrets Manager', operation: 'GetSecretValue', setting: 'PGSEAL_MASTER_KEY_SECRET_ID' });
    expect(e.code).toBe(ErrorCodes.SECRET_NOT_FOUND);
    expect(e.hint).toContain('PGSEAL_MASTER_KEY_SECRET_ID');
  });
});

describe('which master key', () => {
  it('flags first, then one source from the environment; two sources refused', () => {
    expect(masterKeySource({}, {})).toEqual({ kind: 'env', variable: 'PGSEAL_MASTER_KEY' });
    expect(masterKeySource({}, { PGSEAL_KMS_KEY_ID: ' alias/pgseal ' })).toEqual({ kind: 'kms', keyId: 'alias/pgseal' });
    expect(masterKeySource({}, { PGSEAL_MASTER_KEY_SECRET_ID: 's' })).toEqual({ kind: 'secret', secretId: 's' });
    // a file beside the variable is today's precedence, not a conflict
    expect(masterKeySource({}, { PGSEAL_MASTER_KEY_FILE: '/k', PGSEAL_MASTER_KEY: 'x' })).toEqual({ kind: 'file', path: '/k' });
    expect(() => masterKeySource({}, { PGSEAL_KMS_KEY_ID: 'k', PGSEAL_MASTER_KEY: 'x' })).toThrow(/PGSEAL_KMS_KEY_ID and PGSEAL_MASTER_KEY are both set/);
    expect(() => masterKeySource({}, { PGSEAL_MASTER_KEY_SECRET_ID: 's', PGSEAL_MASTER_KEY_FILE: '/k' })).toThrow(/both set/);
    expect(masterKeySource({ masterKeyFile: '/f' }, { PGSEAL_KMS_KEY_ID: 'k', PGSEAL_MASTER_KEY: 'x' })).toEqual({ kind: 'file', path: '/f' });
    expect(() => masterKeySource({ kmsKeyId: 'k', masterKeyFile: '/f' }, {})).toThrow(/--kms-key-id and --master-key-file are both given/);
  });
});
