// Name resolution: which relation a column reference means, following PostgreSQL's rules
// closely enough to find every reference to a protected column (innermost query level
// first; aliases hide table names; a CTE name shadows a table).

import type { ProtectedColumn, TableInfo } from '../registry/types.js';

export interface Relation {
  /** the name its columns are qualified with: alias, else table/CTE/function name; null for an unaliased subquery */
  refName: string | null;
  /** for a table referenced without alias: lets schema-qualified column references match */
  schemaName: string | null;
  relName: string | null;
  /** the protected table it reads, when it is one */
  table: TableInfo | null;
  /** known column names; null when unknown (a table outside the registry, a function) */
  columns: ReadonlySet<string> | null;
  /** columns in `*` order, or null when unknown */
  starColumns: string[] | null;
  /** part of a JOIN ... USING / NATURAL JOIN, whose `*` merges columns */
  mergedJoin: boolean;
  /** old/new in RETURNING: reachable only through their name, not by `*` or unqualified columns */
  qualifiedOnly: boolean;
}

export interface CteInfo {
  columns: ReadonlySet<string> | null;
  starColumns: string[] | null;
}

export type Resolved =
  | { kind: 'protected'; rel: Relation; column: ProtectedColumn }
  | { kind: 'bidx'; rel: Relation; column: ProtectedColumn }
  | { kind: 'wholerow'; rel: Relation }
  | { kind: 'other' };

const OTHER: Resolved = { kind: 'other' };

/** One query level (its FROM items), or a WITH list (its CTEs). */
export class Scope {
  readonly relations: Relation[] = [];
  readonly ctes = new Map<string, CteInfo>();

  constructor(readonly parent: Scope | null) {}

  findCte(name: string): CteInfo | undefined {
    for (let s: Scope | null = this; s; s = s.parent) {
      const cte = s.ctes.get(name);
      if (cte) return cte;
    }
    return undefined;
  }

  /** The relation a qualifier (`c` in `c.email`, or `billing.Invoices`) names, innermost level first. */
  findRelation(qualifier: string[]): Relation | undefined {
    for (let s: Scope | null = this; s; s = s.parent) {
      const found = s.relations.find((r) => matches(r, qualifier));
      if (found) return found;
    }
    return undefined;
  }

  resolve(fields: string[]): Resolved {
    if (fields.length === 0 || fields[fields.length - 1] === '*') {
      if (fields.length <= 1) return OTHER;
      const rel = this.findRelation(fields.slice(-3, -1));
      return rel?.table ? { kind: 'wholerow', rel } : OTHER;
    }
    const name = fields[fields.length - 1] as string;
    if (fields.length === 1) return this.resolveUnqualified(name);
    const rel = this.findRelation(fields.slice(-3, -1));
    if (!rel) return OTHER;
    return columnOf(rel, name);
  }

  private resolveUnqualified(name: string): Resolved {
    for (let s: Scope | null = this; s; s = s.parent) {
      let found: Relation | undefined;
      let count = 0;
      for (const r of s.relations) {
        if (!r.qualifiedOnly && r.columns?.has(name)) {
          found = r;
          count++;
        }
      }
      // Ambiguous: PostgreSQL reports it on the statement as written.
      if (count > 1) return OTHER;
      if (found) return columnOf(found, name);
    }
    // Not a column anywhere: a whole-row reference to a relation of that name.
    const rel = this.findRelation([name]);
    return rel?.table ? { kind: 'wholerow', rel } : OTHER;
  }
}

function matches(r: Relation, qualifier: string[]): boolean {
  if (qualifier.length === 1) return r.refName === qualifier[0];
  return r.schemaName !== null && r.schemaName === qualifier[0] && r.relName === qualifier[1];
}

function columnOf(rel: Relation, name: string): Resolved {
  const table = rel.table;
  if (!table) return OTHER;
  const column = table.protected.get(name);
  if (column) return { kind: 'protected', rel, column };
  const indexed = isBlindIndexColumn(table, name);
  return indexed ? { kind: 'bidx', rel, column: indexed } : OTHER;
}

/** The columns a statement written for the plaintext table sees: blind indexes left out. */
export function plaintextColumns(table: TableInfo): string[] {
  const bidx = new Set<string>();
  for (const c of table.protected.values()) if (c.blindIndexColumn) bidx.add(c.blindIndexColumn);
  return table.columns.filter((c) => !bidx.has(c));
}

/** The protected column whose blind index `name` is, if it is one. */
export function isBlindIndexColumn(table: TableInfo, name: string): ProtectedColumn | undefined {
  for (const c of table.protected.values()) if (c.blindIndexColumn === name) return c;
  return undefined;
}

export function tableRelation(table: TableInfo | null, refName: string, schemaName: string | null, relName: string | null): Relation {
  return {
    refName,
    schemaName,
    relName,
    table,
    columns: table ? new Set(table.columns) : null,
    starColumns: table ? plaintextColumns(table) : null,
    mergedJoin: false,
    qualifiedOnly: false,
  };
}

export function derivedRelation(refName: string | null, starColumns: string[] | null): Relation {
  return {
    refName,
    schemaName: null,
    relName: null,
    table: null,
    columns: starColumns ? new Set(starColumns) : null,
    starColumns,
    mergedJoin: false,
    qualifiedOnly: false,
  };
}
