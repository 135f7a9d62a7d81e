// The tables every rewrite test uses: the registry pgseal would load for them, the DDL of
// their PLAINTEXT copy (the statements of corpus.ts and refusals.ts run on it as written)
// and of their encrypted copy (the rewritten statements run on it), and seed rows.
//
// Seed values are stored normalised (lower-case e-mail, E.164 phone, upper-case tax code,
// trimmed text), so equality on the plaintext copy and normalised equality through the
// blind index select the same rows. tenant_notes uses the key scopes 'acme' and 'globex'.

import type { ProtectedColumn, Registry, TableInfo } from '../../src/registry/types.js';

type Options = Partial<Omit<ProtectedColumn, 'schema' | 'table' | 'column'>>;

function column(schema: string, table: string, name: string, options: Options = {}): ProtectedColumn {
  const searchable = options.searchable ?? false;
  return {
    schema,
    table,
    column: name,
    valueType: options.valueType ?? 'text',
    scope: options.scopeColumn ? null : (options.scope ?? 'default'),
    scopeColumn: options.scopeColumn ?? null,
    contextMode: options.contextMode ?? 'column',
    searchable,
    normalizer: options.normalizer ?? 'none',
    blindIndexColumn: searchable ? (options.blindIndexColumn ?? `${name}_bidx`) : null,
    blindIndexBytes: options.blindIndexBytes ?? 16,
  };
}

function table(schema: string, name: string, columns: string[], primaryKey: string[], protectedColumns: ProtectedColumn[]): TableInfo {
  return { schema, table: name, columns, primaryKey, protected: new Map(protectedColumns.map((c) => [c.column, c])) };
}

const customers = table(
  'public',
  'customers',
  ['id', 'tenant_id', 'name', 'email', 'phone', 'tax_code', 'notes', 'created_at', 'email_bidx', 'phone_bidx', 'tax_code_bidx'],
  ['id'],
  [
    column('public', 'customers', 'email', { searchable: true, normalizer: 'email', blindIndexColumn: 'email_bidx', scope: 'default' }),
    column('public', 'customers', 'phone', { searchable: true, normalizer: 'phone' }),
    column('public', 'customers', 'tax_code', { searchable: true, normalizer: 'upper' }),
    column('public', 'customers', 'notes'),
  ],
);

const orders = table(
  'public',
  'orders',
  ['id', 'customer_id', 'amount', 'memo', 'status'],
  ['id'],
  [column('public', 'orders', 'amount', { valueType: 'numeric' }), column('public', 'orders', 'memo', { contextMode: 'row' })],
);

const invoices = table(
  'billing',
  'Invoices',
  ['Id', 'customer_id', 'Iban', 'payload', 'doc', 'Iban_bidx'],
  ['Id'],
  [
    column('billing', 'Invoices', 'Iban', { searchable: true, normalizer: 'trim', blindIndexColumn: 'Iban_bidx' }),
    column('billing', 'Invoices', 'payload', { valueType: 'jsonb' }),
    column('billing', 'Invoices', 'doc', { valueType: 'bytea' }),
  ],
);

const tenantNotes = table(
  'public',
  'tenant_notes',
  ['id', 'tenant', 'body', 'body_bidx'],
  ['id'],
  [column('public', 'tenant_notes', 'body', { searchable: true, normalizer: 'trim', scopeColumn: 'tenant' })],
);

export function fixtureRegistry(): Registry {
  return new Map([customers, orders, invoices, tenantNotes].map((t) => [`${t.schema}.${t.table}`, t]));
}

export const registry: Registry = fixtureRegistry();

/** The key scopes the encrypted copy needs keys for. */
export const fixtureScopes = ['default', 'acme', 'globex'];

/** The plaintext copy: what the statements in corpus.ts and refusals.ts are written for. */
export const plaintextDdl = `
create schema if not exists billing;
create table public.customers (
  id int primary key,
  tenant_id int not null,
  name text,
  email text,
  phone text,
  tax_code text,
  notes text,
  created_at timestamptz default now()
);
create table public.orders (
  id int primary key,
  customer_id int references public.customers (id),
  amount numeric,
  memo text,
  status text
);
create table billing."Invoices" (
  "Id" int primary key,
  customer_id int,
  "Iban" text,
  payload jsonb,
  doc bytea
);
create table public.tenant_notes (
  id int primary key,
  tenant text not null,
  body text
);
`;

