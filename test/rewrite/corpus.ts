// Statements written as if the protected columns of fixture.ts held plaintext, and their
// exact rewritten form (the deparser's canonical text). Each one runs as written on the
// plaintext copy and, rewritten, on the encrypted copy, with the same results. Statements
// that write (INSERT, UPDATE, DELETE, data-modifying CTEs) are meant to run in a
// transaction that is rolled back, each on the seeded tables.

export interface CorpusEntry {
  name: string;
  sql: string;
  /** the rewritten statement, exactly; equal to sql when nothing is rewritten */
  expected: string;
  params?: unknown[];
}

export const corpus: CorpusEntry[] = [
  {
    name: 'select one protected column',
    sql: `select id, email from customers where id = 1`,
    expected: `SELECT id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers WHERE id = 1`,
  },
  {
    name: 'aliases and qualified columns',
    sql: `select c.id, c.email, c.phone from customers c order by c.id`,
    expected: `SELECT c.id, pgseal.decrypt_text_with(c.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email, pgseal.decrypt_text_with(c.phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)) AS phone FROM customers AS c ORDER BY c.id`,
  },
  {
    name: 'star over a protected table',
    sql: `select * from customers order by id`,
    expected: `SELECT customers.id, customers.tenant_id, customers.name, pgseal.decrypt_text_with(customers.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email, pgseal.decrypt_text_with(customers.phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)) AS phone, pgseal.decrypt_text_with(customers.tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)) AS tax_code, pgseal.decrypt_text_with(customers.notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS notes, customers.created_at FROM customers ORDER BY id`,
  },
  {
    name: 't.* with a parameter',
    sql: `select c.* from customers c where c.tenant_id = $1 order by c.id`,
    params: [1],
    expected: `SELECT c.id, c.tenant_id, c.name, pgseal.decrypt_text_with(c.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email, pgseal.decrypt_text_with(c.phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)) AS phone, pgseal.decrypt_text_with(c.tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)) AS tax_code, pgseal.decrypt_text_with(c.notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS notes, c.created_at FROM customers AS c WHERE c.tenant_id = $2 ORDER BY c.id`,
  },
  {
    name: 'star over a join of two protected tables',
    sql: `select * from customers c join orders o on o.customer_id = c.id order by o.id`,
    expected: `SELECT c.id, c.tenant_id, c.name, pgseal.decrypt_text_with(c.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email, pgseal.decrypt_text_with(c.phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)) AS phone, pgseal.decrypt_text_with(c.tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)) AS tax_code, pgseal.decrypt_text_with(c.notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS notes, c.created_at, o.id, o.customer_id, pgseal.value_numeric(pgseal.decrypt_text_with(o.amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) AS amount, pgseal.decrypt_text_with(o.memo, pgseal.row_context('public.orders.memo', o.id::text), CAST($1 AS pg_catalog.bytea)) AS memo, o.status FROM customers AS c JOIN orders AS o ON o.customer_id = c.id ORDER BY o.id`,
  },
  {
    name: 't.* of one table in a join',
    sql: `select o.*, c.name from orders o join customers c on c.id = o.customer_id order by o.id`,
    expected: `SELECT o.id, o.customer_id, pgseal.value_numeric(pgseal.decrypt_text_with(o.amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) AS amount, pgseal.decrypt_text_with(o.memo, pgseal.row_context('public.orders.memo', o.id::text), CAST($1 AS pg_catalog.bytea)) AS memo, o.status, c.name FROM orders AS o JOIN customers AS c ON c.id = o.customer_id ORDER BY o.id`,
  },
  {
    name: 'function on a decrypted value, unqualified column',
    sql: `select id, lower(email) from customers c order by id`,
    expected: `SELECT id, lower(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea))) FROM customers AS c ORDER BY id`,
  },
  {
    name: 'functions with aliases',
    sql: `select id, upper(c.name) as n, length(notes) as len from customers c order by id`,
    expected: `SELECT id, upper(c.name) AS n, length(pgseal.decrypt_text_with(notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea))) AS len FROM customers AS c ORDER BY id`,
  },
  {
    name: 'expression over decrypted values',
    sql: `select id, name || ' <' || email || '>' as contact from customers order by id`,
    expected: `SELECT id, ((name || ' <') || pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea))) || '>' AS contact FROM customers ORDER BY id`,
  },
  {
    name: 'coalesce in the select list',
    sql: `select id, coalesce(phone, 'n/a') as phone from customers order by id`,
    expected: `SELECT id, COALESCE(pgseal.decrypt_text_with(phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)), 'n/a') AS phone FROM customers ORDER BY id`,
  },
  {
    name: 'aggregates over decrypted values',
    sql: `select count(email) as emails, max(tax_code) as last_code from customers`,
    expected: `SELECT count(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea))) AS emails, max(pgseal.decrypt_text_with(tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea))) AS last_code FROM customers`,
  },
  {
    name: 'aggregate with ORDER BY a plain column',
    sql: `select tenant_id, string_agg(email, ',' order by id) as emails from customers group by tenant_id order by tenant_id`,
    expected: `SELECT tenant_id, string_agg(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), ',' ORDER BY id) AS emails FROM customers GROUP BY tenant_id ORDER BY tenant_id`,
  },
  {
    name: 'CASE in the select list',
    sql: `select id, case when notes is null then 'none' else notes end as n from customers order by id`,
    expected: `SELECT id, CASE WHEN notes IS NULL THEN 'none' ELSE pgseal.decrypt_text_with(notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) END AS n FROM customers ORDER BY id`,
  },
  {
    name: 'window function next to a decrypted column',
    sql: `select id, row_number() over (partition by tenant_id order by id) as rn, email from customers order by id`,
    expected: `SELECT id, row_number() OVER (PARTITION BY tenant_id ORDER BY id) AS rn, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers ORDER BY id`,
  },
  {
    name: 'cast keeps the output name',
    sql: `select id, email::varchar(100) from customers where id <= 2 order by id`,
    expected: `SELECT id, CAST(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS varchar(100)) AS email FROM customers WHERE id <= 2 ORDER BY id`,
  },
  {
    name: 'row-context column',
    sql: `select id, memo from orders order by id`,
    expected: `SELECT id, pgseal.decrypt_text_with(memo, pgseal.row_context('public.orders.memo', orders.id::text), CAST($1 AS pg_catalog.bytea)) AS memo FROM orders ORDER BY id`,
  },
  {
    name: 'numeric column in arithmetic',
    sql: `select id, amount * 2 as doubled, round(amount, 0) as rounded from orders order by id`,
    expected: `SELECT id, pgseal.value_numeric(pgseal.decrypt_text_with(amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) * 2 AS doubled, round(pgseal.value_numeric(pgseal.decrypt_text_with(amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))), 0) AS rounded FROM orders ORDER BY id`,
  },
  {
    name: 'jsonb, bytea and quoted identifiers',
    sql: `select "Id", payload, doc, payload->>'total' as total from billing."Invoices" order by "Id"`,
    expected: `SELECT "Id", pgseal.value_jsonb(pgseal.decrypt_text_with(payload, 'billing.Invoices.payload', CAST($1 AS pg_catalog.bytea))) AS payload, pgseal.decrypt_bytea_with(doc, 'billing.Invoices.doc', CAST($1 AS pg_catalog.bytea)) AS doc, pgseal.value_jsonb(pgseal.decrypt_text_with(payload, 'billing.Invoices.payload', CAST($1 AS pg_catalog.bytea))) ->> 'total' AS total FROM billing."Invoices" ORDER BY "Id"`,
  },
  {
    name: 'schema-qualified column references',
    sql: `select billing."Invoices"."Id", billing."Invoices"."Iban" from billing."Invoices" order by 1`,
    expected: `SELECT billing."Invoices"."Id", pgseal.decrypt_text_with(billing."Invoices"."Iban", 'billing.Invoices.Iban', CAST($1 AS pg_catalog.bytea)) AS "Iban" FROM billing."Invoices" ORDER BY 1`,
  },
  {
    name: 'three-way join with a left join',
    sql: `select c.name, o.id, i."Iban", o.memo from customers c join orders o on o.customer_id = c.id left join billing."Invoices" i on i.customer_id = c.id order by o.id`,
    expected: `SELECT c.name, o.id, pgseal.decrypt_text_with(i."Iban", 'billing.Invoices.Iban', CAST($1 AS pg_catalog.bytea)) AS "Iban", pgseal.decrypt_text_with(o.memo, pgseal.row_context('public.orders.memo', o.id::text), CAST($1 AS pg_catalog.bytea)) AS memo FROM customers AS c JOIN orders AS o ON o.customer_id = c.id LEFT JOIN billing."Invoices" AS i ON i.customer_id = c.id ORDER BY o.id`,
  },
  {
    name: 'IS NULL stays on the ciphertext',
    sql: `select id from customers where email is null order by id`,
    expected: `select id from customers where email is null order by id`,
  },
  {
    name: 'IS NOT NULL with a plain condition',
    sql: `select id, name from customers where phone is not null and tenant_id = 1 order by id`,
    expected: `select id, name from customers where phone is not null and tenant_id = 1 order by id`,
  },
  {
    name: 'equality with a parameter',
    sql: `select id, name from customers where email = $1`,
    params: ['luca.verdi@example.it'],
    expected: `SELECT id, name FROM customers WHERE customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'email')`,
  },
  {
    name: 'equality, literal on the left',
    sql: `select id from customers where 'RSSMRA80A01H501U' = tax_code`,
    expected: `SELECT id FROM customers WHERE customers.tax_code_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY['RSSMRA80A01H501U'::text] AS pg_catalog.text[]), 'upper', 'public.customers.tax_code', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)), 'upper') OPERATOR(pg_catalog.=) pgseal.normalize('RSSMRA80A01H501U'::text, 'upper')`,
  },
  {
    name: 'equality next to a plain condition',
    sql: `select c.id, c.name from customers c where c.tenant_id = $1 and c.phone = $2`,
    params: [1, '+393331234567'],
    expected: `SELECT c.id, c.name FROM customers AS c WHERE c.tenant_id = $3 AND c.phone_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($4 AS pg_catalog.text)] AS pg_catalog.text[]), 'phone', 'public.customers.phone', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(c.phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)), 'phone') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($4 AS pg_catalog.text), 'phone')`,
  },
  {
    name: 'not equal <>',
    sql: `select id from customers where email <> $1 order by id`,
    params: ['mario.rossi@example.it'],
    expected: `SELECT id FROM customers WHERE NOT (customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16))) OR pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.<>) pgseal.normalize(CAST($3 AS pg_catalog.text), 'email') ORDER BY id`,
  },
  {
    name: 'not equal !=',
    sql: `select id from customers c where c.tax_code != 'VRDLCU75B02F205X' order by id`,
    expected: `SELECT id FROM customers AS c WHERE NOT (c.tax_code_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY['VRDLCU75B02F205X'::text] AS pg_catalog.text[]), 'upper', 'public.customers.tax_code', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16))) OR pgseal.normalize(pgseal.decrypt_text_with(c.tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)), 'upper') OPERATOR(pg_catalog.<>) pgseal.normalize('VRDLCU75B02F205X'::text, 'upper') ORDER BY id`,
  },
  {
    name: 'IN list of literals',
    sql: `select id from customers where email in ('anna.neri@example.it', 'paolo.russo@example.it') order by id`,
    expected: `SELECT id FROM customers WHERE customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY['anna.neri@example.it'::text, 'paolo.russo@example.it'::text] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) ANY (ARRAY[pgseal.normalize('anna.neri@example.it'::text, 'email'), pgseal.normalize('paolo.russo@example.it'::text, 'email')]) ORDER BY id`,
  },
  {
    name: 'IN list of parameters',
    sql: `select id from customers where phone in ($1, $2) order by id`,
    params: ['+393339876543', '+390612345678'],
    expected: `SELECT id FROM customers WHERE customers.phone_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text), CAST($4 AS pg_catalog.text)] AS pg_catalog.text[]), 'phone', 'public.customers.phone', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)), 'phone') OPERATOR(pg_catalog.=) ANY (ARRAY[pgseal.normalize(CAST($3 AS pg_catalog.text), 'phone'), pgseal.normalize(CAST($4 AS pg_catalog.text), 'phone')]) ORDER BY id`,
  },
  {
    name: 'NOT IN',
    sql: `select id from customers where tax_code not in ($1, $2) order by id`,
    params: ['RSSMRA80A01H501U', 'NRENNA90C43L219Y'],
    expected: `SELECT id FROM customers WHERE NOT (customers.tax_code_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text), CAST($4 AS pg_catalog.text)] AS pg_catalog.text[]), 'upper', 'public.customers.tax_code', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16))) OR pgseal.normalize(pgseal.decrypt_text_with(tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)), 'upper') OPERATOR(pg_catalog.<>) ALL (ARRAY[pgseal.normalize(CAST($3 AS pg_catalog.text), 'upper'), pgseal.normalize(CAST($4 AS pg_catalog.text), 'upper')]) ORDER BY id`,
  },
  {
    name: '= ANY($1)',
    sql: `select id, name from customers where email = any($1) order by id`,
    params: [['mario.rossi@example.it', 'sara.gallo@example.it']],
    expected: `SELECT id, name FROM customers WHERE customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST($3 AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) ANY (pgseal.normalize_array(CAST($3 AS pg_catalog.text[]), 'email')) ORDER BY id`,
  },
  {
    name: '<> ALL($1)',
    sql: `select id from customers where email <> all($1::text[]) order by id`,
    params: [['mario.rossi@example.it', 'sara.gallo@example.it']],
    expected: `SELECT id FROM customers WHERE customers.email_bidx OPERATOR(pg_catalog.<>) ALL (pgseal.blind_index_array_with(CAST($3 AS text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) OR pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.<>) ALL (pgseal.normalize_array(CAST($3 AS text[]), 'email')) ORDER BY id`,
  },
  {
    name: 'IS NOT DISTINCT FROM a NULL parameter',
    sql: `select id from customers where phone is not distinct from $1 order by id`,
    params: [null],
    expected: `SELECT id FROM customers WHERE (pgseal._not_distinct(customers.phone_bidx, pgseal.blind_index_with(CAST($3 AS pg_catalog.text), 'phone', 'public.customers.phone', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) OR customers.phone_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'phone', 'public.customers.phone', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16))) AND pgseal._not_distinct(pgseal.normalize(pgseal.decrypt_text_with(phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)), 'phone'), pgseal.normalize(CAST($3 AS pg_catalog.text), 'phone')) ORDER BY id`,
  },
  {
    name: 'IS DISTINCT FROM',
    sql: `select id from customers where tax_code is distinct from $1 order by id`,
    params: ['RSSMRA80A01H501U'],
    expected: `SELECT id FROM customers WHERE NOT ((pgseal._not_distinct(customers.tax_code_bidx, pgseal.blind_index_with(CAST($3 AS pg_catalog.text), 'upper', 'public.customers.tax_code', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) OR customers.tax_code_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'upper', 'public.customers.tax_code', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)))) OR NOT (pgseal._not_distinct(pgseal.normalize(pgseal.decrypt_text_with(tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)), 'upper'), pgseal.normalize(CAST($3 AS pg_catalog.text), 'upper'))) ORDER BY id`,
  },
  {
    name: 'OR of two searchable columns',
    sql: `select id from customers where email = $1 or phone = $2 order by id`,
    params: ['anna.neri@example.it', '+390612345678'],
    expected: `SELECT id FROM customers WHERE (customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'email')) OR (customers.phone_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($4 AS pg_catalog.text)] AS pg_catalog.text[]), 'phone', 'public.customers.phone', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)), 'phone') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($4 AS pg_catalog.text), 'phone')) ORDER BY id`,
  },
  {
    name: 'NOT of an equality',
    sql: `select id from customers where not (email = $1) order by id`,
    params: ['anna.neri@example.it'],
    expected: `SELECT id FROM customers WHERE NOT (customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'email')) ORDER BY id`,
  },
  {
    name: 'equality in JOIN ON',
    sql: `select o.id, o.status from orders o join customers c on c.id = o.customer_id and c.email = $1 order by o.id`,
    params: ['mario.rossi@example.it'],
    expected: `SELECT o.id, o.status FROM orders AS o JOIN customers AS c ON c.id = o.customer_id AND c.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(c.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'email') ORDER BY o.id`,
  },
  {
    name: 'quoted identifiers in a condition',
    sql: `select "Id", customer_id from billing."Invoices" where "Iban" = $1`,
    params: ['IT60X0542811101000000123456'],
    expected: `SELECT "Id", customer_id FROM billing."Invoices" WHERE "Invoices"."Iban_bidx" OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'trim', 'billing.Invoices.Iban', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with("Iban", 'billing.Invoices.Iban', CAST($1 AS pg_catalog.bytea)), 'trim') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'trim')`,
  },
  {
    name: 'FILTER (WHERE ...) on a searchable column',
    sql: `select count(*) filter (where email = $1) as n, count(*) as total from customers`,
    params: ['paolo.russo@example.it'],
    expected: `SELECT count(*) FILTER (WHERE customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'email')) AS n, count(*) AS total FROM customers`,
  },
  {
    name: 'scope column: equality with the scope filtered',
    sql: `select id, body from tenant_notes where tenant = $1 and body = $2 order by id`,
    params: ['acme', 'renewal due in march'],
    expected: `SELECT id, pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)) AS body FROM tenant_notes WHERE tenant = $3 AND tenant_notes.body_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($4 AS pg_catalog.text)] AS pg_catalog.text[]), 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), tenant_notes.tenant::text), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)), 'trim') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($4 AS pg_catalog.text), 'trim') ORDER BY id`,
  },
  {
    name: 'scope column: equality across scopes',
    sql: `select id, tenant from tenant_notes where body = $1 order by id`,
    params: ['renewal due in march'],
    expected: `SELECT id, tenant FROM tenant_notes WHERE tenant_notes.body_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), tenant_notes.tenant::text), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)), 'trim') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'trim') ORDER BY id`,
  },
  {
    name: 'scope column: IN list',
    sql: `select id from tenant_notes n where n.body in ($1, $2) order by id`,
    params: ['asked for a discount', 'new contact: Luca'],
    expected: `SELECT id FROM tenant_notes AS n WHERE n.body_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text), CAST($4 AS pg_catalog.text)] AS pg_catalog.text[]), 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), n.tenant::text), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(n.body, pgseal.scope_context('public.tenant_notes.body', n.tenant::text), CAST($1 AS pg_catalog.bytea)), 'trim') OPERATOR(pg_catalog.=) ANY (ARRAY[pgseal.normalize(CAST($3 AS pg_catalog.text), 'trim'), pgseal.normalize(CAST($4 AS pg_catalog.text), 'trim')]) ORDER BY id`,
  },
  {
    name: 'IN (subquery) on a plain column',
    sql: `select id, email from customers where id in (select customer_id from orders where status = 'paid') order by id`,
    expected: `SELECT id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers WHERE id IN (SELECT customer_id FROM orders WHERE status = 'paid') ORDER BY id`,
  },
  {
    name: 'correlated EXISTS',
    sql: `select c.id, c.email from customers c where exists (select 1 from orders o where o.customer_id = c.id and o.status = $1) order by c.id`,
    params: ['open'],
    expected: `SELECT c.id, pgseal.decrypt_text_with(c.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers AS c WHERE EXISTS (SELECT 1 FROM orders AS o WHERE o.customer_id = c.id AND o.status = $2) ORDER BY c.id`,
  },
  {
    name: 'correlated EXISTS with a protected condition inside',
    sql: `select o.id from orders o where exists (select 1 from customers c where c.id = o.customer_id and c.email = $1) order by o.id`,
    params: ['anna.neri@example.it'],
    expected: `SELECT o.id FROM orders AS o WHERE EXISTS (SELECT 1 FROM customers AS c WHERE c.id = o.customer_id AND c.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(c.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'email')) ORDER BY o.id`,
  },
  {
    name: 'outer protected column compared inside a subquery',
    sql: `select c.id from customers c where exists (select 1 from orders o where o.customer_id = c.id and c.tax_code = $1) order by c.id`,
    params: ['RSSMRA80A01H501U'],
    expected: `SELECT c.id FROM customers AS c WHERE EXISTS (SELECT 1 FROM orders AS o WHERE o.customer_id = c.id AND c.tax_code_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'upper', 'public.customers.tax_code', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(c.tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)), 'upper') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'upper')) ORDER BY c.id`,
  },
  {
    name: 'scalar subquery in the select list',
    sql: `select o.id, (select c.email from customers c where c.id = o.customer_id) as email from orders o order by o.id`,
    expected: `SELECT o.id, (SELECT pgseal.decrypt_text_with(c.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers AS c WHERE c.id = o.customer_id) AS email FROM orders AS o ORDER BY o.id`,
  },
  {
    name: 'correlated reference in a scalar subquery',
    sql: `select c.id, (select count(*) from orders o where o.customer_id = c.id and o.status = 'paid') as paid, c.phone from customers c order by c.id`,
    expected: `SELECT c.id, (SELECT count(*) FROM orders AS o WHERE o.customer_id = c.id AND o.status = 'paid') AS paid, pgseal.decrypt_text_with(c.phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)) AS phone FROM customers AS c ORDER BY c.id`,
  },
  {
    name: 'derived table',
    sql: `select s.id, s.email from (select id, email from customers where tenant_id = 1) s order by s.id`,
    expected: `SELECT s.id, s.email FROM ( SELECT id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers WHERE tenant_id = 1 ) AS s ORDER BY s.id`,
  },
  {
    name: 'star over a derived table',
    sql: `select * from (select * from customers) s where s.tenant_id = 2 order by s.id`,
    expected: `SELECT * FROM ( SELECT customers.id, customers.tenant_id, customers.name, pgseal.decrypt_text_with(customers.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email, pgseal.decrypt_text_with(customers.phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)) AS phone, pgseal.decrypt_text_with(customers.tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)) AS tax_code, pgseal.decrypt_text_with(customers.notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS notes, customers.created_at FROM customers ) AS s WHERE s.tenant_id = 2 ORDER BY s.id`,
  },
  {
    name: 'IN (subquery) on a searchable column',
    sql: `select id from customers where email in (select c2.email from customers c2 where c2.tenant_id = 2) order by id`,
    expected: `SELECT id FROM customers WHERE customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY(SELECT pgseal.decrypt_text_with(c2.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers AS c2 WHERE c2.tenant_id = 2) AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) ANY (pgseal.normalize_array(CAST(ARRAY(SELECT pgseal.decrypt_text_with(c2.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers AS c2 WHERE c2.tenant_id = 2) AS pg_catalog.text[]), 'email')) ORDER BY id`,
  },
  {
    name: 'LATERAL subquery',
    sql: `select c.id, l.memo from customers c cross join lateral (select o.memo from orders o where o.customer_id = c.id order by o.id limit 1) l order by c.id`,
    expected: `SELECT c.id, l.memo FROM customers AS c CROSS JOIN LATERAL ( SELECT pgseal.decrypt_text_with(o.memo, pgseal.row_context('public.orders.memo', o.id::text), CAST($1 AS pg_catalog.bytea)) AS memo FROM orders AS o WHERE o.customer_id = c.id ORDER BY o.id LIMIT 1 ) AS l ORDER BY c.id`,
  },
  {
    name: 'CTE',
    sql: `with t1 as (select id, email from customers where tenant_id = $1) select id, email from t1 order by id`,
    params: [1],
    expected: `WITH t1 AS (SELECT id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers WHERE tenant_id = $2) SELECT id, email FROM t1 ORDER BY id`,
  },
  {
    name: 'CTE shadowing a table name',
    sql: `with customers as (select id, email from customers) select * from customers where id <= 2 order by id`,
    expected: `WITH customers AS (SELECT id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers) SELECT * FROM customers WHERE id <= 2 ORDER BY id`,
  },
  {
    name: 'recursive CTE joined to a protected table',
    sql: `with recursive chain(n) as (select 1 union all select n + 1 from chain where n < 3) select chain.n, c.email from chain join customers c on c.id = chain.n order by chain.n`,
    expected: `WITH RECURSIVE chain(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM chain WHERE n < 3) SELECT chain.n, pgseal.decrypt_text_with(c.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM chain JOIN customers AS c ON c.id = chain.n ORDER BY chain.n`,
  },
  {
    name: 'data-modifying CTE with RETURNING',
    sql: `with moved as (update orders set status = 'archived' where id = $1 returning id, memo) select id, memo from moved`,
    params: [3],
    expected: `WITH moved AS (UPDATE orders SET status = 'archived' WHERE id = $2 RETURNING id, pgseal.decrypt_text_with(memo, pgseal.row_context('public.orders.memo', orders.id::text), CAST($1 AS pg_catalog.bytea)) AS memo) SELECT id, memo FROM moved`,
  },
  {
    name: 'INSERT in a CTE',
    sql: `with new_row as (insert into customers (id, tenant_id, name, email, created_at) values ($1, 1, 'Nuovo Cliente', $2, '2024-07-01 00:00:00+00') returning id, email) select * from new_row`,
    params: [110, 'nuovo.cliente@example.it'],
    expected: `WITH new_row AS (INSERT INTO customers (id, tenant_id, name, email, email_bidx, created_at) VALUES ($3, 1, 'Nuovo Cliente', pgseal.encrypt_text_with(CAST($4 AS pg_catalog.text), 'public.customers.email', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with(CAST($4 AS pg_catalog.text), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16), '2024-07-01 00:00:00+00') RETURNING id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email) SELECT * FROM new_row`,
  },
  {
    name: 'CTE reading an earlier CTE',
    sql: `with a as (select id, email from customers), b as (select * from a where id > 2) select * from b order by id`,
    expected: `WITH a AS (SELECT id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers), b AS (SELECT * FROM a WHERE id > 2) SELECT * FROM b ORDER BY id`,
  },
  {
    name: 'derived table with column aliases',
    sql: `select s.e from (select email from customers where id = $1) as s(e)`,
    params: [5],
    expected: `SELECT s.e FROM ( SELECT pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers WHERE id = $2 ) AS s(e)`,
  },
  {
    name: 'INSERT ... SELECT from a CTE',
    sql: `with src as (select id, phone from customers where phone is not null) insert into tenant_notes (id, tenant, body) select 300 + id, 'globex', phone from src returning id, tenant, body`,
    expected: `WITH src AS (SELECT id, pgseal.decrypt_text_with(phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)) AS phone FROM customers WHERE phone IS NOT NULL) INSERT INTO tenant_notes (id, tenant, body, body_bidx) SELECT 300 + id, 'globex', pgseal.encrypt_text_with(phone::text, pgseal.scope_context('public.tenant_notes.body', CAST(COALESCE('globex', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('globex', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text))), pgseal.blind_index_with(phone::text, 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('globex', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), 16) FROM src RETURNING id, tenant, pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)) AS body`,
  },
  {
    name: 'IS NULL OR equality',
    sql: `select id from customers where email is null or email = $1 order by id`,
    params: ['luca.verdi@example.it'],
    expected: `SELECT id FROM customers WHERE email IS NULL OR (customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'email')) ORDER BY id`,
  },
  {
    name: 'INSERT with a subquery value reading a protected column',
    sql: `insert into orders (id, customer_id, amount, memo, status) values (301, 1, (select amount from orders where id = 1), (select notes from customers where id = 1), 'open') returning id, amount, memo`,
    expected: `INSERT INTO orders (id, customer_id, amount, memo, status) VALUES (301, 1, pgseal.encrypt_text_with(CAST(CAST((SELECT pgseal.value_numeric(pgseal.decrypt_text_with(amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) AS amount FROM orders WHERE id = 1) AS numeric) AS pg_catalog.text), 'public.orders.amount', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.encrypt_text_with(CAST((SELECT pgseal.decrypt_text_with(notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS notes FROM customers WHERE id = 1) AS pg_catalog.text), pgseal.row_context('public.orders.memo', CAST(COALESCE(301, (CAST(NULL AS public.orders)).id) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), 'open') RETURNING id, pgseal.value_numeric(pgseal.decrypt_text_with(amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) AS amount, pgseal.decrypt_text_with(memo, pgseal.row_context('public.orders.memo', orders.id::text), CAST($1 AS pg_catalog.bytea)) AS memo`,
  },
  {
    name: 'UNION ALL',
    sql: `select id, email from customers where tenant_id = 1 union all select id, email from customers where tenant_id = 3 order by id`,
    expected: `SELECT id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers WHERE tenant_id = 1 UNION ALL SELECT id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers WHERE tenant_id = 3 ORDER BY id`,
  },
  {
    name: 'INSERT with parameters and RETURNING',
    sql: `insert into customers (id, tenant_id, name, email, phone, tax_code, notes, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8) returning id, email, phone, tax_code, notes`,
    params: [100, 2, 'Chiara Ferri', 'chiara.ferri@example.it', '+393400000001', 'FRRCHR88H41F205W', 'new', '2024-07-02 08:00:00+00'],
    expected: `INSERT INTO customers (id, tenant_id, name, email, email_bidx, phone, phone_bidx, tax_code, tax_code_bidx, notes, created_at) VALUES ($3, $4, $5, pgseal.encrypt_text_with(CAST($6 AS pg_catalog.text), 'public.customers.email', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with(CAST($6 AS pg_catalog.text), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16), pgseal.encrypt_text_with(CAST($7 AS pg_catalog.text), 'public.customers.phone', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with(CAST($7 AS pg_catalog.text), 'phone', 'public.customers.phone', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16), pgseal.encrypt_text_with(CAST($8 AS pg_catalog.text), 'public.customers.tax_code', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with(CAST($8 AS pg_catalog.text), 'upper', 'public.customers.tax_code', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16), pgseal.encrypt_text_with(CAST($9 AS pg_catalog.text), 'public.customers.notes', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), $10) RETURNING id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email, pgseal.decrypt_text_with(phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)) AS phone, pgseal.decrypt_text_with(tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)) AS tax_code, pgseal.decrypt_text_with(notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS notes`,
  },
  {
    name: 'multi-row VALUES',
    sql: `insert into customers (id, tenant_id, name, email, created_at) values (101, 1, 'Elena Costa', 'elena.costa@example.it', '2024-07-03 00:00:00+00'), (102, 2, 'Marco Fontana', 'marco.fontana@example.it', '2024-07-04 00:00:00+00') returning id, email`,
    expected: `INSERT INTO customers (id, tenant_id, name, email, email_bidx, created_at) VALUES (101, 1, 'Elena Costa', pgseal.encrypt_text_with('elena.costa@example.it'::text, 'public.customers.email', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with('elena.costa@example.it'::text, 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16), '2024-07-03 00:00:00+00'), (102, 2, 'Marco Fontana', pgseal.encrypt_text_with('marco.fontana@example.it'::text, 'public.customers.email', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with('marco.fontana@example.it'::text, 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16), '2024-07-04 00:00:00+00') RETURNING id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email`,
  },
  {
    name: 'INSERT without a column list (row context from the key given)',
    sql: `insert into orders values ($1, $2, $3, $4, $5) returning *`,
    params: [100, 2, '19.90', 'ring the bell', 'open'],
    expected: `INSERT INTO orders (id, customer_id, amount, memo, status) VALUES ($3, $4, pgseal.encrypt_text_with(CAST(CAST($5 AS numeric) AS pg_catalog.text), 'public.orders.amount', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.encrypt_text_with(CAST($6 AS pg_catalog.text), pgseal.row_context('public.orders.memo', CAST(COALESCE($3, (CAST(NULL AS public.orders)).id) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), $7) RETURNING orders.id, orders.customer_id, pgseal.value_numeric(pgseal.decrypt_text_with(orders.amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) AS amount, pgseal.decrypt_text_with(orders.memo, pgseal.row_context('public.orders.memo', orders.id::text), CAST($1 AS pg_catalog.bytea)) AS memo, orders.status`,
  },
  {
    name: 'INSERT RETURNING *',
    sql: `insert into customers (id, tenant_id, name, email, created_at) values (103, 3, 'Irene Sala', 'irene.sala@example.it', '2024-07-05 00:00:00+00') returning *`,
    expected: `INSERT INTO customers (id, tenant_id, name, email, email_bidx, created_at) VALUES (103, 3, 'Irene Sala', pgseal.encrypt_text_with('irene.sala@example.it'::text, 'public.customers.email', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with('irene.sala@example.it'::text, 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16), '2024-07-05 00:00:00+00') RETURNING customers.id, customers.tenant_id, customers.name, pgseal.decrypt_text_with(customers.email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email, pgseal.decrypt_text_with(customers.phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)) AS phone, pgseal.decrypt_text_with(customers.tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)) AS tax_code, pgseal.decrypt_text_with(customers.notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS notes, customers.created_at`,
  },
  {
    name: 'INSERT jsonb and bytea',
    sql: `insert into billing."Invoices" ("Id", customer_id, "Iban", payload, doc) values ($1, $2, $3, $4, $5) returning "Id", "Iban", payload, doc`,
    params: [10, 1, 'IT60X0542811101000000999999', '{"lines": 1, "total": 12.5}', Buffer.from('255044462d39', 'hex')],
    expected: `INSERT INTO billing."Invoices" ("Id", customer_id, "Iban", "Iban_bidx", payload, doc) VALUES ($3, $4, pgseal.encrypt_text_with(CAST($5 AS pg_catalog.text), 'billing.Invoices.Iban', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with(CAST($5 AS pg_catalog.text), 'trim', 'billing.Invoices.Iban', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16), pgseal.encrypt_text_with(CAST(CAST($6 AS pg_catalog.jsonb) AS pg_catalog.text), 'billing.Invoices.payload', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.encrypt_bytea_with(CAST($7 AS pg_catalog.bytea), 'billing.Invoices.doc', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default'))) RETURNING "Id", pgseal.decrypt_text_with("Iban", 'billing.Invoices.Iban', CAST($1 AS pg_catalog.bytea)) AS "Iban", pgseal.value_jsonb(pgseal.decrypt_text_with(payload, 'billing.Invoices.payload', CAST($1 AS pg_catalog.bytea))) AS payload, pgseal.decrypt_bytea_with(doc, 'billing.Invoices.doc', CAST($1 AS pg_catalog.bytea)) AS doc`,
  },
  {
    name: 'INSERT into a scope-column table',
    sql: `insert into tenant_notes (id, tenant, body) values (10, 'globex', 'kickoff call') returning id, tenant, body`,
    expected: `INSERT INTO tenant_notes (id, tenant, body, body_bidx) VALUES (10, 'globex', pgseal.encrypt_text_with('kickoff call'::text, pgseal.scope_context('public.tenant_notes.body', CAST(COALESCE('globex', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('globex', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text))), pgseal.blind_index_with('kickoff call'::text, 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('globex', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), 16)) RETURNING id, tenant, pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)) AS body`,
  },
  {
    name: 'INSERT multi-row with scope parameters',
    sql: `insert into tenant_notes (id, tenant, body) values ($1, $2, $3), ($4, $5, $6) returning id, body`,
    params: [11, 'acme', 'first', 12, 'globex', 'second'],
    expected: `INSERT INTO tenant_notes (id, tenant, body, body_bidx) VALUES ($3, $4, pgseal.encrypt_text_with(CAST($5 AS pg_catalog.text), pgseal.scope_context('public.tenant_notes.body', CAST(COALESCE($4, (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE($4, (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text))), pgseal.blind_index_with(CAST($5 AS pg_catalog.text), 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE($4, (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), 16)), ($6, $7, pgseal.encrypt_text_with(CAST($8 AS pg_catalog.text), pgseal.scope_context('public.tenant_notes.body', CAST(COALESCE($7, (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE($7, (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text))), pgseal.blind_index_with(CAST($8 AS pg_catalog.text), 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE($7, (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), 16)) RETURNING id, pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)) AS body`,
  },
  {
    name: 'INSERT ... SELECT re-encrypts under the new context',
    sql: `insert into tenant_notes (id, tenant, body) select 100 + c.id, 'acme', c.notes from customers c where c.notes is not null returning id, body`,
    expected: `INSERT INTO tenant_notes (id, tenant, body, body_bidx) SELECT 100 + c.id, 'acme', pgseal.encrypt_text_with((pgseal.decrypt_text_with(c.notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)))::text, pgseal.scope_context('public.tenant_notes.body', CAST(COALESCE('acme', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('acme', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text))), pgseal.blind_index_with((pgseal.decrypt_text_with(c.notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)))::text, 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('acme', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), 16) FROM customers AS c WHERE c.notes IS NOT NULL RETURNING id, pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)) AS body`,
  },
  {
    name: 'INSERT ... SELECT with ORDER BY (wrapped)',
    sql: `insert into orders (id, customer_id, amount, memo, status) select 200 + id, id, 1.00, name, 'open' from customers where tenant_id = 1 order by id returning id, memo`,
    expected: `INSERT INTO orders (id, customer_id, amount, memo, status) SELECT pgseal_source.id, pgseal_source.customer_id, pgseal.encrypt_text_with(CAST(pgseal_source.amount::numeric AS pg_catalog.text), 'public.orders.amount', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.encrypt_text_with(pgseal_source.memo::text, pgseal.row_context('public.orders.memo', CAST(COALESCE(pgseal_source.id, (CAST(NULL AS public.orders)).id) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal_source.status FROM ( SELECT 200 + id, id, 1.00, name, 'open' FROM customers WHERE tenant_id = 1 ORDER BY id ) AS pgseal_source(id, customer_id, amount, memo, status) RETURNING id, pgseal.decrypt_text_with(memo, pgseal.row_context('public.orders.memo', orders.id::text), CAST($1 AS pg_catalog.bytea)) AS memo`,
  },
  {
    name: 'ON CONFLICT DO UPDATE copying EXCLUDED',
    sql: `insert into customers (id, tenant_id, name, email, created_at) values (1, 1, 'Mario Rossi', $1, '2024-01-10 09:00:00+00') on conflict (id) do update set email = excluded.email returning id, email`,
    params: ['m.rossi@example.it'],
    expected: `INSERT INTO customers (id, tenant_id, name, email, email_bidx, created_at) VALUES (1, 1, 'Mario Rossi', pgseal.encrypt_text_with(CAST($3 AS pg_catalog.text), 'public.customers.email', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with(CAST($3 AS pg_catalog.text), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16), '2024-01-10 09:00:00+00') ON CONFLICT (id) DO UPDATE SET email = excluded.email, email_bidx = excluded.email_bidx RETURNING id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email`,
  },
  {
    name: 'ON CONFLICT DO UPDATE with an expression',
    sql: `insert into customers as c (id, tenant_id, name, notes, created_at) values (3, 2, 'Anna Neri', 'late payer', '2024-03-12 11:00:00+00') on conflict (id) do update set notes = c.notes || '; ' || excluded.notes, name = excluded.name returning id, notes`,
    expected: `INSERT INTO customers AS c (id, tenant_id, name, notes, created_at) VALUES (3, 2, 'Anna Neri', pgseal.encrypt_text_with('late payer'::text, 'public.customers.notes', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), '2024-03-12 11:00:00+00') ON CONFLICT (id) DO UPDATE SET notes = pgseal.encrypt_text_with(CAST((pgseal.decrypt_text_with(c.notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) || '; ') || pgseal.decrypt_text_with(excluded.notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS pg_catalog.text), 'public.customers.notes', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), name = excluded.name RETURNING id, pgseal.decrypt_text_with(notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS notes`,
  },
  {
    name: 'ON CONFLICT DO NOTHING',
    sql: `insert into customers (id, tenant_id, name, email, created_at) values (2, 1, 'Luca Verdi', 'other@example.it', '2024-02-11 10:30:00+00') on conflict do nothing returning id`,
    expected: `INSERT INTO customers (id, tenant_id, name, email, email_bidx, created_at) VALUES (2, 1, 'Luca Verdi', pgseal.encrypt_text_with('other@example.it'::text, 'public.customers.email', pgseal._material_in(CAST($1 AS pg_catalog.bytea), 'default')), pgseal.blind_index_with('other@example.it'::text, 'email', 'public.customers.email', pgseal._index_keys_in(CAST($1 AS pg_catalog.bytea), 'default'), 16), '2024-02-11 10:30:00+00') ON CONFLICT DO NOTHING RETURNING id`,
  },
  {
    name: 'ON CONFLICT on the primary key with a row-context column',
    sql: `insert into orders (id, customer_id, amount, memo, status) values (1, 1, 120.50, 'gift wrap again', 'paid') on conflict (id) do update set memo = excluded.memo, amount = excluded.amount + 1 returning id, memo, amount`,
    expected: `INSERT INTO orders (id, customer_id, amount, memo, status) VALUES (1, 1, pgseal.encrypt_text_with(CAST(120.50::numeric AS pg_catalog.text), 'public.orders.amount', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), pgseal.encrypt_text_with('gift wrap again'::text, pgseal.row_context('public.orders.memo', CAST(COALESCE(1, (CAST(NULL AS public.orders)).id) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), 'paid') ON CONFLICT (id) DO UPDATE SET memo = excluded.memo, amount = pgseal.encrypt_text_with(CAST(CAST(pgseal.value_numeric(pgseal.decrypt_text_with(excluded.amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) + 1 AS numeric) AS pg_catalog.text), 'public.orders.amount', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')) RETURNING id, pgseal.decrypt_text_with(memo, pgseal.row_context('public.orders.memo', orders.id::text), CAST($1 AS pg_catalog.bytea)) AS memo, pgseal.value_numeric(pgseal.decrypt_text_with(amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) AS amount`,
  },
  {
    name: 'ON CONFLICT on a scope-column table, scope copied too',
    sql: `insert into tenant_notes (id, tenant, body) values (1, 'acme', 'renewal due in april') on conflict (id) do update set tenant = excluded.tenant, body = excluded.body returning id, tenant, body`,
    expected: `INSERT INTO tenant_notes (id, tenant, body, body_bidx) VALUES (1, 'acme', pgseal.encrypt_text_with('renewal due in april'::text, pgseal.scope_context('public.tenant_notes.body', CAST(COALESCE('acme', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('acme', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text))), pgseal.blind_index_with('renewal due in april'::text, 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('acme', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), 16)) ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, body = excluded.body, body_bidx = excluded.body_bidx RETURNING id, tenant, pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)) AS body`,
  },
  {
    name: 'UPDATE a searchable column',
    sql: `update customers set email = $1 where id = $2 returning id, email`,
    params: ['mario@rossi.example.it', 1],
    expected: `UPDATE customers SET email = pgseal.encrypt_text_with(CAST($3 AS pg_catalog.text), 'public.customers.email', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')), email_bidx = pgseal.blind_index_with(CAST($3 AS pg_catalog.text), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16) WHERE id = $4 RETURNING id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email`,
  },
  {
    name: 'UPDATE with a function of the old value',
    sql: `update customers set notes = upper(notes) where id = 1 returning notes`,
    expected: `UPDATE customers SET notes = pgseal.encrypt_text_with((upper(pgseal.decrypt_text_with(notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea))))::text, 'public.customers.notes', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')) WHERE id = 1 RETURNING pgseal.decrypt_text_with(notes, 'public.customers.notes', CAST($1 AS pg_catalog.bytea)) AS notes`,
  },
  {
    name: 'UPDATE a row-context column',
    sql: `update orders set memo = $1 where id = $2 returning id, memo`,
    params: ['call first', 2],
    expected: `UPDATE orders SET memo = pgseal.encrypt_text_with(CAST($3 AS pg_catalog.text), pgseal.row_context('public.orders.memo', orders.id::text), pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')) WHERE id = $4 RETURNING id, pgseal.decrypt_text_with(memo, pgseal.row_context('public.orders.memo', orders.id::text), CAST($1 AS pg_catalog.bytea)) AS memo`,
  },
  {
    name: 'UPDATE found through the blind index',
    sql: `update customers set name = 'Luca V.' where email = $1 returning id, name`,
    params: ['luca.verdi@example.it'],
    expected: `UPDATE customers SET name = 'Luca V.' WHERE customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'email') RETURNING id, name`,
  },
  {
    name: 'UPDATE ... FROM with a protected condition',
    sql: `update orders o set status = 'vip' from customers c where c.id = o.customer_id and c.tax_code = $1 returning o.id, o.status`,
    params: ['RSSMRA80A01H501U'],
    expected: `UPDATE orders AS o SET status = 'vip' FROM customers AS c WHERE c.id = o.customer_id AND c.tax_code_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'upper', 'public.customers.tax_code', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(c.tax_code, 'public.customers.tax_code', CAST($1 AS pg_catalog.bytea)), 'upper') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'upper') RETURNING o.id, o.status`,
  },
  {
    name: 'UPDATE the scope column with the value',
    sql: `update tenant_notes set tenant = 'globex', body = body where id = 2 returning id, tenant, body`,
    expected: `UPDATE tenant_notes SET tenant = 'globex', body = pgseal.encrypt_text_with((pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)))::text, pgseal.scope_context('public.tenant_notes.body', CAST(COALESCE('globex', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), pgseal._material_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('globex', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text))), body_bidx = pgseal.blind_index_with((pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)))::text, 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), CAST(COALESCE('globex', (CAST(NULL AS public.tenant_notes)).tenant) AS pg_catalog.text)), 16) WHERE id = 2 RETURNING id, tenant, pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)) AS body`,
  },
  {
    name: 'UPDATE jsonb from a parameter',
    sql: `update billing."Invoices" set payload = $1 where "Id" = 1 returning "Id", payload`,
    params: ['{"lines": 3, "total": 170}'],
    expected: `UPDATE billing."Invoices" SET payload = pgseal.encrypt_text_with(CAST(CAST($3 AS pg_catalog.jsonb) AS pg_catalog.text), 'billing.Invoices.payload', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')) WHERE "Id" = 1 RETURNING "Id", pgseal.value_jsonb(pgseal.decrypt_text_with(payload, 'billing.Invoices.payload', CAST($1 AS pg_catalog.bytea))) AS payload`,
  },
  {
    name: 'UPDATE numeric from its old value',
    sql: `update orders set amount = amount * 2 where id = 2 returning id, amount`,
    expected: `UPDATE orders SET amount = pgseal.encrypt_text_with(CAST(CAST(pgseal.value_numeric(pgseal.decrypt_text_with(amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) * 2 AS numeric) AS pg_catalog.text), 'public.orders.amount', pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')) WHERE id = 2 RETURNING id, pgseal.value_numeric(pgseal.decrypt_text_with(amount, 'public.orders.amount', CAST($1 AS pg_catalog.bytea))) AS amount`,
  },
  {
    name: 'DELETE found through the blind index',
    sql: `delete from customers where email = 'sara.gallo@example.it' returning id, name, email`,
    expected: `DELETE FROM customers WHERE customers.email_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY['sara.gallo@example.it'::text] AS pg_catalog.text[]), 'email', 'public.customers.email', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)), 'email') OPERATOR(pg_catalog.=) pgseal.normalize('sara.gallo@example.it'::text, 'email') RETURNING id, name, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email`,
  },
  {
    name: 'DELETE ... USING',
    sql: `delete from orders o using customers c where c.id = o.customer_id and c.phone = $1 returning o.id, o.memo`,
    params: ['+393339876543'],
    expected: `DELETE FROM orders AS o USING customers AS c WHERE c.id = o.customer_id AND c.phone_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'phone', 'public.customers.phone', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(c.phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)), 'phone') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'phone') RETURNING o.id, pgseal.decrypt_text_with(o.memo, pgseal.row_context('public.orders.memo', o.id::text), CAST($1 AS pg_catalog.bytea)) AS memo`,
  },
  {
    name: 'DELETE RETURNING *',
    sql: `delete from tenant_notes where body = $1 and tenant = 'acme' returning *`,
    params: ['renewal due in march'],
    expected: `DELETE FROM tenant_notes WHERE tenant_notes.body_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'trim', 'public.tenant_notes.body', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), tenant_notes.tenant::text), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)), 'trim') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'trim') AND tenant = 'acme' RETURNING tenant_notes.id, tenant_notes.tenant, pgseal.decrypt_text_with(tenant_notes.body, pgseal.scope_context('public.tenant_notes.body', tenant_notes.tenant::text), CAST($1 AS pg_catalog.bytea)) AS body`,
  },
  {
    name: 'plain columns of a protected table',
    sql: `select id, name from customers where tenant_id = 1 order by id`,
    expected: `select id, name from customers where tenant_id = 1 order by id`,
  },
  {
    name: 'no protected column of a protected table',
    sql: `select count(*) from orders where status = 'paid'`,
    expected: `select count(*) from orders where status = 'paid'`,
  },
  {
    name: 'a table name only inside a string',
    sql: `select relname from pg_class where relname = 'customers'`,
    expected: `select relname from pg_class where relname = 'customers'`,
  },
  {
    name: 'UPDATE of a plain column',
    sql: `update customers set name = 'Mario R.' where id = 1`,
    expected: `update customers set name = 'Mario R.' where id = 1`,
  },
  {
    name: 'a constant',
    sql: `select 1 as one`,
    expected: `select 1 as one`,
  },
];
