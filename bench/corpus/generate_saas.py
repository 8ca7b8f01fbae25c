#!/usr/bin/env python3
"""Writes bench/corpus/saas: the realistic drizzle-kit corpus of the benchmarks.

The migration history of a made-up B2B SaaS application (workspaces, projects and tasks, a
small CRM and help desk, billing, documents, webhooks), written the way drizzle-kit writes
migrations, including the change of style across a drizzle-kit upgrade half-way through:

- enums created in `DO $$ BEGIN CREATE TYPE "public"."x" AS ENUM(...); EXCEPTION WHEN
  duplicate_object THEN null; END $$;`, `"public".` qualifiers on types and references,
  `--> statement-breakpoint` between statements, `meta/_journal.json`;
- up to migration 0011 (drizzle-kit 0.2x): `CREATE TABLE IF NOT EXISTS`, foreign keys wrapped
  in `DO $$ ... EXCEPTION WHEN duplicate_object ...`; from 0012 on (0.30): `CREATE TABLE`,
  plain `ALTER TABLE ... ADD CONSTRAINT ..._fk FOREIGN KEY ... ON DELETE ... ON UPDATE no
  action`, identity columns;
- `CREATE EXTENSION IF NOT EXISTS pg_trgm` in an early hand-written migration and GIN
  trigram indexes (`gin_trgm_ops`, unqualified: the extension lives in the shared schema,
  which is on every tenant's search_path); partial indexes; row level security with
  policies on `current_setting('app.user_id', true)`;
- the steps an application's tables go through: columns added, defaults set, columns made
  NOT NULL after a backfill (`UPDATE ... SET`), renamed, retyped, dropped; an enum value
  added; a table renamed and one dropped; a trigger function, triggers and a view in custom
  migrations; lookup rows inserted by migrations.

Besides the folder it writes bench/corpus/saas.expected.json: what one tenant schema holds
after every migration (tables, columns, enums, foreign keys, indexes, policies, ...), which
the benchmark checks every tenant against. Deterministic: run again to regenerate.
"""
import json
import os
import re
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "saas")
BREAK = "\n--> statement-breakpoint\n"
TS = "timestamp with time zone"