/** The encrypted copy: protected columns hold ciphertext, blind indexes last (as pgseal.protect_column adds them). */
export const encryptedDdl = `
create schema if not exists billing;
create table public.customers (
  id int primary key,
  tenant_id int not null,
  name text,
  email bytea,
  phone bytea,
  tax_code bytea,
  notes bytea,
  created_at timestamptz default now(),
  email_bidx bytea,
  phone_bidx bytea,
  tax_code_bidx bytea
);
create index on public.customers (email_bidx);
create index on public.customers (phone_bidx);
create index on public.customers (tax_code_bidx);
create table public.orders (
  id int primary key,
  customer_id int references public.customers (id),
  amount bytea,
  memo bytea,
  status text
);
create table billing."Invoices" (
  "Id" int primary key,
  customer_id int,
  "Iban" bytea,
  payload bytea,
  doc bytea,
  "Iban_bidx" bytea
);
create index on billing."Invoices" ("Iban_bidx");
create table public.tenant_notes (
  id int primary key,
  tenant text not null,
  body bytea,
  body_bidx bytea
);
create index on public.tenant_notes (body_bidx);
`;

/**
 * Seed rows, as statements written for the plaintext copy: run them as they are on the
 * plaintext copy, and through the rewriter (with keys handed in) on the encrypted copy.
 */
export const seedSql: string[] = [
  `insert into customers (id, tenant_id, name, email, phone, tax_code, notes, created_at) values
    (1, 1, 'Mario Rossi', 'mario.rossi@example.it', '+393331234567', 'RSSMRA80A01H501U', 'prefers email', '2024-01-10 09:00:00+00'),
    (2, 1, 'Luca Verdi', 'luca.verdi@example.it', '+393339876543', 'VRDLCU75B02F205X', null, '2024-02-11 10:30:00+00'),
    (3, 2, 'Anna Neri', 'anna.neri@example.it', null, 'NRENNA90C43L219Y', 'vip', '2024-03-12 11:00:00+00'),
    (4, 2, 'Giulia Bianchi', null, '+390612345678', null, null, '2024-04-13 12:15:00+00'),
    (5, 1, 'Paolo Russo', 'paolo.russo@example.it', '+393401112233', 'RSSPLA85D04H501Z', 'call after 6pm', '2024-05-14 13:45:00+00'),
    (6, 3, 'Sara Gallo', 'sara.gallo@example.it', '+393471234000', 'GLLSRA92E45F839K', null, '2024-06-15 14:00:00+00')`,
  `insert into orders (id, customer_id, amount, memo, status) values
    (1, 1, 120.50, 'gift wrap', 'paid'),
    (2, 1, 35.00, null, 'open'),
    (3, 2, 99.99, 'deliver to office', 'paid'),
    (4, 3, 10.00, 'fragile', 'shipped'),
    (5, 5, 250.00, null, 'paid'),
    (6, 3, 42.42, 'leave at door', 'open')`,
  `insert into billing."Invoices" ("Id", customer_id, "Iban", payload, doc) values
    (1, 1, 'IT60X0542811101000000123456', '{"lines": 2, "total": 155.5}', '\\x255044462d31'),
    (2, 2, 'IT02L1234512345123456789012', '{"lines": 1, "total": 99.99}', '\\x255044462d32'),
    (3, 3, 'DE89370400440532013000', '{"lines": 3, "total": 52.42}', null),
    (4, 5, null, '{"lines": 1, "total": 250}', '\\x00ff')`,
  `insert into tenant_notes (id, tenant, body) values
    (1, 'acme', 'renewal due in march'),
    (2, 'acme', 'asked for a discount'),
    (3, 'globex', 'renewal due in march'),
    (4, 'globex', 'new contact: Luca'),
    (5, 'acme', null)`,
];
