// Type-level checks of the Prisma adapter, compiled by `npx tsc -p tsconfig.check.json` and
// never run. They need no generated client: the payload below is the one the prisma-client
// generator writes for test/prisma/schema.prisma's Contact ($ContactPayload), and results
// are computed with Prisma's own runtime types, as the generated delegates do. The same
// claims are checked against the real generated client by test/integration/prisma.test.ts
// (it runs tsc on a file it writes next to the client).

import type { Bytes, Types } from '@prisma/client/runtime/client';
import { expectTypeOf } from 'vitest';
import { plaintext, type PgsealPrismaExtension, type PgsealPrismaResult } from '../../src/adapters/prisma.js';
import { column, defineTable } from '../../src/index.js';

const contacts = defineTable({
  name: 'contacts',
  primaryKey: 'id',
  columns: {
    id: column.plain<number>(),
    tenant: column.plain<number>(),
    email: column.text({ searchable: true, normalize: 'email' }),
    phone: column.text({ searchable: true, normalize: 'phone' }),
    profile: column.jsonb<{ city: string }>(),
    amount: column.numeric(),
    photo: column.bytea(),
  },
});

const models = { Contact: { table: contacts, fields: { mobile: 'phone', mobileIndex: 'phone_bidx' } } } as const;
type Models = typeof models;
type ExtArgs = ReturnType<PgsealPrismaExtension<Models>>['$extends']['extArgs'];

// one result field per encrypted field, under the client's property name; a mapped column under its field name
expectTypeOf<keyof PgsealPrismaResult<Models>>().toEqualTypeOf<'contact'>();
expectTypeOf<keyof PgsealPrismaResult<Models>['contact']>().toEqualTypeOf<'email' | 'mobile' | 'profile' | 'amount' | 'photo'>();

/** $ContactPayload as generated (scalars only; relations do not matter here). */
type ContactPayload<E extends Types.Extensions.InternalArgs> = {
  name: 'Contact';
  objects: {};
  scalars: Types.Extensions.GetPayloadResult<{
    id: number;
    tenant: number;
    email: Bytes | null;
    email_bidx: Bytes | null;
    mobile: Bytes | null;
    mobileIndex: Bytes | null;
    profile: Bytes | null;
    amount: Bytes | null;
    photo: Bytes | null;
  }, E['result']['contact']>;
  composites: {};
};

type Found<A> = Types.Result.GetResult<ContactPayload<ExtArgs>, A, 'findUniqueOrThrow', {}>;

// reads: encrypted fields come back decrypted, typed by the definition; the rest as Prisma has them
expectTypeOf<Found<{ select: { id: true; email: true; mobile: true } }>>().toEqualTypeOf<{ id: number; email: string | null; mobile: string | null }>();
expectTypeOf<Found<{ select: { profile: true; amount: true; photo: true } }>>().toEqualTypeOf<{ profile: { city: string } | null; amount: string | null; photo: Buffer | null }>();
expectTypeOf<Found<{}>['email']>().toEqualTypeOf<string | null>();
// the blind index stays what is stored
expectTypeOf<Found<{}>['email_bidx']>().toEqualTypeOf<Bytes | null>();
// without the extension the same field is Bytes
expectTypeOf<Types.Result.GetResult<ContactPayload<Types.Extensions.DefaultArgs>, { select: { email: true } }, 'findUniqueOrThrow', {}>>().toEqualTypeOf<{ email: Bytes | null }>();

// writes and filters: Prisma's inputs say Bytes; plaintext() types a plaintext for them
type CreateInput = { id: number; tenant: number; email?: Bytes | null; mobile?: Bytes | null; profile?: Bytes | null };
type BytesFilter = { equals?: Bytes | null; in?: Bytes[]; not?: Bytes | null };
expectTypeOf({ id: 1, tenant: 1, email: plaintext('mario@example.it'), mobile: plaintext('+39 333 1234567'), profile: plaintext({ city: 'Forlì' }) }).toExtend<CreateInput>();
expectTypeOf({ email: { in: [plaintext('a@example.it'), plaintext('b@example.it')] } }).toExtend<{ email?: BytesFilter | Bytes | null }>();
expectTypeOf({ id: 1, tenant: 1, email: 'mario@example.it' }).not.toExtend<CreateInput>();
expectTypeOf(plaintext(Buffer.from('x'))).toExtend<Bytes>();
