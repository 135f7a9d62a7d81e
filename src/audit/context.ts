// Who is accessing protected data, and from where: set once per request (an
// AsyncLocalStorage scope), read by the typed helpers when they write the access log.

import { AsyncLocalStorage } from 'node:async_hooks';
import { isIP } from 'node:net';
import { ErrorCodes, PgsealError } from '../errors.js';

export interface AccessContext {
  /** the person or service on whose behalf data is read or written (e.g. a user id) */
  actor: string;
  /** their address, IPv4 or IPv6 */
  clientIp?: string | undefined;
}

const storage = new AsyncLocalStorage<AccessContext>();

/**
 * Runs `work` with this access context: every access log row written inside it (through
 * any pgseal instance) names this actor and address. Typically in a request middleware.
 */
export function withAccessContext<T>(context: AccessContext, work: () => T): T {
  if (!context.actor) throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'an access context needs an actor', { hint: 'pass { actor: userId, clientIp }' });
  // a zone id (fe80::1%eth0) is valid to Node, not to PostgreSQL's inet
  if (context.clientIp !== undefined && (isIP(context.clientIp) === 0 || context.clientIp.includes('%'))) {
    throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, 'the client address is not an IP address', { hint: 'pass the IPv4 or IPv6 address of the client, or leave it out' });
  }
  return storage.run({ ...context }, work);
}

/** The access context of the current async scope, if any. */
export function currentAccessContext(): AccessContext | undefined {
  return storage.getStore();
}
