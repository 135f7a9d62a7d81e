// The doctor's data checks: do the protected columns hold pgseal envelopes (never plaintext
// slipped in by hand), does the registry still match the tables, and are columns pending
// encryption. The values themselves never leave the database: the queries return counts,
// key versions and primary-key values only.
//
// One scan per protected column (scanColumns) serves this area and keys.revoked_in_use: a
// random sample of options.sampleRows non-NULL values by default, every row with --full.

import type { Sql } from 'postgres';
import { columnContext } from '../columns/context.js';
import { listProtectedColumns } from '../registry/load.js';
import type { ProtectedColumn } from '../registry/types.js';
import { ident, int, join, quoteIdent, quoteLiteral, sql as q, statement, value, type Fragment } from '../statement/sql.js';
import { readableOnly, type Check, type DoctorContext } from './check.js';

/** Row ids listed per column at most (the counts stay complete). */
const MAX_IDS = 20;

/** A protected column and what its table looks like now. */
interface ColumnShape {
  column: ProtectedColumn;
  /** 'schema.table.column' */
  name: string;
  tableExists: boolean;
  /** format_type() of the column, null when it is missing */
  type: string | null;
  /** of the blind-index column (searchable columns), null when missing */
  indexType: string | null;
  scopeColumnExists: boolean;
  /** the primary key's columns, [] without one */
  primaryKey: string[];
}

interface TableRow {
  table_schema: string;
  table_name: string;
  types: Record<string, string>;
  primary_key: string[] | null;
}

/** The registry beside the catalogs: every protected column and whether its table still has it. */
async function columnShapes(sql: Sql): Promise<ColumnShape[]> {
  const columns = await listProtectedColumns(sql);
  if (columns.length === 0) return [];
  const tables = await sql<TableRow[]>`
    select n.nspname::pg_catalog.text as table_schema, c.relname::pg_catalog.text as table_name,
           (select pg_catalog.json_object_agg(a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod))
              from pg_catalog.pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as types,
           array(select a.attname::pg_catalog.text from pg_catalog.pg_index i
                   join lateral pg_catalog.unnest(i.indkey) with ordinality as k(attnum, ord) on true
                   join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                  where i.indrelid = c.oid and i.indisprimary order by k.ord) as primary_key
      from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where (n.nspname, c.relname) in (select r.table_schema, r.table_name from pgseal.columns r)`;
  const byTable = new Map(tables.map((t) => [`${t.table_schema}.${t.table_name}`, t]));
  return columns.map((column) => {
    const t = byTable.get(`${column.schema}.${column.table}`);
    const types = t?.types ?? {};
    return {
      column,
      name: columnContext(column),
      tableExists: t !== undefined,
      type: types[column.column] ?? null,
      indexType: column.blindIndexColumn ? (types[column.blindIndexColumn] ?? null) : null,
      scopeColumnExists: column.scopeColumn === null || types[column.scopeColumn] !== undefined,
      primaryKey: t?.primary_key ?? [],
    };
  });
}

/** What one scan of a protected column found. */
export interface ColumnScan {
  /** 'schema.table.column' */
  name: string;
  column: ProtectedColumn;
  /** every row (--full), or a random sample */
  sampled: boolean;
  /** how the rows were picked: every row; ORDER BY random() over every row, or over TABLESAMPLE BERNOULLI / SYSTEM of about 3n rows */
  method: 'every row' | 'random' | 'bernoulli' | 'system';
  /** non-NULL values looked at */
  values: number;
  /** values per key version (pgseal envelopes) */
  versions: Map<number, number>;
  /** values that are not pgseal envelopes */
  notEnvelopes: number;
  /** their row ids (primary key values as text, or ctid without a primary key): the first MAX_IDS in key order */
  ids: string[];
  /** what an id is: the primary key's columns, or ['ctid'] */
  idColumns: string[];
  /** set when the column could not be read (a permission): nothing else is */
  unreadable?: string | undefined;
}

/** A column whose values can be scanned: its table and column exist and it is bytea. */
const scannable = (s: ColumnShape): boolean => s.tableExists && s.type === 'bytea';

// one scan per doctor run, shared by keys.revoked_in_use and data.plaintext (the same sample)
const SCANS = new WeakMap<DoctorContext, Promise<ColumnScan[]>>();

