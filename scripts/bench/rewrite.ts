// The SQL rewriter's cost per call on a cached statement (what an application pays for each
// statement it sends again), with an uncached rewrite (parse, rewrite, print) for scale.
// No database involved: the fixture registry of the rewrite tests.

import { performance } from 'node:perf_hooks';
import { loadSqlRewriter, SqlRewriter } from '../../src/rewrite/index.js';
import { corpus } from '../../test/rewrite/corpus.js';
import { registry } from '../../test/rewrite/fixture.js';
import type { BenchContext } from './common.js';

const PICKS = ['select one protected column', 'equality with a parameter', 'star over a join of two protected tables', 'INSERT with parameters and RETURNING', 'plain columns of a protected table'];

function meanMicros(n: number, call: () => void): number {
  for (let i = 0; i < Math.min(n, 1000); i++) call();
  const start = performance.now();
  for (let i = 0; i < n; i++) call();
  return ((performance.now() - start) * 1000) / n;
}

export async function benchRewrite({ log }: Pick<BenchContext, 'log'>) {
  const calls = 100_000;
  const cached = await loadSqlRewriter(registry);
  const uncached = new SqlRewriter(registry, { cacheSize: 0 });
  const statements = PICKS.map((name) => {
    const entry = corpus.find((e) => e.name === name);
    if (!entry) throw new Error(`rewrite bench: no corpus entry named ${name}`);
    const cachedUs = meanMicros(calls, () => cached.rewrite(entry.sql));
    const uncachedUs = meanMicros(200, () => uncached.rewrite(entry.sql));
    log(`  ${cachedUs.toFixed(3)} us cached, ${uncachedUs.toFixed(0)} us uncached: ${name}`);
    return { name, cached_us: Math.round(cachedUs * 1000) / 1000, uncached_us: Math.round(uncachedUs) };
  });
  const worst = Math.max(...statements.map((s) => s.cached_us));
  return { calls, statements, worst_cached_us: worst, target: { cached_us: '< 20' }, pass: { cached_us: worst < 20 } };
}
