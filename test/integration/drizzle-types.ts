// Type-level checks of the Drizzle adapter, compiled by `tsc -p tsconfig.check.json` (never
// run): encrypted columns select and insert as their value types, searchable columns alone
// take match(), with values of their type, and the db keeps drizzle's own type.

import { integer, pgTable, text } from 'drizzle-orm/pg-core';
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { expectTypeOf } from 'vitest';
import { encrypted, inScope, match, pgsealDrizzle, type BlindIndex, type PgsealForDrizzle } from '../../src/adapters/drizzle.js';
import type { Pgseal } from '../../src/index.js';

const people = pgTable('people', {
  id: integer('id').primaryKey(),
  tenant: text('tenant').notNull(),
  email: encrypted.text('email', { searchable: true, normalize: 'email' }),
  emailBidx: encrypted.blindIndex('email_bidx'),
  nick: encrypted.text({ searchable: true }).notNull(),
  nick_bidx: encrypted.blindIndex(),
  notes: encrypted.text('notes', { context: 'row' }),
  secret: encrypted.text('secret', { scopeColumn: 'tenant' }),
  profile: encrypted.jsonb<{ city: string; tags: string[] }>('profile'),
  balance: encrypted.numeric('balance'),
  photo: encrypted.bytea('photo'),
});

type Selected = typeof people.$inferSelect;
expectTypeOf<Selected>().toEqualTypeOf<{
  id: number;
  tenant: string;
  email: string | null;
  emailBidx: Buffer | null;
  nick: string;
  nick_bidx: Buffer | null;
  notes: string | null;
  secret: string | null;
  profile: { city: string; tags: string[] } | null;
  balance: string | null;
  photo: Buffer | null;
}>();

type Inserted = typeof people.$inferInsert;
expectTypeOf<Inserted['email']>().toEqualTypeOf<string | null | undefined>();
expectTypeOf<Inserted['nick']>().toEqualTypeOf<string>();
expectTypeOf<Inserted['profile']>().toEqualTypeOf<{ city: string; tags: string[] } | null | undefined>();
// @ts-expect-error a number for an encrypted text column
export const wrongType: Inserted = { id: 1, tenant: 't', nick: 'n', email: 5 };
// @ts-expect-error an encrypted bytea column takes Buffers
export const wrongBytes: Inserted = { id: 1, tenant: 't', nick: 'n', photo: 'ab' };

export async function reads(seal: Pgseal, plain: PostgresJsDatabase) {
  // the adapter takes a pgseal() instance and returns the db's own type
  const forDrizzle: PgsealForDrizzle = seal;
  const db = await pgsealDrizzle(forDrizzle, plain);
  expectTypeOf(db).toEqualTypeOf<PostgresJsDatabase>();

  const rows = await db.select().from(people).where(match(people.email, 'a@example.it'));
  expectTypeOf(rows).toEqualTypeOf<Selected[]>();
  const some = await db.select({ mail: people.email, city: people.profile }).from(people).where(inScope(people, 't1'));
  expectTypeOf(some).toEqualTypeOf<Array<{ mail: string | null; city: { city: string; tags: string[] } | null }>>();
  const back = await db.insert(people).values({ id: 1, tenant: 't1', nick: 'n', balance: '12.50', photo: Buffer.from('x') }).returning({ balance: people.balance });
  expectTypeOf(back).toEqualTypeOf<Array<{ balance: string | null }>>();

  match(people.email, ['a@example.it', 'b@example.it']);
  match(people.nick, 'n', { scope: 't1' });
  // @ts-expect-error notes is encrypted but not searchable
  match(people.notes, 'x');
  // @ts-expect-error a plain column has no blind index
  match(people.tenant, 'x');
  // @ts-expect-error the value must be of the column's type
  match(people.email, 42);
}

// @ts-expect-error jsonb columns cannot be searchable (as in the typed helpers)
encrypted.jsonb('profile', { searchable: true });
// @ts-expect-error numeric columns cannot be searchable
encrypted.numeric('balance', { searchable: true });
// @ts-expect-error unknown option
encrypted.text('email', { searchble: true });

export type IndexBytes = BlindIndex;
