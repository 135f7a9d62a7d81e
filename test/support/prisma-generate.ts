// Generates the Prisma Client of test/prisma/schema.prisma into test/prisma/generated/
// (gitignored) with the prisma CLI from node_modules. Nothing is downloaded: the CLI asks
// for the schema engine binary unless PRISMA_SCHEMA_ENGINE_BINARY names a file, which
// `generate` never runs (it uses the wasm engines bundled in the npm packages); telemetry
// and update checks are off.

import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const PRISMA_DIR = join(ROOT, 'test/prisma');
export const GENERATED_CLIENT = join(PRISMA_DIR, 'generated/client.ts');

export type Generated = { ok: true; ms: number } | { ok: false; reason: string };

export async function generatePrismaClient(): Promise<Generated> {
  const cli = join(ROOT, 'node_modules/.bin/prisma');
  if (!existsSync(cli)) return { ok: false, reason: 'the prisma CLI is not installed (npm ci installs it as a devDependency)' };
  const scratch = mkdtempSync(join(tmpdir(), 'pgseal-prisma-'));
  const engine = join(scratch, 'no-schema-engine');
  writeFileSync(engine, '');
  const started = performance.now();
  try {
    await new Promise<void>((done, fail) => {
      execFile(cli, ['generate', '--config', join(PRISMA_DIR, 'prisma.config.ts')], {
        cwd: ROOT,
        timeout: 60_000,
        env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: engine, CHECKPOINT_DISABLE: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1' },
      }, (error, stdout, stderr) => (error ? fail(new Error(`${error.message}\n${stdout}\n${stderr}`.trim())) : done()));
    });
  } catch (error) {
    return { ok: false, reason: `prisma generate failed: ${(error as Error).message.split('\n').slice(0, 6).join(' | ')}` };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  if (!existsSync(GENERATED_CLIENT)) return { ok: false, reason: `prisma generate wrote no ${GENERATED_CLIENT}` };
  return { ok: true, ms: Math.round(performance.now() - started) };
}
