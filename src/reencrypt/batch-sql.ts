// Where a batch is re-encrypted: the SQL of re-encryption, per column, built with the
// statement builder from the column model's expressions. Identifiers are quoted; versions
// and checkpoints are named slots, bound per batch. Keys are bound arguments too (secret
// slots: the keyset of the stale versions, and the key payload the active key material and
// index keys are looked up in), never the transaction's settings: a trigger of the table's
// owner fires inside the batch's transaction and could read those. The batch runs behind
// pgseal.guard() (src/exec/transaction.ts), which pins the settings that would print bound
// keys into a plan dump or the server log.
//
// One batch is one short transaction of two statements: the next primary keys of the
// range (where the batch ends), then one UPDATE over exactly that key range that rewrites
// the values still on a stale version (decrypted with the old key and encrypted with the
// active one, inside the database), and moves the checkpoint, all or nothing. Under READ
// COMMITTED a row a writer changed meanwhile is re-checked (EvalPlanQual): already on the
// active key, it is left alone; written with a stale key, its new value is the one
// re-encrypted. Row locks last one batch.

import { resealExpr, scopeExpr, storedIndexExpr, type KeyRoute, type RowSource } from '../columns/expressions.js';
import { call, operand, toFragment } from '../statement/expr.js';
import { catalogType, compile, ident, slot, sql, type Compiled, type Fragment } from '../statement/sql.js';
import type { Target } from './targets.js';

/** The named values a batch's statements take. */
export type BatchParam = 'keyset' | 'payload' | 'stale' | 'scopes' | 'limit' | 'run' | 'schema' | 'table' | 'column' | 'part' | 'after' | 'until' | 'last' | 'scanned' | 'percent' | 'fractions';
export type BatchValues = Partial<Record<BatchParam, unknown>>;

const table = (t: Target) => ident(t.column.schema, t.column.table);
/** a column of the row a batch reads, aliased t */
const col = (name: string) => sql`t.${ident(name)}`;
/** a primary key travels as text (the checkpoint is stored as text) and is cast back to its type */
const key = (t: Target, name: BatchParam) => sql`${slot(name)}::pg_catalog.text::${catalogType(t.pkType)}`;
const stale = (t: Target) => sql`${toFragment(call('key_version_of', [operand(col(t.column.column))]))} = ANY (${slot('stale')}::pg_catalog.int4[])`;

/** Keys as the batch's arguments: the stale versions' keyset (decrypting) and the key payload (writing, indexing). */
const KEYS = (): KeyRoute<Fragment> => ({ via: 'argument', keyset: operand(slot('keyset', { secret: true })), payload: operand(slot('payload', { secret: true })) });

/** The row a batch reads, aliased t: its primary key and scope column, for contexts and scopes. */
const stored = (t: Target): RowSource<Fragment> => ({ key: () => operand(col(t.pk)), scopeValue: () => operand(col(t.column.scopeColumn!)) });

/** The range condition: keys after the checkpoint (or the part's lower bound) and up to its upper bound. */
function range(t: Target, after: boolean, until: boolean): Fragment {
  return sql`${after ? sql` AND ${col(t.pk)} > ${key(t, 'after')}` : sql``}${until ? sql` AND ${col(t.pk)} <= ${key(t, 'until')}` : sql``}`;
}

/**
 * Where the next batch of a range ends: its last key (as text) and how many keys it holds
 * (fewer than the limit: the range is exhausted). No row when nothing is left.
 */
export function nextBatchStatement(t: Target, after: boolean, until: boolean): Compiled {
  const pk = col(t.pk);
  return compile(sql`SELECT s.k::pg_catalog.text AS last_key, s.n::pg_catalog.int4 AS scanned FROM (
  SELECT ${pk} AS k, pg_catalog.row_number() OVER (ORDER BY ${pk}) AS n FROM ${table(t)} AS t
   WHERE true${range(t, after, until)}
   ORDER BY ${pk} LIMIT ${slot('limit')}) AS s
 ORDER BY s.n DESC LIMIT 1`);
}

/**
 * Rewrites the batch (after, last] and moves the checkpoint in the same statement. A key
 * range with constants, so the planner walks the primary-key index over exactly the batch.
 */
export function batchStatement(t: Target, after: boolean): Compiled {
  return compile(t.kind === 'index' ? indexBatch(t, after) : dataBatch(t, after));
}

/** The batch's key range, over the row aliased t. */
function batchRange(t: Target, after: boolean): Fragment {
  return sql`${after ? sql`${col(t.pk)} > ${key(t, 'after')} AND ` : sql``}${col(t.pk)} <= ${key(t, 'last')}`;
}

/** The statement's tail: the checkpoint moved in the same statement, and the result row. */
function checkpoint(): Fragment {
  return sql`saved AS (
  UPDATE pgseal.reencrypt_progress AS p
     SET last_key = COALESCE(${slot('last')}::pg_catalog.text, p.last_key), rows_done = p.rows_done + (SELECT pg_catalog.count(*) FROM changed),
         batches = p.batches + 1, done = ${slot('scanned')}::pg_catalog.int4 < ${slot('limit')}::pg_catalog.int4, updated_at = pg_catalog.clock_timestamp()
   WHERE p.run_id = ${slot('run')} AND p.table_schema = ${slot('schema')} AND p.table_name = ${slot('table')} AND p.column_name = ${slot('column')} AND p.part = ${slot('part')}
  RETURNING p.part
)
SELECT (SELECT pg_catalog.count(*) FROM changed)::pg_catalog.int4 AS changed, (SELECT pg_catalog.count(*) FROM saved)::pg_catalog.int4 AS saved`;
}

