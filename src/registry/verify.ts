// A table definition (the typed helpers', the ORM adapters') against pgseal.columns: every
// difference listed in one PGSEAL_REGISTRY_MISMATCH, so a definition that drifted from the
// database fails at start-up rather than as values that do not open.

import { SPEC_FIELDS, type ProtectedColumn } from '../columns/model.js';
import { ErrorCodes, PgsealError } from '../errors.js';
import type { TableInfo } from './types.js';

/** What a plain column reads as in JavaScript (the typed helpers' column.plain('number') and the like). */
export interface PlainKinds {
  string: string;
  number: number;
  bigint: bigint;
  boolean: boolean;
  date: Date;
  json: unknown;
  buffer: Buffer;
}
export type PlainKind = keyof PlainKinds;

// postgres.js's own parsers by type oid; a type it has no parser for reads as a string
const PARSED: Record<number, PlainKind> = {
  16: 'boolean', 17: 'buffer', 20: 'bigint', 21: 'number', 23: 'number', 26: 'number', 114: 'json', 700: 'number', 701: 'number',
  1082: 'date', 1114: 'date', 1184: 'date', 3802: 'json',
};
// types whose text looks like a number: an undeclared plain column of them is the trap
const NUMERIC_TEXT: Record<number, string> = { 20: 'bigint', 1700: 'numeric' };

/** What this connection reads a column of type `oid` as; undefined where a parser of the caller's own decides. */
export function readsAs(oid: number, parsers: Readonly<Record<number, unknown>>): PlainKind | undefined {
  if (parsers[oid] === undefined) return 'string';
  return PARSED[oid];
}

/**
 * Plain columns against the table: each exists, and one declared with what it reads as
 * (`plain: name -> kind`, undefined for column.plain<T>()) reads as that on this connection
 * (`parsers`: postgres.js's `sql.options.parsers`). An undeclared plain column of a type whose
 * text looks like a number (bigint, numeric) reads as a string: listed too, since
 * column.plain<number>() there would be a silent lie.
 */
export function plainColumnProblems(
  plain: ReadonlyMap<string, PlainKind | undefined>, info: Pick<TableInfo, 'typeOids'> | undefined, parsers: Readonly<Record<number, unknown>>,
): string[] {
  if (!info?.typeOids) return [];
  const problems: string[] = [];
  for (const [name, declared] of plain) {
    const oid = info.typeOids.get(name);
    if (oid === undefined) {
      problems.push(`${name} is not a column of the table`);
      continue;
    }
    const actual = readsAs(oid, parsers);
    if (declared !== undefined) {
      if (actual !== undefined && actual !== declared) {
        problems.push(`${name} is declared column.plain('${declared}') but reads as a ${actual} on this connection${oid === 20 ? " (bigint: declare 'string', or read bigint as bigint with postgres({ types: { bigint: postgres.BigInt } }) and declare 'bigint')" : ''}`);
      }
    } else if (NUMERIC_TEXT[oid] && actual === 'string') {
      problems.push(`${name} is ${NUMERIC_TEXT[oid]}, which reads as a string on this connection: declare it column.plain('string')${oid === 20 ? " (or 'bigint' with postgres({ types: { bigint: postgres.BigInt } }))" : ''} so that its type is checked`);
    }
  }
  return problems;
}

/**
 * `encrypted`: the definition's encrypted columns by name; `columns`: all its column names
 * (a column protected in the database must be encrypted in it); `info`: the registry's entry.
 */
export function verifyDefinition(
  qualified: string, encrypted: ReadonlyMap<string, ProtectedColumn>, primaryKey: string, info: Pick<TableInfo, 'primaryKey' | 'protected' | 'typeOids' | 'drift'> | undefined,
  plain?: { columns: ReadonlyMap<string, PlainKind | undefined>; parsers: Readonly<Record<number, unknown>> },
): void {
  const problems: string[] = [...(info?.drift ?? []), ...(plain ? plainColumnProblems(plain.columns, info, plain.parsers) : [])];
  if (!info) problems.push('no column of it is protected (pgseal protect)');
  for (const [name, c] of encrypted) {
    const r = info?.protected.get(name);
    if (!r) {
      if (info) problems.push(`${name} is encrypted in the definition but not registered (pgseal protect)`);
      continue;
    }
    // the blind index's size matters only where there is one
    for (const k of SPEC_FIELDS) {
      if (k === 'blindIndexBytes' && !c.searchable) continue;
      if (r[k] !== c[k]) problems.push(`${name}.${k}: definition ${JSON.stringify(c[k])}, database ${JSON.stringify(r[k])}`);
    }
  }
  for (const name of info?.protected.keys() ?? []) if (!encrypted.has(name)) problems.push(`${name} is protected in the database but not encrypted in the definition`);
  if (info && (info.primaryKey.length !== 1 || info.primaryKey[0] !== primaryKey)) problems.push(`the primary key is (${info.primaryKey.join(', ')}) in the database, ${primaryKey} in the definition`);
  if (problems.length > 0) {
    throw new PgsealError(ErrorCodes.REGISTRY_MISMATCH, `${qualified} differs from pgseal.columns: ${problems.join('; ')}`, { hint: 'align the table definition with `pgseal columns list`' });
  }
}
