// What pgseal knows about one protected column: where it lives, the type of its plaintext,
// which key scope seals it, what its values are bound to, and how it is searched. One model
// for every part of pgseal: the registry (pgseal.columns) loads it, the typed helpers build
// it from a table definition, and the rewriter, the re-encryption batches and the views
// take their expressions from it (expressions.ts).

import { ErrorCodes, PgsealError } from '../errors.js';

export type ValueType = 'text' | 'bytea' | 'jsonb' | 'numeric';
export type Normalizer = 'none' | 'trim' | 'email' | 'phone' | 'upper';
export type ContextMode = 'column' | 'row';

/** How a column is protected, without where it lives (what a table definition's column.text() says). */
export interface ColumnSpec {
  valueType: ValueType;
  /** fixed key scope, or null when scopeColumn names the column holding it */
  scope: string | null;
  scopeColumn: string | null;
  /** 'column': context is 'schema.table.column'; 'row': 'schema.table.column#<primary key>' */
  contextMode: ContextMode;
  searchable: boolean;
  normalizer: Normalizer;
  /** the bytea column holding the blind index when searchable */
  blindIndexColumn: string | null;
  /** bytes of HMAC-SHA-256 kept in the blind index */
  blindIndexBytes: number;
}

export interface ProtectedColumn extends ColumnSpec {
  schema: string;
  table: string;
  column: string;
}

/** The separators of a context (context.ts): names holding them could make two columns share one. */
const SEPARATORS = /[.@#]/;

/** A protected column from its place and its spec; the blind-index column defaults to <column>_bidx. */
export function protectedColumn(schema: string, table: string, column: string, spec: ColumnSpec): ProtectedColumn {
  for (const [what, name] of [['schema', schema], ['table', table], ['column', column]] as const) {
    if (SEPARATORS.test(name)) {
      throw new PgsealError(ErrorCodes.INVALID_ARGUMENT, `${schema}.${table}.${column}: a protected column's ${what} name cannot contain ".", "@" or "#"`, {
        hint: 'they separate the parts of a context; rename it before protecting the column',
      });
    }
  }
  return {
    schema, table, column,
    valueType: spec.valueType,
    scope: spec.scopeColumn ? null : (spec.scope ?? 'default'),
    scopeColumn: spec.scopeColumn ?? null,
    contextMode: spec.contextMode,
    searchable: spec.searchable,
    normalizer: spec.normalizer,
    blindIndexColumn: spec.searchable ? (spec.blindIndexColumn ?? identifierOf(`${column}_bidx`)) : null,
    blindIndexBytes: spec.blindIndexBytes,
  };
}

/** A name as PostgreSQL keeps it (protect_column's left(..., 63)::name): 63 characters, then 63 bytes at a character boundary. */
function identifierOf(name: string): string {
  let out = [...name].slice(0, 63).join('');
  while (Buffer.byteLength(out, 'utf8') > 63) out = [...out].slice(0, -1).join('');
  return out;
}

/** The settings two models of one column must agree on (Table.verify compares them). */
export const SPEC_FIELDS: ReadonlyArray<keyof ColumnSpec> = ['valueType', 'scope', 'scopeColumn', 'contextMode', 'searchable', 'normalizer', 'blindIndexColumn', 'blindIndexBytes'];
