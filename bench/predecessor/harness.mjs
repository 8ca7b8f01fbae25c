#!/usr/bin/env node
// Database-side helpers of run.sh (the predecessor's CLI does none of this itself).
//
//   node harness.mjs setup MIGRATIONS_DIR        CREATE EXTENSION for every extension the folder
//                                                names (in public), CREATE SCHEMA IF NOT EXISTS
//                                                for every tenant
//   node harness.mjs verify EXPECTED_JSON        every tenant schema has the corpus' shape and
//                                                the tracking table one row per migration
//   node harness.mjs drop                        DROP SCHEMA ... CASCADE for every schema with the prefix
//   node harness.mjs summary migrate|status|diff FILE   one line from the CLI's --json output;
//                                                exits 1 when it reports a failure
//
// The tenants and names come from the same environment as tenant.config.js.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import config from './tenant.config.js';

const schemaPrefix = process.env.MT_PRED_SCHEMA_PREFIX || 'pred_';
const trackingTable = config.migrations.migrationsTable;
const quote = (name) => `"${name.replace(/"/g, '""')}"`;
const schemaOf = config.isolation.schemaNameTemplate;

async function withClient(fn) {
  const client = new pg.Client({ connectionString: config.connection.url });
  await client.connect();
  try {
    await client.query('SET client_min_messages = warning');
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function setup(folder) {
  const extensions = new Set();
  for (const file of readdirSync(folder).filter((f) => f.endsWith('.sql'))) {
    const sql = readFileSync(join(folder, file), 'utf8');
    for (const m of sql.matchAll(/create\s+extension\s+(?:if\s+not\s+exists\s+)?("?)([A-Za-z0-9_-]+)\1/gi)) {
      extensions.add(m[2]);
    }
  }
  const tenants = await config.migrations.tenantDiscovery();
  await withClient(async (client) => {
    for (const ext of extensions) await client.query(`CREATE EXTENSION IF NOT EXISTS ${quote(ext)} SCHEMA public`);
    for (let i = 0; i < tenants.length; i += 500) {
      const batch = tenants.slice(i, i + 500).map((t) => `CREATE SCHEMA IF NOT EXISTS ${quote(schemaOf(t))};`);
      await client.query(batch.join('\n'));
    }
  });
  console.log(`setup: extensions in public: ${[...extensions].join(', ') || '(none)'}; ${tenants.length} schemas ${schemaOf(tenants[0] ?? '?')}..`);
}

async function drop() {
  await withClient(async (client) => {
    const { rows } = await client.query('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)', [schemaPrefix]);
    for (let i = 0; i < rows.length; i += 100) {
      await client.query(rows.slice(i, i + 100).map((r) => `DROP SCHEMA ${quote(r.nspname)} CASCADE;`).join('\n'));
    }
    console.log(`drop: ${rows.length} schemas`);
  });
}

// The same shape query as bench/src/bin/corpus.rs (`shapes`), the tracking table left out.
const SHAPES = `
  WITH s AS (
      SELECT n.oid FROM pg_namespace n JOIN unnest($1::text[]) x(name) ON x.name = n.nspname
  ), tracking AS (
      SELECT c.oid FROM pg_class c JOIN s ON s.oid = c.relnamespace WHERE c.relname = $2
  ), rel AS (
      SELECT c.oid, c.relnamespace AS ns, c.relkind, c.relrowsecurity FROM pg_class c JOIN s ON s.oid = c.relnamespace
       WHERE c.oid NOT IN (SELECT oid FROM tracking)
         AND c.oid NOT IN (SELECT d.objid FROM pg_depend d JOIN tracking t ON t.oid = d.refobjid
                            WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass)
  ), tab AS (
      SELECT * FROM rel WHERE relkind IN ('r', 'p')
  ), metric (ns, name, n) AS (
      SELECT ns, 'tables', count(*) FROM tab GROUP BY 1
      UNION ALL SELECT tab.ns, 'columns', count(*) FROM tab
         JOIN pg_attribute a ON a.attrelid = tab.oid AND a.attnum > 0 AND NOT a.attisdropped GROUP BY 1
      UNION ALL SELECT ty.typnamespace, 'enums', count(*) FROM pg_type ty JOIN s ON s.oid = ty.typnamespace
       WHERE ty.typtype = 'e' GROUP BY 1
      UNION ALL SELECT ty.typnamespace, 'enum_labels', count(*) FROM pg_type ty JOIN s ON s.oid = ty.typnamespace
         JOIN pg_enum e ON e.enumtypid = ty.oid GROUP BY 1
      UNION ALL SELECT tab.ns, CASE k.contype WHEN 'f' THEN 'foreign_keys' WHEN 'u' THEN 'unique_constraints'
                                              ELSE 'check_constraints' END, count(*)
         FROM tab JOIN pg_constraint k ON k.conrelid = tab.oid AND k.contype IN ('f', 'u', 'c') GROUP BY 1, 2
      UNION ALL SELECT tab.ns, 'indexes', count(*) FROM tab JOIN pg_index i ON i.indrelid = tab.oid GROUP BY 1
      UNION ALL SELECT ns, 'sequences', count(*) FROM rel WHERE relkind = 'S' GROUP BY 1
      UNION ALL SELECT ns, 'rls_tables', count(*) FROM tab WHERE relrowsecurity GROUP BY 1
      UNION ALL SELECT tab.ns, 'policies', count(*) FROM tab JOIN pg_policy p ON p.polrelid = tab.oid GROUP BY 1
      UNION ALL SELECT ns, 'views', count(*) FROM rel WHERE relkind IN ('v', 'm') GROUP BY 1
      UNION ALL SELECT p.pronamespace, 'functions', count(*) FROM pg_proc p JOIN s ON s.oid = p.pronamespace GROUP BY 1
      UNION ALL SELECT tab.ns, 'triggers', count(*) FROM tab
         JOIN pg_trigger tg ON tg.tgrelid = tab.oid AND NOT tg.tgisinternal GROUP BY 1
  ), per_schema AS (
      SELECT ns, string_agg(name || '=' || n, ' ' ORDER BY name) AS shape FROM metric GROUP BY ns
  )
  SELECT coalesce(p.shape, '') AS shape, count(*)::int AS n FROM s LEFT JOIN per_schema p ON p.ns = s.oid
   GROUP BY 1 ORDER BY 2 DESC`;

async function verify(expectedFile) {
  const expected = JSON.parse(readFileSync(expectedFile, 'utf8'));
  const want = Object.keys(expected)
    .filter((k) => !['migrations', 'rows'].includes(k) && expected[k] > 0)
    .sort()
    .map((k) => `${k}=${expected[k]}`)
    .join(' ');
  const tenants = await config.migrations.tenantDiscovery();
  const schemas = tenants.map(schemaOf);
  const problems = [];
  await withClient(async (client) => {
    const found = (await client.query(SHAPES, [schemas, trackingTable])).rows;
    if (!(found.length === 1 && found[0].shape === want && found[0].n === schemas.length)) {
      problems.push(`shapes: want ${schemas.length} x [${want}], found ${JSON.stringify(found)}`);
    }
    const counts = [];
    for (let i = 0; i < schemas.length; i += 500) {
      const sql = schemas.slice(i, i + 500)
        .map((s) => `SELECT ${pg.escapeLiteral(s)} AS s, count(*)::int AS n FROM ${quote(s)}.${quote(trackingTable)}`)
        .join(' UNION ALL ');
      counts.push(...(await client.query(sql)).rows);
    }
    const bad = counts.filter((r) => r.n !== expected.migrations);
    if (bad.length) problems.push(`tracking rows != ${expected.migrations} in ${bad.length} schemas, e.g. ${JSON.stringify(bad[0])}`);
    if (schemas.length && expected.rows !== undefined) {
      const { rows } = await client.query(
        `SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname <> $2`, [schemas[0], trackingTable]);
      let total = 0;
      for (const { t } of rows) total += Number((await client.query(`SELECT count(*) FROM ${t}`)).rows[0].count);
      if (total !== expected.rows) problems.push(`rows in ${schemas[0]}: want ${expected.rows}, found ${total}`);
    }
    const { rows: pub } = await client.query(
      `SELECT count(*) FILTER (WHERE relkind IN ('r','p'))::int AS tables,
              (SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace AND typtype = 'e')::int AS enums
         FROM pg_class WHERE relnamespace = 'public'::regnamespace`);
    console.log(`verify: public holds ${pub[0].tables} tables, ${pub[0].enums} enums`);
  });
  if (problems.length) {
    for (const p of problems) console.error(`verify: FAILED ${p}`);
    process.exit(1);
  }
  console.log(`verify: ok, ${schemas.length} schemas x [${want}], ${expected.migrations} tracking rows each`);
}

function summary(kind, file) {
  const text = readFileSync(file, 'utf8');
  let out;
  try {
    out = JSON.parse(text);
  } catch {
    console.error(`summary: no JSON in ${file}:\n${text.slice(0, 2000)}`);
    process.exit(1);
  }
  if (out.error) {
    console.error(`summary: ${kind} failed: ${out.error}`);
    process.exit(1);
  }
  if (kind === 'migrate') {
    const s = out.summary;
    const applied = out.results.reduce((a, r) => a + (r.appliedMigrations?.length ?? 0), 0);
    console.log(`migrate: tenants=${s.total} succeeded=${s.succeeded} failed=${s.failed} skipped=${s.skipped} applied=${applied} cli_ms=${s.durationMs}`);
    const failed = out.results.filter((r) => !r.success);
    for (const r of failed.slice(0, 5)) console.error(`  failed ${r.tenantId} (${r.schema}): ${r.error}`);
    if (s.failed > 0 || s.total === 0) process.exit(1);
  } else if (kind === 'status') {
    const s = out.summary;
    const pending = out.tenants.reduce((a, t) => a + t.pending, 0);
    console.log(`status: tenants=${s.total} up_to_date=${s.upToDate} behind=${s.behind} error=${s.error} pending=${pending}`);
    const bad = out.tenants.filter((t) => t.status === 'error');
    for (const t of bad.slice(0, 5)) console.error(`  error ${t.id} (${t.schema}): ${t.error}`);
    if (s.error > 0 || s.total === 0) process.exit(1);
  } else if (kind === 'diff') {
    // On PostgreSQL < 18 information_schema lists every NOT NULL as a CHECK constraint named
    // <namespace oid>_<table oid>_<attnum>_not_null, and the CLI compares constraints by name: every
    // tenant but the reference then shows "drift" made of these alone. Counted apart as spurious.
    const spurious = (issue) => /^\d+_\d+_\d+_not_null$/.test(issue.constraint ?? '');
    const real = (t) => t.tables.some((x) => x.status !== 'drifted' || x.columns.length || x.indexes.length ||
      x.constraints.some((c) => !spurious(c)));
    const s = out.summary;
    const withReal = out.tenants.filter((t) => t.hasDrift && real(t));
    console.log(`diff: reference=${out.referenceTenant} tenants=${s.total} no_drift=${s.noDrift} with_drift=${s.withDrift}` +
      ` (only spurious NOT NULL names: ${s.withDrift - withReal.length}, real: ${withReal.length}) error=${s.error} cli_ms=${s.durationMs}`);
    for (const t of [...withReal, ...out.tenants.filter((t) => t.error)].slice(0, 5)) {
      console.error(`  ${t.id} (${t.schema}): ${t.error ?? `${t.issueCount} issues in ${t.tables.map((x) => x.name).join(', ')}`}`);
    }
    // MT_PRED_DIFF_EXPECT: how many tenants should show real drift (default 0).
    const expect = Number(process.env.MT_PRED_DIFF_EXPECT || '0');
    if (s.error > 0 || s.total === 0 || withReal.length !== expect) process.exit(1);
  }
}

const [cmd, arg, arg2] = process.argv.slice(2);
try {
  if (cmd === 'setup') await setup(arg);
  else if (cmd === 'verify') await verify(arg);
  else if (cmd === 'drop') await drop();
  else if (cmd === 'summary') summary(arg, arg2);
  else {
    console.error('usage: harness.mjs setup DIR | verify EXPECTED_JSON | drop | summary KIND FILE');
    process.exit(2);
  }
} catch (e) {
  console.error(`harness ${cmd}: ${e.message}`);
  process.exit(1);
}
