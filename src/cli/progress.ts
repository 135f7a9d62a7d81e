// Progress of long work: a bar with rows/s and ETA on a terminal, JSON lines otherwise
// (one a second at most, for logs and schedulers).

import cliProgress from 'cli-progress';
import type { ReencryptProgress } from '../reencrypt/run.js';
import { toJsonLine } from './output.js';

export interface ProgressSink {
  update(p: ReencryptProgress): void;
  stop(): void;
}

/** 75 → "1m15s"; unknown (no rate yet) → "--" */
export function etaText(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function progressSink(json: boolean): ProgressSink {
  if (!json && process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: 'pgseal reencrypt |{bar}| {percentage}% | {value}/{total} values | {speed} values/s | ETA {eta} | {column}', hideCursor: true, etaBuffer: 50 },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(p) {
        if (!started) {
          bar.start(p.rowsTotal, p.rowsDone, { speed: '0', eta: etaText(null), column: p.column });
          started = true;
        }
        bar.setTotal(p.rowsTotal);
        // our ETA, from the run's own rate: cli-progress's eta_formatted prints NFs before its buffer fills
        bar.update(p.rowsDone, { speed: Math.round(p.rate).toString(), eta: etaText(p.etaSeconds), column: p.column });
      },
      stop: () => {
        if (started) bar.stop();
      },
    };
  }
  let last = 0;
  let pending: ReencryptProgress | undefined;
  const line = (p: ReencryptProgress) =>
    console.log(toJsonLine({ event: 'progress', run: p.runId, column: p.column, rows_done: p.rowsDone, rows_total: p.rowsTotal, rows_per_second: Math.round(p.rate), eta_seconds: p.etaSeconds === null ? null : Math.round(p.etaSeconds) }));
  return {
    update(p) {
      pending = p;
      if (Date.now() - last >= 1000) {
        last = Date.now();
        line(p);
        pending = undefined;
      }
    },
    stop() {
      if (pending) line(pending);
    },
  };
}
