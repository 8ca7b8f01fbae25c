-- mt.schema_name: the template, the id rule, the quote_ident guarantee, hostile ids.
\i pg_test/helpers.sql

SELECT id, mt.schema_name(id), mt.schema_name(id) = quote_ident(mt.schema_name(id)) AS needs_no_quoting
  FROM (VALUES ('acme'), ('42'), ('acme-eu'), ('acme_eu'),
               ('0b0e4a3c-9d4f-4d1a-8f5e-6a1b2c3d4e5f'), (repeat('a', 56))) AS v(id);

-- Every hostile id is refused with SQLSTATE 22023 and a message naming it and the rule.
SELECT label, pg_temp.attempt(format('SELECT mt.schema_name(%L)', id)) AS result
  FROM (VALUES ('injection', 'x; drop table t'),
               ('single quote', 'o''brien'),
               ('double quote', 'a"b'),
               ('backslash', 'a\b'),
               ('unicode', 'café'),
               ('emoji', 'a🙂'),
               ('uppercase', 'Acme'),
               ('space', 'a b'),
               ('dot', 'a.b'),
               ('newline', E'a\nb'),
               ('empty', ''),
               ('leading dash', '-a'),
               ('leading underscore', '_a'),
               ('64 bytes', repeat('a', 64)),
               ('57 bytes (schema too long)', repeat('a', 57))) AS v(label, id);
SELECT pg_temp.attempt('SELECT mt.schema_name(NULL)') AS null_id;

-- Reserved names and keywords, reachable with a bare template.
SELECT mt.set_config('schema_template', '{id}');
SELECT id, pg_temp.attempt(format('SELECT mt.schema_name(%L)', id)) AS result
  FROM (VALUES ('public'), ('information_schema'), ('pg_catalog'), ('pg_temp_1'),
               ('mt'), ('mt_template'), ('select'), ('user'), ('123'), ('acme')) AS v(id);

-- The shared schema is reserved too, whatever it is called.
SELECT mt.set_config('shared_schema', 'shared');
SELECT pg_temp.attempt('SELECT mt.schema_name(''shared'')') AS shared;
SELECT mt.reset_config('shared_schema');

-- A prefix and a suffix.
SELECT mt.set_config('schema_template', 'org_{id}_v1');
SELECT mt.schema_name('acme'), mt.tenant_id_of('org_acme_v1'), mt.tenant_id_of('tenant_acme') IS NULL AS foreign_name;
SELECT mt.reset_config('schema_template');

-- tenant_id_of reads a name back through the template; '-' comes back as '_'.
SELECT s, mt.tenant_id_of(s)
  FROM (VALUES ('tenant_acme'), ('tenant_acme_eu'), ('tenant_'), ('tenant_Acme'), ('public')) AS v(s);
