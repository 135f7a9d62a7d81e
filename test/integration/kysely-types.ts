// Type-level checks of the Kysely adapter, compiled by `npx tsc -p tsconfig.check.json` and
// never run: the Database interface built from the definitions carries the decrypted types,
// so results are typed and a wrong column or value type does not compile.

import { Kysely, type Insertable, type Selectable } from 'kysely';
import { expectTypeOf } from 'vitest';
import type { KyselyDatabase, KyselyTable } from '../../src/adapters/kysely.js';
import { column, defineTable } from '../../src/index.js';

const customers = defineTable({
  name: 'customers',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    name: column.plain<string>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    profile: column.jsonb<{ city: string }>(),
    balance: column.numeric(),
    photo: column.bytea(),
  },
});

type DB = KyselyDatabase<{ customers: typeof customers }> & { orders: { id: number; customer_id: number } };

expectTypeOf<KyselyTable<typeof customers>>().toEqualTypeOf<{
  id: number;
  name: string;
  email: string | null;
  profile: { city: string } | null;
  balance: string | null;
  photo: Buffer | null;
}>();
expectTypeOf<DB['customers']>().toEqualTypeOf<KyselyTable<typeof customers>>();
// encrypted columns may be left out of an insert (they read back as null); plain ones may not
expectTypeOf<{ id: number; name: string }>().toExtend<Insertable<DB['customers']>>();
expectTypeOf<{ id: number; email: string }>().not.toExtend<Insertable<DB['customers']>>();
expectTypeOf<Insertable<DB['customers']>['email']>().toEqualTypeOf<string | null | undefined>();
expectTypeOf<Selectable<DB['customers']>['email']>().toEqualTypeOf<string | null>();

export async function typedQueries(db: Kysely<DB>): Promise<void> {
  const one = await db.selectFrom('customers').select(['id', 'email', 'profile']).where('email', '=', 'x@example.it').executeTakeFirst();
  expectTypeOf(one).toEqualTypeOf<{ id: number; email: string | null; profile: { city: string } | null } | undefined>();

  const joined = await db.selectFrom('customers as c').innerJoin('orders as o', 'o.customer_id', 'c.id').select(['o.id as order', 'c.email as mail']).execute();
  expectTypeOf(joined).toEqualTypeOf<Array<{ order: number; mail: string | null }>>();

  const inserted = await db.insertInto('customers').values({ id: 1, name: 'n', email: 'e', photo: Buffer.from('x') }).returning(['email', 'photo']).executeTakeFirstOrThrow();
  expectTypeOf(inserted).toEqualTypeOf<{ email: string | null; photo: Buffer | null }>();

  // @ts-expect-error: no such column
  db.selectFrom('customers').select('emial');
  // @ts-expect-error: an encrypted text column takes a string
  db.insertInto('customers').values({ id: 2, name: 'n', email: 42 });
  // @ts-expect-error: numeric values travel as strings, so no precision is lost
  db.updateTable('customers').set({ balance: 7 });
  // @ts-expect-error: the jsonb type of the definition
  db.insertInto('customers').values({ id: 3, name: 'n', profile: { town: 'x' } });
  // @ts-expect-error: the blind-index column is pgseal's, not the application's
  db.selectFrom('customers').select('email_bidx');
  // @ts-expect-error: the primary key is required
  db.insertInto('customers').values({ name: 'n' });
}
