#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm ci` through the prepare script).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(entry)) {
  console.error('pgseal: the CLI is not built yet; run `npm run build` (npm ci does it)');
  process.exit(1);
}
const { run } = await import(entry.href);
await run();
