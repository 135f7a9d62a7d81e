import type { Sql } from 'postgres';
import type { Keyring } from '../../src/keys/keyring.js';
import type { MasterKeyProvider } from '../../src/keys/master-key.js';

export interface BenchContext {
  sql: Sql;
  url: string;
  keyring: Keyring;
  master: MasterKeyProvider;
  rows: number;
  runs: number;
  log: (line: string) => void;
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const ratio = (a: number, b: number): number => Math.round((a / b) * 1000) / 1000;
