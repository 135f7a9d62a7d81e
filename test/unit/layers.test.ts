// The layers of docs/architecture.md: an import in src/ points to its own layer or a lower
// one, never higher, and folders of one layer do not import each other in a cycle.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Bottom first. A unit is a folder of src/ or a file at its top. */
export const LAYERS: ReadonlyArray<{ name: string; units: readonly string[] }> = [
  { name: 'foundation', units: ['errors.ts', 'metrics.ts', 'statement'] },
  { name: 'formats', units: ['crypto', 'columns'] },
  { name: 'database', units: ['keys', 'registry', 'audit', 'catalog', 'connect.ts', 'migrate.ts'] },
  { name: 'execution', units: ['exec'] },
  { name: 'features', units: ['helpers', 'rewrite', 'reencrypt', 'adapters', 'doctor'] },
  { name: 'surface', units: ['index.ts', 'cli'] },
];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const unitOf = (file: string): string => relative(SRC, file).split(/[\\/]/)[0]!;
const layerOf = (unit: string): number => LAYERS.findIndex((l) => l.units.includes(unit));

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [
    ...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;'"]*?from\s+['"]([^'"]+)['"]/g),
    ...text.matchAll(/(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g),
    ...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g),
  ].map((m) => m[1]!);
  return specs.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

describe('layers', () => {
  const all = files(SRC);
  const edges = all.flatMap((from) => importsOf(from).map((to) => ({ from, to, a: unitOf(from), b: unitOf(to) })));

  it('every unit of src/ has a layer, and the imports were found', () => {
    expect([...new Set(all.map(unitOf))].filter((u) => layerOf(u) < 0)).toEqual([]);
    expect(edges.length).toBeGreaterThan(100);
  });

  it('no import points from a lower layer to a higher one', () => {
    const upward = edges
      .filter((e) => layerOf(e.a) < layerOf(e.b))
      .map((e) => `${relative(SRC, e.from)} (${LAYERS[layerOf(e.a)]!.name}) imports ${relative(SRC, e.to)} (${LAYERS[layerOf(e.b)]!.name})`);
    expect(upward).toEqual([]);
  });

  it('no import cycle between folders', () => {
    const graph = new Map<string, Set<string>>();
    for (const e of edges) if (e.a !== e.b) graph.set(e.a, (graph.get(e.a) ?? new Set()).add(e.b));
    const cycles: string[] = [];
    const visit = (unit: string, path: string[]) => {
      if (path.includes(unit)) {
        cycles.push([...path.slice(path.indexOf(unit)), unit].join(' -> '));
        return;
      }
      for (const next of graph.get(unit) ?? []) visit(next, [...path, unit]);
    };
    for (const unit of graph.keys()) visit(unit, []);
    expect([...new Set(cycles)]).toEqual([]);
  });
});
