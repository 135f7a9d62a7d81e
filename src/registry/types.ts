// The shape of the protected tables, from pgseal.columns and the catalogs: what the typed
// helpers, the SQL rewriter and the CLI read. A protected column itself is the model of
// src/columns/model.ts.

import type { ProtectedColumn } from '../columns/model.js';

export type { ContextMode, Normalizer, ProtectedColumn, ValueType } from '../columns/model.js';

export interface TableInfo {
  schema: string;
  table: string;
  /** every column in table order (for expanding `*`), blind-index columns included */
  columns: string[];
  /** primary key columns (row context needs exactly one) */
  primaryKey: string[];
  /** each column's type as the wire reports it (a domain's base type), by column name */
  typeOids?: Map<string, number>;
  /**
   * set when the table or a protected column of it was renamed (or a protected column
   * dropped) after it was protected: what differs. The library then refuses the table rather
   * than read its ciphertext as plaintext.
   */
  drift?: string[];
  /** protected columns by column name */
  protected: Map<string, ProtectedColumn>;
}

/** Protected tables by 'schema.table' (unquoted names, as in the catalogs). */
export type Registry = Map<string, TableInfo>;
