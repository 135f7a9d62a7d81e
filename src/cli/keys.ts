import type { CommandModule } from 'yargs';
import { generateMasterKeyCommand } from './keys-generate-master-key.js';
import { keysInitCommand } from './keys-init.js';
import { keysListCommand } from './keys-list.js';
import { keysRotateCommand } from './keys-rotate.js';
import { keysDestroyCommand, keysRetireCommand, keysRewrapCommand } from './keys-lifecycle.js';

export const keysCommand: CommandModule = {
  command: 'keys <command>',
  describe: 'master and data keys: generate-master-key, init, list, rotate, retire, destroy, rewrap',
  builder: (y) =>
    y
      .command(generateMasterKeyCommand)
      .command(keysInitCommand as unknown as CommandModule)
      .command(keysListCommand as unknown as CommandModule)
      .command(keysRotateCommand as unknown as CommandModule)
      .command(keysRetireCommand as unknown as CommandModule)
      .command(keysDestroyCommand as unknown as CommandModule)
      .command(keysRewrapCommand as unknown as CommandModule)
      .demandCommand(1, 'name a keys command'),
  handler: () => {},
};