class Schema:
    """The schema the migrations build, tracked alongside the SQL they are written as."""

    def __init__(self):
        self.tables = {}  # name -> {"columns": [..], "fks": set, "indexes": set, "policies": set,
        #                           "uniques": set, "sequences": int, "rls": bool, "rows": int}
        self.enums = {}  # name -> [labels]
        self.views = set()
        self.functions = set()
        self.triggers = set()
        self.era = 1  # 1: drizzle-kit 0.2x style, 2: 0.30 style

    # --- writers -------------------------------------------------------------------------

    def enum(self, name, labels):
        assert name not in self.enums
        self.enums[name] = list(labels)
        values = ", ".join(f"'{v}'" for v in labels)
        return (f'DO $$ BEGIN\n CREATE TYPE "public"."{name}" AS ENUM({values});\n'
                f"EXCEPTION\n WHEN duplicate_object THEN null;\nEND $$;")

    def add_enum_value(self, name, value, before=None):
        labels = self.enums[name]
        labels.insert(labels.index(before) if before else len(labels), value)
        where = f" BEFORE '{before}'" if before else ""
        return f'ALTER TYPE "public"."{name}" ADD VALUE \'{value}\'{where};'

    def table(self, name, columns, uniques=(), pk=None):
        """columns: drizzle-kit column definitions; uniques: (constraint, [columns]);
        pk: composite primary key columns (else one column says PRIMARY KEY)."""
        assert name not in self.tables, name
        names = [column_name(c) for c in columns]
        sequences = sum(1 for c in columns if re.search(r'\b(serial|bigserial)\b|GENERATED ALWAYS AS IDENTITY', c))
        assert (pk is not None) != any("PRIMARY KEY" in c for c in columns), name
        body = list(columns)
        if pk:
            body.append(f'CONSTRAINT "{name}_{"_".join(pk)}_pk" PRIMARY KEY({",".join(q(c) for c in pk)})')
        for constraint, cols in uniques:
            body.append(f'CONSTRAINT "{constraint}" UNIQUE({",".join(q(c) for c in cols)})')
        self.tables[name] = {"columns": names, "fks": set(), "indexes": {f"{name}_pkey"},
                             "uniques": {u for u, _ in uniques}, "checks": set(), "policies": set(), "sequences": sequences,
                             "rls": False, "rows": 0}
        self.tables[name]["indexes"] |= {u for u, _ in uniques}
        exists = "IF NOT EXISTS " if self.era == 1 else ""
        return f'CREATE TABLE {exists}"{name}" (\n\t' + ",\n\t".join(body) + "\n);"

    def fk(self, table, column, target, on_delete="cascade", target_column="id"):
        name = f"{table}_{column}_{target}_{target_column}_fk"
        assert len(name) <= 63, name
        assert column in self.tables[table]["columns"] and target_column in self.tables[target]["columns"]
        self.tables[table]["fks"].add(name)
        statement = (f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" FOREIGN KEY ("{column}") '
                     f'REFERENCES "public"."{target}"("{target_column}") ON DELETE {on_delete} ON UPDATE no action;')
        if self.era == 1:
            return f"DO $$ BEGIN\n {statement}\nEXCEPTION\n WHEN duplicate_object THEN null;\nEND $$;"
        return statement

    def index(self, name, table, columns, method="btree", unique=False, where=None):
        """columns: already written (quoted, with an operator class where needed)."""
        assert len(name) <= 63 and name not in self.all_indexes(), name
        self.tables[table]["indexes"].add(name)
        exists = "IF NOT EXISTS " if self.era == 1 else ""
        kind = "UNIQUE INDEX" if unique else "INDEX"
        condition = f" WHERE {where}" if where else ""
        return f'CREATE {kind} {exists}"{name}" ON "{table}" USING {method} ({columns}){condition};'

    def trigram(self, table, column):
        return self.index(f"{table}_{column}_trgm_idx", table, f'"{column}" gin_trgm_ops', method="gin")

    def add_column(self, table, definition):
        self.tables[table]["columns"].append(column_name(definition))
        if re.search(r"\b(serial|bigserial)\b", definition):
            self.tables[table]["sequences"] += 1
        return f'ALTER TABLE "{table}" ADD COLUMN {definition};'

    def drop_column(self, table, column):
        self.tables[table]["columns"].remove(column)
        return f'ALTER TABLE "{table}" DROP COLUMN IF EXISTS "{column}";'

    def rename_column(self, table, old, new):
        columns = self.tables[table]["columns"]
        columns[columns.index(old)] = new
        return f'ALTER TABLE "{table}" RENAME COLUMN "{old}" TO "{new}";'

    def rename_table(self, old, new):
        self.tables[new] = self.tables.pop(old)
        return f'ALTER TABLE "{old}" RENAME TO "{new}";'

    def drop_table(self, name):
        # Nothing may reference it (a CASCADE would take other tables' foreign keys along).
        assert not any(fk.endswith(f"_{name}_id_fk") for t in self.tables.values() for fk in t["fks"]), name
        del self.tables[name]
        return f'DROP TABLE "{name}" CASCADE;'

    def set_default(self, table, column, default):
        assert column in self.tables[table]["columns"], (table, column)
        return f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET DEFAULT {default};'

    def set_not_null(self, table, column):
        assert column in self.tables[table]["columns"], (table, column)
        return f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET NOT NULL;'

    def set_type(self, table, column, new_type, using=None):
        assert column in self.tables[table]["columns"], (table, column)
        suffix = f" USING {using}" if using else ""
        return f'ALTER TABLE "{table}" ALTER COLUMN "{column}" SET DATA TYPE {new_type}{suffix};'

    def check(self, table, name, expression):
        self.tables[table]["checks"].add(name)
        return f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" CHECK ({expression});'

    def enable_rls(self, table):
        self.tables[table]["rls"] = True
        return f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY;'

    def policy(self, name, table, command, using=None, check=None):
        self.tables[table]["policies"].add(name)
        text = f'CREATE POLICY "{name}" ON "{table}" AS PERMISSIVE FOR {command} TO public'
        if using:
            text += f" USING ({using})"
        if check:
            text += f" WITH CHECK ({check})"
        return text + ";"

    def insert(self, table, columns, rows):
        self.tables[table]["rows"] += len(rows)
        values = ",\n\t".join("(" + ", ".join(row) + ")" for row in rows)
        return (f'INSERT INTO "{table}" ({", ".join(q(c) for c in columns)}) VALUES\n\t{values}\n'
                f"ON CONFLICT DO NOTHING;")

    # --- counts --------------------------------------------------------------------------

    def all_indexes(self):
        return {i for t in self.tables.values() for i in t["indexes"]}

    def expected(self):
        t = self.tables.values()
        return {
            "tables": len(self.tables),
            "columns": sum(len(x["columns"]) for x in t),
            "enums": len(self.enums),
            "enum_labels": sum(len(v) for v in self.enums.values()),
            "foreign_keys": sum(len(x["fks"]) for x in t),
            "indexes": sum(len(x["indexes"]) for x in t),
            "unique_constraints": sum(len(x["uniques"]) for x in t),
            "check_constraints": sum(len(x["checks"]) for x in t),
            "sequences": sum(x["sequences"] for x in t),
            "rls_tables": sum(1 for x in t if x["rls"]),
            "policies": sum(len(x["policies"]) for x in t),
            "views": len(self.views),
            "functions": len(self.functions),
            "triggers": len(self.triggers),
            "rows": sum(x["rows"] for x in t),
        }


def q(name):
    return f'"{name}"'


def column_name(definition):
    return re.match(r'"([^"]+)"', definition).group(1)


UUID_PK = '"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL'
CREATED = f'"created_at" {TS} DEFAULT now() NOT NULL'
UPDATED = f'"updated_at" {TS} DEFAULT now() NOT NULL'


def identity(table, bits=32):
    kind, top = ("integer", 2147483647) if bits == 32 else ("bigint", 9223372036854775807)
    return (f'"id" {kind} PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "{table}_id_seq" '
            f"INCREMENT BY 1 MINVALUE 1 MAXVALUE {top} START WITH 1 CACHE 1)")


def user_id():
    """The user of the request, as the application sets it (set_config('app.user_id', ..., true))."""
    return "nullif(current_setting('app.user_id', true), '')::uuid"


