// pgseal audit verify: recomputes the logs' tamper evidence (sql/97_log_chain.sql) and
// reports every row inserted, edited or deleted by hand, and every link or chain head
// altered. The heavy work (one HMAC per row) runs in the database, under the log keys
// handed in as one bound argument; only problems come back.

import type { Sql } from 'postgres';
import { LOG_KEY_ENTRY_BYTES } from '../crypto/wire.js';
import { ErrorCodes, PgsealError, withPgsealErrors as guarded } from '../errors.js';
import { ident, int, slot, sql as q, statement, type Fragment } from '../statement/sql.js';
import type { LogKeys } from './record.js';
import { recordEvent, type Attribution } from './record.js';

export type LogName = 'audit' | 'access';

export type ProblemKind =
  /** a row without a link, at a position its link does not have, or a second copy of a position */
  | 'inserted'
  /** a row whose MAC no longer matches its fields */
  | 'edited'
  /** a position of a link with no row */
  | 'deleted'
  /** links missing from a chain (with their rows) */
  | 'link_deleted'
  /** a link whose MAC no longer matches */
  | 'link_edited'
  /** a chain head missing, altered, or not matching its last link */
  | 'head'
  /** signed under a log key version that is not available (retired or destroyed by hand) */
  | 'unverifiable';

export interface VerifyProblem {
  log: LogName;
  kind: ProblemKind;
  /** when it happened (a row's or link's time), if known */
  at: Date | null;
  chain: number | null;
  seq: number | null;
  linkId: number | null;
  position: number | null;
  /** what the row says: the operation or access, who, which table and row (logs hold no plaintext) */
  what: string | null;
  who: string | null;
  table: string | null;
  row: string | null;
  detail: string;
}

export interface VerifyResult {
  since: Date | null;
  logs: Array<{ log: LogName; rows: number; links: number }>;
  /** problems by kind, all of them (problems lists at most `limit` per query) */
  counts: Partial<Record<ProblemKind, number>>;
  problems: VerifyProblem[];
  ok: boolean;
}

export interface VerifyOptions extends Attribution {
  since?: Date | undefined;
  /** most problems listed per check (default 1,000); counts stay complete */
  limit?: number | undefined;
  /** record the verification in the audit log (default true) */
  record?: boolean | undefined;
}

// Per log: its table, time column, and expressions over its row `r` (the MAC recomputed with key `k.key`).
const LOGS: Record<LogName, { table: Fragment; tableName: string; time: Fragment; mac: Fragment; what: Fragment; who: Fragment; rowTable: Fragment; row: Fragment }> = {
  audit: {
    table: ident('pgseal', 'encryption_audit_log'),
    tableName: 'encryption_audit_log',
    time: ident('occurred_at'),
    mac: q`pgseal.audit_log_row_mac(k.key, r.link_id, r.link_pos, r.occurred_at, r.actor, r.db_user, r.operation, r.table_schema, r.table_name, r.column_name, r.key_scope, r.key_version, r.success, r.reason, r.details)`,
    what: q`r.operation`,
    who: q`r.actor`,
    rowTable: q`CASE WHEN r.table_name IS NOT NULL THEN r.table_schema || '.' || r.table_name END`,
    row: q`NULL::pg_catalog.text`,
  },
  access: {
    table: ident('pgseal', 'encrypted_data_access_log'),
    tableName: 'encrypted_data_access_log',
    time: ident('accessed_at'),
    mac: q`pgseal.access_log_row_mac(k.key, r.link_id, r.link_pos, r.accessed_at, r.table_name, r.column_name, r.row_id, r.accessed_by, r.access_type, r.client_ip)`,
    what: q`r.access_type || ' ' || r.column_name`,
    who: q`r.accessed_by`,
    rowTable: q`r.table_name`,
    row: q`r.row_id`,
  },
};

/** The log keyset (crypto/wire.ts) as rows (version, key), for joins; the keyset is the slot `keyset`. */
const KEYSET = q`${slot('keyset')}::pg_catalog.bytea`;
const ENTRY = int(LOG_KEY_ENTRY_BYTES);
const KEYS_CTE = q`k AS (
  SELECT ('x' || pg_catalog.encode(pg_catalog.substr(${KEYSET}, i * ${ENTRY} + 1, 4), 'hex'))::bit(32)::integer AS version,
         pg_catalog.substr(${KEYSET}, i * ${ENTRY} + 5, 32) AS key
    FROM pg_catalog.generate_series(0, pg_catalog.octet_length(${KEYSET}) / ${ENTRY} - 1) AS i)`;