/** The blind index a row should carry: its value under the scope's active index key. */
export function indexExpression(t: Target): Fragment {
  return toFragment(storedIndexExpr(t.column, operand(col(t.column.column)), stored(t), KEYS()));
}

/**
 * Recomputes blind indexes: each value of the batch is decrypted once and its index under
 * the active key written where it differs. A row a writer changed meanwhile (its value no
 * longer the one read) is left to the writer, whose index is current.
 */
function indexBatch(t: Target, after: boolean): Fragment {
  const pk = ident(t.pk);
  const value = ident(t.column.column);
  const bidx = ident(t.column.blindIndexColumn!);
  return sql`WITH batch AS MATERIALIZED (
  SELECT t.${pk} AS k, t.${value} AS v, ${indexExpression(t)} AS idx FROM ${table(t)} AS t
   WHERE ${batchRange(t, after)} AND ${todo(t)}
), changed AS (
  UPDATE ${table(t)} AS t SET ${bidx} = b.idx
    FROM batch AS b
   WHERE ${batchRange(t, after)} AND t.${pk} = b.k
     AND t.${value} IS NOT DISTINCT FROM b.v AND t.${bidx} IS DISTINCT FROM b.idx
  RETURNING 1
), ${checkpoint()}`;
}

function dataBatch(t: Target, after: boolean): Fragment {
  const scoped = t.column.scopeColumn !== null;
  const scope = toFragment(scopeExpr(t.column, stored(t)));
  // the active key material looked up in the payload once, by a one-row subquery; per row only for a scope column
  const payload = sql`${slot('payload', { secret: true })}::pg_catalog.bytea`;
  const material = scoped ? sql`pgseal._material_in(${payload}, ${scope})` : sql`k.material`;
  const resealed = toFragment(resealExpr(t.column, operand(col(t.column.column)), stored(t), operand(sql`${slot('keyset', { secret: true })}::pg_catalog.bytea`), operand(material)));
  return sql`WITH changed AS (
  UPDATE ${table(t)} AS t
     SET ${ident(t.column.column)} = ${resealed}
${scoped ? sql`` : sql`    -- OFFSET 0 keeps the subquery from being flattened into a per-row call
    FROM (SELECT pgseal._material_in(${payload}, ${scope}) AS material OFFSET 0) AS k
`}   WHERE ${batchRange(t, after)} AND ${stale(t)}
  RETURNING 1
), ${checkpoint()}`;
}

/** Rows still to do: on a stale version; for an index run, every value (counted without keys). */
export function countStatement(t: Target): Compiled {
  return compile(sql`SELECT pg_catalog.count(*)::pg_catalog.int8 AS n FROM ${table(t)} AS t WHERE ${todo(t)}`);
}

/** Rows whose blind index is not the active key's: needs the keys (src/exec/transaction.ts). */
export function staleIndexStatement(t: Target): Compiled {
  return compile(sql`SELECT pg_catalog.count(*)::pg_catalog.int8 AS n FROM ${table(t)} AS t
 WHERE ${todo(t)} AND ${col(t.column.blindIndexColumn!)} IS DISTINCT FROM ${indexExpression(t)}`);
}

/** The rows a run has to do, as a condition on the row aliased t. */
function todo(t: Target): Fragment {
  if (t.kind === 'data') return stale(t);
  // rows of tenants outside the run's scopes (--scope) are not decrypted: their keys are not handed in
  const tenant = t.column.scopeColumn ? sql` AND ${col(t.column.scopeColumn)}::pg_catalog.text = ANY (${slot('scopes')}::pg_catalog.text[])` : sql``;
  return sql`${col(t.column.column)} IS NOT NULL${tenant}`;
}

/**
 * Range bounds splitting the rows to do into equal parts, from a sample of the table's
 * pages (percent) so that planning a run over tens of millions of rows stays cheap.
 */
export function boundsStatement(t: Target): Compiled {
  return compile(sql`SELECT (pg_catalog.percentile_disc(${slot('fractions')}::pg_catalog.float8[]) WITHIN GROUP (ORDER BY ${col(t.pk)}))::pg_catalog.text[] AS bounds
  FROM ${table(t)} AS t TABLESAMPLE SYSTEM (${slot('percent')}) WHERE ${todo(t)}`);
}

/** Rows per key version, for --dry-run (NULL: not a pgseal envelope). */
export function versionsStatement(t: Target): Compiled {
  const c = col(t.column.column);
  return compile(sql`SELECT ${toFragment(call('key_version_of', [operand(c)]))} AS version, pg_catalog.count(*)::pg_catalog.int8 AS n
  FROM ${table(t)} AS t WHERE ${c} IS NOT NULL GROUP BY 1 ORDER BY 1`);
}
