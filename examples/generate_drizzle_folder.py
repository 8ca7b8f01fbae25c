#!/usr/bin/env python3
"""Writes examples/drizzle: a drizzle-kit migration folder shaped like a real SaaS schema.

22 migrations in drizzle-kit's own style: "public". qualifiers on types and references,
enums created inside DO $$ ... $$ blocks, --> statement-breakpoint separators, foreign
keys, indexes, defaults, a trigger function. The demo, the regression tests and the
benchmarks all use it. Run again to regenerate (output is deterministic).
"""
import json
import os

BREAK = "\n--> statement-breakpoint\n"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drizzle")


def enum(name, labels):
    values = ", ".join(f"'{v}'" for v in labels)
    return (f'DO $$ BEGIN\n CREATE TYPE "public"."{name}" AS ENUM({values});\n'
            f"EXCEPTION\n WHEN duplicate_object THEN null;\nEND $$;")


def fk(table, column, target, on_delete="cascade"):
    return (f'DO $$ BEGIN\n ALTER TABLE "{table}" ADD CONSTRAINT "{table}_{column}_{target}_id_fk" '
            f'FOREIGN KEY ("{column}") REFERENCES "public"."{target}"("id") ON DELETE {on_delete} ON UPDATE no action;\n'
            f"EXCEPTION\n WHEN duplicate_object THEN null;\nEND $$;")


def table(name, columns):
    body = ",\n\t".join(columns)
    return f'CREATE TABLE IF NOT EXISTS "{name}" (\n\t{body}\n);'


