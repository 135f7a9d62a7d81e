import type { CommandModule } from 'yargs';
import { generateMasterKey } from '../keys/master-key.js';

export async function runGenerateMasterKey(): Promise<void> {
  process.stdout.write(generateMasterKey() + '\n');
}

export const generateMasterKeyCommand: CommandModule = {
  command: 'generate-master-key',
  describe: 'print a new 32-byte master key (base64, from the OS CSPRNG) for PGSEAL_MASTER_KEY',
  builder: (y) => y.example('export PGSEAL_MASTER_KEY=$($0 keys generate-master-key)', 'store it in your secret manager, not in a file in the repository'),
  handler: runGenerateMasterKey,
};
