// What pgseal knows about a protected column (one row of pgseal.columns, plus the table's
// shape from the catalogs). Shared by the typed helpers, the SQL rewriter and the views.

export type ValueType = 'text' | 'bytea' | 'jsonb' | 'numeric';
export type Normalizer = 'none' | 'trim' | 'email' | 'phone' | 'upper';
export type ContextMode = 'column' | 'row';

export interface ProtectedColumn {
  schema: string;
  table: string;
  column: string;
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

export interface TableInfo {
  schema: string;
  table: string;
  /** every column in table order (for expanding `*`), blind-index columns included */
  columns: string[];
  /** primary key columns (row context needs exactly one) */
  primaryKey: string[];
  /** protected columns by column name */
  protected: Map<string, ProtectedColumn>;
}

/** Protected tables by 'schema.table' (unquoted names, as in the catalogs). */
export type Registry = Map<string, TableInfo>;

export function columnContext(c: Pick<ProtectedColumn, 'schema' | 'table' | 'column'>): string {
  return `${c.schema}.${c.table}.${c.column}`;
}

