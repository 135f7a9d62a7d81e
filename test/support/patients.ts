// The patients table the access-log tests read: two protected columns (one searchable).
import type { Sql } from 'postgres';
import { column, defineTable, pgseal, protectColumn, type MasterKeyProvider } from '../../src/index.js';

export const patients = defineTable({
  name: 'patients',
  primaryKey: 'id',
  columns: { id: column.plain<number>(), ward: column.plain<string>(), diagnosis: column.text(), email: column.text({ searchable: true, normalize: 'email' }) },
});

/** Creates and protects the table, then inserts `rows` patients, the first `inWardA` in ward A, the rest in B. */
export async function createPatients(sql: Sql, masterKey: MasterKeyProvider, rows: number, inWardA: number): Promise<void> {
  await sql`create table patients (id int primary key, ward text)`;
  await protectColumn(sql, { table: 'patients', column: 'diagnosis' });
  await protectColumn(sql, { table: 'patients', column: 'email', searchable: true, normalizer: 'email' });
  const writer = pgseal({ sql, masterKey });
  try {
    await writer.table(patients).insertMany(Array.from({ length: rows }, (_, i) => ({ id: i + 1, ward: i < inWardA ? 'A' : 'B', diagnosis: `diagnosis ${i + 1}`, email: `p${i + 1}@example.org` })));
  } finally {
    await writer.close();
  }
}