const SINCE = q`${slot('since')}::pg_catalog.timestamptz`;

interface Head {
  chain: number;
  seq: string;
  last_mac: Buffer | null;
  first_seq: string;
  retained_from: Date | null;
  sealed_from: Date | null;
  head_ok: boolean | null;
  key_version: number | null;
  last_link_seq: string | null;
  last_link_mac: Buffer | null;
}

export async function verifyLogs(sql: Sql, keys: LogKeys, options: VerifyOptions = {}): Promise<VerifyResult> {
  const limit = options.limit ?? 1000;
  const since = options.since ?? null;
  const keyset = await keys.logKeyset();
  const result: VerifyResult = { since, logs: [], counts: {}, problems: [], ok: true };
  // problems listed (at most `limit` per check) and their complete count
  const add = (problems: VerifyProblem[], total: number, kind?: ProblemKind) => {
    result.problems.push(...problems);
    if (kind && total > 0) result.counts[kind] = (result.counts[kind] ?? 0) + total;
    else for (const p of problems) result.counts[p.kind] = (result.counts[p.kind] ?? 0) + 1;
  };
  // one snapshot for every check, so a concurrent write or retention cannot look like tampering
  const checkAll = async (sql: Sql) => {
    for (const log of ['audit', 'access'] as const) {
      const summary = { log, rows: 0, links: 0 };
      result.logs.push(summary);
      await guarded(async () => {
        const heads = await checkHeads(sql, log, keyset);
        add(heads.problems, heads.problems.length);
        const retainedFrom = heads.retainedFrom;
        const horizon = await policyHorizon(sql, log);
        await checkLinks(sql, log, keyset, since, limit, summary, add);
        await checkRows(sql, log, keyset, since, limit, summary, add);
        await checkPositions(sql, log, since, retainedFrom, horizon, limit, add);
      });
    }
  };
  try {
    if ('savepoint' in sql) await checkAll(sql); // already in the caller's transaction
    else await guarded(() => sql.begin('isolation level repeatable read read only', (tx) => checkAll(tx as unknown as Sql)));
  } finally {
    keyset.fill(0);
  }
  result.ok = result.problems.length === 0 && Object.values(result.counts).every((n) => !n);
  if (options.record ?? true) {
    await recordEvent(sql, keys, {
      operation: 'audit.verify', success: result.ok, actor: options.actor, reason: options.reason,
      details: { since: since?.toISOString() ?? null, counts: result.counts, logs: result.logs },
    });
  }
  return result;
}

function problem(log: LogName, kind: ProblemKind, detail: string, fields: Partial<VerifyProblem> = {}): VerifyProblem {
  return { log, kind, at: null, chain: null, seq: null, linkId: null, position: null, what: null, who: null, table: null, row: null, detail, ...fields };
}

/** Whether any chain's last link signed with this log key version verifies under the keyset's key for it. */
async function lastLinksVerify(sql: Sql, log: LogName, keyset: Buffer, version: number): Promise<boolean> {
  const [row] = await statement(q`
    WITH ${KEYS_CTE},
    t AS (SELECT DISTINCT ON (l.chain) l.* FROM pgseal.log_links l WHERE l.log = ${slot('log')} ORDER BY l.chain, l.seq DESC)
    SELECT pg_catalog.count(*)::int AS ok
      FROM t
      JOIN k ON k.version = t.key_version
      JOIN pgseal.log_chains h ON h.log = t.log AND h.chain = t.chain
      LEFT JOIN pgseal.log_links p ON p.log = t.log AND p.chain = t.chain AND p.seq = t.seq - 1
     WHERE t.key_version = ${int(version)}
       AND t.mac = pgseal._log_link_mac(k.key, t.log, t.chain, t.seq, t.id, t.created_at, t.row_count, t.first_at, t.last_at, t.key_version, COALESCE(p.mac, h.first_prev_mac))`,
  { keyset, log }).run<{ ok: number }>(sql);
  return (row?.ok ?? 0) > 0;
}

