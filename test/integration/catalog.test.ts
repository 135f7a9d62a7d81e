// The catalog lint (src/catalog/lint.ts): the released schema follows every rule, the lint
// is fast, and each rule catches a deliberately bad object (and lets a good one through).

import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lintCatalog, type CatalogProblem, type ExpectedGrants } from '../../src/catalog/lint.js';
import { createDatabase, type TestDatabase } from '../support/db.js';

/** docs/privileges.md: `## pgseal_app` and `## pgseal_admin`, each followed by lines "- `<privilege>`". */
function readExpectedGrants(): ExpectedGrants | undefined {
  const file = new URL('../../docs/privileges.md', import.meta.url);
  if (!existsSync(file)) throw new Error('docs/privileges.md is missing: it lists what pgseal_app and pgseal_admin are granted');
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of readFileSync(file, 'utf8').split(/\r?\n/)) {
    const heading = /^##\s+(\S+)\s*$/.exec(line);
    if (heading) {
      current = [];
      sections.set(heading[1]!, current);
      continue;
    }
    const item = /^\s*-\s+`([^`]+)`\s*$/.exec(line);
    if (item && current) current.push(item[1]!);
  }
  const app = sections.get('pgseal_app');
  const admin = sections.get('pgseal_admin');
  if (!app || !admin) throw new Error('docs/privileges.md needs a "## pgseal_app" and a "## pgseal_admin" section');
  return { app, admin };
}

let released: TestDatabase | undefined;
let scratch: TestDatabase | undefined;
beforeAll(async () => {
  [released, scratch] = await Promise.all([createDatabase({ migrated: true }), createDatabase({ migrated: true })]);
});
afterAll(async () => {
  await Promise.all([released?.drop(), scratch?.drop()]);
});

describe('the catalog lint', () => {
  it('the released schema follows every rule', async () => {
    expect(await lintCatalog(released!.sql, readExpectedGrants())).toEqual([]);
  });

  it('runs in well under 2 seconds', async () => {
    const started = performance.now();
    await lintCatalog(released!.sql, { app: [], admin: [] });
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('fails on a deliberately bad function', () => {
  const key = (p: CatalogProblem): string => `${p.rule}\n${p.object}\n${p.detail}`;
  let baseline: Set<string>;
  let cryptoSchema: string;

  beforeAll(async () => {
    const sql = scratch!.sql;
    // PUBLIC may hold EXECUTE on seal today: take it away so that granting it is news
    await sql.unsafe('REVOKE EXECUTE ON FUNCTION pgseal.seal(bytea, text, bytea, bytea) FROM PUBLIC');
    await sql.unsafe(`DO $$ BEGIN CREATE ROLE pgseal_app NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`);
    const [row] = await sql<{ nspname: string }[]>`
      select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'pgcrypto'`;
    cryptoSchema = row!.nspname;
    baseline = new Set((await lintCatalog(sql)).map(key));
  });

  /** The problems the objects of `setup` add to the scratch database's own, before `teardown` removes them. */
  async function added(setup: string, teardown: string): Promise<CatalogProblem[]> {
    const sql = scratch!.sql;
    await sql.unsafe(setup);
    try {
      return (await lintCatalog(sql)).filter((p) => !baseline.has(key(p)));
    } finally {
      await sql.unsafe(teardown);
    }
  }

  const revoke = (fn: string): string => `REVOKE ALL ON FUNCTION ${fn} FROM PUBLIC;`;

  it('search_path: an unpinned PL/pgSQL function calling unqualified length()', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_length(v text) RETURNS integer LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
       BEGIN
         RETURN length(v);
       END $$; ${revoke('pgseal.lint_length(text)')}`,
      'DROP FUNCTION pgseal.lint_length(text)',
    );
    expect(problems).toEqual([{ rule: 'search_path', object: 'pgseal.lint_length(text)', detail: expect.stringMatching(/function length\(\)/) }]);
  });

  it('search_path: an unpinned PL/pgSQL function with an unqualified = operator', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_equals(v text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
       BEGIN
         RETURN v = 'x';
       END $$; ${revoke('pgseal.lint_equals(text)')}`,
      'DROP FUNCTION pgseal.lint_equals(text)',
    );
    expect(problems).toEqual([{ rule: 'search_path', object: 'pgseal.lint_equals(text)', detail: expect.stringMatching(/operator =$/) }]);
  });

  it('search_path: an unpinned PL/pgSQL function declaring a variable of type text', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_text_var(v bytea) RETURNS text LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
       DECLARE
         t text;
       BEGIN
         t := pg_catalog.encode(v, 'hex');
         RETURN t;
       END $$; ${revoke('pgseal.lint_text_var(bytea)')}`,
      'DROP FUNCTION pgseal.lint_text_var(bytea)',
    );
    expect(problems).toEqual([{ rule: 'search_path', object: 'pgseal.lint_text_var(bytea)', detail: expect.stringMatching(/type text$/) }]);
  });

  it('search_path: an unpinned PL/pgSQL function with a dynamic EXECUTE', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_dynamic() RETURNS integer LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $$
       BEGIN
         EXECUTE 'SELECT 1';
         RETURN 1;
       END $$; ${revoke('pgseal.lint_dynamic()')}`,
      'DROP FUNCTION pgseal.lint_dynamic()',
    );
    expect(problems).toEqual([{ rule: 'search_path', object: 'pgseal.lint_dynamic()', detail: expect.stringMatching(/dynamic EXECUTE/) }]);
  });

  it('search_path: an unpinned LANGUAGE sql function with an old-style string body', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_sql_string(v text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT v $$;
       ${revoke('pgseal.lint_sql_string(text)')}`,
      'DROP FUNCTION pgseal.lint_sql_string(text)',
    );
    expect(problems).toEqual([{ rule: 'search_path', object: 'pgseal.lint_sql_string(text)', detail: expect.stringMatching(/LANGUAGE sql/) }]);
  });

  it('search_path: lets through an unpinned PL/pgSQL function that qualifies every name', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_qualified(v bytea) RETURNS integer LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
       DECLARE
         n integer := pg_catalog.octet_length(v);
         b pg_catalog.bytea := COALESCE(v, '\\x00'::pg_catalog.bytea);
       BEGIN
         IF n OPERATOR(pg_catalog.>) 3 AND b IS NOT NULL THEN
           RETURN GREATEST(n, 0) OPERATOR(pg_catalog.+) 1;
         END IF;
         n := n OPERATOR(pg_catalog.-) 1;
         RETURN CASE WHEN n OPERATOR(pg_catalog.=) 0 THEN 0 ELSE 1 END;
       END $$; ${revoke('pgseal.lint_qualified(bytea)')}`,
      'DROP FUNCTION pgseal.lint_qualified(bytea)',
    );
    expect(problems).toEqual([]);
  });

  it('immutable_reads_table: an IMMUTABLE SQL-standard function counting pgseal.keys', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_count_keys() RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE
       RETURN (SELECT count(*) FROM pgseal.keys); ${revoke('pgseal.lint_count_keys()')}`,
      'DROP FUNCTION pgseal.lint_count_keys()',
    );
    expect(problems).toEqual([{ rule: 'immutable_reads_table', object: 'pgseal.lint_count_keys()', detail: 'lint_count_keys reads pgseal.keys' }]);
  });

  it('immutable_reads_table: an IMMUTABLE PL/pgSQL function calling a STABLE one that reads a table', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_stable_reader() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE
       RETURN (SELECT count(*) FROM pgseal.keys);
       CREATE FUNCTION pgseal.lint_immutable_caller() RETURNS bigint LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
       SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         RETURN pgseal.lint_stable_reader();
       END $$;
       ${revoke('pgseal.lint_stable_reader()')} ${revoke('pgseal.lint_immutable_caller()')}`,
      'DROP FUNCTION pgseal.lint_immutable_caller(); DROP FUNCTION pgseal.lint_stable_reader()',
    );
    expect(problems).toEqual([
      { rule: 'immutable_reads_table', object: 'pgseal.lint_immutable_caller()', detail: 'lint_immutable_caller -> lint_stable_reader reads pgseal.keys' },
    ]);
  });

  it('security_definer: a SECURITY DEFINER function without SET search_path', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_definer() RETURNS integer LANGUAGE plpgsql SECURITY DEFINER AS $$
       BEGIN
         RETURN 1;
       END $$; ${revoke('pgseal.lint_definer()')}`,
      'DROP FUNCTION pgseal.lint_definer()',
    );
    expect(problems).toEqual([{ rule: 'security_definer', object: 'pgseal.lint_definer()', detail: expect.stringMatching(/without SET search_path/) }]);
  });

  it('security_definer: a pinned SECURITY DEFINER function calling current_setting directly', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_definer_setting() RETURNS text LANGUAGE plpgsql STABLE SECURITY DEFINER
       SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         RETURN current_setting('pgseal.lint', true);
       END $$; ${revoke('pgseal.lint_definer_setting()')}`,
      'DROP FUNCTION pgseal.lint_definer_setting()',
    );
    expect(problems).toEqual([{ rule: 'security_definer', object: 'pgseal.lint_definer_setting()', detail: expect.stringMatching(/current_setting/) }]);
  });

  it('security_definer: lets through one that reads the setting through a pgseal._setting_ helper', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal._setting_lint() RETURNS text LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         RETURN current_setting('pgseal.lint', true);
       END $$;
       CREATE FUNCTION pgseal.lint_definer_helper() RETURNS text LANGUAGE plpgsql STABLE SECURITY DEFINER
       SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         RETURN pgseal._setting_lint();
       END $$;
       ${revoke('pgseal._setting_lint()')} ${revoke('pgseal.lint_definer_helper()')}`,
      'DROP FUNCTION pgseal.lint_definer_helper(); DROP FUNCTION pgseal._setting_lint()',
    );
    expect(problems).toEqual([]);
  });

  it('public_privilege: EXECUTE on pgseal.seal granted to PUBLIC', async () => {
    const problems = await added(
      'GRANT EXECUTE ON FUNCTION pgseal.seal(bytea, text, bytea, bytea) TO PUBLIC',
      'REVOKE EXECUTE ON FUNCTION pgseal.seal(bytea, text, bytea, bytea) FROM PUBLIC',
    );
    expect(problems).toEqual([
      { rule: 'public_privilege', object: 'pgseal.seal(bytea, text, bytea, bytea)', detail: expect.stringMatching(/PUBLIC holds EXECUTE/) },
    ]);
  });

  it('public_privilege: a pgseal function left with the default ACL', async () => {
    const sql = scratch!.sql;
    const problems = await added(
      'CREATE FUNCTION pgseal.lint_default_acl() RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 1',
      'DROP FUNCTION pgseal.lint_default_acl()',
    );
    expect(problems).toEqual([{ rule: 'public_privilege', object: 'pgseal.lint_default_acl()', detail: expect.stringMatching(/PUBLIC holds EXECUTE/) }]);
    // the case is the NULL ACL (default privileges), not an explicit grant
    await sql.unsafe('CREATE FUNCTION pgseal.lint_default_acl() RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN 1');
    try {
      const [row] = await sql<{ acl: string | null }[]>`select proacl::text as acl from pg_proc where oid = 'pgseal.lint_default_acl()'::regprocedure`;
      expect(row!.acl).toBeNull();
    } finally {
      await sql.unsafe('DROP FUNCTION pgseal.lint_default_acl()');
    }
  });

  it('role_grants: an extra grant to pgseal_app, and a missing one', async () => {
    const sql = scratch!.sql;
    const expected = readExpectedGrants();
    const appProblems = async (): Promise<string[]> =>
      (await lintCatalog(sql, expected))
        .filter((p) => p.rule === 'role_grants' && p.object === 'pgseal_app')
        .map((p) => p.detail)
        .sort();
    expect(await appProblems()).toEqual([]);
    await sql.unsafe(`
      REVOKE EXECUTE ON FUNCTION pgseal.decrypt_text(bytea, text) FROM pgseal_app;
      GRANT SELECT ON TABLE pgseal.keys TO pgseal_app;
      GRANT SELECT (scope) ON TABLE pgseal.keys TO pgseal_app`);
    try {
      expect(await appProblems()).toEqual(['extra: SELECT (scope) TABLE pgseal.keys', 'extra: SELECT TABLE pgseal.keys', 'missing: EXECUTE FUNCTION pgseal.decrypt_text(bytea, text)']);
    } finally {
      // grant_api gives back exactly the set
      await sql.unsafe(`REVOKE SELECT (scope) ON TABLE pgseal.keys FROM pgseal_app; SELECT pgseal.grant_api('pgseal_app', 'app')`);
    }
    expect(await appProblems()).toEqual([]);
  });

  it('parallel_volatility: a PARALLEL SAFE PL/pgSQL function calling set_config', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_parallel_set() RETURNS text LANGUAGE plpgsql VOLATILE PARALLEL SAFE
       SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         RETURN set_config('pgseal.lint', 'x', true);
       END $$; ${revoke('pgseal.lint_parallel_set()')}`,
      'DROP FUNCTION pgseal.lint_parallel_set()',
    );
    expect(problems).toEqual([{ rule: 'parallel_volatility', object: 'pgseal.lint_parallel_set()', detail: expect.stringMatching(/set_config.*PARALLEL SAFE/) }]);
  });

  it('parallel_volatility: a STABLE PL/pgSQL function that deletes rows', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_stable_delete() RETURNS integer LANGUAGE plpgsql STABLE PARALLEL UNSAFE
       SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         DELETE FROM pgseal.columns WHERE false;
         RETURN 1;
       END $$; ${revoke('pgseal.lint_stable_delete()')}`,
      'DROP FUNCTION pgseal.lint_stable_delete()',
    );
    expect(problems).toEqual([{ rule: 'parallel_volatility', object: 'pgseal.lint_stable_delete()', detail: expect.stringMatching(/DELETE.*STABLE/) }]);
  });

  it('parallel_volatility: a PARALLEL SAFE PL/pgSQL function with an EXCEPTION block', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_subtransaction() RETURNS integer LANGUAGE plpgsql STABLE PARALLEL SAFE
       SET search_path = pg_catalog, pg_temp AS $$
       BEGIN
         BEGIN
           RETURN 1;
         EXCEPTION WHEN others THEN
           RETURN 0;
         END;
       END $$; ${revoke('pgseal.lint_subtransaction()')}`,
      'DROP FUNCTION pgseal.lint_subtransaction()',
    );
    expect(problems).toEqual([{ rule: 'parallel_volatility', object: 'pgseal.lint_subtransaction()', detail: expect.stringMatching(/EXCEPTION block/) }]);
  });

  it('parallel_volatility: a STABLE SQL-standard function calling a VOLATILE pg_catalog function', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_stable_random() RETURNS double precision LANGUAGE sql STABLE PARALLEL RESTRICTED
       RETURN random(); ${revoke('pgseal.lint_stable_random()')}`,
      'DROP FUNCTION pgseal.lint_stable_random()',
    );
    expect(problems).toEqual([{ rule: 'parallel_volatility', object: 'pgseal.lint_stable_random()', detail: expect.stringMatching(/STABLE but calls pg_catalog\.random\(\), VOLATILE/) }]);
  });

  it('parallel_volatility: a STABLE SQL-standard function calling a VOLATILE pgseal function', async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_volatile() RETURNS integer LANGUAGE sql VOLATILE PARALLEL SAFE RETURN 1;
       CREATE FUNCTION pgseal.lint_stable_calls_volatile() RETURNS integer LANGUAGE sql STABLE PARALLEL SAFE
       RETURN pgseal.lint_volatile();
       ${revoke('pgseal.lint_volatile()')} ${revoke('pgseal.lint_stable_calls_volatile()')}`,
      'DROP FUNCTION pgseal.lint_stable_calls_volatile(); DROP FUNCTION pgseal.lint_volatile()',
    );
    expect(problems).toEqual([
      { rule: 'parallel_volatility', object: 'pgseal.lint_stable_calls_volatile()', detail: expect.stringMatching(/STABLE but calls pgseal\.lint_volatile\(\), VOLATILE/) },
    ]);
  });

  it('sql_body_binding: an SQL-standard body calling a function created in schema public', async () => {
    const problems = await added(
      `CREATE FUNCTION public.lint_shadow(x integer) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN x;
       CREATE FUNCTION pgseal.lint_binding() RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN public.lint_shadow(1);
       ${revoke('pgseal.lint_binding()')}`,
      'DROP FUNCTION pgseal.lint_binding(); DROP FUNCTION public.lint_shadow(integer)',
    );
    expect(problems).toEqual([{ rule: 'sql_body_binding', object: 'pgseal.lint_binding()', detail: expect.stringMatching(/function public\.lint_shadow\(integer\)/) }]);
  });

  it("sql_body_binding: lets through an SQL-standard body calling pgcrypto's own functions", async () => {
    const problems = await added(
      `CREATE FUNCTION pgseal.lint_pgcrypto() RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE
       RETURN "${cryptoSchema}".digest('x'::bytea, 'sha256'); ${revoke('pgseal.lint_pgcrypto()')}`,
      'DROP FUNCTION pgseal.lint_pgcrypto()',
    );
    expect(problems).toEqual([]);
  });

  it('every case above cleaned up after itself', async () => {
    expect((await lintCatalog(scratch!.sql)).map(key).sort()).toEqual([...baseline].sort());
  });
});
