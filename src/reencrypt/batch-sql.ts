// The SQL of re-encryption, generated per column. Identifiers are quoted; versions and
// checkpoints are bound parameters. Keys are in neither: the batch runs in a transaction
// that received them through pgseal.use_keys (src/transaction.ts), and the batch reads
// them from there, so this long statement carries none in its text, parameters or plan.
//
// One batch is one short transaction of two statements: the next primary keys of the
// range (where the batch ends), then one UPDATE over exactly that key range that rewrites
// the values still on a stale version (decrypted with
// the old key and encrypted with the active one, inside the database), and moves the
// checkpoint, all or nothing. Under READ COMMITTED a row a writer changed meanwhile is
// re-checked (EvalPlanQual): already on the active key, it is left alone; written with a
// stale key, its new value is the one re-encrypted. Row locks last one batch.

import { ident, literal } from '../helpers/sql.js';
import type { Target } from './targets.js';

export type BatchParam = 'stale' | 'scopes' | 'limit' | 'run' | 'schema' | 'table' | 'column' | 'part' | 'after' | 'until' | 'last' | 'scanned' | 'percent' | 'fractions';

/** A statement and the names of its parameters in placeholder order. */
export interface Statement {
  text: string;
  params: BatchParam[];
}

/** A parameter's token; NUL cannot occur in an identifier or a literal, so never in a name. */
const $ = (name: BatchParam): string => `\u0000${name}\u0000`;

/**
 * Numbers the tokens in order of first use: a prepared statement may not declare a
 * parameter it does not use, and the variants use different ones.
 */
function numbered(template: string): Statement {
  const params: BatchParam[] = [];
  const text = template.replace(/\u0000(\w+)\u0000/g, (_m, name: BatchParam) => {
    if (!params.includes(name)) params.push(name);
    return `$${params.indexOf(name) + 1}`;
  });
  return { text, params };
}

const table = (t: Target) => `${ident(t.column.schema)}.${ident(t.column.table)}`;
const key = (t: Target, placeholder: string) => `${placeholder}::text::${t.pkType}`;
const stale = (t: Target, alias: string) => `pgseal.key_version_of(${alias}.${ident(t.column.column)}) = ANY (${$('stale')}::integer[])`;

/** The context each value was sealed with, over the row aliased `t` (as the helpers build it). */
export function contextExpression(t: Target): string {
  const c = t.column;
  let ctx = literal(`${c.schema}.${c.table}.${c.column}`);
  if (c.scopeColumn) ctx = `pgseal.scope_context(${ctx}, t.${ident(c.scopeColumn)}::text)`;
  if (c.contextMode === 'row') ctx = `pgseal.row_context(${ctx}, t.${ident(t.pk)}::text)`;
  return ctx;
}

/** The range condition: keys after the checkpoint (or the part's lower bound) and up to its upper bound. */
function range(t: Target, after: boolean, until: boolean): string {
  return [after ? `t.${ident(t.pk)} > ${key(t, $('after'))}` : '', until ? `t.${ident(t.pk)} <= ${key(t, $('until'))}` : ''].filter(Boolean).map((s) => ` AND ${s}`).join('');
}

/**
 * Where the next batch of a range ends: its last key (as text) and how many keys it holds
 * (fewer than the limit: the range is exhausted). No row when nothing is left.
 */
export function nextBatchStatement(t: Target, after: boolean, until: boolean): Statement {
  const pk = ident(t.pk);
  return numbered(`SELECT s.k::text AS last_key, s.n::integer AS scanned FROM (
  SELECT t.${pk} AS k, pg_catalog.row_number() OVER (ORDER BY t.${pk}) AS n FROM ${table(t)} AS t
   WHERE true${range(t, after, until)}
   ORDER BY t.${pk} LIMIT ${$('limit')}) AS s
 ORDER BY s.n DESC LIMIT 1`);
}

/**
 * Rewrites the batch (after, last] and moves the checkpoint in the same statement. A key
 * range with constants, so the planner walks the primary-key index over exactly the batch.
 */
export function batchStatement(t: Target, after: boolean): Statement {
  return t.kind === 'index' ? indexBatch(t, after) : dataBatch(t, after);
}

/** The batch's key range, over the row aliased t. */
function batchRange(t: Target, after: boolean): string {
  const pk = `t.${ident(t.pk)}`;
  return `${after ? `${pk} > ${key(t, $('after'))} AND ` : ''}${pk} <= ${key(t, $('last'))}`;
}

/** The statement's tail: the checkpoint moved in the same statement, and the result row. */
function checkpoint(): string {
  return `saved AS (
  UPDATE pgseal.reencrypt_progress AS p
     SET last_key = COALESCE(${$('last')}::text, p.last_key), rows_done = p.rows_done + (SELECT count(*) FROM changed),
         batches = p.batches + 1, done = ${$('scanned')}::integer < ${$('limit')}::integer, updated_at = pg_catalog.clock_timestamp()
   WHERE p.run_id = ${$('run')} AND p.table_schema = ${$('schema')} AND p.table_name = ${$('table')} AND p.column_name = ${$('column')} AND p.part = ${$('part')}
  RETURNING p.part
)
SELECT (SELECT count(*) FROM changed)::integer AS changed, (SELECT count(*) FROM saved)::integer AS saved`;
}