def member_of(org_column):
    return (f'{org_column} IN (SELECT "memberships"."organization_id" FROM "memberships" '
            f'WHERE "memberships"."user_id" = {user_id()})')


def migrations():
    s = Schema()
    m = []

    def add(name, *statements):
        m.append((name, list(statements)))

    # 0000-0011: drizzle-kit 0.2x ---------------------------------------------------------
    add("init_organizations_users",
        s.enum("member_role", ["owner", "admin", "member", "viewer"]),
        s.table("organizations", [UUID_PK, '"name" varchar(200) NOT NULL', '"slug" varchar(64) NOT NULL',
                                  '"billing_email" varchar(320)', CREATED],
                uniques=[("organizations_slug_unique", ["slug"])]),
        s.table("users", [UUID_PK, '"email" varchar(320) NOT NULL', '"name" varchar(120)',
                          '"password_hash" text', '"email_verified_at" ' + TS, '"legacy_plan" varchar(32)', CREATED],
                uniques=[("users_email_unique", ["email"])]),
        s.table("memberships", ['"organization_id" uuid NOT NULL', '"user_id" uuid NOT NULL',
                                '"role" "public"."member_role" DEFAULT \'member\' NOT NULL', CREATED],
                pk=["organization_id", "user_id"]),
        s.fk("memberships", "organization_id", "organizations"),
        s.fk("memberships", "user_id", "users"),
        s.index("memberships_user_idx", "memberships", '"user_id"'))

    add("sessions_api_keys",
        s.table("sessions", ['"id" text PRIMARY KEY NOT NULL', '"user_id" uuid NOT NULL',
                             f'"expires_at" {TS} NOT NULL', '"user_agent" text', CREATED]),
        s.table("api_keys", [UUID_PK, '"organization_id" uuid NOT NULL', '"created_by" uuid',
                             '"name" varchar(100) NOT NULL', '"prefix" varchar(12) NOT NULL',
                             '"hashed_key" text NOT NULL', f'"last_used_at" {TS}', f'"revoked_at" {TS}', CREATED],
                uniques=[("api_keys_prefix_unique", ["prefix"])]),
        s.fk("sessions", "user_id", "users"),
        s.fk("api_keys", "organization_id", "organizations"),
        s.fk("api_keys", "created_by", "users", "set null"),
        s.index("sessions_user_idx", "sessions", '"user_id"'),
        s.index("api_keys_active_idx", "api_keys", '"organization_id"', where='"api_keys"."revoked_at" IS NULL'))

    # A hand-written (drizzle-kit --custom) migration: the engine creates the extension once,
    # in the shared schema; the index finds gin_trgm_ops through the tenant's search_path.
    add("enable_pg_trgm",
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;",
        s.trigram("users", "email"),
        s.trigram("organizations", "name"))

    add("invitations",
        s.enum("invitation_status", ["pending", "accepted", "revoked", "expired"]),
        s.table("invitations", [UUID_PK, '"organization_id" uuid NOT NULL', '"invited_by" uuid',
                                '"email" varchar(320) NOT NULL', '"role" "public"."member_role" DEFAULT \'member\' NOT NULL',
                                '"status" "public"."invitation_status" DEFAULT \'pending\' NOT NULL',
                                '"token" text NOT NULL', f'"expires_at" {TS} NOT NULL', CREATED],
                uniques=[("invitations_token_unique", ["token"])]),
        s.fk("invitations", "organization_id", "organizations"),
        s.fk("invitations", "invited_by", "users", "set null"),
        s.index("invitations_pending_email_idx", "invitations", '"organization_id","email"', unique=True,
                where="\"invitations\".\"status\" = 'pending'"))

    add("plans_subscriptions",
        s.enum("plan_interval", ["month", "year"]),
        s.enum("subscription_status", ["trialing", "active", "past_due", "canceled", "paused"]),
        s.table("plans", ['"id" serial PRIMARY KEY NOT NULL', '"code" varchar(32) NOT NULL', '"name" varchar(100) NOT NULL',
                          '"interval" "public"."plan_interval" DEFAULT \'month\' NOT NULL',
                          '"price_cents" integer DEFAULT 0 NOT NULL', '"seats" integer'],
                uniques=[("plans_code_unique", ["code"])]),
        s.table("subscriptions", [UUID_PK, '"organization_id" uuid NOT NULL', '"plan_id" integer NOT NULL',
                                  '"status" "public"."subscription_status" DEFAULT \'trialing\' NOT NULL',
                                  f'"current_period_end" {TS}', '"external_id" varchar(64)', CREATED]),
        s.fk("subscriptions", "organization_id", "organizations"),
        s.fk("subscriptions", "plan_id", "plans", "restrict"),
        s.index("subscriptions_org_idx", "subscriptions", '"organization_id"'),
        s.insert("plans", ["code", "name", "interval", "price_cents", "seats"], [
            ["'free'", "'Free'", "'month'", "0", "3"],
            ["'team'", "'Team'", "'month'", "2900", "20"],
            ["'team_yearly'", "'Team (yearly)'", "'year'", "29000", "20"],
            ["'enterprise'", "'Enterprise'", "'year'", "120000", "NULL"],
        ]))

    add("projects",
        s.table("projects", [UUID_PK, '"organization_id" uuid NOT NULL', '"owner_id" uuid',
                             '"name" varchar(200) NOT NULL', '"description" text', '"color" varchar(7)',
                             '"archived" boolean DEFAULT false NOT NULL', CREATED]),
        s.fk("projects", "organization_id", "organizations"),
        s.fk("projects", "owner_id", "users", "set null"),
        s.index("projects_org_idx", "projects", '"organization_id"'))

    add("tasks",
        s.enum("task_status", ["backlog", "todo", "in_progress", "in_review", "done", "canceled"]),
        s.enum("task_priority", ["none", "low", "medium", "high", "urgent"]),
        s.table("tasks", [UUID_PK, '"project_id" uuid NOT NULL', '"assignee_id" uuid', '"reporter_id" uuid',
                          '"number" integer NOT NULL', '"title" varchar(200) NOT NULL', '"body" text',
                          '"status" "public"."task_status" DEFAULT \'backlog\' NOT NULL',
                          '"priority" "public"."task_priority" DEFAULT \'none\' NOT NULL',
                          '"estimate" integer', CREATED]),
        s.fk("tasks", "project_id", "projects"),
        s.fk("tasks", "assignee_id", "users", "set null"),
        s.fk("tasks", "reporter_id", "users", "set null"),
        s.index("tasks_project_number_idx", "tasks", '"project_id","number"', unique=True),
        s.index("tasks_assignee_open_idx", "tasks", '"assignee_id"',
                where="\"tasks\".\"status\" NOT IN ('done', 'canceled')"))

    add("labels",
        s.table("labels", [UUID_PK, '"organization_id" uuid NOT NULL', '"name" varchar(50) NOT NULL',
                           '"color" varchar(7) DEFAULT \'#8b8d98\' NOT NULL'],
                uniques=[("labels_organization_id_name_unique", ["organization_id", "name"])]),
        s.table("task_labels", ['"task_id" uuid NOT NULL', '"label_id" uuid NOT NULL'], pk=["task_id", "label_id"]),
        s.fk("labels", "organization_id", "organizations"),
        s.fk("task_labels", "task_id", "tasks"),
        s.fk("task_labels", "label_id", "labels"))

    add("comments",
        s.table("comments", [UUID_PK, '"task_id" uuid NOT NULL', '"author_id" uuid', '"body" text NOT NULL',
                             f'"edited_at" {TS}', CREATED]),
        s.fk("comments", "task_id", "tasks"),
        s.fk("comments", "author_id", "users", "set null"),
        s.index("comments_task_created_idx", "comments", '"task_id","created_at"'))

    add("rls_projects_tasks",
        s.enable_rls("projects"),
        s.enable_rls("tasks"),
        s.enable_rls("comments"),
        s.policy("projects_member_access", "projects", "ALL", using=member_of('"projects"."organization_id"'),
                 check=member_of('"projects"."organization_id"')),
        s.policy("tasks_member_access", "tasks", "ALL",
                 using='"tasks"."project_id" IN (SELECT "projects"."id" FROM "projects")'),
        s.policy("comments_member_read", "comments", "SELECT",
                 using='"comments"."task_id" IN (SELECT "tasks"."id" FROM "tasks")'),
        s.policy("comments_author_write", "comments", "INSERT", check=f'"comments"."author_id" = {user_id()}'))

    add("users_profile",
        s.add_column("users", '"avatar_url" text'),
        s.add_column("users", '"timezone" varchar(64)'),
        s.set_default("users", "timezone", "'UTC'"),
        "UPDATE \"users\" SET \"timezone\" = 'UTC' WHERE \"timezone\" IS NULL;",
        s.set_not_null("users", "timezone"),
        s.rename_column("users", "name", "full_name"),
        s.set_type("users", "full_name", "varchar(200)"))

    add("tasks_dates",
        s.add_column("tasks", f'"due_at" {TS}'),
        s.add_column("tasks", f'"started_at" {TS}'),
        s.set_type("tasks", "title", "varchar(500)"),
        s.set_default("tasks", "estimate", "0"),
        s.index("tasks_due_idx", "tasks", '"due_at"', where='"tasks"."due_at" IS NOT NULL'))

    # 0012-: drizzle-kit 0.30 ---------------------------------------------------------------
    s.era = 2
    add("attachments",
        s.table("attachments", [UUID_PK, '"task_id" uuid', '"comment_id" uuid', '"uploaded_by" uuid',
                                '"file_name" varchar(255) NOT NULL', '"content_type" varchar(127)',
                                '"size_bytes" bigint DEFAULT 0 NOT NULL', '"storage_key" text NOT NULL', CREATED],
                uniques=[("attachments_storage_key_unique", ["storage_key"])]),
        s.fk("attachments", "task_id", "tasks"),
        s.fk("attachments", "comment_id", "comments"),
        s.fk("attachments", "uploaded_by", "users", "set null"))

    add("invoices",
        s.enum("invoice_status", ["draft", "open", "paid", "void", "uncollectible"]),
        s.table("invoices", [UUID_PK, '"organization_id" uuid NOT NULL', '"subscription_id" uuid',
                             '"number" varchar(32) NOT NULL', '"status" "public"."invoice_status" DEFAULT \'draft\' NOT NULL',
                             '"currency" char(3) DEFAULT \'USD\' NOT NULL', '"total" numeric(12, 2) DEFAULT \'0\' NOT NULL',
                             f'"issued_at" {TS}', CREATED]),
        s.table("invoice_items", [identity("invoice_items"), '"invoice_id" uuid NOT NULL',
                                  '"description" text NOT NULL', '"quantity" integer DEFAULT 1 NOT NULL',
                                  '"unit_price" numeric(12, 2) NOT NULL']),
        s.fk("invoices", "organization_id", "organizations", "restrict"),
        s.fk("invoices", "subscription_id", "subscriptions", "set null"),
        s.fk("invoice_items", "invoice_id", "invoices"),
        s.index("invoices_org_number_idx", "invoices", '"organization_id","number"', unique=True),
        s.index("invoices_open_idx", "invoices", '"organization_id"', where="\"invoices\".\"status\" = 'open'"))

    add("payments",
        s.enum("payment_method", ["card", "sepa_debit", "ach", "wire", "manual"]),
        s.table("payments", [UUID_PK, '"invoice_id" uuid NOT NULL', '"method" "public"."payment_method" NOT NULL',
                             '"amount" numeric(12, 2) NOT NULL', '"external_id" varchar(64)', f'"paid_at" {TS}',
                             '"failure_reason" text', CREATED]),
        s.fk("payments", "invoice_id", "invoices", "restrict"),
        s.index("payments_invoice_idx", "payments", '"invoice_id"'))

    add("project_slugs",
        s.add_column("projects", '"slug" varchar(64)'),
        "UPDATE \"projects\" SET \"slug\" = lower(regexp_replace(\"name\", '[^a-zA-Z0-9]+', '-', 'g')) "
        "WHERE \"slug\" IS NULL;",
        s.set_not_null("projects", "slug"),
        s.index("projects_org_slug_idx", "projects", '"organization_id","slug"', unique=True),
        s.add_column("projects", '"visibility" varchar(16)'),
        s.set_default("projects", "visibility", "'private'"),
        "UPDATE \"projects\" SET \"visibility\" = 'private' WHERE \"visibility\" IS NULL;",
        s.set_not_null("projects", "visibility"))

    add("notifications",
        s.enum("notification_kind", ["mention", "assignment", "comment", "status_change", "invitation", "billing"]),
        s.table("notifications", [identity("notifications", 64), '"user_id" uuid NOT NULL',
                                  '"kind" "public"."notification_kind" NOT NULL', '"task_id" uuid',
                                  '"payload" jsonb DEFAULT \'{}\'::jsonb NOT NULL', f'"read_at" {TS}', CREATED]),
        s.table("notification_preferences", ['"user_id" uuid NOT NULL', '"kind" "public"."notification_kind" NOT NULL',
                                             '"email" boolean DEFAULT true NOT NULL', '"in_app" boolean DEFAULT true NOT NULL'],
                pk=["user_id", "kind"]),
        s.fk("notifications", "user_id", "users"),
        s.fk("notifications", "task_id", "tasks"),
        s.fk("notification_preferences", "user_id", "users"),
        s.index("notifications_unread_idx", "notifications", '"user_id","created_at"',
                where='"notifications"."read_at" IS NULL'))

    add("webhooks",
        s.enum("webhook_delivery_status", ["pending", "succeeded", "failed"]),
        s.table("webhooks", [UUID_PK, '"organization_id" uuid NOT NULL', '"url" text NOT NULL',
                             '"secret" text NOT NULL', '"events" text[] DEFAULT \'{}\' NOT NULL',
                             '"active" boolean DEFAULT true NOT NULL', CREATED]),
        s.table("webhook_deliveries", [identity("webhook_deliveries", 64), '"webhook_id" uuid NOT NULL',
                                       '"event" varchar(64) NOT NULL', '"payload" jsonb NOT NULL',
                                       '"status" "public"."webhook_delivery_status" DEFAULT \'pending\' NOT NULL',
                                       '"attempts" integer DEFAULT 0 NOT NULL', '"response_code" integer',
                                       f'"next_attempt_at" {TS}', CREATED]),
        s.fk("webhooks", "organization_id", "organizations"),
        s.fk("webhook_deliveries", "webhook_id", "webhooks"),
        s.index("webhook_deliveries_retry_idx", "webhook_deliveries", '"next_attempt_at"',
                where="\"webhook_deliveries\".\"status\" = 'failed'"))

    add("activity_log",
        s.table("activity_log", [identity("activity_log", 64), '"organization_id" uuid NOT NULL', '"actor_id" uuid',
                                 '"action" varchar(64) NOT NULL', '"target_type" varchar(32)', '"target_id" uuid',
                                 '"data" jsonb DEFAULT \'{}\'::jsonb NOT NULL', CREATED]),
        s.fk("activity_log", "organization_id", "organizations"),
        s.fk("activity_log", "actor_id", "users", "set null"),
        s.index("activity_log_org_created_idx", "activity_log", '"organization_id","created_at" DESC'))

    add("search_indexes",
        s.trigram("projects", "name"),
        s.trigram("tasks", "title"))

    add("crm_customers_contacts",
        s.table("customers", [UUID_PK, '"organization_id" uuid NOT NULL', '"owner_id" uuid',
                              '"name" varchar(200) NOT NULL', '"domain" varchar(255)', '"industry" varchar(64)',
                              '"employees" integer', CREATED]),
        s.table("contacts", [UUID_PK, '"customer_id" uuid NOT NULL', '"first_name" varchar(100)',
                             '"last_name" varchar(100)', '"email" varchar(320)', '"phone" varchar(32)',
                             '"title" varchar(100)', CREATED]),
        s.fk("customers", "organization_id", "organizations"),
        s.fk("customers", "owner_id", "users", "set null"),
        s.fk("contacts", "customer_id", "customers"),
        s.index("customers_org_idx", "customers", '"organization_id"'),
        s.trigram("customers", "name"),
        s.trigram("contacts", "email"))

    add("crm_deals",
        s.enum("deal_stage", ["lead", "qualified", "proposal", "negotiation", "won", "lost"]),
        s.table("deals", [UUID_PK, '"customer_id" uuid NOT NULL', '"contact_id" uuid', '"owner_id" uuid',
                          '"title" varchar(200) NOT NULL', '"stage" "public"."deal_stage" DEFAULT \'lead\' NOT NULL',
                          '"value" numeric(14, 2)', '"close_date" date', CREATED]),
        s.fk("deals", "customer_id", "customers"),
        s.fk("deals", "contact_id", "contacts", "set null"),
        s.fk("deals", "owner_id", "users", "set null"),
        s.index("deals_open_idx", "deals", '"owner_id","close_date"',
                where="\"deals\".\"stage\" NOT IN ('won', 'lost')"))

    add("helpdesk_tickets",
        s.enum("ticket_status", ["new", "open", "pending", "solved", "closed"]),
        s.enum("ticket_channel", ["email", "chat", "phone", "web", "api"]),
        s.table("tickets", [UUID_PK, '"organization_id" uuid NOT NULL', '"customer_id" uuid', '"requester_id" uuid',
                            '"assignee_id" uuid', '"subject" varchar(300) NOT NULL',
                            '"status" "public"."ticket_status" DEFAULT \'new\' NOT NULL',
                            '"channel" "public"."ticket_channel" DEFAULT \'email\' NOT NULL',
                            '"priority" "public"."task_priority" DEFAULT \'medium\' NOT NULL', CREATED]),
        s.table("ticket_messages", [identity("ticket_messages", 64), '"ticket_id" uuid NOT NULL', '"author_id" uuid',
                                    '"body" text NOT NULL', '"internal" boolean DEFAULT false NOT NULL', CREATED]),
        s.fk("tickets", "organization_id", "organizations"),
        s.fk("tickets", "customer_id", "customers", "set null"),
        s.fk("tickets", "requester_id", "contacts", "set null"),
        s.fk("tickets", "assignee_id", "users", "set null"),
        s.fk("ticket_messages", "ticket_id", "tickets"),
        s.fk("ticket_messages", "author_id", "users", "set null"),
        s.index("tickets_queue_idx", "tickets", '"assignee_id","created_at"',
                where="\"tickets\".\"status\" IN ('new', 'open', 'pending')"),
        s.trigram("tickets", "subject"))

    add("rls_crm",
        s.enable_rls("customers"),
        s.enable_rls("deals"),
        s.enable_rls("tickets"),
        s.policy("customers_member_access", "customers", "ALL", using=member_of('"customers"."organization_id"')),
        s.policy("deals_owner_write", "deals", "UPDATE", using=f'"deals"."owner_id" = {user_id()}'),
        s.policy("deals_member_read", "deals", "SELECT",
                 using='"deals"."customer_id" IN (SELECT "customers"."id" FROM "customers")'),
        s.policy("tickets_member_access", "tickets", "ALL", using=member_of('"tickets"."organization_id"')))

    add("ticket_on_hold",
        s.add_enum_value("ticket_status", "on_hold", before="solved"),
        s.add_column("tickets", f'"first_response_at" {TS}'),
        s.add_column("tickets", f'"solved_at" {TS}'),
        s.add_column("tickets", '"tags" text[]'),
        s.set_default("tickets", "tags", "'{}'"))

    add("documents",
        s.table("documents", [UUID_PK, '"organization_id" uuid NOT NULL', '"project_id" uuid', '"author_id" uuid',
                              '"title" varchar(300) NOT NULL', '"content" jsonb', '"published" boolean DEFAULT false NOT NULL',
                              CREATED]),
        s.table("document_versions", [identity("document_versions"), '"document_id" uuid NOT NULL',
                                      '"version" integer NOT NULL', '"content" jsonb NOT NULL', '"author_id" uuid', CREATED],
                uniques=[("document_versions_document_id_version_unique", ["document_id", "version"])]),
        s.fk("documents", "organization_id", "organizations"),
        s.fk("documents", "project_id", "projects", "set null"),
        s.fk("documents", "author_id", "users", "set null"),
        s.fk("document_versions", "document_id", "documents"),
        s.fk("document_versions", "author_id", "users", "set null"),
        s.trigram("documents", "title"))

    add("tags",
        s.table("tags", [identity("tags"), '"organization_id" uuid NOT NULL', '"name" varchar(64) NOT NULL'],
                uniques=[("tags_organization_id_name_unique", ["organization_id", "name"])]),
        s.table("document_tags", ['"document_id" uuid NOT NULL', '"tag_id" integer NOT NULL'], pk=["document_id", "tag_id"]),
        s.fk("tags", "organization_id", "organizations"),
        s.fk("document_tags", "document_id", "documents"),
        s.fk("document_tags", "tag_id", "tags"))

    add("time_entries",
        s.table("time_entries", [identity("time_entries", 64), '"task_id" uuid NOT NULL', '"user_id" uuid NOT NULL',
                                 '"minutes" integer NOT NULL', '"note" text', '"spent_on" date DEFAULT CURRENT_DATE NOT NULL',
                                 '"billable" boolean DEFAULT true NOT NULL', CREATED]),
        s.fk("time_entries", "task_id", "tasks"),
        s.fk("time_entries", "user_id", "users"),
        s.check("time_entries", "time_entries_minutes_check", '"time_entries"."minutes" > 0'),
        s.index("time_entries_user_day_idx", "time_entries", '"user_id","spent_on"'))

    add("integrations",
        s.enum("integration_provider", ["slack", "github", "gitlab", "google", "microsoft", "zapier"]),
        s.table("integrations", [UUID_PK, '"organization_id" uuid NOT NULL', '"installed_by" uuid',
                                 '"provider" "public"."integration_provider" NOT NULL', '"config" jsonb DEFAULT \'{}\'::jsonb NOT NULL',
                                 '"access_token" text', f'"expires_at" {TS}', CREATED],
                uniques=[("integrations_organization_id_provider_unique", ["organization_id", "provider"])]),
        s.fk("integrations", "organization_id", "organizations"),
        s.fk("integrations", "installed_by", "users", "set null"))

    add("feature_flags",
        s.table("feature_flags", ['"id" serial PRIMARY KEY NOT NULL', '"key" varchar(64) NOT NULL', '"description" text',
                                  '"enabled_by_default" boolean DEFAULT false NOT NULL'],
                uniques=[("feature_flags_key_unique", ["key"])]),
        s.table("organization_feature_flags", ['"organization_id" uuid NOT NULL', '"feature_flag_id" integer NOT NULL',
                                               '"enabled" boolean NOT NULL'],
                pk=["organization_id", "feature_flag_id"]),
        s.fk("organization_feature_flags", "organization_id", "organizations"),
        s.fk("organization_feature_flags", "feature_flag_id", "feature_flags"),
        s.insert("feature_flags", ["key", "description", "enabled_by_default"], [
            ["'new_editor'", "'Block editor for documents'", "false"],
            ["'crm'", "'Customers, contacts and deals'", "true"],
            ["'helpdesk'", "'Tickets'", "true"],
            ["'time_tracking'", "'Time entries on tasks'", "false"],
            ["'webhooks_v2'", "'Signed webhook deliveries'", "false"],
            ["'ai_summaries'", "'Summaries of long threads'", "false"],
        ]))

    add("saved_views",
        s.table("saved_views", [UUID_PK, '"user_id" uuid NOT NULL', '"project_id" uuid', '"name" varchar(100) NOT NULL',
                                '"filters" jsonb', '"sort" varchar(32)', '"shared" boolean DEFAULT false NOT NULL', CREATED]),
        s.fk("saved_views", "user_id", "users"),
        s.fk("saved_views", "project_id", "projects"),
        s.set_default("saved_views", "filters", "'{}'::jsonb"),
        "UPDATE \"saved_views\" SET \"filters\" = '{}'::jsonb WHERE \"filters\" IS NULL;",
        s.set_not_null("saved_views", "filters"))

    add("updated_at_columns",
        *[s.add_column(t, UPDATED) for t in ["organizations", "users", "projects", "tasks", "comments", "invoices",
                                             "customers", "contacts", "deals", "tickets", "documents", "integrations",
                                             "webhooks", "labels"]])

    add("money_in_cents",
        s.add_column("invoices", '"total_cents" bigint'),
        'UPDATE "invoices" SET "total_cents" = round("total" * 100)::bigint;',
        s.set_default("invoices", "total_cents", "0"),
        s.set_not_null("invoices", "total_cents"),
        s.drop_column("invoices", "total"),
        s.rename_column("payments", "amount", "amount_cents"),
        s.set_type("payments", "amount_cents", "bigint", using='round("amount_cents" * 100)::bigint'),
        s.set_type("invoice_items", "quantity", "numeric(10, 3)"),
        s.set_type("deals", "value", "numeric(16, 2)"))

    add("task_completion",
        s.add_column("tasks", f'"completed_at" {TS}'),
        "UPDATE \"tasks\" SET \"completed_at\" = \"updated_at\" WHERE \"status\" = 'done' AND \"completed_at\" IS NULL;",
        s.check("tasks", "tasks_completed_check", '"tasks"."status" <> \'done\' OR "tasks"."completed_at" IS NOT NULL'),
        s.rename_column("tasks", "estimate", "estimate_points"),
        s.set_type("tasks", "estimate_points", "smallint"))

    add("audit_events",
        s.rename_table("activity_log", "audit_events"),
        s.add_column("audit_events", '"ip_address" inet'),
        s.add_column("audit_events", '"user_agent" text'))

    # A hand-written migration: a trigger function and triggers, the way applications add them.
    touched = ["projects", "tasks", "customers", "deals", "tickets", "documents"]
    s.functions.add("set_updated_at")
    s.triggers.update(f"{t}_set_updated_at" for t in touched)
    add("updated_at_triggers",
        'CREATE OR REPLACE FUNCTION "public"."set_updated_at"() RETURNS trigger LANGUAGE plpgsql AS $$\n'
        "BEGIN\n  NEW.updated_at := now();\n  RETURN NEW;\nEND;\n$$;",
        *[f'CREATE TRIGGER "{t}_set_updated_at" BEFORE UPDATE ON "{t}" FOR EACH ROW '
          'EXECUTE FUNCTION "public"."set_updated_at"();' for t in touched])

    add("knowledge_base",
        s.table("kb_articles", [UUID_PK, '"organization_id" uuid NOT NULL', '"author_id" uuid',
                                '"title" varchar(300) NOT NULL', '"body" text NOT NULL', '"slug" varchar(120) NOT NULL',
                                f'"published_at" {TS}', CREATED, UPDATED],
                uniques=[("kb_articles_organization_id_slug_unique", ["organization_id", "slug"])]),
        s.fk("kb_articles", "organization_id", "organizations"),
        s.fk("kb_articles", "author_id", "users", "set null"),
        s.trigram("kb_articles", "title"),
        s.index("kb_articles_published_idx", "kb_articles", '"organization_id","published_at" DESC',
                where='"kb_articles"."published_at" IS NOT NULL'))

    add("soft_delete",
        *[s.add_column(t, f'"deleted_at" {TS}') for t in ["projects", "tasks", "documents", "customers", "kb_articles"]],
        s.index("tasks_live_project_idx", "tasks", '"project_id","status"', where='"tasks"."deleted_at" IS NULL'),
        s.index("documents_live_org_idx", "documents", '"organization_id"', where='"documents"."deleted_at" IS NULL'))

    add("drop_sessions_legacy",
        s.drop_table("sessions"),
        s.drop_column("users", "legacy_plan"),
        s.add_column("users", f'"last_login_at" {TS}'),
        s.set_default("api_keys", "name", "'default'"),
        s.set_type("organizations", "slug", "varchar(100)"))

    s.views.add("project_task_counts")
    add("project_task_counts_view",
        'CREATE VIEW "public"."project_task_counts" AS (select "projects"."id" as "project_id", '
        'count("tasks"."id") filter (where "tasks"."status" not in (\'done\', \'canceled\')) as "open_tasks", '
        'count("tasks"."id") filter (where "tasks"."status" = \'done\') as "done_tasks" '
        'from "projects" left join "tasks" on "tasks"."project_id" = "projects"."id" '
        'and "tasks"."deleted_at" is null group by "projects"."id");')

    add("rls_billing_documents",
        s.enable_rls("invoices"),
        s.enable_rls("documents"),
        s.enable_rls("kb_articles"),
        s.policy("invoices_admin_read", "invoices", "SELECT",
                 using='"invoices"."organization_id" IN (SELECT "memberships"."organization_id" FROM "memberships" '
                       f'WHERE "memberships"."user_id" = {user_id()} AND "memberships"."role" IN (\'owner\', \'admin\'))'),
        s.policy("documents_member_access", "documents", "ALL", using=member_of('"documents"."organization_id"')),
        s.policy("kb_articles_public_read", "kb_articles", "SELECT", using='"kb_articles"."published_at" IS NOT NULL'),
        s.policy("kb_articles_member_write", "kb_articles", "ALL", using=member_of('"kb_articles"."organization_id"')))

    add("invoice_due_dates",
        s.add_column("invoices", '"due_on" date'),
        'UPDATE "invoices" SET "due_on" = (coalesce("issued_at", "created_at") + interval \'30 days\')::date '
        'WHERE "due_on" IS NULL;',
        s.set_not_null("invoices", "due_on"),
        s.index("invoices_overdue_idx", "invoices", '"due_on"', where="\"invoices\".\"status\" = 'open'"),
        s.add_column("customers", '"health_score" smallint'),
        s.set_default("customers", "health_score", "50"),
        s.set_default("plans", "seats", "5"),
        "UPDATE \"plans\" SET \"seats\" = 5 WHERE \"seats\" IS NULL AND \"code\" <> 'enterprise';")

    return s, m


def main():
    schema, history = migrations()
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(os.path.join(ROOT, "meta"))
    entries = []
    for idx, (name, statements) in enumerate(history):
        tag = f"{idx:04d}_{name}"
        with open(os.path.join(ROOT, f"{tag}.sql"), "w") as f:
            f.write(BREAK.join(statements) + "\n")
        # Weekly releases, from 2024-01-08.
        entries.append({"idx": idx, "version": "7", "when": 1_704_700_800_000 + idx * 7 * 86_400_000,
                        "tag": tag, "breakpoints": True})
    with open(os.path.join(ROOT, "meta", "_journal.json"), "w") as f:
        json.dump({"version": "7", "dialect": "postgresql", "entries": entries}, f, indent=2)
        f.write("\n")
    expected = {"migrations": len(history), **schema.expected()}
    with open(os.path.join(HERE, "saas.expected.json"), "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    print(f"wrote {ROOT}: " + ", ".join(f"{k} {v}" for k, v in expected.items()))


if __name__ == "__main__":
    main()
