import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, toPgsealError } from '../../src/errors.js';

describe('errors from the driver', () => {
  it('maps pgseal SQLSTATEs to typed codes and keeps PostgreSQL fields', () => {
    const e = toPgsealError({ code: 'PS003', severity: 'ERROR', message: 'pgseal: ciphertext failed authentication', hint: 'restore it' });
    expect(e.code).toBe(ErrorCodes.AUTHENTICATION_FAILED);
    expect(e.sqlstate).toBe('PS003');
    expect(e.message).toBe('ciphertext failed authentication');
    expect(e.hint).toBe('restore it');
  });

  it('keeps neither parameters, detail, context nor the original error', () => {
    const secret = 'c2VjcmV0LWtleS1tYXRlcmlhbA';
    const original = Object.assign(new Error('boom'), {
      code: '23505',
      severity: 'ERROR',
      detail: `Key (email)=(${secret}) already exists.`,
      where: `SQL statement with ${secret}`,
      parameters: [secret],
      query: `select '${secret}'`,
    });
    const e = toPgsealError(original);
    expect(e.code).toBe(ErrorCodes.DB_ERROR);
    expect(e.sqlstate).toBe('23505');
    expect(e.cause).toBeUndefined();
    expect(inspect(e, { depth: 10, showHidden: true }) + JSON.stringify(e)).not.toContain(secret);
  });

  it('turns a refused connection into a one-line fix', () => {
    const e = toPgsealError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED', address: '127.0.0.1', port: 1 }));
    expect(e.code).toBe(ErrorCodes.DB_UNREACHABLE);
    expect(e.toLine()).toContain('127.0.0.1:1');
    expect(e.toLine()).toContain('DATABASE_URL');
    expect(e.toLine()).not.toContain('\n');
  });
});
