// --actor and --reason: who runs a key or data operation and why, for the audit log.
import type { Argv } from 'yargs';
import { defaultActor } from '../audit/record.js';

export interface AttributionArgs {
  actor: string;
  reason?: string | undefined;
}

export function withAttribution<T>(y: Argv<T>): Argv<T & AttributionArgs> {
  return y
    .option('actor', { type: 'string', default: defaultActor(), defaultDescription: '$PGSEAL_ACTOR, else the operating-system user', describe: 'who runs this, as recorded in the audit log' })
    .option('reason', { type: 'string', describe: 'why, as recorded in the audit log' }) as Argv<T & AttributionArgs>;
}

export const by = (args: AttributionArgs) => ({ actor: args.actor, reason: args.reason });
