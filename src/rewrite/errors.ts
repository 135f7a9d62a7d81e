// The rewriter's errors. A message names the column, the construct and the position, and
// never quotes the statement: its literals may be plaintext.

import { ErrorCodes, PgsealError } from '../errors.js';
import { columnContext } from '../columns/context.js';
import type { ProtectedColumn, TableInfo } from '../registry/types.js';

export const DECRYPT_SCAN_HINT =
  'pass { allowDecryptScan: true } (CLI: --allow-decrypt-scan) to decrypt and compare row by row: correct, but a full scan';

/** Turns the parser's byte offsets into PostgreSQL's 1-based character positions. */
export class SourceText {
  private readonly ascii: boolean;
  private bytes: Buffer | undefined;

  constructor(readonly sql: string) {
    this.ascii = /^[\x00-\x7f]*$/.test(sql);
  }

  position(byteOffset: number | undefined): number | undefined {
    if (byteOffset === undefined || byteOffset < 0) return undefined;
    if (this.ascii) return byteOffset + 1;
    this.bytes ??= Buffer.from(this.sql, 'utf8');
    let count = 0;
    for (const _ of this.bytes.subarray(0, byteOffset).toString('utf8')) count++;
    return count + 1;
  }
}

const at = (position: number | undefined) => (position === undefined ? '' : ` at position ${position}`);

function columnFields(column: ProtectedColumn | undefined, position: number | undefined) {
  return {
    position: position === undefined ? undefined : String(position),
    schema_name: column?.schema,
    table_name: column?.table,
    column_name: column?.column,
  };
}

/** A pattern that cannot work on ciphertext; allowDecryptScan turns it into a decrypting scan. */
export function refusal(column: ProtectedColumn, construct: string, position: number | undefined, reason?: string): PgsealError {
  return new PgsealError(
    ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT,
    `encrypted column ${columnContext(column)}${at(position)}: ${construct} cannot run on ciphertext${reason ? ` (${reason})` : ''}`,
    { hint: DECRYPT_SCAN_HINT, ...columnFields(column, position) },
  );
}

/** A construct the rewriter does not handle on a protected column: refused rather than guessed. */
export function unsupported(what: string, hint: string, column?: ProtectedColumn, position?: number): PgsealError {
  const where = [column ? `column ${columnContext(column)}` : '', position === undefined ? '' : `position ${position}`].filter(Boolean).join(', ');
  return new PgsealError(ErrorCodes.REWRITE_UNSUPPORTED, `the SQL rewriter does not support ${what}${where ? ` (${where})` : ''}`, {
    hint,
    ...columnFields(column, position),
  });
}

/** A protected table renamed, or with a protected column renamed or dropped, since it was protected. */
export function registryDrift(table: TableInfo): PgsealError {
  return new PgsealError(ErrorCodes.REGISTRY_MISMATCH, `${table.schema}.${table.table} differs from pgseal.columns: ${(table.drift ?? []).join('; ')}; pgseal will not read its ciphertext as plaintext`, {
    hint: 'rename it back: the values open only under the names they were protected with (their context). `pgseal columns list` shows those names',
    schema_name: table.schema,
    table_name: table.table,
  });
}
