import { deparseSync, parseSync } from 'pgsql-parser';
import { beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, PgsealError } from '../../src/errors.js';
import { DECRYPT_SCAN_HINT, loadSqlRewriter, SqlRewriter } from '../../src/rewrite/index.js';
import { corpus } from '../rewrite/corpus.js';
import { registry } from '../rewrite/fixture.js';
import { refusals } from '../rewrite/refusals.js';

let rewriter: SqlRewriter;

beforeAll(async () => {
  rewriter = await loadSqlRewriter(registry);
});

function thrown(fn: () => unknown): PgsealError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(PgsealError);
    return error as PgsealError;
  }
  throw new Error('expected an error');
}

/** The string literals of a statement (they may be plaintext: errors must not quote them). */
function literals(sql: string): string[] {
  return [...sql.matchAll(/'((?:[^']|'')*)'/g)].map((m) => (m[1] ?? '').replace(/''/g, "'")).filter((s) => s.length > 0);
}

describe('rewriting the corpus', () => {
  it('has enough entries', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(70);
    expect(refusals.length).toBeGreaterThanOrEqual(15);
    expect(new Set(corpus.map((e) => e.name)).size).toBe(corpus.length);
  });

  it.each(corpus.map((e) => [e.name, e] as const))('%s', (_name, entry) => {
    const result = rewriter.rewrite(entry.sql);
    expect(result.sql).toBe(entry.expected);
    expect(result.changed).toBe(entry.expected !== entry.sql);
    if (result.changed) expect(result.columns.length).toBeGreaterThan(0);
  });

  it('gives parameters where the SQL uses them', () => {
    for (const entry of corpus) {
      const used = [...entry.sql.matchAll(/\$(\d+)/g)].map((m) => Number(m[1]));
      expect(entry.params?.length ?? 0, entry.name).toBe(used.length ? Math.max(...used) : 0);
    }
  });

  it('prints the deparser canonical text: every expected statement parses and prints back the same', () => {
    for (const entry of corpus) {
      if (entry.expected === entry.sql) continue;
      expect(deparseSync(parseSync(entry.expected), { pretty: false }), entry.name).toBe(entry.expected);
    }
  });

  it('reports the protected columns a statement touches', () => {
    expect(rewriter.rewrite('select id, lower(email), o.memo from customers c join orders o on o.customer_id = c.id where c.phone = $1').columns).toEqual([
      'public.customers.email',
      'public.orders.memo',
      'public.customers.phone',
    ]);
    // IS NULL reads the ciphertext column as it is: touched, nothing rewritten.
    const nullTest = rewriter.rewrite('select id from customers where tax_code is null');
    expect(nullTest).toMatchObject({ changed: false, columns: ['public.customers.tax_code'] });
  });
});

describe('statements that touch no protected column', () => {
  const untouched = [
    ...corpus.filter((e) => e.expected === e.sql).map((e) => e.sql),
    'select now()',
    'select id, name from customers c where c.tenant_id = $1 order by c.name',
    'insert into customers (id, tenant_id, name) values (7, 1, $1)',
    'delete from orders where status = $1',
    'create index on customers (email_bidx)',
    'alter table customers add column nickname text',
    'create view customer_names as select id, name from customers',
    'select 1; select 2',
    '   ',
  ];

  it.each(untouched.map((sql) => [sql]))('%s is returned unchanged, and so again', (sql) => {
    const first = rewriter.rewrite(sql);
    expect(first.sql).toBe(sql);
    expect(first.changed).toBe(false);
    expect(rewriter.rewrite(first.sql).sql).toBe(sql);
  });

  it('passes DDL through even when it names protected columns', () => {
    const ddl = 'create table customers_copy as select email from customers';
    expect(rewriter.rewrite(ddl)).toMatchObject({ sql: ddl, changed: false });
  });
});

