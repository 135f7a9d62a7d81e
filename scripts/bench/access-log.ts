// The access log's cost: primary-key reads through the typed helpers (8 concurrent
// clients) with no access log, with the async log (buffered, batched) and with the sync
// log (the log rows inserted by the read's own statement), in the same run. Then
// `audit report` for one actor and one day over 10,000,000 log rows (30 days, 1,000 actors).
// On a 2-core machine the order of the phases and the pause before each move results by
// 10-15%: each run rotates the order, each phase starts after a CHECKPOINT and the same
// pause, the async phase's time includes writing what it buffered, and a second no-log
// phase ('none_repeat') shows the noise floor of the comparison.

import postgres from 'postgres';
import { withAccessContext } from '../../src/audit/context.js';
import { report } from '../../src/audit/query.js';
import { verifyLogs } from '../../src/audit/verify.js';
import { Table } from '../../src/helpers/table.js';
import { KeyedExecutor } from '../../src/exec/executor.js';
import { Keyring } from '../../src/keys/keyring.js';
import { median, ratio, type BenchContext } from './common.js';
import { CLIENTS, def, prepareTables, throughput } from './helpers.js';

export async function benchAccessLog({ sql, url, master, runs, log }: BenchContext) {
  const rows = 100_000;
  await prepareTables(sql, master, rows, (line) => log(`access log: ${line}`));
  const pool = postgres(url, { max: CLIENTS + 1, onnotice: () => {} });
  const ring = new Keyring(pool, master);
  const asyncLog = new KeyedExecutor(pool, ring, { accessLog: { mode: 'async' } });
  const tables = {
    none: new Table(new KeyedExecutor(pool, ring), def),
    async: new Table(asyncLog, def),
    sync: new Table(new KeyedExecutor(pool, ring, { accessLog: { mode: 'sync' } }), def),
    none_repeat: new Table(new KeyedExecutor(pool, ring), def),
  };
  const id = (i: number) => 1 + ((i * 7919) % rows);
  const read = (t: Table<typeof def>) => (i: number) => withAccessContext({ actor: `user${i % 50}`, clientIp: '198.51.100.7' }, () => t.findByPk(id(i)));
  try {
    const t: Record<keyof typeof tables, number[]> = { none: [], async: [], sync: [], none_repeat: [] };
    for (const table of Object.values(tables)) await throughput(read(table), 300);
    await asyncLog.flush();
    for (let run = 0; run < runs; run++) {
      const order = Object.entries(tables) as Array<[keyof typeof tables, Table<typeof def>]>;
      for (let k = 0; k < run % order.length; k++) order.push(order.shift()!);
      for (const [name, table] of order) {
        await pool`checkpoint`;
        await new Promise((r) => setTimeout(r, 1_500));
        const t0 = performance.now();
        const reads = (await throughput(read(table), 2_000)) * 2;
        // what a phase buffered is part of its cost
        if (name === 'async') await asyncLog.flush();
        t[name].push(reads / ((performance.now() - t0) / 1000));
      }
      log(`run ${run + 1}/${runs}: ` + Object.entries(t).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)}`).join(', ') + ' (reads/s)');
    }
    await asyncLog.close();
    const [logged] = await sql<{ n: number }[]>`select count(*)::int as n from pgseal.encrypted_data_access_log`;
    // audit verify over what the reads logged (every row's MAC, every link, every head)
    const v0 = performance.now();
    const verified = await verifyLogs(sql, ring, { record: false });
    const verifySeconds = (performance.now() - v0) / 1000;
    log(`access log: audit verify over ${logged!.n.toLocaleString('en')} log rows: ${verifySeconds.toFixed(1)} s, ${verified.ok ? 'clean' : 'PROBLEMS'}`);
    const m = { none: median(t.none), async: median(t.async), sync: median(t.sync), none_repeat: median(t.none_repeat) };

    const logRows = 10_000_000;
    log(`access log: writing ${logRows.toLocaleString('en')} log rows over 30 days...`);
    await sql`truncate pgseal.encrypted_data_access_log`;
    const start = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1) - 30 * 86400e3);
    await sql`select pgseal.create_log_partitions(${start.toISOString().slice(0, 10)}::date, 3)`;
    await sql`
      insert into pgseal.encrypted_data_access_log (accessed_at, table_name, column_name, row_id, accessed_by, access_type, client_ip)
      select ${start}::timestamptz + (i % (30 * 86400)) * interval '1 second', 'public.bench_enc', (array['email', 'phone', 'tax_code'])[1 + i % 3],
             (i % 100000)::text, 'user' || (i % 1000), (array['read', 'read', 'read', 'write', 'delete'])[1 + i % 5], '198.51.100.7'
        from generate_series(1, ${logRows}::int) as i`;
    await sql`analyze pgseal.encrypted_data_access_log`;
    const day = new Date(start.getTime() + 10 * 86400e3);
    const until = new Date(day.getTime() + 86400e3);
    const times: number[] = [];
    let lines = 0;
    for (let run = 0; run < Math.max(runs, 5); run++) {
      const t0 = performance.now();
      const r = await report(sql, { since: day, until, actor: `user${run * 7}` });
      times.push(performance.now() - t0);
      lines = r.lines.length;
    }
    const reportMs = median(times);
    return {
      clients: CLIENTS,
      reads_per_second: { none: Math.round(m.none), async: Math.round(m.async), sync: Math.round(m.sync), none_repeat: Math.round(m.none_repeat) },
      ratios: { async_vs_none: ratio(m.async, m.none), sync_vs_none: ratio(m.sync, m.none), noise_floor_none_repeat_vs_none: ratio(m.none_repeat, m.none) },
      targets: { async_vs_none: '>= 0.9', sync_vs_none: 'reported' },
      log_rows_written: logged!.n,
      verify: { log_rows: logged!.n, seconds: Math.round(verifySeconds * 10) / 10, clean: verified.ok },
      async_dropped: asyncLog.stats()?.dropped ?? 0,
      report: { log_rows: logRows, one_actor_one_day_ms: Math.round(reportMs * 10) / 10, target_ms: '< 100', lines },
    };
  } finally {
    ring.close();
    await pool.end();
    await sql`drop table if exists bench_plain`;
    await sql`drop table if exists bench_enc`;
    await sql`truncate pgseal.encrypted_data_access_log`;
  }
}
