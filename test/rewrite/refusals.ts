// Statements the rewriter refuses by default (PgsealError UNSUPPORTED_ON_CIPHERTEXT): each
// names the encrypted column and the construct, and `at` is the text at the reported
// position. All are valid on the plaintext copy, and with { allowDecryptScan: true } they
// are rewritten to decrypt row by row, with the same results as on the plaintext copy.

export interface RefusalEntry {
  name: string;
  sql: string;
  params?: unknown[];
  /** the encrypted column the error names, 'schema.table.column' */
  column: string;
  /** the construct the error names */
  construct: string;
  /** the SQL text found at the error's position */
  at: string;
}

export const refusals: RefusalEntry[] = [
  {
    name: 'LIKE',
    sql: `select id from customers where email like $1 order by id`,
    params: ['%@example.it'],
    column: 'public.customers.email',
    construct: 'LIKE',
    at: 'email like',
  },
  {
    name: 'ILIKE next to plain conditions',
    sql: `select c.id from customers c where c.tenant_id = 1 and c.name ilike 'mario%' and c.email ilike '%rossi%' order by c.id`,
    column: 'public.customers.email',
    construct: 'ILIKE',
    at: 'c.email ilike',
  },
  {
    name: 'NOT LIKE on a scope-column table',
    sql: `select id from tenant_notes where body not like 'renewal%' order by id`,
    column: 'public.tenant_notes.body',
    construct: 'NOT LIKE',
    at: 'body not like',
  },
  {
    name: 'SIMILAR TO',
    sql: `select id from customers where tax_code similar to 'RSS%' order by id`,
    column: 'public.customers.tax_code',
    construct: 'SIMILAR TO',
    at: 'tax_code similar',
  },
  {
    name: 'regular expression',
    sql: `select id from customers where phone ~ '^\\+3934' order by id`,
    column: 'public.customers.phone',
    construct: 'regular expression ~',
    at: 'phone ~',
  },
  {
    name: 'range < on numeric',
    sql: `select id from orders where amount < $1 order by id`,
    params: ['100'],
    column: 'public.orders.amount',
    construct: 'range comparison <',
    at: 'amount <',
  },
  {
    name: 'range >= on a searchable column',
    sql: `select id from customers where tax_code >= 'NRE' order by id`,
    column: 'public.customers.tax_code',
    construct: 'range comparison >=',
    at: 'tax_code >=',
  },
  {
    name: 'BETWEEN',
    sql: `select id from orders o where o.amount between 10 and 100 order by o.id`,
    column: 'public.orders.amount',
    construct: 'BETWEEN',
    at: 'o.amount between',
  },
  {
    name: 'ORDER BY an encrypted column',
    sql: `select id, email from customers where email is not null order by email`,
    column: 'public.customers.email',
    construct: 'ORDER BY',
    at: 'email',
  },
  {
    name: 'ORDER BY a position',
    sql: `select id, tax_code from customers where tax_code is not null order by 2`,
    column: 'public.customers.tax_code',
    construct: 'ORDER BY',
    at: '2',
  },
  {
    name: 'ORDER BY an expression over an encrypted column',
    sql: `select id from customers order by lower(name), length(notes), id`,
    column: 'public.customers.notes',
    construct: 'ORDER BY',
    at: 'notes), id',
  },
  {
    name: 'GROUP BY',
    sql: `select email, count(*) as n from customers where email is not null group by email order by min(id)`,
    column: 'public.customers.email',
    construct: 'GROUP BY',
    at: 'email order',
  },
  {
    name: 'DISTINCT',
    sql: `select distinct notes from customers where notes is not null order by notes`,
    column: 'public.customers.notes',
    construct: 'DISTINCT',
    at: 'notes from',
  },
  {
    name: 'DISTINCT ON',
    sql: `select distinct on (tax_code) id, tax_code from customers where tax_code is not null order by tax_code, id`,
    column: 'public.customers.tax_code',
    construct: 'DISTINCT ON',
    at: 'tax_code) id',
  },
  {
    name: 'function in WHERE',
    sql: `select id from customers where lower(email) = $1`,
    params: ['anna.neri@example.it'],
    column: 'public.customers.email',
    construct: 'function lower()',
    at: 'email) =',
  },
  {
    name: 'cast in WHERE',
    sql: `select id from orders where amount::int = 10 order by id`,
    column: 'public.orders.amount',
    construct: 'cast to int4',
    at: 'amount::int',
  },
  {
    name: 'equality on a non-searchable column',
    sql: `select id from customers where notes = $1`,
    params: ['vip'],
    column: 'public.customers.notes',
    construct: '=',
    at: 'notes =',
  },
  {
    name: 'IN on a row-context column',
    sql: `select id from orders where memo in ($1, $2) order by id`,
    params: ['fragile', 'gift wrap'],
    column: 'public.orders.memo',
    construct: 'IN',
    at: 'memo in',
  },
  {
    name: '= ANY on a numeric column',
    sql: `select id from orders where amount = any($1) order by id`,
    params: [['10.00', '35.00']],
    column: 'public.orders.amount',
    construct: '= ANY',
    at: 'amount = any',
  },
  {
    name: 'equality on bytea',
    sql: `select "Id" from billing."Invoices" where doc = $1`,
    params: [Buffer.from('00ff', 'hex')],
    column: 'billing.Invoices.doc',
    construct: '=',
    at: 'doc =',
  },
  {
    name: 'two encrypted columns',
    sql: `select c.id, n.id as note from customers c join tenant_notes n on n.body = c.notes order by c.id, n.id`,
    column: 'public.tenant_notes.body',
    construct: 'comparison of two encrypted columns (=)',
    at: 'n.body =',
  },
  {
    name: 'HAVING over an encrypted column',
    sql: `select tenant_id from customers group by tenant_id having max(email) >= 'mario' order by tenant_id`,
    column: 'public.customers.email',
    construct: 'function max()',
    at: 'email) >=',
  },
  {
    name: 'jsonb operator in WHERE',
    sql: `select "Id" from billing."Invoices" where payload->>'total' = '99.99' order by "Id"`,
    column: 'billing.Invoices.payload',
    construct: 'operator ->>',
    at: 'payload->>',
  },
  {
    name: 'LIKE after a non-ASCII literal (character positions)',
    sql: `select 'città' as place, id from customers where email like $1 order by id`,
    params: ['%rossi%'],
    column: 'public.customers.email',
    construct: 'LIKE',
    at: 'email like',
  },
  {
    name: 'LIKE in a correlated subquery',
    sql: `select o.id from orders o where exists (select 1 from customers c where c.id = o.customer_id and c.phone like '+39333%') order by o.id`,
    column: 'public.customers.phone',
    construct: 'LIKE',
    at: 'c.phone like',
  },
];