/** Every scannable protected column, scanned once per doctor run. */
export function scanColumns(ctx: DoctorContext): Promise<ColumnScan[]> {
  let scans = SCANS.get(ctx);
  if (!scans) {
    scans = (async () => {
      const out: ColumnScan[] = [];
      for (const shape of (await columnShapes(ctx.sql)).filter(scannable)) out.push(await scanColumn(ctx, shape));
      return out;
    })();
    SCANS.set(ctx, scans);
  }
  return scans;
}

/** The key version of a value when it is a format-1 envelope (header and length: docs/format.md §2, §6), else NULL. */
const envelopeVersion = (v: Fragment): Fragment =>
  q`CASE WHEN (pg_catalog.octet_length(${v}) - 54) % 16 = 0 THEN pgseal.key_version_of(${v}) END`;

type Group = { version: number | null; n: string; ids: string[] | null };

/** Up to n random non-NULL values of the column, counted per key version (NULL: not an envelope), with the first ids of those that are not envelopes. */
function sampleGroups(sql: Sql, table: Fragment, col: Fragment, keyExpr: Fragment, n: number, method: ColumnScan['method'], estimate: number): Promise<Group[]> {
  const pct = value(Math.min(100, (300 * n) / Math.max(estimate, 1)));
  const sample = method === 'system' ? q` TABLESAMPLE SYSTEM (${pct}::pg_catalog.float4)` : method === 'bernoulli' ? q` TABLESAMPLE BERNOULLI (${pct}::pg_catalog.float4)` : q``;
  return statement(q`
    WITH s AS MATERIALIZED (
      SELECT ${keyExpr} AS k, (${keyExpr})::pg_catalog.text AS id, ${envelopeVersion(col)} AS version
        FROM ${table} AS t${sample} WHERE ${col} IS NOT NULL ORDER BY pg_catalog.random() LIMIT ${int(n)})
    SELECT s.version, pg_catalog.count(*)::pg_catalog.text AS n,
           CASE WHEN s.version IS NULL THEN ARRAY(SELECT x.id FROM s AS x WHERE x.version IS NULL ORDER BY x.k LIMIT ${int(MAX_IDS)}) END AS ids
      FROM s GROUP BY s.version`).run<Group>(sql);
}

async function scanColumn(ctx: DoctorContext, shape: ColumnShape): Promise<ColumnScan> {
  const c = shape.column;
  const table = ident(c.schema, c.table);
  const col = q`t.${ident(c.column)}`;
  // the row's id: its primary key (a row value for a composite one), else its ctid
  const pk = shape.primaryKey;
  const keyExpr = pk.length === 0 ? q`t.ctid` : pk.length === 1 ? q`t.${ident(pk[0]!)}` : q`ROW(${join(pk.map((k) => q`t.${ident(k)}`))})`;
  const scan: ColumnScan = {
    name: shape.name, column: c, sampled: !ctx.options.full, method: 'every row', values: 0, versions: new Map(), notEnvelopes: 0, ids: [],
    idColumns: pk.length === 0 ? ['ctid'] : pk,
  };
  let groups: Group[];
  try {
    if (ctx.options.full) {
      // every row: counts in one pass, then the first ids only where something is not an envelope
      groups = await statement(q`
        SELECT ${envelopeVersion(col)} AS version, pg_catalog.count(*)::pg_catalog.text AS n, NULL::pg_catalog.text[] AS ids
          FROM ${table} AS t WHERE ${col} IS NOT NULL GROUP BY 1`).run<Group>(ctx.sql);
      const plain = groups.find((g) => g.version === null);
      if (plain) {
        const ids = await statement(q`
          SELECT (${keyExpr})::pg_catalog.text AS id FROM ${table} AS t
           WHERE ${col} IS NOT NULL AND ${envelopeVersion(col)} IS NULL ORDER BY ${keyExpr} LIMIT ${int(MAX_IDS)}`).run<{ id: string }>(ctx.sql);
        plain.ids = ids.map((r) => r.id);
      }
    } else {
      const n = ctx.options.sampleRows;
      // rows from the planner's statistics; a table never analysed is guessed low (10 rows a block), so it is sampled more, not less
      const [size] = await ctx.sql<{ rows: number }[]>`
        select coalesce(sum(case when c.reltuples >= 0 then c.reltuples
                                 else pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::float8 * 10 end), 0)::float8 as rows
          from pg_catalog.pg_class c
         where c.relkind <> 'p' and (c.oid = ${quoteIdent(c.schema, c.table)}::pg_catalog.regclass
                                     or c.oid in (select p.relid from pg_catalog.pg_partition_tree(${quoteIdent(c.schema, c.table)}::pg_catalog.regclass) p where p.isleaf))`;
      const estimate = size?.rows ?? 0;
      // about 3n rows are drawn before the random n: a mid-sized table row by row (BERNOULLI), a large one by
      // blocks (SYSTEM, which reads only those blocks); a sample that comes back short (a stale estimate, a
      // mostly-NULL column) is drawn again from every row
      scan.method = estimate > 100 * n ? 'system' : estimate > 10 * n ? 'bernoulli' : 'random';
      groups = await sampleGroups(ctx.sql, table, col, keyExpr, n, scan.method, estimate);
      const drawn = groups.reduce((sum, g) => sum + Number(g.n), 0);
      if (scan.method !== 'random' && drawn < n) {
        scan.method = 'random';
        groups = await sampleGroups(ctx.sql, table, col, keyExpr, n, 'random', estimate);
      }
    }
  } catch (error) {
    const e = error as { code?: string; message?: string };
    if (e.code !== '42501') throw error;
    return { ...scan, unreadable: e.message ?? 'permission denied' };
  }
  for (const g of groups) {
    const count = Number(g.n);
    scan.values += count;
    if (g.version === null) {
      scan.notEnvelopes = count;
      scan.ids = g.ids ?? [];
    } else scan.versions.set(g.version, count);
  }
  return scan;
}

