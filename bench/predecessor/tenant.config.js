// Config for the drizzle-multitenant 1.3.5 CLI (see run.sh).
import { readFileSync } from 'node:fs';
import pg from 'pg';

const env = (name, fallback) => {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
};

const url = env('MT_PRED_DATABASE_URL', env('DATABASE_URL', undefined));
if (!url) throw new Error('set MT_PRED_DATABASE_URL (or DATABASE_URL)');
const schemaPrefix = env('MT_PRED_SCHEMA_PREFIX', 'pred_');
const idPrefix = env('MT_PRED_TENANT_ID_PREFIX', 't');

// Tenant discovery, first that is set:
//   MT_PRED_TENANTS       comma-separated tenant ids
//   MT_PRED_TENANTS_FILE  a file, one tenant id a line
//   MT_PRED_TENANT_COUNT  N: ids <MT_PRED_TENANT_ID_PREFIX>1 .. <MT_PRED_TENANT_ID_PREFIX>N
//   otherwise             the database: every schema named <MT_PRED_SCHEMA_PREFIX><id>
async function discoverTenants() {
  const list = env('MT_PRED_TENANTS', undefined);
  if (list) return list.split(',').map((s) => s.trim()).filter(Boolean);
  const file = env('MT_PRED_TENANTS_FILE', undefined);
  if (file) return readFileSync(file, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean);
  const count = env('MT_PRED_TENANT_COUNT', undefined);
  if (count) return Array.from({ length: Number(count) }, (_, i) => `${idPrefix}${i + 1}`);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(
      `SELECT substr(nspname, length($1) + 1) AS id FROM pg_namespace
        WHERE starts_with(nspname, $1) ORDER BY length(nspname), nspname`,
      [schemaPrefix],
    );
    return rows.map((r) => r.id);
  } finally {
    await client.end();
  }
}

export default {
  connection: {
    url,
    // The CLI opens one pg.Pool per tenant (search_path "<schema>",public) and migrates
    // --concurrency tenants at a time, one connection each: 10 tenants at once = 10 connections.
    poolConfig: { max: Number(env('MT_PRED_POOL_MAX', '1')) },
  },
  isolation: {
    strategy: 'schema',
    schemaNameTemplate: (id) => `${schemaPrefix}${id}`,
  },
  // Required by the config loader; the migration commands do not use drizzle table objects.
  schemas: { tenant: {} },
  migrations: {
    tenantFolder: env('MT_PRED_MIGRATIONS', '../corpus/saas'),
    migrationsTable: env('MT_PRED_MIGRATIONS_TABLE', '__drizzle_migrations'),
    tenantDiscovery: discoverTenants,
  },
};
