// A scheduled quarterly key rotation, with the library: for every key scope, a new data key;
// then every protected value re-encrypted onto it inside the database (throttled, resumable:
// if the job is killed, the next run picks up where it stopped); then the old versions,
// which no row uses any more, retired. Every step lands in pgseal.encryption_audit_log with
// the actor and the reason.
//
//   DATABASE_URL=postgres://... PGSEAL_MASTER_KEY=... npx tsx scripts/quarterly-rotation.ts
//   cron (03:00 on the first day of each quarter):  0 3 1 1,4,7,10 *
//
// Environment: PGSEAL_ROTATION_MAX_ROWS_PER_SECOND (throttle, default none),
// PGSEAL_ROTATION_WORKERS (default 1), PGSEAL_ACTOR (default the OS user).
// Output: JSON lines (one per step, progress at most once every 10 s); exit code 1 on failure.

import { connect, defaultActor, envMasterKey, Keyring, listKeys, reencrypt, retireKey, rotateKey } from '../src/index.js';

const reason = `quarterly rotation ${new Date().toISOString().slice(0, 7)}`;
const actor = defaultActor();
const log = (event: Record<string, unknown>) => console.log(JSON.stringify({ at: new Date().toISOString(), ...event }));

async function main(): Promise<void> {
  const workers = Number(process.env.PGSEAL_ROTATION_WORKERS ?? 1);
  const throttle = process.env.PGSEAL_ROTATION_MAX_ROWS_PER_SECOND ? Number(process.env.PGSEAL_ROTATION_MAX_ROWS_PER_SECOND) : undefined;
  const sql = connect(process.env.DATABASE_URL, { max: workers + 2 });
  const master = envMasterKey();
  const keyring = new Keyring(sql, master);
  const stop = new AbortController();
  process.once('SIGTERM', () => stop.abort());
  try {
    const keys = await listKeys(sql);
    const scopes = [...new Set(keys.filter((k) => k.purpose === 'data' && k.state === 'active').map((k) => k.scope))];
    // values still on older versions (a run a previous job left unfinished, a rotation made by
    // hand) are moved first: a rotation now would otherwise leave them for one more quarter
    const resumed = await reencrypt(sql, keyring, { actor, reason, workers, maxRowsPerSecond: throttle, signal: stop.signal });
    if (resumed.state === 'stopped') return log({ event: 'stopped', run: resumed.runId });
    for (const scope of scopes) {
      const { version, previous } = await rotateKey(sql, master, scope, { actor, reason });
      log({ event: 'rotated', scope, version, previous });
    }
    let last = 0;
    const result = await reencrypt(sql, keyring, {
      actor, reason, workers, maxRowsPerSecond: throttle, signal: stop.signal,
      onProgress: (p) => {
        if (Date.now() - last < 10_000) return;
        last = Date.now();
        log({ event: 'progress', run: p.runId, rows_done: p.rowsDone, rows_total: p.rowsTotal, eta_seconds: p.etaSeconds && Math.round(p.etaSeconds) });
      },
    });
    log({ event: result.state === 'done' ? 're-encrypted' : 'stopped', run: result.runId, rows: result.rows, seconds: Math.round(result.seconds) });
    if (result.state !== 'done') return;
    // versions no row uses any more: retire them (retire refuses one that is still used)
    for (const k of await listKeys(sql)) {
      if (k.purpose !== 'data' || k.state !== 'decrypt-only') continue;
      await retireKey(sql, keyring, k.version, { actor, reason });
      log({ event: 'retired', scope: k.scope, version: k.version });
    }
  } finally {
    keyring.close();
    master.close();
    await sql.end({ timeout: 5 });
  }
}

main().catch((error: unknown) => {
  const e = error as { code?: string; message?: string; hint?: string };
  log({ event: 'failed', code: e.code ?? 'unknown', message: e.message, hint: e.hint });
  process.exitCode = 1;
});