/** A name as a CLI argument: bare when it needs no quotes, else quoted for SQL and for the shell. */
const cliName = (...names: string[]): string =>
  names.every((n) => /^[a-z_][a-z0-9_]*$/.test(n)) ? names.join('.') : `'${quoteIdent(...names).replace(/'/g, `'\\''`)}'`;

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** "3, 17 and 2 more" */
function listIds(scan: ColumnScan): string {
  const more = scan.notEnvelopes - scan.ids.length;
  return scan.ids.join(', ') + (more > 0 ? ` and ${more} more` : '');
}

const plaintext: Check = async (ctx) => {
  const scans = await scanColumns(ctx);
  const id = 'data.plaintext';
  if (scans.length === 0) return [{ id, area: 'data', status: 'ok', summary: 'no protected column to look at', details: { columns: 0 } }];
  const unreadable = scans.filter((s) => s.unreadable);
  const found = scans.filter((s) => s.notEnvelopes > 0);
  const how = ctx.options.full ? 'every row' : `a random sample of up to ${ctx.options.sampleRows} values per column`;
  const details = {
    mode: ctx.options.full ? 'full' : 'sample',
    columns: scans.map((s) => ({
      column: s.name, method: s.method, values: s.values, not_envelopes: s.notEnvelopes,
      ...(s.notEnvelopes > 0 ? { row_ids: s.ids, id_columns: s.idColumns } : {}),
      ...(s.unreadable ? { unreadable: s.unreadable } : {}),
    })),
  };
  if (found.length > 0) {
    const what = found.map((s) => {
      const share = s.sampled && s.values > 0 ? ` (about ${Math.max(1, Math.round((100 * s.notEnvelopes) / s.values))}%)` : '';
      const are = s.notEnvelopes === 1 ? 'is not a pgseal envelope' : 'are not pgseal envelopes';
      return `${s.name}: ${s.notEnvelopes} of ${s.values}${s.sampled ? ' sampled' : ''} values ${are}${share}, ${s.notEnvelopes === 1 ? 'row' : 'rows'} ${listIds(s)}`;
    });
    return [{
      id, area: 'data', status: 'fail',
      summary: `plaintext in protected columns (${how}): ${what.join('; ')}`,
      fix: 'write those values again through pgseal (the typed helpers\' update, seal.query or `pgseal query` with the value), so they are sealed under their column\'s context; '
        + (ctx.options.full ? '' : 'run `pgseal doctor --full` to list every such row; ')
        + 'the plaintext also survives in WAL, dead tuples, replicas and backups',
      details,
    }];
  }
  if (unreadable.length > 0) {
    return [{
      id, area: 'data', status: 'skip',
      summary: `${plural(unreadable.length, 'protected column')} could not be read by this role: ${unreadable.map((s) => s.name).join(', ')}`,
      fix: 'run pgseal doctor as the owner of the protected tables (the role that ran the migrations)',
      details,
    }];
  }
  const values = scans.reduce((n, s) => n + s.values, 0);
  return [{ id, area: 'data', status: 'ok', summary: `every value looked at is a pgseal envelope: ${plural(values, 'value')} in ${plural(scans.length, 'protected column')} (${how})`, details }];
};

const columns: Check = async (ctx) => {
  const shapes = await columnShapes(ctx.sql);
  const id = 'data.columns';
  if (shapes.length === 0) return [{ id, area: 'data', status: 'ok', summary: 'no column is protected yet', details: { columns: 0 } }];
  const problems: Array<{ column: string; problem: string; fix: string }> = [];
  for (const s of shapes) {
    const c = s.column;
    const t = quoteIdent(c.schema, c.table);
    const add = (problem: string, fix: string) => problems.push({ column: s.name, problem, fix });
    if (!s.tableExists) {
      add(`table ${c.schema}.${c.table} does not exist (dropped or renamed)`,
        `rename it back (its values are sealed under the context ${s.name}), or if it was dropped on purpose remove its registration as the owner: delete from pgseal.columns where table_schema = ${quoteLiteral(c.schema)} and table_name = ${quoteLiteral(c.table)}`);
      continue;
    }
    if (s.type === null) {
      add('the column does not exist (dropped or renamed)',
        `rename it back (its values are sealed under the context ${s.name} and open under no other name), or if it was dropped on purpose: pgseal unprotect --table ${cliName(c.schema, c.table)} --column ${cliName(c.column)}`);
    } else if (s.type !== 'bytea') {
      add(`the column is ${s.type}, not bytea`, `a protected column holds ciphertext: convert it back (ALTER TABLE ${t} ALTER COLUMN ${quoteIdent(c.column)} TYPE bytea USING ...)`);
    }
    if (c.searchable && c.blindIndexColumn) {
      const bidx = quoteIdent(c.blindIndexColumn);
      if (s.indexType === null) {
        add(`its blind-index column ${c.blindIndexColumn} is missing`,
          `add it again (ALTER TABLE ${t} ADD COLUMN ${bidx} bytea; CREATE INDEX ON ${t} (${bidx})), then recompute the indexes: pgseal reencrypt --blind-index --table ${cliName(c.schema, c.table)}`);
      } else if (s.indexType !== 'bytea') {
        add(`its blind-index column ${c.blindIndexColumn} is ${s.indexType}, not bytea`, `convert it back to bytea, then recompute the indexes: pgseal reencrypt --blind-index --table ${cliName(c.schema, c.table)}`);
      }
    }
    if (!s.scopeColumnExists) {
      add(`its scope column ${c.scopeColumn} is missing`, `rename it back: each row's key scope (tenant) is read from ${quoteIdent(c.scopeColumn!)}`);
    }
  }
  const details = { columns: shapes.length, problems };
  if (problems.length === 0) {
    return [{ id, area: 'data', status: 'ok', summary: `${plural(shapes.length, 'protected column')}: each exists as bytea, with its blind-index column where searchable`, details }];
  }
  return [{
    id, area: 'data', status: 'fail',
    summary: `the registry and the tables disagree: ${problems.map((p) => `${p.column}: ${p.problem}`).join('; ')}`,
    fix: problems.map((p) => `${p.column}: ${p.fix}`).join('; '),
    details,
  }];
};

// Column migrations (plaintext columns moved to encrypted ones) are not built yet: the
// registry has no state for a column pending encryption.
const pending: Check = async () => [{
  id: 'data.pending', area: 'data', status: 'skip',
  summary: 'no column migrations exist yet: nothing can be pending encryption',
  fix: 'nothing to do; data.plaintext finds plaintext in protected columns',
}];

export const dataChecks: Array<{ name: string; check: Check }> = [
  { name: 'plaintext', check: readableOnly('data', 'plaintext', plaintext) },
  { name: 'columns', check: readableOnly('data', 'columns', columns) },
  { name: 'pending', check: pending },
];