/** The plaintext as the text its blind index is computed from (as the rewriter's textForm does for a value). */
function indexedText(t: Target): string {
  const c = t.column;
  const ctx = contextExpression(t);
  const col = `t.${ident(c.column)}`;
  switch (c.valueType) {
    case 'bytea':
      return `pgseal.decrypt_bytea(${col}, ${ctx})::text`;
    case 'jsonb':
      return `pgseal.decrypt_text(${col}, ${ctx})::jsonb::text`;
    case 'numeric':
      return `pgseal.decrypt_text(${col}, ${ctx})::numeric::text`;
    default:
      return `pgseal.decrypt_text(${col}, ${ctx})`;
  }
}

function scopeExpression(t: Target): string {
  return t.column.scopeColumn ? `t.${ident(t.column.scopeColumn)}::text` : literal(t.column.scope ?? 'default');
}

/** The blind index a row should carry: its value under the scope's active index key. */
export function indexExpression(t: Target): string {
  const c = t.column;
  return `pgseal.blind_index(${indexedText(t)}, ${literal(c.normalizer)}, ${literal(`${c.schema}.${c.table}.${c.column}`)}, ${scopeExpression(t)}, ${c.blindIndexBytes})`;
}

/**
 * Recomputes blind indexes: each value of the batch is decrypted once and its index under
 * the active key written where it differs. A row a writer changed meanwhile (its value no
 * longer the one read) is left to the writer, whose index is current.
 */
function indexBatch(t: Target, after: boolean): Statement {
  const pk = ident(t.pk);
  const col = ident(t.column.column);
  const bidx = ident(t.column.blindIndexColumn!);
  return numbered(`WITH batch AS MATERIALIZED (
  SELECT t.${pk} AS k, t.${col} AS v, ${indexExpression(t)} AS idx FROM ${table(t)} AS t
   WHERE ${batchRange(t, after)} AND ${todo(t)}
), changed AS (
  UPDATE ${table(t)} AS t SET ${bidx} = b.idx
    FROM batch AS b
   WHERE ${batchRange(t, after)} AND t.${pk} = b.k
     AND t.${col} IS NOT DISTINCT FROM b.v AND t.${bidx} IS DISTINCT FROM b.idx
  RETURNING 1
), ${checkpoint()}`);
}

function dataBatch(t: Target, after: boolean): Statement {
  const col = ident(t.column.column);
  const ctx = contextExpression(t);
  // keys read from the transaction once, by a one-row subquery; per row only for a scope column
  const material = t.column.scopeColumn ? `pgseal._active_material(${scopeExpression(t)})` : 'k.material';
  return numbered(`WITH changed AS (
  UPDATE ${table(t)} AS t
     SET ${col} = pgseal.reseal_with(t.${col}, ${ctx}, k.keyset, ${material})
    -- OFFSET 0 keeps the subquery from being flattened into a per-row call
    FROM (SELECT pgseal._keyset_of(${$('stale')}::integer[]) AS keyset${t.column.scopeColumn ? '' : `, pgseal._active_material(${scopeExpression(t)}) AS material`} OFFSET 0) AS k
   WHERE ${batchRange(t, after)} AND ${stale(t, 't')}
  RETURNING 1
), ${checkpoint()}`);
}

/** Rows still to do: on a stale version; for an index run, every value (counted without keys). */
export function countStatement(t: Target): Statement {
  return numbered(`SELECT count(*)::bigint AS n FROM ${table(t)} AS t WHERE ${todo(t)}`);
}

/** Rows whose blind index is not the active key's: needs the keys (src/transaction.ts). */
export function staleIndexStatement(t: Target): Statement {
  return numbered(`SELECT count(*)::bigint AS n FROM ${table(t)} AS t
 WHERE ${todo(t)} AND t.${ident(t.column.blindIndexColumn!)} IS DISTINCT FROM ${indexExpression(t)}`);
}

/** The rows a run has to do, as a condition on the row aliased t. */
function todo(t: Target): string {
  if (t.kind === 'data') return stale(t, 't');
  // rows of tenants outside the run's scopes (--scope) are not decrypted: their keys are not handed in
  const tenant = t.column.scopeColumn ? ` AND t.${ident(t.column.scopeColumn)}::text = ANY (${$('scopes')}::text[])` : '';
  return `t.${ident(t.column.column)} IS NOT NULL${tenant}`;
}

/**
 * Range bounds splitting the rows to do into equal parts, from a sample of the table's
 * pages (percent) so that planning a run over tens of millions of rows stays cheap.
 */
export function boundsStatement(t: Target): Statement {
  return numbered(`SELECT (percentile_disc(${$('fractions')}::float8[]) WITHIN GROUP (ORDER BY t.${ident(t.pk)}))::text[] AS bounds
  FROM ${table(t)} AS t TABLESAMPLE SYSTEM (${$('percent')}) WHERE ${todo(t)}`);
}

/** Runs a statement with its parameters picked by name. */
export function bind(statement: Statement, values: Partial<Record<BatchParam, unknown>>): unknown[] {
  return statement.params.map((p) => values[p]);
}

/** Rows per key version, for --dry-run (NULL: not a pgseal envelope). */
export function versionsStatement(t: Target): string {
  return `SELECT pgseal.key_version_of(t.${ident(t.column.column)}) AS version, count(*)::bigint AS n
  FROM ${table(t)} AS t WHERE t.${ident(t.column.column)} IS NOT NULL GROUP BY 1 ORDER BY 1`;
}