/** Every head present, its MAC valid, and its last link the chain's last link. */
async function checkHeads(sql: Sql, log: LogName, keyset: Buffer): Promise<{ problems: VerifyProblem[]; sealedFrom: Date | null; retainedFrom: Map<number, Date> }> {
  const heads = await statement(q`
    WITH ${KEYS_CTE}
    SELECT h.chain, h.seq::text, h.last_mac, h.first_seq::text, h.retained_from, h.sealed_from,
           h.head_mac = pgseal._log_head_mac(k.key, h) AS head_ok, h.key_version,
           t.seq::text AS last_link_seq, t.mac AS last_link_mac
      FROM pgseal.log_chains h
      LEFT JOIN k ON k.version = h.key_version
      LEFT JOIN LATERAL (SELECT l.seq, l.mac FROM pgseal.log_links l WHERE l.log = h.log AND l.chain = h.chain ORDER BY l.seq DESC LIMIT 1) t ON true
     WHERE h.log = ${slot('log')}
     ORDER BY h.chain`, { keyset, log }).run<Head>(sql);
  const problems: VerifyProblem[] = [];
  // A wrong log key fails every head it signed, an edit only the heads edited: report the
  // first as a wrong key, not as tampering (as pgseal._check_log_head does for writers).
  const byVersion = new Map<number, boolean[]>();
  for (const h of heads) if (h.key_version !== null && h.head_ok !== null) byVersion.set(h.key_version, [...(byVersion.get(h.key_version) ?? []), h.head_ok]);
  for (const [version, ok] of byVersion) {
    if (ok.length > 0 && ok.every((v) => !v) && !(await lastLinksVerify(sql, log, keyset, version))) {
      throw new PgsealError(ErrorCodes.LOG_KEY_MISSING, `the log key version ${version} handed in verifies none of the ${log} log's chain heads signed with it: a wrong log key, not an altered chain`, {
        hint: 'check the master key (or the log keys) the verification was given; if the key is right, every chain head was edited: keep this report',
      });
    }
  }
  const present = new Set(heads.map((h) => h.chain));
  for (let chain = 0; chain < 16; chain++) {
    if (!present.has(chain)) problems.push(problem(log, 'head', `chain ${chain}'s head row was deleted`, { chain }));
  }
  const keyed = heads.filter((h) => h.sealed_from !== null);
  // a log key exists (this verify holds it) and `keys init` keys every head with it: a log
  // whose heads are all unkeyed had its evidence wiped
  if (heads.length > 0 && keyed.length === 0) problems.push(problem(log, 'head', `every chain head of the ${log} log was reset to its unkeyed state`));
  for (const h of heads) {
    const at = { chain: h.chain, seq: Number(h.seq) };
    if (h.sealed_from === null) {
      if (keyed.length > 0 || h.last_link_seq !== null) problems.push(problem(log, 'head', `chain ${h.chain}'s head was reset to its unkeyed state`, at));
      continue;
    }
    if (h.head_ok === null) problems.push(problem(log, 'unverifiable', `chain ${h.chain}'s head is signed with a log key version that is not available`, at));
    else if (!h.head_ok) problems.push(problem(log, 'head', `chain ${h.chain}'s head was edited`, at));
    // the head's last link is the chain's last link
    const lastSeq = h.last_link_seq === null ? null : Number(h.last_link_seq);
    if (lastSeq !== null && lastSeq > Number(h.seq)) {
      problems.push(problem(log, 'link_edited', `chain ${h.chain} has links after its head (seq ${Number(h.seq) + 1} to ${lastSeq}) that no writer appended`, at));
    } else if (Number(h.seq) >= Number(h.first_seq) && (lastSeq !== Number(h.seq) || !h.last_mac || !h.last_link_mac?.equals(h.last_mac))) {
      problems.push(problem(log, 'link_deleted', lastSeq === Number(h.seq)
        ? `chain ${h.chain}'s last link (seq ${h.seq}) was edited or replaced`
        : `chain ${h.chain}'s last links were deleted (seq ${lastSeq === null ? h.first_seq : lastSeq + 1} to ${h.seq}), with their rows`, at));
    }
  }
  const sealed = keyed.map((h) => h.sealed_from!.getTime());
  const retainedFrom = new Map(heads.filter((h) => h.retained_from).map((h) => [h.chain, h.retained_from!]));
  return { problems, sealedFrom: sealed.length ? new Date(Math.min(...sealed)) : null, retainedFrom };
}