MIGRATIONS = [
    ("users", [enum("user_role", ["owner", "admin", "member", "guest"]),
               table("users", ['"id" serial PRIMARY KEY NOT NULL', '"email" varchar(255) NOT NULL',
                               '"name" varchar(120)', '"role" "public"."user_role" DEFAULT \'member\' NOT NULL',
                               '"created_at" timestamp with time zone DEFAULT now() NOT NULL',
                               'CONSTRAINT "users_email_unique" UNIQUE("email")'])]),
    ("teams", [table("teams", ['"id" serial PRIMARY KEY NOT NULL', '"name" varchar(120) NOT NULL',
                               '"slug" varchar(64) NOT NULL', '"created_at" timestamp with time zone DEFAULT now() NOT NULL']),
               'CREATE UNIQUE INDEX IF NOT EXISTS "teams_slug_idx" ON "teams" USING btree ("slug");']),
    ("team_members", [table("team_members", ['"team_id" integer NOT NULL', '"user_id" integer NOT NULL',
                                             '"joined_at" timestamp with time zone DEFAULT now() NOT NULL',
                                             'CONSTRAINT "team_members_team_id_user_id_pk" PRIMARY KEY("team_id","user_id")']),
                      fk("team_members", "team_id", "teams"), fk("team_members", "user_id", "users")]),
    ("projects", [enum("project_status", ["active", "paused", "archived"]),
                  table("projects", ['"id" serial PRIMARY KEY NOT NULL', '"team_id" integer NOT NULL',
                                     '"name" varchar(200) NOT NULL', '"status" "public"."project_status" DEFAULT \'active\' NOT NULL',
                                     '"budget" numeric(12, 2) DEFAULT \'0\' NOT NULL']),
                  fk("projects", "team_id", "teams"),
                  'CREATE INDEX IF NOT EXISTS "projects_team_idx" ON "projects" USING btree ("team_id");']),
    ("tasks", [enum("task_priority", ["low", "normal", "high", "urgent"]),
               table("tasks", ['"id" serial PRIMARY KEY NOT NULL', '"project_id" integer NOT NULL',
                               '"assignee_id" integer', '"title" varchar(300) NOT NULL', '"done" boolean DEFAULT false NOT NULL',
                               '"priority" "public"."task_priority" DEFAULT \'normal\' NOT NULL', '"due_on" date']),
               fk("tasks", "project_id", "projects"), fk("tasks", "assignee_id", "users", "set null"),
               'CREATE INDEX IF NOT EXISTS "tasks_open_idx" ON "tasks" USING btree ("project_id") WHERE "tasks"."done" = false;']),
    ("comments", [table("comments", ['"id" bigserial PRIMARY KEY NOT NULL', '"task_id" integer NOT NULL',
                                     '"author_id" integer NOT NULL', '"body" text NOT NULL',
                                     '"created_at" timestamp with time zone DEFAULT now() NOT NULL']),
                  fk("comments", "task_id", "tasks"), fk("comments", "author_id", "users")]),
    ("labels", [table("labels", ['"id" serial PRIMARY KEY NOT NULL', '"name" varchar(50) NOT NULL', '"color" char(7) DEFAULT \'#cccccc\' NOT NULL']),
                table("task_labels", ['"task_id" integer NOT NULL', '"label_id" integer NOT NULL',
                                      'CONSTRAINT "task_labels_pk" PRIMARY KEY("task_id","label_id")']),
                fk("task_labels", "task_id", "tasks"), fk("task_labels", "label_id", "labels")]),
    ("invoices", [enum("invoice_status", ["draft", "open", "paid", "void"]),
                  table("invoices", ['"id" serial PRIMARY KEY NOT NULL', '"team_id" integer NOT NULL',
                                     '"number" varchar(32) NOT NULL', '"status" "public"."invoice_status" DEFAULT \'draft\' NOT NULL',
                                     '"total" numeric(12, 2) DEFAULT \'0\' NOT NULL', '"issued_at" timestamp with time zone']),
                  fk("invoices", "team_id", "teams", "restrict"),
                  'CREATE UNIQUE INDEX IF NOT EXISTS "invoices_number_idx" ON "invoices" USING btree ("number");']),
    ("invoice_lines", [table("invoice_lines", ['"id" serial PRIMARY KEY NOT NULL', '"invoice_id" integer NOT NULL',
                                               '"description" text NOT NULL', '"quantity" integer DEFAULT 1 NOT NULL',
                                               '"unit_price" numeric(12, 2) NOT NULL',
                                               'CONSTRAINT "invoice_lines_quantity_check" CHECK ("quantity" > 0)']),
                       fk("invoice_lines", "invoice_id", "invoices")]),
    ("users_last_seen", ['ALTER TABLE "users" ADD COLUMN "last_seen_at" timestamp with time zone;',
                         'CREATE INDEX IF NOT EXISTS "users_last_seen_idx" ON "users" USING btree ("last_seen_at");']),
    ("audit_log", [table("audit_log", ['"id" bigserial PRIMARY KEY NOT NULL', '"actor_id" integer',
                                       '"action" varchar(64) NOT NULL', '"payload" jsonb DEFAULT \'{}\'::jsonb NOT NULL',
                                       '"at" timestamp with time zone DEFAULT now() NOT NULL']),
                   fk("audit_log", "actor_id", "users", "set null"),
                   'CREATE INDEX IF NOT EXISTS "audit_log_at_idx" ON "audit_log" USING btree ("at");']),
    ("touch_trigger", ['ALTER TABLE "projects" ADD COLUMN "updated_at" timestamp with time zone DEFAULT now() NOT NULL;',
                       'CREATE OR REPLACE FUNCTION "public"."touch_updated_at"() RETURNS trigger LANGUAGE plpgsql AS $$\n'
                       'BEGIN\n  NEW.updated_at := now();\n  RETURN NEW;\nEND\n$$;',
                       'CREATE TRIGGER "projects_touch" BEFORE UPDATE ON "projects" FOR EACH ROW EXECUTE FUNCTION "public"."touch_updated_at"();']),
    ("api_keys", [table("api_keys", ['"id" serial PRIMARY KEY NOT NULL', '"user_id" integer NOT NULL',
                                     '"prefix" char(8) NOT NULL', '"hashed_key" text NOT NULL', '"revoked" boolean DEFAULT false NOT NULL']),
                  fk("api_keys", "user_id", "users")]),
    ("webhooks", [enum("webhook_event", ["task.created", "task.done", "invoice.paid"]),
                  table("webhooks", ['"id" serial PRIMARY KEY NOT NULL', '"team_id" integer NOT NULL', '"url" text NOT NULL',
                                     '"events" "public"."webhook_event"[] DEFAULT \'{}\' NOT NULL']),
                  fk("webhooks", "team_id", "teams")]),
    ("attachments", [table("attachments", ['"id" serial PRIMARY KEY NOT NULL', '"task_id" integer NOT NULL',
                                           '"file_name" varchar(255) NOT NULL', '"size_bytes" bigint DEFAULT 0 NOT NULL']),
                     fk("attachments", "task_id", "tasks")]),
    ("task_estimate", ['ALTER TABLE "tasks" ADD COLUMN "estimate_hours" numeric(6, 2);',
                       'ALTER TABLE "tasks" ADD CONSTRAINT "tasks_estimate_check" CHECK ("estimate_hours" IS NULL OR "estimate_hours" >= 0);']),
    ("notifications", [table("notifications", ['"id" bigserial PRIMARY KEY NOT NULL', '"user_id" integer NOT NULL',
                                               '"kind" varchar(40) NOT NULL', '"read" boolean DEFAULT false NOT NULL',
                                               '"created_at" timestamp with time zone DEFAULT now() NOT NULL']),
                       fk("notifications", "user_id", "users"),
                       'CREATE INDEX IF NOT EXISTS "notifications_unread_idx" ON "notifications" USING btree ("user_id") WHERE "notifications"."read" = false;']),
    ("settings", [table("settings", ['"key" varchar(64) PRIMARY KEY NOT NULL', '"value" jsonb NOT NULL',
                                     '"updated_at" timestamp with time zone DEFAULT now() NOT NULL']),
                  'INSERT INTO "settings" ("key", "value") VALUES (\'timezone\', \'"UTC"\'::jsonb) ON CONFLICT DO NOTHING;']),
    ("project_stats_view", ['CREATE VIEW "public"."project_stats" AS SELECT "p"."id", count("t"."id") AS "tasks", '
                            'count("t"."id") FILTER (WHERE "t"."done") AS "done" FROM "public"."projects" "p" '
                            'LEFT JOIN "public"."tasks" "t" ON "t"."project_id" = "p"."id" GROUP BY "p"."id";']),
    ("users_name_length", ['ALTER TABLE "users" ALTER COLUMN "name" SET DATA TYPE varchar(200);']),
    ("time_entries", [table("time_entries", ['"id" serial PRIMARY KEY NOT NULL', '"task_id" integer NOT NULL',
                                             '"user_id" integer NOT NULL', '"minutes" integer NOT NULL',
                                             '"logged_on" date DEFAULT CURRENT_DATE NOT NULL']),
                      fk("time_entries", "task_id", "tasks"), fk("time_entries", "user_id", "users"),
                      'CREATE INDEX IF NOT EXISTS "time_entries_user_day_idx" ON "time_entries" USING btree ("user_id","logged_on");']),
    ("task_search", ['ALTER TABLE "tasks" ADD COLUMN "search" tsvector GENERATED ALWAYS AS (to_tsvector(\'simple\', "title")) STORED;',
                     'CREATE INDEX IF NOT EXISTS "tasks_search_idx" ON "tasks" USING gin ("search");']),
]


def main():
    entries = []
    for idx, (name, statements) in enumerate(MIGRATIONS):
        tag = f"{idx:04d}_{name}"
        with open(os.path.join(ROOT, f"{tag}.sql"), "w") as f:
            f.write(BREAK.join(statements) + "\n")
        entries.append({"idx": idx, "version": "7", "when": 1_700_000_000_000 + idx * 86_400_000,
                        "tag": tag, "breakpoints": True})
    with open(os.path.join(ROOT, "meta", "_journal.json"), "w") as f:
        json.dump({"version": "7", "dialect": "postgresql", "entries": entries}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
