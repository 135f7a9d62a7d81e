// A process that reads through the typed helpers with the async access log, then waits to
// be killed (test/integration/access-log.test.ts checks what a SIGKILL may lose).
import postgres from 'postgres';
import { LocalMasterKey, pgseal, withAccessContext } from '../../src/index.js';
import { patients } from './patients.js';

const sql = postgres(process.env.DATABASE_URL!, { onnotice: () => {}, max: 2 });
const seal = pgseal({ sql, masterKey: new LocalMasterKey(Buffer.from(process.env.PGSEAL_MASTER_KEY!, 'base64')), accessLog: { mode: 'async', flushIntervalMs: 200 } });
const table = seal.table(patients);
await withAccessContext({ actor: 'crash-1' }, () => table.list({ limit: 100 }));
console.log('first');
await new Promise((r) => setTimeout(r, 800)); // more than a flush interval
await withAccessContext({ actor: 'crash-2' }, () => table.list({ limit: 100 }));
console.log('second');
await new Promise(() => {}); // killed here