/** Each link's MAC, chained from its predecessor; gaps in seq are deleted links. */
async function checkLinks(
  sql: Sql, log: LogName, keyset: Buffer, since: Date | null, limit: number,
  summary: { links: number }, add: (p: VerifyProblem[], total: number, kind?: ProblemKind) => void,
): Promise<void> {
  const rows = await statement(q`
    WITH ${KEYS_CTE},
    x AS (
      SELECT l.*, pg_catalog.lag(l.seq) OVER w AS prev_seq, pg_catalog.lag(l.mac) OVER w AS prev_mac
        FROM pgseal.log_links l
       WHERE l.log = ${slot('log')} AND (${SINCE} IS NULL OR l.last_at >= ${SINCE} OR l.created_at >= ${SINCE})
      WINDOW w AS (PARTITION BY l.chain ORDER BY l.seq)),
    y AS (
      SELECT x.*, h.first_seq, k.key,
             CASE WHEN x.seq = h.first_seq THEN h.first_prev_mac
                  WHEN x.prev_seq = x.seq - 1 THEN x.prev_mac
                  -- outside the --since window (times do not follow seq), or missing
                  ELSE (SELECT p.mac FROM pgseal.log_links p WHERE p.log = x.log AND p.chain = x.chain AND p.seq = x.seq - 1)
             END AS expected_prev
        FROM x
        JOIN pgseal.log_chains h ON h.log = x.log AND h.chain = x.chain
        LEFT JOIN k ON k.version = x.key_version
       WHERE x.seq >= h.first_seq),
    yy AS (SELECT y.*, y.seq > y.first_seq AND y.expected_prev IS NULL AS gap FROM y),
    z AS (
      SELECT y.id, y.chain, y.seq, y.created_at,
             CASE WHEN y.gap THEN 'link_deleted'
                  WHEN y.key IS NULL THEN 'unverifiable'
                  WHEN y.mac IS DISTINCT FROM pgseal._log_link_mac(y.key, y.log, y.chain, y.seq, y.id, y.created_at, y.row_count, y.first_at, y.last_at, y.key_version, y.expected_prev)
                    THEN 'link_edited'
             END AS problem,
             CASE WHEN y.gap THEN (SELECT COALESCE(pg_catalog.max(p.seq) + 1, y.first_seq) FROM pgseal.log_links p
                                    WHERE p.log = y.log AND p.chain = y.chain AND p.seq < y.seq) END AS gap_from
        FROM yy AS y)
    SELECT z.problem, NULL::text AS id, NULL::smallint AS chain, NULL::text AS seq, NULL::timestamptz AS created_at, NULL::text AS gap_from, pg_catalog.count(*)::text AS n
      FROM z GROUP BY z.problem
    UNION ALL
    (SELECT z.problem, z.id::text, z.chain, z.seq::text, z.created_at, z.gap_from::text, NULL
       FROM z WHERE z.problem IS NOT NULL ORDER BY z.chain, z.seq LIMIT ${slot('limit')})`, { keyset, log, since, limit })
    .run<{ problem: ProblemKind | null; id: string; chain: number; seq: string; created_at: Date; gap_from: string | null; n: string | null }>(sql);
  const counts = rows.filter((r) => r.n !== null);
  summary.links = counts.reduce((n, r) => n + Number(r.n), 0);
  const problems = rows.filter((r) => r.n === null).map((r) => problem(log, r.problem!, r.problem === 'link_deleted'
    ? `chain ${r.chain}: ${r.gap_from === null || Number(r.gap_from) === Number(r.seq) - 1 ? `link seq ${Number(r.seq) - 1} is` : `links seq ${r.gap_from} to ${Number(r.seq) - 1} are`} missing, with their rows`
    : r.problem === 'unverifiable' ? `link ${r.id} is signed with a log key version that is not available` : `link ${r.id} (chain ${r.chain}, seq ${r.seq}) was edited`,
  { at: r.created_at, chain: r.chain, seq: Number(r.seq), linkId: Number(r.id) }));
  for (const r of counts) if (r.problem !== null) add(problems.filter((p) => p.kind === r.problem), Number(r.n), r.problem);
}

