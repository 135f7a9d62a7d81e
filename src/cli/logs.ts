// pgseal logs partitions | retention: the access log's monthly partitions.
import type { Argv, CommandModule } from 'yargs';
import { createLogPartitions, dropLogPartitions, logStorage } from '../audit/partitions.js';
import { by, withAttribution, type AttributionArgs } from './attribution.js';
import { usingDatabase, usingLogKeys, withDatabase, withMasterKey, type DatabaseArgs, type MasterKeyArgs } from './options.js';

interface PartitionsArgs extends DatabaseArgs {
  months: number;
}

const partitionsCommand: CommandModule<object, PartitionsArgs> = {
  command: 'partitions',
  describe: 'create the access log\'s monthly partitions ahead (run it monthly, e.g. from cron)',
  builder: (y: Argv) => withDatabase(y).option('months', { type: 'number', default: 4, describe: 'months to cover, this one included' }) as unknown as Argv<PartitionsArgs>,
  handler: async (args) => {
    const [storage, n] = await usingDatabase(args, async (sql) => [await logStorage(sql), await createLogPartitions(sql, args.months)] as const);
    console.log(storage === 'timescaledb' ? 'pgseal: the logs are TimescaleDB hypertables: TimescaleDB creates their chunks' : `pgseal: ${n} monthly partition(s) created`);
  },
};

interface RetentionArgs extends DatabaseArgs, MasterKeyArgs, AttributionArgs {
  'older-than': string;
}

const retentionCommand: CommandModule<object, RetentionArgs> = {
  command: 'retention',
  describe: 'drop the access log\'s monthly partitions older than a period (whole partitions, never row by row)',
  builder: (y: Argv) =>
    withAttribution(withMasterKey(withDatabase(y))).option('older-than', { type: 'string', default: '400d', describe: 'retention period: 400d, 13months, 2y' }) as unknown as Argv<RetentionArgs>,
  handler: async (args) => {
    const dropped = await usingLogKeys(args, (sql, keys) => dropLogPartitions(sql, keys, args['older-than'], by(args)));
    console.log(dropped.length ? `pgseal: dropped ${dropped.join(', ')}` : 'pgseal: no partition is older than the retention period');
  },
};

export const logsCommand: CommandModule = {
  command: 'logs <command>',
  describe: 'the access log\'s partitions: partitions, retention',
  builder: (y) => y.command(partitionsCommand as unknown as CommandModule).command(retentionCommand as unknown as CommandModule).demandCommand(1, 'name a logs command'),
  handler: () => {},
};