describe('refused patterns', () => {
  it.each(refusals.map((e) => [e.name, e] as const))('%s', (_name, entry) => {
    const error = thrown(() => rewriter.rewrite(entry.sql));
    expect(error.code).toBe(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT);
    expect(error.message).toContain(entry.column);
    expect(error.message).toContain(entry.construct);
    expect(error.message).toMatch(/at position \d+/);
    expect(error.hint).toBe(DECRYPT_SCAN_HINT);
    const position = Number(error.position);
    expect(error.message).toContain(`at position ${position}`);
    // PostgreSQL's convention: 1-based, in characters.
    expect(Array.from(entry.sql).slice(position - 1).join('').startsWith(entry.at)).toBe(true);
    for (const literal of literals(entry.sql)) expect(error.message).not.toContain(literal);
    for (const param of entry.params ?? []) if (typeof param === 'string') expect(error.message).not.toContain(param);
  });

  it.each(refusals.map((e) => [e.name, e] as const))('%s: rewritten to a decrypting scan when allowed', (_name, entry) => {
    const result = rewriter.rewrite(entry.sql, { allowDecryptScan: true });
    expect(result.changed).toBe(true);
    expect(result.columns).toContain(entry.column);
    expect(result.sql).toMatch(/pgseal\.decrypt_(text|bytea)_with\(/);
  });

  it('orders by the decrypt expression of a selected column when allowed', () => {
    expect(rewriter.rewrite('select id, email from customers order by email', { allowDecryptScan: true }).sql).toBe(
      "SELECT id, pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers ORDER BY pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea))",
    );
  });

  it('does not quote literals in syntax errors', () => {
    const error = thrown(() => rewriter.rewrite("select 'top secret value' form customers"));
    expect(error.code).toBe(ErrorCodes.SQL_SYNTAX);
    expect(error.message).not.toContain('top secret value');
    expect(error.position).toBe('32'); // `form` is a column alias; `customers` is the error
  });

  it('reports syntax errors as SQL_SYNTAX', () => {
    expect(thrown(() => rewriter.rewrite('select email from customers where')).code).toBe(ErrorCodes.SQL_SYNTAX);
    expect(thrown(() => rewriter.rewrite('select email fro customers')).code).toBe(ErrorCodes.SQL_SYNTAX);
  });
});

describe('constructs the rewriter does not handle on protected columns', () => {
  const cases: [string, string][] = [
    ['writing a blind-index column', "insert into customers (id, tenant_id, email_bidx) values (1, 1, '\\x00')"],
    ['updating a blind-index column', "update customers set email_bidx = null where id = 1"],
    ['DEFAULT for a protected column', 'update customers set email = default where id = 1'],
    ['DEFAULT in VALUES', 'insert into customers (id, tenant_id, email) values (1, 1, default)'],
    ['row context without the primary key value', "insert into orders (customer_id, memo) values (1, 'leave with neighbour')"],
    ['scope column missing', "insert into tenant_notes (id, body) values (1, 'quarterly review')"],
    ['scope column changed alone', "update tenant_notes set tenant = 'initech' where id = 1"],
    ['primary key changed under a row-context column', 'update orders set id = 9 where id = 1'],
    ['row-context column copied from EXCLUDED off the primary key', "insert into orders (id, customer_id, memo) values (1, 1, 'back door') on conflict (customer_id) do update set memo = excluded.memo"],
    ['scope-column value copied from EXCLUDED without its scope', "insert into tenant_notes (id, tenant, body) values (1, 'acme', 'status update') on conflict (id) do update set body = excluded.body"],
    ['row-context column in DO UPDATE off the primary key', "insert into orders (id, customer_id, memo) values (1, 1, 'side door') on conflict (customer_id) do update set memo = 'front door'"],
    ['conflict target on an encrypted column', "insert into customers (id, tenant_id, email) values (1, 1, 'dup@example.it') on conflict (email) do nothing"],
    ['multiple-column assignment', "update customers set (email, name) = ('new@example.it', 'Nuovo Nome') where id = 1"],
    ['MERGE', "merge into customers c using orders o on o.customer_id = c.id when matched then update set name = 'Merged Name'"],
    ['whole-row reference', 'select row_to_json(c) from customers c'],
    ['aliased join', 'select j.id from (customers c join orders o on o.customer_id = c.id) j'],
    ['JOIN USING an encrypted column', 'select c.id from customers c join customers d using (email)'],
    ['* over JOIN USING', 'select * from customers c join orders o using (id)'],
    ['column aliases on a protected table', 'select x.a from customers as x(a, b, c, d)'],
    ['INSERT without columns from a SELECT of unknown width', 'insert into customers select * from other_customers'],
  ];
  it.each(cases)('%s', (_name, sql) => {
    const error = thrown(() => rewriter.rewrite(sql));
    expect(error.code).toBe(ErrorCodes.REWRITE_UNSUPPORTED);
    expect(error.hint).toBeTruthy();
    for (const literal of literals(sql)) expect(error.message).not.toContain(literal);
  });
});

describe('statement forms', () => {
  it('rewrites every statement of a multi-statement text', () => {
    expect(rewriter.rewrite('select 1; select email from customers').sql).toBe(
      "SELECT 1;\n\nSELECT pgseal.decrypt_text_with(email, 'public.customers.email', CAST($1 AS pg_catalog.bytea)) AS email FROM customers",
    );
  });

  it('rewrites the statement under EXPLAIN', () => {
    expect(rewriter.rewrite('explain select id from customers where phone = $1').sql).toBe(
      "EXPLAIN SELECT id FROM customers WHERE customers.phone_bidx OPERATOR(pg_catalog.=) ANY (pgseal.blind_index_array_with(CAST(ARRAY[CAST($3 AS pg_catalog.text)] AS pg_catalog.text[]), 'phone', 'public.customers.phone', pgseal._index_keys_in(CAST($2 AS pg_catalog.bytea), 'default'), 16)) AND pgseal.normalize(pgseal.decrypt_text_with(phone, 'public.customers.phone', CAST($1 AS pg_catalog.bytea)), 'phone') OPERATOR(pg_catalog.=) pgseal.normalize(CAST($3 AS pg_catalog.text), 'phone')",
    );
  });

  it('leaves an ambiguous column for PostgreSQL to report', () => {
    const sql = 'select email from customers c, customers d';
    expect(rewriter.rewrite(sql).sql).toBe(sql);
  });

  it('decrypts old and new in RETURNING (PostgreSQL 18) with their own row key', () => {
    expect(rewriter.rewrite('update orders set memo = $1 where id = 1 returning old.memo, new.memo').sql).toBe(
      "UPDATE orders SET memo = pgseal.encrypt_text_with(CAST($3 AS pg_catalog.text), pgseal.row_context('public.orders.memo', orders.id::text), pgseal._material_in(CAST($2 AS pg_catalog.bytea), 'default')) WHERE id = 1 RETURNING pgseal.decrypt_text_with(old.memo, pgseal.row_context('public.orders.memo', old.id::text), CAST($1 AS pg_catalog.bytea)) AS memo, pgseal.decrypt_text_with(new.memo, pgseal.row_context('public.orders.memo', new.id::text), CAST($1 AS pg_catalog.bytea)) AS memo",
    );
  });

  it('gives a reused key parameter its column type, not text', () => {
    // `$1` is both orders.id (integer) and the row key: `$1::text` alone would make PostgreSQL
    // deduce two types for it.
    expect(rewriter.rewrite('insert into orders (id, memo) values ($1, $2)').sql).toBe(
      "INSERT INTO orders (id, memo) VALUES ($2, pgseal.encrypt_text_with(CAST($3 AS pg_catalog.text), pgseal.row_context('public.orders.memo', CAST(COALESCE($2, (CAST(NULL AS public.orders)).id) AS pg_catalog.text)), pgseal._material_in(CAST($1 AS pg_catalog.bytea), 'default')))",
    );
  });

  it('leaves an unqualified column of ON CONFLICT DO UPDATE, ambiguous with EXCLUDED, for PostgreSQL to report', () => {
    expect(rewriter.rewrite("insert into customers (id, tenant_id, notes) values (5, 1, 'memo') on conflict (id) do update set notes = notes || excluded.notes").sql).toContain(
      'SET notes = pgseal.encrypt_text_with(CAST(notes || pgseal.decrypt_text_with(excluded.notes',
    );
  });

  it('resolves a CTE name before the table it shadows', () => {
    expect(rewriter.rewrite('with customers as (select 1 as email) select email from customers').changed).toBe(false);
  });
});

describe('the cache', () => {
  it('returns the same result object for the same text and options', () => {
    const sql = 'select id, email from customers where id = $1';
    const first = rewriter.rewrite(sql);
    expect(rewriter.rewrite(sql)).toBe(first);
    expect(rewriter.rewrite(sql, { allowDecryptScan: true })).not.toBe(first);
    expect(rewriter.rewrite(sql, { allowDecryptScan: true })).toBe(rewriter.rewrite(sql, { allowDecryptScan: true }));
    expect(Object.isFrozen(first) && Object.isFrozen(first.columns)).toBe(true);
  });

  it('keeps a bounded number of statements, dropping the least recently used', () => {
    const small = new SqlRewriter(registry, { cacheSize: 2 });
    const a = small.rewrite('select email from customers where id = 1');
    const b = small.rewrite('select email from customers where id = 2');
    expect(small.rewrite('select email from customers where id = 1')).toBe(a); // a is now the most recent
    small.rewrite('select email from customers where id = 3'); // drops b
    expect(small.rewrite('select email from customers where id = 1')).toBe(a);
    expect(small.rewrite('select email from customers where id = 2')).not.toBe(b);
  });

  it('does not cache refusals as results', () => {
    const sql = 'select id from customers where email like $1';
    expect(thrown(() => rewriter.rewrite(sql)).code).toBe(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT);
    expect(thrown(() => rewriter.rewrite(sql)).code).toBe(ErrorCodes.UNSUPPORTED_ON_CIPHERTEXT);
  });
});