/** Every row: a link, a position within it, and a MAC that matches. */
async function checkRows(
  sql: Sql, log: LogName, keyset: Buffer, since: Date | null, limit: number,
  summary: { rows: number }, add: (p: VerifyProblem[], total: number, kind?: ProblemKind) => void,
): Promise<void> {
  const t = LOGS[log];
  const rows = await statement(q`
    WITH ${KEYS_CTE},
    l AS (SELECT id, row_count, key_version FROM pgseal.log_links WHERE log = ${slot('log')} AND (${SINCE} IS NULL OR last_at >= ${SINCE} OR created_at >= ${SINCE})),
    c AS (
      SELECT r.${t.time} AS at, r.link_id, r.link_pos, ${t.what} AS what, ${t.who} AS who, ${t.rowTable} AS table_name, ${t.row} AS row_id,
             CASE WHEN r.link_id IS NULL OR l.id IS NULL OR r.link_pos IS NULL OR r.link_pos < 0 OR r.link_pos >= l.row_count THEN 'inserted'
                  WHEN k.key IS NULL THEN 'unverifiable'
                  WHEN r.mac IS DISTINCT FROM ${t.mac} THEN 'edited'
             END AS problem
        FROM ${t.table} r
        LEFT JOIN l ON l.id = r.link_id
        LEFT JOIN k ON k.version = l.key_version
       WHERE ${SINCE} IS NULL OR r.${t.time} >= ${SINCE}),
    counted AS (SELECT problem, pg_catalog.count(*) AS n FROM c GROUP BY problem)
    SELECT counted.problem, NULL::timestamptz AS at, NULL::text AS link_id, NULL::integer AS link_pos, NULL AS what, NULL AS who, NULL AS table_name, NULL AS row_id, counted.n::text
      FROM counted
    UNION ALL
    (SELECT c.problem, c.at, c.link_id::text, c.link_pos, c.what, c.who, c.table_name, c.row_id, NULL
       FROM c WHERE c.problem IN ('inserted', 'edited', 'unverifiable') ORDER BY c.at LIMIT ${slot('limit')})`, { keyset, log, since, limit })
    .run<{ problem: ProblemKind | null; at: Date; link_id: string | null; link_pos: number | null; what: string | null; who: string | null; table_name: string | null; row_id: string | null; n: string }>(sql);
  for (const r of rows.filter((r) => r.n !== null)) summary.rows += Number(r.n);
  const listed = rows.filter((r) => r.n === null);
  const problems = listed.map((r) => problem(log, r.problem as ProblemKind, r.problem === 'edited'
    ? 'the row no longer matches its MAC: edited by hand'
    : r.problem === 'unverifiable' ? 'signed with a log key version that is not available'
    : r.link_id === null ? 'a row without a link: inserted by hand' : 'a row at a position its link does not have: inserted by hand',
  { at: r.at, linkId: r.link_id === null ? null : Number(r.link_id), position: r.link_pos, what: r.what, who: r.who, table: r.table_name, row: r.row_id }));
  for (const r of rows) {
    if (r.n !== null && r.problem !== null) add(problems.filter((p) => p.kind === r.problem), Number(r.n), r.problem);
  }
}

/**
 * TimescaleDB: the retention policy drops chunks in the background, without trimming the
 * chains. Rows older than now minus its drop_after may be gone; newer ones never are.
 */
async function policyHorizon(sql: Sql, log: LogName): Promise<Date | null> {
  const [where] = await sql<{ storage: string; jobs: boolean }[]>`
    select pgseal.log_storage() as storage, pg_catalog.to_regclass('timescaledb_information.jobs') is not null as jobs`;
  if (where!.storage !== 'timescaledb' || !where!.jobs) return null;
  const [row] = await sql<{ horizon: Date | null }[]>`
    select pg_catalog.now() - pg_catalog.min((j.config->>'drop_after')::interval) as horizon
      from timescaledb_information.jobs j
     where j.proc_name = 'policy_retention' and j.hypertable_schema = 'pgseal' and j.hypertable_name = ${LOGS[log].tableName}`;
  return row?.horizon ?? null;
}

/** Each link's positions: every one present exactly once (missing ones were deleted, extra copies inserted). */
async function checkPositions(
  sql: Sql, log: LogName, since: Date | null, retainedFrom: Map<number, Date>, horizon: Date | null, limit: number,
  add: (p: VerifyProblem[], total: number, kind?: ProblemKind) => void,
): Promise<void> {
  const t = LOGS[log];
  const links = await statement(q`
    WITH l AS (SELECT * FROM pgseal.log_links WHERE log = ${slot('log')} AND (${SINCE} IS NULL OR last_at >= ${SINCE} OR created_at >= ${SINCE})),
    r AS (
      SELECT r.link_id, pg_catalog.count(*) AS found, pg_catalog.count(DISTINCT r.link_pos) AS distinct_found
        FROM ${t.table} r
       WHERE r.link_id IS NOT NULL AND r.${t.time} >= (SELECT pg_catalog.min(first_at) FROM l)
       GROUP BY r.link_id)
    SELECT l.id::text, l.chain, l.seq::text, l.created_at, l.first_at, l.row_count, COALESCE(r.found, 0)::text AS found, COALESCE(r.distinct_found, 0)::text AS distinct_found
      FROM l LEFT JOIN r ON r.link_id = l.id
     WHERE COALESCE(r.distinct_found, 0) <> l.row_count OR r.found <> r.distinct_found
     ORDER BY l.created_at`, { log, since })
    .run<{ id: string; chain: number; seq: string; created_at: Date; first_at: Date; row_count: number; found: string; distinct_found: string }>(sql);
  // rows of a link that straddles the retention cut-off went with their partition or chunk:
  // such a link is looked at only for second copies
  const retained = (link: (typeof links)[number]) => {
    const cut = retainedFrom.get(link.chain);
    return (cut !== undefined && link.first_at < cut) || (horizon !== null && link.first_at < horizon);
  };
  const suspect = links.filter((link) => !retained(link) || link.found !== link.distinct_found);
  const problems: VerifyProblem[] = [];
  let deleted = 0;
  let inserted = 0;
  if (suspect.length === 0) return;
  // the rows of every suspect link, in one query
  const present = new Map<string, Array<{ link_pos: number; at: Date; what: string | null; who: string | null; table_name: string | null; row_id: string | null }>>();
  const rows = await statement(q`
    SELECT r.link_id::text, r.link_pos, r.${t.time} AS at, ${t.what} AS what, ${t.who} AS who, ${t.rowTable} AS table_name, ${t.row} AS row_id
      FROM ${t.table} r WHERE r.link_id = ANY (${slot('ids')}::pg_catalog.int8[]) AND r.${t.time} >= ${slot('from')}::pg_catalog.timestamptz`,
  { ids: suspect.map((l) => l.id), from: new Date(Math.min(...suspect.map((l) => l.first_at.getTime()))) })
    .run<{ link_id: string; link_pos: number; at: Date; what: string | null; who: string | null; table_name: string | null; row_id: string | null }>(sql);
  for (const row of rows) {
    const list = present.get(row.link_id);
    if (list) list.push(row);
    else present.set(row.link_id, [row]);
  }
  for (const link of suspect) {
    const seen = new Set<number>();
    for (const row of present.get(link.id) ?? []) {
      if (seen.has(row.link_pos)) {
        inserted += 1;
        if (problems.length < limit) {
          problems.push(problem(log, 'inserted', `a second copy of position ${row.link_pos} of link ${link.id}: inserted by hand`,
            { at: row.at, chain: link.chain, seq: Number(link.seq), linkId: Number(link.id), position: row.link_pos, what: row.what, who: row.who, table: row.table_name, row: row.row_id }));
        }
      }
      seen.add(row.link_pos);
    }
    if (retained(link)) continue;
    for (let pos = 0; pos < link.row_count; pos++) {
      if (seen.has(pos)) continue;
      deleted += 1;
      if (problems.length < limit) {
        problems.push(problem(log, 'deleted', `position ${pos} of link ${link.id} (chain ${link.chain}, seq ${link.seq}, ${link.row_count} rows) is missing: deleted by hand`,
          { at: link.created_at, chain: link.chain, seq: Number(link.seq), linkId: Number(link.id), position: pos }));
      }
    }
  }
  add(problems.filter((p) => p.kind === 'inserted'), inserted, 'inserted');
  add(problems.filter((p) => p.kind === 'deleted'), deleted, 'deleted');
}
